"""The whatsapp pages, forms, checks and labels in German (Accept-Language: de)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from controlpanel.models import Role
from tests.factories import MembershipFactory
from tests.subscribers.test_api_subscribers import ApiClient, key_for
from whatsapp import templates_lint as lint
from whatsapp.forms import AutomaticTextsForm, ConnectionForm
from whatsapp.models import (
    AccountStatus,
    AutomaticTextKind,
    MessageTemplate,
    TemplateCategory,
    TemplateStatus,
    WebhookDelivery,
)

DE = {"HTTP_ACCEPT_LANGUAGE": "de"}


@pytest.fixture
def as_role(client, account):
    def login(role: Role):
        client.force_login(MembershipFactory(project=account.project, role=role).user)
        return client

    return login


def template(account, **kw) -> MessageTemplate:
    defaults = {
        "project": account.project,
        "account": account,
        "name": "spring_sale",
        "language": "de",
        "category": "MARKETING",
        "status": "REJECTED",
        "rejected_reason": "INVALID_FORMAT",
        "quality_score": "GREEN",
        "synced_at": timezone.now(),
        "components": [
            {"type": "BODY", "text": "Hallo {{1}}!", "example": {"body_text": [["Mia"]]}},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Shop", "url": "https://x.test/{{1}}"}]},
        ],
    }
    defaults.update(kw)
    return MessageTemplate.objects.create(**defaults)


def url(name: str, project, *args) -> str:
    return reverse(f"whatsapp:{name}", args=[project.slug, *args])


def test_connection_page_in_german_with_german_dates_and_numbers(as_role, account):
    account.throughput_mps = 1000
    account.save()
    received = timezone.now().replace(year=2026, month=3, day=9, hour=14, minute=5, second=7)
    WebhookDelivery.objects.create(
        project=account.project, account=account, body_sha256="a" * 64, body="{}", received_at=received
    )
    html = as_role(Role.ADMIN).get(url("connection", account.project), **DE).content.decode()
    for german in (
        "WhatsApp-Verbindung",
        "Verbindung testen",
        "Vorlagen synchronisieren",
        "Automatische Antworten",
    ):
        assert german in html
    assert "1.000 Nachrichten pro Sekunde" in html
    assert "Test connection" not in html and "Sync templates" not in html
    assert "Durchsatz (Nachrichten pro Sekunde)" in html  # the form label
    assert "Aktiv" in html  # the account status label
    with timezone.override(account.project.time_zone):
        local = timezone.localtime(received)
    assert local.strftime("%d.%m.%Y") in html


def test_templates_list_and_detail_in_german(as_role, account):
    t = template(account)
    client = as_role(Role.MARKETER)
    html = client.get(url("templates", account.project), **DE).content.decode()
    assert "Nachrichtenvorlagen" in html and "Neue Vorlage" in html and "1 Vorlage" in html
    assert "Abgelehnt" in html and "Hoch" in html and "Nach Name suchen" in html
    assert "Message templates" not in html and "New template" not in html
    detail = client.get(url("template_detail", account.project, t.public_id), **DE).content.decode()
    assert "Meta hat diese Vorlage abgelehnt" in detail
    assert "Schaltfläche 1 (Link)" in detail  # a parameter label from the checks module
    assert "What a send fills in" not in detail


def test_template_form_checks_in_german(as_role, account):
    client = as_role(Role.MARKETER)
    response = client.post(
        url("template_create", account.project),
        {"name": "Bad Name", "language": "de", "category": "MARKETING", "body": "{{1}} Hallo"},
        **DE,
    )
    html = response.content.decode()
    assert "Verwenden Sie nur Kleinbuchstaben, Ziffern und Unterstriche" in html
    assert "Der Text darf nicht mit einem Parameter beginnen" in html
    assert "Meta zur Prüfung einreichen" in html
    assert "Deutsch" in html  # the language choices are named in German
    assert "Use lowercase letters" not in html


def test_automatic_replies_page_and_form_errors_in_german(as_role, account):
    client = as_role(Role.ADMIN)
    page = url("automatic_replies", account.project)
    html = client.get(page, **DE).content.decode()
    assert "Automatische Antworten" in html and "Sprache hinzufügen" in html and "Englisch" in html
    assert "Auf Standard zurücksetzen" not in html  # nothing customised yet
    response = client.post(
        page,
        {"action": "add", "language": "??", "opt_out_confirmation": "x", "opt_in_confirmation": ""},
        **DE,
    )
    assert "Verwenden Sie einen Sprachcode wie fr, pt oder pt_BR." in response.content.decode()


def test_connection_form_errors_in_german(account):
    with translation.override("de"):
        form = ConnectionForm(
            {"waba_id": "1", "phone_number_id": "abc", "graph_version": "23", "base_url": "https://evil.test",
             "throughput_mps": 5000},
            instance=account,
        )  # fmt: skip
        assert not form.is_valid()
        assert form.errors["phone_number_id"] == ["Die Telefonnummern-ID besteht nur aus Ziffern."]
        assert form.errors["graph_version"] == ["Verwenden Sie die Form v23.0."]
        assert "Verwenden Sie Metas Graph API" in form.errors["base_url"][0]
        too_long = AutomaticTextsForm({"language": "de", "opt_out_confirmation": "x" * 1001})
        assert not too_long.is_valid()
        assert "höchstens 1000 Zeichen" in too_long.errors["opt_out_confirmation"][0].replace(".", "")


def test_lint_problems_in_german_and_english():
    draft = lint.Draft(category=lint.MARKETING, language="de", name="ok_name", body="Hallo {{1}} {{2}}")
    with translation.override("de"):
        messages = [p.message for p in lint.lint(draft)]
    assert "{{1}} und {{2}} stehen direkt nebeneinander; setzen Sie Wörter dazwischen." in messages
    messages = [p.message for p in lint.lint(draft)]
    assert "{{1}} and {{2}} stand next to each other; put words between them." in messages


def test_choice_labels_in_german():
    with translation.override("de"):
        assert str(TemplateStatus.REJECTED.label) == "Abgelehnt"
        assert str(TemplateStatus.PENDING.label) == "In Prüfung"
        assert str(TemplateCategory.UTILITY.label) == "Service"
        assert str(AccountStatus.SUSPENDED.label) == "Versand gestoppt"
        assert str(AutomaticTextKind.OPT_OUT_CONFIRMATION.label) == "Opt-out-Bestätigung"


def test_api_placeholder_labels_follow_the_language(client, account):
    template(account, status="APPROVED", rejected_reason="")
    api = ApiClient(client, key_for(account.project))
    api.headers["HTTP_ACCEPT_LANGUAGE"] = "de"
    (found,) = api.get("/templates").json()
    assert [p["label"] for p in found["placeholders"]] == ["Text", "Schaltfläche 1 (Link)"]
    assert found["status"] == "APPROVED"  # machine values stay as they are


def test_simulator_phone_page_in_german(client, account, settings):
    client.force_login(MembershipFactory(project=account.project, role=Role.OWNER).user)
    response = client.get(reverse("simulator:phone"), **DE)
    if response.status_code == 404:  # the simulator is off in this configuration
        pytest.skip("simulator disabled")
    html = response.content.decode()
    assert "Simulierte Telefone" in html and "Neues Telefon" in html
    assert "Simulated handsets" not in html


def test_meta_error_explanations_and_sync_summary_in_german():
    from whatsapp.errors import explain
    from whatsapp.services import SyncResult

    with translation.override("de"):
        assert explain(190).startswith("Das Zugriffstoken ist abgelaufen.")
        assert explain(999999) == "Meta-Fehler 999999."
        assert SyncResult(unchanged=1200).summary() == "keine Änderungen (1.200 Vorlagen)"
        assert SyncResult(added=["a (de)"]).summary() == "1 hinzugefügt (a (de))"
    assert explain(190).startswith("The access token expired.")  # workers and stored reasons: English
    assert SyncResult(unchanged=1200).summary() == "no changes (1,200 templates)"
