"""schemathesis against the OpenAPI document, in-process through the WSGI app.

Each operation gets the boundary cases its schema defines (coverage phase) and a few generated
requests, valid and invalid by the document, some with hostile tag, attribute and time values
(fuzzing phase); every answer must be documented
(status, content type, body shape) and none may be a 5xx. The budget is small and the search
derandomized, so CI runs it on every push with the same cases; ``FUZZ_EXAMPLES=200`` searches
deeper locally (with ``FUZZ_RANDOM=1`` for new cases each run).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controlpanel.services import Actor, create_api_key
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
schema.config.generation.update(max_examples=EXAMPLES, database="none")


# Values no JSON schema asks for but callers send, put into tags, event attributes and occurred_at
# (the generator alone keeps to small, well-formed ones): each must be a 2xx or a 422, never a 500.
HOSTILE_VALUES = [
    *("\x00", "", " ", "x" * 5000, "1990-05-17", "2026-02-30", "2026-01-01T10:00:00", "2026-01-01T25:00:00"),
    # local times that do not exist or exist twice in Europe/Berlin (the test project's zone)
    *("2026-03-29T02:30:00", "2026-10-25T02:30:00"),
    *(2**63 - 1, -(2**63), 2**53 + 1, 2**64, 1e308, -0.0, True, None, "\ud800"),
    *(["a"] * 101, [1, "a", None], {"nested": {"a": 1}}),
]
HOSTILE_TIMES = [
    *HOSTILE_VALUES[4:10],
    *("2026-01-01T10:00:00+25:00", "1970-01-01T00:00:00Z", 0),
    *("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"),
]
HOSTILE_NAMES = ["city", "orders", "Größe", "birthday", "Name", "Language"]


# A subscriber the api_key fixture creates: a hostile value must reach the value parsers, not stop
# at a generated phone number that is no number, or at an unknown subscriber.
KNOWN_PHONE = "+4915112345678"


def with_hostile(body: Any, name: str, value: Any, time: Any) -> Any:
    if isinstance(body, list):
        return [with_hostile(item, name, value, time) for item in body]
    if not isinstance(body, dict):
        return body
    body = {key: with_hostile(item, name, value, time) for key, item in body.items()}
    for key in ("tags", "attributes"):
        if key in body and (body[key] is None or isinstance(body[key], dict)):
            body[key] = {**(body[key] or {}), name: value}
    if "occurred_at" in body:
        body["occurred_at"] = time
    if "phone" in body and "tags" in body:
        body["phone"] = KNOWN_PHONE
    if isinstance(body.get("subscriber"), dict):
        body["subscriber"] = {"phone": KNOWN_PHONE}
    return body


@schema.hook
def flatmap_body(context, body):
    hostile = st.builds(
        with_hostile,
        st.just(body),
        st.sampled_from(HOSTILE_NAMES),
        st.sampled_from(HOSTILE_VALUES),
        st.sampled_from(HOSTILE_TIMES),
    )
    return st.one_of(st.just(body), hostile)


@pytest.fixture
def api_key(project):
    SubscriberFactory(project=project, phone=KNOWN_PHONE)
    _, raw = create_api_key(project=project, name="fuzz", actor=Actor(label="test"))
    return raw


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    # The WSGI handler closes "old" connections around each request, which would end the test's
    # transaction; Django's test client disconnects the same receivers for the same reason.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_answers_only_what_it_documents(case, api_key):
    case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"}, checks=CHECKS)
