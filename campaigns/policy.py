"""Who may be sent what, checked when a message is created and again when it is sent."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone

from subscribers.models import ConsentState, Subscriber
from whatsapp.models import MessageTemplate, TemplateCategory, TemplateStatus

SERVICE_WINDOW = timedelta(hours=24)
_POSITIONAL = re.compile(r"\{\{\s*(\d+)\s*\}\}")
_NAMED = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


def window_open(subscriber: Subscriber, now=None) -> bool:
    """Inside the 24-hour customer service window opened by the person's last message."""
    now = now or timezone.now()
    return subscriber.last_inbound_at is not None and subscriber.last_inbound_at > now - SERVICE_WINDOW


def window_closes_at(subscriber: Subscriber):
    return subscriber.last_inbound_at + SERVICE_WINDOW if subscriber.last_inbound_at else None


def refusal_for_text(subscriber: Subscriber) -> str:
    if not (subscriber.phone or subscriber.bsuid):
        return "The subscriber has no WhatsApp identity."
    if subscriber.whatsapp_consent == ConsentState.OPTED_OUT and not (
        # Writing to us after opting out asks for an answer: replies to that are fine.
        subscriber.last_inbound_at
        and subscriber.whatsapp_consent_at
        and subscriber.last_inbound_at >= subscriber.whatsapp_consent_at  # incl. the STOP itself
    ):
        return "The subscriber opted out of WhatsApp messages and has not written since."
    if not window_open(subscriber):
        return (
            "Free-form text may only be sent within 24 hours of the person's last message; "
            "send an approved template instead."
        )
    return ""


def refusal_for_template(subscriber: Subscriber, template: MessageTemplate) -> str:
    if template.status != TemplateStatus.APPROVED:
        return f"Template {template.name} ({template.language}) is {template.status.lower()}, not approved."
    if (
        template.category == TemplateCategory.MARKETING
        and subscriber.whatsapp_consent != ConsentState.OPTED_IN
    ):
        return "Marketing needs WhatsApp opt-in, and this subscriber has not opted in."
    if subscriber.whatsapp_consent == ConsentState.OPTED_OUT:
        return "The subscriber opted out of WhatsApp messages."
    if not subscriber.phone and template.category == TemplateCategory.AUTHENTICATION:
        return "Authentication templates need a phone number, not a business-scoped user id."
    return ""


def template_parameters(template: MessageTemplate) -> dict[str, list[str]]:
    """The parameters each component of the template expects, e.g. {"body": ["1", "2"], "button:0": ["1"]}."""
    expected: dict[str, list[str]] = {}
    pattern = _NAMED if template.parameter_format == "NAMED" else _POSITIONAL
    for component in template.components or []:
        ctype = str(component.get("type", "")).lower()
        if ctype in ("header", "body") and component.get("format", "TEXT") == "TEXT":
            names = pattern.findall(component.get("text") or "")
            if names:
                expected[ctype] = list(dict.fromkeys(names))
        elif ctype == "header" and component.get("format") in ("IMAGE", "VIDEO", "DOCUMENT", "LOCATION"):
            expected["header"] = [str(component["format"]).lower()]
        elif ctype == "buttons":
            for index, button in enumerate(component.get("buttons") or []):
                if (str(button.get("type")).upper() == "URL" and pattern.search(button.get("url") or "")) or (
                    str(button.get("type")).upper() in ("OTP", "COPY_CODE")
                    and template.category == "AUTHENTICATION"
                ):
                    expected[f"button:{index}"] = ["1"]
    return expected


def parameter_mismatch(template: MessageTemplate, components: list[dict]) -> str:
    """Why the given components do not fit the template (Meta would answer 132000), or ""."""
    expected = template_parameters(template)
    given: dict[str, int] = {}
    for component in components or []:
        ctype = str(component.get("type", "")).lower()
        key = f"button:{int(component.get('index', 0))}" if ctype == "button" else ctype
        given[key] = len(component.get("parameters") or [])
    problems = []
    for key in sorted(set(expected) | set(given)):
        want, got = len(expected.get(key, [])), given.get(key, 0)
        if want != got:
            problems.append(f"{key} needs {want} parameter{'s' if want != 1 else ''}, got {got}")
    if problems:
        return f"Template {template.name} does not fit: " + "; ".join(problems) + "."
    return ""
