from django.apps import AppConfig


class SubscribersConfig(AppConfig):
    name = "subscribers"

    def ready(self) -> None:
        from controlpanel import dashboard

        from .dashboard import audience_provider

        dashboard.register(audience_provider)
