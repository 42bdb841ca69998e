"""What the standalone simulator's apps (``asgi.py``, ``wsgi.py``) set up before their handler exists.

A load-test tool, so it carries only what the Graph API needs: the simulator's URLs and no
middleware at all (no sessions, CSRF, CSP, axes or whitenoise: every view here is csrf-exempt JSON
behind a bearer token), and accounts kept a few seconds instead of decrypting the token on each
request (``SIMULATOR_ACCOUNT_CACHE_SECONDS``).
"""

import os


def configure() -> None:
    """Django set up for the simulator alone; call before building the handler (it reads MIDDLEWARE)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlpanel.settings")
    os.environ.setdefault("SIMULATOR_ACCOUNT_CACHE_SECONDS", "5")
    os.environ.setdefault("SIMULATOR_DB_THREADS", "4")
    django.setup(set_prefix=False)

    from django.conf import settings

    from . import config

    settings.ROOT_URLCONF = "whatsapp.simulator.standalone_urls"
    settings.MIDDLEWARE = []
    # Requests close whatever connection a rare path opened (template listing, sent.json): only the
    # few database threads (dbthreads) keep one, so many requests in flight are not many connections.
    for alias in settings.DATABASES:
        settings.DATABASES[alias]["CONN_MAX_AGE"] = 0
    config.freeze()  # this process's knobs are fixed: read once, not from the environment per send


def started() -> None:
    from controlpanel.worker_heap import freeze_boot_heap

    from . import callbacks

    callbacks.ensure_pump()  # webhooks left over from a previous run go out now, not at the first request
    freeze_boot_heap()  # a full collection held the send route's loop 80-185 ms (docs/benchmarks.md)
