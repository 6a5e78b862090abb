"""Production: every secret and address comes from the environment, and a missing
one stops the process at start with one sentence naming the variable."""

import os
import sys

from .common import *  # noqa: F403
from .common import env_bool


def require_env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"storefront: the environment variable {name} is not set; production needs it.")
    return value


# common.py read these with development defaults; production must name them.
for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_CACHE_URL"):
    require_env(name)

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = require_env("SECRET_KEY")
ALLOWED_HOSTS = require_env("ALLOWED_HOSTS").split(",")
