"""Routes of the example."""

from django.urls import path

from . import views

urlpatterns = [path("webhooks", views.webhook)]
