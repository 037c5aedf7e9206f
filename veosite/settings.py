"""veobot settings. Every variable is documented, with its default, in .env.example."""

from __future__ import annotations

import copy
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from veosite import config, databases
from veosite.config import ConfigError

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / ".data"

# Values already in the process environment win over the .env file (VEOBOT_ENV_FILE picks
# another file; tests point it away from a developer's .env).
config.env.read_env(config.env.ENVIRON.get("VEOBOT_ENV_FILE", str(BASE_DIR / ".env")))

DEBUG = config.get_bool("DEBUG", False)
SECRET_KEY = config.env.ENVIRON.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ConfigError("SECRET_KEY is required unless DEBUG=true (set it in .env; see .env.example)")
    SECRET_KEY = "insecure-debug-only-key"  # only reachable with DEBUG=true set explicitly
ALLOWED_HOSTS = config.get_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "tracking",
    "generation",
    "discordbot",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "tracking.attribution.ModeratorAttribution",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tracking.urls"
WSGI_APPLICATION = "veosite.wsgi.application"
ASGI_APPLICATION = "veosite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database -----------------------------------------------------------------

DATABASE_MAX_CONNECTIONS = config.get_int("DATABASE_MAX_CONNECTIONS", 10, minimum=1, maximum=100)
DATABASE_CONNECT_TIMEOUT = databases.CONNECT_TIMEOUT
DATABASE_STATEMENT_TIMEOUT_MS = databases.STATEMENT_TIMEOUT_MS


# DATABASE_DIRECT_URL: the PostgreSQL server itself, when DATABASE_URL goes through PgBouncer
# in transaction pooling mode (each transaction may run on another server connection, so
# nothing may outlive one). What needs a session of its own uses the "direct" alias: the SQL
# and Django migrations (a session advisory lock, long DDL), the workers' LISTEN, schema dumps
# and the test database's creation. Unset: both aliases name the same server, unpooled.
DATABASE_POOLED = config.get_str("DATABASE_DIRECT_URL", "") != ""
if DATABASE_POOLED and not config.is_set("DATABASE_URL"):
    raise ConfigError("DATABASE_DIRECT_URL is set but DATABASE_URL is not: set DATABASE_URL to the PgBouncer")
_default = databases.entry(
    "DATABASE_URL", pooled=DATABASE_POOLED, max_connections=DATABASE_MAX_CONNECTIONS, base_dir=BASE_DIR
)
DATABASES = {
    "default": _default,
    # Under tests it names the default's test database (TEST.MIRROR), on the direct server.
    "direct": {
        **(
            databases.entry(
                "DATABASE_DIRECT_URL", pooled=False, max_connections=DATABASE_MAX_CONNECTIONS, base_dir=BASE_DIR
            )
            if DATABASE_POOLED
            else copy.deepcopy(_default)
        ),
        "TEST": {"MIRROR": "default"},
    },
}
# DATABASE_LISTEN_URL: where the workers' LISTEN connects, when it is neither DATABASE_DIRECT_URL
# nor DATABASE_URL (a LISTEN-only role, another address for the same server). Unset: the direct
# database. Checked here, used only by generation.listener (a connection of its own).
DATABASE_LISTEN_URL = config.get_str("DATABASE_LISTEN_URL", "")
if DATABASE_LISTEN_URL:
    databases.parsed_url("DATABASE_LISTEN_URL")  # a clear start-up error for a malformed one
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Quotas -----------------------------------------------------------------------

VEO_QUOTA_LIMIT = config.get_int("VEO_QUOTA_LIMIT", 5, minimum=0, maximum=10_000)
VEO_QUOTA_WINDOW: timedelta = config.get_duration(
    "VEO_QUOTA_WINDOW", "24h", minimum=timedelta(minutes=1), maximum=timedelta(days=366)
)
# Most requests a user may have pending or generating at once; 0 means no separate cap.
VEO_QUOTA_MAX_IN_FLIGHT = config.get_int("VEO_QUOTA_MAX_IN_FLIGHT", 0, minimum=0, maximum=1000)
# Money: what the whole bot may spend in any rolling 24 hours, from the estimated cost of the
# requests that count toward quota (unset: no cap). Per-user and per-guild budgets live in the
# quota policies (the admin). Prices are the veo_prices table's.
VEO_BUDGET_USD_PER_DAY = config.get_money("VEO_BUDGET_USD_PER_DAY", maximum=Decimal(100_000_000))
# Whether the "queued" message shows the request's estimated cost.
VEO_SHOW_COST = config.get_bool("VEO_SHOW_COST", False)
# Whether a request Veo refused on safety grounds is given back to the user's quota.
VEO_REFUND_CONTENT_FILTERED = config.get_bool("VEO_REFUND_CONTENT_FILTERED", False)
# Prompt length bounds, in characters after collapsing whitespace.
VEO_PROMPT_MIN_LENGTH = config.get_int("VEO_PROMPT_MIN_LENGTH", 5, minimum=1, maximum=4000)
VEO_PROMPT_MAX_LENGTH = config.get_int("VEO_PROMPT_MAX_LENGTH", 600, minimum=VEO_PROMPT_MIN_LENGTH, maximum=4000)
VEO_MODEL = config.get_str("VEO_MODEL", "veo-3.1-generate-001")
# The models /veo offers as a choice (its `model` option appears with two or more). The default
# is VEO_MODEL, which must then be one of them (unset: the first). Unset: VEO_MODEL alone.
VEO_MODELS = tuple(dict.fromkeys(config.get_list("VEO_MODELS", [VEO_MODEL])))
if not VEO_MODELS or any(len(model) > 100 for model in VEO_MODELS):
    raise ConfigError("VEO_MODELS must list model ids separated by commas, each at most 100 characters")
if config.is_set("VEO_MODELS"):
    if config.is_set("VEO_MODEL") and VEO_MODEL not in VEO_MODELS:
        raise ConfigError(f"VEO_MODEL must be one of VEO_MODELS (got {VEO_MODEL!r})")
    VEO_MODEL = VEO_MODEL if config.is_set("VEO_MODEL") else VEO_MODELS[0]
# Images given to /veo (a first or a last frame), checked from their bytes before admission.
# Largest file: 20 MiB, what Vertex AI takes inline (bytesBase64Encoded) in one request.
VEO_IMAGE_MAX_BYTES = config.get_int("VEO_IMAGE_MAX_BYTES", 20 * 1024 * 1024, minimum=1, maximum=20 * 1024 * 1024)
# Most pixels (width x height): the header says how large the decoded picture is, and a small
# file can claim a huge one.
VEO_IMAGE_MAX_PIXELS = config.get_int("VEO_IMAGE_MAX_PIXELS", 4096 * 4096, minimum=1, maximum=100_000_000)
# The whole download of an image from Discord, connection included; a user waits on it.
VEO_IMAGE_DOWNLOAD_TIMEOUT: timedelta = config.get_duration(
    "VEO_IMAGE_DOWNLOAD_TIMEOUT", "10s", minimum=timedelta(seconds=1), maximum=timedelta(minutes=2)
)

# --- Veo backend ---------------------------------------------------------------------------
# vertex: GOOGLE_CLOUD_PROJECT + GOOGLE_CLOUD_LOCATION with Application Default Credentials
# (or GOOGLE_APPLICATION_CREDENTIALS); express: VEO_API_KEY; offline: the bundled sample
# video, no Google account. Default: vertex if a project is set, else express if a key is
# set, else offline.
GOOGLE_CLOUD_PROJECT = config.get_str("GOOGLE_CLOUD_PROJECT", "")
GOOGLE_CLOUD_LOCATION = config.get_str("GOOGLE_CLOUD_LOCATION", "us-central1")
VEO_API_KEY = config.get_str("VEO_API_KEY", "")
VEO_BACKEND = config.get_str(
    "VEO_BACKEND", "vertex" if GOOGLE_CLOUD_PROJECT else "express" if VEO_API_KEY else "offline"
)
if VEO_BACKEND not in ("vertex", "express", "offline"):
    raise ConfigError(f"VEO_BACKEND must be vertex, express or offline (got {VEO_BACKEND!r})")
if VEO_BACKEND == "vertex" and not GOOGLE_CLOUD_PROJECT:
    raise ConfigError("GOOGLE_CLOUD_PROJECT is required when VEO_BACKEND=vertex")
if VEO_BACKEND == "express" and not VEO_API_KEY:
    raise ConfigError("VEO_API_KEY is required when VEO_BACKEND=express")
# Recorded on every request, so sample videos can never pass for real ones.
VEO_RECORDED_MODEL = "offline-sample" if VEO_BACKEND == "offline" else VEO_MODEL
# Overrides the Vertex endpoint (tests point it at a local fake).
VEO_API_BASE_URL = config.get_str("VEO_API_BASE_URL", "")
# gs://bucket/prefix for outputs; empty: Veo returns the bytes and they are kept under VEO_MEDIA_ROOT.
VEO_OUTPUT_GCS_URI = config.get_str("VEO_OUTPUT_GCS_URI", "")
if VEO_OUTPUT_GCS_URI and not VEO_OUTPUT_GCS_URI.startswith("gs://"):
    raise ConfigError(f"VEO_OUTPUT_GCS_URI must start with gs:// (got {VEO_OUTPUT_GCS_URI!r})")
# Cloud Storage's JSON API, for reading outputs' sizes and deleting them (purge, erasure);
# tests point it at a local fake.
GCS_API_BASE_URL = config.get_str("GCS_API_BASE_URL", "https://storage.googleapis.com").rstrip("/")
if not GCS_API_BASE_URL.startswith(("https://", "http://")):
    raise ConfigError(f"GCS_API_BASE_URL must be an http(s):// URL (got {GCS_API_BASE_URL!r})")
# Link GCS outputs as https://storage.googleapis.com/... (the bucket must allow public reads).
VEO_GCS_PUBLIC_URLS = config.get_bool("VEO_GCS_PUBLIC_URLS", False)
# How long the V4 signed links to GCS outputs posted in Discord work (7d is V4's maximum);
# 0 posts none. Signing needs a service-account key or impersonated credentials.
VEO_GCS_SIGNED_URL_TTL: timedelta = config.get_duration(
    "VEO_GCS_SIGNED_URL_TTL", "7d", minimum=timedelta(0), maximum=timedelta(days=7)
)
VEO_PERSON_GENERATION = config.get_str("VEO_PERSON_GENERATION", "allow_adult")
if VEO_PERSON_GENERATION not in ("dont_allow", "allow_adult", "allow_all"):
    raise ConfigError(
        f"VEO_PERSON_GENERATION must be dont_allow, allow_adult or allow_all (got {VEO_PERSON_GENERATION!r})"
    )
# Per HTTP call to Veo: timeout, and retries of 5xx answers to polls. A start is sent once per
# attempt (a retried create can be a second video); the worker retries a start that got a 5xx,
# and a rate-limited one goes back to the queue, where the start-rate cap applies.
VEO_HTTP_TIMEOUT: timedelta = config.get_duration(
    "VEO_HTTP_TIMEOUT", "30s", minimum=timedelta(seconds=1), maximum=timedelta(minutes=5)
)
VEO_HTTP_RETRIES = config.get_int("VEO_HTTP_RETRIES", 3, minimum=1, maximum=10)
# Whole generation, from the operation start; Veo can take more than 5 minutes.
VEO_GENERATION_TIMEOUT: timedelta = config.get_duration(
    "VEO_GENERATION_TIMEOUT", "10m", minimum=timedelta(seconds=5), maximum=timedelta(hours=2)
)
# A request still waiting to start this long after it was made (Veo refusing new work with
# 429 all that time) ends as `timeout` (queue_timeout), refunded, instead of waiting forever.
VEO_QUEUE_TIMEOUT: timedelta = config.get_duration(
    "VEO_QUEUE_TIMEOUT", "1h", minimum=timedelta(seconds=5), maximum=timedelta(days=7)
)
# Poll backoff: starts at VEO_POLL_INITIAL, x1.5 each time, capped at VEO_POLL_MAX.
VEO_POLL_INITIAL: timedelta = config.get_duration(
    "VEO_POLL_INITIAL", "1s", minimum=timedelta(seconds=0), maximum=timedelta(minutes=1)
)
VEO_POLL_MAX: timedelta = config.get_duration(
    "VEO_POLL_MAX", "10s", minimum=VEO_POLL_INITIAL, maximum=timedelta(minutes=5)
)
# How long the offline backend pretends to generate.
VEO_OFFLINE_SECONDS = config.get_int("VEO_OFFLINE_SECONDS", 3, minimum=0, maximum=600)

# --- Worker ----------------------------------------------------------------------------------
# Generations in progress at once, across every worker (enforced through the database).
VEO_MAX_CONCURRENT = config.get_int("VEO_MAX_CONCURRENT", 4, minimum=1, maximum=1000)
# Veo operation starts per minute, across every worker (Vertex's default quota is about 10).
VEO_MAX_STARTS_PER_MINUTE = config.get_int("VEO_MAX_STARTS_PER_MINUTE", 10, minimum=1, maximum=10_000)
# A worker's claim on a request; renewed while it works, recovered by others when it dies.
VEO_LEASE: timedelta = config.get_duration("VEO_LEASE", "60s", minimum=timedelta(seconds=1), maximum=timedelta(hours=1))
# Requests one worker process handles at once (polling is cheap; starts are capped globally).
VEO_WORKER_SLOTS = config.get_int("VEO_WORKER_SLOTS", 8, minimum=1, maximum=1000)
# First wait before a rate-limited (429) or failed start is retried; doubles per attempt, max 5 min.
VEO_RETRY_BACKOFF: timedelta = config.get_duration(
    "VEO_RETRY_BACKOFF", "5s", minimum=timedelta(seconds=0), maximum=timedelta(minutes=5)
)
# How often an idle worker looks for new work.
VEO_WORKER_IDLE_POLL: timedelta = config.get_duration(
    "VEO_WORKER_IDLE_POLL", "1s", minimum=timedelta(seconds=0), maximum=timedelta(minutes=1)
)
# Idle workers LISTEN for the NOTIFY sent after each admission and start at once, on the direct
# database (through a transaction-pooling PgBouncer LISTEN hears nothing); the polling above
# stays as the safety net. Off: polling only (workers that cannot reach PostgreSQL directly).
VEO_WORKER_LISTEN = config.get_bool("VEO_WORKER_LISTEN", True)

# How often a worker recomputes the moderators' dashboard (kept in dashboard_snapshots); the
# page shows that snapshot with its age. 0s: no snapshots, the page computes on every view.
DASHBOARD_REFRESH: timedelta = config.get_duration(
    "DASHBOARD_REFRESH", "5m", minimum=timedelta(seconds=0), maximum=timedelta(hours=1)
)

# --- Outputs ---------------------------------------------------------------------------
# Local video files live here (never a public directory; the admin streams them to staff).
# output_uris holds "file:<path relative to this folder>" or "gs://bucket/object".
VEO_MEDIA_ROOT = Path(config.get_str("VEO_MEDIA_ROOT", str(DATA_DIR / "media")))

# --- Discord bot ----------------------------------------------------------------------------
# The bot's token (Developer Portal > Bot). A secret: never logged, never shown in errors.
# Empty: `make run` starts the worker without the Discord gateway and says so.
DISCORD_TOKEN = config.get_str("DISCORD_TOKEN", "")
# Optional cross-check: runbot refuses to start if the token belongs to another application.
DISCORD_APPLICATION_ID = config.get_int("DISCORD_APPLICATION_ID", 0, minimum=0, maximum=2**63 - 1) or None
# Overrides Discord's API base (tests and benchmarks point it at a local fake).
DISCORD_API_BASE_URL = config.get_str("DISCORD_API_BASE_URL", "")
# Sharding (docs/OPERATIONS.md "Several gateway processes"): the total number of shards (a number,
# or auto: Discord's recommendation from GET /gateway/bot) and the ones this process runs
# (e.g. 0-3 or 4,5; unset: all). Neither set: one process, one unsharded gateway connection.
DISCORD_SHARD_COUNT, DISCORD_SHARD_IDS = config.get_shards("DISCORD_SHARD_COUNT", "DISCORD_SHARD_IDS")
# Channels where /veo may be used; empty: everywhere (with a list, DMs are refused too).
ALLOWED_CHANNEL_IDS = config.get_int_set("ALLOWED_CHANNEL_IDS")
# Defaults of the /veo options.
VEO_DEFAULT_DURATION = config.get_int("VEO_DEFAULT_DURATION", 4, minimum=4, maximum=8)
if VEO_DEFAULT_DURATION not in (4, 6, 8):
    raise ConfigError(f"VEO_DEFAULT_DURATION must be 4, 6 or 8 (got {VEO_DEFAULT_DURATION})")
VEO_DEFAULT_RESOLUTION = config.get_str("VEO_DEFAULT_RESOLUTION", "720p")
if VEO_DEFAULT_RESOLUTION not in ("720p", "1080p"):
    raise ConfigError(f"VEO_DEFAULT_RESOLUTION must be 720p or 1080p (got {VEO_DEFAULT_RESOLUTION!r})")
VEO_DEFAULT_RATIO = config.get_str("VEO_DEFAULT_RATIO", "16:9")
if VEO_DEFAULT_RATIO not in ("16:9", "9:16"):
    raise ConfigError(f"VEO_DEFAULT_RATIO must be 16:9 or 9:16 (got {VEO_DEFAULT_RATIO!r})")
VEO_DEFAULT_AUDIO = config.get_bool("VEO_DEFAULT_AUDIO", True)
# Where VEO_MEDIA_ROOT is served publicly (e.g. https://cdn.example.com/veo/), so videos too
# large to attach can be linked; empty: no public link for local files (the reply says so).
VEO_PUBLIC_MEDIA_URL = config.get_str("VEO_PUBLIC_MEDIA_URL", "")
if VEO_PUBLIC_MEDIA_URL and not VEO_PUBLIC_MEDIA_URL.startswith(("https://", "http://")):
    raise ConfigError(f"VEO_PUBLIC_MEDIA_URL must be an http(s):// URL (got {VEO_PUBLIC_MEDIA_URL!r})")
# Degraded mode: while PostgreSQL is unreachable, tracking writes go to fsync'd journals here
# and are replayed into the database when it returns.
VEO_JOURNAL_DIR = Path(config.get_str("VEO_JOURNAL_DIR", str(DATA_DIR / "journal")))
# How often the bot checks whether an unreachable database is back.
DATABASE_PROBE_INTERVAL: timedelta = config.get_duration(
    "DATABASE_PROBE_INTERVAL", "2s", minimum=timedelta(seconds=1), maximum=timedelta(minutes=5)
)
# How often the bot looks for moderators' actions (the discord_actions outbox: Discord messages
# and bucket objects to delete).
DISCORD_ACTIONS_POLL: timedelta = config.get_duration(
    "DISCORD_ACTIONS_POLL", "5s", minimum=timedelta(seconds=0), maximum=timedelta(minutes=5)
)
# An action Discord keeps refusing (e.g. 403 Missing Permissions) or Cloud Storage cannot do
# yet (5xx, network) is retried with a doubling backoff (30 s, 1 min, ... at most 1 h) and
# failed after this many attempts.
DISCORD_ACTIONS_MAX_ATTEMPTS = config.get_int("DISCORD_ACTIONS_MAX_ATTEMPTS", 8, minimum=1, maximum=100)
# --- Review queue (README "Review queue") ---------------------------------------------------
# A moderator's claim on a queue item lasts this long (renewed by claiming again); then anyone
# may take the item.
REVIEW_CLAIM_MINUTES = config.get_int("REVIEW_CLAIM_MINUTES", 15, minimum=1, maximum=24 * 60)
# New queue items are announced in this Discord channel (0: not announced), with a link into
# the panel at ADMIN_BASE_URL.
MOD_CHANNEL_ID = config.get_int("MOD_CHANNEL_ID", 0, minimum=0, maximum=2**63 - 1) or None
ADMIN_BASE_URL = config.get_str("ADMIN_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# One JSON object per log line instead of plain text.
LOG_JSON = config.get_bool("LOG_JSON", False)

# --- Metrics (Prometheus text format; docs/OPERATIONS.md) ----------------------------------
# The bot and runworker serve their own figures on this port when it is set (0: off). Every such
# process on one machine needs a port of its own.
METRICS_PORT = config.get_int("METRICS_PORT", 0, minimum=0, maximum=65535)
# Where that port listens: loopback unless a scraper on another machine must reach it.
METRICS_ADDRESS = config.get_ip_address("METRICS_ADDRESS", "127.0.0.1")
# Client addresses the web process's /metrics answers (others get 403). Behind a proxy the
# address is the one ADMIN_LOGIN_IP_HEADER names, so the proxy's own loopback does not count.
METRICS_ALLOWED = config.get_ip_networks("METRICS_ALLOWED", ["127.0.0.1", "::1"])

# --- Web ------------------------------------------------------------------------------
# HTTPS. The defaults keep `make run` working over plain http on 127.0.0.1; a deployment
# behind TLS turns them on (docs/OPERATIONS.md lists the production values, and
# `manage.py check --deploy` then passes).
SECURE_SSL_REDIRECT = config.get_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]  # probes and scrapers on the private network speak plain http
# Set by the TLS-terminating proxy, e.g. "X-Forwarded-Proto: https"; only when the proxy
# always sets (or strips) it, otherwise clients could claim https.
SECURE_PROXY_SSL_HEADER = config.get_proxy_header("SECURE_PROXY_SSL_HEADER")
SESSION_COOKIE_SECURE = config.get_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = config.get_bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = config.get_int("SECURE_HSTS_SECONDS", 0, minimum=0, maximum=2 * 365 * 86400)
SECURE_HSTS_INCLUDE_SUBDOMAINS = config.get_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = config.get_bool("SECURE_HSTS_PRELOAD", False)
# Origins (scheme://host) allowed to POST to the admin when they differ from its own host.
CSRF_TRUSTED_ORIGINS = config.get_list("CSRF_TRUSTED_ORIGINS", [])
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("https://", "http://")):
        raise ConfigError(f"CSRF_TRUSTED_ORIGINS entries must start with https:// or http:// (got {_origin!r})")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 12 * 3600  # a moderator signs in again after half a day

# Admin sign-in throttle (tracking/throttle.py): failures are recorded in PostgreSQL, so the
# limit holds across every web process. A user name, or a client address, that failed this
# many times within ADMIN_LOGIN_LOCKOUT is refused until the oldest failure leaves the window.
ADMIN_LOGIN_MAX_FAILURES = config.get_int("ADMIN_LOGIN_MAX_FAILURES", 5, minimum=1, maximum=1000)
ADMIN_LOGIN_MAX_FAILURES_PER_IP = config.get_int("ADMIN_LOGIN_MAX_FAILURES_PER_IP", 20, minimum=1, maximum=100_000)
ADMIN_LOGIN_LOCKOUT: timedelta = config.get_duration(
    "ADMIN_LOGIN_LOCKOUT", "15m", minimum=timedelta(seconds=1), maximum=timedelta(days=1)
)
# The header a trusted proxy sets to the client's address (e.g. X-Real-IP, or X-Forwarded-For,
# whose last entry is used); empty: the connection's address (REMOTE_ADDR).
ADMIN_LOGIN_IP_HEADER = config.get_header_name("ADMIN_LOGIN_IP_HEADER")

# --- Data lifecycle ------------------------------------------------------------------
# `manage.py purge_requests` deletes finished requests older than this many days, with their
# events and outputs; 0 keeps everything. Never inside a quota window (docs/OPERATIONS.md).
REQUEST_RETENTION_DAYS = config.get_int("REQUEST_RETENTION_DAYS", 365, minimum=0, maximum=100 * 365)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "veosite.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_JSON else "plain"}},
    "root": {"handlers": ["console"], "level": config.get_str("LOG_LEVEL", "INFO").upper()},
    # discord.py's INFO lines (gateway sessions) are useful. discord.state warns at start-up that
    # the guilds intent is off: the bot needs no intents (it keeps no guild cache) on purpose.
    # psycopg's pool warns at every failed connection attempt while PostgreSQL is down; the bot,
    # the worker and manage.py report an outage themselves, once.
    "loggers": {
        "pgserver": {"level": "WARNING"},
        "discord": {"level": "INFO"},
        "discord.state": {"level": "ERROR"},
        "psycopg.pool": {"level": "ERROR"},
    },
}
