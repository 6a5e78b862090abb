"""Production settings plus the benchmark's baseline page (bench/urls.py)."""

from storefront.settings.prod import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
