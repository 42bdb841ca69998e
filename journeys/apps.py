from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"

    def ready(self) -> None:
        from controlpanel import scheduler

        # Step types register themselves at import (journeys/steps/__init__.py).
        from .steps import flow  # noqa: F401

        # Every second: due runs (timers, ready runs) are advanced. Durable: reads committed runs.
        scheduler.periodic("advance-journeys", 1, _advance_journeys)


def _advance_journeys() -> None:
    from .actors import advance_journeys

    advance_journeys.send()
