"""Email → Templates: list, create, edit, delete, preview for real recipients, test send.

Members read; marketers write. A template's HTML is shown only inside a sandboxed
``<iframe srcdoc>`` (no scripts, no same-origin access); ``EMAIL_FRAME_CSP`` lets that frame,
which inherits the page's policy, show the inline styles and remote images emails are made of.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.csp import CSP
from django.utils.translation import gettext as _
from django.views.decorators.csp import csp_override
from django.views.decorators.http import require_POST, require_safe

from campaigns import bindings
from campaigns.policy import for_people
from campaigns.services import SendRefused
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from subscribers.errors import InvalidInput
from subscribers.models import Subscriber

from . import services, tracking
from .forms import TemplateForm, TestSendForm
from .models import EmailTemplate, MailboxMessage

PREVIEW_RECIPIENTS = 3
MAILBOX_PAGE = 50
EMAIL_FRAME_CSP = {
    **settings.SECURE_CSP,
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:", "https:"],
}


def _template(request: HttpRequest, public_id: uuid.UUID) -> EmailTemplate:
    found = EmailTemplate.objects.for_project(request.project).filter(public_id=public_id).first()
    if found is None:
        raise Http404(_("No such email template in this project."))
    return found


@project_view(section="email")
@require_safe
def templates(request: HttpRequest) -> HttpResponse:
    rows = EmailTemplate.objects.for_project(request.project).order_by("name")
    return render(request, "mail/templates.html", {"templates": rows, "tab": "templates"})


def _edit(request: HttpRequest, template: EmailTemplate | None) -> HttpResponse:
    form = TemplateForm(request.POST or None, instance=template)
    if request.method == "POST" and form.is_valid():
        try:
            saved = services.save_template(
                project=request.project, template=template, fields=form.cleaned_data
            )
        except InvalidInput as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, _("Template “%(name)s” saved.") % {"name": saved.name})
            return redirect("mail:template_preview", request.project.slug, saved.public_id)
    status = 422 if request.method == "POST" else 200
    return render(request, "mail/template_form.html", {"form": form, "template": template}, status=status)


@project_view(section="email")
def template_new(request: HttpRequest) -> HttpResponse:
    return _edit(request, None)


@project_view(section="email")
def template_edit(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    return _edit(request, _template(request, public_id))


@project_view(section="email")
@require_POST
def template_delete(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    template = _template(request, public_id)
    template.delete()  # sent messages keep their rendered content
    messages.success(request, _("Template “%(name)s” deleted.") % {"name": template.name})
    return redirect("mail:templates", request.project.slug)


def _previews(request: HttpRequest, template: EmailTemplate) -> list[dict]:
    """The template rendered for the newest subscribers with an address (what each would get)."""
    project = request.project
    recipients = list(
        Subscriber.objects.for_project(project)
        .exclude(email="")
        .order_by("-created_at", "-id")
        .only("id", "public_id", "name", "email")[:PREVIEW_RECIPIENTS]
    )
    contexts = bindings.contexts_for(project, [s.pk for s in recipients])
    previews = []
    for subscriber in recipients:
        context = {**contexts.get(subscriber.pk, {}), "unsubscribe_url": services.PREVIEW_UNSUBSCRIBE_URL}
        try:
            rendered, error = services.render_email(template, context), ""
        except SendRefused as exc:
            rendered, error = {}, for_people(str(exc))
        previews.append({"subscriber": subscriber, "email": rendered, "error": error})
    return previews


def _preview_page(request: HttpRequest, template: EmailTemplate, form: TestSendForm, status: int = 200):
    context = {"template": template, "previews": _previews(request, template), "test_form": form}
    return render(request, "mail/template_preview.html", context, status=status)


@project_view(section="email")
@require_safe
@csp_override(EMAIL_FRAME_CSP)
def template_preview(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    return _preview_page(request, _template(request, public_id), TestSendForm())


@project_view(section="email")
@require_POST
@csp_override(EMAIL_FRAME_CSP)
def template_test(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """A test send: to a subscriber through ``send_email`` (consent rules apply), or to a typed
    address at once. A refusal or a provider's error is shown on the page, never a 500."""
    template = _template(request, public_id)
    form = TestSendForm(request.POST)
    if not form.is_valid():
        return _preview_page(request, template, form, status=422)
    project = request.project
    if form.cleaned_data["to"] == TestSendForm.SUBSCRIBER:
        address = form.cleaned_data["subscriber"].strip()
        subscriber = Subscriber.objects.for_project(project).filter(email__iexact=address).first()
        if subscriber is None:
            form.add_error(
                "subscriber",
                _("No subscriber of %(project)s has the address %(address)s.")
                % {"project": project.name, "address": address},
            )
            return _preview_page(request, template, form, status=422)
        try:
            services.send_email(
                project=project, subscriber=subscriber, template=template, actor=Actor(user=request.user)
            )
        except SendRefused as exc:
            form.add_error("subscriber", _("Not sent: %(reason)s") % {"reason": for_people(str(exc))})
            return _preview_page(request, template, form, status=422)
        messages.success(
            request, _("Queued for %(address)s; see Messages for its status.") % {"address": subscriber.email}
        )
    else:
        address = form.cleaned_data["address"]
        subscriber = Subscriber.objects.for_project(project).exclude(email="").order_by("-created_at").first()
        context = bindings.context_of(project, subscriber) if subscriber else None
        try:
            delivery = services.send_test(
                project=project, template=template, to=address, context=context or bindings.EMPTY_CONTEXT
            )
        except SendRefused as exc:
            form.add_error("address", _("Not sent: %(reason)s") % {"reason": for_people(str(exc))})
            return _preview_page(request, template, form, status=422)
        if not delivery.ok:
            form.add_error("address", _("Not sent: %(reason)s") % {"reason": delivery.error})
            return _preview_page(request, template, form, status=422)
        messages.success(request, _("Test email sent to %(address)s.") % {"address": address})
    return redirect("mail:template_preview", project.slug, template.public_id)


@project_view(section="email")
@require_safe
def mailbox(request: HttpRequest) -> HttpResponse:
    rows = (
        MailboxMessage.objects.for_project(request.project)
        .order_by("-created_at", "-id")
        .only("public_id", "to", "subject", "created_at", "test", "from_email")
    )
    page = Paginator(rows, MAILBOX_PAGE).get_page(request.GET.get("page"))
    return render(request, "mail/mailbox.html", {"page": page, "tab": "mailbox"})


@project_view(section="email")
@require_safe
@csp_override(EMAIL_FRAME_CSP)
def mailbox_detail(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    found = MailboxMessage.objects.for_project(request.project).filter(public_id=public_id).first()
    if found is None:
        raise Http404(_("No such email in this project's mailbox."))
    html = tracking.without_open_pixel(found.html)
    return render(request, "mail/mailbox_detail.html", {"mail": found, "html": html, "tab": "mailbox"})
