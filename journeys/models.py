"""Journeys: a graph of steps that subscribers walk through, one ``JourneyRun`` row per walk.

The definition (entries, settings, steps) is JSON (``definition.py`` parses it, ``docs/journeys.md``
documents it). What a marketer edits is ``Journey.definition``; activating a journey freezes it as
a ``JourneyVersion`` and runs walk the version they started on (or are moved to a newer one, see
ADR 0007). A run is advanced by the engine (``engine.py``): a scheduler tick claims due runs with
``FOR UPDATE SKIP LOCKED``; the event feed wakes runs waiting for an event. Each step a run visits
leaves one ``JourneyRunStep`` row (unique per run and step), which is what makes a step's side
effect happen once even when a worker dies in the middle of it.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from campaigns.models import Message
from controlpanel.models import Project, TenantQuerySet
from subscribers.models import Subscriber


class JourneyStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    STOPPED = "stopped", "Stopped"


class EntryKind(models.TextChoices):
    EVENT = "event", "Event"
    SEGMENT = "segment", "Segment"
    API = "api", "API"


class JourneyQuerySet(TenantQuerySet):
    def active(self) -> JourneyQuerySet:
        return self.filter(status=JourneyStatus.ACTIVE)


class Journey(models.Model):
    """A journey as the marketer edits it; ``version`` is the number of its newest frozen version."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="journeys")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=JourneyStatus.choices, default=JourneyStatus.DRAFT)
    status_reason = models.TextField(blank=True)
    # The editable definition (JSON as in docs/journeys.md, plus "ui" positions for the canvas).
    definition = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(
        default=0, help_text="Newest activated version; 0: never activated."
    )
    # Denormalised from the definition at save time, for the feed consumer and collision checks:
    # the event names that start this journey and the folded keywords it claims.
    entry_kinds = models.JSONField(default=list, blank=True)
    entry_events = models.JSONField(default=list, blank=True)
    keywords = models.JSONField(default=list, blank=True, help_text="Folded keywords (keywords.fold).")
    # Segment entries: when the next one fires (once or recurring); claimed by the scheduler tick.
    next_entry_at = models.DateTimeField(null=True, blank=True)
    last_entry_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    objects = JourneyQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["project", "-created_at"], name="journey_project_time"),
            models.Index(fields=["next_entry_at"], condition=Q(status="active"), name="journey_next_entry"),
        ]

    def __str__(self) -> str:
        return self.name


class JourneyVersion(models.Model):
    """A frozen definition; runs keep the number of the version they walk."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "number"], name="journey_version_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.journey_id} v{self.number}"


class RunState(models.TextChoices):
    READY = "ready", "Ready"  # due now: the tick advances it
    WAITING = "waiting", "Waiting"  # until wake_at, or an event in waiting_events (wake_at = timeout)
    HELD = "held", "Held"  # the journey is paused; resumes where it stands
    DONE = "done", "Done"  # left the journey (exit step, end of a branch, goal, drop, stop)


class RunQuerySet(TenantQuerySet):
    def live(self) -> RunQuerySet:
        return self.exclude(state=RunState.DONE)


class JourneyRun(models.Model):
    """One subscriber's walk through one journey.

    ``wake_at`` is when the tick should look at the run (ready: now; waiting: the end of the
    wait or the timeout of a wait for an event). ``lease_until`` is set by the claim: a run whose
    worker died is claimed again once the lease has passed.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="runs", db_index=False)
    version = models.PositiveIntegerField()
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="+", db_index=False)
    state = models.CharField(max_length=8, choices=RunState.choices, default=RunState.READY)
    step_id = models.CharField(max_length=64, help_text="The step it is at (or left the journey from).")
    wake_at = models.DateTimeField(null=True, blank=True)
    waiting_events = models.JSONField(
        default=list, blank=True, help_text="Event names a wait step waits for."
    )
    lease_until = models.DateTimeField(null=True, blank=True)
    # What steps read: the entry event ({"name", "attributes", "id"}), API values, A/B variants,
    # the wamid of the last message sent (quick-reply branches), the event that woke the run.
    context = models.JSONField(default=dict, blank=True)
    # Deduplication of entries: one run per (journey, entry_key) (an event id, a segment firing,
    # an API request), and one run per (journey, subscriber, exclusive) where exclusive is set:
    # "1" for every run of a never-re-enter journey, and for the live run of an after-exit one.
    entry_key = models.CharField(max_length=200)
    exclusive = models.CharField(max_length=1, null=True, blank=True)  # noqa: DJ001
    dry_run = models.BooleanField(default=False)
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=40, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    converted_step = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Failed advances of the current step.")
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "entry_key"], name="journey_run_unique_entry"),
            models.UniqueConstraint(
                fields=["journey", "subscriber", "exclusive"], name="journey_run_unique_exclusive"
            ),
        ]
        indexes = [
            models.Index(
                fields=["wake_at"], condition=Q(state__in=["ready", "waiting"]), name="journey_run_due"
            ),
            models.Index(
                fields=["subscriber"], condition=Q(state="waiting"), name="journey_run_waiting_subscriber"
            ),
            models.Index(fields=["journey", "state", "step_id"], name="journey_run_step"),
            models.Index(fields=["journey", "subscriber", "-entered_at"], name="journey_run_subscriber"),
            # The statistics page's daily series (journeys/stats.py): range scans of a window.
            models.Index(
                fields=["journey", "entered_at"], condition=Q(dry_run=False), name="journey_run_entered"
            ),
            models.Index(
                fields=["journey", "converted_at"],
                condition=Q(converted_at__isnull=False, dry_run=False),
                name="journey_run_converted",
            ),
            # Live runs per step (stats.step_counts: the canvas and the statistics page poll it):
            # an index-only count of the live runs alone, whatever the number of finished ones.
            models.Index(
                fields=["journey", "step_id"],
                condition=Q(dry_run=False) & ~Q(state="done"),
                name="journey_run_live",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.public_id} at {self.step_id} ({self.state})"


class JourneyRunStep(models.Model):
    """A run's visit to a step: written once when the step starts, finished when it leaves it.

    Unique per run and step (a journey is acyclic), so the side effect recorded here (the outbox
    row of a send step, the idempotency key of a webhook step) happens once per run and step.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    run = models.ForeignKey(JourneyRun, on_delete=models.CASCADE, related_name="steps")
    step_id = models.CharField(max_length=64)
    step_type = models.CharField(max_length=32)
    entered_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outlet = models.CharField(max_length=64, blank=True, help_text="The branch it left by.")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    # What happened, for the run's timeline and the dry run: the rendered text, the webhook's
    # answer, the tags set, the reason a message was skipped.
    detail = models.JSONField(default=dict, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "step_id"], name="journey_run_step_unique")]
        indexes = [
            models.Index(
                fields=["message"], condition=Q(message__isnull=False), name="journey_run_step_message"
            )
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.step_id}"


class JourneyStat(models.Model):  # noqa: DJ008 - counters, shown in tables
    """Counters per journey and step, moved by deltas in the transaction that did the work.

    ``key`` is one of ``entered``, ``sent``, ``delivered``, ``read``, ``clicked``, ``failed``,
    ``skipped``, ``converted``, ``exited``, ``exited:<reason>`` and ``passed:<outlet>`` (the arrow
    leaving the step by that outlet). ``step_id`` "" holds journey-wide counters (``entered``,
    ``converted``, ``exited:<reason>``). Dry runs are never counted.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="+", db_index=False)
    step_id = models.CharField(max_length=64, blank=True)
    key = models.CharField(max_length=80)
    n = models.BigIntegerField(default=0)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["journey", "step_id", "key"], name="journey_stat_key")]


class StartRequestStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class JourneyStartRequest(models.Model):  # noqa: DJ008
    """``POST /api/v1/journeys/{id}/start`` (and ``/drop``): accepted at once, carried out by an actor."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    journey = models.ForeignKey(Journey, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=8, default="start")  # start | drop
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=8, choices=StartRequestStatus.choices, default=StartRequestStatus.QUEUED
    )
    result = models.JSONField(default=dict, blank=True, help_text="entered / skipped by reason / errors")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()
