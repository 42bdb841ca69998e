"""The settings module in its two modes, checked in fresh interpreter processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.EMBEDDED, s.DATABASES['default']['ENGINE'], s.DRAMATIQ_BROKER['BROKER'], s.DEBUG)"
)


def run_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "SECRET_KEY",
            "FIELD_ENCRYPTION_KEY",
            "DRAMATIQ_BROKER_URL",
            "EMBEDDED",
            "DEBUG",
            "REDIS_URL",
        }
    }
    base.update(DJANGO_SETTINGS_MODULE="controlpanel.settings", VAR_DIR=str(tmp_path / "var"), **env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


def test_embedded_default_needs_nothing_and_keeps_its_secrets(tmp_path):
    first = run_settings(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == [
        "True",
        "django.db.backends.sqlite3",
        "dramatiq.brokers.stub.StubBroker",
        "False",
    ]
    secret = (tmp_path / "var" / "secret_key").read_text()
    key = (tmp_path / "var" / "field_encryption_key").read_text()
    assert run_settings(tmp_path).returncode == 0
    # Generated once, then kept: sessions and encrypted fields survive restarts.
    assert (tmp_path / "var" / "secret_key").read_text() == secret
    assert (tmp_path / "var" / "field_encryption_key").read_text() == key
    assert oct((tmp_path / "var" / "secret_key").stat().st_mode)[-3:] == "600"


def test_production_without_secret_key_names_the_variable(tmp_path):
    result = run_settings(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/none")
    assert result.returncode != 0
    assert "SECRET_KEY is required outside the embedded mode" in result.stderr


def test_production_without_encryption_key_names_the_variable(tmp_path):
    result = run_settings(
        tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/none", SECRET_KEY="x" * 50
    )
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY is required" in result.stderr
    assert not (tmp_path / "var" / "secret_key").exists()


@pytest.mark.parametrize(
    ("broker_url", "broker"),
    [
        ("redis://127.0.0.1:6379/0", "dramatiq.brokers.redis.RedisBroker"),
        ("amqp://guest:guest@127.0.0.1:5672/", "dramatiq.brokers.rabbitmq.RabbitmqBroker"),
    ],
)
def test_production_mode_picks_postgres_and_the_broker(tmp_path, broker_url, broker):
    result = run_settings(
        tmp_path,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/none",
        SECRET_KEY="x" * 50,
        FIELD_ENCRYPTION_KEY="Jx9Yk0aZ3jv0zS0QqMuFqk2b7vO2TzD6pGQ1m0yQF3E=",
        DRAMATIQ_BROKER_URL=broker_url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "django.db.backends.postgresql", broker, "False"]


def test_unknown_broker_scheme_is_a_clear_error(tmp_path):
    result = run_settings(tmp_path, DRAMATIQ_BROKER_URL="kafka://x")
    assert "DRAMATIQ_BROKER_URL must start with" in result.stderr


def test_persistent_connections_in_production():
    from django.conf import settings

    if settings.EMBEDDED:
        pytest.skip("this run uses the embedded SQLite database")
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] > 0


def test_collectstatic_for_production(tmp_path):
    """Production serves hashed, compressed files via whitenoise; every vendored asset must resolve."""
    env = {k: v for k, v in os.environ.items() if k not in {"EMBEDDED"}}
    env.update(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/none",
        SECRET_KEY="x" * 50,
        FIELD_ENCRYPTION_KEY="Jx9Yk0aZ3jv0zS0QqMuFqk2b7vO2TzD6pGQ1m0yQF3E=",
        STATIC_ROOT=str(tmp_path / "static"),
        VAR_DIR=str(tmp_path / "var"),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = (tmp_path / "static" / "staticfiles.json").read_text()
    for name in (
        "vendor/tabler/tabler.min.css",
        "django_htmx/htmx-2.min.js",
        "ninja/swagger-ui.css",
        "img/icons.svg",
    ):
        assert f'"{name}"' in manifest


def test_postgres_sessions_get_the_planner_settings(db):
    """Every PostgreSQL session runs with the settings measured in docs/benchmarks.md."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("this run uses the embedded SQLite database")
    with connection.cursor() as cursor:
        values = {}
        for name in ("jit", "random_page_cost", "work_mem"):
            cursor.execute(f"SHOW {name}")
            values[name] = cursor.fetchone()[0]
    assert values == {"jit": "off", "random_page_cost": "1.1", "work_mem": "32MB"}


def test_postgres_settings_can_be_changed_or_left_to_the_server(tmp_path):
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(repr(s.DATABASES['default'].get('OPTIONS', {}).get('options')))"
    )
    env = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/none",
        "SECRET_KEY": "x" * 50,
        "FIELD_ENCRYPTION_KEY": "Jx9Yk0aZ3jv0zS0QqMuFqk2b7vO2TzD6pGQ1m0yQF3E=",
        "DRAMATIQ_BROKER_URL": "redis://127.0.0.1:6379/0",
    }
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATABASE_PG_SETTINGS"}}
    base.update(DJANGO_SETTINGS_MODULE="controlpanel.settings", VAR_DIR=str(tmp_path / "var"), **env)

    def options(**extra):
        result = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert options() == "'-c jit=off -c random_page_cost=1.1 -c work_mem=32MB'"
    assert options(DATABASE_PG_SETTINGS="work_mem=64MB") == "'-c work_mem=64MB'"
    assert options(DATABASE_PG_SETTINGS="") == "None"
