"""Development: the default everywhere (manage.py, celery.py, pytest.ini). Every
address points at this machine, as in the course; the environment still wins."""

from pathlib import Path

from .environment import BROKER_DB, CACHE_DB, DEFAULTS

PROJECT_DIR = Path(__file__).resolve().parents[2]

DEFAULTS.update(
    SECRET_KEY="django-insecure-development-only-never-use-in-production",
    DEBUG="true",
    ALLOWED_HOSTS="localhost,127.0.0.1,[::1]",
    DATABASE_URL=f"sqlite:///{PROJECT_DIR / 'db.sqlite3'}",
    CELERY_BROKER_URL=f"redis://localhost:6379/{BROKER_DB}",
    REDIS_CACHE_URL=f"redis://localhost:6379/{CACHE_DB}",
    # `make run`'s mail catcher, on the course's port (EMAIL_PORT's default, 2525).
    EMAIL_HOST="localhost",
    FLOWER_BASIC_AUTH="admin:admin",
)

from celery.schedules import crontab  # noqa: E402

from .common import *  # noqa: E402, F403
from .common import (  # noqa: E402
    CELERY_BEAT_SCHEDULE,
    CONTENT_SECURITY_POLICY,
    INSTALLED_APPS,
    MIDDLEWARE,
)
from .environment import env  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "debug_toolbar"]
MIDDLEWARE = ["debug_toolbar.middleware.DebugToolbarMiddleware", *MIDDLEWARE]
INTERNAL_IPS = ["127.0.0.1"]
# The debug toolbar injects inline scripts and styles: in development the browser
# reports what the policy would block instead of blocking it.
CONTENT_SECURITY_POLICY_REPORT_ONLY = CONTENT_SECURITY_POLICY
CONTENT_SECURITY_POLICY = None

# The course's demo: GET /playground/hello/ starts notify_customers('Hello'). In
# production only a signed-in staff user's POST does.
HELLO_GET_STARTS_NOTIFICATION = True

# The course's Beat demos, development only: they email every customer.
NOTIFY_CUSTOMERS_EVERY = float(env("NOTIFY_CUSTOMERS_EVERY", 5))
QUARTER_HOUR, WEEK = 15 * 60, 7 * 24 * 3600
CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,
    # Every 5 seconds (tests shorten it with NOTIFY_CUSTOMERS_EVERY).
    "notify_customers": {
        "task": "playground.tasks.notify_customers",
        "schedule": NOTIFY_CUSTOMERS_EVERY,
        "args": ["Hello World"],
        "options": {"expires": NOTIFY_CUSTOMERS_EVERY},
    },
    # The crontab form: every Monday at 7:30 ...
    "notify_customers_monday_morning": {
        "task": "playground.tasks.notify_customers",
        "schedule": crontab(day_of_week=1, hour=7, minute=30),
        "args": ["Have a good week!"],
        "options": {"expires": WEEK},
    },
    # ... and every 15 minutes.
    "notify_customers_quarter_hourly": {
        "task": "playground.tasks.notify_customers",
        "schedule": crontab(minute="*/15"),
        "args": ["Fresh deals are in."],
        "options": {"expires": QUARTER_HOUR},
    },
}
