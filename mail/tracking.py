"""Opens, clicks and unsubscribes of emails we sent: signed URLs and the headers of RFC 8058.

Every URL carries a token made with ``django.core.signing`` (SECRET_KEY, one salt per purpose, so
an open token is no click or unsubscribe token): the message's public id, and for a click the
target URL. Nobody can forge one, edit the target of a click (no open redirect) or unsubscribe
someone else. Tokens do not expire: an email is read, and unsubscribed from, months later.
"""

from __future__ import annotations

import base64
import hashlib
import html as htmllib
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from django.core import signing
from django.urls import reverse
from django.utils.html import escape

from campaigns.models import Message
from controlpanel.services import Actor
from subscribers.models import ConsentChannel, ConsentSource, ConsentState
from subscribers.services import change_consent
from whatsapp.management.commands.connect_whatsapp import public_url

OPEN, CLICK, UNSUBSCRIBE = "open", "click", "unsubscribe"
# Longer targets stay as they are (untracked): the click event's url attribute has a limit, and
# no mail client handles kilobyte-long links well anyway.
MAX_TRACKED_URL = 2048
# An <a> or <area> start tag's href, quoted or not. <link href> (stylesheets) is not a click.
_HREF = re.compile(
    r"""(?P<head><(?:a|area)\b[^>]*?\bhref\s*=\s*)(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s"'>]+))""",
    re.IGNORECASE,
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_TRACKED_SCHEMES = ("http://", "https://")
_URL_BLANKS = re.compile(r"[\t\n\r]")


def _salt(purpose: str) -> str:
    return f"mail.tracking.{purpose}"


def _short_id(public_id: uuid.UUID) -> str:
    # 22 characters instead of 36: the pixel and every link of a long email carry one.
    return base64.urlsafe_b64encode(public_id.bytes).rstrip(b"=").decode()


def _long_id(short: Any) -> uuid.UUID | None:
    if not isinstance(short, str) or len(short) != 22:
        return None
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(short + "=="))
    except ValueError:
        return None


def make_token(purpose: str, message: Message, url: str = "") -> str:
    payload: Any = [_short_id(message.public_id), url] if purpose == CLICK else _short_id(message.public_id)
    # Signer, not signing.dumps: no timestamp, so the same message always gets the same URL (the
    # unsubscribe link Liquid rendered when the row was written is recognised at send time).
    return signing.Signer(salt=_salt(purpose)).sign_object(payload, compress=True)


def read_token(purpose: str, token: str) -> tuple[uuid.UUID, str] | None:
    """The message's public id (and the click's URL) a valid token of ``purpose`` carries, or None
    for anything forged, edited, truncated or made for another purpose."""
    try:
        payload = signing.Signer(salt=_salt(purpose)).unsign_object(token)
    except (signing.BadSignature, ValueError):
        return None
    url = ""
    if purpose == CLICK:
        if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[1], str)):
            return None
        payload, url = payload
        if not url.lower().startswith(_TRACKED_SCHEMES):
            return None
    public_id = _long_id(payload)
    return (public_id, url) if public_id else None


def click_dedup(url: str) -> str:
    """One EmailClicked per message and URL (pixel-tracked or ESP-tracked): hashed, because a
    dedup key is short and URLs are not."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def base_url() -> str:
    """Where recipients reach this server: PUBLIC_BASE_URL, else what ``manage.py serve`` binds to.

    Tracking is added in a worker, with no request to take the host from: the same rule as the
    simulator's webhook base (``connect_whatsapp.public_url``).
    """
    return public_url("", None)[0]


def _absolute(name: str, token: str) -> str:
    return base_url() + reverse(f"mail_tracking:{name}", args=[token])


def open_url(message: Message) -> str:
    return _absolute("open", make_token(OPEN, message))


def click_url(message: Message, url: str) -> str:
    return _absolute("click", make_token(CLICK, message, url))


def unsubscribe_url(message: Message) -> str:
    """The signed one-click unsubscribe URL of ``message`` (absolute, PUBLIC_BASE_URL)."""
    return _absolute("unsubscribe", make_token(UNSUBSCRIBE, message))


def instrument(html: str, message: Message) -> str:
    """``html`` with an open pixel and every http(s) link through a signed click redirect that
    records ``EmailClicked``; ``{{ unsubscribe_url }}`` placeholders already rendered by Liquid.

    Not rewritten: mailto:, tel:, #anchors, the unsubscribe link itself (a click on it is no
    engagement, and RFC 8058 clients compare it with the header). A marketing email whose
    template forgot the unsubscribe link gets one in a footer: every marketing email carries it.
    """
    if not html:
        return html
    unsubscribe = unsubscribe_url(message)

    def rewrite(match: re.Match[str]) -> str:
        raw = match.group("dq") if match.group("dq") is not None else match.group("sq") or match.group("bare")
        # As browsers read an href: entities decoded, tabs and line breaks dropped (a header
        # value, the redirect's Location, may not contain them).
        target = _URL_BLANKS.sub("", htmllib.unescape(raw)).strip()
        if (
            not target.lower().startswith(_TRACKED_SCHEMES)
            or target == unsubscribe
            or len(target) > MAX_TRACKED_URL
        ):
            return match.group(0)
        return f'{match.group("head")}"{escape(click_url(message, target))}"'

    html = _HREF.sub(rewrite, html)
    extra = ""
    if message.marketing and unsubscribe not in htmllib.unescape(html):
        extra += (
            '<p style="font-size:12px;color:#6b7280;text-align:center">'
            f'<a href="{escape(unsubscribe)}">Unsubscribe</a></p>'
        )
    extra += (
        f'<img src="{escape(open_url(message))}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0">'
    )
    ends = list(_BODY_END.finditer(html))
    if not ends:
        return html + extra
    at = ends[-1].start()
    return html[:at] + extra + html[at:]


def without_open_pixel(html: str) -> str:
    """``html`` as the in-panel mailbox shows it: without the open pixel, so that a marketer
    reading the email in the panel is not counted as the recipient opening it."""
    prefix = reverse("mail_tracking:open", args=["TOKEN"]).split("TOKEN")[0]
    return re.sub(rf'<img src="[^"]*{re.escape(prefix)}[^"]*"[^>]*>', "", html)


def opt_out(message: Message, *, source: ConsentSource, actor: Actor, at: datetime, what: str) -> None:
    """Opt the recipient of ``message`` out of email (the ledger), with evidence naming ``what``
    happened, to which email and when. Unchanged when they are already out."""
    subject = str((message.content or {}).get("subject", ""))[:120]
    sent = f"sent {message.sent_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if message.sent_at else "not sent"
    change_consent(
        subscriber=message.subscriber,
        channel=ConsentChannel.EMAIL,
        state=ConsentState.OPTED_OUT,
        source=source,
        evidence=(
            f"{what}, for the email “{subject}” (message {message.public_id}, {sent}), "
            f"at {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC."
        ),
        actor=actor,
        at=at,
    )


def headers(message: Message) -> dict[str, str]:
    """``List-Unsubscribe`` and ``List-Unsubscribe-Post`` for a marketing email; {} otherwise."""
    if not message.marketing:
        return {}
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(message)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
