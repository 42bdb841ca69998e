"""The events page (latest events, filters, keyset pages) and per-event statistics."""

from __future__ import annotations

import json
import re
import zoneinfo
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from controlpanel.models import Role
from controlpanel.services import SYSTEM
from subscribers import services

pytestmark = pytest.mark.django_db


def add(project, phone, **raw):
    data = services.clean_subscriber_data(project, {"phone": phone, **raw})
    subscriber, _ = services.upsert_subscriber(project=project, data=data, actor=SYSTEM)
    return subscriber


def event(project, subscriber, name, when=None, **attributes):
    return services.record_event(
        project=project, subscriber=subscriber, name=name, attributes=attributes, occurred_at=when
    )


@pytest.fixture
def vc(client, viewer):
    client.force_login(viewer)  # reading events needs no more than the viewer role
    return client


def events_url(project, **params):
    from urllib.parse import urlencode

    url = reverse("subscribers:events", args=[project.slug])
    return url + ("?" + urlencode(params) if params else "")


def shown(response) -> list[str]:
    """(event name) of each listed row, in order."""
    html = response.content.decode()
    if 'data-testid="event-table"' not in html:
        return []
    table = html[html.index('data-testid="event-table"') : html.index("</table>")]
    return re.findall(r"/subscribers/events/([^/]+)/\">", table)


def test_latest_events_filtered_by_name_and_subscriber(vc, project):
    anna = add(project, "+4915112340001", external_id="crm-1")
    bob = add(project, "+4915112340002")
    event(project, anna, "OrderPlaced", cuisine="asian")
    event(project, bob, "OrderPlaced", cuisine="italian")
    event(project, bob, "CartAbandoned")

    # Two "Subscribed" from the adds, newest first.
    assert shown(vc.get(events_url(project))) == [
        "CartAbandoned",
        "OrderPlaced",
        "OrderPlaced",
        "Subscribed",
        "Subscribed",
    ]
    assert shown(vc.get(events_url(project, name="OrderPlaced"))) == ["OrderPlaced", "OrderPlaced"]
    # By phone in national format, by external id and by subscriber id.
    for ref in ("0151 1234 0002", str(bob.public_id)):
        assert shown(vc.get(events_url(project, subscriber=ref))) == [
            "CartAbandoned",
            "OrderPlaced",
            "Subscribed",
        ]
    assert shown(vc.get(events_url(project, subscriber="crm-1", name="OrderPlaced"))) == ["OrderPlaced"]
    html = vc.get(events_url(project, subscriber="crm-1", name="OrderPlaced")).content.decode()
    assert "cuisine</span>=<span>asian" in html
    assert "italian" not in html


def test_unknown_subscriber_is_an_error_not_everyone(vc, project):
    anna = add(project, "+4915112340001")
    event(project, anna, "OrderPlaced")
    response = vc.get(events_url(project, subscriber="+4915112349999"))
    assert shown(response) == []
    assert "No subscriber has the phone number, id or external id" in response.content.decode()


def test_events_page_by_keyset(vc, project, monkeypatch):
    monkeypatch.setattr("subscribers.views.EVENTS_PAGE_SIZE", 3)
    anna = add(project, "+4915112340001")
    base = timezone.now() - timedelta(hours=1)
    for i in range(7):
        event(project, anna, "Ping", when=base + timedelta(minutes=i % 3), n=i)  # equal times: ties by id
    seen = []
    url = events_url(project, name="Ping")
    while url:
        html = vc.get(url).content.decode()
        seen += re.findall(r"n</span>=<span>(\d+)", html)
        match = re.search(r'rel="next" href="([^"]+)"', html)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert sorted(seen, key=int) == [str(i) for i in range(7)]
    assert len(seen) == len(set(seen))


def test_htmx_gets_the_results_partial(vc, project):
    response = vc.get(events_url(project), headers={"HX-Request": "true", "HX-Target": "event-results"})
    assert response.content.decode().lstrip().startswith('<div class="card" id="event-results">')


def test_event_statistics(vc, project):
    anna = add(project, "+4915112340001")
    bob = add(project, "+4915112340002")
    now = timezone.localtime(timezone.now(), timezone=zoneinfo.ZoneInfo(project.time_zone))
    noon_today = now.replace(hour=12, minute=0, second=0, microsecond=0)
    two_days_ago = noon_today - timedelta(days=2)
    event(project, anna, "OrderPlaced", when=noon_today, cuisine="asian", total=10)
    event(project, anna, "OrderPlaced", when=noon_today, cuisine="asian", total=12)
    event(project, bob, "OrderPlaced", when=two_days_ago, cuisine="italian", total=8)
    event(project, bob, "OrderPlaced", when=noon_today - timedelta(days=60), cuisine="greek", total=9)

    url = reverse("subscribers:event_stats", args=[project.slug, "OrderPlaced"])
    html = vc.get(url).content.decode()
    assert re.search(r'data-testid="stat-total">3<', html)
    assert re.search(r'data-testid="stat-unique">2<', html)
    assert re.search(r'data-testid="stat-all-time">4<', html)
    chart = json.loads(
        re.search(r'<script id="event-chart" type="application/json">(.*?)</script>', html).group(1)
    )
    assert len(chart["labels"]) == 30
    assert chart["labels"][-1] == noon_today.date().isoformat()
    assert chart["data"][-1] == 2
    assert chart["data"][-3] == 1
    assert sum(chart["data"]) == 3
    top = html[html.index("Top <code>cuisine</code>") :]
    assert top.index("asian") < top.index("italian")
    assert "greek" not in top  # outside the 30 days

    html = vc.get(url + "?days=90").content.decode()
    assert re.search(r'data-testid="stat-total">4<', html)
    assert "greek" in html


def test_event_stats_for_unknown_event_is_404(vc, project):
    url = reverse("subscribers:event_stats", args=[project.slug, "NeverHappened"])
    assert vc.get(url).status_code == 404
    # A default event with no occurrences yet has an (empty) page.
    url = reverse("subscribers:event_stats", args=[project.slug, "WhatsAppRead"])
    html = vc.get(url).content.decode()
    assert re.search(r'data-testid="stat-total">0<', html)


def test_events_of_another_project_never_show(vc, project):
    from tests.factories import SubscriberFactory

    foreign = SubscriberFactory()
    event(foreign.project, foreign, "SecretThing")
    assert shown(vc.get(events_url(project))) == []
    assert vc.get(reverse("subscribers:event_stats", args=[project.slug, "SecretThing"])).status_code == 404
    response = vc.get(events_url(project, subscriber=str(foreign.public_id)))
    assert "No subscriber has" in response.content.decode()


def test_marketer_sees_the_same(client, project, member_of):
    client.force_login(member_of(Role.MARKETER))
    assert client.get(events_url(project)).status_code == 200
