"""The subscriber page: profile, inline tags by type, consent ledger, timeline, GDPR export and erase."""

from __future__ import annotations

import json
import re
import zoneinfo
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from controlpanel.models import AuditEntry, Role
from controlpanel.services import SYSTEM
from subscribers import services
from subscribers.models import ConsentChange, ConsentState, Event, Subscriber, TagDefinition
from subscribers.views import TIMELINE_SIZE

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def add(project, phone, **raw):
    data = services.clean_subscriber_data(project, {"phone": phone, **raw})
    subscriber, _ = services.upsert_subscriber(project=project, data=data, actor=SYSTEM)
    return subscriber


def detail_url(s, **params):
    from urllib.parse import urlencode

    url = reverse("subscribers:detail", args=[s.project.slug, s.public_id])
    return url + ("?" + urlencode(params) if params else "")


def tag_url(s, name):
    definition = TagDefinition.objects.get(project=s.project, name=name)
    return reverse("subscribers:tag_row", args=[s.project.slug, s.public_id, str(definition.public_id)])


@pytest.fixture
def marketer(member_of):
    return member_of(Role.MARKETER)


@pytest.fixture
def mc(client, marketer):
    client.force_login(marketer)
    return client


def test_profile_shows_every_field_and_the_open_window(mc, project):
    s = add(
        project,
        "+4915112340001",
        name="Anna",
        email="anna@example.com",
        external_id="crm-1",
        language="de",
        country="DE",
        timezone="Europe/Berlin",
    )
    inbound = timezone.now() - timedelta(hours=2)
    Subscriber.objects.filter(pk=s.pk).update(
        wa_id="4915112340001", bsuid="DE.123abc", last_inbound_at=inbound
    )
    html = mc.get(detail_url(s)).content.decode()
    for text in (
        "+4915112340001",
        "4915112340001",
        "DE.123abc",
        "crm-1",
        "anna@example.com",
        "Europe/Berlin",
    ):
        assert text in html
    # Shown in the project's time zone (Europe/Berlin in the factory).
    local = (inbound + timedelta(hours=24)).astimezone(zoneinfo.ZoneInfo(project.time_zone))
    assert f"24 h window open until {local:%Y-%m-%d %H:%M}" in html


def test_window_closed_after_24_hours(mc, project):
    s = add(project, "+4915112340001")
    Subscriber.objects.filter(pk=s.pk).update(last_inbound_at=timezone.now() - timedelta(hours=25))
    assert "24 h window open" not in mc.get(detail_url(s)).content.decode()


@pytest.mark.parametrize(
    ("tag", "first", "posted", "shown", "stored"),
    [
        ("nickname", "Ann", "Annie", "Annie", "Annie"),
        ("orders", 3, "7", "7", 7),
        ("balance", 1.5, "19.99", "19.99", "19.99"),
        ("birthday", "1990-05-01", "1991-06-02", "1991-06-02", "1991-06-02"),
        ("interests", ["food"], "food, travel,  books", "travel", ["food", "travel", "books"]),
    ],
)
def test_inline_edit_saves_each_type(mc, project, tag, first, posted, shown, stored):
    s = add(project, "+4915112340001", tags={tag: first})
    url = tag_url(s, tag)
    form = mc.get(url + "?mode=edit", headers=HTMX).content.decode()
    expected_input = {"nickname": "text", "orders": "number", "balance": "number", "birthday": "date"}
    assert f'type="{expected_input.get(tag, "text")}"' in form
    response = mc.post(url, {"value": posted}, headers=HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div class="list-group-item tag-row" id="tag-row-')
    assert shown in html
    assert 'name="value"' not in html  # back to display mode
    assert services.tags_of(s)[tag] == stored


def test_inline_edit_boolean_checkbox(mc, project):
    s = add(project, "+4915112340001", tags={"vip": True})
    url = tag_url(s, "vip")
    assert 'type="checkbox"' in mc.get(url + "?mode=edit", headers=HTMX).content.decode()
    mc.post(url, {}, headers=HTMX)  # unchecked box: false
    assert services.tags_of(s)["vip"] is False
    mc.post(url, {"value": "true"}, headers=HTMX)
    assert services.tags_of(s)["vip"] is True


def test_inline_edit_datetime_is_read_in_the_project_time_zone(mc, project):
    s = add(project, "+4915112340001", tags={"last_order": "2026-01-01T10:00:00+00:00"})
    url = tag_url(s, "last_order")
    form = mc.get(url + "?mode=edit", headers=HTMX).content.decode()
    assert 'type="datetime-local"' in form
    assert 'value="2026-01-01T11:00:00"' in form  # 10:00 UTC is 11:00 in Berlin
    mc.post(url, {"value": "2026-07-01T12:30"}, headers=HTMX)
    # Berlin is UTC+2 in July.
    assert services.tags_of(s)["last_order"] == "2026-07-01T10:30:00+00:00"


def test_inline_edit_type_error_is_shown_and_input_kept(mc, project):
    s = add(project, "+4915112340001", tags={"orders": 3})
    url = tag_url(s, "orders")
    response = mc.post(url, {"value": "three"}, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Tag &#x27;orders&#x27; expects integer, got &#x27;three&#x27;." in html
    assert 'value="three"' in html
    assert services.tags_of(s)["orders"] == 3


def test_inline_edit_without_javascript(mc, project):
    s = add(project, "+4915112340001", tags={"orders": 3})
    url = tag_url(s, "orders")
    response = mc.get(url)
    assert response.status_code == 302
    page = mc.get(response["Location"]).content.decode()
    assert 'name="value"' in page and 'value="3"' in page
    response = mc.post(url, {"value": "x"})
    assert response.status_code == 200
    assert "expects integer" in response.content.decode()
    response = mc.post(url, {"value": "4"})
    assert response.status_code == 302
    assert services.tags_of(s)["orders"] == 4


def test_builtin_tags_edit_the_profile(mc, project):
    s = add(project, "+4915112340001", country="DE")
    url = reverse("subscribers:tag_row", args=[project.slug, s.public_id, "country"])
    html = mc.post(url, {"value": "Germany"}, headers=HTMX).content.decode()
    assert "must be a two-letter code" in html
    mc.post(url, {"value": "at"}, headers=HTMX)
    s.refresh_from_db()
    assert s.country == "AT"
    # Platform-maintained tags have no editor.
    phone_url = reverse("subscribers:tag_row", args=[project.slug, s.public_id, "phone"])
    assert mc.post(phone_url, {"value": "+4915112349999"}, headers=HTMX).status_code == 404


def test_builtin_external_id_conflict_is_an_inline_error(mc, project):
    add(project, "+4915112340001", external_id="crm-1")
    s = add(project, "+4915112340002")
    url = reverse("subscribers:tag_row", args=[project.slug, s.public_id, "external_id"])
    html = mc.post(url, {"value": "crm-1"}, headers=HTMX).content.decode()
    assert "Another subscriber has the external id 'crm-1'." in html.replace("&#x27;", "'")


def test_add_an_existing_and_a_new_tag_then_remove_one(mc, project):
    TagDefinition.objects.create(project=project, name="score", type="integer")
    s = add(project, "+4915112340001")
    url = reverse("subscribers:tag_add", args=[project.slug, s.public_id])
    html = mc.post(url, {"name": "score", "value": "abc"}, headers=HTMX).content.decode()
    assert "expects integer" in html
    assert 'value="abc"' in html and 'value="score"' in html  # nothing lost
    html = mc.post(url, {"name": "score", "value": "12"}, headers=HTMX).content.decode()
    assert html.lstrip().startswith('<div class="card mb-3" id="subscriber-tags"')
    mc.post(url, {"name": "Favourite dish", "value": "ramen"}, headers=HTMX)
    assert services.tags_of(s)["score"] == 12
    assert services.tags_of(s)["Favourite dish"] == "ramen"
    assert TagDefinition.objects.get(project=project, name="Favourite dish").type == "string"

    definition = TagDefinition.objects.get(project=project, name="score")
    remove = reverse("subscribers:tag_remove", args=[project.slug, s.public_id, str(definition.public_id)])
    response = mc.post(remove, headers=HTMX)
    assert response.content == b""
    assert "score" not in services.tags_of(s)


def test_consent_opt_in_needs_evidence(mc, project):
    s = add(project, "+4915112340001")
    url = reverse("subscribers:consent", args=[project.slug, s.public_id])
    response = mc.post(url, {"state": "opted_in", "evidence": "  "})
    assert response.status_code == 200
    assert "Opting in needs evidence" in response.content.decode()
    s.refresh_from_db()
    assert s.whatsapp_consent == ConsentState.UNKNOWN
    assert not ConsentChange.objects.filter(subscriber=s).exists()

    response = mc.post(url, {"state": "opted_in", "evidence": "Said yes at the counter"}, follow=True)
    s.refresh_from_db()
    assert s.whatsapp_consent == ConsentState.OPTED_IN
    assert "Said yes at the counter" in response.content.decode()


def test_opt_out_writes_a_ledger_row_with_the_user(mc, project, marketer):
    s = add(project, "+4915112340001", whatsapp_opt_in={"evidence": "web form"})
    url = reverse("subscribers:consent", args=[project.slug, s.public_id])
    response = mc.post(url, {"state": "opted_out", "evidence": "replied STOP by phone"}, follow=True)
    s.refresh_from_db()
    assert s.whatsapp_consent == ConsentState.OPTED_OUT
    row = ConsentChange.objects.filter(subscriber=s).first()
    assert (row.state, row.source, row.evidence, row.actor_user) == (
        "opted_out",
        "panel",
        "replied STOP by phone",
        marketer,
    )
    html = response.content.decode()
    assert "replied STOP by phone" in html
    assert marketer.email in html
    assert "Unsubscribed" in html  # on the timeline


def test_timeline_newest_first_and_paged_by_keyset(mc, project):
    s = add(project, "+4915112340001")  # records "Subscribed"
    base = timezone.now() - timedelta(days=10)
    for i in range(TIMELINE_SIZE + 5):
        services.record_event(
            project=project,
            subscriber=s,
            name="OrderPlaced",
            attributes={"n": i, "cuisine": "asian"},
            occurred_at=base + timedelta(minutes=i),
        )
    html = mc.get(detail_url(s)).content.decode()
    assert html.index("Subscribed") < html.index("OrderPlaced")  # newest first
    assert "n</span>=<span>24" in html
    older = re.search(r'href="([^"]+after=[^"#]+)', html).group(1).replace("&amp;", "&")
    part = mc.get(older, headers={**HTMX, "HX-Target": "subscriber-timeline"}).content.decode()
    assert part.lstrip().startswith('<div class="card" id="subscriber-timeline"')
    shown = re.findall(r"n</span>=<span>(\d+)", part)
    assert shown == ["5", "4", "3", "2", "1", "0"]


def test_export_json_has_tags_events_and_consent(mc, project):
    s = add(
        project, "+4915112340001", name="Anna", tags={"city": "Berlin"}, whatsapp_opt_in={"evidence": "form"}
    )
    services.record_event(project=project, subscriber=s, name="OrderPlaced", attributes={"total": 12.5})
    response = mc.post(reverse("subscribers:export_json", args=[project.slug, s.public_id]))
    assert response["Content-Type"].startswith("application/json")
    assert f'filename="subscriber-{s.public_id}.json"' in response["Content-Disposition"]
    data = json.loads(response.content)
    assert data["phone"] == "+4915112340001"
    assert data["tags"]["city"] == "Berlin"
    assert [e["name"] for e in data["events"]] == ["Subscribed", "OrderPlaced"]
    assert data["consent_history"][0]["evidence"] == "form"
    assert AuditEntry.objects.filter(project=project, action="subscriber.exported").count() == 1


def test_erase_needs_the_typed_phone_then_removes_and_redirects(mc, project):
    s = add(project, "+4915112340001", name="Anna", tags={"city": "Berlin"})
    url = reverse("subscribers:erase", args=[project.slug, s.public_id])
    assert "+4915112340001" in mc.get(url).content.decode()
    response = mc.post(url, {"confirmation": "yes"})
    assert response.status_code == 200
    assert "Type +4915112340001 exactly to confirm." in response.content.decode()
    assert Subscriber.objects.filter(pk=s.pk).exists()

    response = mc.post(url, {"confirmation": "+49 1511 2340001"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("subscribers:list", args=[project.slug])
    assert "Anna was erased" in response.content.decode()
    assert not Subscriber.objects.filter(pk=s.pk).exists()
    assert not Event.objects.filter(project=project).exists()
    assert AuditEntry.objects.filter(project=project, action="subscriber.erased").exists()


def test_subscriber_of_another_project_is_404(mc, project):
    from tests.factories import SubscriberFactory

    foreign = SubscriberFactory()
    url = reverse("subscribers:detail", args=[project.slug, foreign.public_id])
    assert mc.get(url).status_code == 404
    erase = reverse("subscribers:erase", args=[project.slug, foreign.public_id])
    assert mc.post(erase, {"confirmation": foreign.phone}).status_code == 404
    assert Subscriber.objects.filter(pk=foreign.pk).exists()


def test_viewer_reads_but_cannot_change(client, project, viewer):
    s = add(project, "+4915112340001", tags={"orders": 3})
    client.force_login(viewer)
    html = client.get(detail_url(s)).content.decode()
    assert "+4915112340001" in html
    assert "Erase" not in html and "Opt out" not in html and ">Edit<" not in html
    assert client.post(tag_url(s, "orders"), {"value": "4"}).status_code == 403
    assert (
        client.post(reverse("subscribers:export_json", args=[project.slug, s.public_id])).status_code == 403
    )
