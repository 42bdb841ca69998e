"""The push simulator's device page: the project's simulated devices and the pushes they received.

``/simulator/push/?project=<slug>`` for the project's members (viewers look, marketers add devices
and tap "Open"), in the panel's layout. Simulated devices are the project's devices whose token
starts with ``sim-``; adding one registers it through ``subscribers.devices.register`` like an app.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages as flash
from django.db.models import Count, F, Max, Q, Window
from django.db.models.functions import RowNumber
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from controlpanel.views import LAST_PROJECT_KEY
from subscribers import devices as device_service
from subscribers.models import Device, Subscriber
from whatsapp.simulator.services import callback_base

from ..models import SimulatedPush
from . import opens
from .forms import DeviceForm

SLUG = re.compile(r"[-a-zA-Z0-9_]+")
TOKEN_PREFIX = "sim-"  # noqa: S105 - marks simulated devices, not a secret
PUSHES_PER_DEVICE = 20
MAX_PHONES = 24
SUGGESTED_SUBSCRIBERS = 50


def for_project(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The project is ``?project=<slug>`` (the sidebar link carries it), else the last one the user
    worked in; membership and roles as on every project page (``project_view``)."""
    checked = project_view(section="push-simulator")(view)

    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        slug = request.GET.get("project") or request.session.get(LAST_PROJECT_KEY) or ""
        # Not a slug (a NUL, say): no project has it, and no query should be made with it.
        return checked(request, slug if SLUG.fullmatch(slug) else "-")

    wrapper.nav_section = "push-simulator"  # type: ignore[attr-defined]
    return wrapper


def page_url(request: HttpRequest) -> str:
    return reverse("push_simulator:devices") + "?" + urlencode({"project": request.project.slug})


def shown_devices(request: HttpRequest) -> tuple[list[Device], int]:
    """The newest simulated devices (at most MAX_PHONES) and how many there are in all."""
    simulated = Device.objects.for_project(request.project).filter(token__startswith=TOKEN_PREFIX)
    rows = list(simulated.select_related("subscriber").order_by("-created_at", "-pk")[: MAX_PHONES + 1])
    total = len(rows) if len(rows) <= MAX_PHONES else simulated.count()
    return rows[:MAX_PHONES], total


def pushes_of(request: HttpRequest, rows: list[Device]):
    return SimulatedPush.objects.filter(project=request.project, token__in=[d.token for d in rows])


def version(request: HttpRequest, rows: list[Device]) -> str:
    """Changes when a device is added, re-registered or removed, or a push arrives or is opened:
    the poll answers 204 otherwise (one query besides the devices')."""
    pushes = pushes_of(request, rows).aggregate(
        last=Max("pk"), opened=Count("pk", filter=Q(opened_at__isnull=False))
    )
    stamps = sorted(f"{d.pk}:{d.last_seen_at.timestamp()}:{d.removed_at is not None}" for d in rows)
    seen = hashlib.sha256(" ".join(stamps).encode()).hexdigest()[:16]
    return f"{seen}.{pushes['last'] or 0}.{pushes['opened']}"


def phones(request: HttpRequest, rows: list[Device]) -> list[dict]:
    """Each device with its newest pushes (at most PUSHES_PER_DEVICE each, in one query)."""
    newest = Window(
        RowNumber(), partition_by=[F("token")], order_by=[F("received_at").desc(), F("pk").desc()]
    )
    pushes = (
        pushes_of(request, rows)
        .annotate(rank=newest)
        .filter(rank__lte=PUSHES_PER_DEVICE)
        .order_by("-received_at", "-pk")
    )
    by_token: dict[str, list[dict]] = {d.token: [] for d in rows}
    for push in pushes:
        by_token[push.token].append(notification(push))
    return [{"device": d, "pushes": by_token[d.token]} for d in rows]


def notification(push: SimulatedPush) -> dict:
    message = push.payload if isinstance(push.payload, dict) else {}
    shown = message.get("notification") if isinstance(message.get("notification"), dict) else {}
    data = message.get("data") if isinstance(message.get("data"), dict) else {}
    return {
        "push": push,
        "title": shown.get("title", ""),
        "body": shown.get("body", ""),
        "image": shown.get("image", ""),
        "link": data.get("link", ""),
        "can_open": bool(opens.message_id_of(push)),
    }


def render_page(
    request: HttpRequest, form: DeviceForm, *, partial: bool = False, error: str = "", status: int = 200
) -> HttpResponse:
    rows, total = shown_devices(request)
    context = {
        "form": form,
        "error": error,
        "phones": phones(request, rows),
        "hidden": total - len(rows),
        "version": version(request, rows),
        "page_url": page_url(request),
        "suggestions": Subscriber.objects.for_project(request.project)
        .order_by("-created_at")
        .values("name", "phone", "email", "external_id")[:SUGGESTED_SUBSCRIBERS],
    }
    name = "push/simulator/devices.html" + ("#push-devices" if partial else "")
    return render(request, name, context, status=status)


@for_project
def devices(request: HttpRequest) -> HttpResponse:
    form = DeviceForm(request.POST or None, project=request.project)
    if request.method == "POST":
        if not form.is_valid():
            return render_page(request, form, status=400)
        subscriber = form.cleaned_data["subscriber"]
        data = device_service.DeviceData(
            token=TOKEN_PREFIX + secrets.token_urlsafe(24),
            platform=form.cleaned_data["platform"],
            app_version="push simulator",
            time_zone=subscriber.time_zone,
        )
        device, _ = device_service.register(
            project=request.project, subscriber=subscriber, data=data, actor=Actor(user=request.user)
        )
        flash.success(
            request,
            gettext("A simulated %(platform)s device now receives %(subscriber)s's pushes.")
            % {"platform": device.get_platform_display(), "subscriber": subscriber},
        )
        return redirect(page_url(request))
    if request.htmx and request.GET.get("v") is not None:
        if request.GET["v"] == version(request, shown_devices(request)[0]):
            return HttpResponse(status=204)  # nothing new: htmx keeps what is shown
        return render_page(request, form, partial=True)
    return render_page(request, form)


@for_project
@require_POST
def open_push(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("push", "")
    if "\x00" in name:
        raise Http404(gettext("No such push."))
    push = (
        SimulatedPush.objects.filter(project=request.project, fcm_name=name).select_related("project").first()
    )
    if push is None:
        raise Http404(gettext("No such push."))
    result = opens.report_open(push, base_url=callback_base(request))
    if request.htmx:
        form = DeviceForm(project=request.project)
        # 200 also for an error: htmx swaps only 2xx answers, and the error is shown in the list.
        return render_page(request, form, partial=True, error=result.error)
    if not result.ok:
        flash.error(request, result.error)
    return redirect(page_url(request))
