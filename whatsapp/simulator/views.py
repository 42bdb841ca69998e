"""The phone pages: simulated handsets for logged-in users (never anonymous, even when enabled)."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from controlpanel.models import Membership, Role
from controlpanel.views import LAST_PROJECT_KEY

from . import callbacks, config, handsets, services, store, templates
from . import render as chat_render
from .forms import HandsetForm, InboundForm

TEMPLATE_ACTIONS = {"approve": "APPROVED", "pause": "PAUSED", "disable": "DISABLED", "reject": "REJECTED"}


def in_panel_layout(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Phone pages sit in the panel's layout: the navigation and the time zone of a project.

    The simulator spans the user's projects, so the project is the one the user came from
    (``?project=<slug>`` on the navigation's link, remembered like the dashboard remembers it),
    else the last one they worked in, else their first. Only a membership counts; a user
    without a project sees the pages without project navigation, in the server's time zone.
    """

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        # What a handset sends is delivered to the webhook by this process's threads: start them
        # here too, not only on the first Graph API call (a fresh server's first "PROMO" waited
        # until something called the Graph API).
        callbacks.ensure_pump()
        memberships = Membership.objects.filter(user=request.user).select_related("project")
        membership = None
        for slug in (request.GET.get("project"), request.session.get(LAST_PROJECT_KEY)):
            membership = memberships.filter(project__slug=slug).first() if slug else None
            if membership is not None:
                break
        membership = membership or memberships.order_by("project__name").first()
        if membership is None:
            return view(request, *args, **kwargs)
        request.project, request.membership = membership.project, membership  # type: ignore[attr-defined]
        request.session[LAST_PROJECT_KEY] = membership.project.slug
        with timezone.override(zoneinfo.ZoneInfo(membership.project.time_zone)):
            return view(request, *args, **kwargs)

    return wrapper


def _accounts(request: HttpRequest) -> list:
    return list(services.visible_accounts(request.user))


def _account(request: HttpRequest, phone_number_id: str):
    account = next((a for a in _accounts(request) if a.phone_number_id == phone_number_id), None)
    if account is None:
        raise Http404(_("No simulated business number with this id."))
    return account


def _handset(request: HttpRequest, phone: str, accounts: list) -> dict:
    phone = handsets.digits(phone)
    if not phone or not services.can_open_handset(request.user, phone, accounts):
        raise Http404(_("No such handset."))
    return handsets.ensure(phone)


@in_panel_layout
def phone_index(request: HttpRequest) -> HttpResponse:
    accounts = _accounts(request)
    query = (request.GET.get("q") or "").strip()
    form = HandsetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        phone = form.cleaned_data["phone"]
        if store.get_handset(phone) is None:
            handsets.ensure(phone, name=form.cleaned_data["name"], created_by=request.user.pk)
        elif form.cleaned_data["name"]:
            store.rename_handset(phone, form.cleaned_data["name"])
        return redirect("simulator:handset", phone)
    context = {
        "form": form,
        "accounts": accounts,
        "query": query,
        "phones": services.visible_handsets(request.user, accounts, query=query),
        "knobs": config.summary(),
        "webhooks": services.pending_webhooks(),
        "webhook_errors": store.recent_callback_errors(),
    }
    if request.htmx and request.htmx.target == "handset-list":
        response = render(request, "whatsapp/simulator/phone.html#handset-list", context)
        # The search is in the address, so a shared or reloaded link shows the same list.
        response["HX-Push-Url"] = reverse("simulator:phone") + (
            f"?{urlencode({'q': query})}" if query else ""
        )
        return response
    return render(request, "whatsapp/simulator/phone.html", context, status=400 if form.errors else 200)


@in_panel_layout
def handset(request: HttpRequest, phone: str) -> HttpResponse:
    accounts = _accounts(request)
    device = _handset(request, phone, accounts)
    if len(accounts) == 1:
        return redirect("simulator:chat", device["phone"], accounts[0].phone_number_id)
    last = {m["phone_number_id"]: m for m in store.chats_of(device["phone"])}
    chats = [{"account": a, "preview": chat_render.preview(last.get(a.phone_number_id)),
              "at": last.get(a.phone_number_id, {}).get("created_at")} for a in accounts]  # fmt: skip
    chats.sort(key=lambda c: -(c["at"] or 0))
    return render(request, "whatsapp/simulator/handset.html", {"handset": device, "chats": chats})


def _chat_context(request: HttpRequest, account, device: dict, error: str = "") -> dict:
    bubbles, version = chat_render.thread(store.chat(device["phone"], account.phone_number_id))
    last = store.last_inbound(account.phone_number_id, device["phone"])
    return {
        "account": account,
        "handset": device,
        "bubbles": bubbles,
        "version": version,
        "error": error,
        "marketing_stopped": store.marketing_stopped(account.phone_number_id, device["phone"]),
        "window_open_since": chat_render._when(last) if last else None,
        "inbound_form": InboundForm(),
        "kinds": handsets.KINDS,
        "chat_url": reverse("simulator:chat", args=[device["phone"], account.phone_number_id]),
        "send_url": reverse("simulator:chat_send", args=[device["phone"], account.phone_number_id]),
    }


@in_panel_layout
def chat(request: HttpRequest, phone: str, phone_number_id: str) -> HttpResponse:
    accounts = _accounts(request)
    account = _account(request, phone_number_id)
    device = _handset(request, phone, accounts)
    services.read_on_open(
        account=account, phone=device["phone"], callback_base=services.callback_base(request)
    )
    context = _chat_context(request, account, device)
    if request.GET.get("partial") == "thread":
        if request.GET.get("v") == context["version"]:
            return HttpResponse(status=204)  # nothing new: htmx keeps what is shown
        return render(request, "whatsapp/simulator/chat.html#chat-thread", {**context, "oob": True})
    return render(request, "whatsapp/simulator/chat.html", context)


@in_panel_layout
@require_POST
def chat_send(request: HttpRequest, phone: str, phone_number_id: str) -> HttpResponse:
    """Everything the handset's user can do: type, tap a button, pick a list row, react, send media."""
    accounts = _accounts(request)
    account = _account(request, phone_number_id)
    device = _handset(request, phone, accounts)
    form = InboundForm(request.POST)
    base = services.callback_base(request)
    error = ""
    if not form.is_valid():
        error = "; ".join(str(e) for errors in form.errors.values() for e in errors)
    else:
        data = form.cleaned_data
        action = data["action"]
        if action in ("stop", "resume"):
            services.set_marketing_preference(account=account, phone=device["phone"], stop=action == "stop",
                                              callback_base=base)  # fmt: skip
        else:
            services.send_inbound(
                account=account,
                phone=device["phone"],
                kind=data["kind"] if action == "kind" else action,
                callback_base=base,
                text=data["text"],
                payload=data["payload"],
                title=data["title"],
                description=data["description"],
                context_id=data["context"],
                emoji=data["emoji"],
            )
    if request.htmx:
        context = {**_chat_context(request, account, device, error), "oob": True}
        return render(
            request, "whatsapp/simulator/chat.html#chat-thread", context, status=400 if error else 200
        )
    if error:
        flash.error(request, error)
    return redirect("simulator:chat", device["phone"], account.phone_number_id)


def _may_review(user, account) -> bool:
    if user.is_staff:
        return True
    membership = Membership.objects.filter(project_id=account.project_id, user=user).first()
    return membership is not None and membership.can(Role.MARKETER)


@in_panel_layout
def template_store(request: HttpRequest) -> HttpResponse:
    """Meta's side of templates: what the simulator holds per WABA, with review decisions to force."""
    accounts = _accounts(request)
    by_waba: dict[str, list] = {}
    for account in accounts:
        by_waba.setdefault(account.waba_id, []).append(account)
    if request.method == "POST":
        template = store.get_template(request.POST.get("template", ""))
        status = TEMPLATE_ACTIONS.get(request.POST.get("action", ""))
        waba_accounts = by_waba.get(template["waba_id"], []) if template else []
        if template is None or status is None or not waba_accounts:
            raise Http404(_("No such template."))
        if not any(_may_review(request.user, a) for a in waba_accounts):
            return HttpResponse(_("Marketers and above may change template reviews."), status=403)
        templates.set_status(template=template, status=status, accounts=waba_accounts,
                             callback_base=services.callback_base(request))  # fmt: skip
        flash.success(request, f"{template['name']} ({template['language']}) is now {status}; webhook sent.")
        return redirect("simulator:templates")
    for waba_id in by_waba:
        services.open_waba(waba_id)
    rows = store.all_wabas_templates(by_waba)
    for row in rows:
        row["accounts"] = by_waba[row["waba_id"]]
    return render(request, "whatsapp/simulator/templates.html", {"rows": rows, "actions": TEMPLATE_ACTIONS})
