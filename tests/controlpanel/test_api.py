from __future__ import annotations

import pytest

from controlpanel.models import ApiKey
from controlpanel.services import Actor, create_api_key, revoke_api_key
from tests.factories import ProjectFactory


@pytest.fixture
def api_key(project):
    _, raw = create_api_key(project=project, name="backend", actor=Actor(label="test"))
    return raw


def auth(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_project_endpoint_returns_the_keys_project(client, project, api_key):
    response = client.get("/api/v1/project", **auth(api_key))
    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == project.slug
    assert body["id"] == str(project.public_id)
    assert body["time_zone"] == "Europe/Berlin"


def test_key_of_project_a_never_sees_project_b(client, project, api_key):
    other = ProjectFactory()
    _, other_key = create_api_key(project=other, name="other", actor=Actor(label="test"))
    assert client.get("/api/v1/project", **auth(api_key)).json()["slug"] == project.slug
    assert client.get("/api/v1/project", **auth(other_key)).json()["slug"] == other.slug


@pytest.mark.parametrize(
    "header",
    [None, "Bearer ", "Bearer nonsense", "Bearer wak_deadbeef_wrong", "Basic abc"],
)
def test_missing_or_bad_key_is_401_json(client, project, api_key, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/api/v1/project", **extra)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert "message" in response.json()


def test_tampered_key_with_valid_prefix_is_refused(client, project, api_key):
    tampered = api_key[:-4] + ("AAAA" if not api_key.endswith("AAAA") else "BBBB")
    assert client.get("/api/v1/project", **auth(tampered)).status_code == 401


def test_revoked_key_is_refused(client, project, api_key):
    key = ApiKey.objects.get(project=project)
    revoke_api_key(project=project, key=key, actor=Actor(label="test"))
    assert client.get("/api/v1/project", **auth(api_key)).status_code == 401


def test_key_is_stored_hashed_and_last_use_recorded(client, project, api_key):
    key = ApiKey.objects.get(project=project)
    assert api_key not in (key.key_hash, key.prefix)
    assert key.last_used_at is None
    client.get("/api/v1/project", **auth(api_key))
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_unknown_route_is_json_404(client, api_key):
    response = client.get("/api/v1/nope", **auth(api_key))
    assert response.status_code == 404


def test_openapi_and_docs_are_served(client):
    schema = client.get("/api/v1/openapi.json")
    assert schema.status_code == 200
    assert "/api/v1/project" in schema.json()["paths"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    # Swagger UI comes from our static files, never a CDN.
    assert b"cdn" not in docs.content.lower()


def test_api_root_and_unknown_paths_answer_json(client):
    root = client.get("/api/v1/")
    assert root.status_code == 200 and root.json()["docs"] == "/api/v1/docs"
    missing = client.get("/api/v1/no/such/thing")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
