"""Hostile and malformed input against the journeys API and panel endpoints: every bad body is a
4xx with a clear message, never a 500, a leak of another project's data, or a half-written row."""

from __future__ import annotations

import copy
import io
import json
import time
import uuid

import pytest
from django.test import Client

from controlpanel.models import Role
from journeys.models import Journey, JourneyRun, JourneyStatus
from journeys.steps import webhook
from tests.factories import ProjectFactory, SubscriberFactory
from tests.journeys.test_builder_pages import PROMO as CANVAS_PROMO
from tests.journeys.test_builder_pages import journey_of, post_json, url
from tests.journeys.test_definition import PROMO
from tests.journeys.test_journey_api import Api
from tests.journeys.test_services import approved_template

pytestmark = pytest.mark.django_db

DEEP = b"[" * 100_000 + b"]" * 100_000  # past the JSON decoder's recursion limit


@pytest.fixture
def api(client, project):
    approved_template(project)
    return Api(client, project)


def promo(**changes) -> dict:
    data = copy.deepcopy(PROMO)
    data.update(changes)
    return data


def created(api, data=None) -> dict:
    response = api.post("", data or PROMO)
    assert response.status_code == 201, response.json()
    return response.json()


# --- the API: bodies that are not journeys ---------------------------------------------------------


@pytest.mark.parametrize("raw", ["{", "nul\x00", '{"name": "x",}', "[1, 2", "NaN"])
def test_malformed_json_is_a_400(api, raw):
    response = api.post("", raw=raw)
    assert response.status_code in (400, 422), response.content
    assert not Journey.objects.exists()


def test_deep_nesting_is_refused_not_a_500(api):
    response = api.client.post("/api/v1/journeys", data=DEEP, content_type="application/json", **api.headers)
    assert response.status_code == 400
    nested: dict = {"x": 1}
    for _ in range(60):
        nested = {"x": nested}
    response = api.post("", promo(description=nested))
    assert response.status_code == 422
    assert "deeply nested" in response.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        [],
        5,
        "journey",
        None,
        {"name": 5, "steps": "x"},
        {"name": "x", "entry": [], "settings": [], "steps": {}},
        {"name": "x", "steps": [5, None, "x", []]},
        {"name": "x", "steps": [{"id": 5, "type": "wait"}, {"id": "a", "type": 7, "next": 3}]},
        {"name": "x", "steps": [{"id": "a", "type": "wait", "duration": 3600, "next": ["b"]}]},
        {"name": "x", "entry": {"type": "event", "event": {"x": 1}, "conditions": "all"}},
        {"name": "x", "entry": {"type": "segment", "segment": 5, "schedule": "daily"}},
        {"name": "x", "settings": {"reentry": True, "entry_cap": "x", "silent_hours": 5, "goal": []}},
        {"name": ["x"], "description": {"a": 1}},
        {"name": "x", "steps": [{"id": "a", "type": "webhook", "url": 5, "headers": [], "body": 1e308}]},
        {"name": "x", "steps": [{"id": "a", "type": "branch", "conditions": [{"op": "regex"}]}]},
        {"name": "x", "steps": [{"id": "a", "type": "whatsapp_template", "template": "x", "bindings": []}]},
        {"name": "x", "steps": [{"id": "a" * 10_000, "type": "exit"}]},
        {"name": "x" * 100_000},
    ],
)
def test_wrong_types_everywhere_are_a_422_with_problems(api, body):
    for response in (api.post("", body), api.post("/import", body)):
        assert response.status_code == 422, response.content[:500]
        assert response.json()["code"] == "invalid_journey"
        assert response.json()["problems"]
    assert not Journey.objects.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Promo\x00"},
        {"name": "\ud800"},
        {"description": "a\x00b"},
        {"settings": {"reentry": "after_exit", "x\x00": 1}},
        {"entry": {"type": "event", "event": "Whats\x00App"}},
    ],
)
def test_nul_and_lone_surrogates_are_a_422_never_a_500(api, change):
    response = api.post("", promo(**change))
    assert response.status_code == 422, response.content[:500]
    assert response.json()["problems"]
    assert not Journey.objects.exists()


def test_nul_in_a_step_is_a_422_on_that_step_for_create_replace_and_import(api):
    bad = promo()
    bad["steps"] = copy.deepcopy(PROMO["steps"])
    bad["steps"][0]["text"] = "Danke\x00"
    for response in (api.post("", bad), api.post("/import", bad)):
        assert response.status_code == 422
        assert response.json()["problems"][0]["step"] == "reply"
    journey = created(api)
    response = api.put(f"/{journey['id']}", bad)
    assert response.status_code == 422
    assert Journey.objects.get().definition == PROMO  # nothing half-written


def test_escaped_lone_surrogate_in_raw_json_is_a_422(api):
    raw = json.dumps(PROMO).replace("Danke!", "Danke\\ud800!")
    response = api.post("", raw=raw)
    assert response.status_code == 422
    assert "surrogate" in response.json()["message"]


def test_ten_thousand_steps_are_refused_quickly(api):
    steps = [{"id": f"s{i}", "type": "wait", "duration": "PT1H", "next": f"s{i + 1}"} for i in range(10_000)]
    steps[-1]["next"] = None
    started = time.monotonic()
    response = api.post("", promo(steps=steps))
    assert response.status_code == 422
    assert "At most 200 steps" in response.json()["message"]
    assert time.monotonic() - started < 10


def test_a_huge_body_is_refused(api):
    big = promo(description="x" * 3_000_000)
    response = api.post("", big)
    assert response.status_code in (400, 413, 422)
    assert not Journey.objects.exists()


def test_duplicate_keys_the_last_wins_and_the_journey_is_judged(api):
    raw = '{"name": "a", "name": 5, "steps": []}'
    response = api.post("", raw=raw)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "name"


@pytest.mark.parametrize(
    "pattern", ["(a+)+$", "((((a*)*)*)*)*$", "(a|aa)*c", "(?:a{999}){999}", "(a)\\1", "(?=a)", "[", "a{2,1}"]
)
def test_regex_bombs_in_conditions_are_refused_or_run_in_linear_time(api, pattern):
    body = promo(
        entry={
            "type": "event",
            "event": "WhatsAppReceived",
            "conditions": [{"attribute": "text", "op": "regex", "value": pattern}],
        }
    )
    response = api.post("", body)
    assert response.status_code in (201, 422), response.content[:300]
    from journeys.conditions import regex_search

    started = time.monotonic()
    regex_search(pattern, "a" * 5_000 + "!")
    assert time.monotonic() - started < 2


# --- other projects, unknown ids -------------------------------------------------------------------


def test_another_projects_journey_and_request_are_404_everywhere(api, client, project):
    other = ProjectFactory()
    approved_template(other)
    theirs = created(Api(client, other))
    start = Api(client, other).post(f"/{theirs['id']}/start", {"subscribers": [{"phone": "+4915112345678"}]})
    mine = Api(client, project)
    for method, path in [
        ("get", f"/{theirs['id']}"),
        ("put", f"/{theirs['id']}"),
        ("post", f"/{theirs['id']}/activate"),
        ("post", f"/{theirs['id']}/resume"),
        ("post", f"/{theirs['id']}/pause"),
        ("post", f"/{theirs['id']}/stop"),
        ("get", f"/{theirs['id']}/stats"),
        ("post", f"/{theirs['id']}/clone"),
        ("get", f"/{theirs['id']}/export"),
        ("post", f"/{theirs['id']}/start"),
        ("get", f"/{uuid.uuid4()}"),
        ("post", "/drop"),
    ]:
        body = PROMO if method == "put" else {"subscribers": [{"phone": "+49151"}]}
        if path == "/drop":
            body = {"journey": theirs["id"], "subscribers": [{"phone": "+49151"}]}
        response = mine.send(method, path, body) if method != "get" else mine.get(path)
        assert response.status_code == 404, (path, response.content)
        assert "PROMO" not in response.content.decode()
    if start.status_code == 202:
        response = mine.get(f"/requests/{start.json()['request_id']}")
        assert response.status_code == 404
    assert mine.get("/not-a-uuid").status_code == 404
    assert Journey.objects.filter(project=other).count() == 1


def test_start_with_hostile_values_is_a_422(api, project):
    journey = created(api)
    jid = journey["id"]
    nested: dict = {"v": 1}
    for _ in range(1_200):
        nested = {"v": nested}
    for body in [
        {"subscribers": "all"},
        {"subscribers": [1, 2]},
        {"rule": 5},
        {"values": {"code": "a\x00"}},
        {"values": {"a\ud800": 1}},
        {"rule": 'T("city", eq, "\x00")'},
        {"subscribers": [{"phone": "\x00"}]},
        {"values": nested},
        {"unknown": 1},
        {"subscribers": [{"id": "x"}] * 100_001},
    ]:
        response = api.post(f"/{jid}/start", body)
        assert response.status_code in (400, 409, 422), (
            str(body)[:80],
            response.status_code,
            response.content[:300],
        )


# --- options bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("activate", "[]"),
        ("activate", '{"move_runs": "yes"}'),
        ("activate", '{"x": 1}'),
        ("activate", "{"),
        ("clone", '{"name": 5}'),
        ("clone", '{"name": "a\\u0000"}'),
        ("clone", '{"name": "\\ud800"}'),
        ("clone", json.dumps({"name": "x" * 300})),
        ("clone", "[" * 100_000),
    ],
)
def test_option_bodies_are_refused_with_a_4xx(api, path, raw):
    journey = created(api)
    response = api.post(f"/{journey['id']}/{path}", raw=raw)
    assert 400 <= response.status_code < 500, response.content[:300]
    assert Journey.objects.count() == 1


# --- webhook URLs ----------------------------------------------------------------------------------


def webhook_journey(target: str) -> dict:
    return {
        "name": "Hook",
        "entry": {"type": "api"},
        "steps": [{"id": "hook", "type": "webhook", "url": target, "success": None, "failure": None}],
    }


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1/x",
        "http://10.1.2.3/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
        "http://0.0.0.0/",
        "http://localhost:8000/",
        "http://metadata.google.internal/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:pw@example.com/",
        "http://example.com:0/",
        "http://[::1/",
        "ftp://example.com/",
    ],
)
def test_webhook_urls_to_private_hosts_or_odd_schemes_are_refused_at_save(api, target):
    response = api.post("", webhook_journey(target))
    assert response.status_code == 422, response.content[:300]
    assert response.json()["problems"][0]["field"] == "url"


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::1", "::ffff:10.0.0.1", "100.64.0.1", "fe80::1%eth0"],
)
def test_a_hostname_resolving_to_a_private_address_is_refused_at_call_time(monkeypatch, address):
    monkeypatch.setattr(webhook, "_resolve", lambda host, port: ["93.184.216.34", address])
    with pytest.raises(webhook.UnsafeURL):
        webhook.check_url("https://rebind.example.com/hook")
    answer = webhook.post("https://rebind.example.com/hook", body={}, headers={}, key="k", timeout=5)
    assert not answer.ok and not answer.retryable


@pytest.mark.parametrize(
    "address",
    [
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "64:ff9b::a9fe:a9fe",
        "::7f00:1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    ],
)
def test_ipv6_forms_embedding_a_private_ipv4_are_refused(monkeypatch, address):
    monkeypatch.setattr(webhook, "_resolve", lambda host, port: [address])
    with pytest.raises(webhook.UnsafeURL):
        webhook.check_url("https://six.example.com/hook")


def test_liquid_that_loops_or_explodes_fails_the_step_not_the_worker():
    from liquid.exceptions import LiquidError

    context = {"subscriber": {}, "tags": {}, "values": {}, "event": {}}
    for source in [
        "{% for i in (1..100000) %}{% for j in (1..100000) %}x{% endfor %}{% endfor %}",
        "{% assign s = 'xxxxxxxxxx' %}" + "{% assign s = s | append: s %}" * 40 + "{{ s }}",
    ]:
        started = time.monotonic()
        with pytest.raises(LiquidError):
            webhook.render_body({"a": source}, context)
        assert time.monotonic() - started < 5


# --- the panel -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["builder_save", "builder_validate", "builder_activate"])
@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        b"\xff\xfe",
        b"null",
        b'{"definition": []}',
        b'{"definition": {"name": "a\\u0000"}}',
        b'{"definition": {"name": "\\ud800"}}',
        b'{"definition": {"name": "x", "steps": [1]}}',
    ],
)
def test_builder_endpoints_refuse_junk_with_a_4xx(owner_client, project, name, body):
    journey = journey_of(project)
    response = owner_client.post(url(name, journey), data=body, content_type="application/json")
    assert response.status_code in (400, 422), response.content[:300]
    assert response.json()["message"]
    journey.refresh_from_db()
    assert journey.definition == CANVAS_PROMO and journey.status == JourneyStatus.DRAFT


def test_builder_writes_need_csrf_a_marketer_and_the_project(project, member_of, outsider):
    journey = journey_of(project)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member_of(Role.OWNER))
    assert post_json(strict, url("builder_save", journey), PROMO).status_code == 403
    viewer = Client()
    viewer.force_login(member_of(Role.VIEWER))
    other = Client()
    other.force_login(outsider)
    changed = promo(name="Changed")
    for name in ("builder_save", "builder_validate", "builder_activate"):
        assert post_json(viewer, url(name, journey), changed).status_code == 403
        assert post_json(other, url(name, journey), changed).status_code == 404
    journey.refresh_from_db()
    assert journey.name == PROMO["name"] and journey.status == JourneyStatus.DRAFT


@pytest.mark.parametrize(
    "content",
    [
        DEEP,
        b'{"name": "x\\u0000", "steps": []}',
        b'{"name": "\\ud800", "steps": []}',
        b"[]",
        b'"x"',
        json.dumps(
            {"name": "x", "steps": [{"id": "a", "type": "webhook", "url": "http://169.254.169.254/"}]}
        ).encode(),
    ],
)
def test_a_hostile_import_file_is_refused_with_a_message(owner_client, project, content):
    upload = io.BytesIO(content)
    upload.name = "evil.json"
    page = owner_client.post(url("import", project=project), {"file": upload}, follow=True)
    assert page.status_code == 200
    assert "evil.json" in page.content.decode()
    assert not Journey.objects.for_project(project).exists()


def test_dry_run_with_another_projects_subscriber_is_refused(owner_client, project):
    journey = journey_of(project)
    stranger = SubscriberFactory(project=ProjectFactory())
    for subscriber in (str(stranger.public_id), "not-a-uuid", "\x00", ""):
        response = owner_client.post(url("dryrun_start", journey), {"subscriber": subscriber}, follow=True)
        assert response.status_code == 200
        assert (
            "Pick a subscriber of this project" in response.content.decode()
            or "valid UUID" in response.content.decode()
        )
    assert not JourneyRun.objects.exists()
    for name in ("dryrun_forward", "dryrun_fire"):
        response = owner_client.post(url(name, journey), {"run": str(uuid.uuid4()), "name": "X"})
        assert response.status_code == 404
        response = owner_client.post(url(name, journey), {"run": "\x00junk"})
        assert response.status_code == 404


@pytest.mark.parametrize(
    "fields",
    [
        {"keywords": "PROMO\x00", "reply": "hi"},
        {"keywords": ",,,;;;", "reply": "hi"},
        {"keywords": "x" * 100_000, "reply": "hi"},
        {"keywords": "promo", "reply": "\x00"},
        {"keywords": "promo", "reply": "hi", "name": "\x00", "match": "regex"},
        {"keywords": "(a+)+$", "reply": "hi", "match": "regex", "action": "activate"},
        {
            "keywords": "promo",
            "reply": "hi",
            "template": "nope|de",
            "delay_amount": "-1",
            "delay_unit": "eon",
        },
        {"keywords": ", ".join(f"k{i}" for i in range(5_000)), "reply": "hi"},
        {"keywords": "promo", "reply": "{% for i in (1..99999) %}x{% endfor %}"},
        {"keywords": ["a", "b"], "reply": ["x", "y"], "action": "activate"},
        {},
    ],
)
def test_the_keyword_form_with_odd_input_answers_without_a_500(owner_client, project, fields):
    approved_template(project)
    data = {"name": "K", "match": "exact", **fields} if fields else {}
    response = owner_client.post(url("keyword_new", project=project), data)
    assert response.status_code in (200, 302, 400), response.status_code
    for journey in Journey.objects.for_project(project):
        assert "\x00" not in json.dumps(journey.definition)


# --- dates at the edges of the calendar ------------------------------------------------------------

GERMANS = {"type": "field", "field": "language", "op": "eq", "value": "de"}


@pytest.mark.parametrize(
    "schedule",
    [
        {"at": "0001-01-01T00:00:00"},
        {"at": "0001-01-01T00:00:00+05:00"},
        {"at": "9999-12-31T23:59:59-05:00"},
        {"local_time": "09:00", "at": "0001-01-01"},
        {"local_time": "23:59", "at": "9999-12-31"},
        {"every": "P1D", "time": "23:59", "at": "9999-12-31"},
        {"every": "P1D", "local_time": "00:00", "at": "0001-01-01"},
        {"every": "P1096D", "time": "09:00", "at": "9999-01-01"},
    ],
)
def test_a_schedule_at_the_edge_of_the_calendar_is_refused_or_activates_never_a_500(api, schedule):
    body = {
        "name": "Edge",
        "entry": {"type": "segment", "rule": GERMANS, "schedule": schedule},
        "settings": {"reentry": "after_exit", "fallback_time_zone": "America/New_York"},
        "steps": [{"id": "bye", "type": "exit"}],
    }
    response = api.post("", body)
    if response.status_code == 422:
        return
    assert response.status_code == 201, response.content[:300]
    response = api.post(f"/{response.json()['id']}/activate")
    assert response.status_code in (200, 422), response.content[:300]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "steps[0]": "\x00"},
        {"name": "x", "steps": {"a": 1}, "steps[0]": "\x00"},
        {"name": "x", "steps": [], "steps[7].text": "\x00"},
        {"name": "x", "steps": "abc", "steps[1]": "\ud800"},
    ],
)
def test_a_top_level_key_that_looks_like_a_step_path_is_a_422(api, body):
    response = api.post("", body)
    assert response.status_code == 422, response.content[:300]
    assert response.json()["problems"]


@pytest.mark.parametrize(
    "where",
    [
        ("ui", {"x": 10**30, "y": -(10**30)}),
        ("ui", {"x": 1e308, "y": -1e308}),
        ("bindings", {"body.1": 10**30}),
        ("next", 10**30),
        ("id", 10**30),
    ],
)
def test_huge_numbers_in_a_step_are_saved_or_refused_never_a_500(api, where):
    key, value = where
    body = copy.deepcopy(PROMO)
    body["steps"][2][key] = value
    response = api.post("", body)
    assert response.status_code in (201, 422), response.content[:300]
    if response.status_code == 201:
        assert api.get(f"/{response.json()['id']}").status_code == 200


# --- start and drop on an active journey (the request is carried out by the actor) ---------------


@pytest.fixture
def carry_out(monkeypatch, django_capture_on_commit_callbacks):
    from journeys.entry_actors import carry_out_start_request

    send = carry_out_start_request.fn
    monkeypatch.setattr(carry_out_start_request, "send", lambda request_id: send(request_id))

    def post(api, path, body=None, raw=None):
        with django_capture_on_commit_callbacks(execute=True):
            return api.post(path, body, raw=raw)

    return post


def _startable(project):
    from tests.journeys.test_start_api import _journey

    return _journey(project)


@pytest.mark.parametrize(
    "body",
    [
        {"rule": "(" * 5_000},
        {"rule": "T(" * 3_000 + ")" * 3_000},
        {"rule": 'T("city", eq, "' + "x" * 200_000 + '")'},
        {"rule": 'T("city", regex, "(a+)+$")'},
        {"rule": {"type": "and", "rules": "x"}},
        {"rule": {"type": "group", "operator": "and", "children": [{}] * 50}},
        {"subscribers": [{"id": 5}, {"phone": ["x"]}, {"external_id": {"a": 1}}, {}, {"id": "x" * 10_000}]},
        {"subscribers": [{"phone": "+49" + "1" * 5_000}, {"id": str(uuid.uuid4()), "phone": "1"}]},
        {"subscribers": [{"id": "1"}], "values": {"x": "y" * 200_000}},
    ],
)
def test_start_with_hostile_rules_and_items_on_an_active_journey(api, project, carry_out, body):
    journey = _startable(project)
    response = carry_out(api, f"/{journey.public_id}/start", body)
    assert response.status_code in (202, 422), response.content[:300]
    if response.status_code == 202:
        result = api.get(f"/requests/{response.json()['request_id']}")
        assert result.status_code == 200
        assert result.json()["status"] in ("done", "failed"), result.json()


def test_deeply_nested_rule_tree_is_refused(api, project, carry_out):
    journey = _startable(project)
    rule: dict = {"type": "field", "field": "city", "op": "eq", "value": "x"}
    for _ in range(400):
        rule = {"type": "and", "rules": [rule]}
    response = carry_out(api, f"/{journey.public_id}/start", {"rule": rule})
    assert response.status_code in (400, 422), response.content[:300]


def test_a_start_naming_only_unknown_subscribers_finishes_with_them_listed(api, project, carry_out):
    journey = _startable(project)
    stranger = SubscriberFactory(project=ProjectFactory())
    body = {"subscribers": [{"id": str(stranger.public_id)}, {"phone": "12"}, {"id": 5}]}
    response = carry_out(api, f"/{journey.public_id}/start", body)
    assert response.status_code == 202
    result = api.get(f"/requests/{response.json()['request_id']}").json()
    assert result["status"] == "done" and result["result"]["entered"] == 0, result
    assert str(stranger.public_id) not in json.dumps(result) or result["result"].get("unknown")
    assert not JourneyRun.objects.exists()


@pytest.mark.parametrize(
    "until",
    [
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01",
        "9999-12-31T23:00:00",
        "9999-12-31",
    ],
)
def test_a_wait_until_the_edge_of_the_calendar_is_a_422_not_a_500(api, until):
    body = copy.deepcopy(PROMO)
    body["settings"] = {"reentry": "after_exit", "fallback_time_zone": "America/New_York"}
    body["steps"][1] = {"id": "wait", "type": "wait", "until_date": until, "next": "offer"}
    response = api.post("", body)
    assert response.status_code == 422, response.content[:300]
    assert response.json()["problems"][0]["step"] == "wait"


@pytest.mark.parametrize(
    "raw", ["9999-12-31", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00+05:00", "0001-01-01"]
)
def test_an_event_date_at_the_edge_of_the_calendar_is_not_a_date_for_a_wait(raw):
    """A wait until an event's or tag's date (plus up to 3 years of offset): the date comes from
    outside; one the engine cannot add to or store is "not a date" (the run goes on), no crash."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from journeys import timezones

    instant = timezones.parse_instant(raw, ZoneInfo("America/New_York"))
    if instant is not None:
        instant + timedelta(days=3 * 366)
        instant - timedelta(days=3 * 366)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Token": "a\r\nHost: 169.254.169.254"},
        {"X-Token\r\nHost": "x"},
        {"X Token": "x"},
        {"X-Token:": "x"},
        {"X-Token": "a\nb"},
        {"X-Token\n": "x"},
    ],
)
def test_webhook_headers_that_would_split_the_request_are_refused_at_save(api, headers):
    body = webhook_journey("https://hooks.example.com/x")
    body["steps"][0]["headers"] = headers
    response = api.post("", body)
    assert response.status_code == 422, response.content[:300]
    assert response.json()["problems"][0]["field"] == "headers"


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "x" * 200},
        {"cursor": "x" * 5_000},
        {"cursor": "W10:1abc:forged"},
        {"limit": "0"},
        {"limit": str(10**30)},
        {"limit": "1e3"},
        {"status": "deleted"},
        {"status": "\x00"},
    ],
)
def test_list_with_forged_cursors_and_odd_filters_is_a_4xx(api, params):
    response = api.get("", **params)
    assert 400 <= response.status_code < 500, response.content[:300]


@pytest.mark.parametrize(
    "extra",
    [{"format": "wcp-journey/999"}, {"format": 5}, {"format": {"a": 1}}, {"format": "x" * 10_000}],
)
def test_import_with_an_odd_format_marker_is_refused_or_imported_never_a_500(api, extra):
    response = api.post("/import", {**PROMO, **extra})
    assert response.status_code in (201, 422), response.content[:300]


def test_dry_run_fire_with_odd_attributes_answers_without_a_500(owner_client, project):
    journey = journey_of(project)
    subscriber = SubscriberFactory(project=project)
    owner_client.post(url("dryrun_start", journey), {"subscriber": str(subscriber.public_id)})
    run = JourneyRun.objects.filter(dry_run=True).first()
    if run is None:
        pytest.skip("the dry run did not start (draft not runnable here)")
    for attributes in [
        "=",
        "==\n=\n",
        "a" * 100_000,
        "\n".join(f"k{i}=v" for i in range(5_000)),
        "text=\ud7ff",
    ]:
        response = owner_client.post(
            url("dryrun_fire", journey),
            {"run": str(run.public_id), "name": "WhatsAppReceived", "attributes": attributes},
        )
        assert response.status_code in (200, 302, 400), response.status_code


def test_other_panel_writes_need_csrf_a_marketer_and_the_project(project, member_of, outsider):
    journey = journey_of(project)
    subscriber = SubscriberFactory(project=project)
    writes = [
        (
            url("keyword_new", project=project),
            {"name": "K", "keywords": "promo", "reply": "hi", "match": "exact"},
        ),
        (url("dryrun_start", journey), {"subscriber": str(subscriber.public_id)}),
        (url("clone", journey), {}),
        (url("stop", journey), {}),
        (url("import", project=project), {}),
    ]
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member_of(Role.OWNER))
    viewer = Client()
    viewer.force_login(member_of(Role.VIEWER))
    other = Client()
    other.force_login(outsider)
    for target, data in writes:
        assert strict.post(target, data).status_code == 403, target
        assert viewer.post(target, data).status_code == 403, target
        assert other.post(target, data).status_code == 404, target
    for name in ("stats", "dryrun", "export", "builder_counts"):
        assert other.get(url(name, journey)).status_code == 404, name
    assert Journey.objects.count() == 1 and not JourneyRun.objects.exists()
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.DRAFT
