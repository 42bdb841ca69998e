"""GET /api/v1/templates and POST /api/v1/templates/sync, through HTTP with a real API key."""

from __future__ import annotations

import pytest

from tests.factories import ProjectFactory
from tests.fakegraph import error_answer
from tests.subscribers.test_api_subscribers import ApiClient, key_for
from whatsapp.models import MessageTemplate, WhatsAppAccount

from .test_templates_sync import LISTED


def template(account, **kw) -> MessageTemplate:
    defaults = {
        "project": account.project,
        "account": account,
        "meta_id": "920070352646140",
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "status": "APPROVED",
        "quality_score": "GREEN",
        "components": [
            {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["https://x.test/h.jpg"]}},
            {
                "type": "BODY",
                "text": "Hi {{1}}, your order {{2}} is on its way.",
                "example": {"body_text": [["Mark", "8812"]]},
            },
            {
                "type": "BUTTONS",
                "buttons": [
                    {
                        "type": "URL",
                        "text": "Track",
                        "url": "https://x.test/o/{{1}}",
                        "example": ["https://x.test/o/77"],
                    },
                    {"type": "QUICK_REPLY", "text": "Stop promotions"},
                ],
            },
        ],
    }
    defaults.update(kw)
    return MessageTemplate.objects.create(**defaults)


@pytest.fixture
def api(client, account):
    return ApiClient(client, key_for(account.project))


def test_templates_are_listed_with_their_placeholders(api, account):
    template(account)
    response = api.get("/templates")
    assert response.status_code == 200
    [listed] = response.json()
    assert {k: listed[k] for k in ("name", "language", "status", "category", "quality_score")} == {
        "name": "order_update",
        "language": "en_US",
        "status": "APPROVED",
        "category": "UTILITY",
        "quality_score": "GREEN",
    }
    assert listed["phone_number_id"] == account.phone_number_id
    assert listed["parameter_format"] == "POSITIONAL"
    assert [(p["component"], p["name"], p["example"]) for p in listed["placeholders"]] == [
        ("header", "image", "https://x.test/h.jpg"),
        ("body", "1", "Mark"),
        ("body", "2", "8812"),
        ("button:0", "1", "77"),
    ]
    assert listed["components"][1]["text"].startswith("Hi {{1}}")


def test_placeholders_match_what_the_send_path_checks(api, account):
    from campaigns import policy

    stored = template(account)
    listed = api.get("/templates").json()[0]["placeholders"]
    grouped: dict[str, list[str]] = {}
    for p in listed:
        grouped.setdefault(p["component"], []).append(p["name"])
    assert grouped == policy.template_parameters(stored)


def test_named_and_authentication_placeholders(api, account):
    template(
        account,
        name="welcome",
        parameter_format="NAMED",
        components=[{"type": "BODY", "text": "Hi {{first_name}}, code {{coupon}}"}],
    )
    template(
        account,
        name="verification_code",
        category="AUTHENTICATION",
        components=[
            {"type": "BODY", "text": "*{{1}}* is your verification code."},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Copy code", "url": "https://w.test/otp{{1}}"}],
            },
        ],
    )
    by_name = {t["name"]: t["placeholders"] for t in api.get("/templates").json()}
    assert [p["name"] for p in by_name["welcome"]] == ["first_name", "coupon"]
    assert [(p["component"], p["name"]) for p in by_name["verification_code"]] == [
        ("body", "1"),
        ("button:0", "1"),
    ]


def test_filters_and_deleted_templates(api, account):
    template(account)
    template(account, name="summer_sale", category="MARKETING", status="PENDING", components=[])
    template(account, name="old", status="DELETED", components=[])
    template(account, language="de")
    assert [(t["name"], t["language"]) for t in api.get("/templates").json()] == [
        ("order_update", "de"),
        ("order_update", "en_US"),
        ("summer_sale", "en_US"),
    ]
    assert [t["name"] for t in api.get("/templates", status="deleted").json()] == ["old"]
    assert [t["name"] for t in api.get("/templates", category="MARKETING").json()] == ["summer_sale"]
    assert [t["language"] for t in api.get("/templates", name="order_update", language="de").json()] == ["de"]
    assert api.get("/templates", category="PROMO").status_code == 422


def test_templates_of_other_projects_are_not_listed(client, account):
    other = WhatsAppAccount.objects.create(
        project=ProjectFactory(), waba_id="9", phone_number_id="9000", access_token="t", app_secret="s"
    )
    template(other, name="theirs")
    template(account, name="mine")
    assert [t["name"] for t in ApiClient(client, key_for(account.project)).get("/templates").json()] == [
        "mine"
    ]


def test_sync_pulls_templates_from_meta_and_is_idempotent(api, account, graph):
    graph.answer = lambda _: (200, LISTED)
    first = api.post("/templates/sync")
    assert first.status_code == 200
    assert first.json() == {
        "accounts": [
            {
                "phone_number_id": account.phone_number_id,
                "ok": True,
                "added": ["summer_sale (en_US)"],
                "updated": [],
                "removed": [],
                "unchanged": 0,
                "error": None,
            }
        ]
    }
    assert graph.calls[0][1].startswith(f"{account.graph_base}/{account.waba_id}/message_templates")
    again = api.post("/templates/sync").json()["accounts"][0]
    assert (again["added"], again["unchanged"]) == ([], 1)
    [listed] = api.get("/templates").json()
    assert (listed["name"], listed["placeholders"][0]["example"]) == ("summer_sale", "Mark")


def test_sync_reports_an_account_meta_refuses(api, account, graph):
    graph.answer = error_answer(190, status=401, message="Access token expired")
    response = api.post("/templates/sync")
    assert response.status_code == 200
    [result] = response.json()["accounts"]
    assert result["ok"] is False
    assert "access token expired" in result["error"].lower()
    assert "190" in result["error"]
    assert not MessageTemplate.objects.exists()


def test_sync_without_a_connected_number(client, db, graph):
    response = ApiClient(client, key_for(ProjectFactory())).post("/templates/sync")
    assert response.json() == {"accounts": []}
    assert graph.calls == []


def test_the_api_needs_a_key(client, db):
    assert client.get("/api/v1/templates").status_code == 401
    assert client.post("/api/v1/templates/sync").status_code == 401
