"""Email → Settings: how the project sends email (admins), and a test email sent at once."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from subscribers.errors import InvalidInput

from . import configuration, webhooks
from .forms import SettingsForm, SettingsTestForm
from .models import EmailSettings
from .transport import settings_for


def _page(
    request: HttpRequest,
    form: SettingsForm | None = None,
    test_form: SettingsTestForm | None = None,
    status=200,
) -> HttpResponse:
    email_settings = settings_for(request.project)
    context = {
        "form": form or SettingsForm(instance=email_settings),
        "test_form": test_form or SettingsTestForm(),
        "email_settings": email_settings,
        "has_password": bool(email_settings.smtp_password),
        "has_provider_settings": bool(email_settings.provider_settings),
        "tab": "email",
    }
    if email_settings.pk:
        # The provider webhooks' URLs carry a secret made on first view: only once settings exist.
        context.update(webhooks.webhook_context(request, email_settings))
    return render(request, "mail/settings.html", context, status=status)


@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
def email_settings(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request)
    # The form validates on its own copy: the service must see what changed.
    stored = EmailSettings.objects.for_project(request.project).first()
    form = SettingsForm(request.POST, instance=stored)
    if form.is_valid():
        try:
            configuration.save_settings(
                project=request.project, fields=form.settings_fields(), actor=Actor(user=request.user)
            )
        except InvalidInput as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, _("Email settings saved."))
            return redirect("mail:settings", request.project.slug)
    return _page(request, form=form, status=422)


@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
@require_POST
def settings_test(request: HttpRequest) -> HttpResponse:
    form = SettingsTestForm(request.POST)
    if not form.is_valid():
        return _page(request, test_form=form, status=422)
    to = form.cleaned_data["to"]
    delivery = configuration.send_settings_test(
        project=request.project, to=to, actor=Actor(user=request.user)
    )
    if delivery.ok:
        messages.success(request, _("Test email sent to %(address)s.") % {"address": to})
    else:
        messages.error(request, _("The test email was not sent: %(reason)s") % {"reason": delivery.error})
    return redirect("mail:settings", request.project.slug)
