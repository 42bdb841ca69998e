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
from django.utils.translation import gettext_lazy as _

from campaigns.models import Message
from controlpanel.models import Project, TenantQuerySet
from subscribers.models import Subscriber


class JourneyStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    ACTIVE = "active", _("Active")
    PAUSED = "paused", _("Paused")
    STOPPED = "stopped", _("Stopped")


class EntryKind(models.TextChoices):
    EVENT = "event", _("Event")
    SEGMENT = "segment", _("Segment")
    API = "api", _("API")


class JourneyQuerySet(TenantQuerySet):
    def active(self) -> JourneyQuerySet:
        return self.filter(status=JourneyStatus.ACTIVE)


class Journey(models.Model):
    """A journey as the marketer edits it; ``version`` is the number of its newest frozen version."""

    project = models.ForeignKey(
        Project, verbose_name=_("project"), on_delete=models.CASCADE, related_name="journeys"
    )
    public_id = models.UUIDField(verbose_name=_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(verbose_name=_("name"), max_length=200)
    status = models.CharField(
        verbose_name=_("status"), max_length=10, choices=JourneyStatus.choices, default=JourneyStatus.DRAFT
    )
    status_reason = models.TextField(verbose_name=_("status reason"), blank=True)
    # The editable definition (JSON as in docs/journeys.md, plus "ui" positions for the canvas).
    definition = models.JSONField(verbose_name=_("definition"), default=dict, blank=True)
    version = models.PositiveIntegerField(
        verbose_name=_("version"), default=0, help_text=_("Newest activated version; 0: never activated.")
    )
    # Denormalised from the definition at save time, for the feed consumer and collision checks:
    # the event names that start this journey and the folded keywords it claims.
    entry_kinds = models.JSONField(verbose_name=_("entry kinds"), default=list, blank=True)
    entry_events = models.JSONField(verbose_name=_("entry events"), default=list, blank=True)
    keywords = models.JSONField(
        verbose_name=_("keywords"), default=list, blank=True, help_text=_("Folded keywords (keywords.fold).")
    )
    # Segment entries: when the next one fires (once or recurring); claimed by the scheduler tick.
    next_entry_at = models.DateTimeField(verbose_name=_("next entry at"), null=True, blank=True)
    last_entry_at = models.DateTimeField(verbose_name=_("last entry at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)
    activated_at = models.DateTimeField(verbose_name=_("activated at"), null=True, blank=True)
    paused_at = models.DateTimeField(verbose_name=_("paused at"), null=True, blank=True)
    stopped_at = models.DateTimeField(verbose_name=_("stopped at"), null=True, blank=True)

    objects = JourneyQuerySet.as_manager()

    class Meta:
        verbose_name = _("journey")
        verbose_name_plural = _("journeys")
        indexes = [
            models.Index(fields=["project", "-created_at"], name="journey_project_time"),
            models.Index(fields=["next_entry_at"], condition=Q(status="active"), name="journey_next_entry"),
        ]

    def __str__(self) -> str:
        return self.name


class JourneyVersion(models.Model):
    """A frozen definition; runs keep the number of the version they walk."""

    project = models.ForeignKey(
        Project, verbose_name=_("project"), on_delete=models.CASCADE, related_name="+"
    )
    journey = models.ForeignKey(
        Journey, verbose_name=_("journey"), on_delete=models.CASCADE, related_name="versions"
    )
    number = models.PositiveIntegerField(verbose_name=_("number"))
    definition = models.JSONField(verbose_name=_("definition"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("journey version")
        verbose_name_plural = _("journey versions")
        constraints = [
            models.UniqueConstraint(fields=["journey", "number"], name="journey_version_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.journey_id} v{self.number}"


class RunState(models.TextChoices):
    READY = "ready", _("Ready")  # due now: the tick advances it
    WAITING = "waiting", _("Waiting")  # until wake_at, or an event in waiting_events (wake_at = timeout)
    HELD = "held", _("Held")  # the journey is paused; resumes where it stands
    DONE = "done", _("Done")  # left the journey (exit step, end of a branch, goal, drop, stop)


class RunQuerySet(TenantQuerySet):
    def live(self) -> RunQuerySet:
        return self.exclude(state=RunState.DONE)


class JourneyRun(models.Model):
    """One subscriber's walk through one journey.

    ``wake_at`` is when the tick should look at the run (ready: now; waiting: the end of the
    wait or the timeout of a wait for an event). ``lease_until`` is set by the claim: a run whose
    worker died is claimed again once the lease has passed.
    """

    project = models.ForeignKey(
        Project, verbose_name=_("project"), on_delete=models.CASCADE, related_name="+", db_index=False
    )
    public_id = models.UUIDField(verbose_name=_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    journey = models.ForeignKey(
        Journey, verbose_name=_("journey"), on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    version = models.PositiveIntegerField(verbose_name=_("version"))
    subscriber = models.ForeignKey(
        Subscriber, verbose_name=_("subscriber"), on_delete=models.CASCADE, related_name="+", db_index=False
    )
    state = models.CharField(
        verbose_name=_("state"), max_length=8, choices=RunState.choices, default=RunState.READY
    )
    step_id = models.CharField(
        verbose_name=_("step id"), max_length=64, help_text=_("The step it is at (or left the journey from).")
    )
    wake_at = models.DateTimeField(verbose_name=_("wake at"), null=True, blank=True)
    waiting_events = models.JSONField(
        verbose_name=_("waiting events"),
        default=list,
        blank=True,
        help_text=_("Event names a wait step waits for."),
    )
    lease_until = models.DateTimeField(verbose_name=_("lease until"), null=True, blank=True)
    # What steps read: the entry event ({"name", "attributes", "id"}), API values, A/B variants,
    # the wamid of the last message sent (quick-reply branches), the event that woke the run.
    context = models.JSONField(verbose_name=_("context"), default=dict, blank=True)
    # Deduplication of entries: one run per (journey, entry_key) (an event id, a segment firing,
    # an API request), and one run per (journey, subscriber, exclusive) where exclusive is set:
    # "1" for every run of a never-re-enter journey, and for the live run of an after-exit one.
    entry_key = models.CharField(verbose_name=_("entry key"), max_length=200)
    exclusive = models.CharField(verbose_name=_("exclusive"), max_length=1, null=True, blank=True)  # noqa: DJ001
    dry_run = models.BooleanField(verbose_name=_("dry run"), default=False)
    entered_at = models.DateTimeField(verbose_name=_("entered at"))
    exited_at = models.DateTimeField(verbose_name=_("exited at"), null=True, blank=True)
    exit_reason = models.CharField(verbose_name=_("exit reason"), max_length=40, blank=True)
    converted_at = models.DateTimeField(verbose_name=_("converted at"), null=True, blank=True)
    converted_step = models.CharField(verbose_name=_("converted step"), max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(
        verbose_name=_("attempts"), default=0, help_text=_("Failed advances of the current step.")
    )
    last_error = models.TextField(verbose_name=_("last error"), blank=True)
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        verbose_name = _("journey run")
        verbose_name_plural = _("journey runs")
        constraints = [
            models.UniqueConstraint(fields=["journey", "entry_key"], name="journey_run_unique_entry"),
            models.UniqueConstraint(
                fields=["journey", "subscriber", "exclusive"], name="journey_run_unique_exclusive"
            ),
        ]
        indexes = [
            # The engine's claim (engine._claim): per active journey, in wake order. Led by the
            # journey so that the due runs of paused journeys are never read.
            models.Index(
                fields=["journey", "wake_at"],
                condition=Q(state__in=["ready", "waiting"]),
                name="journey_run_due_by_journey",
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

    project = models.ForeignKey(
        Project, verbose_name=_("project"), on_delete=models.CASCADE, related_name="+", db_index=False
    )
    run = models.ForeignKey(JourneyRun, verbose_name=_("run"), on_delete=models.CASCADE, related_name="steps")
    step_id = models.CharField(verbose_name=_("step id"), max_length=64)
    step_type = models.CharField(verbose_name=_("step type"), max_length=32)
    entered_at = models.DateTimeField(verbose_name=_("entered at"))
    finished_at = models.DateTimeField(verbose_name=_("finished at"), null=True, blank=True)
    outlet = models.CharField(
        verbose_name=_("outlet"), max_length=64, blank=True, help_text=_("The branch it left by.")
    )
    message = models.ForeignKey(
        Message, verbose_name=_("message"), null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # What happened, for the run's timeline and the dry run: the rendered text, the webhook's
    # answer, the tags set, the reason a message was skipped.
    detail = models.JSONField(verbose_name=_("detail"), default=dict, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("journey run step")
        verbose_name_plural = _("journey run steps")
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

    project = models.ForeignKey(
        Project, verbose_name=_("project"), on_delete=models.CASCADE, related_name="+", db_index=False
    )
    journey = models.ForeignKey(
        Journey, verbose_name=_("journey"), on_delete=models.CASCADE, related_name="+", db_index=False
    )
    step_id = models.CharField(verbose_name=_("step id"), max_length=64, blank=True)
    key = models.CharField(verbose_name=_("key"), max_length=80)
    n = models.BigIntegerField(verbose_name=_("count"), default=0)

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("journey counter")
        verbose_name_plural = _("journey counters")
        constraints = [models.UniqueConstraint(fields=["journey", "step_id", "key"], name="journey_stat_key")]


class StartRequestStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class JourneyStartRequest(models.Model):  # noqa: DJ008
    """``POST /api/v1/journeys/{id}/start`` (and ``/drop``): accepted at once, carried out by an actor."""

    project = models.ForeignKey(
        Project, verbose_name=_("project"), on_delete=models.CASCADE, related_name="+"
    )
    public_id = models.UUIDField(verbose_name=_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    journey = models.ForeignKey(
        Journey, verbose_name=_("journey"), null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    action = models.CharField(verbose_name=_("action"), max_length=8, default="start")  # start | drop
    payload = models.JSONField(verbose_name=_("payload"), default=dict)
    status = models.CharField(
        verbose_name=_("status"),
        max_length=8,
        choices=StartRequestStatus.choices,
        default=StartRequestStatus.QUEUED,
    )
    result = models.JSONField(
        verbose_name=_("result"),
        default=dict,
        blank=True,
        help_text=_("entered / skipped by reason / errors"),
    )
    created_at = models.DateTimeField(verbose_name=_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(verbose_name=_("finished at"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("journey start request")
        verbose_name_plural = _("journey start requests")
