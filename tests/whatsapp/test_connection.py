from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.urls import reverse

from controlpanel.models import AuditEntry, Role
from tests.factories import MembershipFactory, ProjectFactory
from tests.fakegraph import error_answer
from whatsapp.models import MessageTemplate, WhatsAppAccount
from whatsapp.services import sync_templates


def admin_client(client, project):
    client.force_login(MembershipFactory(project=project, role=Role.ADMIN).user)
    return client


FORM = {
    "waba_id": "102290129340398",
    "phone_number_id": "106540352242922",
    "display_phone_number": "+1 555 078 3881",
    "graph_version": "v23.0",
    "base_url": "https://graph.facebook.com",
    "throughput_mps": "80",
    "access_token": "EAAG-very-secret",
    "app_secret": "app-secret-value",
    "opt_out_keywords": "stop, stopp, abmelden",
    "opt_in_keywords": "start",
}


def test_connect_stores_secrets_encrypted_and_never_shows_them(client, db):
    project = ProjectFactory()
    c = admin_client(client, project)
    url = reverse("whatsapp:connection", args=[project.slug])
    assert c.post(url, FORM).status_code == 302
    account = WhatsAppAccount.objects.get(project=project)
    assert account.access_token == "EAAG-very-secret" and account.opt_out_keywords == [
        "STOP",
        "STOPP",
        "ABMELDEN",
    ]
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, app_secret FROM whatsapp_whatsappaccount")
        stored = cursor.fetchone()
    assert "EAAG-very-secret" not in stored[0] and "app-secret-value" not in stored[1]
    page = c.get(url).content.decode()
    assert "EAAG-very-secret" not in page and "app-secret-value" not in page
    assert f"/webhooks/whatsapp/{account.public_id}/" in page and account.verify_token in page
    entry = AuditEntry.objects.get(action="whatsapp.connected")
    assert "EAAG" not in str(entry.changes)


def test_empty_secret_on_edit_keeps_the_stored_one(client, db):
    project = ProjectFactory()
    c = admin_client(client, project)
    url = reverse("whatsapp:connection", args=[project.slug])
    c.post(url, FORM)
    c.post(url, {**FORM, "access_token": "", "app_secret": "", "throughput_mps": "1000"})
    account = WhatsAppAccount.objects.get()
    assert (account.access_token, account.throughput_mps) == ("EAAG-very-secret", 1000)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("throughput_mps", "5000", "up to 1,000"),
        ("phone_number_id", "abc", "digits only"),
        ("graph_version", "23", "v23.0"),
        # Folded as inbound texts are, punctuation alone is nothing: it would never match.
        ("opt_out_keywords", "stop, !!!, ...", "!!!, ... cannot match a message"),
        ("opt_in_keywords", "start, ?", "? cannot match a message"),
        # Opt-out wins when a word is in both lists: as an opt-in word it could never work.
        ("opt_in_keywords", "start, Stópp!", "STOPP is also an opt-out keyword"),
    ],
)
def test_bad_input_is_explained_and_nothing_saved(client, db, field, value, error):
    project = ProjectFactory()
    response = admin_client(client, project).post(
        reverse("whatsapp:connection", args=[project.slug]), {**FORM, field: value}
    )
    assert response.status_code == 200 and error in response.content.decode()
    assert not WhatsAppAccount.objects.exists()


def test_marketer_cannot_see_or_change_the_connection(client, db):
    project = ProjectFactory()
    client.force_login(MembershipFactory(project=project, role=Role.MARKETER).user)
    assert client.get(reverse("whatsapp:connection", args=[project.slug])).status_code == 403


def test_test_connection_shows_metas_answer_in_plain_words(client, db, graph):
    project = ProjectFactory()
    c = admin_client(client, project)
    c.post(reverse("whatsapp:connection", args=[project.slug]), FORM)
    graph.answer = lambda _: (
        200,
        {
            "verified_name": "Demo Shop",
            "quality_rating": "GREEN",
            "messaging_limit_tier": "TIER_1K",
            "display_phone_number": "+1 555-078-3881",
            "id": "106540352242922",
        },
    )
    page = c.post(reverse("whatsapp:connection_test", args=[project.slug]), follow=True).content.decode()
    assert "Connected: Demo Shop. Quality GREEN, messaging tier TIER_1K." in page
    assert graph.calls[0][1].startswith("https://graph.facebook.com/v23.0/106540352242922?fields=")
    graph.answer = error_answer(190, status=401, message="Error validating access token")
    page = c.post(reverse("whatsapp:connection_test", args=[project.slug]), follow=True).content.decode()
    assert "The access token expired" in page


def test_sync_follows_paging_and_marks_vanished_templates(db, graph):
    project = ProjectFactory()
    account = WhatsAppAccount.objects.create(
        project=project, waba_id="1", phone_number_id="2", access_token="t", app_secret="s"
    )
    MessageTemplate.objects.create(
        project=project, account=account, name="old", language="en", category="UTILITY", status="APPROVED"
    )
    pages = [
        {
            "data": [
                {
                    "id": "11",
                    "name": "promo",
                    "language": "de",
                    "status": "APPROVED",
                    "category": "MARKETING",
                    "parameter_format": "POSITIONAL",
                    "components": [{"type": "BODY", "text": "Hi {{1}}"}],
                    "quality_score": {"score": "GREEN"},
                    "sub_category": "CUSTOM",
                }
            ],
            "paging": {"next": "https://graph.facebook.com/v23.0/1/message_templates?after=X"},
        },
        {
            "data": [
                {
                    "id": "12",
                    "name": "otp",
                    "language": "en_US",
                    "status": "PENDING",
                    "category": "AUTHENTICATION",
                    "parameter_format": "POSITIONAL",
                    "components": [],
                }
            ],
            "paging": {},
        },
    ]
    graph.answer = lambda _: (200, pages.pop(0))
    result = sync_templates(account=account)
    assert (result.added, result.updated, result.removed) == (["promo (de)", "otp (en_US)"], [], ["old (en)"])
    promo = MessageTemplate.objects.get(name="promo")
    assert (promo.quality_score, promo.extra) == ("GREEN", {"sub_category": "CUSTOM"})
    assert MessageTemplate.objects.get(name="old").status == "DELETED"
    assert graph.calls[1][1] == "https://graph.facebook.com/v23.0/1/message_templates?after=X"


def test_connect_whatsapp_command_for_the_simulator_is_idempotent(db):
    project = ProjectFactory(slug="shop")
    out = io.StringIO()
    call_command(
        "connect_whatsapp", "shop", "--simulator", "--access-token", "T0K", "--app-secret", "S3C", stdout=out
    )
    lines = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    assert set(lines) == {"webhook_url", "phone_number_id", "waba_id", "verify_token"}
    assert "T0K" not in out.getvalue() and "S3C" not in out.getvalue()
    account = WhatsAppAccount.objects.get(project=project)
    assert (account.access_token, account.app_secret) == ("T0K", "S3C")
    assert account.base_url.endswith("/simulator/graph")
    again = io.StringIO()
    call_command("connect_whatsapp", "shop", "--simulator", stdout=again)
    assert WhatsAppAccount.objects.count() == 1
    assert dict(line.split("=", 1) for line in again.getvalue().splitlines()) == lines
    assert WhatsAppAccount.objects.get().access_token == "T0K"


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest",
        "https://evil.example/v1",
        "http://127.0.0.1:6379",
        "file:///etc/passwd",
    ],
)
def test_base_url_cannot_point_the_token_anywhere(client, db, base_url):
    project = ProjectFactory()
    response = admin_client(client, project).post(
        reverse("whatsapp:connection", args=[project.slug]), {**FORM, "base_url": base_url}
    )
    assert response.status_code == 200
    assert not WhatsAppAccount.objects.exists()


def test_moving_the_connection_requires_the_secrets_again(client, db, settings):
    settings.SIMULATOR_ENABLED = True
    project = ProjectFactory()
    c = admin_client(client, project)
    url = reverse("whatsapp:connection", args=[project.slug])
    c.post(url, FORM)
    moved = {
        **FORM,
        "access_token": "",
        "app_secret": "",
        "base_url": "http://127.0.0.1:8000/simulator/graph",
    }
    response = c.post(url, moved)
    assert response.status_code == 200 and "Enter it again" in response.content.decode()
    assert WhatsAppAccount.objects.get().base_url == "https://graph.facebook.com"
    c.post(url, {**moved, "access_token": "sim-token", "app_secret": "sim-secret"})
    assert WhatsAppAccount.objects.get().base_url == "http://127.0.0.1:8000/simulator/graph"


def test_paging_links_to_another_host_are_not_followed(db, graph):
    project = ProjectFactory()
    account = WhatsAppAccount.objects.create(
        project=project, waba_id="1", phone_number_id="2", access_token="t", app_secret="s"
    )
    graph.answer = lambda _: (200, {"data": [], "paging": {"next": "https://evil.example/steal?after=1"}})
    sync_templates(account=account)
    assert len(graph.calls) == 1


def test_settings_page_labels_in_words_and_shows_the_keyword_defaults(client, db):
    project = ProjectFactory()
    c = admin_client(client, project)
    url = reverse("whatsapp:connection", args=[project.slug])
    c.post(url, {**FORM, "opt_out_keywords": "", "opt_in_keywords": "", "throughput_mps": "1000"})
    page = c.get(url).content.decode()
    for label in ("Throughput (messages per second)", "Base URL", "Graph API version", "Opt-out keywords"):
        assert f">{label}</label>" in page
    assert "throughput_mps" not in re.findall(r"<label[^>]*>([^<]*)</label>", page)
    # Empty keyword fields: the defaults in force are named, as hint and as placeholder.
    assert 'placeholder="STOP, STOPP, ABMELDEN, UNSUBSCRIBE, CANCEL, END, QUIT"' in page
    assert "Empty: the defaults START, ANMELDEN, SUBSCRIBE." in page
    assert "1,000 messages per second" in page
