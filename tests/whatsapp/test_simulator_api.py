"""The simulated Graph API answers like Meta: success shapes, every error code, template paging and review,
and signed webhooks that our real webhook endpoint accepts."""

from __future__ import annotations

import json
import time

import pytest

from tests.factories import ProjectFactory
from whatsapp import signature
from whatsapp.models import MessageTemplate, WebhookDelivery, WhatsAppAccount
from whatsapp.processing import process_pending
from whatsapp.simulator import callbacks, services, store, testing

TOKEN = "EAAG-simulator-token"
SECRET = "simulator-app-secret"
WABA = "102290129340398"
NUMBER_ID = "106540352242922"
CUSTOMER = "4915112345678"


@pytest.fixture(autouse=True)
def simulator(settings, tmp_path):
    testing.quiet_settings(settings, tmp_path / "simulator")
    settings.SIMULATOR_APPROVAL_SECONDS = 0
    settings.PUBLIC_BASE_URL = ""
    yield
    store.close()


@pytest.fixture
def sim_account(db):
    account = WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id=WABA,
        phone_number_id=NUMBER_ID,
        display_phone_number="15550001234",
        access_token=TOKEN,
        app_secret=SECRET,
        base_url="http://testserver/simulator/graph",
    )
    services.seed_templates(waba_id=WABA)
    return account


def post(client, path: str, payload, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post(
        f"/simulator/graph/v23.0/{path}", data=body, content_type="application/json", headers=headers
    )


def get(client, path: str, token: str = TOKEN):
    return client.get(f"/simulator/graph/v23.0/{path}", headers={"Authorization": f"Bearer {token}"})


def send(client, payload: dict, token: str = TOKEN):
    return post(
        client,
        f"{NUMBER_ID}/messages",
        {"messaging_product": "whatsapp", "to": f"+{CUSTOMER}", **payload},
        token,
    )


def text(body: str = "Hello") -> dict:
    return {"type": "text", "text": {"body": body}}


def template(name: str = "order_update", components=None, language: str = "en_US") -> dict:
    if components is None:
        components = [
            {"type": "body", "parameters": [{"type": "text", "text": v} for v in ("Ana", "#1", "today")]},
            {
                "type": "button",
                "sub_type": "url",
                "index": "0",
                "parameters": [{"type": "text", "text": "1"}],
            },
        ]
    return {
        "type": "template",
        "template": {"name": name, "language": {"code": language}, "components": components},
    }


def error_of(response) -> dict:
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code", "error_data", "fbtrace_id"}
    assert error["type"] == "OAuthException"
    assert error["message"].startswith(f"(#{error['code']}) ")
    assert error["error_data"]["messaging_product"] == "whatsapp"
    return error


def delivered_webhooks() -> list[dict]:
    """Deliver everything due to our real webhook endpoint; return the payloads it stored, in order."""
    before = set(WebhookDelivery.objects.values_list("pk", flat=True))
    callbacks.deliver_due(now=time.time() + 3600, limit=500, transport=testing.webhook_transport)
    rows = WebhookDelivery.objects.exclude(pk__in=before).order_by("pk")
    return [json.loads(row.body) for row in rows]


def statuses(payloads: list[dict]) -> list[dict]:
    return [
        s for p in payloads for e in p["entry"] for c in e["changes"] for s in c["value"].get("statuses", [])
    ]


def open_window(account) -> None:
    services.send_inbound(
        account=account, phone=CUSTOMER, kind="text", text="Hi", callback_base="http://testserver"
    )


# --- sending: success shapes ---------------------------------------------------------------------
def test_text_inside_the_window_is_accepted_with_metas_shape(client, sim_account):
    open_window(sim_account)
    response = send(client, text())
    assert response.status_code == 200
    body = response.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": f"+{CUSTOMER}", "wa_id": CUSTOMER}]
    assert body["messages"][0]["id"].startswith("wamid.")
    assert body["messages"][0]["message_status"] == "accepted"
    assert response["facebook-api-version"] == "v23.0"


def test_template_send_then_sent_delivered_read_webhooks(client, sim_account):
    payload = template()
    payload["biz_opaque_callback_data"] = "m:42"
    wamid = send(client, payload).json()["messages"][0]["id"]
    sent = statuses(delivered_webhooks())
    assert [s["status"] for s in sent] == ["sent", "delivered", "read"]
    for item in sent:
        assert item["id"] == wamid
        assert item["biz_opaque_callback_data"] == "m:42"
        assert item["recipient_id"] == CUSTOMER
        assert item["pricing"] == {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": "utility",
        }
    assert "expiration_timestamp" in sent[0]["conversation"]


def test_status_webhooks_carry_what_meta_and_pywa_need(client, sim_account):
    send(client, template())
    payload = delivered_webhooks()[0]
    entry = payload["entry"][0]
    assert payload["object"] == "whatsapp_business_account"
    assert entry["id"] == WABA
    value = entry["changes"][0]["value"]
    assert entry["changes"][0]["field"] == "messages"
    assert value["metadata"] == {"display_phone_number": "15550001234", "phone_number_id": NUMBER_ID}
    contact = value["contacts"][0]
    assert contact["wa_id"] == CUSTOMER and contact["user_id"].startswith("DE.")
    assert value["statuses"][0]["timestamp"].isdigit()


def test_webhooks_are_signed_over_the_exact_bytes_our_endpoint_stores(client, sim_account):
    send(client, template())
    seen = []

    def transport(url, body, headers):
        seen.append((url, body, headers))
        return testing.webhook_transport(url, body, headers)

    callbacks.deliver_due(now=time.time() + 60, transport=transport)
    url, body, headers = seen[0]
    assert url == f"http://testserver/webhooks/whatsapp/{sim_account.public_id}/"
    assert signature.is_valid(body, headers["X-Hub-Signature-256"], SECRET)
    assert not signature.is_valid(
        json.dumps(json.loads(body)).encode(), headers["X-Hub-Signature-256"], SECRET
    )
    stored = WebhookDelivery.objects.get(account=sim_account, body=body.decode())
    assert stored.body.encode() == body


def test_a_new_app_secret_signs_webhooks_queued_before_the_change(client, sim_account):
    send(client, template())
    sim_account.app_secret = "rotated-secret"
    sim_account.save()
    callbacks._accounts.clear()
    seen = []
    callbacks.deliver_due(now=time.time() + 60, transport=lambda u, b, h: seen.append((b, h)) or 200)
    assert all(signature.is_valid(b, h["X-Hub-Signature-256"], "rotated-secret") for b, h in seen)


def test_mark_as_read_answers_success_and_turns_the_handsets_ticks_blue(client, sim_account):
    inbound = services.send_inbound(
        account=sim_account, phone=CUSTOMER, kind="text", text="Hi", callback_base="http://testserver"
    )
    response = post(
        client,
        f"{NUMBER_ID}/messages",
        {"messaging_product": "whatsapp", "status": "read", "message_id": inbound["id"]},
    )
    assert response.json() == {"success": True}
    assert store.get_message(inbound["id"])["read_at"] is not None


# --- sending: errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "", "EAAG-wrong"])
def test_missing_or_wrong_token_is_190_with_http_401(client, sim_account, token):
    response = post(
        client, f"{NUMBER_ID}/messages", {"messaging_product": "whatsapp", "to": CUSTOMER, **text()}, token
    )
    assert response.status_code == 401
    assert error_of(response)["code"] == 190


def test_unknown_phone_number_id_is_100_for_a_valid_token_and_190_otherwise(client, sim_account):
    assert error_of(post(client, "999/messages", {"messaging_product": "whatsapp"}))["code"] == 100
    response = post(client, "999/messages", {"messaging_product": "whatsapp"}, token="nobody")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "payload, code",
    [
        ({"to": CUSTOMER, **text()}, 100),  # no messaging_product
        ({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "fax", "fax": {}}, 100),
        ({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}, 100),  # no recipient
        ({"messaging_product": "whatsapp", "to": "not-a-number", **text()}, 100),
        ({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "text"}, 100),
        ({"messaging_product": "whatsapp", "to": CUSTOMER, **text("x" * 4097)}, 100),
        ({"messaging_product": "whatsapp", "to": "15550001234", **text()}, 131021),
    ],
)
def test_malformed_requests_get_metas_codes(client, sim_account, payload, code):
    response = post(client, f"{NUMBER_ID}/messages", payload)
    assert response.status_code == 400
    assert error_of(response)["code"] == code


def test_a_body_that_is_not_json_is_100(client, sim_account):
    assert error_of(post(client, f"{NUMBER_ID}/messages", "{not json"))["code"] == 100


def test_interactive_limits_are_131009(client, sim_account):
    buttons = [{"type": "reply", "reply": {"id": f"b{i}", "title": f"B{i}"}} for i in range(4)]
    payload = {
        "type": "interactive",
        "interactive": {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": buttons}},
    }
    response = send(client, payload)
    assert error_of(response)["code"] == 131009
    assert "Max: 3" in error_of(response)["error_data"]["details"]


def test_unknown_template_is_132001(client, sim_account):
    response = send(client, template(name="no_such_template"))
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == 132001
    assert "no_such_template" in error["error_data"]["details"]
    assert error_of(send(client, template(language="de")))["code"] == 132001


def test_a_pending_template_cannot_be_sent_132001(client, sim_account, settings):
    settings.SIMULATOR_APPROVAL_SECONDS = 600
    created = post(
        client,
        f"{WABA}/message_templates",
        {
            "name": "fresh",
            "language": "en_US",
            "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Your parcel is ready."}],
        },
    )
    assert created.json()["status"] == "PENDING"
    assert error_of(send(client, template("fresh", components=[])))["code"] == 132001


def test_parameter_count_mismatch_is_132000(client, sim_account):
    too_few = [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]},
        {"type": "button", "sub_type": "url", "index": 0, "parameters": [{"type": "text", "text": "1"}]},
    ]
    error = error_of(send(client, template(components=too_few)))
    assert error["code"] == 132000
    assert "(1)" in error["error_data"]["details"] and "(3)" in error["error_data"]["details"]
    no_url_suffix = [{"type": "body", "parameters": [{"type": "text", "text": v} for v in "abc"]}]
    assert error_of(send(client, template(components=no_url_suffix)))["code"] == 132000


def test_parameter_format_mismatch_is_132012(client, sim_account):
    named = [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": v, "parameter_name": f"p{i}"} for i, v in enumerate("abc")
            ],
        },
        {"type": "button", "sub_type": "url", "index": 0, "parameters": [{"type": "text", "text": "1"}]},
    ]
    assert error_of(send(client, template(components=named)))["code"] == 132012
    wrong_button = [
        {"type": "body", "parameters": [{"type": "text", "text": v} for v in "abc"]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": 0,
            "parameters": [{"type": "payload", "payload": "x"}],
        },
    ]
    assert error_of(send(client, template(components=wrong_button)))["code"] == 132012


def test_case_insensitive_types_and_int_or_string_index_like_pywa_sends(client, sim_account):
    components = [
        {"type": "BODY", "parameters": [{"type": "text", "text": v} for v in "abc"]},
        {"type": "button", "sub_type": "URL", "index": 0, "parameters": [{"type": "text", "text": "1"}]},
    ]
    assert send(client, template(components=components)).status_code == 200


@pytest.mark.parametrize("status, code", [("PAUSED", 132015), ("DISABLED", 132016)])
def test_paused_and_disabled_templates(client, sim_account, status, code):
    stored = store.find_template(WABA, "order_update", "en_US")
    store.update_template(stored["id"], status=status)
    assert error_of(send(client, template()))["code"] == code


def test_free_form_outside_the_window_fails_async_with_131047(client, sim_account):
    response = send(client, text())
    assert response.status_code == 200  # Meta accepts, then fails it by webhook
    failed = statuses(delivered_webhooks())
    assert [s["status"] for s in failed] == ["failed"]
    error = failed[0]["errors"][0]
    assert error["code"] == 131047 and error["title"] and error["error_data"]["details"]
    assert "pricing" not in failed[0]


def test_inside_the_window_a_reply_is_free_customer_service(client, sim_account):
    open_window(sim_account)
    delivered_webhooks()
    send(client, text("Sure, here you go"))
    sent = statuses(delivered_webhooks())
    assert [s["status"] for s in sent] == ["sent", "delivered", "read"]
    assert (
        sent[0]["pricing"]["type"] == "free_customer_service" and sent[0]["pricing"]["category"] == "service"
    )


def test_throughput_limit_is_130429_within_one_second(client, sim_account):
    sim_account.throughput_mps = 3
    sim_account.save()
    answers = [send(client, template()).status_code for _ in range(5)]
    assert answers[:3] == [200, 200, 200]
    assert answers[3:] == [429, 429]
    assert error_of(send(client, template()))["code"] == 130429


def test_the_throughput_window_moves_on():
    def take(i: int, at: float) -> bool:
        message = {"wamid": f"w{i}", "phone_number_id": "n", "phone": f"4915100000{i}",
                   "direction": "business", "type": "text", "payload": {}, "created_at": at}  # fmt: skip
        return store.accept(store.Send("n", 2, at, None, message, [], clock=lambda: at))

    assert all(take(i, 100.0 + i * 0.1) for i in range(2))
    assert not take(2, 100.5)
    assert take(3, 101.05)


@pytest.mark.parametrize("number", ["+15550001111", "1 555 000 9876"])
def test_documented_test_numbers_are_undeliverable_131026(client, sim_account, number):
    response = post(
        client, f"{NUMBER_ID}/messages", {"messaging_product": "whatsapp", "to": number, **template()}
    )
    assert response.status_code == 200
    failed = statuses(delivered_webhooks())
    assert [(s["status"], s["errors"][0]["code"]) for s in failed] == [("failed", 131026)]


def test_marketing_to_a_user_who_stopped_it_fails_with_131050(client, sim_account):
    services.set_marketing_preference(
        account=sim_account, phone=CUSTOMER, stop=True, callback_base="http://testserver"
    )
    delivered_webhooks()
    promo = [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "CODE"}]}
    ]
    send(client, template("autumn_promo", components=promo))
    assert statuses(delivered_webhooks())[0]["errors"][0]["code"] == 131050
    send(client, template())  # utility still arrives
    assert statuses(delivered_webhooks())[-1]["status"] == "read"


def test_failure_rate_fails_after_sent_and_duplicates_repeat_identical_bodies(client, sim_account, settings):
    settings.SIMULATOR_FAILURE_RATE = 1.0
    send(client, template())
    assert [s["status"] for s in statuses(delivered_webhooks())] == ["sent", "failed"]
    settings.SIMULATOR_FAILURE_RATE = 0
    settings.SIMULATOR_DUPLICATE_RATE = 1.0
    send(client, template())
    bodies = []
    callbacks.deliver_due(now=time.time() + 60, limit=100, transport=lambda u, b, h: bodies.append(b) or 200)
    assert len(bodies) == 6 and len(set(bodies)) == 3


def test_webhooks_that_are_not_accepted_are_retried_with_backoff(client, sim_account):
    send(client, template())
    now = time.time() + 60
    assert callbacks.deliver_due(now=now, transport=lambda u, b, h: 500) == 3
    assert store.callback_stats()["retrying"] == 3
    assert callbacks.deliver_due(now=now + 0.5, transport=testing.webhook_transport) == 0  # not due yet
    assert len(statuses(delivered_webhooks())) == 3
    assert store.callback_stats()["pending"] == 0


# --- phone number and templates ------------------------------------------------------------------
def test_phone_number_info(client, sim_account):
    response = get(client, f"{NUMBER_ID}?fields=display_phone_number,verified_name,quality_rating,throughput")
    assert response.json() == {
        "display_phone_number": "+1 555-000-1234",
        "verified_name": sim_account.project.name,
        "quality_rating": "GREEN",
        "throughput": {"level": "STANDARD"},
        "id": NUMBER_ID,
    }
    assert get(client, NUMBER_ID).json()["messaging_limit_tier"]
    assert get(client, NUMBER_ID, token="bad").status_code == 401


def test_template_list_pages_with_absolute_next_urls_on_the_simulators_host(client, sim_account):
    services.seed_templates(
        waba_id=WABA,
        definitions=[
            {
                "name": f"note_{i}",
                "language": "en_US",
                "category": "UTILITY",
                "components": [{"type": "BODY", "text": f"Note number {i}."}],
            }
            for i in range(5)
        ],
    )
    response = get(
        client,
        f"{WABA}/message_templates?limit=3&summary=total_count,message_template_count,"
        "message_template_limit,are_translations_complete",
    )
    first = response.json()
    assert len(first["data"]) == 3
    # 3 demo templates, 5 notes and Meta's hello_world sample.
    assert first["summary"] == {
        "total_count": 9,
        "message_template_count": 9,
        "message_template_limit": 250,
        "are_translations_complete": True,
    }
    assert first["paging"]["next"].startswith(
        f"http://testserver/simulator/graph/v23.0/{WABA}/message_templates?"
    )
    names = [t["name"] for t in first["data"]]
    page = first
    while page["paging"].get("next"):
        page = client.get(page["paging"]["next"], headers={"Authorization": f"Bearer {TOKEN}"}).json()
        names += [t["name"] for t in page["data"]]
    assert len(names) == 9 == len(set(names))
    assert "next" not in page["paging"] and "previous" in page["paging"]
    item = first["data"][0]
    assert {"id", "name", "language", "status", "category", "parameter_format", "components"} <= set(item)


def test_template_list_filters_and_fields(client, sim_account):
    data = get(client, f"{WABA}/message_templates?category=marketing&fields=name,status").json()["data"]
    assert [set(t) for t in data] == [{"id", "name", "status"}]
    assert data[0]["name"] == "autumn_promo"
    assert get(client, f"{WABA}/message_templates?status=REJECTED").json()["data"] == []


def test_our_client_syncs_every_template_by_following_next(sim_account, monkeypatch):
    from whatsapp.services import sync_templates

    testing.route_graph_client(monkeypatch)
    services.seed_templates(
        waba_id=WABA,
        definitions=[
            {
                "name": f"n{i}",
                "language": "de",
                "category": "UTILITY",
                "components": [{"type": "BODY", "text": "Hi."}],
            }
            for i in range(150)
        ],
    )
    result = sync_templates(account=sim_account)
    assert (len(result.added), result.updated, result.removed) == (154, [], [])  # with hello_world
    otp = MessageTemplate.objects.get(account=sim_account, name="login_code")
    assert otp.category == "AUTHENTICATION"
    assert otp.components[-1]["buttons"][0]["type"] == "URL"  # Meta shows the OTP button as URL


def _create(client, **overrides):
    payload = {
        "name": "parcel_ready",
        "language": "en_US",
        "category": "UTILITY",
        "components": [
            {
                "type": "BODY",
                "text": "Hi {{1}}, parcel {{2}} is ready.",
                "example": {"body_text": [["Ana", "A-1"]]},
            }
        ],
        **overrides,
    }
    return post(client, f"{WABA}/message_templates", payload)


def test_new_template_is_pending_then_approved_with_a_status_webhook(client, sim_account, settings):
    settings.SIMULATOR_APPROVAL_SECONDS = 30
    created = _create(client).json()
    assert created["status"] == "PENDING" and created["category"] == "UTILITY" and created["id"].isdigit()
    assert get(client, created["id"]).json()["status"] == "PENDING"
    assert callbacks.deliver_due(transport=testing.webhook_transport) == 0  # the review takes its time
    MessageTemplate.objects.create(
        project=sim_account.project,
        account=sim_account,
        name="parcel_ready",
        language="en_US",
        category="UTILITY",
        status="PENDING",
        meta_id=created["id"],
    )
    payloads = delivered_webhooks()
    value = payloads[0]["entry"][0]["changes"][0]["value"]
    assert payloads[0]["entry"][0]["changes"][0]["field"] == "message_template_status_update"
    assert value["event"] == "APPROVED" and value["message_template_id"] == int(created["id"])
    assert value["reason"] == "NONE"
    store.settle_reviews(now=time.time() + 31)
    assert get(client, created["id"]).json()["status"] == "APPROVED"
    process_pending(sim_account.pk)
    assert MessageTemplate.objects.get(account=sim_account, name="parcel_ready").status == "APPROVED"


@pytest.mark.parametrize(
    "components, words",
    [
        (
            [{"type": "BODY", "text": "Hi {{2}}, see {{3}} now.", "example": {"body_text": [["a", "b"]]}}],
            "numbered from {{1}}",
        ),
        ([{"type": "BODY", "text": "Hi {{1}}, parcel {{2}} is ready."}], "sample values"),
        ([{"type": "BODY", "text": "x" * 1025}], "1,024"),
        (
            [{"type": "BODY", "text": "Hi {{1}}{{2}} ready.", "example": {"body_text": [["a", "b"]]}}],
            "next to each other",
        ),
        ([{"type": "BODY", "text": "{{1}} is ready.", "example": {"body_text": [["a"]]}}], "start or end"),
    ],
)
def test_templates_that_break_the_rules_are_rejected_with_a_reason(client, sim_account, components, words):
    created = _create(client, components=components).json()
    payloads = delivered_webhooks()
    value = payloads[0]["entry"][0]["changes"][0]["value"]
    assert value["event"] == "REJECTED" and value["reason"] == "INVALID_FORMAT"
    assert words in value["rejection_info"]["reason"]
    assert get(client, created["id"]).json()["rejected_reason"] == "INVALID_FORMAT"


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"name": "Bad Name"}, "lowercase"),
        ({"category": "PROMO"}, "category"),
        ({"components": "nope"}, "components"),
        ({"name": "order_update"}, "already"),
    ],
)
def test_malformed_template_requests_are_sync_100_errors(client, sim_account, overrides, words):
    response = _create(client, **overrides)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == 100 and words in error["error_data"]["details"]


def test_authentication_templates_need_the_code_twice(client, sim_account):
    otp = [
        {"type": "body", "parameters": [{"type": "text", "text": "J$FpnYnP"}]},
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "J$FpnYnP"}],
        },
    ]
    assert send(client, template("login_code", components=otp)).status_code == 200
    assert error_of(send(client, template("login_code", components=otp[:1])))["code"] == 132000


def test_delete_templates_by_name(client, sim_account):
    response = client.delete(
        f"/simulator/graph/v23.0/{WABA}/message_templates?name=autumn_promo",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.json() == {"success": True}
    assert store.find_template(WABA, "autumn_promo", "en_US") is None


def test_unknown_paths_answer_in_metas_shape(client, sim_account):
    response = client.get("/simulator/graph/nonsense")
    assert response.status_code == 400 and error_of(response)["code"] == 100


def test_a_new_waba_starts_with_metas_hello_world_once(client, db):
    WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id="7001",
        phone_number_id="7002",
        access_token=TOKEN,
        app_secret="s",
        base_url="http://testserver/simulator/graph",
    )
    (hello,) = get(client, "7001/message_templates").json()["data"]
    assert (hello["name"], hello["language"], hello["status"], hello["category"]) == (
        "hello_world",
        "en_US",
        "APPROVED",
        "UTILITY",
    )
    assert hello["components"] == [
        {"type": "HEADER", "format": "TEXT", "text": "Hello World"},
        {
            "type": "BODY",
            "text": "Welcome and congratulations!! This message demonstrates your ability to send a WhatsApp "
            "message notification from the Cloud API, hosted by Meta. Thank you for taking the time to test "
            "with us.",
        },
        {"type": "FOOTER", "text": "WhatsApp Business Platform sample message"},
    ]
    deleted = client.delete(
        "/simulator/graph/v23.0/7001/message_templates?name=hello_world",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert deleted.status_code == 200
    assert get(client, "7001/message_templates").json()["data"] == []  # deleted stays deleted
