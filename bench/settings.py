"""Production settings plus the benchmark's baseline page (bench/urls.py), with the
course's hello page: a plain GET starts the notification (as in development), so the
load measures the page that starts one under a rush, not only the page that shows it."""

from storefront.settings.prod import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
HELLO_GET_STARTS_NOTIFICATION = True
