from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self) -> None:
        from controlpanel import dashboard, scheduler
        from controlpanel.api import register_body_limit, register_router
        from whatsapp.signals import inbound_received, sending_resumed, status_received, statuses_received

        from . import campaign_api, engagement, message_api
        from .actors import dispatch_channel_messages, dispatch_messages, sweep_stuck_messages
        from .dashboard import messaging_provider, sending_provider
        from .launch_actors import start_due_campaigns
        from .services import (
            on_inbound_received,
            on_sending_resumed,
            on_status_received,
            on_statuses_received,
        )

        dashboard.register(messaging_provider)
        dashboard.register(sending_provider)
        status_received.connect(on_status_received, dispatch_uid="campaigns-apply-status")
        statuses_received.connect(on_statuses_received, dispatch_uid="campaigns-apply-statuses")
        sending_resumed.connect(on_sending_resumed, dispatch_uid="campaigns-requeue-on-resume")
        inbound_received.connect(on_inbound_received, dispatch_uid="campaigns-consent-confirmation")
        inbound_received.connect(engagement.on_inbound_received, dispatch_uid="campaigns-engagement")
        register_router("/messages", message_api.router)
        register_router("/campaigns", campaign_api.router)
        # A campaign body may carry a list of phones and per-recipient values (MAX_PHONES of them).
        register_body_limit("/campaigns", campaign_api.MAX_BODY_BYTES)
        scheduler.periodic("sweep-stuck-messages", 60, lambda: sweep_stuck_messages.send())
        # Launched campaigns whose time has come get their audience snapshotted (lifecycle.start_due).
        scheduler.periodic("start-due-campaigns", 5, lambda: start_due_campaigns.send())
        # Every second: due outbox rows go to the senders (durable: reads committed queued rows).
        scheduler.periodic("dispatch-messages", 1, lambda: dispatch_messages.send())
        # The same for email and push rows (channel_sending.py); the sweeper above covers them too.
        scheduler.periodic("dispatch-channel-messages", 1, lambda: dispatch_channel_messages.send())
