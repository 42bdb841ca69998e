from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "mail"
    verbose_name = "Email"

    def ready(self) -> None:
        from campaigns import channels

        from . import webhooks  # noqa: F401  (connects the provider webhooks' receivers)
        from .transport import EmailTransport

        channels.register(EmailTransport())
