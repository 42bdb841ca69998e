"""ASGI app of `manage.py runsimulator` (granian, the default): the simulated Graph API and its ledger.

The send route, every call of a load test, runs on the event loop without Django's request handling
(``fastpath.AsyncLeanSend``); everything else goes to Django's ASGI handler, with no middleware
(``standalone``).
"""

from whatsapp.simulator import standalone

standalone.configure()

from django.core.handlers.asgi import ASGIHandler  # noqa: E402 - after setup, like every ASGI module

from whatsapp.simulator import fastpath  # noqa: E402

application = fastpath.wrap_asgi(ASGIHandler())
standalone.started()
