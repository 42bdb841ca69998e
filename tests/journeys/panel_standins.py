"""Stand-ins for the panel slice's tests: step types and the dry run module of other slices.

# stand-in until messaging, engine land: the integrator removes this module and the fixtures using it.

Step types register only where the real one is missing, so with the real modules merged the
tests run against them.
"""

from __future__ import annotations

import sys
import types
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from journeys import steps
from journeys.definition import parse_duration
from journeys.models import JourneyRun, JourneyRunStep, RunState
from whatsapp.models import MessageTemplate


class _StandInStep:
    def __init__(self, type_: str, channel: str, outlets: tuple[str, ...]):
        self.type, self.label, self.channel, self._outlets = type_, type_.replace("_", " "), channel, outlets

    def check(self, data: dict[str, Any], ctx: Any) -> list:
        return []

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        found = {name: data.get(name) for name in self._outlets}
        for text, target in (data.get("buttons") or {}).items():
            found[f"button:{text}"] = target
        return found

    def run(self, visit: Any) -> Any:
        return steps.Go("next")


def register_step_standins() -> None:
    # stand-in until messaging lands (whatsapp_text, whatsapp_template) and engine lands (wait)
    for type_, channel, outlets in (
        ("whatsapp_text", "whatsapp", ("next", "outside_window")),
        ("whatsapp_template", "whatsapp", ("next",)),
        ("wait", "", ("next",)),
    ):
        if steps.get(type_) is None:
            steps.register(_StandInStep(type_, channel, outlets))


# --- journeys.dryrun ---------------------------------------------------------------------------------


def _steps_of(run: JourneyRun) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in run.context["definition"]["steps"]}


def _walk(run: JourneyRun, step_id: str | None, clock: datetime) -> None:
    """Walk from ``step_id`` until a wait: what the engine's dry run does, minus everything real."""
    by_id = _steps_of(run)
    while step_id is not None:
        step = by_id[step_id]
        visit, _ = JourneyRunStep.objects.get_or_create(
            run=run,
            step_id=step_id,
            defaults={"project_id": run.project_id, "step_type": step["type"], "entered_at": clock},
        )
        run.step_id = step_id
        if step["type"] == "whatsapp_text":
            visit.detail = {"would_send": step["text"]}
        elif step["type"] == "whatsapp_template":
            template = MessageTemplate.objects.filter(
                project_id=run.project_id,
                name=step["template"]["name"],
                language=step["template"]["language"],
            ).first()
            body = next((c.get("text", "") for c in template.components if c.get("type") == "BODY"), "")
            visit.detail = {"template": template.name, "body": body, "outcome": "would_send"}
        if step["type"] == "wait" or (step["type"] == "whatsapp_template" and step.get("buttons")):
            visit.save()
            run.state = RunState.WAITING
            run.wake_at = clock + (parse_duration(step.get("duration", "P1D")) or timedelta(days=1))
            break
        visit.outlet, visit.finished_at = "next", clock
        visit.save()
        step_id = step.get("next")
    else:
        run.state, run.exit_reason, run.exited_at, run.wake_at = RunState.DONE, "completed", clock, None
    run.context = {**run.context, "clock": clock.isoformat()}
    run.save()


def _start(*, journey, subscriber, definition=None, event=None) -> JourneyRun:
    now = timezone.now()
    entry = {"event": {**event, "occurred_at": now.isoformat()}} if event else {}
    run = JourneyRun.objects.create(
        project_id=journey.project_id,
        journey=journey,
        version=journey.version,
        subscriber=subscriber,
        step_id="",
        entry_key=f"dry:{now.timestamp()}:{subscriber.pk}",
        dry_run=True,
        entered_at=now,
        context={"definition": definition or journey.definition, "clock": now.isoformat(), **entry},
    )
    first = run.context["definition"]["steps"][0]["id"]
    _walk(run, first, now)
    return run


def _fast_forward(run: JourneyRun) -> list:
    if run.state != RunState.WAITING or run.wake_at is None:
        return []
    clock = run.wake_at
    step = _steps_of(run)[run.step_id]
    JourneyRunStep.objects.filter(run=run, step_id=run.step_id).update(outlet="next", finished_at=clock)
    _walk(run, step.get("next"), clock)
    return list(run.steps.order_by("entered_at", "pk"))


def _fire(run: JourneyRun, name: str, attributes: dict[str, Any]) -> list:
    step = _steps_of(run).get(run.step_id) or {}
    target = (step.get("buttons") or {}).get(attributes.get("button_text", ""))
    if run.state == RunState.WAITING and name == "WhatsAppReceived" and target:
        clock = datetime.fromisoformat(run.context["clock"])
        outlet = f"button:{attributes['button_text']}"
        JourneyRunStep.objects.filter(run=run, step_id=run.step_id).update(outlet=outlet, finished_at=clock)
        _walk(run, target, clock)
        return _timeline(run)
    return []


def _timeline(run: JourneyRun) -> list[JourneyRunStep]:
    return list(run.steps.order_by("entered_at", "pk"))


def dryrun_module() -> types.ModuleType:
    # stand-in until engine lands (journeys/dryrun.py)
    module = types.ModuleType("journeys.dryrun")
    module.start = _start
    module.fast_forward = _fast_forward
    module.fire = _fire
    module.timeline = _timeline
    return module


def install_dryrun(monkeypatch) -> types.ModuleType:
    """Put the stand-in where ``import journeys.dryrun`` finds it (the real one when merged wins)."""
    try:
        import journeys.dryrun as real

        return real
    except ImportError:
        module = dryrun_module()
        monkeypatch.setitem(sys.modules, "journeys.dryrun", module)
        return module
