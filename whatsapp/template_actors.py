"""Periodic template sync: the scheduler enqueues ``sync_all_templates`` every few minutes."""

from __future__ import annotations

import logging

import dramatiq

from .errors import GraphError
from .models import WhatsAppAccount
from .services import sync_templates

logger = logging.getLogger(__name__)


def sync_every_account() -> dict[int, str]:
    """Sync the templates of every connected account. One account's error (a revoked token, Meta
    down) is logged and does not stop the others. Returns the error text per failed account id.

    Safe to run twice: sync_templates upserts by (account, name, language).
    """
    failed: dict[int, str] = {}
    for account in WhatsAppAccount.objects.order_by("pk"):
        try:
            sync_templates(account=account)
        except GraphError as exc:
            failed[account.pk] = exc.describe()
            logger.warning("template sync failed for account %s: %s", account.pk, exc.describe())
    return failed


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=600_000)
def sync_all_templates() -> None:
    # No retries: the next tick is the retry.
    sync_every_account()
