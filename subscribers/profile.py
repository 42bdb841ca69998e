"""The profile fields of a subscriber (name, email, language, country, time zone): one rule each.

The API, the panel, the admin and the CSV import all check profile values here, so a country or
time zone one of them accepts is never refused (or stored differently) by another.
"""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from . import tags as tagtypes
from .errors import InvalidInput

PROFILE_FIELDS = ("name", "email", "language", "country", "time_zone")
# The API calls the time zone "timezone"; errors name the field as the caller knows it.
_API_FIELDS = {"time_zone": "timezone"}


@cache
def time_zones() -> frozenset[str]:
    """IANA zone names; read once (``available_timezones`` walks the zone files on every call)."""
    return frozenset(zoneinfo.available_timezones())


def clean_profile_value(key: str, text: str) -> str:
    """One profile value checked and normalised (email lower-cased, country upper-cased)."""
    field = _API_FIELDS.get(key, key)
    value = tagtypes.clean_text(text.strip(), field=field, what=key.capitalize().replace("_", " "))
    if not value:
        return value
    if key == "email":
        try:
            validate_email(value)
        except ValidationError:
            raise InvalidInput(
                _("%(value)r is not an email address.") % {"value": value}, field=field
            ) from None
        return value.lower()
    if key == "country":
        if len(value) != 2 or not value.isalpha() or not value.isascii():
            raise InvalidInput(
                _("Country %(value)r must be a two-letter code like DE.") % {"value": value}, field=field
            )
        return value.upper()
    if key == "time_zone":
        if value not in time_zones():
            raise InvalidInput(
                _("Unknown time zone %(value)r; use a name like Europe/Berlin.") % {"value": value},
                field=field,
            )
        return value
    if key == "language":
        if len(value) > 16:
            raise InvalidInput(
                _("Language %(value)r is too long; use a code like de or pt_BR.") % {"value": value},
                field=field,
            )
        return value
    if len(value) > 200:
        raise InvalidInput(_("The name is longer than 200 characters."), field=field)
    return value


def address_reset() -> dict[str, Any]:
    """The columns to write with a changed email address: a new address has not bounced, so it
    is no longer undeliverable (ADR 0008). Every writer of ``email`` adds these to its update."""
    return {"email_undeliverable_at": None, "email_undeliverable_reason": ""}


def clean_profile(values: dict[str, Any]) -> dict[str, str]:
    """The profile fields present in ``values`` (None: absent), checked and normalised."""
    return {
        key: clean_profile_value(key, str(values[key]))
        for key in PROFILE_FIELDS
        if key in values and values[key] is not None
    }
