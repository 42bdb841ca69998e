"""Automatic WhatsApp texts per project and language: the subscriber's Language tag picks one."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from campaigns.languages import pick_language
from campaigns.models import Message
from controlpanel.models import AuditEntry, Role
from controlpanel.services import Actor
from subscribers.models import Subscriber
from tests.factories import ProjectFactory
from whatsapp import automatic_texts as at
from whatsapp.models import AutomaticText

from . import payloads as p
from .test_webhook import deliver

DE_OUT = at.DEFAULTS["de"][at.OPT_OUT]
DE_IN = at.DEFAULTS["de"][at.OPT_IN]
EN_OUT = at.DEFAULTS["en"][at.OPT_OUT]
EN_IN = at.DEFAULTS["en"][at.OPT_IN]
WA_ID = "16505551234"


def now_text(body: str) -> dict:
    payload = p.text(body, wa_id=WA_ID)
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(int(time.time()))
    return payload


def subscriber_speaking(account, language: str) -> Subscriber:
    return Subscriber.objects.create(project=account.project, phone=f"+{WA_ID}", language=language)


# --- the service --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        *[("de", DE_OUT), ("de_AT", DE_OUT), ("de-at", DE_OUT), ("DE", DE_OUT)],
        *[("en", EN_OUT), ("en_GB", EN_OUT), ("fr", EN_OUT), ("", EN_OUT), ("xx_YY", EN_OUT)],
    ],
)
def test_defaults_by_subscriber_language(project, language, expected):
    assert at.text_for(project, at.OPT_OUT, language) == expected


def test_the_project_text_beats_the_default_and_exact_beats_base(project):
    actor = Actor(label="test")
    at.save_texts(project=project, language="de", texts={at.OPT_OUT: "Abgemeldet."}, actor=actor)
    at.save_texts(project=project, language="de-CH", texts={at.OPT_OUT: "Abgmäldet."}, actor=actor)
    at.save_texts(project=project, language="fr", texts={at.OPT_OUT: "Désabonné."}, actor=actor)
    assert at.text_for(project, at.OPT_OUT, "de_AT") == "Abgemeldet."
    assert at.text_for(project, at.OPT_OUT, "de_ch") == "Abgmäldet."
    assert at.text_for(project, at.OPT_OUT, "fr_CA") == "Désabonné."
    assert at.text_for(project, at.OPT_IN, "de") == DE_IN  # the other kind keeps its default
    assert at.text_for(ProjectFactory(), at.OPT_OUT, "de") == DE_OUT  # another project: untouched


def test_the_language_is_picked_as_campaigns_pick_a_template_language(project):
    """One picker (campaigns.languages): a regional text serves its base language too, as a
    campaign's pt_BR template goes to a subscriber whose Language tag is pt."""
    at.save_texts(
        project=project, language="pt-BR", texts={at.OPT_OUT: "Descadastrado."}, actor=Actor(label="t")
    )
    texts = {"en": EN_OUT, "de": DE_OUT, "pt_br": "Descadastrado."}
    for language in ("pt", "pt_PT", "pt-br", "de_AT", "en_GB", "fr", ""):
        picked = pick_language(language, list(texts), "en")
        assert at.text_for(project, at.OPT_OUT, language) == texts[picked], language
    assert at.text_for(project, at.OPT_OUT, "pt") == "Descadastrado."


def test_an_empty_text_sends_nothing_in_that_language_only(project):
    at.save_texts(project=project, language="en", texts={at.OPT_OUT: ""}, actor=Actor(label="t"))
    assert at.text_for(project, at.OPT_OUT, "en") == ""
    assert at.text_for(project, at.OPT_OUT, "fr") == ""  # falls back to English: nothing
    assert at.text_for(project, at.OPT_OUT, "de") == DE_OUT


def test_saving_the_default_removes_the_row_and_changes_are_audited(project):
    actor = Actor(label="t")
    assert at.save_texts(project=project, language="de", texts={at.OPT_OUT: "Tschüss"}, actor=actor)
    assert AutomaticText.objects.filter(project=project).count() == 1
    assert at.save_texts(
        project=project, language="de", texts={at.OPT_OUT: DE_OUT, at.OPT_IN: DE_IN}, actor=actor
    )
    assert not AutomaticText.objects.filter(project=project).exists()
    assert not at.save_texts(project=project, language="de", texts={at.OPT_OUT: DE_OUT}, actor=actor)
    actions = list(AuditEntry.objects.filter(project=project).values_list("action", flat=True))
    assert actions == ["whatsapp.automatic_texts_updated"] * 2


def test_limits(project):
    with pytest.raises(ValueError):
        at.save_texts(project=project, language="de", texts={at.OPT_OUT: "x" * 1001}, actor=Actor(label="t"))
    with pytest.raises(ValueError):
        at.save_texts(project=project, language="not a code", texts={at.OPT_OUT: "x"}, actor=Actor(label="t"))


# --- the inbound path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "out_text", "in_text"),
    [
        ("de", DE_OUT, DE_IN),
        ("de_AT", DE_OUT, DE_IN),
        ("en", EN_OUT, EN_IN),
        ("fr", EN_OUT, EN_IN),
        ("", EN_OUT, EN_IN),
    ],
)
def test_the_confirmation_speaks_the_subscriber_language(client, account, language, out_text, in_text):
    subscriber_speaking(account, language)
    deliver(client, account, now_text("STOPP"))
    deliver(client, account, now_text("START"))
    assert list(Message.objects.order_by("id").values_list("body", flat=True)) == [out_text, in_text]


def test_a_project_german_text_wins_and_empty_sends_nothing(client, account):
    at.save_texts(
        project=account.project,
        language="de",
        texts={at.OPT_OUT: "Schade! Sie sind abgemeldet.", at.OPT_IN: ""},
        actor=Actor(label="t"),
    )
    subscriber_speaking(account, "de_DE")
    deliver(client, account, now_text("STOP"))
    deliver(client, account, now_text("START"))  # switched off in German
    assert list(Message.objects.values_list("body", flat=True)) == ["Schade! Sie sind abgemeldet."]


# --- the migration ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_customised_account_texts():
    old, new = [("whatsapp", "0004_delivery_malformed")], [("whatsapp", "0005_automatic_texts")]
    executor = MigrationExecutor(connection)
    executor.migrate(old)
    apps = executor.loader.project_state(old).apps
    Project = apps.get_model("controlpanel", "Project")
    Account = apps.get_model("whatsapp", "WhatsAppAccount")
    custom, default, silent = (
        Project.objects.create(name=n, slug=n) for n in ("custom", "default", "silent")
    )
    common = {"waba_id": "1", "access_token": "t", "app_secret": "s"}
    Account.objects.create(project=custom, phone_number_id="1", opt_out_confirmation="Bye for now.", **common)
    Account.objects.create(project=default, phone_number_id="2", **common)
    Account.objects.create(
        project=silent, phone_number_id="3", opt_out_confirmation="", opt_in_confirmation="", **common
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(new)
    rows = AutomaticText.objects.order_by("project__slug", "kind").values_list(
        "project__slug", "kind", "language", "text"
    )
    assert list(rows) == [
        ("custom", at.OPT_OUT, "en", "Bye for now."),
        ("silent", at.OPT_IN, "en", ""),
        ("silent", at.OPT_OUT, "en", ""),
    ]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


# --- the panel ----------------------------------------------------------------------------------


def page(project) -> str:
    return reverse("whatsapp:automatic_replies", args=[project.slug])


def test_page_shows_german_and_english_defaults(owner_client, project):
    response = owner_client.get(page(project))
    assert response.status_code == 200
    html = response.content.decode()
    assert DE_OUT in html and EN_IN in html
    assert 'data-language="de"' in html and 'data-language="en"' in html


def test_admin_saves_resets_and_adds_a_language(owner_client, project):
    url = page(project)
    response = owner_client.post(
        url,
        {
            "action": "save",
            "language": "de",
            "opt_out_confirmation": "Tschüss!",
            "opt_in_confirmation": DE_IN,
        },
    )
    assert response.status_code == 302
    assert at.text_for(project, at.OPT_OUT, "de") == "Tschüss!"
    assert AuditEntry.objects.filter(project=project, action="whatsapp.automatic_texts_updated").exists()
    assert "Tschüss!" in owner_client.get(url).content.decode()

    owner_client.post(url, {"action": "reset", "language": "de"})
    assert at.text_for(project, at.OPT_OUT, "de") == DE_OUT

    owner_client.post(
        url,
        {
            "action": "add",
            "language": "fr-CA",
            "opt_out_confirmation": "Au revoir.",
            "opt_in_confirmation": "",
        },
    )
    assert at.text_for(project, at.OPT_OUT, "fr_CA") == "Au revoir."
    assert at.text_for(project, at.OPT_IN, "fr_CA") == ""
    assert 'data-language="fr_ca"' in owner_client.get(url).content.decode()


def test_the_form_validates_length_and_language(owner_client, project):
    url = page(project)
    response = owner_client.post(
        url,
        {"action": "save", "language": "de", "opt_out_confirmation": "x" * 1001, "opt_in_confirmation": ""},
    )
    assert response.status_code == 200
    assert "at most 1000 characters" in response.content.decode().replace("1,000", "1000")
    response = owner_client.post(
        url, {"action": "add", "language": "French!", "opt_out_confirmation": "x", "opt_in_confirmation": ""}
    )
    assert "Use a language code such as fr, pt or pt_BR." in response.content.decode()
    assert not AutomaticText.objects.filter(project=project).exists()


def test_viewer_reads_but_cannot_change(client, project, member_of):
    client.force_login(member_of(Role.VIEWER))
    response = client.get(page(project))
    assert response.status_code == 200
    assert "Only admins and owners change the automatic replies." in response.content.decode()
    response = client.post(page(project), {"action": "save", "language": "de", "opt_out_confirmation": "x"})
    assert response.status_code == 403
    assert not AutomaticText.objects.exists()


def test_the_connection_page_links_the_automatic_replies(client, account, member_of):
    client.force_login(member_of(Role.OWNER, in_project=account.project))
    html = client.get(reverse("whatsapp:connection", args=[account.project.slug])).content.decode()
    assert page(account.project) in html
