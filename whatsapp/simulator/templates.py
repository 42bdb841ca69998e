"""The simulator's template store: creation with Meta's review rules, listing, and parameter checks."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from whatsapp import placeholders

from . import callbacks, config, store
from .errors import ApiError

NAME = re.compile(r"^[a-z0-9_]{1,512}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
MEDIA_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT")
HEADER_FORMATS = ("TEXT", *MEDIA_FORMATS, "LOCATION")
BUTTON_TYPES = (
    "QUICK_REPLY",
    "URL",
    "PHONE_NUMBER",
    "COPY_CODE",
    "OTP",
    "FLOW",
    "CATALOG",
    "MPM",
    "VOICE_CALL",
)
TEMPLATE_LIMIT = 250
OTP_URL = "https://www.whatsapp.com/otp/code/?otp_type={otp_type}&code_expiration_minutes={minutes}&code=otp{{{{1}}}}"
SECURITY_TEXT = "For your security, do not share this code."


def new_id() -> str:
    return str(10**15 + secrets.randbelow(9 * 10**15))


def _upper(value: Any) -> str:
    return str(value or "").upper()


def _component(components: list[dict], kind: str) -> dict | None:
    return next((c for c in components if _upper(c.get("type")) == kind), None)


def variables(text: str, parameter_format: str) -> list[str]:
    named = parameter_format == placeholders.NAMED
    return placeholders.parameters(text, placeholders.NAMED if named else placeholders.POSITIONAL)


# --- creation --------------------------------------------------------------------------------
def _authentication_components(components: list[dict]) -> list[dict]:
    """Meta stores an authentication template with its preset body and the OTP button as a URL button."""
    body = _component(components, "BODY") or {}
    footer = _component(components, "FOOTER") or {}
    buttons = (_component(components, "BUTTONS") or {}).get("buttons") or []
    otp = next((b for b in buttons if _upper(b.get("type")) == "OTP"), None)
    if otp is None:
        raise _rejection("INVALID_FORMAT", "Authentication templates need exactly one OTP button.")
    text = "{{1}} is your verification code."
    if body.get("add_security_recommendation"):
        text += " " + SECURITY_TEXT
    stored: list[dict] = [{"type": "BODY", "text": text, "add_security_recommendation": bool(
        body.get("add_security_recommendation"))}]  # fmt: skip
    minutes = footer.get("code_expiration_minutes")
    if minutes is not None:
        if not isinstance(minutes, int) or not 1 <= minutes <= 90:
            raise _rejection("INVALID_FORMAT", "code_expiration_minutes must be a whole number from 1 to 90.")
        stored.append(
            {
                "type": "FOOTER",
                "text": f"This code expires in {minutes} minutes.",
                "code_expiration_minutes": minutes,
            }
        )
    otp_type = _upper(otp.get("otp_type") or "COPY_CODE")
    if otp_type not in ("COPY_CODE", "ONE_TAP", "ZERO_TAP"):
        raise _rejection("INVALID_FORMAT", f"Unknown otp_type {otp_type}.")
    stored.append(
        {
            "type": "BUTTONS",
            "buttons": [
                {
                    "type": "URL",
                    "text": otp.get("text") or "Copy code",
                    "url": OTP_URL.format(otp_type=otp_type, minutes=minutes or 10),
                }
            ],
        }
    )
    return stored


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str, recommendation: str = "") -> None:
        super().__init__(detail)
        self.reason, self.detail, self.recommendation = reason, detail, recommendation


def _rejection(reason: str, detail: str, recommendation: str = "") -> _Rejected:
    return _Rejected(reason, detail, recommendation or "Fix the template and submit it again.")


def _check_variables(
    where: str, text: str, parameter_format: str, example: Any, max_variables: int | None
) -> None:
    found = [t.name for t in placeholders.tokens(text)]
    if not found:
        return
    if parameter_format == "NAMED":
        bad = [v for v in found if placeholders.kind_of(v) != placeholders.NAMED]
        if bad:
            raise _rejection(
                "INVALID_FORMAT",
                f"{where}: named parameters must be lowercase letters, digits and underscores"
                f" ({{{{{bad[0]}}}}}).",
            )
    else:
        if any(not v.isdigit() for v in found):
            raise _rejection(
                "INVALID_FORMAT",
                f"{where}: positional parameters must be numbers like {{{{1}}}}.",
                "Use parameter_format NAMED for named parameters.",
            )
        numbers = sorted({int(v) for v in found})
        if numbers != list(range(1, len(numbers) + 1)):
            raise _rejection(
                "INVALID_FORMAT",
                f"{where}: parameters must be numbered from {{{{1}}}} without gaps (found "
                + ", ".join(f"{{{{{n}}}}}" for n in numbers)
                + ").",
                "Number the parameters {{1}}, {{2}}, ... in order.",
            )
    if max_variables is not None and len(set(found)) > max_variables:
        raise _rejection("INVALID_FORMAT", f"{where}: at most {max_variables} parameter allowed.")
    if re.search(r"\}\}\s*\{\{", text):
        raise _rejection(
            "INVALID_FORMAT",
            f"{where}: parameters are placed next to each other.",
            "Separate parameters with text.",
        )
    if not example:
        raise _rejection(
            "INVALID_FORMAT",
            f"{where}: sample values (example) are missing for its parameters.",
            "Add an example value for every parameter.",
        )


def review(category: str, components: list[dict], parameter_format: str) -> list[dict]:
    """Meta's review rules; returns the components to store or raises _Rejected with Meta's reason."""
    if category == "AUTHENTICATION":
        return _authentication_components(components)
    kinds = [_upper(c.get("type")) for c in components]
    for kind in kinds:
        if kind not in ("HEADER", "BODY", "FOOTER", "BUTTONS"):
            raise _rejection("INVALID_FORMAT", f"Unknown component type {kind}.")
    if len(kinds) != len(set(kinds)):
        raise _rejection("INVALID_FORMAT", "Each component type may appear only once.")
    body = _component(components, "BODY")
    if body is None or not str(body.get("text") or "").strip():
        raise _rejection("INVALID_FORMAT", "The body is required.")
    body_text = str(body["text"])
    if len(body_text) > 1024:
        raise _rejection(
            "INVALID_FORMAT", f"The body has {len(body_text)} characters; at most 1,024 are allowed."
        )
    example = body.get("example") or {}
    _check_variables(
        "Body",
        body_text,
        parameter_format,
        example.get("body_text_named_params" if parameter_format == "NAMED" else "body_text"),
        None,
    )
    stripped = body_text.strip()
    found = placeholders.tokens(stripped)
    if found and (found[0].start == 0 or found[-1].end == len(stripped)):
        raise _rejection(
            "INVALID_FORMAT",
            "Body: a parameter may not be at the very start or end of the text.",
            "Put text before the first and after the last parameter.",
        )
    header = _component(components, "HEADER")
    if header is not None:
        fmt = _upper(header.get("format") or "TEXT")
        if fmt not in HEADER_FORMATS:
            raise _rejection("INVALID_FORMAT", f"Unknown header format {fmt}.")
        if fmt == "TEXT":
            text = str(header.get("text") or "")
            if not text or len(text) > 60:
                raise _rejection("INVALID_FORMAT", "A text header needs 1 to 60 characters.")
            ex = header.get("example") or {}
            _check_variables(
                "Header",
                text,
                parameter_format,
                ex.get("header_text_named_params" if parameter_format == "NAMED" else "header_text"),
                1,
            )
        elif fmt in MEDIA_FORMATS and not (header.get("example") or {}).get("header_handle"):
            raise _rejection("INVALID_FORMAT", f"A {fmt.lower()} header needs an example header_handle.")
    footer = _component(components, "FOOTER")
    if footer is not None:
        text = str(footer.get("text") or "")
        if not text or len(text) > 60:
            raise _rejection("INVALID_FORMAT", "The footer needs 1 to 60 characters.")
        if placeholders.tokens(text):
            raise _rejection("INVALID_FORMAT", "The footer may not contain parameters.")
    buttons = (_component(components, "BUTTONS") or {}).get("buttons")
    if buttons is not None:
        _review_buttons(buttons, category, parameter_format)
    return components


def _review_buttons(buttons: Any, category: str, parameter_format: str) -> None:
    if not isinstance(buttons, list) or not buttons:
        raise _rejection("INVALID_FORMAT", "BUTTONS needs a non-empty list of buttons.")
    if len(buttons) > 10:
        raise _rejection("INVALID_FORMAT", "At most 10 buttons are allowed.")
    types = [_upper(b.get("type")) for b in buttons]
    for kind in types:
        if kind not in BUTTON_TYPES:
            raise _rejection("INVALID_FORMAT", f"Unknown button type {kind}.")
    if types.count("URL") > 2 or types.count("PHONE_NUMBER") > 1 or types.count("COPY_CODE") > 1:
        raise _rejection("INVALID_FORMAT", "At most 2 URL buttons, 1 phone number and 1 copy-code button.")
    if "OTP" in types:
        raise _rejection("INVALID_FORMAT", "OTP buttons are only allowed in AUTHENTICATION templates.")
    quick = [i for i, kind in enumerate(types) if kind == "QUICK_REPLY"]
    if quick and quick != list(range(quick[0], quick[-1] + 1)):
        raise _rejection("INVALID_FORMAT", "Quick-reply buttons must be grouped together.")
    for button, kind in zip(buttons, types, strict=True):
        text = str(button.get("text") or "")
        if kind != "COPY_CODE" and not 1 <= len(text) <= 25:
            raise _rejection("INVALID_FORMAT", f"Button text must have 1 to 25 characters ({text!r}).")
        if kind == "URL":
            url = str(button.get("url") or "")
            if not url.startswith(("https://", "http://")):
                raise _rejection("INVALID_FORMAT", f"URL button {text!r} needs an http(s) url.")
            found = placeholders.tokens(url)
            if found:
                if not url.rstrip().endswith("}}") or len(found) > 1:
                    raise _rejection(
                        "INVALID_FORMAT", "A URL button may have one parameter, at the end of the url."
                    )
                if not button.get("example"):
                    raise _rejection("INVALID_FORMAT", f"URL button {text!r} needs an example url.")
        if kind == "PHONE_NUMBER" and not re.fullmatch(r"\+?\d{6,20}", str(button.get("phone_number") or "")):
            raise _rejection("INVALID_FORMAT", f"Phone button {text!r} needs a phone_number.")
        if kind == "COPY_CODE":
            if category != "MARKETING":
                raise _rejection("INVALID_FORMAT", "Copy-code buttons are for MARKETING templates.")
            if not button.get("example"):
                raise _rejection("INVALID_FORMAT", "A copy-code button needs an example code.")


def create(*, waba_id: str, payload: Any, accounts: list, callback_base: str) -> dict[str, Any]:
    """POST /<waba>/message_templates: stores the template PENDING and schedules its review outcome.

    Malformed requests (no name, unknown category, duplicate name and language) are sync errors;
    templates that break review rules are accepted, then REJECTED with Meta's reason after the
    review delay; either outcome is announced to every connection of the WABA by webhook.
    """
    if not isinstance(payload, dict):
        raise ApiError(100, "The request body must be a JSON object.")
    name = str(payload.get("name") or "")
    language = str(payload.get("language") or "")
    category = _upper(payload.get("category"))
    parameter_format = _upper(payload.get("parameter_format") or "POSITIONAL")
    components = payload.get("components")
    if not NAME.match(name):
        raise ApiError(100, "name: use 1 to 512 lowercase letters, digits and underscores.", subcode=2388072)
    if not LANGUAGE.match(language):
        raise ApiError(100, f"language: {language!r} is not a supported language code (e.g. en_US, de).")
    if category not in CATEGORIES:
        raise ApiError(100, "category must be one of MARKETING, UTILITY, AUTHENTICATION.")
    if parameter_format not in ("POSITIONAL", "NAMED"):
        raise ApiError(100, "parameter_format must be POSITIONAL or NAMED.")
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise ApiError(100, "components must be a list of component objects.")
    if store.find_template(waba_id, name, language) is not None:
        raise ApiError(
            100,
            f"There is already {language} content for this template. "
            "You can create a new template and try again.",
            title="Content in This Language Already Exists",
            subcode=2388024,
        )
    _total, names = store.count_templates(waba_id)
    if names >= TEMPLATE_LIMIT and not store.templates_named(waba_id, name):
        raise ApiError(100, f"The WhatsApp Business Account reached its limit of {TEMPLATE_LIMIT} templates.")
    outcome, reason, info = "APPROVED", "NONE", {}
    try:
        stored = review(category, components, parameter_format)
    except _Rejected as rejected:
        stored = components
        outcome, reason = "REJECTED", rejected.reason
        info = {"reason": rejected.detail, "recommendation": rejected.recommendation}
    extra = {}
    if payload.get("message_send_ttl_seconds") is not None:
        extra["message_send_ttl_seconds"] = payload["message_send_ttl_seconds"]
    now = time.time()
    review_at = now + config.approval_seconds()
    template = store.insert_template(
        {
            "id": new_id(),
            "waba_id": waba_id,
            "name": name,
            "language": language,
            "category": category,
            "status": "PENDING",
            "parameter_format": parameter_format,
            "components": stored,
            "extra": extra,
            "rejected_reason": reason,
            "rejection_info": info,
            "review_at": review_at,
            "review_outcome": outcome,
            "created_at": now,
        }
    )
    for account in accounts:
        callbacks.queue_template_status(
            account, callback_base, template, event=outcome, reason=reason, info=info, due_at=review_at
        )
    store.settle_reviews()  # a zero review delay approves at once
    return {
        "id": template["id"],
        "status": store.get_template(template["id"])["status"],
        "category": category,
    }


def set_status(*, template: dict, status: str, accounts: list, callback_base: str) -> None:
    """Flip a template (e.g. PAUSED for low quality, DISABLED, APPROVED again) and tell every connection."""
    fields: dict[str, Any] = {"status": status, "review_at": None, "review_outcome": None}
    if status == "APPROVED":
        fields["rejected_reason"] = "NONE"
    if status == "PAUSED":
        fields["quality"] = "RED"
    store.update_template(template["id"], **fields)
    info = {}
    if status == "PAUSED":
        info = {"title": "Your template has been paused", "description": "It received low quality ratings."}
    for account in accounts:
        callbacks.queue_template_status(
            account, callback_base, template, event=status, reason="NONE", info=info, due_at=time.time()
        )


def as_meta(template: dict, fields: set[str] | None = None) -> dict[str, Any]:
    """A template as GET /message_templates returns it (reference 3.2)."""
    full: dict[str, Any] = {
        "id": template["id"],
        "name": template["name"],
        "language": template["language"],
        "status": template["status"],
        "category": template["category"],
        "parameter_format": template["parameter_format"],
        "components": template["components"],
        "quality_score": {"score": template["quality"], "date": int(template["created_at"])},
        "rejected_reason": template["rejected_reason"] if template["status"] == "REJECTED" else "NONE",
    }
    full.update(template.get("extra") or {})
    if fields:
        return {k: v for k, v in full.items() if k in fields or k == "id"}
    return full


# --- sending -----------------------------------------------------------------------------------
def expected_parameters(template: dict) -> dict[str, Any]:
    """What a send must fill in.

    {"header": ("TEXT", [names]) | (format, []) | None, "body": [names], "buttons": {index: (type, needs)}}
    """
    fmt = template["parameter_format"]
    expected: dict[str, Any] = {"header": None, "body": [], "buttons": {}}
    for component in template["components"]:
        kind = _upper(component.get("type"))
        if kind == "HEADER":
            header_format = _upper(component.get("format") or "TEXT")
            if header_format == "TEXT":
                names = variables(component.get("text") or "", fmt)
                expected["header"] = ("TEXT", names) if names else None
            else:
                expected["header"] = (header_format, [])
        elif kind == "BODY":
            expected["body"] = variables(component.get("text") or "", fmt)
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or []):
                btype = _upper(button.get("type"))
                if btype == "URL":
                    expected["buttons"][index] = ("URL", bool(placeholders.tokens(button.get("url") or "")))
                elif btype == "COPY_CODE":
                    expected["buttons"][index] = ("COPY_CODE", True)
                elif btype == "QUICK_REPLY":
                    expected["buttons"][index] = ("QUICK_REPLY", False)
                else:
                    expected["buttons"][index] = (btype, False)
    return expected


def _count_error(where: str, given: int, wanted: int) -> ApiError:
    return ApiError(
        132000,
        f"{where}: number of localizable_params ({given}) does not match the expected number of params "
        f"({wanted})",
    )


def _text_parameters(where: str, params: list, names: list[str], parameter_format: str) -> None:
    if len(params) != len(names):
        raise _count_error(where, len(params), len(names))
    for param in params:
        if not isinstance(param, dict):
            raise ApiError(131009, f"{where}: every parameter must be an object.")
        ptype = str(param.get("type") or "").lower()
        if ptype not in ("text", "currency", "date_time"):
            raise ApiError(
                132012, f"{where}: Format mismatch, expected TEXT, received {ptype.upper() or 'UNKNOWN'}"
            )
        if ptype == "text" and not str(param.get("text") or "").strip():
            raise ApiError(131008, f"{where}: parameter text is missing or empty.")
        if ptype in ("currency", "date_time") and not (param.get(ptype) or {}).get("fallback_value"):
            raise ApiError(131008, f"{where}: {ptype} needs a fallback_value.")
        named = param.get("parameter_name")
        if parameter_format == "NAMED":
            if not named:
                raise ApiError(
                    132012, f"{where}: the template uses named parameters; parameter_name is missing."
                )
            if named not in names:
                raise ApiError(132012, f"{where}: parameter name {named!r} does not exist in the template.")
        elif named:
            raise ApiError(132012, f"{where}: the template uses positional parameters, not parameter_name.")
    if parameter_format == "NAMED" and len({p.get("parameter_name") for p in params}) != len(params):
        raise ApiError(132012, f"{where}: a parameter_name is given twice.")


def check_parameters(template: dict, components: Any, expected: dict[str, Any] | None = None) -> None:
    """Raise Meta's error when the send's components do not fit the template (132000/132012/131008).

    ``expected``: ``expected_parameters(template)`` when the caller keeps it with the template."""
    if components is None:
        components = []
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise ApiError(100, "template['components'] must be a list of objects.")
    if expected is None:
        expected = expected_parameters(template)
    fmt = template["parameter_format"]
    given: dict[str, Any] = {"header": None, "body": None, "buttons": {}}
    for component in components:
        kind = str(component.get("type") or "").lower()
        params = component.get("parameters") or []
        if not isinstance(params, list):
            raise ApiError(100, f"{kind}: parameters must be a list.")
        if kind in ("header", "body"):
            given[kind] = params
        elif kind == "button":
            try:
                index = int(component.get("index"))
            except (TypeError, ValueError):
                raise ApiError(131008, "button: index is required (0-based, number or string).") from None
            given["buttons"][index] = (str(component.get("sub_type") or "").upper(), params)
        else:
            raise ApiError(100, f"Unknown component type {kind!r} (use header, body or button).")
    header = expected["header"]
    if header is None:
        if given["header"]:
            raise _count_error("header", len(given["header"]), 0)
    elif header[0] == "TEXT":
        _text_parameters("header", given["header"] or [], header[1], fmt)
    else:
        params = given["header"] or []
        if len(params) != 1:
            raise _count_error("header", len(params), 1)
        ptype = str(params[0].get("type") or "").upper() if isinstance(params[0], dict) else ""
        if ptype != header[0]:
            raise ApiError(
                132012, f"header: Format mismatch, expected {header[0]}, received {ptype or 'UNKNOWN'}"
            )
        media = params[0].get(ptype.lower()) or {}
        if header[0] == "LOCATION":
            if "latitude" not in media or "longitude" not in media:
                raise ApiError(131008, "header: location needs latitude and longitude.")
        elif not (media.get("link") or media.get("id")):
            raise ApiError(131008, f"header: {ptype.lower()} needs a link or an id.")
    _text_parameters("body", given["body"] or [], expected["body"], fmt)
    for index, (sub_type, params) in given["buttons"].items():
        if index not in expected["buttons"]:
            raise ApiError(132000, f"button: the template has no button at index {index}.")
        btype, needs_param = expected["buttons"][index]
        if sub_type.replace("-", "_") != btype:
            raise ApiError(
                132012,
                f"button at index {index}: Format mismatch, expected {btype}, "
                f"received {sub_type or 'UNKNOWN'}",
            )
        if btype == "URL":
            if len(params) != int(needs_param):
                raise _count_error(f"button at index {index}", len(params), int(needs_param))
            if params and not str(params[0].get("text") or ""):
                raise ApiError(131008, f"button at index {index}: the URL suffix text is missing.")
        elif btype == "COPY_CODE":
            code = str((params[0] if params else {}).get("coupon_code") or "")
            if len(params) != 1 or not code:
                raise _count_error(f"button at index {index}", len(params), 1)
            if len(code) > 15:
                raise ApiError(
                    131009, f"button at index {index}: coupon_code may have at most 15 characters."
                )
        elif btype == "QUICK_REPLY" and len(params) > 1:
            raise _count_error(f"button at index {index}", len(params), 1)
    for index, (btype, needs_param) in expected["buttons"].items():
        if needs_param and index not in given["buttons"]:
            raise _count_error(f"button at index {index} ({btype})", 0, 1)
