"""The email address rule on every writer: a changed address is no longer undeliverable (it has not
bounced), the same address keeps the mark, an invalid address is refused with nothing written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from controlpanel.models import User
from controlpanel.services import SYSTEM
from subscribers.errors import InvalidInput
from subscribers.services import clean_subscriber_data, set_tags, update_subscriber, upsert_subscriber
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db

BOUNCED = {"email_undeliverable_reason": "550 no such user"}


@pytest.fixture
def bounced(project):
    return SubscriberFactory(
        project=project,
        phone="+4915112345678",
        email="old@example.com",
        email_undeliverable_at=timezone.now() - timedelta(days=2),
        **BOUNCED,
    )


def mark(subscriber):
    subscriber.refresh_from_db()
    return (
        subscriber.email,
        subscriber.email_undeliverable_at is not None,
        subscriber.email_undeliverable_reason,
    )


def test_editing_the_address_clears_the_mark(project, bounced):
    update_subscriber(project=project, subscriber=bounced, changes={"email": "New@Example.com"}, actor=SYSTEM)
    assert mark(bounced) == ("new@example.com", False, "")


def test_other_edits_keep_the_mark(project, bounced):
    update_subscriber(
        project=project, subscriber=bounced, changes={"name": "Ada", "email": "OLD@example.com"}, actor=SYSTEM
    )
    assert mark(bounced) == ("old@example.com", True, "550 no such user")


@pytest.mark.parametrize("bulk", [False, True])
def test_the_upsert_clears_the_mark_for_a_new_address_only(project, bounced, bulk):
    def upsert(email):
        data = clean_subscriber_data(project, {"phone": bounced.phone, "email": email})
        if bulk:  # the bulk form (API bulk, imports): set-based writes through the store
            from subscribers.services import subscriber_item
            from subscribers.upsert import upsert_subscribers

            upsert_subscribers(
                project=project, items=[subscriber_item(project, data)], source="api", actor=SYSTEM
            )
        else:
            upsert_subscriber(project=project, data=data, actor=SYSTEM)

    upsert("old@example.com")
    assert mark(bounced) == ("old@example.com", True, "550 no such user")
    upsert("new@example.com")
    assert mark(bounced) == ("new@example.com", False, "")


def test_the_email_tag_clears_the_mark(project, bounced):
    set_tags(project=project, subscriber=bounced, tags={"Email": "new@example.com"})
    assert mark(bounced) == ("new@example.com", False, "")


def test_an_invalid_address_is_refused(project, bounced):
    with pytest.raises(InvalidInput) as exc:
        update_subscriber(
            project=project, subscriber=bounced, changes={"email": "not-an-address"}, actor=SYSTEM
        )
    assert exc.value.field == "email"
    assert mark(bounced) == ("old@example.com", True, "550 no such user")


def admin_save(client, subscriber, **fields):
    """Save the subscriber's admin form as an operator, with the profile as stored plus ``fields``."""
    client.force_login(User.objects.create_superuser(email="ops@example.com", password="pw-for-tests-123"))
    url = reverse("admin:subscribers_subscriber_change", args=[subscriber.pk])
    profile = {key: getattr(subscriber, key) for key in ("name", "email", "language", "country", "time_zone")}
    return client.get(url), client.post(url, {**profile, **fields})


def test_the_admin_clears_the_mark_when_the_operator_fixes_the_address(client, bounced):
    _, saved = admin_save(client, bounced, email="fixed@example.com")
    assert saved.status_code == 302
    assert mark(bounced) == ("fixed@example.com", False, "")


def test_the_admin_shows_email_consent_read_only(client, bounced):
    page, saved = admin_save(client, bounced, name="Ada", email_consent="opted_in", push_consent="opted_out")
    html = page.content.decode()
    assert 'name="email_consent"' not in html and "Email consent" in html
    assert saved.status_code == 302
    bounced.refresh_from_db()
    assert (bounced.name, bounced.email_consent, bounced.push_consent) == ("Ada", "unknown", "unknown")
    assert bounced.email_undeliverable_at is not None  # the address did not change
