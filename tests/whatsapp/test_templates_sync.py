"""The periodic template sync: every account, one failing account does not stop the others."""

from __future__ import annotations

import pytest
from django.urls import reverse

from controlpanel.models import Role
from tests.factories import MembershipFactory, ProjectFactory
from tests.fakegraph import FakeGraph, error_answer
from whatsapp import client as wa_client
from whatsapp.models import MessageTemplate, WhatsAppAccount
from whatsapp.template_actors import sync_all_templates, sync_every_account

LISTED = {
    "data": [
        {
            "id": "920070352646140",
            "name": "summer_sale",
            "language": "en_US",
            "status": "APPROVED",
            "category": "MARKETING",
            "parameter_format": "POSITIONAL",
            "quality_score": {"score": "GREEN", "date": 1718000000},
            "components": [{"type": "BODY", "text": "Hi {{1}}!", "example": {"body_text": [["Mark"]]}}],
        }
    ],
    "paging": {"cursors": {"before": "A", "after": "B"}},
}


@pytest.fixture
def fakes(monkeypatch):
    """One fake Meta per WABA id, so accounts can answer differently."""
    by_waba: dict[str, FakeGraph] = {}
    real = wa_client._session

    def session(account):
        fake = by_waba.setdefault(account.waba_id, FakeGraph())
        s = real(account)
        s.mount("https://", fake)
        s.mount("http://", fake)
        return s

    monkeypatch.setattr(wa_client, "_session", session)
    return by_waba


def connect(waba_id: str) -> WhatsAppAccount:
    return WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id=waba_id,
        phone_number_id=f"{waba_id}0",
        access_token=f"token-{waba_id}",
        app_secret="s",
    )


def test_sync_every_account_survives_one_failing_account(db, fakes):
    broken, healthy = connect("111"), connect("222")
    fakes["111"] = FakeGraph()
    fakes["111"].answer = error_answer(190, status=401, message="Access token expired")
    fakes["222"] = FakeGraph()
    fakes["222"].answer = lambda _: (200, LISTED)

    failed = sync_every_account()

    assert list(failed) == [broken.pk] and "190" in failed[broken.pk]
    template = MessageTemplate.objects.get(account=healthy)
    assert (template.name, template.status, template.quality_score) == ("summer_sale", "APPROVED", "GREEN")
    assert template.project == healthy.project and template.synced_at is not None
    assert not MessageTemplate.objects.filter(account=broken).exists()
    # Both accounts were asked, on their own WABA.
    assert fakes["111"].calls[0][1].startswith(f"{broken.graph_base}/111/message_templates")
    assert fakes["222"].calls[0][1].startswith(f"{healthy.graph_base}/222/message_templates")


def test_the_actor_is_safe_to_run_twice(db, fakes):
    account = connect("333")
    fakes["333"] = FakeGraph()
    fakes["333"].answer = lambda _: (200, LISTED)
    sync_all_templates.fn()
    sync_all_templates.fn()
    assert MessageTemplate.objects.filter(account=account).count() == 1


def _listing(*templates: dict) -> dict:
    return {"data": [dict(t) for t in templates], "paging": {}}


def test_sync_now_reports_only_what_changed(client, db, fakes):
    account = connect("801")
    summer = LISTED["data"][0]
    winter = {**summer, "id": "920070352646141", "name": "winter_sale", "language": "de"}
    fake = fakes.setdefault("801", FakeGraph())
    client.force_login(MembershipFactory(project=account.project, role=Role.MARKETER).user)
    sync = reverse("whatsapp:templates_sync", args=[account.project.slug])

    fake.answer = lambda _: (200, _listing(summer, winter))
    page = client.post(sync, follow=True).content.decode()
    assert "2 added (summer_sale (en_US), winter_sale (de))" in page

    # Nothing changed at Meta: nothing is reported as updated.
    page = client.post(sync, follow=True).content.decode()
    assert "no changes (2 templates)" in page and "updated" not in page

    # Meta paused one and dropped the other.
    fake.answer = lambda _: (200, _listing({**summer, "status": "PAUSED"}))
    page = client.post(sync, follow=True).content.decode()
    assert "1 updated (summer_sale (en_US)), 1 removed (winter_sale (de))" in page
    assert MessageTemplate.objects.get(name="summer_sale").status == "PAUSED"
    assert MessageTemplate.objects.get(name="winter_sale").status == "DELETED"
