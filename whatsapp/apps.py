from django.apps import AppConfig
from django.conf import settings


class WhatsappConfig(AppConfig):
    name = "whatsapp"
    verbose_name = "WhatsApp"

    def ready(self) -> None:
        from controlpanel import demo, scheduler
        from controlpanel.api import register_router
        from subscribers.signals import subscriber_erased

        from . import template_api
        from .actors import sweep_webhooks
        from .demo import connect_to_simulator
        from .privacy import on_subscriber_erased
        from .template_actors import sync_all_templates
        from .timeline import register_descriptions

        subscriber_erased.connect(on_subscriber_erased, dispatch_uid="whatsapp-scrub-deliveries")
        demo.register(connect_to_simulator, order=20)
        register_descriptions()
        register_router("/templates", template_api.router)
        # Safety net for deliveries whose processing message was lost (e.g. a broker restart).
        scheduler.periodic("sweep-webhooks", 15, lambda: sweep_webhooks.send())
        # Approvals, pauses and quality change at Meta even when a webhook is missed.
        scheduler.periodic(
            "sync-templates", settings.WHATSAPP_TEMPLATE_SYNC_MINUTES * 60, lambda: sync_all_templates.send()
        )
