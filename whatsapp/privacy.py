"""GDPR erasure of WhatsApp data: raw webhook bodies that mention an erased subscriber."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db.models import Q

from subscribers.signals import SubscriberErased

from .models import WebhookDelivery

ERASED = "[erased]"


def _needles(identifiers: tuple[str, ...]) -> set[str]:
    needles = set()
    for value in identifiers:
        if value:
            needles.add(value)
            if value.startswith("+"):
                needles.add(value[1:])  # wa_id and recipient_id carry the phone without "+"
    return needles


def _redact(node: Any, needles: set[str]) -> Any:
    if isinstance(node, dict):
        if node.get("from") in needles or node.get("from_user_id") in needles:
            # An inbound message of the erased person: its content goes too.
            return {k: node[k] for k in ("id", "type", "timestamp") if k in node} | {"from": ERASED}
        if node.get("wa_id") in needles or node.get("user_id") in needles:
            return {"wa_id": ERASED}
        return {k: _redact(v, needles) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact(v, needles) for v in node]
    if isinstance(node, str):
        for needle in needles:
            node = node.replace(needle, ERASED)
        return node
    return node


def scrub_deliveries(payload: SubscriberErased) -> int:
    """Rewrite every stored webhook body of the project that mentions the subscriber."""
    needles = _needles(payload.identifiers)
    if not needles:
        return 0
    match = Q()
    for needle in needles:
        match |= Q(body__contains=needle)
    changed = 0
    for delivery in WebhookDelivery.objects.filter(project_id=payload.project_id).filter(match).iterator():
        try:
            body = json.dumps(_redact(json.loads(delivery.body), needles), separators=(",", ":"))
        except json.JSONDecodeError:
            body = delivery.body
            for needle in needles:
                body = body.replace(needle, ERASED)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            body=body, body_sha256=hashlib.sha256(body.encode()).hexdigest()
        )
        changed += 1
    return changed


def on_subscriber_erased(sender, payload: SubscriberErased, **kwargs) -> None:
    scrub_deliveries(payload)
