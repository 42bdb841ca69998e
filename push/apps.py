from django.apps import AppConfig


class PushConfig(AppConfig):
    name = "push"
    verbose_name = "Push"

    def ready(self) -> None:
        from campaigns import channels

        from .transport import PushTransport

        channels.register(PushTransport())
