from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self) -> None:
        from controlpanel import dashboard

        from .dashboard import messaging_provider

        dashboard.register(messaging_provider)
