"""Texts in the subscriber's language: a whatsapp_text step's ``texts`` and the keyword examples.

The subscriber's Language tag picks the text as campaigns pick a template language (exact locale,
then the base language), else the step's ``text``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Message
from controlpanel.models import Role
from controlpanel.services import Actor
from journeys import engine, services
from journeys import keyword_campaigns as kc
from journeys.definition import DefinitionError, parse
from journeys.entry import Arrival, enter
from journeys.models import Journey, JourneyRun
from journeys.steps import Go
from journeys.steps import get as step_type
from journeys.steps.whatsapp import pick_text
from tests.factories import SubscriberFactory
from tests.journeys.helpers import make_account, make_journey, make_run, make_template, visit

pytestmark = pytest.mark.django_db

SYSTEM = Actor(label="test")
GERMAN = "Danke! Ihr Code: SUSHI20"
ENGLISH = "Thank you! Your code: SUSHI20"


def _received(text: str = "promo") -> dict:
    return {"name": "WhatsAppReceived", "attributes": {"text": text}}


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("de", GERMAN),
        ("de_AT", GERMAN),
        ("de-at", GERMAN),
        ("en", ENGLISH),
        ("en_GB", ENGLISH),
        ("fr", GERMAN),
        ("", GERMAN),
    ],
)
def test_the_promo_example_replies_in_the_subscribers_language_through_a_real_run(
    project, language, expected
):
    """The example as created (no follow-up template): entered, ticked by the engine, queued."""
    make_account(project)
    journey = kc.create_example(project=project, key="promo", actor=SYSTEM)
    journey = services.activate(journey=journey, actor=SYSTEM)
    now = timezone.now()
    sub = SubscriberFactory(project=project, language=language, last_inbound_at=now - timedelta(seconds=5))
    enter(journey, [Arrival(sub.pk, f"t:{sub.pk}", {"event": _received()})], now=now)
    assert engine.tick(now=now + timedelta(seconds=1)) == 1
    message = Message.objects.get(subscriber=sub)
    assert message.body == expected
    assert JourneyRun.objects.get(subscriber=sub).state == "done"


def test_a_text_without_translations_reaches_everyone_as_written(project):
    make_account(project)
    now = timezone.now()
    journey = make_journey(
        project, [{"id": "reply", "type": "whatsapp_text", "text": "Hallo {{ subscriber.name }}"}]
    )
    sub = SubscriberFactory(project=project, name="Eva", language="en", last_inbound_at=now)
    v = visit(make_run(journey, sub, now=now), "reply", now=now)
    assert step_type("whatsapp_text").run(v) == Go("next")
    assert Message.objects.get().body == "Hallo Eva"


def test_translations_render_liquid_per_subscriber(project):
    make_account(project)
    now = timezone.now()
    step = {
        "id": "reply",
        "type": "whatsapp_text",
        "text": "Hi {{ subscriber.name }}",
        "texts": {"de": "Hallo {{ subscriber.name }}", "pt_BR": "Olá {{ subscriber.name }}"},
    }
    journey = make_journey(project, [step])
    for name, language, body in [
        ("Eva", "de_CH", "Hallo Eva"),
        ("Ana", "pt-br", "Olá Ana"),
        ("Jo", "pt_PT", "Olá Jo"),
        ("Luc", "fr", "Hi Luc"),
    ]:
        sub = SubscriberFactory(project=project, name=name, language=language, last_inbound_at=now)
        v = visit(make_run(journey, sub, now=now), "reply", now=now)
        assert step_type("whatsapp_text").run(v) == Go("next")
        assert Message.objects.get(subscriber=sub).body == body


def test_pick_text_rules():
    texts = {"de": "Hallo", "en_US": "Hi (US)", "en": "Hi"}
    assert pick_text("fallback", texts, "de_AT") == "Hallo"
    assert pick_text("fallback", texts, "en-us") == "Hi (US)"
    assert pick_text("fallback", texts, "en_GB") == "Hi"  # the base language beats a regional one
    assert pick_text("fallback", texts, "fr") == "fallback"
    assert pick_text("fallback", texts, "") == "fallback"
    assert pick_text("fallback", None, "de") == "fallback"
    assert pick_text("fallback", {"de": "  "}, "de") == "fallback"


def test_hilfe_answers_ship_german_and_english(project):
    account = make_account(project)
    menu = make_template(
        account,
        components=[
            {"type": "BODY", "text": "Wobei können wir Ihnen helfen?"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Bestellung"},
                    {"type": "QUICK_REPLY", "text": "Lieferung"},
                    {"type": "QUICK_REPLY", "text": "{{ x }} Sonstiges"},
                ],
            },
        ],
    )
    data = kc.hilfe_definition(menu)
    parse(data, project=project, strict=True)  # valid as shipped, translations included
    answers = {s["id"]: s for s in data["steps"] if s["type"] == "whatsapp_text"}
    order = answers["answer_1"]
    assert (
        order["texts"]["de"]
        == order["text"]
        == "Ihre Bestellungen finden Sie in der App unter „Meine Bestellungen“."
    )
    assert order["texts"]["en"] == "You will find your orders in the app under “My orders”."
    other = answers["answer_3"]
    assert "{{" not in other["text"] and other["texts"]["en"].startswith("You chose")
    # The formal "Sie" in every German text the examples ship.
    for step in answers.values():
        assert " du " not in f" {step['texts']['de'].lower()} " and "dein" not in step["texts"]["de"].lower()
    now = timezone.now()
    journey = make_journey(project, data["steps"])
    for language, start in [
        ("en_AU", "Deliveries usually"),
        ("de", "Lieferungen kommen"),
        ("fr", "Lieferungen kommen"),
    ]:
        sub = SubscriberFactory(project=project, language=language, last_inbound_at=now)
        v = visit(make_run(journey, sub, now=now), "answer_2", now=now)
        assert step_type("whatsapp_text").run(v) == Go("next")
        assert Message.objects.get(subscriber=sub).body.startswith(start)


@pytest.mark.parametrize(
    ("texts", "field"),
    [
        ({"deutsch!": "Hallo"}, "texts.deutsch!"),
        ({"de": ""}, "texts.de"),
        ({"de": "x" * 4097}, "texts.de"),
        ({"de": "{{ customer.name }}"}, "texts.de"),
        ({"de": "Hallo", "DE": "Hallo"}, "texts.DE"),
        ("Hallo", "texts"),
    ],
)
def test_the_definition_refuses_bad_translations(texts, field):
    data = {
        "name": "J",
        "entry": {"type": "api"},
        "steps": [{"id": "reply", "type": "whatsapp_text", "text": "Hi", "texts": texts}],
    }
    with pytest.raises(DefinitionError) as caught:
        parse(data)
    assert [(p.step, p.field) for p in caught.value.problems] == [("reply", field)]


def test_the_json_schema_knows_texts():
    import jsonschema_rs

    from journeys.schema import journey_schema

    validator = jsonschema_rs.Draft202012Validator(journey_schema())
    good = {
        "name": "J",
        "entry": {"type": "api"},
        "steps": [
            {"id": "r", "type": "whatsapp_text", "text": "Hi", "texts": {"de": "Hallo", "pt_BR": "Olá"}}
        ],
    }
    assert validator.is_valid(good)
    bad = {**good, "steps": [{**good["steps"][0], "texts": {"not a code": "x"}}]}
    assert not validator.is_valid(bad)


# --- the builder and the keyword form round-trip the translations ---------------------------------


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


def test_the_builder_saves_and_shows_the_translations(project, marketer_client):
    journey = services.create_journey(
        project=project,
        data={"name": "J", "entry": {"type": "api"}, "steps": []},
        actor=SYSTEM,
    )
    definition = {
        "name": "J",
        "entry": {"type": "api"},
        "settings": {"reentry": "after_exit"},
        "steps": [
            {
                "id": "reply",
                "type": "whatsapp_text",
                "text": "Hi",
                "texts": {"de": "Hallo", "en": "Hello"},
                "ui": {"x": 10, "y": 10},
            }
        ],
    }
    url = reverse("journeys:builder_save", args=[project.slug, journey.public_id])
    response = marketer_client.post(url, {"definition": definition}, content_type="application/json")
    assert response.status_code == 200, response.content
    journey.refresh_from_db()
    assert journey.definition["steps"][0]["texts"] == {"de": "Hallo", "en": "Hello"}
    page = marketer_client.get(reverse("journeys:builder", args=[project.slug, journey.public_id]))
    assert '"texts": {"de": "Hallo", "en": "Hello"}' in page.content.decode()
    # A bad language key comes back as a problem of that field, for the builder to mark.
    definition["steps"][0]["texts"] = {"de": "Hallo", "x y": "?"}
    refused = marketer_client.post(url, {"definition": definition}, content_type="application/json")
    assert refused.status_code == 422
    assert [(p["step"], p["field"]) for p in refused.json()["problems"]] == [("reply", "texts.x y")]


def test_the_keyword_form_takes_a_reply_per_language(project, marketer_client):
    url = reverse("journeys:keyword_new", args=[project.slug])
    page = marketer_client.get(url).content.decode()
    assert 'name="reply_de"' in page and 'name="reply_en"' in page
    response = marketer_client.post(
        url,
        {
            "name": "Promo",
            "keywords": "promo",
            "match": "exact",
            "reply": "Danke!",
            "reply_de": "Danke, Ihr Code: X",
            "reply_en": "Thanks, your code: X",
            "action": "draft",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    reply = Journey.objects.get(name="Promo").definition["steps"][0]
    assert reply["text"] == "Danke!" and reply["texts"] == {
        "de": "Danke, Ihr Code: X",
        "en": "Thanks, your code: X",
    }
    # Empty language fields: no translations at all.
    marketer_client.post(
        url,
        {
            "name": "Plain",
            "keywords": "plain",
            "match": "exact",
            "reply": "Hi",
            "reply_de": " ",
            "action": "draft",
        },
    )
    assert "texts" not in Journey.objects.get(name="Plain").definition["steps"][0]


def test_the_promo_example_fills_the_language_fields(project, marketer_client):
    page = marketer_client.get(reverse("journeys:keyword_new", args=[project.slug]) + "?example=promo")
    html = page.content.decode()
    assert GERMAN in html and ENGLISH in html
