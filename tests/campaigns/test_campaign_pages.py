"""The campaigns list, the live campaign page, its recipients, CSV export and pause/resume/cancel."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns import counters, views
from campaigns.models import AudienceRow, Campaign, Message
from controlpanel.models import Role
from tests.factories import ProjectFactory, SubscriberFactory
from whatsapp.models import WhatsAppAccount

HTMX_LIVE = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "campaign-live"}
HTMX_RECIPIENTS = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "campaign-recipients"}

# The pause/resume/cancel services come from the launch slice (campaigns/lifecycle.py). These
# tests run the real thing and are skipped until that module is part of the build.


def make_campaign(project, **kw) -> Campaign:
    kw.setdefault("name", "Spring sale")
    kw.setdefault("status", "running")
    kw.setdefault("template_name", "spring_promo")
    return Campaign.objects.create(project=project, **kw)


def add(campaign, status: str, n: int = 1, **kw) -> list[Message]:
    rows = [
        Message.objects.create(
            project=campaign.project,
            subscriber=SubscriberFactory(project=campaign.project, **kw.pop("subscriber", {})),
            campaign=campaign,
            status=status,
            **kw,
        )
        for _ in range(n)
    ]
    # Rows written here, not by the send path: the counters the page reads are rebuilt from them.
    counters.recount([campaign.pk])
    return rows


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


def list_url(project) -> str:
    return reverse("campaigns:list", args=[project.slug])


def detail_url(campaign) -> str:
    return reverse("campaigns:detail", args=[campaign.project.slug, campaign.public_id])


# --- the list ----------------------------------------------------------------------------------


def test_no_campaigns_keeps_the_empty_state(owner_client, project):
    html = owner_client.get(list_url(project)).content.decode()
    assert "No campaigns yet" in html
    assert 'data-testid="campaign-list"' not in html


def test_list_shows_status_audience_counts_rates_and_billable(owner_client, project):
    campaign = make_campaign(project, audience_kind="everyone")
    add(campaign, "read", 1, pricing_category="marketing")
    add(campaign, "delivered", 1, pricing_category="marketing")
    add(campaign, "sent", 2)
    add(campaign, "queued", 1)
    html = owner_client.get(list_url(project)).content.decode()
    assert "Spring sale" in html and "Everyone opted in" in html and "Sending" in html
    assert 'data-testid="campaign-total">5<' in html
    assert 'data-testid="campaign-sent">4<' in html
    assert 'data-testid="campaign-delivery-rate">50.0 %<' in html
    assert 'data-testid="campaign-read-rate">50.0 %<' in html
    assert "marketing 2" in html


def test_list_counts_with_a_fixed_number_of_queries(owner_client, project):
    for i in range(2):
        add(make_campaign(project, name=f"C{i}"), "sent", 2)
    with CaptureQueriesContext(connection) as few:
        owner_client.get(list_url(project))
    for i in range(4):
        add(make_campaign(project, name=f"D{i}"), "sent", 2)
    with CaptureQueriesContext(connection) as many:
        html = owner_client.get(list_url(project)).content.decode()
    assert html.count('data-testid="campaign-row"') == 6
    assert len(many) == len(few)


def test_list_filters_by_status_and_pages_by_keyset(owner_client, project, monkeypatch):
    monkeypatch.setattr(views, "LIST_SIZE", 2)
    for i in range(3):
        make_campaign(project, name=f"Run {i}")
    make_campaign(project, name="Finished one", status="completed")
    html = owner_client.get(list_url(project), {"status": "completed"}).content.decode()
    assert "Finished one" in html and "Run 0" not in html
    first = owner_client.get(list_url(project)).content.decode()
    assert first.count('data-testid="campaign-row"') == 2 and "Finished one" in first and "Run 2" in first
    older = first.split('data-testid="older-campaigns"')[0].rsplit('href="', 1)[1].split('"')[0]
    second = owner_client.get(list_url(project) + older.replace("&amp;", "&")).content.decode()
    assert "Run 1" in second and "Run 0" in second and "Run 2" not in second


def test_outsiders_get_404(client, outsider, project):
    campaign = make_campaign(project)
    client.force_login(outsider)
    assert client.get(list_url(project)).status_code == 404
    assert client.get(detail_url(campaign)).status_code == 404


def test_a_campaign_of_another_project_is_404(owner_client, project):
    other = make_campaign(ProjectFactory())
    url = reverse("campaigns:detail", args=[project.slug, other.public_id])
    assert owner_client.get(url).status_code == 404
    export = reverse("campaigns:export", args=[project.slug, other.public_id])
    assert owner_client.get(export).status_code == 404


# --- the campaign page ---------------------------------------------------------------------------


def test_page_shows_counters_funnel_failures_and_skips(owner_client, project):
    campaign = make_campaign(project)
    add(campaign, "read", 2, replied_at=timezone.now(), sent_at=timezone.now())
    add(campaign, "failed", 3, error_code=131026)
    add(campaign, "skipped", 1, reason="No WhatsApp opt-in")
    add(campaign, "queued", 4)
    html = owner_client.get(detail_url(campaign)).content.decode()
    assert 'data-testid="count-queued">4<' in html
    assert 'data-testid="count-read">2<' in html and 'data-testid="count-replied">2<' in html
    assert 'data-testid="count-failed">3<' in html
    assert "not on WhatsApp" in html and "Not retried" in html  # 131026 explained, and what to do
    assert "No WhatsApp opt-in" in html
    assert 'data-testid="progress">6 of 10 processed (60.0 %)<' in html
    assert 'id="campaign-chart-data"' in html
    # A running campaign polls its live partial.
    assert 'hx-trigger="every 2s"' in html


def test_a_campaign_paused_by_an_error_says_why(owner_client, project):
    campaign = make_campaign(
        project, status="paused", status_reason="Payment problem on the WhatsApp Business Account."
    )
    html = owner_client.get(detail_url(campaign)).content.decode()
    assert "Paused by an error" in html and "Payment problem" in html
    assert 'data-testid="resume"' in html and 'data-testid="pause"' not in html


def test_live_partial_polls_while_running_and_stops_when_finished(owner_client, project):
    campaign = make_campaign(project)
    add(campaign, "sent", 1)
    response = owner_client.get(detail_url(campaign), **HTMX_LIVE)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="campaign-live"') and "Recipients" not in html
    assert 'data-testid="count-sent">1<' in html
    Campaign.objects.filter(pk=campaign.pk).update(status="completed")
    response = owner_client.get(detail_url(campaign), **HTMX_LIVE)
    assert response.status_code == 286  # htmx stops polling, and still swaps the final numbers
    assert "every 2s" not in response.content.decode()


def test_live_partial_reloads_the_page_when_the_status_changed(owner_client, project):
    campaign = make_campaign(project, status="scheduled")
    html = owner_client.get(detail_url(campaign)).content.decode()
    assert "?shown=scheduled" in html
    same = owner_client.get(detail_url(campaign), {"shown": "scheduled"}, **HTMX_LIVE)
    assert "HX-Refresh" not in same.headers
    Campaign.objects.filter(pk=campaign.pk).update(status="running")  # the snapshot ran
    changed = owner_client.get(detail_url(campaign), {"shown": "scheduled"}, **HTMX_LIVE)
    assert changed.headers["HX-Refresh"] == "true"


def test_recipients_filter_by_state_and_link_to_the_timeline(owner_client, project):
    campaign = make_campaign(project)
    failed = add(campaign, "failed", 1, error_code=131026, reason="Undeliverable")[0]
    add(campaign, "read", 2)
    response = owner_client.get(detail_url(campaign), {"state": "failed"}, **HTMX_RECIPIENTS)
    html = response.content.decode()
    assert html.count('data-testid="recipient-row"') == 1
    assert failed.subscriber.phone in html and "Undeliverable" in html
    assert reverse("subscribers:detail", args=[project.slug, failed.subscriber.public_id]) in html
    whole = owner_client.get(detail_url(campaign)).content.decode()
    assert whole.count('data-testid="recipient-row"') == 3


def test_recipients_still_to_be_written_are_announced(owner_client, project):
    campaign = make_campaign(project)
    add(campaign, "sent", 1)
    html = owner_client.get(detail_url(campaign), **HTMX_RECIPIENTS).content.decode()
    assert 'data-testid="recipients-waiting"' not in html
    AudienceRow.objects.create(campaign=campaign, subscriber=SubscriberFactory(project=project))
    html = owner_client.get(detail_url(campaign), **HTMX_RECIPIENTS).content.decode()
    assert 'data-testid="recipients-waiting"' in html
    assert html.count('data-testid="recipient-row"') == 1


def test_recipients_are_keyset_paged(owner_client, project, monkeypatch):
    monkeypatch.setattr(views, "RECIPIENTS_SIZE", 2)
    campaign = make_campaign(project)
    rows = add(campaign, "sent", 3)
    html = owner_client.get(detail_url(campaign), **HTMX_RECIPIENTS).content.decode()
    assert html.count('data-testid="recipient-row"') == 2
    assert f"?after={rows[1].pk}" in html
    html = owner_client.get(detail_url(campaign), {"after": rows[1].pk}, **HTMX_RECIPIENTS).content.decode()
    assert html.count('data-testid="recipient-row"') == 1 and rows[2].subscriber.phone in html


def test_page_queries_do_not_grow_with_recipients(owner_client, project):
    campaign = make_campaign(project)
    add(campaign, "sent", 2)
    with CaptureQueriesContext(connection) as few:
        owner_client.get(detail_url(campaign))
    add(campaign, "failed", 5, error_code=131047)
    add(campaign, "skipped", 5, reason="Capped")
    with CaptureQueriesContext(connection) as many:
        owner_client.get(detail_url(campaign))
    assert len(many) == len(few)


def test_viewers_see_the_page_without_controls(client, viewer, project):
    campaign = make_campaign(project)
    client.force_login(viewer)
    html = client.get(detail_url(campaign)).content.decode()
    assert "Spring sale" in html
    assert 'data-testid="pause"' not in html and 'data-testid="export-csv"' not in html


# --- CSV export ---------------------------------------------------------------------------------


def test_csv_export_streams_every_recipient_of_this_campaign(marketer_client, project):
    campaign = make_campaign(project)
    add(
        campaign, "failed", 1, error_code=131026, reason="Undeliverable", subscriber={"name": "=HYPERLINK(1)"}
    )
    add(campaign, "read", 2, sent_at=timezone.now())
    add(make_campaign(project, name="Other"), "sent", 3)
    response = marketer_client.get(reverse("campaigns:export", args=[project.slug, campaign.public_id]))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert len(rows) == 3
    assert sorted(r["status"] for r in rows) == ["failed", "read", "read"]
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["error_code"] == "131026" and failed["reason"] == "Undeliverable"
    assert failed["name"] == "'=HYPERLINK(1)"  # no formula injection in spreadsheets
    assert {r["phone"] for r in rows} >= {failed["phone"]} and failed["phone"].startswith("+")  # data, kept


def test_csv_export_needs_the_marketer_role(client, viewer, project):
    campaign = make_campaign(project)
    client.force_login(viewer)
    assert client.get(reverse("campaigns:export", args=[project.slug, campaign.public_id])).status_code == 403


# --- pause / resume / cancel ------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["pause", "resume", "cancel"])
def test_viewers_cannot_change_a_campaign(client, viewer, project, action):
    campaign = make_campaign(project)
    client.force_login(viewer)
    response = client.post(reverse(f"campaigns:{action}", args=[project.slug, campaign.public_id]))
    assert response.status_code == 403


def test_a_refused_action_is_explained(marketer_client, project):
    campaign = make_campaign(project, status="completed")
    response = marketer_client.post(
        reverse("campaigns:pause", args=[project.slug, campaign.public_id]), follow=True
    )
    assert response.redirect_chain[-1][0] == detail_url(campaign)
    assert "A completed campaign cannot be paused." in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == "completed"


def test_actions_on_another_projects_campaign_are_404(marketer_client, project):
    other = make_campaign(ProjectFactory())
    response = marketer_client.post(reverse("campaigns:pause", args=[project.slug, other.public_id]))
    assert response.status_code == 404
    other.refresh_from_db()
    assert other.status == "running"


def test_pause_resume_cancel_through_the_lifecycle_service(marketer_client, project):
    account = WhatsAppAccount.objects.create(
        project=project, waba_id="1", phone_number_id="pause-resume-1", access_token="t", app_secret="s"
    )
    campaign = make_campaign(project, account=account, snapshot_at=timezone.now())
    queued = add(campaign, "queued", 2)
    marketer_client.post(reverse("campaigns:pause", args=[project.slug, campaign.public_id]))
    campaign.refresh_from_db()
    assert campaign.status == "paused"
    html = marketer_client.get(detail_url(campaign)).content.decode()
    assert 'data-testid="resume"' in html
    marketer_client.post(reverse("campaigns:resume", args=[project.slug, campaign.public_id]))
    campaign.refresh_from_db()
    assert campaign.status == "running"
    marketer_client.post(reverse("campaigns:cancel", args=[project.slug, campaign.public_id]))
    campaign.refresh_from_db()
    assert campaign.status == "cancelled"
    assert {m.status for m in Message.objects.filter(pk__in=[m.pk for m in queued])} == {"skipped"}


# --- the dashboard --------------------------------------------------------------------------------


def test_dashboard_shows_today_and_month_sends_rates_billable_and_paused_campaigns(owner_client, project):
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    from django.core.cache import cache

    cache.clear()
    campaign = make_campaign(project)
    add(campaign, "read", 1, pricing_category="marketing")
    add(campaign, "delivered", 1, pricing_category="marketing")
    add(campaign, "sent", 2, pricing_category="utility")
    add(campaign, "failed", 1)
    tz = ZoneInfo(project.time_zone)
    today = timezone.now().astimezone(tz).date()
    earlier = add(campaign, "read", 1, pricing_category="marketing")[0]
    if today.day > 1:  # an earlier day of this month counts for the month, not for today
        first = datetime.combine(today.replace(day=1), time(12), tz)
        Message.objects.filter(pk=earlier.pk).update(created_at=first)
    make_campaign(
        project,
        name="Autumn",
        status="paused",
        status_reason="The template was paused by Meta for low quality.",
    )
    make_campaign(project, name="Held by hand", status="paused")

    html = owner_client.get(reverse("controlpanel:dashboard", args=[project.slug])).content.decode()

    def card(label: str) -> str:
        return html.split(label)[1].split('class="card-body"')[0]

    today_sent = 4 if today.day > 1 else 5
    assert f">{today_sent}<" in card("Sent today")
    assert ">5<" in card(f"Sent in {today:%B}")
    assert "delivered 50.0 % · read 50.0 %" in card("Sent today")
    assert "marketing 3 · utility 2" in card(f"Billable in {today:%B}")
    assert "Campaign “Autumn” paused itself" in html and "low quality" in html
    assert "Held by hand" not in html  # paused by a person: no alarm
