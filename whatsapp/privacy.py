"""GDPR erasure of WhatsApp data: raw webhook bodies that mention an erased subscriber."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dramatiq
from django.db import transaction
from django.db.models import Q

from subscribers.signals import SubscriberErased

from .models import WebhookDelivery

ERASED = "[erased]"
# Keys under which Meta names a WhatsApp user; only exact values there are matched,
# never substrings of other fields (an id "1" must not touch other people's data).
IDENTITY_KEYS = ("from", "wa_id", "user_id", "recipient_id", "from_user_id", "recipient_user_id", "input")


def _needles(identifiers: tuple[str, ...]) -> set[str]:
    needles = set()
    for value in identifiers:
        if value and (value.startswith("+") or value.isdigit() or "." in value):
            needles.add(value)
            if value.startswith("+"):
                needles.add(value[1:])  # wa_id and recipient_id carry the phone without "+"
    return needles


def _mentions(node: dict, needles: set[str]) -> bool:
    return any(node.get(key) in needles for key in IDENTITY_KEYS)


def _redact(node: Any, needles: set[str]) -> Any:
    if isinstance(node, dict):
        if _mentions(node, needles):
            if "from" in node or "from_user_id" in node:
                # An inbound message of the erased person: its content goes too.
                return {k: node[k] for k in ("id", "type", "timestamp") if k in node} | {"from": ERASED}
            if "recipient_id" in node or "recipient_user_id" in node:
                # A status of a message to them: keep the delivery facts, drop who it was.
                return {k: (ERASED if k in IDENTITY_KEYS else _redact(v, needles)) for k, v in node.items()}
            return {"wa_id": ERASED}  # a contact card (profile name included)
        return {k: _redact(v, needles) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact(v, needles) for v in node]
    return node


def scrub_deliveries(project_id: int, identifiers: tuple[str, ...]) -> int:
    """Rewrite every stored webhook body of the project that names the subscriber."""
    needles = _needles(identifiers)
    if not needles:
        return 0
    match = Q()
    for needle in needles:
        match |= Q(body__contains=f'"{needle}"')
    changed = 0
    with transaction.atomic():
        for delivery in WebhookDelivery.objects.filter(project_id=project_id).filter(match).iterator():
            try:
                redacted = _redact(json.loads(delivery.body), needles)
            except json.JSONDecodeError:
                continue  # not JSON: we never parsed it, so it produced no personal data rows
            body = json.dumps(redacted, separators=(",", ":"))
            if body == delivery.body:
                continue
            # The digest only deduplicates Meta's retries of fresh bodies; keep it unique per row.
            digest = hashlib.sha256(f"{delivery.pk}:{body}".encode()).hexdigest()
            WebhookDelivery.objects.filter(pk=delivery.pk).update(body=body, body_sha256=digest)
            changed += 1
    return changed


@dramatiq.actor(queue_name="long", max_retries=5, time_limit=600_000)
def scrub_webhook_bodies(project_id: int, identifiers: list[str]) -> None:
    scrub_deliveries(project_id, tuple(identifiers))


def on_subscriber_erased(sender, payload: SubscriberErased, **kwargs) -> None:
    # A scan of the project's stored bodies: a worker's job, not the erasing request's.
    scrub_webhook_bodies.send(payload.project_id, list(payload.identifiers))
