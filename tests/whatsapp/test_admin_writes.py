"""The Django admin writes through the services: no resend by editing a message, status only by resume."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.models import Message, MessageStatus
from controlpanel.models import AuditEntry, User
from tests.factories import SubscriberFactory
from whatsapp.models import AccountStatus, WhatsAppAccount


@pytest.fixture
def operator(client, db):
    client.force_login(User.objects.create_superuser(email="ops@example.com", password="pw-for-tests-123"))
    return client


@pytest.fixture
def suspended(account):
    WhatsAppAccount.objects.filter(pk=account.pk).update(
        status=AccountStatus.SUSPENDED, status_reason="Meta: the access token expired."
    )
    account.refresh_from_db()
    return account


def _change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def _form_data(page) -> dict:
    """What the browser would post back: the form's initial values for its editable fields."""
    form = page.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        data[name] = "" if value is None else value
    return data


def test_a_sent_message_cannot_be_set_back_to_queued(operator, account):
    message = Message.objects.create(
        project=account.project,
        subscriber=SubscriberFactory(project=account.project),
        account=account,
        status=MessageStatus.DELIVERED,
        wamid="wamid.abc",
    )
    page = operator.get(_change_url(message))
    assert page.status_code == 200
    assert 'name="status"' not in page.content.decode() and 'name="wamid"' not in page.content.decode()
    operator.post(_change_url(message), {"status": "queued", "wamid": "", "attempts": "0"})
    message.refresh_from_db()
    assert (message.status, message.wamid) == (MessageStatus.DELIVERED, "wamid.abc")
    assert operator.get(reverse("admin:campaigns_message_add")).status_code == 403


def test_account_status_is_read_only_and_changes_only_by_the_resume_action(operator, suspended):
    page = operator.get(_change_url(suspended))
    assert page.status_code == 200 and 'name="status"' not in page.content.decode()
    operator.post(_change_url(suspended), {**_form_data(page), "status": "active"})
    suspended.refresh_from_db()
    assert suspended.status == AccountStatus.SUSPENDED

    response = operator.post(
        reverse("admin:whatsapp_whatsappaccount_changelist"),
        {"action": "resume_sending", "_selected_action": [suspended.pk]},
        follow=True,
    )
    assert "Sending resumed for 1 account." in response.content.decode()
    suspended.refresh_from_db()
    assert (suspended.status, suspended.status_reason) == (AccountStatus.ACTIVE, "")
    assert AuditEntry.objects.filter(action="whatsapp.resumed").count() == 1


def test_account_edits_go_through_the_connection_service(operator, account):
    page = operator.get(_change_url(account))
    response = operator.post(_change_url(account), {**_form_data(page), "throughput_mps": "200"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.throughput_mps == 200 and account.access_token == "EAAG-test-token"
    assert AuditEntry.objects.get(action="whatsapp.updated").changes == {"fields": ["throughput_mps"]}


def test_account_edits_are_checked_like_the_panel(operator, account):
    page = operator.get(_change_url(account))
    # Moving the connection to another endpoint without re-entering the secrets is refused, as
    # in Settings → WhatsApp: the stored token must not follow it there.
    response = operator.post(
        _change_url(account),
        {**_form_data(page), "base_url": "https://evil.example.com", "throughput_mps": "5000"},
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "up to 1,000" in text and "WHATSAPP_EXTRA_BASE_URLS" in text
    account.refresh_from_db()
    assert account.base_url == "https://graph.facebook.com" and account.throughput_mps == 80
    assert operator.get(reverse("admin:whatsapp_whatsappaccount_add")).status_code == 403
