"""The only module that talks HTTP to Meta's Graph API (or the simulator, which speaks the same).

One pooled ``requests.Session`` per account; every failure becomes a typed
GraphError subclass (TransientError, PermanentError, AccountError) carrying
Meta's code, title, details and trace id. Tokens never appear in logs or errors.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from .endpoints import same_origin
from .errors import AmbiguousSendError, GraphError, TransientError, typed
from .models import WhatsAppAccount

logger = logging.getLogger(__name__)
TIMEOUT = (5, 20)  # connect, read (seconds)
MAX_TEMPLATE_PAGES = 200

_sessions: dict[tuple[int, str], requests.Session] = {}
_lock = threading.Lock()


def _session(account: WhatsAppAccount) -> requests.Session:
    # Keyed by token too, so a rotated token gets a fresh session with the new header.
    key = (account.pk, account.access_token)
    with _lock:
        session = _sessions.get(key)
        if session is None:
            for stale in [k for k in _sessions if k[0] == account.pk]:
                _sessions.pop(stale).close()
            session = requests.Session()
            # As many pooled connections as the sender has threads posting at once (campaigns.sending).
            threads = settings.WHATSAPP_SEND_THREADS
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(32, threads), max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers["Authorization"] = f"Bearer {account.access_token}"
            _sessions[key] = session
        return session


@dataclass(frozen=True)
class SendResult:
    wamid: str
    wa_id: str
    message_status: str


def answer(status_code: int, content: bytes) -> dict[str, Any]:
    """Meta's answer as a dict, or the typed GraphError it means (shared with ``async_client``)."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if status_code >= 400 or (isinstance(body, dict) and "error" in body):
        error = GraphError.from_response(status_code, body if isinstance(body, dict) else None)
        if error.code is None and status_code >= 500:
            error.title = error.title or f"HTTP {status_code} from Meta"
        raise typed(error)
    if not isinstance(body, dict):
        raise TransientError(None, f"Unexpected answer from Meta (HTTP {status_code}).")
    return body


def send_result(body: dict[str, Any]) -> SendResult:
    message = (body.get("messages") or [{}])[0]
    contact = (body.get("contacts") or [{}])[0]
    if not message.get("id"):
        raise TransientError(None, "Meta accepted the request but returned no message id.")
    return SendResult(
        wamid=message["id"],
        wa_id=str(contact.get("wa_id") or contact.get("user_id") or ""),
        message_status=str(message.get("message_status") or "accepted"),
    )


def template_payload(
    *, to: str, name: str, language: str, components: list[dict[str, Any]] | None, callback_data: str
) -> dict[str, Any]:
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = components
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to.lstrip("+"),
        "type": "template",
        "template": template,
        "biz_opaque_callback_data": callback_data,
    }


def text_payload(*, to: str, body: str, callback_data: str, preview_url: bool = False) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to.lstrip("+"),
        "type": "text",
        "text": {"body": body, "preview_url": preview_url},
        "biz_opaque_callback_data": callback_data,
    }


class GraphClient:
    def __init__(self, account: WhatsAppAccount):
        self.account = account
        self.session = _session(account)

    def _request(self, method: str, url: str, **kwargs) -> dict[str, Any]:
        if not url.startswith("http"):
            url = f"{self.account.graph_base}/{url.lstrip('/')}"
        try:
            response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError as exc:  # includes ConnectTimeout: nothing reached Meta
            raise TransientError(None, f"Meta could not be reached ({type(exc).__name__}).") from None
        except requests.RequestException as exc:
            # E.g. a read timeout: the request may have been processed, so callers must not resend blindly.
            raise AmbiguousSendError(None, f"No answer from Meta ({type(exc).__name__}).") from None
        return answer(response.status_code, response.content)

    # --- messages -----------------------------------------------------------------
    def messages_url(self) -> str:
        return f"{self.account.graph_base}/{self.account.phone_number_id}/messages"

    def fast_path_ok(self) -> bool:
        """Whether ``async_client`` may post this account's messages instead of the session.

        Only where the session would use the stock transport straight to Meta: not when a test
        (or anything else) mounted another adapter on it, nor when the environment names a proxy
        for Meta's host (the lean client speaks no proxy protocol)."""
        url = self.messages_url()
        adapter = self.session.get_adapter(url)
        if type(adapter) is not HTTPAdapter:
            return False
        return not (self.session.trust_env and requests.utils.get_environ_proxies(url))

    def _send(self, payload: dict[str, Any]) -> SendResult:
        return send_result(self._request("POST", f"{self.account.phone_number_id}/messages", json=payload))

    def send_template(
        self,
        *,
        to: str,
        name: str,
        language: str,
        components: list[dict[str, Any]] | None = None,
        callback_data: str,
    ) -> SendResult:
        return self._send(
            template_payload(
                to=to, name=name, language=language, components=components, callback_data=callback_data
            )
        )

    def send_text(self, *, to: str, body: str, callback_data: str, preview_url: bool = False) -> SendResult:
        payload = text_payload(to=to, body=body, callback_data=callback_data, preview_url=preview_url)
        return self._send(payload)

    # --- account and templates -----------------------------------------------------
    def get_phone_number(self) -> dict[str, Any]:
        fields = (
            "display_phone_number,verified_name,quality_rating,messaging_limit_tier,throughput,name_status"
        )
        return self._request("GET", self.account.phone_number_id, params={"fields": fields})

    def list_templates(self, *, page_size: int = 100) -> list[dict[str, Any]]:
        """Every template of the WABA, following ``paging.next`` (absolute URLs) to the end."""
        url = f"{self.account.waba_id}/message_templates"
        params: dict[str, Any] | None = {"limit": page_size}
        templates: list[dict[str, Any]] = []
        for _ in range(MAX_TEMPLATE_PAGES):
            body = self._request("GET", url, params=params)
            templates.extend(body.get("data") or [])
            next_url = (body.get("paging") or {}).get("next")
            if not next_url:
                return templates
            if not same_origin(next_url, self.account.graph_base):
                logger.warning("list_templates: ignoring a paging link to another host")
                return templates
            url, params = next_url, None
        logger.warning("list_templates stopped after %s pages", MAX_TEMPLATE_PAGES)
        return templates

    def create_template(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"{self.account.waba_id}/message_templates", json=payload)
