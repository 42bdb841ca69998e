"""The push transport: FCM HTTP v1, or the push simulator at an FCM-shaped URL (ADR 0008).

STAND-IN (foundation): slice "push" implements it.
"""

from __future__ import annotations

from collections.abc import Sequence

from campaigns.channels import Delivery
from campaigns.models import Message
from controlpanel.models import Project


class PushTransport:
    channel = "push"

    def send(self, project: Project, messages: Sequence[Message]) -> list[Delivery]:
        raise NotImplementedError
