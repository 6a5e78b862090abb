"""Settings shared by every environment. Addresses come from the environment;
dev.py and prod.py decide the defaults and the secrets."""

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_list(name, default):
    """A comma-separated environment variable as a list."""
    value = os.environ.get(name)
    return [item.strip() for item in value.split(",") if item.strip()] if value else default


def env_bool(name, default):
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "playground",
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

ROOT_URLCONF = "storefront.urls"

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

WSGI_APPLICATION = "storefront.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=600
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis is also the cache (DB 2), as in the course; the broker keeps DB 1.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("REDIS_CACHE_URL", "redis://localhost:6379/2"),
    }
}

# One line per event on stdout for every process (web, worker, beat, flower).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Django's own console handler would print its lines a second time.
    "loggers": {"django": {"handlers": [], "propagate": True}},
}

# --- Celery -------------------------------------------------------------------
# Read by storefront/celery.py through the CELERY_ namespace.

# The course's broker: Redis DB 1.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/1")
# Results (and the STARTED state) in the same Redis, so Flower and AsyncResult can report them.
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
# JSON only: a pickled message could run code on the worker.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# crontab entries are read in the site's time zone, not the worker's.
CELERY_TIMEZONE = TIME_ZONE
# Flower draws its task list and worker graphs from these events.
CELERY_WORKER_SEND_TASK_EVENTS = True
# A task that has been picked up shows as STARTED, not PENDING.
CELERY_TASK_TRACK_STARTED = True
# A stuck task is told to stop (soft) and then killed (hard), so it cannot hold a
# worker process forever; both are well above notify_customers' run time.
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
# Workers started before Redis keep trying instead of exiting.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Django's LOGGING stays in charge of the worker's log lines.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# How long the course's simulated "10k emails" take, in seconds (tests shorten it).
NOTIFY_CUSTOMERS_SECONDS = float(os.environ.get("NOTIFY_CUSTOMERS_SECONDS", 10))

CELERY_BEAT_SCHEDULE = {
    # The course's demo: every 5 seconds (tests shorten it with NOTIFY_CUSTOMERS_EVERY).
    "notify_customers": {
        "task": "playground.tasks.notify_customers",
        "schedule": float(os.environ.get("NOTIFY_CUSTOMERS_EVERY", 5)),
        "args": ["Hello World"],
    },
    # The crontab form: every Monday at 7:30 ...
    "notify_customers_monday_morning": {
        "task": "playground.tasks.notify_customers",
        "schedule": crontab(day_of_week=1, hour=7, minute=30),
        "args": ["Have a good week!"],
    },
    # ... and every 15 minutes.
    "notify_customers_quarter_hourly": {
        "task": "playground.tasks.notify_customers",
        "schedule": crontab(minute="*/15"),
        "args": ["Fresh deals are in."],
    },
}

# user:password for Flower's login; dev.py gives a default, production must set it.
FLOWER_BASIC_AUTH = os.environ.get("FLOWER_BASIC_AUTH", "")
# Flower listens on this machine only unless told otherwise (docker-compose sets 0.0.0.0).
FLOWER_ADDRESS = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
