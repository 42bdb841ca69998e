from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"

    def ready(self) -> None:
        from controlpanel.api import register_router

        from . import api

        # Step types register themselves at import (journeys/steps/__init__.py).
        from .steps import flow  # noqa: F401

        register_router("/journeys", api.router)
