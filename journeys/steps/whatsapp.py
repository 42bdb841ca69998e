"""WhatsApp steps: send a template (a branch per quick-reply button), send a text (24 h window).

Both send through the campaigns' outbox (``campaigns.services.send_whatsapp``), so consent,
template approval, the sender's rate limit, the frequency cap and quiet hours are the ones every
campaign obeys: the sender asks ``sendpolicy.decide`` for every row it claims, journey rows
included (a marketing template held by quiet hours goes when they end, never dropped).

Once per run and step: the outbox row carries ``idempotency_key = journey:<run>:<step>`` and is
written in the engine's transaction with the run's move; the visit row (``visit.record``) keeps
the message and the outcome, so a step called again (a retry after a crash, a wake) never sends
a second time.

A refusal (opted out, no opt-in for marketing, template not approved, a binding empty for this
subscriber, frequency cap reached) sends nothing: the visit's ``detail`` says why
(``{"outcome": "skipped", "reason": ...}``), the step counts ``skipped`` and the run goes on by
``next``. The marketer sees the reason in the run's timeline and the skipped count on the step;
a run that stopped at a refusal would hide the rest of the journey (a reminder, a goal) for a
reason that is often temporary. Journeys that must not go on add a reachability split first.

Rendering reuses the campaigns' bindings (``campaigns.bindings``: the same sandbox, CPU budget and
names: ``subscriber``, ``tags``, ``values`` from the API start, ``event`` = the attributes of the
event that started the run) and the campaigns' template plan (``campaigns.rendering``), so a
journey and a campaign build Meta's components one way.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from liquid.exceptions import LiquidError

from campaigns import bindings as campaign_bindings
from campaigns import policy
from campaigns.drafts import snapshot_entry
from campaigns.languages import language_picker, normalize
from campaigns.models import Message
from campaigns.outcomes import Skip
from campaigns.rendering import TemplatePlan
from campaigns.sendpolicy import CAPPED
from campaigns.services import SendRefused, send_whatsapp
from controlpanel.wording import mid_sentence
from subscribers import window
from subscribers.errors import InvalidInput
from whatsapp.models import MessageTemplate, TemplateCategory, TemplateStatus

from ..definition import parse_duration
from ..keywords import fold
from . import CheckContext, Go, Outcome, Problem, Visit, Wait, register
from .outbox import (
    actor,
    already_sent,
    capped,
    entry_event,
    idempotency_key,
    render_context,
    run_values,
    save,
    sent,
    skip,
)

# What a template step with buttons waits for: a reply, or the failure of its own message (a
# message that never arrived gets no reply: the run takes the no-button path at once, not after
# the timeout).
BUTTON_EVENTS = ("WhatsAppReceived", "WhatsAppButtonClicked", "WhatsAppFailed")
DEFAULT_BUTTON_TIMEOUT = "P1D"
MAX_TEXT = 4_096
MAX_TEXTS = 20  # translations of one text step
LANGUAGE_CODE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
RECEIVED = "WhatsAppReceived"


# --- whatsapp_template ---------------------------------------------------------------------------


def shape_bindings(raw: Any) -> dict[str, dict[str, Any]]:
    """Bindings as campaigns keep them (``{"body": {"1": ...}}``); the flat form of the journey JSON
    (``{"body.1": ..., "button:0.1": ...}``, the composer's input names) is accepted too."""
    if isinstance(raw, dict) and raw and all(isinstance(v, str) for v in raw.values()):
        nested: dict[str, dict[str, Any]] = {}
        for key, source in raw.items():
            component, _sep, name = str(key).partition(".")
            nested.setdefault(component, {})[name or "1"] = source
        return nested
    return campaign_bindings.shape_bindings(raw)


@lru_cache(maxsize=256)
def _renderer(bindings_json: str) -> campaign_bindings.Renderer:
    # Versions never change, so a step's bindings are compiled once per process.
    return campaign_bindings.Renderer(json.loads(bindings_json))


def quick_replies(template: MessageTemplate) -> list[str]:
    """The texts of the template's quick-reply buttons, in order."""
    for component in template.components or []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == "BUTTONS":
            return [
                str(b.get("text") or "")
                for b in component.get("buttons") or []
                if isinstance(b, dict) and str(b.get("type", "")).upper() == "QUICK_REPLY"
            ]
    return []


def find_template(project, name: str, language: str) -> MessageTemplate | None:
    """The project's template by name and language (the oldest account's, when several have it)."""
    return (
        MessageTemplate.objects.for_project(project)
        .filter(name=name, language=language)
        .order_by("account__created_at", "pk")
        .first()
    )


def _own_message(visit: Visit) -> dict[str, Any] | None:
    """The wamid and public id of the message this visit's step sent, None before it sent one:
    what a failure or a button press is matched against."""
    if not visit.record.message_id:
        return None
    return Message.objects.filter(pk=visit.record.message_id).values("wamid", "public_id").first()


class WhatsAppTemplateStep:
    type = "whatsapp_template"
    label = gettext_lazy("Send WhatsApp template")
    channel = "whatsapp"

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        outlets: dict[str, str | None] = {"next": data.get("next")}
        buttons = data.get("buttons")
        if isinstance(buttons, dict):
            for text, target in buttons.items():
                outlets[f"button:{text}"] = target if isinstance(target, str) else None
        return outlets

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        step = str(data.get("id"))
        problems: list[Problem] = []
        template_ref = data.get("template")
        name = language = ""
        if not isinstance(template_ref, dict):
            problems.append(Problem(step, "template", _("Choose a template: {name, language}.")))
        else:
            name, language = template_ref.get("name"), template_ref.get("language")
            if not isinstance(name, str) or not name.strip():
                problems.append(Problem(step, "template.name", _("Choose a template.")))
                name = ""
            if not isinstance(language, str) or not language.strip():
                problems.append(Problem(step, "template.language", _("Choose the template's language.")))
                language = ""
        try:
            bindings = shape_bindings(data.get("bindings"))
            campaign_bindings.compile_bindings(bindings)
        except InvalidInput as err:
            problems.append(Problem(step, err.field or "bindings", err.message))
            bindings = None
        media = data.get("header_media_url")
        if media not in (None, "") and not (isinstance(media, str) and media.startswith("https://")):
            problems.append(
                Problem(step, "header_media_url", _("A public https:// link to the header's file."))
            )
        buttons = data.get("buttons")
        if buttons is not None and not (
            isinstance(buttons, dict)
            and all(isinstance(k, str) and k for k in buttons)
            and all(v is None or isinstance(v, str) for v in buttons.values())
        ):
            problems.append(
                Problem(step, "buttons", _('Buttons map a button text to a step: {"Yes": "thanks"}.'))
            )
            buttons = None
        if buttons and parse_duration(data.get("button_timeout", DEFAULT_BUTTON_TIMEOUT)) is None:
            problems.append(Problem(step, "button_timeout", _("An ISO 8601 duration such as P1D.")))
        if ctx.project is None or not name or not language:
            return problems
        template = find_template(ctx.project, name, language)
        if template is None:
            # A draft may name a template that is not synced yet; activation needs it.
            if ctx.strict:
                problems.append(
                    Problem(
                        step,
                        "template.name",
                        _("There is no template %(name)s (%(language)s).")
                        % {"name": name, "language": language},
                    )
                )
            return problems
        if ctx.strict and template.status != TemplateStatus.APPROVED:
            # The label, not Meta's code: the sentence is translated (German: „Pausiert“).
            status = mid_sentence(TemplateStatus.label_of(template.status))
            problems.append(
                Problem(
                    step,
                    "template",
                    _("Template %(name)s (%(language)s) is %(value)s.")
                    % {"name": name, "language": language, "value": status},
                )
            )
        if bindings is not None:
            try:
                campaign_bindings.check_bindings(
                    bindings, policy.template_parameters(template), partial=not ctx.strict
                )
            except InvalidInput as err:
                problems.append(Problem(step, err.field or "bindings", err.message))
        if buttons:
            replies = quick_replies(template)
            for text in buttons:
                if text not in replies:
                    known = ", ".join(replies) or "none"
                    problems.append(
                        Problem(
                            step,
                            f"buttons.{text}",
                            _("%(name)s has no quick-reply button %(text)s (its quick replies: %(known)s).")
                            % {"name": name, "text": repr(text), "known": known},
                        )
                    )
        return problems

    def run(self, visit: Visit) -> Outcome:
        data = visit.step.data
        detail = visit.record.detail
        buttons = data.get("buttons") if isinstance(data.get("buttons"), dict) else {}
        if "outcome" not in detail:
            self._send(visit)
            if detail["outcome"] == "skipped" or not buttons:
                return Go("next")
            timeout = parse_duration(data.get("button_timeout", DEFAULT_BUTTON_TIMEOUT)) or timedelta(days=1)
            detail["buttons_until"] = (visit.now + timeout).isoformat()
            save(visit)
            return Wait(visit.now + timeout, BUTTON_EVENTS)
        # Called again: woken by an event or the timer, or a retry after the send committed.
        if detail["outcome"] == "skipped" or not buttons:
            return Go("next")
        until = parse_datetime(detail.get("buttons_until") or "") or visit.now
        if visit.event is not None and visit.event.get("name") == "WhatsAppFailed":
            if self._failed(visit, visit.event):
                detail["failed"] = True
                save(visit)
                return Go("next")
        elif visit.event is not None:
            pressed = self._pressed(visit, visit.event, list(buttons))
            if pressed is not None:
                detail["button"] = pressed
                save(visit)
                return Go(f"button:{pressed}")
        if visit.now >= until:
            return Go("next")
        return Wait(until, BUTTON_EVENTS)

    def _failed(self, visit: Visit, event: dict[str, Any]) -> bool:
        """Whether this failure event is about this step's own message (by wamid from a status
        webhook, by public id when Meta refused the POST itself); a dry run's never fails."""
        if visit.dry_run:
            return False
        sent = _own_message(visit)
        if sent is None:
            return False
        attributes = event.get("attributes") or {}
        by_wamid = bool(sent["wamid"]) and attributes.get("message_id") == sent["wamid"]
        return by_wamid or attributes.get("message") == str(sent["public_id"])

    def _pressed(self, visit: Visit, event: dict[str, Any], buttons: list[str]) -> str | None:
        """The configured button this event presses on this step's message, if it does."""
        attributes = event.get("attributes") or {}
        answered = str(attributes.get("context_message_id") or "")
        if event.get("name") == "WhatsAppButtonClicked":
            answered = answered or str(attributes.get("message_id") or "")
        if not visit.dry_run:
            # Only a reply to this step's message: a button of an older message (another journey,
            # a campaign) must not move this run.
            sent = _own_message(visit)
            if sent is None or not sent["wamid"] or answered != sent["wamid"]:
                return None
        typed = [fold(str(attributes.get(k) or "")) for k in ("button_text", "button_payload")]
        for text in buttons:
            if fold(text) and fold(text) in typed:
                return text
        return None

    def _send(self, visit: Visit) -> None:
        data = visit.step.data
        detail = visit.record.detail
        ref = data.get("template") or {}
        name, language = str(ref.get("name") or ""), str(ref.get("language") or "")
        project = visit.journey.project
        template = find_template(project, name, language)
        if template is None:
            skip(visit, f"Template {name} ({language}) does not exist in this project.")
            return
        context = render_context(visit)
        if context is None:
            skip(visit, "The subscriber was deleted.")
            return
        try:
            renderer = _renderer(json.dumps(shape_bindings(data.get("bindings")), sort_keys=True))
        except InvalidInput as err:
            skip(visit, f"The step's bindings are invalid: {err.message}")
            return
        values = renderer.render(context)
        if isinstance(values, Skip):
            skip(visit, values.reason)
            return
        plan = TemplatePlan(snapshot_entry(template), str(data.get("header_media_url") or ""))
        components = plan.components(values)
        if isinstance(components, Skip):
            skip(visit, components.reason)
            return
        body = plan.display(values).body
        detail.update(template=template.name, language=template.language, body=body)
        if not visit.dry_run and already_sent(visit):
            return
        # A dry run asks too, on its simulated clock: it shows the skip a real run would get.
        if template.category == TemplateCategory.MARKETING and capped(visit):
            skip(visit, CAPPED)
            return
        if visit.dry_run:
            detail.update(outcome="would_send", components=components)
            save(visit)
            return
        try:
            message = send_whatsapp(
                project=project,
                subscriber=visit.subscriber,
                actor=actor(visit),
                template=template,
                components=components,
                idempotency_key=idempotency_key(visit),
                values=run_values(visit),
            )
        except SendRefused as err:
            skip(visit, str(err))
            return
        sent(visit, message)


# --- whatsapp_text -------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _text_template(source: str):
    return campaign_bindings.ENV.from_string(source)


def _text_problems(source: Any) -> str:
    if not isinstance(source, str) or not source.strip():
        return _("Write the message.")
    if len(source) > MAX_TEXT:
        return _("A WhatsApp text may have at most %(max)s characters.") % {"max": f"{MAX_TEXT:,}"}
    try:
        template = _text_template(source)
    except LiquidError as err:
        return _("The text is not valid Liquid: %(error)s") % {"error": str(err).splitlines()[0]}
    for root in template.analyze(include_partials=False).globals:
        if root not in campaign_bindings.ROOTS:
            return _(
                "The text uses “%(name)s”, which does not exist: use subscriber, tags, values or event."
            ) % {"name": root}
    return ""


def texts_problems(step: str, texts: Any) -> list[Problem]:
    """The translations of a text (``{"de": "...", "en": "..."}``): language codes as keys, each a
    text as ``text`` must be (Liquid, length)."""
    if texts is None:
        return []
    if not isinstance(texts, dict):
        return [Problem(step, "texts", _('Translations are {"de": "...", "en": "..."}.'))]
    if len(texts) > MAX_TEXTS:
        return [Problem(step, "texts", _("At most %(max)s translations.") % {"max": MAX_TEXTS})]
    problems, seen = [], set()
    for code, source in texts.items():
        where = f"texts.{str(code)[:16]}"
        if not isinstance(code, str) or not LANGUAGE_CODE.match(code):
            problems.append(
                Problem(
                    step,
                    where,
                    _("“%(code)s” is not a language code (e.g. de, en or pt_BR).") % {"code": str(code)[:16]},
                )
            )
            continue
        if normalize(code) in seen:
            problems.append(Problem(step, where, _("Two translations for %(code)s.") % {"code": code}))
            continue
        seen.add(normalize(code))
        problem = _text_problems(source)
        if problem:
            problems.append(Problem(step, where, problem))
    return problems


def pick_text(text: str, texts: Any, language: str) -> str:
    """The subscriber's text: the translation for their Language tag (exact, then the base
    language, as campaigns pick a template language), else ``text``."""
    if not isinstance(texts, dict) or not texts or not normalize(language):
        return text
    missing = "\x00"
    code = language_picker([c for c in texts if isinstance(c, str)], missing)(language)
    found = texts.get(code) if code != missing else None
    return found if isinstance(found, str) and found.strip() else text


def render_text(source: str, context: dict[str, Any]) -> str | Skip:
    """The text for one subscriber (bindings' sandbox, output limit and CPU budget), or why not."""
    try:
        text = _text_template(source).render(**context).strip()
    except LiquidError as err:
        return Skip(f"The text could not be rendered for this subscriber: {str(err).splitlines()[0]}")
    if not text:
        return Skip("The text is empty for this subscriber.")
    if len(text) > MAX_TEXT:
        return Skip(f"The text is longer than {MAX_TEXT:,} characters for this subscriber.")
    return text


def _window_open(visit: Visit) -> bool:
    """Inside the 24 h window (``subscribers.window``, the rule the send policy applies).

    A keyword reply is sent because of the inbound message that started the run: the inbound
    processing writes that event and ``last_inbound_at`` in one transaction, and the feed hands
    the event out only after it committed, so the window is open by the time the run gets here.
    The subscriber of the visit may have been loaded before that commit: when it looks closed
    and the run was started by an inbound message, ``last_inbound_at`` is read again. A dry run
    has no real inbound message: its entry event, fired by hand on the simulated clock, counts
    as one.
    """
    subscriber = visit.subscriber
    if window.is_open(subscriber.last_inbound_at, visit.now):
        return True
    event = entry_event(visit)
    if event.get("name") != RECEIVED:
        return False
    if visit.dry_run:
        occurred = event.get("occurred_at")
        at = parse_datetime(occurred) if isinstance(occurred, str) else occurred
        return isinstance(at, datetime) and window.is_open(at, visit.now)
    subscriber.refresh_from_db(fields=["last_inbound_at"])
    return window.is_open(subscriber.last_inbound_at, visit.now)


class WhatsAppTextStep:
    type = "whatsapp_text"
    label = gettext_lazy("Send WhatsApp text")
    channel = "whatsapp"

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        return {"next": data.get("next"), "outside_window": data.get("outside_window")}

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        step = str(data.get("id"))
        problem = _text_problems(data.get("text"))
        problems = [Problem(step, "text", problem)] if problem else []
        return problems + texts_problems(step, data.get("texts"))

    def run(self, visit: Visit) -> Outcome:
        detail = visit.record.detail
        if "outcome" in detail:  # called again after the send committed: never twice
            return Go("outside_window" if detail["outcome"] == "outside_window" else "next")
        if not _window_open(visit):
            detail.update(outcome="outside_window")
            save(visit)
            return Go("outside_window")
        context = render_context(visit)
        if context is None:
            return skip(visit, "The subscriber was deleted.")
        data = visit.step.data
        source = pick_text(str(data.get("text") or ""), data.get("texts"), visit.subscriber.language)
        text = render_text(source, context)
        if isinstance(text, Skip):
            return skip(visit, text.reason)
        detail.update(body=text)
        if visit.dry_run:
            detail.update(outcome="would_send")
            save(visit)
            return Go("next")
        if already_sent(visit):
            return Go("next")
        try:
            message = send_whatsapp(
                project=visit.journey.project,
                subscriber=visit.subscriber,
                actor=actor(visit),
                text=text,
                idempotency_key=idempotency_key(visit),
            )
        except SendRefused as err:
            if not policy.window_open(visit.subscriber):  # closed between our look and the send
                detail.update(outcome="outside_window")
                save(visit)
                return Go("outside_window")
            return skip(visit, str(err))
        sent(visit, message)
        return Go("next")


register(WhatsAppTemplateStep())
register(WhatsAppTextStep())
