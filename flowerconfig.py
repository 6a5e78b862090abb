"""Flower's settings: `celery -A storefront flower` reads this file from the working
directory. They come from Django's settings, so each environment decides in one place."""

import django
from django.conf import settings
from flower.urls import handlers
from flower.urls import settings as tornado_settings

# Django's password validators speak through its translations, which need the apps.
django.setup()

from storefront import flower  # noqa: E402

if not settings.FLOWER_BASIC_AUTH:
    raise SystemExit(
        "flower: FLOWER_BASIC_AUTH (user:password) is not set; Flower never runs open."
    )

if not settings.DEBUG and (weakness := flower.weakness(settings.FLOWER_BASIC_AUTH)):
    raise SystemExit(
        f"flower: FLOWER_BASIC_AUTH is too weak ({weakness}); production needs user:password"
        " with a password of 12 or more characters that is not a common one."
    )

# Flower silences tornado's access log and logs no failed login; tornado calls this at
# the end of every request (docs/upstream/flower-failed-logins-are-not-logged.md).
tornado_settings["log_function"] = flower.log_failed_logins
# Guessers slowed down; the API only reads unless FLOWER_ALLOW_CONTROL is on (Flower can
# send any task, mailings included, and shut workers down).
flower.guard(handlers, allow_control=settings.FLOWER_ALLOW_CONTROL)

basic_auth = [settings.FLOWER_BASIC_AUTH]
address = settings.FLOWER_ADDRESS
port = 5555
