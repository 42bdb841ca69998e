"""Secrets that travel in query strings never reach a log line.

Meta's webhook verification sends ``hub.verify_token`` in the query string and Graph API calls
may carry ``access_token``; every logger that prints request lines (Django's ``django.server``
and ``django.request``, granian's ``granian.access``, ours) goes through a handler with this
filter (settings.LOGGING).
"""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = re.compile(
    r"(?i)(?<![\w.%])((?:hub(?:\.|%2E))?(?:access_token|verify_token|app_secret|client_secret|password)=)"
    r"[^&\s\"'#]*"
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return SECRET_PARAMS.sub(rf"\1{REDACTED}", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a broken format is logging's own error to report
        cleaned = redact(message)
        if cleaned != message:
            # The formatted line replaces the format and its arguments, so no formatter prints the raw ones.
            record.msg, record.args = cleaned, None
        return True
