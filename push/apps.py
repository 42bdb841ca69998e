from django.apps import AppConfig


class PushConfig(AppConfig):
    name = "push"
    verbose_name = "Push"

    def ready(self) -> None:
        from campaigns import channels
        from controlpanel.api import register_router

        from . import device_api, open_api
        from .transport import PushTransport

        channels.register(PushTransport())
        register_router("/devices", device_api.router)
        register_router("/push", open_api.router)
