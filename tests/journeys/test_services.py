"""Journey services: drafts, validation with keyword collisions, activation and versions, stop,
clone, export and import; each writes an audit entry and stays inside its project."""

from __future__ import annotations

import copy
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from controlpanel.models import AuditEntry
from controlpanel.services import Actor
from journeys import services
from journeys.definition import DefinitionError
from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion, RunState
from journeys.services import JourneyRefused
from subscribers.models import Segment
from tests.factories import ProjectFactory, SubscriberFactory
from tests.journeys.test_definition import PROMO
from whatsapp.models import MessageTemplate, WhatsAppAccount

pytestmark = pytest.mark.django_db

ACTOR = Actor(label="test")


def keyword_journey(name: str, *words: str, op: str = "keyword") -> dict:
    data = copy.deepcopy(PROMO)
    data["name"] = name
    value = list(words) if len(words) > 1 else words[0]
    data["entry"]["conditions"] = [{"attribute": "text", "op": op, "value": value}]
    data["steps"] = [{"id": "reply", "type": "whatsapp_text", "text": "Hi", "next": None}]
    return data


def approved_template(project, name: str = "follow_up_offer") -> MessageTemplate:
    account = WhatsAppAccount.objects.filter(project=project).first() or WhatsAppAccount.objects.create(
        project=project, waba_id="1", phone_number_id=f"pn-{project.pk}", display_phone_number="1555"
    )
    return MessageTemplate.objects.get_or_create(
        project=project,
        account=account,
        name=name,
        language="de",
        defaults={"category": "MARKETING", "status": "APPROVED"},
    )[0]


def make(project, data, status=JourneyStatus.DRAFT) -> Journey:
    # The WhatsApp step refuses a template the project does not have, in drafts too.
    approved_template(project)
    journey = services.create_journey(project=project, data=data, actor=ACTOR)
    if status != JourneyStatus.DRAFT:
        journey = services.activate(journey=journey, actor=ACTOR)
    if status == JourneyStatus.PAUSED:
        journey = services.pause(journey=journey, actor=ACTOR)
    return journey


def actions(journey) -> list[str]:
    return list(
        AuditEntry.objects.filter(object_id=journey.public_id).order_by("id").values_list("action", flat=True)
    )


# --- drafts --------------------------------------------------------------------------------------


def test_create_writes_a_draft_with_what_the_consumer_looks_up(project):
    journey = services.create_journey(
        project=project, data=keyword_journey("P", "Promo!", "AKTION"), actor=ACTOR
    )
    journey.refresh_from_db()
    assert (journey.status, journey.name, journey.version) == (JourneyStatus.DRAFT, "P", 0)
    assert (journey.entry_kinds, journey.entry_events, journey.keywords) == (
        ["event"],
        ["WhatsAppReceived"],
        ["aktion", "promo"],
    )
    assert actions(journey) == ["journey.create"]


def test_create_refuses_a_bad_definition_and_writes_nothing(project):
    with pytest.raises(DefinitionError) as caught:
        services.create_journey(project=project, data={"name": "x", "steps": "no"}, actor=ACTOR)
    assert {p.field for p in caught.value.problems} == {"entry", "steps"}
    assert not Journey.objects.exists()


def test_update_only_drafts_and_paused_journeys(project):
    journey = make(project, PROMO, JourneyStatus.ACTIVE)
    changed = {**PROMO, "name": "PROMO v2"}
    with pytest.raises(JourneyRefused, match="Pause the journey"):
        services.update_journey(journey=journey, data=changed, actor=ACTOR)
    services.pause(journey=journey, actor=ACTOR)
    assert services.update_journey(journey=journey, data=changed, actor=ACTOR).name == "PROMO v2"


# --- collisions ----------------------------------------------------------------------------------


def test_a_keyword_of_an_active_or_paused_journey_blocks_and_names_it(project):
    make(project, keyword_journey("Promo 2", "PROMO"), JourneyStatus.ACTIVE)
    make(project, keyword_journey("Hilfe", "hilfe"), JourneyStatus.PAUSED)
    make(project, keyword_journey("Old draft", "sushi"))
    mine = make(project, keyword_journey("Mine", "Promo!", "Hílfe", "sushi"))
    problems = services.validate(mine)
    assert [(p.field, p.message) for p in problems] == [
        ("entry.conditions[0].value", "PROMO is already claimed by journey 'Promo 2'."),
        ("entry.conditions[0].value", "HILFE is already claimed by journey 'Hilfe'."),
    ]
    with pytest.raises(DefinitionError):
        services.activate(journey=mine, actor=ACTOR)
    assert Journey.objects.get(pk=mine.pk).status == JourneyStatus.DRAFT


def test_another_projects_keyword_and_a_stopped_journey_do_not_collide(project):
    make(ProjectFactory(), keyword_journey("Theirs", "promo"), JourneyStatus.ACTIVE)
    stopped = make(project, keyword_journey("Stopped", "promo"), JourneyStatus.ACTIVE)
    services.stop(journey=stopped, actor=ACTOR)
    mine = make(project, keyword_journey("Mine", "promo"))
    assert services.validate(mine) == []
    assert services.activate(journey=mine, actor=ACTOR).status == JourneyStatus.ACTIVE


def test_opt_out_and_opt_in_words_are_reserved(project):
    WhatsAppAccount.objects.create(
        project=project, waba_id="1", phone_number_id="pn-1", display_phone_number="1555"
    )
    mine = make(project, keyword_journey("Mine", "stop", "Start!"))
    messages = [p.message for p in services.validate(mine)]
    assert len(messages) == 2
    assert messages[0].startswith("STOP is an opt-out keyword of") and "answers it itself" in messages[0]
    assert messages[1].startswith("START is an opt-in keyword of")


def test_loose_conditions_warn_but_do_not_block(project):
    make(project, keyword_journey("Promo 2", "promo"), JourneyStatus.ACTIVE)
    for op, value in (("contains", "prom"), ("starts_with", "PRO"), ("regex", r"^pro.o$")):
        mine = make(project, keyword_journey(f"Loose {op}", value, op=op))
        problems, warnings = services.validate_with_warnings(mine)
        assert problems == []
        assert [w.message for w in warnings] == [
            f"This {op.replace('_', ' ')} condition also takes PROMO, claimed by journey 'Promo 2'."
        ]
    unrelated = make(project, keyword_journey("Sushi", "sushi", op="contains"))
    assert services.validate_with_warnings(unrelated) == ([], [])


def test_an_inbound_entry_without_conditions_warns(project):
    data = keyword_journey("All", "x")
    data["entry"]["conditions"] = []
    problems, warnings = services.validate_with_warnings(make(project, data))
    assert problems == []
    assert [(w.field, w.message) for w in warnings] == [
        ("entry.conditions", "Every inbound message would start this journey: add a keyword condition.")
    ]


def test_a_keyword_taken_by_another_journeys_loose_condition_warns(project):
    make(project, keyword_journey("Catch-all", "pro", op="contains"), JourneyStatus.ACTIVE)
    mine = make(project, keyword_journey("Mine", "promo"))
    problems, warnings = services.validate_with_warnings(mine)
    assert problems == []
    assert [w.message for w in warnings] == [
        "Journey 'Catch-all' has a contains condition that also takes PROMO."
    ]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_activations_racing_for_one_keyword_let_one_win(monkeypatch):
    checked = services.validate

    def slow_validate(journey):
        # Hold the window between the check and the write open, so both activations are in it.
        problems = checked(journey)
        time.sleep(0.5)
        return problems

    monkeypatch.setattr(services, "validate", slow_validate)
    project = ProjectFactory()
    approved_template(project)
    first = make(project, keyword_journey("One", "promo"))
    second = make(project, keyword_journey("Two", "PROMO!"))
    barrier = threading.Barrier(2)
    outcomes = []

    def go(journey):
        try:
            barrier.wait()
            services.activate(journey=journey, actor=ACTOR)
            outcomes.append("active")
        except DefinitionError as exc:
            outcomes.append(exc.problems[0].message)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=go, args=(j,)) for j in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) in (
        ["PROMO is already claimed by journey 'One'.", "active"],
        ["PROMO is already claimed by journey 'Two'.", "active"],
    )
    assert Journey.objects.filter(status=JourneyStatus.ACTIVE).count() == 1


# --- references ----------------------------------------------------------------------------------


def template_journey(template: str, segment: str | None = None) -> dict:
    data = copy.deepcopy(PROMO)
    data["steps"][2]["template"] = {"name": template, "language": "de"}
    if segment:
        data["steps"][2]["next"] = "split"
        data["steps"].append({"id": "split", "type": "segment_split", "segment": segment})
    return data


def test_validation_wants_templates_that_exist_and_are_approved(project):
    journey = make(project, template_journey("follow_up_offer"))
    assert services.validate(journey) == []
    template = MessageTemplate.objects.get()
    template.status = "PENDING"
    template.save()
    problems = services.validate(journey)
    assert [p.step for p in problems] == ["offer"] and "pending" in problems[0].message
    template.delete()
    problems = services.validate(journey)
    assert [p.step for p in problems] == ["offer"]
    assert "There is no template follow_up_offer (de)" in problems[0].message


# --- activation and versions ---------------------------------------------------------------------


def live_run(journey, step_id: str, **extra) -> JourneyRun:
    fields = {
        "project": journey.project,
        "journey": journey,
        "version": journey.version,
        "subscriber": SubscriberFactory(project=journey.project),
        "state": RunState.WAITING,
        "step_id": step_id,
        "entry_key": f"t:{JourneyRun.objects.count()}",
        "entered_at": timezone.now(),
    }
    return JourneyRun.objects.create(**{**fields, **extra})


def test_activation_freezes_a_version_only_when_the_definition_changed(project):
    journey = make(project, PROMO, JourneyStatus.ACTIVE)
    assert journey.version == 1 and JourneyVersion.objects.get().definition == PROMO
    assert services.activate(journey=journey, actor=ACTOR).version == 1  # already active: nothing
    services.pause(journey=journey, actor=ACTOR)
    assert services.resume(journey=journey, actor=ACTOR).version == 1  # unchanged: same version
    assert JourneyVersion.objects.count() == 1


def test_resuming_an_unchanged_journey_does_not_trip_over_a_template_paused_meanwhile(project):
    journey = make(project, PROMO, JourneyStatus.PAUSED)
    MessageTemplate.objects.update(status="PAUSED")
    assert services.validate(journey)  # an edit would have to fix it ...
    assert services.resume(journey=journey, actor=ACTOR).status == JourneyStatus.ACTIVE  # ... a resume not
    services.pause(journey=journey, actor=ACTOR)
    services.update_journey(journey=journey, data={**PROMO, "name": "edited"}, actor=ACTOR)
    with pytest.raises(DefinitionError):
        services.resume(journey=journey, actor=ACTOR)


def test_runs_stay_on_their_version_unless_moved_where_their_step_still_exists(project):
    journey = make(project, PROMO, JourneyStatus.ACTIVE)
    at_wait = live_run(journey, "wait")
    at_offer = live_run(journey, "offer")
    leased = live_run(journey, "wait", lease_until=timezone.now() + timedelta(minutes=1))
    finished = live_run(journey, "wait", state=RunState.DONE)
    services.pause(journey=journey, actor=ACTOR)
    edited = copy.deepcopy(PROMO)
    edited["steps"][1]["duration"] = "PT2H"
    edited["steps"][1]["next"] = "final"
    edited["steps"][2] = {"id": "final", "type": "exit"}  # "offer" is gone
    services.update_journey(journey=journey, data=edited, actor=ACTOR)

    outcome = services.resume_journey(journey=journey, actor=ACTOR, move_runs=True)

    assert (outcome.version, outcome.new_version, outcome.moved, outcome.stayed) == (2, True, 1, 2)
    versions = dict(JourneyRun.objects.values_list("pk", "version"))
    assert versions == {at_wait.pk: 2, at_offer.pk: 1, leased.pk: 1, finished.pk: 1}
    entry = AuditEntry.objects.filter(action="journey.resume").get()
    assert entry.changes == {"version": 2, "moved_runs": 1, "stayed_runs": 2}
    assert actions(journey) == [
        "journey.create",
        "journey.activate",
        "journey.pause",
        "journey.update",
        "journey.resume",
    ]


def test_without_move_runs_every_live_run_stays(project):
    journey = make(project, PROMO, JourneyStatus.ACTIVE)
    live_run(journey, "wait")
    services.pause(journey=journey, actor=ACTOR)
    services.update_journey(journey=journey, data={**PROMO, "name": "v2"}, actor=ACTOR)
    outcome = services.resume_journey(journey=journey, actor=ACTOR)
    assert (outcome.version, outcome.moved, outcome.stayed) == (2, 0, 1)
    assert JourneyRun.objects.get().version == 1


def test_a_type_change_under_the_same_id_does_not_move_a_run(project):
    journey = make(project, PROMO, JourneyStatus.ACTIVE)
    live_run(journey, "wait")
    services.pause(journey=journey, actor=ACTOR)
    edited = copy.deepcopy(PROMO)
    edited["steps"][1] = {"id": "wait", "type": "whatsapp_text", "text": "x", "next": "offer"}
    services.update_journey(journey=journey, data=edited, actor=ACTOR)
    assert services.resume_journey(journey=journey, actor=ACTOR, move_runs=True).moved == 0


def test_pause_resume_stop_and_their_refusals(project):
    journey = make(project, PROMO)
    with pytest.raises(JourneyRefused):
        services.pause(journey=journey, actor=ACTOR)
    with pytest.raises(JourneyRefused):
        services.resume(journey=journey, actor=ACTOR)
    services.activate(journey=journey, actor=ACTOR)
    run = live_run(Journey.objects.get(pk=journey.pk), "wait")
    services.pause(journey=journey, actor=ACTOR)
    stopped = services.stop(journey=journey, actor=ACTOR)
    assert stopped.status == JourneyStatus.STOPPED and stopped.stopped_at is not None
    run.refresh_from_db()
    assert (run.state, run.exit_reason) == (RunState.DONE, "stopped")
    assert services.stop(journey=journey, actor=ACTOR).status == JourneyStatus.STOPPED  # idempotent
    with pytest.raises(JourneyRefused, match="clone it"):
        services.activate(journey=journey, actor=ACTOR)
    with pytest.raises(JourneyRefused, match="clone it"):
        services.update_journey(journey=journey, data=PROMO, actor=ACTOR)
    assert actions(journey) == ["journey.create", "journey.activate", "journey.pause", "journey.stop"]
    assert AuditEntry.objects.get(action="journey.stop").changes == {"runs_ended": 1}


# --- clone, export, import -----------------------------------------------------------------------


def test_clone_is_a_draft_copy_under_a_new_name(project):
    original = make(project, PROMO, JourneyStatus.ACTIVE)
    copy_ = services.clone_journey(journey=original, actor=ACTOR)
    assert (copy_.status, copy_.name, copy_.definition["name"]) == (
        JourneyStatus.DRAFT,
        "PROMO keyword (copy)",
        "PROMO keyword (copy)",
    )
    assert copy_.definition["steps"] == PROMO["steps"] and copy_.project == project
    named = services.clone_journey(journey=original, actor=ACTOR, name="Promo winter")
    assert named.name == "Promo winter"
    assert Journey.objects.get(pk=original.pk).definition == PROMO
    assert actions(copy_) == ["journey.clone"]
    # the copy claims the same keyword: it cannot run beside the original
    assert "already claimed by journey 'PROMO keyword'" in services.validate(copy_)[0].message


def test_export_then_import_into_another_project_lists_missing_references(project):
    segment = Segment.objects.create(project=project, name="VIP", rule={"type": "all"})
    source = make(project, template_journey("follow_up_offer", segment=str(segment.public_id)))
    exported = services.export_journey(source)
    assert exported["format"] == "wcp-journey/1"
    assert exported["steps"][3]["segment"] == str(segment.public_id)

    elsewhere = ProjectFactory()
    imported = services.import_journey(project=elsewhere, data=exported, actor=ACTOR)
    assert (imported.project, imported.status, imported.name) == (
        elsewhere,
        JourneyStatus.DRAFT,
        "PROMO keyword",
    )
    assert "format" not in imported.definition
    problems = {(p.step, p.field) for p in services.validate(imported)}
    assert problems == {("offer", "template.name"), ("split", "segment")}
    audit = AuditEntry.objects.get(action="journey.import")
    assert audit.project == elsewhere
    assert {(m["step"], m["field"]) for m in audit.changes["missing"]} == problems


def test_import_refuses_another_format_and_a_broken_structure(project):
    with pytest.raises(DefinitionError) as caught:
        services.import_journey(project=project, data={**PROMO, "format": "pushwoosh/9"}, actor=ACTOR)
    assert caught.value.problems[0].field == "format"
    with pytest.raises(DefinitionError):
        services.import_journey(project=project, data=[PROMO], actor=ACTOR)
    broken = copy.deepcopy(PROMO)
    broken["steps"][0]["next"] = "nowhere"
    with pytest.raises(DefinitionError):
        services.import_journey(project=project, data=broken, actor=ACTOR)
    assert not Journey.objects.exists()
