"""The subscriber list: search, filters, sort, keyset pages, bulk actions, query count."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from controlpanel.models import AuditEntry, Role
from controlpanel.services import SYSTEM
from subscribers import services
from subscribers.actors import run_bulk_job
from subscribers.models import BulkJob, BulkStatus, ConsentChange, ConsentState, Subscriber, TagDefinition
from subscribers.views import COUNT_LIMIT, PAGE_SIZE
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def add(project, phone, **raw):
    """A subscriber created through the services, as the API or the panel would."""
    data = services.clean_subscriber_data(project, {"phone": phone, **raw})
    subscriber, _ = services.upsert_subscriber(project=project, data=data, actor=SYSTEM)
    return subscriber


def rows(response) -> list[str]:
    """Public ids of the subscribers listed, in order."""
    html = response.content.decode()
    return re.findall(r'name="ids" value="([0-9a-f-]{36})"', html)


def list_url(project, **params):
    from urllib.parse import urlencode

    url = reverse("subscribers:list", args=[project.slug])
    return url + ("?" + urlencode(params) if params else "")


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


def test_search_by_name_external_id_and_phone_in_any_format(marketer_client, project):
    anna = add(project, "+4915112340001", name="Anna Schmidt", external_id="crm-17")
    bob = add(project, "+4915112340002", name="Bob Meyer")
    add(project, "+4915112340003", name="Carla")

    assert rows(marketer_client.get(list_url(project, q="schmidt"))) == [str(anna.public_id)]
    assert rows(marketer_client.get(list_url(project, q="crm-17"))) == [str(anna.public_id)]
    # National format with spaces: normalized with the project's default country (DE).
    assert rows(marketer_client.get(list_url(project, q="0151 1234 0002"))) == [str(bob.public_id)]
    assert rows(marketer_client.get(list_url(project, q="+49 151 12340002"))) == [str(bob.public_id)]
    # A fragment of digits still finds numbers containing it.
    assert set(rows(marketer_client.get(list_url(project, q="1234000")))) == {
        str(s.public_id) for s in Subscriber.objects.for_project(project)
    }
    response = marketer_client.get(list_url(project, q="nobody"))
    assert rows(response) == []
    assert b"No subscriber matches these filters" in response.content


def test_an_exact_identifier_wins_over_name_matches(marketer_client, project):
    by_id = add(project, "+4915112340001", name="Anna", external_id="crm-1")
    add(project, "+4915112340002", name="Fan of crm-1 and crm-10")
    assert rows(marketer_client.get(list_url(project, q="crm-1"))) == [str(by_id.public_id)]
    assert len(rows(marketer_client.get(list_url(project, q="crm-10")))) == 1  # no such id: names


def test_filter_by_consent_and_tag_value(marketer_client, project):
    a = add(project, "+4915112340001", tags={"city": "Berlin", "orders": 3, "vip": True})
    b = add(project, "+4915112340002", tags={"city": "Hamburg", "orders": 5})
    c = add(project, "+4915112340003", whatsapp_opt_in={"evidence": "signed up in shop"})

    opted_in = rows(marketer_client.get(list_url(project, consent="opted_in")))
    assert opted_in == [str(c.public_id)]
    assert rows(marketer_client.get(list_url(project, tag="city", value="Berlin"))) == [str(a.public_id)]
    # Typed by the tag: "5" is the integer 5.
    assert rows(marketer_client.get(list_url(project, tag="orders", value="5"))) == [str(b.public_id)]
    # No value: everyone who has the tag.
    assert set(rows(marketer_client.get(list_url(project, tag="city")))) == {
        str(a.public_id),
        str(b.public_id),
    }
    assert rows(marketer_client.get(list_url(project, tag="vip", value="yes"))) == [str(a.public_id)]
    # Built-in tags filter on the subscriber's own fields.
    assert rows(marketer_client.get(list_url(project, tag="WhatsApp opt-in", value="true"))) == [
        str(c.public_id)
    ]


def test_filter_errors_are_shown_and_match_nothing(marketer_client, project):
    add(project, "+4915112340001", tags={"orders": 3})
    response = marketer_client.get(list_url(project, tag="orders", value="many"))
    assert rows(response) == []
    assert "Tag &#x27;orders&#x27; expects integer, got &#x27;many&#x27;." in response.content.decode()
    response = marketer_client.get(list_url(project, tag="colour"))
    assert "no tag named &#x27;colour&#x27;" in response.content.decode()


def test_sort_orders(marketer_client, project):
    now = timezone.now()
    zed = add(project, "+4915112340001", name="Zed")
    amy = add(project, "+4915112340002", name="Amy")
    mia = add(project, "+4915112340003", name="Mia")
    Subscriber.objects.filter(pk=zed.pk).update(last_inbound_at=now - timedelta(hours=1))
    Subscriber.objects.filter(pk=amy.pk).update(last_inbound_at=now - timedelta(hours=5))

    ids = [str(s.public_id) for s in (zed, amy, mia)]
    assert rows(marketer_client.get(list_url(project))) == ids[::-1]
    assert rows(marketer_client.get(list_url(project, sort="oldest"))) == ids
    assert rows(marketer_client.get(list_url(project, sort="name"))) == [ids[1], ids[2], ids[0]]
    # Most recent writer first; who never wrote is not in this list (and not in its count).
    response = marketer_client.get(list_url(project, sort="last_inbound"))
    assert rows(response) == [ids[0], ids[1]]
    assert b"2 subscribers match" in response.content


def next_link(response, rel="next") -> str | None:
    match = re.search(rf'rel="{rel}" href="([^"]+)"', response.content.decode())
    return match.group(1).replace("&amp;", "&") if match else None


@pytest.mark.parametrize("sort", ["newest", "oldest", "name", "last_inbound"])
def test_keyset_pages_follow_each_other_without_overlap(marketer_client, project, sort):
    created = SubscriberFactory.create_batch(PAGE_SIZE * 2 + 7, project=project)
    # Ties on the sort value are broken by id: several people share a name and an inbound time.
    same_time = timezone.now() - timedelta(days=1)
    for i, s in enumerate(created):
        Subscriber.objects.filter(pk=s.pk).update(
            name=f"Name {i % 9}", last_inbound_at=same_time - timedelta(minutes=i % 4)
        )

    seen: list[str] = []
    url = list_url(project, sort=sort)
    pages = []
    while url:
        response = marketer_client.get(url)
        page = rows(response)
        pages.append(page)
        seen += page
        url = next_link(response)
    assert [len(p) for p in pages] == [PAGE_SIZE, PAGE_SIZE, 7]
    assert len(seen) == len(set(seen)) == len(created)

    # "Previous" from the last page gives back the second page exactly.
    last = marketer_client.get(list_url(project, sort=sort))
    second = marketer_client.get(next_link(last))
    third = marketer_client.get(next_link(second))
    back = marketer_client.get(next_link(third, rel="prev"))
    assert rows(back) == rows(second)
    # And the first page has no previous page.
    first_again = marketer_client.get(next_link(back, rel="prev"))
    assert rows(first_again) == pages[0]
    assert next_link(first_again, rel="prev") is None


def test_filters_survive_paging(marketer_client, project, monkeypatch):
    monkeypatch.setattr("subscribers.views.PAGE_SIZE", 4)
    for i in range(13):
        add(project, f"+49151123{i:05d}", tags={"city": "Berlin" if i % 2 else "Bonn"})
    response = marketer_client.get(list_url(project, tag="city", value="Berlin"))
    assert "tag=city&value=Berlin&after=" in next_link(response)
    second = marketer_client.get(next_link(response))
    assert next_link(second) is None
    berlin = rows(response) + rows(second)
    assert len(berlin) == len(set(berlin)) == 6


def test_count_is_bounded_and_says_more(marketer_client, project, settings, monkeypatch):
    monkeypatch.setattr("subscribers.views.COUNT_LIMIT", 5)
    monkeypatch.setattr("subscribers.views.PAGE_SIZE", 2)
    SubscriberFactory.create_batch(6, project=project)
    response = marketer_client.get(list_url(project))
    assert b"More than 5 subscribers" in response.content
    Subscriber.objects.for_project(project).first().delete()
    assert b"5 subscribers" in marketer_client.get(list_url(project)).content
    assert COUNT_LIMIT >= 1000


def test_query_count_does_not_grow_with_rows(marketer_client, project):
    SubscriberFactory.create_batch(PAGE_SIZE + 1, project=project)
    url = list_url(project, q="e", tag="Language")
    with CaptureQueriesContext(connection) as few:
        assert marketer_client.get(url).status_code == 200
    SubscriberFactory.create_batch(PAGE_SIZE * 3, project=project)
    with CaptureQueriesContext(connection) as many:
        response = marketer_client.get(url)
    assert response.status_code == 200
    assert len(many) == len(few)
    with CaptureQueriesContext(connection) as plain:
        marketer_client.get(list_url(project))
    # session, user, membership+project, project switcher, tag names, the page, the bounded count
    assert len(plain) <= 8, [q["sql"] for q in plain]
    counts = [q["sql"] for q in plain.captured_queries if "COUNT(" in q["sql"]]
    assert len(counts) == 1 and "LIMIT 1001" in counts[0]


def test_one_page_of_results_needs_no_count(marketer_client, project):
    SubscriberFactory.create_batch(3, project=project)
    with CaptureQueriesContext(connection) as queries:
        response = marketer_client.get(list_url(project))
    assert b"3 subscribers" in response.content
    assert not any("COUNT(" in q["sql"] for q in queries.captured_queries)


def test_htmx_request_gets_only_the_results_partial(marketer_client, project):
    add(project, "+4915112340001", name="Anna")
    response = marketer_client.get(
        list_url(project, q="Anna", consent="", tag="", sort="newest"),
        headers={"HX-Request": "true", "HX-Target": "subscriber-results"},
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="subscriber-results">')
    # The address bar gets the clean, shareable URL, not the raw form with its empty fields.
    assert response["HX-Push-Url"] == list_url(project, q="Anna")
    assert "<html" not in html
    assert "Anna" in html
    # Without htmx the same URL is the whole page, so filtered URLs can be shared.
    assert "<html" in marketer_client.get(list_url(project, q="Anna")).content.decode()


def test_other_projects_subscribers_never_show(marketer_client, project):
    other = SubscriberFactory(name="Foreign Person")
    add(project, "+4915112340001", name="Own Person")
    html = marketer_client.get(list_url(project, q="Person")).content.decode()
    assert "Own Person" in html
    assert "Foreign Person" not in html
    # Nor can a bulk action reach them by id.
    bulk(marketer_client, project, action="delete", ids=[str(other.public_id)])
    assert not BulkJob.objects.exists()
    assert Subscriber.objects.filter(pk=other.pk).exists()


def _run_queued(project):
    """What a worker does: run the queued bulk jobs (the test broker runs nothing by itself)."""
    for job in BulkJob.objects.for_project(project).filter(status=BulkStatus.QUEUED):
        run_bulk_job.fn(job.pk)


def bulk(client, project, **data):
    """Post a bulk action, let the worker run it, and show the page the marketer lands on."""
    response = client.post(reverse("subscribers:bulk", args=[project.slug]), data, follow=True)
    _run_queued(project)
    landed = response.redirect_chain[-1][0] if response.redirect_chain else ""
    return client.get(landed) if "/subscribers/bulk/" in landed else response


def confirm(client, project):
    job = BulkJob.objects.for_project(project).get(status=BulkStatus.DRAFT)
    client.post(reverse("subscribers:bulk_job_confirm", args=[project.slug, job.public_id]))
    _run_queued(project)
    return client.get(reverse("subscribers:bulk_job", args=[project.slug, job.public_id]))


def test_bulk_add_tag_to_selected_rows_typed_by_the_tag(marketer_client, project):
    a, b, c = (add(project, f"+491511234000{i}") for i in range(3))
    TagDefinition.objects.create(project=project, name="score", type="integer")
    response = bulk(
        marketer_client,
        project,
        action="add_tag",
        ids=[str(a.public_id), str(b.public_id)],
        tag_name="score",
        tag_value="42",
    )
    assert "Tag “score” set to “42” on 2 subscribers." in response.content.decode()
    assert services.tags_of(a)["score"] == 42
    assert services.tags_of(b)["score"] == 42
    assert "score" not in services.tags_of(c)

    response = bulk(
        marketer_client, project, action="add_tag", ids=[str(c.public_id)], tag_name="score", tag_value="lots"
    )
    assert "Nothing changed: Tag &#x27;score&#x27; expects integer" in response.content.decode()
    assert "score" not in services.tags_of(c)


def test_bulk_on_all_matching_the_filter(marketer_client, project):
    berlin = [add(project, f"+491511234000{i}", tags={"city": "Berlin"}) for i in range(3)]
    bonn = add(project, "+4915112340009", tags={"city": "Bonn"})
    response = bulk(
        marketer_client,
        project,
        action="add_tag",
        all_matching="1",
        tag="city",
        value="Berlin",
        tag_name="segment",
        tag_value="capital",
    )
    html = response.content.decode()
    assert "on 3 subscribers" in html
    assert all(services.tags_of(s).get("segment") == "capital" for s in berlin)
    assert "segment" not in services.tags_of(bonn)
    # The way back leads to the filtered list.
    assert "?tag=city&amp;value=Berlin" in html


def test_bulk_opt_out_asks_first_then_writes_ledger_rows(marketer_client, project, member_of):
    people = [add(project, f"+491511234000{i}", whatsapp_opt_in={"evidence": "form"}) for i in range(2)]
    ids = [str(p.public_id) for p in people]
    response = bulk(marketer_client, project, action="opt_out", ids=ids, evidence="asked by email")
    assert "Opt 2 subscribers out of WhatsApp?" in response.content.decode()
    assert not ConsentChange.objects.filter(state=ConsentState.OPTED_OUT).exists()

    response = confirm(marketer_client, project)
    assert "2 subscribers opted out of WhatsApp." in response.content.decode()
    ledger = ConsentChange.objects.filter(state=ConsentState.OPTED_OUT, evidence="asked by email")
    assert ledger.count() == 2
    assert all(c.source == "panel" and c.actor_user is not None for c in ledger)


def test_bulk_opt_out_needs_evidence(marketer_client, project):
    s = add(project, "+4915112340001")
    response = bulk(marketer_client, project, action="opt_out", ids=[str(s.public_id)], evidence="")
    assert "Say why these subscribers are opted out" in response.content.decode()


def test_bulk_delete_confirms_then_erases_each(marketer_client, project):
    doomed = [add(project, f"+491511234000{i}") for i in range(2)]
    keep = add(project, "+4915112340009")
    ids = [str(p.public_id) for p in doomed]
    response = bulk(marketer_client, project, action="delete", ids=ids)
    assert "Erase 2 subscribers?" in response.content.decode()
    assert Subscriber.objects.for_project(project).count() == 3

    response = confirm(marketer_client, project)
    assert "2 subscribers erased" in response.content.decode()
    assert list(Subscriber.objects.for_project(project)) == [keep]
    assert AuditEntry.objects.filter(project=project, action="subscriber.erased").count() == 2


def test_bulk_without_selection_says_so(marketer_client, project):
    add(project, "+4915112340001")
    response = bulk(marketer_client, project, action="add_tag", tag_name="x", tag_value="1")
    assert "Select subscribers first" in response.content.decode()


def test_bulk_refuses_more_than_the_limit(marketer_client, project, monkeypatch):
    monkeypatch.setattr("subscribers.bulk.MAX_TARGETS", 2)
    SubscriberFactory.create_batch(3, project=project)
    response = bulk(marketer_client, project, action="delete", all_matching="1")
    assert "More than 2 subscribers match" in response.content.decode()
    assert Subscriber.objects.for_project(project).count() == 3


def test_viewer_sees_the_list_without_write_controls(client, project, viewer):
    add(project, "+4915112340001", name="Anna")
    client.force_login(viewer)
    html = client.get(list_url(project)).content.decode()
    assert "Anna" in html
    assert "Add subscriber" not in html
    assert 'name="ids"' not in html
    assert (
        client.post(reverse("subscribers:bulk", args=[project.slug]), {"action": "delete"}).status_code == 403
    )


def test_filter_by_saved_segment(marketer_client, project, owner):
    from controlpanel.services import Actor
    from subscribers.segments import parse_rule, save_segment

    berlin = add(project, "+4915112340001", tags={"city": "Berlin"})
    add(project, "+4915112340002", tags={"city": "Bonn"})
    segment = save_segment(
        project=project, name="Berliners", rule=parse_rule('T("city", eq, "Berlin")'), actor=Actor(user=owner)
    )
    html = marketer_client.get(list_url(project)).content.decode()
    assert f'<option value="{segment.public_id}">Berliners</option>' in html
    response = marketer_client.get(list_url(project, segment=str(segment.public_id)))
    assert rows(response) == [str(berlin.public_id)]
    response = marketer_client.get(list_url(project, segment=str(uuid.uuid4())))
    assert rows(response) == []
    assert "That segment does not exist" in response.content.decode()


def test_import_and_export_buttons_when_those_pages_exist(marketer_client, project, client, viewer):
    from django.urls import NoReverseMatch

    try:
        import_url = reverse("subscribers:import_upload", args=[project.slug])
        export_url = reverse("subscribers:export", args=[project.slug])
    except NoReverseMatch:
        pytest.skip("the import/export pages are not installed")
    html = marketer_client.get(list_url(project, consent="opted_in")).content.decode()
    assert f'href="{import_url}"' in html
    assert f'href="{export_url}?consent=opted_in"' in html
    client.force_login(viewer)  # both pages need the marketer role: no dead buttons for viewers
    html = client.get(list_url(project)).content.decode()
    assert "Import CSV" not in html and "Export CSV" not in html


def test_search_finds_names_without_case_accents_or_german_transliteration(marketer_client, project):
    muller = add(project, "+4915112340001", name="Jürgen Müller")
    mueller = add(project, "+4915112340002", name="Petra Mueller")
    weiss = add(project, "+4915112340003", name="Zoë Weiß")
    both = {str(muller.public_id), str(mueller.public_id)}
    for q in ("mueller", "muller", "MÜLLER", "Müll", "jurgen"):
        found = set(rows(marketer_client.get(list_url(project, q=q))))
        assert found == (both if q != "jurgen" else {str(muller.public_id)}), q
    for q in ("weiss", "zoe", "WEIß"):
        assert rows(marketer_client.get(list_url(project, q=q))) == [str(weiss.public_id)], q
    assert rows(marketer_client.get(list_url(project, q="100%"))) == []  # LIKE wildcards are text


def test_search_finds_a_partial_national_number(marketer_client, project):
    landline = add(project, "+495550231234", name="Landline")
    add(project, "+4915112340002", name="Mobile")
    # "0555023" is itself a valid number; nobody has it, so it is read as the start of one.
    assert rows(marketer_client.get(list_url(project, q="0555023"))) == [str(landline.public_id)]
    assert rows(marketer_client.get(list_url(project, q="0555 02"))) == [str(landline.public_id)]
    assert rows(marketer_client.get(list_url(project, q="0049555023"))) == [str(landline.public_id)]
    assert rows(marketer_client.get(list_url(project, q="05550231234"))) == [str(landline.public_id)]
