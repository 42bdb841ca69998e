"""Every answer under /api/v1/ is JSON ``{"code", "message"}``, whatever went wrong and where."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from controlpanel import api as api_module
from controlpanel.services import Actor, create_api_key


@pytest.fixture
def api_client(project):
    _, raw = create_api_key(project=project, name="backend", actor=Actor(label="test"))
    # A real client checks CSRF like a browser-less caller meets it: no token at all.
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {raw}")


def error_body(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    body = response.json()
    assert set(body) >= {"code", "message"} and body["message"]
    return body


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_unknown_routes_are_json_404_for_every_method(api_client, method):
    # POST used to get Django's HTML CSRF page from the catch-all route.
    body = error_body(getattr(api_client, method)("/api/v1/nope"), 404)
    assert body["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/v1/segments/a%0Ab", "/api/v1/a%0A", "/api/v1/%0A/x"])
def test_paths_with_a_newline_are_json_404(api_client, path):
    # The catch-all pattern's "." did not match a newline, so Django's HTML 404 answered.
    assert error_body(api_client.get(path), 404)["code"] == "not_found"


def test_unauthenticated_unknown_route_is_json_404():
    response = Client(enforce_csrf_checks=True).post("/api/v1/nope", {})
    assert error_body(response, 404)["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("delete", "/api/v1/project", {"GET"}), ("put", "/api/v1/subscribers", {"GET", "POST"})],
)
def test_wrong_method_is_json_405_naming_the_allowed_ones(api_client, method, path, allowed):
    response = getattr(api_client, method)(path)
    body = error_body(response, 405)
    assert body["code"] == "method_not_allowed"
    assert {m.strip() for m in response["Allow"].split(",")} == allowed
    assert all(m in body["message"] for m in allowed)


def test_malformed_json_is_400_invalid_json(api_client):
    response = api_client.post("/api/v1/subscribers", "{bad json", content_type="application/json")
    body = error_body(response, 400)
    assert body["code"] == "invalid_json"
    assert "line 1" in body["message"]


def test_a_body_over_the_limit_is_json_413_before_it_is_read(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    payload = json.dumps({"phone": "+4915112345678", "name": "x" * 2000})
    body = error_body(api_client.post("/api/v1/subscribers", payload, content_type="application/json"), 413)
    assert body["code"] == "payload_too_large"
    assert "1000" in body["message"]
    # Under the limit the same endpoint works.
    small = json.dumps({"phone": "+4915112345678"})
    assert api_client.post("/api/v1/subscribers", small, content_type="application/json").status_code == 201


def test_a_20_mb_body_is_json_413_even_without_a_key(client):
    payload = b"x" * (20 * 1024 * 1024)
    response = client.post("/api/v1/subscribers", payload, content_type="application/json")
    assert error_body(response, 413)["code"] == "payload_too_large"


def test_a_route_may_take_larger_bodies_than_the_default(api_client, settings, monkeypatch):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    monkeypatch.setitem(api_module.BODY_LIMITS, "/subscribers/bulk", 100_000)
    items = [{"phone": f"+491511234{i:04d}", "name": "x" * 100} for i in range(20)]
    payload = json.dumps({"subscribers": items})
    assert 1000 < len(payload) < 100_000
    response = api_client.post("/api/v1/subscribers/bulk", payload, content_type="application/json")
    assert response.status_code == 200, response.content[:300]
    # Other routes keep the default.
    single = json.dumps({"phone": "+4915112345678", "name": "x" * 2000})
    response = api_client.post("/api/v1/subscribers", single, content_type="application/json")
    assert error_body(response, 413)["code"] == "payload_too_large"


@pytest.mark.parametrize("length", ["lots", "-1"])
def test_an_invalid_content_length_is_json_400(api_client, length):
    response = api_client.post(
        "/api/v1/subscribers", "{}", content_type="application/json", CONTENT_LENGTH=length
    )
    assert error_body(response, 400)["code"] == "bad_request"


def test_a_server_error_under_the_api_is_json_500(api_client, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(api_module, "ProjectOut", broken)
    api_client.raise_request_exception = False
    response = api_client.get("/api/v1/project")
    body = error_body(response, 500)
    assert body["code"] == "server_error"
    assert "boom" not in body["message"]


def test_pages_outside_the_api_keep_their_html_errors(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/api/v1/subscribers", {"phone": "+4915112345678", "name": "a\x00b"}, "name"),
        ("/api/v1/subscribers", {"phone": "+4915112345678", "tags": {"city": "a\x00"}}, "tags.city"),
        ("/api/v1/events", {"subscriber": {"external_id": "x\x00"}, "name": "X"}, "subscriber.external_id"),
        ("/api/v1/segments", {"name": "a\x00", "rule": "R(whatsapp)"}, "name"),
    ],
)
def test_a_nul_character_is_a_422_naming_the_field(api_client, path, payload, field):
    # PostgreSQL refuses NUL in text columns: these were 500s there (and stored as is on SQLite).
    response = api_client.post(path, json.dumps(payload), content_type="application/json")
    body = error_body(response, 422)
    assert (body["code"], body["field"]) == ("invalid_text", field)


def test_a_nul_character_in_a_batch_is_that_items_error_and_the_others_are_kept(api_client):
    items = [{"phone": "+4915112345678", "name": "\x00"}, {"phone": "+4915112345679", "name": "Bo"}]
    response = api_client.post(
        "/api/v1/subscribers/bulk", json.dumps({"subscribers": items}), content_type="application/json"
    )
    assert response.status_code == 200
    bad, good = response.json()["results"]
    assert (bad["error"]["code"], bad["error"]["field"]) == ("invalid_text", "name")
    assert good["status"] == "created"


def test_a_nul_character_in_a_query_is_a_422(api_client):
    body = error_body(api_client.get("/api/v1/subscribers", {"external_id": "a\x00b"}), 422)
    assert (body["code"], body["field"]) == ("invalid_text", "external_id")
