"""Steps that move a run without sending anything: exit (more come with the engine)."""

from __future__ import annotations

from typing import Any

from . import CheckContext, Exit, Outcome, Problem, Visit, register


class ExitStep:
    type = "exit"
    label = "Exit"
    channel = ""

    def check(self, data: dict[str, Any], ctx: CheckContext) -> list[Problem]:
        return []

    def outlets(self, data: dict[str, Any]) -> dict[str, str | None]:
        return {}

    def run(self, visit: Visit) -> Outcome:
        return Exit("exit_step")


register(ExitStep())
