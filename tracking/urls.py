"""The web process's URLs: the moderation panel and the health check."""

from django.contrib import admin
from django.urls import path

from tracking.health import healthz

urlpatterns = [path("healthz", healthz, name="healthz"), path("admin/", admin.site.urls)]
