"""The German catalog is complete: nothing untranslated, nothing fuzzy, placeholders intact, the
compiled .mo the same as the .po, and `makemessages` over today's code finds nothing new."""

from __future__ import annotations

import gettext
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
DOMAINS = ("django", "djangojs")
# What makemessages must not read: tests, benchmarks, vendored libraries, the venv, run-time data.
NOT_SOURCE = {".venv", "var", "tests", "bench", "vendor", "node_modules", ".git", "docs", "__pycache__"}


def _catalog(path: Path):
    with path.open("rb") as f:
        return read_po(f, locale="de")


def _untranslated(path: Path) -> list[str]:
    problems = []
    for message in _catalog(path):
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        elif not all(strings):
            problems.append(f"empty: {message.id!r}")
    return problems


def _po_files() -> list[Path]:
    return [ROOT / "locale" / "de" / "LC_MESSAGES" / f"{d}.po" for d in DOMAINS]


def test_the_german_catalog_exists():
    assert (ROOT / "locale" / "de" / "LC_MESSAGES" / "django.po").exists()


@pytest.mark.parametrize("po", _po_files(), ids=DOMAINS)
def test_no_empty_or_fuzzy_entries(po):
    if not po.exists():
        pytest.skip(f"no {po.name}")
    assert _untranslated(po) == []


@pytest.mark.parametrize("po", _po_files(), ids=DOMAINS)
def test_placeholders_survive_translation(po):
    if not po.exists():
        pytest.skip(f"no {po.name}")
    errors = [(m.id, [str(e) for e in errs]) for m, errs in _catalog(po).check()]
    assert errors == []


@pytest.mark.parametrize("po", _po_files(), ids=DOMAINS)
def test_compiled_catalog_matches_the_source(po):
    """The committed .mo (what the server reads) says what the .po says: `make messages` ran."""
    if not po.exists():
        pytest.skip(f"no {po.name}")
    mo = po.with_suffix(".mo")
    assert mo.exists(), "run `make messages`"
    with mo.open("rb") as f:
        compiled = gettext.GNUTranslations(f)
    stale = []
    for message in _catalog(po):
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, tuple):
            got = (compiled.ngettext(message.id[0], message.id[1], 1), compiled.ngettext(*message.id, 2))
            want = (message.string[0], message.string[-1])
        else:
            key = f"{message.context}\x04{message.id}" if message.context else message.id
            got, want = compiled.gettext(key), message.string
        if got != want:
            stale.append(message.id)
    assert stale == [], "the .mo is older than the .po: run `make messages`"


def test_makemessages_finds_nothing_untranslated(tmp_path):
    """Every string the code marks today is in the German catalog, translated."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in NOT_SOURCE or n.endswith((".mo", ".pyc", ".png", ".svg", ".woff2"))}

    copy = tmp_path / "src"
    shutil.copytree(ROOT, copy, ignore=ignore, symlinks=True)
    for domain in DOMAINS:
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "makemessages",
                "-l",
                "de",
                "-d",
                domain,
                "--no-obsolete",
                "--add-location",
                "file",
            ],
            cwd=copy,
            check=True,
            capture_output=True,
            text=True,
        )
    problems = []
    for domain in DOMAINS:
        po = copy / "locale" / "de" / "LC_MESSAGES" / f"{domain}.po"
        if po.exists():
            problems += [f"{domain}: {p}" for p in _untranslated(po)]
    assert problems == [], "run `make messages` and translate:\n" + "\n".join(problems[:50])


def test_the_committed_catalogs_are_in_the_layout_make_messages_writes():
    """``make messages`` ends with normalize_catalogs: a catalog committed in another layout would
    make the next run's diff the whole file instead of the strings that changed."""
    from controlpanel.management.commands.normalize_catalogs import catalogs, normalized

    assert catalogs()
    for path in catalogs():
        assert normalized(path) == path.read_bytes(), f"{path}: run `make messages` (or normalize_catalogs)"
