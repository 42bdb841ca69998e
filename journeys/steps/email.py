"""The email step: ``{"type": "send_email", "template": "<email template name or public id>"}``.

The row goes through ``mail.services.send_email`` (consent, the address, rendering with the run's
bindings context, the outbox row with ``origin``), once per run and step (``outbox``). The email
sender then sends it with tracking; opens, clicks and bounces come back as events naming the
message, the journey and this step (``campaigns.channel_events``), which the feed consumer counts
on this step and ``wait_event``'s ``of_step`` matches.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy

from campaigns import channel_policy
from mail import services
from mail.models import EmailTemplate

from . import register
from .flow import register_reachability
from .outbox import ChannelTemplateStep

SEND_EMAIL = register(
    ChannelTemplateStep(
        type="send_email",
        label=gettext_lazy("Send email"),
        channel="email",
        noun=gettext_lazy("email template"),
        model=EmailTemplate,
        summary_fields=("subject", "preheader", "text"),
        render=lambda template, context: services.render_email(template, context),
        send=lambda **kwargs: services.send_email(**kwargs),
        refusal=lambda subscriber, marketing: channel_policy.email_refusal(subscriber, marketing=marketing),
    )
)
# Reachable by email: an address that did not bounce, not opted out.
register_reachability("email", SEND_EMAIL.reachable)
