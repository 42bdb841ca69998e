from __future__ import annotations

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_noop as _

from .models import Project, Role

# (label, url name, icon, section key). Sections later issues fill show an honest empty state.
# Labels are English here (marked for the catalog) and translated per request in navigation().
NAVIGATION = [
    (_("Dashboard"), "controlpanel:dashboard", "home", "dashboard"),
    (_("Subscribers"), "subscribers:list", "users", "subscribers"),
    (_("Segments"), "subscribers:segments", "filter", "segments"),
    (_("Templates"), "whatsapp:templates", "template", "templates"),
    (_("Campaigns"), "campaigns:list", "send", "campaigns"),
    (_("Messages"), "campaigns:messages", "history", "messages"),
    (_("Journeys"), "journeys:list", "route", "journeys"),
    (_("Email"), "mail:templates", "mail", "email"),
    (_("Push"), "push:templates", "bell", "push"),
    (_("Conversations"), "campaigns:conversations", "message", "conversations"),
    (_("Settings"), "controlpanel:settings", "settings", "settings"),
]


def _simulator_url(name: str = "simulator:phone") -> str:
    if not settings.SIMULATOR_ENABLED:
        return ""
    try:
        return reverse(name)
    except NoReverseMatch:  # enabled after the URLconf was loaded
        return ""


def navigation(request) -> dict:
    project: Project | None = getattr(request, "project", None)
    if project is None or not request.user.is_authenticated:
        return {}
    match = request.resolver_match
    current = getattr(match, "func", None)
    section = getattr(current, "nav_section", None)
    items = [
        {
            "label": gettext(label),
            "url": reverse(name, args=[project.slug]),
            "icon": icon,
            "active": key == section,
        }
        for label, name, icon, key in NAVIGATION
    ]
    membership = request.membership
    return {
        # The phone pages keep the project's navigation and time zone (whatsapp.simulator.views).
        "simulator_url": _simulator_url() and f"{_simulator_url()}?project={project.slug}",
        "push_simulator_url": (push := _simulator_url("push_simulator:devices"))
        and f"{push}?project={project.slug}",
        "nav_items": items,
        "nav_projects": Project.objects.for_user(request.user).only("name", "slug"),
        "can_write": membership.can(Role.MARKETER),
        "can_admin": membership.can(Role.ADMIN),
        "is_owner": membership.can(Role.OWNER),
    }
