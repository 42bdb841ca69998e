"""Add and edit pages: validation by the services, errors on the field, nothing lost."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlpanel.models import AuditEntry, Role
from controlpanel.services import SYSTEM
from subscribers import services
from subscribers.models import ConsentChange, ConsentState, Event, Subscriber

pytestmark = pytest.mark.django_db


def add(project, phone, **raw):
    data = services.clean_subscriber_data(project, {"phone": phone, **raw})
    subscriber, _ = services.upsert_subscriber(project=project, data=data, actor=SYSTEM)
    return subscriber


@pytest.fixture
def mc(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


FORM = {
    "phone": "0151 1234 0001",
    "external_id": "crm-1",
    "name": "Anna Schmidt",
    "email": "Anna@Example.com",
    "language": "de",
    "country": "DE",
    "time_zone": "Europe/Berlin",
}


def test_add_normalizes_and_redirects_to_the_new_subscriber(mc, project):
    response = mc.post(reverse("subscribers:add", args=[project.slug]), FORM)
    s = Subscriber.objects.get(project=project)
    assert response.status_code == 302
    assert response["Location"] == reverse("subscribers:detail", args=[project.slug, s.public_id])
    assert (s.phone, s.email, s.external_id, s.time_zone) == (
        "+4915112340001",
        "anna@example.com",
        "crm-1",
        "Europe/Berlin",
    )
    assert s.whatsapp_consent == ConsentState.UNKNOWN
    assert Event.objects.filter(subscriber=s, name="Subscribed", attributes__source="panel").exists()


def test_add_with_opt_in_writes_the_ledger(mc, project):
    mc.post(
        reverse("subscribers:add", args=[project.slug]),
        {**FORM, "opt_in": "on", "opt_in_evidence": "Signed the paper form at the till"},
    )
    s = Subscriber.objects.get(project=project)
    assert s.whatsapp_consent == ConsentState.OPTED_IN
    change = ConsentChange.objects.get(subscriber=s)
    assert (change.source, change.evidence) == ("panel", "Signed the paper form at the till")


def test_opt_in_without_evidence_is_refused_on_the_field(mc, project):
    response = mc.post(reverse("subscribers:add", args=[project.slug]), {**FORM, "opt_in": "on"})
    html = response.content.decode()
    assert 'data-testid="error-opt_in_evidence"' in html
    assert "Opting in needs evidence" in html
    assert not Subscriber.objects.exists()


def test_invalid_phone_shows_the_reason_and_keeps_the_input(mc, project):
    response = mc.post(reverse("subscribers:add", args=[project.slug]), {**FORM, "phone": "0151 12"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="error-phone"' in html
    assert "is not a valid phone number" in html or "is not a phone number" in html
    # Everything typed is still there.
    assert 'value="0151 12"' in html
    assert 'value="Anna Schmidt"' in html
    assert 'value="crm-1"' in html
    assert 'value="Anna@Example.com"' in html
    assert '<option value="Europe/Berlin" selected>' in html
    assert not Subscriber.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not-an-email", "is not an email address"),
        ("language", "x" * 16 + "y", None),  # the form's max length
    ],
)
def test_other_field_errors_land_on_their_field(mc, project, field, value, message):
    response = mc.post(reverse("subscribers:add", args=[project.slug]), {**FORM, field: value})
    html = response.content.decode()
    assert f'data-testid="error-{field}"' in html
    if message:
        assert message in html
    assert not Subscriber.objects.exists()


def test_add_an_existing_phone_points_to_that_subscriber(mc, project):
    existing = add(project, "+4915112340001", name="Already Here")
    response = mc.post(reverse("subscribers:add", args=[project.slug]), FORM)
    html = response.content.decode()
    assert "Already Here has this phone number already." in html
    assert reverse("subscribers:detail", args=[project.slug, existing.public_id]) in html
    assert Subscriber.objects.count() == 1


def test_edit_changes_profile_fields(mc, project):
    s = add(project, "+4915112340001", name="Anna", email="anna@example.com", external_id="crm-1")
    url = reverse("subscribers:edit", args=[project.slug, s.public_id])
    page = mc.get(url).content.decode()
    assert 'value="+4915112340001"' in page and 'value="Anna"' in page
    response = mc.post(
        url, {**FORM, "phone": "+4915112340001", "name": "Anna S.", "email": "", "country": "AT"}
    )
    assert response.status_code == 302
    s.refresh_from_db()
    assert (s.name, s.email, s.country) == ("Anna S.", "", "AT")


def test_edit_changes_the_phone_number_and_audits_it(mc, project):
    s = add(project, "+4915112340001", name="Anna")
    url = reverse("subscribers:edit", args=[project.slug, s.public_id])
    response = mc.post(url, {**FORM, "phone": "+4915112340002", "external_id": ""})
    assert response.status_code == 302
    s.refresh_from_db()
    assert s.phone == "+4915112340002"
    assert Subscriber.objects.count() == 1
    entry = AuditEntry.objects.get(project=project, action="subscriber.phone_changed")
    assert entry.changes == {"phone": ["+4915112340001", "+4915112340002"]}


def test_edit_to_someone_elses_phone_or_external_id_is_refused(mc, project):
    add(project, "+4915112340009", name="Other", external_id="crm-9")
    s = add(project, "+4915112340001", name="Anna")
    url = reverse("subscribers:edit", args=[project.slug, s.public_id])
    html = mc.post(url, {**FORM, "phone": "+4915112340009", "external_id": ""}).content.decode()
    assert "Other has this phone number already." in html
    html = mc.post(url, {**FORM, "phone": "+4915112340001", "external_id": "crm-9"}).content.decode()
    assert "external id" in html and 'data-testid="error-external_id"' in html
    s.refresh_from_db()
    assert (s.phone, s.external_id) == ("+4915112340001", None)


def test_edit_clears_the_external_id(mc, project):
    s = add(project, "+4915112340001", external_id="crm-1")
    url = reverse("subscribers:edit", args=[project.slug, s.public_id])
    mc.post(url, {**FORM, "phone": "+4915112340001", "external_id": ""})
    s.refresh_from_db()
    assert s.external_id is None


def test_edit_a_subscriber_known_only_by_bsuid(mc, project):
    s = Subscriber.objects.create(project=project, bsuid="DE.abc123", name="Username only")
    url = reverse("subscribers:edit", args=[project.slug, s.public_id])
    response = mc.post(url, {"phone": "", "external_id": "crm-5", "name": "Known now", "language": "en"})
    assert response.status_code == 302
    s.refresh_from_db()
    assert (s.phone, s.external_id, s.name, s.language) == (None, "crm-5", "Known now", "en")


def test_viewer_cannot_open_add_or_edit(client, project, viewer):
    s = add(project, "+4915112340001")
    client.force_login(viewer)
    assert client.get(reverse("subscribers:add", args=[project.slug])).status_code == 403
    assert client.get(reverse("subscribers:edit", args=[project.slug, s.public_id])).status_code == 403
    assert client.post(reverse("subscribers:add", args=[project.slug]), FORM).status_code == 403
