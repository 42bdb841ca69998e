"""POST /api/v1/messages and GET /api/v1/messages/{id}, through HTTP with a real API key."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from campaigns import bindings
from campaigns.models import Campaign, Message, MessageKind, MessageStatus
from campaigns.services import apply_status
from subscribers.models import ConsentState, Event, Subscriber
from tests.factories import ProjectFactory, SubscriberFactory
from tests.subscribers.test_api_subscribers import ApiClient, key_for
from whatsapp.models import WhatsAppAccount
from whatsapp.signals import StatusUpdate

from .conftest import make_template, params

# What a copy-code authentication template looks like once synced: Meta returns the OTP button as URL.
AUTH_COMPONENTS = [
    {"type": "BODY", "text": "*{{1}}* is your verification code.", "add_security_recommendation": True},
    {"type": "FOOTER", "text": "This code expires in 10 minutes."},
    {
        "type": "BUTTONS",
        "buttons": [
            {
                "type": "URL",
                "text": "Copy code",
                "url": "https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code=otp{{1}}",
            }
        ],
    },
]


@pytest.fixture
def api(client, account):
    return ApiClient(client, key_for(account.project))


@pytest.fixture
def auth_template(account):
    return make_template(
        account, name="verification_code", category="AUTHENTICATION", components=AUTH_COMPONENTS
    )


def send(api, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.client.post(
        "/api/v1/messages", json.dumps(body), content_type="application/json", **api.headers, **headers
    )


def order_update(**template):
    return {
        "name": "order_update",
        "language": "en_US",
        "components": params("Ada", "8812"),
        **template,
    }


# --- sending a template ---------------------------------------------------------------------------


def test_template_with_components_is_queued_through_the_outbox(api, subscriber, template):
    response = send(api, {"phone": subscriber.phone, "template": order_update()})
    assert response.status_code == 201, response.json()
    body = response.json()
    message = Message.objects.get()
    assert body["id"] == str(message.public_id)
    assert (body["status"], body["kind"], body["duplicate"]) == ("queued", "template", False)
    assert body["recipient"] == {"id": str(subscriber.public_id), "phone": subscriber.phone}
    assert body["template"] == {"name": "order_update", "language": "en_US"}
    assert body["rendered"]["body"] == "Hi Ada, your order 8812 is on its way."
    assert body["rendered"]["buttons"] == ["Track"]
    assert (message.subscriber, message.template, message.kind) == (
        subscriber,
        template,
        MessageKind.TEMPLATE,
    )
    assert message.components == params("Ada", "8812")
    assert message.history[0]["status"] == "queued"


def test_verification_code_in_body_and_copy_code_button(api, account, auth_template):
    code = "482913"
    components = [
        {"type": "body", "parameters": [{"type": "text", "text": code}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": code}]},
    ]
    response = send(
        api,
        {
            "phone": "+4915199990000",
            "auto_register": True,
            "template": {"name": "verification_code", "language": "en_US", "components": components},
        },
        key="login-7f3a",
    )
    assert response.status_code == 201, response.json()
    message = Message.objects.get()
    assert message.components == components  # Meta's shape, sent as given
    assert message.body == f"*{code}* is your verification code."
    assert response.json()["rendered"]["footer"] == "This code expires in 10 minutes."
    # Authentication needs no marketing opt-in: a phone the project did not know gets its code.
    assert message.subscriber.phone == "+4915199990000"
    assert message.subscriber.whatsapp_consent == ConsentState.UNKNOWN


def test_the_document_shows_the_verification_example(client):
    document = client.get("/api/v1/openapi.json").json()
    examples = document["paths"]["/api/v1/messages"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    verification = examples["verification"]["value"]["template"]["components"]
    assert verification[0]["type"] == "body"
    assert verification[1] == {
        "type": "button",
        "sub_type": "url",
        "index": "0",
        "parameters": [{"type": "text", "text": "482913"}],
    }
    assert "Idempotency-Key" in {
        p["name"] for p in document["paths"]["/api/v1/messages"]["post"]["parameters"]
    }


@pytest.mark.parametrize(
    ("ref", "status"),
    [("external_id", 201), ("subscriber_id", 201), ("phone_local", 201)],
)
def test_recipient_by_external_id_subscriber_id_or_local_phone(api, subscriber, template, ref, status):
    subscriber.external_id = "crm-4711"
    subscriber.save()
    recipient = {
        "external_id": {"external_id": "crm-4711"},
        "subscriber_id": {"subscriber_id": str(subscriber.public_id)},
        "phone_local": {"phone": "0151 12345678"},  # the project's country is DE
    }[ref]
    response = send(api, {**recipient, "template": order_update()})
    assert response.status_code == status, response.json()
    assert Message.objects.get().subscriber == subscriber


def test_unknown_phone_is_404_and_nobody_is_created(api, template):
    response = send(api, {"phone": "+4915199990000", "template": order_update()})
    assert response.status_code == 404
    assert response.json()["code"] == "subscriber_not_found"
    assert "auto_register" in response.json()["message"]
    assert not Subscriber.objects.filter(phone="+4915199990000").exists()


def test_auto_register_creates_the_subscriber_once(api, template):
    for _ in range(2):
        response = send(api, {"phone": "+4915199990000", "auto_register": True, "template": order_update()})
        assert response.status_code == 201, response.json()
    created = Subscriber.objects.get(phone="+4915199990000")
    assert Message.objects.filter(subscriber=created).count() == 2
    assert Event.objects.filter(subscriber=created, name="Subscribed").count() == 1


def test_a_refused_send_keeps_no_auto_registered_subscriber(api, account):
    make_template(
        account, name="summer_sale", category="MARKETING", components=[{"type": "BODY", "text": "Sale!"}]
    )
    response = send(
        api,
        {
            "phone": "+4915199990000",
            "auto_register": True,
            "template": {"name": "summer_sale", "language": "en_US"},
        },
    )
    assert response.status_code == 422
    assert response.json()["code"] == "send_refused"
    assert "opt-in" in response.json()["message"]
    assert not Subscriber.objects.filter(phone="+4915199990000").exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template": order_update()}, "phone"),
        ({"phone": "+4915112345678", "external_id": "x", "template": order_update()}, "external_id"),
        ({"external_id": "x", "auto_register": True, "template": order_update()}, "auto_register"),
        ({"phone": "+4915112345678"}, "template"),
        ({"phone": "+4915112345678", "text": "hi", "template": order_update()}, "template"),
        (
            {"phone": "+4915112345678", "template": order_update(bindings={"body": {"1": "x"}})},
            "template.components",
        ),
        ({"phone": "not a phone", "template": order_update()}, "phone"),
        (
            {"phone": "+4915112345678", "template": order_update(components=[{"type": "footer"}])},
            "template.components.0.type",
        ),
        (
            {
                "phone": "+4915112345678",
                "template": order_update(
                    components=[{"type": "button", "sub_type": "url", "index": "01", "parameters": []}]
                ),
            },
            "template.components.0.index",
        ),
        ({"phone": "+4915112345678", "text": "hi", "values": {"a": "\ud800"}}, "values.a"),
    ],
)
def test_bad_requests_are_422_naming_the_field(api, subscriber, template, body, field):
    response = send(api, body)
    assert response.status_code == 422, response.json()
    assert response.json()["field"] == field
    assert not Message.objects.exists()


def test_unknown_template_is_404_and_unapproved_or_unfitting_is_422(api, account, subscriber, template):
    missing = send(api, {"phone": subscriber.phone, "template": order_update(language="de")})
    assert (missing.status_code, missing.json()["code"], missing.json()["field"]) == (
        404,
        "template_not_found",
        "template.name",
    )
    unfitting = send(
        api, {"phone": subscriber.phone, "template": order_update(components=params("Ada", "1")[:1])}
    )
    assert unfitting.status_code == 422
    assert (unfitting.json()["code"], unfitting.json()["field"]) == (
        "parameter_mismatch",
        "template.components",
    )
    assert "button:0 needs 1 parameter, got 0" in unfitting.json()["message"]
    template.status = "PAUSED"
    template.save()
    paused = send(api, {"phone": subscriber.phone, "template": order_update()})
    assert (paused.status_code, paused.json()["code"]) == (422, "send_refused")
    assert "paused" in paused.json()["message"]
    assert not Message.objects.exists()


def test_the_sending_number_can_be_chosen(api, account, subscriber, template):
    other = WhatsAppAccount.objects.create(
        project=account.project, waba_id="2", phone_number_id="999000", access_token="t", app_secret="s"
    )
    make_template(other)
    response = send(api, {"phone": subscriber.phone, "phone_number_id": "999000", "template": order_update()})
    assert response.status_code == 201, response.json()
    assert Message.objects.get().account == other
    unknown = send(api, {"phone": subscriber.phone, "phone_number_id": "123", "template": order_update()})
    assert (unknown.status_code, unknown.json()["field"]) == (404, "phone_number_id")


# --- text -----------------------------------------------------------------------------------------


def test_text_inside_the_window_and_refused_outside(api, subscriber, account):
    subscriber.last_inbound_at = timezone.now() - timedelta(hours=23)
    subscriber.save()
    inside = send(api, {"phone": subscriber.phone, "text": "  Your table is ready. "})
    assert inside.status_code == 201, inside.json()
    assert inside.json()["kind"] == "text" and inside.json()["template"] is None
    assert Message.objects.get().body == "Your table is ready."
    subscriber.last_inbound_at = timezone.now() - timedelta(hours=25)
    subscriber.save()
    outside = send(api, {"phone": subscriber.phone, "text": "Still there?"})
    assert (outside.status_code, outside.json()["code"]) == (422, "send_refused")
    assert "24 hours" in outside.json()["message"]
    assert Message.objects.count() == 1


# --- idempotency ----------------------------------------------------------------------------------


def test_same_key_and_same_request_returns_the_same_message(api, subscriber, template):
    first = send(api, {"phone": subscriber.phone, "template": order_update()}, key="order-8812")
    # The same request written differently: the phone in national format, keys in another order,
    # a default spelled out.
    again = send(
        api,
        {"template": order_update(), "auto_register": False, "phone": "0151 1234 5678"},
        key="order-8812",
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    assert Message.objects.count() == 1


def test_same_key_with_another_request_is_409(api, subscriber, template):
    send(api, {"phone": subscriber.phone, "template": order_update()}, key="order-8812")
    other = send(
        api,
        {"phone": subscriber.phone, "template": order_update(components=params("Bob", "8812"))},
        key="order-8812",
    )
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"
    assert other.json()["field"] == "Idempotency-Key"
    assert "different request" in other.json()["message"]
    assert Message.objects.count() == 1


def test_without_a_key_every_request_sends(api, subscriber, template):
    send(api, {"phone": subscriber.phone, "template": order_update()})
    send(api, {"phone": subscriber.phone, "template": order_update()})
    assert Message.objects.count() == 2


def test_keys_are_per_project(client, account, subscriber, template):
    mine = send(
        ApiClient(client, key_for(account.project)),
        {"phone": subscriber.phone, "template": order_update()},
        "k-1",
    )
    other_account = WhatsAppAccount.objects.create(
        project=ProjectFactory(), waba_id="3", phone_number_id="3000", access_token="t", app_secret="s"
    )
    make_template(other_account)
    theirs_subscriber = SubscriberFactory(project=other_account.project, phone=subscriber.phone)
    theirs = send(
        ApiClient(client, key_for(other_account.project)),
        {"phone": theirs_subscriber.phone, "template": order_update(components=params("Other", "1"))},
        "k-1",
    )
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


def test_a_key_cannot_reach_the_outboxs_own_keys(api, subscriber, template, account):
    # The consent confirmations use keys like this one; an API key of the same text is another key.
    Message.objects.create(
        project=account.project,
        subscriber=subscriber,
        kind=MessageKind.TEXT,
        idempotency_key="consent-confirmation:w1",
    )
    response = send(
        api, {"phone": subscriber.phone, "template": order_update()}, key="consent-confirmation:w1"
    )
    assert response.status_code == 201
    assert Message.objects.count() == 2


@pytest.mark.parametrize("key", ["", "   ", "x" * 129, "with space", "ümlaut"])
def test_a_malformed_key_is_422(api, subscriber, template, key):
    response = send(api, {"phone": subscriber.phone, "template": order_update()}, key=key)
    assert response.status_code == 422
    assert response.json()["field"] == "Idempotency-Key"
    assert not Message.objects.exists()


def test_a_replay_answers_even_when_the_send_would_now_be_refused(api, subscriber, template):
    first = send(api, {"phone": subscriber.phone, "template": order_update()}, key="k")
    template.status = "PAUSED"
    template.save()
    again = send(api, {"phone": subscriber.phone, "template": order_update()}, key="k")
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


# --- bindings -------------------------------------------------------------------------------------


@pytest.fixture
def fake_liquid(monkeypatch):
    """Records what the API hands to the real campaigns.bindings (the expected placeholders and the
    values per recipient), so the wiring is checked as well as the rendered result."""
    calls = {}
    real_check, real_contexts = bindings.check_bindings, bindings.contexts_for

    def check_bindings(given, expected, **kwargs):
        calls["expected"] = expected
        return real_check(given, expected, **kwargs)

    def contexts_for(project, subscriber_ids, values=None, event=None, **kwargs):
        calls["contexts"] = (project, list(subscriber_ids), values)
        return real_contexts(project, subscriber_ids, values, event, **kwargs)

    monkeypatch.setattr(bindings, "check_bindings", check_bindings)
    monkeypatch.setattr(bindings, "contexts_for", contexts_for)
    return calls


def test_bindings_are_rendered_for_the_recipient_with_the_requests_values(
    api, subscriber, template, fake_liquid
):
    bindings = {
        "body": {"1": "Ada", "2": "{{ values.order_id }}"},
        "button:0": {"1": "{{ values.order_id }}"},
    }
    response = send(
        api,
        {
            "phone": subscriber.phone,
            "template": order_update(components=None, bindings=bindings),
            "values": {"order_id": "8812"},
        },
    )
    assert response.status_code == 201, response.json()
    message = Message.objects.get()
    assert message.components == params("Ada", "8812")
    assert message.values == {"order_id": "8812"}
    assert response.json()["values"] == {"order_id": "8812"}
    assert fake_liquid["expected"] == {"body": ["1", "2"], "button:0": ["1"]}
    assert fake_liquid["contexts"][1:] == ([subscriber.pk], {subscriber.pk: {"order_id": "8812"}})


def test_an_authentication_button_takes_the_bodys_code(api, auth_template, fake_liquid):
    response = send(
        api,
        {
            "phone": "+4915199990000",
            "auto_register": True,
            "template": {
                "name": "verification_code",
                "language": "en_US",
                "bindings": {"body": {"1": "{{ values.code }}"}},
            },
            "values": {"code": "482913"},
        },
    )
    assert response.status_code == 201, response.json()
    assert Message.objects.get().components == [
        {"type": "body", "parameters": [{"type": "text", "text": "482913"}]},
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "482913"}],
        },
    ]


def test_binding_problems_name_the_binding(api, subscriber, template, fake_liquid):
    missing = send(
        api,
        {"phone": subscriber.phone, "template": order_update(components=None, bindings={"body": {"1": "x"}})},
    )
    assert (missing.status_code, missing.json()["field"]) == (422, "template.bindings.body.2")
    bindings = {"body": {"1": "Ada", "2": "{{ values.order_id }}"}, "button:0": {"1": "x"}}
    empty = send(
        api, {"phone": subscriber.phone, "template": order_update(components=None, bindings=bindings)}
    )
    assert (empty.status_code, empty.json()["code"], empty.json()["field"]) == (
        422,
        "binding_empty",
        "template.bindings",
    )
    assert "values.order_id" in empty.json()["message"]
    bindings = {"body": {"1": "two\nlines", "2": "x"}, "button:0": {"1": "x"}}
    broken = send(
        api, {"phone": subscriber.phone, "template": order_update(components=None, bindings=bindings)}
    )
    assert (broken.status_code, broken.json()["field"]) == (422, "template.bindings.body.1")
    assert not Message.objects.exists()


def test_liquid_bindings_with_fallbacks_and_tags(api, subscriber, template):
    subscriber.name = ""
    subscriber.save()
    bindings = {
        "body": {"1": "{{ subscriber.name | default: 'Kunde' }}", "2": "{{ values.order_id | upcase }}"},
        "button:0": {"1": "{{ values.order_id }}"},
    }
    response = send(
        api,
        {
            "phone": subscriber.phone,
            "template": order_update(components=None, bindings=bindings),
            "values": {"order_id": "ab12"},
        },
    )
    assert response.status_code == 201, response.json()
    assert response.json()["rendered"]["body"] == "Hi Kunde, your order AB12 is on its way."


def test_liquid_binding_that_renders_empty_is_refused(api, subscriber, template):
    bindings = {"body": {"1": "{{ tags.first_name }}", "2": "x"}, "button:0": {"1": "x"}}
    response = send(
        api, {"phone": subscriber.phone, "template": order_update(components=None, bindings=bindings)}
    )
    assert response.status_code == 422
    assert response.json()["field"].startswith("template.bindings")
    assert not Message.objects.exists()


def test_liquid_syntax_error_names_the_placeholder(api, subscriber, template):
    bindings = {"body": {"1": "{{ subscriber.name ", "2": "x"}, "button:0": {"1": "x"}}
    response = send(
        api, {"phone": subscriber.phone, "template": order_update(components=None, bindings=bindings)}
    )
    assert (response.status_code, response.json()["field"]) == (422, "template.bindings.body.1")


# --- GET /messages/{id} ---------------------------------------------------------------------------


def _status(message, status, ts, **kw):
    return StatusUpdate(
        project_id=message.project_id,
        account_id=message.account_id,
        wamid=message.wamid,
        status=status,
        timestamp=datetime.fromtimestamp(ts, tz=UTC),
        **kw,
    )


def test_a_message_shows_its_history_pricing_and_rendered_text(api, subscriber, template):
    created = send(api, {"phone": subscriber.phone, "template": order_update()}).json()
    message = Message.objects.get()
    sent_at = datetime.fromtimestamp(1750000000, tz=UTC)
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.SENT,
        wamid="wamid.API1",
        sent_at=sent_at,
        history=[*message.history, {"status": "sent", "at": sent_at.isoformat(), "note": "accepted by Meta"}],
    )
    message.refresh_from_db()
    pricing = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"}
    apply_status(_status(message, "delivered", 1750000060, pricing=pricing))
    body = api.get(f"/messages/{created['id']}").json()
    assert body["status"] == "delivered" and body["wamid"] == "wamid.API1"
    assert [(h["status"], h["note"].split(" (")[0]) for h in body["history"]] == [
        ("queued", "by API key backend"),
        ("sent", "accepted by Meta"),
        ("delivered", "webhook"),
    ]
    assert datetime.fromisoformat(body["history"][2]["at"]) == datetime.fromtimestamp(1750000060, tz=UTC)
    assert body["pricing"] == {"category": "utility", "type": "regular", "billable": True}
    assert body["rendered"]["body"] == "Hi Ada, your order 8812 is on its way."
    assert body["error"] is None and body["reason"] == ""
    assert datetime.fromisoformat(body["delivered_at"]) == datetime.fromtimestamp(1750000060, tz=UTC)


def test_a_failed_message_explains_its_error(api, subscriber, template):
    created = send(api, {"phone": subscriber.phone, "template": order_update()}).json()
    Message.objects.update(status=MessageStatus.SENT, wamid="wamid.API2", sent_at=timezone.now())
    error = {"code": 131026, "title": "Message undeliverable", "error_data": {"details": "not on WhatsApp"}}
    apply_status(_status(Message.objects.get(), "failed", 1750000100, errors=(error,)))
    body = api.get(f"/messages/{created['id']}").json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == 131026
    assert body["error"]["title"] == "Message undeliverable"
    assert body["error"]["details"] == "not on WhatsApp"
    assert "not on WhatsApp" in body["error"]["explanation"]
    assert body["pricing"] is None


def test_campaign_messages_are_found_too(api, account, subscriber):
    campaign = Campaign.objects.create(project=account.project, name="Spring", account=account)
    message = Message.objects.create(
        project=account.project,
        subscriber=subscriber,
        campaign=campaign,
        account=account,
        template_name="spring",
    )
    body = api.get(f"/messages/{message.public_id}").json()
    assert body["campaign_id"] == str(campaign.public_id)
    assert body["template"] == {"name": "spring", "language": ""}


def test_a_message_of_another_project_is_404(client, api, template, subscriber):
    created = send(api, {"phone": subscriber.phone, "template": order_update()}).json()
    outsider = ApiClient(client, key_for(ProjectFactory()))
    response = outsider.get(f"/messages/{created['id']}")
    assert (response.status_code, response.json()["code"]) == (404, "message_not_found")
    assert api.get(f"/messages/{uuid.uuid4()}").status_code == 404


def test_the_api_needs_a_key(client, db):
    assert client.post("/api/v1/messages", "{}", content_type="application/json").status_code == 401
    assert client.get(f"/api/v1/messages/{uuid.uuid4()}").status_code == 401
