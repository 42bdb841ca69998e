"""The panel's language: the browser's by default, the user's pick in their profile wins."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import translation

pytestmark = pytest.mark.django_db


def test_the_browser_language_is_the_default(owner_client):
    page = owner_client.get(reverse("profile"), HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9,en;q=0.5")
    assert page.status_code == 200
    assert "Ihr Profil" in page.content.decode()
    assert '<html lang="de">' in page.content.decode()
    assert page["Content-Language"] == "de"


def test_without_accept_language_the_panel_is_english(owner_client):
    assert "Your profile" in owner_client.get(reverse("profile")).content.decode()


def test_the_users_pick_beats_the_browser(owner_client, owner):
    owner.language = "en"
    owner.save(update_fields=["language"])
    page = owner_client.get(reverse("profile"), HTTP_ACCEPT_LANGUAGE="de")
    assert "Your profile" in page.content.decode()


def test_picking_german_in_the_profile(owner_client, owner):
    response = owner_client.post(reverse("profile"), {"name": "Anna", "language": "de"}, follow=True)
    owner.refresh_from_db()
    assert (owner.name, owner.language) == ("Anna", "de")
    body = response.content.decode()
    assert "Ihr Profil ist gespeichert." in body
    # Next requests, whatever the browser says, are German.
    assert "Ihr Profil" in owner_client.get(reverse("profile"), HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_going_back_to_the_browser_language(owner_client, owner):
    owner.language = "de"
    owner.save(update_fields=["language"])
    owner_client.post(reverse("profile"), {"name": "", "language": ""})
    owner.refresh_from_db()
    assert owner.language == ""
    assert "Your profile" in owner_client.get(reverse("profile"), HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_an_unknown_language_is_refused(owner_client, owner):
    page = owner_client.post(reverse("profile"), {"name": "", "language": "xx"})
    assert page.status_code == 200
    owner.refresh_from_db()
    assert owner.language == ""


def test_the_profile_needs_a_login(client):
    assert client.get(reverse("profile")).status_code == 302


def test_the_javascript_catalog_speaks_the_request_language(client):
    response = client.get(reverse("javascript-catalog"), HTTP_ACCEPT_LANGUAGE="de")
    assert response.status_code == 200
    assert "django.gettext" in response.content.decode()


@pytest.mark.parametrize(
    ("language", "money", "number", "date"),
    [
        ("de", "1.234,56\xa0€", "1.234.567", "07.12.2026 08:30"),
        ("en", "€1,234.56", "1,234,567", "2026-12-07 08:30"),
    ],
)
def test_money_numbers_and_dates_follow_the_language(language, money, number, date):
    import datetime

    template = Template(
        '{% load numbers %}{{ cost|money:"EUR" }}|{{ n|number }}|{{ when|date:"SHORT_DATETIME_FORMAT" }}'
    )
    with translation.override(language):
        out = template.render(
            Context({"cost": Decimal("1234.56"), "n": 1234567, "when": datetime.datetime(2026, 12, 7, 8, 30)})
        )
    assert out == f"{money}|{number}|{date}"


def test_pages_load_the_catalog_of_their_language_deferred(owner_client):
    page = owner_client.get(reverse("profile"), HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert 'src="/jsi18n/?l=de&amp;v=' in page
    assert "defer></script>" in page.split("/jsi18n/")[1].split("\n")[0]


def test_the_catalog_url_names_its_language(client):
    german = client.get(reverse("javascript-catalog") + "?l=de&v=1").content.decode()
    english = client.get(reverse("javascript-catalog") + "?l=en&v=1").content.decode()
    assert "Kopiert" in german
    assert "Kopiert" not in english
    assert client.get(reverse("javascript-catalog") + "?l=xx").status_code == 200
