"""Event names and their typed attributes: defaults every project has, plus custom definitions."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from controlpanel.models import Project
from controlpanel.wording import mid_sentence

from . import tags as tagtypes
from .errors import InvalidInput
from .facets import FACET_TEXT, MAX_FACETS_BYTES, facets_of
from .models import EventDefinition, TagType

S, INT = TagType.STRING, TagType.INTEGER

# The design's event vocabulary (our names for Pushwoosh's PW_* events).
DEFAULT_EVENTS: dict[str, dict[str, str]] = {
    "WhatsAppReceived": {
        "text": S, "normalized_text": S, "type": S, "message_id": S, "button_payload": S,
        "button_text": S, "context_message_id": S, "referral": S,
    },
    "WhatsAppSent": {"message_id": S, "template": S, "campaign": S},
    "WhatsAppDelivered": {"message_id": S, "template": S, "campaign": S},
    "WhatsAppRead": {"message_id": S, "template": S, "campaign": S},
    # "message" (our public id) when Meta refused the POST itself and there is no wamid.
    "WhatsAppFailed": {
        "message_id": S, "message": S, "template": S, "campaign": S, "error_code": INT, "error_title": S,
    },
    "WhatsAppButtonClicked": {"message_id": S, "button_payload": S, "button_text": S},
    # Email and push (campaigns.channel_events): "message" is our message's public id; "journey" and
    # "step" name the journey step that sent it. message_id/campaign stay for apps that sent these
    # names through the events API before the channels existed.
    "EmailDelivered": {"message": S, "journey": S, "step": S, "subject": S},
    "EmailOpened": {"message": S, "journey": S, "step": S, "subject": S, "message_id": S, "campaign": S},
    "EmailClicked": {
        "message": S, "journey": S, "step": S, "subject": S, "url": S, "message_id": S, "campaign": S,
    },
    "EmailBounced": {"message": S, "journey": S, "step": S, "subject": S, "bounce": S, "reason": S},
    "EmailComplained": {"message": S, "journey": S, "step": S, "subject": S},
    # Refused by the provider when it was sent (campaigns.sending): the row failed without leaving.
    "EmailFailed": {
        "message": S, "journey": S, "step": S, "subject": S, "error_code": INT, "error_title": S, "reason": S,
    },
    "PushFailed": {
        "message": S, "journey": S, "step": S, "title": S, "error_code": INT, "error_title": S, "reason": S,
    },
    "PushOpened": {
        "message": S, "journey": S, "step": S, "title": S, "device": S, "message_id": S, "campaign": S,
    },
    "Subscribed": {"channel": S, "source": S},
    "Unsubscribed": {"channel": S, "source": S},
}  # fmt: skip

EVENT_NAME_RE = re.compile(r"^[A-Za-z][\w.:-]{0,63}$")
ATTRIBUTE_NAME_RE = re.compile(r"^[A-Za-z_][\w.-]{0,63}$")
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_TEXT = 4096


def validate_event_name(name: str) -> str:
    name = (name or "").strip()
    if not EVENT_NAME_RE.match(name):
        raise InvalidInput(
            (
                _(
                    "Event name %(name)r is not allowed: start with a letter; letters, digits, _ . : "
                    "- up to 64."
                )
                % {"name": name}
            ),
            field="name",
            code="invalid_event_name",
        )
    return name


def schema_for(project: Project, name: str, *, create_with: dict[str, Any] | None = None) -> dict[str, str]:
    """Attribute types of event ``name``.

    An unknown custom event (or attribute) is defined from ``create_with``, the
    attributes of its first occurrence, so later occurrences must fit those types. Adding
    attributes locks the definition and reads it again, so concurrent first occurrences of
    two attributes both stay; the limits are EVENT_NAMES_PER_PROJECT and
    EVENT_ATTRIBUTES_PER_EVENT.
    """
    if name in DEFAULT_EVENTS:
        return DEFAULT_EVENTS[name]
    mine = EventDefinition.objects.for_project(project)
    definition = mine.filter(name=name).first()
    if create_with is None:
        return definition.attributes if definition else {}
    inferred = {}
    for key, value in create_with.items():
        if value is None:
            continue
        type_ = tagtypes.infer_type(value)
        if type_ == TagType.LIST:
            raise InvalidInput(
                _("Attribute %(key)r of %(name)r is a list; event attributes are single values.")
                % {"key": key, "name": name},
                field=f"attributes.{key}",
                code="wrong_attribute_type",
            )
        inferred[key] = str(type_)
    with transaction.atomic():
        if definition is None:
            _check_new_event(project, name)
            definition, _unused = EventDefinition.objects.get_or_create(
                project=project, name=name, defaults={"attributes": inferred}
            )
        if not inferred.keys() - definition.attributes.keys():
            return definition.attributes
        definition = mine.select_for_update().get(pk=definition.pk)
        new = {k: v for k, v in inferred.items() if k not in definition.attributes}
        if new:
            limit = settings.EVENT_ATTRIBUTES_PER_EVENT
            if len(definition.attributes) + len(new) > limit:
                raise InvalidInput(
                    (
                        _(
                            "Event %(name)r has %(value)s attributes and may have at most %(limit)s: "
                            "%(value2)s cannot be added."
                        )
                        % {
                            "name": name,
                            "value": f"{len(definition.attributes):,}",
                            "limit": f"{limit:,}",
                            "value2": ", ".join(repr(k) for k in sorted(new)[:5]),
                        }
                    ),
                    field="attributes",
                    code="too_many_attributes",
                )
            definition.attributes = {**definition.attributes, **new}
            definition.save(update_fields=["attributes"])
    return definition.attributes


def _check_new_event(project: Project, name: str) -> None:
    limit = settings.EVENT_NAMES_PER_PROJECT
    if EventDefinition.objects.for_project(project).count() >= limit:
        raise InvalidInput(
            (
                _(
                    "This project has %(limit)s custom events, the most it may have: %(name)r cannot "
                    "be created. Record it under an existing name with an attribute instead."
                )
                % {"limit": f"{limit:,}", "name": name}
            ),
            field="name",
            code="too_many_events",
        )


def clean_attributes(project: Project, name: str, attributes: dict[str, Any] | None) -> dict[str, Any]:
    """Validate attributes against the event's types and return them JSON-ready."""
    attributes = attributes or {}
    if not isinstance(attributes, dict):
        raise InvalidInput(_("attributes must be an object."), field="attributes")
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidInput(
            _("At most %(max_attributes)s attributes per event.") % {"max_attributes": MAX_ATTRIBUTES},
            field="attributes",
        )
    for key in attributes:
        if not ATTRIBUTE_NAME_RE.match(str(key)):
            raise InvalidInput(
                _("Attribute name %(key)r is not allowed.") % {"key": key}, field=f"attributes.{key}"
            )
    schema = schema_for(project, name, create_with=attributes if name not in DEFAULT_EVENTS else None)
    cleaned: dict[str, Any] = {}
    tz = ZoneInfo(project.time_zone)  # a date and time without an offset is the project's
    for key, value in attributes.items():
        if value is None:
            continue
        field = f"attributes.{key}"
        if isinstance(value, str):
            tagtypes.clean_text(value, field=field, what=f"Attribute {key!r} of {name!r}")
        type_ = schema.get(key)
        if type_ is None:  # an attribute the default event does not declare: keep it, typed by value
            if _is_number(value):
                _check_number(name, key, value)
            cleaned[key] = (
                value if isinstance(value, str | int | float | bool) else _as_text(name, key, value)
            )
            continue
        if type_ == TagType.STRING and isinstance(value, str):
            # Event texts (an inbound WhatsApp message) may be long; tags stop at 255.
            if len(value) > MAX_ATTRIBUTE_TEXT:
                raise InvalidInput(
                    _("Attribute %(key)r of %(name)r is longer than %(max_attribute_text)s characters.")
                    % {"key": key, "name": name, "max_attribute_text": MAX_ATTRIBUTE_TEXT},
                    field=field,
                )
            cleaned[key] = value
            continue
        if type_ in (TagType.INTEGER, TagType.DECIMAL) and _is_number(value):
            _check_number(name, key, value)
        try:
            coerced = tagtypes.coerce(key, type_, value, tz=tz)
        except InvalidInput as exc:
            if exc.code == "out_of_range":  # the message names the limit
                message = exc.message.replace(f"Tag {key!r}", f"Attribute {key!r} of {name!r}", 1)
                raise InvalidInput(message, field=field, code=exc.code) from None
            expected = mid_sentence(TagType(type_).label)
            raise InvalidInput(
                _("Attribute %(key)r of %(name)r expects %(expected)s, got %(value)r.")
                % {"key": key, "name": name, "expected": expected, "value": value},
                field=field,
                code="wrong_attribute_type",
            ) from None
        # JSON keeps numbers as numbers so that segment comparisons are numeric.
        if type_ == TagType.DECIMAL:
            coerced = float(coerced)
        elif type_ in (TagType.DATE, TagType.DATETIME):
            coerced = coerced.isoformat()
        cleaned[key] = coerced
    size = len(json.dumps(facets_of(cleaned), ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_FACETS_BYTES:
        raise InvalidInput(
            (
                _(
                    "The attributes of %(name)r are too large to index for segments (%(size)s "
                    "bytes): attribute names with their numbers, dates and texts of up to "
                    "%(facet_text)s characters may take at most %(max_facets_bytes)s bytes together. "
                    "Longer texts do not count."
                )
                % {
                    "name": name,
                    "size": f"{size:,}",
                    "facet_text": FACET_TEXT,
                    "max_facets_bytes": f"{MAX_FACETS_BYTES:,}",
                }
            ),
            field="attributes",
            code="attributes_too_large",
        )
    return cleaned


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_number(name: str, key: str, value: int | float) -> None:
    # Segments compare attribute numbers as the numbers tags hold: the same range.
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(
            _("Attribute %(key)r of %(name)r is not a finite number.") % {"key": key, "name": name},
            field=f"attributes.{key}",
            code="out_of_range",
        )
    tagtypes.check_number(
        key, Decimal(value), field=f"attributes.{key}", what=f"Attribute {key!r} of {name!r}"
    )


def _as_text(name: str, key: str, value: Any) -> str:
    # A nested value of an undeclared attribute is kept as its text.
    text = str(value)
    tagtypes.clean_text(text, field=f"attributes.{key}", what=f"Attribute {key!r} of {name!r}")
    return text


def all_definitions(project: Project) -> dict[str, dict[str, str]]:
    """Every event name the project knows, defaults first, with attribute types."""
    custom = {d.name: d.attributes for d in EventDefinition.objects.for_project(project)}
    return {**DEFAULT_EVENTS, **custom}
