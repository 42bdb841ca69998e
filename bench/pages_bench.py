"""Subscriber list, search and detail pages at a million subscribers, through HTTP.

Logs in as the bench project's owner with a ``requests`` session (a fresh random password is
set for the run), against granian serving the WSGI app on 127.0.0.1, and times whole requests:
the list (first page, a page further on through its keyset link, the htmx partial), searches
(``?q=`` a phone prefix, a full number, a name), filters, the subscriber page and
``GET /api/v1/subscribers/<id>``. Target from issue 3: list and search pages p95 < 150 ms.
Also the pages that count whole tables on every view (issue 8, same target): the dashboard
(subscriber counts, the 14-day message chart over a million messages: ``generate_audience.py
--messages``) and the tags page (subscribers per tag over eleven million tag values).
The database is measured as the migrations leave it (including the trigram indexes on
``UPPER(name)`` and ``phone``); the server's sessions run with the application's
``DATABASE_PG_SETTINGS``. The report lists the subscriber table's indexes with their sizes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench SECRET_KEY=bench \\
    FIELD_ENCRYPTION_KEY=... .venv/bin/python bench/pages_bench.py
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

import benchlib
from benchlib import Result, measure

benchlib.setup_django()

import requests  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from controlpanel.models import Project  # noqa: E402
from controlpanel.services import SYSTEM, create_api_key, revoke_api_key  # noqa: E402
from subscribers.models import Subscriber  # noqa: E402

LIST_TARGET_MS = 150


def subscriber_indexes() -> list[str]:
    with connection.cursor() as cur:
        cur.execute(
            """SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)), pg_get_indexdef(c.oid)
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE i.indrelid = 'subscribers_subscriber'::regclass ORDER BY c.relname"""
        )
        return [f"- `{name}` ({size}): `{definition}`" for name, size, definition in cur.fetchall()]


def slowest_query_plans(
    owner, pages: list[tuple[str, str, bool]], table: str = "subscribers_subscriber", slowest: int = 1
) -> list[tuple[str, str]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the ``slowest`` queries on ``table`` (any table: "") each page
    sends, rendered in this process."""
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST=benchlib.HOST)
    client.force_login(owner)
    plans = []
    for label, path, htmx in pages:
        headers = {"HX-Request": "true", "HX-Target": "subscriber-results"} if htmx else {}
        client.get(path, headers=headers)  # warm, like the measurements
        with CaptureQueriesContext(connection) as queries:
            client.get(path, headers=headers)
        ours = [
            q
            for q in queries.captured_queries
            if (not table or f'"{table}"' in q["sql"])
            and q["sql"].startswith("SELECT")  # not the estimates' EXPLAINs, nor savepoints
        ]
        for query in sorted(ours, key=lambda q: -float(q["time"]))[:slowest]:
            sql = query["sql"]
            with connection.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                plans.append((label, sql + "\n\n" + "\n".join(row[0] for row in cur.fetchall())))
    return plans


def next_link(text: str) -> str | None:
    """The href of the list's "next page" link (a keyset cursor)."""
    for href in re.findall(r'href="([^"]*[?&](?:amp;)?after=[^"]*)"', text):
        return html.unescape(href)
    return None


def samples(project: Project) -> dict[str, str]:
    """Search terms and ids taken from the data, so every search has real matches."""
    with connection.cursor() as cur:
        # A subscriber with many events: the heaviest subscriber page.
        cur.execute(
            """SELECT s.public_id, s.phone, s.name FROM subscribers_subscriber s
               WHERE s.project_id = %s AND s.id = (
                 SELECT subscriber_id FROM subscribers_event WHERE project_id = %s
                 AND occurred_at > now() - interval '1 day'
                 GROUP BY subscriber_id ORDER BY count(*) DESC LIMIT 1)""",
            [project.pk, project.pk],
        )
        heavy_id, heavy_phone, heavy_name = cur.fetchone()
    some = Subscriber.objects.for_project(project).order_by("id")[500_000:500_001].get()
    return {
        "heavy_id": str(heavy_id),
        "phone": some.phone,
        "phone_prefix": some.phone[:8],  # "+4915xx" and a digit: thousands of matches
        "phone_digits": some.phone[-7:],  # a number fragment somebody read out
        "last_name": some.name.split()[-1],
        "full_name": some.name,
        "rare": "Zzyzx",  # no match: the search must look at everything
        "some_id": str(some.public_id),
        "heavy_phone": heavy_phone,
        "heavy_name": heavy_name,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-slug", default="bench")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument(
        "--no-plans", dest="plans", action="store_false", help="skip EXPLAIN ANALYZE of the pages' queries"
    )
    parser.add_argument("--wait-load", type=float, default=0, help="first wait (<= 20 min) for a lower load")
    parser.add_argument("--out", type=Path, default=benchlib.BENCH_DIR / "pages_bench.md")
    args = parser.parse_args()
    project = Project.objects.filter(slug=args.project_slug).first()
    if project is None:
        sys.exit(f"No project {args.project_slug!r}: run bench/generate_audience.py first.")
    if args.wait_load:
        benchlib.wait_for_load(args.wait_load)
    started = timezone.now()
    load_before = benchlib.load_average()
    owner, password = benchlib.owner_login(project)
    s = samples(project)
    list_url = f"/p/{project.slug}/subscribers/"
    results: list[Result] = []
    notes: list[str] = []
    pages: list[tuple[str, str, bool]] = []

    key, raw = create_api_key(project=project, name="pages benchmark", actor=SYSTEM)
    try:
        with benchlib.granian(args.port) as base, requests.Session() as http:
            benchlib.login(http, base, owner.email, password)

            def get(path: str, *, htmx: bool = False) -> requests.Response:
                headers = {"HX-Request": "true", "HX-Target": "subscriber-results"} if htmx else {}
                response = http.get(base + path, headers=headers, timeout=60, allow_redirects=False)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path} answered {response.status_code}")
                return response

            api = requests.Session()
            api.headers["Authorization"] = f"Bearer {raw}"

            def server_cpu(pid=base.pid) -> float:
                pids = benchlib.process_tree(pid) + benchlib.database_backends(exclude_own=True)
                return benchlib.process_cpu(pids)

            def run(name: str, fn, **kw) -> None:
                results.append(
                    measure(name, fn, repeat=args.repeat, warmup=args.warmup, cpu=server_cpu, **kw)
                )

            first = get(list_url)
            page_two = next_link(first.text)
            pages += [
                ("list, first page", list_url, False),
                ("list, htmx partial (filters and paging swap this)", list_url, True),
            ]
            if page_two:
                later = get(page_two)
                pages.append(("list, next page (keyset cursor)", page_two, False))
                page_three = next_link(later.text)
                if page_three:
                    pages.append(("list, third page (keyset cursor)", page_three, False))
            else:
                notes.append("the list page has no next-page link with an `after=` cursor")
            for label, params in [
                (f"search ?q= phone prefix {s['phone_prefix']}", {"q": s["phone_prefix"]}),
                (f"search ?q= full phone {s['phone']}", {"q": s["phone"]}),
                (f"search ?q= last 7 digits {s['phone_digits']}", {"q": s["phone_digits"]}),
                (f"search ?q= name {s['last_name']}", {"q": s["last_name"]}),
                (f"search ?q= full name {s['full_name']}", {"q": s["full_name"]}),
                (f"search ?q= no match {s['rare']}", {"q": s["rare"]}),
                ("filter ?consent=opted_in", {"consent": "opted_in"}),
                ("filter ?tag=city&value=Berlin", {"tag": "city", "value": "Berlin"}),
            ]:
                pages.append((label, list_url + "?" + requests.compat.urlencode(params), False))
            for label, path, htmx in pages:
                match = re.search(r"(More than [\d,]+|[\d,]+) (?:subscribers?)", get(path, htmx=htmx).text)
                run(
                    label,
                    lambda p=path, h=htmx: get(p, htmx=h),
                    target_ms=LIST_TARGET_MS,
                    note=match.group(0) if match else "",
                )
            overview = [
                ("dashboard (subscriber counts, 14-day message chart)", f"/p/{project.slug}/"),
                ("tags page (subscribers per tag)", f"{list_url}tags/"),
            ]
            for label, path in overview:
                counts = re.findall(r'data-testid="(?:metric-\d+|usage)">([^<]*)<', get(path).text)
                run(label, lambda p=path: get(p), target_ms=LIST_TARGET_MS, note=", ".join(counts[:3]))
            detail = f"{list_url}{s['heavy_id']}/"
            status = http.get(base + detail, timeout=60).status_code
            if status == 200:
                run(
                    "subscriber page (the most active subscriber of the last day)",
                    lambda d=detail: get(d),
                )
            else:
                notes.append(f"the subscriber page {detail} answered {status}: not measured")
            url = f"{base}/api/v1/subscribers/{s['some_id']}"
            probe = api.get(url, timeout=30)
            if probe.status_code == 200:

                def call(url=url) -> None:
                    api.get(url, timeout=30).raise_for_status()

                run("API GET /api/v1/subscribers/<id>", call)
            else:
                notes.append(f"GET /api/v1/subscribers/<id> answered {probe.status_code}: not measured")
        plans = []
        if args.plans:
            plans = slowest_query_plans(owner, pages)
            plans += slowest_query_plans(owner, [(label, path, False) for label, path in overview], "", 3)
    finally:
        revoke_api_key(project=project, key=key, actor=SYSTEM)
        benchlib.owner_logout(owner)

    options = " ".join(f"{k}={v}" for k, v in benchlib.app_pg_options()) or "(none)"
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC, project `{project.slug}`, {args.repeat} timed requests after "
        f"{args.warmup} warm-up requests each, one client, logged in as the owner.",
        f"PostgreSQL server settings: {benchlib.describe_settings(benchlib.server_settings())}",
        f"Application sessions (DATABASE_PG_SETTINGS): {options}",
        "Load average (1, 5, 15 min; 2 cores shared with other work): "
        f"{load_before} at the start, {benchlib.load_average()} at the end",
        "",
        "Indexes of subscribers_subscriber (as migrated):",
        *subscriber_indexes(),
    ]
    lines += ["", benchlib.table(results)]
    lines += [f"\nNote: {n}" for n in dict.fromkeys(notes)]
    for label, plan in plans:
        lines += ["", f"#### {label}: one of its slowest queries", "", "```", plan, "```"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"Report written to {args.out}")


if __name__ == "__main__":
    main()
