"""Rewrite the translation catalogs (locale/*/LC_MESSAGES/*.po) in one stable layout.

``makemessages`` wraps lines at 79 characters and orders the header its own way; the committed
catalogs are written by Babel at width 100 (the translation tooling reads and writes them that
way). Without this step every ``make messages`` re-wrapped the whole German catalog, a diff of
thousands of lines for one new string. ``make messages`` runs it after ``makemessages``.
"""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.pofile import read_po, write_po
from django.conf import settings
from django.core.management.base import BaseCommand

WIDTH = 100


def catalogs() -> list[Path]:
    return sorted(Path(settings.BASE_DIR, "locale").glob("*/LC_MESSAGES/*.po"))


def normalized(path: Path) -> bytes:
    """The catalog at ``path`` in the committed layout."""
    with path.open("rb") as source:
        catalog = read_po(source, abort_invalid=True)
    out = io.BytesIO()
    write_po(out, catalog, width=WIDTH, include_previous=False)
    return out.getvalue()


class Command(BaseCommand):
    help = "Rewrite locale/*/LC_MESSAGES/*.po in the committed layout (Babel, width 100)."

    def handle(self, *args, **options) -> None:
        for path in catalogs():
            text = normalized(path)
            if text != path.read_bytes():
                path.write_bytes(text)
                self.stdout.write(f"normalised {path.relative_to(settings.BASE_DIR)}")
