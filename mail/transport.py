"""The email transport: Django's email framework with the project's backend (ADR 0008).

STAND-IN (foundation): slice "mail" implements it.
"""

from __future__ import annotations

from collections.abc import Sequence

from campaigns.channels import Delivery
from campaigns.models import Message
from controlpanel.models import Project


class EmailTransport:
    channel = "email"

    def send(self, project: Project, messages: Sequence[Message]) -> list[Delivery]:
        raise NotImplementedError
