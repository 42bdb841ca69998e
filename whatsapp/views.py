"""Settings → WhatsApp: connect a number, see its webhook, test it, sync templates."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from controlpanel.views import public_base_url

from . import automatic_texts, services
from .errors import GraphError
from .forms import AutomaticTextsForm, ConnectionForm
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
        messages.success(request, _("WhatsApp connection saved."))
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
        messages.error(
            request,
            _("Meta answered: %(explanation)s (%(detail)s)")
            % {"explanation": exc.explanation, "detail": exc.describe()},
        )
    else:
        name = info.get("verified_name") or info.get("display_phone_number") or account.phone_number_id
        quality = info.get("quality_rating") or _("unknown")
        tier = info.get("messaging_limit_tier") or _("unknown")
        messages.success(
            request,
            _("Connected: %(name)s. Quality %(quality)s, messaging tier %(tier)s.")
            % {"name": name, "quality": quality, "tier": tier},
        )
    return redirect("whatsapp:connection", request.project.slug)


@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
def connection_resume(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    if request.method == "POST" and account is not None:
        services.resume_sending(account=account, actor=Actor(user=request.user))
        messages.success(request, _("Sending resumed."))
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
                    request,
                    _("Template sync of %(account)s failed: %(explanation)s (%(detail)s)")
                    % {"account": account, "explanation": exc.explanation, "detail": exc.describe()},
                )
            else:
                messages.success(
                    request,
                    _("Templates of %(account)s synced: %(summary)s.")
                    % {"account": account, "summary": result.summary()},
                )
    return redirect("whatsapp:templates", request.project.slug)


def language_name(code: str) -> str:
    """A language code's name in the panel's language ("fr" -> "Französisch"), else the code."""
    from babel import Locale, UnknownLocaleError

    try:
        name = Locale.parse(code).get_display_name(Locale.parse(get_language() or "en", sep="-"))
    except (UnknownLocaleError, ValueError, TypeError):
        return code
    return name[:1].upper() + name[1:] if name else code


@project_view(section="settings", read=Role.VIEWER, write=Role.ADMIN)
def automatic_replies(request: HttpRequest) -> HttpResponse:
    """The automatic WhatsApp texts per language: members read them, admins change them."""
    invalid: AutomaticTextsForm | None = None
    adding = request.POST.get("action") == "add"
    if request.method == "POST":
        actor = Actor(user=request.user)
        if request.POST.get("action") == "reset":
            try:
                automatic_texts.reset_language(
                    project=request.project, language=request.POST.get("language", ""), actor=actor
                )
            except ValueError:
                pass
            else:
                messages.success(request, _("Automatic replies reset."))
            return redirect("whatsapp:automatic_replies", request.project.slug)
        form = AutomaticTextsForm(request.POST, adding=adding)
        if form.is_valid():
            automatic_texts.save_texts(
                project=request.project,
                language=form.cleaned_data["language"],
                texts=form.texts(),
                actor=actor,
            )
            messages.success(request, _("Automatic replies saved."))
            return redirect("whatsapp:automatic_replies", request.project.slug)
        invalid = form
    languages = []
    for entry in automatic_texts.languages_of(request.project):
        if invalid is not None and not adding and invalid.data.get("language") == entry.language:
            form = invalid
        else:
            form = AutomaticTextsForm(initial={"language": entry.language, **entry.texts})
        languages.append({"entry": entry, "form": form, "name": language_name(entry.language)})
    add_form = invalid if invalid is not None and adding else AutomaticTextsForm(adding=True)
    context = {
        "languages": languages,
        "add_form": add_form,
        "max_length": automatic_texts.MAX_LENGTH,
        "tab": "automatic-replies",
    }
    return render(request, "whatsapp/automatic_replies.html", context)


urlpatterns = [
    path("settings/whatsapp/", connection, name="connection"),
    path("settings/whatsapp/test/", connection_test, name="connection_test"),
    path("settings/whatsapp/resume/", connection_resume, name="connection_resume"),
    path("settings/whatsapp/automatic-replies/", automatic_replies, name="automatic_replies"),
    path("templates/sync/", templates_sync, name="templates_sync"),
]
