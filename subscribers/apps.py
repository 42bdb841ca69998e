from django.apps import AppConfig


class SubscribersConfig(AppConfig):
    name = "subscribers"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from controlpanel import dashboard, demo, health, scheduler
        from controlpanel.api import register_body_limit, register_router

        from . import api, import_api, imports, segment_api
        from .dashboard import audience_provider
        from .demo import seed_demo_audience
        from .textfold import register_sqlite_functions

        connection_created.connect(register_sqlite_functions, dispatch_uid="subscribers.textfold")
        dashboard.register(audience_provider)
        demo.register(lambda project, url: seed_demo_audience(project), order=10)
        register_router("", api.router)
        register_router("/segments", segment_api.router)
        register_router("", import_api.router)
        # A CSV upload is multipart (streamed to disk), as large as an import may be, plus its form.
        register_body_limit("/imports", imports.max_bytes() + 1024 * 1024)
        scheduler.periodic("event-feed", 1, _pump_consumers)
        health.register_detail("event_feed", _feed_lags)


def _pump_consumers() -> None:
    from . import feed
    from .actors import pump_feed

    for consumer in feed.consumers():
        pump_feed.send(consumer.name)


def _feed_lags() -> dict[str, object]:
    from . import feed

    return {lag.consumer: lag.as_dict() for lag in feed.lags()}
