"""Housekeeping actors. Each is safe to run twice (delivery is at least once)."""

from __future__ import annotations

import dramatiq
from django.utils import timezone

from .models import Heartbeat


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=10_000)
def record_heartbeat(component: str) -> None:
    """Prove that a worker picked up work: the dashboard and operators read this."""
    Heartbeat.objects.update_or_create(component=component, defaults={"seen_at": timezone.now()})
