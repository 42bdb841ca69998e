"""The journeys list and the builder's page and JSON endpoints, through the views."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from controlpanel.models import Role
from journeys import counters, services
from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion, RunState
from subscribers.models import Segment
from tests.factories import SubscriberFactory
from whatsapp.models import MessageTemplate, WhatsAppAccount

pytestmark = pytest.mark.django_db

PROMO = {
    "name": "PROMO keyword",
    "entry": {
        "type": "event",
        "event": "WhatsAppReceived",
        "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
    },
    "settings": {"reentry": "after_exit"},
    "steps": [
        {
            "id": "reply",
            "type": "whatsapp_text",
            "text": "Danke! Dein Code: SUSHI20",
            "next": "wait",
            "ui": {"x": 300, "y": 60},
        },
        {"id": "wait", "type": "wait", "duration": "PT1H", "next": "offer", "ui": {"x": 600, "y": 60}},
        {
            "id": "offer",
            "type": "whatsapp_template",
            "template": {"name": "follow_up_offer", "language": "de"},
            "bindings": {"body.1": "{{ subscriber.name }}"},
            "next": None,
        },
    ],
}


# --- helpers --------------------------------------------------------------------------------------


def journey_of(project, data=None, status=JourneyStatus.DRAFT, **kw) -> Journey:
    data = json.loads(json.dumps(data or PROMO))
    return Journey.objects.create(project=project, name=data["name"], definition=data, status=status, **kw)


def url(name: str, journey: Journey | None = None, project=None) -> str:
    project = project or journey.project
    args = [project.slug] + ([journey.public_id] if journey else [])
    return reverse(f"journeys:{name}", args=args)


def post_json(client, target: str, definition: Any):
    return client.post(target, data=json.dumps({"definition": definition}), content_type="application/json")


def approved_template(project, name="follow_up_offer", language="de", buttons=()) -> MessageTemplate:
    account = WhatsAppAccount.objects.filter(project=project).first() or WhatsAppAccount.objects.create(
        project=project,
        waba_id=f"waba-{project.pk}",
        phone_number_id=f"pn-{project.pk}",
        display_phone_number="+4930123",
    )
    components: list[dict[str, Any]] = [
        {"type": "BODY", "text": "Hallo {{1}}, 20 % auf alles!", "example": {"body_text": [["Ana"]]}}
    ]
    if buttons:
        components.append(
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": b} for b in buttons]}
        )
    return MessageTemplate.objects.create(
        project=project, account=account, name=name, language=language, category="MARKETING",
        status="APPROVED", components=components,
    )  # fmt: skip


# --- who may see and do what ------------------------------------------------------------------------


def test_outsider_gets_404_everywhere(client, project, outsider):
    journey = journey_of(project)
    client.force_login(outsider)
    assert client.get(url("list", project=project)).status_code == 404
    assert client.get(url("builder", journey)).status_code == 404
    assert client.get(url("builder_counts", journey)).status_code == 404
    assert post_json(client, url("builder_save", journey), PROMO).status_code == 404
    assert client.get(url("export", journey)).status_code == 404


def test_another_projects_journey_is_404_for_a_member(owner_client, project, member_of):
    from tests.factories import ProjectFactory

    other = journey_of(ProjectFactory())
    # The other project's journey id under this project's slug: not found, not "forbidden".
    target = reverse("journeys:builder", args=[project.slug, other.public_id])
    assert owner_client.get(target).status_code == 404
    save = reverse("journeys:builder_save", args=[project.slug, other.public_id])
    assert post_json(owner_client, save, PROMO).status_code == 404
    assert other.definition == Journey.objects.get(pk=other.pk).definition


def test_viewer_sees_a_read_only_builder_and_cannot_write(client, project, viewer):
    journey = journey_of(project)
    client.force_login(viewer)
    page = client.get(url("builder", journey))
    assert page.status_code == 200
    assert page.context["readonly"].startswith("You can look at this journey")
    assert b'data-testid="save"' not in page.content and b'data-testid="activate"' not in page.content
    assert post_json(client, url("builder_save", journey), {**PROMO, "name": "Hacked"}).status_code == 403
    assert client.post(url("pause", journey)).status_code == 403
    assert client.post(url("new", project=project)).status_code == 403
    assert Journey.objects.get(pk=journey.pk).name == "PROMO keyword"
    listing = client.get(url("list", project=project))
    assert listing.status_code == 200 and b'data-testid="new-journey"' not in listing.content


# --- the list -----------------------------------------------------------------------------------------


def test_empty_list_offers_new_keyword_campaign_and_the_examples(owner_client, project):
    page = owner_client.get(url("list", project=project))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="journeys-empty"' in html
    assert 'data-testid="empty-new-journey"' in html
    assert f"/p/{project.slug}/journeys/keyword/new/" in html
    for key in ("promo", "hilfe"):  # the panel's example_new once it is merged, else the shortcut prefilled
        assert f"example={key}" in html or f"/journeys/examples/{key}/" in html


def test_list_shows_status_entry_and_counters_in_few_queries(owner_client, project):
    journeys = [journey_of(project, status=JourneyStatus.ACTIVE, version=1) for _ in range(5)]
    for j in journeys:
        Journey.objects.filter(pk=j.pk).update(entry_kinds=["event"], keywords=["promo"])
    first = journeys[0]
    counters.bump(project.pk, first.pk, {("", "entered"): 7, ("", "converted"): 2})
    for state in (RunState.WAITING, RunState.WAITING, RunState.DONE):
        JourneyRun.objects.create(
            project=project, journey=first, version=1, subscriber=SubscriberFactory(project=project),
            state=state, step_id="wait", entry_key=str(uuid.uuid4()), entered_at="2026-01-01T00:00:00Z",
        )  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        page = owner_client.get(url("list", project=project))
    assert page.status_code == 200
    # session, user, membership, projects for the switcher, journeys, counters, live runs (+ slack)
    assert len(queries) <= 10, [q["sql"] for q in queries]
    html = page.content.decode()
    assert html.count('data-testid="journey-row"') == 5
    row = html.split(f'data-journey="{first.public_id}"')[1].split("</tr>")[0]
    assert 'data-testid="journey-now">2<' in row
    assert 'data-testid="journey-entered">7<' in row
    assert 'data-testid="journey-converted">2<' in row
    assert "keyword PROMO" in row and "Active" in row
    assert 'data-testid="journey-pause"' in row and 'data-testid="journey-stop"' in row


def test_new_journey_is_a_draft_opened_in_the_builder(owner_client, project):
    response = owner_client.post(url("new", project=project), {"name": "Welcome"})
    journey = Journey.objects.get(project=project)
    assert response.status_code == 302
    assert response["Location"] == url("builder", journey)
    assert journey.status == JourneyStatus.DRAFT and journey.name == "Welcome"
    assert journey.definition["entry"] == {"type": "api"}


def test_pause_resume_and_stop_from_the_list(owner_client, project):
    approved_template(project)
    journey = journey_of(project)
    services.activate(journey=journey, actor=_actor())
    response = owner_client.post(url("pause", journey), follow=True)
    assert response.status_code == 200
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.PAUSED
    assert "paused" in response.content.decode()
    owner_client.post(url("resume", journey))
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.ACTIVE
    owner_client.post(url("stop", journey), {"next": "builder"})
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.STOPPED
    # A refused action says why instead of failing.
    page = owner_client.post(url("pause", journey), follow=True)
    assert "Only an active journey can be paused." in page.content.decode()
    assert page.redirect_chain[-1][0] == url("list", project=project)


def test_resume_from_the_builder_can_move_live_runs_to_the_new_version(owner_client, project):
    approved_template(project)
    before = json.loads(json.dumps(PROMO))
    before["steps"][0]["text"] = "Danke!"
    journey = journey_of(project, status=JourneyStatus.PAUSED, version=1)  # edited: PROMO now
    JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=before)
    for key in ("k1", "k2"):
        JourneyRun.objects.create(
            project=project, journey=journey, version=1, subscriber=SubscriberFactory(project=project),
            state=RunState.WAITING, step_id="wait", entry_key=key, entered_at="2026-01-01T00:00:00Z",
        )  # fmt: skip
    page = owner_client.get(url("builder", journey))
    assert b'data-testid="move-runs"' in page.content and b'data-testid="resume"' in page.content
    response = owner_client.post(url("resume", journey), {"next": "builder", "move_runs": "1"}, follow=True)
    assert response.redirect_chain[-1][0] == url("builder", journey)
    # The panel says which version the subscribers already in the journey walk now.
    assert "resumed as version 2; 2 subscribers in it moved to the new version" in response.content.decode()
    assert set(JourneyRun.objects.filter(journey=journey).values_list("version", flat=True)) == {2}


def _actor():
    from controlpanel.services import Actor

    return Actor(label="test")


# --- the builder page -------------------------------------------------------------------------------


def test_builder_page_hands_the_canvas_registry_templates_and_segments(owner_client, project):
    approved_template(project, buttons=("Ja", "Nein"))
    MessageTemplate.objects.create(
        project=project, account=WhatsAppAccount.objects.get(project=project), name="pending_one",
        language="de", category="MARKETING", status="PENDING", components=[],
    )  # fmt: skip
    segment = Segment.objects.create(project=project, name="Asian food fans", rule={"type": "all"})
    journey = journey_of(project)
    page = owner_client.get(url("builder", journey))
    assert page.status_code == 200
    data = page.context["data"]
    palette = {t["type"]: t for t in data["types"]}
    assert {"whatsapp_text", "wait", "whatsapp_template", "exit"} <= set(palette)
    assert palette["whatsapp_text"]["outlets"] == ["next", "outside_window"]
    assert palette["exit"]["outlets"] == []
    # The canvas writes the timeout's target where the step type reads it, not over the duration.
    assert palette["wait_event"]["outlets"] == ["timeout"]
    assert palette["wait_event"]["outlet_keys"] == {"timeout": "timeout_next"}
    assert palette["whatsapp_text"]["outlet_keys"] == {}
    assert palette["whatsapp_text"]["channel"] == "whatsapp"
    assert [t["name"] for t in data["templates"]] == ["follow_up_offer"]  # approved only
    template = data["templates"][0]
    assert template["buttons"] == ["Ja", "Nein"]
    assert template["placeholders"][0]["key"] == "body.1"
    assert data["segments"] == [{"id": str(segment.public_id), "name": "Asian food fans"}]
    assert data["journey"]["definition"] == PROMO
    assert data["readonly"] == ""
    html = page.content.decode()
    assert 'id="journey-builder-data"' in html and "vendor/drawflow/drawflow.min.js" in html
    assert "<script>" not in html  # CSP: no inline scripts


def test_an_active_journey_is_read_only_with_pause_it_first(owner_client, project):
    journey = journey_of(project, status=JourneyStatus.ACTIVE, version=1)
    page = owner_client.get(url("builder", journey))
    assert "pause it first" in page.context["readonly"]
    assert b'data-testid="pause"' in page.content and b'data-testid="save"' not in page.content
    response = post_json(owner_client, url("builder_save", journey), {**PROMO, "name": "Changed"})
    assert response.status_code == 409
    assert "Pause the journey" in response.json()["message"]
    assert Journey.objects.get(pk=journey.pk).name == "PROMO keyword"


# --- save, validate, activate, counts ---------------------------------------------------------------


def test_save_writes_the_canvas_json_through_the_service(owner_client, project):
    approved_template(project)
    journey = journey_of(project, data={"name": "Draft", "entry": {"type": "api"}, "steps": []})
    response = post_json(owner_client, url("builder_save", journey), PROMO)
    assert response.status_code == 200, response.content
    assert response.json() == {"saved": True, "name": "PROMO keyword", "status": "draft"}
    journey.refresh_from_db()
    assert journey.definition == PROMO
    assert journey.name == "PROMO keyword"
    assert journey.keywords == ["promo"]  # denormalised by the service
    assert journey.definition["steps"][0]["ui"] == {"x": 300, "y": 60}


def test_save_refuses_a_bad_definition_with_the_step_and_field(owner_client, project):
    journey = journey_of(project)
    bad = json.loads(json.dumps(PROMO))
    bad["steps"][0]["next"] = "nowhere"
    bad["steps"][1]["duration"] = ""
    response = post_json(owner_client, url("builder_save", journey), bad)
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert {"step": "reply", "field": "next", "message": "There is no step 'nowhere'."} in problems
    assert any(p["step"] == "wait" and p["field"] == "duration" for p in problems)
    assert Journey.objects.get(pk=journey.pk).definition == PROMO  # nothing saved


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"definition": "x"}', json.dumps({"definition": 5}).encode()],
)
def test_save_answers_400_to_a_body_that_is_not_a_definition(owner_client, project, body):
    journey = journey_of(project)
    response = owner_client.post(url("builder_save", journey), data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["message"]


def unbound() -> dict[str, Any]:
    """PROMO with its template's placeholder not bound yet: a draft may be saved, not activated."""
    data = json.loads(json.dumps(PROMO))
    del data["steps"][2]["bindings"]
    return data


def test_validate_lists_what_blocks_activation(owner_client, project):
    approved_template(project)
    journey = journey_of(project)
    response = post_json(owner_client, url("builder_validate", journey), unbound())
    assert response.status_code == 200
    body = response.json()
    assert [(p["step"], p["field"]) for p in body["problems"]] == [("offer", "bindings.body.1")]
    assert "blocks activation" in body["message"] or "block activation" in body["message"]
    assert Journey.objects.get(pk=journey.pk).definition == unbound()  # saved all the same
    body = post_json(owner_client, url("builder_validate", journey), PROMO).json()
    assert body["problems"] == [] and body["message"] == "Ready to activate."


def test_a_draft_with_a_missing_template_is_saved_and_the_template_blocks_activation(owner_client, project):
    journey = journey_of(project, data=unbound())
    assert post_json(owner_client, url("builder_save", journey), PROMO).status_code == 200
    body = post_json(owner_client, url("builder_validate", journey), PROMO).json()
    assert ("offer", "template.name") in [(p["step"], p["field"]) for p in body["problems"]]


def test_validate_names_the_journey_that_holds_the_keyword(owner_client, project):
    approved_template(project)
    journey_of(
        project, data={**PROMO, "name": "Promo 2"}, status=JourneyStatus.ACTIVE, version=1, keywords=["promo"]
    )
    journey = journey_of(project)
    body = post_json(owner_client, url("builder_validate", journey), PROMO).json()
    assert any("claimed by journey 'Promo 2'" in p["message"] for p in body["problems"])


def test_activate_saves_freezes_a_version_and_reloads(owner_client, project):
    approved_template(project)
    journey = journey_of(project, data={"name": "Draft", "entry": {"type": "api"}, "steps": []})
    response = post_json(owner_client, url("builder_activate", journey), PROMO)
    assert response.status_code == 200, response.content
    assert response.json()["reload"] is True
    journey.refresh_from_db()
    assert journey.status == JourneyStatus.ACTIVE and journey.version == 1
    assert journey.versions.get().definition == PROMO


def test_activate_with_problems_is_refused_and_names_them(owner_client, project):
    approved_template(project)
    journey = journey_of(project, data=unbound())
    response = post_json(owner_client, url("builder_activate", journey), unbound())
    assert response.status_code == 422
    assert [(p["step"], p["field"]) for p in response.json()["problems"]] == [("offer", "bindings.body.1")]
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.DRAFT


def test_counts_are_per_step_and_outlet(owner_client, project):
    journey = journey_of(project, status=JourneyStatus.ACTIVE, version=1)
    counters.bump(
        project.pk, journey.pk, {("reply", "entered"): 3, ("reply", "passed:next"): 2, ("reply", "sent"): 3}
    )
    JourneyRun.objects.create(
        project=project, journey=journey, version=1, subscriber=SubscriberFactory(project=project),
        state=RunState.WAITING, step_id="wait", entry_key="k", entered_at="2026-01-01T00:00:00Z",
    )  # fmt: skip
    response = owner_client.get(url("builder_counts", journey))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "active"
    assert body["counts"]["reply"] == {"entered": 3, "passed:next": 2, "sent": 3}
    assert body["counts"]["wait"] == {"waiting": 1}


# --- clone, export, import ----------------------------------------------------------------------------


def test_clone_export_and_import(owner_client, project):
    approved_template(project)
    journey = journey_of(project, status=JourneyStatus.ACTIVE, version=1)
    response = owner_client.post(url("clone", journey))
    copy = Journey.objects.for_project(project).exclude(pk=journey.pk).get()
    assert response["Location"] == url("builder", copy)
    assert copy.status == JourneyStatus.DRAFT and copy.definition["steps"] == PROMO["steps"]

    exported = owner_client.get(url("export", journey))
    assert exported.status_code == 200
    assert exported["Content-Disposition"] == 'attachment; filename="journey-promo-keyword.json"'
    data = json.loads(exported.content)
    assert data["steps"] == PROMO["steps"]

    upload = io.BytesIO(json.dumps(data).encode())
    upload.name = "promo.json"
    response = owner_client.post(url("import", project=project), {"file": upload})
    imported = Journey.objects.for_project(project).order_by("-pk").first()
    assert response["Location"] == url("builder", imported)
    assert imported.definition["steps"] == PROMO["steps"] and imported.status == JourneyStatus.DRAFT


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe not json", "is not a JSON file"),
        (b'{"name": "x"}', "is not a journey we can import"),
    ],
)
def test_a_bad_import_file_is_refused_with_a_message(owner_client, project, content, message):
    upload = io.BytesIO(content)
    upload.name = "bad.json"
    page = owner_client.post(url("import", project=project), {"file": upload}, follow=True)
    assert page.status_code == 200
    assert message in page.content.decode()
    assert not Journey.objects.for_project(project).exists()


def test_viewer_role_is_enough_to_read_but_not_to_import(client, project, member_of):
    client.force_login(member_of(Role.VIEWER))
    upload = io.BytesIO(b"{}")
    upload.name = "x.json"
    assert client.post(url("import", project=project), {"file": upload}).status_code == 403
