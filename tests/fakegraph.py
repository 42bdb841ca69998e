"""A stand-in for Meta's HTTP endpoint at the requests seam: records calls, answers as scripted."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import requests
from requests.adapters import BaseAdapter

_ids = itertools.count(1)


def ok_answer(request_json: dict) -> tuple[int, dict]:
    return 200, {
        "messaging_product": "whatsapp",
        "contacts": [{"input": request_json.get("to"), "wa_id": request_json.get("to")}],
        "messages": [{"id": f"wamid.FAKE{next(_ids):06d}", "message_status": "accepted"}],
    }


def error_answer(code: int, status: int = 400, message: str = "error") -> Callable[[dict], tuple[int, dict]]:
    def answer(_: dict) -> tuple[int, dict]:
        return status, {
            "error": {
                "message": f"(#{code}) {message}",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": f"details of {code}"},
                "fbtrace_id": "TRACE123",
            }
        }

    return answer


class FakeGraph(BaseAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, dict | None, dict]] = []
        self.answer: Callable[[dict], tuple[int, dict]] = ok_answer
        self.raise_exc: Exception | None = None

    def send(self, request, **kwargs):
        body = json.loads(request.body) if request.body else None
        self.calls.append((request.method, request.url, body, dict(request.headers)))
        if self.raise_exc is not None:
            raise self.raise_exc
        status, payload = self.answer(body or {})
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass
