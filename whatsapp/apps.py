from django.apps import AppConfig


class WhatsappConfig(AppConfig):
    name = "whatsapp"
    verbose_name = "WhatsApp"

    def ready(self) -> None:
        from controlpanel import scheduler
        from subscribers.signals import subscriber_erased

        from .actors import sweep_webhooks
        from .privacy import on_subscriber_erased

        subscriber_erased.connect(on_subscriber_erased, dispatch_uid="whatsapp-scrub-deliveries")
        # Safety net for deliveries whose processing message was lost (e.g. a broker restart).
        scheduler.periodic("sweep-webhooks", 15, lambda: sweep_webhooks.send())
