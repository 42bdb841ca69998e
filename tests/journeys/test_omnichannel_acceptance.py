"""Issue 11's acceptance scenarios 1-3 through the real modules, end to end (no stand-ins):

the journey built in the panel (the builder's save and activate endpoints) -> the durable feed ->
the ``journeys`` consumer and ``engine.tick`` -> ``mail.services.send_email`` /
``push.services.send_push`` / ``campaigns.services.send_whatsapp`` (the one outbox) -> the channel
sender (``campaigns.channel_sending``: dispatch, ``send_batch``) -> the transports:

- email: the project's mailbox backend (embedded mode); the ``MailboxMessage`` carries the real
  open pixel and unsubscribe URLs, fetched here with the test client as a person's mail client would;
- push: FCM v1 requests over real HTTP to the push simulator of this process's live server
  (``PUSH_SIMULATOR_URL`` points at it; the transport speaks HTTP itself, so it needs a socket); the
  app's open is ``POST /api/v1/push/opened`` with the message id the simulator received;
- WhatsApp: the Cloud API simulator in process (``testing.DjangoAdapter``) with its approved
  marketing template ``autumn_promo``.

The workers' actors are intercepted (``QUEUED``) and run in order by ``run_queued``; the scheduler's
ticks are called with a simulated ``now``: no test waits for a timer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections import Counter
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from campaigns import channel_policy, channel_sending, sending
from campaigns.models import Channel, Message, MessageStatus
from campaigns.services import SendRefused
from controlpanel.services import Actor, create_api_key
from journeys import engine, services, stats
from journeys.models import Journey, JourneyRun, JourneyStatus, RunState
from mail import services as mail_services
from mail.models import EmailSettings, EmailTemplate, MailboxMessage
from push import fcm
from push.models import PushTemplate, SimulatedPush
from subscribers import feed
from subscribers.models import ConsentChange, ConsentSource, ConsentState, Event, Subscriber
from subscribers.services import NewEvent, record_events, update_subscriber
from tests.factories import SubscriberFactory
from tests.journeys.test_acceptance import QUEUED, _queue, run_queued  # noqa: F401 (_queue: autouse)
from whatsapp import ratelimit
from whatsapp.models import WhatsAppAccount
from whatsapp.services import sync_templates
from whatsapp.simulator import services as wa_simulator
from whatsapp.simulator import store, testing

pytestmark = pytest.mark.django_db(transaction=True)

ACTOR = Actor(label="acceptance test")


# --- the platform in embedded mode ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _queue_channels(monkeypatch):
    """Issue 10's ``_queue`` keeps what the code enqueues for the workers in ``QUEUED`` (not on
    the broker: CI runs Redis) for ``run_queued``; this adds the channel sender's and the API
    start's actors."""
    from campaigns import actors
    from journeys import entry_actors

    for actor in (
        actors.dispatch_channel_messages,
        actors.send_channel_messages,
        entry_actors.carry_out_start_request,
    ):
        monkeypatch.setattr(actor, "send", lambda *a, _n=actor.actor_name, **k: QUEUED.append((_n, a, k)))


@pytest.fixture
def fcm_client(monkeypatch):
    """A push client of this test's own (loop and keep-alive pool), its connections closed at the
    end: a kept-alive connection holds a live server thread, and that thread's database session
    would outlive the test.

    On SQLite the live server's threads share the test's one in-memory connection (Django's live
    server does that so they see the test's rows), and two requests on it at once break it
    ("bad parameter or other API misuse"): one push in flight there."""
    made = fcm.FcmClient(1 if connection.vendor == "sqlite" else 8)
    monkeypatch.setattr(fcm, "client", lambda: made)
    yield made

    async def close() -> None:
        for origin in made.origins.values():
            for conn in origin.idle:
                conn.close()
                await conn.writer.wait_closed()

    asyncio.run_coroutine_threadsafe(close(), made.loop).result(5)
    made.loop.call_soon_threadsafe(made.loop.stop)
    made.thread.join(5)
    # The server threads those connections held end now, closing their database sessions.
    deadline = time.monotonic() + 5
    for thread in threading.enumerate():
        if thread.name.endswith("(process_request_thread)"):
            thread.join(max(0.0, deadline - time.monotonic()))


@pytest.fixture
def platform(settings, tmp_path, monkeypatch, live_server, fcm_client):
    """Both simulators mounted, the push transport pointed at the live server's FCM-shaped URL, our
    Graph client talking to the WhatsApp simulator in process."""
    settings.SIMULATOR_ENABLED = True
    settings.ROOT_URLCONF = "push.simulator.full_urls"
    settings.PUSH_SIMULATOR_URL = f"{live_server.url}/simulator/fcm"
    settings.PUBLIC_BASE_URL = "https://panel.example.com"  # where the email links point
    settings.SIMULATOR_STATE_DIR = str(tmp_path / "simulator")
    settings.SIMULATOR_DELIVER_CALLBACKS = False
    settings.SIMULATOR_APPROVAL_SECONDS = 0
    settings.SIMULATOR_FAILURE_RATE = 0
    settings.SIMULATOR_DUPLICATE_RATE = 0
    settings.REDIS_URL = ""
    # WhatsApp POSTs on this thread: the in-process simulator then uses the test's database session
    # (a pool thread would open a session of its own that outlives the test).
    settings.WHATSAPP_SEND_THREADS = 0
    ratelimit._limiter.cache_clear()
    testing.route_graph_client(monkeypatch)
    feed.ensure_cursor("journeys")  # before any event: a new consumer starts at the feed's end
    yield
    store.close()
    ratelimit._limiter.cache_clear()


@pytest.fixture
def account(project, platform):
    made = WhatsAppAccount.objects.create(
        project=project,
        waba_id="300000000000011",
        phone_number_id="300000000000012",
        display_phone_number="15550001234",
        access_token="EAAG-omni-token",
        app_secret="omni-app-secret",
        base_url="http://testserver/simulator/graph",
    )
    wa_simulator.seed_templates(waba_id=made.waba_id)  # approved, autumn_promo (MARKETING) among them
    sync_templates(account=made)
    return made


@pytest.fixture
def templates(project):
    push = PushTemplate.objects.create(
        project=project,
        name="cart_push",
        title="Still hungry, {{ subscriber.name }}?",
        body="Your cart waits.",
    )
    email = EmailTemplate.objects.create(
        project=project,
        name="cart_reminder",
        subject="{{ subscriber.name }}, your cart is waiting",
        html='<p>Come back!</p><p><a href="https://shop.example.com/cart">Cart</a></p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
    )
    return push, email


@pytest.fixture
def api_key(project):
    return create_api_key(project=project, name="shop app", actor=ACTOR)[1]


def api(client, key: str, path: str, body: dict):
    return client.post(
        f"/api/v1/{path}", body, content_type="application/json", headers={"Authorization": f"Bearer {key}"}
    )


def person(project, name: str, n: int) -> Subscriber:
    return SubscriberFactory(
        project=project,
        name=name,
        phone=f"+49151234560{n:02d}",
        email=f"{name.lower()}@example.com",
        email_consent=ConsentState.OPTED_IN,
        whatsapp_consent=ConsentState.OPTED_IN,
    )


def send_due() -> None:
    """The schedulers' dispatch ticks (every second in production) and the sends they enqueue."""
    sending.dispatch()
    channel_sending.dispatch()
    run_queued()


def pump() -> int:
    return feed.pump("journeys")


def settle() -> None:
    """What the workers do after an event: the consumer, its kicks, the sends."""
    pump()
    run_queued()
    send_due()


def run_of(journey: Journey, subscriber: Subscriber) -> JourneyRun:
    return JourneyRun.objects.get(journey=journey, subscriber=subscriber)


def sent_by_channel(subscriber: Subscriber) -> Counter:
    rows = Message.objects.filter(subscriber=subscriber)
    assert set(rows.values_list("status", flat=True)) <= {MessageStatus.SENT}, list(
        rows.values("status", "reason")
    )
    return Counter(rows.values_list("channel", flat=True))


def mailbox_of(subscriber: Subscriber) -> list[MailboxMessage]:
    return list(MailboxMessage.objects.filter(to__contains=subscriber.email).order_by("pk"))


def link(html: str, path: str) -> str:
    """The path of the email's first URL under ``path`` (as a mail client would fetch it)."""
    found = re.search(r"(https://panel\.example\.com" + re.escape(path) + r'[^"\s<>]+)', html)
    assert found, f"no {path} link in the email"
    return urlsplit(found.group(1).replace("&amp;", "&")).path


# --- 1. the omnichannel journey built in the panel -------------------------------------------------


def build_in_panel(client, project, push: PushTemplate, email: EmailTemplate) -> Journey:
    """New journey, the canvas's save (what its JSON looks like: templates by public id, positions in
    ``ui``), then activate: the builder's endpoints."""
    response = client.post(f"/p/{project.slug}/journeys/new/", {"name": "Come back (omnichannel)"})
    assert response.status_code == 302
    journey = Journey.objects.get(project=project)
    definition = {
        "name": "Come back (omnichannel)",
        "entry": {"type": "event", "event": "CartAbandoned"},
        "settings": {"reentry": "after_exit"},
        "steps": [
            {"id": "reach", "type": "reachability", "channels": ["push", "email", "whatsapp"],
             "push": "push", "email": "email", "whatsapp": "whatsapp", "none": None,
             "ui": {"x": 40, "y": 40}},
            {"id": "push", "type": "send_push", "template": str(push.public_id), "next": "push_opened",
             "ui": {"x": 300, "y": 40}},
            {"id": "push_opened", "type": "wait_event",
             "events": [{"event": "PushOpened", "of_step": "push", "next": "bye"}],
             "timeout": "PT1H", "timeout_next": "email", "ui": {"x": 560, "y": 40}},
            {"id": "bye", "type": "exit", "ui": {"x": 820, "y": 0}},
            {"id": "email", "type": "send_email", "template": str(email.public_id), "next": "email_opened",
             "ui": {"x": 820, "y": 120}},
            {"id": "email_opened", "type": "wait_event",
             "events": [{"event": "EmailOpened", "of_step": "email", "next": None}],
             "timeout": "P1D", "timeout_next": "whatsapp", "ui": {"x": 1080, "y": 120}},
            {"id": "whatsapp", "type": "whatsapp_template",
             "template": {"name": "autumn_promo", "language": "en_US"},
             "bindings": {"body": {"1": "{{ subscriber.name }}", "2": "AUTUMN20"}},
             "next": None, "ui": {"x": 1340, "y": 120}},
        ],
    }  # fmt: skip
    base = f"/p/{project.slug}/journeys/{journey.public_id}"
    body = json.dumps({"definition": definition})
    saved = client.post(f"{base}/save/", body, content_type="application/json")
    assert saved.status_code == 200, saved.content
    activated = client.post(f"{base}/activate/", body, content_type="application/json")
    assert activated.status_code == 200, activated.content
    journey.refresh_from_db()
    assert (journey.status, journey.version) == (JourneyStatus.ACTIVE, 1)
    return journey


def test_scenario_1_push_then_email_then_whatsapp_each_person_takes_their_path(
    owner_client, project, account, templates, api_key
):
    journey = build_in_panel(owner_client, project, *templates)
    a, b, c, d = (person(project, name, n) for n, name in enumerate(("Ana", "Ben", "Cem", "Dora")))
    app = Client()
    for n, sub in enumerate((a, b, c)):  # the app registers each install's token; Dora has no app
        device = {"subscriber": {"id": str(sub.public_id)}, "token": f"fcm-token-{n}", "platform": "android"}
        registered = api(app, api_key, "devices", device)
        assert registered.status_code == 201, registered.content

    t0 = timezone.now()
    record_events(project=project, events=[NewEvent(s.pk, "CartAbandoned", {}) for s in (a, b, c, d)])
    settle()  # entries, the first tick (the consumer's kick), the pushes and Dora's email go out
    waiting = {s.name: (run_of(journey, s).state, run_of(journey, s).step_id) for s in (a, b, c, d)}
    assert waiting == {
        "Ana": (RunState.WAITING, "push_opened"),
        "Ben": (RunState.WAITING, "push_opened"),
        "Cem": (RunState.WAITING, "push_opened"),
        "Dora": (RunState.WAITING, "email_opened"),  # no device: straight to the email
    }
    # The pushes reached the simulator over HTTP (FCM v1 shape, our message id in the data).
    received = {p.token: p.payload for p in SimulatedPush.objects.all()}
    assert set(received) == {"fcm-token-0", "fcm-token-1", "fcm-token-2"}
    assert received["fcm-token-0"]["notification"]["title"] == "Still hungry, Ana?"
    assert [m.subject for m in mailbox_of(d)] == ["Dora, your cart is waiting"]

    # Ana taps her push: the app reports it with the id the push carried.
    opened = api(app, api_key, "push/opened", {"message": received["fcm-token-0"]["data"]["message_id"],
                                               "token": "fcm-token-0"})  # fmt: skip
    assert opened.status_code == 200, opened.content
    settle()
    run = run_of(journey, a)
    assert (run.state, run.exit_reason) == (RunState.DONE, "exit_step")

    # Nothing moves before the hour is up on the simulated clock; then Ben and Cem get the email.
    hour = run_of(journey, b).wake_at
    assert hour == run_of(journey, c).wake_at and hour - t0 < timedelta(hours=1, minutes=1)
    assert engine.tick(now=hour - timedelta(minutes=1)) == 0
    assert engine.tick(now=hour + timedelta(seconds=1)) == 2
    send_due()
    assert [m.subject for m in mailbox_of(b)] == ["Ben, your cart is waiting"]
    assert len(mailbox_of(c)) == 1 and not mailbox_of(a)

    # Ben's mail client loads the images: the open pixel in the mailbox's HTML.
    pixel = Client().get(link(mailbox_of(b)[0].html, "/email/o/"))
    assert pixel.status_code == 200 and pixel["Content-Type"] == "image/gif"
    settle()
    run = run_of(journey, b)
    assert (run.state, run.exit_reason) == (RunState.DONE, "completed")

    # A day later (simulated): Cem and Dora opened nothing, they get the WhatsApp template.
    day = max(run_of(journey, s).wake_at for s in (c, d))
    assert engine.tick(now=run_of(journey, d).wake_at - timedelta(minutes=1)) == 0
    assert engine.tick(now=day + timedelta(seconds=1)) == 2
    run_queued()
    send_due()
    for sub in (c, d):
        run = run_of(journey, sub)
        assert (run.state, run.exit_reason) == (RunState.DONE, "completed")
        whatsapp = Message.objects.get(subscriber=sub, channel=Channel.WHATSAPP)
        assert whatsapp.template_name == "autumn_promo" and whatsapp.wamid.startswith("wamid.")
        assert whatsapp.body.startswith(f"Hi {sub.name}, our autumn sale is on!")

    # Messages per person and channel: Ana got nothing after her push, ever.
    assert sent_by_channel(a) == {Channel.PUSH: 1}
    assert sent_by_channel(b) == {Channel.PUSH: 1, Channel.EMAIL: 1}
    assert sent_by_channel(c) == {Channel.PUSH: 1, Channel.EMAIL: 1, Channel.WHATSAPP: 1}
    assert sent_by_channel(d) == {Channel.EMAIL: 1, Channel.WHATSAPP: 1}
    assert engine.tick(now=day + timedelta(days=30)) == 0
    # Each run's steps and the outlet it left by (the engine writes a tick's visits in one batch).
    paths = {s.name: dict(run_of(journey, s).steps.values_list("step_id", "outlet")) for s in (a, b, c, d)}
    assert paths == {
        "Ana": {"reach": "push", "push": "next", "push_opened": "event1", "bye": ""},
        "Ben": {"reach": "push", "push": "next", "push_opened": "timeout", "email": "next",
                "email_opened": "event1"},
        "Cem": {"reach": "push", "push": "next", "push_opened": "timeout", "email": "next",
                "email_opened": "timeout", "whatsapp": "next"},
        "Dora": {"reach": "email", "email": "next", "email_opened": "timeout", "whatsapp": "next"},
    }  # fmt: skip
    # The statistics page's per-step counters.
    counts = stats.step_counts(journey)
    assert (counts["push"]["sent"], counts["push"]["opened"]) == (3, 1)
    assert (counts["email"]["sent"], counts["email"]["opened"]) == (3, 1)
    assert counts["whatsapp"]["sent"] == 2
    assert Event.objects.filter(name="PushOpened").count() == 1
    assert Event.objects.filter(name="EmailOpened").count() == 1


# --- 2. unsubscribe ---------------------------------------------------------------------------------


def send_one_email(project, sub: Subscriber, template: EmailTemplate) -> MailboxMessage:
    message = mail_services.send_email(project=project, subscriber=sub, template=template, actor=ACTOR)
    send_due()
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT, message.reason
    return MailboxMessage.objects.get(message=message)


@pytest.mark.parametrize("how", ["page", "one-click"])
def test_scenario_2_the_unsubscribe_link_stops_later_marketing_emails(project, platform, templates, how):
    _, template = templates
    eva = person(project, "Eva", 1)
    email = send_one_email(project, eva, template)
    assert email.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    recipient = Client(enforce_csrf_checks=True)  # a browser or a mail client: no session
    if how == "page":
        url = link(email.html, "/email/u/")
        page = recipient.get(url)
        assert page.status_code == 200 and not ConsentChange.objects.exists()  # a GET changes nothing
        response = recipient.post(url, {"csrfmiddlewaretoken": page.context["csrf_token"]})
    else:  # RFC 8058: the mail client POSTs to the header's URL, without cookies
        header = email.headers["List-Unsubscribe"].strip("<>")
        assert header.startswith("https://panel.example.com/email/u/")
        response = recipient.post(urlsplit(header).path, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and b'data-testid="unsubscribed"' in response.content

    change = ConsentChange.objects.get(subscriber=eva)
    assert (change.channel, change.state, change.source) == (
        "email",
        "opted_out",
        ConsentSource.UNSUBSCRIBE_LINK,
    )
    assert str(email.message.public_id) in change.evidence and "Eva, your cart is waiting" in change.evidence
    # A later marketing email is refused with the opt-out reason, nothing written ...
    eva.refresh_from_db()
    with pytest.raises(SendRefused) as refused:
        mail_services.send_email(project=project, subscriber=eva, template=template, actor=ACTOR)
    assert str(refused.value) == channel_policy.EMAIL_OPTED_OUT
    # ... and a journey's email step skips her with that reason.
    journey = email_journey(project, template)
    record_events(project=project, events=[NewEvent(eva.pk, "CartAbandoned", {})])
    settle()
    step = run_of(journey, eva).steps.get(step_id="email")
    assert step.detail == {
        "template": "cart_reminder",
        "outcome": "skipped",
        "reason": channel_policy.EMAIL_OPTED_OUT,
    }
    assert MailboxMessage.objects.count() == 1 and Message.objects.filter(subscriber=eva).count() == 1


def email_journey(project, template: EmailTemplate) -> Journey:
    made = services.create_journey(
        project=project,
        data={
            "name": "Cart email",
            "entry": {"type": "event", "event": "CartAbandoned"},
            "settings": {"reentry": "any_time"},
            "steps": [{"id": "email", "type": "send_email", "template": template.name, "next": None}],
        },
        actor=ACTOR,
    )
    return services.activate(journey=made, actor=ACTOR)


# --- 3. bounces ---------------------------------------------------------------------------------------

WEBHOOK_SECRET = "hook:omni-s3cret-s3cret"


def postmark_bounce(message: Message, address: str) -> dict:
    return {
        "RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "TypeCode": 1,
        "Name": "Hard bounce", "Tag": "", "MessageID": message.provider_message_id, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": address, "From": "shop@example.com", "BouncedAt": "2026-12-01T10:00:00Z",
        "DumpAvailable": True, "Inactive": True, "CanActivate": True, "Subject": "Your cart",
        "MessageStream": "outbound",
    }  # fmt: skip


def test_scenario_3_a_bounced_address_is_not_mailed_again_until_it_changes(
    client, project, platform, templates
):
    _, template = templates
    journey = email_journey(project, template)
    fay = person(project, "Fay", 2)
    record_events(project=project, events=[NewEvent(fay.pk, "CartAbandoned", {})])
    settle()
    first = Message.objects.get(subscriber=fay)
    assert first.status == MessageStatus.SENT and first.provider_message_id

    # The project's provider reports the hard bounce at its tracking webhook, with the secret.
    EmailSettings.objects.update_or_create(project=project, defaults={"webhook_secret": WEBHOOK_SECRET})
    response = client.post(
        f"/webhooks/email/{project.public_id}/postmark/tracking/",
        data=json.dumps(postmark_bounce(first, fay.email)),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(WEBHOOK_SECRET.encode()).decode(),
    )
    assert response.status_code == 200, response.content
    fay.refresh_from_db()
    first.refresh_from_db()
    assert (first.status, first.reason) == (MessageStatus.FAILED, "The email bounced.")
    assert fay.email_undeliverable_at is not None and "unable to deliver" in fay.email_undeliverable_reason
    bounced = Event.objects.get(subscriber=fay, name="EmailBounced")
    assert bounced.attributes["message"] == str(first.public_id) and bounced.attributes["bounce"] == "hard"
    settle()
    assert stats.step_counts(journey)["email"]["bounced"] == 1

    # The next email step for her is skipped with the undeliverable reason; nothing is sent.
    record_events(project=project, events=[NewEvent(fay.pk, "CartAbandoned", {})])
    settle()
    second = JourneyRun.objects.filter(journey=journey, subscriber=fay).latest("pk")
    assert second.steps.get(step_id="email").detail["reason"] == channel_policy.EMAIL_UNDELIVERABLE
    assert Message.objects.filter(subscriber=fay).count() == 1 and MailboxMessage.objects.count() == 1

    # A new address clears the mark: the next email goes out.
    update_subscriber(project=project, subscriber=fay, changes={"email": "fay@new.example.com"}, actor=ACTOR)
    fay.refresh_from_db()
    assert fay.email_undeliverable_at is None
    record_events(project=project, events=[NewEvent(fay.pk, "CartAbandoned", {})])
    settle()
    assert [m.to for m in MailboxMessage.objects.order_by("pk")][-1].endswith("fay@new.example.com")
    statuses = list(Message.objects.filter(subscriber=fay).order_by("pk").values_list("status", flat=True))
    assert statuses == [MessageStatus.FAILED, MessageStatus.SENT]  # the bounced one, the new address's
