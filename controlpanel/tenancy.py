"""Resolving the project of a request and checking the member's role.

Every project URL is ``/p/<slug>/...`` and every project view is wrapped in
:func:`project_view`. The decorator resolves project and membership in a single
query. Outsiders get 404 (the same answer as for a project that does not exist,
so slugs cannot be probed); members whose role is too low get 403.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import Membership, Project, Role

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ProjectRequest(HttpRequest):
    """For type checkers: what :func:`project_view` adds to the request."""

    project: Project
    membership: Membership


def get_membership(user, slug: str) -> Membership:
    try:
        return Membership.objects.select_related("project").get(project__slug=slug, user=user)
    except Membership.DoesNotExist:
        raise Http404(_("No such project.")) from None


def project_view(
    *, section: str, read: Role = Role.VIEWER, write: Role = Role.MARKETER
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Wrap a view taking ``(request, slug, ...)``.

    ``section`` names the navigation entry to highlight. ``read`` is the role
    needed for GET/HEAD, ``write`` the role needed for every other method. The
    role check comes before any object lookup, so a viewer's POST is refused
    even for objects that do not exist.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, slug: str, *args, **kwargs) -> HttpResponse:
            membership = get_membership(request.user, slug)
            needed = read if request.method in SAFE_METHODS else write
            if not membership.can(needed):
                raise PermissionDenied(_("This needs the %(role)s role.") % {"role": Role(needed).label})
            request.project = membership.project  # type: ignore[attr-defined]
            request.membership = membership  # type: ignore[attr-defined]
            # Times on project pages are shown in the project's time zone.
            with timezone.override(zoneinfo.ZoneInfo(membership.project.time_zone)):
                return view(request, *args, **kwargs)

        wrapper.project_roles = (read, write)  # type: ignore[attr-defined]
        wrapper.nav_section = section  # type: ignore[attr-defined]
        return wrapper

    return decorator
