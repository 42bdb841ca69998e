"""Money and numbers in the reader's language: ``{{ cost|money:currency }}`` -> "1.234,56 €" in
German, "€1,234.56" in English; ``{{ n|number }}`` -> "1.234" / "1,234".

Babel (already pinned for python-liquid) knows each language's separators, the currency symbol
and where it goes; Django's own formats cover dates (controlpanel/formats/). Machine-readable
outputs (CSV, JSON, attributes read by scripts) never go through these filters.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel.numbers import format_currency, format_decimal
from django import template
from django.utils.translation import get_language, to_locale

register = template.Library()


def _locale() -> str:
    return to_locale(get_language() or "en")


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


@register.filter
def money(value, currency: str = "EUR") -> str:
    """An amount with its currency, as the reader's language writes it; empty for no amount."""
    amount = _decimal(value)
    if amount is None:
        return ""
    try:
        return format_currency(amount, (currency or "EUR").upper(), locale=_locale())
    except (ValueError, KeyError):  # an unknown currency code: the amount and the code as typed
        return f"{format_decimal(amount, format='#,##0.00', locale=_locale())} {currency}"


@register.filter
def number(value, decimals: int | str | None = None) -> str:
    """A number with the language's grouping and decimal mark; ``decimals`` fixes the digits."""
    amount = _decimal(value)
    if amount is None:
        return "" if value is None else str(value)
    if decimals in (None, ""):
        return format_decimal(amount, locale=_locale())
    places = int(decimals)
    pattern = "#,##0" + ("." + "0" * places if places > 0 else "")
    return format_decimal(amount, format=pattern, locale=_locale())
