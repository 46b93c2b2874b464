"""Settings of the example: no database, no templates, one view.

Run: ``DJANGO_SETTINGS_MODULE=examples.django_webhook.settings django-admin runserver``.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "examples.django_webhook.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# streamflow: the queue the view adds to; Redis from STREAMFLOW_REDIS_URL / REDIS_URL
STREAMFLOW_QUEUE = os.environ.get("WEBHOOK_QUEUE", "webhooks")
STREAMFLOW_REDIS_URL: str | None = None
