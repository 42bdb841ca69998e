"""Segments know email and push: email_consent and push_consent as fields beside whatsapp_consent
(text language, tree, validation, the builder's lists), and reachability by email and push."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from subscribers.errors import InvalidInput
from subscribers.models import ConsentState, Device
from subscribers.segments import audience, count, parse_rule, validate_rule
from tests.factories import ProjectFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
IN, OUT, UNKNOWN = ConsentState.OPTED_IN, ConsentState.OPTED_OUT, ConsentState.UNKNOWN
EVERYONE = {
    "mail_in", "mail_unknown", "mail_out", "bounced", "no_address",
    "app", "app_out", "removed_device", "muted_device",
}  # fmt: skip


@pytest.fixture
def world(project):
    def make(name, **fields):
        fields.setdefault("whatsapp_consent", UNKNOWN)
        return SubscriberFactory(project=project, name=name, **fields)

    make("mail_in", email="a@example.com", email_consent=IN)
    make("mail_unknown", email="b@example.com")
    make("mail_out", email="c@example.com", email_consent=OUT)
    make("bounced", email="d@example.com", email_consent=IN, email_undeliverable_at=NOW - timedelta(days=1))
    make("no_address", email_consent=IN)
    app = make("app", push_consent=IN)
    Device.objects.create(project=project, subscriber=app, token="t-app", platform="android")
    app_out = make("app_out", push_consent=OUT)
    Device.objects.create(project=project, subscriber=app_out, token="t-out", platform="ios")
    removed = make("removed_device")
    Device.objects.create(project=project, subscriber=removed, token="t-rm", platform="ios", removed_at=NOW)
    muted = make("muted_device")
    Device.objects.create(project=project, subscriber=muted, token="t-mu", platform="web", push_enabled=False)
    # Another project's reachable subscriber never shows up.
    other = SubscriberFactory(project=ProjectFactory(), name="other", email="o@example.com", email_consent=IN)
    Device.objects.create(project=other.project, subscriber=other, token="t-app", platform="android")
    return project


def matching(project, text):
    names = set(audience(project, parse_rule(text), now=NOW).values_list("name", flat=True))
    assert count(project, parse_rule(text), now=NOW) == len(names), text
    return names


CASES = [
    ('F("email_consent", eq, "opted_in")', {"mail_in", "bounced", "no_address"}),
    ('F("email_consent", noteq, "opted_in")', EVERYONE - {"mail_in", "bounced", "no_address"}),
    ('F("email_consent", in, ["opted_out", "unknown"]) * F("email", any)', {"mail_unknown", "mail_out"}),
    ('F("push_consent", eq, "opted_out")', {"app_out"}),
    ('F("push_consent", notin, ["unknown"])', {"app", "app_out"}),
    ("R(email)", {"mail_in", "mail_unknown"}),
    ("R(push)", {"app"}),
    ("R(email) + R(push)", {"mail_in", "mail_unknown", "app"}),
    ('!R(email) * F("email", any)', {"mail_out", "bounced"}),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_email_and_push_conditions(world, text, expected):
    assert matching(world, text) == expected


def test_a_bad_consent_value_names_the_field(project):
    with pytest.raises(InvalidInput) as exc:
        validate_rule(project, {"type": "field", "field": "email_consent", "op": "eq", "value": "yes"})
    assert (
        "Field 'email_consent' is a consent state, one of opted_in, opted_out, unknown, not 'yes'"
        in exc.value.message
    )


def test_the_builder_offers_the_fields_and_the_reachability_words(client, owner, project):
    client.force_login(owner)
    html = client.get(reverse("subscribers:segment_new", args=[project.slug])).content.decode()
    for text in (
        "email_consent",
        "push_consent",
        "Email consent",
        "Push consent",
        "reachable by email (an address that did not bounce, not opted out)",
        "reachable by push (an active device, not opted out)",
    ):
        assert text in html, text
