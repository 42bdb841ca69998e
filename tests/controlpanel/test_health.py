from __future__ import annotations

from unittest import mock

import pytest

from controlpanel import health

IDLE_FEED = {"journeys": {"lag_seconds": 0.0, "pending": 0, "failures": 0}}


@pytest.mark.django_db
def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    # event_feed: each consumer's lag (the journeys consumer, which has read nothing yet), never
    # part of the status.
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok", "event_feed": IDLE_FEED}


@pytest.mark.django_db
def test_healthz_names_the_database_when_it_is_down(client):
    with mock.patch.object(health, "connection") as conn:
        conn.cursor.side_effect = RuntimeError("connection refused")
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "error", "broker": "ok"}


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "amqp://guest:guest@127.0.0.1:1/"])
def test_healthz_names_the_broker_when_it_is_unreachable(client, settings, url):
    settings.DRAMATIQ_BROKER_URL = url
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "ok",
        "broker": "error",
        "event_feed": IDLE_FEED,
    }


@pytest.mark.django_db
def test_healthz_reaches_the_real_redis(client, settings, redis_url):
    settings.DRAMATIQ_BROKER_URL = redis_url
    assert client.get("/healthz").json()["broker"] == "ok"
