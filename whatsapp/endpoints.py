"""Which Graph API base URLs a connection may use.

A project admin sets the base URL, and every request to it carries the stored
access token. So it may only be Meta's Graph API, the built-in simulator on
this machine (when the simulator is enabled), or a URL the operator allowed
with WHATSAPP_EXTRA_BASE_URLS; never an arbitrary host (SSRF, token theft).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from .models import META_GRAPH_URL

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _norm(url: str) -> str:
    return url.strip().rstrip("/")


def allowed_base_url(url: str) -> bool:
    url = _norm(url)
    if url == META_GRAPH_URL or url in {_norm(u) for u in settings.WHATSAPP_EXTRA_BASE_URLS}:
        return True
    parts = urlsplit(url)
    if settings.SIMULATOR_ENABLED and parts.scheme in ("http", "https") and parts.path == "/simulator/graph":
        public = urlsplit(settings.PUBLIC_BASE_URL) if settings.PUBLIC_BASE_URL else None
        return parts.hostname in LOOPBACK_HOSTS or (public is not None and parts.netloc == public.netloc)
    return False


def same_origin(url: str, base: str) -> bool:
    """Paging links must stay on the host we were told to talk to."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)
