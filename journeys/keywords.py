"""Inbound keywords: one folding rule for matching, collisions and the opt-out words.

"hilfe", "Hilfe!", " HILFE" and "Hílfe." are one keyword: case- and accent-insensitive, and
punctuation and spaces around the text do not count. Matching (``matches``) and collision checks
(``services``) both fold with :func:`fold`, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

from subscribers import textfold
from whatsapp.models import WhatsAppAccount


def reserved_keywords(project_id: int) -> dict[str, str]:
    """Folded opt-in and opt-out words of the project's numbers -> what claims them.

    The platform answers these itself (consent), so a journey may not claim them.
    """
    reserved: dict[str, str] = {}
    for account in WhatsAppAccount.objects.filter(project_id=project_id):
        for word in account.opt_out_words():
            reserved[fold(word)] = f"opt-out keyword of {account}"
        for word in account.opt_in_words():
            reserved[fold(word)] = f"opt-in keyword of {account}"
    return reserved


def fold(text: str) -> str:
    """The audience's folding (case and accents, ``subscribers.textfold``, as segments compare
    texts), then inner whitespace collapsed and surrounding punctuation stripped."""
    words = " ".join(textfold.fold(text or "").split())
    start, end = 0, len(words)
    while start < end and not words[start].isalnum():
        start += 1
    while end > start and not words[end - 1].isalnum():
        end -= 1
    return words[start:end]


def matches(text: str, keywords: Iterable[str] | str) -> bool:
    """Is ``text`` (an inbound message) one of ``keywords``, both folded? Nothing matches "" or "!!"."""
    folded = fold(text)
    if not folded:
        return False
    if isinstance(keywords, str):
        keywords = [keywords]
    return any(folded == fold(keyword) for keyword in keywords)


def claimed_by(text: str, claims: dict[str, str]) -> str | None:
    """What claims ``text`` in ``claims`` (folded keyword -> owner: ``reserved_keywords``), or None."""
    return claims.get(fold(text)) if fold(text) else None
