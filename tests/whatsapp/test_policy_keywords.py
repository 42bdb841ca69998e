"""One folding for the opt-in/opt-out words: what opts a person out is what journeys may not claim."""

from __future__ import annotations

import pytest

from journeys import keywords
from subscribers.models import ConsentState, Subscriber

from . import payloads as p
from .test_webhook import deliver


@pytest.mark.parametrize("typed", ["STOP", " stop! ", "Stópp", "¡ABMÉLDEN!", "stopp 🙏"])
def test_every_spelling_journeys_reserve_opts_out(client, account, typed):
    # Journeys refuse to claim it because it is an opt-out word ...
    assert keywords.claimed_by(typed, keywords.reserved_keywords(account.project_id)).startswith(
        "opt-out keyword"
    )
    deliver(client, account, p.text("START"))
    deliver(client, account, p.text(typed))
    # ... so it must opt out, as the collision check promised.
    assert Subscriber.objects.get().whatsapp_consent == ConsentState.OPTED_OUT


@pytest.mark.parametrize("typed", ["Stárt", " start. ", "anmélden!"])
def test_every_spelling_journeys_reserve_opts_back_in(client, account, typed):
    assert keywords.claimed_by(typed, keywords.reserved_keywords(account.project_id)).startswith(
        "opt-in keyword"
    )
    deliver(client, account, p.text("STOP"))
    deliver(client, account, p.text(typed))
    assert Subscriber.objects.get().whatsapp_consent == ConsentState.OPTED_IN


@pytest.mark.parametrize("typed", ["stop now", "stoppen", "please stop", "!!!"])
def test_a_text_journeys_may_claim_changes_no_consent(client, account, typed):
    assert keywords.claimed_by(typed, keywords.reserved_keywords(account.project_id)) is None
    deliver(client, account, p.text("START"))
    deliver(client, account, p.text(typed))
    assert Subscriber.objects.get().whatsapp_consent == ConsentState.OPTED_IN


def test_a_configured_word_with_an_accent_matches_its_plain_spelling(client, account):
    account.opt_out_keywords = ["ARRÊT"]
    account.save()
    deliver(client, account, p.text("START"))
    deliver(client, account, p.text("arret"))
    assert Subscriber.objects.get().whatsapp_consent == ConsentState.OPTED_OUT
    assert keywords.claimed_by("Arrêt!", keywords.reserved_keywords(account.project_id))
