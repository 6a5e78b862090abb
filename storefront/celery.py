import os

from celery import Celery, signals

from storefront import celery_settings, logs, rabbitmq, task_events, transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings.dev")

# A Redis broker's bytes that are no message never stop a worker, and no message is ever
# only in a worker's memory (storefront/transport.py).
transport.serve_redis_urls()

celery = Celery("storefront")
# Every Celery setting lives in Django's settings, spelled CELERY_<NAME>.
celery.config_from_object("django.conf:settings", namespace="CELERY")
# ...read from a plain copy of them, taken when Celery loads its configuration.
celery_settings.read_a_copy_of_django_settings(celery, namespace="CELERY")
celery.autodiscover_tasks()
# Every line of the worker and Beat in LOG_FORMAT, through Django's LOGGING.
logs.log_celery_through_django(celery)
# The worker's task events reach Flower in batches, not one round trip each.
task_events.publish_in_batches(celery)
# With RabbitMQ, each worker declares the queue that its dead letters go to.
signals.worker_ready.connect(rabbitmq.declare_dead_letter_queue)
