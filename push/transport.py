"""The push transport: FCM HTTP v1, or the push simulator at an FCM-shaped URL (ADR 0008).

A message goes to every active device of its subscriber (the devices of a batch are read in one
query). It counts as sent when at least one device accepted it (``provider_message_id`` = FCM's
name of the first); otherwise the most telling failure decides, most cautious first: maybe
delivered (unknown) > try again (retry) > a settings problem > another refusal > every device
gone. Tokens FCM calls dead are removed once per batch through ``subscribers.devices.remove``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings
from google.auth import exceptions as auth_exceptions

from campaigns.channel_policy import NO_DEVICE
from campaigns.channels import Delivery
from campaigns.models import Message
from controlpanel.models import Project
from subscribers import devices
from subscribers.models import Device

from . import fcm
from .models import PushMode, PushSettings

logger = logging.getLogger(__name__)

# The order in which a message's device results speak for it when none was accepted.
PRECEDENCE = ("unknown", "retry", "settings", "failed", "removed")
REMOVED_REASON = "FCM: {code}"


class PushTransport:
    channel = "push"

    def send(self, project: Project, messages: Sequence[Message]) -> list[Delivery]:
        push_settings = PushSettings.objects.for_project(project).first()
        try:
            url, bearer = _endpoint(project, push_settings)
        except auth_exceptions.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise  # nothing was posted: the sender queues the batch again
            error = f"Google refused the service account of the push settings ({exc})."
            return [Delivery(ok=False, error_code="OAUTH", error=error) for _ in messages]
        except _SettingsMissing as exc:
            return [Delivery(ok=False, error_code="SETTINGS", error=str(exc)) for _ in messages]
        tokens = _tokens(project, messages)
        requests: list[fcm.Request] = []
        owners: list[int] = []  # the message index of each request
        for index, message in enumerate(messages):
            for token in tokens.get(message.subscriber_id, []):
                body = fcm.message_body(
                    token, message.content or {}, str(message.public_id), marketing=message.marketing
                )
                requests.append(fcm.Request(url=url, bearer=bearer, body=body))
                owners.append(index)
        results = fcm.client().send_all(requests)
        dead = [
            r.body["message"]["token"]
            for r, res in zip(requests, results, strict=True)
            if res.kind == "removed"
        ]
        if dead:
            try:
                devices.remove(project=project, tokens=dead, reason=_removed_reason(results))
            except Exception:
                # The pushes went out: raising would make the sender queue them again. The
                # devices stay; FCM names them again on their next push.
                logger.exception("Could not remove %d dead push devices of project %s", len(dead), project.pk)
        per_message: list[list[fcm.DeviceResult]] = [[] for _ in messages]
        for index, result in zip(owners, results, strict=True):
            per_message[index].append(result)
        return [_delivery(found) for found in per_message]


class _SettingsMissing(Exception):
    pass


def _endpoint(project: Project, push_settings: PushSettings | None) -> tuple[str, str]:
    """(messages:send URL, bearer) for the project's mode."""
    if push_settings is None or push_settings.mode == PushMode.SIMULATOR:
        fcm_project = (push_settings.fcm_project_id if push_settings else "") or fcm.SIMULATOR_PROJECT
        base, bearer = settings.PUSH_SIMULATOR_URL, fcm.SIMULATOR_TOKEN
    else:
        if not push_settings.service_account or not push_settings.fcm_project_id:
            raise _SettingsMissing(
                "Push is set to Firebase, but no service-account key is uploaded: see the push settings."
            )
        fcm_project = push_settings.fcm_project_id
        base = settings.PUSH_FCM_URL
        bearer = fcm.access_token(project.pk, push_settings.service_account)
    return f"{base.rstrip('/')}/v1/projects/{fcm_project}/messages:send", bearer


def _tokens(project: Project, messages: Sequence[Message]) -> dict[int, list[str]]:
    """Active device tokens by subscriber id, oldest device first: one query for the batch."""
    found: dict[int, list[str]] = {}
    rows = (
        Device.objects.for_project(project)
        .active()
        .filter(subscriber_id__in={m.subscriber_id for m in messages})
        .order_by("id")
        .values_list("subscriber_id", "token")
    )
    for subscriber_id, token in rows:
        found.setdefault(subscriber_id, []).append(token)
    return found


def _removed_reason(results: Sequence[fcm.DeviceResult]) -> str:
    codes = sorted({r.code for r in results if r.kind == "removed"})
    return REMOVED_REASON.format(code=", ".join(codes))[:200]


def _delivery(results: Sequence[fcm.DeviceResult]) -> Delivery:
    if not results:
        # Every device went away between the row's write and now.
        return Delivery(ok=False, error_code="NO_DEVICE", error=NO_DEVICE)
    accepted = next((r for r in results if r.kind == "ok"), None)
    if accepted is not None:
        return Delivery(ok=True, provider_message_id=accepted.name)
    worst = min(results, key=lambda r: PRECEDENCE.index(r.kind))
    if worst.kind == "retry":
        waits = [r.retry_after for r in results if r.kind == "retry" and r.retry_after is not None]
        return Delivery(
            ok=False,
            retry=True,
            retry_after=max(waits) if waits else None,
            error_code=worst.code,
            error=worst.error,
        )
    return Delivery(ok=False, unknown=worst.kind == "unknown", error_code=worst.code, error=worst.error)
