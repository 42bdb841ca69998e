"""Talking to the simulator in-process, for tests: no sockets, and the test's database transaction is
shared because every call goes through Django's test client.

- ``DjangoAdapter``: mount on a ``requests.Session`` (our GraphClient) for ``http://testserver``.
- ``httpx_transport()``: an ``httpx.MockTransport`` for pywa's ``httpx.Client``.
- ``route_graph_client(monkeypatch)``: our GraphClient's sessions reach the simulator at
  ``http://testserver`` through ``DjangoAdapter``.
- ``webhook_transport``: give to ``callbacks.deliver_due(transport=...)`` so signed webhooks reach
  the real webhook endpoint.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from django.test import Client
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

HOST = "testserver"


def call(method: str, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    passed = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length", "host")}
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
    response = Client().generic(
        method.upper(),
        target,
        data=body or b"",
        content_type=content_type,
        headers=passed,
        SERVER_NAME=parts.hostname,
    )
    return response.status_code, dict(response.items()), response.content


class DjangoAdapter(BaseAdapter):
    def send(self, request, **kwargs):  # type: ignore[override]
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        status, headers, content = call(
            request.method or "GET", request.url or "", body, dict(request.headers)
        )
        response = requests.Response()
        response.status_code = status
        response._content = content
        response.headers = CaseInsensitiveDict(headers)
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


def httpx_transport():
    import httpx  # a test dependency only

    def handle(request: httpx.Request) -> httpx.Response:
        status, headers, content = call(
            request.method, str(request.url), request.read(), dict(request.headers)
        )
        return httpx.Response(status, headers=headers, content=content)

    return httpx.MockTransport(handle)


def webhook_transport(url: str, body: bytes, headers: dict[str, str]) -> int:
    return call("POST", url, body, headers)[0]


def route_graph_client(monkeypatch) -> None:
    """Mount ``DjangoAdapter`` for ``http://testserver`` on every session our GraphClient opens."""
    from whatsapp import client as wa_client

    real = wa_client._session

    def session(account):
        s = real(account)
        s.mount(f"http://{HOST}", DjangoAdapter())
        return s

    monkeypatch.setattr(wa_client, "_session", session)


def quiet_settings(settings, state_dir, *, urls: str = "whatsapp.simulator.full_urls") -> None:
    """The simulator's knobs for a test (pytest-django's ``settings``): its own state folder, the
    given URLs, no webhooks sent, no delays, no random failures or duplicates."""
    settings.ROOT_URLCONF = urls
    settings.SIMULATOR_STATE_DIR = str(state_dir)
    settings.SIMULATOR_DELIVER_CALLBACKS = False
    settings.SIMULATOR_DELAYS_MS = "0,0,0"
    settings.SIMULATOR_FAILURE_RATE = 0
    settings.SIMULATOR_DUPLICATE_RATE = 0
