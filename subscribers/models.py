"""The audience. This is the core of the Subscriber model; the audience issue extends it."""

from __future__ import annotations

import uuid

from django.db import models

from controlpanel.models import Project


class ConsentState(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    OPTED_IN = "opted_in", "Opted in"
    OPTED_OUT = "opted_out", "Opted out"


class SubscriberQuerySet(models.QuerySet["Subscriber"]):
    def for_project(self, project: Project) -> SubscriberQuerySet:
        return self.filter(project=project)

    def whatsapp_opted_in(self) -> SubscriberQuerySet:
        return self.filter(whatsapp_consent=ConsentState.OPTED_IN)


class Subscriber(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="subscribers")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    phone = models.CharField(max_length=20, help_text="E.164, e.g. +4915112345678")
    # NULL, not "", for "no external id": the unique constraint ignores NULLs only.
    external_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    language = models.CharField(max_length=16, blank=True)
    country = models.CharField(max_length=2, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    whatsapp_consent = models.CharField(
        max_length=10, choices=ConsentState.choices, default=ConsentState.UNKNOWN
    )
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SubscriberQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "phone"], name="subscriber_unique_phone"),
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=models.Q(external_id__isnull=False),
                name="subscriber_unique_external_id",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "whatsapp_consent"], name="subscriber_consent"),
        ]

    def __str__(self) -> str:
        return self.name or self.phone
