"""The push simulator's FCM send route without Django's request machinery (load tests, issue 11).

``POST /simulator/fcm/v1/projects/<id>/messages:send`` is every call of the push benchmark; under
granian, Django's WSGIHandler and the panel's middleware (sessions, CSRF, CSP, axes) cost more CPU
than the send itself. This WSGI callable answers that one route directly and hands every other
request to Django unchanged. It runs the same code as the Django view (``fcm.accept``), so the
answers are the same; only the HTTP plumbing differs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.db import close_old_connections, connection

from . import fcm

SEND_PATH = re.compile(r"^/simulator/fcm/v1/projects/([^/]+)/messages:send$")
MAX_BODY = 1 << 20  # FCM refuses a message over 4 KB of data; a request is far smaller than this

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
REASONS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 404: "404 Not Found"}


class LeanFcm:
    """``django_app`` with the lean FCM route in front of it; any attribute is the Django handler's."""

    def __init__(self, django_app: WSGIApp) -> None:
        self.django_app = django_app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.django_app, name)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        post = environ.get("REQUEST_METHOD") == "POST"
        match = SEND_PATH.match(environ.get("PATH_INFO", "")) if post else None
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if match is None or not 0 <= length <= MAX_BODY:
            return self.django_app(environ, start_response)
        body = environ["wsgi.input"].read(length) if length else b""
        # What Django's request_started / request_finished do for a view: a connection that broke
        # or outlived CONN_MAX_AGE is replaced, the others are kept for the next request. (Inside a
        # transaction, i.e. a test calling this on its own thread, the connection is the test's.)
        if not connection.in_atomic_block:
            close_old_connections()
        status, data = fcm.accept(body, environ.get("HTTP_AUTHORIZATION", ""), match.group(1))
        answer = json.dumps(data).encode()
        start_response(
            REASONS.get(status, f"{status} Error"),
            [("Content-Type", "application/json; charset=UTF-8"), ("Content-Length", str(len(answer)))],
        )
        return [answer]


def wrap(django_app: WSGIApp) -> LeanFcm:
    return LeanFcm(django_app)
