"""FCM HTTP v1's send endpoint, simulated: ``POST /simulator/fcm/v1/projects/<id>/messages:send``.

It answers what Firebase answers for the subset we send (one message to one registration token):
``{"name": "projects/<id>/messages/<id>"}`` when the token is an active ``Device`` of any project
(the simulator shares the panel's database in the embedded mode) and the request is well-formed,
and FCM's error JSON otherwise: ``{"error": {"code", "message", "status", "details": [{"@type":
FcmError, "errorCode"}]}}`` with 400 INVALID_ARGUMENT (bad shape, data values that are not
strings, reserved data keys), 404 UNREGISTERED (a token no active device has) and 401
UNAUTHENTICATED (no bearer token; any token is accepted, as the transport's simulator mode sends
a fixed one). Accepted pushes are stored as ``SimulatedPush`` rows, shown on the device page.

The push benchmark sends >= 1,000 requests a second here: one INSERT ... SELECT finds the device's
project and stores the push; no session, no CSRF, no template (``fastpath`` skips Django too).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from subscribers import devices, tags
from subscribers.errors import InvalidInput
from subscribers.models import Device

from ..models import SimulatedPush

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
MESSAGE_KEYS = {"name", "token", "topic", "condition", "data", "notification", "android", "apns", "webpush",
                "fcm_options"}  # fmt: skip
NOTIFICATION_KEYS = {"title", "body", "image"}
# FCM refuses these data keys: the platforms reserve them.
RESERVED_DATA_KEYS = {"from", "message_type", "collapse_key"}
RESERVED_DATA_PREFIXES = ("google.", "gcm.")


class FcmError(Exception):
    def __init__(self, http_status: int, status: str, message: str, *, error_code: str = "", field: str = ""):
        super().__init__(message)
        self.http_status, self.status, self.message = http_status, status, message
        self.error_code, self.field = error_code, field

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.http_status, "message": self.message, "status": self.status}
        details: list[dict[str, Any]] = []
        if self.error_code:
            details.append({"@type": FCM_ERROR, "errorCode": self.error_code})
        if self.field:
            violation = {"field": self.field, "description": self.message}
            details.append({"@type": BAD_REQUEST, "fieldViolations": [violation]})
        if details:
            error["details"] = details
        return {"error": error}


def invalid(message: str, field: str = "") -> FcmError:
    return FcmError(400, "INVALID_ARGUMENT", message, error_code="INVALID_ARGUMENT", field=field)


def unregistered() -> FcmError:
    return FcmError(404, "NOT_FOUND", "Requested entity was not found.", error_code="UNREGISTERED")


def check_message(message: Any) -> str:
    """The token of a well-formed FCM message, else ``FcmError`` INVALID_ARGUMENT naming the field."""
    if not isinstance(message, dict):
        raise invalid("Invalid value at 'message': expected an object.", "message")
    unknown = sorted(set(message) - MESSAGE_KEYS)
    if unknown:
        raise invalid(f"Invalid JSON payload received. Unknown name {unknown[0]!r} at 'message'.", "message")
    if "topic" in message or "condition" in message:
        raise invalid("The push simulator delivers to registration tokens only.", "message.token")
    token = message.get("token")
    if (
        not isinstance(token, str)
        or len(token) > devices.TOKEN_MAX
        or not re.fullmatch(devices.TOKEN_PATTERN, token)
    ):
        raise invalid("The registration token is not a valid FCM registration token", "message.token")
    notification = message.get("notification")
    if notification is not None:
        if not isinstance(notification, dict):
            raise invalid(
                "Invalid value at 'message.notification': expected an object.", "message.notification"
            )
        for key, value in notification.items():
            if key not in NOTIFICATION_KEYS:
                raise invalid(f"Unknown name \"{key}\" at 'message.notification'.", "message.notification")
            if not isinstance(value, str):
                raise invalid(f"Invalid value at 'message.notification.{key}': expected a string.",
                              f"message.notification.{key}")  # fmt: skip
    data = message.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise invalid("Invalid value at 'message.data': expected a map of strings.", "message.data")
        for key, value in data.items():
            if not isinstance(value, str):
                raise invalid(f"Invalid value at 'message.data[{key}].value' (TYPE_STRING).",
                              f"message.data[{key}].value")  # fmt: skip
            if key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES):
                raise invalid(f"Invalid data payload key: {key}", f"message.data[{key}]")
    for key in ("android", "apns", "webpush", "fcm_options"):
        if message.get(key) is not None and not isinstance(message[key], dict):
            raise invalid(f"Invalid value at 'message.{key}': expected an object.", f"message.{key}")
    try:  # stored as JSON: no database takes a NUL or a lone surrogate
        tags.clean_tree(message, field="message")
    except InvalidInput as exc:
        raise invalid(exc.message, exc.field or "message") from None
    return token


def parse(body: bytes, authorization: str) -> tuple[dict[str, Any], bool]:
    """(message, validate_only) of a send request's body, or FcmError."""
    if not authorization.lower().startswith("bearer "):
        raise FcmError(
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access token.",
        )
    try:
        data = json.loads(body or b"null")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        raise FcmError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from None
    if not isinstance(data, dict) or "message" not in data:
        raise invalid("Invalid value at 'message': a message is required.", "message")
    unknown = sorted(set(data) - {"message", "validate_only"})
    if unknown:
        raise invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}".')
    validate_only = data.get("validate_only", False)
    if not isinstance(validate_only, bool):  # FCM's field is a bool: a number is no "false"
        raise invalid("Invalid value at 'validate_only' (TYPE_BOOL).", "validate_only")
    return data["message"], validate_only


def accept(body: bytes, authorization: str, fcm_project: str) -> tuple[int, dict[str, Any]]:
    """What FCM answers to one send, as (HTTP status, JSON body): the Django view and the load
    tests' lean WSGI path (``fastpath``) both answer through here."""
    try:
        message, validate_only = parse(body, authorization)
        token = check_message(message)
        if validate_only:  # FCM checks the request and sends nothing
            if not _active(token):
                raise unregistered()
            return 200, {"name": f"projects/{fcm_project}/messages/fake_message_id"}
        name = f"projects/{fcm_project}/messages/{uuid.uuid4().hex}"
        if not _store(name, token, message):
            raise unregistered()
    except FcmError as exc:
        return exc.http_status, exc.body()
    return 200, {"name": name}


def _active(token: str) -> bool:
    return Device.objects.filter(token=token, removed_at__isnull=True, push_enabled=True).exists()


def _store(name: str, token: str, message: dict[str, Any]) -> bool:
    """Store the push for the project of the token's active device, in one statement (the push
    benchmark sends a thousand a second here); False when no active device has the token."""
    payload = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SimulatedPush._meta.db_table} (project_id, fcm_name, token, payload, received_at) "  # noqa: S608 - table name from the model
            f"SELECT d.project_id, %s, %s, {payload}, %s FROM {Device._meta.db_table} d "
            "WHERE d.token = %s AND d.removed_at IS NULL AND d.push_enabled LIMIT 1",
            [name, token, json.dumps(message), timezone.now(), token],
        )
        return cursor.rowcount == 1


@csrf_exempt  # FCM's URL shape: a bearer-token JSON endpoint, called by the push transport
@require_POST
def send(request: HttpRequest, fcm_project: str) -> JsonResponse:
    try:
        body = request.body
    except RequestDataTooBig:
        error = invalid("Message is too big.", "message")
        return JsonResponse(error.body(), status=error.http_status)
    status, data = accept(body, request.headers.get("Authorization", ""), fcm_project)
    return JsonResponse(data, status=status)
