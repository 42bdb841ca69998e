from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"

    def ready(self) -> None:
        # Step types register themselves at import (journeys/steps/__init__.py).
        from . import consumer
        from .steps import flow, webhook, whatsapp  # noqa: F401

        consumer.register()
