"""Settings -> Sending (frequency cap, quiet hours, rate card) and the policy_settings service."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

import pytest
from django.urls import reverse

from campaigns import policy_settings, pricing
from campaigns.models import RateCardEntry, SendingPolicy
from controlpanel.models import AuditEntry, Role
from controlpanel.services import Actor
from subscribers.errors import InvalidInput

ACTOR = Actor(label="test")


def url(project):
    return reverse("campaigns:settings_sending", args=[project.slug])


def post_rates(client, project, data):
    return client.post(url(project), {**data, "form": "rates"})


def price(project, category, country) -> Decimal | None:
    entry = RateCardEntry.objects.filter(project=project, category=category, country=country).first()
    return entry.price if entry else None


def grid(project, **changes) -> dict[str, str]:
    """The rate card form as the page posts it, with ``changes`` on top."""
    data = {"currency": "USD", "new_country": ""}
    for (category, country), entry in pricing.rate_card(project).entries.items():
        data[f"price-{category}-{country or 'other'}"] = str(entry.price)
    data.update(changes)
    return data


# --- the page -------------------------------------------------------------------------------------


def test_outsider_gets_404_viewer_reads_and_cannot_write(client, project, outsider, viewer, member_of):
    client.force_login(outsider)
    assert client.get(url(project)).status_code == 404
    client.force_login(viewer)
    page = client.get(url(project))
    assert page.status_code == 200
    assert "Only admins and owners change the sending settings." in page.content.decode()
    client.force_login(member_of(Role.MARKETER))
    for form in ("policy", "rates", "reset"):
        assert client.post(url(project), {"form": form, "cap_days": "7"}).status_code == 403
    assert not SendingPolicy.objects.exists()


def test_page_shows_the_seeded_rates_and_their_date(owner_client, project):
    page = owner_client.get(url(project)).content.decode()
    assert 'data-testid="rates-effective">1 July 2025<' in page
    assert 'name="price-marketing-DE" value="0.1365"' in page
    assert "Every other country" in page
    assert (
        f'href="/p/{project.slug}/settings/sending/"'
        in owner_client.get(reverse("controlpanel:settings", args=[project.slug])).content.decode()
    )


def test_saving_the_cap_and_quiet_hours(owner_client, project, owner):
    data = {"cap_messages": "2", "cap_days": "7", "quiet_start": "21:00", "quiet_end": "08:00"}
    response = owner_client.post(url(project), data)
    assert response.status_code == 302
    policy = SendingPolicy.objects.get(project=project)
    assert (policy.cap_messages, policy.cap_days, policy.quiet_start, policy.quiet_end) == (
        2,
        7,
        time(21),
        time(8),
    )
    entry = AuditEntry.objects.get(project=project, action="sending_policy.update")
    assert entry.actor_user == owner
    assert entry.changes["quiet_start"] == {"from": None, "to": "21:00"}
    assert 'value="21:00"' in owner_client.get(url(project)).content.decode()


def test_an_invalid_policy_is_shown_with_its_error_and_not_saved(owner_client, project):
    response = owner_client.post(url(project), {"cap_messages": "2", "cap_days": "7", "quiet_start": "21:00"})
    assert response.status_code == 422
    assert "Quiet hours need a start and an end" in response.content.decode()
    assert not SendingPolicy.objects.exists()
    response = owner_client.post(url(project), {"cap_messages": "0", "cap_days": "7"})
    assert response.status_code == 422
    assert not SendingPolicy.objects.exists()


def test_editing_adding_and_removing_rates(owner_client, project):
    data = grid(
        project,
        **{"price-marketing-DE": "0.2000", "remove-FR": "on", "new_country": "AT", "new-marketing": "0.1100"},
    )
    response = post_rates(owner_client, project, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert price(project, "marketing", "DE") == Decimal("0.2000")
    assert price(project, "marketing", "FR") is None and price(project, "utility", "FR") is None
    assert price(project, "marketing", "AT") == Decimal("0.1100")
    assert price(project, "utility", "AT") is None
    changes = AuditEntry.objects.get(project=project, action="rate_card.update").changes
    assert changes["marketing DE"] == {"from": "0.1365", "to": "0.2000"}
    assert changes["marketing FR"] == {"from": "0.0859", "to": None}
    assert changes["marketing AT"] == {"from": None, "to": "0.1100"}
    page = owner_client.get(url(project)).content.decode()
    assert "edited · seed 0.1365" in page


def test_the_other_countries_price_is_required_and_errors_rerender(owner_client, project):
    response = post_rates(owner_client, project, grid(project, **{"price-marketing-other": ""}))
    assert response.status_code == 422
    response = post_rates(owner_client, project, grid(project, **{"price-utility-DE": "-1"}))
    assert response.status_code == 422
    response = post_rates(owner_client, project, grid(project, new_country="AT"))
    assert response.status_code == 422
    assert "Give at least one price for the new country." in response.content.decode()
    assert not AuditEntry.objects.filter(action="rate_card.update").exists()
    assert price(project, "marketing", "") == Decimal("0.0604")


def test_currency_relabels_the_card_and_reset_restores_the_seed(owner_client, project):
    post_rates(owner_client, project, grid(project, currency="eur", **{"price-marketing-DE": "0.3"}))
    assert set(RateCardEntry.objects.filter(project=project).values_list("currency", flat=True)) == {"EUR"}
    assert owner_client.post(url(project), {"form": "reset"}).status_code == 302
    assert price(project, "marketing", "DE") == Decimal("0.1365")
    assert set(RateCardEntry.objects.filter(project=project).values_list("currency", flat=True)) == {"USD"}
    assert AuditEntry.objects.filter(project=project, action="rate_card.reset").count() == 1


# --- the service ----------------------------------------------------------------------------------


def test_update_sending_policy_is_idempotent(project):
    kwargs = {"cap_messages": 3, "cap_days": 14, "quiet_start": time(22), "quiet_end": time(7)}
    policy_settings.update_sending_policy(project=project, actor=ACTOR, **kwargs)
    policy_settings.update_sending_policy(project=project, actor=ACTOR, **kwargs)
    assert SendingPolicy.objects.filter(project=project).count() == 1
    assert AuditEntry.objects.filter(action="sending_policy.update").count() == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cap_messages": 0}, "cap_messages"),
        ({"cap_messages": True}, "cap_messages"),
        ({"cap_days": 0}, "cap_days"),
        ({"cap_days": 366}, "cap_days"),
        ({"quiet_end": None}, "quiet_end"),
        ({"quiet_start": None}, "quiet_start"),
        ({"quiet_end": time(22)}, "quiet_end"),
    ],
)
def test_update_sending_policy_refuses_bad_values(project, kwargs, field):
    values = {"cap_messages": 3, "cap_days": 7, "quiet_start": time(22), "quiet_end": time(7), **kwargs}
    with pytest.raises(InvalidInput) as exc:
        policy_settings.update_sending_policy(project=project, actor=ACTOR, **values)
    assert exc.value.field == field
    assert not SendingPolicy.objects.exists()


@pytest.mark.parametrize(
    ("prices", "currency", "field"),
    [
        ({("marketing", "XX"): "0.1"}, None, "country"),
        ({("promo", "DE"): "0.1"}, None, "category"),
        ({("marketing", "DE"): "-0.1"}, None, "price.marketing.DE"),
        ({("marketing", "DE"): "0.00001"}, None, "price.marketing.DE"),
        ({("marketing", "DE"): "abc"}, None, "price.marketing.DE"),
        ({("marketing", "DE"): "NaN"}, None, "price.marketing.DE"),
        ({("marketing", ""): None}, None, "price.marketing.other"),
        ({}, "EURO", "currency"),
    ],
)
def test_update_rate_card_refuses_bad_values(project, prices, currency, field):
    with pytest.raises(InvalidInput) as exc:
        policy_settings.update_rate_card(project=project, actor=ACTOR, prices=prices, currency=currency)
    assert exc.value.field == field
    assert price(project, "marketing", "DE") in (None, Decimal("0.1365"))
    assert not AuditEntry.objects.filter(action="rate_card.update").exists()


def test_an_edited_rate_is_what_estimates_use(project):
    assert pricing.rate_card(project).price("marketing", "DE") == Decimal("0.1365")
    changed = policy_settings.update_rate_card(
        project=project, actor=ACTOR, prices={("marketing", "DE"): "0.5"}
    )
    assert changed == 1
    assert pricing.rate_card(project).price("marketing", "DE") == Decimal("0.5000")
    assert (
        policy_settings.update_rate_card(project=project, actor=ACTOR, prices={("marketing", "DE"): "0.5"})
        == 0
    )
