"""A faithful local stand-in for Meta's WhatsApp Cloud API (design section 8).

What it serves (mounted under ``/simulator/`` when ``settings.SIMULATOR_ENABLED``):

- ``POST graph/<version>/<phone-number-id>/messages``: text, template, interactive, media,
  location, contacts, reaction and mark-as-read, validated and answered exactly as Meta shapes
  them (reference sections 1 and 10); errors ``{"error": {"message": "(#code) title", ...}}``.
- ``GET/POST/DELETE graph/<version>/<waba-id>/message_templates``: cursor paging with absolute
  ``next`` URLs on the simulator's own host, the four ``summary`` keys, filters; new templates are
  PENDING, then APPROVED (or REJECTED with a reason when they break Meta's rules) after
  ``SIMULATOR_APPROVAL_SECONDS``, announced by a ``message_template_status_update`` webhook.
- ``GET graph/<version>/<phone-number-id>`` (phone number info) and ``GET graph/<version>/<template-id>``.
- ``phone/``: simulated handsets for logged-in users; chats render templates like WhatsApp does,
  quick-reply and interactive buttons are tappable, a text box sends inbound messages.

Accounts are the ``WhatsAppAccount`` rows of the same database: a request is accepted only with
exactly that account's access token, and webhooks are signed with exactly its app secret and sent
to ``/webhooks/whatsapp/<account.public_id>/`` on ``SIMULATOR_CALLBACK_BASE`` (``runsimulator
--callback-base``), else ``settings.PUBLIC_BASE_URL``, else the host the request came in on.

Error codes it produces (sync = HTTP error answer, async = 200 then a ``failed`` status webhook):

=========  =====  =======================================================================
code       path   when
=========  =====  =======================================================================
190        401    missing or wrong Bearer token
100        400    malformed request, unknown object id, unsupported type, duplicate template
131008/9   400    a required parameter is missing / a value is out of Meta's limits
131021     400    recipient is the sender's own number
130429     429    more than ``account.throughput_mps`` messages of the number in one second
132001     400    template name/language unknown, or not APPROVED (PENDING, REJECTED)
132000     400    template parameter count differs from the template
132012     400    parameter format mismatch (named vs positional, media vs text header, button type)
132015/6   400    template PAUSED / DISABLED
131026     async  recipient is a *test number*: digits starting with one of
                  ``SIMULATOR_UNDELIVERABLE_PREFIXES`` (default ``1555000``, i.e. +1 555-000-xxxx),
                  or a random failure (``SIMULATOR_FAILURE_RATE``) after ``sent``
131047     async  free-form message (text, media, interactive, reaction...) outside the 24-hour
                  window opened by the handset's last inbound message
131050     async  marketing template to a handset that stopped marketing messages (phone page)
=========  =====  =======================================================================

Knobs (Django setting of the same name wins, else the environment variable, else the default):
``SIMULATOR_DELAYS_MS`` ("300,800,1500": sent, delivered, read after acceptance; read < 0 means
the handset reads when its chat is opened), ``SIMULATOR_FAILURE_RATE`` (0.0),
``SIMULATOR_DUPLICATE_RATE`` (0.0: each status webhook sent twice with this probability),
``SIMULATOR_APPROVAL_SECONDS`` (5), ``SIMULATOR_UNDELIVERABLE_PREFIXES`` ("1555000"),
``SIMULATOR_CALLBACK_BASE`` (""), ``SIMULATOR_CALLBACK_THREADS`` (2),
``SIMULATOR_DELIVER_CALLBACKS`` (true; tests turn the background delivery off and call
``callbacks.deliver_due`` themselves), ``SIMULATOR_STATE_DIR`` (``VAR_DIR/simulator``).
Fault injection for load and chaos tests: ``SIMULATOR_THROTTLE_ERROR_RATE`` (0.0: sends answered
130429 although under the limit), ``SIMULATOR_SERVER_ERROR_RATE`` (0.0: sends answered HTTP 500
with code 2), ``SIMULATOR_LATENCY_MS`` (0: added to every Graph API call); refused sends accept
nothing. Load-test shortcuts that ``runsimulator`` turns on: ``SIMULATOR_ACCOUNT_CACHE_SECONDS``
(5; the panel 0), ``SIMULATOR_DB_THREADS`` (4; the panel 0), ``SIMULATOR_STATUS_WEBHOOKS``
(``--no-webhooks``: false).

The ledger: ``GET sent.json?phone_number_id=<id>`` (the number's bearer token, or a member logged
in) answers ``{"accepted": N, "recipients": {"<wa_id>": count}}``, every message the simulator
accepted by recipient; ``sent/`` shows it in the panel with the refused sends (see ``ledger``).

State (templates, handsets, chats, 24-hour windows, the send log for the throughput limit and the
outbox of webhook callbacks) lives in one SQLite file, see ``store``.
"""
