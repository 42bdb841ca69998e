"""Writes on WhatsApp connections and templates."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from controlpanel.models import Project
from controlpanel.services import Actor, record_audit

from .client import GraphClient
from .endpoints import allowed_base_url
from .models import AccountStatus, MessageTemplate, WhatsAppAccount
from .signals import sending_resumed
from .webhooks import forget

SECRET_FIELDS = ("access_token", "app_secret")


@transaction.atomic
def save_connection(
    *, project: Project, account: WhatsAppAccount | None, fields: dict[str, Any], actor: Actor
) -> WhatsAppAccount:
    """Create or update a connection. Empty secrets keep the stored ones; secrets are never audited."""
    account = account or WhatsAppAccount(project=project)
    if account.project_id and account.project_id != project.pk:
        raise ValueError("account of another project")
    if "base_url" in fields and not allowed_base_url(fields["base_url"]):
        raise ValueError(f"base URL not allowed: {fields['base_url']}")
    changed = []
    for name, value in fields.items():
        if name in SECRET_FIELDS and not value:
            continue
        if getattr(account, name) != value:
            setattr(account, name, value)
            changed.append(name)
    creating = account.pk is None
    if creating or changed:
        if any(name in SECRET_FIELDS for name in changed) and account.status == AccountStatus.SUSPENDED:
            # New credentials are the usual fix for an account-level error: let sending resume.
            account.status, account.status_reason = AccountStatus.ACTIVE, ""
            transaction.on_commit(lambda: sending_resumed.send(sender=None, account_id=account.pk))
        account.save()
        forget(str(account.public_id))
        record_audit(
            project=project,
            actor=actor,
            action="whatsapp.connected" if creating else "whatsapp.updated",
            obj=account,
            changes={"fields": sorted(n if n not in SECRET_FIELDS else f"{n} (secret)" for n in changed)},
        )
    return account


@transaction.atomic
def resume_sending(*, account: WhatsAppAccount, actor: Actor) -> None:
    WhatsAppAccount.objects.filter(pk=account.pk).update(status=AccountStatus.ACTIVE, status_reason="")
    record_audit(project=account.project, actor=actor, action="whatsapp.resumed", obj=account)
    transaction.on_commit(lambda: sending_resumed.send(sender=None, account_id=account.pk))


def check_connection(account: WhatsAppAccount) -> dict[str, Any]:
    """GET the phone number from Meta; raises whatsapp.errors.GraphError with Meta's words."""
    info = GraphClient(account).get_phone_number()
    updates = {}
    if info.get("quality_rating"):
        updates["quality_rating"] = str(info["quality_rating"])
    if info.get("messaging_limit_tier"):
        updates["messaging_tier"] = str(info["messaging_limit_tier"])
    if info.get("verified_name"):
        updates["verified_name"] = str(info["verified_name"])
    if info.get("display_phone_number") and not account.display_phone_number:
        updates["display_phone_number"] = str(info["display_phone_number"])
    if updates:
        WhatsAppAccount.objects.filter(pk=account.pk).update(**updates)
    return info


TEMPLATE_FIELDS = {"id", "name", "language", "category", "status", "quality_score", "components",
                   "parameter_format", "rejected_reason", "previous_category"}  # fmt: skip


def sync_templates(*, account: WhatsAppAccount) -> tuple[int, int]:
    """Pull every template of the WABA into MessageTemplate. Returns (created, updated).

    Templates that Meta no longer lists are marked DELETED, not removed, so sent
    messages keep their link.
    """
    remote = GraphClient(account).list_templates()
    now = timezone.now()
    created = updated = 0
    seen: set[tuple[str, str]] = set()
    with transaction.atomic():
        for item in remote:
            name, language = str(item.get("name") or ""), str(item.get("language") or "")
            if not name or not language:
                continue
            seen.add((name, language))
            quality = item.get("quality_score") or {}
            defaults = {
                "project_id": account.project_id,
                "meta_id": str(item.get("id") or ""),
                "category": str(item.get("category") or ""),
                "status": str(item.get("status") or ""),
                "quality_score": str(quality.get("score") or "")
                if isinstance(quality, dict)
                else str(quality),
                "parameter_format": str(item.get("parameter_format") or "POSITIONAL"),
                "components": item.get("components") or [],
                "rejected_reason": ""
                if item.get("rejected_reason") in (None, "NONE")
                else str(item["rejected_reason"]),
                "previous_category": str(item.get("previous_category") or ""),
                "extra": {k: v for k, v in item.items() if k not in TEMPLATE_FIELDS},
                "synced_at": now,
            }
            _, was_created = MessageTemplate.objects.update_or_create(
                account=account, name=name, language=language, defaults=defaults
            )
            created += was_created
            updated += not was_created
        stale = MessageTemplate.objects.filter(account=account).exclude(status="DELETED")
        for template in stale:
            if (template.name, template.language) not in seen:
                template.status = "DELETED"
                template.synced_at = now
                template.save(update_fields=["status", "synced_at", "updated_at"])
    return created, updated
