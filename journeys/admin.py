"""Operator tooling for journeys: read, and change a journey's status only through the services
(their checks, the engine's exit of runs on stop, the audit entry). Runs, visits and start
requests are written by the engine and the entry path only: read-only here."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from controlpanel.services import Actor
from subscribers.admin import EstimatedCountPaginator

from . import services
from .definition import DefinitionError
from .models import Journey, JourneyRun, JourneyRunStep, JourneyStartRequest, JourneyStat, JourneyVersion


class ReadOnlyMixin:
    """Every field shown, none editable, nothing added or deleted by hand."""

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        hidden = set(self.exclude or ())
        shown = [f.name for f in self.model._meta.fields if f.name not in hidden]
        return shown + list(getattr(self, "extra_readonly", ()))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _pretty(value) -> str:
    return format_html(
        '<pre style="white-space: pre-wrap; max-height: 40em; overflow: auto">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False),
    )


STATUS_ACTIONS = {
    "activate": (
        _("Activate the selected journeys"),
        ngettext_lazy("%(count)s journey activated.", "%(count)s journeys activated.", "count"),
    ),
    "pause": (
        _("Pause the selected journeys"),
        ngettext_lazy("%(count)s journey paused.", "%(count)s journeys paused.", "count"),
    ),
    "resume": (
        _("Resume the selected journeys"),
        ngettext_lazy("%(count)s journey resumed.", "%(count)s journeys resumed.", "count"),
    ),
    "stop": (
        _("Stop the selected journeys"),
        ngettext_lazy("%(count)s journey stopped.", "%(count)s journeys stopped.", "count"),
    ),
}


def _status_action(name: str, verb: str):
    description, done_text = STATUS_ACTIONS[name]

    def action(modeladmin, request, queryset) -> None:
        done, refused = 0, []
        actor = Actor(user=request.user)
        for journey in queryset.select_related("project"):
            try:
                getattr(services, name)(journey=journey, actor=actor)
            except services.JourneyRefused as exc:
                refused.append(f"{journey.name}: {exc.message}")
            except DefinitionError as exc:
                refused.append(f"{journey.name}: {exc.problems[0].message if exc.problems else exc}")
            else:
                done += 1
        if done:
            modeladmin.message_user(request, done_text % {"count": done}, messages.SUCCESS)
        for line in refused:
            modeladmin.message_user(request, line, messages.WARNING)

    action.__name__ = f"{name}_journeys"
    return admin.action(description=description, permissions=["status"])(action)


@admin.register(Journey)
class JourneyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Status changes through the actions (services: collision checks, versions, runs ended on
    stop); the definition is shown pretty-printed and edited in the builder or the API."""

    list_display = ["name", "project", "status", "version", "entry_kinds", "activated_at", "created_at"]
    list_filter = ["project", "status"]
    search_fields = ["name", "public_id", "project__slug"]
    list_select_related = ["project"]
    exclude = ["definition"]
    extra_readonly = ["definition_pretty"]
    actions = [
        _status_action("activate", "activated"),
        _status_action("pause", "paused"),
        _status_action("resume", "resumed"),
        _status_action("stop", "stopped"),
    ]

    @admin.display(description=_("Definition"))
    def definition_pretty(self, obj: Journey) -> str:
        return _pretty(obj.definition)

    def has_status_permission(self, request) -> bool:
        return request.user.has_perm("journeys.change_journey")

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        actions = super().get_actions(request, action_location=action_location)
        actions.pop("delete_selected", None)
        return actions


@admin.register(JourneyRun)
class JourneyRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """A run's position is the engine's alone (ADR 0007): an edited step or state would skip or
    repeat a side effect."""

    list_display = [
        "public_id",
        "journey",
        "subscriber",
        "state",
        "step_id",
        "version",
        "wake_at",
        "entered_at",
    ]
    list_filter = ["state", "journey", "dry_run"]
    search_fields = ["public_id", "subscriber__phone", "entry_key"]
    list_select_related = ["journey", "subscriber"]
    raw_id_fields = ["journey", "subscriber"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False


@admin.register(JourneyStartRequest)
class JourneyStartRequestAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["public_id", "project", "journey", "action", "status", "created_at", "finished_at"]
    list_filter = ["status", "action", "project"]
    search_fields = ["public_id"]
    list_select_related = ["project", "journey"]
    raw_id_fields = ["journey"]


@admin.register(JourneyVersion)
class JourneyVersionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Frozen definitions: runs walk them, so they never change."""

    list_display = ["journey", "number", "project", "created_at"]
    list_filter = ["project"]
    search_fields = ["journey__name", "journey__public_id"]
    list_select_related = ["journey", "project"]
    exclude = ["definition"]
    extra_readonly = ["definition_pretty"]

    @admin.display(description=_("Definition"))
    def definition_pretty(self, obj: JourneyVersion) -> str:
        return _pretty(obj.definition)


@admin.register(JourneyRunStep)
class JourneyRunStepAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """A run's visits: what each step did (the message it queued, the webhook's answer)."""

    list_display = ["run", "step_id", "step_type", "outlet", "entered_at", "finished_at"]
    list_filter = ["step_type"]
    search_fields = ["run__public_id", "step_id"]
    raw_id_fields = ["run", "message"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False


@admin.register(JourneyStat)
class JourneyStatAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Counters moved by deltas with the work they count; read-only (ADR 0007)."""

    list_display = ["journey", "step_id", "key", "n"]
    list_filter = ["project"]
    search_fields = ["journey__name", "step_id", "key"]
    list_select_related = ["journey"]
