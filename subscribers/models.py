"""The audience: subscribers, their typed tags, events, consent ledger, segments and imports.

Tenancy: every table has a non-null ``project`` FK, child tables included, so each
query can start from ``for_project(project)`` without a join.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from controlpanel.models import Project, TenantQuerySet

from .facets import facets_of
from .ids import uuid7
from .textfold import fold_tag_text


class ConsentState(models.TextChoices):
    UNKNOWN = "unknown", _("Unknown")
    OPTED_IN = "opted_in", _("Opted in")
    OPTED_OUT = "opted_out", _("Opted out")


class ConsentChannel(models.TextChoices):
    WHATSAPP = "whatsapp", "WhatsApp"
    EMAIL = "email", _("Email")
    PUSH = "push", _("Push")


class ConsentSource(models.TextChoices):
    PANEL = "panel", _("Control panel")
    IMPORT = "import", _("CSV import")
    API = "api", "API"
    KEYWORD = "keyword", _("Inbound keyword")
    META_PREFERENCE = "meta_preference", _("Meta preference webhook")
    UNSUBSCRIBE_LINK = "unsubscribe_link", _("Unsubscribe link in an email")
    EMAIL_PROVIDER = "email_provider", _("Email provider (complaint)")
    PUSH_DEVICE = "push_device", _("Push device settings")


class SubscriberQuerySet(TenantQuerySet):
    def whatsapp_opted_in(self) -> SubscriberQuerySet:
        return self.filter(whatsapp_consent=ConsentState.OPTED_IN)


class Subscriber(models.Model):
    """A person we may reach. Identified by phone (E.164) and/or Meta's business-scoped user id."""

    # No index of its own: every index below leads with the project (one less write per import row).
    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        related_name="subscribers",
        db_index=False,
        verbose_name=_("project"),
    )
    public_id = models.UUIDField(
        default=uuid7, unique=True, editable=False, verbose_name=_("public ID")
    )  # time-ordered: ids.py
    # NULL, not "", for "unknown": unique constraints treat NULLs as distinct. A subscriber
    # who wrote us under a WhatsApp username may have a BSUID and no phone number.
    phone = models.CharField(  # noqa: DJ001
        max_length=20,
        null=True,
        blank=True,
        help_text=_("E.164, e.g. +4915112345678"),
        verbose_name=_("phone"),
    )
    wa_id = models.CharField(
        max_length=20,
        blank=True,
        help_text=_("WhatsApp id (digits, usually the phone)"),
        verbose_name=_("WhatsApp ID"),
    )
    bsuid = models.CharField(max_length=160, null=True, blank=True, verbose_name=_("BSUID"))  # noqa: DJ001
    external_id = models.CharField(max_length=200, null=True, blank=True, verbose_name=_("external ID"))  # noqa: DJ001
    name = models.CharField(max_length=200, blank=True, verbose_name=_("name"))
    email = models.EmailField(blank=True, verbose_name=_("email"))
    language = models.CharField(
        max_length=16, blank=True, help_text=_("BCP 47, e.g. de or pt_BR"), verbose_name=_("language")
    )
    country = models.CharField(
        max_length=2, blank=True, help_text=_("ISO 3166-1 alpha-2"), verbose_name=_("country")
    )
    time_zone = models.CharField(max_length=64, blank=True, verbose_name=_("time zone"))
    whatsapp_consent = models.CharField(
        max_length=10,
        choices=ConsentState.choices,
        default=ConsentState.UNKNOWN,
        verbose_name=_("WhatsApp consent"),
    )
    whatsapp_consent_at = models.DateTimeField(null=True, blank=True, verbose_name=_("WhatsApp consent at"))
    last_inbound_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Last inbound WhatsApp message: opens the 24-hour service window."),
        verbose_name=_("last inbound at"),
    )
    # Email: consent in the same ledger as WhatsApp (ConsentChange, channel "email"); an address
    # that bounced hard or complained is undeliverable until the address changes.
    # db_default as well: the import's COPY and the upsert's INSERT ... SELECT name their columns.
    email_consent = models.CharField(
        max_length=10,
        choices=ConsentState.choices,
        default=ConsentState.UNKNOWN,
        db_default=ConsentState.UNKNOWN,
        verbose_name=_("email consent"),
    )
    email_consent_at = models.DateTimeField(null=True, blank=True, verbose_name=_("email consent at"))
    email_undeliverable_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the address bounced hard or complained; cleared when it changes."),
        verbose_name=_("email undeliverable at"),
    )
    email_undeliverable_reason = models.CharField(
        max_length=300, blank=True, default="", db_default="", verbose_name=_("email undeliverable reason")
    )
    # Push: the devices (subscribers.Device) are the OS-level permission; this is the person's own
    # opt-out of push from us (the ledger, channel "push").
    push_consent = models.CharField(
        max_length=10,
        choices=ConsentState.choices,
        default=ConsentState.UNKNOWN,
        db_default=ConsentState.UNKNOWN,
        verbose_name=_("push consent"),
    )
    push_consent_at = models.DateTimeField(null=True, blank=True, verbose_name=_("push consent at"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    objects = SubscriberQuerySet.as_manager()

    class Meta:
        verbose_name = _("subscriber")
        verbose_name_plural = _("subscribers")
        constraints = [
            # Not partial (NULLs are distinct anyway), so INSERT ... ON CONFLICT can target them.
            models.UniqueConstraint(fields=["project", "phone"], name="subscriber_unique_phone"),
            models.UniqueConstraint(fields=["project", "external_id"], name="subscriber_unique_external_id"),
            models.UniqueConstraint(fields=["project", "bsuid"], name="subscriber_unique_bsuid"),
            models.CheckConstraint(
                condition=Q(phone__isnull=False) | Q(bsuid__isnull=False), name="subscriber_has_identity"
            ),
        ]
        indexes = [
            # Keyset pagination of the list: newest first within a project.
            models.Index(fields=["project", "-created_at", "-id"], name="subscriber_project_created"),
            models.Index(fields=["project", "whatsapp_consent"], name="subscriber_consent"),
            models.Index(fields=["project", "name"], name="subscriber_name"),
            models.Index(fields=["project", "last_inbound_at"], name="subscriber_last_inbound"),
        ]

    def __str__(self) -> str:
        return self.name or self.phone or self.bsuid or str(self.public_id)


class DevicePlatform(models.TextChoices):
    ANDROID = "android", "Android"
    IOS = "ios", "iOS"
    WEB = "web", _("Web")


class DeviceQuerySet(TenantQuerySet):
    def active(self) -> DeviceQuerySet:
        return self.filter(removed_at__isnull=True, push_enabled=True)


class Device(models.Model):
    """A push token of a subscriber's app install (FCM registration token).

    Registered through ``POST /api/v1/devices``; a token FCM calls unregistered, or that the app
    unregisters, keeps its row with ``removed_at`` set (statistics and the timeline still name it).
    A subscriber is reachable by push when they have an active device and did not opt out of push.
    """

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="devices", db_index=False, verbose_name=_("project")
    )
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID"))
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="devices", verbose_name=_("subscriber")
    )
    token = models.CharField(
        max_length=4096, help_text=_("The FCM registration token."), verbose_name=_("token")
    )
    platform = models.CharField(max_length=10, choices=DevicePlatform.choices, verbose_name=_("platform"))
    app_version = models.CharField(max_length=64, blank=True, verbose_name=_("app version"))
    language = models.CharField(max_length=16, blank=True, verbose_name=_("language"))
    time_zone = models.CharField(max_length=64, blank=True, verbose_name=_("time zone"))
    # The app's own notification permission ("Push Alerts Enabled" in Pushwoosh's words).
    push_enabled = models.BooleanField(default=True, verbose_name=_("push enabled"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    last_seen_at = models.DateTimeField(auto_now=True, verbose_name=_("last seen at"))
    removed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("removed at"))
    removed_reason = models.CharField(max_length=200, blank=True, verbose_name=_("removed reason"))

    objects = DeviceQuerySet.as_manager()

    class Meta:
        verbose_name = _("device")
        verbose_name_plural = _("devices")
        constraints = [
            # A token belongs to one install; registering it again moves it (another subscriber
            # logged in on that phone). Token first: the push simulator looks a token up without
            # its project (ON CONFLICT (project, token) infers this index all the same).
            models.UniqueConstraint(fields=["token", "project"], name="device_unique_token"),
        ]
        indexes = [
            models.Index(
                fields=["subscriber"], condition=Q(removed_at__isnull=True), name="device_active_subscriber"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} device of {self.subscriber_id}"


class TagType(models.TextChoices):
    STRING = "string", _("String")
    INTEGER = "integer", _("Integer")
    DECIMAL = "decimal", _("Decimal (price)")
    BOOLEAN = "boolean", _("Boolean")
    DATE = "date", _("Date")
    DATETIME = "datetime", _("Date and time")
    LIST = "list", _("List of strings")


class TagDefinition(models.Model):
    """A custom tag of a project. Built-in tags (Language, Country, ...) live in code: see tags.py."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="tag_definitions", verbose_name=_("project")
    )
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID"))
    name = models.CharField(max_length=64, verbose_name=_("name"))
    type = models.CharField(max_length=10, choices=TagType.choices, verbose_name=_("type"))
    description = models.CharField(max_length=255, blank=True, verbose_name=_("description"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="tag_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"


class TagValueQuerySet(TenantQuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for value in objs:
            value.value_folded = fold_tag_text(value.value_text)
        return super().bulk_create(objs, *args, **kwargs)


class TagValue(models.Model):
    """One value of one tag of one subscriber; a list tag has a row per element.

    Exactly one ``value_*`` column is set, the one of the tag's type, so that each
    type compares natively and gets its own small partial index. Texts also have
    ``value_folded``, which segments compare and index (see textfold.py).
    """

    # No database-level FK and no index on project: the subscriber's FK already implies it,
    # the check was one of the costliest steps of a million-row import (docs/benchmarks.md),
    # and every query reaches these rows by tag or subscriber.
    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
        verbose_name=_("project"),
    )
    # No index of its own: tagvalue_subscriber (subscriber, tag) below serves every lookup by subscriber.
    # No database-level FK: writers hold the subscribers instead, once per statement
    # (holds.hold_subscribers; ADR 0001): the per-row check cost 15 CPU-seconds per million-row import.
    subscriber = models.ForeignKey(
        Subscriber,
        on_delete=models.CASCADE,
        related_name="tag_values",
        db_constraint=False,
        db_index=False,
        verbose_name=_("subscriber"),
    )
    # No database-level FK either: writers hold the definitions instead, once per transaction
    # (tags.hold_definitions); the per-row check cost ~10 CPU-seconds per million-row import.
    tag = models.ForeignKey(
        TagDefinition,
        on_delete=models.CASCADE,
        related_name="values",
        db_constraint=False,
        verbose_name=_("tag"),
    )
    value_text = models.CharField(max_length=255, null=True, blank=True, verbose_name=_("value text"))  # noqa: DJ001 - string, list element
    # textfold.fold(value_text), derived by save() and bulk_create() (a COPY writes it itself):
    # what text conditions compare unless they match case, and what the text index is keyed on.
    # Text, not 255 characters: folding may lengthen a value ("ß" -> "ss").
    value_folded = models.TextField(null=True, blank=True, editable=False, verbose_name=_("value folded"))  # noqa: DJ001
    value_number = models.DecimalField(
        max_digits=24, decimal_places=8, null=True, blank=True, verbose_name=_("value number")
    )
    value_bool = models.BooleanField(null=True, blank=True, verbose_name=_("value bool"))
    value_date = models.DateField(null=True, blank=True, verbose_name=_("value date"))
    value_datetime = models.DateTimeField(null=True, blank=True, verbose_name=_("value datetime"))

    objects = TagValueQuerySet.as_manager()

    class Meta:
        verbose_name = _("tag value")
        verbose_name_plural = _("tag values")
        indexes = [
            models.Index(fields=["subscriber", "tag"], name="tagvalue_subscriber"),
            # Keyed folded: a case-sensitive condition narrows by its folded value, then checks
            # value_text on those rows (one index per type keeps imports as fast as before).
            models.Index(
                fields=["tag", "value_folded", "subscriber"],
                condition=Q(value_folded__isnull=False),
                name="tagvalue_folded",
            ),
            models.Index(
                fields=["tag", "value_number", "subscriber"],
                condition=Q(value_number__isnull=False),
                name="tagvalue_number",
            ),
            models.Index(
                fields=["tag", "value_date", "subscriber"],
                condition=Q(value_date__isnull=False),
                name="tagvalue_date",
            ),
            models.Index(
                fields=["tag", "value_datetime", "subscriber"],
                condition=Q(value_datetime__isnull=False),
                name="tagvalue_datetime",
            ),
            models.Index(
                fields=["tag", "value_bool", "subscriber"],
                condition=Q(value_bool__isnull=False),
                name="tagvalue_bool",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tag_id}={self.value_text or self.value_number or self.value_bool or self.value_date}"

    def save(self, *args, **kwargs) -> None:
        self.value_folded = fold_tag_text(self.value_text)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "value_text" in update_fields:
            kwargs["update_fields"] = {*update_fields, "value_folded"}
        super().save(*args, **kwargs)


class EventDefinition(models.Model):
    """A custom event name with typed attributes. Default events live in code: see events.py."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="event_definitions", verbose_name=_("project")
    )
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID"))
    name = models.CharField(max_length=64, verbose_name=_("name"))
    description = models.CharField(max_length=255, blank=True, verbose_name=_("description"))
    # {"cuisine": "string", "amount": "decimal", ...}; types are TagType values except list.
    attributes = models.JSONField(default=dict, blank=True, verbose_name=_("attributes"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("event definition")
        verbose_name_plural = _("event definitions")
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="eventdef_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EventQuerySet(TenantQuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for event in objs:
            event.facets = facets_of(event.attributes)
        return super().bulk_create(objs, *args, **kwargs)


class Event(models.Model):
    """Something that happened to a subscriber. The one timeline segments and journeys read."""

    # No database-level FK on project (as TagValue): the subscriber implies it; the
    # composite indexes below lead with project.
    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
        verbose_name=_("project"),
    )
    # No index of its own: event_subscriber_time (subscriber, -occurred_at) serves lookups by subscriber.
    # No database-level FK, as TagValue.subscriber (holds.hold_subscribers; ADR 0001).
    subscriber = models.ForeignKey(
        Subscriber,
        on_delete=models.CASCADE,
        related_name="events",
        db_constraint=False,
        db_index=False,
        verbose_name=_("subscriber"),
    )
    # The name itself, not a FK: segment queries filter (project, name, occurred_at) in one index.
    name = models.CharField(max_length=64, verbose_name=_("name"))
    occurred_at = models.DateTimeField(verbose_name=_("occurred at"))
    received_at = models.DateTimeField(auto_now_add=True, verbose_name=_("received at"))
    attributes = models.JSONField(default=dict, blank=True, verbose_name=_("attributes"))
    # The attributes with long texts replaced by true (facets.facets_of): small enough for the
    # segment index to carry, so attribute conditions are answered from the index alone. Always
    # derived from attributes, by save() and bulk_create().
    facets = models.JSONField(default=dict, blank=True, verbose_name=_("facets"))
    # Makes recording idempotent when the source has an id (a wamid, an API idempotency key).
    dedup_key = models.CharField(max_length=200, null=True, blank=True, verbose_name=_("dedup key"))  # noqa: DJ001

    objects = EventQuerySet.as_manager()

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        constraints = [
            # Partial: most events have no key, and a full index took a write per event for them.
            models.UniqueConstraint(
                fields=["project", "dedup_key"],
                condition=Q(dedup_key__isnull=False),
                name="event_unique_dedup",
            )
        ]
        indexes = [
            # Segment conditions: an index-only scan yields the subscribers, and carries the
            # facets so that attribute filters need no heap reads either (INCLUDE is
            # PostgreSQL-only; SQLite builds the plain index, see SILENCED_SYSTEM_CHECKS).
            models.Index(
                fields=["project", "name", "occurred_at"],
                include=["subscriber", "facets"],
                name="event_project_name_time",
            ),
            models.Index(fields=["subscriber", "-occurred_at"], name="event_subscriber_time"),
            models.Index(fields=["project", "-occurred_at"], name="event_project_time"),
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.occurred_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs) -> None:
        self.facets = facets_of(self.attributes)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "attributes" in update_fields:
            kwargs["update_fields"] = {*update_fields, "facets"}
        super().save(*args, **kwargs)


class AttributeIndexStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be built")
    BUILDING = "building", _("Building")
    READY = "ready", _("Ready")
    FAILED = "failed", _("Failed")
    REMOVING = "removing", _("Being removed")


class AttributeIndex(models.Model):
    """An event attribute that segments filter on often, given its own index.

    On PostgreSQL a partial index on this project's events of this name, keyed by the attribute
    (see ``attribute_indexes.py``), turns "OrderPlaced where cuisine = asian" into an index
    range instead of a scan over every OrderPlaced event. Built and dropped by an actor, with
    ``CONCURRENTLY``, so recording events never waits for it.
    """

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="attribute_indexes", verbose_name=_("project")
    )
    event_name = models.CharField(max_length=64, verbose_name=_("event name"))
    attribute = models.CharField(max_length=64, verbose_name=_("attribute"))
    # The attribute's type when the index was asked for: it decides the key order.
    attribute_type = models.CharField(
        max_length=10, choices=TagType.choices, verbose_name=_("attribute type")
    )
    status = models.CharField(
        max_length=10,
        choices=AttributeIndexStatus.choices,
        default=AttributeIndexStatus.PENDING,
        verbose_name=_("status"),
    )
    error = models.TextField(blank=True, verbose_name=_("error"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("attribute index")
        verbose_name_plural = _("attribute indexes")
        constraints = [
            models.UniqueConstraint(
                fields=["project", "event_name", "attribute"], name="attributeindex_unique"
            )
        ]
        ordering = ["event_name", "attribute"]

    def __str__(self) -> str:
        return f"{self.event_name}.{self.attribute} ({self.status})"

    @property
    def db_name(self) -> str:
        """The PostgreSQL index (and statistics) name: stable, short, unique."""
        return f"evattr_{self.pk}"


class ConsentChange(models.Model):
    """The opt-in ledger: one row per change of consent, never edited."""

    # No database-level FK on project (as TagValue): the subscriber implies it; the
    # composite indexes below lead with project.
    project = models.ForeignKey(
        Project,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
        verbose_name=_("project"),
    )
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="consent_changes", verbose_name=_("subscriber")
    )
    channel = models.CharField(max_length=10, choices=ConsentChannel.choices, verbose_name=_("channel"))
    state = models.CharField(max_length=10, choices=ConsentState.choices, verbose_name=_("state"))
    source = models.CharField(max_length=20, choices=ConsentSource.choices, verbose_name=_("source"))
    evidence = models.TextField(
        blank=True, help_text=_("How consent was given or withdrawn, in words."), verbose_name=_("evidence")
    )
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name=_("actor user"),
    )
    actor_label = models.CharField(max_length=200, blank=True, verbose_name=_("actor label"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("consent change")
        verbose_name_plural = _("consent changes")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="consent_project_time")]

    def __str__(self) -> str:
        return f"{self.channel} {self.state} via {self.source}"


class Segment(models.Model):
    """A saved audience: a rule tree (see segments/tree.py) and its last computed count."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="segments", verbose_name=_("project")
    )
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID"))
    name = models.CharField(max_length=120, verbose_name=_("name"))
    description = models.CharField(max_length=255, blank=True, verbose_name=_("description"))
    rule = models.JSONField(default=dict, verbose_name=_("rule"))
    cached_count = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("cached count"))
    count_computed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("count computed at"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="segment_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ImportStatus(models.TextChoices):
    UPLOADED = "uploaded", _("Uploaded")
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class UndecodableRows(models.TextChoices):
    """What an import does with the rows of its file that do not decode (chosen before it starts)."""

    SKIP = "skip", _("Skip them")
    REENCODE = "reencode", _("Read the whole file in the other encoding")


class ImportJob(models.Model):
    """A CSV import: the uploaded file, its column mapping, progress and the rejected-rows report."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="import_jobs", verbose_name=_("project")
    )
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID"))
    file = models.FileField(upload_to="imports/%Y/%m/", verbose_name=_("file"))
    original_name = models.CharField(max_length=255, verbose_name=_("original name"))
    # {"file": {"encoding", "delimiter", "decodes", "undecodable"}, "headers": [...],
    #  "key": "phone" | "external_id", "columns": [{"target", "new_tag"}], "default_evidence": "..."};
    #  see subscribers/imports/
    mapping = models.JSONField(default=dict, blank=True, verbose_name=_("mapping"))
    status = models.CharField(
        max_length=10, choices=ImportStatus.choices, default=ImportStatus.UPLOADED, verbose_name=_("status")
    )
    # Empty until chosen; only asked when mapping["file"]["undecodable"] lists rows.
    undecodable_rows = models.CharField(
        max_length=10, choices=UndecodableRows.choices, blank=True, verbose_name=_("undecodable rows")
    )
    total_rows = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("total rows"))
    processed_rows = models.PositiveIntegerField(default=0, verbose_name=_("processed rows"))
    created_count = models.PositiveIntegerField(default=0, verbose_name=_("created count"))
    updated_count = models.PositiveIntegerField(default=0, verbose_name=_("updated count"))
    unchanged_count = models.PositiveIntegerField(default=0, verbose_name=_("unchanged count"))
    rejected_count = models.PositiveIntegerField(default=0, verbose_name=_("rejected count"))
    report = models.FileField(upload_to="imports/reports/%Y/%m/", blank=True, verbose_name=_("report"))
    error = models.TextField(blank=True, verbose_name=_("error"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    started_at = models.DateTimeField(null=True, blank=True, verbose_name=_("started at"))
    finished_at = models.DateTimeField(null=True, blank=True, verbose_name=_("finished at"))

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("import")
        verbose_name_plural = _("imports")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.status})"


class ImportRejection(models.Model):
    """A rejected row of an import that has not ended, committed with its chunk.

    In the database, not a worker's local file, so that a run resumed on another machine still
    has the rejected rows of the chunks before; turned into the job's report file at the end.
    """

    job = models.ForeignKey(
        ImportJob, on_delete=models.CASCADE, related_name="+", db_index=False, verbose_name=_("job")
    )
    index = models.PositiveIntegerField(verbose_name=_("index"))  # the record's index in the file
    # The report's CSV line (line, reason, cells) in UTF-8: a cell may hold a NUL, which
    # PostgreSQL's text and jsonb refuse.
    row = models.BinaryField(verbose_name=_("row"))

    class Meta:
        verbose_name = _("rejected import row")
        verbose_name_plural = _("rejected import rows")
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="importrejection_job_index")]

    def __str__(self) -> str:
        return f"rejected record {self.index} of import {self.job_id}"


class FeedCursor(models.Model):
    """How far one consumer of the event feed has come (see ``subscribers.feed``).

    The position is the last event handled, as (transaction id, event id) on PostgreSQL and
    (0, event id) on SQLite. A consumer advances it in the transaction that commits its work,
    so a crash anywhere leaves it at the last event whose work was committed.
    """

    consumer = models.CharField(max_length=64, unique=True, verbose_name=_("consumer"))
    position_txid = models.BigIntegerField(default=0, verbose_name=_("position txid"))
    position_event_id = models.BigIntegerField(default=0, verbose_name=_("position event ID"))
    handled = models.BigIntegerField(
        default=0, help_text=_("Events handled since the cursor was made."), verbose_name=_("handled")
    )
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))
    # Failed attempts at the batch after the position; reset when a batch commits.
    failures = models.IntegerField(default=0, verbose_name=_("failures"))
    last_error = models.TextField(blank=True, verbose_name=_("last error"))

    class Meta:
        verbose_name = _("feed cursor")
        verbose_name_plural = _("feed cursors")

    def __str__(self) -> str:
        return f"{self.consumer} @ {self.position_event_id}"


class FeedFailure(models.Model):
    """An event that a consumer's handler failed on, set aside so that the events after it flow.

    Kept for an operator to inspect in the admin; the consumer is not retried on it.
    """

    consumer = models.CharField(max_length=64, verbose_name=_("consumer"))
    event_id = models.BigIntegerField(verbose_name=_("event ID"))
    project_id = models.BigIntegerField(verbose_name=_("project ID"))
    error = models.TextField(verbose_name=_("error"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("feed failure")
        verbose_name_plural = _("feed failures")
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="feedfailure_unique_event")
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.consumer}: event {self.event_id}"


class BulkStatus(models.TextChoices):
    DRAFT = "draft", _("Waiting for confirmation")
    QUEUED = "queued", _("Waiting for a worker")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class BulkJob(models.Model):
    """A bulk action from the subscriber list (add a tag, opt out, erase), run by a worker.

    The targets are snapshotted when the marketer confirms, so the job does what was shown,
    whatever is added to the filter meanwhile. ``processed`` is the index of the next target:
    a retried job goes on from there (each row's service is idempotent anyway).
    """

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="bulk_jobs", verbose_name=_("project")
    )
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public ID"))
    action = models.CharField(max_length=20, verbose_name=_("action"))
    params = models.JSONField(
        default=dict, blank=True, verbose_name=_("params")
    )  # tag_name, tag_value, evidence
    subscriber_ids = models.JSONField(default=list, verbose_name=_("subscriber ids"))
    status = models.CharField(
        max_length=10, choices=BulkStatus.choices, default=BulkStatus.DRAFT, verbose_name=_("status")
    )
    total = models.PositiveIntegerField(default=0, verbose_name=_("total"))
    processed = models.PositiveIntegerField(default=0, verbose_name=_("processed"))
    changed = models.PositiveIntegerField(default=0, verbose_name=_("changed"))
    error = models.TextField(blank=True, verbose_name=_("error"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    finished_at = models.DateTimeField(null=True, blank=True, verbose_name=_("finished at"))

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("bulk action")
        verbose_name_plural = _("bulk actions")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} for {self.total} ({self.status})"
