"""What the simulator accepted, by recipient: anyone can prove "no duplicates" after a load test.

``GET /simulator/sent.json?phone_number_id=<id>`` answers ``{"accepted": N, "recipients":
{"<wa_id>": count, ...}}`` for the number's access token (``Authorization: Bearer``, as the Graph
API) or for a logged-in user who may see the number's phone pages. ``/simulator/sent/`` shows the
same in the panel, with the sends the simulator refused (throughput, injected faults).
"""

from __future__ import annotations

import hmac
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from whatsapp.models import WhatsAppAccount

from . import config, services, store
from .errors import ApiError
from .views import in_panel_layout

DUPLICATES_SHOWN = 50


def _token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


def _allowed(request: HttpRequest, account: WhatsAppAccount) -> bool:
    token = _token(request)
    if token:
        return hmac.compare_digest(account.access_token.encode(), token.encode())
    user = getattr(request, "user", None)  # the standalone simulator runs without sessions
    if user is None or not user.is_authenticated:
        return False
    return services.visible_accounts(user).filter(pk=account.pk).exists()


def _error(code: int, details: str, status: int) -> JsonResponse:
    return JsonResponse(ApiError(code, details, status).body(), status=status)


@require_GET
def sent_json(request: HttpRequest) -> JsonResponse:
    number = request.GET.get("phone_number_id", "").strip()
    if not number:
        return _error(100, "The parameter phone_number_id is required.", 400)
    account = WhatsAppAccount.objects.filter(phone_number_id=number).first()
    # An unknown number and a wrong token answer alike: the ledger tells nobody which numbers exist.
    if account is None or not _allowed(request, account):
        return _error(190, "The access token does not belong to this phone number.", 401)
    accepted, recipients = store.ledger(number)
    return JsonResponse({"accepted": accepted, "recipients": recipients})


def summary(account: WhatsAppAccount) -> dict[str, Any]:
    accepted, recipients = store.ledger(account.phone_number_id)
    twice = sorted(((n, phone) for phone, n in recipients.items() if n > 1), reverse=True)
    return {
        "account": account,
        "accepted": accepted,
        "recipients": len(recipients),
        "more_than_once": len(twice),
        "duplicates": [{"phone": phone, "count": n} for n, phone in twice[:DUPLICATES_SHOWN]],
        "refusals": store.refusals(account.phone_number_id),
    }


@in_panel_layout
def sent_page(request: HttpRequest) -> HttpResponse:
    accounts = list(services.visible_accounts(request.user))
    context = {"ledgers": [summary(a) for a in accounts], "knobs": config.summary()}
    return render(request, "whatsapp/simulator/sent.html", context)
