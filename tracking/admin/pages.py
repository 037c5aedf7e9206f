"""The request admin's extra pages: a video's bytes, the CSV export, the dashboard, a user's page."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from tracking import analytics_spend, dashboards, gcs, media, selectors, selectors_spend
from tracking.admin import charts, spend_tables, views
from tracking.admin.query import digits
from tracking.durations import humanize_duration
from tracking.models import ReviewStatus, VideoRequest

INPUT_KINDS = ("image", "last_frame")


class RequestPages:
    """Mixed into the requests' ModelAdmin (tracking.admin.requests)."""

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:object_id>/output/<int:index>/", wrap(self.output_view), name="tracking_videorequest_output"),
            path("<int:object_id>/input/<str:kind>/", wrap(self.input_view), name="tracking_videorequest_input"),
            path("export/", wrap(self.export_view), name="tracking_videorequest_export"),
            path("dashboard/", wrap(self.dashboard_view), name="tracking_videorequest_dashboard"),
            path("user/<int:user_id>/", wrap(self.user_view), name="tracking_videorequest_user"),
        ] + super().get_urls()

    def _require_view(self, request) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    def output_view(self, request, object_id: int, index: int):
        self._require_view(request)
        obj = VideoRequest.objects.filter(id=object_id).only("id", "output_uris", "review_status").first()
        if obj is None or obj.review_status == ReviewStatus.REMOVED or index >= len(obj.output_uris):
            raise views.not_found()
        uri = obj.output_uris[index]
        path_ = media.local_output_path(uri)
        if path_ is not None:
            return views.stream_file(request, path_, download_name=f"veobot-request-{obj.id}-{index}.mp4")
        if uri.startswith(gcs.GCS_SCHEME):
            return views.signed_redirect(uri)
        raise views.not_found()

    def input_view(self, request, object_id: int, kind: str):
        """A frame the request gave Veo (``kind``: image or last_frame), to staff who may view it."""
        self._require_view(request)
        if kind not in INPUT_KINDS:
            raise views.not_found()
        obj = VideoRequest.objects.filter(id=object_id).only("id", kind + "_uri", "review_status").first()
        uri = getattr(obj, kind + "_uri", None) if obj is not None else None
        path_ = media.local_output_path(uri) if uri and obj.review_status != ReviewStatus.REMOVED else None
        if path_ is None:
            raise views.not_found()
        return views.stream_file(
            request,
            path_,
            content_type=media.input_type(uri),
            download_name=f"veobot-request-{obj.id}-{kind}{path_.suffix}",
        )

    def export_view(self, request):
        self._require_view(request)
        return views.export_list(self, request, name="veobot-requests")

    def dashboard_view(self, request):
        self._require_view(request)
        days = request.GET.get("days", "1")
        days = int(days) if days in ("1", "7") else 1
        if request.method == "POST":
            # Both periods, computed now and stored for everyone (one left stale would disagree
            # with the other); redirected so that a reload does not post again.
            dashboards.compute_periods(dashboards.PERIODS)
            return HttpResponseRedirect(f"?days={days}")
        snapshot = dashboards.current(days=days)
        data = snapshot.dashboard
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Dashboard",
            "d": data,
            "days": days,
            "snapshot": snapshot,
            "refresh": humanize_duration(settings.DASHBOARD_REFRESH),
            "totals": data.activity.totals,
            "total": sum(data.activity.totals.values()),
            "day_chart": charts.stacked(data.activity.buckets, hourly=days == 1),
            "hour_chart": charts.hours(data.activity.per_hour_of_day),
            "colours": charts.STATUS_COLOURS.items(),
            "changelist_url": reverse("admin:tracking_videorequest_changelist"),
        }
        # Money is shown to those who may read the policies that set the budgets (Moderators
        # may; an account given only the requests sees the dashboard without it).
        if request.user.has_perm("tracking.view_quotapolicy"):
            context |= {
                "money": data.spend,
                "operator": analytics_spend.operator_spend(cap_usd=settings.VEO_BUDGET_USD_PER_DAY),
                "spend_by_guild": spend_tables.per_day(data.spend.by_guild),
                "spend_by_model": spend_tables.per_day(data.spend.by_model),
            }
        return TemplateResponse(request, "admin/tracking/dashboard.html", context)

    def user_view(self, request, user_id: int):
        self._require_view(request)
        before_id = digits(request.GET.get("before"))
        if before_id is not None and before_id >= 2**63:
            before_id = None
        if not 0 < user_id < 2**63:
            raise views.not_found()
        overview = selectors.user_overview(user_id=user_id, before_id=before_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"User {user_id}",
            "o": overview,
            "now": timezone.now(),
            "resets_in": overview.quota.resets_in(now=timezone.now()),
            "spend": selectors_spend.user_spend(user_id=user_id),
            "can_ban": request.user.has_perm("tracking.add_userban"),
            "changelist_url": reverse("admin:tracking_videorequest_changelist"),
        }
        return TemplateResponse(request, "admin/tracking/user.html", context)
