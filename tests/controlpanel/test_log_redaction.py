"""Tokens in query strings (Meta's webhook verification, Graph API calls) never reach a log line."""

from __future__ import annotations

import io
import logging
from contextlib import contextmanager

import pytest
from granian.log import DEFAULT_ACCESSLOG_FMT

from controlpanel.logfilters import redact

VERIFY = "/webhooks/whatsapp/3f1c/?hub.mode=subscribe&hub.verify_token=s3cr3t-verify&hub.challenge=42"
GRAPH = "/simulator/graph/v23.0/123/messages?access_token=EAAG-secret-token&fields=id"


@contextmanager
def printed(logger_name: str):
    """What the handlers configured for ``logger_name`` (settings.LOGGING) print."""
    logger = logging.getLogger(logger_name)
    handlers = logger.handlers if not logger.propagate else logger.handlers + logging.getLogger().handlers
    # Only the handler settings.LOGGING names, not the ones pytest adds for its own capture.
    handlers = [h for h in handlers if h.get_name() == "console"]
    assert handlers, f"{logger_name} prints through no configured handler"
    out = io.StringIO()
    # Swapped directly, not with setStream(): that flushes the old stream, which may be a
    # capture an earlier test closed (the console handler keeps the stderr it was made with).
    old = [h.stream for h in handlers]
    for handler in handlers:
        handler.stream = out
    try:
        yield out
    finally:
        for handler, stream in zip(handlers, old, strict=True):
            handler.stream = stream


@pytest.mark.parametrize("path", [VERIFY, GRAPH])
def test_development_server_request_lines_are_redacted(path):
    # django.core.servers.basehttp.WSGIRequestHandler.log_message's call.
    with printed("django.server") as out:
        logging.getLogger("django.server").info('"%s" %s %s', f"GET {path} HTTP/1.1", "200", "2")
    line = out.getvalue()
    assert "s3cr3t-verify" not in line and "EAAG-secret-token" not in line
    assert "[redacted]" in line and "GET /" in line and "200" in line


def test_granian_access_lines_are_redacted():
    fmt = DEFAULT_ACCESSLOG_FMT.replace("%(path)s", "%(path)s?%(query_string)s")
    path, _, query = VERIFY.partition("?")
    args = {
        "addr": "10.0.0.1",
        "time": "2026-12-06 19:00:00 +0000",
        "dt_ms": 1.0,
        "status": 200,
        "path": path,
        "query_string": query,
        "method": "GET",
        "scheme": "https",
        "protocol": "HTTP/1.1",
    }
    with printed("granian.access") as out:
        logging.getLogger("granian.access").info(fmt, args)
    line = out.getvalue()
    assert "s3cr3t-verify" not in line
    assert "hub.verify_token=[redacted]&hub.challenge=42" in line


def test_our_own_and_django_request_loggers_are_redacted():
    with printed("django.request") as out:
        logging.getLogger("django.request").error("Internal Server Error: %s", GRAPH)
        logging.getLogger("whatsapp.webhooks").warning("verification from %s", VERIFY)
    text = out.getvalue()
    assert "EAAG-secret-token" not in text and "s3cr3t-verify" not in text
    assert text.count("[redacted]") == 2


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("?access_token=abc", "?access_token=[redacted]"),
        ("?a=1&ACCESS_TOKEN=abc&b=2", "?a=1&ACCESS_TOKEN=[redacted]&b=2"),
        ("?hub%2Everify_token=abc", "?hub%2Everify_token=[redacted]"),
        ('"GET /x?verify_token=abc HTTP/1.1"', '"GET /x?verify_token=[redacted] HTTP/1.1"'),
        ("?my_access_token_hint=abc&token_type=x", "?my_access_token_hint=abc&token_type=x"),
    ],
)
def test_redact(raw, clean):
    assert redact(raw) == clean
