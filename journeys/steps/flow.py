"""Steps that move a run without sending anything: wait, wait_event, segment_split, reachability,
ab_split, update_tags and exit (ADR 0007, step table).

Each ``run`` is a function of the run's state and the visit row (``visit.record``), so calling it
again (a retry, a timer after a restart) gives the same answer: a wait computes its end from the
moment the run arrived at the step (``record.entered_at``), not from "now".

``pure = True`` on a type tells the engine that ``run`` writes nothing to the database (it may
read), so it needs neither a savepoint nor its visit row written before the call: the engine then
writes the visit rows of a whole batch at once. update_tags writes tags and is not pure.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import CheckContext, Exit, Go, Outcome, Problem, Visit, next_only, register

if TYPE_CHECKING:
    from subscribers.models import Subscriber

MAX_WAIT_EVENTS = 3
MAX_VARIANTS = 5


def _duration(text: Any) -> timedelta | None:
    from ..definition import parse_duration  # definition imports this package: not at module level

    return parse_duration(text)


def _signed_duration(text: Any) -> timedelta | None:
    """An ISO duration that may start with ``-`` (an offset before a date)."""
    if isinstance(text, str) and text.strip().startswith("-"):
        value = _duration(text.strip()[1:])
        return -value if value is not None else None
    return _duration(text)


def _zone_of(visit: Visit):
    from .. import timezones

    return timezones.subscriber_zone(visit.subscriber.time_zone, visit.definition, visit.journey.project)


def _step_ids(ctx: CheckContext) -> set[str]:
    steps = ctx.definition.get("steps") if isinstance(ctx.definition, dict) else None
    if not isinstance(steps, list):
        return set()
    return {s.get("id") for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)}


def _event_attributes(visit: Visit) -> dict[str, Any]:
    """The attributes of the event the run entered by ({} for segment and API entries)."""
    event = visit.run.context.get("event") if isinstance(visit.run.context, dict) else None
    attributes = event.get("attributes") if isinstance(event, dict) else None
    return attributes if isinstance(attributes, dict) else {}


# --- wait ----------------------------------------------------------------------------------------

WAIT_KINDS = ("duration", "until_time", "until_date", "until_attribute")


class WaitStep:
    """Wait, then go on by ``next``. Exactly one of:

    - ``duration``: an ISO duration after the run arrived (``PT1H``);
    - ``until_time``: the next ``"HH:MM"`` in the subscriber's zone;
    - ``until_date``: an ISO date-time (without an offset: in the subscriber's zone);
    - ``until_attribute: {source: "tag" | "event", name, offset}``: a date taken from the
      subscriber's tag or from the entry event's attribute, moved by ``offset`` (``-P1D``: a day
      before). A date already past, a missing value or one that is not a date goes on at once;
      the visit's detail says which.
    """

    type = "wait"
    label = gettext_lazy("Wait")
    channel = ""
    pure = True

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        from .. import timezones

        sid = data.get("id")
        given = [k for k in WAIT_KINDS if data.get(k) not in (None, "")]
        if len(given) != 1:
            return [
                Problem(
                    sid,
                    "duration",
                    _("Give exactly one of duration, until_time, until_date, until_attribute."),
                )
            ]
        kind = given[0]
        value = data[kind]
        if kind == "duration" and (_duration(value) is None or _duration(value) <= timedelta(0)):
            return [Problem(sid, "duration", _("An ISO 8601 duration such as PT1H or P2D."))]
        if kind == "until_time" and timezones.parse_hhmm(value) is None:
            return [Problem(sid, "until_time", _('A time of day such as "09:00".'))]
        if kind == "until_date" and timezones.parse_instant(value, timezones.zone("UTC")) is None:
            return [Problem(sid, "until_date", _("An ISO 8601 date-time such as 2026-12-24T09:00:00+01:00."))]
        if kind == "until_attribute":
            if not isinstance(value, dict):
                return [Problem(sid, "until_attribute", _("An object with source, name and offset."))]
            problems = []
            if value.get("source") not in ("tag", "event"):
                problems.append(Problem(sid, "until_attribute.source", _("One of tag, event.")))
            if not isinstance(value.get("name"), str) or not value["name"].strip():
                problems.append(Problem(sid, "until_attribute.name", _("Name the tag or event attribute.")))
            if value.get("offset") not in (None, "") and _signed_duration(value["offset"]) is None:
                problems.append(
                    Problem(sid, "until_attribute.offset", _("An ISO 8601 duration, e.g. -P1D or PT2H."))
                )
            return problems
        return []

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        return next_only(data)

    def until(self, visit: Visit) -> tuple[datetime | None, str]:
        """When the wait ends (None: at once) and, when it cannot be computed, why."""
        from .. import timezones

        data = visit.step.data
        arrived = visit.record.entered_at
        tz = _zone_of(visit)
        if data.get("duration"):
            return arrived + (_duration(data["duration"]) or timedelta(0)), ""
        if data.get("until_time"):
            return timezones.next_local_time(arrived, timezones.parse_hhmm(data["until_time"]), tz), ""
        if data.get("until_date"):
            return timezones.parse_instant(data["until_date"], tz), ""
        spec = data.get("until_attribute") or {}
        name = str(spec.get("name", ""))
        raw = _tag_date(visit, name) if spec.get("source") == "tag" else _event_attributes(visit).get(name)
        if raw is None:
            return None, f"No {spec.get('source')} {name!r} with a date: went on at once."
        instant = timezones.parse_instant(raw, tz)
        if instant is None:
            return None, f"{spec.get('source')} {name!r} is not a date ({str(raw)[:40]!r}): went on at once."
        return instant + (_signed_duration(spec.get("offset")) or timedelta(0)), ""

    def run(self, visit: Visit) -> Outcome:
        until, why = self.until(visit)
        if visit.first:
            visit.record.detail = {**visit.record.detail, "until": until.isoformat() if until else None}
            if why:
                visit.record.detail["note"] = why
        if until is None or until <= visit.now:
            return Go("next")
        from . import Wait

        return Wait(until)


def _tag_date(visit: Visit, name: str) -> Any:
    """The subscriber's value of the date or date-time tag ``name`` (case-insensitive), or None.

    Read for every subscriber of the engine's batch at once (one query per tag name and batch)."""
    values = visit.lookup(
        ("tag_date", visit.journey.project_id, name.casefold()), lambda ids: _tag_dates(ids, name)
    )
    return values.get(visit.subscriber.pk)


def _tag_dates(subscriber_ids: frozenset[int], name: str) -> dict[int, Any]:
    from subscribers.models import TagValue

    rows = TagValue.objects.filter(subscriber_id__in=subscriber_ids, tag__name__iexact=name).values_list(
        "subscriber_id", "value_datetime", "value_date", "value_text"
    )
    # One value per subscriber and tag (TagValue's own constraint); the first kept, as .first() did.
    found: dict[int, Any] = {}
    for subscriber_id, value_datetime, value_date, value_text in rows.order_by("pk"):
        found.setdefault(subscriber_id, value_datetime or value_date or value_text)
    return found


# --- wait_event ----------------------------------------------------------------------------------


class WaitEventStep:
    """Wait for one of up to three events (each with conditions), or go on by ``timeout``.

    ``events: [{event, conditions, of_step, next}]``: the first listed event that matches leaves
    by ``event1``..``event3``. ``of_step``: only events about the message that step sent in this
    run (a WhatsApp status or reply naming its wamid, an email or push open or click naming the
    message, ``_about``; a step that sent nothing is never matched; a dry run sends nothing and
    ignores ``of_step``). ``timeout`` (ISO duration,
    from the moment the run arrived) leaves by the outlet ``timeout``, whose target is the key
    ``timeout_next`` (``timeout`` itself holds the duration).
    """

    type = "wait_event"
    label = gettext_lazy("Wait for event")
    channel = ""
    pure = True

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        sid = data.get("id")
        problems = []
        events = data.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_WAIT_EVENTS:
            problems.append(
                Problem(
                    sid,
                    "events",
                    _("List 1 to %(max_wait_events)s events to wait for.")
                    % {"max_wait_events": MAX_WAIT_EVENTS},
                )
            )
            events = []
        ids = _step_ids(ctx)
        for i, item in enumerate(events):
            where = f"events[{i}]"
            if not isinstance(item, dict):
                problems.append(Problem(sid, where, _("An object with event, conditions, of_step, next.")))
                continue
            if not isinstance(item.get("event"), str) or not item["event"].strip():
                problems.append(Problem(sid, f"{where}.event", _("Name the event.")))
            conditions = item.get("conditions") or []
            if not isinstance(conditions, list):
                problems.append(Problem(sid, f"{where}.conditions", _("Conditions are a list.")))
            else:
                problems += [Problem(sid, f"{where}.conditions", m) for m in _condition_problems(conditions)]
            of_step = item.get("of_step")
            if of_step not in (None, "") and (not isinstance(of_step, str) or (ids and of_step not in ids)):
                problems.append(
                    Problem(
                        sid,
                        f"{where}.of_step",
                        _("There is no step %(of_step)s.") % {"of_step": repr(of_step)},
                    )
                )
        if _duration(data.get("timeout")) is None:
            problems.append(Problem(sid, "timeout", _("How long to wait: an ISO 8601 duration such as P1D.")))
        return problems

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        events = data.get("events") if isinstance(data.get("events"), list) else []
        outlets: dict[str, str | None] = {
            f"event{i + 1}": (item.get("next") if isinstance(item, dict) else None)
            for i, item in enumerate(events[:MAX_WAIT_EVENTS])
        }
        outlets["timeout"] = data.get("timeout_next")
        return outlets

    def run(self, visit: Visit) -> Outcome:
        from . import Wait

        data = visit.step.data
        until = visit.record.entered_at + (_duration(data.get("timeout")) or timedelta(0))
        if visit.event is not None and not _after(visit.event, until):
            outlet = self._matching(visit, visit.event)
            if outlet:
                visit.record.detail = {**visit.record.detail, "event": visit.event}
                return Go(outlet)
        if until <= visit.now:
            return Go("timeout")
        names = tuple(dict.fromkeys(str(item.get("event")) for item in data.get("events") or []))
        return Wait(until, names)

    def _matching(self, visit: Visit, event: dict[str, Any]) -> str | None:
        attributes = event.get("attributes") or {}
        for i, item in enumerate(visit.step.data.get("events") or []):
            if item.get("event") != event.get("name"):
                continue
            if item.get("conditions") and not _conditions().matches(item["conditions"], attributes):
                continue
            if item.get("of_step") and not visit.dry_run and not _about(visit, item["of_step"], attributes):
                continue
            return f"event{i + 1}"
        return None


def _after(event: dict[str, Any], until: datetime) -> bool:
    """The event happened after the timeout (it reached us late): the timeout wins."""
    try:
        occurred = datetime.fromisoformat(str(event.get("occurred_at")))
    except ValueError:
        return False
    return occurred.tzinfo is not None and occurred > until


def _conditions():
    # The messaging slice's module (ADR 0007: conditions.py); imported when first needed.
    from .. import conditions

    return conditions


def _condition_problems(conditions: list[Any]) -> list[str]:
    try:
        check = _conditions().check
    except (ImportError, AttributeError):  # the definition checks the syntax as well
        return []
    return list(check(conditions))


def _about(visit: Visit, step_id: str, attributes: dict[str, Any]) -> bool:
    """The event is about the message ``step_id`` sent in this run.

    WhatsApp statuses and replies name the message by its wamid (``message_id``,
    ``context_message_id``); email and push opens and clicks by its public id (``message``) and,
    without one, by the ``journey`` and ``step`` that wrote it (``campaigns.channel_events``).
    A step that sent nothing in this run is about no event.
    """
    from ..models import JourneyRunStep

    row = (
        JourneyRunStep.objects.filter(run_id=visit.run.pk, step_id=step_id, message__isnull=False)
        .values_list("message__wamid", "message__public_id")
        .first()
    )
    if row is None:
        return False
    wamid, public_id = row
    if wamid and wamid in (attributes.get("message_id"), attributes.get("context_message_id")):
        return True
    if attributes.get("message"):
        return str(attributes["message"]) == str(public_id)
    return (
        str(attributes.get("journey") or "") == str(visit.journey.public_id)
        and str(attributes.get("step") or "") == step_id
    )


# --- segment_split -------------------------------------------------------------------------------


class SegmentSplitStep:
    """``yes`` when the subscriber is in the segment (``segment``: its public id) or matches the
    ``rule`` now, else ``no``. A segment deleted since goes ``no`` (the detail says so)."""

    type = "segment_split"
    label = gettext_lazy("Segment split")
    channel = ""
    pure = True

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        sid = data.get("id")
        has_segment, has_rule = data.get("segment") not in (None, ""), data.get("rule") not in (None, {}, "")
        if has_segment == has_rule:
            return [Problem(sid, "segment", _("Pick a segment or write a rule (one of them)."))]
        if has_segment:
            try:
                public_id = uuid.UUID(str(data["segment"]))
            except ValueError:
                return [Problem(sid, "segment", _("A segment id (UUID)."))]
            if ctx.project is not None:
                from subscribers.models import Segment

                if not Segment.objects.for_project(ctx.project).filter(public_id=public_id).exists():
                    return [Problem(sid, "segment", _("There is no such segment in this project."))]
            return []
        if ctx.project is not None:
            from subscribers.errors import InvalidInput
            from subscribers.segments.validate import validate_rule

            try:
                validate_rule(ctx.project, data["rule"])
            except InvalidInput as exc:
                return [Problem(sid, "rule", exc.message)]
        return []

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        return {"yes": data.get("yes"), "no": data.get("no")}

    def run(self, visit: Visit) -> Outcome:
        project = visit.journey.project
        data = visit.step.data
        # Per journey version and step (its rule or segment), at this moment: one membership query
        # for all the subscribers of the engine's batch, through the segment compiler.
        key = ("segment_split", visit.journey.pk, visit.run.version, visit.step.id, visit.now)
        members = visit.lookup(key, lambda ids: _members(project, data, ids, visit.now))
        if members is None:
            visit.record.detail = {**visit.record.detail, "note": "The segment was deleted."}
            return Go("no")
        return Go("yes" if visit.subscriber.pk in members else "no")


def _members(
    project: Any, data: dict[str, Any], subscriber_ids: frozenset[int], now: datetime
) -> set[int] | None:
    """Which of ``subscriber_ids`` the step's segment or rule holds now; None: the segment is gone."""
    from subscribers.models import Segment
    from subscribers.segments.compiler import audience

    rule = data.get("rule")
    if data.get("segment"):
        segment = Segment.objects.for_project(project).filter(public_id=data["segment"]).only("rule").first()
        if segment is None:
            return None
        rule = segment.rule
    return set(audience(project, rule, now=now).filter(pk__in=subscriber_ids).values_list("pk", flat=True))


# --- reachability --------------------------------------------------------------------------------


def _whatsapp_reachable(subscriber: Subscriber) -> bool:
    from subscribers.models import ConsentState

    return bool(subscriber.phone) and subscriber.whatsapp_consent != ConsentState.OPTED_OUT


# channel -> "can we reach this subscriber there now"; a channel module adds its own (issue 11).
REACHABILITY: dict[str, Callable[[Subscriber], bool]] = {"whatsapp": _whatsapp_reachable}


def register_reachability(channel: str, test: Callable[[Subscriber], bool]) -> None:
    REACHABILITY[channel] = test


class ReachabilityStep:
    """Where the subscriber can be reached now, in one of two forms.

    Single channel: ``{"channel": "email", "yes": ..., "no": ...}`` leaves by ``yes`` or ``no``.
    Chained (omnichannel fallbacks): ``{"channels": ["push", "email", "whatsapp"], "push": ...,
    "email": ..., "whatsapp": ..., "none": ...}`` leaves by the first listed channel that reaches
    the subscriber, else by ``none``.

    The tests are the channels' (``register_reachability``). WhatsApp: the subscriber has a phone
    number and has not opted out (unknown consent counts as reachable: transactional and utility
    templates may go; a marketing template still needs an opt-in, which the send step checks and
    records as a skip). A subscriber known only by a business-scoped user id has no number and is
    not reachable by a journey's first message. Email: an address that did not bounce, no
    opt-out; push: an active device, no opt-out (``campaigns.channel_policy``).
    """

    type = "reachability"
    label = gettext_lazy("Reachability check")
    channel = ""
    pure = True

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        sid = data.get("id")
        known = ", ".join(sorted(REACHABILITY))
        if data.get("channels") is None:
            if not isinstance(data.get("channel"), str) or data["channel"] not in REACHABILITY:
                return [Problem(sid, "channel", _("One of %(known)s.") % {"known": known})]
            return []
        if data.get("channel") is not None:
            return [Problem(sid, "channel", _("Give either one channel (yes/no) or a list of channels."))]
        channels = data["channels"]
        if not isinstance(channels, list) or not 1 <= len(channels) <= len(REACHABILITY):
            return [
                Problem(
                    sid, "channels", _("List the channels to try in order (%(known)s).") % {"known": known}
                )
            ]
        problems = []
        for i, channel in enumerate(channels):
            if not isinstance(channel, str) or channel not in REACHABILITY:
                problems.append(Problem(sid, f"channels[{i}]", _("One of %(known)s.") % {"known": known}))
            elif channel in channels[:i]:
                problems.append(
                    Problem(sid, f"channels[{i}]", _("%(channel)s is listed twice.") % {"channel": channel})
                )
        return problems

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        channels = _chained(data)
        if channels is None:
            return {"yes": data.get("yes"), "no": data.get("no")}
        return {**{channel: data.get(channel) for channel in channels}, "none": data.get("none")}

    def run(self, visit: Visit) -> Outcome:
        channels = _chained(visit.step.data)
        if channels is None:
            test = REACHABILITY.get(str(visit.step.data.get("channel")))
            return Go("yes" if test is not None and test(visit.subscriber) else "no")
        for channel in channels:
            test = REACHABILITY.get(channel)
            if test is not None and test(visit.subscriber):
                return Go(channel)
        return Go("none")


def _chained(data: dict[str, Any]) -> list[str] | None:
    """The channels of the chained form, in order (known ones, once each), or None: single form."""
    channels = data.get("channels")
    if not isinstance(channels, list):
        return None
    return list(dict.fromkeys(c for c in channels if isinstance(c, str) and c in REACHABILITY))


# --- ab_split ------------------------------------------------------------------------------------


def bucket(journey_public_id: Any, subscriber_id: int) -> int:
    """0-99, stable per journey and subscriber (not Python's salted ``hash``): sticky variants."""
    digest = hashlib.sha256(f"{journey_public_id}:{subscriber_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


class AbSplitStep:
    """A/B/n: ``variants: [{name, percent, next}]`` (2-5, percents sum to 100). A subscriber lands in
    the same variant every time they walk this journey (a hash of journey and subscriber)."""

    type = "ab_split"
    label = gettext_lazy("A/B split")
    channel = ""
    pure = True

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        sid = data.get("id")
        variants = data.get("variants")
        if not isinstance(variants, list) or not 2 <= len(variants) <= MAX_VARIANTS:
            return [
                Problem(
                    sid,
                    "variants",
                    _("Give 2 to %(max_variants)s variants.") % {"max_variants": MAX_VARIANTS},
                )
            ]
        problems, names, total = [], set(), 0
        for i, item in enumerate(variants):
            if not isinstance(item, dict):
                problems.append(Problem(sid, f"variants[{i}]", _("An object with name, percent and next.")))
                continue
            name, percent = item.get("name"), item.get("percent")
            if not isinstance(name, str) or not name.strip() or len(name) > 64:
                problems.append(Problem(sid, f"variants[{i}].name", _("A name of 1-64 characters.")))
            elif name in names:
                problems.append(
                    Problem(
                        sid,
                        f"variants[{i}].name",
                        _("Two variants are called %(name)s.") % {"name": repr(name)},
                    )
                )
            else:
                names.add(name)
            if isinstance(percent, bool) or not isinstance(percent, int) or not 0 < percent <= 100:
                problems.append(Problem(sid, f"variants[{i}].percent", _("A whole number from 1 to 100.")))
            else:
                total += percent
        if not problems and total != 100:
            problems.append(
                Problem(sid, "variants", _("The percents add up to %(total)s, not 100.") % {"total": total})
            )
        return problems

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        variants = data.get("variants") if isinstance(data.get("variants"), list) else []
        return {
            str(v["name"]): v.get("next")
            for v in variants
            if isinstance(v, dict) and isinstance(v.get("name"), str)
        }

    def run(self, visit: Visit) -> Outcome:
        n = bucket(visit.journey.public_id, visit.subscriber.pk)
        edge = 0
        variants = visit.step.data["variants"]
        for item in variants:
            edge += int(item["percent"])
            if n < edge:
                break
        visit.record.detail = {**visit.record.detail, "variant": item["name"], "bucket": n}
        return Go(str(item["name"]))


# --- update_tags ---------------------------------------------------------------------------------


class UpdateTagsStep:
    """Set and remove the subscriber's tags, through ``subscribers.services.set_tags`` (the one
    write path: types, limits and new definitions as everywhere). ``set: {tag: value}``, where a
    value ``{"event_attribute": name}`` is taken from the entry event (a missing attribute sets
    nothing); ``remove: [tag]``. A value the tag's type refuses is recorded in the visit's detail
    and the run goes on (a data problem does not get better with retries). A dry run writes nothing:
    the detail holds what it would set."""

    type = "update_tags"
    label = gettext_lazy("Update tags")
    channel = ""
    pure = False  # writes tags

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        from subscribers.errors import InvalidInput
        from subscribers.tags import validate_tag_name

        sid = data.get("id")
        problems = []
        to_set, remove = data.get("set") or {}, data.get("remove") or []
        if not isinstance(to_set, dict):
            return [Problem(sid, "set", _("An object of tag: value."))]
        if not isinstance(remove, list):
            return [Problem(sid, "remove", _("A list of tag names."))]
        if not to_set and not remove:
            problems.append(Problem(sid, "set", _("Set or remove at least one tag.")))
        for name, value in to_set.items():
            try:
                validate_tag_name(name)
            except InvalidInput as exc:
                problems.append(Problem(sid, f"set.{name}", exc.message))
            if isinstance(value, dict) and not (
                set(value) == {"event_attribute"} and isinstance(value["event_attribute"], str)
            ):
                problems.append(Problem(sid, f"set.{name}", _('A value or {"event_attribute": "<name>"}.')))
        for i, name in enumerate(remove):
            if not isinstance(name, str):
                problems.append(Problem(sid, f"remove[{i}]", _("A tag name.")))
                continue
            try:
                validate_tag_name(name)
            except InvalidInput as exc:
                problems.append(Problem(sid, f"remove[{i}]", exc.message))
        return problems

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        return next_only(data)

    def run(self, visit: Visit) -> Outcome:
        from subscribers.errors import InvalidInput
        from subscribers.services import set_tags

        attributes = _event_attributes(visit)
        tags: dict[str, Any] = {}
        missing = []
        for name, value in (visit.step.data.get("set") or {}).items():
            if isinstance(value, dict):
                key = value.get("event_attribute")
                if key not in attributes:
                    missing.append(name)
                    continue
                value = attributes[key]
            tags[name] = value
        for name in visit.step.data.get("remove") or []:
            tags.setdefault(name, None)
        detail: dict[str, Any] = {"tags": tags}
        if missing:
            detail["missing"] = missing
        if visit.dry_run:
            detail["dry_run"] = True
        elif tags:
            try:
                detail["changed"] = set_tags(
                    project=visit.journey.project, subscriber=visit.subscriber, tags=tags
                )
            except InvalidInput as exc:
                detail["error"] = exc.message
        visit.record.detail = {**visit.record.detail, **detail}
        return Go("next")


# --- exit ----------------------------------------------------------------------------------------


class ExitStep:
    type = "exit"
    label = gettext_lazy("Exit")
    channel = ""
    pure = True

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        return []

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        return {}

    def run(self, visit: Visit) -> Outcome:
        return Exit("exit_step")


for _type in (
    WaitStep(),
    WaitEventStep(),
    SegmentSplitStep(),
    ReachabilityStep(),
    AbSplitStep(),
    UpdateTagsStep(),
    ExitStep(),
):
    register(_type)
