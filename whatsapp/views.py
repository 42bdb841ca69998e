"""Settings → WhatsApp: connect a number, see its webhook, test it, sync templates."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse

from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from controlpanel.views import public_base_url

from . import services
from .errors import GraphError
from .forms import ConnectionForm
from .models import PhoneNumberEvent, WebhookDelivery, WhatsAppAccount

# The newest malformed webhook bodies shown on the settings page (the count covers all of them).
MALFORMED_SHOWN = 5


def _account(request: HttpRequest) -> WhatsAppAccount | None:
    return WhatsAppAccount.objects.for_project(request.project).order_by("created_at").first()


@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
def connection(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    # The form validates on its own copy: ModelForm writes cleaned values into its instance,
    # and the service must see what changed.
    form = ConnectionForm(request.POST or None, instance=_account(request))
    if request.method == "POST" and form.is_valid():
        fields = {name: form.cleaned_data[name] for name in form.Meta.fields}
        fields.update(
            access_token=form.cleaned_data["access_token"],
            app_secret=form.cleaned_data["app_secret"],
            opt_out_keywords=form.cleaned_data["opt_out_keywords"],
            opt_in_keywords=form.cleaned_data["opt_in_keywords"],
        )
        services.save_connection(
            project=request.project, account=account, fields=fields, actor=Actor(user=request.user)
        )
        messages.success(request, "WhatsApp connection saved.")
        return redirect("whatsapp:connection", request.project.slug)
    context = {"form": form, "account": account, "tab": "whatsapp"}
    if account is not None:
        deliveries = WebhookDelivery.objects.for_project(request.project).filter(account=account)
        malformed = deliveries.filter(malformed=True)
        context.update(
            webhook_url=public_base_url(request) + reverse("whatsapp_webhook", args=[account.public_id]),
            last_delivery=deliveries.order_by("-received_at").first(),
            notices=PhoneNumberEvent.objects.filter(account=account)[:10],
            uses_simulator="/simulator/" in account.base_url,
            malformed_count=malformed.count(),
            malformed=malformed.order_by("-received_at")[:MALFORMED_SHOWN],
        )
    context["simulator_available"] = settings.SIMULATOR_ENABLED
    return render(request, "whatsapp/connection.html", context)


@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
def connection_test(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    if request.method != "POST" or account is None:
        return redirect("whatsapp:connection", request.project.slug)
    try:
        info = services.check_connection(account)
    except GraphError as exc:
        messages.error(request, f"Meta answered: {exc.explanation} ({exc.describe()})")
    else:
        name = info.get("verified_name") or info.get("display_phone_number") or account.phone_number_id
        quality = info.get("quality_rating") or "unknown"
        tier = info.get("messaging_limit_tier") or "unknown"
        messages.success(request, f"Connected: {name}. Quality {quality}, messaging tier {tier}.")
    return redirect("whatsapp:connection", request.project.slug)


@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
def connection_resume(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    if request.method == "POST" and account is not None:
        services.resume_sending(account=account, actor=Actor(user=request.user))
        messages.success(request, "Sending resumed.")
    return redirect("whatsapp:connection", request.project.slug)


# An action URL, not a page: even its GET (a redirect) needs the role of the action.
@project_view(section="templates", read=Role.MARKETER, write=Role.MARKETER)
def templates_sync(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        for account in WhatsAppAccount.objects.for_project(request.project).order_by("created_at"):
            try:
                result = services.sync_templates(account=account)
            except GraphError as exc:
                messages.error(
                    request, f"Template sync of {account} failed: {exc.explanation} ({exc.describe()})"
                )
            else:
                messages.success(request, f"Templates of {account} synced: {result.summary()}.")
    return redirect("whatsapp:templates", request.project.slug)


urlpatterns = [
    path("settings/whatsapp/", connection, name="connection"),
    path("settings/whatsapp/test/", connection_test, name="connection_test"),
    path("settings/whatsapp/resume/", connection_resume, name="connection_resume"),
    path("templates/sync/", templates_sync, name="templates_sync"),
]
