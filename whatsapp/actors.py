"""WhatsApp actors. Ids in; each is safe to run twice."""

from __future__ import annotations

import dramatiq

from .models import WebhookDelivery
from .processing import process_pending


@dramatiq.actor(queue_name="webhooks", max_retries=3, time_limit=300_000)
def process_webhooks(account_id: int) -> None:
    """Drain the account's unprocessed webhook deliveries (claimed, so concurrent runs split the work)."""
    process_pending(account_id)


@dramatiq.actor(queue_name="webhooks", max_retries=0, time_limit=60_000)
def sweep_webhooks() -> None:
    """Scheduler safety net: kick every account that has deliveries nobody processed yet."""
    account_ids = (
        WebhookDelivery.objects.filter(processed_at__isnull=True, attempts__lt=5)
        .values_list("account_id", flat=True)
        .distinct()
    )
    for account_id in account_ids:
        process_webhooks.send(account_id)
