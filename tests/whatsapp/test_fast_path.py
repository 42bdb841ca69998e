"""The WSGI fast path for webhook POSTs (controlpanel.wsgi.application)."""

from __future__ import annotations

import io
from wsgiref.util import setup_testing_defaults

import pytest

from controlpanel.wsgi import application
from whatsapp import intake, signature
from whatsapp.models import WebhookDelivery

from . import payloads as p
from .conftest import APP_SECRET


def call(path: str, body: bytes = b"", method: str = "POST", **headers) -> tuple[str, bytes]:
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=path,
        CONTENT_LENGTH=str(len(body)),
        CONTENT_TYPE="application/json",
        SERVER_NAME="127.0.0.1",
        HTTP_HOST="127.0.0.1",
        **{"wsgi.input": io.BytesIO(body)},
        **headers,
    )
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"] = status

    chunks = application(environ, start_response)
    content = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    return seen["status"], content


@pytest.mark.django_db(transaction=True)
def test_signed_post_is_stored_without_the_middleware_stack(account):
    raw = p.body(p.text("Hello"))
    url = f"/webhooks/whatsapp/{account.public_id}/"
    assert call(url, raw, HTTP_X_HUB_SIGNATURE_256=signature.sign(raw, APP_SECRET)) == ("200 OK", b"OK")
    assert WebhookDelivery.objects.filter(account=account).count() == 1
    assert call(url, raw)[0] == "401 Unauthorized"
    assert call(url, raw, HTTP_X_HUB_SIGNATURE_256="sha256=" + "0" * 64)[0] == "403 Forbidden"
    assert WebhookDelivery.objects.filter(account=account).count() == 1


@pytest.mark.django_db(transaction=True)
def test_unknown_connection_and_other_requests(account):
    assert call("/webhooks/whatsapp/7b3c0f2e-0d5c-4d6e-9a53-3f1c2b9e8a11/", b"{}")[0] == "404 Not Found"
    # GET (verification) and every other URL still go through Django.
    status, body = call(
        f"/webhooks/whatsapp/{account.public_id}/",
        method="GET",
        QUERY_STRING=f"hub.mode=subscribe&hub.challenge=42&hub.verify_token={account.verify_token}",
    )
    assert (status, body) == ("200 OK", b"42")
    assert call("/healthz", method="GET")[0] == "200 OK"


@pytest.mark.django_db(transaction=True)
def test_request_threads_do_not_connect_to_the_database(account, settings, monkeypatch):
    """With group commit, a request thread needs no database connection once the account is
    cached (opening one per server thread exhausted PostgreSQL's max_connections)."""
    import threading

    from django.db.backends.base.base import BaseDatabaseWrapper

    settings.WEBHOOK_GROUP_COMMIT = True
    real_connect = BaseDatabaseWrapper.connect
    connected_in = []

    def connect(self):
        connected_in.append(threading.current_thread().name)
        return real_connect(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "connect", connect)
    url = f"/webhooks/whatsapp/{account.public_id}/"
    answers = []

    def request(i: int) -> None:
        raw = p.body(p.status(f"wamid.T{i}", "delivered", 1750263773 + i))
        answers.append(call(url, raw, HTTP_X_HUB_SIGNATURE_256=signature.sign(raw, APP_SECRET)))

    for i in range(3):  # each in a new thread, like the server's blocking threads
        thread = threading.Thread(target=request, args=(i,), name=f"request-{i}")
        thread.start()
        thread.join()
    intake.stop_group_commit()  # the writer thread closes its connection
    assert answers == [("200 OK", b"OK")] * 3
    assert "request-1" not in connected_in and "request-2" not in connected_in, connected_in
    assert WebhookDelivery.objects.filter(account=account).count() == 3
