"""The push channel: a project's FCM settings, its push templates, and the push simulator's inbox."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from controlpanel.fields import EncryptedTextField
from controlpanel.models import Project, TenantQuerySet


class PushMode(models.TextChoices):
    # The embedded default: the push simulator stands in for FCM (push.simulator).
    SIMULATOR = "simulator", _("Push simulator (nothing leaves the machine)")
    FCM = "fcm", "Firebase Cloud Messaging"


class PushSettings(models.Model):
    """How a project sends push. One row per project."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="push_settings", verbose_name=_("project")
    )
    mode = models.CharField(_("mode"), max_length=10, choices=PushMode.choices, default=PushMode.SIMULATOR)
    # The Firebase service-account JSON (its private key signs the OAuth assertion), encrypted.
    service_account = EncryptedTextField(_("service account"), blank=True, default="")
    fcm_project_id = models.CharField(
        _("FCM project ID"), max_length=200, blank=True, help_text=_("From the service account.")
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("push settings")
        verbose_name_plural = _("push settings")

    def __str__(self) -> str:
        return f"Push settings of {self.project}"


class PushTemplate(models.Model):
    """Title, body, image, deep link and data payload, each text with Liquid bindings."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="push_templates", verbose_name=_("project")
    )
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=200)
    marketing = models.BooleanField(_("marketing"), default=True)
    title = models.CharField(_("title"), max_length=200)
    body = models.TextField(_("body"), max_length=2000)
    image_url = models.URLField(_("image URL"), max_length=2000, blank=True)
    link = models.CharField(_("link"), max_length=2000, blank=True, help_text=_("Deep link opened on tap."))
    data = models.JSONField(
        _("data"), default=dict, blank=True, help_text=_("Key-value payload for the app (strings).")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="push_template_unique_name")]
        ordering = ["name"]
        verbose_name = _("push template")
        verbose_name_plural = _("push templates")

    def __str__(self) -> str:
        return self.name


class SimulatedPush(models.Model):
    """A push the simulator accepted at its FCM-shaped URL, shown on the device page."""

    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("project"),
    )
    fcm_name = models.CharField(
        _("FCM name"), max_length=300, unique=True, help_text="projects/<id>/messages/<id>"
    )
    token = models.CharField(_("token"), max_length=4096)
    payload = models.JSONField(_("payload"), default=dict)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)
    opened_at = models.DateTimeField(_("opened at"), null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["token", "-received_at"], name="simpush_token_time")]
        verbose_name = _("simulated push")
        verbose_name_plural = _("simulated pushes")

    def __str__(self) -> str:
        return self.fcm_name


class SimulatorKey(models.Model):
    """The API key the push simulator's "Open" button uses to report opens through the public API,
    as an app would. Created once per project with the API key service (label "Push simulator");
    the plaintext is kept encrypted so it can be sent again (an ``ApiKey`` stores only a hash)."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="push_simulator_key", verbose_name=_("project")
    )
    api_key = models.ForeignKey(
        "controlpanel.ApiKey", on_delete=models.CASCADE, related_name="+", verbose_name=_("API key")
    )
    secret = EncryptedTextField(_("secret"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = _("push simulator key")
        verbose_name_plural = _("push simulator keys")

    def __str__(self) -> str:
        return f"Push simulator key of {self.project}"
