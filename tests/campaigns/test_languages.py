from __future__ import annotations

import pytest

from campaigns.languages import language_picker, pick_language

GROUP = ["de", "en_US", "en_GB", "pt_BR"]


@pytest.mark.parametrize(
    ("subscriber_language", "expected"),
    [
        ("de", "de"),
        ("DE", "de"),
        ("en_GB", "en_GB"),
        ("en-gb", "en_GB"),  # case and separator do not matter
        ("pt-br", "pt_BR"),
        ("de_AT", "de"),  # base language
        ("en", "en_US"),  # the group's first en_*
        ("en_AU", "en_US"),
        ("pt", "pt_BR"),
        ("fr", "en_US"),  # fallback
        ("", "en_US"),
        ("  ", "en_US"),
    ],
)
def test_pick_language(subscriber_language, expected):
    assert pick_language(subscriber_language, GROUP, "en_US") == expected


def test_a_groups_own_base_language_beats_a_regional_one():
    assert pick_language("de_AT", ["de_CH", "de"], "de_CH") == "de"
    assert pick_language("de_AT", ["de_CH", "fr"], "fr") == "de_CH"


def test_without_fallback_the_first_language():
    assert pick_language("fr", ["de", "en"], "") == "de"
    assert pick_language("fr", [], "") == ""


def test_picker_remembers_answers():
    pick = language_picker(GROUP, "de")
    assert [pick(code) for code in ["en", "en", "es", "pt_PT"]] == ["en_US", "en_US", "de", "pt_BR"]
