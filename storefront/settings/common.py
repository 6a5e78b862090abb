"""Settings shared by every environment, and every variable read from the
environment (through `env`, which stops the process with one sentence when one is
missing). dev.py gives development's defaults; prod.py adds production's rules."""

import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from celery.schedules import crontab
from csp.constants import NONE, SELF
from kombu import Queue

from storefront.logs import logging_config
from storefront.rabbitmq import task_queues
from storefront.sentinel import is_sentinel

from .environment import (
    broker_transport,
    env,
    env_bool,
    env_count,
    env_list,
    env_networks,
    env_redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env("SECRET_KEY")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "storefront",
    "playground",
]

MIDDLEWARE = [
    # First: probes get their answer before host checks and HTTPS redirects.
    "storefront.health.HealthCheckMiddleware",
    # Before anything reads a body: one that is too large is refused unread.
    "storefront.body_size.RefuseOversizedBodies",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its own answer.
    "axes.middleware.AxesMiddleware",
]

# Pages load scripts, styles and images from this site only, and no other site may
# frame them: an injected <script> or inline handler does not run.
CONTENT_SECURITY_POLICY: dict[str, dict[str, list[str]]] | None = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

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

DATABASES = {"default": dj_database_url.parse(env("DATABASE_URL"), conn_max_age=600)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several worker processes write at once: readers never wait for writers (WAL),
    # a writer takes its lock when its transaction begins instead of failing to
    # upgrade it later, and waits up to 20 s for it rather than "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

# Admin logins are throttled (django-axes): after AXES_FAILURE_LIMIT failed attempts a
# client is refused (HTTP 429) for AXES_COOLOFF_TIME hours without a password being
# checked, which is what made a few concurrent guessers slow every page. By client
# address, not by username: locking a username would let anyone lock its owner out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(env("AXES_FAILURE_LIMIT", 5))
AXES_COOLOFF_TIME = float(env("AXES_COOLOFF_TIME", 0.25))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = True
# The client's address is the peer's, or the one a trusted proxy says it saw
# (storefront/client_address.py). TRUSTED_PROXIES: the proxy's addresses (compose
# pins its own); none in development, where nothing stands in front of runserver.
AXES_CLIENT_IP_CALLABLE = "storefront.client_address.client_address"
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")

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

# Redis is also the cache (DB 2), as in the course; a Redis broker keeps DB 1. This
# Redis also keeps Celery's results and Beat's lock, whatever the broker is: switching
# the broker to RabbitMQ changes CELERY_BROKER_URL and nothing else.
REDIS_CACHE_URL = env_redis_url("REDIS_CACHE_URL")
# Any of the Redis URLs may name Sentinels instead (sentinel://host:26379/DB;sentinel://…):
# they name the primary of this Redis set, and its replica once promoted
# (storefront/sentinel.py; docs/operations.md, *Scaling out*).
REDIS_SENTINEL_MASTER = env("REDIS_SENTINEL_MASTER", "storefront")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        # In a list: Django would take each of a string's `;`-separated Sentinels for a
        # server of its own.
        "LOCATION": [REDIS_CACHE_URL],
        # A hung Redis fails a cache call in half a second instead of hanging the page.
        "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        | (
            {"pool_class": "storefront.sentinel.SentinelPool", "master_name": REDIS_SENTINEL_MASTER}
            if is_sentinel(REDIS_CACHE_URL)
            else {}
        ),
    },
    # What each process may remember for a second without asking anyone: the hello
    # page's lookup of the notification on its way is most of its cost
    # (docs/measured.md: the page).
    "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "TIMEOUT": 1},
}

# The course's email settings; development points at the local SMTP server of `make run`.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env("EMAIL_HOST")
EMAIL_PORT = int(env("EMAIL_PORT", 2525))
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "from@storefront.local")
# An SMTP server that stops answering fails the batch (which retries) after this many
# seconds, instead of holding its worker process forever.
EMAIL_TIMEOUT = float(env("EMAIL_TIMEOUT", 10))

# One line per event on stderr for every process (web, worker, beat, flower), in one
# format: LOG_FORMAT=plain (development's default) or json. Errors also go to Sentry
# when SENTRY_DSN is set (storefront/logs.py; set up in storefront/apps.py).
LOG_FORMAT = env("LOG_FORMAT", "plain")
LOGGING = logging_config(LOG_FORMAT, env("LOG_LEVEL", "INFO"))
SENTRY_DSN = env("SENTRY_DSN", "")
# An OpenTelemetry collector (OTLP over HTTP, e.g. http://collector:4318): each
# notification is then one trace, from the page to its last task (storefront/tracing.py).
OTEL_EXPORTER_OTLP_ENDPOINT = env("OTEL_EXPORTER_OTLP_ENDPOINT", "")

# --- Celery -------------------------------------------------------------------
# Read by storefront/celery.py through the CELERY_ namespace.

# The course's broker (development: Redis DB 1 on this machine), or RabbitMQ (amqp://).
CELERY_BROKER_URL = env("CELERY_BROKER_URL")
BROKER_IS_RABBITMQ = urlsplit(CELERY_BROKER_URL).scheme in ("amqp", "amqps", "pyamqp")
# On Redis, the package's transport (guarantees/): no message is ever only in a worker's
# memory, and bytes that are no message are set aside instead of stopping a worker.
# REDIS_TRANSPORT=kombu runs stock kombu's instead; RabbitMQ always runs kombu's.
CELERY_BROKER_TRANSPORT = broker_transport("REDIS_TRANSPORT", CELERY_BROKER_URL)
# Results (and the STARTED state) in the cache's Redis, so Flower and AsyncResult can
# report them, and the chord that finishes a notification can count its batches (which
# RabbitMQ, keeping no results, cannot).
CELERY_RESULT_BACKEND = env_redis_url("CELERY_RESULT_BACKEND", REDIS_CACHE_URL)
# A result (or STARTED state) that cannot be stored because Redis is away for a moment (a
# Sentinel failover, a restart) is retried with backoff instead of failing the task
# that has done its work: a failed batch would fail the notification's chord, which then
# finished it early (python -m bench failover: a batch of 100 customers never emailed in
# 2 of 37 failovers without it, none in 10 with it; docs/operations.md, *Scaling out*). 20 tries,
# with jittered backoff capped at 10 s, wait out about a minute.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 20
# JSON only: a pickled message could run code on the worker.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# crontab entries are read in the site's time zone, not the worker's.
CELERY_TIMEZONE = TIME_ZONE
# Flower draws its task list and worker graphs from these events. The worker publishes
# them in batches, each at most this many seconds late (celery_guarantees/task_events.py).
CELERY_WORKER_SEND_TASK_EVENTS = True
TASK_EVENTS_FLUSH_SECONDS = float(env("TASK_EVENTS_FLUSH_SECONDS", 0.1))
# A task that has been picked up shows as STARTED, not PENDING.
CELERY_TASK_TRACK_STARTED = True
# A stuck task is told to stop (soft) and then killed (hard), so it cannot hold a
# worker process forever; both are well above notify_customers' run time.
CELERY_TASK_SOFT_TIME_LIMIT = float(env("CELERY_TASK_SOFT_TIME_LIMIT", 60))
CELERY_TASK_TIME_LIMIT = float(env("CELERY_TASK_TIME_LIMIT", 90))
# Workers started before Redis keep trying instead of exiting.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Exactly one Beat per deployment, locked in the cache's Redis: a second one refuses to
# start (storefront/beat.py).
CELERY_BEAT_SCHEDULER = "storefront.beat:SingleBeatScheduler"

# Nothing lost when a worker dies: a message is acknowledged only once its task has
# finished, and given back when the pool process running it is killed (OOM, crash).
# Every task is written to be safe to run again.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# But not forever: a message whose task kills its pool process on every delivery would
# come back forever. Its next delivery past this many is given up: recorded for the
# admin to replay, failed, gone from Redis (playground/poison.py). 0: no limit, as
# Celery alone has it.
TASK_MAX_DELIVERIES = int(env("CELERY_TASK_MAX_DELIVERIES", 5))
# The deliveries are counted where the worker hands a message to a pool process, for
# every task: the request class is the one place, and annotations set it from here.
CELERY_TASK_ANNOTATIONS = (
    {"*": {"Request": "playground.poison:DeliveryCountingRequest"}} if TASK_MAX_DELIVERIES else {}
)
# The jobs wait on SMTP more than they compute, so two pool processes per core keep
# the cores busy (docs/measured.md: the job with 1, 2 and 4 processes).
# `celery worker --concurrency=N` still overrides it.
CELERY_WORKER_CONCURRENCY = int(env("CELERY_WORKER_CONCURRENCY", 2 * (os.cpu_count() or 1)))
# Each pool process reserves one message at a time: none waits behind a long task.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A lost broker connection leaves the running tasks running. Celery would cancel them
# (its coming default), but a cancelled batch is recorded as revoked: its chord then
# finishes the notification early, and on Redis its message was lost with the
# connection (6 of 20 customers never emailed). Running on is safe: should the broker
# hand the message to another worker meanwhile, the second run skips every customer
# the first has a delivery row for (test_a_broker_killed_while_a_batch_runs_...).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# SIGTERM waits for running tasks (warm shutdown). SIGQUIT or a second Ctrl-C still
# gives them this long before the cold shutdown; what is cut off goes back to Redis.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = float(env("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", 10))
# A worker runs for weeks: each pool process is replaced after this many tasks, or once
# it holds more than this many KiB after a task, so a slow leak (in a library, or ours)
# costs a fork now and then instead of the machine's memory.
CELERY_WORKER_MAX_TASKS_PER_CHILD = int(env("CELERY_WORKER_MAX_TASKS_PER_CHILD", 1000))
CELERY_WORKER_MAX_MEMORY_PER_CHILD = int(env("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 300_000))
# Results (the chord's bookkeeping included) expire from Redis after a day: nothing a
# notification leaves there outlives it (docs/operations.md, *Long-running*).
CELERY_RESULT_EXPIRES = int(env("CELERY_RESULT_EXPIRES", 24 * 3600))

# RabbitMQ: a worker that stops answering heartbeats for about this long (seconds) is
# taken for gone: its connection is closed and its unacknowledged messages go to other
# workers. Celery's default; a network cut is noticed no sooner.
CELERY_BROKER_HEARTBEAT = float(env("CELERY_BROKER_HEARTBEAT", 120))

# Redis hands a message that was taken but not acknowledged to another worker after
# this long. It must exceed the hard time limit and any countdown, or with stock kombu
# (REDIS_TRANSPORT=kombu) a task still running (or waiting for its countdown) would
# start a second time. With the package it is the last resort: a live worker's
# messages are never handed on, and a dead worker's go back once it has been silent
# for 5 s (celery_guarantees/liveness.py, the transport option `liveness_window`).
VISIBILITY_TIMEOUT = float(env("CELERY_VISIBILITY_TIMEOUT", 300))
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
    # One Redis list per queue, no priority lists beside it (no task here has a
    # priority): a worker of one queue then waits with the atomic move itself, one round
    # trip where a worker of several lists waits on a bell and takes by script
    # (celery_guarantees/redis_transport.py).
    "priority_steps": [0],
    # A hung Redis fails a publish after half a second instead of blocking the page
    # forever, and a Redis that is down fails it at once instead of after seconds of
    # reconnecting: the sender keeps the message in the outbox (playground/outbox.py).
    "socket_timeout": 0.5,
    "socket_connect_timeout": 0.5,
    "max_retries": 0,
}
# Every key of the broker's in Redis begins with this (kombu's global_keyprefix), for
# a Redis database shared with other projects; the package's guarantees hold with it.
if BROKER_KEY_PREFIX := env("CELERY_BROKER_KEY_PREFIX", ""):
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = BROKER_KEY_PREFIX
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS: dict[str, object] = {
    "visibility_timeout": VISIBILITY_TIMEOUT
}
if any(is_sentinel(url) for url in (CELERY_BROKER_URL, CELERY_RESULT_BACKEND)):
    # kombu and Celery ask the Sentinels for the primary of this name.
    CELERY_BROKER_TRANSPORT_OPTIONS["master_name"] = REDIS_SENTINEL_MASTER
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS["master_name"] = REDIS_SENTINEL_MASTER
# Two queues. The emails' batches go to `mail`, everything else to the course's
# `celery`: a mailing keeps its workers busy for minutes, and the relay, the reaper and
# the notification's own start and finish wait behind none of it. A worker started as
# the course starts it (`celery -A storefront worker`) consumes both; the Procfile and
# compose run a worker for each (-Q).
CELERY_TASK_DEFAULT_QUEUE = "celery"
MAIL_QUEUE = "mail"
TASK_QUEUES = [CELERY_TASK_DEFAULT_QUEUE, MAIL_QUEUE]
# Queue objects, as Celery documents them: Flower reads their names when no worker is
# online (a mapping of names broke its queue lengths, /api/queues/length, with a 500).
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in TASK_QUEUES]
CELERY_TASK_ROUTES = {"playground.tasks.send_batch": {"queue": MAIL_QUEUE}}
if BROKER_IS_RABBITMQ:
    # Quorum queues with a delivery limit and a dead-letter queue (storefront/rabbitmq.py).
    # Countdowns (retries' backoff, the one-active rule's retry) wait in RabbitMQ's
    # delay queues (native delayed delivery): with quorum queues a worker cannot raise
    # its prefetch for them, so a countdown it held would hold up the work behind it.
    CELERY_TASK_QUEUES = task_queues(TASK_QUEUES, TASK_MAX_DELIVERIES)
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Every publish waits for RabbitMQ to confirm it has the message (on a quorum of
        # nodes): one it did not take raises, and the outbox keeps it.
        "confirm_publish": True,
    }
    # A hung RabbitMQ fails a publish's connection after half a second instead of four:
    # the page keeps the message in the outbox and answers (as with Redis's timeouts).
    CELERY_BROKER_CONNECTION_TIMEOUT = 0.5

# Mailings start only on purpose: the hello page shows the notification on its way, and
# a signed-in staff user's POST starts one (development adds the course's GET).
HELLO_GET_STARTS_NOTIFICATION = False

# notify_customers hands the emails to the workers in batches of this many, each
# sent over one SMTP connection.
NOTIFY_BATCH_SIZE = int(env("NOTIFY_BATCH_SIZE", 500))
# The mail provider's cap: at most this many emails per second from every worker
# process on every host together (playground/sending_rate.py; unset: no cap).
NOTIFY_RATE_LIMIT = env_count("NOTIFY_RATE_LIMIT")
# A batch whose SMTP server fails retries up to this many times, waiting about
# 1, 2, 4 ... seconds (random jitter, at most NOTIFY_RETRY_BACKOFF_MAX); then the
# customers it could not reach are recorded as failed.
NOTIFY_MAX_RETRIES = int(env("NOTIFY_MAX_RETRIES", 5))
NOTIFY_RETRY_BACKOFF_MAX = 60
# A notify_customers that finds another notification active tries again this much later.
NOTIFY_CUSTOMERS_RETRY_SECONDS = float(env("NOTIFY_CUSTOMERS_RETRY_SECONDS", 5))

OUTBOX_RELAY_EVERY = float(env("OUTBOX_RELAY_EVERY", 10))
# An active notification with no sign of life for this long, and no task of it queued
# or running anywhere, lost its work (a broker that lost its data): Beat's
# reap_stale_notifications finishes it, with the reason, every NOTIFY_REAP_EVERY.
NOTIFY_STALE_AFTER = float(env("NOTIFY_STALE_AFTER", 600))
NOTIFY_REAP_EVERY = float(env("NOTIFY_REAP_EVERY", 60))
# Finished notifications (and their deliveries) are kept this many days, then deleted
# by Beat's purge_old_notifications, every night at 3:00.
NOTIFY_RETENTION_DAYS = float(env("NOTIFY_RETENTION_DAYS", 30))
# Each entry expires when its next run is due: a run that could not start in time is
# dropped instead of piling up behind the others.
# No mailing here: every environment keeps the system healthy, and only development
# (dev.py) adds the course's demos, which email every customer every 5 seconds.
CELERY_BEAT_SCHEDULE = {
    # Hands the broker what the web kept while Redis was away.
    "relay_outbox": {
        "task": "playground.tasks.relay_outbox",
        "schedule": OUTBOX_RELAY_EVERY,
        "options": {"expires": OUTBOX_RELAY_EVERY},
    },
    # Deletes what notifications older than NOTIFY_RETENTION_DAYS left in the database.
    "purge_old_notifications": {
        "task": "playground.tasks.purge_old_notifications",
        "schedule": crontab(hour=3, minute=0),
        "options": {"expires": 24 * 3600},
    },
    # Finishes a notification whose work was lost, so that the next one can start.
    "reap_stale_notifications": {
        "task": "playground.tasks.reap_stale_notifications",
        "schedule": NOTIFY_REAP_EVERY,
        "options": {"expires": NOTIFY_REAP_EVERY},
    },
}
# A periodic mailing is the operator's decision: a crontab line ("30 7 * * 1" is
# Mondays at 7:30) and the message to send then.
NOTIFY_CUSTOMERS_CRONTAB = env("NOTIFY_CUSTOMERS_CRONTAB", "")
if NOTIFY_CUSTOMERS_CRONTAB:
    CELERY_BEAT_SCHEDULE["scheduled_notification"] = {
        "task": "playground.tasks.notify_customers",
        "schedule": crontab.from_string(NOTIFY_CUSTOMERS_CRONTAB),
        "args": [env("NOTIFY_CUSTOMERS_MESSAGE")],
        # One that cannot start within the hour (another still sending) is dropped.
        "options": {"expires": 3600},
    }

# user:password for Flower's login; dev.py gives a default, production must set it.
FLOWER_BASIC_AUTH = env("FLOWER_BASIC_AUTH", "")
# Flower listens on this machine only unless told otherwise (docker-compose sets 0.0.0.0).
FLOWER_ADDRESS = env("FLOWER_ADDRESS", "127.0.0.1")
# Flower's API and buttons can send any task (a mailing to every customer) and shut
# workers down: off unless the operator turns them on (storefront/flower.py).
FLOWER_ALLOW_CONTROL = env_bool("FLOWER_ALLOW_CONTROL", False)
