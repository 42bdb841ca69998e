"""Fill a PostgreSQL database with a benchmark audience: subscribers, 20 typed tags, events.

Defaults: 1,000,000 subscribers (German mobile numbers, 60 % WhatsApp opted in), about 11
tag values each over 20 custom tags of every type, 10,000,000 events of 20 names with JSON
attributes over the last year (skewed to recent), and the consent ledger rows that go with the
opt-ins, and 1,000,000 outbound WhatsApp messages (``--messages``) sent by broadcast campaigns
every few days over the year to the opted-in subscribers of the time. Rows are generated in Python and streamed with ``COPY`` (psycopg 3); the bulk tables'
secondary indexes and constraints are dropped for the load and rebuilt from their own
definitions in the same transaction, so an interrupted run leaves the schema untouched.
Afterwards the tables are ``VACUUM ANALYZE``d (index-only scans need the visibility map).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wcp_bench SECRET_KEY=bench \\
    FIELD_ENCRYPTION_KEY=... .venv/bin/python bench/generate_audience.py [--reset]

The output is deterministic for a given ``--seed`` apart from UUIDs and "now".
``--messages-only`` replaces just the messages of an existing audience (seconds, not minutes).
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import sys
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")

import django  # noqa: E402

django.setup()

import phonenumbers  # noqa: E402
from django.db import DatabaseError, connection, transaction  # noqa: E402

from controlpanel.models import Project, User  # noqa: E402
from controlpanel.services import create_project  # noqa: E402
from subscribers.models import EventDefinition, TagDefinition  # noqa: E402
from subscribers.textfold import fold  # noqa: E402

OWNER_EMAIL = "bench-owner@example.com"
CHUNK = 1 << 20  # bytes per COPY write

# National mobile prefixes (without the leading 0); each is followed by 7 digits.
MOBILE_PREFIXES = [
    "1511", "1512", "1514", "1515", "1516", "1517", "1520", "1522", "1523", "1525", "1570", "1573",
    "1575", "1577", "1578", "1590", "160", "162", "163", "170", "171", "172", "173", "174", "175",
    "176", "177", "178", "179",
]  # fmt: skip
FIRST_NAMES = [
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Jonas", "Julia", "Karl",
    "Lea", "Leon", "Lina", "Lukas", "Marie", "Max", "Mia", "Noah", "Paul", "Sophie", "Tim", "Laura",
    "Elias", "Emil", "Ida", "Finn", "Mila", "Theo", "Ella", "Ahmet", "Elif", "Mehmet", "Ayse",
    "Olga", "Piotr", "Giulia", "Marco", "Lucas", "Sara", "Yusuf", "Zeynep", "Niklas", "Johanna",
    "Moritz", "Charlotte", "Henri", "Frieda", "Oskar", "Luise",
]  # fmt: skip
LAST_NAMES = [
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt",
    "Werner", "Krause", "Meier", "Lehmann", "Yilmaz", "Kaya", "Demir", "Nowak", "Kowalski",
    "Rossi", "Russo", "Peters", "Vogel", "Jung", "Keller", "Günther", "Frank", "Berger", "Roth",
    "Beck", "Lorenz", "Baumann", "Franke", "Albrecht",
]  # fmt: skip
LANGUAGES = [("de", 70), ("en", 12), ("tr", 6), ("pl", 4), ("ru", 3), ("it", 2), ("ar", 2), ("es", 1)]
COUNTRIES = [("DE", 86), ("AT", 6), ("CH", 4), ("NL", 1), ("PL", 1), ("TR", 1), ("", 1)]
TIME_ZONES = {"DE": "Europe/Berlin", "AT": "Europe/Vienna", "CH": "Europe/Zurich", "NL": "Europe/Amsterdam",
              "PL": "Europe/Warsaw", "TR": "Europe/Istanbul", "": ""}  # fmt: skip
CITIES = [
    "Berlin", "Hamburg", "München", "Köln", "Frankfurt am Main", "Stuttgart", "Düsseldorf",
    "Leipzig", "Dortmund", "Essen", "Bremen", "Dresden", "Hannover", "Nürnberg", "Duisburg",
    "Bochum", "Wuppertal", "Bielefeld", "Bonn", "Münster", "Mannheim", "Karlsruhe", "Augsburg",
    "Wiesbaden", "Mönchengladbach", "Gelsenkirchen", "Aachen", "Braunschweig", "Kiel", "Chemnitz",
    "Halle (Saale)", "Magdeburg", "Freiburg im Breisgau", "Krefeld", "Mainz", "Lübeck", "Erfurt",
    "Oberhausen", "Rostock", "Kassel", "Hagen", "Potsdam", "Saarbrücken", "Hamm", "Ludwigshafen",
    "Oldenburg", "Mülheim an der Ruhr", "Osnabrück", "Leverkusen", "Darmstadt",
]  # fmt: skip
# Berlin is ~12 % of the subscribers that have a city, then a long tail.
CITY_WEIGHTS = [12, 7, 6, 4] + [2] * 10 + [1] * (len(CITIES) - 14)
CUISINES = ["asian", "italian", "german", "turkish", "mexican", "indian", "greek", "american"]
CUISINE_WEIGHTS = [18, 22, 15, 14, 8, 9, 7, 7]
INTERESTS = ["food", "sports", "music", "travel", "tech", "fashion", "gaming", "books", "cinema", "fitness",
             "cooking", "art", "cars", "pets", "gardening"]  # fmt: skip
STORES = [f"store-{i:03d}" for i in range(1, 121)]
CAMPAIGNS = [f"campaign-{i}" for i in range(1, 41)]
TEMPLATES = ["spring_promo", "order_update", "welcome", "reminder", "otp", "feedback"]

# name -> (type, share of subscribers that have it, value factory)
TagFactory = Callable[[random.Random], object]
TAGS: list[tuple[str, str, float, TagFactory]] = [
    ("city", "string", 0.85, lambda r: r.choices(CITIES, CITY_WEIGHTS)[0]),
    ("age", "integer", 0.70, lambda r: max(16, min(90, int(r.gauss(38, 13))))),
    ("lifetime_value", "decimal", 0.55, lambda r: round(r.lognormvariate(4, 1.1), 2)),
    ("vip", "boolean", 0.90, lambda r: r.random() < 0.08),
    ("birthday", "date", 0.45, lambda r: datetime(1940, 1, 1).date() + timedelta(days=r.randrange(27000))),
    ("interests", "list", 0.50, lambda r: r.sample(INTERESTS, r.choice((1, 1, 2, 2, 3, 4)))),
    ("last_purchase_at", "datetime", 0.50, None),  # filled from "now"
    ("plan", "string", 0.60, lambda r: r.choices(["free", "basic", "premium"], [70, 22, 8])[0]),
    ("loyalty_points", "integer", 0.50, lambda r: int(r.expovariate(1 / 400))),
    ("favourite_cuisine", "string", 0.40, lambda r: r.choices(CUISINES, CUISINE_WEIGHTS)[0]),
    ("newsletter", "boolean", 0.75, lambda r: r.random() < 0.35),
    ("orders_count", "integer", 0.60, lambda r: int(r.expovariate(1 / 6))),
    ("avg_basket", "decimal", 0.50, lambda r: round(r.uniform(8, 80), 2)),
    ("signup_channel", "string", 0.80, lambda r: r.choice(["app", "web", "store", "whatsapp", "import"])),
    ("referral_code", "string", 0.15, lambda r: f"REF{r.randrange(10**7):07d}"),
    ("app_version", "string", 0.55, lambda r: r.choice(["5.1.0", "5.2.0", "5.2.1", "5.3.0", "6.0.0"])),
    ("device", "string", 0.55, lambda r: r.choices(["android", "ios", "web"], [55, 40, 5])[0]),
    ("gender", "string", 0.35, lambda r: r.choice(["female", "male", "diverse"])),
    ("preferred_store", "string", 0.30, lambda r: r.choice(STORES)),
    ("children", "integer", 0.25, lambda r: r.choices([0, 1, 2, 3, 4], [40, 25, 22, 9, 4])[0]),
]
TAG_COLUMN = {"string": 0, "list": 0, "integer": 1, "decimal": 1, "boolean": 2, "date": 3, "datetime": 4}

# The events: (name, relative frequency, attribute schema for custom ones or None for defaults).
EVENTS: list[tuple[str, int, dict[str, str] | None]] = [
    ("AppOpened", 2200, {"app_version": "string", "platform": "string"}),
    ("OrderPlaced", 1300, {"cuisine": "string", "amount": "decimal", "items": "integer", "store": "string"}),
    ("ProductViewed", 1000, {"category": "string", "price": "decimal"}),
    ("WhatsAppSent", 900, None),
    ("WhatsAppDelivered", 850, None),
    ("WhatsAppRead", 700, None),
    ("AddedToCart", 500, {"category": "string", "price": "decimal"}),
    ("WhatsAppReceived", 450, None),
    ("PushOpened", 400, None),
    ("EmailOpened", 350, None),
    ("CheckoutStarted", 300, {"amount": "decimal", "items": "integer"}),
    ("EmailClicked", 150, None),
    ("WhatsAppButtonClicked", 150, None),
    ("CouponRedeemed", 120, {"code": "string", "discount": "decimal"}),
    ("TableBooked", 100, {"store": "string", "guests": "integer"}),
    ("WhatsAppFailed", 60, None),
    ("ReviewWritten", 60, {"rating": "integer", "store": "string"}),
    ("SupportTicketOpened", 40, {"topic": "string"}),
    ("Subscribed", 30, None),
    ("Unsubscribed", 10, None),
]
CATEGORIES = ["pizza", "sushi", "burger", "salad", "drinks", "dessert", "bowl", "pasta", "curry", "kebab"]
KEYWORDS = ["PROMO", "HILFE", "STOP", "START", "Hallo", "Danke!", "Wann kommt meine Bestellung?", "JA"]


def attributes_factory(name: str) -> Callable[[random.Random], str]:
    """A function returning the JSON attributes of one event of ``name`` (text-format safe)."""
    match name:
        case "OrderPlaced":
            return lambda r: (
                f'{{"cuisine": "{r.choices(CUISINES, CUISINE_WEIGHTS)[0]}", '
                f'"amount": {r.lognormvariate(3.1, 0.5):.2f}, "items": {r.randint(1, 8)}, '
                f'"store": "{r.choice(STORES)}"}}'
            )
        case "AppOpened":
            return lambda r: (
                f'{{"app_version": "{r.choice(("5.2.1", "5.3.0", "6.0.0"))}", '
                f'"platform": "{r.choice(("android", "ios"))}"}}'
            )
        case "ProductViewed" | "AddedToCart":
            return lambda r: f'{{"category": "{r.choice(CATEGORIES)}", "price": {r.uniform(2, 40):.2f}}}'
        case "CheckoutStarted":
            return lambda r: f'{{"amount": {r.lognormvariate(3.1, 0.5):.2f}, "items": {r.randint(1, 8)}}}'
        case "CouponRedeemed":
            return lambda r: (
                f'{{"code": "SAVE{r.choice((5, 10, 15, 20))}", "discount": {r.choice((5, 10, 15, 20))}}}'
            )
        case "TableBooked":
            return lambda r: f'{{"store": "{r.choice(STORES)}", "guests": {r.randint(1, 8)}}}'
        case "ReviewWritten":
            return lambda r: (
                f'{{"rating": {r.choices((1, 2, 3, 4, 5), (5, 5, 10, 30, 50))[0]}, '
                f'"store": "{r.choice(STORES)}"}}'
            )
        case "SupportTicketOpened":
            return lambda r: f'{{"topic": "{r.choice(("delivery", "payment", "account", "other"))}"}}'
        case "WhatsAppReceived":
            return lambda r: f'{{"text": "{r.choice(KEYWORDS)}", "type": "text"}}'
        case "WhatsAppSent" | "WhatsAppDelivered" | "WhatsAppRead":
            return lambda r: f'{{"template": "{r.choice(TEMPLATES)}", "campaign": "{r.choice(CAMPAIGNS)}"}}'
        case "WhatsAppFailed":
            return lambda r: (
                f'{{"template": "{r.choice(TEMPLATES)}", "error_code": {r.choice((131026, 131047, 130429))}}}'
            )
        case "WhatsAppButtonClicked":
            return lambda r: (
                f'{{"button_payload": "{r.choice(("YES", "NO", "MORE"))}", '
                f'"button_text": "{r.choice(("Ja", "Nein", "Mehr"))}"}}'
            )
        case "EmailOpened" | "PushOpened":
            return lambda r: f'{{"campaign": "{r.choice(CAMPAIGNS)}"}}'
        case "EmailClicked":
            return lambda r: (
                f'{{"campaign": "{r.choice(CAMPAIGNS)}", "url": "https://example.com/{r.choice(CATEGORIES)}"}}'
            )
        case "Subscribed" | "Unsubscribed":
            return lambda r: f'{{"channel": "whatsapp", "source": "{r.choice(("api", "panel", "keyword"))}"}}'
    raise ValueError(name)


class Clock:
    """Fast text-format timestamps: a cache of minute strings over the generated span."""

    def __init__(self, now: datetime, days: int) -> None:
        self.now = now.replace(second=0, microsecond=0)
        self.start = self.now - timedelta(days=days)
        self.minutes = days * 1440 + 1
        self._cache: dict[int, str] = {}

    def text(self, seconds_before_now: float) -> str:
        """The timestamp ``seconds_before_now`` seconds before "now", as a COPY literal."""
        total = int(self.minutes * 60 - 60 - seconds_before_now)
        minute, second = divmod(max(total, 0), 60)
        prefix = self._cache.get(minute)
        if prefix is None:
            prefix = (self.start + timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M")
            self._cache[minute] = prefix
        return f"{prefix}:{second:02d}+00"


class Writer:
    """Buffers text-format lines into a COPY and counts them."""

    def __init__(self, copy) -> None:
        self.copy, self.parts, self.size, self.rows = copy, [], 0, 0

    def add(self, line: str) -> None:
        self.parts.append(line)
        self.size += len(line)
        self.rows += 1
        if self.size >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.copy.write("".join(self.parts))
            self.parts, self.size = [], 0


def mobile_numbers(rng: random.Random, n: int) -> Iterator[str]:
    prefixes = [
        p for p in MOBILE_PREFIXES if phonenumbers.is_valid_number(phonenumbers.parse(f"+49{p}1234567"))
    ]
    for k in rng.sample(range(len(prefixes) * 10**7), n):
        yield f"+49{prefixes[k // 10**7]}{k % 10**7:07d}"


def weighted(rng: random.Random, items: list[tuple[str, int]], n: int) -> list[str]:
    return rng.choices([i for i, _ in items], [w for _, w in items], k=n)


def table_ddl(cur, table: str) -> tuple[list[str], list[str]]:
    """(drop statements, create statements) of the secondary indexes and constraints of ``table``.

    The primary key stays: explicit ids are assigned from it. Everything else is rebuilt from
    PostgreSQL's own definitions, so the generator follows whatever the migrations created.
    """
    cur.execute(
        """SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
           WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY conname""",
        [table],
    )
    constraints = cur.fetchall()
    cur.execute(
        """SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i
           JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = %s::regclass AND NOT i.indisprimary
             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                             AND k.conrelid = i.indrelid)
           ORDER BY c.relname""",
        [table],
    )
    indexes = cur.fetchall()
    drops = [f'ALTER TABLE {table} DROP CONSTRAINT "{name}"' for name, _ in constraints]
    drops += [f'DROP INDEX "{name}"' for name, _ in indexes]
    creates = [definition for _, definition in indexes]
    # Unique constraints before foreign keys (a FK may need a unique index of its own table).
    creates += [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
        for name, definition in sorted(constraints, key=lambda c: "FOREIGN KEY" in c[1])
    ]
    return drops, creates


def next_ids(cur, table: str, n: int) -> int:
    """Reserve ``n`` ids of ``table``'s identity column; returns the first one."""
    cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    seq = cur.fetchone()[0]
    cur.execute(
        f"SELECT GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), (SELECT last_value FROM {seq}))"  # noqa: S608
    )
    first = cur.fetchone()[0] + 1
    cur.execute("SELECT setval(%s, %s)", [seq, first + n])
    return first


class Timer:
    def __init__(self) -> None:
        self.t0 = self.last = time.perf_counter()

    def step(self, what: str) -> None:
        now = time.perf_counter()
        print(f"  {what:<58} {now - self.last:7.1f} s   (total {now - self.t0:6.1f} s)", flush=True)
        self.last = now


# Table and column names in f-string SQL below come from this list and the catalog, never from input.
BULK_TABLES = [
    "subscribers_subscriber",
    "subscribers_tagvalue",
    "subscribers_event",
    "subscribers_consentchange",
]


def referencing_tables(cur) -> list[tuple[str, str]]:
    """(table, column) of foreign keys into subscribers from tables other than the bulk ones."""
    cur.execute(
        """SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
           WHERE c.contype = 'f' AND c.confrelid = 'subscribers_subscriber'::regclass
             AND c.conrelid::regclass::text <> ALL(%s)""",
        [BULK_TABLES],
    )
    return cur.fetchall()


def audience_is_alone(cur, project: Project) -> bool:
    """True if no other project has rows in the bulk tables and nothing else points at them."""
    for table in BULK_TABLES:
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE project_id <> %s)", [project.pk])  # noqa: S608
        if cur.fetchone()[0]:
            return False
    for table, _ in referencing_tables(cur):
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")  # noqa: S608
        if cur.fetchone()[0]:
            return False
    return True


def delete_audience(cur, project: Project, *, truncate: bool) -> None:
    """Remove the audience of a previous run; the project, its members and API keys stay.

    TRUNCATE when the bench project is alone in the bulk tables (no dead rows left behind),
    else plain DELETEs. Never Django's cascade: its collector visits every model in the code,
    including ones whose migrations another branch has not written yet.
    """
    others = referencing_tables(cur)
    if truncate:
        try:
            with transaction.atomic():
                cur.execute(f"TRUNCATE {', '.join(BULK_TABLES + [t for t, _ in others])}")
        except DatabaseError:  # e.g. a referencing table is itself referenced
            truncate = False
    if not truncate:
        for table, column in others:
            cur.execute(
                f"DELETE FROM {table} WHERE {column} IN "  # noqa: S608
                "(SELECT id FROM subscribers_subscriber WHERE project_id = %s)",
                [project.pk],
            )
        for table in BULK_TABLES[::-1]:
            cur.execute(f"DELETE FROM {table} WHERE project_id = %s", [project.pk])  # noqa: S608
        # Fire the deferred foreign-key checks now: pending ones block CREATE INDEX later.
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for table in ["subscribers_tagdefinition", "subscribers_eventdefinition"]:
        cur.execute(f"DELETE FROM {table} WHERE project_id = %s", [project.pk])  # noqa: S608


MESSAGE_STATUSES = [("read", 45), ("delivered", 40), ("sent", 5), ("failed", 7), ("skipped", 3)]
CAMPAIGN_TEMPLATES = ["spring_sale", "weekend_deals", "new_menu", "loyalty_bonus", "order_reminder"]


def copy_messages(
    cur, project_id: int, n_messages: int, rng: random.Random, clock: Clock, timer: Timer
) -> None:
    """Replace the project's outbound messages with ``n_messages`` rows of broadcast campaigns.

    A campaign every three days over the year goes to a sample of the subscribers opted in and
    signed up by then (later campaigns reach more people, as an audience grows); each row moves
    through sent/delivered/read like a real send, and ids follow ``created_at``.
    """
    table = "campaigns_message"
    drops, creates = table_ddl(cur, table)
    cur.execute(f"DELETE FROM {table} WHERE project_id = %s", [project_id])  # noqa: S608
    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # pending FK checks block the DROP INDEX below
    for stmt in drops:
        cur.execute(stmt)
    cur.execute(
        """SELECT id, EXTRACT(EPOCH FROM now() - created_at)::float8 FROM subscribers_subscriber
           WHERE project_id = %s AND whatsapp_consent = 'opted_in' ORDER BY created_at""",
        [project_id],
    )
    audience = cur.fetchall()  # oldest first: those signed up before a moment form a prefix
    if not audience or n_messages <= 0:
        for stmt in creates:
            cur.execute(stmt)
        return
    day = 86400
    moments = [day * (1 + 3 * k + rng.random()) for k in range(122)]  # seconds before now, newest first
    older = [-age for _, age in audience]  # ascending
    reach = [bisect.bisect_left(older, -t) for t in moments]  # how many had signed up by then
    weight = sum(reach)
    first = next_ids(cur, table, n_messages)
    statuses = rng.choices([s for s, _ in MESSAGE_STATUSES], [w for _, w in MESSAGE_STATUSES], k=n_messages)
    written = 0
    with cur.copy(
        f"COPY {table} (id, project_id, public_id, subscriber_id, channel, status, kind, template_name, "
        "template_language, components, body, marketing, wamid, reason, error_code, error_title, "
        "error_details, pricing_category, pricing_type, billable, attempts, history, created_at, "
        'updated_at, sending_at, sent_at, delivered_at, read_at, failed_at, "values", request_hash) FROM STDIN'
    ) as copy:
        w = Writer(copy)
        # Oldest campaign first, so ids follow time as they do in production.
        for k in range(len(moments) - 1, -1, -1):
            size = n_messages - written if k == 0 else round(n_messages * reach[k] / weight)
            size = min(size, reach[k])
            at = moments[k]
            template = CAMPAIGN_TEMPLATES[k % len(CAMPAIGN_TEMPLATES)]
            for j, index in enumerate(sorted(rng.sample(range(reach[k]), size))):
                mid = first + written
                status = statuses[written]
                sent_age = at - j / 80  # the number's throughput: 80 messages a second
                created = clock.text(sent_age + 1)
                sent = delivered = read = failed = "\\N"
                updated = created
                wamid, code, reason = f"wamid.bench{mid}", "\\N", ""
                if status == "skipped":
                    wamid, reason = "\\N", "Opted out after the campaign was launched."
                elif status == "failed":
                    failed = updated = clock.text(sent_age - 2)
                    code = "131026"
                else:
                    sent = updated = clock.text(sent_age)
                    if status in ("delivered", "read"):
                        delivered = updated = clock.text(sent_age - 3)
                    if status == "read":
                        read = updated = clock.text(sent_age - 3 - 600 * rng.random())
                w.add(
                    f"{mid}\t{project_id}\t{uuid.UUID(bytes=os.urandom(16), version=4)}\t{audience[index][0]}\t"
                    f"whatsapp\t{status}\ttemplate\t{template}\tde\t[]\tHallo! Unsere Angebote der Woche.\tt\t"
                    f"{wamid}\t{reason}\t{code}\t\t\tmarketing\tregular\tt\t1\t[]\t{created}\t"
                    f"{updated}\t{created}\t{sent}\t{delivered}\t{read}\t{failed}\t{{}}\t\n"
                )
                written += 1
        w.flush()
    timer.step(f"COPY {written:,} messages of {len(moments)} campaigns")
    for stmt in creates:
        cur.execute(stmt)
    timer.step(f"rebuilt {len(creates)} indexes/constraints of {table}")


def generate_messages(args: argparse.Namespace) -> None:
    """``--messages-only``: new messages for the audience a previous run generated."""
    project = Project.objects.filter(slug=args.project_slug).first()
    if project is None:
        sys.exit(f"No project {args.project_slug!r}: run without --messages-only first.")
    timer = Timer()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
        copy_messages(
            cur, project.pk, args.messages, random.Random(args.seed), Clock(datetime.now(UTC), 366), timer
        )
    with connection.cursor() as cur:
        cur.execute("VACUUM (ANALYZE) campaigns_message")
    timer.step("VACUUM (ANALYZE)")


def generate(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    n_subs, n_events = args.subscribers, args.events
    timer = Timer()
    existing = Project.objects.filter(slug=args.project_slug).first()
    if existing is not None and not args.reset:
        sys.exit(f"Project {args.project_slug!r} exists already; pass --reset to replace it.")

    now = datetime.now(UTC)
    clock = Clock(now, 366)
    year = 365 * 86400
    with transaction.atomic(), connection.cursor() as cur:
        ddl = {t: table_ddl(cur, t) for t in BULK_TABLES}
        truncate = existing is not None and audience_is_alone(cur, existing)
        cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cur.execute("SET LOCAL max_parallel_maintenance_workers = 1")
        cur.execute("SET LOCAL synchronous_commit = off")
        # Child tables first: their foreign keys point at subscribers.
        for table in reversed(BULK_TABLES):
            for stmt in ddl[table][0]:
                cur.execute(stmt)
        if existing is not None:
            delete_audience(cur, existing, truncate=truncate)
            timer.step(f"deleted the previous audience of {args.project_slug!r}")
            project = existing
        else:
            owner = User.objects.filter(email=OWNER_EMAIL).first()
            owner = owner or User.objects.create_user(OWNER_EMAIL, None)
            project = create_project(name="Benchmark audience", owner=owner, slug=args.project_slug)
        tag_ids = {}
        for name, type_, _, _ in TAGS:
            tag_ids[name] = TagDefinition.objects.create(project=project, name=name, type=type_).pk
        for name, _, schema in EVENTS:
            if schema is not None:
                EventDefinition.objects.create(project=project, name=name, attributes=schema)
        pid = project.pk

        # --- subscribers (and the consent ledger rows of those with a consent state) -------
        first_sub = next_ids(cur, "subscribers_subscriber", n_subs)
        languages = weighted(rng, LANGUAGES, n_subs)
        countries = weighted(rng, COUNTRIES, n_subs)
        consents = rng.choices(["opted_in", "opted_out", "unknown"], [60, 8, 32], k=n_subs)
        # Seconds before now, needed again for tags and events; the oldest subscriber gets the
        # lowest id, as when they signed up one after another.
        created_age = sorted((year * rng.random() for _ in range(n_subs)), reverse=True)
        ledger: list[tuple[int, str, str]] = []
        devices: list[tuple[int, str]] = []  # a fifth have an Android push device
        with cur.copy(
            "COPY subscribers_subscriber (id, project_id, public_id, phone, wa_id, bsuid, external_id, name, "
            "email, language, country, time_zone, whatsapp_consent, whatsapp_consent_at, last_inbound_at, "
            "created_at, updated_at) FROM STDIN"
        ) as copy:
            w = Writer(copy)
            rand, urandom = rng.random, os.urandom
            for i, phone in enumerate(mobile_numbers(rng, n_subs)):
                sid = first_sub + i
                age = created_age[i]
                created = clock.text(age)
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                email = f"{first.lower()}.{sid}@example.com" if rand() < 0.4 else ""
                external = f"crm-{sid}" if rand() < 0.5 else "\\N"
                consent = consents[i]
                consent_at = "\\N"
                if consent != "unknown":
                    consent_at = clock.text(age * rand())
                    ledger.append((sid, consent, consent_at))
                r = rand()
                # A quarter wrote in the last week (some inside the 24 h window), half never did.
                if r < 0.5:
                    inbound = "\\N"
                elif r < 0.75:
                    inbound = clock.text(min(age, 7 * 86400 * rand()))
                else:
                    inbound = clock.text(age * rand())
                if rand() < 0.2:
                    devices.append((sid, created))
                country = countries[i]
                w.add(
                    f"{sid}\t{pid}\t{uuid.UUID(bytes=urandom(16), version=4)}\t{phone}\t{phone[1:]}\t\\N\t"
                    f"{external}\t{first} {last}\t{email}\t{languages[i]}\t{country}\t{TIME_ZONES[country]}\t"
                    f"{consent}\t{consent_at}\t{inbound}\t{created}\t{created}\n"
                )
            w.flush()
        timer.step(f"COPY {n_subs:,} subscribers")

        with cur.copy(
            "COPY subscribers_device (project_id, public_id, subscriber_id, token, platform, app_version, "
            "language, time_zone, push_enabled, created_at, last_seen_at, removed_reason) FROM STDIN"
        ) as copy:
            w = Writer(copy)
            for sid, at in devices:
                w.add(
                    f"{pid}\t{uuid.UUID(bytes=urandom(16), version=4)}\t{sid}\ttok-{sid}\tandroid\t\t\t\tt\t{at}\t{at}\t\n"
                )
            w.flush()
        timer.step(f"COPY {len(devices):,} push devices")

        first_consent = next_ids(cur, "subscribers_consentchange", len(ledger))
        with cur.copy(
            "COPY subscribers_consentchange (id, project_id, subscriber_id, channel, state, source, "
            "evidence, actor_label, created_at) FROM STDIN"
        ) as copy:
            w = Writer(copy)
            for k, (sid, state, at) in enumerate(ledger):
                w.add(
                    f"{first_consent + k}\t{pid}\t{sid}\twhatsapp\t{state}\timport\t"
                    f"Benchmark data: consent recorded at sign-up\tbench generator\t{at}\n"
                )
            w.flush()
        timer.step(f"COPY {len(ledger):,} consent ledger rows")

        # --- tag values: one row per value, one per list item ------------------------------
        first_tag_value = next_ids(cur, "subscribers_tagvalue", n_subs * (len(TAGS) + len(INTERESTS)))
        nulls = ["\\N"] * 6
        with cur.copy(
            "COPY subscribers_tagvalue (id, project_id, subscriber_id, tag_id, value_text, value_number, "
            "value_bool, value_date, value_datetime, value_folded) FROM STDIN"
        ) as copy:
            w = Writer(copy)
            next_id = first_tag_value
            plan = [
                (tag_ids[name], type_, share, make, TAG_COLUMN[type_]) for name, type_, share, make in TAGS
            ]
            rand = rng.random
            for i in range(n_subs):
                sid = first_sub + i
                for tag_id, type_, share, make, column in plan:
                    if rand() >= share:
                        continue
                    if type_ == "datetime":
                        values = [clock.text(created_age[i] * rand())]
                    elif type_ == "list":
                        values = make(rng)
                    elif type_ == "boolean":
                        values = ["t" if make(rng) else "f"]
                    else:
                        values = [make(rng)]
                    for value in values:
                        cols = nulls.copy()
                        cols[column] = str(value)
                        if column == 0:
                            cols[5] = fold(cols[0])  # what TagValue.save() derives
                        w.add(f"{next_id}\t{pid}\t{sid}\t{tag_id}\t" + "\t".join(cols) + "\n")
                        next_id += 1
            w.flush()
        timer.step(f"COPY {w.rows:,} tag values")

        # --- events: heavy users, a mild recent skew, never before the subscriber existed -------
        # Written oldest hour first, as an append-only table fills in production: ids and heap
        # pages follow occurred_at, which is what time-window scans see for real.
        first_event = next_ids(cur, "subscribers_event", n_events)
        names = [name for name, _, _ in EVENTS]
        weights = [weight for _, weight, _ in EVENTS]
        factories = [attributes_factory(name) for name in names]
        activity = list(range(n_subs))
        rng.shuffle(activity)  # who is a heavy user is independent of the id
        hours = int(year // 3600) + 1
        who = [array("i") for _ in range(hours)]
        what = [array("B") for _ in range(hours)]
        second = [array("H") for _ in range(hours)]
        rand, batch = rng.random, 100_000
        for start in range(0, n_events, batch):
            for name in rng.choices(range(len(names)), weights, k=min(batch, n_events - start)):
                # Heavy users first, then by tenure: someone who joined a year ago has had
                # twelve times the months to act as someone who joined last month.
                i = activity[int(n_subs * rand() ** 2.2)]
                while rand() * year > created_age[i]:
                    i = activity[int(n_subs * rand() ** 2.2)]
                hour, sec = divmod(int(created_age[i] * rand() ** 1.2), 3600)
                who[hour].append(i)
                what[hour].append(name)
                second[hour].append(sec)
        timer.step(f"drew {n_events:,} events")
        with cur.copy(
            "COPY subscribers_event (id, project_id, subscriber_id, name, occurred_at, received_at, "
            "attributes, facets, dedup_key) FROM STDIN"
        ) as copy:
            w = Writer(copy)
            event_id = first_event
            for hour in range(hours - 1, -1, -1):
                base = hour * 3600
                for i, name, sec in zip(who[hour], what[hour], second[hour], strict=True):
                    at = clock.text(base + sec)
                    # Every generated text is short and its keys lower case: the facets are the
                    # attributes folded, and folding the JSON text folds just its texts.
                    attrs = factories[name](rng)
                    w.add(
                        f"{event_id}\t{pid}\t{first_sub + i}\t{names[name]}\t{at}\t{at}\t{attrs}\t{fold(attrs)}\t\\N\n"
                    )
                    event_id += 1
                who[hour] = what[hour] = second[hour] = None
            w.flush()
        timer.step(f"COPY {n_events:,} events")

        for table in BULK_TABLES:
            for stmt in ddl[table][1]:
                cur.execute(stmt)
            timer.step(f"rebuilt {len(ddl[table][1])} indexes/constraints of {table}")
        copy_messages(cur, pid, args.messages, rng, clock, timer)

    with connection.cursor() as cur:
        for table in [
            *BULK_TABLES,
            "subscribers_tagdefinition",
            "subscribers_eventdefinition",
            "campaigns_message",
        ]:
            cur.execute(f"VACUUM (ANALYZE) {table}")
        timer.step("VACUUM (ANALYZE)")
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cur.fetchone()[0]
    print(f"Done: project {args.project_slug!r} (owner {OWNER_EMAIL}), database size {size}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--project-slug", default="bench")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--messages", type=int, default=1_000_000, help="outbound WhatsApp messages")
    parser.add_argument(
        "--messages-only", action="store_true", help="replace only the messages of the existing project"
    )
    parser.add_argument("--reset", action="store_true", help="replace the project if it exists")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("The benchmark needs PostgreSQL: set DATABASE_URL.")
    if args.messages_only:
        generate_messages(args)
    else:
        generate(args)


if __name__ == "__main__":
    main()
