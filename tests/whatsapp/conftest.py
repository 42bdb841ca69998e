from __future__ import annotations

import pytest

from tests.factories import ProjectFactory
from whatsapp.models import WhatsAppAccount

from .payloads import DISPLAY, PHONE_NUMBER_ID, WABA_ID

APP_SECRET = "test_secret"


@pytest.fixture(autouse=True)
def _direct_commit(settings):
    # Plain per-request commits inside the test transaction; group commit has its own test.
    settings.WEBHOOK_GROUP_COMMIT = False


@pytest.fixture
def account(db):
    return WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id=WABA_ID,
        phone_number_id=PHONE_NUMBER_ID,
        display_phone_number=DISPLAY,
        access_token="EAAG-test-token",
        app_secret=APP_SECRET,
    )
