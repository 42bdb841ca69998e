from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"

    def ready(self) -> None:
        from controlpanel import scheduler
        from controlpanel.api import register_router

        from . import api, consumer, start_api
        from .entry_actors import fire_segment_entries

        # Step types register themselves at import (journeys/steps/__init__.py); a channel is
        # one module here.
        from .steps import email, flow, push, webhook, whatsapp  # noqa: F401

        # The durable event feed hands every event to the journeys consumer (entries, wakes,
        # message statuses, goals).
        consumer.register()
        # The start router first: its literal paths (/drop, /requests/...) resolve before /{id}.
        register_router("/journeys", start_api.router)
        register_router("/journeys", api.router)
        # Every second: due runs (timers, ready runs) are advanced. Durable: reads committed runs.
        scheduler.periodic("advance-journeys", 1, _advance_journeys)
        scheduler.periodic("journey-segment-entries", 5, lambda: fire_segment_entries.send())


def _advance_journeys() -> None:
    from .actors import advance_journeys

    advance_journeys.send()
