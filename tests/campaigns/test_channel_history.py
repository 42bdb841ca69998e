"""Email and push rows on the Messages page and in the message admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns import history_views
from campaigns.models import Channel, Message, MessageStatus
from controlpanel.models import User
from tests.factories import SubscriberFactory

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "message-history"}
HTML = "<html><body>" + "A long newsletter. " * 2000 + "</body></html>"


def url(project) -> str:
    return reverse("campaigns:messages", args=[project.slug])


@pytest.fixture
def anna(project):
    return SubscriberFactory(project=project, name="Anna", email="anna@example.com")


def mail(project, subscriber, **kw) -> Message:
    content = {"subject": "Spring sale", "preheader": "20 % off", "html": HTML, "text": "..."}
    return Message.objects.create(
        project=project, subscriber=subscriber, channel=Channel.EMAIL, content=content, **kw
    )


def push(project, subscriber, **kw) -> Message:
    content = {"title": "Your order shipped", "body": "Track it in the app", "data": {}}
    return Message.objects.create(
        project=project, subscriber=subscriber, channel=Channel.PUSH, content=content, **kw
    )


def test_email_and_push_rows_show_subject_title_provider_id_and_opens(owner_client, project, anna):
    now = timezone.now()
    mail(project, anna, status=MessageStatus.SENT, provider_message_id="<m1@mail.example>", opened_at=now,
         clicked_at=now)  # fmt: skip
    push(project, anna, status=MessageStatus.FAILED, error_title="UNREGISTERED", reason="The token is gone.")
    html = owner_client.get(url(project)).content.decode()
    assert html.count('data-testid="history-row"') == 2
    assert "Spring sale" in html and "20 % off" in html and "A long newsletter" not in html
    assert "Your order shipped" in html and "Track it in the app" in html
    assert "&lt;m1@mail.example&gt;" in html
    assert (
        html.count('data-testid="history-opened"') == 1 and html.count('data-testid="history-clicked"') == 1
    )
    assert "UNREGISTERED" in html and "The token is gone." in html
    # A WhatsApp conversation link makes no sense for an email or a push.
    assert reverse("campaigns:conversation", args=[project.slug, anna.public_id]) not in html


def test_an_email_row_names_the_address_it_went_to(owner_client, project):
    anna = SubscriberFactory(project=project, name="Anna", phone="+4915112340001", email="anna@example.com")
    mail(project, anna)
    push(project, anna)
    html = owner_client.get(url(project), **HTMX).content.decode()
    assert html.count('data-testid="history-address"') == 1 and "anna@example.com" in html
    assert "+4915112340001" in html  # the push row keeps the phone


def test_a_journeys_email_says_so(owner_client, project, anna):
    row = mail(project, anna)
    row.content["origin"] = {"journey": "4f6b9c1e-0000-4000-8000-000000000001", "step": "email-1"}
    row.save()
    html = owner_client.get(url(project), **HTMX).content.decode()
    assert ">Journey<" in html and "Single message" not in html


def test_search_finds_emails_by_address_and_by_provider_id(owner_client, project, anna):
    mine = mail(project, anna, provider_message_id="<m1@mail.example>")
    other = SubscriberFactory(project=project, email="ben@example.com")
    push(project, other, provider_message_id="projects/demo/messages/0:1700000000")

    def found(q: str) -> set[int]:
        html = owner_client.get(url(project), {"q": q}, **HTMX).content.decode()
        return {m.pk for m in Message.objects.all() if _shown(m, html)}

    assert found("ANNA@example.com") == {mine.pk}
    assert found("<m1@mail.example>") == {mine.pk}
    assert found("projects/demo/messages/0:1700000000") == {Message.objects.get(subscriber=other).pk}
    assert found("nobody@example.com") == set()


def _shown(message: Message, html: str) -> bool:
    title = message.content.get("subject") or message.content.get("title")
    return title in html


def test_the_page_costs_the_same_queries_with_many_emails_and_loads_no_html(owner_client, project, anna):
    mail(project, anna)
    with CaptureQueriesContext(connection) as few:
        owner_client.get(url(project), **HTMX)
    for i in range(30):
        mail(project, anna, created_at=timezone.now() - timedelta(minutes=i))
        push(project, anna)
    with CaptureQueriesContext(connection) as many:
        owner_client.get(url(project), **HTMX)
    assert len(many) == len(few)
    rows, _ = history_views.history_page(project, history_views.parse_filters({}))
    assert len(rows) == 50 and all("content" in row.get_deferred_fields() for row in rows)


def test_the_admin_lists_subjects_without_loading_the_html(client, project, anna):
    user = User.objects.create_superuser(email="ops@example.com", password="pw-for-tests-123")
    client.force_login(user)
    sent = mail(project, anna, status=MessageStatus.SENT, provider_message_id="<m9@mail.example>")
    push(project, anna)
    page = client.get(reverse("admin:campaigns_message_changelist")).content.decode()
    assert "Spring sale" in page and "Your order shipped" in page
    found = client.get(reverse("admin:campaigns_message_changelist"), {"q": "<m9@mail.example>"})
    assert str(sent.public_id) in found.content.decode()
    detail = client.get(reverse("admin:campaigns_message_change", args=[sent.pk])).content.decode()
    assert "A long newsletter" in detail  # the whole content where one row is looked at
