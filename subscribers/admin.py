from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from controlpanel.services import Actor

from . import feed
from .errors import InvalidInput
from .models import (
    AttributeIndex,
    AttributeIndexStatus,
    BulkJob,
    ConsentChange,
    ConsentChannel,
    ConsentSource,
    ConsentState,
    Device,
    Event,
    EventDefinition,
    FeedCursor,
    FeedFailure,
    ImportJob,
    ImportRejection,
    Segment,
    Subscriber,
    TagDefinition,
    TagValue,
)
from .profile import address_reset
from .services import change_consent, clean_new_tag, clean_profile, create_tag, delete_tag, erase_subscriber
from .tags import clean_text


def _add_service_error(form: forms.Form, exc: InvalidInput, fields: dict[str, str] | None = None) -> None:
    name = (fields or {}).get(exc.field or "", exc.field)
    form.add_error(name if name in form.fields else None, exc.message)


class TagDefinitionAdminForm(forms.ModelForm):
    class Meta:
        model = TagDefinition
        fields = ["project", "name", "type", "description"]

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None and cleaned.get("project") and cleaned.get("name"):
            try:
                clean_new_tag(
                    project=cleaned["project"],
                    name=cleaned["name"],
                    type=cleaned.get("type", ""),
                    description=cleaned.get("description", ""),
                )
            except InvalidInput as exc:
                _add_service_error(self, exc, {"tags": "name"})
        elif cleaned.get("description"):
            try:
                clean_text(cleaned["description"], field="description", what="The description")
            except InvalidInput as exc:
                _add_service_error(self, exc)
        return cleaned


class SegmentAdminForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = "__all__"  # noqa: DJ007 - the admin shows every field

    def clean_name(self) -> str:
        try:
            return clean_text(self.cleaned_data["name"], field="name", what="The segment name")
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None


class EstimatedCountPaginator(Paginator):
    """Pages of tables with millions of rows without counting them on every page view.

    Unfiltered, PostgreSQL's own row estimate stands in for COUNT(*); a filtered list counts.
    """

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if connection.vendor == "postgresql" and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [query.model._meta.db_table]
                )
                row = cursor.fetchone()
            if row and row[0] > 10_000:
                return row[0]
        return super().count


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only their service writes: operators look, they do not add or edit."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class BigTableAdmin(admin.ModelAdmin):
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    raw_id_fields = ["subscriber"]
    list_select_related = ["project"]


class SubscriberAdminForm(forms.ModelForm):
    """Profile fields checked by the service's rules; consent changed only through the ledger."""

    consent = forms.ChoiceField(
        label=gettext_lazy("Change WhatsApp consent"),
        choices=[
            ("", gettext_lazy("— no change —")),
            (ConsentState.OPTED_IN, gettext_lazy("Opt in")),
            (ConsentState.OPTED_OUT, gettext_lazy("Opt out")),
        ],
        required=False,
        help_text=gettext_lazy("Written to the opt-in ledger with the evidence below, as the panel does."),
    )
    consent_evidence = forms.CharField(
        label=gettext_lazy("Evidence"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=2000,
    )

    class Meta:
        model = Subscriber
        fields = ["name", "email", "language", "country", "time_zone"]

    def clean(self):
        cleaned = super().clean()
        try:
            cleaned.update(clean_profile({k: cleaned.get(k) for k in self.Meta.fields}))
        except InvalidInput as exc:
            _add_service_error(self, exc, {"timezone": "time_zone"})
        if (
            cleaned.get("consent") == ConsentState.OPTED_IN
            and not (cleaned.get("consent_evidence") or "").strip()
        ):
            self.add_error("consent_evidence", _("Opting in needs evidence: how and when the person agreed."))
        return cleaned


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    """Operators fix profiles, change consent through the ledger, and erase (GDPR) instead of deleting.

    Identities (phone, WhatsApp ids) and consent fields are read-only: they change through the
    services that keep the ledger, events and indexes right. Subscribers are added in the panel,
    the API or an import, which record their opt-in.
    """

    form = SubscriberAdminForm
    list_display = ["phone", "name", "project", "whatsapp_consent", "last_inbound_at", "created_at"]
    list_filter = ["project", "whatsapp_consent", "country", "language"]
    search_fields = ["phone", "name", "external_id", "email", "public_id"]
    readonly_fields = [
        "public_id",
        "project",
        "phone",
        "wa_id",
        "bsuid",
        "external_id",
        "whatsapp_consent",
        "whatsapp_consent_at",
        "email_consent",
        "email_consent_at",
        "email_undeliverable_at",
        "email_undeliverable_reason",
        "push_consent",
        "push_consent_at",
        "last_inbound_at",
        "created_at",
        "updated_at",
    ]
    list_select_related = ["project"]
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request) -> bool:
        return False

    @transaction.atomic
    def save_model(self, request, obj: Subscriber, form, change: bool) -> None:
        if "email" in form.changed_data:
            for key, value in address_reset().items():
                setattr(obj, key, value)
        super().save_model(request, obj, form, change)
        state = form.cleaned_data.get("consent")
        if state:
            change_consent(
                subscriber=obj,
                channel=ConsentChannel.WHATSAPP,
                state=ConsentState(state),
                source=ConsentSource.PANEL,
                evidence=form.cleaned_data.get("consent_evidence") or "changed in the admin",
                actor=Actor(user=request.user),
            )

    def delete_model(self, request, obj: Subscriber) -> None:
        erase_subscriber(subscriber=obj, actor=Actor(user=request.user))

    def delete_queryset(self, request, queryset) -> None:
        for subscriber in queryset.select_related("project"):
            erase_subscriber(subscriber=subscriber, actor=Actor(user=request.user))


@admin.register(TagDefinition)
class TagDefinitionAdmin(admin.ModelAdmin):
    form = TagDefinitionAdminForm
    list_display = ["name", "type", "project", "created_at"]
    list_filter = ["project", "type"]
    search_fields = ["name"]

    def get_readonly_fields(self, request, obj=None):
        # Values are stored in the columns of their type: a new type would misread them all.
        return ["project", "name", "type"] if obj is not None else []

    def save_model(self, request, obj: TagDefinition, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        created = create_tag(
            project=data["project"],
            name=data["name"],
            type=data["type"],
            description=data.get("description", ""),
            actor=Actor(user=request.user),
        )
        obj.pk, obj.public_id = created.pk, created.public_id

    # Through the service, as the panel deletes: it waits for writers of the tag's values
    # (there is no database foreign key to do that) and records the deletion in the audit log.
    def delete_model(self, request, obj: TagDefinition) -> None:
        try:
            delete_tag(project=obj.project, definition=obj, actor=Actor(user=request.user))
        except InvalidInput as exc:  # being written (a running import): try again later
            self.message_user(request, exc.message, level=messages.ERROR)

    def delete_queryset(self, request, queryset) -> None:
        for definition in queryset.select_related("project"):
            self.delete_model(request, definition)


@admin.register(TagValue)
class TagValueAdmin(ReadOnlyAdmin, BigTableAdmin):
    """Read-only: a value's columns follow its tag's type, which only services.set_tags knows."""

    list_display = ["subscriber", "tag", "value_text", "value_number", "value_bool", "value_date", "project"]
    list_filter = ["project"]
    raw_id_fields = ["subscriber", "tag"]


@admin.register(EventDefinition)
class EventDefinitionAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "created_at"]
    list_filter = ["project"]
    search_fields = ["name"]
    # Attribute types are set by events as they arrive (events.schema_for), under its lock.
    readonly_fields = ["public_id", "attributes", "created_at"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin, BigTableAdmin):
    """Events are facts recorded through services.record_event: readable and deletable here."""

    list_display = ["name", "subscriber", "occurred_at", "project"]
    list_filter = ["project"]
    search_fields = ["name", "dedup_key"]
    readonly_fields = ["received_at", "facets"]
    date_hierarchy = None  # a date drill-down scans every event


@admin.register(ConsentChange)
class ConsentChangeAdmin(BigTableAdmin):
    """The opt-in ledger is evidence: readable here, never edited or deleted one by one."""

    list_display = ["created_at", "subscriber", "channel", "state", "source", "actor_label", "project"]
    list_filter = ["project", "channel", "state", "source"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Device)
class DeviceAdmin(BigTableAdmin, ReadOnlyAdmin):
    """Push devices: the app registers and unregisters them through the API (its one write path)."""

    list_display = [
        "created_at",
        "subscriber",
        "platform",
        "app_version",
        "push_enabled",
        "removed_at",
        "project",
    ]
    list_filter = ["project", "platform", "push_enabled"]
    exclude = ["token"]  # a credential to push to that phone


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentAdminForm
    list_display = ["name", "project", "cached_count", "count_computed_at", "updated_at"]
    list_filter = ["project"]
    search_fields = ["name", "description"]
    readonly_fields = ["public_id", "cached_count", "count_computed_at"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["original_name", "project", "status", "processed_rows", "rejected_count", "created_at"]
    list_filter = ["project", "status"]
    search_fields = ["original_name"]
    readonly_fields = ["public_id", "created_at", "started_at", "finished_at"]


@admin.register(AttributeIndex)
class AttributeIndexAdmin(admin.ModelAdmin):
    list_display = ["event_name", "attribute", "attribute_type", "status", "project", "updated_at"]
    list_filter = ["project", "status"]
    search_fields = ["event_name", "attribute"]
    readonly_fields = ["status", "error", "created_at", "updated_at"]
    actions = ["rebuild"]

    @admin.action(description=gettext_lazy("Build again (after a failure)"))
    def rebuild(self, request, queryset) -> None:
        from . import actors

        for index in queryset.exclude(status=AttributeIndexStatus.REMOVING):
            AttributeIndex.objects.filter(pk=index.pk).update(status=AttributeIndexStatus.PENDING, error="")
            actors.build_attribute_index.send(index.pk)
        self.message_user(request, _("Rebuild queued."))


@admin.register(FeedCursor)
class FeedCursorAdmin(ReadOnlyAdmin):
    """Where each consumer of the event feed stands and how far behind it is. Read-only: moving a
    position by hand would skip or repeat events."""

    list_display = ["consumer", "lag_seconds", "pending", "handled", "failures", "updated_at", "last_error"]
    readonly_fields = [
        "consumer",
        "position_txid",
        "position_event_id",
        "handled",
        "failures",
        "last_error",
        "updated_at",
    ]

    def _lag(self, cursor: FeedCursor) -> feed.Lag:
        # Two columns read it: measured once per row (two queries), not once per column.
        if getattr(cursor, "_lag", None) is None:
            cursor._lag = feed.lag(cursor.consumer)
        return cursor._lag

    @admin.display(description=gettext_lazy("Lag (seconds)"))
    def lag_seconds(self, cursor: FeedCursor) -> float:
        return round(self._lag(cursor).seconds, 1)

    @admin.display(description=gettext_lazy("Pending events"))
    def pending(self, cursor: FeedCursor) -> int:
        return self._lag(cursor).pending


@admin.register(FeedFailure)
class FeedFailureAdmin(admin.ModelAdmin):
    list_display = ["consumer", "event_id", "project_id", "created_at", "error"]
    list_filter = ["consumer"]
    readonly_fields = ["consumer", "event_id", "project_id", "error", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(BulkJob)
class BulkJobAdmin(ReadOnlyAdmin):
    """Bulk actions from the subscriber list. Read-only: a job's targets and mark are the worker's."""

    list_display = [
        "public_id",
        "project",
        "action",
        "status",
        "processed",
        "total",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "action", "project"]
    readonly_fields = [f.name for f in BulkJob._meta.fields if f.name != "subscriber_ids"]
    exclude = ["subscriber_ids"]


@admin.register(ImportRejection)
class ImportRejectionAdmin(ReadOnlyAdmin):
    """Rejected rows of imports still running (they become the job's report when it ends). Read-only."""

    list_display = ["job", "index", "line"]
    raw_id_fields = ["job"]
    exclude = ["row"]
    readonly_fields = ["job", "index", "line"]

    @admin.display(description=gettext_lazy("Rejected row"))
    def line(self, rejection: ImportRejection) -> str:
        return bytes(rejection.row).decode("utf-8", errors="replace")[:500]
