"""Every project URL: outsiders get 404, viewers get 403 on writes."""

from __future__ import annotations

import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.converters import UUIDConverter

from controlpanel.models import Role

PROJECT_PREFIX = "p/<slug:slug>/"


def project_routes() -> list[tuple[str, dict, object]]:
    """(namespaced URL name, converters, view) for every URL under /p/<slug>/."""
    found = []

    def walk(patterns, namespaces, converters, route):
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = [*namespaces, p.namespace] if p.namespace else namespaces
                walk(p.url_patterns, ns, converters | p.pattern.converters, route + str(p.pattern))
            elif isinstance(p, URLPattern) and p.name:
                full = route + str(p.pattern)
                if full.startswith(PROJECT_PREFIX):
                    found.append(
                        (":".join([*namespaces, p.name]), converters | p.pattern.converters, p.callback)
                    )

    walk(get_resolver().url_patterns, [], {}, "")
    return found


ROUTES = project_routes()


def url_for(name: str, converters: dict, slug: str) -> str:
    kwargs = {"slug": slug}
    for param, conv in converters.items():
        if param != "slug":
            kwargs[param] = uuid.uuid4() if isinstance(conv, UUIDConverter) else "x"
    return reverse(name, kwargs=kwargs)


def test_walk_finds_every_section():
    names = {name for name, _, _ in ROUTES}
    # Guard against a walk that silently finds nothing and makes the tests below vacuous.
    assert {
        "controlpanel:dashboard",
        "controlpanel:members",
        "controlpanel:api_key_revoke",
        "subscribers:list",
        "subscribers:segments",
        "whatsapp:templates",
        "whatsapp:automatic_replies",
        "campaigns:conversations",
        "campaigns:list",
        "journeys:list",
    } <= names


@pytest.mark.parametrize(("name", "converters", "view"), ROUTES, ids=[r[0] for r in ROUTES])
def test_every_project_view_checks_membership(name, converters, view):
    assert hasattr(view, "project_roles"), f"{name} is not wrapped in tenancy.project_view"


@pytest.mark.parametrize(("name", "converters", "view"), ROUTES, ids=[r[0] for r in ROUTES])
@pytest.mark.parametrize("method", ["get", "post"])
def test_outsider_gets_404(client, project, outsider, name, converters, view, method):
    client.force_login(outsider)
    response = getattr(client, method)(url_for(name, converters, project.slug))
    assert response.status_code == 404


@pytest.mark.parametrize(("name", "converters", "view"), ROUTES, ids=[r[0] for r in ROUTES])
def test_anonymous_is_sent_to_login(client, project, name, converters, view):
    response = client.get(url_for(name, converters, project.slug))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(("name", "converters", "view"), ROUTES, ids=[r[0] for r in ROUTES])
def test_viewer_gets_403_on_every_write(client, project, viewer, name, converters, view):
    client.force_login(viewer)
    response = client.post(url_for(name, converters, project.slug), {"name": "x", "role": "owner"})
    assert response.status_code == 403


PAGES = [r for r in ROUTES if not r[1].keys() - {"slug"}]  # object URLs take POST only


@pytest.mark.parametrize(("name", "converters", "view"), PAGES, ids=[r[0] for r in PAGES])
def test_viewer_reads_what_viewers_may_read(client, project, viewer, name, converters, view):
    client.force_login(viewer)
    response = client.get(url_for(name, converters, project.slug))
    read_role = view.project_roles[0]
    assert response.status_code == (200 if read_role == Role.VIEWER else 403)


def test_unknown_project_is_404_like_a_foreign_one(client, owner):
    client.force_login(owner)
    assert client.get("/p/does-not-exist/").status_code == 404


def test_403_page_names_the_needed_role(client, project, viewer):
    client.force_login(viewer)
    response = client.post(reverse("controlpanel:settings", args=[project.slug]), {"name": "x"})
    assert response.status_code == 403
    assert b"Admin role" in response.content
