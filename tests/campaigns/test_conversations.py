"""Conversations page: the list (order, snippets, badges, search, paging, query count) and the thread
(merge order, ticks per status, inbound types, load older, polling)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.conversations import LIST_SIZE, THREAD_SIZE, conversation_page, thread
from campaigns.models import Message, MessageKind, MessageStatus
from controlpanel.models import Role
from tests.factories import SubscriberFactory
from tests.whatsapp import payloads
from whatsapp.models import WhatsAppAccount
from whatsapp.processing import handle_inbound

from .conftest import make_template

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(project):
    return WhatsAppAccount.objects.create(
        project=project,
        waba_id="102290129340398",
        phone_number_id="106540352242922",
        display_phone_number="15550783881",
        access_token="EAAG-secret-token",
        app_secret="app-secret",
    )


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


def receive(account, subscriber, message: dict, at: datetime) -> None:
    """An inbound message through the real webhook processing (event + service window)."""
    wa_id = subscriber.phone.lstrip("+")
    element = {"from": wa_id, "id": payloads.wamid(), "timestamp": str(int(at.timestamp())), **message}
    handle_inbound(
        account, element, [payloads.contact(wa_id, name=subscriber.name, user_id=f"US.{wa_id}")], []
    )
    subscriber.refresh_from_db()


def text(body: str) -> dict:
    return {"type": "text", "text": {"body": body}}


def sent(subscriber, body: str, at: datetime, status: str = MessageStatus.SENT, **fields) -> Message:
    fields.setdefault("kind", MessageKind.TEXT)
    message = Message.objects.create(
        project=subscriber.project, subscriber=subscriber, body=body, status=status, **fields
    )
    Message.objects.filter(pk=message.pk).update(created_at=at)
    message.refresh_from_db()
    return message


def list_url(project, **params) -> str:
    from urllib.parse import urlencode

    return reverse("campaigns:conversations", args=[project.slug]) + (
        "?" + urlencode(params) if params else ""
    )


def thread_url(subscriber, **params) -> str:
    from urllib.parse import urlencode

    url = reverse("campaigns:conversation", args=[subscriber.project.slug, subscriber.public_id])
    return url + ("?" + urlencode(params) if params else "")


def listed(response) -> list[str]:
    return re.findall(
        r'data-testid="conversation-row" data-subscriber="([0-9a-f-]{36})"', response.content.decode()
    )


def bubbles(response) -> list[str]:
    """(direction, text) of every message bubble, in page order."""
    html = response.content.decode()
    found = re.findall(
        r'data-testid="message-(in|out)".*?class="chat-text[^"]*"[^>]*>(.*?)</div>', html, re.S
    )
    return [f"{d}:{t.strip()}" for d, t in found]


NOW = timezone.now().replace(microsecond=0)


def ago(**kw) -> datetime:
    return NOW - timedelta(**kw)


# --- the list ------------------------------------------------------------------------------------


def test_list_orders_by_last_message_in_either_direction(marketer_client, project, account):
    anna, bob, carla = (SubscriberFactory(project=project, name=n) for n in ("Anna", "Bob", "Carla"))
    receive(account, anna, text("Hello?"), ago(hours=5))
    sent(bob, "Your order shipped", ago(hours=3))
    receive(account, carla, text("Thanks"), ago(hours=4))
    sent(anna, "Hi Anna, how can we help?", ago(hours=1))
    SubscriberFactory(project=project, name="Silent")  # no messages: not a conversation

    response = marketer_client.get(list_url(project))

    assert response.status_code == 200
    assert listed(response) == [str(s.public_id) for s in (anna, bob, carla)]


def test_rows_show_snippet_time_unread_count_and_window(marketer_client, project, account):
    anna, bob = (
        SubscriberFactory(project=project, name="Anna"),
        SubscriberFactory(project=project, name="Bob"),
    )
    sent(anna, "Welcome!", ago(hours=30))
    receive(account, anna, text("Is the shop open today?"), ago(minutes=50))
    receive(account, anna, text("And tomorrow?"), ago(minutes=40))
    receive(
        account,
        bob,
        {"type": "image", "image": {"id": "1", "mime_type": "image/jpeg", "caption": "receipt"}},
        ago(hours=30),
    )
    sent(bob, "Got it, thanks", ago(hours=29), status=MessageStatus.READ)

    page = conversation_page(project=project)
    first, second = page.rows

    assert (first.subscriber, first.direction, first.snippet, first.unread) == (
        anna,
        "in",
        "And tomorrow?",
        2,
    )
    assert first.window.open and first.window.short == "23 h"
    assert (second.subscriber, second.direction, second.snippet, second.status) == (
        bob,
        "out",
        "Got it, thanks",
        "read",
    )
    assert second.unread == 0 and not second.window.open
    html = marketer_client.get(list_url(project)).content.decode()
    assert "And tomorrow?" in html and 'data-testid="unread">2<' in html
    assert "23 h left" in html and "window closed" in html


def test_inbound_media_and_reactions_read_sensibly_in_the_list(project, account):
    a, b, c = (SubscriberFactory(project=project) for _ in range(3))
    receive(account, a, {"type": "image", "image": {"id": "1", "mime_type": "image/jpeg"}}, ago(minutes=3))
    receive(
        account, b, {"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}}, ago(minutes=2)
    )
    receive(account, c, payloads.INBOUND_TYPES["location"], ago(minutes=1))

    snippets = [row.snippet for row in conversation_page(project=project).rows]

    assert snippets == ["Location: Alexanderplatz Berlin", "Reacted 👍", "Photo"]


def test_search_by_name_and_phone(marketer_client, project, account):
    anna = SubscriberFactory(project=project, name="Anna Schmidt", phone="+4915112340001")
    bob = SubscriberFactory(project=project, name="Bob", phone="+4915112340002")
    for s in (anna, bob):
        receive(account, s, text("hi"), ago(minutes=5))

    assert listed(marketer_client.get(list_url(project, q="schmi"))) == [str(anna.public_id)]
    assert listed(marketer_client.get(list_url(project, q="0151 1234 0002"))) == [str(bob.public_id)]
    assert listed(marketer_client.get(list_url(project, q="340002"))) == [str(bob.public_id)]
    assert "No conversation matches" in marketer_client.get(list_url(project, q="zed")).content.decode()


def test_keyset_pages_cover_every_conversation_once(project, account):
    people = [SubscriberFactory(project=project) for _ in range(LIST_SIZE + 7)]
    for i, person in enumerate(people):
        sent(person, f"m{i}", ago(minutes=i))
    # Same instant for two people: the id breaks the tie, nobody is lost between pages.
    sent(people[LIST_SIZE - 1], "tie", ago(minutes=LIST_SIZE))

    first = conversation_page(project=project)
    second = conversation_page(project=project, after=first.next_cursor)

    seen = [r.subscriber.pk for r in first.rows + second.rows]
    assert len(first.rows) == LIST_SIZE and second.next_cursor is None
    assert sorted(seen) == sorted(p.pk for p in people)


def test_a_chatty_subscriber_does_not_hide_the_others(project, account):
    chatty, quiet = SubscriberFactory(project=project), SubscriberFactory(project=project)
    sent(quiet, "old news", ago(days=2))
    for i in range(LIST_SIZE * 20):  # more rows than the first scan rounds read
        sent(chatty, f"spam {i}", ago(seconds=i))

    rows = conversation_page(project=project).rows

    assert [r.subscriber for r in rows] == [chatty, quiet]


def _list_queries(client, project) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(list_url(project)).status_code == 200
    return len(ctx.captured_queries)


def test_list_query_count_does_not_grow_with_conversations(marketer_client, project, account):
    for i in range(3):
        s = SubscriberFactory(project=project)
        receive(account, s, text("hi"), ago(minutes=i))
    few = _list_queries(marketer_client, project)
    for i in range(LIST_SIZE + 10):
        s = SubscriberFactory(project=project)
        receive(account, s, text("hi"), ago(hours=1, minutes=i))
        sent(s, "hello", ago(hours=1, minutes=i, seconds=-30), status=MessageStatus.DELIVERED)
    many = _list_queries(marketer_client, project)
    assert few == many


def test_list_poll_answers_204_until_something_changes(marketer_client, project, account):
    anna = SubscriberFactory(project=project, name="Anna")
    receive(account, anna, text("first"), ago(minutes=10))
    headers = {"HX-Request": "true", "HX-Target": "conversation-list"}
    version = conversation_page(project=project).version

    assert marketer_client.get(list_url(project, v=version), headers=headers).status_code == 204

    receive(account, anna, text("second"), ago(minutes=1))
    response = marketer_client.get(list_url(project, v=version), headers=headers)
    assert response.status_code == 200
    assert "second" in response.content.decode() and "<html" not in response.content.decode()


def test_load_more_appends_rows_and_counts_them(marketer_client, project, account):
    for i in range(LIST_SIZE + 2):
        sent(SubscriberFactory(project=project), f"m{i}", ago(minutes=i))
    first = conversation_page(project=project)
    headers = {"HX-Request": "true", "HX-Target": "conversation-more"}

    response = marketer_client.get(
        list_url(project, after=first.next_cursor, shown=LIST_SIZE), headers=headers
    )

    assert len(listed(response)) == 2
    assert (
        f'id="conversation-shown" name="shown" value="{LIST_SIZE + 2}" hx-swap-oob="true"'
        in response.content.decode()
    )


# --- the thread ----------------------------------------------------------------------------------


def test_thread_merges_both_directions_in_time_order(marketer_client, project, account):
    anna = SubscriberFactory(project=project, name="Anna")
    receive(account, anna, text("Do you deliver to Bonn?"), ago(hours=2))
    sent(anna, "Yes, every Tuesday.", ago(hours=1, minutes=50))
    receive(account, anna, text("Great, thanks"), ago(hours=1, minutes=40))
    sent(anna, "You're welcome!", ago(hours=1, minutes=40))  # same second: the answer comes after
    other = SubscriberFactory(project=project)
    receive(account, other, text("not Anna's"), ago(hours=1))

    response = marketer_client.get(thread_url(anna))

    assert response.status_code == 200
    assert bubbles(response) == [
        "in:Do you deliver to Bonn?",
        "out:Yes, every Tuesday.",
        "in:Great, thanks",
        "out:You&#x27;re welcome!",
    ]
    assert 'data-testid="window-badge" data-open="1"' in response.content.decode()


@pytest.mark.parametrize(
    ("status", "fields", "shown"),
    [
        (MessageStatus.QUEUED, {}, ["tick-queued", "circle"]),
        (MessageStatus.SENDING, {}, ["tick-sending", "circle"]),
        (MessageStatus.SENT, {}, ["tick-sent", "M5 12l5 5l10 -10"]),
        (MessageStatus.DELIVERED, {}, ["tick-delivered", "M2 12l5 5m5 -5l5 -5"]),
        (MessageStatus.READ, {}, ["tick-read", "M2 12l5 5m5 -5l5 -5"]),
        (
            MessageStatus.FAILED,
            {"reason": "The number is not on WhatsApp.", "error_code": 131026},
            ["tick-failed", "Not delivered: The number is not on WhatsApp. (error 131026)"],
        ),
        (
            MessageStatus.SKIPPED,
            {"reason": "The subscriber opted out of WhatsApp messages."},
            ["tick-skipped", "Not sent: The subscriber opted out of WhatsApp messages."],
        ),
    ],
)
def test_ticks_per_status(marketer_client, project, account, status, fields, shown):
    anna = SubscriberFactory(project=project)
    sent(anna, "Hello", ago(minutes=1), status=status, **fields)

    html = marketer_client.get(thread_url(anna)).content.decode()

    bubble = html[html.index('data-testid="message-out"') :]
    bubble = bubble[: bubble.index("</div>\n</div>")]
    for text_ in shown:
        assert text_ in bubble
    assert f'data-status="{status}"' in bubble


def test_template_message_shows_name_header_body_footer_buttons(marketer_client, project, account):
    template = make_template(
        account,
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
            {"type": "BODY", "text": "Hi {{1}}, it ships today."},
            {"type": "FOOTER", "text": "Reply STOP to opt out"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop promotions"}]},
        ],
    )
    anna = SubscriberFactory(project=project)
    sent(
        anna,
        "Hi Anna, it ships today.",
        ago(minutes=1),
        kind=MessageKind.TEMPLATE,
        template=template,
        template_name="order_update",
        template_language="en_US",
        components=[
            {"type": "header", "parameters": [{"type": "text", "text": "SKB-1"}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Anna"}]},
        ],
    )

    html = marketer_client.get(thread_url(anna)).content.decode()

    assert 'data-testid="template-name"' in html and "order_update · en_US" in html
    assert "Order SKB-1" in html and "Hi Anna, it ships today." in html
    assert "Reply STOP to opt out" in html and "<span>Stop promotions</span>" in html


def test_inbound_types_are_shown_sensibly(marketer_client, project, account):
    anna = SubscriberFactory(project=project)
    out = sent(anna, "Pick a slot", ago(minutes=30), wamid="wamid.OUT1")
    for i, key in enumerate(
        ["button", "image", "document", "location", "reaction", "contacts", "unsupported"]
    ):
        receive(account, anna, payloads.INBOUND_TYPES[key], ago(minutes=20 - i))

    html = marketer_client.get(thread_url(anna)).content.decode()

    assert "Tapped a button" in html and "Stop promotions" in html and "<code>STOP_PROMOS</code>" in html
    assert "My receipt" in html and "image/jpeg" in html
    assert "invoice.pdf" in html and "application/pdf" in html
    assert "Alexanderplatz Berlin" in html and "openstreetmap.org/?mlat=52.52&amp;mlon=13.405" in html
    # The reaction points at our message, which is loaded: it is quoted.
    reaction = html[html.index('data-type="reaction"') :]
    assert out.body in reaction[: reaction.index("Reacted")] and "\U0001f600" in reaction
    assert "Shared a contact" in html and "Barbara Johnson" in html
    assert "cannot show here (error 131051)" in html


def test_thread_loads_the_latest_and_older_on_demand(marketer_client, project, account):
    anna = SubscriberFactory(project=project)
    for i in range(THREAD_SIZE + 5):
        sent(anna, f"message {i:02d}", ago(minutes=100 - i))

    latest = thread(project=project, subscriber=anna)
    assert latest.items[0].message.body == "message 05" and latest.has_older
    assert latest.items[-1].message.body == f"message {THREAD_SIZE + 4}"

    headers = {"HX-Request": "true", "HX-Target": "conversation-older"}
    response = marketer_client.get(thread_url(anna, before=latest.oldest_cursor), headers=headers)
    html = response.content.decode()
    assert [b.split(":", 1)[1] for b in bubbles(response)] == [f"message {i:02d}" for i in range(5)]
    assert 'data-testid="load-older"' not in html
    assert 'id="conversation-anchor" name="anchor"' in html and 'hx-swap-oob="true"' in html
    # Without JavaScript the link opens the same view as a page.
    page = marketer_client.get(thread_url(anna, before=latest.oldest_cursor))
    assert len(bubbles(page)) == 5 and "Back to the latest messages" in page.content.decode()


def test_thread_of_a_subscriber_of_another_project_is_404(marketer_client, project, account):
    stranger = SubscriberFactory()
    assert (
        marketer_client.get(thread_url(stranger).replace(stranger.project.slug, project.slug)).status_code
        == 404
    )


def test_polling_partial_returns_the_new_message_after_it_arrives(marketer_client, project, account):
    anna = SubscriberFactory(project=project)
    receive(account, anna, text("Hi"), ago(minutes=5))
    first = thread(project=project, subscriber=anna)
    headers = {"HX-Request": "true", "HX-Target": "conversation-thread"}
    poll = {"v": first.version, "w": "open", "anchor": first.oldest_cursor}

    assert marketer_client.get(thread_url(anna, **poll), headers=headers).status_code == 204

    receive(account, anna, text("Anyone there?"), ago(minutes=1))
    response = marketer_client.get(thread_url(anna, **poll), headers=headers)

    assert response.status_code == 200
    assert bubbles(response) == ["in:Hi", "in:Anyone there?"]
    assert 'id="conversation-composer"' not in response.content.decode()  # window state unchanged


def test_polling_shows_tick_changes(marketer_client, project, account):
    anna = SubscriberFactory(project=project)
    message = sent(anna, "Hello", ago(minutes=1), status=MessageStatus.SENT)
    first = thread(project=project, subscriber=anna)
    headers = {"HX-Request": "true", "HX-Target": "conversation-thread"}
    poll = {"v": first.version, "w": "closed", "anchor": first.oldest_cursor}

    Message.objects.filter(pk=message.pk).update(status=MessageStatus.READ, updated_at=timezone.now())
    response = marketer_client.get(thread_url(anna, **poll), headers=headers)

    assert response.status_code == 200 and 'data-status="read"' in response.content.decode()


def test_poll_swaps_the_composer_when_the_window_opens(marketer_client, project, account):
    anna = SubscriberFactory(project=project)
    sent(anna, "Our offer", ago(days=3))
    first = thread(project=project, subscriber=anna)
    headers = {"HX-Request": "true", "HX-Target": "conversation-thread"}
    receive(account, anna, text("Tell me more"), ago(minutes=1))

    response = marketer_client.get(
        thread_url(anna, v=first.version, w="closed", anchor=first.oldest_cursor), headers=headers
    )
    html = response.content.decode()

    assert 'id="conversation-composer" class="chat-composer" hx-swap-oob="true"' in html
    assert 'data-testid="reply-form"' in html


def test_window_badge_counts_down(project, account):
    anna = SubscriberFactory(project=project)
    receive(account, anna, text("hi"), datetime(2026, 3, 1, 10, 0, tzinfo=UTC))

    at = datetime(2026, 3, 1, 10, 48, 30, tzinfo=UTC)
    assert thread(project=project, subscriber=anna, now=at).window.label == "Window open, 23 h 11 min left"
    late = datetime(2026, 3, 2, 9, 59, 40, tzinfo=UTC)
    assert thread(project=project, subscriber=anna, now=late).window.left == "less than a minute"
    closed = datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC)
    assert thread(project=project, subscriber=anna, now=closed).window.label == "Window closed"


def test_list_partial_highlights_the_conversation_open_in_the_page(marketer_client, project, account):
    anna, bob = (
        SubscriberFactory(project=project, name="Anna"),
        SubscriberFactory(project=project, name="Bob"),
    )
    receive(account, anna, text("hi"), ago(minutes=2))
    receive(account, bob, text("hello"), ago(minutes=1))
    headers = {"HX-Request": "true", "HX-Target": "conversation-list"}

    # The page was loaded on Anna's thread, then htmx opened Bob's: the poll says which is open.
    html = marketer_client.get(thread_url(anna, selected=bob.public_id), headers=headers).content.decode()

    active = re.findall(
        r'class="[^"]*chat-row-link active"[^>]*data-subscriber="([0-9a-f-]{36})"', html, re.S
    )
    assert active == [str(bob.public_id)]
