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


def _write(*, channel, project, subscriber, template, content, refusal, idempotency_key, origin, values):
    if subscriber.project_id != project.pk:
        raise SendRefused("The subscriber belongs to another project.")
    if refusal:
        raise SendRefused(refusal)
    content = {**content, "template": str(template.public_id)}
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


def send_email(
    *, project, subscriber, template, actor, context=None, values=None, idempotency_key=None, origin=None
) -> Message:
    existing = idempotency_key and idempotent_message(project, idempotency_key)
    if existing:
        return existing
    refusal = channel_policy.email_refusal(subscriber, marketing=template.marketing)
    return _write(
        channel=Channel.EMAIL,
        project=project,
        subscriber=subscriber,
        template=template,
        content={} if refusal else render_email(template, context or {}),
        refusal=refusal,
        idempotency_key=idempotency_key,
        origin=origin,
        values=values,
    )


def send_push(
    *, project, subscriber, template, actor, context=None, values=None, idempotency_key=None, origin=None
) -> Message:
    existing = idempotency_key and idempotent_message(project, idempotency_key)
    if existing:
        return existing
    devices = Device.objects.filter(project=project, subscriber=subscriber).active().count()
    refusal = channel_policy.push_refusal(subscriber, active_devices=devices)
    return _write(
        channel=Channel.PUSH,
        project=project,
        subscriber=subscriber,
        template=template,
        content={} if refusal else render_push(template, context or {}),
        refusal=refusal,
        idempotency_key=idempotency_key,
        origin=origin,
        values=values,
    )


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
