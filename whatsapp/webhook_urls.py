from django.urls import path

from .webhooks import whatsapp_webhook

urlpatterns = [
    path("<uuid:connection_id>/", whatsapp_webhook, name="whatsapp_webhook"),
]
