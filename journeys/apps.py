from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"

    def ready(self) -> None:
        from controlpanel import scheduler
        from controlpanel.api import register_router

        # Entries (segment firings, API starts and drops): register the start router before the
        # journeys CRUD router, so its literal paths (/drop, /requests/...) resolve first.
        from . import start_api
        from .entry_actors import fire_segment_entries

        # Step types register themselves at import (journeys/steps/__init__.py).
        from .steps import flow  # noqa: F401

        register_router("/journeys", start_api.router)
        scheduler.periodic("journey-segment-entries", 5, lambda: fire_segment_entries.send())
