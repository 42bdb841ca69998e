"""The simulator's knobs: a Django setting of the same name wins, then the environment, then the default."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS = {
    "SIMULATOR_DELAYS_MS": "300,800,1500",
    "SIMULATOR_FAILURE_RATE": "0.0",
    "SIMULATOR_DUPLICATE_RATE": "0.0",
    "SIMULATOR_APPROVAL_SECONDS": "5",
    "SIMULATOR_UNDELIVERABLE_PREFIXES": "1555000",
    "SIMULATOR_CALLBACK_BASE": "",
    "SIMULATOR_CALLBACK_THREADS": "2",
    "SIMULATOR_DELIVER_CALLBACKS": "true",
    "SIMULATOR_STATE_DIR": "",
    # Fault injection for load and chaos tests (reference 5.4 says how a sender must react).
    "SIMULATOR_THROTTLE_ERROR_RATE": "0.0",  # sends answered 130429 although under the limit
    "SIMULATOR_SERVER_ERROR_RATE": "0.0",  # sends answered HTTP 500, nothing accepted
    "SIMULATOR_LATENCY_MS": "0",  # added to every Graph API call, like Meta's round trip
    # Seconds a looked-up account (token decrypted once) is reused; runsimulator sets it, the panel
    # keeps 0 so that a token changed in the admin counts at once.
    "SIMULATOR_ACCOUNT_CACHE_SECONDS": "0",
    # > 0: database probes of a request run on this many threads per process (bounded connections).
    "SIMULATOR_DB_THREADS": "0",
    # false: accepted messages queue no status webhooks (a load test of the send path alone).
    "SIMULATOR_STATUS_WEBHOOKS": "true",
    # true (runsimulator): the sends arriving while one transaction commits share the next one
    # (groupcommit); each is still answered only after its transaction committed.
    "SIMULATOR_GROUP_COMMIT": "false",
}


# Read a score of times per simulated send: a Django setting that is not defined raises inside
# LazySettings, about a fifth of a send's CPU in a load test. Kept per (name, value in the
# environment), so a process that changes its environment (a benchmark pointing the state directory
# elsewhere) reads the new value; cleared when a setting changes (tests).
_cache: dict[tuple[str, str | None], str] = {}


def clear_cache(**_: object) -> None:
    _cache.clear()


setting_changed.connect(clear_cache, dispatch_uid="simulator-config-cache")


_frozen = False


def freeze() -> None:
    """Read each knob once from now on, never the environment again: the standalone simulator's
    process (``wsgi.py``), whose settings and environment are fixed once it serves. A send reads
    a score of knobs, and ``os.environ`` encodes and decodes on every read."""
    global _frozen
    _frozen = True


def raw(name: str) -> str:
    key = (name, None) if _frozen else (name, os.environ.get(name))
    try:
        return _cache[key]
    except KeyError:
        pass
    env = os.environ.get(name)
    value = getattr(settings, name, None)
    if value is None:
        value = env if env is not None else DEFAULTS[name]
    _cache[key] = text = str(value).strip()
    return text


# The knobs below parse their text with functions cached on that text: a send reads a dozen of them.
def delays_ms() -> tuple[int, int, int]:
    """Milliseconds after acceptance for sent, delivered and read (read < 0: when the chat is opened)."""
    return _delays(raw("SIMULATOR_DELAYS_MS"))


@functools.lru_cache(maxsize=64)
def _delays(text: str) -> tuple[int, int, int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(float(p)) for p in parts if p]
    except ValueError:
        values = []
    defaults = [300, 800, 1500]
    values = (values + defaults[len(values) :])[:3]
    sent = max(0, values[0])
    delivered = max(sent, values[1])
    read = values[2] if values[2] < 0 else max(delivered, values[2])
    return sent, delivered, read


@functools.lru_cache(maxsize=256)
def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _fraction(name: str) -> float:
    value = _float(raw(name))
    return 0.0 if value is None else min(1.0, max(0.0, value))


def failure_rate() -> float:
    return _fraction("SIMULATOR_FAILURE_RATE")


def duplicate_rate() -> float:
    return _fraction("SIMULATOR_DUPLICATE_RATE")


def throttle_error_rate() -> float:
    return _fraction("SIMULATOR_THROTTLE_ERROR_RATE")


def server_error_rate() -> float:
    return _fraction("SIMULATOR_SERVER_ERROR_RATE")


def _seconds(name: str, scale: float = 1.0) -> float:
    value = _float(raw(name))
    return 0.0 if value is None else max(0.0, value / scale)


def latency_seconds() -> float:
    return _seconds("SIMULATOR_LATENCY_MS", 1000.0)


def account_cache_seconds() -> float:
    return _seconds("SIMULATOR_ACCOUNT_CACHE_SECONDS")


def db_threads() -> int:
    try:
        return max(0, min(32, int(raw("SIMULATOR_DB_THREADS"))))
    except ValueError:
        return 0


def status_webhooks() -> bool:
    return raw("SIMULATOR_STATUS_WEBHOOKS").lower() not in ("0", "false", "no", "off")


def group_commit() -> bool:
    return raw("SIMULATOR_GROUP_COMMIT").lower() in ("1", "true", "yes", "on")


def approval_seconds() -> float:
    try:
        return max(0.0, float(raw("SIMULATOR_APPROVAL_SECONDS")))
    except ValueError:
        return 5.0


def undeliverable_prefixes() -> tuple[str, ...]:
    return _prefixes(raw("SIMULATOR_UNDELIVERABLE_PREFIXES"))


@functools.lru_cache(maxsize=64)
def _prefixes(text: str) -> tuple[str, ...]:
    return tuple(p.strip().lstrip("+") for p in text.split(",") if p.strip())


def callback_base_override() -> str:
    return raw("SIMULATOR_CALLBACK_BASE").rstrip("/")


def callback_threads() -> int:
    try:
        return max(1, min(32, int(raw("SIMULATOR_CALLBACK_THREADS"))))
    except ValueError:
        return 2


def deliver_callbacks() -> bool:
    return raw("SIMULATOR_DELIVER_CALLBACKS").lower() not in ("0", "false", "no", "off")


def state_dir() -> Path:
    configured = raw("SIMULATOR_STATE_DIR")
    return Path(configured) if configured else Path(settings.VAR_DIR) / "simulator"


def summary() -> dict[str, str]:
    """The knobs in force, for the phone page."""
    sent, delivered, read = delays_ms()
    return {
        "Status delays": f"sent {sent} ms, delivered {delivered} ms, "
        + (f"read {read} ms" if read >= 0 else "read when the chat is opened"),
        "Failure rate": f"{failure_rate():.0%}",
        "Duplicate webhooks": f"{duplicate_rate():.0%}",
        "Template review": f"{approval_seconds():g} s",
        "Undeliverable numbers (131026)": ", ".join(f"+{p}…" for p in undeliverable_prefixes()) or "none",
        "Injected 130429 (throughput)": f"{throttle_error_rate():.1%}",
        "Injected HTTP 500": f"{server_error_rate():.1%}",
        "Added latency per call": f"{latency_seconds() * 1000:g} ms",
    }
