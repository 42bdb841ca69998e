"""A campaign from draft to completed through every real module of the pipeline (no stand-ins):
drafts -> preflight -> test send -> launch -> snapshot -> dispatcher -> batch sender -> Meta (the
fake Graph) -> status webhooks -> completed, with figures that add up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import actors, drafts, lifecycle, preflight, progress, services
from campaigns.models import CampaignStatus, Message, MessageStatus
from campaigns.sending import dispatch, send_batch
from campaigns.stats import campaign_stats
from controlpanel.models import AuditEntry
from controlpanel.services import Actor
from subscribers.models import ConsentState
from tests.factories import SubscriberFactory
from whatsapp.signals import StatusUpdate

from .conftest import make_template

ACTOR = Actor(label="flow test")


@pytest.fixture
def broker(monkeypatch, django_capture_on_commit_callbacks):
    queue: list[tuple[list[int], str | None]] = []
    monkeypatch.setattr(actors.send_messages, "send", lambda ids, lease=None: queue.append((ids, lease)))

    def run_until_idle(max_ticks: int = 50) -> None:
        for _ in range(max_ticks):
            with django_capture_on_commit_callbacks(execute=True):
                dispatch()
            if not queue:
                return
            while queue:
                ids, lease = queue.pop(0)
                send_batch(ids, lease)

    return run_until_idle


@pytest.fixture
def audience(account):
    project = account.project
    people = {
        "ada": SubscriberFactory(
            project=project, phone="+4915100000001", name="Ada", language="de",
            whatsapp_consent=ConsentState.OPTED_IN,
        ),
        "bob": SubscriberFactory(
            project=project, phone="+4915100000002", name="", language="en",
            whatsapp_consent=ConsentState.OPTED_IN,
        ),
        "cem": SubscriberFactory(
            project=project, phone="+4915100000003", name="Cem", language="de",
            whatsapp_consent=ConsentState.OPTED_OUT,
        ),
        "dan": SubscriberFactory(
            project=project, phone="+4915100000004", name="Dan", language="fr",
            whatsapp_consent=ConsentState.UNKNOWN,
        ),
    }  # fmt: skip
    return people


def promo_templates(account):
    for language, text in (("de", "Hallo {{1}}, neu in {{2}}!"), ("en", "Hi {{1}}, new in {{2}}!")):
        make_template(
            account,
            name="spring_promo",
            language=language,
            category="MARKETING",
            components=[{"type": "BODY", "text": text}],
        )


def test_a_promotion_goes_from_draft_to_completed(account, audience, graph, broker):
    promo_templates(account)
    project = account.project
    data = drafts.CampaignInput(
        name="Spring sale",
        purpose="promotion",
        template_name="spring_promo",
        languages=["de", "en"],
        fallback_language="en",
        bindings={"body": {"1": '{{ subscriber.name | default: "Kunde" }}', "2": "{{ values.shop }}"}},
        audience_kind="rule",
        rule={"type": "group", "op": "and", "children": [{"type": "all"}]},  # all four
        recipients=[(audience["ada"].phone, {"shop": "Köln"}), (audience["bob"].phone, {"shop": "Bonn"})],
    )
    campaign = drafts.create_campaign(project=project, actor=ACTOR, data=data)
    assert campaign.status == CampaignStatus.DRAFT
    assert drafts.launch_problems(campaign) == []

    # Preflight: two can receive it; the opted-out and the never-opted-in are counted, not sent.
    figures = preflight.preflight(campaign).as_dict()
    assert figures["audience"] == 4
    assert figures["sendable"] == 2, figures
    excluded = {e["reason"]: e["count"] for e in figures["excluded"] if e["count"]}
    assert sum(excluded.values()) == 2 and len(excluded) == 2, excluded  # opted out; no opt-in

    # A test send goes to one phone now, outside the campaign's figures.
    test = lifecycle.test_send(campaign=campaign, phone=audience["ada"].phone, actor=ACTOR)
    assert test.campaign_id is None and test.body == "Hallo Ada, neu in Köln!"

    lifecycle.launch(campaign=campaign, actor=ACTOR)
    lifecycle.start_due()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    rows = {m.subscriber_id: m for m in Message.objects.filter(campaign=campaign)}
    assert rows[audience["cem"].pk].status == MessageStatus.SKIPPED
    assert rows[audience["dan"].pk].status == MessageStatus.SKIPPED

    broker()
    sent = {m.subscriber_id: m for m in Message.objects.filter(campaign=campaign, status=MessageStatus.SENT)}
    assert set(sent) == {audience["ada"].pk, audience["bob"].pk}
    assert sent[audience["ada"].pk].body == "Hallo Ada, neu in Köln!"
    assert sent[audience["bob"].pk].body == "Hi Kunde, new in Bonn!"
    posted = [body for _, url, body, _ in graph.calls if url.endswith("/messages")]
    # The test send and one campaign message each: nobody twice, nobody skipped posted.
    assert len(posted) == 3
    callbacks = sorted(b["biz_opaque_callback_data"] for b in posted)
    assert callbacks == sorted([test.callback_data, *(m.callback_data for m in sent.values())])

    now = timezone.now()
    services.apply_statuses(
        [
            StatusUpdate(
                project_id=project.pk, account_id=account.pk, wamid=m.wamid, status="delivered",
                timestamp=now + timedelta(seconds=1), callback_data=m.callback_data,
                pricing={"category": "marketing", "type": "regular", "billable": True},
            )
            for m in sent.values()
        ]
    )  # fmt: skip
    progress.complete_finished([campaign.pk])
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    stats = campaign_stats(campaign)
    assert (stats.delivered, stats.skipped, stats.failed, stats.total) == (2, 2, 0, 4)
    actions = list(AuditEntry.objects.filter(project=project).values_list("action", flat=True))
    assert {"campaign.create", "campaign.test_send", "campaign.launch"} <= set(actions)
