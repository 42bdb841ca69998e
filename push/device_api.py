"""``/api/v1/devices``: an app registers and unregisters its push tokens (ADR 0008).

Every lookup starts from the API key's project: a subscriber or device of another project is "not
found", with the same answer as one that never existed. Writes go through
``subscribers.devices``, the one write path for devices, so the API refuses exactly what the
simulator's device page and the push transport would. Answers never carry the token (it is the
install's address) nor anything of the subscriber but their id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from django.utils.translation import gettext
from ninja import Field, Query, Router, Schema, Status
from pydantic import StrictBool

from controlpanel.api import ApiError, ErrorOut
from controlpanel.models import Project
from subscribers import devices, tags
from subscribers.models import Device, Subscriber
from subscribers.phones import normalize_phone
from subscribers.schemas import StrictSchema, SubscriberIdOut, SubscriberRef

router = Router(tags=["devices"])

MAX_LIST = 200


class DeviceIn(StrictSchema):
    subscriber: SubscriberRef = Field(
        description='Whose install this is: `{"id": "<uuid>"}`, `{"phone": "+49..."}` or '
        '`{"external_id": "crm-4711"}`.'
    )
    token: str = Field(
        description="The FCM registration token (visible ASCII, no spaces). Registering a known token "
        "again refreshes that device, moves it to this subscriber, or re-activates it.",
        min_length=1,
        max_length=devices.TOKEN_MAX,
        pattern=devices.TOKEN_PATTERN,
    )
    platform: Literal["android", "ios", "web"]
    app_version: str = Field("", max_length=devices.APP_VERSION_MAX, examples=["4.2.0"])
    language: str = Field(
        "",
        max_length=devices.LANGUAGE_MAX,
        pattern=devices.LANGUAGE_PATTERN,
        description="A code like de, pt-BR or pt_BR.",
        examples=["de"],
    )
    time_zone: str = Field("", max_length=64, description="An IANA zone name.", examples=["Europe/Berlin"])
    push_enabled: StrictBool = Field(
        True, description="The app's notification permission: a device without it gets no push."
    )


class UnregisterIn(StrictSchema):
    token: str = Field(min_length=1, max_length=devices.TOKEN_MAX, pattern=devices.TOKEN_PATTERN)


class DeviceOut(Schema):
    id: UUID
    subscriber: SubscriberIdOut
    platform: Literal["android", "ios", "web"]
    app_version: str
    language: str
    time_zone: str
    push_enabled: bool
    created_at: datetime
    last_seen_at: datetime = Field(description="The last registration of this token.")
    removed_at: datetime | None = Field(description="Unregistered or removed: gets no push.")
    removed_reason: str


class DeviceListOut(Schema):
    devices: list[DeviceOut] = Field(description="Newest first, removed ones included.")
    more: bool = Field(description="True when the subscriber has more devices than `limit`.")


class DeviceListQuery(Schema):
    subscriber: UUID = Field(description="The subscriber's id.")
    limit: int = Field(50, ge=1, le=MAX_LIST)


def device_out(device: Device, subscriber: Subscriber) -> dict:
    return {
        "id": device.public_id,
        "subscriber": {"id": subscriber.public_id},
        "platform": device.platform,
        "app_version": device.app_version,
        "language": device.language,
        "time_zone": device.time_zone,
        "push_enabled": device.push_enabled,
        "created_at": device.created_at,
        "last_seen_at": device.last_seen_at,
        "removed_at": device.removed_at,
        "removed_reason": device.removed_reason,
    }


def find_subscriber(project: Project, ref: SubscriberRef) -> Subscriber:
    subscribers = Subscriber.objects.for_project(project)
    if ref.id is not None:
        key, value = "id", ref.id
        found = subscribers.filter(public_id=ref.id).first()
    elif ref.phone is not None:
        key, value = "phone", normalize_phone(ref.phone, project.default_country, field="subscriber.phone")
        found = subscribers.filter(phone=value).first()
    else:
        key = "external_id"
        value = tags.clean_text((ref.external_id or "").strip(), field="subscriber.external_id", what=key)
        found = subscribers.filter(external_id=value).first() if value else None
    if found is None:
        raise ApiError(
            404,
            "subscriber_not_found",
            gettext("No subscriber with %(key)s %(value)s in this project.") % {"key": key, "value": value},
            field=f"subscriber.{key}",
        )
    return found


def device_not_found(what: str, field: str) -> ApiError:
    # ``what`` is a field name (id, token): it stays as it is in every language.
    message = gettext("No device with this %(field)s in this project.") % {"field": what}
    return ApiError(404, "device_not_found", message, field=field)


@router.post(
    "",
    response={200: DeviceOut, 201: DeviceOut, 404: ErrorOut, 422: ErrorOut},
    summary="Register a push token",
)
def register_device(request, payload: DeviceIn):
    """201 with the new device; 200 when the token was known (refreshed, moved to this subscriber,
    or re-activated). An unknown subscriber is a 404; a bad field a 422 naming it."""
    project: Project = request.project
    subscriber = find_subscriber(project, payload.subscriber)
    data = devices.DeviceData(**payload.model_dump(exclude={"subscriber"}))
    device, created = devices.register(project=project, subscriber=subscriber, data=data, actor=request.actor)
    return Status(201 if created else 200, device_out(device, subscriber))


@router.get("", response={200: DeviceListOut, 404: ErrorOut}, summary="A subscriber's devices")
def list_devices(request, filters: Query[DeviceListQuery]):
    project: Project = request.project
    subscriber = Subscriber.objects.for_project(project).filter(public_id=filters.subscriber).first()
    if subscriber is None:
        raise ApiError(
            404,
            "subscriber_not_found",
            gettext("No subscriber %(id)s in this project.") % {"id": filters.subscriber},
            "subscriber",
        )
    rows = list(
        Device.objects.for_project(project)
        .filter(subscriber=subscriber)
        .order_by("-created_at", "-id")[: filters.limit + 1]
    )
    return {
        "devices": [device_out(d, subscriber) for d in rows[: filters.limit]],
        "more": len(rows) > filters.limit,
    }


@router.delete("/{uuid:device_id}", response={204: None, 404: ErrorOut}, summary="Unregister a device")
def delete_device(request, device_id: UUID):
    """The device gets no more push (removed, reason "unregistered by the app"); its row stays for
    statistics. Deleting a removed device again is a 204 too."""
    device = Device.objects.for_project(request.project).filter(public_id=device_id).only("pk").first()
    if device is None:
        raise device_not_found("id", "id")
    devices.unregister(project=request.project, device_ids=[device.pk])
    return Status(204, None)


@router.post(
    "/unregister", response={204: None, 404: ErrorOut, 422: ErrorOut}, summary="Unregister a push token"
)
def unregister_token(request, payload: UnregisterIn):
    """What an app calls at logout: like DELETE, by token."""
    known = Device.objects.for_project(request.project).filter(token=payload.token).exists()
    if not known:
        raise device_not_found("token", "token")
    devices.unregister(project=request.project, tokens=[payload.token])
    return Status(204, None)
