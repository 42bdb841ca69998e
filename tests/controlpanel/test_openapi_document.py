"""The OpenAPI document says what the API answers and which inputs it takes."""

from __future__ import annotations

import json

import pytest

from controlpanel.services import Actor, create_api_key


@pytest.fixture(scope="module")
def document(django_db_blocker):
    from django.test import Client

    with django_db_blocker.unblock():
        return Client().get("/api/v1/openapi.json").json()


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_every_operation_documents_the_errors_it_can_answer(document):
    for name, operation in operations(document):
        statuses = set(operation["responses"])
        has_path_id = any(p["in"] == "path" for p in operation.get("parameters", ()))
        assert "401" in statuses, name
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= statuses, name
        if has_path_id:
            assert "404" in statuses, name
        for status in statuses & {"400", "401", "404", "409", "413"}:
            response = operation["responses"][status]
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorOut"
            }
            assert response["description"] and response["description"] != "OK", (name, status)


def test_errors_are_documented_only_where_they_happen(document):
    paths = document["paths"]
    assert set(paths["/api/v1/segments"]["get"]["responses"]) == {"200", "401"}
    assert set(paths["/api/v1/project"]["get"]["responses"]) == {"200", "401"}
    assert "409" in paths["/api/v1/segments/{segment_id}"]["delete"]["responses"]
    assert "409" not in paths["/api/v1/segments/{segment_id}"]["get"]["responses"]


def test_the_error_shape_is_a_component(document):
    error = document["components"]["schemas"]["ErrorOut"]
    assert set(error["required"]) == {"code", "message"}


def test_constraints_the_services_check_are_in_the_document(document):
    schemas = document["components"]["schemas"]
    subscriber = schemas["SubscriberIn"]["properties"]
    assert subscriber["name"]["maxLength"] == 200
    assert subscriber["external_id"]["maxLength"] == 200
    assert subscriber["language"]["maxLength"] == 16
    assert "pattern" in subscriber["country"]
    event = schemas["EventIn"]["properties"]
    assert event["name"]["pattern"].startswith("^[A-Za-z]")
    assert event["attributes"]["maxProperties"] == 50
    assert "pattern" in event["attributes"]["propertyNames"]
    assert "pattern" in subscriber["tags"]["propertyNames"]
    assert schemas["SubscriberBatchIn"]["properties"]["subscribers"]["maxItems"] == 1000
    assert schemas["SegmentIn"]["properties"]["name"]["maxLength"] == 120


def test_times_without_an_offset_are_documented_as_the_projects_local_time(document):
    schemas = document["components"]["schemas"]
    assert "project's local time" in schemas["EventIn"]["properties"]["occurred_at"]["description"]
    assert "UTC" not in schemas["EventIn"]["properties"]["occurred_at"]["description"]
    assert "project's local time" in schemas["SubscriberIn"]["properties"]["tags"]["description"]
    assert "project's local time" in schemas["SubscriberPatch"]["properties"]["tags"]["description"]


def test_an_email_longer_than_its_column_is_a_422_not_a_server_error(client, project):
    # PostgreSQL refused the 255th character with a 500; the schema now says 254.
    _, raw = create_api_key(project=project, name="k", actor=Actor(label="test"))
    email = "a" * 250 + "@example.com"
    response = client.post(
        "/api/v1/subscribers",
        {"phone": "+4915112345678", "email": email},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 422
    assert response.json()["field"] == "email"


def test_each_status_is_listed_once_per_operation(client):
    """Swagger UI refuses a document whose responses repeat a key (ninja's 401 beside our "401")."""
    duplicates = []

    def no_repeats(pairs):
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            duplicates.append(keys)
        return dict(pairs)

    json.loads(client.get("/api/v1/openapi.json").content, object_pairs_hook=no_repeats)
    assert duplicates == []
