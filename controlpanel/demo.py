"""Demo data for the embedded mode, contributed by the apps.

``manage.py bootstrap_demo`` creates the demo project and owner, then calls every
seeder the apps registered in their ``AppConfig.ready()`` (so controlpanel never
imports the apps below it). A seeder must be idempotent: `make run` calls it on
every start.
"""

from __future__ import annotations

from collections.abc import Callable

from .models import Project

Seeder = Callable[[Project, str], None]
_seeders: list[tuple[int, Seeder]] = []


def register(seeder: Seeder, *, order: int = 100) -> Seeder:
    if all(s is not seeder for _, s in _seeders):
        _seeders.append((order, seeder))
    return seeder


def seed(project: Project, url: str) -> None:
    for _, seeder in sorted(_seeders, key=lambda item: item[0]):
        seeder(project, url)
