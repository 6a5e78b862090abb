import os

from celery import Celery

from storefront import logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings.dev")

celery = Celery("storefront")
# Every Celery setting lives in Django's settings, spelled CELERY_<NAME>.
celery.config_from_object("django.conf:settings", namespace="CELERY")
celery.autodiscover_tasks()
# Every line of the worker and Beat in LOG_FORMAT, through Django's LOGGING.
logs.log_celery_through_django(celery)
