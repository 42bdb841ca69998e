"""``/api/v1/push/opened``: an app (or the push simulator's "Open" button) reports that a push was
opened. The open goes through ``campaigns.channel_events.record``, the one write path for opens:
the message is marked once and ``PushOpened`` is recorded once, whatever the number of reports."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.utils.translation import gettext
from ninja import Field, Router, Schema

from campaigns import channel_events
from campaigns.models import Channel, Message
from controlpanel.api import ApiError, ErrorOut
from subscribers import devices
from subscribers.models import Device
from subscribers.schemas import StrictSchema

router = Router(tags=["push"])


class OpenedIn(StrictSchema):
    message: UUID = Field(description="The push's message id: the `message_id` of its FCM `data`.")
    token: str | None = Field(
        None,
        description="The FCM token of the device it was opened on; named in the event when known.",
        min_length=1,
        max_length=devices.TOKEN_MAX,
        pattern=devices.TOKEN_PATTERN,
    )


class OpenedEventOut(Schema):
    id: str
    name: str
    occurred_at: datetime


class OpenedOut(Schema):
    message: UUID
    opened_at: datetime = Field(description="The first open; a later report leaves it as it was.")
    event: OpenedEventOut = Field(description="The PushOpened event (the first one, for a repeat).")


@router.post(
    "/opened",
    response={200: OpenedOut, 404: ErrorOut, 422: ErrorOut},
    summary="Report that a push was opened",
    url_name="push_opened",
)
def push_opened(request, payload: OpenedIn):
    """Marks the message opened and records `PushOpened` (with `message`, `device`, and the
    journey and step that sent it) in the subscriber's timeline. Reporting the same open again
    answers the same event. A message not in this project, or not a push, is a 404; so is a token
    no device of this project has."""
    project = request.project
    message = (
        Message.objects.for_project(project)
        .select_related("project", "subscriber")
        .filter(public_id=payload.message, channel=Channel.PUSH)
        .first()
    )
    if message is None:
        raise ApiError(
            404,
            "message_not_found",
            gettext("No push %(id)s in this project.") % {"id": payload.message},
            "message",
        )
    attributes = {}
    if payload.token is not None:
        device = Device.objects.for_project(project).filter(token=payload.token).only("public_id").first()
        if device is None:
            raise ApiError(
                404,
                "device_not_found",
                gettext("No device with this %(field)s in this project.") % {"field": "token"},
                "token",
            )
        attributes["device"] = str(device.public_id)
    event = channel_events.record(message, channel_events.OPENED, attributes=attributes)
    message.refresh_from_db(fields=["opened_at"])
    return {
        "message": message.public_id,
        "opened_at": message.opened_at,
        "event": {"id": str(event.pk), "name": event.name, "occurred_at": event.occurred_at},
    }
