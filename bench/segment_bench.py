"""Segment count latency at a million subscribers: hand-written SQL, our compiler, the whole API request.

Two rules from issue 3 (targets are p95 of the whole request through the API):

(a) ``T("city", eq, "Berlin") * E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")``   < 100 ms
(b) the worst case, NOT performed + count >= 3 + attribute range:
    ``E("OrderPlaced", gte, 3, 90d, "amount" between [20, 60]) \\ E("AppOpened", gte, 1, 7d)`` < 700 ms
    plus (b2), the same with ``T("vip", eq, true) *`` in front.

Each is measured as (1) hand-written SQL with the same meaning, (2) ``count(project, parse_rule(text))``
in this process, (3) ``POST /api/v1/segments/count`` against granian serving the WSGI app on
127.0.0.1. Warm cache: every measurement runs ``--warmup`` times unmeasured, then ``--repeat``
times. ``--variants`` runs everything once per variant (extra statistics, indexes, database
settings; see VARIANTS), all in one run so ratios compare like with like; the variants' objects
are dropped again at the end unless ``--keep``.
The markdown report (tables and EXPLAIN (ANALYZE, BUFFERS) plans) goes to ``--out``.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench SECRET_KEY=bench \\
    FIELD_ENCRYPTION_KEY=... .venv/bin/python bench/segment_bench.py --variants default,covering
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import benchlib
from benchlib import Result, measure

benchlib.setup_django()

import requests  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count, QuerySet  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from controlpanel.models import Project  # noqa: E402
from controlpanel.services import SYSTEM, create_api_key, revoke_api_key  # noqa: E402
from subscribers.models import Event, Subscriber, TagDefinition, TagValue  # noqa: E402


@dataclass
class Rule:
    key: str
    title: str
    text: str
    sql: str  # hand-written, same meaning; params: project, tag ids by name, now
    target_ms: float | None


RULES = [
    Rule(
        "a",
        "tag city = Berlin AND OrderPlaced with cuisine = asian at least once in the last 30 days",
        'T("city", eq, "Berlin") * E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")',
        """
        SELECT count(*) FROM subscribers_subscriber s
        WHERE s.project_id = %(project)s
          AND EXISTS (SELECT 1 FROM subscribers_tagvalue v
                      WHERE v.subscriber_id = s.id AND v.tag_id = %(tag_city)s AND v.value_text = 'Berlin')
          AND EXISTS (SELECT 1 FROM subscribers_event e
                      WHERE e.subscriber_id = s.id AND e.project_id = %(project)s AND e.name = 'OrderPlaced'
                        AND e.occurred_at >= %(now)s - interval '30 days'
                        AND e.attributes -> 'cuisine' = '"asian"')
        """,
        100,
    ),
    Rule(
        "b",
        "worst case: OrderPlaced >= 3 times in 90 days with amount between 20 and 60, "
        "AND NOT AppOpened in the last 7 days",
        'E("OrderPlaced", gte, 3, 90d, "amount" between [20, 60]) \\ E("AppOpened", gte, 1, 7d)',
        """
        SELECT count(*) FROM subscribers_subscriber s
        WHERE s.project_id = %(project)s
          AND s.id IN (SELECT e.subscriber_id FROM subscribers_event e
                       WHERE e.project_id = %(project)s AND e.name = 'OrderPlaced'
                         AND e.occurred_at >= %(now)s - interval '90 days'
                         AND e.attributes -> 'amount' >= '20' AND e.attributes -> 'amount' <= '60'
                       GROUP BY e.subscriber_id HAVING count(*) >= 3)
          AND NOT EXISTS (SELECT 1 FROM subscribers_event e
                          WHERE e.subscriber_id = s.id AND e.project_id = %(project)s
                            AND e.name = 'AppOpened' AND e.occurred_at >= %(now)s - interval '7 days')
        """,
        700,
    ),
    Rule(
        "b2",
        "worst case with a tag: vip = true AND (b)",
        'T("vip", eq, true) * E("OrderPlaced", gte, 3, 90d, "amount" between [20, 60]) '
        '\\ E("AppOpened", gte, 1, 7d)',
        """
        SELECT count(*) FROM subscribers_subscriber s
        WHERE s.project_id = %(project)s
          AND EXISTS (SELECT 1 FROM subscribers_tagvalue v
                      WHERE v.subscriber_id = s.id AND v.tag_id = %(tag_vip)s AND v.value_bool)
          AND s.id IN (SELECT e.subscriber_id FROM subscribers_event e
                       WHERE e.project_id = %(project)s AND e.name = 'OrderPlaced'
                         AND e.occurred_at >= %(now)s - interval '90 days'
                         AND e.attributes -> 'amount' >= '20' AND e.attributes -> 'amount' <= '60'
                       GROUP BY e.subscriber_id HAVING count(*) >= 3)
          AND NOT EXISTS (SELECT 1 FROM subscribers_event e
                          WHERE e.subscriber_id = s.id AND e.project_id = %(project)s
                            AND e.name = 'AppOpened' AND e.occurred_at >= %(now)s - interval '7 days')
        """,
        700,
    ),
]

# Objects beyond the models' indexes, tried as variants (see --variants). Each is created only in
# this database and dropped again at the end unless --keep.
STATISTICS = {
    # String tags: how common a value is depends on the tag (Berlin is 14 % of "city", not of all
    # tag rows); without this the planner misjudges every tag condition by 10x.
    "bench_tagvalue_tag_text": "CREATE STATISTICS bench_tagvalue_tag_text (dependencies, mcv) "
    "ON tag_id, value_text FROM subscribers_tagvalue",
}
INDEXES = {
    # Generic: the models' (project, name, occurred_at) index, also covering the attributes, so
    # any event condition with attribute filters is an index-only scan in (name, time) order.
    "bench_event_name_time_attrs": "CREATE INDEX bench_event_name_time_attrs ON subscribers_event "
    "(project_id, name, occurred_at) INCLUDE (subscriber_id, attributes)",
    # Specific: one hot attribute of one event (the "partial expression index").
    # INCLUDE attributes lets PostgreSQL answer from the index alone: it only plans index-only
    # scans when every column the query names, here ``attributes``, is stored in the index.
    "bench_event_orderplaced_cuisine": "CREATE INDEX bench_event_orderplaced_cuisine ON subscribers_event "
    "(project_id, (attributes -> 'cuisine'), occurred_at) INCLUDE (subscriber_id, attributes) "
    "WHERE name = 'OrderPlaced'",
    # A range attribute goes after the time: the window bounds the scan, the range is checked on
    # the stored value instead of parsing every row's JSON.
    "bench_event_orderplaced_amount": "CREATE INDEX bench_event_orderplaced_amount ON subscribers_event "
    "(project_id, occurred_at, (attributes -> 'amount')) INCLUDE (subscriber_id, attributes) "
    "WHERE name = 'OrderPlaced'",
}
STATISTICS["bench_event_name_cuisine"] = (
    # A partial index's expression gets no statistics; without these the planner takes
    # "cuisine = asian" for 0.5 % of OrderPlaced rows instead of 18 % and picks nested loops.
    "CREATE STATISTICS bench_event_name_cuisine (mcv) ON name, (attributes -> 'cuisine') FROM subscribers_event"
)


@dataclass
class Variant:
    key: str
    title: str
    objects: tuple[str, ...] = ()
    settings: tuple[tuple[str, str], ...] = ()  # ALTER DATABASE ... SET, for new connections


HOT = ("bench_tagvalue_tag_text", "bench_event_name_time_attrs", "bench_event_orderplaced_cuisine",
       "bench_event_orderplaced_amount", "bench_event_name_cuisine")  # fmt: skip
# For a database that fits in RAM (this one does, 6 GB on 24 GB): random reads cost what sequential
# ones do; JIT compilation (~100 ms) never pays off for a count that takes a few hundred; and
# grouping a few hundred thousand events should not spill to disk at the default 4 MB.
TUNED = (("random_page_cost", "1.1"), ("jit", "off"), ("work_mem", "'32MB'"))

VARIANTS = {
    v.key: v
    for v in [
        Variant("default", "models' indexes only"),
        Variant("stats", "+ tag statistics", ("bench_tagvalue_tag_text",)),
        Variant(
            "covering",
            "+ tag statistics + event index covering attributes",
            ("bench_tagvalue_tag_text", "bench_event_name_time_attrs"),
        ),
        Variant("hot", "covering + hot-attribute indexes (OrderPlaced cuisine, amount) and statistics", HOT),
        Variant("tuned", "hot + planner settings for a cached database", HOT, TUNED),
        Variant("default-tuned", "models' indexes only + planner settings", (), TUNED),
        Variant(
            "covering-tuned",
            "covering + planner settings",
            ("bench_tagvalue_tag_text", "bench_event_name_time_attrs"),
            TUNED,
        ),
    ]
}


def sql_params(project: Project, now: datetime) -> dict:
    params = {"project": project.pk, "now": now}
    for definition in TagDefinition.objects.for_project(project):
        params[f"tag_{definition.name}"] = definition.pk
    return params


def run_sql(sql: str, params: dict) -> int:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def explain(sql: str, params: dict | None = None, *, analyze: bool = True) -> str:
    with connection.cursor() as cur:
        cur.execute(("EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN ") + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())


def compiled_sql(project: Project, text: str) -> tuple[str, int]:
    """The exact SQL ``count()`` sends (psycopg binds client-side: this is what the server runs)."""
    from subscribers.segments import count, parse_rule

    with CaptureQueriesContext(connection) as queries:
        n = count(project, parse_rule(text))
    return queries.captured_queries[-1]["sql"], n


class SetCompiler:
    """Prototype of a compiler shape this benchmark proposes: subscriber-id set algebra.

    The compiler under test filters the subscriber table with one EXISTS per condition, so
    PostgreSQL walks all of a project's subscribers (or probes per subscriber) even when the
    conditions' own indexes already name the few thousand that match. Here every condition
    becomes a query of subscriber ids (tag rows, event rows, grouped events, or, for anything
    else, the subscriber table filtered by the existing compiler's Q), AND becomes INTERSECT,
    OR UNION and AND NOT EXCEPT, and the count is ``SELECT COUNT(*) FROM (<set>)``. Still one
    query built by the ORM (QuerySet.intersection/union/difference), no SQL text. Tag and event
    rows carry the project already (tag ids and ``Event.project`` are the project's), so only
    a condition that needs subscriber columns reads the subscriber table.
    """

    def __init__(self, project: Project):
        from subscribers.segments.compiler import Compiler
        from subscribers.segments.validate import Resolver

        self.project = project
        self.resolver = Resolver(project)
        self.compiler = Compiler(project, self.resolver)

    def everyone(self) -> QuerySet:
        return Subscriber.objects.for_project(self.project).values("pk")

    def ids(self, node: dict) -> QuerySet:
        from subscribers.segments import tree as t

        if node["type"] == t.GROUP:
            plain = {**node, "negate": False}
            if node.get("negate"):
                return self.everyone().difference(self.ids(plain))
            children = node["children"]
            if node["op"] == "or":
                parts = [self.ids(child) for child in children]
                return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
            positive = [self.ids(c) for c in children if not (t.is_group(c) and c.get("negate"))]
            negative = [
                self.ids({**c, "negate": False}) for c in children if t.is_group(c) and c.get("negate")
            ]
            result = positive[0] if positive else self.everyone()
            if len(positive) > 1:
                result = result.intersection(*positive[1:])
            return result.difference(*negative) if negative else result
        if node["type"] == t.EVENT and not self.zero_satisfies(node):
            return self.event_ids(node)
        if node["type"] == t.TAG and node["op"] in ("eq", "gt", "gte", "lt", "lte", "between", "in", "any"):
            info = self.resolver.tags()[node["tag"].lower()]
            if info.definition_id is not None:
                from subscribers.segments.compiler import VALUE_COLUMN

                rows = TagValue.objects.filter(tag_id=info.definition_id)
                if node["op"] != "any":
                    col = VALUE_COLUMN[info.type]
                    rows = rows.filter(self.compiler.compare(col, info.type, node["op"], node.get("value")))
                return rows.values("subscriber")
        # Anything else: the existing compiler's condition on the subscriber table.
        return Subscriber.objects.for_project(self.project).filter(self.compiler.compile(node)).values("pk")

    @staticmethod
    def zero_satisfies(node: dict) -> bool:
        from subscribers.segments.compiler import _zero_satisfies

        return _zero_satisfies(node["op"], node["count"])

    def event_ids(self, node: dict) -> QuerySet:
        c = self.compiler
        events = Event.objects.for_project(self.project).filter(name=node["event"])
        if node.get("window"):
            events = events.filter(c.window(node["window"]))
        schema = self.resolver.events()[node["event"]]
        for i, cond in enumerate(node.get("where") or []):
            events = c.attribute(events, f"attr_{i}", schema[cond["attribute"]], cond)
        op, n = node["op"], node["count"]
        if (op, n) in (("gte", 1), ("gt", 0), ("noteq", 0)):
            return events.order_by().values("subscriber")
        lookup = "exact" if op == "eq" else op
        return (
            events.order_by()
            .values("subscriber")
            .annotate(n=Count("*"))
            .filter(**{f"n__{lookup}": n})
            .values("subscriber")
        )


def set_count(project: Project, text: str) -> int:
    from subscribers.segments import parse_rule, validate_rule

    return SetCompiler(project).ids(validate_rule(project, parse_rule(text))).count()


def set_sql(project: Project, text: str) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as queries:
        n = set_count(project, text)
    return queries.captured_queries[-1]["sql"], n


PATHS = {
    "sql": "hand-written SQL",
    "compiler": "compiler: count(project, parse_rule(text))",
    "setcount": "proposed shape: id-set algebra (SetCompiler prototype)",
    "api": "API: POST /api/v1/segments/count",
    "builder": "builder: GET segments/preview/ (htmx, count + sample)",
}


class Bench:
    def __init__(self, args: argparse.Namespace, project: Project):
        self.args, self.project = args, project
        self.results: list[tuple[str, str, str, Result]] = []  # rule, variant, path, result
        self.notes: list[str] = []
        self.plans: list[tuple[str, str]] = []
        self.counts: dict[str, dict[str, int]] = {}
        self.parallel: dict[tuple[str, str, str], bool] = {}

    def note_parallel(self, rule: Rule, variant: Variant, kind: str, sql: str, params: dict | None) -> None:
        self.parallel[(rule.key, variant.key, kind)] = "Gather" in explain(sql, params, analyze=False)

    def m(self, rule: Rule, variant: Variant, path: str, fn, n: int, cpu) -> None:
        self.counts.setdefault(rule.key, {})[f"{path}/{variant.key}"] = n
        target = rule.target_ms if path in ("api", "builder") else None
        name = f"({rule.key}) {PATHS[path]} [{variant.key}]"
        result = measure(
            name, fn, repeat=self.args.repeat, warmup=self.args.warmup, target_ms=target, cpu=cpu
        )
        result.note = f"{n:,} subscribers"
        if path in ("api", "builder") and (rule.key, variant.key, "compiled") not in self.parallel:
            self.note_parallel(rule, variant, "compiled", compiled_sql(self.project, rule.text)[0], None)
        kind = path if path in ("sql", "setcount") else "compiled"
        if self.parallel.get((rule.key, variant.key, kind)):
            result.note += "; parallel plan, CPU excludes its workers"
        self.results.append((rule.key, variant.key, path, result))

    def plan(self, title: str, text: str) -> None:
        if self.args.plans:
            self.plans.append((title, text))

    def own_cpu(self):
        """CPU of this process and its database backend: the work of the in-process paths."""
        backend = run_sql("SELECT pg_backend_pid()", {})
        return lambda: benchlib.process_cpu([backend, os.getpid()])

    def sql_phase(self, variant: Variant) -> None:
        params = sql_params(self.project, timezone.now())
        cpu = self.own_cpu()
        for rule in RULES:
            n = run_sql(rule.sql, params)
            self.note_parallel(rule, variant, "sql", rule.sql, params)
            self.m(rule, variant, "sql", lambda r=rule: run_sql(r.sql, params), n, cpu)
            self.plan(f"({rule.key}) hand-written SQL [{variant.key}]", explain(rule.sql, params))

    def compiler_phase(self, variant: Variant) -> None:
        from subscribers.segments import count, parse_rule

        cpu = self.own_cpu()
        for rule in RULES:
            sql, n = compiled_sql(self.project, rule.text)
            self.note_parallel(rule, variant, "compiled", sql, None)
            self.m(rule, variant, "compiler", lambda r=rule: count(self.project, parse_rule(r.text)), n, cpu)
            self.plan(f"({rule.key}) compiled SQL [{variant.key}]", f"{sql}\n\n{explain(sql)}")

    def setcount_phase(self, variant: Variant) -> None:
        cpu = self.own_cpu()
        for rule in RULES:
            sql, n = set_sql(self.project, rule.text)
            self.note_parallel(rule, variant, "setcount", sql, None)
            self.m(rule, variant, "setcount", lambda r=rule: set_count(self.project, r.text), n, cpu)
            self.plan(f"({rule.key}) proposed set SQL [{variant.key}]", f"{sql}\n\n{explain(sql)}")

    def http_phase(self, variant: Variant) -> None:
        """The API and the builder's live preview, both through granian, as a client sees them."""
        key, raw = create_api_key(project=self.project, name="segment benchmark", actor=SYSTEM)
        owner, password = benchlib.owner_login(self.project)
        try:
            with benchlib.granian(self.args.port) as base, requests.Session() as http:
                # Server side: granian's processes and their database backends (not this client).
                self.server_cpu = lambda: benchlib.process_cpu(
                    benchlib.process_tree(base.pid) + benchlib.database_backends(exclude_own=True)
                )
                if "api" in self.args.paths:
                    http.headers["Authorization"] = f"Bearer {raw}"
                    self.api_rounds(variant, http, f"{base}/api/v1/segments/count")
                if "builder" in self.args.paths:
                    with requests.Session() as panel:
                        benchlib.login(panel, base, owner.email, password)
                        url = f"{base}/p/{self.project.slug}/segments/preview/"
                        self.builder_rounds(variant, panel, url)
        finally:
            revoke_api_key(project=self.project, key=key, actor=SYSTEM)
            benchlib.owner_logout(owner)

    def api_rounds(self, variant: Variant, http: requests.Session, url: str) -> None:
        for rule in RULES:
            response = http.post(url, json={"rule": rule.text}, timeout=60)
            if response.status_code != 200:
                note = f"POST {url} answered {response.status_code}: {response.text[:200]}"
                self.notes.append(f"({rule.key}) API not measured [{variant.key}]: {note}")
                print(f"  {note}")
                continue

            def call(r=rule) -> None:
                http.post(url, json={"rule": r.text}, timeout=60).raise_for_status()

            self.m(rule, variant, "api", call, response.json()["count"], self.server_cpu)

    def builder_rounds(self, variant: Variant, panel: requests.Session, url: str) -> None:
        headers = {"HX-Request": "true", "HX-Target": "segment-preview"}
        for rule in RULES:
            params = {"source": "text", "text": rule.text}
            response = panel.get(url, params=params, headers=headers, timeout=60)
            found = re.search(r'data-count="(\d+)"', response.text)
            if response.status_code != 200 or found is None:
                note = f"GET {url} answered {response.status_code} without a count"
                self.notes.append(f"({rule.key}) builder not measured [{variant.key}]: {note}")
                print(f"  {note}")
                continue

            def call(p=params) -> None:
                panel.get(url, params=p, headers=headers, timeout=60).raise_for_status()

            self.m(rule, variant, "builder", call, int(found.group(1)), self.server_cpu)

    def run(self, variant: Variant) -> None:
        if "sql" in self.args.paths:
            self.sql_phase(variant)
        if "compiler" in self.args.paths:
            self.compiler_phase(variant)
        if "setcount" in self.args.paths:
            self.setcount_phase(variant)
        if {"api", "builder"} & set(self.args.paths):
            self.http_phase(variant)


def apply_variant(variant: Variant) -> list[tuple[str, float, str]]:
    """Make the database look like ``variant``: its objects present, all others absent."""
    made = []
    with connection.cursor() as cur:
        cur.execute("SELECT current_database()")
        db = cur.fetchone()[0]
        for name in [*STATISTICS, *INDEXES]:
            if name not in variant.objects:
                kind = "STATISTICS" if name in STATISTICS else "INDEX"
                cur.execute(f'DROP {kind} IF EXISTS "{name}"')
        for name in variant.objects:
            is_index = name in INDEXES
            cur.execute(
                "SELECT to_regclass(%s) IS NOT NULL OR EXISTS "
                "(SELECT 1 FROM pg_statistic_ext WHERE stxname = %s)",
                [name, name],
            )
            seconds = 0.0
            if not cur.fetchone()[0]:
                start = time.perf_counter()
                cur.execute(INDEXES[name] if is_index else STATISTICS[name])
                seconds = time.perf_counter() - start
            size = ""
            if is_index:
                cur.execute("SELECT pg_size_pretty(pg_relation_size(%s::regclass))", [name])
                size = cur.fetchone()[0]
            made.append((name, seconds, size))
        cur.execute(f'ALTER DATABASE "{db}" RESET ALL')
        for setting, value in variant.settings:
            cur.execute(f'ALTER DATABASE "{db}" SET {setting} = {value}')
        cur.execute("ANALYZE subscribers_tagvalue")
        cur.execute("ANALYZE subscribers_event")
    connection.close()  # database settings apply to new connections
    for name, seconds, size in made:
        print(f"  {name}: {size or 'statistics'}" + (f", built in {seconds:.1f} s" if seconds else ""))
    return made


def report(bench: Bench, args: argparse.Namespace, made: dict, started: datetime) -> str:
    settings = benchlib.pg_settings()
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC, project `{args.project_slug}`, {args.repeat} timed runs after "
        f"{args.warmup} warm-up runs each; one client, one request at a time.",
        "PostgreSQL: " + ", ".join(f"{k} = {v}" for k, v in settings.items()),
        "Load average at the end (1, 5, 15 min; 2 cores shared with other work): "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "",
        "Variants:",
    ]
    for key in args.variants:
        variant = VARIANTS[key]
        extra = ", ".join(f"{k} = {v}" for k, v in variant.settings)
        lines.append(f"- `{key}`: {variant.title}" + (f" (database setting {extra})" if extra else ""))
    objects = {name: info for infos in made.values() for name, *info in infos}
    if objects:
        lines += ["", "Objects the variants create (in this database only):"]
        for name, (seconds, size) in objects.items():
            built = f", built in {seconds:.0f} s" if seconds else ""
            lines.append(
                f"- `{INDEXES.get(name) or STATISTICS[name]}`" + (f" ({size}{built})" if size else "")
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
    for title, plan in bench.plans:
        lines += ["", f"#### {title}", "", "```", plan, "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-slug", default="bench")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--variants", default="default,covering", help=f"comma-separated: {', '.join(VARIANTS)}"
    )
    parser.add_argument(
        "--paths", default="sql,compiler,setcount,api,builder", help=f"comma-separated: {', '.join(PATHS)}"
    )
    parser.add_argument("--keep", action="store_true", help="leave the last variant's objects in place")
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
    if args.wait_load:
        benchlib.wait_for_load(args.wait_load)
    started = timezone.now()
    bench = Bench(args, project)
    made: dict = {}
    try:
        for key in args.variants:
            print(f"Variant {key}: {VARIANTS[key].title}")
            made[key] = apply_variant(VARIANTS[key])
            bench.run(VARIANTS[key])
    finally:
        if not args.keep:
            apply_variant(VARIANTS["default"])
    for key, counts in bench.counts.items():
        low, high = min(counts.values()), max(counts.values())
        if high - low > max(2, high // 1000):  # windows end at "now", which moves during the run
            bench.notes.append(f"({key}) counts differ between paths: {counts}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(bench, args, made, started))
    print(f"Report written to {args.out}")


if __name__ == "__main__":
    main()
