"""The web process's URLs: the moderation panel, the health check and the metrics."""

from django.contrib import admin
from django.urls import path

from tracking.health import healthz
from tracking.metrics import metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
]
