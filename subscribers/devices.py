"""Push devices: the one write path for registering, unregistering and removing them (ADR 0008).

The API (``/api/v1/devices``), the push transport (FCM says a token is unregistered), the push
simulator's device page and the panel all call these functions. A token identifies one app
install within a project (``device_unique_token``): registering it again refreshes that row, for
whichever subscriber now uses the install, and a removed row comes back to life instead of a
second row being written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.services import Actor, record_audit

from . import tags as tagtypes
from .errors import InvalidInput
from .models import Device, DevicePlatform, Subscriber
from .profile import time_zones

# FCM registration tokens are ~160 ASCII characters, APNs tokens 64 hex digits. The column takes
# 4096, but PostgreSQL's btree behind device_unique_token refuses an entry over ~2700 bytes (a
# server error, not an answer), so a token is visible ASCII and at most 2048 characters.
TOKEN_MAX = 2048
TOKEN_PATTERN = r"^[!-~]+$"  # noqa: S105 - visible ASCII: no spaces, no control characters
APP_VERSION_MAX = 64
LANGUAGE_MAX = 16
# BCP 47-ish: a language subtag and optional region/script/variant subtags ("de", "pt-BR",
# "zh_Hant_TW"); apps send both separators.
# "" (not given) matches too.
LANGUAGE_PATTERN = r"^(?:[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*)?$"
UNREGISTERED_BY_APP = "unregistered by the app"


@dataclass(frozen=True)
class DeviceData:
    token: str
    platform: str
    app_version: str = ""
    language: str = ""
    time_zone: str = ""
    push_enabled: bool = True


def clean_device_data(data: DeviceData) -> DeviceData:
    """``data`` checked field by field (``InvalidInput`` naming the first bad field), trimmed."""
    token = data.token
    if not isinstance(token, str) or len(token) > TOKEN_MAX or not re.fullmatch(TOKEN_PATTERN, token):
        raise InvalidInput(
            _("A push token is 1-%(token_max)s visible ASCII characters (no spaces).")
            % {"token_max": TOKEN_MAX},
            field="token",
        )
    if data.platform not in DevicePlatform.values:
        raise InvalidInput(
            _("Platform must be one of %(value)s.") % {"value": ", ".join(DevicePlatform.values)},
            field="platform",
        )
    app_version = _text(data.app_version, "app_version", "The app version", APP_VERSION_MAX)
    language = _text(data.language, "language", "The language", LANGUAGE_MAX)
    if not re.fullmatch(LANGUAGE_PATTERN, language):
        raise InvalidInput(
            _("Language %(language)r is not a code like de, pt-BR or pt_BR.") % {"language": language},
            field="language",
        )
    time_zone = _text(data.time_zone, "time_zone", "The time zone", 64)
    if time_zone and time_zone not in time_zones():
        raise InvalidInput(
            _("Unknown time zone %(time_zone)r; use a name like Europe/Berlin.") % {"time_zone": time_zone},
            field="time_zone",
        )
    if not isinstance(data.push_enabled, bool):
        raise InvalidInput(_("push_enabled is true or false."), field="push_enabled")
    return replace(data, app_version=app_version, language=language, time_zone=time_zone)


def _text(value: object, field: str, what: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(_("%(what)s is a text.") % {"what": what}, field=field)
    text = tagtypes.clean_text(value.strip(), field=field, what=what)
    if len(text) > max_length:
        raise InvalidInput(
            _("%(what)s is at most %(max_length)s characters.") % {"what": what, "max_length": max_length},
            field=field,
        )
    return text


@transaction.atomic
def register(
    *, project: Project, subscriber: Subscriber, data: DeviceData, actor: Actor
) -> tuple[Device, bool]:
    """Register (or refresh, or move to ``subscriber``) the device with ``data.token``; returns
    (device, created). Validates the token and fields (``InvalidInput`` naming the field).

    Idempotent: the same call again only refreshes ``last_seen_at``. A token that another
    subscriber of the project registered moves to ``subscriber`` (someone else logged in on that
    install), and a removed device is active again. A new device, a move and a re-activation are
    audited; a refresh, which apps send at every start, is not.
    """
    if subscriber.project_id != project.pk:
        raise InvalidInput(_("The subscriber is not in this project."), field="subscriber", code="not_found")
    data = clean_device_data(data)
    fields = {
        "platform": data.platform,
        "app_version": data.app_version,
        "language": data.language,
        "time_zone": data.time_zone,
        "push_enabled": data.push_enabled,
    }
    devices = Device.objects.for_project(project).select_for_update()
    device = devices.filter(token=data.token).first()
    if device is None:
        try:
            with transaction.atomic():
                device = Device.objects.create(
                    project=project, subscriber=subscriber, token=data.token, **fields
                )
        except IntegrityError:
            # The same install registered concurrently: refresh the row the other request wrote.
            device = devices.get(token=data.token)
        else:
            record_audit(project=project, actor=actor, action="device.registered", obj=device)
            return device, True
    changes: dict[str, list[str]] = {}
    if device.subscriber_id != subscriber.pk:
        changes["subscriber"] = [str(device.subscriber.public_id), str(subscriber.public_id)]
    if device.removed_at is not None:
        changes["removed"] = [device.removed_reason, ""]
    for name, value in fields.items():
        setattr(device, name, value)
    device.subscriber = subscriber
    device.removed_at, device.removed_reason = None, ""
    device.save()
    if changes:
        record_audit(project=project, actor=actor, action="device.reregistered", obj=device, changes=changes)
    return device, False


def remove(
    *, project: Project, tokens: Sequence[str] = (), device_ids: Sequence[int] = (), reason: str
) -> int:
    """Mark those devices removed (``removed_at`` now, ``removed_reason``); set-based; returns how
    many were active (not yet removed). The push transport calls it for tokens FCM calls
    unregistered. Idempotent: a removed device keeps the time and reason of its first removal."""
    if not tokens and not device_ids:
        return 0
    which = Q(pk__in=list(device_ids)) | Q(token__in=list(tokens))
    return (
        Device.objects.for_project(project)
        .filter(which, removed_at__isnull=True)
        .update(removed_at=timezone.now(), removed_reason=reason[:200])
    )


def unregister(*, project: Project, tokens: Sequence[str] = (), device_ids: Sequence[int] = ()) -> int:
    """The app's own unregister (logout, uninstall seen by the app): :func:`remove` with the
    reason "unregistered by the app"; returns how many were active."""
    return remove(project=project, tokens=tokens, device_ids=device_ids, reason=UNREGISTERED_BY_APP)
