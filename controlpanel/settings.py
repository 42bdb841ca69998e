"""The one settings module.

Everything comes from the environment (django-environ). With nothing set, the
*embedded* mode runs: SQLite under ``var/``, an in-process Dramatiq broker whose
worker threads live inside the serving process, generated secrets kept under
``var/``. Setting ``DATABASE_URL`` switches to the *production* mode, where the
secrets must be given explicitly.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local `.env` is a convenience for operators; real environment variables win.
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

DATABASE_URL = env.str("DATABASE_URL", default="")
EMBEDDED = env.bool("EMBEDDED", default=not DATABASE_URL)
DEBUG = env.bool("DEBUG", default=False)


def _embedded_secret(name: str, make) -> str:
    """Return the secret kept in ``var/<name>``, creating it on first use.

    Only the embedded mode may do this; production must be configured
    explicitly so that every process of a deployment shares the same value.
    """
    path = VAR_DIR / name
    if path.is_file():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _required_secret(var: str, file_name: str, make) -> str:
    value = env.str(var, default="")
    if value:
        return value
    if EMBEDDED:
        return _embedded_secret(file_name, make)
    raise ImproperlyConfigured(
        f"{var} is required outside the embedded mode (DATABASE_URL is set). "
        f"Set the environment variable {var}; see .env.example."
    )


SECRET_KEY = _required_secret("SECRET_KEY", "secret_key", lambda: secrets.token_urlsafe(50))
# Comma-separated Fernet keys; the first encrypts, all decrypt (key rotation).
FIELD_ENCRYPTION_KEYS = _required_secret(
    "FIELD_ENCRYPTION_KEY", "field_encryption_key", lambda: Fernet.generate_key().decode()
).split(",")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Absolute base URL for links in emails and shown webhook URLs. Empty: taken from the
# request, which is right unless a proxy rewrites the host.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/")

INSTALLED_APPS = [
    "controlpanel",
    "subscribers",
    "whatsapp",
    "campaigns",
    "mail",
    "push",
    "journeys",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",
    "django_dramatiq",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before everything that may read a body or answer an error in HTML: /api/v1/ answers JSON.
    "controlpanel.middleware.ApiErrorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The browser's language (Accept-Language); the user's own pick replaces it below.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "controlpanel.middleware.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns lockouts into the lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "controlpanel.urls"
WSGI_APPLICATION = "controlpanel.wsgi.application"
AUTH_USER_MODEL = "controlpanel.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.template.context_processors.i18n",
                "django.contrib.messages.context_processors.messages",
                "controlpanel.context_processors.navigation",
            ],
        },
    },
]

if DATABASE_URL:
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    # Persistent connections: a fresh PostgreSQL connection made the first
    # query of a request 2-3x slower on our machines.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Planner settings for a database that fits in memory (docs/benchmarks.md): JIT
        # compiled for ~100 ms on every segment count; a random read costs about what a
        # sequential one does when the data is cached; grouping a few hundred thousand
        # events per subscriber spilled to disk at the default 4MB work_mem.
        pg_settings = env.str("DATABASE_PG_SETTINGS", default="jit=off random_page_cost=1.1 work_mem=32MB")
        options = " ".join(f"-c {item}" for item in pg_settings.split())
        if options:
            DATABASES["default"].setdefault("OPTIONS", {})["options"] = options
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": {
                # Server threads and in-process workers write concurrently:
                # WAL plus IMMEDIATE transactions avoid "database is locked".
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Background work -------------------------------------------------------
DRAMATIQ_BROKER_URL = env.str("DRAMATIQ_BROKER_URL", default="")
_DRAMATIQ_MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
    "controlpanel.worker_heap.FreezeBootHeap",
]
if DRAMATIQ_BROKER_URL.startswith(("redis://", "rediss://")):
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.redis.RedisBroker",
        # The prefix of the broker's Redis keys: a benchmark gives its run its own, so that
        # nothing it leaves behind is consumed by a later worker on the same Redis database.
        "OPTIONS": {
            "url": DRAMATIQ_BROKER_URL,
            "namespace": env.str("DRAMATIQ_NAMESPACE", default="dramatiq"),
        },
        "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE,
    }
elif DRAMATIQ_BROKER_URL.startswith(("amqp://", "amqps://")):
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker",
        "OPTIONS": {"url": DRAMATIQ_BROKER_URL},
        "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE,
    }
elif DRAMATIQ_BROKER_URL:
    raise ImproperlyConfigured("DRAMATIQ_BROKER_URL must start with redis://, rediss://, amqp:// or amqps://")
else:
    # In-process queue: `manage.py serve` runs worker threads on it.
    DRAMATIQ_BROKER = {
        "BROKER": "dramatiq.brokers.stub.StubBroker",
        "OPTIONS": {},
        "MIDDLEWARE": _DRAMATIQ_MIDDLEWARE,
    }
DRAMATIQ_WORKER_THREADS = env.int("DRAMATIQ_WORKER_THREADS", default=4)
# Every queue an actor names. Long jobs (imports, attribute index builds, erasure scrubs) have
# their own, so a worker busy with one never delays sends, webhook processing, heartbeats or
# sweepers: production runs `rundramatiq --queues long` apart; `manage.py serve` gives the long
# queue threads of its own.
DRAMATIQ_LONG_QUEUE = "long"
DRAMATIQ_QUEUES = ["default", "send", "webhooks", DRAMATIQ_LONG_QUEUE]
DRAMATIQ_LONG_WORKER_THREADS = env.int("DRAMATIQ_LONG_WORKER_THREADS", default=1)
# Shared state for rate limits and throttles; Redis when configured, else local memory.
REDIS_URL = env.str(
    "REDIS_URL",
    default=DRAMATIQ_BROKER_URL if DRAMATIQ_BROKER_URL.startswith("redis") else "",
)
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth ------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("LOGIN_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_USERNAME_FORM_FIELD = "username"
# Throttle on the account as stored (lower-case), not as typed.
AXES_USERNAME_CALLABLE = "controlpanel.auth.axes_username"
# Behind a proxy, trust its X-Forwarded-For only when told to.
AXES_IPWARE_PROXY_COUNT = env.int("PROXY_COUNT", default=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if AXES_IPWARE_PROXY_COUNT else ["REMOTE_ADDR"]
)

# --- Email ---------------------------------------------------------------------
# EMAIL_URL like smtp+tls://user:password@smtp.example.com:587 (django-environ syntax).
if env.str("EMAIL_URL", default=""):
    _email = env.email_url("EMAIL_URL")
    MAILERS = {
        "default": {
            "BACKEND": _email["EMAIL_BACKEND"],
            "OPTIONS": {
                "host": _email.get("EMAIL_HOST", "localhost"),
                "port": _email.get("EMAIL_PORT") or 25,
                "username": _email.get("EMAIL_HOST_USER", ""),
                "password": _email.get("EMAIL_HOST_PASSWORD", ""),
                "use_tls": bool(_email.get("EMAIL_USE_TLS")),
                "use_ssl": bool(_email.get("EMAIL_USE_SSL")),
                "timeout": 10,
            },
        }
    }
elif EMBEDDED:
    # No SMTP on a laptop: mails (invitations, password resets) land as files in var/mail/.
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "OPTIONS": {"file_path": str(VAR_DIR / "mail")},
        }
    }
else:
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.console.EmailBackend"}}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="WhatsApp Control Panel <noreply@localhost>")

# --- Security --------------------------------------------------------------
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not EMBEDDED)
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Internationalisation ----------------------------------------------------
# The panel speaks English and German (docs: README "Languages"). A user's pick in their profile
# wins (controlpanel.middleware.UserLanguageMiddleware), else the browser's Accept-Language, else
# English. Catalogs live in locale/ (`make messages` updates and compiles them).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Our own date formats per language (controlpanel/formats/<lang>/formats.py): ISO-like in English,
# 07.12.2026 in German; numbers group by the language's separators where a template asks for it.
FORMAT_MODULE_PATH = ["controlpanel.formats"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env.bool("STATIC_MANIFEST", default=not EMBEDDED)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Embedded mode serves straight from the source folders, no collectstatic needed.
WHITENOISE_USE_FINDERS = EMBEDDED
if EMBEDDED:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# --- Logging -----------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Query strings may carry hub.verify_token or access_token: redacted on every line we print.
    "filters": {"redact": {"()": "controlpanel.logfilters.RedactSecrets"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Request lines: Django's development server (`manage.py serve`) and granian's access log
        # (when enabled with --access-log, in the worker that loaded this configuration) print
        # through our handler instead of their own unfiltered ones.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "granian.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        # 403/404 are answers, not incidents; 5xx are still logged with their traceback.
        "django.request": {"level": "ERROR"},
        "dramatiq": {"level": env.str("DRAMATIQ_LOG_LEVEL", default="WARNING")},
        "apscheduler": {"level": "WARNING"},
        # httpx logs every request at INFO: one line per push device (push/fcm.py).
        "httpx": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

# --- Product settings --------------------------------------------------------
# Seconds between scheduler ticks of the housekeeping job.
HEARTBEAT_INTERVAL = env.int("HEARTBEAT_INTERVAL", default=30)
# How long one pump of the event feed drains a consumer before it hands the worker back.
EVENT_FEED_PUMP_SECONDS = env.float("EVENT_FEED_PUMP_SECONDS", default=10.0)
# django_dramatiq's rundramatiq imports these modules of every app (our actors live in actors.py).
DRAMATIQ_AUTODISCOVER_MODULES = ["actors"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
# models.W040: SQLite ignores INCLUDE columns of covering indexes that PostgreSQL uses.
SILENCED_SYSTEM_CHECKS = ["models.W040"]
# Webhook bodies are committed in shared transactions by a writer thread (see
# whatsapp/intake.py). Off on SQLite, where one writer at a time is the rule anyway.
WEBHOOK_GROUP_COMMIT = env.bool("WEBHOOK_GROUP_COMMIT", default=bool(DATABASE_URL))
# How long a webhook request may wait for others to join its commit (see whatsapp/intake.py).
WEBHOOK_COMMIT_WAIT_MS = env.float("WEBHOOK_COMMIT_WAIT_MS", default=4.0)
SIMULATOR_ENABLED = env.bool("SIMULATOR_ENABLED", default=EMBEDDED)
# Graph API base URLs besides Meta's that connections may use (e.g. a staging proxy).
WHATSAPP_EXTRA_BASE_URLS = env.list("WHATSAPP_EXTRA_BASE_URLS", default=[])
# Minutes between template syncs with Meta (webhooks usually report changes sooner).
WHATSAPP_TEMPLATE_SYNC_MINUTES = env.int("WHATSAPP_TEMPLATE_SYNC_MINUTES", default=15)
# Concurrent Graph API calls per sender process (campaigns/sending.py): at Meta's ~200 ms a call,
# 64 threads carry about 300 messages/s per process; the per-number limit is enforced apart.
WHATSAPP_SEND_THREADS = env.int("WHATSAPP_SEND_THREADS", default=64)
# Calls in flight per sender process on the asyncio path that campaign batches take
# (whatsapp/async_client.py): one event loop, kept-alive connections, no thread per call.
WHATSAPP_SEND_CONNECTIONS = env.int("WHATSAPP_SEND_CONNECTIONS", default=256)
# Seconds a campaign row left "unknown" (a worker died between its claim and its commit) waits for
# the status webhook that settles it before it is sent again, once (campaigns/sending.py). A webhook
# outage longer than this can send such a message twice; shorter finishes campaigns sooner.
UNKNOWN_RESEND_AFTER = env.int("UNKNOWN_RESEND_AFTER", default=3600)
# Limits on names users create by sending data (subscribers/tags.py, subscribers/events.py): each
# tag is an export column and a row of the tags page, each event attribute a facet of the builder.
TAGS_NEW_PER_REQUEST = env.int("TAGS_NEW_PER_REQUEST", default=100)
TAGS_PER_PROJECT = env.int("TAGS_PER_PROJECT", default=500)
EVENT_NAMES_PER_PROJECT = env.int("EVENT_NAMES_PER_PROJECT", default=500)
EVENT_ATTRIBUTES_PER_EVENT = env.int("EVENT_ATTRIBUTES_PER_EVENT", default=200)

# --- Email and push sending (campaigns/channel_sending.py) -------------------------
# Outbox rows per broker message, and batches in flight per channel (leased or sending).
EMAIL_SEND_BATCH = env.int("EMAIL_SEND_BATCH", default=100)
PUSH_SEND_BATCH = env.int("PUSH_SEND_BATCH", default=500)
CHANNEL_SEND_IN_FLIGHT_BATCHES = env.int("CHANNEL_SEND_IN_FLIGHT_BATCHES", default=16)

# --- Push (push/fcm.py, push/transport.py) -----------------------------------
# Firebase Cloud Messaging's API, and the push simulator's FCM-shaped base URL for projects in
# simulator mode (the embedded server's own /simulator/fcm, as the WhatsApp simulator's base URL).
PUSH_FCM_URL = env.str("PUSH_FCM_URL", default="https://fcm.googleapis.com")
PUSH_SIMULATOR_URL = env.str(
    "PUSH_SIMULATOR_URL", default=f"http://127.0.0.1:{env.int('PORT', default=8000)}/simulator/fcm"
)
# FCM requests in flight per sender process (one request per device token; ~100 ms each at FCM,
# so 256 carry over 1,000 pushes a second).
PUSH_SEND_CONNECTIONS = env.int("PUSH_SEND_CONNECTIONS", default=256)
