"""Subscriber list, search and detail pages at a million subscribers, through HTTP.

Logs in as the bench project's owner with a ``requests`` session (a fresh random password is
set for the run), against granian serving the WSGI app on 127.0.0.1, and times whole requests:
the list (first page, a page further on through its keyset link, the htmx partial), searches
(``?q=`` a phone prefix, a full number, a name), filters, the subscriber page and
``GET /api/v1/subscribers/<id>``. Target from issue 3: list and search pages p95 < 150 ms.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench SECRET_KEY=bench \\
    FIELD_ENCRYPTION_KEY=... .venv/bin/python bench/pages_bench.py
"""

from __future__ import annotations

import argparse
import html
import os
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
# Tried with --variants: a trigram index for phone-number fragments ("…0019631", "+4915110"),
# which the list's search matches with LIKE '%digits%' (name fragments have one already).
PHONE_TRGM = "CREATE INDEX bench_subscriber_phone_trgm ON subscribers_subscriber USING gin ((phone::text) gin_trgm_ops)"
VARIANTS = {"default": "the migrations' indexes", "phone-trgm": "+ trigram index on phone"}


def apply_variant(key: str) -> str:
    with connection.cursor() as cur:
        cur.execute("DROP INDEX IF EXISTS bench_subscriber_phone_trgm")
        if key == "phone-trgm":
            cur.execute(PHONE_TRGM)
        # Statistics of expression indexes (the migration's trigram index on UPPER(name)) exist
        # only after an ANALYZE; without them the planner scans the table for a rare name.
        cur.execute("ANALYZE subscribers_subscriber")
        if key == "phone-trgm":
            cur.execute("SELECT pg_size_pretty(pg_relation_size('bench_subscriber_phone_trgm'))")
            return cur.fetchone()[0]
    return ""


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
    parser.add_argument("--variants", default="default", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--keep", action="store_true", help="leave the last variant's index in place")
    parser.add_argument("--wait-load", type=float, default=0, help="first wait (<= 20 min) for a lower load")
    parser.add_argument("--out", type=Path, default=benchlib.BENCH_DIR / "pages_bench.md")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:
        sys.exit(f"Unknown variant: {', '.join(unknown)}")
    project = Project.objects.filter(slug=args.project_slug).first()
    if project is None:
        sys.exit(f"No project {args.project_slug!r}: run bench/generate_audience.py first.")
    if args.wait_load:
        benchlib.wait_for_load(args.wait_load)
    started = timezone.now()
    owner, password = benchlib.owner_login(project)
    s = samples(project)
    list_url = f"/p/{project.slug}/subscribers/"
    results: list[Result] = []
    notes: list[str] = []
    sizes: dict[str, str] = {}

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
            for variant in variants:
                print(f"Variant {variant}: {VARIANTS[variant]}")
                sizes[variant] = apply_variant(variant)
                suffix = "" if len(variants) == 1 else f" [{variant}]"

                def server_cpu(pid=base.pid) -> float:
                    pids = benchlib.process_tree(pid) + benchlib.database_backends(exclude_own=True)
                    return benchlib.process_cpu(pids)

                def run(name: str, fn, suffix=suffix, **kw) -> None:
                    results.append(
                        measure(
                            name + suffix, fn, repeat=args.repeat, warmup=args.warmup, cpu=server_cpu, **kw
                        )
                    )

                first = get(list_url)
                page_two = next_link(first.text)
                pages = [
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
                    match = re.search(
                        r"(More than [\d,]+|[\d,]+) (?:subscribers?)", get(path, htmx=htmx).text
                    )
                    run(
                        label,
                        lambda p=path, h=htmx: get(p, htmx=h),
                        target_ms=LIST_TARGET_MS,
                        note=match.group(0) if match else "",
                    )
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
    finally:
        revoke_api_key(project=project, key=key, actor=SYSTEM)
        benchlib.owner_logout(owner)
        if not args.keep:
            apply_variant("default")

    settings = benchlib.pg_settings()
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC, project `{project.slug}`, {args.repeat} timed requests after "
        f"{args.warmup} warm-up requests each, one client, logged in as the owner.",
        "PostgreSQL: " + ", ".join(f"{k} = {v}" for k, v in settings.items()),
        "Load average at the end (1, 5, 15 min; 2 cores shared with other work): "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "",
        "Variants: " + "; ".join(f"`{v}`: {VARIANTS[v]}" for v in variants),
    ]
    if "phone-trgm" in variants:
        lines.append(f"`phone-trgm` creates `{PHONE_TRGM}` ({sizes['phone-trgm']}).")
    lines += ["", benchlib.table(results)]
    lines += [f"\nNote: {n}" for n in dict.fromkeys(notes)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"Report written to {args.out}")


if __name__ == "__main__":
    main()
