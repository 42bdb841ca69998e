"""Push pages: templates (list, edit with a phone preview, test send) and Settings → Push.

Marketers write templates and send tests, viewers read; the settings page is for admins. Every
send goes through ``services.send_push`` (its refusals are shown as they are); the settings go
through ``services.save_settings`` (audited). The service-account key is never rendered back.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_POST, require_safe

from campaigns import bindings
from campaigns.policy import for_people
from campaigns.services import SendRefused
from controlpanel.models import Project, Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from subscribers.models import Subscriber

from . import services
from .forms import PushSettingsForm, PushTemplateForm, TestSendForm, recipient_label, recipients_with_devices
from .models import PushMode, PushSettings, PushTemplate

PREVIEW_RECIPIENTS = 3


def _template(request: HttpRequest, public_id) -> PushTemplate:
    # One answer for "missing" and "another project's".
    template = PushTemplate.objects.for_project(request.project).filter(public_id=public_id).first()
    if template is None:
        raise Http404(gettext("No such push template."))
    return template


def _previews(project: Project, template: PushTemplate) -> list[dict]:
    """The template as three real recipients would see it (those with a device first)."""
    people = list(recipients_with_devices(project)[:PREVIEW_RECIPIENTS])
    if len(people) < PREVIEW_RECIPIENTS:
        more = Subscriber.objects.for_project(project).exclude(pk__in=[p.pk for p in people]).order_by("id")
        people += list(more[: PREVIEW_RECIPIENTS - len(people)])
    contexts = bindings.contexts_for(project, [p.pk for p in people])
    previews = []
    for person in people:
        preview = {"recipient": recipient_label(person)}
        try:
            preview["content"] = services.render_push(template, contexts.get(person.pk) or {})
        except SendRefused as exc:
            preview["refused"] = for_people(str(exc))
        previews.append(preview)
    return previews


@project_view(section="push")
@require_safe
def templates(request: HttpRequest) -> HttpResponse:
    push_settings = PushSettings.objects.for_project(request.project).first()
    return render(
        request,
        "push/list.html",
        {
            "templates": PushTemplate.objects.for_project(request.project),
            "mode": push_settings.get_mode_display() if push_settings else PushMode.SIMULATOR.label,
        },
    )


def _edit(request: HttpRequest, template: PushTemplate | None) -> HttpResponse:
    form = PushTemplateForm(request.POST or None, instance=template, project=request.project)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, gettext("Push template “%(name)s” saved.") % {"name": saved.name})
        return redirect("push:edit", request.project.slug, saved.public_id)
    context = {"form": form, "template": template}
    if template is not None:
        context["previews"] = _previews(request.project, template)
        context["test_form"] = TestSendForm(project=request.project)
    return render(request, "push/edit.html", context)


@project_view(section="push")
def new(request: HttpRequest) -> HttpResponse:
    return _edit(request, None)


@project_view(section="push")
def edit(request: HttpRequest, public_id) -> HttpResponse:
    return _edit(request, _template(request, public_id))


# The editor's own preview (a POST of the form as typed): for those who may edit, as the editor is.
@project_view(section="push", read=Role.MARKETER)
@require_POST
def preview(request: HttpRequest) -> HttpResponse:
    """The phone previews of the form as typed (htmx), without saving it."""
    form = PushTemplateForm(request.POST, project=request.project)
    form.is_valid()
    context = {"form": form}
    if not any(form.has_error(field) for field in (*services.FIELDS, "data_text")):
        unsaved = PushTemplate(
            project=request.project,
            title=form.cleaned_data.get("title") or "",
            body=form.cleaned_data.get("body") or "",
            image_url=form.cleaned_data.get("image_url") or "",
            link=form.cleaned_data.get("link") or "",
            data=form.cleaned_data.get("data") or {},
        )
        context["previews"] = _previews(request.project, unsaved)
    return render(request, "push/edit.html#push-preview", context)


@project_view(section="push")
@require_POST
def delete(request: HttpRequest, public_id) -> HttpResponse:
    template = _template(request, public_id)
    template.delete()  # sent messages keep their content and template name
    messages.success(request, gettext("Push template “%(name)s” deleted.") % {"name": template.name})
    return redirect("push:templates", request.project.slug)


def _send_test(request: HttpRequest, template: PushTemplate) -> None:
    form = TestSendForm(request.POST, project=request.project)
    if not form.is_valid():
        messages.error(request, gettext("Choose a subscriber with an active push device."))
        return
    subscriber = form.cleaned_data["subscriber"]
    try:
        services.send_push(
            project=request.project, subscriber=subscriber, template=template, actor=Actor(user=request.user)
        )
    except SendRefused as exc:
        messages.error(request, gettext("Not sent: %(reason)s") % {"reason": for_people(str(exc))})
    else:
        messages.success(
            request,
            gettext("Test push queued for %(recipient)s.") % {"recipient": recipient_label(subscriber)},
        )


@project_view(section="push")
@require_POST
def test_send(request: HttpRequest, public_id) -> HttpResponse:
    template = _template(request, public_id)
    _send_test(request, template)
    return redirect("push:edit", request.project.slug, template.public_id)


@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
def settings_page(request: HttpRequest) -> HttpResponse:
    push_settings = PushSettings.objects.for_project(request.project).first()
    initial = {"mode": push_settings.mode if push_settings else PushMode.SIMULATOR}
    if push_settings is not None and push_settings.mode == PushMode.SIMULATOR:
        initial["fcm_project_id"] = push_settings.fcm_project_id
    form = PushSettingsForm(request.POST or None, request.FILES or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.save_settings(
                project=request.project,
                mode=form.cleaned_data["mode"],
                service_account_json=form.cleaned_data["service_account_json"],
                fcm_project_id=form.cleaned_data["fcm_project_id"].strip(),
                actor=Actor(user=request.user),
            )
        except ValueError as exc:
            form.add_error("service_account_file", str(exc))
        else:
            messages.success(request, gettext("Push settings saved."))
            return redirect("push:settings", request.project.slug)
    return render(
        request,
        "push/settings.html",
        {
            "form": form,
            "tab": "push",
            "key": services.service_account_summary(push_settings),
            "test_form": TestSendForm(project=request.project),
        },
    )


TEST_PUSH = {
    "name": "Test push",
    "title": gettext_lazy("Test push"),
    "body": gettext_lazy("Push works for {{ subscriber.name | default: 'you' }}."),
}


@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
@require_POST
def settings_test(request: HttpRequest) -> HttpResponse:
    # The title and body in the admin's language: the test push is for them.
    content = {key: str(value) for key, value in TEST_PUSH.items()}
    _send_test(request, PushTemplate(project=request.project, marketing=False, **content))
    return redirect("push:settings", request.project.slug)
