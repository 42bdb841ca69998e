"""The device page's "Open" button: report the open through the public API, as an app would.

The simulator does not write the open itself: it POSTs ``/api/v1/push/opened`` over HTTP with an
API key it owns for the project (``SimulatorKey``), so a tap exercises what a real app calls and
the one write path behind it (``campaigns.channel_events.record``).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from controlpanel.models import Project
from controlpanel.services import Actor, create_api_key

from ..models import SimulatedPush, SimulatorKey

KEY_LABEL = "Push simulator"
TIMEOUT = 10.0
# Tests route the call to the Django test client (whatsapp.simulator.testing.httpx_transport()).
transport: httpx.BaseTransport | None = None


@dataclass(frozen=True)
class OpenResult:
    ok: bool
    error: str = ""


def api_key_for(project: Project) -> str:
    """The simulator's API key of ``project``: the stored one while it is not revoked, else a new
    one (created with the controlpanel's API key service, so it is listed and audited like any)."""
    with transaction.atomic():
        # One key per project, also when two first taps race: the project row serializes them.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        stored = SimulatorKey.objects.for_project(project).select_related("api_key").first()
        if stored is not None and stored.api_key.is_active:
            return stored.secret
        key, raw = create_api_key(project=project, name=KEY_LABEL, actor=Actor(label="push simulator"))
        SimulatorKey.objects.update_or_create(project=project, defaults={"api_key": key, "secret": raw})
    return raw


def message_id_of(push: SimulatedPush) -> str:
    """Our message's public id, which the push transport puts in the FCM data (``message_id``)."""
    data = push.payload.get("data") if isinstance(push.payload, dict) else None
    value = data.get("message_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def report_open(push: SimulatedPush, *, base_url: str) -> OpenResult:
    """POST the open to the API at ``base_url``; on success the push shows "opened"."""
    message_id = message_id_of(push)
    if not message_id or push.project is None:
        return OpenResult(
            False, gettext("This push names no message of the platform (no message_id in its data).")
        )
    key = api_key_for(push.project)
    url = base_url.rstrip("/") + reverse("api:push_opened")
    try:
        with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
            response = client.post(
                url,
                json={"message": message_id, "token": push.token},
                headers={"Authorization": f"Bearer {key}"},
            )
    except httpx.HTTPError as exc:
        return OpenResult(
            False, gettext("The API could not be reached at %(url)s: %(error)s") % {"url": url, "error": exc}
        )
    if response.status_code != 200:
        try:
            words = response.json().get("message", "")
        except ValueError:
            words = response.text[:200]
        return OpenResult(
            False,
            gettext("The API answered %(status)s: %(message)s")
            % {"status": response.status_code, "message": words},
        )
    SimulatedPush.objects.filter(pk=push.pk, opened_at__isnull=True).update(opened_at=timezone.now())
    return OpenResult(True)
