# Load the Celery app whenever Django starts, so @shared_task binds to it.
from .celery import celery

__all__ = ("celery",)
