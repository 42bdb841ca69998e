"""What every send step shares: one outbox row per run and step, refusals as visible skips.

A send step writes its row through its channel's send service (``campaigns.services.send_whatsapp``,
``mail.services.send_email``, ``push.services.send_push``) with ``idempotency_key =
journey:<run>:<step>``, in the engine's transaction with the run's move; the visit row
(``visit.record``) keeps the message and the outcome, so a step called again (a retry after a
crash, a wake) never sends a second time, and a visit row whose detail was lost adopts the row the
key finds instead of writing another.

A refusal (no consent, no address or device, a part that renders empty, the frequency cap) sends
nothing: the visit's ``detail`` says why (``{"outcome": "skipped", "reason": ...}``), the step
counts ``skipped`` and the run goes on by ``next`` (why: ``journeys/steps/whatsapp.py``).

``ChannelTemplateStep`` is the email and push step: a template of the project (by name or public
id) rendered by the channel's service with the run's bindings context; a channel module gives it
the model, the service and the consent words (``campaigns.channel_policy``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.utils.translation import gettext as _

from campaigns import bindings as campaign_bindings
from campaigns import sendpolicy
from campaigns.models import Message
from campaigns.sendpolicy import CAPPED
from campaigns.services import SendRefused
from controlpanel.services import Actor
from subscribers.models import Subscriber

from . import CheckContext, Go, Outcome, Problem, Visit, next_only

# What a strict check renders a template for: every subscriber field filled, so a template fails
# only when it cannot render for anyone (bad Liquid, a subject that is always empty).
SAMPLE_CONTEXT: dict[str, Any] = {
    "subscriber": {name: f"sample {name}" for name in campaign_bindings.SUBSCRIBER_FIELDS}
    | {"name": "Anna Sample", "email": "anna@example.com", "phone": "4915123456789", "language": "en"},
    "tags": {},
    "values": {},
    "event": {},
}


def idempotency_key(visit: Visit) -> str:
    return f"journey:{visit.run.public_id}:{visit.step.id}"


def actor(visit: Visit) -> Actor:
    return Actor(label=f"journey {visit.journey.name}"[:200])


def save(visit: Visit) -> None:
    """The visit's outcome commits with the run's move (the engine's transaction)."""
    if visit.record.pk:
        visit.record.save(update_fields=["detail", "message"])


def entry_event(visit: Visit) -> dict[str, Any]:
    event = (visit.run.context or {}).get("event")
    return event if isinstance(event, dict) else {}


def run_values(visit: Visit) -> dict[str, Any]:
    values = (visit.run.context or {}).get("values") or {}
    return values if isinstance(values, dict) else {}


def render_context(visit: Visit) -> dict[str, Any] | None:
    """What bindings see for this run; None when the subscriber is gone."""
    subscriber = visit.subscriber
    attributes = entry_event(visit).get("attributes") or {}
    contexts = campaign_bindings.contexts_for(
        visit.journey.project,
        [subscriber.pk],
        values={subscriber.pk: run_values(visit)},
        event=attributes if isinstance(attributes, dict) else {},
    )
    return contexts.get(subscriber.pk)


def sent(visit: Visit, message: Message) -> None:
    """The row this visit wrote: kept on the visit, counted ``sent`` once."""
    visit.record.message = message
    visit.record.detail.update(outcome="sent", message=str(message.public_id))
    visit.count("sent")
    save(visit)


def already_sent(visit: Visit) -> bool:
    """The outbox row of this run and step exists although the visit row does not say so (its
    detail was overwritten by a stale copy): adopt it, send and count nothing."""
    message = (
        Message.objects.filter(project_id=visit.journey.project_id, idempotency_key=idempotency_key(visit))
        .only("id", "public_id")
        .first()
    )
    if message is None:
        return False
    visit.record.message = message
    visit.record.detail.update(outcome="sent", message=str(message.public_id))
    save(visit)
    return True


def skip(visit: Visit, reason: str) -> Outcome:
    visit.record.detail.update(outcome="skipped", reason=reason)
    visit.count("skipped")
    save(visit)
    return Go("next")


def capped(visit: Visit) -> bool:
    """The subscriber already got the project's most marketing messages in its cap window, as of
    the visit's clock (a dry run's is simulated).

    Asked before the outbox row is written, so the visit says "skipped: frequency cap" at once;
    the rule is ``sendpolicy``'s (``capped_subscribers``: the counts and the comparison ``decide``
    applies), and ``decide`` still has the last word at send time. The policy is read once per
    engine batch (cached on the batch's project object): one count per send visit.
    """
    subscriber_id = visit.subscriber.pk
    sending_policy = sendpolicy.sending_policy_of(visit.journey.project)
    return subscriber_id in sendpolicy.capped_subscribers(sending_policy, [subscriber_id], visit.now)


def find_by_reference(model: type[models.Model], project: Any, reference: str) -> Any:
    """The project's template of ``model`` with this public id or, failing that, this name."""
    templates = model.objects.for_project(project)  # type: ignore[attr-defined]
    try:
        by_id = templates.filter(public_id=uuid.UUID(reference)).first()
    except ValueError:
        by_id = None
    return by_id or templates.filter(name=reference).first()


@dataclass(frozen=True)
class ChannelTemplateStep:
    """Send the project's template of a channel (email, push); ``{"template": <name or public id>,
    "next": <step>}``. A channel module makes one with its model, service and consent words.

    ``render(template, context) -> content`` raises SendRefused naming the part that failed;
    ``send(**kwargs) -> Message`` is the channel's send service (one outbox row, or SendRefused
    with nothing written); ``refusal(subscriber, marketing)`` is why the channel may not reach the
    subscriber now (``campaigns.channel_policy``'s words), or "". The channel module passes
    functions that look its service up when called, so the service module stays the one place.
    """

    type: str
    label: str
    channel: str
    noun: str  # "email template": how problems and skips name the template
    model: type[models.Model]
    summary_fields: tuple[str, ...]  # the rendered parts a dry run shows
    render: Callable[[Any, dict[str, Any]], dict[str, Any]]
    send: Callable[..., Message]
    refusal: Callable[[Subscriber, bool], str]

    def reachable(self, subscriber: Subscriber) -> bool:
        """The reachability step's test: the channel's consent words for a transactional message."""
        return not self.refusal(subscriber, False)

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        return next_only(data)

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "description": f"{self.label}: the project's {self.noun} (by name or public id), rendered "
            "with the run's bindings; leaves by `next` (skipped with the reason when it may not go).",
            "properties": {
                "id": {"$ref": "#/$defs/stepId"},
                "type": {"const": self.type},
                "ui": {"$ref": "#/$defs/ui"},
                "template": {"type": "string", "minLength": 1, "maxLength": 200},
                "next": {"$ref": "#/$defs/target"},
            },
            "required": ["id", "type", "template"],
            "additionalProperties": False,
        }

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        step = str(data.get("id"))
        reference = data.get("template")
        if not isinstance(reference, str) or not reference.strip():
            return [Problem(step, "template", _("Choose an %(noun)s.") % {"noun": self.noun})]
        if ctx.project is None:
            return []
        reference = reference.strip()
        template = find_by_reference(self.model, ctx.project, reference)
        if template is None:
            return [
                Problem(
                    step,
                    "template",
                    _("There is no %(noun)s %(reference)s in this project.")
                    % {"noun": self.noun, "reference": repr(reference)},
                )
            ]
        if ctx.strict:
            try:
                self.render(template, SAMPLE_CONTEXT)
            except SendRefused as err:
                return [
                    Problem(
                        step,
                        "template",
                        _("%(name)s does not render: %(err)s") % {"name": template.name, "err": err},
                    )
                ]
        return []

    def run(self, visit: Visit) -> Outcome:
        detail = visit.record.detail
        if "outcome" not in detail:  # called again after the send committed: never twice
            self._send(visit)
        return Go("next")

    def _send(self, visit: Visit) -> None:
        project = visit.journey.project
        reference = str(visit.step.data.get("template") or "").strip()
        template = find_by_reference(self.model, project, reference) if reference else None
        if template is None:
            skip(visit, f"The {self.noun} {reference!r} does not exist in this project.")
            return
        visit.record.detail.update(template=template.name)
        context = render_context(visit)
        if context is None:
            skip(visit, "The subscriber was deleted.")
            return
        if visit.dry_run:
            self._dry_run(visit, template, context)
            return
        if already_sent(visit):
            return
        if template.marketing and capped(visit):
            skip(visit, CAPPED)
            return
        try:
            message = self.send(
                project=project,
                subscriber=visit.subscriber,
                template=template,
                actor=actor(visit),
                context=context,
                values=run_values(visit),
                idempotency_key=idempotency_key(visit),
                origin={"journey": str(visit.journey.public_id), "step": visit.step.id},
            )
        except SendRefused as err:
            skip(visit, str(err))
            return
        sent(visit, message)

    def _dry_run(self, visit: Visit, template: Any, context: dict[str, Any]) -> None:
        """What it would send to this subscriber, or why it would not; nothing is written."""
        reason = self.refusal(visit.subscriber, template.marketing)
        if not reason and template.marketing and capped(visit):
            reason = CAPPED
        if reason:
            skip(visit, reason)
            return
        try:
            content = self.render(template, context)
        except SendRefused as err:
            skip(visit, str(err))
            return
        visit.record.detail.update(
            outcome="would_send", **{part: content.get(part, "") for part in self.summary_fields}
        )
        save(visit)
