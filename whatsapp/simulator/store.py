"""The simulator's state in one SQLite file: ``<SIMULATOR_STATE_DIR>/state.sqlite3``.

Why a separate SQLite file and not models, the cache or a JSON file:

- no models or migrations for a dev tool that must not touch the product's schema;
- the Django cache is per process in the embedded mode (locmem), but ``runsimulator`` and the
  app server (or granian's worker processes) must share the template store, the handsets and the
  throughput window;
- a JSON file needs a hand-made lock and rewrites everything on each send.

SQLite gives cross-thread and cross-process locking for free: WAL mode, a busy timeout, and
``BEGIN IMMEDIATE`` for every read-modify-write (the throughput check and the callback claim are
single transactions, so two processes never both take the last slot). One connection per thread
and process (re-opened after a fork). Deleting the file resets the simulator.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config

SCHEMA = """
CREATE TABLE IF NOT EXISTS templates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    waba_id TEXT NOT NULL,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    parameter_format TEXT NOT NULL DEFAULT 'POSITIONAL',
    components TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    quality TEXT NOT NULL DEFAULT 'UNKNOWN',
    rejected_reason TEXT NOT NULL DEFAULT 'NONE',
    rejection_info TEXT NOT NULL DEFAULT '{}',
    review_at REAL,
    review_outcome TEXT,
    created_at REAL NOT NULL,
    UNIQUE (waba_id, name, language)
);
CREATE TABLE IF NOT EXISTS wabas (
    waba_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS handsets (
    phone TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    user_id TEXT NOT NULL UNIQUE,
    created_by INTEGER,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS preferences (
    phone_number_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    marketing_stopped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (phone_number_id, phone)
);
CREATE TABLE IF NOT EXISTS windows (
    phone_number_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    last_inbound REAL NOT NULL,
    PRIMARY KEY (phone_number_id, phone)
);
CREATE TABLE IF NOT EXISTS messages (
    wamid TEXT PRIMARY KEY,
    phone_number_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    direction TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    delivered_at REAL,
    read_at REAL,
    failed_at REAL,
    error_code INTEGER,
    error_title TEXT NOT NULL DEFAULT '',
    reaction TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS messages_chat ON messages (phone, phone_number_id, created_at);
CREATE INDEX IF NOT EXISTS messages_business ON messages (phone_number_id, created_at);
CREATE TABLE IF NOT EXISTS send_log (
    phone_number_id TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS send_log_number ON send_log (phone_number_id, at);
CREATE TABLE IF NOT EXISTS refusals (
    phone_number_id TEXT NOT NULL,
    code INTEGER NOT NULL,
    http_status INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS refusals_number ON refusals (phone_number_id, at);
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    due_at REAL NOT NULL,
    account TEXT NOT NULL,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    wamid TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    leased_until REAL,
    delivered_at REAL,
    gave_up_at REAL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS callbacks_due ON callbacks (due_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
"""

_local = threading.local()
_schema_ready: set[str] = set()
_schema_lock = threading.Lock()


_paths: dict[str, Path] = {}


def path() -> Path:
    # Read on every call (tests point each test at its own directory), built once per directory.
    key = config.raw("SIMULATOR_STATE_DIR")
    found = _paths.get(key)
    if found is None:
        found = _paths[key] = config.state_dir() / "state.sqlite3"
    return found


def _connect(file: Path) -> sqlite3.Connection:
    file.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(file, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    key = f"{os.getpid()}:{file}"
    if key not in _schema_ready:
        with _schema_lock:
            conn.executescript(SCHEMA)
            _schema_ready.add(key)
    return conn


def connection() -> sqlite3.Connection:
    """This thread's connection to the state file in force (tests point each test at its own file)."""
    file = path()
    cached = getattr(_local, "conn", None)
    if cached is not None and cached[1] is file and cached[0] == os.getpid():
        return cached[2]
    if cached is not None and cached[0] == os.getpid():
        cached[2].close()
    conn = _connect(file)
    _local.conn = (os.getpid(), file, conn)
    return conn


def close() -> None:
    cached = getattr(_local, "conn", None)
    if cached is not None:
        if cached[0] == os.getpid():
            cached[2].close()
        _local.conn = None


@contextmanager
def transaction() -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the file's write lock from the start (no lost updates)."""
    conn = connection()
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _dict(row: sqlite3.Row | None, json_fields: Iterable[str] = ()) -> dict[str, Any] | None:
    if row is None:
        return None
    data = dict(row)
    for name in json_fields:
        if name in data and isinstance(data[name], str):
            data[name] = json.loads(data[name])
    return data


def _marks(values: list) -> str:
    return ",".join("?" * len(values))


# --- templates ---------------------------------------------------------------------------
TEMPLATE_JSON = ("components", "extra", "rejection_info")


def _template(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return _dict(row, TEMPLATE_JSON)


def settle_reviews(now: float | None = None) -> None:
    """PENDING templates whose review time has come take their decided outcome."""
    now = time.time() if now is None else now
    conn = connection()
    if conn.execute("SELECT 1 FROM templates WHERE review_at <= ? LIMIT 1", (now,)).fetchone() is None:
        return
    with transaction() as tx:
        tx.execute(
            "UPDATE templates SET status = review_outcome, review_at = NULL, review_outcome = NULL,"
            " quality = CASE WHEN review_outcome = 'APPROVED' THEN 'GREEN' ELSE quality END"
            " WHERE review_at <= ? AND status = 'PENDING'",
            (now,),
        )


def insert_template(template: dict[str, Any]) -> dict[str, Any]:
    with transaction() as tx:
        tx.execute(
            "INSERT INTO templates (id, waba_id, name, language, category, status, parameter_format,"
            " components, extra, quality, rejected_reason, rejection_info, review_at, review_outcome,"
            " created_at) VALUES (:id, :waba_id, :name, :language, :category, :status, :parameter_format,"
            " :components, :extra, :quality, :rejected_reason, :rejection_info, :review_at,"
            " :review_outcome, :created_at)",
            {
                **template,
                "components": json.dumps(template["components"]),
                "extra": json.dumps(template.get("extra") or {}),
                "rejection_info": json.dumps(template.get("rejection_info") or {}),
                "quality": template.get("quality", "UNKNOWN"),
                "rejected_reason": template.get("rejected_reason", "NONE"),
                "review_at": template.get("review_at"),
                "review_outcome": template.get("review_outcome"),
                "created_at": template.get("created_at") or time.time(),
            },
        )
    return get_template(template["id"])  # type: ignore[return-value]


def get_template(template_id: str) -> dict[str, Any] | None:
    settle_reviews()
    return _template(connection().execute("SELECT * FROM templates WHERE id = ?", (template_id,)).fetchone())


def find_template(waba_id: str, name: str, language: str) -> dict[str, Any] | None:
    settle_reviews()
    row = (
        connection()
        .execute(
            "SELECT * FROM templates WHERE waba_id = ? AND name = ? AND language = ?",
            (waba_id, name, language),
        )
        .fetchone()
    )
    return _template(row)


def templates_named(waba_id: str, name: str) -> list[dict[str, Any]]:
    rows = connection().execute(
        "SELECT * FROM templates WHERE waba_id = ? AND name = ? ORDER BY seq", (waba_id, name)
    )
    return [_template(r) for r in rows]  # type: ignore[misc]


def list_templates(
    waba_id: str,
    *,
    filters: dict[str, list[str]] | None = None,
    name_contains: str = "",
    content: str = "",
    after: int | None = None,
    before: int | None = None,
    limit: int = 25,
) -> tuple[list[dict[str, Any]], bool, bool]:
    """A page of templates in creation order; returns (page, more after it, more before it)."""
    settle_reviews()
    where = ["waba_id = ?"]
    args: list[Any] = [waba_id]
    for column, values in (filters or {}).items():
        if values:
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            args.extend(values)
    if name_contains:
        where.append("instr(lower(name), lower(?)) > 0")
        args.append(name_contains)
    if content:
        where.append("instr(lower(components), lower(?)) > 0")
        args.append(content)
    base = " AND ".join(where)
    conn = connection()
    if before is not None:
        rows = conn.execute(
            f"SELECT * FROM templates WHERE {base} AND seq < ? ORDER BY seq DESC LIMIT ?",  # noqa: S608
            [*args, before, limit + 1],
        ).fetchall()
        more_before = len(rows) > limit
        page = list(reversed(rows[:limit]))
        more_after = True
    else:
        rows = conn.execute(
            f"SELECT * FROM templates WHERE {base} AND seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
            [*args, after or 0, limit + 1],
        ).fetchall()
        more_after = len(rows) > limit
        page = rows[:limit]
        more_before = bool(after) and bool(page)
    return [_template(r) for r in page], more_after, more_before  # type: ignore[misc]


def count_templates(waba_id: str) -> tuple[int, int]:
    """(templates, distinct names): Meta counts a name with several languages once toward the limit."""
    row = (
        connection()
        .execute("SELECT count(*), count(DISTINCT name) FROM templates WHERE waba_id = ?", (waba_id,))
        .fetchone()
    )
    return int(row[0]), int(row[1])


def update_template(template_id: str, **fields: Any) -> None:
    if not fields:
        return
    for name in TEMPLATE_JSON:
        if name in fields:
            fields[name] = json.dumps(fields[name])
    assignments = ", ".join(f"{name} = :{name}" for name in fields)
    with transaction() as tx:
        tx.execute(f"UPDATE templates SET {assignments} WHERE id = :id", {**fields, "id": template_id})  # noqa: S608


def delete_templates(waba_id: str, name: str, template_id: str = "") -> int:
    with transaction() as tx:
        if template_id:
            cur = tx.execute(
                "DELETE FROM templates WHERE waba_id = ? AND name = ? AND id = ?",
                (waba_id, name, template_id),
            )
        else:
            cur = tx.execute("DELETE FROM templates WHERE waba_id = ? AND name = ?", (waba_id, name))
        return cur.rowcount


def register_waba(waba_id: str) -> bool:
    """Note that the simulator has seen this WABA; True the first time only."""
    with transaction() as tx:
        cur = tx.execute(
            "INSERT OR IGNORE INTO wabas (waba_id, created_at) VALUES (?, ?)", (waba_id, time.time())
        )
        return cur.rowcount == 1


def all_wabas_templates(waba_ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = list(waba_ids)
    if not ids:
        return []
    settle_reviews()
    rows = connection().execute(
        f"SELECT * FROM templates WHERE waba_id IN ({_marks(ids)}) ORDER BY waba_id, name, language",  # noqa: S608
        ids,
    )
    return [_template(r) for r in rows]  # type: ignore[misc]


# --- handsets, preferences and windows -------------------------------------------------------
def get_handset(phone: str) -> dict[str, Any] | None:
    return _dict(connection().execute("SELECT * FROM handsets WHERE phone = ?", (phone,)).fetchone())


def handset_by_user_id(user_id: str) -> dict[str, Any] | None:
    return _dict(connection().execute("SELECT * FROM handsets WHERE user_id = ?", (user_id,)).fetchone())


def ensure_handset(phone: str, *, name: str, user_id: str, created_by: int | None = None) -> dict[str, Any]:
    """The handset of ``phone``, created with ``name`` on first use; a given name replaces an empty one."""
    with transaction() as tx:
        tx.execute(
            "INSERT INTO handsets (phone, name, user_id, created_by, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (phone) DO UPDATE SET name = CASE WHEN handsets.name = '' THEN excluded.name"
            " ELSE handsets.name END",
            (phone, name, user_id, created_by, time.time()),
        )
    return get_handset(phone)  # type: ignore[return-value]


def rename_handset(phone: str, name: str) -> None:
    with transaction() as tx:
        tx.execute("UPDATE handsets SET name = ? WHERE phone = ?", (name, phone))


def list_handsets(phones: Iterable[str] | None = None, *, created_by: int | None = None) -> list[dict]:
    conn = connection()
    if phones is None and created_by is None:
        rows = conn.execute("SELECT * FROM handsets ORDER BY created_at DESC").fetchall()
    else:
        wanted = list(phones or [])
        rows = conn.execute(
            f"SELECT * FROM handsets WHERE created_by = ? OR phone IN ({_marks(wanted) or 'NULL'})"  # noqa: S608
            " ORDER BY created_at DESC",
            [created_by if created_by is not None else -1, *wanted],
        ).fetchall()
    return [dict(r) for r in rows]


def set_marketing_stopped(phone_number_id: str, phone: str, stopped: bool) -> None:
    with transaction() as tx:
        tx.execute(
            "INSERT INTO preferences (phone_number_id, phone, marketing_stopped) VALUES (?, ?, ?)"
            " ON CONFLICT (phone_number_id, phone)"
            " DO UPDATE SET marketing_stopped = excluded.marketing_stopped",
            (phone_number_id, phone, int(stopped)),
        )


def marketing_stopped(phone_number_id: str, phone: str) -> bool:
    row = (
        connection()
        .execute(
            "SELECT marketing_stopped FROM preferences WHERE phone_number_id = ? AND phone = ?",
            (phone_number_id, phone),
        )
        .fetchone()
    )
    return bool(row and row[0])


def open_window(phone_number_id: str, phone: str, at: float) -> None:
    with transaction() as tx:
        tx.execute(
            "INSERT INTO windows (phone_number_id, phone, last_inbound) VALUES (?, ?, ?)"
            " ON CONFLICT (phone_number_id, phone) DO UPDATE SET"
            " last_inbound = max(windows.last_inbound, excluded.last_inbound)",
            (phone_number_id, phone, at),
        )


def last_inbound(phone_number_id: str, phone: str) -> float | None:
    row = (
        connection()
        .execute(
            "SELECT last_inbound FROM windows WHERE phone_number_id = ? AND phone = ?",
            (phone_number_id, phone),
        )
        .fetchone()
    )
    return float(row[0]) if row else None


# --- throughput ----------------------------------------------------------------------------
STAMPS = ("created_at", "sent_at", "delivered_at", "read_at", "failed_at")


@dataclass(slots=True)
class Send:
    """One send to accept (``accept_sends``): the number's throughput limit, the recipient's
    handset when it is new (else None), the message for its chat (the ledger), its status webhooks
    and, for a reaction, (emoji, the wamid reacted to). ``now`` stamps the handset; the message's
    times are moved to the slot's. ``clock``: the slot's time, read once the lock is held."""

    phone_number_id: str
    limit: int
    now: float
    new_handset: dict[str, Any] | None
    message: dict[str, Any]
    callback_rows: list[dict[str, Any]]
    reaction: tuple[str, str] | None = None
    clock: Callable[[], float] | None = None
    at: float | None = None  # the slot's time fixed by the caller: its arrival on the event loop


def accept(send: Send) -> bool:
    """Accept one send (see ``accept_sends``); under ``runsimulator``'s WSGI app with
    SIMULATOR_GROUP_COMMIT it shares the transaction of the sends arriving meanwhile and returns once
    that is committed."""
    if config.group_commit():
        from . import groupcommit  # the committer thread only where it is switched on

        return groupcommit.submit(send)
    return accept_sends([send])[0]


def accept_sends(sends: list[Send]) -> list[bool]:
    """Sends in one write transaction, in order: each takes a throughput slot of its number (False,
    and the refusal recorded, when the last second holds ``limit`` sends already) and, with it, its
    new handset (as ``ensure_handset``), its message in the chat (the ledger) and its webhooks.

    One transaction for a send's writes (slot, handset, message, webhooks), and under load for all
    the sends waiting meanwhile (``groupcommit``, or the sends of one turn of the ASGI app's event
    loop): every write transaction takes the file's lock and writes the WAL. A send's slot time is
    its ``at`` when the caller fixed it (its arrival on the event loop, in arrival order), else
    ``clock()`` of the first send (default ``time.time``) read once the lock is held: a time read
    before waiting for the lock would let later sends into this one's second and refuse it.
    ``_Window`` gives each send exactly the count it would find by itself. Nothing of a refused
    send is stored but its refusal.
    """
    accepted: list[bool] = []
    with transaction() as tx:
        locked_at = (sends[0].clock or time.time)()
        last: dict[str, float] = {}
        for send in sends:
            last[send.phone_number_id] = send.at if send.at is not None else locked_at
        windows: dict[str, _Window] = {}
        slots, handsets, messages, reactions, callbacks, refused = [], [], [], [], [], []
        for send in sends:
            number = send.phone_number_id
            at = send.at if send.at is not None else locked_at
            window = windows.get(number)
            if window is None:
                window = windows[number] = _Window.read(tx, number, at, last[number])
            if not window.admit(at, send.limit):
                refused.append((number, 130429, 429, at))
                accepted.append(False)
                continue
            accepted.append(True)
            slots.append((number, at))
            # The message is stamped with its slot's time (its status times move along), so that
            # the ledger's acceptance times are the ones the throughput check counted.
            message, rows = send.message, send.callback_rows
            shift = at - message["created_at"]
            if shift:
                message = {**message, **{k: message[k] + shift for k in STAMPS if message.get(k) is not None}}
                rows = [{**row, "due_at": row["due_at"] + shift} for row in rows]
            if send.new_handset is not None:
                handset = send.new_handset
                handsets.append((handset["phone"], handset["name"], handset["user_id"], None, send.now))
            messages.append(_message_row(message))
            if send.reaction is not None:  # (emoji, the wamid reacted to): shown on that message
                reactions.append((send.reaction[0], send.reaction[1], number))
            callbacks.extend(rows)
        if refused:
            tx.executemany(
                "INSERT INTO refusals (phone_number_id, code, http_status, at) VALUES (?, ?, ?, ?)", refused
            )
        if slots:
            tx.executemany("INSERT INTO send_log (phone_number_id, at) VALUES (?, ?)", slots)
        if handsets:
            tx.executemany(
                "INSERT INTO handsets (phone, name, user_id, created_by, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (phone) DO UPDATE SET name = CASE WHEN handsets.name = '' THEN excluded.name"
                " ELSE handsets.name END",
                handsets,
            )
        if messages:
            tx.executemany(INSERT_MESSAGE, messages)
        if reactions:
            tx.executemany(
                "UPDATE messages SET reaction = ? WHERE wamid = ? AND phone_number_id = ?", reactions
            )
        add_callbacks(callbacks, tx)
    return accepted


class _Window:
    """A number's sends in the last second, from the first send of a transaction to its last.

    Counted once at the first send's time; the sends that leave the window before the last send's
    time are read too, so that each send of the transaction, at its own time (sends on the event
    loop keep their arrival), finds the count it would have found alone."""

    __slots__ = ("leaving", "used")

    def __init__(self, used: int, leaving: list[float]) -> None:
        self.used, self.leaving = used, deque(leaving)

    @classmethod
    def read(cls, tx: sqlite3.Connection, number: str, first: float, last: float) -> _Window:
        tx.execute("DELETE FROM send_log WHERE phone_number_id = ? AND at <= ?", (number, first - 2.0))
        used = tx.execute(
            "SELECT count(*) FROM send_log WHERE phone_number_id = ? AND at > ?", (number, first - 1.0)
        ).fetchone()[0]
        leaving = []
        if last > first:
            leaving = [row[0] for row in tx.execute(
                "SELECT at FROM send_log WHERE phone_number_id = ? AND at > ? AND at <= ? ORDER BY at",
                (number, first - 1.0, last - 1.0),
            )]  # fmt: skip
        return cls(used, leaving)

    def admit(self, at: float, limit: int) -> bool:
        """Take a slot at ``at`` unless the second before it holds ``limit`` sends already."""
        while self.leaving and self.leaving[0] <= at - 1.0:
            self.leaving.popleft()
            self.used -= 1
        if self.used >= limit:
            return False
        self.used += 1
        return True


def record_refusal(
    phone_number_id: str, code: int, http_status: int, at: float, conn: sqlite3.Connection | None = None
) -> None:
    """A send answered with an error and not accepted (throughput, injected faults), for the ledger page."""
    if conn is None:
        with transaction() as tx:
            record_refusal(phone_number_id, code, http_status, at, tx)
        return
    conn.execute(
        "INSERT INTO refusals (phone_number_id, code, http_status, at) VALUES (?, ?, ?, ?)",
        (phone_number_id, code, http_status, at),
    )


def refusals(phone_number_id: str) -> dict[int, int]:
    rows = connection().execute(
        "SELECT code, count(*) FROM refusals WHERE phone_number_id = ? GROUP BY code ORDER BY code",
        (phone_number_id,),
    )
    return {int(code): int(n) for code, n in rows}


# --- the ledger: what the simulator accepted -------------------------------------------------
def ledger(phone_number_id: str) -> tuple[int, dict[str, int]]:
    """(messages accepted from the number, how many each recipient got): proof of "no duplicates".

    Every accepted business message is a row of ``messages``, committed before its 200 is
    answered (``accept_sends``, alone or in a group commit), so the ledger is those rows; refused
    sends never get one.
    """
    rows = connection().execute(
        "SELECT phone, count(*) FROM messages WHERE phone_number_id = ? AND direction = 'business'"
        " GROUP BY phone",
        (phone_number_id,),
    )
    recipients = {phone: int(n) for phone, n in rows}
    return sum(recipients.values()), recipients


def accepted_per_second(phone_number_id: str) -> dict[int, int]:
    """Accepted messages of the number per whole second (epoch seconds), for throttle checks."""
    rows = connection().execute(
        "SELECT CAST(created_at AS INTEGER) AS second, count(*) FROM messages"
        " WHERE phone_number_id = ? AND direction = 'business' GROUP BY second ORDER BY second",
        (phone_number_id,),
    )
    return {int(second): int(n) for second, n in rows}


# --- chats ---------------------------------------------------------------------------------
MESSAGE_JSON = ("payload",)


INSERT_MESSAGE = (
    "INSERT INTO messages (wamid, phone_number_id, phone, direction, type, payload, created_at, sent_at,"
    " delivered_at, read_at, failed_at, error_code, error_title) VALUES (:wamid, :phone_number_id,"
    " :phone, :direction, :type, :payload, :created_at, :sent_at, :delivered_at, :read_at, :failed_at,"
    " :error_code, :error_title)"
)


def _message_row(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "sent_at": None,
        "delivered_at": None,
        "read_at": None,
        "failed_at": None,
        "error_code": None,
        "error_title": "",
        **message,
        "payload": json.dumps(message["payload"]),
    }


def insert_message(message: dict[str, Any], conn: sqlite3.Connection | None = None) -> None:
    (conn or connection()).execute(INSERT_MESSAGE, _message_row(message))


def get_message(wamid: str) -> dict[str, Any] | None:
    return _dict(
        connection().execute("SELECT * FROM messages WHERE wamid = ?", (wamid,)).fetchone(), MESSAGE_JSON
    )


def chat(phone: str, phone_number_id: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = connection().execute(
        "SELECT * FROM (SELECT * FROM messages WHERE phone = ? AND phone_number_id = ?"
        " ORDER BY created_at DESC, rowid DESC LIMIT ?) ORDER BY created_at, rowid",
        (phone, phone_number_id, limit),
    )
    return [_dict(r, MESSAGE_JSON) for r in rows]  # type: ignore[misc]


def chats_of(phone: str) -> list[dict[str, Any]]:
    """One row per business number the handset talked to: its latest message."""
    rows = connection().execute(
        "SELECT m.* FROM messages m JOIN (SELECT phone_number_id, max(created_at) AS last FROM messages"
        " WHERE phone = ? GROUP BY phone_number_id) l ON l.phone_number_id = m.phone_number_id"
        " AND l.last = m.created_at WHERE m.phone = ? ORDER BY m.created_at DESC",
        (phone, phone),
    )
    return [_dict(r, MESSAGE_JSON) for r in rows]  # type: ignore[misc]


def phones_talking_to(phone_number_ids: Iterable[str]) -> list[str]:
    ids = list(phone_number_ids)
    if not ids:
        return []
    rows = connection().execute(
        f"SELECT phone, max(created_at) AS last FROM messages WHERE phone_number_id IN ({_marks(ids)})"  # noqa: S608
        " GROUP BY phone ORDER BY last DESC LIMIT 500",
        ids,
    )
    return [r[0] for r in rows]


def update_message(wamid: str, **fields: Any) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in fields)
    with transaction() as tx:
        tx.execute(f"UPDATE messages SET {assignments} WHERE wamid = :wamid", {**fields, "wamid": wamid})  # noqa: S608


def mark_user_messages_read(phone_number_id: str, phone: str, up_to: float, at: float) -> None:
    """The business read the chat up to a message: that one and every earlier one turn blue."""
    with transaction() as tx:
        tx.execute(
            "UPDATE messages SET read_at = ?, delivered_at = coalesce(delivered_at, ?)"
            " WHERE phone_number_id = ? AND phone = ? AND direction = 'user' AND read_at IS NULL"
            " AND created_at <= ?",
            (at, at, phone_number_id, phone, up_to),
        )


def read_business_messages(phone_number_id: str, phone: str, at: float) -> list[dict[str, Any]]:
    """Messages the handset has now seen for the first time (for read-on-open); marks them read."""
    with transaction() as tx:
        rows = tx.execute(
            "SELECT * FROM messages WHERE phone_number_id = ? AND phone = ? AND direction = 'business'"
            " AND read_at IS NULL AND failed_at IS NULL AND delivered_at IS NOT NULL AND delivered_at <= ?",
            (phone_number_id, phone, at),
        ).fetchall()
        tx.execute(
            "UPDATE messages SET read_at = ? WHERE phone_number_id = ? AND phone = ?"
            " AND direction = 'business' AND read_at IS NULL AND failed_at IS NULL"
            " AND delivered_at IS NOT NULL AND delivered_at <= ?",
            (at, phone_number_id, phone, at),
        )
    return [_dict(r, MESSAGE_JSON) for r in rows]  # type: ignore[misc]


# --- the webhook outbox ----------------------------------------------------------------------
def add_callbacks(rows: list[dict[str, Any]], conn: sqlite3.Connection | None = None) -> None:
    """Queue webhook POSTs: each row has due_at, account (public id), url, body (bytes), kind, wamid."""
    if not rows:
        return
    (conn or connection()).executemany(
        "INSERT INTO callbacks (due_at, account, url, body, kind, wamid) VALUES"
        " (:due_at, :account, :url, :body, :kind, :wamid)",
        [{"kind": "", "wamid": "", **row} for row in rows],
    )


def claim_callbacks(now: float, limit: int, lease_seconds: float = 60.0) -> list[dict[str, Any]]:
    """Take up to ``limit`` due callbacks; if this worker dies, the lease runs out and they come back."""
    with transaction() as tx:
        rows = tx.execute(
            "SELECT * FROM callbacks WHERE delivered_at IS NULL AND gave_up_at IS NULL AND due_at <= ?"
            " AND (leased_until IS NULL OR leased_until < ?) ORDER BY due_at, id LIMIT ?",
            (now, now, limit),
        ).fetchall()
        if rows:
            tx.execute(
                f"UPDATE callbacks SET leased_until = ? WHERE id IN ({','.join('?' * len(rows))})",  # noqa: S608
                [now + lease_seconds, *[r["id"] for r in rows]],
            )
    return [dict(r) for r in rows]


def callback_done(callback_id: int, at: float) -> None:
    with transaction() as tx:
        tx.execute(
            "UPDATE callbacks SET delivered_at = ?, leased_until = NULL WHERE id = ?", (at, callback_id)
        )


def callback_failed(
    callback_id: int, *, attempts: int, error: str, retry_at: float | None, at: float
) -> None:
    with transaction() as tx:
        if retry_at is None:
            tx.execute(
                "UPDATE callbacks SET attempts = ?, last_error = ?, gave_up_at = ?, leased_until = NULL"
                " WHERE id = ?",
                (attempts, error[:500], at, callback_id),
            )
        else:
            tx.execute(
                "UPDATE callbacks SET attempts = ?, last_error = ?, due_at = ?, leased_until = NULL"
                " WHERE id = ?",
                (attempts, error[:500], retry_at, callback_id),
            )


def next_callback_due() -> float | None:
    row = (
        connection()
        .execute("SELECT min(due_at) FROM callbacks WHERE delivered_at IS NULL AND gave_up_at IS NULL")
        .fetchone()
    )
    return float(row[0]) if row and row[0] is not None else None


def callback_stats() -> dict[str, int]:
    row = (
        connection()
        .execute(
            "SELECT sum(delivered_at IS NULL AND gave_up_at IS NULL), sum(gave_up_at IS NOT NULL),"
            " sum(delivered_at IS NULL AND gave_up_at IS NULL AND attempts > 0) FROM callbacks"
        )
        .fetchone()
    )
    return {"pending": int(row[0] or 0), "gave_up": int(row[1] or 0), "retrying": int(row[2] or 0)}


def recent_callback_errors(limit: int = 5) -> list[dict[str, Any]]:
    rows = connection().execute(
        "SELECT id, url, kind, attempts, last_error, gave_up_at FROM callbacks WHERE last_error != ''"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [dict(r) for r in rows]
