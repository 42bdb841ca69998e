"""The push step: ``{"type": "send_push", "template": "<push template name or public id>"}``.

The row goes through ``push.services.send_push`` (an active device, no opt-out, rendering with the
run's bindings context, the outbox row with ``origin``), once per run and step (``outbox``). The
push sender sends it to the subscriber's active devices; the app (or the push simulator) reports
``PushOpened`` naming the message, the journey and this step.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy

from campaigns import channel_policy
from push import services
from push.models import PushTemplate
from subscribers.models import Device, Subscriber

from . import register
from .flow import register_reachability
from .outbox import ChannelTemplateStep


def refusal(subscriber: Subscriber, marketing: bool) -> str:
    """Push needs no opt-in for marketing: the app's notification permission is the opt-in."""
    devices = Device.objects.filter(project_id=subscriber.project_id, subscriber_id=subscriber.pk).active()
    return channel_policy.push_refusal(subscriber, active_devices=devices.count())


SEND_PUSH = register(
    ChannelTemplateStep(
        type="send_push",
        label=gettext_lazy("Send push"),
        channel="push",
        noun=gettext_lazy("push template"),
        model=PushTemplate,
        summary_fields=("title", "body", "link"),
        render=lambda template, context: services.render_push(template, context),
        send=lambda **kwargs: services.send_push(**kwargs),
        refusal=refusal,
    )
)
# Reachable by push: an active device, not opted out.
register_reachability("push", SEND_PUSH.reachable)
