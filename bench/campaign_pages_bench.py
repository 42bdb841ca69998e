"""The campaign page, the campaigns list, the message history and the dashboard at a million messages.

Issue 9: "the campaign page and the message history stay under 150 ms p95 with 1M messages".
Fills its own project (``bench-campaigns``) set-based: N subscribers and one running campaign with
one outbox row each (``INSERT ... SELECT generate_series``), in the state mix of a campaign in
flight (read, delivered, sent, failed with Meta codes, skipped with reasons, a few queued,
sending and unknown; replies and clicks; sends spread over the last hour), plus single messages
outside the campaign. Then ``VACUUM ANALYZE`` (as autovacuum would), and times whole requests
through Django's test client in this process (middleware, view, queries, template; no HTTP
server): the full campaign page, its live partial (what the page polls every 2 s), recipients
filtered by state, the CSV export's first rows, the list, the history (first page, the next
page through its keyset link, a phone search, a wamid search, filters) and the dashboard.
Prints EXPLAIN (ANALYZE, BUFFERS) of each page's slowest query with ``--plans``.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_panel_bench SECRET_KEY=bench \\
    FIELD_ENCRYPTION_KEY=... .venv/bin/python manage.py migrate
    ... .venv/bin/python bench/campaign_pages_bench.py --messages 1000000 --repeat 30 --warmup 3

The report goes to ``$BENCH_DIR/campaign_pages_bench.md`` (default /tmp/bench).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import benchlib
from benchlib import Result, measure

benchlib.setup_django()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from campaigns import counters  # noqa: E402
from campaigns.models import Campaign, Message  # noqa: E402
from controlpanel.models import Membership, Project, Role  # noqa: E402

TARGET_MS = 150
SLUG = "bench-campaigns"

SUBSCRIBERS_SQL = """
INSERT INTO subscribers_subscriber
  (project_id, public_id, phone, wa_id, name, email, language, country, time_zone,
   whatsapp_consent, created_at, updated_at)
SELECT %(project)s, gen_random_uuid(), '+49151' || lpad(g::text, 8, '0'), '49151' || lpad(g::text, 8, '0'),
       'Bench ' || g, '', 'de', 'DE', '', 'opted_in', now(), now()
FROM generate_series(1, %(n)s) AS g
"""

# g % 100 picks the state: 45 % read, 30 % delivered, 10 % sent, 5 % failed, 6 % skipped,
# 2 % queued, 1 % sending, 1 % unknown. Sends fall over the last hour, for the chart.
MESSAGES_SQL = """
INSERT INTO campaigns_message
  (project_id, public_id, subscriber_id, campaign_id, channel, status, kind, template_name,
   template_language, components, body, marketing, wamid, reason, error_code, error_title,
   error_details, pricing_category, pricing_type, billable, attempts, values, history, request_hash,
   created_at, updated_at, sent_at, delivered_at, read_at, failed_at, replied_at, clicked_at)
SELECT %(project)s, gen_random_uuid(), s.id, %(campaign)s, 'whatsapp', st.status, 'template', 'spring_promo',
       'de', '[]'::jsonb, 'Hallo ' || s.name || ', 20 %% auf alles bis Sonntag!', true,
       CASE WHEN st.status IN ('sent', 'delivered', 'read', 'failed', 'unknown')
            THEN 'wamid.bench.' || s.id END,
       CASE WHEN st.status = 'skipped' THEN (ARRAY['No WhatsApp opt-in', 'Opted out',
            'Frequency cap reached (2 in 7 days)', 'Missing value for tags.first_name'])[s.id %% 4 + 1]
            WHEN st.status = 'failed' THEN 'Failed' ELSE '' END,
       CASE WHEN st.status = 'failed' THEN (ARRAY[131026, 131049, 131047, 132000])[s.id %% 4 + 1] END,
       '', '',
       CASE WHEN st.status IN ('sent', 'delivered', 'read') THEN 'marketing' ELSE '' END,
       CASE WHEN st.status IN ('sent', 'delivered', 'read') THEN 'regular' ELSE '' END,
       CASE WHEN st.status IN ('sent', 'delivered', 'read') THEN true END,
       1, '{}'::jsonb, '[]'::jsonb, '',
       now() - interval '2 hours' + (s.id %% 3600) * interval '1 second',
       now(),
       CASE WHEN st.status IN ('sent', 'delivered', 'read', 'failed')
            THEN now() - (s.id %% 3600) * interval '1 second' END,
       CASE WHEN st.status IN ('delivered', 'read') THEN now() - (s.id %% 3000) * interval '1 second' END,
       CASE WHEN st.status = 'read' THEN now() - (s.id %% 2000) * interval '1 second' END,
       CASE WHEN st.status = 'failed' THEN now() - (s.id %% 3600) * interval '1 second' END,
       CASE WHEN st.status = 'read' AND s.id %% 10 = 0 THEN now() END,
       CASE WHEN st.status = 'read' AND s.id %% 20 = 0 THEN now() END
FROM subscribers_subscriber s
CROSS JOIN LATERAL (SELECT CASE
    WHEN s.id %% 100 < 45 THEN 'read' WHEN s.id %% 100 < 75 THEN 'delivered'
    WHEN s.id %% 100 < 85 THEN 'sent' WHEN s.id %% 100 < 90 THEN 'failed'
    WHEN s.id %% 100 < 96 THEN 'skipped' WHEN s.id %% 100 < 98 THEN 'queued'
    WHEN s.id %% 100 < 99 THEN 'sending' ELSE 'unknown' END AS status) st
WHERE s.project_id = %(project)s
"""

# Conversation and API sends: one in 20 subscribers got a single transactional message too.
SINGLES_SQL = """
INSERT INTO campaigns_message
  (project_id, public_id, subscriber_id, channel, status, kind, template_name, template_language,
   components, body, marketing, reason, error_title, error_details, pricing_category, pricing_type,
   attempts, values, history, request_hash, created_at, updated_at, sent_at, delivered_at)
SELECT %(project)s, gen_random_uuid(), s.id, 'whatsapp', 'delivered', 'text', '', '', '[]'::jsonb,
       'Ihre Bestellung ist unterwegs.', false, '', '', '', 'utility', 'regular', 1, '{}'::jsonb,
       '[]'::jsonb, '', now() - (s.id %% 86400) * interval '1 second', now(), now(), now()
FROM subscribers_subscriber s WHERE s.project_id = %(project)s AND s.id %% 20 = 0
"""


def fill(n: int) -> tuple[Project, Campaign]:
    """The bench project with ``n`` recipients; reused when a previous run made the same size."""
    project, _ = Project.objects.get_or_create(slug=SLUG, defaults={"name": "Campaign pages bench"})
    campaign = Campaign.objects.filter(project=project, name="Spring sale").first()
    if campaign is not None and Message.objects.filter(campaign=campaign).count() == n:
        print(f"reusing {n:,} messages of {SLUG}")
        counters.recount([campaign.pk])
        return project, campaign
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("DELETE FROM campaigns_message WHERE project_id = %s", [project.pk])
        cur.execute("DELETE FROM subscribers_subscriber WHERE project_id = %s", [project.pk])
    Campaign.objects.filter(project=project).delete()
    with transaction.atomic():
        campaign = Campaign.objects.create(
            project=project,
            name="Spring sale",
            status="running",
            template_name="spring_promo",
            languages=["de"],
            audience_kind="everyone",
        )
        for i in range(30):  # older campaigns for the list page
            Campaign.objects.create(project=project, name=f"Older campaign {i}", status="completed")
        with connection.cursor() as cur:
            cur.execute(SUBSCRIBERS_SQL, {"project": project.pk, "n": n})
            print(f"  {n:,} subscribers in {time.perf_counter() - started:.1f} s", flush=True)
            cur.execute(MESSAGES_SQL, {"project": project.pk, "campaign": campaign.pk})
            print(
                f"  {cur.rowcount:,} campaign messages at {time.perf_counter() - started:.1f} s", flush=True
            )
            cur.execute(SINGLES_SQL, {"project": project.pk})
            print(f"  {cur.rowcount:,} single messages at {time.perf_counter() - started:.1f} s", flush=True)
        # The rows were written behind the writers' back: their counters as the writers would keep them.
        counters.recount([campaign.pk])
        print(f"  counters recounted at {time.perf_counter() - started:.1f} s", flush=True)
    with connection.cursor() as cur:
        for table in (
            "subscribers_subscriber",
            "campaigns_message",
            "campaigns_campaign",
            "campaigns_campaigncounter",
        ):
            cur.execute(f"VACUUM ANALYZE {table}")
    print(f"filled and vacuumed in {time.perf_counter() - started:.1f} s", flush=True)
    return project, campaign


def owner_of(project: Project):
    user, _ = get_user_model().objects.get_or_create(email="bench-campaigns@example.com")
    Membership.objects.get_or_create(project=project, user=user, defaults={"role": Role.OWNER})
    return user


def pages(project: Project, campaign: Campaign) -> list[tuple[str, str, dict]]:
    slug = project.slug
    detail = reverse("campaigns:detail", args=[slug, campaign.public_id])
    history = reverse("campaigns:messages", args=[slug])
    live = {"HX-Request": "true", "HX-Target": "campaign-live"}
    recipients = {"HX-Request": "true", "HX-Target": "campaign-recipients"}
    table = {"HX-Request": "true", "HX-Target": "message-history"}
    some = Message.objects.filter(campaign=campaign, status="read").order_by("pk")[5000]
    phone = some.subscriber.phone
    first_page = Message.objects.filter(project=project).order_by("-created_at", "-pk")[49]
    cursor = f"{first_page.created_at.isoformat()}|{first_page.pk}"
    return [
        ("campaign page, whole", detail, {}),
        ("campaign page, live partial (polled every 2 s)", detail, live),
        ("campaign page, recipients: failed", f"{detail}?state=failed", recipients),
        ("campaign page, recipients: replied", f"{detail}?state=replied", recipients),
        ("campaigns list", reverse("campaigns:list", args=[slug]), {}),
        ("message history, first page", history, {}),
        ("message history, next page (keyset)", f"{history}?after={cursor}", table),
        ("message history, phone search", f"{history}?q={phone}", table),
        ("message history, wamid search", f"{history}?q={some.wamid}", table),
        ("message history, state=failed", f"{history}?state=failed", table),
        (
            "message history, campaign + delivered",
            f"{history}?campaign={campaign.public_id}&state=delivered",
            table,
        ),
        ("message history, transactional", f"{history}?category=transactional", table),
        ("dashboard (cached month)", reverse("controlpanel:dashboard", args=[slug]), {}),
    ]


def slowest_plan(client: Client, path: str, headers: dict) -> str:
    with CaptureQueriesContext(connection) as queries:
        client.get(path, headers=headers)
    ours = [q for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    if not ours:
        return ""
    query = max(ours, key=lambda q: float(q["time"]))
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
        return query["sql"] + "\n\n" + "\n".join(row[0] for row in cur.fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000, help="recipients of the running campaign")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--plans", action="store_true", help="EXPLAIN ANALYZE each page's slowest query")
    args = parser.parse_args()

    # Production settings hash static names through the manifest that collectstatic writes.
    call_command("collectstatic", interactive=False, verbosity=0)
    project, campaign = fill(args.messages)
    client = Client(HTTP_HOST=benchlib.HOST)
    client.force_login(owner_of(project))
    # CPU of this process (view, templates) and of its PostgreSQL backend (queries): what a request
    # costs, which other work on a shared machine does not inflate the way it inflates wall time.
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]

    def cpu() -> float:
        return time.process_time() + benchlib.process_cpu([backend])

    results: list[Result] = []
    plans: list[tuple[str, str]] = []
    for label, path, headers in pages(project, campaign):

        def get(path=path, headers=headers) -> None:
            response = client.get(path, headers=headers)
            assert response.status_code in (200, 286), (path, response.status_code)

        results.append(
            measure(label, get, repeat=args.repeat, warmup=args.warmup, target_ms=TARGET_MS, cpu=cpu)
        )
        if args.plans:
            plans.append((label, slowest_plan(client, path, headers)))
    cache.clear()
    results.append(
        measure(
            "dashboard (month recounted: first view every 10 min)",
            lambda: (cache.clear(), client.get(reverse("controlpanel:dashboard", args=[project.slug]))),
            repeat=max(3, args.repeat // 5),
            warmup=1,
            cpu=cpu,
        )
    )

    total = Message.objects.filter(project=project).count()
    report = [
        "# Campaign pages and message history",
        "",
        f"{args.messages:,} recipients in one running campaign, {total:,} messages in the project; "
        f"in-process Django test client, {args.repeat} runs after {args.warmup} warm-up runs each. "
        "The machine (2 cores) was shared with other engineers' test runs while measuring (load average "
        f"{Path('/proc/loadavg').read_text().split()[0]} at the end): wall times are inflated, the CPU column "
        "(this process + its PostgreSQL backend) is not.",
        "",
        benchlib.table(results),
    ]
    for label, plan in plans:
        report += ["", f"## {label}", "", "```", plan, "```"]
    out = benchlib.BENCH_DIR / "campaign_pages_bench.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(report) + "\n")
    print(f"\nreport: {out}")


if __name__ == "__main__":
    main()
