import os

from celery import Celery, signals
from celery_guarantees import django_settings, task_events
from django.conf import settings

from storefront import logs, rabbitmq

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings.dev")

# Its connections keep the transport CELERY_BROKER_TRANSPORT names (on Redis, the
# package's: no message only in a worker's memory, no bytes that stop a worker) through
# a failover to another broker URL (celery_guarantees/connection.py).
celery = Celery("storefront", amqp="celery_guarantees.connection:AMQP")
# Every Celery setting lives in Django's settings, spelled CELERY_<NAME>.
celery.config_from_object("django.conf:settings", namespace="CELERY")
# ...read from a plain copy of them, taken when Celery loads its configuration.
django_settings.read_a_copy_of_django_settings(celery, namespace="CELERY")
celery.autodiscover_tasks()
# Every line of the worker and Beat in LOG_FORMAT, through Django's LOGGING.
logs.log_celery_through_django(celery)
# The worker's task events reach Flower in batches, not one round trip each.
task_events.publish_in_batches(celery, every=lambda: settings.TASK_EVENTS_FLUSH_SECONDS)
# With RabbitMQ, each worker declares the queue that its dead letters go to.
signals.worker_ready.connect(rabbitmq.declare_dead_letter_queue)
