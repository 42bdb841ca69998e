"""Writing push to the outbox (the one path for journeys, the panel's test sends and the API), and
a project's push settings.

Rendering uses the campaigns' Liquid environment (``campaigns.bindings.ENV``: the same sandbox,
output limit and CPU budget) and the same names (``subscriber``, ``tags``, ``values``, ``event``
from ``bindings.contexts_for``), so a push template reads a subscriber the way a WhatsApp binding
and a journey's text do. The content is rendered once, when the row is written: the transport only
sends what ``Message.content`` holds.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from django.db import transaction
from django.utils.translation import gettext, gettext_lazy
from liquid import BoundTemplate
from liquid.exceptions import LiquidError

from campaigns import bindings, channel_sending
from campaigns.channel_policy import push_refusal
from campaigns.models import Channel, Message, MessageKind, MessageStatus
from campaigns.services import SendRefused, _history, idempotent_message, insert_once
from controlpanel.models import Project
from controlpanel.services import Actor, record_audit
from subscribers.models import Device, Subscriber

from .models import PushMode, PushSettings, PushTemplate

# The parts of a template in the order people read them, with the words errors use.
FIELDS = {
    "title": gettext_lazy("title"),
    "body": gettext_lazy("body"),
    "image_url": gettext_lazy("image URL"),
    "link": gettext_lazy("deep link"),
}
# FCM refuses these data keys (they are its own) and keys starting with "google." or "gcm.".
RESERVED_DATA_KEYS = frozenset({"from", "message_type", "collapse_key", "notification", "message_id", "link"})


@lru_cache(maxsize=512)
def _compiled(source: str) -> BoundTemplate:
    return bindings.ENV.from_string(source)


def liquid_problem(source: str) -> str:
    """Why ``source`` cannot be a part of a push template, or "" (for the form, per field)."""
    try:
        template = _compiled(source)
    except LiquidError as err:
        return gettext("This is not valid Liquid: %(error)s") % {"error": str(err).splitlines()[0]}
    analysis = template.analyze(include_partials=False)
    for name in analysis.filters:
        if name not in bindings.ENV.filters:
            return gettext("There is no filter “%(name)s”.") % {"name": name}
    for root in analysis.globals:
        if root not in bindings.ROOTS:
            return gettext(
                "“%(name)s” does not exist: use subscriber, tags, values or event, "
                "e.g. {{ tags.first_name }}."
            ) % {"name": root}
    return ""


# Schemes a tap must never open: an app that hands the link to a web view would run it.
UNSAFE_LINK_SCHEMES = ("javascript:", "vbscript:", "data:", "file:")


def link_problem(link: str) -> str:
    """Why ``link`` may not be a push's deep link, or "". As browsers read a scheme: case and any
    blank or control character in it ignored ("Java\tScript:")."""
    scheme = "".join(ch for ch in link if ch > " ").lower()
    if scheme.startswith(UNSAFE_LINK_SCHEMES):
        return gettext("A deep link may not start with %(scheme)s:; use your app's scheme or https://.") % {
            "scheme": scheme.split(":", 1)[0]
        }
    return ""


def data_key_problem(key: str) -> str:
    """Why FCM would refuse ``key`` in a message's data, or ""."""
    if not key:
        return gettext("A data key may not be empty.")
    if key in RESERVED_DATA_KEYS or key.startswith(("google.", "gcm.")):
        return gettext("“%(key)s” is reserved by Firebase or by us; choose another data key.") % {"key": key}
    return ""


def _render(source: str, context: dict[str, Any], label: Any) -> str:
    if not source:
        return ""
    try:
        return _compiled(source).render(**context).strip()
    except LiquidError as err:
        raise SendRefused(
            gettext("The push %(part)s could not be rendered for this subscriber: %(error)s")
            % {"part": label, "error": str(err).splitlines()[0]}
        ) from None


def render_push(template: PushTemplate, context: dict[str, Any]) -> dict[str, Any]:
    """``{"title", "body", "image", "link", "data"}`` rendered with Liquid (data values too).
    Raises ``campaigns.services.SendRefused`` naming the field when a part fails or the title
    and body both render empty."""
    content: dict[str, Any] = {
        "title": _render(template.title, context, FIELDS["title"]),
        "body": _render(template.body, context, FIELDS["body"]),
        "image": _render(template.image_url, context, FIELDS["image_url"]),
        "link": _render(template.link, context, FIELDS["link"]),
        "data": {
            str(key): _render(str(value), context, gettext("data value “%(key)s”") % {"key": key})
            for key, value in (template.data or {}).items()
        },
    }
    if not content["title"] and not content["body"]:
        raise SendRefused(gettext("The push title and body are both empty for this subscriber."))
    if link_problem(content["link"]):
        raise SendRefused(
            gettext("The push deep link is refused for this subscriber: %(reason)s")
            % {"reason": link_problem(content["link"])}
        )
    if content["image"] and not content["image"].startswith("https://"):
        # FCM fetches the image on the device; Android and iOS load https only.
        raise SendRefused(
            gettext("The push image URL must start with https:// (it rendered as %(url)s).")
            % {"url": repr(content["image"])}
        )
    return content


def active_devices(project: Project, subscriber: Subscriber) -> int:
    return Device.objects.for_project(project).active().filter(subscriber=subscriber).count()


def send_push(
    *,
    project: Project,
    subscriber: Subscriber,
    template: PushTemplate,
    actor: Actor,
    context: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    origin: dict[str, str] | None = None,
) -> Message:
    """Queue one push (channel ``push``, ``content`` rendered) for ``subscriber``; the channel
    sender sends it to each of their active devices. Refuses (``SendRefused``, nothing written):
    no active device, opted out of push, a part renders empty. Same ``idempotency_key`` -> the same
    message. ``origin`` ({"journey": <public id>, "step": <step id>}) is kept in
    ``content["origin"]``: opens and clicks name it in their events.

    ``template`` may be unsaved (the settings page's test push): the row then names no template.
    ``context`` is what Liquid sees; without it, the subscriber's (``bindings.contexts_for``) with
    ``values``."""
    if subscriber.project_id != project.pk:
        raise SendRefused(gettext("The subscriber belongs to another project."))
    if template.pk is not None and template.project_id != project.pk:
        raise SendRefused(gettext("The push template belongs to another project."))
    if idempotency_key:
        existing = idempotent_message(project, idempotency_key)
        if existing is not None:
            return existing
    reason = push_refusal(subscriber, active_devices=active_devices(project, subscriber))
    if reason:
        raise SendRefused(reason)
    content = render_push(
        template, context if context is not None else bindings.context_of(project, subscriber, values) or {}
    )
    content["template"] = str(template.public_id) if template.pk is not None else ""
    content["origin"] = dict(origin or {})
    message = insert_once(
        Message(
            project=project,
            subscriber=subscriber,
            channel=Channel.PUSH,
            kind=MessageKind.TEMPLATE,
            template_name=template.name,
            body="\n".join(part for part in (content["title"], content["body"]) if part),
            content=content,
            marketing=template.marketing,
            idempotency_key=idempotency_key or None,
            values=values or {},
            history=[_history(MessageStatus.QUEUED, f"by {actor.display}")],
        )
    )
    # The sender's tick sends it anyway if this hint is lost.
    transaction.on_commit(channel_sending.kick)
    return message


# --- settings ------------------------------------------------------------------------------

# google-auth POSTs the signed assertion to the key's ``token_uri``: any other URL would have this
# server send requests (a blind SSRF, with a grant signed by the key) wherever a pasted key says.
# The second is what keys made before 2019 name.
GOOGLE_TOKEN_URIS = ("https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token")


def parse_service_account(raw: str) -> dict[str, Any]:
    """The service-account JSON as a dict; ``ValueError`` in plain words when it cannot sign FCM's
    OAuth assertion (not JSON, another kind of key, no project, a private key that does not parse)."""
    from google.oauth2 import service_account

    try:
        info = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        raise ValueError(gettext("This is not JSON: paste the whole file Firebase downloaded.")) from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ValueError(gettext('This is not a service-account key (its "type" must be "service_account").'))
    for key in ("project_id", "client_email", "private_key"):
        if not isinstance(info.get(key), str) or not info[key].strip():
            raise ValueError(gettext('The service account has no "%(key)s".') % {"key": key})
    if info.get("token_uri") not in GOOGLE_TOKEN_URIS:
        raise ValueError(
            gettext("The key's \"token_uri\" must be Google's token endpoint (%(url)s).")
            % {"url": GOOGLE_TOKEN_URIS[0]}
        )
    try:
        service_account.Credentials.from_service_account_info(info)
    except (ValueError, TypeError, IndexError):
        raise ValueError(gettext("The private key of the service account does not parse.")) from None
    return info


def service_account_summary(push_settings: PushSettings | None) -> dict[str, str]:
    """What the panel may show of the stored key: the account's email and project, never the key."""
    if push_settings is None or not push_settings.service_account:
        return {}
    try:
        info = json.loads(push_settings.service_account)
    except ValueError:
        return {}
    return {"client_email": str(info.get("client_email", "")), "project_id": str(info.get("project_id", ""))}


@transaction.atomic
def save_settings(
    *, project: Project, mode: str, service_account_json: str, fcm_project_id: str, actor: Actor
) -> PushSettings:
    """Save the project's push settings, audited. An empty ``service_account_json`` keeps the stored
    key; a new one replaces it. Firebase mode needs a key and sends to the key's project;
    ``fcm_project_id`` is the simulator's project id (blank: "simulator"). The audit entry names
    what changed, never the key."""
    push_settings, _ = PushSettings.objects.select_for_update().get_or_create(project=project)
    changes: dict[str, Any] = {}
    if service_account_json:
        info = parse_service_account(service_account_json)
        push_settings.service_account = service_account_json
        changes["service_account"] = info["client_email"]
    if mode == PushMode.FCM:
        if not push_settings.service_account:
            raise ValueError(gettext("Firebase mode needs the service-account key of your Firebase project."))
        fcm_project_id = json.loads(push_settings.service_account)["project_id"]
    if push_settings.mode != mode:
        changes["mode"] = [push_settings.mode, mode]
    if push_settings.fcm_project_id != fcm_project_id:
        changes["fcm_project_id"] = [push_settings.fcm_project_id, fcm_project_id]
    push_settings.mode = mode
    push_settings.fcm_project_id = fcm_project_id
    push_settings.save()
    if changes:
        record_audit(
            project=project, actor=actor, action="push.settings_changed", obj=push_settings, changes=changes
        )
    return push_settings
