"""Small helpers for labels placed inside translated sentences."""

from __future__ import annotations

from django.utils.translation import get_language


def mid_sentence(label) -> str:
    """A choice label (status, type, purpose) inside a sentence.

    English lower-cases it ("A paused campaign ..."); German keeps its capitals, because German
    nouns are capitalised and the German sentences quote the label as the panel shows it
    (im Status „Entwurf“, not „entwurf“).
    """
    text = str(label)
    return text.lower() if (get_language() or "en").startswith("en") else text
