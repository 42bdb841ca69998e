"""Small builders shared by the journey tests of the messaging slice (not a conftest: explicit imports)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from journeys.definition import parse
from journeys.models import Journey, JourneyRun, JourneyRunStep, JourneyStatus, JourneyVersion
from journeys.steps import Visit
from whatsapp.models import MessageTemplate, WhatsAppAccount


def make_journey(project, steps: list[dict], *, entry: dict | None = None, **settings: Any) -> Journey:
    definition = {
        "name": "J",
        "entry": entry or {"type": "api"},
        "settings": {"reentry": "after_exit", **settings},
        "steps": steps,
    }
    journey = Journey.objects.create(
        project=project,
        name="J",
        definition=definition,
        status=JourneyStatus.ACTIVE,
        version=1,
        entry_events=[entry["event"]] if entry and entry.get("type") == "event" else [],
    )
    JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=definition)
    return journey


def make_run(journey: Journey, subscriber, *, now: datetime, context: dict | None = None, **kw) -> JourneyRun:
    return JourneyRun.objects.create(
        project=journey.project,
        journey=journey,
        version=1,
        subscriber=subscriber,
        step_id=journey.definition["steps"][0]["id"],
        wake_at=now,
        context=context or {},
        entry_key=kw.pop("entry_key", f"test:{subscriber.pk}:{now.timestamp()}"),
        entered_at=kw.pop("entered_at", now),
        **kw,
    )


def visit(
    run: JourneyRun,
    step_id: str,
    *,
    now: datetime,
    event: dict | None = None,
    timer: bool = False,
    dry_run: bool = False,
) -> Visit:
    """What the engine hands a step: the visit row is got or created, as the engine does."""
    run = JourneyRun.objects.select_related("journey__project", "subscriber").get(pk=run.pk)
    definition = parse(run.journey.definition)
    step = definition.steps[step_id]
    record, created = JourneyRunStep.objects.get_or_create(
        run=run,
        step_id=step_id,
        defaults={"project_id": run.project_id, "step_type": step.type, "entered_at": now},
    )
    return Visit(
        journey=run.journey,
        definition=definition,
        run=run,
        step=step,
        subscriber=run.subscriber,
        record=record,
        now=now,
        first=created,
        timer=timer,
        event=event,
        dry_run=dry_run,
    )


def make_account(project) -> WhatsAppAccount:
    return WhatsAppAccount.objects.create(
        project=project,
        waba_id="102290129340398",
        phone_number_id=f"1065{project.pk:08d}",
        display_phone_number="15550783881",
        access_token="EAAG-secret-token",
        app_secret="app-secret",
    )


def make_template(account, **kw) -> MessageTemplate:
    defaults = {
        "project": account.project,
        "account": account,
        "name": "support_menu",
        "language": "de",
        "category": "MARKETING",
        "status": "APPROVED",
        "components": [
            {"type": "BODY", "text": "Hallo {{1}}, dein Code: {{2}}"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Support"},
                    {"type": "QUICK_REPLY", "text": "Angebote"},
                ],
            },
        ],
    }
    defaults.update(kw)
    return MessageTemplate.objects.create(**defaults)
