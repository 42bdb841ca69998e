"""API entries and drops: ``POST /api/v1/journeys/{id}/start`` and ``POST /api/v1/journeys/drop``.

A request is accepted at once as a ``JourneyStartRequest`` row (status ``queued``) and carried out
by an actor after commit (``carry_out``), so a request of 10,000 subscribers (or a rule matching a
million) never holds the HTTP request. Carrying out is idempotent: a request runs under its row
lock only while ``queued``, and every run it starts has the entry key
``api:<request id>:<subscriber id>``, so an actor run twice, or retried after a crash, enters
nobody twice.

Subscribers are named by ``id`` (the public id), ``phone`` or ``external_id``; they are looked
up in the project set-based (three queries for the whole list). One that is not found, or an
item that is malformed, is listed in the result with its index and field, never a failure of the
whole request. The entry rules (re-entry, cap) are ``entry.py``'s, as for every other entry; the
start's ``values`` go to each run's ``context["values"]`` (bindings read ``{{ values.x }}``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.wording import mid_sentence
from subscribers.errors import InvalidInput
from subscribers.models import Subscriber
from subscribers.phones import normalize_phone
from subscribers.segments import compiler
from subscribers.segments.text import RuleSyntaxError, parse_rule

from .entry import enter_audience
from .models import Journey, JourneyRun, JourneyStartRequest, JourneyStatus, RunState, StartRequestStatus
from .versions import definition_of

MAX_SUBSCRIBERS = 10_000
MAX_VALUES_BYTES = 8_192  # copied into every run's context
MAX_ERRORS = 100  # listed per request; the rest are counted
KEYS = ("id", "phone", "external_id")


class StartRefused(Exception):
    """The journey does not take starts now (409); ``message`` says why in plain words."""

    def __init__(self, message: str, *, code: str = "journey_not_startable"):
        self.message = message
        self.code = code
        super().__init__(message)


# ---- accepting --------------------------------------------------------------------------------


def check_startable(journey: Journey) -> None:
    """Only an active journey with an ``api`` entry takes starts."""
    if journey.status != JourneyStatus.ACTIVE or not journey.version:
        raise StartRefused(
            _("The journey is %(status)s: only an active journey can be started.")
            % {"status": mid_sentence(journey.get_status_display())}
        )
    if not any(e.type == "api" for e in definition_of(journey, journey.version).entries):
        raise StartRefused(
            _("The journey has no API entry: add an entry of type api to start it through the API."),
            code="no_api_entry",
        )


@transaction.atomic
def request_start(
    *,
    journey: Journey,
    subscribers: list[dict[str, Any]] | None,
    rule: dict[str, Any] | str | None,
    values: dict[str, Any] | None,
) -> JourneyStartRequest:
    """Accept a start (``subscribers`` or ``rule``, not both): InvalidInput for bad input,
    StartRefused when the journey takes no starts. Queues the work after commit."""
    check_startable(journey)
    if (subscribers is None) == (rule is None):
        raise InvalidInput(_("Give subscribers or a rule (one of them)."), field="subscribers")
    if subscribers is not None:
        if not subscribers:
            raise InvalidInput(_("Name at least one subscriber."), field="subscribers")
        if len(subscribers) > MAX_SUBSCRIBERS:
            raise InvalidInput(
                _("At most %(max)s subscribers per request; use a rule for more.")
                % {"max": number_format(MAX_SUBSCRIBERS, force_grouping=True)},
                field="subscribers",
            )
    if rule is not None:
        rule = _rule_tree(journey.project, rule)
    values = values or {}
    if len(json.dumps(values)) > MAX_VALUES_BYTES:
        raise InvalidInput(
            _("values: at most %(max)s bytes of JSON.")
            % {"max": number_format(MAX_VALUES_BYTES, force_grouping=True)},
            field="values",
        )
    request = JourneyStartRequest.objects.create(
        project=journey.project,
        journey=journey,
        action="start",
        payload={"subscribers": subscribers, "rule": rule, "values": values},
    )
    _queue(request)
    return request


@transaction.atomic
def request_drop(
    *, project: Project, journey: Journey | None, subscribers: list[dict[str, Any]]
) -> JourneyStartRequest:
    """Accept a drop of ``subscribers`` from ``journey`` (None: every journey of the project)."""
    if not subscribers:
        raise InvalidInput(_("Name at least one subscriber."), field="subscribers")
    if len(subscribers) > MAX_SUBSCRIBERS:
        raise InvalidInput(
            _("At most %(max)s subscribers per request.")
            % {"max": number_format(MAX_SUBSCRIBERS, force_grouping=True)},
            field="subscribers",
        )
    request = JourneyStartRequest.objects.create(
        project=project, journey=journey, action="drop", payload={"subscribers": subscribers}
    )
    _queue(request)
    return request


def _queue(request: JourneyStartRequest) -> None:
    from .entry_actors import carry_out_start_request

    public_id = str(request.public_id)
    transaction.on_commit(lambda: carry_out_start_request.send(public_id))


def _rule_tree(project: Project, rule: dict[str, Any] | str) -> dict[str, Any]:
    """The rule as a tree (the text form is parsed), checked by compiling it: InvalidInput."""
    try:
        tree = parse_rule(rule) if isinstance(rule, str) else rule
        compiler.audience(project, tree)
    except RuleSyntaxError as exc:
        raise InvalidInput(
            _("The rule is not valid: %(problem)s.") % {"problem": exc.message},
            field="rule",
            code="rule_syntax_error",
        ) from None
    except InvalidInput as exc:
        raise InvalidInput(
            _("The rule is not valid: %(problem)s") % {"problem": exc.message},
            field="rule",
            code="invalid_rule",
        ) from None
    return tree


# ---- carrying out -----------------------------------------------------------------------------


def carry_out(*, request_id: str | uuid.UUID) -> JourneyStartRequest | None:
    """Carry out a queued request (the actor); a request already done is left as it is."""
    with transaction.atomic():
        request = (
            JourneyStartRequest.objects.select_for_update(of=("self",))
            .select_related("project", "journey", "journey__project")
            .filter(public_id=request_id, status=StartRequestStatus.QUEUED)
            .first()
        )
        if request is None:
            return None
        try:
            request.result = _start(request) if request.action == "start" else _drop(request)
            request.status = StartRequestStatus.DONE
        except (StartRefused, InvalidInput) as exc:
            # The journey was paused or stopped after the request was accepted, or the rule no
            # longer compiles (a tag it names was deleted): a person must look, a retry would not help.
            request.result = {"error": {"code": exc.code, "message": exc.message}}
            request.status = StartRequestStatus.FAILED
        request.finished_at = timezone.now()
        request.save(update_fields=["result", "status", "finished_at"])
    return request


def _start(request: JourneyStartRequest) -> dict[str, Any]:
    journey = request.journey
    check_startable(journey)
    payload = request.payload
    now = timezone.now()
    found = Found()
    if payload.get("rule") is not None:
        ids = compiler.audience(request.project, payload["rule"]).values("id")
    else:
        found = resolve(request.project, payload.get("subscribers") or [])
        ids = Subscriber.objects.for_project(request.project).filter(pk__in=found.ids).values("id")
    entered = enter_audience(
        journey,
        ids,
        entry_key_prefix=f"api:{request.public_id}:",
        now=now,
        context={"values": payload.get("values") or {}},
    )
    result: dict[str, Any] = {"entered": entered}
    if payload.get("rule") is None:
        # Found but not entered: the journey's re-entry rule or entry cap kept them out.
        result["not_entered"] = len(found.ids) - entered
        result.update(found.report())
    return result


def _drop(request: JourneyStartRequest) -> dict[str, Any]:
    from .engine import exit_runs

    found = resolve(request.project, request.payload.get("subscribers") or [])
    runs = JourneyRun.objects.for_project(request.project).filter(
        subscriber_id__in=found.ids,
        dry_run=False,
        state__in=[RunState.READY, RunState.WAITING, RunState.HELD],
    )
    if request.journey_id is not None:
        runs = runs.filter(journey_id=request.journey_id)
    dropped = exit_runs(runs=runs, reason="dropped") if found.ids else 0
    return {"dropped": dropped, **found.report()}


# ---- naming subscribers ------------------------------------------------------------------------


@dataclass
class Found:
    ids: list[int] = field(default_factory=list)  # each subscriber once
    unknown: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, index: int, key: str | None, code: str, message: str) -> None:
        self.unknown += 1
        if len(self.errors) < MAX_ERRORS:
            where = f"subscribers.{index}" + (f".{key}" if key else "")
            self.errors.append({"index": index, "field": where, "code": code, "message": message})

    def report(self) -> dict[str, Any]:
        return {"unknown": self.unknown, "errors": self.errors}


def resolve(project: Project, items: list[Any]) -> Found:
    """The project's subscribers named by ``items`` (``{"id"|"phone"|"external_id": value}``), in
    three queries; every item that names nobody (or is malformed) gets an error with its index."""
    found = Found()
    wanted: list[tuple[int, str, Any]] = []
    for index, item in enumerate(items):
        given = [k for k in KEYS if isinstance(item, dict) and item.get(k) not in (None, "")]
        if not isinstance(item, dict) or len(given) != 1 or set(item) - set(KEYS):
            found.refuse(
                index, None, "invalid_item", 'Name the subscriber by one of "id", "phone" or "external_id".'
            )
            continue
        key, raw = given[0], item[given[0]]
        if not isinstance(raw, str):
            found.refuse(index, key, "invalid_item", f"{key} is a string.")
            continue
        try:
            value: Any = _normalise(project, key, raw, index)
        except InvalidInput as exc:
            found.refuse(index, key, exc.code, exc.message)
            continue
        wanted.append((index, key, value))
    rows = Subscriber.objects.for_project(project)
    by_key: dict[str, dict[Any, int]] = {}
    for key, column in (("id", "public_id"), ("phone", "phone"), ("external_id", "external_id")):
        values = {v for _, k, v in wanted if k == key}
        by_key[key] = (
            dict(rows.filter(**{f"{column}__in": values}).values_list(column, "id")) if values else {}
        )
    seen: set[int] = set()
    for index, key, value in wanted:
        pk = by_key[key].get(value)
        if pk is None:
            shown = value if key != "id" else str(value)
            found.refuse(
                index, key, "unknown_subscriber", f"No subscriber with {key} {shown} in this project."
            )
        elif pk not in seen:
            seen.add(pk)
            found.ids.append(pk)
    return found


def _normalise(project: Project, key: str, raw: str, index: int) -> Any:
    field_name = f"subscribers.{index}.{key}"
    if key == "id":
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise InvalidInput(f"{raw!r} is not a subscriber id (a UUID).", field=field_name) from None
    if key == "phone":
        return normalize_phone(raw, project.default_country, field=field_name)
    text = raw.strip()
    if not text or len(text) > 200:
        raise InvalidInput("An external id is 1-200 characters.", field=field_name)
    return text
