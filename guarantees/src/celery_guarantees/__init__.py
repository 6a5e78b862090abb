"""What Celery on Redis leaves to chance, made sure (README.md)."""

__version__ = "0.1.0"
