"""Hostile and careless input against issue 11's journey steps: send_email / send_push naming
another project's template, chained reachability and silent-hour channels of the wrong shape.
Every bad definition is a 422 naming the step and field, never a 500 or a journey that sends
another project's content."""

from __future__ import annotations

import pytest

from journeys.models import Journey
from mail.models import EmailTemplate
from push.models import PushTemplate
from tests.factories import ProjectFactory
from tests.journeys.test_journey_api import Api
from tests.journeys.test_services import approved_template

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, project):
    approved_template(project)
    return Api(client, project)


def journey(*steps, **settings) -> dict:
    return {"name": "J", "entry": {"type": "api"}, "settings": settings, "steps": list(steps)}


def problems(response) -> dict:
    assert response.status_code == 422, response.content[:500]
    return {(p["step"], p["field"]): p["message"] for p in response.json()["problems"]}


def other_projects_templates():
    other = ProjectFactory()
    email = EmailTemplate.objects.create(project=other, name="theirs", subject="S", text="T", marketing=False)
    push = PushTemplate.objects.create(project=other, name="theirs", title="T", body="B")
    return email, push


def test_another_projects_template_by_id_or_name_is_refused(api, project):
    email, push = other_projects_templates()
    for reference in (str(email.public_id), "theirs"):
        found = problems(api.post("", journey({"id": "a", "type": "send_email", "template": reference})))
        assert ("a", "template") in found
    for reference in (str(push.public_id), "theirs"):
        found = problems(api.post("", journey({"id": "a", "type": "send_push", "template": reference})))
        assert ("a", "template") in found
    assert not Journey.objects.exists()


@pytest.mark.parametrize(
    "template",
    [None, 5, ["x"], {"name": "x"}, "", "   ", "x" * 10_000, "a\x00b", "\ud800"],
)
@pytest.mark.parametrize("kind", ["send_email", "send_push"])
def test_a_template_reference_of_the_wrong_type_is_a_422(api, kind, template):
    response = api.post("", journey({"id": "a", "type": kind, "template": template}))
    assert response.status_code == 422, response.content[:500]
    assert not Journey.objects.exists()


@pytest.mark.parametrize(
    "step",
    [
        {"id": "r", "type": "reachability", "channels": []},
        {"id": "r", "type": "reachability", "channels": "email"},
        {"id": "r", "type": "reachability", "channels": ["email", "email"]},
        {"id": "r", "type": "reachability", "channels": ["fax"]},
        {"id": "r", "type": "reachability", "channels": [1, None, {}]},
        {"id": "r", "type": "reachability", "channels": ["email"] * 10_000},
        {"id": "r", "type": "reachability", "channel": "email", "channels": ["push"]},
        {"id": "r", "type": "reachability", "channel": ["email"]},
        {"id": "r", "type": "reachability", "channel": "sms"},
    ],
)
def test_malformed_reachability_is_a_422_on_its_step(api, step):
    found = problems(api.post("", journey(step)))
    assert any(s == "r" for s, _ in found), found


@pytest.mark.parametrize(
    "silent",
    [
        {"start": "21:00", "end": "08:00", "channels": "email"},
        {"start": "21:00", "end": "08:00", "channels": ["fax"]},
        {"start": "21:00", "end": "08:00", "channels": [None]},
        {"start": "21:00", "end": "08:00", "channels": [{"$gt": ""}]},
        {"start": "21:00", "end": "08:00", "channels": ["email"] * 10_000},
        {"start": "21:00", "end": "08:00", "channels": ["email", "push", "email"]},
        {"start": "25:00", "end": "08:00"},
        {"start": "21:00", "end": "21:00"},
        {"start": 2100, "end": "08:00"},
        {"start": "21:00", "end": "08:00", "x\x00": 1},
    ],
)
def test_malformed_silent_hours_are_a_422(api, silent):
    response = api.post("", journey({"id": "a", "type": "exit"}, silent_hours=silent))
    found = problems(response)
    assert any(field.startswith("settings.silent_hours") for _, field in found), found
    assert not Journey.objects.exists()


@pytest.mark.parametrize("of_step", [5, ["a"], "nope", "x" * 10_000])
def test_wait_event_of_an_unknown_step_is_a_422(api, of_step):
    steps = [
        {
            "id": "a",
            "type": "wait_event",
            "events": [{"event": "EmailOpened", "of_step": of_step, "next": None}],
            "timeout": "PT1H",
            "timeout_next": None,
        },
    ]
    response = api.post("", journey(*steps))
    assert response.status_code == 422, response.content[:500]
