"""WSGI app of `manage.py runsimulator --interface wsgi` (granian): a thread per request.

Kept to compare with the ASGI app (``asgi.py``). The send route bypasses Django's request handling
altogether (``fastpath.LeanSend``), and with SIMULATOR_GROUP_COMMIT accepted sends share SQLite
transactions (``groupcommit``: each is answered after its commit); no middleware (``standalone``).
"""

from whatsapp.simulator import standalone

standalone.configure()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402 - after setup, like every WSGI module

from whatsapp.simulator import fastpath  # noqa: E402

application = fastpath.wrap(WSGIHandler())
standalone.started()
