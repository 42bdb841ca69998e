"""Fan-out of a campaign to the whole benchmark audience: ``campaigns.fanout.snapshot`` against a
bare ``INSERT ... SELECT`` of the same number of outbox rows, in the same run; then the whole start
transaction (``lifecycle._start``: snapshot, audience size, cost estimate) and the rate at which the
remaining outbox rows are written from the audience rows afterwards (``materialize.move``).

Needs the audience of ``generate_audience.py`` (1,000,000 subscribers, 60 % opted in, 1,000,000
sent marketing messages for the frequency cap to count). Each variant runs in a transaction that
is rolled back, so runs repeat on the same data and leave nothing behind. Alternates the
variants ``--repeat`` times and reports the median, the ratio, the process's peak memory and the
machine's load (the machine may be shared: the ratio is the figure that compares across runs).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench SECRET_KEY=bench FIELD_ENCRYPTION_KEY=... \\
    .venv/bin/python bench/fanout_bench.py [--repeat 3] [--cap 3]

Goal (issue 9): under 10 s for 1,000,000 recipients, the process under 150 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

from benchlib import BENCH_DIR, setup_django


class Rollback(Exception):
    pass


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-slug", default="bench")
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        help="instead of generate_audience.py's project, fill a project 'fanout-synth' with this many "
        "subscribers in SQL (60 %% opted in, four time zones) and two marketing sends each in the last "
        "14 days, once; seconds instead of minutes",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--cap", type=int, default=3, help="frequency cap: marketing messages per 7 days (0: none)"
    )
    args = parser.parse_args()
    setup_django()

    from django.db import connection, transaction
    from django.db.models import Count
    from django.utils import timezone

    from campaigns import fanout, lifecycle, materialize
    from campaigns.models import (
        AudienceKind,
        AudienceRow,
        Campaign,
        CampaignPurpose,
        CampaignStatus,
        Message,
        SendingPolicy,
    )
    from controlpanel.models import Project
    from controlpanel.sql import new_uuid_sql
    from subscribers.models import Subscriber
    from whatsapp.models import WhatsAppAccount

    if args.synthetic:
        args.project_slug = synthesize(args.synthetic)
    project = Project.objects.filter(slug=args.project_slug).first()
    if project is None:
        sys.exit(f"No project {args.project_slug!r}: run bench/generate_audience.py first.")
    subscribers = Subscriber.objects.filter(project=project).count()
    account, _ = WhatsAppAccount.objects.get_or_create(
        phone_number_id="fanout-bench",
        defaults={"project": project, "waba_id": "fanout-bench", "access_token": "x", "app_secret": "x"},
    )
    start_rss = rss_mb()

    def run(variant: str) -> tuple[float, int]:
        try:
            with transaction.atomic():
                if args.cap:
                    SendingPolicy.objects.update_or_create(
                        project=project, defaults={"cap_messages": args.cap, "cap_days": 7}
                    )
                campaign = Campaign.objects.create(
                    project=project,
                    account=account,
                    name=f"fan-out bench ({variant})",
                    purpose=CampaignPurpose.PROMOTION,
                    template_name="weekend_deals",
                    audience_kind=AudienceKind.RULE,
                    rule={"type": "group", "op": "and", "children": [{"type": "all"}]},
                )
                with connection.cursor() as cursor:
                    # The outbox's foreign keys are deferred to the commit, which a rolled-back run
                    # never reaches: checked now, inside the timed statement, they cost what the
                    # commit of a real fan-out pays.
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                started = time.perf_counter()
                if variant == "snapshot":
                    written = fanout.snapshot(campaign)
                elif variant == "launch":
                    # The whole start transaction: snapshot, audience size, cost estimate, audit.
                    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SCHEDULED)
                    lifecycle._start(campaign.pk)
                    written = AudienceRow.objects.filter(campaign=campaign).count()
                    written += Message.objects.filter(campaign=campaign).count()
                else:
                    with connection.cursor() as cursor:
                        # The snapshot's own public id expression (version-7 UUIDs), so the two
                        # variants write the same unique-index pattern.
                        cursor.execute(
                            "INSERT INTO campaigns_message (project_id, public_id, subscriber_id, campaign_id,"  # noqa: S608 - SQL from code
                            " channel, status, account_id, kind, template_name, template_language, components,"
                            " body, marketing, reason, error_title, error_details, pricing_category,"
                            ' pricing_type, attempts, "values", history, created_at, updated_at, request_hash)'
                            f" SELECT s.project_id, {new_uuid_sql()}, s.id, %s, 'whatsapp', 'queued', %s,"
                            " 'template', 'weekend_deals', '', '[]', '', true, '', '', '', '', '', 0, '{}',"
                            " '[]', now(), now(), '' FROM subscribers_subscriber s WHERE s.project_id = %s",
                            [campaign.pk, account.pk, project.pk],
                        )
                        written = cursor.rowcount
                elapsed = time.perf_counter() - started
                if variant == "launch":
                    # The rest of the outbox rows, chunk after chunk as the start-due tick writes
                    # them (here without the tick's pause once a minute of sending is queued).
                    campaign.refresh_from_db()
                    moving = time.perf_counter()
                    moved = 0
                    while step := materialize.move(campaign, materialize.CHUNK, timezone.now()):
                        moved += step
                    rate = moved / (time.perf_counter() - moving)
                    print(f"  materialized the other {moved:,} rows at {rate:,.0f} rows/s", flush=True)
                    rates.append(rate)
                if variant == "snapshot":
                    by_status = dict(
                        Message.objects.filter(campaign=campaign)
                        .values_list("status")
                        .annotate(n=Count("id"))
                    )
                    print(f"  snapshot rows by status: {by_status}", flush=True)
                raise Rollback
        except Rollback:
            pass
        return elapsed, written

    times: dict[str, list[float]] = {"bare": [], "snapshot": [], "launch": []}
    rates: list[float] = []
    loads = []
    for i in range(args.repeat):
        for variant in ("bare", "snapshot", "launch"):
            loads.append(os.getloadavg()[0])
            elapsed, written = run(variant)
            times[variant].append(elapsed)
            print(f"run {i + 1} {variant:8} {elapsed:6.2f} s  {written:,} rows", flush=True)
    bare, snap = statistics.median(times["bare"]), statistics.median(times["snapshot"])
    launch = statistics.median(times["launch"])
    report = "\n".join(
        [
            "# Fan-out benchmark",
            "",
            f"- subscribers in the project: {subscribers:,}; cap: {args.cap or 'none'} per 7 days",
            f"- bare INSERT ... SELECT: median {bare:.2f} s ({', '.join(f'{t:.2f}' for t in times['bare'])})",
            f"- fanout.snapshot: median {snap:.2f} s ({', '.join(f'{t:.2f}' for t in times['snapshot'])})",
            f"- ratio snapshot / bare: {snap / bare:.2f}",
            f"- the whole start transaction (snapshot, audience size, cost estimate): median {launch:.2f} s"
            f" ({', '.join(f'{t:.2f}' for t in times['launch'])})",
            f"- the remaining outbox rows written afterwards in chunks: median {statistics.median(rates):,.0f} rows/s",
            f"- process peak RSS: {rss_mb():.0f} MB (after Django setup: {start_rss:.0f} MB)",
            f"- load average (1 min) during the runs: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores",
            "",
        ]
    )
    print(report)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    (BENCH_DIR / "fanout_bench.md").write_text(report)


def synthesize(n: int) -> str:
    """A project of ``n`` subscribers written in SQL (kept for later runs); returns its slug."""
    from django.db import connection, transaction

    from controlpanel.models import Project

    slug = "fanout-synth"
    project, created = Project.objects.get_or_create(slug=slug, defaults={"name": "Fan-out synthetic"})
    if not created:
        return slug
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO subscribers_subscriber (project_id, public_id, phone, wa_id, bsuid, external_id, name,"
            " email, language, country, time_zone, whatsapp_consent, whatsapp_consent_at, last_inbound_at,"
            " created_at, updated_at)"
            " SELECT %s, gen_random_uuid(), '+49151' || lpad(g::text, 8, '0'), '', NULL, NULL, 'Name ' || g,"
            " '', 'de', CASE WHEN g %% 10 = 0 THEN '' ELSE 'DE' END,"
            " (ARRAY['Europe/Berlin', 'Europe/Vienna', '', 'Europe/Istanbul'])[1 + g %% 4],"
            " CASE WHEN g %% 5 < 3 THEN 'opted_in' WHEN g %% 5 = 3 THEN 'unknown' ELSE 'opted_out' END,"
            " NULL, NULL, now(), now() FROM generate_series(1, %s) g",
            [project.pk, n],
        )
        cursor.execute(
            "INSERT INTO campaigns_message (project_id, public_id, subscriber_id, channel, status, kind,"
            " template_name, template_language, components, body, marketing, reason, error_title,"
            ' error_details, pricing_category, pricing_type, billable, attempts, "values", history,'
            " request_hash, created_at, updated_at, sending_at, sent_at)"
            " SELECT s.project_id, gen_random_uuid(), s.id, 'whatsapp', 'delivered', 'template', 'deals', 'de',"
            " '[]', '', true, '', '', '', 'marketing', 'regular', true, 1, '{}', '[]', '', t, t, t, t"
            " FROM subscribers_subscriber s CROSS JOIN generate_series(1, 2) k,"
            " LATERAL (SELECT now() - random() * interval '14 days' + k * interval '0 s' AS t) x"
            " WHERE s.project_id = %s AND s.whatsapp_consent = 'opted_in'",
            [project.pk],
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) subscribers_subscriber")
        cursor.execute("VACUUM (ANALYZE) campaigns_message")
    print(f"synthesized {n:,} subscribers in {time.perf_counter() - started:.1f} s", flush=True)
    return slug


if __name__ == "__main__":
    main()
