"""bench/import_bench.py: the file its documented command names is generated when missing, and
the run leaves nothing behind (project, jobs' files, the user it created)."""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path

import pytest

from controlpanel.models import Project, User
from subscribers.models import ImportJob, Subscriber

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # main() installs a SIGTERM handler
    spec = importlib.util.spec_from_file_location("import_bench", BENCH / "import_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def main(*argv: str) -> None:
        monkeypatch.setattr(sys, "argv", ["import_bench.py", *argv])
        module.main()

    return main


@pytest.mark.django_db(transaction=True)
def test_a_missing_csv_is_generated_where_named_and_nothing_else_is_left(bench, tmp_path, settings, capsys):
    settings.MEDIA_ROOT = tmp_path / "media"
    csv_path = tmp_path / "bench" / "sub.csv"
    bench("--rows", "40", "--csv", str(csv_path))
    out = capsys.readouterr().out
    assert f"generated 40 rows in {csv_path}" in out
    assert "first import:" in out and "created 40," in out
    assert "same file again:" in out and "unchanged 40," in out
    assert len(csv_path.read_text().splitlines()) == 41  # kept for the next run
    assert not Project.objects.exists()
    assert not ImportJob.objects.exists() and not Subscriber.objects.exists()
    assert not User.objects.filter(email="import-bench@example.com").exists()
    assert [p for p in (tmp_path / "media").rglob("*") if p.is_file()] == []
    bench("--rows", "40", "--csv", str(csv_path))  # the second run reuses the file
    assert "generated" not in capsys.readouterr().out


def test_the_phone_check_compares_the_shortcut_with_the_public_api(bench, capsys):
    bench("--phones", "300")
    out = capsys.readouterr().out
    assert "300 German mobile numbers" in out
    assert "import shortcut (fast_phone" in out and "public: PhoneNumber + is_valid_number" in out
