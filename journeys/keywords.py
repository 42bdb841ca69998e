"""Inbound keywords: one folding rule for matching, collisions and the opt-out words.

"hilfe", "Hilfe!", " HILFE" and "Hílfe." are one keyword: case- and accent-insensitive, and
punctuation and spaces around the text do not count. Matching (``matches``), collision checks
(``services``) and the opt-in/opt-out words that change consent (``whatsapp.processing``) all
fold with :func:`fold` (``whatsapp.keywords.fold``), so they cannot disagree: a word reserved
here is a word that changes consent, and the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable

from whatsapp.keywords import fold
from whatsapp.models import WhatsAppAccount

__all__ = ["claimed_by", "fold", "matches", "reserved_keywords"]


def reserved_keywords(project_id: int) -> dict[str, str]:
    """Folded opt-in and opt-out words of the project's numbers -> what claims them.

    The platform answers these itself (consent), so a journey may not claim them. The words come
    folded (``WhatsAppAccount.opt_out_words``): the very set inbound processing matches against.
    """
    reserved: dict[str, str] = {}
    for account in WhatsAppAccount.objects.filter(project_id=project_id):
        for word in account.opt_out_words():
            reserved[word] = f"opt-out keyword of {account}"
        for word in account.opt_in_words():
            reserved[word] = f"opt-in keyword of {account}"
    return reserved


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
