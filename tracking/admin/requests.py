"""The requests list and the request page (the actions: tracking.admin.actions; other pages: .pages)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import OperationalError, connection, transaction
from django.db.models import Max, Min, Q
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from psycopg.errors import QueryCanceled

from tracking import gcs, media, search, selectors, services
from tracking.admin.actions import ModerationActions, actor_of
from tracking.admin.changelist import COUNT_CAP, ModerationChangeList, hierarchy_choices
from tracking.admin.filters import (
    CreatedFromFilter,
    CreatedToFilter,
    DeliveredFilter,
    GuildFilter,
    SafetyFilteredFilter,
)
from tracking.admin.forms import ReviewForm
from tracking.admin.pages import RequestPages
from tracking.admin.query import RefusesNulParameters, digits
from tracking.errors import TrackingError
from tracking.models import IN_FLIGHT_STATUSES, ReviewStatus, VideoRequest

SEARCH_MAX_LENGTH = 200
SEARCH_TIMEOUT_MS = 5000

COST_FIELDS = ("priority", "cost_estimated_usd", "cost_final_usd")  # set by the database
FACT_FIELDS = (
    "id",
    "created_at",
    "status",
    "source",
    "user_id",
    "guild_id",
    "channel_id",
    "interaction_id",
    "prompt",
    "negative_prompt",
    "duration_seconds",
    "aspect_ratio",
    "resolution",
    "generate_audio",
    "person_generation",
    "seed",
    "model",
    "operation_name",
    "started_at",
    "completed_at",
    "duration_ms",
    "output_uris",
    "public_urls",
    "output_size_bytes",
    "safety_filtered_count",
    "safety_filtered_reasons",
    "error_code",
    "error_message",
    "delivered_at",
    "delivery_method",
    "discord_message_id",
    "delivery_error",
    "counts_toward_quota",
    "attempts",
    "claimed_by",
    "lease_expires_at",
    "reviewed_by",
    "reviewed_at",
) + COST_FIELDS


def search_term_of(search_term: str) -> str | int | None:
    """What the search box holds: digits (a request, user or interaction id, "#" allowed), words
    of a prompt, or nothing."""
    term = search_term.strip()[:SEARCH_MAX_LENGTH]
    if not term:
        return None
    number = digits(term.removeprefix("#"))
    return term if number is None else number


class VideoRequestAdmin(ModerationActions, RequestPages, RefusesNulParameters, admin.ModelAdmin):
    list_display = (
        "created",
        "status_badge",
        "user_link",
        "prompt_excerpt",
        "parameters",
        "generation_time",
        "review_badge",
        "safety_marker",
    )
    list_display_links = ("created",)
    list_filter = (
        "status",
        "review_status",
        "duration_seconds",
        "aspect_ratio",
        "resolution",
        GuildFilter,
        CreatedFromFilter,
        CreatedToFilter,
        SafetyFilteredFilter,
        DeliveredFilter,
    )
    search_fields = ("prompt",)  # shows the search box; get_search_results does the work
    search_help_text = (
        'Words of the prompt (full text: "exact phrase", or, -word), or digits: a request id, '
        "user id or interaction id."
    )
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    form = ReviewForm
    actions = ["approve_requests", "flag_requests", "remove_outputs", "refund_requests", "ban_users", "cancel_requests"]
    fieldsets = [
        ("Moderation", {"fields": ("review_status", "review_note", "reviewed_by", "reviewed_at")}),
        (
            "Prompt and parameters",
            {
                "fields": (
                    "prompt",
                    "negative_prompt",
                    "duration_seconds",
                    "aspect_ratio",
                    "resolution",
                    "generate_audio",
                    "person_generation",
                    "seed",
                    "model",
                )
            },
        ),
        (
            "Discord",
            {"fields": ("user_id", "guild_id", "channel_id", "interaction_id", "discord_message_id", "source")},
        ),
        (
            "Lifecycle",
            {
                "fields": (
                    "status",
                    "created_at",
                    "started_at",
                    "completed_at",
                    "duration_ms",
                    "operation_name",
                    "attempts",
                    "claimed_by",
                    "lease_expires_at",
                    "counts_toward_quota",
                )
            },
        ),
        (
            "Results and delivery",
            {
                "fields": (
                    "output_uris",
                    "public_urls",
                    "output_size_bytes",
                    "safety_filtered_count",
                    "safety_filtered_reasons",
                    "error_code",
                    "error_message",
                    "delivered_at",
                    "delivery_method",
                    "delivery_error",
                )
            },
        ),
        ("Priority and cost (USD, estimated at admission; final when it ended)", {"fields": COST_FIELDS}),
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
        term = search_term_of(search_term)
        if term is None:
            return queryset, False
        if isinstance(term, str):
            return queryset.filter(search.prompt_matches(term)), False
        if term >= 2**63:
            return queryset.none(), False
        return queryset.filter(Q(id=term) | Q(user_id=term) | Q(interaction_id=term)), False

    def text_search(self, search_term: str) -> str | None:
        """The words of a prompt search (a page of it comes from tracking.search), or None
        when the term is empty or digits (ids, looked up through their own indexes)."""
        term = search_term_of(search_term)
        return term if isinstance(term, str) else None

    @admin.display(description="created (UTC)", ordering="created_at")
    def created(self, obj: VideoRequest) -> str:
        return f"{obj.created_at:%Y-%m-%d %H:%M}"  # short: the list has nine columns to fit

    @admin.display(description="status")
    def status_badge(self, obj: VideoRequest):
        return format_html('<span class="vb-badge vb-status-{}">{}</span>', obj.status, obj.get_status_display())

    @admin.display(description="user · where")
    def user_link(self, obj: VideoRequest):
        # The guild under the user, in one column: two 19-digit ids side by side took the
        # width the prompt needs on a laptop screen.
        url = reverse("admin:tracking_videorequest_user", args=[obj.user_id])
        where = (
            f"guild {obj.guild_id}" if obj.guild_id else obj.get_source_display() if obj.source != "discord" else "DM"
        )
        return format_html('<a href="{}">{}</a><div class="vb-where">{}</div>', url, obj.user_id, where)

    @admin.display(description="prompt")
    def prompt_excerpt(self, obj: VideoRequest) -> str:
        return obj.prompt if len(obj.prompt) <= 80 else obj.prompt[:79] + "…"

    @admin.display(description="parameters")
    def parameters(self, obj: VideoRequest) -> str:
        return f"{obj.duration_seconds}s · {obj.aspect_ratio} · {obj.resolution}" + (
            "" if obj.generate_audio else " · muted"
        )

    # The list sorts by date only (newest or oldest first): no index yields rows in the order
    # of status, time taken or review together with their date, so sorting by them meant
    # reading every match (seconds at millions of rows). The filters narrow by them instead.
    @admin.display(description="took")  # to generate; a short header, to fit
    def generation_time(self, obj: VideoRequest) -> str:
        return f"{obj.duration_ms / 1000:.1f} s" if obj.duration_ms is not None else "–"

    @admin.display(description="review")
    def review_badge(self, obj: VideoRequest):
        return format_html(
            '<span class="vb-badge vb-review-{}">{}</span>', obj.review_status, obj.get_review_status_display()
        )

    @admin.display(description="safety")
    def safety_marker(self, obj: VideoRequest):
        if not obj.safety_filtered_count:
            return ""
        reasons = "; ".join(obj.safety_filtered_reasons)
        return format_html(  # short, to fit the list; the reasons are its tooltip and on the request page
            '<span class="vb-badge vb-safety" title="filtered by Veo: {}">⚠ {}</span>',
            reasons,
            obj.safety_filtered_count,
        )

    def changelist_view(self, request, extra_context=None):
        if not request.GET.get("q", "").strip():
            return self._changelist(request, extra_context)
        # tracking.search bounds every way a search runs; this limit is the net in case one
        # is ever misjudged again (reaching it is a defect): the moderator hears so in
        # seconds instead of waiting.
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = %s", [f"{SEARCH_TIMEOUT_MS}ms"])
                return self._changelist(request, extra_context)
        except OperationalError as error:
            if not isinstance(error.__cause__, QueryCanceled):
                raise
            self.message_user(
                request,
                f"The search took longer than {SEARCH_TIMEOUT_MS // 1000} s and was stopped: add "
                "a date range or filters, or more specific words.",
                messages.ERROR,
            )
        query = request.GET.copy()
        query.pop("q")
        return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")

    def _changelist(self, request, extra_context):
        response = super().changelist_view(request, extra_context)
        cl = (getattr(response, "context_data", None) or {}).get("cl")
        if cl is not None:
            # The whole table's bounds: two index probes, whatever the filters.
            bounds = cl.root_queryset.aggregate(first=Min("created_at"), last=Max("created_at"))
            response.context_data.update(
                hierarchy=hierarchy_choices(cl, bounds["first"], bounds["last"]), count_cap=COUNT_CAP
            )
        return response

    # -- the request page ----------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra = {}
        if obj is not None:
            steps = selectors.removal_progress(request_id=obj.id)
            extra = {
                "outputs": self._outputs(obj, steps),
                "inputs": self._inputs(obj),
                "family": selectors.request_family(request_id=obj.id),
                "removal_steps": steps,
                "timeline": selectors.request_timeline(request_id=obj.id),
                "discord_url": discord_message_url(obj),
                "user_url": reverse("admin:tracking_videorequest_user", args=[obj.user_id]),
                "moderation_actions": [
                    (name, self.get_actions(request)[name][2])
                    for name in self.actions
                    if name in self.get_actions(request) and applies(name, obj)
                ],
                "changelist_url": reverse("admin:tracking_videorequest_changelist"),
            }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def _inputs(self, obj: VideoRequest) -> list[dict]:
        """The frames it gave Veo, viewable until removed; an extension's video is its parent's."""
        inputs = []
        for kind, title in (("image", "First frame"), ("last_frame", "Last frame")):
            uri = getattr(obj, kind + "_uri")
            if uri:
                shown = obj.review_status != ReviewStatus.REMOVED and media.local_output_path(uri) is not None
                view = reverse("admin:tracking_videorequest_input", args=[obj.id, kind]) if shown else None
                inputs.append({"title": title, "uri": uri, "view": view})
        return inputs

    def _outputs(self, obj: VideoRequest, steps: list[selectors.RemovalStep]) -> list[dict]:
        outputs = []
        for index, uri in enumerate(obj.output_uris):
            entry = {
                "uri": uri,
                "play": None,
                "why": None,
                # where the deletion of this object in the bucket stands, once removed
                "removal": next((step.summary for step in steps if uri in step.object_uris), None),
            }
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


REVIEW_SERVICES = {
    ReviewStatus.APPROVED: services.approve,
    ReviewStatus.FLAGGED: services.flag,
    ReviewStatus.UNREVIEWED: services.mark_unreviewed,
}


def applies(action: str, obj: VideoRequest) -> bool:
    """Whether an action can do anything to this request, for its page's buttons: a finished
    request cannot be cancelled, an output that is gone cannot be removed again, a refunded
    request cannot be refunded twice."""
    if action == "cancel_requests":
        return obj.status in IN_FLIGHT_STATUSES
    if action == "remove_outputs":
        return obj.review_status != ReviewStatus.REMOVED
    if action == "refund_requests":
        return obj.counts_toward_quota
    return True


def discord_message_url(obj: VideoRequest) -> str | None:
    if not (obj.channel_id and obj.discord_message_id):
        return None
    return f"https://discord.com/channels/{obj.guild_id or '@me'}/{obj.channel_id}/{obj.discord_message_id}"
