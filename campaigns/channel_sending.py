"""The email and push sender (ADR 0008). STAND-IN (foundation): slice "pipeline" implements it."""

from __future__ import annotations


def kick() -> None:
    """Ask for a dispatch soon (after the caller's commit); the scheduler's tick sends anyway."""
