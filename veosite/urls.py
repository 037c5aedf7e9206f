from django.contrib import admin
from django.urls import path

from tracking.health import healthz

admin.site.site_header = "veobot moderation"
admin.site.site_title = "veobot"
admin.site.index_title = "Requests, quotas and bans"
admin.site.index_template = "admin/veobot/index.html"  # adds the dashboard link

urlpatterns = [path("healthz", healthz, name="healthz"), path("admin/", admin.site.urls)]
