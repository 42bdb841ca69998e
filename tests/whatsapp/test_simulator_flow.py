"""End to end through the simulator: the panel sends, the simulator answers with signed webhooks, our
webhook endpoint and processing apply them; the phone page sends inbound messages that become events."""

from __future__ import annotations

import json
import re
import time

import pytest
from django.core.management import call_command

from campaigns.models import MessageStatus
from campaigns.services import deliver, send_whatsapp
from controlpanel.models import Project, Role
from controlpanel.services import Actor
from subscribers.models import ConsentSource, ConsentState, Event
from tests.factories import MembershipFactory, ProjectFactory, SubscriberFactory
from whatsapp import client as wa_client
from whatsapp import ratelimit
from whatsapp.models import MessageTemplate, WhatsAppAccount
from whatsapp.processing import process_pending
from whatsapp.services import sync_templates
from whatsapp.simulator import callbacks, handsets, services, store, testing

TOKEN = "EAAG-flow-token"
SECRET = "flow-app-secret"
PHONE = "4915112345678"


@pytest.fixture(autouse=True)
def simulator(settings, tmp_path, monkeypatch):
    testing.quiet_settings(settings, tmp_path / "simulator")
    settings.SIMULATOR_APPROVAL_SECONDS = 0
    settings.PUBLIC_BASE_URL = ""
    settings.REDIS_URL = ""
    ratelimit._limiter.cache_clear()
    testing.route_graph_client(monkeypatch)  # our GraphClient talks to the simulator in-process
    yield
    store.close()


@pytest.fixture
def account(db):
    account = WhatsAppAccount.objects.create(
        project=ProjectFactory(name="Demo Shop"),
        waba_id="300000000000001",
        phone_number_id="300000000000002",
        display_phone_number="15550001234",
        access_token=TOKEN,
        app_secret=SECRET,
        base_url="http://testserver/simulator/graph",
    )
    services.seed_templates(waba_id=account.waba_id)
    sync_templates(account=account)
    return account


@pytest.fixture
def subscriber(account):
    return SubscriberFactory(
        project=account.project, phone=f"+{PHONE}", name="Ana Lima", whatsapp_consent=ConsentState.OPTED_IN
    )


@pytest.fixture
def member(client, account):
    user = MembershipFactory(project=account.project, role=Role.MARKETER).user
    client.force_login(user)
    return user


def settle(account, django_capture_on_commit_callbacks) -> None:
    """What the embedded server's threads and workers do: deliver due webhooks, then process them."""
    with django_capture_on_commit_callbacks(execute=True):
        callbacks.deliver_due(now=time.time() + 3600, limit=500, transport=testing.webhook_transport)
        process_pending(account.pk)


def chat_url(account, phone: str = PHONE) -> str:
    return f"/simulator/phone/{phone}/{account.phone_number_id}/"


def tap(client, account, **data):
    return client.post(chat_url(account) + "send/", data, headers={"HX-Request": "true"})


def order_update(account) -> MessageTemplate:
    return MessageTemplate.objects.get(account=account, name="order_update")


ORDER_PARAMS = [
    {"type": "body", "parameters": [{"type": "text", "text": v} for v in ("Ana", "#8812", "tomorrow")]},
    {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "8812"}]},
]


def test_a_campaign_message_goes_sent_delivered_read(account, subscriber, django_capture_on_commit_callbacks):
    message = send_whatsapp(
        project=account.project,
        subscriber=subscriber,
        actor=Actor(label="test"),
        template=order_update(account),
        components=ORDER_PARAMS,
    )
    assert deliver(message.pk) == MessageStatus.SENT
    message.refresh_from_db()
    assert message.wamid.startswith("wamid.")
    settle(account, django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert message.status == MessageStatus.READ
    assert message.delivered_at and message.read_at
    assert (message.pricing_category, message.pricing_type, message.billable) == ("utility", "regular", True)
    assert set(Event.objects.filter(subscriber=subscriber).values_list("name", flat=True)) >= {
        "WhatsAppDelivered",
        "WhatsAppRead",
    }


def test_an_error_answer_of_the_simulator_fails_the_message(
    account, subscriber, django_capture_on_commit_callbacks
):
    store.update_template(
        store.find_template(account.waba_id, "order_update", "en_US")["id"], status="DISABLED"
    )
    message = send_whatsapp(
        project=account.project,
        subscriber=subscriber,
        actor=Actor(label="test"),
        template=order_update(account),
        components=ORDER_PARAMS,
    )
    deliver(message.pk)
    message.refresh_from_db()
    account.refresh_from_db()
    assert message.error_code == 132016 and message.status == MessageStatus.FAILED
    # A disabled template stops what sends it (campaigns of it pause), not the whole number.
    assert account.status == "active"


def test_typing_promo_on_the_phone_page_becomes_a_whatsapp_received_event(
    client, account, subscriber, member, django_capture_on_commit_callbacks
):
    response = tap(client, account, action="text", text="PROMO")
    assert response.status_code == 200
    html = response.content.decode()
    assert "PROMO" in html
    assert '<div id="handset-facts" hx-swap-oob="true">' in html  # the side facts follow along
    assert "opened by the last message" in html
    settle(account, django_capture_on_commit_callbacks)
    event = Event.objects.get(subscriber=subscriber, name="WhatsAppReceived")
    assert event.attributes["text"] == "PROMO" and event.attributes["normalized_text"] == "PROMO"
    subscriber.refresh_from_db()
    assert subscriber.last_inbound_at is not None
    thread = client.get(chat_url(account) + "?partial=thread").content.decode()
    assert 'data-status="delivered"' in thread  # our webhook accepted it: two grey ticks


def test_a_reply_inside_the_window_shows_on_the_handset_and_ticks_turn_blue_when_read(
    client, account, subscriber, member, django_capture_on_commit_callbacks
):
    tap(client, account, action="text", text="Do you ship to Berlin?")
    settle(account, django_capture_on_commit_callbacks)
    subscriber.refresh_from_db()
    reply = send_whatsapp(
        project=account.project, subscriber=subscriber, actor=Actor(label="agent"), text="Yes, in two days!"
    )
    deliver(reply.pk)
    settle(account, django_capture_on_commit_callbacks)
    reply.refresh_from_db()
    assert reply.status == MessageStatus.READ and reply.pricing_type == "free_customer_service"
    page = client.get(chat_url(account)).content.decode()
    assert "Yes, in two days!" in page
    inbound = store.chat(PHONE, account.phone_number_id)[0]
    wa_client.GraphClient(account)._request(
        "POST",
        f"{account.phone_number_id}/messages",
        json={"messaging_product": "whatsapp", "status": "read", "message_id": inbound["wamid"]},
    )
    thread = client.get(chat_url(account) + "?partial=thread").content.decode()
    assert 'data-status="read"' in thread


def test_the_handset_renders_templates_and_a_quick_reply_tap_opts_out(
    client, account, subscriber, member, django_capture_on_commit_callbacks
):
    promo = MessageTemplate.objects.get(account=account, name="autumn_promo")
    params = [
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "AUTUMN20"}],
        }
    ]
    message = send_whatsapp(
        project=account.project,
        subscriber=subscriber,
        actor=Actor(label="test"),
        template=promo,
        components=params,
    )
    deliver(message.pk)
    message.refresh_from_db()
    page = client.get(chat_url(account)).content.decode()
    assert "Autumn sale" in page  # header
    assert "Hi Ana, our autumn sale is on! Use code AUTUMN20" in page  # body with parameters
    assert "Not interested? Tap Stop promotions" in page  # footer
    assert "Shop now" in page and "Stop promotions" in page
    tap(
        client,
        account,
        action="button",
        payload="Stop promotions",
        text="Stop promotions",
        context=message.wamid,
    )
    settle(account, django_capture_on_commit_callbacks)
    subscriber.refresh_from_db()
    assert subscriber.whatsapp_consent == ConsentState.OPTED_OUT
    event = Event.objects.get(subscriber=subscriber, name="WhatsAppReceived")
    assert event.attributes["type"] == "button"
    assert event.attributes["button_text"] == "Stop promotions"
    assert event.attributes["context_message_id"] == message.wamid


def test_polling_answers_204_until_something_changes(client, account, subscriber, member):
    page = client.get(chat_url(account)).content.decode()
    version = re.search(r"partial=thread&amp;v=(\w+)", page).group(1)
    assert client.get(chat_url(account), {"partial": "thread", "v": version}).status_code == 204
    tap(client, account, action="text", text="Hello?")
    response = client.get(chat_url(account), {"partial": "thread", "v": version})
    assert response.status_code == 200 and "Hello?" in response.content.decode()


def test_with_a_negative_read_delay_the_handset_reads_when_the_chat_is_opened(
    client, account, subscriber, member, settings, django_capture_on_commit_callbacks
):
    settings.SIMULATOR_DELAYS_MS = "0,0,-1"
    message = send_whatsapp(
        project=account.project,
        subscriber=subscriber,
        actor=Actor(label="test"),
        template=order_update(account),
        components=ORDER_PARAMS,
    )
    deliver(message.pk)
    settle(account, django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    client.get(chat_url(account))
    settle(account, django_capture_on_commit_callbacks)
    message.refresh_from_db()
    assert message.status == MessageStatus.READ


def test_stopping_marketing_in_whatsapp_sends_user_preferences(
    client, account, subscriber, member, django_capture_on_commit_callbacks
):
    tap(client, account, action="stop")
    settle(account, django_capture_on_commit_callbacks)
    subscriber.refresh_from_db()
    assert subscriber.whatsapp_consent == ConsentState.OPTED_OUT
    assert subscriber.consent_changes.latest("created_at").source == ConsentSource.META_PREFERENCE
    assert store.marketing_stopped(account.phone_number_id, PHONE)


@pytest.mark.parametrize(
    "kind, fields, expected_type",
    [
        ("text", {"text": "hilfe!"}, "text"),
        ("referral", {}, "text"),
        ("text", {"text": "Long story. " * 30}, "text"),
        ("image", {"text": "My receipt"}, "image"),
        ("video", {}, "video"),
        ("audio", {}, "audio"),
        ("document", {"text": "Invoice"}, "document"),
        ("sticker", {}, "sticker"),
        ("location", {}, "location"),
        ("contacts", {"text": "Ana Example"}, "contacts"),
        ("order", {}, "order"),
        ("unsupported", {}, "unsupported"),
        ("system", {}, "system"),
        ("button_reply", {"payload": "slot_yes", "title": "Yes", "context_id": "wamid.X"}, "interactive"),
        ("list_reply", {"payload": "fast", "title": "Express", "context_id": "wamid.Y"}, "interactive"),
        ("reaction", {"context_id": "wamid.Z", "emoji": "👍"}, "reaction"),
    ],
)
def test_every_inbound_type_reaches_the_project_as_an_event(
    account, subscriber, kind, fields, expected_type, django_capture_on_commit_callbacks
):
    services.send_inbound(
        account=account, phone=PHONE, kind=kind, callback_base="http://testserver", **fields
    )
    settle(account, django_capture_on_commit_callbacks)
    event = Event.objects.get(project=account.project, name="WhatsAppReceived")
    assert event.attributes["type"] == expected_type
    if kind == "image":
        assert event.attributes["text"] == "My receipt" and event.attributes["media_id"]
    if kind == "referral":
        assert "ctwa_clid" in event.attributes["referral"]
    if kind == "unsupported":
        assert event.attributes["error_code"] == 131051


def test_phone_pages_need_a_login(client, account):
    response = client.get("/simulator/phone/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.get(chat_url(account)).status_code == 302


def test_members_see_their_projects_handsets_and_outsiders_see_nothing_of_them(client, account, subscriber):
    member = MembershipFactory(project=account.project, role=Role.VIEWER).user
    client.force_login(member)
    listing = client.get("/simulator/phone/").content.decode()
    assert f"+{PHONE}" in listing and "Ana Lima" in listing
    assert client.get(f"/simulator/phone/{PHONE}/").status_code == 302  # one business: straight to the chat
    outsider = MembershipFactory(project=ProjectFactory(), role=Role.OWNER).user
    client.force_login(outsider)
    assert f"+{PHONE}" not in client.get("/simulator/phone/").content.decode()
    assert client.get(chat_url(account)).status_code == 404
    assert client.post(chat_url(account) + "send/", {"action": "text", "text": "x"}).status_code == 404


def test_phone_pages_sit_in_the_projects_layout(client, account, subscriber, member):
    other = MembershipFactory(user=member, project=ProjectFactory(name="Zeta Store", slug="zeta")).project
    page = client.get(f"/simulator/phone/?project={account.project.slug}").content.decode()
    # The panel's navigation of the project the user came from, with its name in the switcher.
    assert f'href="/p/{account.project.slug}/subscribers/"' in page and "Demo Shop" in page
    assert f'href="/simulator/phone/?project={account.project.slug}"' in page
    # Remembered: the chat (without ?project=) keeps that project's navigation.
    chat = client.get(chat_url(account)).content.decode()
    assert f'href="/p/{account.project.slug}/conversations/"' in chat
    # Another project of the user, and a project of someone else (ignored).
    assert 'href="/p/zeta/subscribers/"' in client.get("/simulator/phone/?project=zeta").content.decode()
    foreign = ProjectFactory(slug="foreign")
    assert "/p/foreign/" not in client.get(f"/simulator/phone/?project={foreign.slug}").content.decode()
    assert other.slug == "zeta"


def test_phone_times_are_in_the_projects_time_zone(client, account, subscriber, member):
    Project.objects.filter(pk=account.project.pk).update(time_zone="Asia/Tokyo")
    sent_at = 1_765_000_000  # 2025-12-06 05:46:40 UTC, 14:46 in Tokyo
    services.send_inbound(
        account=account, phone=PHONE, kind="text", text="Hi", callback_base="http://testserver"
    )
    with store.transaction() as tx:
        tx.execute("UPDATE messages SET created_at = ?", (sent_at,))
    page = client.get(f"/simulator/phone/?project={account.project.slug}")
    chat = client.get(chat_url(account)).content.decode()
    assert page.status_code == 200 and "14:46" in chat and "05:46" not in chat


def test_handsets_are_found_by_name_or_number(client, account, subscriber, member):
    SubscriberFactory(project=account.project, phone="+4917099887766", name="Ben Kurz")
    handsets.ensure("4930123456", name="Carla Office", created_by=member.pk)
    names = lambda html: re.findall(r'<span class="d-block fw-medium">([^<]+)</span>', html)  # noqa: E731
    assert sorted(names(client.get("/simulator/phone/").content.decode())) == [
        "Ana Lima",
        "Ben Kurz",
        "Carla Office",
    ]
    assert names(client.get("/simulator/phone/?q=ana").content.decode()) == ["Ana Lima"]
    assert names(client.get("/simulator/phone/?q=%2B49 170 998").content.decode()) == ["Ben Kurz"]
    assert names(client.get("/simulator/phone/?q=office").content.decode()) == ["Carla Office"]
    live = client.get("/simulator/phone/?q=kurz", headers={"HX-Request": "true", "HX-Target": "handset-list"})
    assert live["HX-Push-Url"] == "/simulator/phone/?q=kurz"
    assert names(live.content.decode()) == ["Ben Kurz"] and "<html" not in live.content.decode()
    assert 'data-testid="no-handsets"' in client.get("/simulator/phone/?q=nobody").content.decode()


def test_a_new_handset_opens_with_its_name(client, account, member):
    response = client.post("/simulator/phone/", {"phone": "+49 170 1234567", "name": "Ben"})
    assert response.status_code == 302 and response["Location"] == "/simulator/phone/491701234567/"
    assert store.get_handset("491701234567")["name"] == "Ben"
    assert client.get("/simulator/phone/491701234567/").status_code == 302
    bad = client.post("/simulator/phone/", {"phone": "12", "name": "x"})
    assert bad.status_code == 400
    assert "Enter the number with its country code" in bad.content.decode()


def test_an_empty_message_is_refused_with_a_reason(client, account, subscriber, member):
    response = tap(client, account, action="text", text="   ")
    assert response.status_code == 400
    assert "Type a message first." in response.content.decode()
    assert store.chat(PHONE, account.phone_number_id) == []


def test_pausing_a_template_at_meta_reaches_the_panel(
    client, account, member, django_capture_on_commit_callbacks
):
    stored = store.find_template(account.waba_id, "order_update", "en_US")
    response = client.post("/simulator/templates/", {"template": stored["id"], "action": "pause"})
    assert response.status_code == 302
    settle(account, django_capture_on_commit_callbacks)
    assert order_update(account).status == "PAUSED"
    viewer = MembershipFactory(project=account.project, role=Role.VIEWER).user
    client.force_login(viewer)
    assert (
        client.post("/simulator/templates/", {"template": stored["id"], "action": "approve"}).status_code
        == 403
    )


def test_bootstrap_demo_connects_the_demo_project_to_the_simulator_once(settings, tmp_path, db, capsys):
    settings.VAR_DIR = tmp_path
    settings.SIMULATOR_ENABLED = True
    call_command("bootstrap_demo", url="http://127.0.0.1:8123/")
    out = capsys.readouterr().out
    assert "Control panel: http://127.0.0.1:8123/" in out and "Log in as demo@example.com" in out
    account = WhatsAppAccount.objects.get(project__slug="demo")
    assert account.base_url == "http://127.0.0.1:8123/simulator/graph"
    names = {t["name"] for t in store.list_templates(account.waba_id)[0]}
    assert names == {"hello_world", "autumn_promo", "order_update", "login_code"}
    assert all(t["status"] == "APPROVED" for t in store.list_templates(account.waba_id)[0])
    secret, token = account.app_secret, account.access_token
    call_command("bootstrap_demo", url="http://127.0.0.1:9001/")
    again = WhatsAppAccount.objects.get(project__slug="demo")
    assert (again.pk, again.app_secret, again.access_token) == (account.pk, secret, token)
    assert again.base_url == "http://127.0.0.1:9001/simulator/graph"
    assert store.count_templates(account.waba_id) == (4, 4)  # with hello_world
    assert Project.objects.filter(slug="demo").count() == 1
    call_command(
        "bootstrap_demo", url="http://192.0.2.10:8000/"
    )  # a LAN address: the panel calls itself locally
    assert (
        WhatsAppAccount.objects.get(project__slug="demo").base_url == "http://127.0.0.1:8000/simulator/graph"
    )


def test_handset_identities_are_stable(db):
    assert handsets.bsuid_for(PHONE) == handsets.bsuid_for(PHONE)
    assert handsets.bsuid_for(PHONE).startswith("DE.")
    assert handsets.bsuid_for("16505551234").startswith("US.")
    assert json.dumps(handsets.new_wamid()).startswith('"wamid.HBgL')


def test_the_handset_only_links_web_urls(client, account, subscriber, member):
    tap(client, account, action="text", text="Send me the photo")
    wa_client.GraphClient(account)._request(
        "POST",
        f"{account.phone_number_id}/messages",
        json={
            "messaging_product": "whatsapp",
            "to": PHONE,
            "type": "image",
            "image": {"link": "javascript:alert(document.cookie)", "caption": "Your <b>photo</b>"},
        },
    )
    page = client.get(chat_url(account)).content.decode()
    assert "javascript:" not in page
    assert "Your &lt;b&gt;photo&lt;/b&gt;" in page


def test_opening_the_phone_page_starts_this_processs_webhook_delivery(client, owner, monkeypatch):
    """A handset's first message reaches the webhook without waiting for some Graph API call."""
    from django.urls import reverse

    from whatsapp.simulator import callbacks

    started = []
    monkeypatch.setattr(callbacks, "ensure_pump", lambda: started.append(True))
    client.force_login(owner)
    assert client.get(reverse("simulator:phone")).status_code == 200
    assert started
