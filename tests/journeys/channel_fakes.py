"""Faithful fakes of the email and push send services (ADR 0008's contract) for the journey tests.

The real ``mail.services`` and ``push.services`` are built by other slices at the same time; their
stand-ins raise NotImplementedError. ``channel_services`` puts these in their place: rendering
with the campaigns' Liquid environment (a part that fails or an empty subject/title+body refuses,
naming the part), the refusals of ``campaigns.channel_policy`` with nothing written, one
``Message`` row (channel, ``queued``, ``content`` with ``template`` and ``origin``, the
idempotency key) and the same row back for a key seen before.
"""

from __future__ import annotations

from typing import Any

import pytest
from liquid.exceptions import LiquidError

from campaigns import bindings, channel_policy
from campaigns.models import Channel, Message, MessageStatus
from campaigns.services import SendRefused, idempotent_message
from subscribers.models import Device


def _render(parts: dict[str, str], context: dict[str, Any]) -> dict[str, str]:
    rendered = {}
    for name, source in parts.items():
        try:
            rendered[name] = bindings.ENV.from_string(source or "").render(**context).strip()
        except LiquidError as err:
            raise SendRefused(f"The {name} could not be rendered: {str(err).splitlines()[0]}") from err
    return rendered


def render_email(template, context: dict[str, Any]) -> dict[str, str]:
    content = _render(
        {
            "subject": template.subject,
            "preheader": template.preheader,
            "html": template.html,
            "text": template.text,
        },
        context,
    )
    if not content["subject"]:
        raise SendRefused("The subject is empty for this subscriber.")
    return content


def render_push(template, context: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = _render({"title": template.title, "body": template.body}, context)
    if not content["title"] and not content["body"]:
        raise SendRefused("The title and the body are empty for this subscriber.")
    return {**content, "image": template.image_url, "link": template.link, "data": dict(template.data)}


def _sender(channel: str, render, refusal_of):
    """A send service of ``channel``: the same key -> the same row; a refusal -> SendRefused and
    nothing written; else one queued row with the rendered content, the template and the origin."""

    def send(
        *, project, subscriber, template, actor, context=None, values=None, idempotency_key=None, origin=None
    ) -> Message:
        existing = idempotency_key and idempotent_message(project, idempotency_key)
        if existing:
            return existing
        if subscriber.project_id != project.pk:
            raise SendRefused("The subscriber belongs to another project.")
        refusal = refusal_of(subscriber, template)
        if refusal:
            raise SendRefused(refusal)
        content = {**render(template, context or {}), "template": str(template.public_id)}
        if origin:
            content["origin"] = dict(origin)
        return Message.objects.create(
            project=project,
            subscriber=subscriber,
            channel=channel,
            status=MessageStatus.QUEUED,
            marketing=template.marketing,
            content=content,
            idempotency_key=idempotency_key,
            values=values or {},
        )

    return send


def _push_refusal(subscriber, template) -> str:
    devices = Device.objects.filter(project_id=subscriber.project_id, subscriber=subscriber).active().count()
    return channel_policy.push_refusal(subscriber, active_devices=devices)


send_email = _sender(
    Channel.EMAIL,
    render_email,
    lambda subscriber, template: channel_policy.email_refusal(subscriber, marketing=template.marketing),
)
send_push = _sender(Channel.PUSH, render_push, _push_refusal)


@pytest.fixture
def channel_services(monkeypatch):
    """The email and push send services, faked as the contract describes (swap for the real ones
    once the mail and push slices are merged)."""
    from mail import services as mail_services
    from push import services as push_services

    monkeypatch.setattr(mail_services, "render_email", render_email)
    monkeypatch.setattr(mail_services, "send_email", send_email)
    monkeypatch.setattr(push_services, "render_push", render_push)
    monkeypatch.setattr(push_services, "send_push", send_push)
