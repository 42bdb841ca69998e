"""The /api/v1/templates endpoints: the project's synced WhatsApp templates, and a sync on demand.

Templates are Meta's: they are created and approved in Meta (or in the panel, which submits them
there) and copied here by the sync (every few minutes, and ``POST /templates/sync``). Every lookup
starts from the API key's project.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from django.db.models import QuerySet
from ninja import Field, Query, Router, Schema

from controlpanel.models import Project

from . import templates_lint as lint
from .errors import GraphError
from .models import MessageTemplate, TemplateCategory, TemplateStatus, WhatsAppAccount
from .services import sync_templates

router = Router(tags=["templates"])

# The panel's template list hides these unless asked for; so does the API.
HIDDEN_BY_DEFAULT = (TemplateStatus.DELETED,)


class PlaceholderOut(Schema):
    component: str = Field(
        description='Where the value goes: "header", "body" or "button:<index>". With `name`, the key '
        "of a binding: `bindings[component][name]` in `POST /messages`.",
        examples=["body"],
    )
    name: str = Field(
        description='The parameter: "1", "2" (positional), "first_name" (named), or the media kind of '
        'a header ("image", "video", "document", "location").',
        examples=["1"],
    )
    label: str = Field(description="For people.", examples=["Body"])
    example: str = Field(description="Meta's sample value, if the template has one.", examples=["Mark"])


class TemplateOut(Schema):
    id: UUID = Field(description="The template's id here (not Meta's).")
    meta_id: str = Field(description="Meta's template id.")
    name: str = Field(examples=["order_update"])
    language: str = Field(examples=["en_US"])
    status: str = Field(
        description="Meta's review status; only APPROVED templates can be sent.", examples=["APPROVED"]
    )
    category: str = Field(description="MARKETING, UTILITY or AUTHENTICATION.", examples=["UTILITY"])
    parameter_format: str = Field(description="POSITIONAL ({{1}}) or NAMED ({{first_name}}).")
    quality_score: str = Field(description="GREEN, YELLOW, RED or UNKNOWN; empty when Meta gave none.")
    rejected_reason: str
    phone_number_id: str = Field(description="The sending number (WhatsApp account) the template belongs to.")
    components: list[dict[str, Any]] = Field(description="The template as Meta stores it.")
    placeholders: list[PlaceholderOut] = Field(
        description="What a send must fill in, in order; `[]` for a template without parameters."
    )
    synced_at: datetime | None
    updated_at: datetime


class TemplateFilters(Schema):
    status: str | None = Field(
        None,
        description="Only templates in this status (e.g. APPROVED). Without it, all but DELETED ones.",
        json_schema_extra={"maxLength": 20},
    )
    category: Literal["MARKETING", "UTILITY", "AUTHENTICATION"] | None = None
    name: str | None = Field(None, description="Exact template name.", json_schema_extra={"maxLength": 512})
    language: str | None = Field(None, description="Exact language code, e.g. en_US.")


class SyncedAccountOut(Schema):
    phone_number_id: str
    ok: bool = Field(description="False when Meta could not be asked (see `error`); nothing changed then.")
    added: list[str] = Field(description='"name (language)" of each new template.')
    updated: list[str] = Field(description="Templates whose status, category or content changed.")
    removed: list[str] = Field(description="Templates Meta no longer lists (now status DELETED).")
    unchanged: int
    error: str | None = Field(None, description="Meta's error and what to do, when `ok` is false.")


class SyncOut(Schema):
    accounts: list[SyncedAccountOut] = Field(
        description="One result per connected WhatsApp account; empty when none is connected."
    )


def template_out(template: MessageTemplate) -> dict[str, Any]:
    return {
        "id": template.public_id,
        "meta_id": template.meta_id,
        "name": template.name,
        "language": template.language,
        "status": template.status,
        "category": template.category,
        "parameter_format": template.parameter_format,
        "quality_score": template.quality_score,
        "rejected_reason": template.rejected_reason,
        "phone_number_id": template.account.phone_number_id,
        "components": template.components if isinstance(template.components, list) else [],
        "placeholders": [
            {"component": p.component, "name": p.name, "label": p.label, "example": p.example}
            # The definition campaigns.policy.template_parameters groups by component (what the send
            # path checks), read here directly: this app does not import the campaigns app.
            for p in lint.template_parameters(
                template.components or [],
                category=template.category,
                parameter_format=template.parameter_format,
            )
        ],
        "synced_at": template.synced_at,
        "updated_at": template.updated_at,
    }


def templates_of(project: Project, filters: TemplateFilters) -> QuerySet[MessageTemplate]:
    templates = MessageTemplate.objects.for_project(project).select_related("account")
    if filters.status:
        templates = templates.filter(status=filters.status.strip().upper())
    else:
        templates = templates.exclude(status__in=HIDDEN_BY_DEFAULT)
    if filters.category:
        templates = templates.filter(category=TemplateCategory(filters.category))
    if filters.name:
        templates = templates.filter(name=filters.name.strip())
    if filters.language:
        templates = templates.filter(language=filters.language.strip())
    return templates.order_by("name", "language", "account__phone_number_id")


@router.get(
    "",
    response={200: list[TemplateOut]},
    summary="List the synced WhatsApp templates with their placeholders",
)
def list_templates(request, filters: Query[TemplateFilters]):
    """The project's templates as last synced from Meta, ordered by name and language, with the
    placeholders a send must fill (`bindings` or `components` in `POST /messages`). Only `APPROVED`
    templates can be sent. Call `POST /templates/sync` first for changes made at Meta a moment ago.
    """
    return [template_out(t) for t in templates_of(request.project, filters)]


@router.post("/sync", response={200: SyncOut}, summary="Sync the templates from Meta now")
def sync(request):
    """Ask Meta for every template of each connected WhatsApp account and store what changed
    (the periodic sync does the same every few minutes). Idempotent: a second sync right after the
    first reports no changes. An account Meta refuses (an expired token, say) is reported with
    `ok: false` and its error; the other accounts are synced all the same.
    """
    results = []
    for account in WhatsAppAccount.objects.for_project(request.project).order_by("created_at"):
        try:
            result = sync_templates(account=account)
        except GraphError as exc:
            results.append(
                {
                    "phone_number_id": account.phone_number_id,
                    "ok": False,
                    "added": [],
                    "updated": [],
                    "removed": [],
                    "unchanged": 0,
                    "error": f"{exc.explanation} ({exc.describe()})",
                }
            )
            continue
        results.append(
            {
                "phone_number_id": account.phone_number_id,
                "ok": True,
                "added": result.added,
                "updated": result.updated,
                "removed": result.removed,
                "unchanged": result.unchanged,
            }
        )
    return {"accounts": results}
