"""The one settings module of the eutirads web app, read from the environment.

Typed helpers fail loudly on a bad value (healthchecks' hc/settings.py style), so a typo in
the environment stops the server at start instead of silently changing its behaviour.
There are no dev/prod copies: EUTIRADS_PRODUCTION=1 switches on the secure settings.

Environment:
  EUTIRADS_HOME            data folder (SQLite db, secret key); default ~/.eutirads
  DATABASE_URL             any Django database (dj-database-url); default SQLite in EUTIRADS_HOME
  EUTIRADS_SECRET_KEY      secret key; default: generated once into EUTIRADS_HOME/secret_key (0600)
  EUTIRADS_DEBUG           0/1, default 0
  EUTIRADS_ALLOWED_HOSTS   comma-separated; default localhost,127.0.0.1,[::1] (and * in debug)
  EUTIRADS_PRODUCTION      0/1: secure cookies, HSTS, SSL redirect, ...
  EUTIRADS_CSRF_TRUSTED_ORIGINS  comma-separated origins (https://host) behind a proxy
  EUTIRADS_IDLE_MINUTES    log out after this many idle minutes; default 30
  EUTIRADS_MAX_UPLOAD_MB   largest accepted request body; default 20
  EUTIRADS_MAX_UPLOAD_PIXELS  largest accepted image in pixels; default 8000000
  EUTIRADS_MAX_UPLOAD_ASPECT  longest/shortest side of an accepted image; default 8
  EUTIRADS_LOGIN_FAILURES  failed logins before a lock-out; default 5
  EUTIRADS_LOCKOUT_MINUTES lock-out length; default 15
  EUTIRADS_TRUSTED_PROXIES comma-separated proxy addresses whose forwarding header is believed
  EUTIRADS_CLIENT_IP_HEADER that header; default X-Forwarded-For
  EUTIRADS_SERVER_TIMING   0/1: Server-Timing header with each request's CPU time (benchmarks)
  EUTIRADS_TIME_ZONE       time zone dates are shown in (e.g. America/Bogota); default UTC
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def _secret_key(home: Path) -> str:
    """EUTIRADS_SECRET_KEY, or a key generated once into a 0600 file under the data folder."""
    key = env_str("EUTIRADS_SECRET_KEY")
    if key:
        if len(key) < 50:
            raise ImproperlyConfigured("EUTIRADS_SECRET_KEY must be at least 50 characters long")
        return key
    file = home / "secret_key"
    if not file.exists():
        home.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two workers starting together never write two different keys.
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(64))
    key = file.read_text().strip()
    if len(key) < 50:
        raise ImproperlyConfigured(f"{file}: secret key file is empty or too short; delete it")
    return key


# ---- paths and core switches -------------------------------------------------------------
BASE_DIR = Path(__file__).resolve().parent
EUTIRADS_HOME = Path(env_str("EUTIRADS_HOME") or Path.home() / ".eutirads").expanduser().resolve()
EUTIRADS_HOME.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("EUTIRADS_DEBUG", False)
PRODUCTION = env_bool("EUTIRADS_PRODUCTION", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("EUTIRADS_PRODUCTION=1 and EUTIRADS_DEBUG=1 cannot be combined")
SECRET_KEY = _secret_key(EUTIRADS_HOME)
ALLOWED_HOSTS = env_list("EUTIRADS_ALLOWED_HOSTS",
                         ["localhost", "127.0.0.1", "[::1]"] + (["*"] if DEBUG else []))
CSRF_TRUSTED_ORIGINS = env_list("EUTIRADS_CSRF_TRUSTED_ORIGINS", [])

# ---- applications ------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "eutirads.web.core",
    "eutirads.web.labeling",
    "eutirads.web.diagnosis",
    # Further eutirads apps (e.g. "eutirads.web.diagnosis") go here.
]

MIDDLEWARE = [
    "eutirads.web.core.middleware.ServerTimingMiddleware",  # only with EUTIRADS_SERVER_TIMING=1
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "eutirads.web.core.middleware.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The browser's language (Accept-Language, or the language cookie); no URL prefixes.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A logged-in user's own choice of language wins over the browser's.
    "eutirads.web.core.middleware.UserLanguageMiddleware",
    "eutirads.web.core.middleware.IdleTimeoutMiddleware",
    # Pages for a logged-in user: Cache-Control no-store (patient images, labels).
    "eutirads.web.core.middleware.PrivateResponsesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "eutirads.web.core.middleware.EutiradsErrorMiddleware",
    # Last, as django-axes asks: it turns a lock-out into the lock-out response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "eutirads.web.urls"
WSGI_APPLICATION = "eutirads.web.wsgi.application"

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
                "eutirads.web.core.context.roles",
            ],
        },
    },
]

# ---- database ----------------------------------------------------------------------------
_DATABASE_URL = env_str("DATABASE_URL")
if _DATABASE_URL:
    import dj_database_url

    try:
        DATABASES = {"default": dj_database_url.parse(_DATABASE_URL, conn_max_age=60)}
    except Exception as exc:  # dj-database-url raises several types on a bad URL
        raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL ({exc})") from None
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": EUTIRADS_HOME / "eutirads.sqlite3",
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        # IMMEDIATE: a write transaction takes the write lock at BEGIN, so two readers
        # saving at once queue up instead of failing with "database is locked".
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    })
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---- authentication, sessions, login throttling --------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

IDLE_MINUTES = env_int("EUTIRADS_IDLE_MINUTES", 30, minimum=1)
# Idle timeout: the session lives IDLE_MINUTES after the last request. It is renewed by
# core.middleware.IdleTimeoutMiddleware at most once a minute (a database write on every
# request would cost each "save and next" a transaction).
# Plus the renewal interval: renewed at most once a minute, a session must still live
# IDLE_MINUTES after the LAST request, never less.
SESSION_COOKIE_AGE = IDLE_MINUTES * 60 + 60
SESSION_SAVE_EVERY_REQUEST = False
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

AXES_FAILURE_LIMIT = env_int("EUTIRADS_LOGIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("EUTIRADS_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "core/locked_out.html"
AXES_VERBOSE = False
# Behind a TLS proxy: the client address comes from the trusted proxy's header (see
# core/network.py); throttling and the audit log both use it.
EUTIRADS_TRUSTED_PROXIES = [str(a) for a in env_list("EUTIRADS_TRUSTED_PROXIES", [])]
EUTIRADS_CLIENT_IP_HEADER = "HTTP_" + env_str("EUTIRADS_CLIENT_IP_HEADER",
                                              "X-Forwarded-For").upper().replace("-", "_")
AXES_CLIENT_IP_CALLABLE = "eutirads.web.core.network.client_ip"

# ---- uploads -----------------------------------------------------------------------------
MAX_UPLOAD_MB = env_int("EUTIRADS_MAX_UPLOAD_MB", 20, minimum=1)
# DICOMweb root of the clinic's PACS: shows "send to PACS" on the diagnosis page (SR/SEG by
# STOW-RS; credentials EUTIRADS_DICOMWEB_USER/_PASSWORD or _TOKEN). Empty: no such option.
PACS_STOW_URL = env_str("EUTIRADS_PACS_URL") or ""
# A scanner frame is under 2 MP; each accepted megapixel costs ~10 ms of CPU (issue 13).
MAX_UPLOAD_PIXELS = env_int("EUTIRADS_MAX_UPLOAD_PIXELS", 8_000_000, minimum=65_536)
MAX_UPLOAD_ASPECT = env_int("EUTIRADS_MAX_UPLOAD_ASPECT", 8, minimum=2)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_MB * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_MB * 1024 * 1024
FILE_UPLOAD_PERMISSIONS = 0o600

# ---- security headers (always on) and production switches ----------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# No inline script or style anywhere (django-csp); patient images may be blob: URLs (the
# reading screen's prefetch). Permissions-Policy: core.middleware.PermissionsPolicyMiddleware.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "connect-src": ["'self'", "blob:", "data:"],  # fetch() of a page's own images
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
SERVER_TIMING = env_bool("EUTIRADS_SERVER_TIMING", False)
PERMISSIONS_POLICY = ("accelerometer=(), camera=(), geolocation=(), gyroscope=(), "
                      "magnetometer=(), microphone=(), payment=(), usb=(), "
                      "interest-cohort=()")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("EUTIRADS_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("EUTIRADS_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    if env_bool("EUTIRADS_BEHIND_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# ---- static files (WhiteNoise; never patient images) ----------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = EUTIRADS_HOME / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on a missing folder; files come from finders
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(EUTIRADS_HOME / "media")}},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve app static files straight from the package (no collectstatic step needed).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# ---- languages ---------------------------------------------------------------------------
# Spanish (Colombia) and English, chosen by the browser (Accept-Language: "es" or "es-MX"
# also give es-co) with a per-user switch (core.Preference). Each app keeps its catalogue
# in its own locale/ folder (found by Django for every installed app); the compiled .mo
# files are committed beside the .po files, so a fresh install needs no gettext.
USE_I18N = True
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es-co", "Español (Colombia)")]
LOCALE_PATHS: list[str] = []
LANGUAGE_COOKIE_NAME = "eutirads_language"
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600

# ---- misc --------------------------------------------------------------------------------
TIME_ZONE = env_str("EUTIRADS_TIME_ZONE", "UTC")
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"no_4xx_traceback": {"()": "eutirads.web.core.errors.NoTracebackFor4xx"}},
    "handlers": {"console": {"class": "logging.StreamHandler",
                             "filters": ["no_4xx_traceback"]}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
