"""Who may be sent what, checked when a message is created and again when it is sent."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.translation import gettext, gettext_noop, ngettext

from subscribers import window
from subscribers.models import ConsentState, Subscriber
from whatsapp import templates_lint as lint
from whatsapp.models import MessageTemplate, TemplateCategory, TemplateStatus


def window_open(subscriber: Subscriber, now: datetime | None = None) -> bool:
    """Inside the 24-hour customer service window opened by the person's last message."""
    return window.is_open(subscriber.last_inbound_at, now or timezone.now())


def window_closes_at(subscriber: Subscriber) -> datetime | None:
    return window.closes_at(subscriber.last_inbound_at)


def for_people(reason: str) -> str:
    """A stored reason (English, as rows keep it) in the reader's language, when the catalog knows it."""
    return gettext(reason) if reason else ""


# Refusals are returned in English (the send path stores them on skipped rows, which group by
# them); ``for_people`` translates them where a page or the API shows one.
def refusal_for_text(subscriber: Subscriber) -> str:
    if not (subscriber.phone or subscriber.bsuid):
        return gettext_noop("The subscriber has no WhatsApp identity.")
    if subscriber.whatsapp_consent == ConsentState.OPTED_OUT and not (
        # Writing to us after opting out asks for an answer: replies to that are fine.
        subscriber.last_inbound_at
        and subscriber.whatsapp_consent_at
        and subscriber.last_inbound_at >= subscriber.whatsapp_consent_at  # incl. the STOP itself
    ):
        return gettext_noop("The subscriber opted out of WhatsApp messages and has not written since.")
    if not window_open(subscriber):
        return gettext_noop(
            "Free-form text may only be sent within 24 hours of the person's last message; "
            "send an approved template instead."
        )
    return ""


def refusal_for_template(subscriber: Subscriber, template: MessageTemplate) -> str:
    if template.status != TemplateStatus.APPROVED:
        return gettext("Template %(name)s (%(language)s) is %(status)s, not approved.") % {
            "name": template.name,
            "language": template.language,
            "status": template.status.lower(),
        }
    return consent_refusal(subscriber, template.category)


def consent_refusal(subscriber: Subscriber, category: str) -> str:
    """Why this subscriber may not get a template of ``category`` now, or ""."""
    if category == TemplateCategory.MARKETING and subscriber.whatsapp_consent != ConsentState.OPTED_IN:
        return gettext_noop("Marketing needs WhatsApp opt-in, and this subscriber has not opted in.")
    if subscriber.whatsapp_consent == ConsentState.OPTED_OUT:
        return gettext_noop("The subscriber opted out of WhatsApp messages.")
    if not subscriber.phone and category == TemplateCategory.AUTHENTICATION:
        return gettext_noop("Authentication templates need a phone number, not a business-scoped user id.")
    return ""


def template_parameters(template: MessageTemplate) -> dict[str, list[str]]:
    """The parameters each component of the template expects, e.g. {"body": ["1", "2"], "button:0": ["1"]}.

    Read by the template linter's definition (what the template page lists), so the page, the
    composer's inputs and this check never disagree.
    """
    expected: dict[str, list[str]] = {}
    for parameter in lint.template_parameters(
        template.components or [], category=template.category, parameter_format=template.parameter_format
    ):
        expected.setdefault(parameter.component, []).append(parameter.name)
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
            problems.append(
                ngettext(
                    "%(part)s needs %(want)s parameter, got %(got)s",
                    "%(part)s needs %(want)s parameters, got %(got)s",
                    want,
                )
                % {"part": key, "want": want, "got": got}
            )
    if problems:
        return gettext("Template %(name)s does not fit: %(problems)s.") % {
            "name": template.name,
            "problems": "; ".join(problems),
        }
    return ""
