"""Writes on WhatsApp connections and templates."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext, ngettext, pgettext

from controlpanel.models import Project
from controlpanel.services import Actor, assign_changes, record_audit

from . import templates_lint as lint
from .client import GraphClient
from .endpoints import allowed_base_url
from .errors import PermanentError
from .models import AccountStatus, MessageTemplate, TemplateStatus, WhatsAppAccount
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
    changed = assign_changes(account, fields, secrets=SECRET_FIELDS)
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
# Shown by name in the sync message; beyond this many, as a count.
NAMES_SHOWN = 5


@dataclass
class SyncResult:
    """What a template sync changed, as "name (language)" labels."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        """ "2 added (a (en_US), b (de)), 1 removed (c (en_US))" or "no changes (3 templates)"."""
        if not self.changed:
            return ngettext(
                "no changes (%(count)s template)", "no changes (%(count)s templates)", self.unchanged
            ) % {"count": number_format(self.unchanged, force_grouping=True)}
        parts = []
        for verb, names in (
            (pgettext("templates", "%(count)s added (%(names)s)"), self.added),
            (pgettext("templates", "%(count)s updated (%(names)s)"), self.updated),
            (pgettext("templates", "%(count)s removed (%(names)s)"), self.removed),
        ):
            if names:
                shown = ", ".join(names[:NAMES_SHOWN])
                if len(names) > NAMES_SHOWN:
                    more = len(names) - NAMES_SHOWN
                    shown = gettext("%(names)s and %(count)s more") % {
                        "names": shown,
                        "count": number_format(more, force_grouping=True),
                    }
                parts.append(verb % {"count": number_format(len(names), force_grouping=True), "names": shown})
        return ", ".join(parts)


def _label(name: str, language: str) -> str:
    return f"{name} ({language})"


def sync_templates(*, account: WhatsAppAccount) -> SyncResult:
    """Pull every template of the WABA into MessageTemplate and say what changed.

    A template counts as updated only when something Meta says about it differs from what is
    stored (status, category, components ...); the others only get their sync time. Templates
    that Meta no longer lists are marked DELETED ("removed"), not deleted, so sent messages keep
    their link. Idempotent: a second sync right after the first reports no changes.
    """
    remote = GraphClient(account).list_templates()
    now = timezone.now()
    result = SyncResult()
    seen: set[tuple[str, str]] = set()
    with transaction.atomic():
        stored = {(t.name, t.language): t for t in MessageTemplate.objects.filter(account=account)}
        untouched: list[int] = []
        for item in remote:
            name, language = str(item.get("name") or ""), str(item.get("language") or "")
            if not name or not language or (name, language) in seen:
                continue
            seen.add((name, language))
            quality = item.get("quality_score") or {}
            values = {
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
            }
            template = stored.get((name, language))
            if template is None:
                MessageTemplate.objects.create(
                    project_id=account.project_id,
                    account=account,
                    name=name,
                    language=language,
                    synced_at=now,
                    **values,
                )
                result.added.append(_label(name, language))
            elif any(getattr(template, key) != value for key, value in values.items()):
                for key, value in values.items():
                    setattr(template, key, value)
                template.synced_at = now
                template.save(update_fields=[*values, "synced_at", "updated_at"])
                result.updated.append(_label(name, language))
            else:
                untouched.append(template.pk)
        MessageTemplate.objects.filter(pk__in=untouched).update(synced_at=now)
        result.unchanged = len(untouched)
        for (name, language), template in stored.items():
            if (name, language) not in seen and template.status != TemplateStatus.DELETED:
                template.status = TemplateStatus.DELETED
                template.synced_at = now
                template.save(update_fields=["status", "synced_at", "updated_at"])
                result.removed.append(_label(name, language))
    return result


def submit_template(*, account: WhatsAppAccount, draft: lint.Draft, actor: Actor) -> MessageTemplate:
    """Create the template at Meta and keep Meta's answer (id, status, category) in MessageTemplate.

    Raises GraphError when Meta refuses or cannot be reached; then nothing is written. Not
    idempotent on Meta's side (a second call is refused as a duplicate name), so call it once per
    submitted form.
    """
    payload = lint.build_payload(draft)
    answer = GraphClient(account).create_template(payload)
    meta_id = str(answer.get("id") or "")
    if not meta_id:
        raise PermanentError(None, "Meta answered without a template id.", details=json.dumps(answer)[:500])
    category = str(answer.get("category") or draft.category)
    with transaction.atomic():
        template, _ = MessageTemplate.objects.update_or_create(
            account=account,
            name=draft.name,
            language=draft.language,
            defaults={
                "project_id": account.project_id,
                "meta_id": meta_id,
                "category": category,
                "status": str(answer.get("status") or TemplateStatus.PENDING),
                "quality_score": "",
                "parameter_format": payload.get("parameter_format") or lint.POSITIONAL,
                "components": lint.stored_components(payload),
                "rejected_reason": "",
                "rejection_detail": "",
                "previous_category": draft.category if category != draft.category else "",
                "extra": {},
                "synced_at": None,
            },
        )
        record_audit(
            project=account.project,
            actor=actor,
            action="whatsapp.template_submitted",
            obj=template,
            changes={"meta_id": meta_id, "status": template.status, "category": category},
        )
    return template
