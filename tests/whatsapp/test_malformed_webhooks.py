"""Signed bodies that are not Meta's shape: marked malformed once, kept, shown to admins."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlpanel.models import Role
from tests.factories import MembershipFactory
from whatsapp import signature
from whatsapp.models import WebhookDelivery
from whatsapp.processing import process_pending
from whatsapp.schemas import MalformedBody, parse_envelope

from . import payloads as p
from .conftest import APP_SECRET
from .test_webhook import url

MALFORMED = [
    (b"[]", "body: Input should be an object"),
    (b"null", "body: Input should be an object"),
    (b'{"entry": 5}', "entry: Input should be a valid array"),
    (b'{"object": "whatsapp_business_account"}', "entry: Field required"),
    (b'{"entry": [{"changes": {"field": "messages"}}]}', "entry.0.changes: Input should be a valid array"),
    (b'{"entry": [{"changes": [{"field": "messages", "value": []}]}]}', "entry.0.changes.0.value"),
    (
        b'{"entry": [{"changes": [{"field": "messages", "value": {"statuses": [5]}}]}]}',
        "value.statuses must be a list of objects",
    ),
    (b"{not json", "not JSON"),
]


def post_raw(client, account, raw: bytes):
    return client.post(
        url(account),
        raw,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=signature.sign(raw, APP_SECRET),
    )


@pytest.mark.parametrize(("raw", "reason"), MALFORMED, ids=[r.decode()[:40] for r, _ in MALFORMED])
def test_malformed_body_is_marked_once_and_kept(client, account, caplog, raw, reason):
    assert post_raw(client, account, raw).status_code == 200
    assert process_pending(account.pk) == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.malformed and delivery.processed_at is not None and reason in delivery.error
    assert delivery.body == raw.decode() and delivery.attempts == 0
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]
    assert process_pending(account.pk) == 0  # never picked up again


def test_a_good_body_next_to_a_malformed_one_is_applied(client, account):
    post_raw(client, account, b'{"entry": 5}')
    assert post_raw(client, account, p.body(p.text("hi"))).status_code == 200
    assert process_pending(account.pk) == 2
    good = WebhookDelivery.objects.get(malformed=False)
    assert good.processed_at is not None and good.error == ""


def test_metas_shape_with_unknown_fields_is_accepted():
    envelope = parse_envelope(
        b'{"object": "whatsapp_business_account", "new_thing": 1, "entry": [{"id": 42, "time": 1,'
        b' "changes": [{"field": "messages", "value": {"statuses": [], "surprise": {"a": 1}}}]}]}'
    )
    assert envelope.entry[0].waba_id == "42"
    assert envelope.entry[0].changes[0].value["surprise"] == {"a": 1}
    with pytest.raises(MalformedBody):
        parse_envelope(b'"just a string"')


def test_admins_see_malformed_deliveries_on_the_settings_page(client, account):
    post_raw(client, account, b'{"entry": 5}')
    post_raw(client, account, p.body(p.text("hi")))
    process_pending(account.pk)
    client.force_login(MembershipFactory(project=account.project, role=Role.ADMIN).user)
    page = client.get(reverse("whatsapp:connection", args=[account.project.slug])).content.decode()
    assert 'data-testid="malformed-count">1<' in page
    assert "entry: Input should be a valid array" in page
    assert "{&quot;entry&quot;: 5}" in page  # the body, as received, escaped


def test_the_page_shows_no_malformed_card_without_any(client, account):
    post_raw(client, account, p.body(p.text("hi")))
    process_pending(account.pk)
    client.force_login(MembershipFactory(project=account.project, role=Role.ADMIN).user)
    page = client.get(reverse("whatsapp:connection", args=[account.project.slug])).content.decode()
    assert "malformed-deliveries" not in page
