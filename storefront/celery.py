import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings.dev")

celery = Celery("storefront")
# Every Celery setting lives in Django's settings, spelled CELERY_<NAME>.
celery.config_from_object("django.conf:settings", namespace="CELERY")
celery.autodiscover_tasks()
