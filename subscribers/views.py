"""Subscriber pages: the list with filters and bulk actions, the subscriber page (profile, inline
tags, consent ledger, timeline, GDPR), add/edit, the events page with per-event statistics and the
tag definitions page.

Lists page by keyset ((sort value, id) cursors) and count at most ``COUNT_LIMIT`` rows, so a page
view costs the same at a million subscribers as at fifty. Every write goes through
subscribers.services; htmx requests get the partial named like the DOM id they replace.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import wraps
from typing import Any
from urllib.parse import urlencode

import phonenumbers
from django.contrib import messages
from django.core import signing
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import TruncDate
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from controlpanel.models import Project, Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from controlpanel.wording import mid_sentence

from . import attribute_indexes, bulk, tag_usage
from . import events as eventdefs
from . import tags as tagtypes
from .errors import InvalidInput
from .forms import (
    BULK_ACTIONS,
    BulkForm,
    ConsentForm,
    EraseForm,
    SubscriberForm,
    TagAddForm,
    TagDefinitionForm,
    tag_input,
    tag_text_from_input,
)
from .models import (
    AttributeIndex,
    BulkJob,
    BulkStatus,
    ConsentChange,
    ConsentChannel,
    ConsentSource,
    ConsentState,
    Device,
    Event,
    Segment,
    Subscriber,
    TagDefinition,
    TagType,
    TagValue,
)
from .phones import normalize_phone
from .services import (
    change_consent,
    clean_subscriber_data,
    create_tag,
    delete_tag,
    erase_subscriber,
    export_subscriber,
    find_subscriber,
    set_tags,
    update_subscriber,
    upsert_subscriber,
)
from .textfold import SearchKey, search_key
from .timeline import entries as timeline_entries

PAGE_SIZE = 50
TIMELINE_SIZE = 20
EVENTS_PAGE_SIZE = 50
# Counting stops here: "1,000+" is as useful as an exact number and costs a bounded scan.
COUNT_LIMIT = 1000
STOP_POLLING = 286  # htmx stops polling on this status
STAT_WINDOWS = (30, 90)


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user)


def in_project_time_zone(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Show and read wall-clock times in the project's time zone (inside project_view)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        with timezone.override(zoneinfo.ZoneInfo(request.project.time_zone)):
            return view(request, *args, **kwargs)

    return wrapper


def _is_partial(request: HttpRequest, target: str) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and htmx.target == target and not htmx.history_restore_request


def _render_page(
    request: HttpRequest, template: str, context: dict, partial: str, *, url: str | None = None
) -> HttpResponse:
    """The whole page, or only ``partial`` when htmx asks to swap the element with that id.

    ``url`` is the canonical address of what is shown (no empty parameters); htmx pushes
    it into the address bar instead of the raw form submission.
    """
    is_partial = _is_partial(request, partial)
    response = render(request, f"{template}#{partial}" if is_partial else template, context)
    if is_partial and url:
        response["HX-Push-Url"] = url
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


def _optional_url(name: str, slug: str) -> str | None:
    try:
        return reverse(name, args=[slug])
    except NoReverseMatch:
        return None


def _segment_audience() -> Callable[..., QuerySet] | None:
    """segments.audience(project, tree) when the segment engine is installed."""
    try:
        from .segments import audience  # optional: built separately
    except ImportError:
        return None
    return audience


# --- keyset pagination ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    label: str
    field: str
    descending: bool
    # Sort only the rows where the field is set: "NULLS LAST" would not match the plain btree
    # index, and PostgreSQL would sort the whole table for every page.
    only_set: bool = False

    def ordering(self, *, reverse: bool = False) -> list:
        desc = self.descending != reverse
        col, pk = F(self.field), F("id")
        return [col.desc(), pk.desc()] if desc else [col.asc(), pk.asc()]

    def after(self, value: Any, pk: int) -> Q:
        """Rows that come after (value, pk) in display order."""
        op = "lt" if self.descending else "gt"
        return Q(**{f"{self.field}__{op}": value}) | Q(**{self.field: value, f"id__{op}": pk})

    def before(self, value: Any, pk: int) -> Q:
        """Rows that come before (value, pk) in display order."""
        op = "gt" if self.descending else "lt"
        return Q(**{f"{self.field}__{op}": value}) | Q(**{self.field: value, f"id__{op}": pk})


@dataclass
class KeysetPage:
    rows: list
    next_cursor: str | None = None
    prev_cursor: str | None = None

    @property
    def paged(self) -> bool:
        return bool(self.next_cursor or self.prev_cursor)


_CURSOR_SALT = "subscribers.keyset"


def _encode_cursor(name: str, key: SortKey, row: Any) -> str:
    value = getattr(row, key.field)
    if isinstance(value, datetime):
        value = value.isoformat()
    return signing.dumps([name, value, row.pk], salt=_CURSOR_SALT, compress=True)


def _decode_cursor(raw: str | None, name: str, key: SortKey) -> tuple[Any, int] | None:
    """(value, pk) from a cursor of this sort, or None for a missing, foreign or tampered one."""
    if not raw:
        return None
    try:
        sort, value, pk = signing.loads(raw, salt=_CURSOR_SALT)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if sort != name or not isinstance(pk, int):
        return None
    if value is None:
        return None
    if key.field.endswith("_at"):
        try:
            value = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            return None
    return value, pk


def keyset_page(
    qs: QuerySet, *, key: SortKey, name: str, after: str | None, before: str | None, size: int
) -> KeysetPage:
    """One page of ``qs`` in ``key`` order, starting after or ending before a cursor."""
    if before and (cursor := _decode_cursor(before, name, key)):
        rows = list(qs.filter(key.before(*cursor)).order_by(*key.ordering(reverse=True))[: size + 1])
        if rows:
            more_before = len(rows) > size
            rows = rows[:size][::-1]
            return KeysetPage(
                rows,
                next_cursor=_encode_cursor(name, key, rows[-1]),
                prev_cursor=_encode_cursor(name, key, rows[0]) if more_before else None,
            )
    cursor = _decode_cursor(after, name, key)
    if cursor:
        qs = qs.filter(key.after(*cursor))
    rows = list(qs.order_by(*key.ordering())[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(
        rows,
        next_cursor=_encode_cursor(name, key, rows[-1]) if more else None,
        prev_cursor=_encode_cursor(name, key, rows[0]) if cursor and rows else None,
    )


def bounded_count(qs: QuerySet, limit: int | None = None) -> tuple[int, bool]:
    """(count, more): counts at most ``limit`` + 1 rows instead of the whole table."""
    limit = COUNT_LIMIT if limit is None else limit
    n = qs.order_by()[: limit + 1].count()
    return min(n, limit), n > limit


# --- the list --------------------------------------------------------------------------------------

SORTS: dict[str, SortKey] = {
    "newest": SortKey(gettext_lazy("Newest first"), "created_at", descending=True),
    "oldest": SortKey(gettext_lazy("Oldest first"), "created_at", descending=False),
    "name": SortKey(gettext_lazy("Name A to Z"), "name", descending=False),
    "last_inbound": SortKey(
        gettext_lazy("Wrote to us lately"), "last_inbound_at", descending=True, only_set=True
    ),
}
FILTER_PARAMS = ("q", "consent", "email_consent", "tag", "value", "segment", "sort")
# Filter parameter -> the consent column it filters, and its label on the list.
CONSENT_FILTERS = {
    "consent": ("whatsapp_consent", gettext_lazy("WhatsApp consent")),
    "email_consent": ("email_consent", gettext_lazy("Email consent")),
}
_PHONEISH = re.compile(r"^[\d\s()+./-]+$")


@dataclass
class ListFilters:
    q: str = ""
    consent: str = ""
    email_consent: str = ""
    tag: str = ""
    value: str = ""
    segment: str = ""
    sort: str = "newest"
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data) -> ListFilters:
        f = cls(**{p: (data.get(p) or "").strip() for p in FILTER_PARAMS})
        if f.sort not in SORTS:
            f.sort = "newest"
        for param in CONSENT_FILTERS:
            state = getattr(f, param)
            if state and state not in ConsentState.values:
                f.errors[param] = _("Unknown consent state %(state)r.") % {"state": state}
        return f

    @property
    def active(self) -> bool:
        filters = ("q", *CONSENT_FILTERS, "tag", "segment")
        return any(getattr(self, p) for p in filters) or SORTS[self.sort].only_set

    def params(self, **extra: str) -> dict[str, str]:
        out = {p: getattr(self, p) for p in FILTER_PARAMS if getattr(self, p)}
        if out.get("sort") == "newest":
            del out["sort"]
        return {**out, **{k: v for k, v in extra.items() if v}}

    def query(self, **extra: str) -> str:
        params = self.params(**extra)
        return "?" + urlencode(params) if params else ""


def _search(project: Project, qs: QuerySet, q: str) -> QuerySet:
    """Subscribers found by phone (any format), external id, email, subscriber id, else by name.

    Identifiers are index lookups and win when they match; only then does the search fall
    back to a substring match on names (and digits in phone numbers), which scans the
    table unless a trigram index exists.
    """
    digits = re.sub(r"\D", "", q)
    phoneish = bool(_PHONEISH.match(q)) and len(digits) >= 3
    if phoneish:
        try:
            phone = normalize_phone(q, project.default_country, field="q")
        except InvalidInput:
            phone = None
        if phone is not None:
            # "0555023" is a valid short number too: when nobody has it, it is a fragment.
            found = qs.filter(Q(phone=phone) | Q(external_id=q))
            if found.exists():
                return found
    exact = Q(external_id=q)
    if "@" in q:
        exact |= Q(email__iexact=q)
    with contextlib.suppress(ValueError):
        exact |= Q(public_id=uuid.UUID(q))
    found = qs.filter(exact)
    if found.exists():
        return found
    # Names compare by their search key (textfold.search_key: "mueller", "muller" and "Müller"
    # are one key), which the trigram index subscriber_name_key_trgm is built on.
    fuzzy = Q(name_key__contains=search_key(q))
    if phoneish:
        fuzzy |= Q(phone__contains=digits)
        national = _national_prefix(digits, project.default_country)
        if national:
            fuzzy |= Q(phone__startswith=national)
    return qs.alias(name_key=SearchKey("name")).filter(fuzzy)


def _national_prefix(digits: str, country: str) -> str | None:
    """The E.164 start of a number typed in part with its trunk or international prefix:
    "0555023" in Germany is "+49555023", "0049151" is "+49151"."""
    if digits.startswith("00") and len(digits) > 3:
        return "+" + digits[2:]
    code = phonenumbers.country_code_for_region((country or "").upper())
    if digits.startswith("0") and code:
        return f"+{code}{digits[1:]}"
    return None


def _tag_conditions(project: Project, name: str, value: str) -> list:
    """Filter expressions for "tag = value" ("" = the tag is set). Raises InvalidInput."""
    builtin = tagtypes.builtin(name)
    if builtin is not None:
        col = builtin.field
        if builtin.type == TagType.BOOLEAN:  # WhatsApp opt-in
            if not value:
                return []
            opted_in = tagtypes.parse_text(builtin.name, TagType.BOOLEAN, value)
            cond = Q(whatsapp_consent=ConsentState.OPTED_IN)
            return [cond if opted_in else ~cond]
        if builtin.type == TagType.DATETIME:
            if not value:
                return [Q(**{f"{col}__isnull": False})]
            day = tagtypes.parse_text(builtin.name, TagType.DATE, value)
            return [Q(**{f"{col}__date": day})]
        if not value:
            return [Q(**{f"{col}__isnull": False}) & ~Q(**{col: ""})]
        if col == "phone":
            return [Q(phone=normalize_phone(value, project.default_country, field="value"))]
        return [Q(**{f"{col}__iexact": value})]
    definition = TagDefinition.objects.for_project(project).filter(name__iexact=name).first()
    if definition is None:
        raise InvalidInput(_("This project has no tag named %(name)r.") % {"name": name}, field="tag")
    values = TagValue.objects.filter(subscriber=OuterRef("pk"), tag=definition)
    if not value:
        return [Exists(values)]
    if definition.type == TagType.DATETIME and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        day = tagtypes.parse_text(definition.name, TagType.DATE, value)
        return [Exists(values.filter(value_datetime__date=day))]
    text = tag_text_from_input(definition.type, {"value": value}, timezone.get_current_timezone())
    parsed = tagtypes.parse_text(definition.name, definition.type, text)
    # A list tag matches when it holds every listed item.
    return [Exists(values.filter(**cols)) for cols in tagtypes.value_columns(definition.type, parsed)]


def filtered_subscribers(project: Project, f: ListFilters, segments: dict) -> QuerySet:
    """The subscribers matching the filters; errors go into ``f.errors`` and match nothing."""
    qs = Subscriber.objects.for_project(project)
    if (key := SORTS[f.sort]).only_set:
        qs = qs.filter(**{f"{key.field}__isnull": False})
    if f.q:
        qs = _search(project, qs, f.q)
    for param, (column, _label) in CONSENT_FILTERS.items():
        state = getattr(f, param)
        if state and param not in f.errors:
            qs = qs.filter(**{column: state})
    if f.tag:
        try:
            qs = qs.filter(*_tag_conditions(project, f.tag, f.value))
        except InvalidInput as exc:
            f.errors["tag" if exc.field == "tag" else "value"] = exc.message
    if f.segment:
        audience = _segment_audience()
        segment = segments.get(f.segment)
        if audience is None or segment is None:
            f.errors["segment"] = _("That segment does not exist (any more).")
        else:
            try:
                qs = qs.filter(pk__in=audience(project, segment.rule).values("pk"))
            except InvalidInput as exc:  # e.g. a tag the rule names was deleted since
                f.errors["segment"] = _("Segment “%(name)s” cannot be applied: %(error)s") % {
                    "name": segment.name,
                    "error": exc.message,
                }
    return qs.none() if f.errors else qs


def _segments(project: Project) -> dict[str, Segment]:
    if _segment_audience() is None:
        return {}
    segments = Segment.objects.for_project(project).only("public_id", "name", "rule")
    return {str(s.public_id): s for s in segments}


@project_view(section="subscribers")
@in_project_time_zone
def subscriber_list(request: HttpRequest) -> HttpResponse:
    project = request.project
    f = ListFilters.from_data(request.GET)
    segments = _segments(project)
    qs = filtered_subscribers(project, f, segments)
    page = keyset_page(
        qs,
        key=SORTS[f.sort],
        name=f.sort,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
        size=PAGE_SIZE,
    )
    if page.next_cursor is None and not (request.GET.get("after") or request.GET.get("before")):
        count, more = len(page.rows), False  # everything is on this one page: no count query
    else:
        count, more = bounded_count(qs)
    list_url = reverse("subscribers:list", args=[project.slug])
    shown = number_format(count, force_grouping=True)
    if more:
        count_label = (
            _("More than %(count)s subscribers match") if f.active else _("More than %(count)s subscribers")
        )
    elif f.active:
        count_label = ngettext("%(count)s subscriber matches", "%(count)s subscribers match", count)
    else:
        count_label = ngettext("%(count)s subscriber", "%(count)s subscribers", count)
    context = {
        "count_label": count_label % {"count": shown},
        "all_label": f"{shown}+" if more else shown,
        "tab": "subscribers",
        "next_url": list_url + f.query(after=page.next_cursor) if page.next_cursor else None,
        "prev_url": list_url + f.query(before=page.prev_cursor) if page.prev_cursor else None,
        "filters": f,
        "page": page,
        "sorts": SORTS,
        "consent_states": ConsentState.choices,
        "consent_filters": [
            {"param": param, "label": label, "value": getattr(f, param), "error": f.errors.get(param)}
            for param, (_column, label) in CONSENT_FILTERS.items()
        ],
        "segments": segments,
        "segments_available": _segment_audience() is not None,
        "tag_names": _tag_names(project),
        "bulk_actions": BULK_ACTIONS,
        "import_url": _optional_url("subscribers:import_upload", project.slug),
        "export_url": _optional_url("subscribers:export", project.slug),
    }
    canonical = list_url + f.query(after=request.GET.get("after", ""), before=request.GET.get("before", ""))
    return _render_page(request, "subscribers/list.html", context, "subscriber-results", url=canonical)


def _tag_names(project: Project) -> list[str]:
    custom = TagDefinition.objects.for_project(project).values_list("name", flat=True)
    return [t.name for t in tagtypes.BUILTIN_TAGS.values()] + list(custom)


@project_view(section="subscribers", read=Role.MARKETER)
@require_POST
@in_project_time_zone
def subscriber_bulk(request: HttpRequest) -> HttpResponse:
    project = request.project
    f = ListFilters.from_data(request.POST)
    back = reverse("subscribers:list", args=[project.slug]) + f.query()
    form = BulkForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(back)
    data = form.cleaned_data
    if data["all_matching"]:
        qs = filtered_subscribers(project, f, _segments(project))
        if f.errors:
            messages.error(request, " ".join(f.errors.values()))
            return redirect(back)
    else:
        qs = Subscriber.objects.for_project(project).filter(public_id__in=data["ids"])
    ids = list(qs.order_by("id").values_list("pk", flat=True)[: bulk.MAX_TARGETS + 1])
    params = {k: data[k] for k in ("tag_name", "tag_value", "evidence") if data.get(k)}
    params["back"] = back
    try:
        job = bulk.start_bulk_job(
            project=project, action=data["action"], subscriber_ids=ids, params=params, actor=_actor(request)
        )
    except InvalidInput as exc:
        if exc.code == "empty":
            messages.warning(request, exc.message)
        else:
            messages.error(request, _("Nothing changed: %(error)s") % {"error": exc.message})
        return redirect(back)
    return redirect("subscribers:bulk_job", project.slug, job.public_id)


def _bulk_job(request: HttpRequest, job_id: uuid.UUID) -> BulkJob:
    return get_object_or_404(BulkJob.objects.for_project(request.project), public_id=job_id)


def _bulk_context(request: HttpRequest, job: BulkJob) -> dict:
    project = request.project
    back = job.params.get("back", "")
    list_url = reverse("subscribers:list", args=[project.slug])
    context = {
        "tab": "subscribers",
        "job": job,
        "action_label": dict(BULK_ACTIONS).get(job.action, job.action),
        "finished": job.status in bulk.FINISHED,
        "percent": int(job.processed * 100 / job.total) if job.total else 0,
        "summary": bulk.summary(job),
        # Only back to the list (with its filters): never a URL from elsewhere.
        "back": back if back.startswith(list_url) else list_url,
    }
    if job.status == BulkStatus.DRAFT:
        context["sample"] = Subscriber.objects.for_project(project).filter(pk__in=job.subscriber_ids[:10])
    return context


@project_view(section="subscribers", read=Role.MARKETER)
@in_project_time_zone
def bulk_job(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """A bulk action: the confirmation of a draft, else its progress (polled) and summary."""
    job = _bulk_job(request, job_id)
    context = _bulk_context(request, job)
    if request.htmx:
        response = render(request, "subscribers/bulk_job.html#bulk-progress", context)
        if context["finished"]:
            response.status_code = STOP_POLLING
        return response
    return render(request, "subscribers/bulk_job.html", context)


@project_view(section="subscribers", read=Role.MARKETER)
@require_POST
def bulk_job_confirm(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    job = _bulk_job(request, job_id)
    bulk.confirm_bulk_job(job=job, actor=_actor(request))
    return redirect("subscribers:bulk_job", request.project.slug, job.public_id)


# --- the subscriber page ---------------------------------------------------------------------------

BUILTIN_BY_FIELD = {t.field: t for t in tagtypes.BUILTIN_TAGS.values()}
EVENT_KEY = SortKey("Newest first", "occurred_at", descending=True)
WINDOW = timedelta(hours=24)


@dataclass
class TagRow:
    key: str  # URL key: the subscriber field of a built-in tag, else the definition's public id
    name: str
    type: str
    builtin: bool
    editable: bool
    value: Any = None  # Python value; None means not set
    editing: bool = False
    error: str = ""
    draft: str | None = None  # what the user typed, kept when it was refused
    label: str = ""  # the name shown: a built-in tag's in the user's language

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    @property
    def type_label(self) -> str:
        return TagType(self.type).label

    @property
    def input(self) -> dict[str, str]:
        return tag_input(self.type)

    @property
    def is_set(self) -> bool:
        return self.value not in (None, "", [])

    @property
    def input_value(self) -> str:
        if self.draft is not None:
            return self.draft
        v = self.value
        if v is None:
            return ""
        if isinstance(v, datetime):
            return timezone.localtime(v).strftime("%Y-%m-%dT%H:%M:%S")
        if isinstance(v, date):
            return v.isoformat()
        if isinstance(v, list):
            return ", ".join(v)
        if isinstance(v, Decimal):
            return format(v.normalize(), "f")
        return str(v)


def _builtin_row(tag: tagtypes.BuiltinTag, subscriber: Subscriber) -> TagRow:
    value = getattr(subscriber, tag.field)
    if tag.field == "whatsapp_consent":
        value = value == ConsentState.OPTED_IN
    return TagRow(
        tag.field, tag.name, tag.type, builtin=True, editable=tag.writable, value=value, label=tag.label
    )


def _custom_row(definition: TagDefinition, values: list[TagValue]) -> TagRow:
    row = TagRow(str(definition.public_id), definition.name, definition.type, builtin=False, editable=True)
    if not values:
        return row
    first = values[0]
    match definition.type:
        case TagType.DATE:
            row.value = first.value_date
        case TagType.DATETIME:
            row.value = first.value_datetime
        case TagType.DECIMAL:
            row.value = first.value_number.normalize()
        case _:
            row.value = tagtypes.display_value(definition.type, values)
    return row


def _tag_rows(subscriber: Subscriber) -> list[TagRow]:
    rows = [_builtin_row(t, subscriber) for t in tagtypes.BUILTIN_TAGS.values()]
    grouped: dict[int, list[TagValue]] = {}
    definitions: dict[int, TagDefinition] = {}
    for value in subscriber.tag_values.select_related("tag").order_by("tag__name", "id"):
        grouped.setdefault(value.tag_id, []).append(value)
        definitions[value.tag_id] = value.tag
    rows += [_custom_row(definitions[tag_id], values) for tag_id, values in grouped.items()]
    return rows


def _tag_target(project: Project, key: str) -> tagtypes.BuiltinTag | TagDefinition:
    if key in BUILTIN_BY_FIELD:
        return BUILTIN_BY_FIELD[key]
    try:
        public_id = uuid.UUID(key)
    except ValueError:
        raise Http404("No such tag.") from None
    return get_object_or_404(TagDefinition.objects.for_project(project), public_id=public_id)


def _row_for(subscriber: Subscriber, target: tagtypes.BuiltinTag | TagDefinition) -> TagRow:
    if isinstance(target, tagtypes.BuiltinTag):
        return _builtin_row(target, subscriber)
    values = list(
        TagValue.objects.for_project(subscriber.project)
        .filter(subscriber=subscriber, tag=target)
        .order_by("id")
    )
    return _custom_row(target, values)


def _get_subscriber(request: HttpRequest, subscriber_id: uuid.UUID) -> Subscriber:
    subscriber = get_object_or_404(Subscriber.objects.for_project(request.project), public_id=subscriber_id)
    subscriber.project = request.project
    return subscriber


def _detail_context(
    request: HttpRequest,
    subscriber: Subscriber,
    *,
    rows: list[TagRow] | None = None,
    tag_form: TagAddForm | None = None,
    consent_form: ConsentForm | None = None,
) -> dict:
    project = request.project
    rows = rows if rows is not None else _tag_rows(subscriber)
    edit_tag = request.GET.get("edit_tag")
    for row in rows:
        row.editing = row.editing or (row.editable and row.key == edit_tag)
    window_until = subscriber.last_inbound_at + WINDOW if subscriber.last_inbound_at else None
    timeline = keyset_page(
        Event.objects.for_project(project).filter(subscriber=subscriber),
        key=EVENT_KEY,
        name="timeline",
        after=request.GET.get("after"),
        before=request.GET.get("before"),
        size=TIMELINE_SIZE,
    )
    return {
        "tab": "subscribers",
        "subscriber": subscriber,
        "tag_rows": rows,
        "tag_form": tag_form or TagAddForm(),
        "tag_names": _tag_names(project),
        "consent_form": consent_form or ConsentForm(),
        # "<channel>:<state>" of a consent form that came back with errors: the page refills it.
        "posted_consent": (
            f"{consent_form.data.get('channel') or ConsentChannel.WHATSAPP}:{consent_form.data.get('state')}"
            if consent_form is not None
            else ""
        ),
        "consent_history": ConsentChange.objects.for_project(project).filter(subscriber=subscriber)[:100],
        # Active devices (no removed_at) first, then the latest removed.
        "devices": Device.objects.for_project(project)
        .filter(subscriber=subscriber)
        .order_by(F("removed_at").desc(nulls_first=True), "-last_seen_at"),
        "window_until": window_until if window_until and window_until > timezone.now() else None,
        "timeline": timeline,
        "timeline_entries": timeline_entries(timeline.rows),
        "consent_export_url": _optional_url("subscribers:export_consent", project.slug),
    }


@project_view(section="subscribers")
@in_project_time_zone
def subscriber_detail(request: HttpRequest, subscriber_id: uuid.UUID) -> HttpResponse:
    subscriber = _get_subscriber(request, subscriber_id)
    context = _detail_context(request, subscriber)
    return _render_page(request, "subscribers/subscriber_detail.html", context, "subscriber-timeline")


def _detail_url(subscriber: Subscriber, anchor: str = "") -> str:
    url = reverse("subscribers:detail", args=[subscriber.project.slug, subscriber.public_id])
    return url + (f"#{anchor}" if anchor else "")


@project_view(section="subscribers")
@in_project_time_zone
def subscriber_tag(request: HttpRequest, subscriber_id: uuid.UUID, key: str) -> HttpResponse:
    """One tag row: GET shows it (``?mode=edit`` as an input of its type), POST saves it."""
    subscriber = _get_subscriber(request, subscriber_id)
    target = _tag_target(request.project, key)
    row = _row_for(subscriber, target)
    if request.method == "POST":
        if not row.editable:
            raise Http404("This tag is maintained by the platform.")
        text = tag_text_from_input(row.type, request.POST, timezone.get_current_timezone())
        try:
            with transaction.atomic():
                set_tags(
                    project=request.project, subscriber=subscriber, tags={row.name: text}, from_text=True
                )
        except InvalidInput as exc:
            row.error = exc.message
        except IntegrityError:
            row.error = _("Another subscriber already has this %(tag)s.") % {"tag": row.name.lower()}
        if row.error:
            row.editing, row.draft = True, request.POST.get("value", "")
            if not request.htmx:
                rows = [row if r.key == row.key else r for r in _tag_rows(subscriber)]
                context = _detail_context(request, subscriber, rows=rows)
                return render(request, "subscribers/subscriber_detail.html", context)
        else:
            if not request.htmx:
                messages.success(request, _("Tag “%(name)s” saved.") % {"name": row.name})
                return redirect(_detail_url(subscriber, f"tag-row-{key}"))
            subscriber.refresh_from_db()
            subscriber.project = request.project
            row = _row_for(subscriber, target)
    elif not request.htmx:
        return redirect(_detail_url(subscriber) + f"?edit_tag={key}#tag-row-{key}")
    else:
        may_write = request.membership.can(Role.MARKETER)
        row.editing = row.editable and may_write and request.GET.get("mode") == "edit"
    return render(
        request, "subscribers/subscriber_detail.html#tag-row", {"row": row, "subscriber": subscriber}
    )


@project_view(section="subscribers")
@require_POST
@in_project_time_zone
def subscriber_tag_remove(request: HttpRequest, subscriber_id: uuid.UUID, key: str) -> HttpResponse:
    subscriber = _get_subscriber(request, subscriber_id)
    target = _tag_target(request.project, key)
    if isinstance(target, tagtypes.BuiltinTag) and not target.writable:
        raise Http404("This tag is maintained by the platform.")
    name = target.name
    try:
        with transaction.atomic():
            set_tags(project=request.project, subscriber=subscriber, tags={name: None})
    except InvalidInput as exc:
        messages.error(request, exc.message)
        return redirect(_detail_url(subscriber, "subscriber-tags"))
    if not request.htmx:
        messages.success(request, _("Tag “%(name)s” removed.") % {"name": name})
        return redirect(_detail_url(subscriber, "subscriber-tags"))
    if isinstance(target, TagDefinition):
        return HttpResponse("")  # the row disappears
    subscriber.refresh_from_db()
    subscriber.project = request.project
    context = {"row": _row_for(subscriber, target), "subscriber": subscriber}
    return render(request, "subscribers/subscriber_detail.html#tag-row", context)


@project_view(section="subscribers")
@require_POST
@in_project_time_zone
def subscriber_tag_add(request: HttpRequest, subscriber_id: uuid.UUID) -> HttpResponse:
    subscriber = _get_subscriber(request, subscriber_id)
    form = TagAddForm(request.POST)
    if form.is_valid():
        name, value = form.cleaned_data["name"].strip(), form.cleaned_data["value"]
        builtin = tagtypes.builtin(name)
        definition = TagDefinition.objects.for_project(request.project).filter(name__iexact=name).first()
        type_ = builtin.type if builtin else definition.type if definition else None
        # Typed text ("no", "ja", "maybe"), not a checkbox: a yes/no tag is parsed, not "set".
        text = (
            tag_text_from_input(type_, {"value": value}, timezone.get_current_timezone())
            if type_ and type_ != TagType.BOOLEAN
            else value
        )
        if not text.strip():
            form.add_error("value", _("Give the tag a value."))
        elif builtin is not None and not builtin.writable:
            form.add_error("name", _("Tag %(name)r is maintained by the platform.") % {"name": builtin.name})
        else:
            try:
                with transaction.atomic():
                    set_tags(
                        project=request.project, subscriber=subscriber, tags={name: text}, from_text=True
                    )
            except InvalidInput as exc:
                form.add_error("name" if exc.code == "invalid_tag_name" else "value", exc.message)
            except IntegrityError:
                form.add_error(
                    "value", _("Another subscriber already has this %(tag)s.") % {"tag": name.lower()}
                )
    if form.is_valid() and not request.htmx:
        messages.success(request, _("Tag “%(name)s” set.") % {"name": form.cleaned_data["name"]})
        return redirect(_detail_url(subscriber, "subscriber-tags"))
    subscriber.refresh_from_db()
    subscriber.project = request.project
    context = _detail_context(request, subscriber, tag_form=form if form.errors else None)
    if request.htmx:
        return render(request, "subscribers/subscriber_detail.html#subscriber-tags", context)
    return render(request, "subscribers/subscriber_detail.html", context)


# Where the detail page shows each channel's consent (the WhatsApp card keeps its old anchor).
CONSENT_ANCHORS = {
    ConsentChannel.WHATSAPP: "subscriber-consent",
    ConsentChannel.EMAIL: "channel-email",
    ConsentChannel.PUSH: "channel-push",
}


@project_view(section="subscribers")
@require_POST
@in_project_time_zone
def subscriber_consent(request: HttpRequest, subscriber_id: uuid.UUID) -> HttpResponse:
    subscriber = _get_subscriber(request, subscriber_id)
    form = ConsentForm(request.POST)
    if form.is_valid():
        state = ConsentState(form.cleaned_data["state"])
        channel = form.cleaned_data["channel"]
        try:
            change = change_consent(
                subscriber=subscriber,
                channel=channel,
                state=state,
                source=ConsentSource.PANEL,
                evidence=form.cleaned_data["evidence"],
                actor=_actor(request),
            )
        except InvalidInput as exc:
            form.add_error("evidence", exc.message)
        else:
            if change is None:
                messages.info(
                    request, _("Already %(state)s; nothing changed.") % {"state": mid_sentence(state.label)}
                )
            else:
                messages.success(
                    request,
                    _("%(channel)s consent: %(state)s. Recorded in the ledger.")
                    % {"channel": channel.label, "state": mid_sentence(state.label)},
                )
            return redirect(_detail_url(subscriber, CONSENT_ANCHORS[channel]))
    context = _detail_context(request, subscriber, consent_form=form)
    return render(request, "subscribers/subscriber_detail.html", context)


@project_view(section="subscribers")
@require_POST
def subscriber_export(request: HttpRequest, subscriber_id: uuid.UUID) -> HttpResponse:
    """GDPR access: a JSON file with everything about one subscriber (audited by the service)."""
    subscriber = _get_subscriber(request, subscriber_id)
    data = export_subscriber(subscriber=subscriber, actor=_actor(request))
    response = HttpResponse(
        json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False),
        content_type="application/json; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="subscriber-{subscriber.public_id}.json"'
    return response


def _erase_confirmation(subscriber: Subscriber) -> str:
    return subscriber.phone or subscriber.bsuid or str(subscriber.public_id)


@project_view(section="subscribers", read=Role.MARKETER)
@in_project_time_zone
def subscriber_erase(request: HttpRequest, subscriber_id: uuid.UUID) -> HttpResponse:
    """GDPR erasure after typing the subscriber's phone number."""
    subscriber = _get_subscriber(request, subscriber_id)
    expected = _erase_confirmation(subscriber)
    form = EraseForm(request.POST or None, expected=expected)
    if request.method == "POST" and form.is_valid():
        label = str(subscriber)
        erase_subscriber(subscriber=subscriber, actor=_actor(request))
        messages.success(
            request, _("%(name)s was erased: profile, tags, events and consent history.") % {"name": label}
        )
        return redirect("subscribers:list", request.project.slug)
    context = {"tab": "subscribers", "subscriber": subscriber, "form": form, "expected": expected}
    return render(request, "subscribers/subscriber_erase.html", context)


# --- add and edit ----------------------------------------------------------------------------------


@project_view(section="subscribers", read=Role.MARKETER)
@in_project_time_zone
def subscriber_add(request: HttpRequest) -> HttpResponse:
    project = request.project
    form = SubscriberForm(request.POST or None)
    existing = None
    if request.method == "POST" and form.is_valid():
        try:
            data = clean_subscriber_data(project, form.raw())
            existing = find_subscriber(project, phone=data.phone, external_id=data.external_id)
            if existing is not None:
                same_phone = data.phone and existing.phone == data.phone
                form.add_error(
                    "phone" if same_phone else "external_id",
                    (
                        _("%(name)s has this phone number already.")
                        if same_phone
                        else _("%(name)s has this external id already.")
                    )
                    % {"name": existing},
                )
            else:
                subscriber, _created = upsert_subscriber(
                    project=project, data=data, actor=_actor(request), source=ConsentSource.PANEL
                )
                messages.success(request, _("%(name)s was added.") % {"name": subscriber})
                return redirect("subscribers:detail", project.slug, subscriber.public_id)
        except InvalidInput as exc:
            form.add_service_error(exc)
    context = {"tab": "subscribers", "form": form, "existing": existing, "subscriber": None}
    return render(request, "subscribers/subscriber_form.html", context)


@project_view(section="subscribers", read=Role.MARKETER)
@in_project_time_zone
def subscriber_edit(request: HttpRequest, subscriber_id: uuid.UUID) -> HttpResponse:
    project = request.project
    subscriber = _get_subscriber(request, subscriber_id)
    initial = {
        "phone": subscriber.phone or "",
        "external_id": subscriber.external_id or "",
        **{k: getattr(subscriber, k) for k in ("name", "email", "language", "country", "time_zone")},
    }
    form = SubscriberForm(
        request.POST or None,
        initial=initial,
        phone_required=subscriber.phone is not None,
        offer_opt_in=subscriber.whatsapp_consent != ConsentState.OPTED_IN,
    )
    existing = None
    if request.method == "POST" and form.is_valid():
        try:
            saved, _changed = update_subscriber(
                project=project,
                subscriber=subscriber,
                changes=form.raw(),
                actor=_actor(request),
                source=ConsentSource.PANEL,
            )
        except InvalidInput as exc:
            form.add_service_error(exc)
            existing = getattr(exc, "other", None)
        else:
            messages.success(request, _("%(name)s was saved.") % {"name": saved})
            return redirect("subscribers:detail", project.slug, subscriber.public_id)
    context = {"tab": "subscribers", "form": form, "existing": existing, "subscriber": subscriber}
    return render(request, "subscribers/subscriber_form.html", context)


# --- events ----------------------------------------------------------------------------------------


def _find_subscriber_ref(project: Project, ref: str) -> Subscriber | None:
    """A subscriber by public id, phone (any format) or external id."""
    qs = Subscriber.objects.for_project(project)
    try:
        return qs.filter(public_id=uuid.UUID(ref)).first()
    except ValueError:
        pass
    if _PHONEISH.match(ref):
        try:
            found = qs.filter(phone=normalize_phone(ref, project.default_country)).first()
        except InvalidInput:
            found = None
        if found is not None:
            return found
    return qs.filter(external_id=ref).first()


@project_view(section="subscribers")
@in_project_time_zone
def event_list(request: HttpRequest) -> HttpResponse:
    project = request.project
    name = (request.GET.get("name") or "").strip()
    who = (request.GET.get("subscriber") or "").strip()
    qs = Event.objects.for_project(project).select_related("subscriber")
    error, subscriber = "", None
    if name:
        qs = qs.filter(name=name)
    if who:
        subscriber = _find_subscriber_ref(project, who)
        if subscriber is None:
            error = _("No subscriber has the phone number, id or external id %(who)r.") % {"who": who}
            qs = qs.none()
        else:
            qs = qs.filter(subscriber=subscriber)
    page = keyset_page(
        qs,
        key=EVENT_KEY,
        name="events",
        after=request.GET.get("after"),
        before=request.GET.get("before"),
        size=EVENTS_PAGE_SIZE,
    )
    params = {k: v for k, v in (("name", name), ("subscriber", who)) if v}
    events_url = reverse("subscribers:events", args=[project.slug])
    context = {
        "tab": "events",
        "next_url": f"{events_url}?{urlencode({**params, 'after': page.next_cursor})}"
        if page.next_cursor
        else None,
        "prev_url": f"{events_url}?{urlencode({**params, 'before': page.prev_cursor})}"
        if page.prev_cursor
        else None,
        "page": page,
        "name": name,
        "who": who,
        "who_subscriber": subscriber,
        "error": error,
        "definitions": eventdefs.all_definitions(project),
    }
    cursor = {k: request.GET[k] for k in ("after", "before") if request.GET.get(k)}
    canonical = events_url + ("?" + urlencode({**params, **cursor}) if params or cursor else "")
    return _render_page(request, "subscribers/events.html", context, "event-results", url=canonical)


@project_view(section="subscribers")
@in_project_time_zone
def event_stats(request: HttpRequest, name: str) -> HttpResponse:
    project = request.project
    definitions = eventdefs.all_definitions(project)
    events = Event.objects.for_project(project).filter(name=name)
    if name not in definitions and not events.exists():
        raise Http404("No such event.")
    try:
        days = int(request.GET.get("days", STAT_WINDOWS[0]))
    except ValueError:
        days = STAT_WINDOWS[0]
    if days not in STAT_WINDOWS:
        days = STAT_WINDOWS[0]
    tz = timezone.get_current_timezone()
    today = timezone.localdate()
    first_day = today - timedelta(days=days - 1)
    since = datetime.combine(first_day, datetime.min.time(), tzinfo=tz)
    window = events.filter(occurred_at__gte=since)
    per_day = dict(
        window.annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    series = [(first_day + timedelta(days=i)) for i in range(days)]
    totals = window.aggregate(total=Count("id"), unique=Count("subscriber", distinct=True))
    schema = definitions.get(name, {})
    top_values = []
    for attribute, type_ in schema.items():
        if type_ != TagType.STRING:
            continue
        # exclude(v="") is not expressible on SQLite (it compares JSON), so "" is dropped here.
        rows = [
            r
            for r in window.annotate(v=KT(f"attributes__{attribute}"))
            .exclude(v__isnull=True)
            .values("v")
            .annotate(n=Count("id"))
            .order_by("-n", "v")[:6]
            if r["v"] != ""
        ][:5]
        if rows:
            top_values.append({"attribute": attribute, "rows": rows})
    chart = {
        "label": _("%(name)s per day") % {"name": name},
        "labels": [d.isoformat() for d in series],
        "data": [per_day.get(d, 0) for d in series],
    }
    context = {
        "tab": "events",
        "name": name,
        "days": days,
        "windows": STAT_WINDOWS,
        "first_day": first_day,
        "total": totals["total"],
        "unique": totals["unique"],
        "chart": chart,
        "top_values": top_values,
        "schema": schema,
        "all_time": bounded_count(events),
        "attributes": _attribute_rows(project, name, schema),
        "can_index": request.membership.can(Role.ADMIN),
        "indexes_built": attribute_indexes.supported(),
    }
    return render(request, "subscribers/event_stats.html", context)


def _attribute_rows(project, name: str, schema: dict[str, str]) -> list[dict[str, Any]]:
    indexes = {i.attribute: i for i in AttributeIndex.objects.for_project(project).filter(event_name=name)}
    return [
        {
            "name": attribute,
            "type": type_,
            "index": indexes.get(attribute),
            "indexable": type_ in attribute_indexes.INDEXABLE_TYPES,
        }
        for attribute, type_ in schema.items()
    ]


@project_view(section="subscribers", write=Role.ADMIN)
@require_POST
def event_attribute_index(request: HttpRequest, name: str) -> HttpResponse:
    """Index an attribute for segments, or remove its index (admins: it changes the database)."""
    project = request.project
    attribute = request.POST.get("attribute", "")
    url = reverse("subscribers:event_stats", args=[project.slug, name])
    if request.POST.get("action") == "remove":
        index = get_object_or_404(
            AttributeIndex.objects.for_project(project), event_name=name, attribute=attribute
        )
        attribute_indexes.remove_index(index=index, actor=_actor(request))
        messages.success(
            request, _("The index on “%(attribute)s” is being removed.") % {"attribute": attribute}
        )
        return redirect(url)
    try:
        attribute_indexes.request_index(
            project=project, event_name=name, attribute=attribute, actor=_actor(request)
        )
    except InvalidInput as exc:
        messages.error(request, exc.message)
        return redirect(url)
    messages.success(
        request,
        _("“%(attribute)s” is being indexed. Segment counts that filter on it get faster once it is ready.")
        % {"attribute": attribute},
    )
    return redirect(url)


# --- tag definitions -------------------------------------------------------------------------------


@project_view(section="subscribers")
@in_project_time_zone
def tag_list(request: HttpRequest) -> HttpResponse:
    project = request.project
    form = TagDefinitionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            definition = create_tag(project=project, actor=_actor(request), **form.cleaned_data)
        except InvalidInput as exc:
            form.add_service_error(exc)
        else:
            messages.success(
                request,
                _("Tag “%(name)s” (%(type)s) created.")
                % {"name": definition.name, "type": definition.get_type_display()},
            )
            return redirect("subscribers:tags", project.slug)
    builtin_usage = tag_usage.builtin_usage(project)
    builtin_rows = [
        {
            "name": t.name,
            "label": t.label,
            "type": TagType(t.type).label,
            "usage": builtin_usage[t.field],
            "writable": t.writable,
        }
        for t in tagtypes.BUILTIN_TAGS.values()
    ]
    custom = list(TagDefinition.objects.for_project(project))
    usage = tag_usage.custom_usage(project, custom)
    for d in custom:
        d.usage = usage[d.pk]
    context = {"tab": "tags", "form": form, "builtin_rows": builtin_rows, "custom": custom}
    return render(request, "subscribers/tags.html", context)


@project_view(section="subscribers")
@require_POST
def tag_delete(request: HttpRequest, tag_id: uuid.UUID) -> HttpResponse:
    project = request.project
    definition = get_object_or_404(TagDefinition.objects.for_project(project), public_id=tag_id)
    try:
        removed = delete_tag(project=project, definition=definition, actor=_actor(request))
    except InvalidInput as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            ngettext(
                "Tag “%(name)s” deleted with %(count)s value.",
                "Tag “%(name)s” deleted with %(count)s values.",
                removed,
            )
            % {"name": definition.name, "count": number_format(removed, force_grouping=True)},
        )
    return HttpResponseRedirect(reverse("subscribers:tags", args=[project.slug]))


urlpatterns = [
    path("subscribers/", subscriber_list, name="list"),
    path("subscribers/add/", subscriber_add, name="add"),
    path("subscribers/bulk/", subscriber_bulk, name="bulk"),
    path("subscribers/bulk/<uuid:job_id>/", bulk_job, name="bulk_job"),
    path("subscribers/bulk/<uuid:job_id>/confirm/", bulk_job_confirm, name="bulk_job_confirm"),
    path("subscribers/events/", event_list, name="events"),
    path("subscribers/events/<str:name>/", event_stats, name="event_stats"),
    path("subscribers/events/<str:name>/indexes/", event_attribute_index, name="event_attribute_index"),
    path("subscribers/tags/", tag_list, name="tags"),
    path("subscribers/tags/<uuid:tag_id>/delete/", tag_delete, name="tag_delete"),
    path("subscribers/<uuid:subscriber_id>/", subscriber_detail, name="detail"),
    path("subscribers/<uuid:subscriber_id>/edit/", subscriber_edit, name="edit"),
    path("subscribers/<uuid:subscriber_id>/tags/", subscriber_tag_add, name="tag_add"),
    path("subscribers/<uuid:subscriber_id>/tags/<str:key>/", subscriber_tag, name="tag_row"),
    path("subscribers/<uuid:subscriber_id>/tags/<str:key>/remove/", subscriber_tag_remove, name="tag_remove"),
    path("subscribers/<uuid:subscriber_id>/consent/", subscriber_consent, name="consent"),
    path("subscribers/<uuid:subscriber_id>/export/", subscriber_export, name="export_json"),
    path("subscribers/<uuid:subscriber_id>/erase/", subscriber_erase, name="erase"),
]
