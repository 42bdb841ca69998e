"""Rebuild campaign counters from the outbox rows (counters.recount): after a restore, or to check."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from campaigns import counters
from campaigns.models import Campaign


class Command(BaseCommand):
    help = "Rebuild the counters of campaigns (all, or the given ids) from their outbox rows."

    def add_arguments(self, parser) -> None:
        parser.add_argument("campaign_ids", nargs="*", type=int, help="Campaign ids; all when none.")

    def handle(self, *args, campaign_ids: list[int], **options) -> None:
        ids = campaign_ids or list(Campaign.objects.order_by("pk").values_list("pk", flat=True))
        changed = 0
        # One campaign per transaction: a million-row campaign does not hold the others' locks.
        for campaign_id in ids:
            changed += counters.recount([campaign_id])
        self.stdout.write(f"Recounted {len(ids)} campaigns: {changed} counter groups corrected.")
