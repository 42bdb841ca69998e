"""Push fixtures: devices and templates inside the ``project`` fixture's project, and a service
account with a real RSA key (google-auth signs its assertion; Google's answer is stubbed)."""

from __future__ import annotations

import json

import factory
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from push.models import PushTemplate
from subscribers.models import Device
from tests.factories import ProjectFactory, SubscriberFactory


class PushTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PushTemplate

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"push-{n}")
    title = "Hello {{ subscriber.name }}"
    body = "Your order {{ values.order }} is ready"
    marketing = False


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    subscriber = factory.SubFactory(SubscriberFactory)
    project = factory.SelfAttribute("subscriber.project")
    token = factory.Sequence(lambda n: f"token-{n:04d}")
    platform = "android"


@pytest.fixture(scope="session")
def service_account_json() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "shop-app-1234",
            "private_key_id": "abc123",
            "private_key": pem,
            "client_email": "fcm-sender@shop-app-1234.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


@pytest.fixture
def subscriber(project):
    return SubscriberFactory(project=project, name="Ada")


@pytest.fixture
def device(subscriber):
    return DeviceFactory(subscriber=subscriber)


@pytest.fixture
def template(project):
    return PushTemplateFactory(project=project)
