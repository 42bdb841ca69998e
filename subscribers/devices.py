"""Push devices: the one write path for registering, unregistering and removing them (ADR 0008).

STAND-IN (foundation): slice "push-simulator" implements it. The API (``/api/v1/devices``), the
push transport (FCM says a token is unregistered) and the panel (remove a device) all call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controlpanel.models import Project
from controlpanel.services import Actor

from .models import Device, Subscriber


@dataclass(frozen=True)
class DeviceData:
    token: str
    platform: str
    app_version: str = ""
    language: str = ""
    time_zone: str = ""
    push_enabled: bool = True


def register(
    *, project: Project, subscriber: Subscriber, data: DeviceData, actor: Actor
) -> tuple[Device, bool]:
    """Register (or refresh, or move to ``subscriber``) the device with ``data.token``; returns
    (device, created). Validates the token and fields (``InvalidInput`` naming the field)."""
    raise NotImplementedError


def remove(
    *, project: Project, tokens: Sequence[str] = (), device_ids: Sequence[int] = (), reason: str
) -> int:
    """Mark those devices removed (``removed_at`` now, ``removed_reason``); set-based; returns how
    many were active. The push transport calls it for tokens FCM calls unregistered."""
    raise NotImplementedError
