# One image for web, worker, beat and flower; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

RUN pip install pipenv==2026.10.3
COPY Pipfile Pipfile.lock ./
RUN pipenv install --system --deploy --dev

COPY . .

# Celery refuses to be comfortable as root, and so should everything else.
RUN useradd --create-home storefront && chown storefront /app
USER storefront

EXPOSE 8000 5555
