"""The email step: ``{"type": "send_email", "template": "<email template name or public id>"}``.

The row goes through ``mail.services.send_email`` (consent, the address, rendering with the run's
bindings context, the outbox row with ``origin``), once per run and step (``outbox``). The email
sender then sends it with tracking; opens, clicks and bounces come back as events naming the
message, the journey and this step (``campaigns.channel_events``), which the feed consumer counts
on this step and ``wait_event``'s ``of_step`` matches.
"""

from __future__ import annotations

from typing import Any

from campaigns import channel_policy
from campaigns.models import Message
from mail import services as mail_services
from mail.models import EmailTemplate
from subscribers.models import Subscriber

from . import register
from .flow import register_reachability
from .outbox import ChannelTemplateStep


class SendEmailStep(ChannelTemplateStep):
    type = "send_email"
    label = "Send email"
    channel = "email"
    noun = "email template"
    model = EmailTemplate
    summary_fields = ("subject", "preheader", "text")

    def render(self, template: Any, context: dict[str, Any]) -> dict[str, Any]:
        return mail_services.render_email(template, context)

    def send(self, **kwargs: Any) -> Message:
        return mail_services.send_email(**kwargs)

    def refusal(self, subscriber: Subscriber, *, marketing: bool) -> str:
        return channel_policy.email_refusal(subscriber, marketing=marketing)


SEND_EMAIL = register(SendEmailStep())
# Email is reachable: an address that did not bounce, not opted out.
register_reachability("email", SEND_EMAIL.reachable)
