"""Authoring WhatsApp templates: the draft a marketer edits, the checks Meta would reject it on,
and Meta's create payload (reference sections 2 and 3.4). Also reads parameters and sample values
back out of components as Meta stores them.

Pure functions: no database, no HTTP. Every problem names the form field it belongs to, so the
page can show it next to that field.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from . import placeholders
from .placeholders import NAMED, POSITIONAL, tokens

MARKETING, UTILITY, AUTHENTICATION = "MARKETING", "UTILITY", "AUTHENTICATION"
CATEGORIES = (MARKETING, UTILITY, AUTHENTICATION)
MEDIA_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT")
HEADER_FORMATS = ("", "TEXT", *MEDIA_FORMATS)
BUTTON_TYPES = ("QUICK_REPLY", "URL", "PHONE_NUMBER", "COPY_CODE")
OTP_TYPES = ("COPY_CODE", "ONE_TAP")

MAX_NAME = 512
MAX_HEADER = 60
MAX_BODY = 1024
MAX_FOOTER = 60
MAX_BUTTON_TEXT = 25
MAX_URL = 2000
MAX_BUTTONS = 10
MAX_URL_BUTTONS = 2
MAX_PHONE_BUTTONS = 1
MAX_COPY_CODE_BUTTONS = 1
MAX_COUPON = 15
MAX_EXPIRATION_MINUTES = 90

# What Meta writes into authentication templates (the body cannot be chosen).
AUTH_BODY = "*{{1}}* is your verification code."
AUTH_SECURITY = "For your security, do not share this code."
AUTH_SAMPLE_CODE = "123456"

ERROR, WARNING = "error", "warning"

_TEMPLATE_NAME = re.compile(r"[a-z0-9_]+")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
_PHONE = re.compile(r"\+?[1-9][0-9]{6,18}")
_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")
_SIGNATURE_HASH = re.compile(r"[A-Za-z0-9+/]{11}")
_COUPON = re.compile(r"[A-Za-z0-9]+")
_URL_LIKE = re.compile(r"https?://|www\.", re.IGNORECASE)
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f900-\U0001f9ff\U00002b00-\U00002bff\ufe0f\u200d]"
)
# Words that make a "utility" template read like a promotion (Meta then rejects or recategorizes it).
_PROMOTIONAL = re.compile(
    r"\b(sale|discount|\d+ ?% off|offer|promo(tion)?|deal|coupon|voucher|buy now|shop now|limited time|"
    r"free gift|special price|rabatt|angebot|gutschein|aktion)\b",
    re.IGNORECASE,
)


@dataclass
class Button:
    type: str
    text: str = ""
    url: str = ""
    # The URL suffix's sample (URL buttons) or the coupon code's sample (copy-code buttons).
    example: str = ""
    phone_number: str = ""


@dataclass
class Draft:
    name: str = ""
    language: str = ""
    category: str = ""
    parameter_format: str = POSITIONAL
    header_format: str = ""
    header_text: str = ""
    header_example: str = ""
    # A media sample: an upload handle ("4::aW1h...") or a URL to the file.
    header_media: str = ""
    body: str = ""
    # Sample value per body parameter, keyed "1", "2" or "first_name".
    examples: dict[str, str] = field(default_factory=dict)
    footer: str = ""
    buttons: list[Button] = field(default_factory=list)
    # Authentication templates only.
    otp_type: str = ""
    otp_button_text: str = ""
    autofill_text: str = ""
    package_name: str = ""
    signature_hash: str = ""
    add_security_recommendation: bool = False
    code_expiration_minutes: int | None = None

    @property
    def is_authentication(self) -> bool:
        return self.category == AUTHENTICATION


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR


def button_field(index: int, name: str) -> str:
    """The field key of one input of the button at ``index`` (the form uses the same keys)."""
    return f"button-{index}-{name}"


# --- parameters ---------------------------------------------------------------------------


def parameters(text: str) -> list[str]:
    """The valid parameter names of ``text``, each once, in order of first appearance."""
    return placeholders.parameters(text)


def _ordered(names: list[str], parameter_format: str) -> list[str]:
    if parameter_format == POSITIONAL and all(n.isdigit() for n in names):
        return sorted(names, key=int)
    return names


def check_parameters(text: str, *, parameter_format: str, where: str, field_name: str) -> list[Problem]:
    """Meta's rules for the parameters of one text: valid, one kind, the template's kind, numbered
    1..n without gaps, each once."""
    problems: list[Problem] = []
    # The texts below name the part ("the header"); ``where`` stays English for callers.
    part = {"header": pgettext("template part", "header"), "body": pgettext("template part", "body")}.get(
        where, where
    )
    found = tokens(text)
    leftover = placeholders.TOKEN.sub("", text or "")
    if "{{" in leftover or "}}" in leftover:
        problems.append(
            Problem(
                field_name,
                _("The %(part)s has unmatched braces: write parameters as {{1}}.") % {"part": part},
            )
        )
    for token in found:
        if not token.kind:
            problems.append(
                Problem(
                    field_name,
                    _(
                        "%(parameter)s is not a parameter: use {{1}}, {{2}} … "
                        "or lowercase names with underscores like {{first_name}}."
                    )
                    % {"parameter": "{{" + token.raw + "}}"},
                )
            )
        elif token.raw != token.name:
            problems.append(
                Problem(
                    field_name,
                    _("Write %(parameter)s without spaces inside the braces.")
                    % {"parameter": "{{" + token.name + "}}"},
                )
            )
    kinds = {t.kind for t in found if t.kind}
    if len(kinds) > 1:
        problems.append(
            Problem(
                field_name,
                _("The %(part)s mixes numbered ({{1}}) and named ({{first_name}}) parameters.")
                % {"part": part},
            )
        )
        return problems
    if kinds and kinds != {parameter_format}:
        if parameter_format == NAMED:
            problems.append(
                Problem(
                    field_name,
                    _(
                        "The %(part)s uses numbered parameters but the template's parameter format is named: "
                        "write {{first_name}}, or switch the format to numbered."
                    )
                    % {"part": part},
                )
            )
        else:
            problems.append(
                Problem(
                    field_name,
                    _(
                        "The %(part)s uses named parameters but the template's parameter format is numbered: "
                        "write {{1}}, {{2}} …, or switch the format to named."
                    )
                    % {"part": part},
                )
            )
        return problems
    names = [t.name for t in found if t.kind]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(
            Problem(
                field_name,
                _("%(parameter)s appears more than once; use each parameter once.")
                % {"parameter": "{{" + name + "}}"},
            )
        )
    if kinds == {POSITIONAL}:
        numbers = sorted({int(n) for n in names})
        expected = list(range(1, len(numbers) + 1))
        if numbers != expected:
            missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
            detail = (
                _("%(parameter)s is missing") % {"parameter": "{{" + str(missing[0]) + "}}"}
                if missing
                else _("%(parameter)s cannot be used, numbering starts at {{1}}")
                % {"parameter": "{{" + str(numbers[0]) + "}}"}
            )
            problems.append(
                Problem(
                    field_name,
                    _("Number the %(part)s's parameters {{1}}, {{2}} … without gaps: %(detail)s.")
                    % {"part": part, "detail": detail},
                )
            )
    return problems


def check_placement(body: str) -> list[Problem]:
    """Meta rejects bodies that start or end with a parameter, or put two side by side."""
    problems = []
    text = (body or "").strip()
    valid = [t for t in tokens(text) if t.kind]
    if not valid:
        return problems
    if valid[0].start == 0:
        problems.append(Problem("body", _("The body may not start with a parameter; put words before it.")))
    if valid[-1].end == len(text):
        problems.append(
            Problem("body", _("The body may not end with a parameter; put words (or a full stop) after it."))
        )
    for left, right in itertools.pairwise(valid):
        if not text[left.end : right.start].strip():
            problems.append(
                Problem(
                    "body",
                    _("%(left)s and %(right)s stand next to each other; put words between them.")
                    % {"left": left.text, "right": right.text},
                )
            )
    words = [w for w in placeholders.TOKEN.sub(" ", text).split() if any(c.isalnum() for c in w)]
    if len(words) <= len(valid):
        problems.append(
            Problem(
                "body",
                _("More parameters than fixed words: Meta often rejects such templates; add fixed words."),
                WARNING,
            )
        )
    return problems


def _length(problems: list[Problem], value: str, limit: int, field_name: str, label: str) -> None:
    if len(value) > limit:
        problems.append(
            Problem(
                field_name,
                _("%(label)s is %(length)s characters long; Meta allows %(limit)s.")
                % {"label": label, "length": len(value), "limit": limit},
            )
        )


def _has_emoji(text: str) -> bool:
    return bool(_EMOJI.search(text or ""))


# --- the whole draft -----------------------------------------------------------------------


def lint(draft: Draft) -> list[Problem]:
    """Every problem of the draft, errors and warnings, in form order."""
    problems: list[Problem] = []
    problems += _lint_identity(draft)
    if draft.is_authentication:
        problems += _lint_authentication(draft)
    else:
        problems += _lint_header(draft)
        problems += _lint_body(draft)
        problems += _lint_footer(draft)
        problems += _lint_buttons(draft)
        problems += _lint_not_authentication(draft)
    return problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]


def _lint_identity(draft: Draft) -> list[Problem]:
    problems = []
    if not draft.name:
        problems.append(Problem("name", _("Give the template a name.")))
    elif not _TEMPLATE_NAME.fullmatch(draft.name):
        problems.append(
            Problem("name", _("Use lowercase letters, digits and underscores only, e.g. order_shipped_v2."))
        )
    _length(problems, draft.name, MAX_NAME, "name", _("The name"))
    if not draft.language:
        problems.append(Problem("language", _("Choose the template's language.")))
    elif not _LANGUAGE.fullmatch(draft.language):
        problems.append(Problem("language", _("Use a language code Meta knows, e.g. en_US, de or pt_BR.")))
    if draft.category not in CATEGORIES:
        problems.append(Problem("category", _("Choose marketing, utility or authentication.")))
    if draft.parameter_format not in (POSITIONAL, NAMED):
        problems.append(Problem("parameter_format", _("Choose numbered or named parameters.")))
    return problems


def _lint_header(draft: Draft) -> list[Problem]:
    problems: list[Problem] = []
    if draft.header_format not in HEADER_FORMATS:
        return [Problem("header_format", _("Choose no header, text, image, video or document."))]
    if draft.header_format == "TEXT":
        text = draft.header_text
        if not text.strip():
            problems.append(Problem("header_text", _("Write the header text, or choose no header.")))
        _length(problems, text, MAX_HEADER, "header_text", _("The header"))
        if "\n" in text:
            problems.append(Problem("header_text", _("The header is one line: remove the line breaks.")))
        if _has_emoji(text):
            problems.append(Problem("header_text", _("Meta does not allow emoji in a header.")))
        problems += check_parameters(
            text, parameter_format=draft.parameter_format, where="header", field_name="header_text"
        )
        names = parameters(text)
        if len(names) > 1:
            problems.append(Problem("header_text", _("A header may have one parameter at most.")))
        if names and not draft.header_example.strip():
            problems.append(
                Problem(
                    "header_example",
                    _("Give a sample value for %(parameter)s in the header.")
                    % {"parameter": "{{" + names[0] + "}}"},
                )
            )
    elif draft.header_format in MEDIA_FORMATS:
        sample = draft.header_media.strip()
        kind = {"IMAGE": _("image"), "VIDEO": _("video"), "DOCUMENT": _("document")}[draft.header_format]
        if not sample:
            problems.append(
                Problem(
                    "header_media",
                    _("Meta reviews a sample %(kind)s: give its upload handle (4::…) or a link to the file.")
                    % {"kind": kind},
                )
            )
        elif sample.lower().startswith(("http://", "https://")) is False and " " in sample:
            problems.append(
                Problem("header_media", _("An upload handle has no spaces; a link starts with https://."))
            )
    return problems


def _lint_body(draft: Draft) -> list[Problem]:
    problems: list[Problem] = []
    body = draft.body
    if not body.strip():
        return [Problem("body", _("Write the message body."))]
    _length(problems, body, MAX_BODY, "body", _("The body"))
    parameter_problems = check_parameters(
        body, parameter_format=draft.parameter_format, where="body", field_name="body"
    )
    problems += parameter_problems
    problems += check_placement(body)
    if "\n\n\n" in body:
        problems.append(Problem("body", _("More than one empty line in a row; Meta rejects that."), WARNING))
    if not parameter_problems:
        for name in parameters(body):
            if not draft.examples.get(name, "").strip():
                problems.append(
                    Problem(
                        f"example:{name}",
                        _("Give a sample value for %(parameter)s.") % {"parameter": "{{" + name + "}}"},
                    )
                )
            elif "\n" in draft.examples[name]:
                problems.append(Problem(f"example:{name}", _("Sample values are one line.")))
    return problems


def _lint_footer(draft: Draft) -> list[Problem]:
    problems: list[Problem] = []
    _length(problems, draft.footer, MAX_FOOTER, "footer", _("The footer"))
    if tokens(draft.footer):
        problems.append(Problem("footer", _("A footer cannot have parameters.")))
    if "\n" in draft.footer:
        problems.append(Problem("footer", _("The footer is one line: remove the line breaks.")))
    return problems


def _lint_buttons(draft: Draft) -> list[Problem]:
    problems: list[Problem] = []
    buttons = draft.buttons
    if len(buttons) > MAX_BUTTONS:
        problems.append(
            Problem(
                "buttons",
                _("%(count)s buttons; Meta allows %(limit)s at most.")
                % {"count": len(buttons), "limit": MAX_BUTTONS},
            )
        )
    counts = {kind: sum(b.type == kind for b in buttons) for kind in BUTTON_TYPES}
    for kind, limit, label in (
        ("URL", MAX_URL_BUTTONS, gettext_lazy("%(count)s link buttons; Meta allows %(limit)s.")),
        ("PHONE_NUMBER", MAX_PHONE_BUTTONS, gettext_lazy("%(count)s call buttons; Meta allows %(limit)s.")),
        (
            "COPY_CODE",
            MAX_COPY_CODE_BUTTONS,
            gettext_lazy("%(count)s copy-code buttons; Meta allows %(limit)s."),
        ),
    ):
        if counts[kind] > limit:
            problems.append(Problem("buttons", str(label) % {"count": counts[kind], "limit": limit}))
    quick = [b.type == "QUICK_REPLY" for b in buttons]
    # Quick replies must form one block, either before or after the other buttons.
    changes = sum(a != b for a, b in itertools.pairwise(quick))
    if changes > 1:
        problems.append(
            Problem(
                "buttons", _("Keep the quick-reply buttons together, all before or all after the others.")
            )
        )
    for index, button in enumerate(buttons):
        problems += _lint_button(draft, index, button)
    return problems


def _lint_button(draft: Draft, index: int, button: Button) -> list[Problem]:
    problems: list[Problem] = []
    text_field = button_field(index, "text")
    if button.type not in BUTTON_TYPES:
        return [Problem(button_field(index, "type"), _("Choose quick reply, link, call or copy code."))]
    if button.type != "COPY_CODE":
        if not button.text.strip():
            problems.append(Problem(text_field, _("Write the button's label.")))
        _length(problems, button.text, MAX_BUTTON_TEXT, text_field, _("The label"))
        if tokens(button.text):
            problems.append(Problem(text_field, _("A button label cannot have parameters.")))
    if button.type == "URL":
        url_field = button_field(index, "url")
        url = button.url.strip()
        if not url:
            problems.append(Problem(url_field, _("Give the link's address.")))
        elif not url.lower().startswith(("https://", "http://")):
            problems.append(Problem(url_field, _("The address starts with https:// (or http://).")))
        _length(problems, url, MAX_URL, url_field, _("The address"))
        found = tokens(url)
        if found and (len(found) > 1 or found[0].name != "1" or not url.endswith("{{1}}")):
            problems.append(
                Problem(url_field, _("A link may have one parameter, {{1}}, at the very end of the address."))
            )
        elif found and not button.example.strip():
            problems.append(
                Problem(
                    button_field(index, "example"), _("Give a sample for the end of the address ({{1}}).")
                )
            )
        elif found and " " in button.example.strip():
            problems.append(
                Problem(button_field(index, "example"), _("The sample is part of an address: no spaces."))
            )
    elif button.type == "PHONE_NUMBER":
        phone_field = button_field(index, "phone_number")
        number = re.sub(r"[\s()./-]", "", button.phone_number)
        if not number:
            problems.append(Problem(phone_field, _("Give the number to call, with country code.")))
        elif not _PHONE.fullmatch(number):
            problems.append(
                Problem(phone_field, _("Write the number with its country code, e.g. +49 30 1234567."))
            )
    elif button.type == "COPY_CODE":
        example_field = button_field(index, "example")
        code = button.example.strip()
        if draft.category != MARKETING:
            problems.append(
                Problem(button_field(index, "type"), _("Copy-code buttons are only for marketing templates."))
            )
        if not code:
            problems.append(Problem(example_field, _("Give a sample coupon code, e.g. SUMMER25.")))
        elif len(code) > MAX_COUPON or not _COUPON.fullmatch(code):
            problems.append(
                Problem(
                    example_field,
                    _("A coupon code is letters and digits, at most %(limit)s characters.")
                    % {"limit": MAX_COUPON},
                )
            )
    return problems


def _lint_not_authentication(draft: Draft) -> list[Problem]:
    problems = []
    if draft.otp_type:
        problems.append(
            Problem("otp_type", _("One-time-password buttons are only for authentication templates."))
        )
    if draft.code_expiration_minutes is not None:
        problems.append(
            Problem("code_expiration_minutes", _("Only authentication templates have a code expiry."))
        )
    if draft.category == UTILITY:
        match = _PROMOTIONAL.search(" ".join([draft.header_text, draft.body, draft.footer]))
        if match:
            problems.append(
                Problem(
                    "category",
                    _(
                        "“%(word)s” sounds promotional: Meta may reject this utility template or "
                        "approve it as marketing."
                    )
                    % {"word": match.group(0)},
                    WARNING,
                )
            )
    return problems


def _lint_authentication(draft: Draft) -> list[Problem]:
    problems = []
    if draft.header_format:
        problems.append(Problem("header_format", _("Authentication templates have no header.")))
    if draft.body.strip():
        problems.append(
            Problem(
                "body",
                _(
                    "Meta writes the body of authentication templates "
                    "(“<code> is your verification code.”): leave it empty."
                ),
            )
        )
    if draft.footer.strip():
        problems.append(
            Problem("footer", _("Authentication templates have no footer text; set the code expiry instead."))
        )
    if draft.buttons:
        problems.append(
            Problem(
                "buttons",
                _("Authentication templates have exactly one button: the one-time-password button."),
            )
        )
    if draft.otp_type not in OTP_TYPES:
        problems.append(
            Problem("otp_type", _("Choose how the code reaches the app: copy code or one-tap autofill."))
        )
    for name, value in (("otp_button_text", draft.otp_button_text), ("autofill_text", draft.autofill_text)):
        _length(problems, value, MAX_BUTTON_TEXT, name, _("The label"))
        if _has_emoji(value):
            problems.append(Problem(name, _("Authentication templates may not contain emoji.")))
        if _URL_LIKE.search(value):
            problems.append(Problem(name, _("Authentication templates may not contain links.")))
    if draft.otp_type == "ONE_TAP":
        if not draft.package_name.strip():
            problems.append(
                Problem("package_name", _("One-tap autofill needs the Android app's package name."))
            )
        elif not _PACKAGE.fullmatch(draft.package_name.strip()):
            problems.append(Problem("package_name", _("A package name looks like com.example.shop.")))
        if not draft.signature_hash.strip():
            problems.append(
                Problem("signature_hash", _("One-tap autofill needs the app's signing key hash."))
            )
        elif not _SIGNATURE_HASH.fullmatch(draft.signature_hash.strip()):
            problems.append(
                Problem(
                    "signature_hash", _("The app signature hash is 11 characters (letters, digits, + and /).")
                )
            )
    minutes = draft.code_expiration_minutes
    if minutes is not None and not 1 <= minutes <= MAX_EXPIRATION_MINUTES:
        problems.append(
            Problem(
                "code_expiration_minutes",
                _("The code may expire after 1 to %(limit)s minutes.") % {"limit": MAX_EXPIRATION_MINUTES},
            )
        )
    return problems


# --- Meta's create payload -------------------------------------------------------------------


def _named_examples(names: list[str], values: dict[str, str]) -> list[dict[str, str]]:
    return [{"param_name": name, "example": values.get(name, "").strip()} for name in names]


def build_payload(draft: Draft) -> dict[str, Any]:
    """The body of ``POST /{waba-id}/message_templates`` for a draft without errors."""
    if draft.is_authentication:
        return _authentication_payload(draft)
    components: list[dict[str, Any]] = []
    named = draft.parameter_format == NAMED
    if draft.header_format == "TEXT":
        header: dict[str, Any] = {"type": "HEADER", "format": "TEXT", "text": draft.header_text}
        names = parameters(draft.header_text)
        if names:
            sample = draft.header_example.strip()
            header["example"] = (
                {"header_text_named_params": [{"param_name": names[0], "example": sample}]}
                if named
                else {"header_text": [sample]}
            )
        components.append(header)
    elif draft.header_format in MEDIA_FORMATS:
        components.append(
            {
                "type": "HEADER",
                "format": draft.header_format,
                "example": {"header_handle": [draft.header_media.strip()]},
            }
        )
    body: dict[str, Any] = {"type": "BODY", "text": draft.body}
    names = _ordered(parameters(draft.body), draft.parameter_format)
    if names:
        body["example"] = (
            {"body_text_named_params": _named_examples(names, draft.examples)}
            if named
            else {"body_text": [[draft.examples.get(name, "").strip() for name in names]]}
        )
    components.append(body)
    if draft.footer.strip():
        components.append({"type": "FOOTER", "text": draft.footer})
    if draft.buttons:
        components.append({"type": "BUTTONS", "buttons": [_button_payload(b) for b in draft.buttons]})
    return {
        "name": draft.name,
        "language": draft.language,
        "category": draft.category,
        "parameter_format": draft.parameter_format,
        "components": components,
    }


def _button_payload(button: Button) -> dict[str, Any]:
    if button.type == "COPY_CODE":
        return {"type": "COPY_CODE", "example": button.example.strip()}
    payload: dict[str, Any] = {"type": button.type, "text": button.text.strip()}
    if button.type == "URL":
        url = button.url.strip()
        payload["url"] = url
        if url.endswith("{{1}}"):
            payload["example"] = [url[: -len("{{1}}")] + button.example.strip()]
    elif button.type == "PHONE_NUMBER":
        payload["phone_number"] = re.sub(r"[\s()./-]", "", button.phone_number)
    return payload


def _authentication_payload(draft: Draft) -> dict[str, Any]:
    components: list[dict[str, Any]] = [
        {"type": "BODY", "add_security_recommendation": bool(draft.add_security_recommendation)}
    ]
    if draft.code_expiration_minutes:
        components.append({"type": "FOOTER", "code_expiration_minutes": draft.code_expiration_minutes})
    otp: dict[str, Any] = {"type": "OTP", "otp_type": draft.otp_type}
    if draft.otp_button_text.strip():
        otp["text"] = draft.otp_button_text.strip()
    if draft.otp_type == "ONE_TAP":
        if draft.autofill_text.strip():
            otp["autofill_text"] = draft.autofill_text.strip()
        otp["supported_apps"] = [
            {"package_name": draft.package_name.strip(), "signature_hash": draft.signature_hash.strip()}
        ]
    components.append({"type": "BUTTONS", "buttons": [otp]})
    return {
        "name": draft.name,
        "language": draft.language,
        "category": AUTHENTICATION,
        "components": components,
    }


# --- reading components as Meta stores them --------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    component: str  # "header", "body", "button:1" (the keys campaigns.policy uses)
    label: str  # for people: "Body", "Button 2 (link)"
    name: str  # "1", "first_name", "image", "code"
    example: str


def _component(components: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == kind:
            return component
    return None


def text_examples(component: dict[str, Any] | None, prefix: str) -> dict[str, str]:
    """Sample values of a HEADER or BODY component by parameter name ("1", "first_name")."""
    if not component:
        return {}
    example = component.get("example") or {}
    if not isinstance(example, dict):
        return {}
    values: dict[str, str] = {}
    for item in example.get(f"{prefix}_text_named_params") or []:
        if isinstance(item, dict) and item.get("param_name"):
            values[str(item["param_name"])] = str(item.get("example") or "")
    positional = example.get(f"{prefix}_text") or []
    if positional and isinstance(positional, list) and isinstance(positional[0], list):  # the body's nesting
        positional = positional[0]
    if not isinstance(positional, list):
        positional = []
    for index, value in enumerate(positional):
        values.setdefault(str(index + 1), str(value))
    return values


def template_parameters(
    components: list[dict[str, Any]], *, category: str, parameter_format: str
) -> list[Parameter]:
    """What a send must fill in, per component, with Meta's sample values.

    Keys match campaigns.policy.template_parameters (which the sending side checks against).
    """
    found: list[Parameter] = []
    header = _component(components, "HEADER")
    if header:
        fmt = str(header.get("format") or "TEXT").upper()
        if fmt == "TEXT":
            samples = text_examples(header, "header")
            for name in _params_of(header.get("text") or "", parameter_format):
                found.append(Parameter("header", _("Header"), name, samples.get(name, "")))
        elif fmt in (*MEDIA_FORMATS, "LOCATION"):
            found.append(Parameter("header", _("Header"), fmt.lower(), media_sample(header)))
    body = _component(components, "BODY")
    if category == AUTHENTICATION:
        found.append(Parameter("body", _("Body"), "1", AUTH_SAMPLE_CODE))
    elif body:
        samples = text_examples(body, "body")
        for name in _params_of(body.get("text") or "", parameter_format):
            found.append(Parameter("body", _("Body"), name, samples.get(name, "")))
    buttons = (_component(components, "BUTTONS") or {}).get("buttons") or []
    for index, button in enumerate(buttons if isinstance(buttons, list) else []):
        if not isinstance(button, dict):
            continue
        kind = str(button.get("type") or "").upper()
        key, number = f"button:{index}", index + 1
        if kind == "URL" and placeholders.has_parameter(str(button.get("url") or "")):
            if category == AUTHENTICATION:
                found.append(
                    Parameter(key, _("Button %(number)s (code)") % {"number": number}, "1", AUTH_SAMPLE_CODE)
                )
                continue
            url = str(button.get("url") or "")
            sample = ""
            examples = button.get("example") or []
            if isinstance(examples, str):
                examples = [examples]
            if examples:
                prefix = placeholders.link_prefix(url)
                sample = str(examples[0])
                sample = sample[len(prefix) :] if sample.startswith(prefix) else sample
            found.append(Parameter(key, _("Button %(number)s (link)") % {"number": number}, "1", sample))
        elif kind in ("OTP", "COPY_CODE", "URL") and category == AUTHENTICATION:
            found.append(
                Parameter(key, _("Button %(number)s (code)") % {"number": number}, "1", AUTH_SAMPLE_CODE)
            )
    return found


def media_sample(header: dict[str, Any]) -> str:
    """The sample handle or link of a media header, as Meta stores it."""
    example = header.get("example")
    handles = example.get("header_handle") if isinstance(example, dict) else None
    if isinstance(handles, list) and handles:
        return str(handles[0])
    return str(handles or "")


def _params_of(text: str, parameter_format: str) -> list[str]:
    return placeholders.parameters(text, NAMED if parameter_format == NAMED else POSITIONAL)


def stored_components(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The components of a just-created template as Meta will list them, until the next sync.

    Meta writes the text of authentication templates itself; storing it now lets sends fill the
    code parameter (and the policy count it) before a sync brings Meta's own copy.
    """
    components = [dict(c) for c in payload.get("components") or []]
    if payload.get("category") != AUTHENTICATION:
        return components
    for component in components:
        if component["type"] == "BODY":
            security = component.get("add_security_recommendation")
            component["text"] = AUTH_BODY + (f" {AUTH_SECURITY}" if security else "")
        elif component["type"] == "FOOTER" and component.get("code_expiration_minutes"):
            component["text"] = expiry_text(component["code_expiration_minutes"])
    return components


def expiry_text(minutes: int) -> str:
    return f"This code expires in {minutes} minute{'s' if minutes != 1 else ''}."
