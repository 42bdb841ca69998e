"""Message history: every outbound message, searchable and filterable, keyset-paged."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns import history_views
from campaigns.models import Campaign, Message
from tests.factories import ProjectFactory, SubscriberFactory

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "message-history"}


def url(project) -> str:
    return reverse("campaigns:messages", args=[project.slug])


def msg(project, subscriber=None, **kw) -> Message:
    return Message.objects.create(
        project=project, subscriber=subscriber or SubscriberFactory(project=project), **kw
    )


def rows(html: str) -> int:
    return html.count('data-testid="history-row"')


@pytest.fixture
def anna(project):
    return SubscriberFactory(project=project, name="Anna", phone="+4915112340001")


def test_outsiders_get_404_and_viewers_may_read(client, outsider, viewer, project):
    msg(project, body="Hello")
    client.force_login(outsider)
    assert client.get(url(project)).status_code == 404
    client.force_login(viewer)
    html = client.get(url(project)).content.decode()
    assert rows(html) == 1 and "Hello" in html


def test_lists_messages_from_campaigns_conversations_and_the_api_newest_first(owner_client, project, anna):
    campaign = Campaign.objects.create(project=project, name="Spring sale", status="running")
    msg(project, anna, body="First, a single message", kind="text")
    msg(project, anna, campaign=campaign, body="Then the campaign", marketing=True)
    msg(ProjectFactory(), body="Another project's message")
    html = owner_client.get(url(project)).content.decode()
    assert rows(html) == 2 and "Another project" not in html
    assert html.index("Then the campaign") < html.index("First, a single message")
    assert "Spring sale" in html and "Single message" in html


def test_search_by_phone_in_any_format_wamid_or_message_id(owner_client, project, anna):
    mine = msg(project, anna, body="For Anna", wamid="wamid.ANNA1")
    other = msg(project, body="For someone else", wamid="wamid.OTHER")
    for q in ("+49 151 1234 0001", "4915112340001", "wamid.ANNA1", str(mine.public_id)):
        html = owner_client.get(url(project), {"q": q}).content.decode()
        assert rows(html) == 1 and "For Anna" in html, q
    html = owner_client.get(url(project), {"q": "wamid.OTHER"}).content.decode()
    assert "For someone else" in html and other.body in html
    html = owner_client.get(url(project), {"q": "no such thing"}).content.decode()
    assert rows(html) == 0 and "No message matches" in html


def test_filters_by_campaign_state_channel_kind_and_date(owner_client, project, anna):
    project.time_zone = "Europe/Berlin"
    project.save()
    campaign = Campaign.objects.create(project=project, name="Spring sale")
    a = msg(project, anna, campaign=campaign, status="failed", marketing=True, body="campaign failed")
    b = msg(project, anna, status="read", body="single read")
    c = msg(project, anna, status="sent", channel="email", body="an email")
    berlin = ZoneInfo("Europe/Berlin")
    # 23:30 in Berlin on 1 Dec is still 1 Dec locally (22:30 UTC).
    Message.objects.filter(pk=a.pk).update(created_at=datetime(2026, 12, 1, 23, 30, tzinfo=berlin))
    Message.objects.filter(pk=b.pk).update(created_at=datetime(2026, 12, 2, 0, 30, tzinfo=berlin))
    Message.objects.filter(pk=c.pk).update(created_at=datetime(2026, 12, 5, 12, 0, tzinfo=berlin))

    def shown(**params) -> set[str]:
        html = owner_client.get(url(project), params, **HTMX).content.decode()
        return {m.body for m in (a, b, c) if m.body in html}

    assert shown(campaign=str(campaign.public_id)) == {"campaign failed"}
    assert shown(campaign="none") == {"single read", "an email"}
    assert shown(state="failed") == {"campaign failed"}
    assert shown(channel="email") == {"an email"}
    assert shown(category="marketing") == {"campaign failed"}
    assert shown(category="transactional") == {"single read", "an email"}
    assert shown(since="2026-12-02") == {"single read", "an email"}
    assert shown(until="2026-12-01") == {"campaign failed"}
    assert shown(since="2026-12-02", until="2026-12-02") == {"single read"}


def test_bad_filters_are_explained_not_a_500(owner_client, project):
    msg(project, body="still listed")
    response = owner_client.get(
        url(project), {"since": "yesterday", "state": "bogus", "campaign": "x", "category": "spam"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Use a date like 2026-12-31." in html and "Unknown state." in html and "Unknown campaign." in html
    assert "still listed" in html


def test_htmx_gets_only_the_table(owner_client, project):
    msg(project, body="hi")
    html = owner_client.get(url(project), **HTMX).content.decode()
    assert html.lstrip().startswith('<div id="message-history"') and "history-filters" not in html


def test_keyset_pages_cover_every_message_once(owner_client, project, anna, monkeypatch):
    monkeypatch.setattr(history_views, "PAGE_SIZE", 2)
    made = [msg(project, anna, body=f"message {i}") for i in range(5)]
    # Two messages at the same instant: the id breaks the tie, nothing is shown twice or skipped.
    same = made[2].created_at
    Message.objects.filter(pk=made[3].pk).update(created_at=same)
    seen, next_url, pages = [], url(project), 0
    while next_url:
        html = owner_client.get(next_url.replace("&amp;", "&"), **HTMX).content.decode()
        seen += [m.body for m in made if f">{m.body}<" in html]
        pages += 1
        next_url = (
            html.split('data-testid="older-messages"')[0].rsplit('href="', 1)[1].split('"')[0]
            if 'data-testid="older-messages"' in html
            else ""
        )
    assert pages == 3
    assert sorted(seen) == sorted(m.body for m in made)


def test_query_count_does_not_grow_with_rows(owner_client, project):
    campaign = Campaign.objects.create(project=project, name="C")
    msg(project, campaign=campaign)
    with CaptureQueriesContext(connection) as few:
        owner_client.get(url(project))
    for _ in range(6):
        msg(project, campaign=Campaign.objects.create(project=project, name="D"))
    with CaptureQueriesContext(connection) as many:
        html = owner_client.get(url(project)).content.decode()
    assert rows(html) == 7 and len(many) == len(few)


def test_the_navigation_links_the_history(owner_client, project):
    html = owner_client.get(reverse("campaigns:list", args=[project.slug])).content.decode()
    assert f'href="{url(project)}"' in html


def test_dates_in_the_project_time_zone(owner_client, project, anna):
    project.time_zone = "America/New_York"
    project.save()
    m = msg(project, anna, body="late")
    Message.objects.filter(pk=m.pk).update(created_at=datetime(2026, 12, 2, 3, 0, tzinfo=ZoneInfo("UTC")))
    html = owner_client.get(url(project), {"until": "2026-12-01"}).content.decode()
    assert "late" in html and "2026-12-01 22:00:00" in html


# --- messages to one person: from the subscriber page, and new conversations -------------------------


def test_subscriber_page_has_a_send_message_button_for_marketers(client, member_of, viewer, project, anna):
    from controlpanel.models import Role

    page = reverse("subscribers:detail", args=[project.slug, anna.public_id])
    thread = reverse("campaigns:conversation", args=[project.slug, anna.public_id])
    client.force_login(member_of(Role.MARKETER))
    html = client.get(page).content.decode()
    assert f'href="{thread}" data-testid="send-message"' in html
    client.force_login(viewer)
    assert 'data-testid="send-message"' not in client.get(page).content.decode()


def test_the_composer_opens_for_someone_never_written_to(owner_client, project, anna):
    from whatsapp.models import WhatsAppAccount

    WhatsAppAccount.objects.create(
        project=project,
        waba_id="1",
        phone_number_id="2",
        display_phone_number="15550001111",
        access_token="t",
    )
    html = owner_client.get(
        reverse("campaigns:conversation", args=[project.slug, anna.public_id])
    ).content.decode()
    # No inbound message, so no open window: the composer offers templates.
    assert 'data-testid="composer" data-mode="template"' in html
    assert "No messages yet." in html


def test_conversation_search_offers_subscribers_without_a_conversation(owner_client, project, anna):
    talked = SubscriberFactory(project=project, name="Annabel", phone="+4915112340002")
    msg(project, talked, body="hello", kind="text")
    SubscriberFactory(project=ProjectFactory(), name="Annika elsewhere")
    conversations = reverse("campaigns:conversations", args=[project.slug])

    html = owner_client.get(conversations, {"q": "Ann"}).content.decode()

    starts = (
        html.split('data-testid="start-conversation"')[1]
        if 'data-testid="start-conversation"' in html
        else ""
    )
    assert f'data-subscriber="{anna.public_id}"' in starts
    assert str(talked.public_id) not in starts  # already has a conversation row above
    assert "Annika" not in html
    by_phone = owner_client.get(conversations, {"q": "0151 1234 0001"}).content.decode()
    assert 'data-testid="start-row"' in by_phone and str(anna.public_id) in by_phone
    assert 'data-testid="start-row"' not in owner_client.get(conversations).content.decode()
