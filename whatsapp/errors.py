"""Meta's error codes, classified for the retry policy of reference section 5.4."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # retry the same message with backoff
    RETRY_LATER = "retry_later"  # retry only after a long wait (131049: >= 24 h, at most once)
    PERMANENT = "permanent"  # fail this message; never retry
    ACCOUNT = "account"  # stop sending for the whole account and tell a human


TRANSIENT_CODES = {1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004}
RETRY_LATER_CODES = {131049, 133016}
# 132001 (template missing or not approved) fails every recipient alike: stop, as 5.4 says.
ACCOUNT_CODES = {
    0, 3, 10, 190, 368, 130497, 131031, 131042, 131045, 131048, 131064, 132001, 132015, 132016, 133010,
}  # fmt: skip
# Permission errors 200-299 are account-level too (see classify).
# Account-level errors that concern one template, not the number: only what sends it must stop.
TEMPLATE_CODES = {132001, 132015, 132016}
# How long a sender waits before retrying a transient error, by code (seconds for attempt 1, 2, ...).
# 131056 is Meta's pair limit: 4^X seconds for that recipient only; 131057 is a <= 1 min maintenance.
PAIR_RATE_CODE = 131056
THROUGHPUT_CODE = 130429
RETRY_LATER_SECONDS = 24 * 3600 + 60  # 131049: "wait at least 24 h", and a minute to be sure

# Plain-language explanations for the panel, by code (in the active language; English in workers).
EXPLANATIONS = {
    0: _("Meta rejected the access token. Create a new system-user token and update the connection."),
    190: _("The access token expired. Create a new system-user token and update the connection."),
    3: _("The app lacks a capability for this call. Check the app's WhatsApp product setup."),
    10: _("Permission denied. Give the system user access to this WhatsApp Business Account."),
    4: _("Too many API calls from this app; slowing down and retrying."),
    80007: _("The WhatsApp Business Account hit its API rate limit; retrying later."),
    130429: _("The number's throughput limit was exceeded; retrying slower."),
    131056: _("Too many messages to this person in a short time; retrying for them only."),
    131048: _("Meta restricted the number for spam (low quality). Sending is paused: check quality."),
    131049: _("Meta did not deliver this marketing message to keep engagement healthy; retry after 24 h."),
    131064: _("Messaging is limited because of template classification violations."),
    368: _("The number is temporarily blocked for policy violations."),
    131031: _("The business account is locked. Check Business Manager (e.g. the two-step PIN)."),
    130497: _("The account may not message users in this country."),
    2: _("Meta's API is temporarily down; retrying."),
    131000: _("Meta reported an unknown error; retrying a few times."),
    131016: _("Meta's service is temporarily unavailable; retrying."),
    131057: _("The number is in maintenance (throughput upgrade); retrying in a minute."),
    133004: _("Meta's server is temporarily unavailable; retrying."),
    33: _("The phone number id does not exist (deleted or wrong)."),
    100: _("Meta rejected a parameter of the request (a bug or bad recipient)."),
    131008: _("A required parameter is missing."),
    131009: _("A parameter value is invalid."),
    131021: _("The recipient is the sender's own number."),
    131026: _("Undeliverable: the number is not on WhatsApp, or cannot receive this message."),
    131042: _("Payment problem on the WhatsApp Business Account. Sending is stopped until it is fixed."),
    131045: _("The phone number's registration is broken; register it again."),
    131047: _("More than 24 hours since the person last wrote: only templates may be sent."),
    131050: _("The person stopped marketing messages from you in WhatsApp."),
    130472: _("The person is in Meta's marketing experiment holdout."),
    131051: _("Unsupported message type."),
    131052: _("The inbound media could not be downloaded."),
    131053: _("Our media could not be uploaded (check the media URL)."),
    131037: _("The display name is not approved yet."),
    131062: _("This message cannot be sent to a business-scoped user id; use the phone number."),
    131063: _("Marketing templates are disabled on the Cloud API for this account."),
    132000: _("The number of template parameters does not match the template."),
    132001: _("The template does not exist in this language, or is not approved."),
    132005: _("The filled-in template text is too long."),
    132007: _("A template parameter breaks the format rules (newlines, tabs, 4+ spaces)."),
    132008: _("A template parameter value is invalid."),
    132012: _("A template parameter has the wrong format (named vs positional, URL suffix)."),
    132015: _("The template is paused for low quality. Sending resumes when Meta approves it again."),
    132016: _("The template was disabled permanently for low quality."),
    133010: _("The phone number is not registered on the Cloud API."),
    133016: _("Too many register/deregister attempts; try later."),
    135000: _("Meta reported a generic user error."),
    137000: _("The recipient's identity key changed; resend without the key hash."),
}


def classify(code: int | None) -> ErrorKind:
    """The retry policy for an error code; unknown codes and network errors are transient."""
    if code is None:
        return ErrorKind.TRANSIENT
    if code in TRANSIENT_CODES:
        return ErrorKind.TRANSIENT
    if code in RETRY_LATER_CODES:
        return ErrorKind.RETRY_LATER
    if code in ACCOUNT_CODES or 200 <= code <= 299:
        return ErrorKind.ACCOUNT
    if code in EXPLANATIONS:
        return ErrorKind.PERMANENT
    # An unknown 4xx-style code: do not hammer Meta with it.
    return ErrorKind.PERMANENT


def template_level(code: int | None) -> bool:
    """An account-level error about the template sent (paused, disabled, gone), not the number."""
    return code in TEMPLATE_CODES


def retry_delay(code: int | None, attempt: int) -> float:
    """Seconds to wait before sending again after the ``attempt``-th transient failure (1-based)."""
    attempt = max(attempt, 1)
    if code == PAIR_RATE_CODE:
        return float(4 ** (attempt - 1))
    if code == 131057:
        return 60.0
    if code in RETRY_LATER_CODES:
        return float(RETRY_LATER_SECONDS)
    # Network errors, 5xx, 130429 and the rest: 2, 8, 32, 128 s ... capped at 10 minutes.
    return float(min(2 * 4 ** (attempt - 1), 600))


def explain(code: int | None, fallback: str = "") -> str:
    if code is None:
        return fallback or gettext("Meta could not be reached.")
    known = EXPLANATIONS.get(code)
    return str(known) if known else (fallback or gettext("Meta error %(code)s.") % {"code": code})


@dataclass
class GraphError(Exception):
    """An error answer of the Graph API (sync) or an error object of a webhook (async)."""

    code: int | None
    title: str = ""
    details: str = ""
    trace_id: str = ""
    http_status: int | None = None

    def __post_init__(self) -> None:
        super().__init__(self.describe())

    @property
    def kind(self) -> ErrorKind:
        return classify(self.code)

    @property
    def explanation(self) -> str:
        return explain(self.code, self.title)

    def describe(self) -> str:
        parts = [f"({self.code})" if self.code is not None else "(network)", self.title or self.explanation]
        if self.details:
            parts.append(f"- {self.details}")
        return " ".join(p for p in parts if p)

    @classmethod
    def from_response(cls, status: int, body: dict | None) -> GraphError:
        error = (body or {}).get("error") or {}
        code = error.get("code")
        message = str(error.get("message") or "")
        return cls(
            code=int(code) if isinstance(code, int | str) and str(code).isdigit() else None,
            title=error.get("error_user_title") or message,
            details=str((error.get("error_data") or {}).get("details") or error.get("error_user_msg") or ""),
            trace_id=str(error.get("fbtrace_id") or ""),
            http_status=status,
        )

    @classmethod
    def from_webhook(cls, error: dict) -> GraphError:
        code = error.get("code")
        return cls(
            code=int(code) if isinstance(code, int | str) and str(code).isdigit() else None,
            title=str(error.get("title") or error.get("message") or ""),
            details=str((error.get("error_data") or {}).get("details") or ""),
        )


class TransientError(GraphError):
    pass


class AmbiguousSendError(TransientError):
    """The request may have reached Meta (e.g. a read timeout): resending could duplicate the message."""


class PermanentError(GraphError):
    pass


class AccountError(GraphError):
    pass


def typed(error: GraphError) -> GraphError:
    """The same error as the exception class of its kind (what callers catch)."""
    cls = {
        ErrorKind.TRANSIENT: TransientError,
        ErrorKind.RETRY_LATER: TransientError,
        ErrorKind.PERMANENT: PermanentError,
        ErrorKind.ACCOUNT: AccountError,
    }[error.kind]
    return cls(error.code, error.title, error.details, error.trace_id, error.http_status)
