"""schemathesis against the OpenAPI document, in-process through the WSGI app.

Each operation gets the boundary cases its schema defines (coverage phase) and a few generated
requests, valid and invalid by the document (fuzzing phase); every answer must be documented
(status, content type, body shape) and none may be a 5xx. The budget is small and the search
derandomized, so CI runs it on every push with the same cases; ``FUZZ_EXAMPLES=200`` searches
deeper locally (with ``FUZZ_RANDOM=1`` for new cases each run).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controlpanel.services import Actor, create_api_key

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
schema.config.generation.update(max_examples=EXAMPLES, database="none")


@pytest.fixture
def api_key(project):
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
