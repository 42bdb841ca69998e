"""/api/v1/journeys through HTTP with a real API key; the JSON Schema against the issue's example
and every example of docs/journeys.md."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema_rs
import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from controlpanel.models import AuditEntry
from journeys import steps as registry
from journeys.definition import parse
from journeys.models import Journey, JourneyStatus, RunState
from journeys.schema import journey_schema
from tests.factories import ProjectFactory
from tests.journeys.test_definition import PROMO
from tests.journeys.test_services import approved_template, keyword_journey, live_run
from tests.subscribers.test_api_subscribers import key_for

pytestmark = pytest.mark.django_db


class Api:
    def __init__(self, client, project):
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {key_for(project)}"}

    def send(self, method: str, path: str, body=None, raw: str | None = None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        return getattr(self.client, method)(
            f"/api/v1/journeys{path}", data=data, content_type="application/json", **self.headers
        )

    def get(self, path: str, **params):
        return self.client.get(f"/api/v1/journeys{path}", params, **self.headers)

    def post(self, path: str, body=None, **kw):
        return self.send("post", path, body, **kw)

    def put(self, path: str, body=None, **kw):
        return self.send("put", path, body, **kw)


@pytest.fixture
def api(client, project):
    # PROMO's template: the WhatsApp step refuses, in drafts too, a template the project lacks.
    approved_template(project)
    return Api(client, project)


def created(api, data=PROMO) -> dict:
    response = api.post("", data)
    assert response.status_code == 201, response.json()
    return response.json()


# --- create, read, list, replace -----------------------------------------------------------------


def test_create_the_promo_example_as_a_draft(api, project):
    body = created(api)
    journey = Journey.objects.get()
    assert body["id"] == str(journey.public_id) and journey.project == project
    assert (body["status"], body["version"], body["keywords"], body["entry_events"]) == (
        "draft",
        0,
        ["promo"],
        ["WhatsAppReceived"],
    )
    assert body["definition"] == PROMO
    assert (body["problems"], body["warnings"]) == ([], [])
    assert AuditEntry.objects.get(action="journey.create").actor_label.startswith("API key")


def test_a_bad_journey_is_422_with_every_problem_by_step_and_field(api):
    data = copy.deepcopy(PROMO)
    data["steps"][1]["next"] = "ofer"
    data["settings"] = {"reentry": "sometimes"}
    response = api.post("", data)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_journey"
    assert body["problems"] == [
        {"step": None, "field": "settings.reentry", "message": "One of never, after_exit, any_time."},
        {"step": "wait", "field": "next", "message": "There is no step 'ofer'."},
    ]
    assert body["message"].startswith("The journey has 2 problems")
    assert not Journey.objects.exists()


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ("[1, 2]", 422, "invalid_journey"),
        ("", 422, "invalid_journey"),
        ("42", 422, "invalid_journey"),
        ('{"name": ', 400, "invalid_json"),
        (
            '{"name": "x", "entry": {"type": "api"}, "steps": [{"id": "a", "type": "exit", "x": "\\u0000"}]}',
            422,
            None,
        ),
        (
            '{"name": "x", "entry": {"type": "api"}, "steps": [{"id": "a", "type": "exit", "x": "\\ud800"}]}',
            422,
            None,
        ),
        (
            '{"name": "x", "entry": {"type": "api"}, "steps": [{"id": "a", "type": "exit", "x": NaN}]}',
            422,
            None,
        ),
    ],
)
def test_no_body_of_any_shape_is_a_500(api, raw, status, code):
    response = api.post("", raw=raw)
    assert response.status_code == status, response.content
    if code:
        assert response.json()["code"] == code
    assert not Journey.objects.exists()


def test_list_newest_first_with_status_filter_and_cursor(api, project):
    for i in range(3):
        created(api, {**PROMO, "name": f"J{i}"})
    Journey.objects.filter(name="J1").update(status=JourneyStatus.PAUSED)
    created_elsewhere = Journey.objects.create(project=ProjectFactory(), name="theirs", definition=PROMO)
    with CaptureQueriesContext(connection) as queries:
        first = api.get("", limit=2).json()
    assert len(queries) <= 4  # auth, key touch, one page query
    assert [j["name"] for j in first["items"]] == ["J2", "J1"]
    second = api.get("", limit=2, cursor=first["next_cursor"]).json()
    assert [j["name"] for j in second["items"]] == ["J0"] and second["next_cursor"] is None
    assert [j["name"] for j in api.get("", status="paused").json()["items"]] == ["J1"]
    assert api.get("", cursor="forged").status_code == 422
    assert created_elsewhere.name not in {j["name"] for j in first["items"] + second["items"]}


def test_get_and_replace(api):
    body = created(api)
    got = api.get(f"/{body['id']}").json()
    assert got["definition"] == PROMO
    changed = {**PROMO, "name": "PROMO v2"}
    response = api.put(f"/{body['id']}", changed)
    assert response.status_code == 200 and response.json()["name"] == "PROMO v2"
    bad = api.put(f"/{body['id']}", {**PROMO, "steps": "none"})
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "steps"


def test_another_projects_journey_is_404_everywhere(api):
    theirs = Journey.objects.create(project=ProjectFactory(), name="theirs", definition=PROMO)
    path = f"/{theirs.public_id}"
    responses = [
        api.get(path),
        api.put(path, PROMO),
        api.post(f"{path}/activate"),
        api.post(f"{path}/pause"),
        api.post(f"{path}/resume"),
        api.post(f"{path}/stop"),
        api.get(f"{path}/stats"),
        api.post(f"{path}/clone"),
        api.get(f"{path}/export"),
    ]
    assert {r.status_code for r in responses} == {404}
    assert responses[0].json()["code"] == "journey_not_found"
    assert Journey.objects.get(pk=theirs.pk).status == JourneyStatus.DRAFT


def test_without_a_key_401(client):
    assert client.get("/api/v1/journeys").status_code == 401


# --- status changes ------------------------------------------------------------------------------


def test_activate_pause_edit_resume_moving_runs_and_stop(api, project):
    body = created(api)
    path = f"/{body['id']}"
    activated = api.post(f"{path}/activate")
    assert activated.status_code == 200, activated.json()
    assert activated.json()["status"] == "active"
    assert activated.json()["activation"] == {
        "version": 1,
        "new_version": True,
        "moved_runs": 0,
        "stayed_runs": 0,
    }

    assert api.put(path, PROMO).status_code == 409  # active: pause first
    journey = Journey.objects.get()
    run = live_run(journey, "wait")
    assert api.post(f"{path}/pause").json()["status"] == "paused"
    edited = copy.deepcopy(PROMO)
    edited["steps"][1]["duration"] = "PT2H"
    assert api.put(path, edited).status_code == 200
    resumed = api.post(f"{path}/resume", {"move_runs": True})
    assert resumed.status_code == 200, resumed.json()
    assert resumed.json()["activation"] == {
        "version": 2,
        "new_version": True,
        "moved_runs": 1,
        "stayed_runs": 0,
    }
    run.refresh_from_db()
    assert run.version == 2

    stopped = api.post(f"{path}/stop")
    assert stopped.json()["status"] == "stopped"
    run.refresh_from_db()
    assert (run.state, run.exit_reason) == (RunState.DONE, "stopped")
    refused = api.post(f"{path}/activate")
    assert refused.status_code == 409 and refused.json()["code"] == "invalid_transition"


def test_activation_refused_by_a_keyword_collision_names_the_other_journey(api, project):
    other = created(api, keyword_journey("Promo 2", "PROMO"))
    assert api.post(f"/{other['id']}/activate").status_code == 200
    mine = created(api)
    response = api.post(f"/{mine['id']}/activate")
    assert response.status_code == 422
    assert response.json()["problems"] == [
        {
            "step": None,
            "field": "entry.conditions[0].value",
            "message": "PROMO is already claimed by journey 'Promo 2'.",
        }
    ]
    assert Journey.objects.get(public_id=mine["id"]).status == JourneyStatus.DRAFT
    # the same collision is visible before trying, on the draft
    assert api.get(f"/{mine['id']}").json()["problems"][0]["message"].startswith("PROMO is already claimed")


@pytest.mark.parametrize(
    ("raw", "status"), [('{"move_runs": "yes"}', 422), ('{"moves": true}', 422), ("[", 400)]
)
def test_activation_options_are_checked(api, project, raw, status):
    body = created(api)
    assert api.post(f"/{body['id']}/activate", raw=raw).status_code == status


def test_pause_and_resume_refusals_are_409(api):
    body = created(api)
    for action in ("pause", "resume"):
        response = api.post(f"/{body['id']}/{action}")
        assert response.status_code == 409 and response.json()["code"] == "invalid_transition"


# --- figures, copies -----------------------------------------------------------------------------


def test_stats_from_the_counters(api, project):
    from journeys import counters

    body = created(api)
    api.post(f"/{body['id']}/activate")
    journey = Journey.objects.get()
    live_run(journey, "wait")
    counters.bump(
        project.pk, journey.pk, {("", "entered"): 4, ("", "exited:completed"): 3, ("reply", "passed:next"): 4}
    )
    stats = api.get(f"/{body['id']}/stats").json()
    assert (stats["entered"], stats["in_journey"]) == (4, 1)
    assert {"reason": "completed", "count": 3} in [
        {k: e[k] for k in ("reason", "count")} for e in stats["exits"]
    ]
    steps = {s["id"]: s for s in stats["steps"]}
    assert steps["reply"]["passed"] == {"next": 4} and steps["wait"]["waiting"] == 1


def test_clone_export_and_import_into_another_project(api, client, project):
    body = created(api)
    clone = api.post(f"/{body['id']}/clone", {"name": "PROMO winter"})
    assert clone.status_code == 201 and clone.json()["name"] == "PROMO winter"
    assert api.post(f"/{body['id']}/clone").json()["name"] == "PROMO keyword (copy)"

    exported = api.get(f"/{body['id']}/export").json()
    assert exported["format"] == "wcp-journey/1" and exported["steps"] == PROMO["steps"]

    elsewhere = ProjectFactory()
    other_api = Api(client, elsewhere)
    imported = other_api.post("/import", exported)
    assert imported.status_code == 201
    assert imported.json()["status"] == "draft"
    assert [(p["step"], p["field"]) for p in imported.json()["problems"]] == [("offer", "template.name")]
    assert Journey.objects.get(public_id=imported.json()["id"]).project == elsewhere

    refused = other_api.post("/import", {**exported, "format": "other/2"})
    assert refused.status_code == 422 and refused.json()["problems"][0]["field"] == "format"


# --- schema --------------------------------------------------------------------------------------


def test_the_schema_is_served_and_is_a_valid_2020_12_schema(api):
    response = api.get("/schema")
    assert response.status_code == 200
    schema = response.json()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert jsonschema_rs.meta.is_valid(schema)
    types = {d["properties"]["type"]["const"] for k, d in schema["$defs"].items() if k.startswith("step_")}
    assert types >= {
        "whatsapp_template",
        "whatsapp_text",
        "send_email",
        "send_push",
        "wait",
        "wait_event",
        "segment_split",
        "reachability",
        "ab_split",
        "update_tags",
        "webhook",
        "exit",
    }


def _validator(ref: str | None = None):
    schema = journey_schema()
    if ref:
        schema = {"$schema": schema["$schema"], "$ref": f"#/$defs/{ref}", "$defs": schema["$defs"]}
    return jsonschema_rs.Draft202012Validator(schema)


def test_the_schema_takes_the_issues_example_and_refuses_wrong_shapes():
    validator = _validator()
    assert validator.is_valid(PROMO)
    for broken in (
        {**PROMO, "stepz": []},
        {k: v for k, v in PROMO.items() if k != "entry"},
        {**PROMO, "steps": [{"id": "a b", "type": "exit"}]},
        {**PROMO, "steps": [{"id": "w", "type": "wait", "duration": "1h"}]},
        {**PROMO, "steps": [{"id": "w", "type": "wait", "duration": "PT1H", "until_time": "09:00"}]},
        {**PROMO, "steps": [{"id": "t", "type": "teleport"}]},
        {**PROMO, "settings": {"reentry": "sometimes"}},
    ):
        assert not validator.is_valid(broken), broken


DOCS = Path(settings.BASE_DIR) / "docs" / "journeys.md"


def _doc_examples() -> list[object]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.S)]


def _as_journey(example) -> tuple[str | None, dict]:
    """(schema def to check the fragment against, a whole journey holding it for parse)."""
    base = {"name": "docs", "entry": {"type": "api"}, "steps": [{"id": "end", "type": "exit"}]}
    if isinstance(example, list):
        entry = {"type": "event", "event": "X", "conditions": example}
        return "conditions", {**base, "entry": entry}
    if "steps" in example:
        return None, example
    if "settings" in example:
        return "settings_fragment", {**base, **example}
    if "id" in example:
        step = example
        named = {t for t in registry.get(step["type"]).outlets(step).values() if t}
        # a step a wait_event listens to comes before it; every step it leads to, as exits, after
        before = [
            {"id": e["of_step"], "type": "wait", "duration": "PT1M", "next": step["id"]}
            for e in step.get("events", [])[:1]
            if e.get("of_step")
        ]
        after = [{"id": n, "type": "exit"} for n in sorted(named)]
        return "step", {**base, "steps": [*before, step, *after]}
    return "entry", {**base, "entry": example}


def test_every_docs_example_validates_against_the_schema_and_parses():
    examples = _doc_examples()
    assert len(examples) >= 15
    kinds = set()
    for example in examples:
        ref, journey = _as_journey(example)
        kinds.add(ref)
        if ref == "settings_fragment":
            assert _validator("settings").is_valid(example["settings"]), example
        else:
            errors = [e.message for e in _validator(ref).iter_errors(example)]
            assert not errors, (example, errors)
        assert _validator().is_valid(journey), journey
        parse(journey)
    assert kinds == {None, "step", "entry", "conditions", "settings_fragment"}
    documented = {e["type"] for e in examples if isinstance(e, dict) and "id" in e}
    assert documented == {
        "whatsapp_template",
        "whatsapp_text",
        "send_email",
        "send_push",
        "wait",
        "wait_event",
        "segment_split",
        "reachability",
        "ab_split",
        "update_tags",
        "webhook",
        "exit",
    }
