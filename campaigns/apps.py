from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self) -> None:
        from controlpanel import dashboard, scheduler
        from whatsapp.signals import inbound_received, sending_resumed, status_received, statuses_received

        from .actors import dispatch_messages, sweep_stuck_messages
        from .dashboard import messaging_provider
        from .services import (
            on_inbound_received,
            on_sending_resumed,
            on_status_received,
            on_statuses_received,
        )

        dashboard.register(messaging_provider)
        status_received.connect(on_status_received, dispatch_uid="campaigns-apply-status")
        statuses_received.connect(on_statuses_received, dispatch_uid="campaigns-apply-statuses")
        sending_resumed.connect(on_sending_resumed, dispatch_uid="campaigns-requeue-on-resume")
        inbound_received.connect(on_inbound_received, dispatch_uid="campaigns-consent-confirmation")
        scheduler.periodic("sweep-stuck-messages", 60, lambda: sweep_stuck_messages.send())
        # Every second: due outbox rows go to the senders (durable: reads committed queued rows).
        scheduler.periodic("dispatch-messages", 1, lambda: dispatch_messages.send())
