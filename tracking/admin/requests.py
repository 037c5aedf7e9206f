"""The requests list, the request page and the moderation actions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db import OperationalError, connection, transaction
from django.db.models import Max, Min, Q
from psycopg.errors import QueryCanceled
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from tracking import dashboards, gcs, media, selectors, services
from tracking.admin import charts, views
from tracking.admin.changelist import COUNT_CAP, ModerationChangeList, hierarchy_choices
from tracking.admin.filters import (CreatedFromFilter, CreatedToFilter, DeliveredFilter, GuildFilter,
                                    SafetyFilteredFilter)
from tracking.admin.forms import BanForm, ReasonForm, ReviewForm, action_form_context
from tracking.admin.query import RefusesNulParameters, digits, refuse_nul
from tracking.errors import TrackingError
from tracking.models import ReviewStatus, VideoRequest

# Bulk actions apply to at most this many requests ("select all" included).
ACTION_LIMIT = 500
SEARCH_MAX_LENGTH = 200
SEARCH_TIMEOUT_MS = 5000

FACT_FIELDS = ("id", "created_at", "status", "source", "user_id", "guild_id", "channel_id", "interaction_id",
               "prompt", "negative_prompt", "duration_seconds", "aspect_ratio", "resolution", "generate_audio",
               "person_generation", "seed", "model", "operation_name", "started_at", "completed_at", "duration_ms",
               "output_uris", "public_urls", "output_size_bytes", "safety_filtered_count", "safety_filtered_reasons",
               "error_code", "error_message", "delivered_at", "delivery_method", "discord_message_id",
               "delivery_error", "counts_toward_quota", "attempts", "claimed_by", "lease_expires_at",
               "reviewed_by", "reviewed_at")


def actor_of(request) -> str:
    return request.user.get_username()


class VideoRequestAdmin(RefusesNulParameters, admin.ModelAdmin):
    list_display = ("created_at", "status_badge", "user_link", "guild_id", "prompt_excerpt", "parameters",
                    "generation_time", "review_badge", "safety_marker")
    list_display_links = ("created_at",)
    list_filter = ("status", "review_status", "duration_seconds", "aspect_ratio", "resolution", GuildFilter,
                   CreatedFromFilter, CreatedToFilter, SafetyFilteredFilter, DeliveredFilter)
    search_fields = ("prompt",)  # shows the search box; get_search_results does the work
    search_help_text = ('Words of the prompt (full text: "exact phrase", or, -word), or digits: a request id, '
                        "user id or interaction id.")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    form = ReviewForm
    actions = ["approve_requests", "flag_requests", "remove_outputs", "refund_requests", "ban_users",
               "cancel_requests"]
    fieldsets = [
        ("Moderation", {"fields": ("review_status", "review_note", "reviewed_by", "reviewed_at")}),
        ("Prompt and parameters", {"fields": ("prompt", "negative_prompt", "duration_seconds", "aspect_ratio",
                                              "resolution", "generate_audio", "person_generation", "seed",
                                              "model")}),
        ("Discord", {"fields": ("user_id", "guild_id", "channel_id", "interaction_id", "discord_message_id",
                                "source")}),
        ("Lifecycle", {"fields": ("status", "created_at", "started_at", "completed_at", "duration_ms",
                                  "operation_name", "attempts", "claimed_by", "lease_expires_at",
                                  "counts_toward_quota")}),
        ("Results and delivery", {"fields": ("output_uris", "public_urls", "output_size_bytes",
                                             "safety_filtered_count", "safety_filtered_reasons", "error_code",
                                             "error_message", "delivered_at", "delivery_method", "delivery_error")}),
    ]

    # -- permissions: view to read, change to moderate, delete for superusers only ------------

    def has_add_permission(self, request):
        return False  # requests come from Discord, never from the panel

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.review_status == ReviewStatus.REMOVED:
            return FACT_FIELDS + ("review_status",)
        return FACT_FIELDS

    # -- the list -------------------------------------------------------------------------

    def get_changelist(self, request, **kwargs):
        return ModerationChangeList

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()[:SEARCH_MAX_LENGTH]
        if not term:
            return queryset, False
        number = digits(term.removeprefix("#"))
        if number is not None:
            if number >= 2**63:
                return queryset.none(), False
            return queryset.filter(Q(id=number) | Q(user_id=number) | Q(interaction_id=number)), False
        return queryset.filter(selectors.prompt_search(term)), False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: VideoRequest):
        return format_html('<span class="vb-badge vb-status-{}">{}</span>', obj.status, obj.get_status_display())

    @admin.display(description="user")
    def user_link(self, obj: VideoRequest):
        url = reverse("admin:tracking_videorequest_user", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user_id)

    @admin.display(description="prompt")
    def prompt_excerpt(self, obj: VideoRequest) -> str:
        return obj.prompt if len(obj.prompt) <= 80 else obj.prompt[:79] + "…"

    @admin.display(description="parameters")
    def parameters(self, obj: VideoRequest) -> str:
        return f"{obj.duration_seconds}s · {obj.aspect_ratio} · {obj.resolution}" + ("" if obj.generate_audio else
                                                                                     " · muted")

    @admin.display(description="generation", ordering="duration_ms")
    def generation_time(self, obj: VideoRequest) -> str:
        return f"{obj.duration_ms / 1000:.1f} s" if obj.duration_ms is not None else "–"

    @admin.display(description="review", ordering="review_status")
    def review_badge(self, obj: VideoRequest):
        return format_html('<span class="vb-badge vb-review-{}">{}</span>', obj.review_status,
                           obj.get_review_status_display())

    @admin.display(description="safety")
    def safety_marker(self, obj: VideoRequest):
        if not obj.safety_filtered_count:
            return ""
        reasons = "; ".join(obj.safety_filtered_reasons)
        return format_html('<span class="vb-badge vb-safety" title="{}">⚠ filtered ({})</span>', reasons,
                           obj.safety_filtered_count)

    def changelist_view(self, request, extra_context=None):
        if not request.GET.get("q", "").strip():
            return self._changelist(request, extra_context)
        # A search whose words the planner misjudges could run for minutes: give it a few
        # seconds, then say so instead of making the moderator wait.
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = %s", [f"{SEARCH_TIMEOUT_MS}ms"])
                return self._changelist(request, extra_context)
        except OperationalError as error:
            if not isinstance(error.__cause__, QueryCanceled):
                raise
        self.message_user(request, f"The search took longer than {SEARCH_TIMEOUT_MS // 1000} s and was stopped: add "
                                   "a date range or filters, or more specific words.", messages.ERROR)
        query = request.GET.copy()
        query.pop("q")
        return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")

    def _changelist(self, request, extra_context):
        response = super().changelist_view(request, extra_context)
        cl = (getattr(response, "context_data", None) or {}).get("cl")
        if cl is not None:
            # The whole table's bounds: two index probes, whatever the filters.
            bounds = cl.root_queryset.aggregate(first=Min("created_at"), last=Max("created_at"))
            response.context_data.update(hierarchy=hierarchy_choices(cl, bounds["first"], bounds["last"]),
                                         count_cap=COUNT_CAP)
        return response

    # -- the request page ----------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra = {}
        if obj is not None:
            steps = selectors.removal_progress(request_id=obj.id)
            extra = {
                "outputs": self._outputs(obj, steps),
                "removal_steps": steps,
                "timeline": selectors.request_timeline(request_id=obj.id),
                "discord_url": discord_message_url(obj),
                "user_url": reverse("admin:tracking_videorequest_user", args=[obj.user_id]),
                "moderation_actions": [(name, self.get_actions(request)[name][2]) for name in self.actions
                                       if name in self.get_actions(request)],
                "changelist_url": reverse("admin:tracking_videorequest_changelist"),
            }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def _outputs(self, obj: VideoRequest, steps: list[selectors.RemovalStep]) -> list[dict]:
        outputs = []
        for index, uri in enumerate(obj.output_uris):
            entry = {"uri": uri, "play": None, "why": None,
                     # where the deletion of this object in the bucket stands, once removed
                     "removal": next((step.summary for step in steps if uri in step.object_uris), None)}
            if obj.review_status != ReviewStatus.REMOVED:
                stream = reverse("admin:tracking_videorequest_output", args=[obj.id, index])
                public = media.public_url(obj.public_urls[index]) if index < len(obj.public_urls) else None
                if media.local_output_path(uri):
                    entry["play"] = stream
                elif public:
                    entry["play"] = public
                elif uri.startswith(gcs.GCS_SCHEME) and gcs.signer() is not None:
                    entry["play"] = stream  # redirects to a short-lived signed URL, made when played
                elif uri.startswith(gcs.GCS_SCHEME):
                    entry["why"] = "not viewable: " + gcs.NO_SIGNER
            outputs.append(entry)
        return outputs

    def save_model(self, request, obj, form, change):
        reason = form.cleaned_data["review_note"]
        review = form.cleaned_data.get("review_status", obj.review_status)
        try:
            if "review_status" in form.changed_data and review == ReviewStatus.REMOVED:
                services.remove_output(request_ids=[obj.id], actor=actor_of(request), reason=reason)
            elif "review_status" in form.changed_data:
                REVIEW_SERVICES[review](request_ids=[obj.id], actor=actor_of(request), reason=reason)
            else:
                services.add_review_note(request_id=obj.id, actor=actor_of(request), reason=reason)
        except TrackingError as error:
            messages.error(request, str(error))

    def log_change(self, request, obj, message):
        if isinstance(message, list) and message:  # the change form: say what and why
            message = f"review: {obj.review_status}; reason: {obj.review_note}"
        return super().log_change(request, obj, message)

    # -- actions -------------------------------------------------------------------------

    def _act(self, request, queryset, *, name: str, verb: str, form_class=ReasonForm,
             run: Callable[[dict, list[int]], list[int]]):
        """The shared shape of every action: ask for a reason (intermediate page), run the
        service, record each changed request in Django's admin log, report in plain words."""
        ids = list(queryset.order_by().values_list("id", flat=True)[: ACTION_LIMIT + 1])
        if len(ids) > ACTION_LIMIT:
            self.message_user(request, f"Select at most {ACTION_LIMIT} requests for one action.", messages.ERROR)
            return None
        form = form_class(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                changed = run(form.cleaned_data, ids)
            except TrackingError as error:
                self.message_user(request, f"Nothing done: {error}", messages.ERROR)
                return None
            for obj in VideoRequest.objects.filter(id__in=changed):
                self.log_change(request, obj, f"{verb}; reason: {form.cleaned_data['reason']}")
            skipped = len(ids) - len(changed)
            self.message_user(request, f"{verb.capitalize()}: {len(changed)} request(s)"
                              + (f"; {skipped} left unchanged (not applicable or already done)." if skipped else "."),
                              messages.SUCCESS if changed else messages.WARNING)
            back = digits(request.POST.get("_from_detail"))
            if back is not None:
                return HttpResponseRedirect(reverse("admin:tracking_videorequest_change", args=[back]))
            return None
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": f"{verb.capitalize()}: reason",
                   **action_form_context(form, VideoRequest.objects.filter(id__in=ids).order_by("-id")[:50], name),
                   "count": len(ids), "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                   "select_across": request.POST.get("select_across", "0"),
                   "from_detail": request.POST.get("_from_detail", ""), "verb": verb}
        return TemplateResponse(request, "admin/tracking/action_form.html", context)

    @admin.action(description="Approve", permissions=["change"])
    def approve_requests(self, request, queryset):
        return self._act(request, queryset, name="approve_requests", verb="approved", run=lambda data, ids:
                         services.approve(request_ids=ids, actor=actor_of(request), reason=data["reason"]))

    @admin.action(description="Flag for review", permissions=["change"])
    def flag_requests(self, request, queryset):
        return self._act(request, queryset, name="flag_requests", verb="flagged", run=lambda data, ids:
                         services.flag(request_ids=ids, actor=actor_of(request), reason=data["reason"]))

    @admin.action(description="Remove output (and delete the Discord message and bucket object)",
                  permissions=["change"])
    def remove_outputs(self, request, queryset):
        def run(data, ids):
            removals = services.remove_output(request_ids=ids, actor=actor_of(request), reason=data["reason"])
            queued = sum(1 for removal in removals if removal.discord_action_id)
            if queued:
                self.message_user(request, f"{queued} Discord message(s) queued for deletion by the bot.")
            objects = sum(len(removal.gcs_objects) for removal in removals if removal.bucket_action_id)
            if objects:
                self.message_user(request, f"{objects} bucket object(s) queued for deletion by the bot; the request "
                                           "page shows when they are gone.")
            return [removal.request_id for removal in removals]
        return self._act(request, queryset, name="remove_outputs", verb="output removed", run=run)

    @admin.action(description="Refund quota", permissions=["change"])
    def refund_requests(self, request, queryset):
        return self._act(request, queryset, name="refund_requests", verb="refunded", run=lambda data, ids:
                         services.refund_requests(request_ids=ids, actor=actor_of(request), reason=data["reason"]))

    @admin.action(description="Cancel (pending or generating)", permissions=["change"])
    def cancel_requests(self, request, queryset):
        return self._act(request, queryset, name="cancel_requests", verb="cancelled", run=lambda data, ids:
                         services.cancel_requests(request_ids=ids, actor=actor_of(request), reason=data["reason"]))

    @admin.action(description="Ban the user(s)", permissions=["change"])
    def ban_users(self, request, queryset):
        def run(data, ids):
            rows = VideoRequest.objects.filter(id__in=ids).values_list("id", "user_id", "guild_id")
            scopes: dict[tuple[int, int | None], list[int]] = {}
            for request_id, user_id, guild_id in rows:
                if data["scope"] == "guild" and guild_id is None:
                    raise TrackingError(f"request {request_id} was made in a direct message: ban everywhere instead")
                scopes.setdefault((user_id, guild_id if data["scope"] == "guild" else None), []).append(request_id)
            expires = data["expires_at"].astimezone(UTC) if data["expires_at"] else None
            done = []
            for (user_id, guild_id), request_ids in sorted(scopes.items(), key=lambda item: item[0][0]):
                services.ban_user(user_id=user_id, guild_id=guild_id, reason=data["reason"], actor=actor_of(request),
                                  expires_at=expires, request_ids=request_ids)
                done += request_ids
            self.message_user(request, f"Banned {len(scopes)} user(s) from their next request.")
            return done
        return self._act(request, queryset, name="ban_users", verb="user banned", form_class=BanForm, run=run)

    # -- extra pages ---------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:object_id>/output/<int:index>/", wrap(self.output_view), name="tracking_videorequest_output"),
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
            return views.stream_video(request, path_, download_name=f"veobot-request-{obj.id}-{index}.mp4")
        if uri.startswith(gcs.GCS_SCHEME):
            return views.signed_redirect(uri)
        raise views.not_found()

    def export_view(self, request):
        self._require_view(request)
        refused = refuse_nul(request, to=reverse("admin:tracking_videorequest_changelist"))
        if refused:
            return refused
        try:
            cl = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            self.message_user(request, "Nothing exported: a filter in the address is not valid.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:tracking_videorequest_changelist"))
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return views.export_csv(cl.get_queryset(request), filename=f"veobot-requests-{stamp}.csv",
                                user=actor_of(request))

    def dashboard_view(self, request):
        self._require_view(request)
        days = request.GET.get("days", "1")
        days = int(days) if days in ("1", "7") else 1
        if request.GET.get("recompute"):
            # Computed now and stored for everyone; redirected so a reload does not repeat it.
            dashboards.compute(days=days)
            return HttpResponseRedirect(f"?days={days}")
        snapshot = dashboards.current(days=days)
        data = snapshot.dashboard
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": "Dashboard",
                   "d": data, "days": days, "snapshot": snapshot, "refresh": selectors.humanize_duration(settings.DASHBOARD_REFRESH),
                   "totals": data.activity.totals,
                   "total": sum(data.activity.totals.values()),
                   "day_chart": charts.stacked(data.activity.buckets, hourly=days == 1),
                   "hour_chart": charts.hours(data.activity.per_hour_of_day), "colours": charts.STATUS_COLOURS.items(),
                   "changelist_url": reverse("admin:tracking_videorequest_changelist")}
        return TemplateResponse(request, "admin/tracking/dashboard.html", context)

    def user_view(self, request, user_id: int):
        self._require_view(request)
        before_id = digits(request.GET.get("before"))
        if before_id is not None and before_id >= 2**63:
            before_id = None
        if not 0 < user_id < 2**63:
            raise views.not_found()
        overview = selectors.user_overview(user_id=user_id, before_id=before_id)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": f"User {user_id}",
                   "o": overview, "now": timezone.now(), "resets_in": overview.quota.resets_in(now=timezone.now()),
                   "can_ban": request.user.has_perm("tracking.add_userban"),
                   "changelist_url": reverse("admin:tracking_videorequest_changelist")}
        return TemplateResponse(request, "admin/tracking/user.html", context)


REVIEW_SERVICES = {ReviewStatus.APPROVED: services.approve, ReviewStatus.FLAGGED: services.flag,
                   ReviewStatus.UNREVIEWED: services.mark_unreviewed}


def discord_message_url(obj: VideoRequest) -> str | None:
    if not (obj.channel_id and obj.discord_message_id):
        return None
    return f"https://discord.com/channels/{obj.guild_id or '@me'}/{obj.channel_id}/{obj.discord_message_id}"

