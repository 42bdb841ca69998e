"""Demo WhatsApp connection for the embedded mode: the built-in simulator with approved templates
(Meta's hello_world sample, as every new account has, and the demo shop's own)."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from django.conf import settings

from controlpanel.models import Project
from controlpanel.services import SYSTEM

from .endpoints import allowed_base_url
from .models import WhatsAppAccount
from .services import save_connection


def connect_to_simulator(project: Project, url: str) -> None:
    """Connect the demo project to the built-in simulator and give it approved demo templates.

    Idempotent: an existing connection keeps its ids and secrets (only a simulator URL that moved,
    e.g. another port, is updated); a real Meta connection is left alone.
    """
    if not settings.SIMULATOR_ENABLED:
        return
    from .simulator.services import open_waba, seed_templates

    base_url = url.rstrip("/") + "/simulator/graph"
    if not allowed_base_url(base_url):
        # The panel calls its own simulator; on a non-loopback --url that is still 127.0.0.1.
        parts = urlsplit(url)
        base_url = f"{parts.scheme or 'http'}://127.0.0.1:{parts.port or 80}/simulator/graph"
        if not allowed_base_url(base_url):
            return
    account = WhatsAppAccount.objects.for_project(project).order_by("created_at").first()
    if account is None:
        fields = {
            "base_url": base_url,
            "waba_id": str(10**14 + secrets.randbelow(9 * 10**14)),
            "phone_number_id": str(10**14 + secrets.randbelow(9 * 10**14)),
            "display_phone_number": "15550001234",
            "verified_name": project.name,
            "access_token": secrets.token_urlsafe(32),
            "app_secret": secrets.token_urlsafe(32),
        }
        account = save_connection(project=project, account=None, fields=fields, actor=SYSTEM)
    elif "/simulator/" not in account.base_url:
        return
    elif account.base_url != base_url:
        account = save_connection(
            project=project, account=account, fields={"base_url": base_url}, actor=SYSTEM
        )
    open_waba(account.waba_id)
    seed_templates(waba_id=account.waba_id)
