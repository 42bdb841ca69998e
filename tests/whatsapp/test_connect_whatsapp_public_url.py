"""`connect_whatsapp --simulator` points the connection at the panel where it really runs."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from tests.factories import ProjectFactory
from whatsapp.models import WhatsAppAccount


def connect(*args: str) -> tuple[dict[str, str], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("connect_whatsapp", "shop", "--simulator", *args, stdout=out, stderr=err)
    return dict(line.split("=", 1) for line in out.getvalue().splitlines()), err.getvalue()


@pytest.fixture
def shop(db, settings, monkeypatch):
    settings.PUBLIC_BASE_URL = ""
    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    return ProjectFactory(slug="shop")


def test_public_base_url_decides_when_given(shop, settings, monkeypatch):
    settings.PUBLIC_BASE_URL = "https://panel.example.com"
    monkeypatch.setenv("PORT", "9000")
    lines, err = connect()
    assert lines["webhook_url"].startswith("https://panel.example.com/webhooks/whatsapp/")
    assert WhatsAppAccount.objects.get().base_url == "https://panel.example.com/simulator/graph"
    assert err == ""


def test_without_a_public_url_the_port_the_server_runs_on_is_used_and_said(shop, monkeypatch):
    # `PORT=9000 make run` serves on 9000; the simulator used to be pointed at 8000 regardless.
    monkeypatch.setenv("PORT", "9000")
    lines, err = connect()
    assert lines["webhook_url"].startswith("http://127.0.0.1:9000/webhooks/whatsapp/")
    assert WhatsAppAccount.objects.get().base_url == "http://127.0.0.1:9000/simulator/graph"
    assert "PUBLIC_BASE_URL is not set" in err and "http://127.0.0.1:9000" in err and "--public-url" in err


def test_a_bind_address_is_not_used_as_a_url(shop, monkeypatch):
    monkeypatch.setenv("HOST", "0.0.0.0")  # noqa: S104 - what `manage.py serve --host` binds to
    lines, _ = connect()
    assert lines["webhook_url"].startswith("http://127.0.0.1:8000/")


def test_running_it_again_keeps_the_url_it_was_given(shop):
    connect("--public-url", "http://127.0.0.1:9100/")
    lines, err = connect()
    assert WhatsAppAccount.objects.get().base_url == "http://127.0.0.1:9100/simulator/graph"
    assert lines["webhook_url"].startswith("http://127.0.0.1:9100/webhooks/whatsapp/")
    assert "the connection's simulator URL" in err
