"""Flower's settings: `celery -A storefront flower` reads this file from the working
directory. They come from Django's settings, so each environment decides in one place."""

from django.conf import settings

if not settings.FLOWER_BASIC_AUTH:
    raise SystemExit(
        "flower: FLOWER_BASIC_AUTH (user:password) is not set; Flower never runs open."
    )

basic_auth = [settings.FLOWER_BASIC_AUTH]
address = settings.FLOWER_ADDRESS
port = 5555
