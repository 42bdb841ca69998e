from django.apps import AppConfig


class SubscribersConfig(AppConfig):
    name = "subscribers"

    def ready(self) -> None:
        from controlpanel import dashboard
        from controlpanel.api import register_router

        from . import api, segment_api
        from .dashboard import audience_provider

        dashboard.register(audience_provider)
        register_router("", api.router)
        register_router("/segments", segment_api.router)
