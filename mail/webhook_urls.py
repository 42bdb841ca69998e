"""Email providers' tracking webhooks (django-anymail), per project. Slice "mail-tracking"."""

app_name = "mail_webhooks"

urlpatterns: list = []
