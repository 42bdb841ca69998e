"""Segment count latency at a million subscribers: hand-written SQL, the compiler, the API, the builder.

Two rules from issue 3 (targets are p95 of the whole request through the API or the builder):

(a) ``T("city", eq, "Berlin") * E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")``   < 100 ms
(b) the worst case, NOT performed + count >= 3 + attribute range:
    ``E("OrderPlaced", gte, 3, 90d, "amount" between [20, 60]) \\ E("AppOpened", gte, 1, 7d)`` < 700 ms
    plus (b2), the same with ``T("vip", eq, true) *`` in front.

Paths (``--paths``): ``sql``, hand-written SQL of the shape the compiler emits (id sets:
INTERSECT / EXCEPT, attribute conditions on ``facets``), the database's share of a count;
``compiler``, ``count(project, parse_rule(text))`` in this process; ``api``,
``POST /api/v1/segments/count`` through granian on 127.0.0.1; ``builder``, the segment
builder's live preview ``GET /p/<slug>/segments/preview/?source=text&text=...`` (htmx, logged in;
it only counts); ``sample``, the request the preview's HTML then makes for the ten newest
matching subscribers (its ``hx-get`` URL, ``hx-trigger="load"``).

Variants (``--variants``), all in one run so their ratios compare like with like:

- ``migrated``: the migrations' indexes and statistics; sessions with the application's
  ``DATABASE_PG_SETTINGS`` (settings.py's default unless the environment sets it).
- ``server-defaults``: the same indexes; sessions with the server's own planner settings, as
  with ``DATABASE_PG_SETTINGS=""``: granian is started with that, and this process's connection
  ``SET``s the server's values for the variant (and ``RESET``s them afterwards).
- ``attribute-indexes``: ``migrated`` plus the attribute index on ``OrderPlaced.cuisine``, made
  by the product's own service (``attribute_indexes.request_index`` and ``build``). (An index on
  ``OrderPlaced.amount`` was measured too and gained nothing; the product indexes texts and
  yes/no attributes only since.) Other variants run without them (``drop``); they are dropped at the end
  unless ``--keep``.

Warm cache: every measurement runs ``--warmup`` times unmeasured, then ``--repeat`` times. The
markdown report (tables, settings, load, EXPLAIN (ANALYZE, BUFFERS) plans of the compiled count
and of the sample query per variant) goes to ``--out``.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench SECRET_KEY=bench \\
    FIELD_ENCRYPTION_KEY=... .venv/bin/python bench/segment_bench.py --repeat 20 --warmup 3
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import benchlib
from benchlib import Result, measure

benchlib.setup_django()

import requests  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from controlpanel.models import Project  # noqa: E402
from controlpanel.services import SYSTEM, create_api_key, revoke_api_key  # noqa: E402
from subscribers import attribute_indexes, segments  # noqa: E402
from subscribers.models import AttributeIndex, AttributeIndexStatus, TagDefinition  # noqa: E402
from subscribers.segment_views import SAMPLE_SIZE  # noqa: E402


@dataclass
class Rule:
    key: str
    title: str
    text: str
    sql: str  # hand-written, same meaning; params: project, tag ids by name, now
    target_ms: float


# Written by hand in the shape the compiler emits (so the difference between the `sql` and
# `compiler` rows is parsing, validating, resolving tags and events, and building the query).
# Tag rows need no project filter (the tag id is the project's); events carry project_id.
# (b): OrderPlaced >= 3 times in 90 days with an amount range, EXCEPT AppOpened in 7 days; (b2) is
# the same behind a tag. Set operations bind left to right, as the compiler's output does.
_WORST_CASE_SQL = """
            SELECT e.subscriber_id FROM subscribers_event e
            WHERE e.project_id = %(project)s AND e.name = 'OrderPlaced'
              AND e.occurred_at >= %(now)s - interval '90 days'
              AND e.facets -> 'amount' >= '20' AND e.facets -> 'amount' <= '60'
            GROUP BY e.subscriber_id HAVING count(*) >= 3
          EXCEPT
            SELECT e.subscriber_id FROM subscribers_event e
            WHERE e.project_id = %(project)s AND e.name = 'AppOpened'
              AND e.occurred_at >= %(now)s - interval '7 days'
"""

RULES = [
    Rule(
        "a",
        "tag city = Berlin AND OrderPlaced with cuisine = asian at least once in the last 30 days",
        'T("city", eq, "Berlin") * E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")',
        """
        SELECT count(*) FROM (
            SELECT v.subscriber_id FROM subscribers_tagvalue v
            WHERE v.tag_id = %(tag_city)s AND v.value_folded = 'berlin'
          INTERSECT
            SELECT e.subscriber_id FROM subscribers_event e
            WHERE e.project_id = %(project)s AND e.name = 'OrderPlaced'
              AND e.occurred_at >= %(now)s - interval '30 days' AND e.facets -> 'cuisine' = '"asian"'
        ) matching
        """,
        100,
    ),
    Rule(
        "b",
        "worst case: OrderPlaced >= 3 times in 90 days with amount between 20 and 60, "
        "AND NOT AppOpened in the last 7 days",
        'E("OrderPlaced", gte, 3, 90d, "amount" between [20, 60]) \\ E("AppOpened", gte, 1, 7d)',
        f"SELECT count(*) FROM ({_WORST_CASE_SQL}) matching",  # noqa: S608 - constant SQL
        700,
    ),
    Rule(
        "b2",
        "worst case with a tag: vip = true AND (b)",
        'T("vip", eq, true) * E("OrderPlaced", gte, 3, 90d, "amount" between [20, 60]) '
        '\\ E("AppOpened", gte, 1, 7d)',
        "SELECT count(*) FROM ("  # noqa: S608 - constant SQL
        " SELECT v.subscriber_id FROM subscribers_tagvalue v WHERE v.tag_id = %(tag_vip)s AND v.value_bool"
        f" INTERSECT {_WORST_CASE_SQL}) matching",
        700,
    ),
]

# The attributes these rules filter on, indexed in the `attribute-indexes` variant.
ATTRIBUTES = [("OrderPlaced", "cuisine")]


@dataclass
class Variant:
    key: str
    title: str
    server_defaults: bool = False  # sessions without the app's DATABASE_PG_SETTINGS
    attribute_indexes: bool = False


VARIANTS = {
    v.key: v
    for v in [
        Variant("migrated", "the migrations' indexes and statistics, sessions with DATABASE_PG_SETTINGS"),
        Variant(
            "server-defaults",
            'the same indexes, sessions with the server\'s own settings (DATABASE_PG_SETTINGS="")',
            server_defaults=True,
        ),
        Variant(
            "attribute-indexes",
            "migrated + the attribute index on OrderPlaced.cuisine",
            attribute_indexes=True,
        ),
    ]
}

PATHS = {
    "sql": "hand-written SQL",
    "compiler": "compiler: count(project, parse_rule(text))",
    "api": "API: POST /api/v1/segments/count",
    "builder": "builder: GET segments/preview/ (count)",
    "sample": "builder: GET segments/preview/sample/ (10 newest)",
}
HTTP_PATHS = ("api", "builder", "sample")


def sql_params(project: Project, now: datetime) -> dict:
    params = {"project": project.pk, "now": now}
    for definition in TagDefinition.objects.for_project(project):
        params[f"tag_{definition.name}"] = definition.pk
    return params


def run_sql(sql: str, params: dict | None = None) -> int:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def explain(sql: str, params: dict | None = None, *, analyze: bool = True) -> str:
    with connection.cursor() as cur:
        cur.execute(("EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN ") + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())


def last_query(fn) -> tuple[str, object]:
    """The exact SQL of the last query ``fn`` sends (psycopg binds client-side: what the server runs)."""
    with CaptureQueriesContext(connection) as queries:
        value = fn()
    return queries.captured_queries[-1]["sql"], value


def compiled_sql(project: Project, text: str) -> tuple[str, int]:
    return last_query(lambda: segments.count(project, segments.parse_rule(text)))


def sample_sql(project: Project, text: str) -> list[str]:
    """The sample request's queries, as ``segment_views.segment_sample`` sends them: the newest
    ids (or rows), then the rows of those ids and the count of the reachable matches."""
    checked = segments.validate_rule(project, segments.parse_rule(text))
    with CaptureQueriesContext(connection) as queries:
        segments.sample(project, checked, limit=SAMPLE_SIZE)
    return [q["sql"] for q in queries.captured_queries[-3:]]


@contextmanager
def session(variant: Variant):
    """This process's connection with the variant's planner settings (then back to the app's).

    Options given at connection time are what RESET returns to, so the server's own values
    are read from a connection without them and SET explicitly.
    """
    names = [name for name, _ in benchlib.app_pg_options() if re.fullmatch(r"[a-z_.]+", name)]
    if variant.server_defaults:
        server = benchlib.server_settings(names)
        with connection.cursor() as cur:
            for name in names:
                cur.execute("SELECT set_config(%s, %s, false)", [name, server[name]])
    try:
        yield
    finally:
        if variant.server_defaults:
            with connection.cursor() as cur:
                for name in names:
                    cur.execute(f"RESET {name}")


class Bench:
    def __init__(self, args: argparse.Namespace, project: Project):
        self.args, self.project = args, project
        self.results: list[tuple[str, str, str, Result]] = []  # rule, variant, path, result
        self.notes: list[str] = []
        self.plans: list[tuple[str, str]] = []
        self.counts: dict[str, dict[str, int]] = {}
        self.parallel: dict[tuple[str, str, str], bool] = {}
        self.server = benchlib.server_settings()
        self.sessions: dict[str, dict[str, str]] = {}  # variant -> settings its sessions ran with
        self.loads: dict[str, tuple[str, str]] = {}  # variant -> load average before, after

    def is_parallel(self, rule: Rule, variant: Variant, kind: str, sql, params: dict | None = None) -> bool:
        """Whether the plan of ``sql`` (or of ``sql()``, the SQL it returns) runs parallel workers."""
        key = (rule.key, variant.key, kind)
        if key not in self.parallel:
            self.parallel[key] = "Gather" in explain(sql() if callable(sql) else sql, params, analyze=False)
        return self.parallel[key]

    def m(self, rule: Rule, variant: Variant, path: str, fn, n: int, cpu, parallel: bool) -> None:
        target = rule.target_ms if path in ("api", "builder") else None
        name = f"({rule.key}) {PATHS[path]} [{variant.key}]"
        result = measure(
            name, fn, repeat=self.args.repeat, warmup=self.args.warmup, target_ms=target, cpu=cpu
        )
        if path == "sample":
            result.note = f"{SAMPLE_SIZE} newest of {n:,}"
        else:
            self.counts.setdefault(rule.key, {})[f"{path}/{variant.key}"] = n
            result.note = f"{n:,} subscribers"
        if parallel:
            result.note += "; parallel plan, CPU excludes its workers"
        self.results.append((rule.key, variant.key, path, result))

    def own_cpu(self):
        """CPU of this process and its database backend: the work of the in-process paths."""
        backend = run_sql("SELECT pg_backend_pid()")
        return lambda: benchlib.process_cpu([backend, os.getpid()])

    def sql_phase(self, variant: Variant) -> None:
        params = sql_params(self.project, timezone.now())
        cpu = self.own_cpu()
        for rule in RULES:
            n = run_sql(rule.sql, params)
            parallel = self.is_parallel(rule, variant, "sql", rule.sql, params)
            self.m(rule, variant, "sql", lambda r=rule: run_sql(r.sql, params), n, cpu, parallel)

    def compiled_parallel(self, rule: Rule, variant: Variant) -> bool:
        return self.is_parallel(rule, variant, "compiled", lambda: compiled_sql(self.project, rule.text)[0])

    def compiler_phase(self, variant: Variant) -> None:
        cpu = self.own_cpu()
        for rule in RULES:
            n = compiled_sql(self.project, rule.text)[1]

            def call(r=rule) -> int:
                return segments.count(self.project, segments.parse_rule(r.text))

            self.m(rule, variant, "compiler", call, n, cpu, self.compiled_parallel(rule, variant))

    def plan_phase(self, variant: Variant) -> None:
        """EXPLAIN (ANALYZE, BUFFERS) of the compiled count and of the sample query, warm."""
        for rule in RULES:
            sql, _ = compiled_sql(self.project, rule.text)
            run_sql(sql)  # warm, like every measurement
            self.plans.append((f"({rule.key}) compiled count [{variant.key}]", f"{sql}\n\n{explain(sql)}"))
            if "sample" in self.args.paths:
                for i, sql in enumerate(sample_sql(self.project, rule.text), 1):
                    title = f"({rule.key}) sample query {i} [{variant.key}]"
                    self.plans.append((title, f"{sql}\n\n{explain(sql)}"))

    def http_phase(self, variant: Variant) -> None:
        """The API and the builder (preview, then its sample request), through granian."""
        env = {"DATABASE_PG_SETTINGS": ""} if variant.server_defaults else None
        key, raw = create_api_key(project=self.project, name="segment benchmark", actor=SYSTEM)
        owner, password = benchlib.owner_login(self.project)
        try:
            with benchlib.granian(self.args.port, env=env) as base, requests.Session() as http:
                # Server side: granian's processes and their database backends (not this client).
                self.server_cpu = lambda: benchlib.process_cpu(
                    benchlib.process_tree(base.pid) + benchlib.database_backends(exclude_own=True)
                )
                if "api" in self.args.paths:
                    http.headers["Authorization"] = f"Bearer {raw}"
                    self.api_rounds(variant, http, f"{base}/api/v1/segments/count")
                if {"builder", "sample"} & set(self.args.paths):
                    with requests.Session() as panel:
                        benchlib.login(panel, base, owner.email, password)
                        self.builder_rounds(variant, panel, base)
        finally:
            revoke_api_key(project=self.project, key=key, actor=SYSTEM)
            benchlib.owner_logout(owner)

    def api_rounds(self, variant: Variant, http: requests.Session, url: str) -> None:
        for rule in RULES:
            response = http.post(url, json={"rule": rule.text}, timeout=60)
            if response.status_code != 200:
                self.skip(
                    rule, variant, "API", f"POST {url} answered {response.status_code}: {response.text[:200]}"
                )
                continue

            def call(r=rule) -> None:
                http.post(url, json={"rule": r.text}, timeout=60).raise_for_status()

            n = response.json()["count"]
            self.m(rule, variant, "api", call, n, self.server_cpu, self.compiled_parallel(rule, variant))

    def builder_rounds(self, variant: Variant, panel: requests.Session, base: str) -> None:
        url = f"{base}/p/{self.project.slug}/segments/preview/"
        headers = {"HX-Request": "true", "HX-Target": "segment-preview"}
        for rule in RULES:
            params = {"source": "text", "text": rule.text}
            response = panel.get(url, params=params, headers=headers, timeout=60)
            found = re.search(r'data-count="(\d+)"', response.text)
            if response.status_code != 200 or found is None:
                self.skip(
                    rule, variant, "builder", f"GET {url} answered {response.status_code} without a count"
                )
                continue
            n = int(found.group(1))
            if "builder" in self.args.paths:

                def preview(p=params) -> None:
                    panel.get(url, params=p, headers=headers, timeout=60).raise_for_status()

                self.m(
                    rule,
                    variant,
                    "builder",
                    preview,
                    n,
                    self.server_cpu,
                    self.compiled_parallel(rule, variant),
                )
            if "sample" not in self.args.paths:
                continue
            lazy = re.search(
                r'hx-get="([^"]*/segments/preview/sample/[^"]*)"[^>]*hx-trigger="load"', response.text
            )
            if lazy is None:
                self.skip(
                    rule, variant, "sample", "the preview names no sample request (hx-get, hx-trigger=load)"
                )
                continue
            sample_url = base + html.unescape(lazy.group(1))
            probe = panel.get(sample_url, headers=headers, timeout=60)
            if probe.status_code != 200 or 'data-testid="audience-sample"' not in probe.text:
                self.skip(
                    rule, variant, "sample", f"GET {sample_url} answered {probe.status_code} without a sample"
                )
                continue

            def sample(u=sample_url) -> None:
                panel.get(u, headers=headers, timeout=60).raise_for_status()

            parallel = self.is_parallel(
                rule, variant, "sample", lambda r=rule: sample_sql(self.project, r.text)[0]
            )
            self.m(rule, variant, "sample", sample, n, self.server_cpu, parallel)

    def skip(self, rule: Rule, variant: Variant, what: str, why: str) -> None:
        self.notes.append(f"({rule.key}) {what} not measured [{variant.key}]: {why}")
        print(f"  {why}", flush=True)

    def run(self, variant: Variant) -> None:
        before = benchlib.load_average()
        requested_before = set(AttributeIndex.objects.for_project(self.project).values_list("pk", flat=True))
        try:
            self.measure_variant(variant)
        finally:
            # A count slower than 100 ms asks for attribute indexes, as the product does; with no
            # worker they stay requests. Remove them, so that no later variant (or a worker on
            # the same database) finds an index the variant did not mean to have.
            unbuilt = AttributeIndex.objects.for_project(self.project).exclude(pk__in=requested_before)
            for row in unbuilt.exclude(status=AttributeIndexStatus.READY):
                self.notes.append(
                    f"[{variant.key}] a slow count asked for an index on {row.event_name}.{row.attribute} "
                    "(as the product does); the request was removed unbuilt"
                )
                row.delete()
        self.loads[variant.key] = (before, benchlib.load_average())

    def measure_variant(self, variant: Variant) -> None:
        with session(variant):
            names = [name for name, _ in benchlib.app_pg_options()] or ["work_mem", "random_page_cost", "jit"]
            self.sessions[variant.key] = benchlib.session_settings(names)
            if "sql" in self.args.paths:
                self.sql_phase(variant)
            if "compiler" in self.args.paths:
                self.compiler_phase(variant)
            if set(HTTP_PATHS) & set(self.args.paths):
                self.http_phase(variant)
            if self.args.plans:
                self.plan_phase(variant)


def attribute_index_rows(project: Project) -> list[AttributeIndex]:
    rows = AttributeIndex.objects.for_project(project)
    return [row for row in rows if (row.event_name, row.attribute) in ATTRIBUTES]


def apply_variant(project: Project, variant: Variant) -> list[tuple[str, str, float, str]]:
    """Attribute indexes present (built by the product's service) or absent, as the variant says."""
    made = []
    if not variant.attribute_indexes:
        for row in attribute_index_rows(project):
            if row.status == AttributeIndexStatus.PENDING:
                # Requested, never built (no worker ran): there is no index to drop.
                print(f"  removing the unbuilt index request {row.event_name}.{row.attribute}", flush=True)
                row.delete()
                continue
            print(f"  dropping attribute index {row.event_name}.{row.attribute} ({row.db_name})", flush=True)
            attribute_indexes.drop(row.pk)
        return made
    for event_name, attribute in ATTRIBUTES:
        row = next((r for r in attribute_index_rows(project) if r.attribute == attribute), None)
        if row is None:
            row = attribute_indexes.request_index(
                project=project, event_name=event_name, attribute=attribute, actor=SYSTEM
            )
        seconds = 0.0
        if row.status != AttributeIndexStatus.READY:
            start = time.perf_counter()
            attribute_indexes.build(row.pk)
            seconds = time.perf_counter() - start
            row.refresh_from_db()
            if row.status != AttributeIndexStatus.READY:
                sys.exit(f"Attribute index {event_name}.{attribute} is {row.status}: {row.error}")
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pg_get_indexdef(%s::regclass), pg_size_pretty(pg_relation_size(%s::regclass))",
                [row.db_name, row.db_name],
            )
            definition, size = cur.fetchone()
        print(
            f"  {row.db_name} ({event_name}.{attribute}): {size}"
            + (f", built in {seconds:.0f} s" if seconds else "")
        )
        made.append((f"{event_name}.{attribute}", definition, seconds, size))
    return made


def database_objects() -> list[str]:
    """The indexes on events and tag values and the extended statistics (not attribute indexes), with sizes."""
    with connection.cursor() as cur:
        cur.execute(
            """SELECT c.relname, pg_size_pretty(pg_relation_size(c.oid)), pg_get_indexdef(c.oid)
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
               WHERE t.relname IN ('subscribers_event', 'subscribers_tagvalue')
                 AND c.relname NOT LIKE 'evattr%%' ORDER BY t.relname, c.relname"""
        )
        lines = [f"- `{name}` ({size}): `{definition}`" for name, size, definition in cur.fetchall()]
        cur.execute("SELECT stxname FROM pg_statistic_ext WHERE stxname NOT LIKE 'evattr%%' ORDER BY 1")
        lines += [f"- statistics `{name}`" for (name,) in cur.fetchall()]
    return lines


def report(bench: Bench, args: argparse.Namespace, made: dict, started: datetime, objects: list[str]) -> str:
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC, project `{args.project_slug}`, {args.repeat} timed runs after "
        f"{args.warmup} warm-up runs each; one client, one request at a time.",
        f"PostgreSQL server settings: {benchlib.describe_settings(bench.server)}",
        f"Application sessions (DATABASE_PG_SETTINGS): "
        f"{' '.join(f'{k}={v}' for k, v in benchlib.app_pg_options()) or '(none)'}",
        "",
        "Variants (session settings as measured in this process; load average 1/5/15 min before and "
        "after, 2 cores shared with other work):",
    ]
    for key in args.variants:
        before, after = bench.loads.get(key, ("?", "?"))
        lines.append(
            f"- `{key}`: {VARIANTS[key].title}; {benchlib.describe_settings(bench.sessions.get(key, {}))}; "
            f"load {before} -> {after}"
        )
    lines += ["", "Indexes and statistics of the migrations on events and tag values:", *objects]
    built = {name: info for infos in made.values() for name, *info in infos}
    if built:
        lines += ["", "Attribute indexes of the `attribute-indexes` variant (`attribute_indexes.build`):"]
        for name, (definition, seconds, size) in built.items():
            lines.append(
                f"- {name}: `{definition}` ({size}" + (f", built in {seconds:.0f} s)" if seconds else ")")
            )
    for rule in RULES:
        rows = [(v, p, r) for key, v, p, r in bench.results if key == rule.key]
        if not rows:
            continue
        lines += ["", f"**({rule.key}) {rule.title}**: `{rule.text}`", "", benchlib.TABLE_HEAD]
        for variant, path, result in rows:
            result.name = f"{PATHS[path]} [{variant}]"
            lines.append(result.row())
    lines += [
        "",
        "Counts per path and variant (they must agree, give or take the subscribers whose events "
        "leave a window while the run lasts): " + json.dumps(bench.counts),
    ]
    lines += [f"\nNote: {n}" for n in bench.notes]
    lines += ["", "Hand-written SQL:", ""]
    lines += [f"- ({rule.key}) `{' '.join(rule.sql.split())}`" for rule in RULES]
    for title, plan in bench.plans:
        lines += ["", f"#### {title}", "", "```", plan, "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-slug", default="bench")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated: {', '.join(VARIANTS)}"
    )
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated: {', '.join(PATHS)}")
    parser.add_argument("--keep", action="store_true", help="leave the attribute indexes in place")
    parser.add_argument("--no-plans", dest="plans", action="store_false", help="skip EXPLAIN ANALYZE")
    parser.add_argument("--wait-load", type=float, default=0, help="first wait (<= 20 min) for a lower load")
    parser.add_argument("--out", type=Path, default=benchlib.BENCH_DIR / "segment_bench.md")
    args = parser.parse_args()
    args.variants = args.variants.split(",")
    args.paths = args.paths.split(",")
    if unknown := [v for v in args.variants if v not in VARIANTS] + [p for p in args.paths if p not in PATHS]:
        sys.exit(f"Unknown variant or path: {', '.join(unknown)}")
    project = Project.objects.filter(slug=args.project_slug).first()
    if project is None:
        sys.exit(f"No project {args.project_slug!r}: run bench/generate_audience.py first.")
    if not attribute_indexes.supported():
        sys.exit("Attribute indexes need PostgreSQL.")
    if args.wait_load:
        benchlib.wait_for_load(args.wait_load)
    started = timezone.now()
    objects = database_objects()
    bench = Bench(args, project)
    made: dict = {}
    try:
        for key in args.variants:
            print(f"Variant {key}: {VARIANTS[key].title}", flush=True)
            made[key] = apply_variant(project, VARIANTS[key])
            bench.run(VARIANTS[key])
    finally:
        if not args.keep:
            apply_variant(project, VARIANTS["migrated"])
    for key, counts in bench.counts.items():
        low, high = min(counts.values()), max(counts.values())
        if high - low > max(2, high // 1000):  # windows end at "now", which moves during the run
            bench.notes.append(f"({key}) counts differ between paths: {counts}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(bench, args, made, started, objects))
    print(f"Report written to {args.out}")


if __name__ == "__main__":
    main()
