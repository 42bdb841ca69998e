from __future__ import annotations

import os

import pytest
from django.utils import translation

from controlpanel.models import Role
from tests.factories import MembershipFactory, ProjectFactory


@pytest.fixture(autouse=True)
def _test_settings(settings):
    # PBKDF2 at production strength costs ~0.3 s per user; tests need no such strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Production mode hashes static names through a manifest that only collectstatic
    # writes; test_collectstatic checks that step in a real process.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _english_outside_requests():
    # A request in German (Accept-Language: de) leaves German active in the test's thread; each
    # test starts and ends in English so texts compared outside a request do not depend on order.
    translation.activate("en")
    yield
    translation.activate("en")


@pytest.fixture
def project(db):
    return ProjectFactory()


@pytest.fixture
def member_of(project):
    """Create a user with ``role`` in ``project`` (default: the ``project`` fixture)."""

    def make(role: Role, in_project=None):
        return MembershipFactory(project=in_project or project, role=role).user

    return make


@pytest.fixture
def owner(member_of):
    return member_of(Role.OWNER)


@pytest.fixture
def viewer(member_of):
    return member_of(Role.VIEWER)


@pytest.fixture
def outsider(db):
    # A member of another project: logged in, but not in ``project``.
    return MembershipFactory(role=Role.OWNER).user


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis, or a skip that says why. CI sets REQUIRE_REDIS=1 to turn the skip into a failure."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if os.environ.get("REQUIRE_REDIS"):
            pytest.fail(f"REQUIRE_REDIS is set but Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"no Redis reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
def graph(monkeypatch, settings):
    """Meta's Graph API replaced at the HTTP seam: whatsapp.client's requests sessions.

    Also works for the live server of browser tests, which runs in this process.
    The rate limiter keeps its window in memory, so tests never wait on Redis.
    """
    from tests.fakegraph import FakeGraph
    from whatsapp import client as wa_client
    from whatsapp import ratelimit

    settings.REDIS_URL = ""
    ratelimit._limiter.cache_clear()
    fake = FakeGraph()
    real = wa_client._session

    def session(account):
        s = real(account)
        s.mount("https://", fake)
        s.mount("http://", fake)
        return s

    monkeypatch.setattr(wa_client, "_session", session)
    yield fake
    ratelimit._limiter.cache_clear()
