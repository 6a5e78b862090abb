"""Development: the default everywhere (manage.py, celery.py, pytest.ini)."""

from .common import *  # noqa: F403
from .common import INSTALLED_APPS, MIDDLEWARE, env_bool, env_list

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get(  # noqa: F405
    "SECRET_KEY", "django-insecure-development-only-never-use-in-production"
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [*INSTALLED_APPS, "debug_toolbar"]
MIDDLEWARE = ["debug_toolbar.middleware.DebugToolbarMiddleware", *MIDDLEWARE]
INTERNAL_IPS = ["127.0.0.1"]

FLOWER_BASIC_AUTH = os.environ.get("FLOWER_BASIC_AUTH", "admin:admin")  # noqa: F405
