"""The audience: subscribers, their typed tags, events, consent ledger, segments and imports.

Tenancy: every table has a non-null ``project`` FK, child tables included, so each
query can start from ``for_project(project)`` without a join.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from controlpanel.models import Project, TenantQuerySet

from .facets import facets_of
from .ids import uuid7
from .textfold import fold_tag_text


class ConsentState(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    OPTED_IN = "opted_in", "Opted in"
    OPTED_OUT = "opted_out", "Opted out"


class ConsentChannel(models.TextChoices):
    WHATSAPP = "whatsapp", "WhatsApp"
    EMAIL = "email", "Email"
    PUSH = "push", "Push"


class ConsentSource(models.TextChoices):
    PANEL = "panel", "Control panel"
    IMPORT = "import", "CSV import"
    API = "api", "API"
    KEYWORD = "keyword", "Inbound keyword"
    META_PREFERENCE = "meta_preference", "Meta preference webhook"
    UNSUBSCRIBE_LINK = "unsubscribe_link", "Unsubscribe link in an email"
    EMAIL_PROVIDER = "email_provider", "Email provider (complaint)"
    PUSH_DEVICE = "push_device", "Push device settings"


class SubscriberQuerySet(TenantQuerySet):
    def whatsapp_opted_in(self) -> SubscriberQuerySet:
        return self.filter(whatsapp_consent=ConsentState.OPTED_IN)


class Subscriber(models.Model):
    """A person we may reach. Identified by phone (E.164) and/or Meta's business-scoped user id."""

    # No index of its own: every index below leads with the project (one less write per import row).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="subscribers", db_index=False)
    public_id = models.UUIDField(default=uuid7, unique=True, editable=False)  # time-ordered: ids.py
    # NULL, not "", for "unknown": unique constraints treat NULLs as distinct. A subscriber
    # who wrote us under a WhatsApp username may have a BSUID and no phone number.
    phone = models.CharField(max_length=20, null=True, blank=True, help_text="E.164, e.g. +4915112345678")  # noqa: DJ001
    wa_id = models.CharField(max_length=20, blank=True, help_text="WhatsApp id (digits, usually the phone)")
    bsuid = models.CharField(max_length=160, null=True, blank=True, verbose_name="BSUID")  # noqa: DJ001
    external_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    language = models.CharField(max_length=16, blank=True, help_text="BCP 47, e.g. de or pt_BR")
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    time_zone = models.CharField(max_length=64, blank=True)
    whatsapp_consent = models.CharField(
        max_length=10, choices=ConsentState.choices, default=ConsentState.UNKNOWN
    )
    whatsapp_consent_at = models.DateTimeField(null=True, blank=True)
    last_inbound_at = models.DateTimeField(
        null=True, blank=True, help_text="Last inbound WhatsApp message: opens the 24-hour service window."
    )
    # Email: consent in the same ledger as WhatsApp (ConsentChange, channel "email"); an address
    # that bounced hard or complained is undeliverable until the address changes.
    # db_default as well: the import's COPY and the upsert's INSERT ... SELECT name their columns.
    email_consent = models.CharField(
        max_length=10,
        choices=ConsentState.choices,
        default=ConsentState.UNKNOWN,
        db_default=ConsentState.UNKNOWN,
    )
    email_consent_at = models.DateTimeField(null=True, blank=True)
    email_undeliverable_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the address bounced hard or complained; cleared when it changes.",
    )
    email_undeliverable_reason = models.CharField(max_length=300, blank=True, default="", db_default="")
    # Push: the devices (subscribers.Device) are the OS-level permission; this is the person's own
    # opt-out of push from us (the ledger, channel "push").
    push_consent = models.CharField(
        max_length=10,
        choices=ConsentState.choices,
        default=ConsentState.UNKNOWN,
        db_default=ConsentState.UNKNOWN,
    )
    push_consent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SubscriberQuerySet.as_manager()

    class Meta:
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
    WEB = "web", "Web"


class DeviceQuerySet(TenantQuerySet):
    def active(self) -> DeviceQuerySet:
        return self.filter(removed_at__isnull=True, push_enabled=True)


class Device(models.Model):
    """A push token of a subscriber's app install (FCM registration token).

    Registered through ``POST /api/v1/devices``; a token FCM calls unregistered, or that the app
    unregisters, keeps its row with ``removed_at`` set (statistics and the timeline still name it).
    A subscriber is reachable by push when they have an active device and did not opt out of push.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="devices", db_index=False)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="devices")
    token = models.CharField(max_length=4096, help_text="The FCM registration token.")
    platform = models.CharField(max_length=10, choices=DevicePlatform.choices)
    app_version = models.CharField(max_length=64, blank=True)
    language = models.CharField(max_length=16, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    # The app's own notification permission ("Push Alerts Enabled" in Pushwoosh's words).
    push_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_reason = models.CharField(max_length=200, blank=True)

    objects = DeviceQuerySet.as_manager()

    class Meta:
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
    STRING = "string", "String"
    INTEGER = "integer", "Integer"
    DECIMAL = "decimal", "Decimal (price)"
    BOOLEAN = "boolean", "Boolean"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    LIST = "list", "List of strings"


class TagDefinition(models.Model):
    """A custom tag of a project. Built-in tags (Language, Country, ...) live in code: see tags.py."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tag_definitions")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=64)
    type = models.CharField(max_length=10, choices=TagType.choices)
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
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
        Project, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    # No index of its own: tagvalue_subscriber (subscriber, tag) below serves every lookup by subscriber.
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="tag_values", db_index=False
    )
    # No database-level FK either: writers hold the definitions instead, once per transaction
    # (tags.hold_definitions); the per-row check cost ~10 CPU-seconds per million-row import.
    tag = models.ForeignKey(
        TagDefinition, on_delete=models.CASCADE, related_name="values", db_constraint=False
    )
    value_text = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 - string, list element
    # textfold.fold(value_text), derived by save() and bulk_create() (a COPY writes it itself):
    # what text conditions compare unless they match case, and what the text index is keyed on.
    # Text, not 255 characters: folding may lengthen a value ("ß" -> "ss").
    value_folded = models.TextField(null=True, blank=True, editable=False)  # noqa: DJ001
    value_number = models.DecimalField(max_digits=24, decimal_places=8, null=True, blank=True)
    value_bool = models.BooleanField(null=True, blank=True)
    value_date = models.DateField(null=True, blank=True)
    value_datetime = models.DateTimeField(null=True, blank=True)

    objects = TagValueQuerySet.as_manager()

    class Meta:
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

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="event_definitions")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=255, blank=True)
    # {"cuisine": "string", "amount": "decimal", ...}; types are TagType values except list.
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
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
        Project, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    # No index of its own: event_subscriber_time (subscriber, -occurred_at) serves lookups by subscriber.
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    # The name itself, not a FK: segment queries filter (project, name, occurred_at) in one index.
    name = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    attributes = models.JSONField(default=dict, blank=True)
    # The attributes with long texts replaced by true (facets.facets_of): small enough for the
    # segment index to carry, so attribute conditions are answered from the index alone. Always
    # derived from attributes, by save() and bulk_create().
    facets = models.JSONField(default=dict, blank=True)
    # Makes recording idempotent when the source has an id (a wamid, an API idempotency key).
    dedup_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001

    objects = EventQuerySet.as_manager()

    class Meta:
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
    PENDING = "pending", "Waiting to be built"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    REMOVING = "removing", "Being removed"


class AttributeIndex(models.Model):
    """An event attribute that segments filter on often, given its own index.

    On PostgreSQL a partial index on this project's events of this name, keyed by the attribute
    (see ``attribute_indexes.py``), turns "OrderPlaced where cuisine = asian" into an index
    range instead of a scan over every OrderPlaced event. Built and dropped by an actor, with
    ``CONCURRENTLY``, so recording events never waits for it.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="attribute_indexes")
    event_name = models.CharField(max_length=64)
    attribute = models.CharField(max_length=64)
    # The attribute's type when the index was asked for: it decides the key order.
    attribute_type = models.CharField(max_length=10, choices=TagType.choices)
    status = models.CharField(
        max_length=10, choices=AttributeIndexStatus.choices, default=AttributeIndexStatus.PENDING
    )
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "event_name", "attribute"], name="attributeindex_unique"
            )
        ]
        ordering = ["event_name", "attribute"]
        verbose_name_plural = "attribute indexes"

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
        Project, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="consent_changes")
    channel = models.CharField(max_length=10, choices=ConsentChannel.choices)
    state = models.CharField(max_length=10, choices=ConsentState.choices)
    source = models.CharField(max_length=20, choices=ConsentSource.choices)
    evidence = models.TextField(blank=True, help_text="How consent was given or withdrawn, in words.")
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="consent_project_time")]

    def __str__(self) -> str:
        return f"{self.channel} {self.state} via {self.source}"


class Segment(models.Model):
    """A saved audience: a rule tree (see segments/tree.py) and its last computed count."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="segments")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=120)
    description = models.CharField(max_length=255, blank=True)
    rule = models.JSONField(default=dict)
    cached_count = models.PositiveIntegerField(null=True, blank=True)
    count_computed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="segment_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ImportStatus(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class UndecodableRows(models.TextChoices):
    """What an import does with the rows of its file that do not decode (chosen before it starts)."""

    SKIP = "skip", "Skip them"
    REENCODE = "reencode", "Read the whole file in the other encoding"


class ImportJob(models.Model):
    """A CSV import: the uploaded file, its column mapping, progress and the rejected-rows report."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    file = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255)
    # {"file": {"encoding", "delimiter", "decodes", "undecodable"}, "headers": [...],
    #  "key": "phone" | "external_id", "columns": [{"target", "new_tag"}], "default_evidence": "..."};
    #  see subscribers/imports/
    mapping = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.UPLOADED)
    # Empty until chosen; only asked when mapping["file"]["undecodable"] lists rows.
    undecodable_rows = models.CharField(max_length=10, choices=UndecodableRows.choices, blank=True)
    total_rows = models.PositiveIntegerField(null=True, blank=True)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    report = models.FileField(upload_to="imports/reports/%Y/%m/", blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.status})"


class ImportRejection(models.Model):
    """A rejected row of an import that has not ended, committed with its chunk.

    In the database, not a worker's local file, so that a run resumed on another machine still
    has the rejected rows of the chunks before; turned into the job's report file at the end.
    """

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="+", db_index=False)
    index = models.PositiveIntegerField()  # the record's index in the file
    # The report's CSV line (line, reason, cells) in UTF-8: a cell may hold a NUL, which
    # PostgreSQL's text and jsonb refuse.
    row = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="importrejection_job_index")]

    def __str__(self) -> str:
        return f"rejected record {self.index} of import {self.job_id}"


class FeedCursor(models.Model):
    """How far one consumer of the event feed has come (see ``subscribers.feed``).

    The position is the last event handled, as (transaction id, event id) on PostgreSQL and
    (0, event id) on SQLite. A consumer advances it in the transaction that commits its work,
    so a crash anywhere leaves it at the last event whose work was committed.
    """

    consumer = models.CharField(max_length=64, unique=True)
    position_txid = models.BigIntegerField(default=0)
    position_event_id = models.BigIntegerField(default=0)
    handled = models.BigIntegerField(default=0, help_text="Events handled since the cursor was made.")
    updated_at = models.DateTimeField(auto_now=True)
    # Failed attempts at the batch after the position; reset when a batch commits.
    failures = models.IntegerField(default=0)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.consumer} @ {self.position_event_id}"


class FeedFailure(models.Model):
    """An event that a consumer's handler failed on, set aside so that the events after it flow.

    Kept for an operator to inspect in the admin; the consumer is not retried on it.
    """

    consumer = models.CharField(max_length=64)
    event_id = models.BigIntegerField()
    project_id = models.BigIntegerField()
    error = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="feedfailure_unique_event")
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.consumer}: event {self.event_id}"


class BulkStatus(models.TextChoices):
    DRAFT = "draft", "Waiting for confirmation"
    QUEUED = "queued", "Waiting for a worker"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class BulkJob(models.Model):
    """A bulk action from the subscriber list (add a tag, opt out, erase), run by a worker.

    The targets are snapshotted when the marketer confirms, so the job does what was shown,
    whatever is added to the filter meanwhile. ``processed`` is the index of the next target:
    a retried job goes on from there (each row's service is idempotent anyway).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="bulk_jobs")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    action = models.CharField(max_length=20)
    params = models.JSONField(default=dict, blank=True)  # tag_name, tag_value, evidence
    subscriber_ids = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=BulkStatus.choices, default=BulkStatus.DRAFT)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} for {self.total} ({self.status})"
