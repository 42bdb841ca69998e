"""WSGI entry point: `granian --interface wsgi controlpanel.wsgi:application`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")

django_application = get_wsgi_application()

# Imported after Django is set up. Webhook POSTs from Meta take a lean path that skips
# the middleware stack (see whatsapp.webhooks.fast_path); everything else is Django.
from whatsapp.webhooks import fast_path  # noqa: E402

application = fast_path(django_application)
