"""Conversations: one thread per subscriber, inbound (events) and outbound (messages) together.

One page (the list on the left, the selected thread on the right, the composer below it) with
htmx partials named like the DOM ids they replace: ``conversation-list`` (search and polling),
``conversation-more`` (next rows), ``conversation-pane`` (open a thread), ``conversation-thread``
(polling), ``conversation-older`` (earlier messages) and ``conversation-composer``. Polls send the
version they show and get 204 when nothing changed. Every link and form also works without
JavaScript: the thread has its own URL, sending redirects back to it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from subscribers.models import Subscriber
from whatsapp.models import MessageTemplate, WhatsAppAccount

from .conversations import (
    LIST_MAX,
    LIST_SIZE,
    TemplateField,
    approved_templates,
    build_components,
    conversation_page,
    new_conversation_candidates,
    service_window,
    template_fields,
    template_preview,
    thread,
)
from .services import SendRefused, send_whatsapp

PAGE = "campaigns/conversations.html"


def _target(request: HttpRequest) -> str:
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.history_restore_request:
        return ""
    return htmx.target or ""


def _subscriber(request: HttpRequest, subscriber_id: uuid.UUID) -> Subscriber:
    subscriber = Subscriber.objects.for_project(request.project).filter(public_id=subscriber_id).first()
    if subscriber is None:
        raise Http404("No such subscriber in this project.")
    return subscriber


def _int(raw: str | None, default: int, *, low: int, high: int) -> int:
    try:
        return max(low, min(int(raw or default), high))
    except ValueError:
        return default


def _partials(request: HttpRequest, context: dict, *names: str, oob: tuple[str, ...] = ()) -> HttpResponse:
    """Render partials of the page into one response; those in ``oob`` swap out of band."""
    html = "".join(
        render_to_string(f"{PAGE}#{name}", {**context, "oob": name in oob}, request=request) for name in names
    )
    response = HttpResponse(html)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


def _list_context(request: HttpRequest, selected: Subscriber | None) -> dict:
    q = request.GET.get("q", "").strip()[:200]
    after = request.GET.get("after") or None
    shown = _int(request.GET.get("shown"), LIST_SIZE, low=LIST_SIZE, high=LIST_MAX)
    # A poll keeps as many rows as the reader loaded with "load more".
    size = shown if _target(request) == "conversation-list" else LIST_SIZE
    page = conversation_page(project=request.project, q=q, after=after, size=size)
    # A poll names the conversation open in the page, which htmx may have changed since it loaded.
    selected_id = request.GET.get("selected") or (str(selected.public_id) if selected else "")
    today = timezone.localdate()
    return {
        "q": q,
        "after": after,
        "page": page,
        # On the first page of a search, people without a conversation yet: start one with them.
        "candidates": new_conversation_candidates(project=request.project, q=q) if q and not after else [],
        "selected_id": selected_id,
        "today": today,
        "list_url": reverse("campaigns:conversations", args=[request.project.slug]),
        "shown_total": min(shown + len(page.rows), LIST_MAX),
    }


def _composer_context(
    request: HttpRequest,
    subscriber: Subscriber,
    *,
    mode: str = "",
    text: str = "",
    error: str = "",
    template: MessageTemplate | None = None,
    fields: list[TemplateField] | None = None,
) -> dict:
    project = request.project
    window = service_window(subscriber)
    if not request.membership.can(Role.MARKETER):
        mode = "readonly"
    elif not WhatsAppAccount.objects.for_project(project).exists():
        mode = "no-account"
    elif mode not in ("reply", "template"):
        mode = "reply" if window.open else "template"
    context = {"mode": mode, "window": window, "text": text, "error": error, "templates": []}
    if mode == "template":
        context["templates"] = list(approved_templates(project))
        if template is not None:
            fields = fields if fields is not None else template_fields(template)
            context.update(template=template, fields=fields, preview=template_preview(template, fields))
    return {"composer": context}


def _chosen_template(request: HttpRequest, raw: str | None) -> MessageTemplate | None:
    try:
        public_id = uuid.UUID(raw or "")
    except ValueError:
        return None
    return approved_templates(request.project).filter(public_id=public_id).first()


def _thread_context(request: HttpRequest, subscriber: Subscriber, **kwargs) -> dict:
    conversation = thread(project=request.project, subscriber=subscriber, **kwargs)
    today = timezone.localdate()
    return {
        "selected": subscriber,
        "thread": conversation,
        "today": today,
        "yesterday": today - timedelta(days=1),
        "thread_url": reverse("campaigns:conversation", args=[request.project.slug, subscriber.public_id]),
        "subscriber_url": reverse("subscribers:detail", args=[request.project.slug, subscriber.public_id]),
    }


def _page(
    request: HttpRequest, subscriber: Subscriber | None, *, status: int = 200, **composer
) -> HttpResponse:
    context = _list_context(request, subscriber)
    if subscriber is not None:
        context.update(_thread_context(request, subscriber, before=request.GET.get("before") or None))
        context["paged_back"] = bool(request.GET.get("before"))
        context.update(
            _composer_context(
                request,
                subscriber,
                mode=composer.pop("mode", request.GET.get("compose", "")),
                template=composer.pop("template", _chosen_template(request, request.GET.get("template"))),
                **composer,
            )
        )
    response = render(request, PAGE, context, status=status)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


def _list_partial(request: HttpRequest, subscriber: Subscriber | None) -> HttpResponse:
    target = _target(request)
    context = _list_context(request, subscriber)
    if target == "conversation-more":
        return _partials(request, context, "conversation-more")
    if request.GET.get("v") and request.GET["v"] == context["page"].version:
        return HttpResponse(status=204)
    return _partials(request, context, "conversation-list")


@project_view(section="conversations")
@require_safe
def conversation_list(request: HttpRequest) -> HttpResponse:
    if _target(request) in ("conversation-list", "conversation-more"):
        return _list_partial(request, None)
    return _page(request, None)


@project_view(section="conversations")
@require_safe
def conversation_detail(request: HttpRequest, subscriber_id: uuid.UUID) -> HttpResponse:
    subscriber = _subscriber(request, subscriber_id)
    target = _target(request)
    if target in ("conversation-list", "conversation-more"):
        return _list_partial(request, subscriber)
    if target == "conversation-thread":
        context = _thread_context(request, subscriber, since=request.GET.get("anchor") or None)
        if request.GET.get("v") == context["thread"].version:
            return HttpResponse(status=204)
        window_state = "open" if context["thread"].window.open else "closed"
        if request.GET.get("w") in ("open", "closed") and request.GET["w"] != window_state:
            # The window opened (a new inbound message) or closed: the composer changes with it.
            context.update(_composer_context(request, subscriber))
            return _partials(
                request,
                context,
                "conversation-thread",
                "conversation-composer",
                oob=("conversation-composer",),
            )
        return _partials(request, context, "conversation-thread")
    if target == "conversation-older":
        context = _thread_context(request, subscriber, before=request.GET.get("before") or None)
        return _partials(request, context, "conversation-older")
    if target == "conversation-composer":
        context = _composer_context(
            request,
            subscriber,
            mode=request.GET.get("compose", ""),
            template=_chosen_template(request, request.GET.get("template")),
        )
        context["thread_url"] = reverse(
            "campaigns:conversation", args=[request.project.slug, subscriber.public_id]
        )
        context["selected"] = subscriber
        return _partials(request, context, "conversation-composer")
    if target == "conversation-pane":
        context = {**_thread_context(request, subscriber), **_composer_context(request, subscriber)}
        return _partials(request, context, "conversation-pane")
    return _page(request, subscriber)


def _sent(request: HttpRequest, subscriber: Subscriber) -> HttpResponse:
    """After a send: a fresh composer, and the thread with the new message (htmx); else back to the thread."""
    if not _target(request):
        url = reverse("campaigns:conversation", args=[request.project.slug, subscriber.public_id])
        return HttpResponseRedirect(url)
    context = {
        **_thread_context(request, subscriber, since=request.POST.get("anchor") or None),
        **_composer_context(request, subscriber),
    }
    response = _partials(
        request, context, "conversation-composer", "conversation-thread", oob=("conversation-thread",)
    )
    response["HX-Trigger"] = "conversation-changed"  # the list refreshes its row at once
    return response


def _refused(request: HttpRequest, subscriber: Subscriber, **composer) -> HttpResponse:
    """The composer again with the reason and everything typed; a whole page without htmx."""
    if not _target(request):
        return _page(request, subscriber, status=422, **composer)
    context = _composer_context(request, subscriber, **composer)
    context["thread_url"] = reverse(
        "campaigns:conversation", args=[request.project.slug, subscriber.public_id]
    )
    context["selected"] = subscriber
    return _partials(request, context, "conversation-composer")


@project_view(section="conversations")
@require_POST
def conversation_reply(request: HttpRequest, subscriber_id: uuid.UUID) -> HttpResponse:
    subscriber = _subscriber(request, subscriber_id)
    text = request.POST.get("text", "")
    try:
        send_whatsapp(
            project=request.project, subscriber=subscriber, actor=Actor(user=request.user), text=text
        )
    except SendRefused as exc:
        return _refused(request, subscriber, mode="reply", text=text, error=str(exc))
    return _sent(request, subscriber)


@project_view(section="conversations")
@require_POST
def conversation_template(request: HttpRequest, subscriber_id: uuid.UUID) -> HttpResponse:
    subscriber = _subscriber(request, subscriber_id)
    template = _chosen_template(request, request.POST.get("template"))
    if template is None:
        return _refused(request, subscriber, mode="template", error=_("Choose an approved template."))
    fields = template_fields(template, request.POST)
    components = build_components(template, fields)
    if any(f.error for f in fields):
        return _refused(
            request,
            subscriber,
            mode="template",
            template=template,
            fields=fields,
            error=_("Some parameters are missing or wrong."),
        )
    try:
        send_whatsapp(
            project=request.project,
            subscriber=subscriber,
            actor=Actor(user=request.user),
            template=template,
            components=components,
        )
    except SendRefused as exc:
        return _refused(
            request, subscriber, mode="template", template=template, fields=fields, error=str(exc)
        )
    return _sent(request, subscriber)


urlpatterns = [
    path("conversations/", conversation_list, name="conversations"),
    path("conversations/<uuid:subscriber_id>/", conversation_detail, name="conversation"),
    path("conversations/<uuid:subscriber_id>/reply/", conversation_reply, name="conversation_reply"),
    path("conversations/<uuid:subscriber_id>/template/", conversation_template, name="conversation_template"),
]
