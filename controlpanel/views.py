from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import dashboard, health, services
from .forms import ApiKeyForm, InviteForm, ProjectForm, RoleForm, SignupForm
from .models import ApiKey, AuditEntry, Invitation, Membership, Project, Role, User
from .services import Actor
from .tenancy import project_view

LAST_PROJECT_KEY = "last_project"
NEW_KEY_SESSION = "new_api_key"


def public_base_url(request: HttpRequest) -> str:
    """Base URL for links that leave the panel (emails): PUBLIC_BASE_URL, else this request's."""
    return settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    projects = Project.objects.for_user(request.user)
    last = request.session.get(LAST_PROJECT_KEY)
    project = projects.filter(slug=last).first() if last else None
    project = project or projects.first()
    if project is not None:
        return redirect("controlpanel:dashboard", project.slug)
    return render(request, "controlpanel/no_projects.html", {"form": ProjectForm()})


@login_required
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = services.create_project(owner=request.user, **form.cleaned_data)
        messages.success(request, _("Project “%(name)s” created.") % {"name": project.name})
        return redirect("controlpanel:dashboard", project.slug)
    return render(request, "controlpanel/project_create.html", {"form": form})


@project_view(section="dashboard")
def project_dashboard(request: HttpRequest) -> HttpResponse:
    request.session[LAST_PROJECT_KEY] = request.project.slug
    board = dashboard.build(request.project)
    chart = [
        {"label": s.label, "labels": [d.isoformat() for d, _ in s.points], "data": [v for _, v in s.points]}
        for s in board.series
    ]
    return render(
        request,
        "controlpanel/dashboard.html",
        {
            "board": board,
            "chart": chart,
            "chart_has_data": any(any(series["data"]) for series in chart),
            "checklist_open": any(not s.done for s in board.checklist),
        },
    )


@project_view(section="settings", write=Role.ADMIN)
def project_settings(request: HttpRequest) -> HttpResponse:
    project = request.project
    form = ProjectForm(request.POST or None, instance=Project.objects.get(pk=project.pk))
    if request.method == "POST" and form.is_valid():
        services.update_project(project=project, actor=_actor(request), **form.cleaned_data)
        messages.success(request, _("Project settings saved."))
        return redirect("controlpanel:settings", project.slug)
    return render(request, "controlpanel/settings.html", {"form": form, "tab": "general"})


@project_view(section="settings", write=Role.OWNER)
def members(request: HttpRequest) -> HttpResponse:
    project = request.project
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        try:
            _invitation, link, replaced = services.invite_member(
                project=project,
                email=email,
                role=Role(form.cleaned_data["role"]),
                actor=_actor(request),
                base_url=public_base_url(request),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            # The owner sees the link too: the only way in when outgoing mail is not set up.
            if replaced:
                text = _(
                    "Invitation sent to %(email)s again; the earlier link no longer works. "
                    "Their link: %(link)s"
                )
            else:
                text = _("Invitation sent to %(email)s. Their link: %(link)s")
            messages.success(request, text % {"email": email, "link": link})
            return redirect("controlpanel:members", project.slug)
    memberships = list(Membership.objects.filter(project=project).select_related("user"))
    owners = sum(1 for m in memberships if m.role == Role.OWNER)
    for m in memberships:
        m.is_last_owner = m.role == Role.OWNER and owners == 1
    context = {
        "form": form,
        "tab": "members",
        "memberships": memberships,
        "invitations": [
            i
            for i in Invitation.objects.filter(
                project=project, accepted_at__isnull=True, revoked_at__isnull=True
            )
            if i.is_pending
        ],
        "roles": Role.choices,
    }
    return render(request, "controlpanel/members.html", context)


@project_view(section="settings", write=Role.OWNER)
@require_POST
def member_role(request: HttpRequest, member_id) -> HttpResponse:
    membership = get_object_or_404(Membership, project=request.project, public_id=member_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            services.change_role(
                membership=membership, role=Role(form.cleaned_data["role"]), actor=_actor(request)
            )
            messages.success(
                request,
                _("%(email)s is now %(role)s.")
                % {"email": membership.user.email, "role": Role(form.cleaned_data["role"]).label},
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
    else:
        messages.error(request, _("Choose a valid role."))
    return redirect("controlpanel:members", request.project.slug)


@project_view(section="settings", write=Role.OWNER)
@require_POST
def member_remove(request: HttpRequest, member_id) -> HttpResponse:
    membership = get_object_or_404(Membership, project=request.project, public_id=member_id)
    try:
        services.remove_member(membership=membership, actor=_actor(request))
        messages.success(
            request, _("%(email)s was removed from the project.") % {"email": membership.user.email}
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("controlpanel:members", request.project.slug)


@project_view(section="settings", write=Role.OWNER)
@require_POST
def invitation_revoke(request: HttpRequest, invitation_id) -> HttpResponse:
    invitation = get_object_or_404(Invitation, project=request.project, public_id=invitation_id)
    services.revoke_invitation(invitation=invitation, actor=_actor(request))
    messages.success(request, _("Invitation for %(email)s revoked.") % {"email": invitation.email})
    return redirect("controlpanel:members", request.project.slug)


@never_cache
@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
def api_keys(request: HttpRequest) -> HttpResponse:
    project = request.project
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _key, raw = services.create_api_key(
            project=project, name=form.cleaned_data["name"], actor=_actor(request)
        )
        # Post/redirect/get, so a reload cannot create a second key. The raw key
        # rides in the session until the very next page view, which removes it.
        request.session[NEW_KEY_SESSION] = raw
        return redirect("controlpanel:api_keys", project.slug)
    new_key = request.session.pop(NEW_KEY_SESSION, None)
    context = {
        "form": form,
        "tab": "api-keys",
        "new_key": new_key,
        "keys": ApiKey.objects.for_project(project).select_related("created_by"),
        "api_base": request.build_absolute_uri(reverse("api:api-root")),
    }
    return render(request, "controlpanel/api_keys.html", context)


@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
@require_POST
def api_key_revoke(request: HttpRequest, key_id) -> HttpResponse:
    key = get_object_or_404(ApiKey, project=request.project, public_id=key_id)
    services.revoke_api_key(project=request.project, key=key, actor=_actor(request))
    messages.success(
        request, _("API key “%(name)s” revoked. Requests with it now get 401.") % {"name": key.name}
    )
    return redirect("controlpanel:api_keys", request.project.slug)


@project_view(section="settings", read=Role.ADMIN, write=Role.ADMIN)
def audit_log(request: HttpRequest) -> HttpResponse:
    entries = AuditEntry.objects.for_project(request.project).select_related("actor_user")
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    return render(request, "controlpanel/audit.html", {"page": page, "tab": "audit"})


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = services.find_invitation(token)
    if invitation is None:
        return render(request, "registration/invitation_invalid.html", status=404)
    existing = User.objects.filter(email__iexact=invitation.email).first()
    if request.user.is_authenticated:
        if request.user.email.lower() != invitation.email.lower():
            return render(
                request, "registration/invitation_wrong_user.html", {"invitation": invitation}, status=403
            )
        if request.method == "POST":
            services.accept_invitation(invitation=invitation, user=request.user)
            messages.success(request, _("Welcome to %(project)s.") % {"project": invitation.project.name})
            return redirect("controlpanel:dashboard", invitation.project.slug)
        return render(request, "registration/invitation_accept.html", {"invitation": invitation})
    if existing is not None:
        messages.info(
            request, _("Log in as %(email)s to accept the invitation.") % {"email": invitation.email}
        )
        return redirect(f"{reverse('login')}?next={request.path}")
    form = SignupForm(request.POST or None, email=invitation.email)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = User.objects.create_user(
                invitation.email, form.cleaned_data["password1"], name=form.cleaned_data["name"]
            )
            services.accept_invitation(invitation=invitation, user=user)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, _("Welcome to %(project)s.") % {"project": invitation.project.name})
        return redirect("controlpanel:dashboard", invitation.project.slug)
    return render(request, "registration/invitation_signup.html", {"invitation": invitation, "form": form})


def favicon(request: HttpRequest) -> HttpResponse:
    # Browsers (and the Django admin, which declares no icon) ask for /favicon.ico.
    return redirect(static("img/favicon.svg"), permanent=True)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    report = health.check()
    return JsonResponse(report.as_dict(), status=200 if report.ok else 503)
