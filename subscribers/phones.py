"""Phone numbers: everything we store is E.164, parsed with Google's libphonenumber."""

from __future__ import annotations

import phonenumbers
from django.utils.translation import gettext as _
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from .errors import InvalidInput

_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "the country code is unknown",
    ValidationResult.TOO_SHORT: "it is too short",
    ValidationResult.TOO_LONG: "it is too long",
    ValidationResult.INVALID_LENGTH: "it has the wrong number of digits",
    # Dialable only inside its area at best ("12", "555 0100"): not a full number.
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "it is too short for a complete number with area code",
}
_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "the country code is unknown",
    NumberParseException.NOT_A_NUMBER: "use digits, optionally with a leading +, spaces, dashes or brackets",
    NumberParseException.TOO_SHORT_AFTER_IDD: "it is too short",
    NumberParseException.TOO_SHORT_NSN: "it is too short",
    NumberParseException.TOO_LONG: "it is too long",
}


def normalize_phone(raw: str, default_country: str, *, field: str = "phone") -> str:
    """Return ``raw`` as E.164, reading numbers without + as numbers of ``default_country``.

    Raises InvalidInput with the reason when the number cannot be a real phone number.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidInput(_("A phone number is required."), field=field, code="invalid_phone")
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_country.upper() or None)
    except NumberParseException as exc:
        reason = _PARSE_REASONS.get(exc.error_type, exc._msg.rstrip(".").lower())
        raise InvalidInput(
            _("%(raw)r is not a phone number: %(reason)s.") % {"raw": raw, "reason": reason},
            field=field,
            code="invalid_phone",
        ) from None
    if not phonenumbers.is_valid_number(number):
        reason = _REASONS.get(phonenumbers.is_possible_number_with_reason(number), "no such number exists")
        region = phonenumbers.region_code_for_number(number) or default_country
        raise InvalidInput(
            _("%(raw)r is not a valid phone number for %(region)s: %(reason)s.")
            % {"raw": raw, "region": region, "reason": reason},
            field=field,
            code="invalid_phone",
        )
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
