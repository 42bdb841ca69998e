"""The webhook step: SSRF-checked, called by an actor outside the engine's transaction, once per key."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from requests.adapters import BaseAdapter

from journeys.models import JourneyRun, RunState
from journeys.steps import CheckContext, Go, Wait, webhook
from journeys.steps import get as step_type
from tests.factories import SubscriberFactory
from tests.journeys.helpers import make_journey, make_run, visit

pytestmark = pytest.mark.django_db

HOOK = {
    "id": "hook",
    "type": "webhook",
    "url": "https://crm.example.com/hooks/journey",
    "headers": {"X-Token": "s3cret"},
    "body": {"name": "{{ subscriber.name }}", "code": "{{ event.code }}", "n": 3, "tags": ["{{ values.x }}"]},
    "timeout_seconds": 5,
    "retries": 2,
    "success": "ok",
    "failure": "ko",
}
STEPS = [HOOK, {"id": "ok", "type": "exit"}, {"id": "ko", "type": "exit"}]


class FakeReceiver(BaseAdapter):
    """The receiving server at the requests seam: records calls, answers as scripted."""

    def __init__(self, answers):
        super().__init__()
        self.answers = list(answers)
        self.calls: list[tuple[str, dict, dict]] = []

    def send(self, request, **kwargs):
        self.calls.append((request.url, json.loads(request.body), dict(request.headers)))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        status, headers = (answer, {}) if isinstance(answer, int) else answer
        response = requests.Response()
        response.status_code = status
        response._content = b'{"received": true}'
        response._content_consumed = True
        response.headers.update(headers)
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass


@pytest.fixture
def dns(monkeypatch):
    table = {"crm.example.com": ["93.184.216.34"]}

    def resolve(host, port):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    monkeypatch.setattr(webhook, "_resolve", resolve)
    return table


@pytest.fixture
def receiver(monkeypatch, dns):
    fake = FakeReceiver([200])

    def session(addresses):
        assert addresses == tuple(dns["crm.example.com"])  # post() hands over what the check resolved
        s = requests.Session()
        s.mount("https://", fake)
        s.mount("http://", fake)
        return s

    monkeypatch.setattr(webhook, "_session", session)
    return fake


@pytest.fixture
def sent(monkeypatch):
    """The actor messages the step and the actor send (the broker is not involved in these tests)."""
    messages: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(webhook.call_webhook, "send", lambda *a: messages.append((a, {})))
    monkeypatch.setattr(
        webhook.call_webhook,
        "send_with_options",
        lambda *, args, delay: messages.append((args, {"delay": delay})),
    )
    return messages


@pytest.fixture
def engine(monkeypatch):
    """The real engine, with kick() counted (the actor wakes the run; the tick moves it)."""
    from journeys import engine as real

    kicks: list[int] = []
    monkeypatch.setattr(real, "kick", lambda: kicks.append(1))
    monkeypatch.setattr(real, "kicks", kicks, raising=False)
    return real


def _started(project, django_capture_on_commit_callbacks, sent, *, now):
    sub = SubscriberFactory(project=project, name="Anna")
    journey = make_journey(project, STEPS)
    run = make_run(
        journey,
        sub,
        now=now,
        context={"event": {"id": 1, "name": "X", "attributes": {"code": "C7"}}, "values": {"x": "v"}},
    )
    v = visit(run, "hook", now=now)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = step_type("webhook").run(v)
    return run, v, outcome


def test_the_step_waits_while_the_actor_posts_then_leaves_by_success(
    project, receiver, sent, engine, django_capture_on_commit_callbacks
):
    now = timezone.now()
    run, v, outcome = _started(project, django_capture_on_commit_callbacks, sent, now=now)
    deadline = now + webhook.budget(HOOK)
    assert outcome == Wait(deadline)
    assert deadline - now == timedelta(seconds=5 * 3 + 1 + 2 + 60)
    assert v.record.detail["body"] == {"name": "Anna", "code": "C7", "n": 3, "tags": ["v"]}
    assert sent == [((v.record.pk,), {})] and receiver.calls == []  # nothing posted inside the step
    JourneyRun.objects.filter(pk=run.pk).update(state=RunState.WAITING, wake_at=deadline)

    answer = webhook.attempt_webhook(v.record.pk)
    assert answer.ok
    url, body, headers = receiver.calls[0]
    assert url == HOOK["url"] and body == {"name": "Anna", "code": "C7", "n": 3, "tags": ["v"]}
    assert headers["Idempotency-Key"] == f"{run.public_id}:hook"
    assert headers["X-Token"] == "s3cret" and headers["Content-Type"] == "application/json"
    run.refresh_from_db()
    assert run.wake_at <= timezone.now() and engine.kicks == [1]  # the tick takes it from here
    woken = visit(run, "hook", now=timezone.now(), timer=True)
    assert "s3cret" not in json.dumps(woken.record.detail)
    assert woken.record.detail["result"]["status"] == 200
    assert step_type("webhook").run(woken) == Go("success")
    assert webhook.attempt_webhook(v.record.pk) is None and len(receiver.calls) == 1  # safe to run twice


def test_transient_errors_retry_with_backoff_then_fail(
    project, receiver, sent, engine, django_capture_on_commit_callbacks
):
    receiver.answers = [503, requests.ConnectionError("refused"), 500]
    now = timezone.now()
    run, v, _ = _started(project, django_capture_on_commit_callbacks, sent, now=now)
    JourneyRun.objects.filter(pk=run.pk).update(state=RunState.WAITING, wake_at=now + timedelta(minutes=5))
    for _ in range(3):
        webhook.attempt_webhook(v.record.pk)
    assert [m[1] for m in sent[1:]] == [{"delay": 1000}, {"delay": 2000}]
    assert len(receiver.calls) == 3  # 1 + retries
    woken = visit(run, "hook", now=timezone.now(), timer=True)
    assert woken.record.detail["result"]["error"] == "The host answered 500."
    assert step_type("webhook").run(woken) == Go("failure")


def test_a_client_error_or_a_redirect_is_not_retried(
    project, receiver, sent, engine, django_capture_on_commit_callbacks
):
    receiver.answers = [(302, {"Location": "http://169.254.169.254/latest/meta-data/"})]
    run, v, _ = _started(project, django_capture_on_commit_callbacks, sent, now=timezone.now())
    JourneyRun.objects.filter(pk=run.pk).update(state=RunState.WAITING)
    answer = webhook.attempt_webhook(v.record.pk)
    assert not answer.ok and "Redirects are not followed (to http://169.254.169.254" in answer.error
    assert len(receiver.calls) == 1 and len(sent) == 1


def test_a_lost_actor_message_is_dispatched_again_then_fails(
    project, receiver, sent, django_capture_on_commit_callbacks
):
    now = timezone.now()
    run, _v, first = _started(project, django_capture_on_commit_callbacks, sent, now=now)
    at = first.until
    for n in range(2, webhook.MAX_DISPATCHES + 1):
        with django_capture_on_commit_callbacks(execute=True):
            outcome = step_type("webhook").run(visit(run, "hook", now=at, timer=True))
        assert isinstance(outcome, Wait) and len(sent) == n
        at = outcome.until
    last = step_type("webhook").run(visit(run, "hook", now=at, timer=True))
    assert last == Go("failure") and receiver.calls == []


@pytest.mark.parametrize(
    "url,addresses",
    [
        ("http://127.0.0.1/x", None),
        ("http://localhost:8000/x", None),
        ("http://[::1]/x", None),
        ("http://169.254.169.254/latest/meta-data/", None),
        ("http://10.0.0.8/x", None),
        ("https://[::ffff:192.168.1.1]/x", None),
        ("https://internal.example.com/x", ["93.184.216.34", "192.168.0.10"]),  # one private answer is enough
        ("https://meta.example.com/x", ["169.254.169.254"]),
        ("https://cgnat.example.com/x", ["100.64.0.1"]),
        ("ftp://crm.example.com/x", None),
        ("https://user:pw@crm.example.com/x", None),
        ("https://nowhere.example.com/x", None),
    ],
)
def test_ssrf_refuses_internal_targets_before_any_call(url, addresses, dns, receiver):
    if addresses:
        dns[url.split("/")[2]] = addresses
    with pytest.raises(webhook.UnsafeURL):
        webhook.check_url(url)
    answer = webhook.post(url, body={}, headers={}, key="k", timeout=1)
    assert not answer.ok and not answer.retryable and receiver.calls == []


def test_an_operator_may_allow_an_internal_host(settings, dns):
    dns["crm.internal.lan"] = ["10.1.2.3"]
    with pytest.raises(webhook.UnsafeURL):
        webhook.check_url("https://crm.internal.lan/x")
    settings.JOURNEY_WEBHOOK_ALLOWED_HOSTS = ["CRM.internal.lan"]
    webhook.check_url("https://crm.internal.lan/x")


def test_dry_run_posts_nothing(project, receiver, sent):
    now = timezone.now()
    run = make_run(
        make_journey(project, STEPS), SubscriberFactory(project=project, name="Bo"), now=now, dry_run=True
    )
    v = visit(run, "hook", now=now, dry_run=True)
    assert step_type("webhook").run(v) == Go("success")
    assert v.record.detail["outcome"] == "would_post" and v.record.detail["body"]["name"] == "Bo"
    assert sent == [] and receiver.calls == []


def test_check_names_each_field():
    kind = step_type("webhook")
    ctx = CheckContext(None, {})
    assert kind.check(HOOK, ctx) == []
    bad = {
        **HOOK,
        "url": "http://127.0.0.1:8000/",
        "headers": {"Host": "x"},
        "body": {"a": "{{ subscriber.name "},
        "timeout_seconds": 31,
        "retries": 6,
    }
    fields = {p.field: p.message for p in kind.check(bad, ctx)}
    assert set(fields) == {"url", "headers", "body", "timeout_seconds", "retries"}
    assert "public" in fields["url"] and "Host" in fields["headers"]
    assert kind.check({**HOOK, "url": "gopher://x"}, ctx)[0].message == "Only http:// and https:// URLs."
    assert kind.outlets(HOOK) == {"success": "ok", "failure": "ko"}
