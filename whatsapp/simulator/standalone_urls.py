"""The URLconf of `manage.py runsimulator`: only the simulated Graph API, nothing of the panel.

The webhook route is named here too, because webhook URLs are built with ``reverse``;
it points at the panel's real view, which the callbacks reach on ``--callback-base``.
"""

from django.urls import include, path

from whatsapp.webhooks import whatsapp_webhook

from . import urls

urlpatterns = [
    path("simulator/", include((urls.graph_patterns, "simulator"))),
    path("webhooks/whatsapp/<uuid:connection_id>/", whatsapp_webhook, name="whatsapp_webhook"),
]
