"""How an inbound WhatsApp text is compared with a keyword: one folding for every keyword.

"Stop", " STOP! ", "Stópp" and "stopp 🙏" are the keywords STOP and STOPP: case- and
accent-insensitive (the audience's folding, ``subscribers.textfold``, as segments compare texts),
inner whitespace collapsed, anything but a letter or a digit around the text dropped.

The opt-out and opt-in words of a number (``WhatsAppAccount.opt_out_words``, matched by
``processing``) and the keywords journeys claim (``journeys.keywords``: matching, collisions,
the words a journey may not claim) all fold here, so a word a journey may not claim is exactly a
word that changes consent.
"""

from __future__ import annotations

from subscribers import textfold


def fold(text: str | None) -> str:
    """``text`` as keywords compare it; "" when nothing but punctuation and spaces is left."""
    words = " ".join(textfold.fold(text or "").split())
    start, end = 0, len(words)
    while start < end and not words[start].isalnum():
        start += 1
    while end > start and not words[end - 1].isalnum():
        end -= 1
    return words[start:end]
