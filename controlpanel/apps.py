from django.apps import AppConfig
from django.conf import settings


class ControlpanelConfig(AppConfig):
    name = "controlpanel"
    verbose_name = "Control panel"

    def ready(self) -> None:
        from . import dashboard, scheduler
        from .actors import record_heartbeat

        dashboard.register(dashboard.tenancy_provider)
        # The round trip scheduler -> broker -> worker proves all three are alive.
        scheduler.periodic("heartbeat", settings.HEARTBEAT_INTERVAL, lambda: record_heartbeat.send("workers"))
