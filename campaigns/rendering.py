"""What each claimed outbox row of a campaign sends: its language's template, components, body.

Campaign rows are written at launch without content (one INSERT ... SELECT); they are rendered
here, a batch at a time, when a sender has claimed them. Rows sent one by one (composer, API,
confirmations) carry their components already and are not rendered again.

A batch costs a fixed number of queries whatever its size: its campaigns (unless the rows
carry them), which of their snapshotted templates still exist, and per project the
subscribers, the tag definitions and the tag values the bindings read
(``bindings.contexts_for``). The rows must have ``values`` loaded (not deferred). Each
campaign's bindings are compiled once per batch and each language's template prepared once; a
message then costs a dictionary lookup or a small Liquid render per placeholder
(bench/render_bench.py).

The Meta send components are built by the composer's rules (``conversations.build_components``:
named parameters carry their ``parameter_name``, media headers go by ``link``, a link button's
parameter is the end of its address, an authentication template carries its code in the body
and the copy-code button), so a campaign and a single send can never disagree on the shape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.utils.translation import gettext_noop

from subscribers.errors import InvalidInput
from whatsapp import placeholders
from whatsapp.models import MessageTemplate

from .bindings import Renderer, contexts_for
from .conversations import TemplateField, build_components, template_fields
from .languages import language_picker
from .models import Campaign, Message
from .outcomes import Skip


@dataclass(frozen=True)
class Rendered:
    template_id: int | None
    template_name: str
    language: str
    components: list[dict[str, Any]]  # Meta's send components, parameters filled in
    body: str  # the body text as the recipient reads it, for the panel


@dataclass(frozen=True)
class Display:
    """A template as the phone shows it."""

    header: str = ""  # header text
    header_media: str = ""  # image | video | document | location
    header_link: str = ""
    body: str = ""
    footer: str = ""
    buttons: list[str] = field(default_factory=list)


# Meta refuses line breaks, tabs and more than four spaces in a row inside a text parameter
# (the composer refuses them as typed). A binding's output is ours, not typed by a person: an
# address tag with a line break reads fine on one line, so whitespace runs become one space.
_WHITESPACE_RUN = re.compile(r"\s*[\n\r\t]\s*| {5,}")


def _one_line(text: str) -> str:
    if "\n" in text or "\t" in text or "\r" in text or "     " in text:
        return _WHITESPACE_RUN.sub(" ", text)
    return text


def _component(components: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    for component in components or []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == kind:
            return component
    return {}


class TemplatePlan:
    """One language's template (a ``templates_snapshot`` entry), prepared once per batch."""

    def __init__(self, entry: dict[str, Any], header_media_url: str = ""):
        self.entry = entry
        # Unsaved: the composer's field and component builders read only these attributes.
        self.template = MessageTemplate(
            pk=entry.get("id"),
            name=entry.get("name", ""),
            language=entry.get("language", ""),
            category=entry.get("category", ""),
            parameter_format=entry.get("parameter_format") or placeholders.POSITIONAL,
            components=entry.get("components") or [],
        )
        self.fields = template_fields(self.template)
        self.header_media_url = header_media_url
        components = self.template.components
        header = _component(components, "HEADER")
        self.header_format = str(header.get("format") or "TEXT").upper() if header else ""
        self.header_text = str(header.get("text") or "") if self.header_format == "TEXT" else ""
        self.body_text = str(_component(components, "BODY").get("text") or "")
        self.footer = str(_component(components, "FOOTER").get("text") or "")
        buttons = _component(components, "BUTTONS").get("buttons") or []
        self.buttons = [str(b.get("text") or b.get("type") or "") for b in buttons if isinstance(b, dict)]

    def components(self, values: dict[str, dict[str, str]]) -> list[dict[str, Any]] | Skip:
        """Meta's send components for these placeholder values, or why they cannot be sent."""
        fields = []
        for f in self.fields:
            if f.kind in ("image", "video", "document"):
                value = self.header_media_url
            else:
                value = values.get(f.key, {}).get(f.name, "")
                if f.kind == "text":
                    value = _one_line(value)
            fields.append(TemplateField(f.key, f.name, f.kind, f.label, value=value))
        components = build_components(self.template, fields)
        for f in fields:
            if f.error:
                if f.kind in ("image", "video", "document") and not self.header_media_url:
                    return Skip(
                        f"The template's header needs a {f.kind}: the campaign has no header media URL."
                    )
                return Skip(f"{f.label}: {f.error}")
        return components

    def display(self, values: dict[str, dict[str, str]]) -> Display:
        """What the phone shows for these placeholder values."""
        media = self.header_format.lower() if self.header_format and self.header_format != "TEXT" else ""
        return Display(
            header=placeholders.fill(self.header_text, values.get("header", {})),
            header_media=media,
            header_link=self.header_media_url if media in ("image", "video", "document") else "",
            body=placeholders.fill(self.body_text, values.get("body", {})),
            footer=self.footer,
            buttons=list(self.buttons),
        )


class CampaignRendering:
    """A campaign's bindings and templates, compiled once; renders one recipient after another."""

    def __init__(self, campaign: Campaign, templates: dict[str, dict[str, Any]] | None = None):
        self.campaign = campaign
        self.templates = campaign.templates_snapshot if templates is None else templates
        self.problem = ""
        try:
            self.renderer = Renderer(campaign.bindings or {})
        except InvalidInput as err:  # written before validation existed, or edited by hand
            self.renderer = Renderer({})
            self.problem = f"The campaign's bindings are invalid: {err.message}"
        languages = list(campaign.languages or self.templates)
        self.pick = language_picker(languages, campaign.fallback_language)
        self._plans: dict[str, TemplatePlan | None] = {}

    def plan(self, language: str) -> TemplatePlan | None:
        if language not in self._plans:
            entry = self.templates.get(language)
            self._plans[language] = TemplatePlan(entry, self.campaign.header_media_url) if entry else None
        return self._plans[language]

    def values(self, context: dict[str, Any]) -> tuple[TemplatePlan, dict[str, dict[str, str]]] | Skip:
        if self.problem:
            return Skip(self.problem)
        language = self.pick(context["subscriber"].get("language") or "")
        plan = self.plan(language)
        if plan is None:
            return Skip(
                f"Template {self.campaign.template_name or '(none chosen)'} has no approved version in "
                f"{language or 'any language'}."
            )
        values = self.renderer.render(context)
        if isinstance(values, Skip):
            return values
        return plan, values

    def render(self, context: dict[str, Any]) -> Rendered | Skip:
        outcome = self.values(context)
        if isinstance(outcome, Skip):
            return outcome
        plan, values = outcome
        components = plan.components(values)
        if isinstance(components, Skip):
            return components
        entry = plan.entry
        return Rendered(
            template_id=entry.get("id"),
            template_name=entry.get("name", ""),
            language=entry.get("language", ""),
            components=components,
            body=placeholders.fill(plan.body_text, values.get("body", {})),
        )


def render_batch(messages: Sequence[Message]) -> dict[int, Rendered | Skip]:
    """Render campaign rows (``campaign_id`` set), by id. Rows without a campaign are not included."""
    rows = [m for m in messages if m.campaign_id]
    if not rows:
        return {}
    campaigns: dict[int, Campaign] = {}
    for message in rows:
        if Message.campaign.is_cached(message) and message.campaign is not None:
            campaigns[message.campaign_id] = message.campaign
    missing = {m.campaign_id for m in rows} - set(campaigns)
    if missing:
        campaigns.update(Campaign.objects.in_bulk(missing))
    renderings = {pk: CampaignRendering(c) for pk, c in campaigns.items()}
    # The snapshot outlives its template: a deleted one is sent as snapshotted, without a link
    # to the row (Message.template would point nowhere).
    snapshot_ids = {
        entry.get("id") for c in campaigns.values() for entry in (c.templates_snapshot or {}).values()
    } - {None}
    existing = set(MessageTemplate.objects.filter(pk__in=snapshot_ids).values_list("pk", flat=True))
    results: dict[int, Rendered | Skip] = {}
    by_project: dict[int, list[Message]] = {}
    for message in rows:
        by_project.setdefault(message.project_id, []).append(message)
    for project_id, project_rows in by_project.items():
        tag_names: set[str] | None = set()
        for campaign_id in {m.campaign_id for m in project_rows}:
            if campaign_id in renderings:
                used = renderings[campaign_id].renderer.tag_names
                tag_names = None if used is None or tag_names is None else tag_names | used
        # The sender loaded the rows with their subscribers: read those, not the table again.
        loaded = (
            {m.subscriber_id: m.subscriber for m in project_rows}
            if all(Message.subscriber.is_cached(m) for m in project_rows)
            else None
        )
        contexts = contexts_for(
            project_id, [m.subscriber_id for m in project_rows], tag_names=tag_names, loaded=loaded
        )
        for message in project_rows:
            rendering = renderings.get(message.campaign_id)
            context = contexts.get(message.subscriber_id)
            if rendering is None:
                results[message.pk] = Skip(gettext_noop("The campaign was deleted."))
            elif context is None:
                results[message.pk] = Skip(gettext_noop("The subscriber was deleted."))
            else:
                # A subscriber may be in two campaigns of one batch, each with its own values.
                outcome = rendering.render({**context, "values": message.values or {}})
                if isinstance(outcome, Rendered) and outcome.template_id not in existing:
                    outcome = replace(outcome, template_id=None)
                results[message.pk] = outcome
    return results
