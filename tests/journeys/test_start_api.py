"""POST /api/v1/journeys/{id}/start, POST /api/v1/journeys/drop, GET /api/v1/journeys/requests/{id}."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from journeys import counters, start
from journeys.entry import Arrival, enter
from journeys.entry_actors import carry_out_start_request
from journeys.models import Journey, JourneyRun, JourneyStartRequest, JourneyStatus, JourneyVersion, RunState
from tests.factories import ProjectFactory, SubscriberFactory
from tests.subscribers.test_api_subscribers import ApiClient, key_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, project):
    return ApiClient(client, key_for(project))


@pytest.fixture
def post(api, monkeypatch, django_capture_on_commit_callbacks):
    """POST through the API; the requests it accepts are carried out by the actor after its commit."""
    send = carry_out_start_request.fn
    monkeypatch.setattr(carry_out_start_request, "send", lambda request_id: send(request_id))

    def post(path: str, body):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = api.post(path, body)
        assert len(callbacks) == (1 if response.status_code == 202 else 0)
        return response

    return post


def _journey(project, entries=None, status=JourneyStatus.ACTIVE, **settings) -> Journey:
    definition = {
        "name": "Order follow-up",
        "entries": entries or [{"type": "api"}],
        "settings": {"reentry": "after_exit", **settings},
        "steps": [{"id": "thanks", "type": "exit"}],
    }
    journey = Journey.objects.create(
        project=project, name="J", definition=definition, status=status, version=1
    )
    JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=definition)
    return journey


def test_start_enters_named_subscribers_with_values_and_lists_the_unknown(api, project, post):
    journey = _journey(project)
    by_id = SubscriberFactory(project=project)
    by_phone = SubscriberFactory(project=project, phone="+4915112345678")
    by_external = SubscriberFactory(project=project, external_id="crm-4711")
    stranger = SubscriberFactory(project=ProjectFactory(), external_id="crm-9")
    body = {
        "subscribers": [
            {"id": str(by_id.public_id)},
            {"phone": "0151 12345678"},  # the project's country reads it
            {"external_id": "crm-4711"},
            {"external_id": "crm-9"},  # another project's
            {"phone": "12"},
            {"id": str(by_id.public_id)},  # twice: enters once
            {"phone": "+4915112345678", "external_id": "crm-4711"},
        ],
        "values": {"code": "SUSHI20"},
    }
    response = post(f"/journeys/{journey.public_id}/start", body)
    assert response.status_code == 202, response.json()
    request_id = response.json()["request_id"]
    assert response.json()["status"] == "queued"

    result = api.get(f"/journeys/requests/{request_id}").json()
    assert result["status"] == "done" and result["action"] == "start"
    assert result["journey"] == str(journey.public_id) and result["finished_at"]
    assert result["result"]["entered"] == 3 and result["result"]["not_entered"] == 0
    assert result["result"]["unknown"] == 3
    errors = {e["index"]: (e["field"], e["code"]) for e in result["result"]["errors"]}
    assert errors == {
        3: ("subscribers.3.external_id", "unknown_subscriber"),
        4: ("subscribers.4.phone", "invalid_phone"),
        6: ("subscribers.6", "invalid_item"),
    }
    runs = JourneyRun.objects.filter(journey=journey)
    assert {r.subscriber_id for r in runs} == {by_id.pk, by_phone.pk, by_external.pk}
    assert all(r.context == {"values": {"code": "SUSHI20"}} for r in runs)
    assert all(r.entry_key == f"api:{request_id}:{r.subscriber_id}" for r in runs)
    assert stranger.pk not in {r.subscriber_id for r in runs}
    assert counters.read(journey.pk)[("", "entered")] == 3


def test_carrying_out_a_request_twice_enters_nobody_twice(api, project):
    journey = _journey(project, reentry="any_time")
    sub = SubscriberFactory(project=project)
    request = start.request_start(
        journey=journey, subscribers=[{"id": str(sub.public_id)}], rule=None, values={}
    )
    start.carry_out(request_id=request.public_id)
    assert start.carry_out(request_id=request.public_id) is None  # done: left as it is
    # Even when the row is queued again (its commit lost after the runs were written).
    JourneyStartRequest.objects.filter(pk=request.pk).update(status="queued")
    assert start.carry_out(request_id=request.public_id).result["entered"] == 0
    assert JourneyRun.objects.filter(journey=journey).count() == 1


def test_the_reentry_rule_keeps_subscribers_already_in_out(api, project, post):
    journey = _journey(project)
    inside, outside = SubscriberFactory.create_batch(2, project=project)
    enter(journey, [Arrival(inside.pk, "event:1")], now=timezone.now())
    body = {"subscribers": [{"id": str(inside.public_id)}, {"id": str(outside.public_id)}]}
    request_id = post(f"/journeys/{journey.public_id}/start", body).json()["request_id"]
    result = api.get(f"/journeys/requests/{request_id}").json()["result"]
    assert (result["entered"], result["not_entered"], result["unknown"]) == (1, 1, 0)


def test_start_by_rule_enters_everyone_matching(api, project, post):
    journey = _journey(project)
    germans = SubscriberFactory.create_batch(2, project=project, country="DE")
    SubscriberFactory(project=project, country="FR")
    rule = {"type": "field", "field": "country", "op": "eq", "value": "DE"}
    request_id = post(f"/journeys/{journey.public_id}/start", {"rule": rule}).json()["request_id"]
    assert api.get(f"/journeys/requests/{request_id}").json()["result"] == {"entered": 2}
    assert set(JourneyRun.objects.values_list("subscriber_id", flat=True)) == {s.pk for s in germans}
    text = post(f"/journeys/{journey.public_id}/start", {"rule": 'F("country", eq, "FR")'})
    assert text.status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "subscribers"),
        ({"subscribers": [{"phone": "+4915112345678"}], "rule": {"type": "all"}}, "subscribers"),
        ({"subscribers": []}, "subscribers"),
        ({"subscribers": [{"id": "x"}] * (start.MAX_SUBSCRIBERS + 1)}, "subscribers"),
        ({"rule": {"type": "tag", "tag": "nope", "op": "eq", "value": 1}}, "rule"),
        ({"rule": "T(("}, "rule"),
        ({"subscribers": [{"id": "x"}], "values": {"big": "x" * 9000}}, "values"),
        ({"subscribers": [{"id": "x"}], "values": {"a": "\ud800"}}, "values.a"),
        ({"subscribers": [{"id": "x"}], "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(api, project, body, field):
    journey = _journey(project)
    response = api.post(f"/journeys/{journey.public_id}/start", body)
    assert response.status_code == 422, response.json()
    assert response.json()["field"] == field
    assert not JourneyStartRequest.objects.exists()


def test_only_an_active_journey_with_an_api_entry_takes_starts(api, project):
    body = {"subscribers": [{"phone": "+4915112345678"}]}
    paused = _journey(project, status=JourneyStatus.PAUSED)
    response = api.post(f"/journeys/{paused.public_id}/start", body)
    assert response.status_code == 409
    assert response.json() == {
        "code": "journey_not_startable",
        "message": "The journey is paused: only an active journey can be started.",
    }
    no_api = _journey(project, entries=[{"type": "event", "event": "OrderPlaced"}])
    response = api.post(f"/journeys/{no_api.public_id}/start", body)
    assert response.status_code == 409 and response.json()["code"] == "no_api_entry"
    other = _journey(ProjectFactory())
    assert api.post(f"/journeys/{other.public_id}/start", body).status_code == 404
    assert api.post(f"/journeys/{uuid.uuid4()}/start", body).status_code == 404
    assert not JourneyStartRequest.objects.exists()


def test_a_journey_paused_before_the_request_is_carried_out_fails_it_in_plain_words(api, project):
    journey = _journey(project)
    sub = SubscriberFactory(project=project)
    request = start.request_start(
        journey=journey, subscribers=[{"id": str(sub.public_id)}], rule=None, values={}
    )
    Journey.objects.filter(pk=journey.pk).update(status=JourneyStatus.PAUSED)
    start.carry_out(request_id=request.public_id)
    body = api.get(f"/journeys/requests/{request.public_id}").json()
    assert body["status"] == "failed"
    assert body["result"]["error"]["message"].startswith("The journey is paused")
    assert not JourneyRun.objects.exists()


def test_drop_ends_live_runs_in_one_journey_or_in_all(api, project, post):
    first, second = _journey(project), _journey(project)
    alice, bob = SubscriberFactory.create_batch(2, project=project)
    now = timezone.now()
    for journey in (first, second):
        enter(journey, [Arrival(alice.pk, f"a{journey.pk}"), Arrival(bob.pk, f"b{journey.pk}")], now=now)
    other_project = ProjectFactory()
    outsider_journey = _journey(other_project)
    outsider = SubscriberFactory(project=other_project, phone=alice.phone)
    enter(outsider_journey, [Arrival(outsider.pk, "x")], now=now)

    body = {"journey": str(first.public_id), "subscribers": [{"id": str(alice.public_id)}, {"phone": "+491"}]}
    response = post("/journeys/drop", body)
    assert response.status_code == 202
    result = api.get(f"/journeys/requests/{response.json()['request_id']}").json()
    assert (
        result["action"] == "drop" and result["result"]["dropped"] == 1 and result["result"]["unknown"] == 1
    )
    dropped = JourneyRun.objects.get(journey=first, subscriber=alice)
    assert dropped.state == RunState.DONE and dropped.exit_reason == "dropped"
    assert JourneyRun.objects.get(journey=second, subscriber=alice).state == RunState.READY

    response = post("/journeys/drop", {"subscribers": [{"phone": alice.phone}, {"phone": bob.phone}]})
    result = api.get(f"/journeys/requests/{response.json()['request_id']}").json()
    assert result["result"]["dropped"] == 3  # alice in second, bob in both
    assert not JourneyRun.objects.filter(project=project).exclude(state=RunState.DONE).exists()
    assert JourneyRun.objects.get(journey=outsider_journey).state == RunState.READY


def test_drop_and_requests_are_scoped_to_the_api_keys_project(api, project):
    other = _journey(ProjectFactory())
    response = api.post("/journeys/drop", {"journey": str(other.public_id), "subscribers": [{"id": "x"}]})
    assert response.status_code == 404 and response.json()["code"] == "journey_not_found"
    foreign = JourneyStartRequest.objects.create(project=other.project, journey=other, payload={})
    assert api.get(f"/journeys/requests/{foreign.public_id}").status_code == 404
    assert api.post("/journeys/drop", {"subscribers": []}).status_code == 422
    assert (
        ApiClient(api.client, "wrong").post("/journeys/drop", {"subscribers": [{"id": "x"}]}).status_code
        == 401
    )


def test_a_rule_that_stopped_compiling_fails_the_request_instead_of_retrying_forever(api, project):
    from subscribers.models import TagDefinition

    journey = _journey(project)
    tag = TagDefinition.objects.create(project=project, name="city", type="string")
    rule = {"type": "tag", "tag": "city", "op": "eq", "value": "Berlin"}
    request = start.request_start(journey=journey, subscribers=None, rule=rule, values={})
    tag.delete()
    start.carry_out(request_id=request.public_id)
    request.refresh_from_db()
    assert request.status == "failed" and "city" in request.result["error"]["message"]


def test_the_endpoints_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"post"} <= set(paths["/api/v1/journeys/{journey_id}/start"])
    assert {"post"} <= set(paths["/api/v1/journeys/drop"])
    assert {"get"} <= set(paths["/api/v1/journeys/requests/{request_id}"])
