"""The keyword campaign shortcut: one form -> a journey definition (ADR 0007 JSON), and the built-ins.

A keyword campaign is an ordinary journey: an event entry on ``WhatsAppReceived`` whose ``text``
matches the keywords, an instant ``whatsapp_text`` reply (the inbound message just opened the 24 h
window) and, optionally, a ``wait`` and a follow-up ``whatsapp_template``. Nothing here sends or
matches anything: the engine and the feed consumer run the journey like any other, and the
builder opens it like any other.

Exact keywords become one ``keyword`` condition with a list (the journey's denormalised
``keywords``, which collision checks read). The other matches (contains, starts with, regex)
cannot be a list in one condition (conditions of an entry all have to hold), so each keyword is an
entry of its own; a subscriber who matches several entries of one journey still enters once.

Built-in examples (``examples(project)``): the issue's PROMO flow and HILFE, a quick-reply support
menu with a branch per button. HILFE needs an approved template with quick replies: the project's
``support_menu``, else any approved template with two or more quick replies and no placeholders;
when there is none and the project's number is the built-in simulator, the simulator gets one
(approved at once, as its demo templates are); otherwise the example says what to create.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from controlpanel.models import Project
from controlpanel.services import Actor
from whatsapp.models import MessageTemplate, TemplateStatus, WhatsAppAccount

from . import keywords as keyword_rules
from . import services
from .models import Journey

MATCHES = {
    "exact": ("keyword", gettext_lazy("Is exactly")),
    "contains": ("contains", gettext_lazy("Contains")),
    "starts_with": ("starts_with", gettext_lazy("Starts with")),
    "regex": ("regex", gettext_lazy("Matches the regular expression")),
}
MAX_KEYWORDS = 20
MAX_KEYWORD_LENGTH = 100
MAX_REPLY_LENGTH = 4096
DELAY_UNITS = {"minutes": "M", "hours": "H", "days": "D"}
# Step ids of the shortcut's journeys: the form maps a problem of a step back to its input.
REPLY, WAIT, FOLLOW_UP = "reply", "wait", "follow_up"
SUPPORT_MENU = "support_menu"
PROMO_OFFER = "follow_up_offer"


class ShortcutError(ValueError):
    """Bad input, per form field: ``errors`` maps a field name to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


@dataclass(frozen=True)
class FollowUp:
    template: str
    language: str
    bindings: dict[str, str] = field(default_factory=dict)  # "body.1" -> Liquid (ADR 0007)
    delay_amount: int = 1
    delay_unit: str = "hours"

    @property
    def duration(self) -> str:
        unit = DELAY_UNITS[self.delay_unit]
        return f"P{self.delay_amount}D" if unit == "D" else f"PT{self.delay_amount}{unit}"


@dataclass(frozen=True)
class KeywordCampaign:
    name: str
    keywords: tuple[str, ...]
    match: str
    reply: str
    follow_up: FollowUp | None = None
    # The reply per language ({"de": ..., "en": ...}): the subscriber's Language tag picks one
    # (exact, then base language); ``reply`` is the fallback.
    replies: dict[str, str] = field(default_factory=dict)


def parse_keywords(text: str, *, match: str) -> list[str]:
    """Comma-separated keywords as typed (folding happens when they are matched); ShortcutError
    naming each bad one."""
    words, problems, seen = [], [], set()
    for raw in (text or "").split(","):
        word = raw.strip()
        if not word:
            continue
        folded = keyword_rules.fold(word)
        if len(word) > MAX_KEYWORD_LENGTH:
            problems.append(
                _("“%(word)s…” is longer than %(max)s characters.")
                % {"word": word[:30], "max": MAX_KEYWORD_LENGTH}
            )
        elif match == "regex":
            try:
                re.compile(word)
            except re.error as exc:
                problems.append(
                    _("“%(word)s” is not a valid regular expression: %(error)s.")
                    % {"word": word, "error": exc}
                )
                continue
            words.append(word)
        elif not folded:
            problems.append(
                _("“%(word)s” has no letters or digits: punctuation around a keyword is ignored.")
                % {"word": word}
            )
        elif folded not in seen:
            seen.add(folded)
            words.append(word)
    if not words and not problems:
        problems.append(_("Give at least one keyword, e.g. PROMO."))
    if len(words) > MAX_KEYWORDS:
        problems.append(_("At most %(max)s keywords.") % {"max": MAX_KEYWORDS})
    if problems:
        raise ShortcutError({"keywords": problems})
    return words


def _entries(keywords: tuple[str, ...], match: str) -> dict[str, Any]:
    op = MATCHES[match][0]
    if match == "exact":
        value: Any = keywords[0] if len(keywords) == 1 else list(keywords)
        return {"entry": _event_entry(op, value)}
    if len(keywords) == 1:
        return {"entry": _event_entry(op, keywords[0])}
    return {"entries": [_event_entry(op, word) for word in keywords]}


def _event_entry(op: str, value: Any) -> dict[str, Any]:
    return {
        "type": "event",
        "event": "WhatsAppReceived",
        "conditions": [{"attribute": "text", "op": op, "value": value}],
    }


def build_definition(spec: KeywordCampaign) -> dict[str, Any]:
    """The journey JSON of a keyword campaign (the issue's PROMO example has exactly this shape)."""
    reply: dict[str, Any] = {"id": REPLY, "type": "whatsapp_text", "text": spec.reply}
    replies = {code: text for code, text in spec.replies.items() if text and text.strip()}
    if replies:
        reply["texts"] = replies
    reply.update(next=WAIT if spec.follow_up else None, ui={"x": 60, "y": 60})
    steps: list[dict[str, Any]] = [reply]
    if spec.follow_up:
        template: dict[str, Any] = {
            "id": FOLLOW_UP,
            "type": "whatsapp_template",
            "template": {"name": spec.follow_up.template, "language": spec.follow_up.language},
            "next": None,
            "ui": {"x": 660, "y": 60},
        }
        if spec.follow_up.bindings:
            template["bindings"] = dict(spec.follow_up.bindings)
        steps += [
            {
                "id": WAIT,
                "type": "wait",
                "duration": spec.follow_up.duration,
                "next": FOLLOW_UP,
                "ui": {"x": 360, "y": 60},
            },
            template,
        ]
    return {
        "name": spec.name,
        **_entries(spec.keywords, spec.match),
        "settings": {"reentry": "after_exit"},
        "steps": steps,
    }


@transaction.atomic
def create_keyword_campaign(
    *, project: Project, spec: KeywordCampaign, actor: Actor, activate: bool = False
) -> Journey:
    """Create the journey (a draft), and activate it when asked.

    Raises DefinitionError with every problem (keyword collisions name the other journey) and
    then nothing stays written: "Save and activate" either activates or leaves no half-made draft.
    """
    journey = services.create_journey(project=project, data=build_definition(spec), actor=actor)
    if activate:
        journey = services.activate(journey=journey, actor=actor)
    return journey


# --- built-in examples ----------------------------------------------------------------------------


@dataclass
class Example:
    key: str
    title: str
    description: str
    keywords: tuple[str, ...]
    ready: bool = True
    # What the example will do about its template, or what the marketer must create first.
    note: str = ""


SIMULATOR_TEMPLATES: dict[str, dict[str, Any]] = {
    SUPPORT_MENU: {
        "name": SUPPORT_MENU,
        "language": "de",
        "category": "UTILITY",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Kundenservice"},
            {"type": "BODY", "text": "Wobei können wir Ihnen helfen? Wählen Sie ein Thema."},
            {"type": "FOOTER", "text": "Antwort in wenigen Minuten"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Bestellung"},
                    {"type": "QUICK_REPLY", "text": "Lieferung"},
                    {"type": "QUICK_REPLY", "text": "Mitarbeiter"},
                ],
            },
        ],
    },
    PROMO_OFFER: {
        "name": PROMO_OFFER,
        "language": "de",
        "category": "MARKETING",
        "components": [
            {"type": "BODY", "text": "Noch hungrig? Heute gibt es 20 % auf alle Sushi-Boxen, nur für Sie."},
            {"type": "FOOTER", "text": "Keine Werbung mehr? Antworte STOP"},
        ],
    },
}

# The examples' texts reach each subscriber in their language (the whatsapp_text step's ``texts``,
# picked by the Language tag): German (formal, as the panel) and English; ``text``, the fallback
# for any other or no language, is the German one, the language of the examples' templates.
PROMO_REPLY = "Danke! Ihr Code: SUSHI20"
PROMO_REPLIES = {"de": PROMO_REPLY, "en": "Thank you! Your code: SUSHI20"}
HILFE_REPLIES = {
    "Bestellung": {
        "de": "Ihre Bestellungen finden Sie in der App unter „Meine Bestellungen“.",
        "en": "You will find your orders in the app under “My orders”.",
    },
    "Lieferung": {
        "de": "Lieferungen kommen in der Regel innerhalb von 45 Minuten. Wir prüfen Ihre gerade.",
        "en": "Deliveries usually arrive within 45 minutes. We are checking yours now.",
    },
    "Mitarbeiter": {
        "de": "Ein Mitarbeiter meldet sich hier in wenigen Minuten bei Ihnen.",
        "en": "A member of our team will reply here in a few minutes.",
    },
}
HILFE_OTHER = {
    "de": "Sie haben „{choice}“ gewählt. Wir melden uns gleich.",
    "en": "You chose “{choice}”. We will be in touch shortly.",
}


def hilfe_replies(button: str) -> dict[str, str]:
    """The answer to one button of the HILFE menu, per language."""
    known = HILFE_REPLIES.get(button)
    if known:
        return dict(known)
    # The button text goes into Liquid source: no braces, so no tag or output starts in it.
    safe = button.replace("{", "(").replace("}", ")")
    return {code: text.format(choice=safe) for code, text in HILFE_OTHER.items()}


def _account(project: Project) -> WhatsAppAccount | None:
    return WhatsAppAccount.objects.for_project(project).order_by("created_at").first()


def _is_simulator(account: WhatsAppAccount | None) -> bool:
    from django.conf import settings

    return bool(account and settings.SIMULATOR_ENABLED and "/simulator/" in account.base_url)


def _quick_replies(template: MessageTemplate) -> list[str]:
    for component in template.components or []:
        if str(component.get("type", "")).upper() == "BUTTONS":
            return [
                str(b.get("text") or "")
                for b in component.get("buttons") or []
                if str(b.get("type", "")).upper() == "QUICK_REPLY" and b.get("text")
            ]
    return []


def _without_parameters(template: MessageTemplate) -> bool:
    from campaigns.policy import template_parameters

    return not template_parameters(template)


def _approved(project: Project):
    return MessageTemplate.objects.for_project(project).filter(status=TemplateStatus.APPROVED)


def support_template(project: Project) -> MessageTemplate | None:
    """The template HILFE's menu sends: ``support_menu`` or another approved quick-reply menu."""
    candidates = list(_approved(project).order_by("name", "language"))
    named = [t for t in candidates if t.name == SUPPORT_MENU and len(_quick_replies(t)) >= 2]
    others = [t for t in candidates if len(_quick_replies(t)) >= 2 and _without_parameters(t)]
    return (named or others or [None])[0]


def offer_template(project: Project) -> MessageTemplate | None:
    """PROMO's follow-up: ``follow_up_offer`` or another approved marketing template without placeholders."""
    candidates = list(_approved(project).filter(category="MARKETING").order_by("name", "language"))
    named = [t for t in candidates if t.name == PROMO_OFFER]
    others = [t for t in candidates if _without_parameters(t)]
    return (named or others or [None])[0]


def examples(project: Project) -> list[Example]:
    """The built-in keyword campaigns and whether each can be created as it stands."""
    account = _account(project)
    simulator = _is_simulator(account)
    offer, menu = offer_template(project), support_template(project)
    promo = Example(
        key="promo",
        title=_("PROMO: instant code, offer an hour later"),
        description=_(
            "“Promo!” gets the code SUSHI20 at once and a follow-up offer template one hour later."
        ),
        keywords=("promo",),
    )
    if offer:
        promo.note = _("Follow-up template: %(name)s (%(language)s).") % {
            "name": offer.name,
            "language": offer.language,
        }
    elif simulator:
        promo.note = _("Creates the approved template %(name)s on the simulator for the follow-up.") % {
            "name": PROMO_OFFER
        }
    else:
        promo.note = _("No approved marketing template without placeholders: the example replies only.")
    hilfe = Example(
        key="hilfe",
        title=_("HILFE: support menu with a branch per button"),
        description=_("“Hilfe” gets a quick-reply support menu; each button gets its own answer."),
        keywords=("hilfe",),
    )
    if menu:
        buttons = ", ".join(_quick_replies(menu))
        hilfe.note = _("Menu template: %(name)s (%(language)s), buttons %(buttons)s.") % {
            "name": menu.name,
            "language": menu.language,
            "buttons": buttons,
        }
    elif simulator:
        hilfe.note = _("Creates the approved template %(name)s (quick replies) on the simulator.") % {
            "name": SUPPORT_MENU
        }
    else:
        hilfe.ready = False
        hilfe.note = _(
            "Needs an approved template with quick-reply buttons: create “%(name)s” under "
            "Templates (body: “Wobei können wir Ihnen helfen?”, quick replies Bestellung, Lieferung, "
            "Mitarbeiter), wait for Meta's approval, then come back."
        ) % {"name": SUPPORT_MENU}
    return [promo, hilfe]


def ensure_simulator_template(project: Project, name: str) -> MessageTemplate | None:
    """Put one of SIMULATOR_TEMPLATES into the simulator's WABA and mirror it into MessageTemplate.

    Only when the project's number is the built-in simulator (a real WABA's templates go through
    Meta's review: the marketer creates them). Idempotent: an existing template is returned.
    The mirror is written from the simulator's own stored copy, as a sync would store it, without
    an HTTP round trip to this same server.
    """
    account = _account(project)
    if not _is_simulator(account):
        return None
    definition = SIMULATOR_TEMPLATES[name]
    existing = _approved(project).filter(name=name, language=definition["language"]).first()
    if existing:
        return existing
    from whatsapp.simulator import services as simulator
    from whatsapp.simulator import store

    simulator.open_waba(account.waba_id)
    simulator.seed_templates(waba_id=account.waba_id, definitions=[definition])
    stored = store.find_template(account.waba_id, name, definition["language"]) or {}
    template, _created = MessageTemplate.objects.update_or_create(
        account=account,
        name=name,
        language=definition["language"],
        defaults={
            "project_id": project.pk,
            "meta_id": str(stored.get("id") or ""),
            "category": str(stored.get("category") or definition["category"]),
            "status": TemplateStatus.APPROVED,
            "parameter_format": str(stored.get("parameter_format") or "POSITIONAL"),
            "components": stored.get("components") or definition["components"],
            "synced_at": timezone.now(),
        },
    )
    return template


class ExampleUnavailable(Exception):
    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def promo_definition(offer: MessageTemplate | None) -> dict[str, Any]:
    follow_up = FollowUp(offer.name, offer.language, delay_amount=1, delay_unit="hours") if offer else None
    spec = KeywordCampaign(
        name="PROMO keyword",
        keywords=("promo",),
        match="exact",
        reply=PROMO_REPLY,
        follow_up=follow_up,
        replies=dict(PROMO_REPLIES),
    )
    return build_definition(spec)


def hilfe_definition(menu: MessageTemplate) -> dict[str, Any]:
    buttons = _quick_replies(menu)
    branch_ids = {text: f"answer_{i + 1}" for i, text in enumerate(buttons)}
    steps: list[dict[str, Any]] = [
        {
            "id": "menu",
            "type": "whatsapp_template",
            "template": {"name": menu.name, "language": menu.language},
            "buttons": branch_ids,
            "button_timeout": "P1D",
            "next": None,
            "ui": {"x": 60, "y": 160},
        }
    ]
    for i, text in enumerate(buttons):
        replies = hilfe_replies(text)
        steps.append(
            {
                "id": branch_ids[text],
                "type": "whatsapp_text",
                "text": replies["de"],
                "texts": replies,
                "next": None,
                "ui": {"x": 420, "y": 40 + 160 * i},
            }
        )
    return {
        "name": "HILFE support menu",
        "entry": _event_entry("keyword", "hilfe"),
        "settings": {"reentry": "after_exit"},
        "steps": steps,
    }


def example_initial(project: Project, key: str) -> dict[str, Any]:
    """The shortcut form filled in as an example would be (the list's example links open it so);
    empty for an example the form cannot express (HILFE branches per button: its card creates it)."""
    if key != "promo":
        return {}
    offer = offer_template(project)
    initial: dict[str, Any] = {
        "name": "PROMO keyword",
        "keywords": "promo",
        "match": "exact",
        "reply": PROMO_REPLY,
        "reply_de": PROMO_REPLIES["de"],
        "reply_en": PROMO_REPLIES["en"],
    }
    if offer:
        initial.update(template=f"{offer.name}|{offer.language}", delay_amount=1, delay_unit="hours")
    return initial


@transaction.atomic
def create_example(*, project: Project, key: str, actor: Actor) -> Journey:
    """A draft journey from a built-in example (activation is the marketer's step, in the builder).

    ExampleUnavailable says what to create first when the example's template is missing.
    """
    if key == "promo":
        offer = offer_template(project) or ensure_simulator_template(project, PROMO_OFFER)
        data = promo_definition(offer)
    elif key == "hilfe":
        menu = support_template(project) or ensure_simulator_template(project, SUPPORT_MENU)
        if menu is None:
            example = next(e for e in examples(project) if e.key == "hilfe")
            raise ExampleUnavailable(example.note)
        data = hilfe_definition(menu)
    else:
        raise ExampleUnavailable(_("There is no such example."))
    return services.create_journey(project=project, data=data, actor=actor)
