from __future__ import annotations

import pytest

from subscribers.models import ConsentState
from tests.factories import ProjectFactory, SubscriberFactory
from whatsapp import ratelimit
from whatsapp.models import MessageTemplate, WhatsAppAccount


@pytest.fixture(autouse=True)
def _in_memory_rate_limit(settings):
    settings.REDIS_URL = ""
    ratelimit._limiter.cache_clear()


@pytest.fixture
def account(db):
    return WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id="102290129340398",
        phone_number_id="106540352242922",
        display_phone_number="15550783881",
        access_token="EAAG-secret-token",
        app_secret="app-secret",
    )


@pytest.fixture
def subscriber(account):
    return SubscriberFactory(
        project=account.project, whatsapp_consent=ConsentState.OPTED_IN, phone="+4915112345678"
    )


def make_template(account, **kw) -> MessageTemplate:
    defaults = {
        "project": account.project,
        "account": account,
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "status": "APPROVED",
        "components": [
            {"type": "BODY", "text": "Hi {{1}}, your order {{2}} is on its way."},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Track", "url": "https://x.test/o/{{1}}"}],
            },
        ],
    }
    defaults.update(kw)
    return MessageTemplate.objects.create(**defaults)


@pytest.fixture
def template(account):
    return make_template(account)


def params(*values: str) -> list[dict]:
    return [
        {"type": "body", "parameters": [{"type": "text", "text": v} for v in values]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "8812"}]},
    ]
