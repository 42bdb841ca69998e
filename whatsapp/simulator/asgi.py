"""ASGI app of `manage.py runsimulator` (granian): the simulated Graph API and its ledger, nothing else.

A load-test tool, so it carries only what the Graph API needs: the simulator's URLs and no
middleware at all (no sessions, CSRF, CSP, axes or whitenoise: every view here is csrf-exempt JSON
behind a bearer token), and accounts kept a few seconds instead of decrypting the token on each
request (``SIMULATOR_ACCOUNT_CACHE_SECONDS``). The send route, every call of a load test, runs on
the event loop without Django's request handling (``fastpath.AsyncLeanSend``); everything else goes
to Django's ASGI handler.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
os.environ.setdefault("SIMULATOR_ACCOUNT_CACHE_SECONDS", "5")
os.environ.setdefault("SIMULATOR_DB_THREADS", "4")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402 - after setup, like every ASGI module
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

settings.ROOT_URLCONF = "whatsapp.simulator.standalone_urls"
settings.MIDDLEWARE = []  # read by ASGIHandler() below, once
# Views close whatever connection a rare path opened (template listing, sent.json): only the few
# database threads (dbthreads) keep one.
for alias in settings.DATABASES:
    settings.DATABASES[alias]["CONN_MAX_AGE"] = 0

from whatsapp.simulator import config, fastpath  # noqa: E402

config.freeze()  # this process's knobs are fixed: read once, not from the environment per send

application = fastpath.wrap_asgi(ASGIHandler())

from whatsapp.simulator import callbacks  # noqa: E402

callbacks.ensure_pump()  # webhooks left over from a previous run go out now, not at the first request
