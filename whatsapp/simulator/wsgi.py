"""WSGI app of `runsimulator --workers N` under granian: the panel's settings, the simulator's URLs."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")

application = get_wsgi_application()

from django.conf import settings  # noqa: E402 - after setup, like every WSGI module

settings.ROOT_URLCONF = "whatsapp.simulator.standalone_urls"
