"""Every error class of reference 5.4, through the batch path: what happens to the row, the campaign,
the account and the rest of the batch."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from campaigns import sending
from campaigns.models import CampaignStatus, Message, MessageStatus
from campaigns.progress import complete_finished, unknown_resend_after
from campaigns.sending import MAX_ATTEMPTS, send_batch, sweep_stuck
from campaigns.services import apply_statuses
from controlpanel.models import AuditEntry
from tests.fakegraph import error_answer, ok_answer
from whatsapp import ratelimit
from whatsapp.models import AccountStatus
from whatsapp.signals import StatusUpdate

from .outbox import fill, make_campaign, patch_render


@pytest.fixture
def rendered(monkeypatch):
    return patch_render(monkeypatch)


@pytest.fixture
def fast(account):
    account.throughput_mps = 1000
    account.save()
    return account


def answer_for(bad_to: set[str], bad):
    """``bad`` for the recipients in ``bad_to``, ok for everyone else."""

    def answer(request_json):
        return bad(request_json) if request_json.get("to") in bad_to else ok_answer(request_json)

    return answer


def to(message) -> str:
    return message.subscriber.phone.lstrip("+")


def due(*messages) -> None:
    Message.objects.filter(pk__in=[m.pk for m in messages]).update(
        send_after=timezone.now() - timedelta(seconds=1)
    )


def row(message) -> Message:
    return Message.objects.get(pk=message.pk)


def test_transient_errors_retry_with_growing_backoff_then_fail(graph, fast, rendered):
    [message] = fill(make_campaign(fast), 1)
    graph.answer = error_answer(131000, status=500)
    waits = []
    for attempt in range(1, MAX_ATTEMPTS):
        before = timezone.now()
        assert send_batch([message.pk]) == {"requeued": 1}
        current = row(message)
        assert current.status == MessageStatus.QUEUED and current.attempts == attempt
        waits.append((current.send_after - before).total_seconds())
        due(message)
    assert waits == sorted(waits) and waits[0] >= 2 and waits[-1] <= 600
    assert send_batch([message.pk]) == {"failed": 1}
    failed = row(message)
    assert failed.error_code == 131000 and "unknown error" in failed.reason
    assert len(graph.calls) == MAX_ATTEMPTS


def test_network_error_before_meta_is_retried_not_unknown(graph, fast, rendered):
    [message] = fill(make_campaign(fast), 1)
    graph.raise_exc = requests.ConnectionError("refused")
    assert send_batch([message.pk]) == {"requeued": 1}
    assert row(message).reason == "Meta could not be reached (ConnectionError)."


def test_pair_rate_limit_waits_4_to_the_x_seconds_for_that_recipient_only(graph, fast, rendered):
    messages = fill(make_campaign(fast), 3)
    graph.answer = answer_for({to(messages[0])}, error_answer(131056, status=429))
    before = timezone.now()
    assert send_batch([m.pk for m in messages]) == {"requeued": 1, "sent": 2}
    first = (row(messages[0]).send_after - before).total_seconds()
    due(messages[0])
    before = timezone.now()
    send_batch([messages[0].pk])
    second = (row(messages[0]).send_after - before).total_seconds()
    assert first == pytest.approx(1, abs=0.5) and second == pytest.approx(4, abs=0.5)
    assert ratelimit.backed_off(fast.phone_number_id) == 0  # the number is not slowed down


def test_throughput_exceeded_backs_the_number_off_and_stops_the_batch(graph, fast, rendered, monkeypatch):
    monkeypatch.setattr(sending, "_threads", lambda: 1)
    monkeypatch.setattr(sending, "_pool", None)
    messages = fill(make_campaign(fast), 5)
    graph.answer = answer_for({to(messages[0])}, error_answer(130429, status=429))
    counts = send_batch([m.pk for m in messages])
    assert ratelimit.backed_off(fast.phone_number_id) > 0
    # One thread posts in slot order: after the 130429 nothing more of the batch went to Meta.
    assert len(graph.calls) < 5 and counts["requeued"] == 5 - counts.get("sent", 0)
    refused = row(messages[0])
    assert refused.error_code == 130429 and refused.attempts == 0  # the number's refusal, not the row's
    assert refused.send_after <= timezone.now() + timedelta(seconds=sending.NUMBER_BACKOFF)  # after the pause
    untouched = [m for m in messages[1:] if row(m).status == MessageStatus.QUEUED]
    assert untouched and all(row(m).attempts == 0 and row(m).send_after > timezone.now() for m in untouched)
    sending._pool = None


def test_a_row_refused_for_throughput_again_and_again_never_fails(graph, fast, rendered):
    [message] = fill(make_campaign(fast), 1)
    graph.answer = error_answer(130429, status=429)
    for _ in range(sending.MAX_ATTEMPTS + 2):
        ratelimit.limiter().off.clear()  # the number's pause is over (the in-memory limiter of the tests)
        due(message)
        assert send_batch([message.pk]) == {"requeued": 1}
    waiting = row(message)
    assert waiting.status == MessageStatus.QUEUED and waiting.attempts == 0
    graph.answer = ok_answer  # Meta has room again
    ratelimit.limiter().off.clear()
    due(message)
    assert send_batch([message.pk]) == {"sent": 1}


def test_131049_is_retried_once_after_24_hours_then_fails(graph, fast, rendered):
    [message] = fill(make_campaign(fast), 1)
    graph.answer = error_answer(131049)
    assert send_batch([message.pk]) == {"requeued": 1}
    waiting = row(message)
    assert waiting.send_after >= timezone.now() + timedelta(hours=24)
    assert send_batch([message.pk]) == {}  # not a minute sooner
    due(message)
    assert send_batch([message.pk]) == {"failed": 1}
    assert row(message).error_code == 131049 and len(graph.calls) == 2


def test_131049_in_a_status_webhook_is_retried_once_too(graph, fast, rendered):
    [message] = fill(make_campaign(fast), 1)
    send_batch([message.pk])
    sent = row(message)

    def failed(wamid):
        return StatusUpdate(
            project_id=fast.project_id,
            account_id=fast.pk,
            wamid=wamid,
            status="failed",
            timestamp=timezone.now(),
            callback_data=f"m:{sent.public_id}",
            errors=({"code": 131049, "title": "healthy ecosystem"},),
        )

    apply_statuses([failed(sent.wamid)])
    retry = row(message)
    assert retry.status == MessageStatus.QUEUED and retry.send_after >= timezone.now() + timedelta(hours=24)
    apply_statuses([failed(sent.wamid)])  # Meta's duplicate changes nothing
    assert row(message).status == MessageStatus.QUEUED
    due(message)
    assert send_batch([message.pk]) == {"sent": 1}
    apply_statuses([failed(row(message).wamid)])
    assert row(message).status == MessageStatus.FAILED


@pytest.mark.parametrize("code", [131026, 132000, 131047, 100])
def test_permanent_errors_fail_the_row_with_metas_code_and_the_rest_go(graph, fast, rendered, code):
    messages = fill(make_campaign(fast), 3)
    graph.answer = answer_for({to(messages[1])}, error_answer(code))
    assert send_batch([m.pk for m in messages]) == {"failed": 1, "sent": 2}
    failed = row(messages[1])
    assert failed.error_code == code and failed.error_details == f"details of {code}"
    assert failed.reason and failed.failed_at is not None


def test_account_error_stops_the_account_and_pauses_its_campaigns(graph, fast, rendered, monkeypatch):
    monkeypatch.setattr(sending, "_threads", lambda: 1)
    monkeypatch.setattr(sending, "_pool", None)
    campaign = make_campaign(fast)
    other = make_campaign(fast, template_name="welcome")
    messages = fill(campaign, 4)
    graph.answer = error_answer(131042, status=402, message="Payment issue")
    assert send_batch([m.pk for m in messages]) == {"requeued": 4}
    assert len(graph.calls) == 1  # the first answer stopped the batch
    fast.refresh_from_db()
    assert fast.status == AccountStatus.SUSPENDED and "Payment problem" in fast.status_reason
    for c in (campaign, other):
        c.refresh_from_db()
        assert c.status == CampaignStatus.PAUSED and "Meta error 131042" in c.status_reason
    assert AuditEntry.objects.filter(action="campaign.pause").count() == 2
    assert all(row(m).status == MessageStatus.QUEUED and row(m).attempts == 0 for m in messages[1:])
    sending._pool = None


def test_paused_template_pauses_only_the_campaigns_sending_it(graph, fast, rendered):
    campaign = make_campaign(fast)
    other = make_campaign(fast, template_name="welcome")
    messages = fill(campaign, 2)
    graph.answer = error_answer(132015)
    assert send_batch([m.pk for m in messages]) == {"requeued": 2}
    campaign.refresh_from_db()
    other.refresh_from_db()
    fast.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED and "paused for low quality" in campaign.status_reason
    assert other.status == CampaignStatus.RUNNING and fast.status == AccountStatus.ACTIVE


def test_a_single_send_of_a_disabled_template_fails(graph, fast, subscriber, template):
    from campaigns.services import deliver, send_whatsapp
    from controlpanel.services import Actor

    from .conftest import params

    message = send_whatsapp(project=fast.project, subscriber=subscriber, actor=Actor(label="t"),
                            template=template, components=params("a", "b"))  # fmt: skip
    graph.answer = error_answer(132016)
    assert deliver(message.pk) == MessageStatus.FAILED
    assert "disabled permanently" in row(message).reason


def test_timeout_after_post_is_unknown_and_a_webhook_settles_it(graph, fast, rendered):
    campaign = make_campaign(fast)
    [message] = fill(campaign, 1)
    graph.raise_exc = requests.ReadTimeout("read timed out")
    assert send_batch([message.pk]) == {"unknown": 1}
    assert send_batch([message.pk]) == {}  # never resent
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING  # unknown is not done yet
    unknown = row(message)
    apply_statuses([StatusUpdate(project_id=fast.project_id, account_id=fast.pk, wamid="wamid.LATE",
                                 status="delivered", timestamp=timezone.now(),
                                 callback_data=f"m:{unknown.public_id}")])  # fmt: skip
    settled = row(message)
    assert settled.status == MessageStatus.DELIVERED and settled.wamid == "wamid.LATE"
    assert len(graph.calls) == 1


def test_crash_after_claim_leaves_sending_the_sweeper_makes_it_unknown_and_it_ends(graph, fast, rendered):
    campaign = make_campaign(fast)
    [message] = fill(campaign, 1)
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.SENDING, sending_at=timezone.now() - timedelta(minutes=11)
    )
    assert sweep_stuck() == 1 and sweep_stuck() == 0
    assert row(message).status == MessageStatus.UNKNOWN
    assert complete_finished() == 0  # waits for its webhook a while...
    Message.objects.filter(pk=message.pk).update(sending_at=timezone.now() - unknown_resend_after() * 2)
    assert complete_finished() == 1  # ...then no longer keeps the campaign running
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    assert graph.calls == []


def test_an_unexpected_error_after_the_post_may_have_left_is_unknown_not_resent(graph, fast, rendered):
    [message] = fill(make_campaign(fast), 1)
    graph.raise_exc = ValueError("a library bug after the request went out")
    assert send_batch([message.pk]) == {"unknown": 1}
    assert send_batch([message.pk]) == {} and len(graph.calls) == 1
