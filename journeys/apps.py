from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"

    def ready(self) -> None:
        # Step types register themselves at import (journeys/steps/__init__.py).
        from .steps import flow, whatsapp  # noqa: F401
