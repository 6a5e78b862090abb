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

from .common import *  # noqa: E402, F403
from .common import INSTALLED_APPS, MIDDLEWARE  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "debug_toolbar"]
MIDDLEWARE = ["debug_toolbar.middleware.DebugToolbarMiddleware", *MIDDLEWARE]
INTERNAL_IPS = ["127.0.0.1"]
