"""Conversations: the WhatsApp chat with each subscriber, read from the two tables that hold it.

Inbound messages are ``WhatsAppReceived`` events (written by whatsapp.processing); outbound ones are
``Message`` rows of the WhatsApp channel (the outbox). Nothing is copied into a third table: the list
and the thread merge both sources at read time, with bounded queries whose count does not grow with
the number of conversations or messages.

Every function takes the project and starts its queries from ``for_project(project)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Greatest
from django.utils import dateformat, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from controlpanel.models import Project
from subscribers.errors import InvalidInput
from subscribers.models import Event, Subscriber
from subscribers.phones import normalize_phone
from whatsapp import placeholders
from whatsapp.models import MessageTemplate, TemplateStatus

from . import policy
from .models import Channel, Message, MessageKind, MessageStatus

RECEIVED = "WhatsAppReceived"
LIST_SIZE = 30
# A poll may ask for more rows than one page (after "load more"), never more than this.
LIST_MAX = 300
THREAD_SIZE = 40
# A poll re-renders the thread from the oldest message the reader loaded, at most this many.
THREAD_MAX = 400
# The candidate scan of the list reads this many newest rows per source (times the page size),
# growing by SCAN_GROWTH per round when a few chatty subscribers fill the scanned rows.
SCAN_FACTOR = 4
SCAN_GROWTH = 4
SCAN_ROUNDS = 3


# --- the 24-hour customer service window -------------------------------------------------------------


@dataclass(frozen=True)
class ServiceWindow:
    closes_at: datetime | None
    now: datetime

    @property
    def open(self) -> bool:
        return self.closes_at is not None and self.closes_at > self.now

    @property
    def remaining(self) -> timedelta | None:
        return self.closes_at - self.now if self.open else None

    @property
    def left(self) -> str:
        """ "23 h 12 min" ("less than a minute" at the very end); "" when closed."""
        remaining = self.remaining
        if remaining is None:
            return ""
        minutes = int(remaining.total_seconds() // 60)
        hours, minutes = divmod(minutes, 60)
        if hours:
            return _("%(hours)s h %(minutes)s min") % {"hours": hours, "minutes": minutes}
        return _("%(minutes)s min") % {"minutes": minutes} if minutes else _("less than a minute")

    @property
    def short(self) -> str:
        """For the list: "23 h", "12 min"."""
        remaining = self.remaining
        if remaining is None:
            return ""
        minutes = int(remaining.total_seconds() // 60)
        if minutes >= 60:
            return _("%(hours)s h") % {"hours": minutes // 60}
        return _("%(minutes)s min") % {"minutes": max(minutes, 1)}

    @property
    def label(self) -> str:
        return _("Window open, %(left)s left") % {"left": self.left} if self.open else _("Window closed")


def service_window(subscriber: Subscriber, now: datetime | None = None) -> ServiceWindow:
    return ServiceWindow(closes_at=policy.window_closes_at(subscriber), now=now or timezone.now())


# --- how an inbound message reads ----------------------------------------------------------------

INBOUND_LABELS = {
    "image": gettext_lazy("Photo"),
    "video": gettext_lazy("Video"),
    "audio": gettext_lazy("Audio"),
    "document": gettext_lazy("Document"),
    "sticker": gettext_lazy("Sticker"),
    "location": gettext_lazy("Location"),
    "contacts": gettext_lazy("Contact"),
    "reaction": gettext_lazy("Reaction"),
    "button": gettext_lazy("Button"),
    "interactive": gettext_lazy("Reply"),
    "order": gettext_lazy("Order"),
    "system": gettext_lazy("System message"),
    "unsupported": gettext_lazy("Unsupported message"),
}


def inbound_snippet(kind: str, text: str) -> str:
    """One line for the list: "Photo: My receipt", "Reacted 😀", "Location: Alexanderplatz"."""
    text = " ".join((text or "").split())
    if kind in ("text", "button", "interactive", ""):
        return text
    if kind == "reaction":
        return _("Reacted %(emoji)s") % {"emoji": text} if text else _("Removed a reaction")
    label = str(INBOUND_LABELS.get(kind, kind.capitalize()))
    return f"{label}: {text}" if text else label


# --- the list ------------------------------------------------------------------------------------


@dataclass
class ConversationRow:
    subscriber: Subscriber
    last_at: datetime
    direction: str  # "in" | "out"
    snippet: str
    status: str  # of the last outbound message, when it is the last message
    unread: int  # inbound messages since our last outbound one
    window: ServiceWindow

    @property
    def cursor(self) -> str:
        return f"{self.last_at.isoformat()}|{self.subscriber.pk}"

    @property
    def status_label(self) -> str:
        """The last outbound message's state in the reader's language, for the ticks' tooltip."""
        return MessageStatus(self.status).label if self.status in MessageStatus.values else self.status

    @property
    def when(self) -> str:
        """ "14:05" today, "Yesterday", "Mon" this week, else "3 Nov" (in the active time zone)."""
        local = timezone.localtime(self.last_at)
        days = (timezone.localdate() - local.date()).days
        if days <= 0:
            return local.strftime("%H:%M")
        if days == 1:
            return _("Yesterday")
        if days < 7:
            return dateformat.format(local, "D")
        return dateformat.format(local, "j M" if local.year == timezone.localdate().year else "j M Y")


@dataclass
class ConversationPage:
    rows: list[ConversationRow]
    next_cursor: str | None
    version: str


def parse_list_cursor(raw: str | None) -> tuple[datetime, int] | None:
    """(time, subscriber pk) from "2026-01-02T03:04:05+00:00|17"; None for anything else."""
    if not raw or "|" not in raw:
        return None
    at, _, pk = raw.rpartition("|")
    try:
        when = datetime.fromisoformat(at)
        return (when if timezone.is_aware(when) else timezone.make_aware(when, timezone.UTC)), int(pk)
    except ValueError:
        return None


def _inbound(project: Project) -> QuerySet[Event]:
    return Event.objects.for_project(project).filter(name=RECEIVED)


def _outbound(project: Project) -> QuerySet[Message]:
    return Message.objects.for_project(project).filter(channel=Channel.WHATSAPP)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _annotated(project: Project, subscribers: QuerySet[Subscriber]) -> QuerySet[Subscriber]:
    """Each subscriber with the time and gist of their last inbound and last outbound message.

    All correlated subqueries walk the per-subscriber time indexes and stop at the first row.
    """
    last_in = _inbound(project).filter(subscriber=OuterRef("pk")).order_by("-occurred_at", "-id")
    last_out = _outbound(project).filter(subscriber=OuterRef("pk")).order_by("-created_at", "-id")
    annotated = subscribers.annotate(
        in_at=Subquery(last_in.values("occurred_at")[:1]),
        in_text=Subquery(last_in.annotate(t=KT("attributes__text")).values("t")[:1]),
        in_type=Subquery(last_in.annotate(t=KT("attributes__type")).values("t")[:1]),
        out_at=Subquery(last_out.values("created_at")[:1]),
        out_body=Subquery(last_out.values("body")[:1]),
        out_template=Subquery(last_out.values("template_name")[:1]),
        out_status=Subquery(last_out.values("status")[:1]),
    )
    # GREATEST is NULL on SQLite when one side is: both sides fall back to the other.
    annotated = annotated.annotate(last_at=Greatest(Coalesce("in_at", "out_at"), Coalesce("out_at", "in_at")))
    unanswered = (
        _inbound(project)
        .filter(subscriber=OuterRef("pk"), occurred_at__gt=Coalesce(OuterRef("out_at"), Value(EPOCH)))
        .order_by()
        .values("subscriber")
        .annotate(n=Count("id"))
        .values("n")
    )
    return annotated.annotate(unread=Coalesce(Subquery(unanswered[:1], output_field=IntegerField()), 0))


def _keyset(qs: QuerySet[Subscriber], cursor: tuple[datetime, int] | None) -> QuerySet[Subscriber]:
    qs = qs.order_by("-last_at", "-pk")
    if cursor is not None:
        at, pk = cursor
        qs = qs.filter(Q(last_at__lt=at) | Q(last_at=at, pk__lt=pk))
    return qs


def _recent(
    project: Project, cursor: tuple[datetime, int] | None, want: int
) -> tuple[list[Subscriber], datetime | None]:
    """Up to ``want`` subscribers by last message, after ``cursor``; and the scan floor if not exhaustive.

    Candidates come from the newest rows of both sources (index scans of ``scan`` rows each);
    their true last message time comes from :func:`_annotated`. Every subscriber whose last
    message is at or after the floor (the older of the two sources' oldest scanned row, for a
    source that had more) is among the candidates, so rows at or after the floor are complete
    and in order. Rounds widen the scan when a few chatty subscribers fill it.
    """
    scan = want * SCAN_FACTOR
    for round_number in range(1, SCAN_ROUNDS + 1):
        events, messages = _inbound(project), _outbound(project)
        if cursor is not None:
            events = events.filter(occurred_at__lte=cursor[0])
            messages = messages.filter(created_at__lte=cursor[0])
        inbound = list(events.order_by("-occurred_at").values_list("subscriber_id", "occurred_at")[:scan])
        outbound = list(messages.order_by("-created_at").values_list("subscriber_id", "created_at")[:scan])
        floor = max((rows[-1][1] for rows in (inbound, outbound) if len(rows) == scan), default=None)
        ids = {pk for pk, _ in inbound} | {pk for pk, _ in outbound}
        qs = _keyset(_annotated(project, Subscriber.objects.for_project(project).filter(pk__in=ids)), cursor)
        if floor is not None:
            qs = qs.filter(last_at__gte=floor)
        found = list(qs[:want])
        if len(found) == want or floor is None or round_number == SCAN_ROUNDS:
            return found, floor
        scan *= SCAN_GROWTH
    raise AssertionError("unreachable")


_PHONEISH = re.compile(r"^[\d\s()+./-]+$")


def _search(project: Project, qs: QuerySet[Subscriber], q: str) -> QuerySet[Subscriber]:
    """By name (substring), phone in any format, or digits of the phone number."""
    match = Q(name__icontains=q)
    digits = re.sub(r"\D", "", q)
    if _PHONEISH.match(q) and len(digits) >= 3:
        match |= Q(phone__contains=digits)
        with contextlib.suppress(InvalidInput):  # not a full number: the digit match covers it
            match |= Q(phone=normalize_phone(q, project.default_country, field="q"))
    return qs.filter(match)


def _row(subscriber: Subscriber, now: datetime) -> ConversationRow:
    s: Any = subscriber
    inbound_last = s.in_at is not None and (s.out_at is None or s.in_at > s.out_at)
    if inbound_last:
        snippet, status = inbound_snippet(s.in_type or "", s.in_text or ""), ""
    else:
        snippet = " ".join((s.out_body or "").split()) or _("Template %(name)s") % {"name": s.out_template}
        status = s.out_status or ""
    return ConversationRow(
        subscriber=subscriber,
        last_at=s.last_at,
        direction="in" if inbound_last else "out",
        snippet=snippet,
        status=status,
        unread=s.unread if inbound_last else 0,
        window=service_window(subscriber, now),
    )


def conversation_page(
    *,
    project: Project,
    q: str = "",
    after: str | None = None,
    size: int = LIST_SIZE,
    now: datetime | None = None,
) -> ConversationPage:
    """Subscribers ordered by their last WhatsApp message (either direction), newest first.

    Keyset-paged by (last message time, id); ``after`` is the cursor of the previous page's last
    row. A fixed number of queries whatever the number of conversations.
    """
    now = now or timezone.now()
    size = max(1, min(size, LIST_MAX))
    cursor = parse_list_cursor(after)
    q = q.strip()
    floor = None
    if q:
        has_messages = Exists(_inbound(project).filter(subscriber=OuterRef("pk"))) | Exists(
            _outbound(project).filter(subscriber=OuterRef("pk"))
        )
        matching = _search(project, Subscriber.objects.for_project(project), q).filter(has_messages)
        found = list(_keyset(_annotated(project, matching), cursor)[: size + 1])
    else:
        found, floor = _recent(project, cursor, size + 1)
    rows = [_row(s, now) for s in found[:size]]
    if len(found) > size:
        next_cursor = rows[-1].cursor
    elif floor is not None:
        # The scan stopped early (a few very chatty subscribers); older conversations remain.
        next_cursor = rows[-1].cursor if rows else f"{floor.isoformat()}|{2**62}"
    else:
        next_cursor = None
    signature = [
        (r.subscriber.public_id, r.cursor, r.snippet, r.status, r.unread, r.window.short) for r in rows
    ]
    return ConversationPage(rows=rows, next_cursor=next_cursor, version=_digest([signature, next_cursor]))


def new_conversation_candidates(*, project: Project, q: str, limit: int = 5) -> list[Subscriber]:
    """Subscribers matching ``q`` (name, phone) with no WhatsApp message either way: threads to start.

    The list only holds subscribers with messages; this lets a marketer write to anyone else.
    """
    q = q.strip()
    if not q:
        return []
    has_messages = Exists(_inbound(project).filter(subscriber=OuterRef("pk"))) | Exists(
        _outbound(project).filter(subscriber=OuterRef("pk"))
    )
    matching = _search(project, Subscriber.objects.for_project(project), q).exclude(has_messages)
    return list(matching.order_by("name", "pk")[:limit])


def _digest(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:20]


# --- the thread ----------------------------------------------------------------------------------

IN, OUT = 0, 1  # at the same instant an inbound message sorts before our answer


@dataclass
class ThreadItem:
    rank: int
    at: datetime
    pk: int
    event: Event | None = None
    message: Message | None = None
    quoted: ThreadItem | None = None

    @property
    def key(self) -> tuple[datetime, int, int]:
        return (self.at, self.rank, self.pk)

    @property
    def cursor(self) -> str:
        return f"{self.at.isoformat()}|{self.rank}|{self.pk}"

    @property
    def inbound(self) -> bool:
        return self.rank == IN

    @property
    def day(self):
        return timezone.localdate(self.at)

    @property
    def dom_id(self) -> str:
        return f"{'in' if self.inbound else 'out'}-{self.pk}"

    # Inbound message details (WhatsAppReceived attributes).
    @property
    def attrs(self) -> dict[str, Any]:
        return self.event.attributes if self.event is not None else {}

    @property
    def type(self) -> str:
        return str(self.attrs.get("type") or "text") if self.inbound else self.message.kind  # type: ignore[union-attr]

    @property
    def type_label(self) -> str:
        return str(INBOUND_LABELS.get(self.type, self.type.capitalize()))

    @property
    def text(self) -> str:
        return str(self.attrs.get("text") or "") if self.inbound else self.message.body  # type: ignore[union-attr]

    @property
    def snippet(self) -> str:
        if self.inbound:
            return inbound_snippet(self.type, self.text)
        return self.text or _("Template %(name)s") % {"name": self.message.template_name}  # type: ignore[union-attr]

    @property
    def map_url(self) -> str:
        lat, lng = self.attrs.get("latitude"), self.attrs.get("longitude")
        if isinstance(lat, int | float) and isinstance(lng, int | float):
            return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lng}#map=16/{lat}/{lng}"
        return ""

    @property
    def template(self) -> dict[str, Any] | None:
        """Header, footer and buttons of an outbound template message, as the phone shows them."""
        if self.inbound or self.message is None or self.message.kind != MessageKind.TEMPLATE:
            return None
        return template_parts(self.message)


@dataclass
class Thread:
    items: list[ThreadItem]
    has_older: bool
    window: ServiceWindow
    version: str

    @property
    def oldest_cursor(self) -> str:
        return self.items[0].cursor if self.items else ""


def _parse_thread_cursor(raw: str | None) -> tuple[datetime, int, int] | None:
    parts = (raw or "").split("|")
    if len(parts) != 3:
        return None
    try:
        at = datetime.fromisoformat(parts[0])
        rank, pk = int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if rank not in (IN, OUT):
        return None
    return (at if timezone.is_aware(at) else timezone.make_aware(at, timezone.UTC)), rank, pk


def _before(time_field: str, rank: int, cursor: tuple[datetime, int, int]) -> Q:
    """Rows of a source of ``rank`` that sort strictly before the cursor (time, rank, pk)."""
    at, c_rank, c_pk = cursor
    older = Q(**{f"{time_field}__lt": at})
    if rank < c_rank:
        return older | Q(**{time_field: at})
    if rank == c_rank:
        return older | Q(**{time_field: at, "pk__lt": c_pk})
    return older


def _at_or_after(time_field: str, rank: int, cursor: tuple[datetime, int, int]) -> Q:
    return ~_before(time_field, rank, cursor)


def thread(
    *,
    project: Project,
    subscriber: Subscriber,
    before: str | None = None,
    since: str | None = None,
    size: int = THREAD_SIZE,
    now: datetime | None = None,
) -> Thread:
    """The subscriber's messages, both directions, oldest first.

    Default: the latest ``size``. ``before``: the ``size`` before that cursor ("load older").
    ``since``: everything from that cursor on, at most THREAD_MAX (a poll that keeps what the
    reader loaded). Four queries at most, whatever the thread's length.
    """
    events = _inbound(project).filter(subscriber=subscriber)
    messages = _outbound(project).filter(subscriber=subscriber)
    older_cursor, anchor = _parse_thread_cursor(before), _parse_thread_cursor(since)
    limit = size
    if older_cursor is not None:
        events = events.filter(_before("occurred_at", IN, older_cursor))
        messages = messages.filter(_before("created_at", OUT, older_cursor))
    elif anchor is not None:
        events = events.filter(_at_or_after("occurred_at", IN, anchor))
        messages = messages.filter(_at_or_after("created_at", OUT, anchor))
        limit = THREAD_MAX
    inbound = list(events.order_by("-occurred_at", "-id")[: limit + 1])
    outbound = list(messages.select_related("template").order_by("-created_at", "-id")[: limit + 1])
    items = [ThreadItem(rank=IN, at=e.occurred_at, pk=e.pk, event=e) for e in inbound]
    items += [ThreadItem(rank=OUT, at=m.created_at, pk=m.pk, message=m) for m in outbound]
    items.sort(key=lambda item: item.key, reverse=True)
    has_older = len(items) > limit
    items = items[:limit]
    items.reverse()
    if anchor is not None and older_cursor is None and not has_older:
        # Everything from the anchor on is here; is there anything before the anchor?
        has_older = (
            _inbound(project)
            .filter(subscriber=subscriber)
            .filter(_before("occurred_at", IN, anchor))
            .exists()
            or _outbound(project)
            .filter(subscriber=subscriber)
            .filter(_before("created_at", OUT, anchor))
            .exists()
        )
    _link_quotes(items)
    window = service_window(subscriber, now)
    signature = [
        (i.rank, i.pk, i.message.status if i.message else "", i.message.updated_at if i.message else None)
        for i in items
    ]
    return Thread(
        items=items,
        has_older=has_older,
        window=window,
        version=_digest([signature, has_older, window.label, subscriber.whatsapp_consent]),
    )


def _link_quotes(items: list[ThreadItem]) -> None:
    """Replies, reactions and button taps point at an earlier message: show which, when it is loaded."""
    by_wamid: dict[str, ThreadItem] = {}
    for item in items:
        wamid = str(item.attrs.get("message_id") or "") if item.inbound else item.message.wamid  # type: ignore[union-attr]
        if wamid:
            by_wamid[wamid] = item
    for item in items:
        context = str(item.attrs.get("context_message_id") or "") if item.inbound else ""
        if context:
            item.quoted = by_wamid.get(context)


# --- templates: what the phone shows, and the parameters a send needs ------------------------------


def _given(components: list[dict[str, Any]], ctype: str) -> list[dict[str, Any]]:
    for component in components or []:
        if str(component.get("type", "")).lower() == ctype:
            return list(component.get("parameters") or [])
    return []


def template_parts(message: Message) -> dict[str, Any]:
    """Header, footer and button labels of a sent template (the body is ``message.body``)."""
    parts: dict[str, Any] = {"name": message.template_name, "language": message.template_language}
    components = message.template.components if message.template is not None else []
    for component in components:
        ctype = str(component.get("type", "")).upper()
        if ctype == "HEADER":
            fmt = str(component.get("format") or "TEXT").upper()
            given = _given(message.components, "header")
            if fmt == "TEXT":
                values = {
                    str(p.get("parameter_name") or i): str(p.get("text") or "")
                    for i, p in enumerate(given, 1)
                }
                parts["header"] = placeholders.fill(component.get("text") or "", values)
            else:
                parts["header_media"] = fmt.lower()
                media = (given[0].get(fmt.lower()) or {}) if given else {}
                parts["header_link"] = str(media.get("link") or "") if isinstance(media, dict) else ""
        elif ctype == "FOOTER":
            parts["footer"] = component.get("text") or ""
        elif ctype == "BUTTONS":
            parts["buttons"] = [
                str(b.get("text") or b.get("type") or "") for b in component.get("buttons") or []
            ]
    return parts


def approved_templates(project: Project) -> QuerySet[MessageTemplate]:
    return (
        MessageTemplate.objects.for_project(project)
        .filter(status=TemplateStatus.APPROVED)
        .select_related("account")
        .order_by("name", "language")
    )


@dataclass
class TemplateField:
    key: str  # the component: "header", "body", "button:0"
    name: str  # the parameter: "1", "first_name", or the header's media kind
    kind: str  # text | image | video | document | location | url | code
    label: str
    help: str = ""
    example: str = ""
    value: str = ""
    error: str = ""

    @property
    def input_name(self) -> str:
        return f"{self.key}.{self.name}"


def _examples(component: dict[str, Any], key: str) -> dict[str, str]:
    example = component.get("example") or {}
    found: dict[str, str] = {}
    positional = example.get(f"{key}_text")
    if isinstance(positional, list) and positional:
        row = positional[0] if isinstance(positional[0], list) else positional
        found.update({str(i): str(v) for i, v in enumerate(row, 1)})
    for named in example.get(f"{key}_text_named_params") or []:
        if isinstance(named, dict):
            found[str(named.get("param_name"))] = str(named.get("example") or "")
    return found


def template_fields(template: MessageTemplate, data: Mapping[str, str] | None = None) -> list[TemplateField]:
    """One input per parameter the template expects (see policy.template_parameters)."""
    expected = policy.template_parameters(template)
    by_type = {str(c.get("type", "")).lower(): c for c in template.components or []}
    buttons = (by_type.get("buttons") or {}).get("buttons") or []
    fields: list[TemplateField] = []
    for key, names in expected.items():
        for name in names:
            if key == "header" and name in ("image", "video", "document"):
                f = TemplateField(
                    key,
                    name,
                    name,
                    _("Header %(media)s") % {"media": name},
                    help=_("A public https link to the file."),
                )
            elif key == "header" and name == "location":
                f = TemplateField(key, name, "location", _("Header location"), help=_("Latitude, longitude"))
                f.example = "52.5200, 13.4050"
            elif key.startswith("button:"):
                button = buttons[int(key.split(":")[1])] if int(key.split(":")[1]) < len(buttons) else {}
                if template.category == "AUTHENTICATION":
                    f = TemplateField(key, name, "code", _("Code for the copy button"))
                    f.help = _("Empty: the verification code above. At most 15 characters.")
                else:
                    label = button.get("text") or _("link")
                    f = TemplateField(
                        key,
                        name,
                        "url",
                        _("Button “%(label)s”: URL %(param)s") % {"label": label, "param": f"{{{{{name}}}}}"},
                    )
                    f.help = str(button.get("url") or "")
                    examples = button.get("example") or []
                    example = str(examples[0]) if examples else ""
                    # Meta's example is the whole URL; the parameter is only the part after the prefix.
                    prefix = placeholders.link_prefix(f.help)
                    f.example = example[len(prefix) :] if prefix and example.startswith(prefix) else example
            elif key == "body" and template.category == "AUTHENTICATION":
                f = TemplateField(
                    key, name, "text", _("Verification code"), help=_("The one-time code to send.")
                )
            else:
                part = {"header": _("Header"), "body": _("Body")}.get(key, key.capitalize())
                f = TemplateField(key, name, "text", f"{part} {{{{{name}}}}}")
                f.example = _examples(by_type.get(key) or {}, key).get(name, "")
            if data is not None:
                f.value = str(data.get(f.input_name) or "").strip()
            fields.append(f)
    return fields


_URL = URLValidator(schemes=["http", "https"])


def build_components(template: MessageTemplate, fields: list[TemplateField]) -> list[dict[str, Any]]:
    """Send components from filled fields; sets ``field.error`` on each bad one (then returns [])."""
    named = template.parameter_format == "NAMED"
    code = next((f.value for f in fields if f.key == "body"), "")
    params: dict[str, list[dict[str, Any]]] = {}
    for f in fields:
        if f.kind == "code" and not f.value:
            f.value = code  # authentication templates carry the code twice: body and button
        if not f.value:
            f.error = _("Fill this in.")
            continue
        if f.kind == "text":
            if "\n" in f.value or "\t" in f.value or "     " in f.value:
                f.error = _("No line breaks, tabs or more than four spaces in a row (Meta refuses them).")
                continue
            param: dict[str, Any] = {"type": "text", "text": f.value}
            if named:
                param["parameter_name"] = f.name
        elif f.kind in ("image", "video", "document"):
            try:
                _URL(f.value)
            except ValidationError:
                f.error = _("Enter a full link starting with https://.")
                continue
            param = {"type": f.kind, f.kind: {"link": f.value}}
        elif f.kind == "location":
            try:
                lat, lng = (float(x) for x in f.value.replace(";", ",").split(","))
            except ValueError:
                f.error = _("Two numbers: latitude, longitude.")
                continue
            if not (-90 <= lat <= 90 and -180 <= lng <= 180):
                f.error = _("Latitude is between -90 and 90, longitude between -180 and 180.")
                continue
            param = {"type": "location", "location": {"latitude": lat, "longitude": lng}}
        elif f.kind == "code" and len(f.value) > 15:
            f.error = _("At most 15 characters.")
            continue
        else:  # url suffix or code
            if " " in f.value:
                f.error = _("No spaces.")
                continue
            param = {"type": "text", "text": f.value}
        params.setdefault(f.key, []).append(param)
    if any(f.error for f in fields):
        return []
    components: list[dict[str, Any]] = []
    for key, parameters in params.items():
        if key.startswith("button:"):
            index = key.split(":")[1]
            components.append({"type": "button", "sub_type": "url", "index": index, "parameters": parameters})
        else:
            components.append({"type": key, "parameters": parameters})
    return components


@dataclass
class TemplatePreview:
    template: MessageTemplate
    header: str = ""
    header_raw: str = ""
    header_media: str = ""
    body: str = ""
    body_raw: str = ""
    footer: str = ""
    buttons: list[str] = field(default_factory=list)


def template_preview(template: MessageTemplate, fields: list[TemplateField]) -> TemplatePreview:
    """The template with the typed values (or the examples) filled in."""
    values: dict[str, dict[str, str]] = {}
    for f in fields:
        values.setdefault(f.key, {})[f.name] = f.value or f.example or f"{{{{{f.name}}}}}"
    preview = TemplatePreview(template=template)
    for component in template.components or []:
        ctype = str(component.get("type", "")).upper()
        if ctype == "HEADER":
            fmt = str(component.get("format") or "TEXT").upper()
            if fmt == "TEXT":
                preview.header_raw = component.get("text") or ""
                preview.header = placeholders.fill(preview.header_raw, values.get("header", {}))
            else:
                preview.header_media = fmt.lower()
        elif ctype == "BODY":
            preview.body_raw = component.get("text") or ""
            preview.body = placeholders.fill(preview.body_raw, values.get("body", {}))
        elif ctype == "FOOTER":
            preview.footer = component.get("text") or ""
        elif ctype == "BUTTONS":
            preview.buttons = [
                str(b.get("text") or b.get("type") or "") for b in component.get("buttons") or []
            ]
    return preview
