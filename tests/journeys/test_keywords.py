"""One folding for inbound keywords: what a person types vs what a journey claims."""

from __future__ import annotations

import pytest

from journeys import keywords
from journeys.keywords import fold
from whatsapp.models import WhatsAppAccount


@pytest.mark.parametrize(
    "typed", ["hilfe", "Hilfe!", " HILFE", "Hílfe.", "¡HILFE!!", "hilfe 🙏", "\tHILFE\n"]
)
def test_every_way_of_typing_hilfe_folds_to_hilfe(typed):
    assert fold(typed) == "hilfe"


def test_fold_keeps_inner_words_and_punctuation_but_collapses_spaces():
    assert fold("  Promo   Code! ") == "promo code"
    assert fold("Café-Gutschein") == "cafe-gutschein"
    assert fold("STRASSE") == fold("Straße")
    assert fold("!!!") == "" and fold("") == "" and fold(None) == ""


def test_matches_compares_folded_text_and_never_matches_empty():
    assert keywords.matches(" PROMO!", ["promo", "angebot"])
    assert keywords.matches("Angebot.", "angebot")
    assert not keywords.matches("promo code", ["promo"])
    assert not keywords.matches("?", ["?"])
    assert not keywords.matches("", [""])


@pytest.mark.django_db
def test_reserved_keywords_are_the_accounts_opt_words_folded(project):
    account = WhatsAppAccount.objects.create(
        project=project,
        waba_id="1",
        phone_number_id="2",
        display_phone_number="15550000000",
        access_token="t",
        app_secret="s",
    )
    reserved = keywords.reserved_keywords(project.pk)
    assert reserved, "the default opt-out words are reserved"
    stop = next(word for word in account.opt_out_words())
    assert keywords.claimed_by(f" {stop.upper()}!", reserved).startswith("opt-out keyword")
    assert keywords.claimed_by("promo", reserved) is None
