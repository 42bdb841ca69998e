"""WSGI app of a standalone push simulator (granian), for load tests: FCM's send URL and nothing else.

    granian --interface wsgi --port 9100 push.simulator.wsgi:application

No middleware (the FCM route is a bearer-token JSON endpoint), and the send route skips Django's
request handling altogether (``fastpath``). Point ``PUSH_SIMULATOR_URL`` at
``http://<host>:9100/simulator/fcm``. The panel's own ``/simulator/fcm`` (the embedded mode)
answers the same through the Django view.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
os.environ.setdefault("SIMULATOR_ENABLED", "true")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402 - after setup, like every WSGI module
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402

settings.ROOT_URLCONF = "push.simulator.standalone_urls"
settings.MIDDLEWARE = []  # read by WSGIHandler() below, once

from push.simulator import fastpath  # noqa: E402

application = fastpath.wrap(WSGIHandler())
