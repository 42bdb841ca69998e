"""One rule per profile field: the API and the CSV import accept and refuse the same values."""

from __future__ import annotations

import pytest

from subscribers.errors import InvalidInput
from subscribers.profile import clean_profile, clean_profile_value


@pytest.mark.parametrize(
    ("key", "text", "stored"),
    [
        ("email", " Ann@Example.COM ", "ann@example.com"),
        ("country", "de", "DE"),
        ("time_zone", "Europe/Berlin", "Europe/Berlin"),
        ("language", "pt_BR", "pt_BR"),
        ("name", "Ann", "Ann"),
        ("country", "", ""),
    ],
)
def test_good_values_are_normalised(key, text, stored):
    assert clean_profile_value(key, text) == stored


@pytest.mark.parametrize(
    ("key", "text", "field"),
    [
        ("email", "not-an-email", "email"),
        ("country", "ÄÖ", "country"),  # letters, but not a code: the API used to store these
        ("country", "DEU", "country"),
        ("time_zone", "Mars/Olympus", "timezone"),
        ("language", "x" * 17, "language"),
        ("name", "x" * 201, "name"),
        ("name", "A\x00B", "name"),
    ],
)
def test_bad_values_are_refused_with_the_field(key, text, field):
    with pytest.raises(InvalidInput) as caught:
        clean_profile_value(key, text)
    assert caught.value.field == field


def test_the_import_and_the_api_share_the_rule():
    from subscribers.imports import validation

    assert validation.clean_profile_value is clean_profile_value
    assert clean_profile({"country": "at", "name": None}) == {"country": "AT"}
