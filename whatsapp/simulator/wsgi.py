"""WSGI app of `manage.py runsimulator` (granian): the simulated Graph API and its ledger, nothing else.

A load-test tool, so it carries only what the Graph API needs: the simulator's URLs and no
middleware at all (no sessions, CSRF, CSP, axes or whitenoise: every view here is csrf-exempt JSON
behind a bearer token), and accounts kept a few seconds instead of decrypting the token on each
request (``SIMULATOR_ACCOUNT_CACHE_SECONDS``). The send route itself bypasses Django's request
handling altogether (``fastpath``), and accepted sends share SQLite transactions
(``groupcommit``: each is answered after its commit).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
os.environ.setdefault("SIMULATOR_ACCOUNT_CACHE_SECONDS", "5")
os.environ.setdefault("SIMULATOR_DB_THREADS", "4")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402 - after setup, like every WSGI module
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402

settings.ROOT_URLCONF = "whatsapp.simulator.standalone_urls"
settings.MIDDLEWARE = []  # read by WSGIHandler() below, once
# Request threads close whatever connection a rare path opened (template listing, sent.json): only
# the few database threads (dbthreads) keep one, so 128 request threads are not 128 connections.
for alias in settings.DATABASES:
    settings.DATABASES[alias]["CONN_MAX_AGE"] = 0

from whatsapp.simulator import config, fastpath  # noqa: E402

config.freeze()  # this process's knobs are fixed: read once, not from the environment per send

# POST .../messages, every call of a load test, skips Django's request machinery (fastpath.py).
application = fastpath.wrap(WSGIHandler())

from whatsapp.simulator import callbacks  # noqa: E402

callbacks.ensure_pump()  # webhooks left over from a previous run go out now, not at the first request
