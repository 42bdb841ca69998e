"""The URLconf of `manage.py runsimulator`: only the simulated Graph API, nothing of the panel.

The webhook route is named here too, because webhook URLs are built with ``reverse``;
it points at the panel's real view, which the callbacks reach on ``--callback-base``.
"""

from django.urls import include, path, re_path

from whatsapp.webhooks import whatsapp_webhook

from . import graph_views, urls

urlpatterns = [
    path("simulator/", include(([*urls.graph_patterns, *urls.ledger_patterns], "simulator"))),
    path("webhooks/whatsapp/<uuid:connection_id>/", whatsapp_webhook, name="whatsapp_webhook"),
    # Anything else gets Meta's JSON error, not the panel's HTML 404 page (whose links are not here).
    re_path(r"^(?P<path>.*)$", graph_views.unknown),
]
