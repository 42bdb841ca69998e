"""Email templates and writing email to the outbox: the one path for journeys, the panel and the API.

Liquid is ``campaigns.bindings``' (the same sandbox, CPU budget and names ``subscriber``,
``tags``, ``values``, ``event``), plus ``unsubscribe_url`` (``mail.tracking``). The HTML body is
rendered with autoescape, so a subscriber's data never becomes markup; subject, preheader and
text are plain text. A template is checked when it is saved (``template_errors``, per field) and
rendered when a message is written (``send_email``): the outbox row carries what goes out.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from liquid import Environment
from liquid.exceptions import LiquidError
from liquid.template import BoundTemplate

from campaigns import bindings, channel_sending
from campaigns.channel_policy import email_refusal
from campaigns.channels import Delivery
from campaigns.models import Channel, Message, MessageKind, MessageStatus
from campaigns.services import SendRefused, idempotent_message, insert_once
from controlpanel.models import Project
from controlpanel.services import Actor
from subscribers.errors import InvalidInput
from subscribers.models import Subscriber

from . import tracking
from .models import EmailTemplate
from .transport import compose, deliver_now, settings_for

ROOTS = (*bindings.ROOTS, "unsubscribe_url")
SUBJECT_LENGTH = 998  # RFC 5322's line limit; the model's column
PARTS = ("subject", "preheader", "html", "text")
PART_LABELS = {
    "subject": gettext_lazy("The subject"),
    "preheader": gettext_lazy("The preheader"),
    "html": gettext_lazy("The HTML"),
    "text": gettext_lazy("The text"),
}
PART_LIMITS = {"subject": SUBJECT_LENGTH, "preheader": 255, "html": 200_000, "text": 100_000}
UNSUBSCRIBE_HINT = gettext_lazy(
    "A marketing email needs an unsubscribe link: add {{ unsubscribe_url }} to the HTML, "
    'e.g. <a href="{{ unsubscribe_url }}">Unsubscribe</a>.'
)
UNSUBSCRIBE_TEXT_HINT = gettext_lazy(
    "A marketing email needs an unsubscribe link: add it to the text, e.g. Unsubscribe: {{ unsubscribe_url }}"
)


def _env(part: str) -> Environment:
    return bindings.HTML_DOCUMENT_ENV if part == "html" else bindings.TEXT_DOCUMENT_ENV


@lru_cache(maxsize=128)
def _compiled(part: str, source: str) -> BoundTemplate:
    # A template's parts change only when it is saved: each source is parsed once per process
    # (128 parts: an HTML body may be 200 KB of source).
    return bindings.compile_document(source, env=_env(part), field=part, what=PART_LABELS[part], roots=ROOTS)


def template_errors(*, subject: str, preheader: str, html: str, text: str, marketing: bool) -> dict[str, str]:
    """What is wrong with a template's parts, by field (empty: it may be saved)."""
    parts = {"subject": subject, "preheader": preheader, "html": html, "text": text}
    errors: dict[str, str] = {}
    for part, source in parts.items():
        if len(source) > PART_LIMITS[part]:
            errors[part] = _("%(part)s has %(count)s characters; at most %(limit)s.") % {
                "part": PART_LABELS[part],
                "count": number_format(len(source), force_grouping=True),
                "limit": number_format(PART_LIMITS[part], force_grouping=True),
            }
            continue
        try:
            _compiled(part, source)
        except InvalidInput as exc:
            errors[part] = exc.message
    if not subject.strip() and "subject" not in errors:
        errors["subject"] = _("Write a subject.")
    if not html.strip() and not text.strip():
        errors.setdefault("html", _("Write the HTML, the text, or both."))
    body = "html" if html.strip() else "text"
    if marketing and "unsubscribe_url" not in html + text and body not in errors:
        errors[body] = str(UNSUBSCRIBE_HINT if body == "html" else UNSUBSCRIBE_TEXT_HINT)
    return errors


def _check(fields: dict[str, Any]) -> None:
    errors = template_errors(**{k: fields[k] for k in (*PARTS, "marketing")})
    if errors:
        field, message = next(iter(errors.items()))
        raise InvalidInput(message, field=field, code="invalid_template")


TEMPLATE_FIELDS = ("name", "marketing", *PARTS)


@transaction.atomic
def save_template(
    *, project: Project, template: EmailTemplate | None, fields: dict[str, Any]
) -> EmailTemplate:
    """Create (``template`` None) or update a template of ``project``; InvalidInput naming the field
    when a part is not valid Liquid, the subject is empty, there is no body, a marketing template
    has no unsubscribe link, or the name is taken."""
    fields = {k: fields[k] for k in TEMPLATE_FIELDS}
    _check(fields)
    template = template or EmailTemplate(project=project)
    if template.project_id != project.pk:
        raise InvalidInput(_("The template belongs to another project."), field="name")
    taken = EmailTemplate.objects.for_project(project).filter(name=fields["name"]).exclude(pk=template.pk)
    if taken.exists():
        raise InvalidInput(
            _("There is already a template named “%(name)s”.") % {"name": fields["name"]}, field="name"
        )
    for name, value in fields.items():
        setattr(template, name, value)
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:  # the same name saved at the same moment
        raise InvalidInput(
            _("There is already a template named “%(name)s”.") % {"name": fields["name"]}, field="name"
        ) from None
    return template


def _render(part: str, source: str, context: dict[str, Any]) -> str:
    if not source:
        return ""
    try:
        return _compiled(part, source).render(**context)
    except InvalidInput as exc:  # saved before a rule existed, or edited in the admin
        raise SendRefused(exc.message, code="invalid_template") from None
    except LiquidError as exc:
        raise SendRefused(
            _("%(part)s could not be rendered for this subscriber: %(error)s")
            % {"part": PART_LABELS[part], "error": str(exc).splitlines()[0]},
            code="render_failed",
        ) from None


def render_email(template: EmailTemplate, context: dict[str, Any]) -> dict[str, str]:
    """``{"subject", "preheader", "html", "text"}`` rendered with Liquid (campaigns.bindings' sandbox
    and budget). Raises ``campaigns.services.SendRefused`` naming the field when a part fails to
    render or the subject renders empty."""
    rendered = {part: _render(part, getattr(template, part), context) for part in PARTS}
    # Header lines: a line break in a subscriber's data must not split the header.
    for part in ("subject", "preheader"):
        rendered[part] = " ".join(rendered[part].split())
    rendered["html"] = rendered["html"].strip()
    rendered["text"] = rendered["text"].strip()
    if not rendered["subject"]:
        raise SendRefused(_("The subject is empty for this subscriber."), code="render_failed")
    if len(rendered["subject"]) > SUBJECT_LENGTH:
        raise SendRefused(
            _("The subject is longer than %(limit)s characters for this subscriber.")
            % {"limit": SUBJECT_LENGTH},
            code="render_failed",
        )
    if not rendered["html"] and not rendered["text"]:
        raise SendRefused(_("The email's body is empty for this subscriber."), code="render_failed")
    return rendered


def send_email(
    *,
    project: Project,
    subscriber: Subscriber,
    template: EmailTemplate,
    actor: Actor,
    context: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    origin: dict[str, str] | None = None,
) -> Message:
    """Queue one email (channel ``email``, ``content`` rendered) for ``subscriber``; the channel
    sender sends it. ``context``: the bindings context (a journey's, with ``event``); None: built
    from the subscriber and ``values``. Refuses (``SendRefused``, nothing written) when: no
    address, the address is undeliverable, opted out of email, marketing without email opt-in, a
    part renders empty. Same ``idempotency_key`` -> the same message, nothing new. ``origin``
    ({"journey": <public id>, "step": <step id>}) is kept in ``content["origin"]``: opens and
    clicks name it in their events."""
    if subscriber.project_id != project.pk or template.project_id != project.pk:
        raise SendRefused(_("The subscriber or the template belongs to another project."))
    if idempotency_key:
        existing = idempotent_message(project, idempotency_key)
        if existing is not None:
            return existing
    reason = email_refusal(subscriber, marketing=template.marketing)
    if reason:
        raise SendRefused(reason)
    if context is None:
        context = bindings.context_of(project, subscriber, values)
        if context is None:
            raise SendRefused(_("The subscriber no longer exists."))
    message = Message(
        project=project,
        subscriber=subscriber,
        channel=Channel.EMAIL,
        kind=MessageKind.TEMPLATE,
        template_name=template.name,
        marketing=template.marketing,
        idempotency_key=idempotency_key or None,
        values=values or {},
        history=[
            {"status": MessageStatus.QUEUED, "at": timezone.now().isoformat(), "note": f"by {actor.display}"}
        ],
    )
    # The unsubscribe link names the message (its public id exists before the row is saved).
    rendered = render_email(template, {**context, "unsubscribe_url": tracking.unsubscribe_url(message)})
    message.content = {**rendered, "template": str(template.public_id)}
    if origin:
        message.content["origin"] = dict(origin)
    message = insert_once(message)
    transaction.on_commit(channel_sending.kick)
    return message


# Where ``{{ unsubscribe_url }}`` points in a preview and a test to a typed address: no message
# exists to unsubscribe from.
PREVIEW_UNSUBSCRIBE_URL = "#unsubscribe"


def send_test(*, project: Project, template: EmailTemplate, to: str, context: dict[str, Any]) -> Delivery:
    """Send ``template`` rendered with ``context`` to a typed address at once, through the project's
    backend: no outbox row, no tracking, marked as a test in the mailbox. Raises SendRefused when
    it does not render; a provider's refusal is the Delivery's ``error``."""
    rendered = render_email(template, {**context, "unsubscribe_url": PREVIEW_UNSUBSCRIBE_URL})
    rendered["subject"] = f"[Test] {rendered['subject']}"
    email_settings = settings_for(project)
    email = compose(email_settings, to=to, content=rendered)
    email.mailbox_test = True
    return deliver_now(email_settings, email)
