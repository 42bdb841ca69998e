"""Log-in plumbing that django-axes calls by name (settings.AXES_USERNAME_CALLABLE)."""

from __future__ import annotations

from django.http import HttpRequest

from .models import normalize_login


def axes_username(request: HttpRequest, credentials: dict | None) -> str | None:
    """The identity failures are counted on: the normalised email, so that changing its case
    (``T6@EXAMPLE.COM`` after ``t6@example.com`` is locked) gives no fresh attempts."""
    raw = credentials.get("username") if credentials else request.POST.get("username")
    return normalize_login(raw) if isinstance(raw, str) else raw
