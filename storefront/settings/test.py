"""The tests' own process (pytest.ini): development's settings with nothing shared. Its
Celery app and cache live in memory until a test asks for the throwaway Redis
(conftest.py points them there), so no test reaches the machine's shared Redis by
mistake. The project's processes that the tests start run on dev.py, pointed at the
tests' own servers (harness/processes.py)."""

from .dev import *  # noqa: F403
from .dev import CACHES

CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = "cache+memory://"
CACHES = {**CACHES, "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
