"""Language groups: which of a campaign's template languages a subscriber gets.

A language group is the same template name approved in several languages. Each recipient
gets the language matching their Language tag: the exact locale first (``pt_BR`` and ``pt-br``
are the same), then the same base language (``de_AT`` reads ``de``; ``en`` reads the group's
first ``en_*``), else the campaign's fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def normalize(code: str) -> str:
    """``pt-BR``, ``pt_br`` and `` PT_BR `` -> ``pt_br``."""
    return (code or "").strip().replace("-", "_").lower()


def base(code: str) -> str:
    return normalize(code).split("_", 1)[0]


def language_picker(languages: Sequence[str], fallback: str) -> Callable[[str], str]:
    """pick_language for one group, remembering each answer (a batch has a handful of languages)."""
    exact: dict[str, str] = {}
    by_base: dict[str, str] = {}
    for code in languages:
        exact.setdefault(normalize(code), code)
    for code in languages:  # a group's own base language ("de") beats its first regional one ("de_CH")
        if normalize(code) == base(code):
            by_base.setdefault(base(code), code)
    for code in languages:
        by_base.setdefault(base(code), code)
    default = fallback or (languages[0] if languages else "")
    seen: dict[str, str] = {}

    def pick(subscriber_language: str) -> str:
        found = seen.get(subscriber_language)
        if found is None:
            wanted = normalize(subscriber_language)
            found = exact.get(wanted) or by_base.get(base(wanted)) or default if wanted else default
            seen[subscriber_language] = found
        return found

    return pick


def pick_language(subscriber_language: str, languages: Sequence[str], fallback: str) -> str:
    """The group's language for a subscriber: exact, then base language, then ``fallback``."""
    return language_picker(languages, fallback)(subscriber_language)
