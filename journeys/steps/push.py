"""The push step: ``{"type": "send_push", "template": "<push template name or public id>"}``.

The row goes through ``push.services.send_push`` (an active device, no opt-out, rendering with the
run's bindings context, the outbox row with ``origin``), once per run and step (``outbox``). The
push sender sends it to the subscriber's active devices; the app (or the push simulator) reports
``PushOpened`` naming the message, the journey and this step.
"""

from __future__ import annotations

from typing import Any

from campaigns import channel_policy
from campaigns.models import Message
from push import services as push_services
from push.models import PushTemplate
from subscribers.models import Device, Subscriber

from . import register
from .flow import register_reachability
from .outbox import ChannelTemplateStep


class SendPushStep(ChannelTemplateStep):
    type = "send_push"
    label = "Send push"
    channel = "push"
    noun = "push template"
    model = PushTemplate
    summary_fields = ("title", "body", "link")

    def render(self, template: Any, context: dict[str, Any]) -> dict[str, Any]:
        return push_services.render_push(template, context)

    def send(self, **kwargs: Any) -> Message:
        return push_services.send_push(**kwargs)

    def refusal(self, subscriber: Subscriber, *, marketing: bool) -> str:
        # Push needs no opt-in for marketing: the app's OS permission is the opt-in (ADR 0008).
        devices = Device.objects.filter(project_id=subscriber.project_id, subscriber_id=subscriber.pk)
        return channel_policy.push_refusal(subscriber, active_devices=devices.active().count())


SEND_PUSH = register(SendPushStep())
# Push is reachable: an active device and no opt-out.
register_reachability("push", SEND_PUSH.reachable)
