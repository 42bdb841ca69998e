"""X-Hub-Signature-256: HMAC-SHA256 of the raw body with the app secret (reference section 4.7)."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


def sign(body: bytes, app_secret: str) -> str:
    return PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def is_valid(body: bytes, header: str, app_secret: str) -> bool:
    """Constant-time check of ``header`` against the raw ``body`` bytes exactly as received."""
    if not header or not header.startswith(PREFIX) or not app_secret:
        return False
    return hmac.compare_digest(sign(body, app_secret).encode(), header.strip().lower().encode())
