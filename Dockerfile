# One image for web, worker, beat and flower; docker-compose.yml picks the command.
# Production dependencies only: the debug toolbar and test tools are not in it.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

RUN pip install pipenv==2026.10.3
COPY Pipfile Pipfile.lock ./
# The lock installs the package in guarantees/ from its folder.
COPY guarantees guarantees
RUN pipenv install --system --deploy

COPY . .

# Static files are collected at build time for WhiteNoise; the settings need values
# to load, and these placeholders stay in this one step, not in the image (a key
# made for it: production refuses a weak one).
RUN DJANGO_SETTINGS_MODULE=storefront.settings.prod \
    SECRET_KEY=$(python -c "import secrets; print(secrets.token_urlsafe(50))") \
    ALLOWED_HOSTS=build DATABASE_URL=sqlite:// CELERY_BROKER_URL=redis:// \
    REDIS_CACHE_URL=redis:// EMAIL_HOST=build \
    python manage.py collectstatic --noinput

# Not root: Celery warns against it, and nothing here needs it.
RUN useradd --create-home storefront && chown storefront /app
USER storefront

EXPOSE 8000 5555
