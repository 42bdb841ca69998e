"""Tenancy: users, projects, memberships, API keys, invitations and the audit trail."""

from __future__ import annotations

import hashlib
import secrets
import uuid
import zoneinfo
from datetime import timedelta

import phonenumbers
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from . import countries

TIME_ZONE_CHOICES = [(name, name) for name in sorted(zoneinfo.available_timezones())]
# "Germany (+49)" ("Deutschland (+49)" in German): labels are lazy, in the reader's language; the list
# is in the order of the English names (country_choices() sorts for the active language).
COUNTRY_CHOICES = sorted(
    (
        (region, countries.label(region, phonenumbers.country_code_for_region(region)))
        for region in phonenumbers.SUPPORTED_REGIONS
    ),
    key=lambda choice: (
        f"{countries.name(choice[0], 'en')} (+{phonenumbers.country_code_for_region(choice[0])})"
    ),
)


def country_choices() -> list[tuple[str, str]]:
    """COUNTRY_CHOICES sorted by their names in the active language, for a form's select."""
    labels = [(code, str(label)) for code, label in COUNTRY_CHOICES]
    if (get_language() or "en").startswith("en"):
        return labels  # already in the order of the English names
    return sorted(labels, key=lambda choice: countries.sort_key(choice[1]))


def normalize_login(email: str) -> str:
    """The one spelling of an account's email: stored, looked up and throttled on (django-axes)."""
    return email.strip().lower()


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=normalize_login(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username: str) -> User:
        # Emails are stored lower-cased (a constraint says so); log-ins do not depend on case.
        return self.get(email=normalize_login(username))


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in to the panel. Identified by email address."""

    email = models.EmailField(_("email"), unique=True)
    name = models.CharField(_("name"), max_length=150, blank=True)
    is_staff = models.BooleanField(
        _("staff status"), default=False, help_text=_("May log in to the Django admin (operators).")
    )
    # The panel's language; empty follows the browser (settings.LANGUAGES lists the choices).
    language = models.CharField(
        _("language"), max_length=8, blank=True, default="", choices=settings.LANGUAGES
    )
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            # With every email lower-case, the unique index is case-insensitive as well: no second
            # account "T6@example.com" beside "t6@example.com" for a log-in to be ambiguous between.
            models.CheckConstraint(condition=Q(email=Lower("email")), name="user_email_lower_case"),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        # The admin's forms reach the model here, not through the manager.
        super().clean()
        self.email = normalize_login(self.email)

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name.split(" ")[0] if self.name else self.email


class TenantQuerySet(models.QuerySet):
    """Reads of every tenant-owned table start here: ``Model.objects.for_project(project)``."""

    def for_project(self, project: Project):
        return self.filter(project=project)


class ProjectQuerySet(models.QuerySet["Project"]):
    def for_user(self, user) -> ProjectQuerySet:
        return self.filter(memberships__user=user)


class Project(models.Model):
    """The tenant. Every tenant-owned row points here."""

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    time_zone = models.CharField(_("time zone"), max_length=64, default="UTC", choices=TIME_ZONE_CHOICES)
    default_country = models.CharField(
        _("default country"),
        max_length=2,
        default="DE",
        choices=COUNTRY_CHOICES,
        help_text=_("Country assumed for phone numbers written without +prefix."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("project")
        verbose_name_plural = _("projects")

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    # Order matters: each role may do everything the ones below it may.
    VIEWER = "viewer", _("Viewer")
    MARKETER = "marketer", _("Marketer")
    ADMIN = "admin", _("Admin")
    OWNER = "owner", _("Owner")

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, other: Role) -> bool:
        return self.rank >= Role(other).rank


class Membership(models.Model):
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("project")
    )
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user")
    )
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.MARKETER)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user")]
        ordering = ["project", "user__email"]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"

    @property
    def role_enum(self) -> Role:
        return Role(self.role)

    def can(self, role: Role) -> bool:
        return self.role_enum.at_least(role)


class ApiKeyQuerySet(TenantQuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


API_KEY_PREFIX = "wak"


def hash_api_key(raw: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKey(models.Model):
    """A bearer key for the public API, bound to one project.

    Only a SHA-256 of the key is stored; the key itself is shown once at creation.
    The short ``prefix`` identifies a key in lists and logs without revealing it.
    """

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("project")
    )
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    key_hash = models.CharField(_("key hash"), max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def generate() -> tuple[str, str]:
        """Return (prefix, raw key)."""
        prefix = secrets.token_hex(4)
        return prefix, f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


class Invitation(models.Model):
    """An owner's invitation for an email address to join a project with a role."""

    VALID_FOR = timedelta(days=7)

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="invitations", verbose_name=_("project")
    )
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField(_("email"))
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.MARKETER)
    token_hash = models.CharField(_("token hash"), max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("invited by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    accepted_at = models.DateTimeField(_("accepted at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")

    def __str__(self) -> str:
        return f"{self.email} to {self.project}"

    @property
    def is_pending(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.created_at + self.VALID_FOR > timezone.now()
        )


class AuditEntryQuerySet(TenantQuerySet):
    pass


class AuditEntry(models.Model):
    """Who did what to which object, and when. Written by services, never edited."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="audit_entries", verbose_name=_("project")
    )
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name=_("actor user"),
    )
    actor_api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("actor API key")
    )
    # Kept as text so the entry survives the actor's deletion.
    actor_label = models.CharField(_("actor label"), max_length=200, blank=True)
    action = models.CharField(_("action"), max_length=80)
    object_type = models.CharField(_("object type"), max_length=80, blank=True)
    object_id = models.CharField(_("object ID"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=200, blank=True)
    changes = models.JSONField(_("changes"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="audit_project_time")]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")

    def __str__(self) -> str:
        return f"{self.actor_label}: {self.action} {self.object_type} {self.object_repr}"


class Heartbeat(models.Model):
    """Last time each background component proved it was alive (workers, scheduler)."""

    component = models.CharField(_("component"), max_length=40, unique=True)
    seen_at = models.DateTimeField(_("seen at"))

    class Meta:
        verbose_name = _("heartbeat")
        verbose_name_plural = _("heartbeats")

    def __str__(self) -> str:
        return f"{self.component} @ {self.seen_at:%Y-%m-%d %H:%M:%S}"
