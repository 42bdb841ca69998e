"""Email providers' tracking webhooks (django-anymail), per project, mounted at /webhooks/email/."""

from django.urls import path

from . import webhooks

app_name = "mail_webhooks"

urlpatterns = [
    path("<uuid:project_id>/<slug:esp>/tracking/", webhooks.tracking_webhook, name="tracking"),
]
