"""Automatic WhatsApp texts (the opt-out and opt-in confirmations), per project and per language.

A project's own wording lives in ``AutomaticText`` rows; a language without a row uses the built-in
default of that language (German and English ship). A row with an empty text means "send nothing"
in that language. The subscriber's Language tag picks the text as campaigns pick a template's
language: the exact language, then its base language (``de_AT`` reads ``de``), then English.

The defaults below are the texts sent to subscribers, not panel strings: they are picked by the
subscriber's language, never by the panel user's, so they are plain strings, not gettext.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import transaction

from campaigns.languages import language_picker, normalize
from controlpanel.models import Project
from controlpanel.services import Actor, record_audit

from .models import AutomaticText, AutomaticTextKind

OPT_OUT = AutomaticTextKind.OPT_OUT_CONFIRMATION
OPT_IN = AutomaticTextKind.OPT_IN_CONFIRMATION
KINDS = (OPT_OUT, OPT_IN)
MAX_LENGTH = 1000
FALLBACK_LANGUAGE = "en"

DEFAULTS: dict[str, dict[str, str]] = {
    "en": {
        OPT_OUT: "You will not get marketing messages from us any more. Reply START to get them again.",
        OPT_IN: "Welcome back! You will get our news on WhatsApp again. Reply STOP to stop them.",
    },
    "de": {
        OPT_OUT: "Sie erhalten keine Werbenachrichten mehr von uns. "
        "Antworten Sie START, um sie wieder zu erhalten.",
        OPT_IN: "Willkommen zurück! Sie erhalten unsere Neuigkeiten wieder per WhatsApp. "
        "Antworten Sie STOPP, um sie abzubestellen.",
    },
}
# Always shown in the panel, whether the project changed them or not.
BUILT_IN_LANGUAGES = tuple(DEFAULTS)

LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(_[a-z0-9]{2,8})*$")


def default_text(kind: str, language: str) -> str | None:
    """The built-in text of a language, or None when there is none for it."""
    return DEFAULTS.get(normalize(language), {}).get(kind)


def text_for(project: Project, kind: str, subscriber_language: str) -> str:
    """The text to send a subscriber with this Language tag; "" means send nothing.

    The language is chosen by the campaigns' picker (``campaigns.languages.language_picker``:
    exact, then base language, then English) among the project's languages and the built-in
    ones. Where both have a text for a language, the project's own wins: they are one choice per
    language code, so at each step of the picker the project's text beats the default without a
    picker of its own. One query.
    """
    texts = {language: by_kind[kind] for language, by_kind in DEFAULTS.items() if kind in by_kind}
    own = AutomaticText.objects.filter(project=project, kind=kind).order_by("language")
    texts.update(own.values_list("language", "text"))
    language = language_picker(list(texts), FALLBACK_LANGUAGE)(subscriber_language)
    return texts.get(language, "").strip()


def clean_language(code: str) -> str:
    """A normalised BCP-47-like code ("pt-BR" -> "pt_br"); ValueError if it is not one."""
    language = normalize(code)
    if len(language) > 16 or not LANGUAGE_RE.match(language):
        raise ValueError(code)
    return language


@dataclass(frozen=True)
class LanguageTexts:
    """One language's texts as the panel shows them."""

    language: str
    texts: dict[str, str]
    built_in: bool  # German and English: always listed, reset returns to the default
    customised: bool  # the project has at least one own row in this language


def languages_of(project: Project) -> list[LanguageTexts]:
    """Every language the panel lists: the built-in ones, then the project's others, sorted."""
    own: dict[str, dict[str, str]] = {}
    for row in AutomaticText.objects.filter(project=project):
        own.setdefault(row.language, {})[row.kind] = row.text
    result = []
    for language in [*BUILT_IN_LANGUAGES, *sorted(set(own) - set(BUILT_IN_LANGUAGES))]:
        rows = own.get(language, {})
        texts = {kind: rows.get(kind, default_text(kind, language) or "") for kind in KINDS}
        result.append(
            LanguageTexts(
                language=language,
                texts=texts,
                built_in=language in DEFAULTS,
                customised=bool(rows),
            )
        )
    return result


@transaction.atomic
def save_texts(*, project: Project, language: str, texts: dict[str, str], actor: Actor) -> list[str]:
    """Set a language's texts (the one write path). A text equal to the built-in default removes the
    project's row, so the default applies; "" is stored (send nothing). Returns the changed kinds."""
    language = clean_language(language)
    changed = []
    current = {row.kind: row for row in AutomaticText.objects.filter(project=project, language=language)}
    for kind, text in texts.items():
        if kind not in KINDS:
            raise ValueError(kind)
        text = (text or "").strip()
        if len(text) > MAX_LENGTH:
            raise ValueError(f"{kind} longer than {MAX_LENGTH}")
        row = current.get(kind)
        if text == default_text(kind, language):
            if row is not None:
                row.delete()
                changed.append(kind)
        elif row is None:
            AutomaticText.objects.create(project=project, kind=kind, language=language, text=text)
            changed.append(kind)
        elif row.text != text:
            row.text = text
            row.save(update_fields=["text", "updated_at"])
            changed.append(kind)
    if changed:
        record_audit(
            project=project,
            actor=actor,
            action="whatsapp.automatic_texts_updated",
            changes={"language": language, "texts": sorted(changed)},
        )
    return changed


@transaction.atomic
def reset_language(*, project: Project, language: str, actor: Actor) -> bool:
    """Drop a language's own texts: German and English return to the defaults, others disappear
    (their subscribers get English). Returns whether anything was removed."""
    language = clean_language(language)
    deleted, _ = AutomaticText.objects.filter(project=project, language=language).delete()
    if deleted:
        record_audit(
            project=project,
            actor=actor,
            action="whatsapp.automatic_texts_reset",
            changes={"language": language},
        )
    return bool(deleted)
