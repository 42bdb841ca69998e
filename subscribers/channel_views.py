"""The subscriber detail page's operator actions on the email and push channels.

Consent on every channel goes through ``views.subscriber_consent`` (the ledger); these are the
admin-only repairs: an address marked undeliverable by a bounce or complaint is declared
deliverable again, a push device is removed. Both call the one write path of their fact
(``email_status``, ``devices``) and are audited.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from controlpanel.models import Role
from controlpanel.services import Actor, record_audit
from controlpanel.tenancy import project_view

from . import devices, email_status
from .models import Device, Subscriber


def _subscriber(request: HttpRequest, subscriber_id: uuid.UUID) -> Subscriber:
    return get_object_or_404(Subscriber.objects.for_project(request.project), public_id=subscriber_id)


def _back(request: HttpRequest, subscriber: Subscriber, anchor: str) -> HttpResponse:
    url = reverse("subscribers:detail", args=[request.project.slug, subscriber.public_id])
    return redirect(f"{url}#{anchor}")


@project_view(section="subscribers", write=Role.ADMIN)
@require_POST
def email_deliverable(request: HttpRequest, subscriber_id: uuid.UUID) -> HttpResponse:
    """Clear the undeliverable mark of the subscriber's address (e.g. the mailbox is fixed)."""
    subscriber = _subscriber(request, subscriber_id)
    since, reason = subscriber.email_undeliverable_at, subscriber.email_undeliverable_reason
    with transaction.atomic():
        changed = email_status.mark_deliverable(subscriber)
        if changed:
            record_audit(
                project=request.project,
                actor=Actor(user=request.user),
                action="subscriber.email_deliverable",
                obj=subscriber,
                changes={"undeliverable_since": since.isoformat() if since else None, "reason": reason},
            )
    if changed:
        messages.success(
            request,
            _("%(email)s is deliverable again: email can be sent to it.") % {"email": subscriber.email},
        )
    else:
        messages.info(request, _("The address was not marked undeliverable; nothing changed."))
    return _back(request, subscriber, "channel-email")


@project_view(section="subscribers", write=Role.ADMIN)
@require_POST
def device_remove(request: HttpRequest, subscriber_id: uuid.UUID, device_id: uuid.UUID) -> HttpResponse:
    """Remove one push device of the subscriber: no more pushes go to it."""
    subscriber = _subscriber(request, subscriber_id)
    device = get_object_or_404(
        Device.objects.for_project(request.project).filter(subscriber=subscriber), public_id=device_id
    )
    actor = Actor(user=request.user)
    with transaction.atomic():
        removed = devices.remove(
            project=request.project, device_ids=[device.pk], reason=f"removed in the panel by {actor.display}"
        )
        if removed:
            record_audit(
                project=request.project,
                actor=actor,
                action="subscriber.device_removed",
                obj=subscriber,
                changes={"device": str(device.public_id), "platform": device.platform},
            )
    if removed:
        messages.success(
            request, _("The %(platform)s device was removed.") % {"platform": device.get_platform_display()}
        )
    else:
        messages.info(request, _("That device was removed already."))
    return _back(request, subscriber, "channel-push")


urlpatterns = [
    path("subscribers/<uuid:subscriber_id>/email/deliverable/", email_deliverable, name="email_deliverable"),
    path(
        "subscribers/<uuid:subscriber_id>/devices/<uuid:device_id>/remove/",
        device_remove,
        name="device_remove",
    ),
]
