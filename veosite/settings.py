"""veobot settings. Every variable is documented, with its default, in .env.example."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from veosite import config
from veosite.config import ConfigError

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / ".data"

# Values already in the process environment win over the .env file.
config.env.read_env(BASE_DIR / ".env")

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
    "discordbot",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "veosite.urls"
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
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------

DATABASE_MAX_CONNECTIONS = config.get_int("DATABASE_MAX_CONNECTIONS", 10, minimum=1, maximum=100)
DATABASE_CONNECT_TIMEOUT = 10  # seconds
DATABASE_STATEMENT_TIMEOUT_MS = 30_000


def _database() -> dict:
    if config.is_set("DATABASE_URL"):
        url = config.env.ENVIRON["DATABASE_URL"]
        if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
            raise ConfigError("DATABASE_URL must be a postgresql:// URL (got a different scheme)")
        try:
            db = config.env.db_url_config(url)
        except Exception:
            raise ConfigError("DATABASE_URL could not be parsed as a postgresql:// URL") from None
        # django-environ leaves ?host=/socket/dir in OPTIONS, where Django ignores it.
        options = db.pop("OPTIONS", {}) or {}
        if "host" in options:
            db["HOST"] = options.pop("host")
        if not db.get("NAME"):
            raise ConfigError("DATABASE_URL must name a database (postgresql://user@host:port/NAME)")
    else:
        from veosite import embedded_db

        db = embedded_db.settings_dict(BASE_DIR)
        options = {}
    db["ENGINE"] = "django.db.backends.postgresql"
    db["CONN_MAX_AGE"] = 0  # required by the pool: connections go back to it on close
    db["OPTIONS"] = {
        **options,
        "connect_timeout": DATABASE_CONNECT_TIMEOUT,
        "options": f"-c statement_timeout={DATABASE_STATEMENT_TIMEOUT_MS}",
        "application_name": "veobot",
        "pool": {
            "min_size": 1,
            "max_size": DATABASE_MAX_CONNECTIONS,
            "timeout": DATABASE_CONNECT_TIMEOUT,
        },
    }
    return db


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Quotas -----------------------------------------------------------------------

VEO_QUOTA_LIMIT = config.get_int("VEO_QUOTA_LIMIT", 5, minimum=0, maximum=10_000)
VEO_QUOTA_WINDOW: timedelta = config.get_duration(
    "VEO_QUOTA_WINDOW", "24h", minimum=timedelta(minutes=1), maximum=timedelta(days=366)
)
# Most requests a user may have pending or generating at once; 0 means no separate cap.
VEO_QUOTA_MAX_IN_FLIGHT = config.get_int("VEO_QUOTA_MAX_IN_FLIGHT", 0, minimum=0, maximum=1000)
# Whether a request Veo refused on safety grounds is given back to the user's quota.
VEO_REFUND_CONTENT_FILTERED = config.get_bool("VEO_REFUND_CONTENT_FILTERED", False)
# Prompt length bounds, in characters after collapsing whitespace.
VEO_PROMPT_MIN_LENGTH = config.get_int("VEO_PROMPT_MIN_LENGTH", 5, minimum=1, maximum=4000)
VEO_PROMPT_MAX_LENGTH = config.get_int("VEO_PROMPT_MAX_LENGTH", 600, minimum=VEO_PROMPT_MIN_LENGTH, maximum=4000)
VEO_MODEL = config.get_str("VEO_MODEL", "veo-3.1-generate-001")

# --- Outputs ---------------------------------------------------------------------------
# Local video files live here (never a public directory; the admin streams them to staff).
# output_uris holds "file:<path relative to this folder>" or "gs://bucket/object".
VEO_MEDIA_ROOT = Path(config.get_str("VEO_MEDIA_ROOT", str(DATA_DIR / "media")))

# --- Web ------------------------------------------------------------------------------

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
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": config.get_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {"pgserver": {"level": "WARNING"}},
}
