"""The push channel: a project's FCM settings, its push templates, and the push simulator's inbox."""

from __future__ import annotations

import uuid

from django.db import models

from controlpanel.fields import EncryptedTextField
from controlpanel.models import Project, TenantQuerySet


class PushMode(models.TextChoices):
    # The embedded default: the push simulator stands in for FCM (push.simulator).
    SIMULATOR = "simulator", "Push simulator (nothing leaves the machine)"
    FCM = "fcm", "Firebase Cloud Messaging"


class PushSettings(models.Model):
    """How a project sends push. One row per project."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="push_settings")
    mode = models.CharField(max_length=10, choices=PushMode.choices, default=PushMode.SIMULATOR)
    # The Firebase service-account JSON (its private key signs the OAuth assertion), encrypted.
    service_account = EncryptedTextField(blank=True, default="")
    fcm_project_id = models.CharField(max_length=200, blank=True, help_text="From the service account.")
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Push settings of {self.project}"


class PushTemplate(models.Model):
    """Title, body, image, deep link and data payload, each text with Liquid bindings."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="push_templates")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    marketing = models.BooleanField(default=True)
    title = models.CharField(max_length=200)
    body = models.TextField(max_length=2000)
    image_url = models.URLField(max_length=2000, blank=True)
    link = models.CharField(max_length=2000, blank=True, help_text="Deep link opened on tap.")
    data = models.JSONField(default=dict, blank=True, help_text="Key-value payload for the app (strings).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="push_template_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SimulatedPush(models.Model):
    """A push the simulator accepted at its FCM-shaped URL, shown on the device page."""

    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    fcm_name = models.CharField(max_length=300, unique=True, help_text="projects/<id>/messages/<id>")
    token = models.CharField(max_length=4096)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["token", "-received_at"], name="simpush_token_time")]

    def __str__(self) -> str:
        return self.fcm_name


class SimulatorKey(models.Model):
    """The API key the push simulator's "Open" button uses to report opens through the public API,
    as an app would. Created once per project with the API key service (label "Push simulator");
    the plaintext is kept encrypted so it can be sent again (an ``ApiKey`` stores only a hash)."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="push_simulator_key")
    api_key = models.ForeignKey("controlpanel.ApiKey", on_delete=models.CASCADE, related_name="+")
    secret = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Push simulator key of {self.project}"
