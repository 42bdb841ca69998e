"""The keyword campaign shortcut builds ADR 0007 JSON; the built-in examples find or make their template."""

from __future__ import annotations

import pytest

from controlpanel.services import SYSTEM
from journeys import keyword_campaigns as kc
from journeys import services
from journeys.definition import DefinitionError
from journeys.models import Journey, JourneyStatus
from whatsapp.models import MessageTemplate, WhatsAppAccount

PROMO = kc.KeywordCampaign(
    name="PROMO keyword",
    keywords=("promo",),
    match="exact",
    reply="Danke! Dein Code: SUSHI20",
    follow_up=kc.FollowUp("follow_up_offer", "de", delay_amount=1, delay_unit="hours"),
)


def _without_ui(definition: dict) -> dict:
    return {**definition, "steps": [{k: v for k, v in s.items() if k != "ui"} for s in definition["steps"]]}


def test_promo_spec_builds_the_issue_example_exactly():
    assert _without_ui(kc.build_definition(PROMO)) == {
        "name": "PROMO keyword",
        "entry": {
            "type": "event",
            "event": "WhatsAppReceived",
            "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
        },
        "settings": {"reentry": "after_exit"},
        "steps": [
            {"id": "reply", "type": "whatsapp_text", "text": "Danke! Dein Code: SUSHI20", "next": "wait"},
            {"id": "wait", "type": "wait", "duration": "PT1H", "next": "follow_up"},
            {
                "id": "follow_up",
                "type": "whatsapp_template",
                "template": {"name": "follow_up_offer", "language": "de"},
                "next": None,
            },
        ],
    }


def test_without_follow_up_the_reply_ends_the_journey():
    spec = kc.KeywordCampaign("Hi", ("hallo",), "exact", "Hallo!", None)
    steps = kc.build_definition(spec)["steps"]
    assert [s["id"] for s in steps] == ["reply"] and steps[0]["next"] is None


def test_several_exact_keywords_are_one_keyword_condition_and_others_one_entry_each():
    exact = kc.build_definition(kc.KeywordCampaign("A", ("promo", "aktion"), "exact", "x"))
    assert exact["entry"]["conditions"] == [
        {"attribute": "text", "op": "keyword", "value": ["promo", "aktion"]}
    ]
    contains = kc.build_definition(kc.KeywordCampaign("B", ("sushi", "maki"), "contains", "x"))
    assert "entry" not in contains
    assert [e["conditions"][0] for e in contains["entries"]] == [
        {"attribute": "text", "op": "contains", "value": "sushi"},
        {"attribute": "text", "op": "contains", "value": "maki"},
    ]


@pytest.mark.parametrize(
    ("amount", "unit", "iso"), [(30, "minutes", "PT30M"), (1, "hours", "PT1H"), (2, "days", "P2D")]
)
def test_delay_becomes_an_iso_duration(amount, unit, iso):
    assert kc.FollowUp("t", "de", delay_amount=amount, delay_unit=unit).duration == iso


def test_keywords_are_split_deduplicated_by_folding_and_refused_per_item():
    assert kc.parse_keywords(" PROMO, promo!, Aktion ,", match="exact") == ["PROMO", "Aktion"]
    with pytest.raises(kc.ShortcutError) as caught:
        kc.parse_keywords("ok, ?!, (a+", match="regex")
    assert any("(a+" in m and "regular expression" in m for m in caught.value.errors["keywords"])
    with pytest.raises(kc.ShortcutError) as caught:
        kc.parse_keywords("promo, ?!", match="exact")
    assert caught.value.errors["keywords"] == [
        "“?!” has no letters or digits: punctuation around a keyword is ignored."
    ]
    with pytest.raises(kc.ShortcutError):
        kc.parse_keywords(" , ", match="exact")


@pytest.fixture
def offer(project):
    account = _account(project)
    return MessageTemplate.objects.create(
        project=project, account=account, name="follow_up_offer", language="de", category="MARKETING",
        status="APPROVED", components=[{"type": "BODY", "text": "Noch hungrig?"}],
    )  # fmt: skip


def test_create_saves_a_draft_claiming_the_folded_keyword(project, offer):
    journey = kc.create_keyword_campaign(project=project, spec=PROMO, actor=SYSTEM)
    assert journey.status == JourneyStatus.DRAFT
    assert journey.keywords == ["promo"] and journey.entry_events == ["WhatsAppReceived"]


def test_save_and_activate_writes_nothing_when_activation_is_blocked(project, offer):
    first = kc.create_keyword_campaign(project=project, spec=PROMO, actor=SYSTEM, activate=True)
    Journey.objects.filter(pk=first.pk).update(name="Promo 2")
    with pytest.raises(DefinitionError) as caught:
        kc.create_keyword_campaign(project=project, spec=PROMO, actor=SYSTEM, activate=True)
    assert any("claimed by journey 'Promo 2'" in p.message for p in caught.value.problems)
    assert list(Journey.objects.filter(project=project).values_list("name", flat=True)) == ["Promo 2"]


def test_save_and_activate_activates(project, offer, monkeypatch):
    monkeypatch.setattr(services, "validate", lambda journey: [])  # templates are checked by messaging's step
    journey = kc.create_keyword_campaign(project=project, spec=PROMO, actor=SYSTEM, activate=True)
    assert journey.status == JourneyStatus.ACTIVE and journey.version == 1


def _account(project, base_url="https://graph.facebook.com"):
    return WhatsAppAccount.objects.create(
        project=project,
        waba_id=f"w{project.pk}",
        phone_number_id=f"p{project.pk}",
        access_token="t",
        app_secret="s",
        base_url=base_url,
    )


def _menu(project, account, name="support_menu", buttons=("Bestellung", "Lieferung")):
    return MessageTemplate.objects.create(
        project=project,
        account=account,
        name=name,
        language="de",
        category="UTILITY",
        status="APPROVED",
        components=[
            {"type": "BODY", "text": "Wobei können wir helfen?"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": b} for b in buttons]},
        ],
    )


def test_hilfe_explains_what_to_create_when_no_menu_template_exists(project):
    _account(project)
    hilfe = next(e for e in kc.examples(project) if e.key == "hilfe")
    assert not hilfe.ready and "support_menu" in hilfe.note and "quick-reply" in hilfe.note
    with pytest.raises(kc.ExampleUnavailable):
        kc.create_example(project=project, key="hilfe", actor=SYSTEM)
    assert not Journey.objects.filter(project=project).exists()


def test_hilfe_branches_once_per_quick_reply_of_the_menu(project):
    _menu(project, _account(project), buttons=("Bestellung", "Lieferung", "Mitarbeiter"))
    journey = kc.create_example(project=project, key="hilfe", actor=SYSTEM)
    steps = journey.definition["steps"]
    menu = steps[0]
    assert menu["type"] == "whatsapp_template" and menu["template"] == {
        "name": "support_menu",
        "language": "de",
    }
    assert list(menu["buttons"]) == ["Bestellung", "Lieferung", "Mitarbeiter"]
    branches = {s["id"]: s for s in steps[1:]}
    assert set(menu["buttons"].values()) == set(branches)
    assert all(s["type"] == "whatsapp_text" and s["text"] for s in branches.values())
    assert journey.keywords == ["hilfe"]


def test_hilfe_uses_another_quick_reply_template_of_the_project(project):
    _menu(project, _account(project), name="service_menu", buttons=("Ja", "Nein"))
    journey = kc.create_example(project=project, key="hilfe", actor=SYSTEM)
    assert journey.definition["steps"][0]["template"]["name"] == "service_menu"


def test_promo_example_replies_only_without_a_marketing_template(project):
    _account(project)
    journey = kc.create_example(project=project, key="promo", actor=SYSTEM)
    assert [s["id"] for s in journey.definition["steps"]] == ["reply"]
    assert journey.definition["steps"][0]["text"] == "Danke! Ihr Code: SUSHI20"


@pytest.fixture
def simulator(settings, tmp_path):
    from whatsapp.simulator import store

    settings.SIMULATOR_ENABLED = True
    settings.SIMULATOR_STATE_DIR = str(tmp_path / "simulator")
    settings.SIMULATOR_APPROVAL_SECONDS = 0
    yield
    store.close()


def test_on_the_simulator_the_examples_create_their_templates(project, simulator):
    from whatsapp.simulator import store

    account = _account(project, base_url="http://testserver/simulator/graph")
    assert all(e.ready for e in kc.examples(project))
    hilfe = kc.create_example(project=project, key="hilfe", actor=SYSTEM)
    promo = kc.create_example(project=project, key="promo", actor=SYSTEM)
    menu = MessageTemplate.objects.get(project=project, name="support_menu")
    assert menu.status == "APPROVED" and menu.meta_id
    assert store.find_template(account.waba_id, "support_menu", "de")["status"] == "APPROVED"
    assert list(hilfe.definition["steps"][0]["buttons"]) == ["Bestellung", "Lieferung", "Mitarbeiter"]
    assert promo.definition["steps"][-1]["template"] == {"name": "follow_up_offer", "language": "de"}
    # A second time finds the templates instead of making them again.
    kc.create_example(project=project, key="hilfe", actor=SYSTEM)
    assert MessageTemplate.objects.filter(project=project, name="support_menu").count() == 1


def test_unknown_example_is_refused(project):
    with pytest.raises(kc.ExampleUnavailable):
        kc.create_example(project=project, key="nope", actor=SYSTEM)
