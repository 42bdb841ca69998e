"""The simulated Graph API endpoints (JSON in, JSON out, bearer tokens of WhatsAppAccount rows)."""

from __future__ import annotations

import base64
import functools
import hmac
import json
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import phonenumbers
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from whatsapp.models import WhatsAppAccount

from . import callbacks, config, dbthreads, messages, services, store, templates
from .errors import ApiError, trace_id

MAX_PAGE = 1000


def _answer(data: dict[str, Any], version: str, status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status, json_dumps_params={"ensure_ascii": True})
    response["facebook-api-version"] = version
    response["x-fb-trace-id"] = (data.get("error") or {}).get("fbtrace_id") or trace_id()
    return response


def graph_view(view: Callable) -> Callable:
    """Meta's error shape for every ApiError; the webhook threads of this process are running."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, version: str, **kwargs) -> JsonResponse:
        callbacks.ensure_pump()
        latency = config.latency_seconds()
        if latency:
            time.sleep(latency)  # Meta's round trip; a sender must keep enough calls in flight
        try:
            return _answer(view(request, version=version, **kwargs), version)
        except ApiError as exc:
            return _answer(exc.body(), version, exc.http_status)

    return wrapper


def _token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.GET.get("access_token", "")


def _matches(account: WhatsAppAccount, token: str) -> bool:
    return bool(token) and hmac.compare_digest(account.access_token.encode(), token.encode())


def _unknown_object(request: HttpRequest | str, node: str, token: str) -> ApiError:
    """Meta answers 190 to a bad token before it looks at the path; a good token gets 100/33.

    ``request`` is the request or just its method (the lean send path has no request object)."""
    method = request if isinstance(request, str) else request.method
    known = any(_matches(a, token) for a in WhatsAppAccount.objects.only("access_token")[:1000])
    if not known:
        return ApiError(190, "The access token could not be decrypted or does not belong to this app.", 401)
    return ApiError(
        100,
        f"Unsupported {method.lower()} request. Object with ID '{node}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
        subcode=33,
    )


_by_number: dict[str, tuple[float, WhatsAppAccount]] = {}


def _account_of_number(phone_number_id: str) -> WhatsAppAccount | None:
    """The account of a number; reused for SIMULATOR_ACCOUNT_CACHE_SECONDS under load.

    Loading an account decrypts its token and app secret (Fernet), a large part of a send's
    CPU in a load test; ``runsimulator`` therefore keeps it a few seconds. A changed token then
    counts after that many seconds, as a rotated token does at Meta after a while.
    """
    cached = _cached(phone_number_id)
    if cached is not None:
        return cached
    ttl = config.account_cache_seconds()
    account = dbthreads.run(lambda: WhatsAppAccount.objects.filter(phone_number_id=phone_number_id).first())
    if ttl and account is not None:
        _by_number[phone_number_id] = (time.monotonic() + ttl, account)
    return account


def _cached(phone_number_id: str) -> WhatsAppAccount | None:
    hit = _by_number.get(phone_number_id) if config.account_cache_seconds() else None
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def cached_account_for_token(phone_number_id: str, token: str) -> WhatsAppAccount | None:
    """``account_for_token`` from the account cache alone: None when it would read the database
    (not cached, or another token: its error answer reads the accounts)."""
    account = _cached(phone_number_id)
    return account if account is not None and _matches(account, token) else None


def _number(request: HttpRequest, phone_number_id: str) -> WhatsAppAccount:
    return account_for_token(phone_number_id, _token(request), method=request.method or "get")


def account_for_token(phone_number_id: str, token: str, *, method: str) -> WhatsAppAccount:
    """The number's account if ``token`` is its token; else Meta's 190 (or 100/33 for no such number)."""
    account = _account_of_number(phone_number_id)
    if account is None:
        raise _unknown_object(method, phone_number_id, token)
    if not _matches(account, token):
        raise ApiError(190, "The access token could not be decrypted or does not belong to this app.", 401)
    return account


def _waba(request: HttpRequest, waba_id: str) -> list[WhatsAppAccount]:
    """Every connection of the WABA; the token must be one of theirs."""
    token = _token(request)
    accounts = list(WhatsAppAccount.objects.filter(waba_id=waba_id))
    if not accounts:
        raise _unknown_object(request, waba_id, token)
    if not any(_matches(a, token) for a in accounts):
        raise ApiError(190, "The access token could not be decrypted or does not belong to this app.", 401)
    services.open_waba(waba_id)
    return accounts


def _json_body(request: HttpRequest) -> Any:
    if request.content_type == "application/x-www-form-urlencoded":
        data: dict[str, Any] = request.POST.dict()
        for key in ("components", "template", "text", "interactive"):
            if isinstance(data.get(key), str) and data[key][:1] in "[{":
                try:
                    data[key] = json.loads(data[key])
                except ValueError:
                    raise ApiError(100, f"Param {key} is not valid JSON.") from None
        return data
    try:
        return json.loads(request.body or b"{}")
    except ValueError:
        raise ApiError(100, "The request body could not be parsed as JSON.") from None


@graph_view
def send_messages(request: HttpRequest, version: str, phone_number_id: str) -> dict:
    if request.method != "POST":
        raise ApiError(100, f"Unsupported {request.method.lower()} request.")
    account = _number(request, phone_number_id)
    injected_fault(account)
    return messages.send(
        account=account, payload=_json_body(request), callback_base=services.callback_base(request)
    )


def injected_fault(account: WhatsAppAccount) -> None:
    """SIMULATOR_SERVER_ERROR_RATE / SIMULATOR_THROTTLE_ERROR_RATE: refuse a send, accept nothing."""
    server, throttle = config.server_error_rate(), config.throttle_error_rate()
    if not (server or throttle):
        return
    draw = random.random()  # noqa: S311 - a simulation
    if draw < server:
        store.record_refusal(account.phone_number_id, 2, 500, time.time())
        raise ApiError(2, "Service temporarily unavailable", 500)
    if draw < server + throttle:
        store.record_refusal(account.phone_number_id, 130429, 429, time.time())
        raise ApiError(130429, http_status=429)


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _seq(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = text.partition(":")
        if kind != "seq":
            raise ValueError(cursor)
        return int(number)
    except ValueError:
        raise ApiError(100, f"Invalid cursor {cursor!r}.") from None


def _values(request: HttpRequest, name: str, upper: bool = True) -> list[str]:
    raw = request.GET.get(name, "")
    values = [v.strip() for v in raw.split(",") if v.strip()]
    return [v.upper() for v in values] if upper else values


@graph_view
def message_templates(request: HttpRequest, version: str, waba_id: str) -> dict:
    accounts = _waba(request, waba_id)
    if request.method == "POST":
        return templates.create(
            waba_id=waba_id,
            payload=_json_body(request),
            accounts=accounts,
            callback_base=services.callback_base(request),
        )
    if request.method == "DELETE":
        name = request.GET.get("name", "")
        if not name:
            raise ApiError(100, "The parameter name is required.")
        if not store.delete_templates(waba_id, name, request.GET.get("hsm_id", "")):
            raise ApiError(100, f"Message template {name!r} was not found.", subcode=2593002)
        return {"success": True}
    if request.method != "GET":
        raise ApiError(100, f"Unsupported {request.method.lower()} request.")
    try:
        limit = min(MAX_PAGE, max(1, int(request.GET.get("limit", "25"))))
    except ValueError:
        raise ApiError(100, "Param limit must be a number.") from None
    after = _seq(request.GET["after"]) if request.GET.get("after") else None
    before = _seq(request.GET["before"]) if request.GET.get("before") else None
    filters = {
        "status": _values(request, "status"),
        "category": _values(request, "category"),
        "language": _values(request, "language", upper=False),
        "quality": _values(request, "quality_score"),
    }
    either = request.GET.get("name_or_content", "")
    page, more_after, more_before = store.list_templates(
        waba_id,
        filters=filters,
        name_contains=request.GET.get("name", "") or either,
        content=request.GET.get("content", ""),
        after=after,
        before=before,
        limit=limit,
    )
    fields = set(_values(request, "fields", upper=False)) or None
    result: dict[str, Any] = {"data": [templates.as_meta(t, fields) for t in page], "paging": {}}
    if page:
        first, last = store_seq(page[0]), store_seq(page[-1])
        result["paging"]["cursors"] = {"before": _cursor(first), "after": _cursor(last)}
        kept = [(k, v) for k, v in request.GET.items() if k not in ("after", "before")]
        base = request.build_absolute_uri(request.path)
        if more_after:
            result["paging"]["next"] = f"{base}?{urlencode([*kept, ('after', _cursor(last))])}"
        if more_before:
            result["paging"]["previous"] = f"{base}?{urlencode([*kept, ('before', _cursor(first))])}"
    if request.GET.get("summary"):
        total, names = store.count_templates(waba_id)
        wanted = set(_values(request, "summary", upper=False))
        summary = {
            "total_count": total,
            "message_template_count": names,
            "message_template_limit": templates.TEMPLATE_LIMIT,
            "are_translations_complete": True,
        }
        result["summary"] = {k: v for k, v in summary.items() if k in wanted} or summary
    return result


def store_seq(template: dict) -> int:
    return int(template["seq"])


def _phone_info(account: WhatsAppAccount) -> dict[str, Any]:
    try:
        number = phonenumbers.parse("+" + account.display_phone_number.lstrip("+"))
        display = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        display = account.display_phone_number
    return {
        "verified_name": account.verified_name or account.project.name,
        "code_verification_status": "VERIFIED",
        "display_phone_number": display,
        "quality_rating": "GREEN",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "HIGH" if account.throughput_mps >= 1000 else "STANDARD"},
        "messaging_limit_tier": "TIER_1K",
        "whatsapp_business_manager_messaging_limit": "TIER_2K",
        "name_status": "APPROVED",
        "is_official_business_account": False,
        "id": account.phone_number_id,
    }


@graph_view
def node(request: HttpRequest, version: str, node_id: str) -> dict:
    """GET /<phone-number-id> (phone number info) or GET /<template-id>."""
    if request.method != "GET":
        raise ApiError(100, f"Unsupported {request.method.lower()} request.")
    fields = set(_values(request, "fields", upper=False))
    account = WhatsAppAccount.objects.filter(phone_number_id=node_id).select_related("project").first()
    if account is not None:
        account = _number(request, node_id)
        info = _phone_info(account)
        return {k: v for k, v in info.items() if not fields or k in fields or k == "id"}
    template = store.get_template(node_id)
    if template is None:
        raise _unknown_object(request, node_id, _token(request))
    _waba(request, template["waba_id"])
    return templates.as_meta(template, fields or None)


@csrf_exempt
def unknown(request: HttpRequest, path: str = "") -> JsonResponse:
    error = ApiError(100, f"Unknown path components: /{path}", title="Unknown path components")
    return _answer(error.body(), "", 400)
