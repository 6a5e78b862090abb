"""Production: no defaults, so every secret and address comes from the environment
and a missing one stops the process at start with one sentence naming the variable
(common.py reads them). `python manage.py check --deploy` is clean with these settings."""

import sys

from .common import *  # noqa: F403
from .common import ALLOWED_HOSTS, MIDDLEWARE, SECRET_KEY
from .environment import env_bool

DEBUG = False

# Django's own measure of a key worth signing sessions with (check --deploy's W009),
# made a refusal: a development key or a short one would let anyone forge sessions.
if SECRET_KEY.startswith("django-insecure-") or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    sys.exit(
        "storefront: the environment variable SECRET_KEY is too weak; production needs 50 or"
        " more random characters (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

# Any Host at all would let a forged Host header name the site in the links it writes
# (a password reset's, say): production names its own.
if "*" in ALLOWED_HOSTS:
    sys.exit(
        "storefront: the environment variable ALLOWED_HOSTS is *, which lets any Host"
        " through; production needs the site's own host names (e.g. shop.example.com)."
    )

# gunicorn serves the static files through WhiteNoise: compressed, with hashed names
# that browsers may cache forever.
MIDDLEWARE = [*MIDDLEWARE]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "whitenoise.middleware.WhiteNoiseMiddleware",
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# HTTPS ends at the proxy in front of gunicorn, which says so in X-Forwarded-Proto
# (only trust it behind a proxy that sets it). Plain HTTP is redirected; set
# SECURE_SSL_REDIRECT=false only to try the stack locally without a proxy.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Cookies never travel over plain HTTP.
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# Browsers remember for a year to use HTTPS only, on subdomains too, and the site
# may be put on the browsers' preload list.
SECURE_HSTS_SECONDS = 365 * 24 * 3600
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
