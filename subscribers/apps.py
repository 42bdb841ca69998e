from django.apps import AppConfig


class SubscribersConfig(AppConfig):
    name = "subscribers"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from controlpanel import dashboard, demo
        from controlpanel.api import register_router

        from . import api, imports, segment_api  # noqa: F401  (imports connects its erasure receiver)
        from .dashboard import audience_provider
        from .demo import seed_demo_audience
        from .textfold import register_sqlite_functions

        connection_created.connect(register_sqlite_functions, dispatch_uid="subscribers.textfold")
        dashboard.register(audience_provider)
        demo.register(lambda project, url: seed_demo_audience(project), order=10)
        register_router("", api.router)
        register_router("/segments", segment_api.router)
