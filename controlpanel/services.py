"""Writes on tenancy objects. Each service runs in a transaction and audits itself."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, models, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from .models import (
    ApiKey,
    AuditEntry,
    Invitation,
    Membership,
    Project,
    Role,
    User,
    hash_api_key,
)


@dataclass(frozen=True)
class Actor:
    """Who performs a write: a panel user, an API key, or the system itself."""

    user: User | None = None
    api_key: ApiKey | None = None
    label: str = ""

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        if self.user is not None:
            return self.user.email
        if self.api_key is not None:
            return f"API key {self.api_key.name} ({self.api_key.prefix})"
        return "system"


SYSTEM = Actor(label="system")


def record_audit(
    *,
    project: Project,
    actor: Actor,
    action: str,
    obj: models.Model | None = None,
    changes: dict | None = None,
) -> AuditEntry:
    """Append one audit row. Call inside the service's transaction."""
    object_id = ""
    if obj is not None:
        object_id = str(getattr(obj, "public_id", None) or obj.pk)
    return AuditEntry.objects.create(
        project=project,
        actor_user=actor.user,
        actor_api_key=actor.api_key,
        actor_label=actor.display[:200],
        action=action,
        object_type=obj._meta.label if obj is not None else "",
        object_id=object_id,
        object_repr=str(obj)[:200] if obj is not None else "",
        changes=changes or {},
    )


def assign_changes(obj: models.Model, fields: dict, *, secrets: tuple[str, ...] = ()) -> list[str]:
    """Set ``fields`` on ``obj`` (not saved) and return the names whose value changed. An empty
    value of a ``secrets`` field keeps the stored one (a settings form never shows it again)."""
    changed = []
    for name, value in fields.items():
        if name in secrets and not value:
            continue
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.append(name)
    return changed


def unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "project"
    slug, n = base, 2
    while Project.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def create_project(
    *,
    name: str,
    owner: User,
    slug: str | None = None,
    time_zone: str = "UTC",
    default_country: str = "DE",
    actor: Actor | None = None,
) -> Project:
    """Create a project with ``owner`` as its first owner. Not idempotent."""
    project = Project.objects.create(
        name=name,
        slug=slug or unique_slug(name),
        time_zone=time_zone,
        default_country=default_country,
    )
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    record_audit(project=project, actor=actor or Actor(user=owner), action="project.created", obj=project)
    return project


@transaction.atomic
def update_project(*, project: Project, actor: Actor, **fields) -> Project:
    changes = {}
    for name, value in fields.items():
        old = getattr(project, name)
        if old != value:
            changes[name] = [old, value]
            setattr(project, name, value)
    if changes:
        project.save(update_fields=list(changes))
        record_audit(project=project, actor=actor, action="project.updated", obj=project, changes=changes)
    return project


@transaction.atomic
def create_api_key(*, project: Project, name: str, actor: Actor) -> tuple[ApiKey, str]:
    """Create a key and return it with its raw value, which is never stored."""
    prefix, raw = ApiKey.generate()
    key = ApiKey.objects.create(
        project=project,
        name=name,
        prefix=prefix,
        key_hash=hash_api_key(raw),
        created_by=actor.user,
    )
    record_audit(project=project, actor=actor, action="api_key.created", obj=key)
    return key, raw


@transaction.atomic
def revoke_api_key(*, project: Project, key: ApiKey, actor: Actor) -> ApiKey:
    """Revoke a key of ``project``. Idempotent: revoking twice keeps the first time."""
    updated = ApiKey.objects.filter(pk=key.pk, project=project, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if updated:
        record_audit(project=project, actor=actor, action="api_key.revoked", obj=key)
    key.refresh_from_db()
    return key


def authenticate_api_key(raw: str) -> ApiKey | None:
    """Return the active key for a raw bearer value, or None."""
    parts = raw.split("_", 2)  # the secret part may itself contain "_"
    if len(parts) != 3 or parts[0] != "wak":
        return None
    key = ApiKey.objects.select_related("project").filter(prefix=parts[1], revoked_at__isnull=True).first()
    if key is None or not secrets.compare_digest(key.key_hash, hash_api_key(raw)):
        return None
    now = timezone.now()
    # Touch at most once a minute: a write per API request would be a hot-path cost.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def _owner_count(project: Project) -> int:
    # Locks every owner row: two owners demoting each other at once must not both succeed.
    return len(Membership.objects.select_for_update().filter(project=project, role=Role.OWNER))


@transaction.atomic
def invite_member(
    *, project: Project, email: str, role: Role, actor: Actor, base_url: str
) -> tuple[Invitation, str, bool]:
    """Create an invitation and mail its link (``base_url`` + path).

    Returns the invitation, its link and whether it replaced a pending invitation
    for the same address (whose link then stops working).
    """
    email = email.strip().lower()
    if Membership.objects.filter(project=project, user__email__iexact=email).exists():
        raise ValidationError(
            {"email": _("%(email)s is already a member of this project.") % {"email": email}}
        )
    replaced = Invitation.objects.filter(
        project=project, email=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        project=project,
        email=email,
        role=role,
        token_hash=hash_api_key(token),
        invited_by=actor.user,
    )
    record_audit(
        project=project,
        actor=actor,
        action="member.invited",
        obj=invitation,
        changes={"email": email, "role": str(role)},
    )
    link = base_url.rstrip("/") + reverse("invitation_accept", args=[token])
    body = render_to_string(
        "registration/invitation_email.txt",
        {"project": project, "inviter": actor.display, "link": link, "role": Role(role).label},
    )
    # In the inviter's language, active now (the invitee has no account to have picked one yet).
    subject = _("You are invited to %(project)s") % {"project": project.name}
    transaction.on_commit(lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [email]))
    return invitation, link, bool(replaced)


@transaction.atomic
def revoke_invitation(*, invitation: Invitation, actor: Actor) -> None:
    """Revoke a pending invitation. Idempotent."""
    updated = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    if updated:
        record_audit(
            project=invitation.project, actor=actor, action="member.invitation_revoked", obj=invitation
        )


def find_invitation(token: str) -> Invitation | None:
    invitation = Invitation.objects.select_related("project").filter(token_hash=hash_api_key(token)).first()
    return invitation if invitation is not None and invitation.is_pending else None


@transaction.atomic
def accept_invitation(*, invitation: Invitation, user: User) -> Membership:
    """Make ``user`` a member with the invited role. Idempotent for an existing member."""
    locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if not locked.is_pending:
        raise ValidationError(_("This invitation is no longer valid."))
    try:
        with transaction.atomic():
            membership = Membership.objects.create(project=locked.project, user=user, role=locked.role)
    except IntegrityError:
        membership = Membership.objects.get(project=locked.project, user=user)
    locked.accepted_at = timezone.now()
    locked.save(update_fields=["accepted_at"])
    record_audit(
        project=locked.project,
        actor=Actor(user=user),
        action="member.joined",
        obj=membership,
        changes={"role": membership.role},
    )
    return membership


@transaction.atomic
def change_role(*, membership: Membership, role: Role, actor: Actor) -> Membership:
    """Change a member's role; a project always keeps at least one owner."""
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == role:
        return membership
    if membership.role == Role.OWNER and _owner_count(membership.project) <= 1:
        raise ValidationError(_("A project needs at least one owner."))
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    record_audit(
        project=membership.project,
        actor=actor,
        action="member.role_changed",
        obj=membership,
        changes={"role": [old, str(role)], "user": membership.user.email},
    )
    return membership


@transaction.atomic
def remove_member(*, membership: Membership, actor: Actor) -> None:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == Role.OWNER and _owner_count(membership.project) <= 1:
        raise ValidationError(_("A project needs at least one owner."))
    record_audit(
        project=membership.project,
        actor=actor,
        action="member.removed",
        obj=membership,
        changes={"user": membership.user.email, "role": membership.role},
    )
    membership.delete()
