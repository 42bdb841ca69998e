"""The public ends of the links in our emails: open pixel, click redirect, unsubscribe.

No login, no project in the URL: the signed token names the message, and the message names its
project and subscriber (public ids are unique across projects). A token that does not verify
names nothing: the pixel is still a pixel, a click or an unsubscribe page is a 404.
"""

from __future__ import annotations

import base64
import uuid

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_safe

from campaigns import channel_events
from campaigns.models import Channel, Message
from controlpanel.services import Actor
from subscribers.models import ConsentSource, ConsentState

from . import tracking

# The smallest transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
RECIPIENT = Actor(label="the recipient")


def _email(public_id: uuid.UUID) -> Message | None:
    # A signed public id, unique across projects: the message itself is the tenant scope here.
    return (
        Message.objects.filter(public_id=public_id, channel=Channel.EMAIL)
        .select_related("project", "subscriber")
        .first()
    )


@never_cache
@require_safe
def opened(request: HttpRequest, token: str) -> HttpResponse:
    """Always the GIF, whatever the token: an email client shows no error to the reader."""
    read = tracking.read_token(tracking.OPEN, token)
    message = _email(read[0]) if read and request.method == "GET" else None
    if message is not None:
        channel_events.record(message, channel_events.OPENED)
    response = HttpResponse(PIXEL, content_type="image/gif")
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@require_safe
def clicked(request: HttpRequest, token: str) -> HttpResponse:
    read = tracking.read_token(tracking.CLICK, token)
    if read is None:
        raise Http404("This link is not valid.")
    public_id, url = read
    message = _email(public_id) if request.method == "GET" else None
    if message is not None:
        channel_events.record(
            message, channel_events.CLICKED, attributes={"url": url}, dedup=tracking.click_dedup(url)
        )
    # Only ever the URL inside the signature: a valid token whose message was deleted still goes
    # where the email said; an edited one never got here.
    return HttpResponseRedirect(url)


def _masked(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def _unsubscribe(request: HttpRequest, message: Message, *, how: str) -> HttpResponse:
    tracking.opt_out(
        message,
        source=ConsentSource.UNSUBSCRIBE_LINK,
        actor=RECIPIENT,
        at=timezone.now(),
        what=f"Unsubscribe link used ({how})",
    )
    return _done(request, message)


def _done(request: HttpRequest, message: Message) -> HttpResponse:
    return render(
        request,
        "mail/unsubscribe_done.html",
        {"project": message.project, "address": _masked(message.subscriber.email)},
    )


@csrf_protect
def _confirmed(request: HttpRequest, message: Message) -> HttpResponse:
    return _unsubscribe(request, message, how="confirmation page")


@never_cache
@csrf_exempt  # for RFC 8058's one-click POST only; the page's own form goes through csrf_protect
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button and changes nothing: link scanners and previews fetch every link.
    POST (that button, or a mail client's one-click) writes the ledger."""
    read = tracking.read_token(tracking.UNSUBSCRIBE, token)
    message = _email(read[0]) if read else None
    if message is None:
        return render(request, "mail/unsubscribe_invalid.html", status=404)
    if request.method == "POST":
        # RFC 8058 section 3.1: a POST whose body is exactly this, sent without cookies or tokens.
        if request.POST.get("List-Unsubscribe") == "One-Click":
            return _unsubscribe(request, message, how="one-click, RFC 8058")
        return _confirmed(request, message)
    if message.subscriber.email_consent == ConsentState.OPTED_OUT:
        return _done(request, message)
    return render(
        request,
        "mail/unsubscribe.html",
        {"project": message.project, "address": _masked(message.subscriber.email), "token": token},
    )
