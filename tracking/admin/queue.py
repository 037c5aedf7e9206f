"""The review queue's list: open items oldest first, "take the next", and the bulk actions
(the item page: tracking.admin.queue_item). Every write goes through services.review."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from tracking import services
from tracking.admin import views
from tracking.admin.actions import ACTION_LIMIT, actor_of
from tracking.admin.changelist import COUNT_CAP, ModerationChangeList
from tracking.admin.query import RefusesNulParameters, digits
from tracking.admin.queue_forms import DecisionForm
from tracking.admin.queue_item import ItemPage
from tracking.errors import TrackingError
from tracking.models import ItemKind, ItemState, ReviewItem

SUMMARY_LENGTH = 90


class QueueStateFilter(admin.SimpleListFilter):
    """Open items unless resolved ones are asked for: the queue is what is left to decide."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return ItemState.choices

    def choices(self, changelist):
        current = self.value() if self.value() in ItemState.values else ItemState.OPEN
        for value, title in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}, ["p"]),
                "display": title,
            }

    def queryset(self, request, queryset):
        return queryset.filter(state=self.value() if self.value() in ItemState.values else ItemState.OPEN)


class ClaimFilter(admin.SimpleListFilter):
    title = "claim"
    parameter_name = "claim"

    def lookups(self, request, model_admin):
        return [("unclaimed", "Unclaimed"), ("mine", "Mine"), ("others", "Others'")]

    def queryset(self, request, queryset):
        held = Q(claimed_by__isnull=False, claimed_until__gt=timezone.now())  # an expired claim is nobody's
        if self.value() == "unclaimed":
            return queryset.exclude(held)
        if self.value() == "mine":
            return queryset.filter(held, claimed_by=actor_of(request))
        if self.value() == "others":
            return queryset.filter(held).exclude(claimed_by=actor_of(request))
        return queryset


class QueueChangeList(ModerationChangeList):
    @property
    def is_filtered(self) -> bool:
        return True  # always one state's items: counted (up to COUNT_CAP + 1), never estimated


class ReviewItemAdmin(ItemPage, RefusesNulParameters, admin.ModelAdmin):
    list_display = ("item", "kind_badge", "summary_excerpt", "user_link", "hits", "waiting", "claim", "request_link")
    list_display_links = ("item",)
    list_filter = (QueueStateFilter, "kind", ClaimFilter)
    sortable_by = ()  # one order (oldest first), the one the open items' index yields
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ["resolve_items", "claim_items", "release_items"]

    def has_add_permission(self, request):
        return False  # items are made by the database (reports, filters, refusals, appeals)

    def has_delete_permission(self, request, obj=None):
        return False  # resolved, never deleted: the audit log refers to them

    def get_changelist(self, request, **kwargs):
        return QueueChangeList

    def get_ordering(self, request):
        if request.GET.get("state") == ItemState.RESOLVED:
            return ("-resolved_at", "-id")
        return ("created_at", "id")  # review_items_open_idx, in order

    def get_urls(self):
        take = self.admin_site.admin_view(self.take_next_view)
        return [path("take-next/", take, name="tracking_reviewitem_take_next"), *super().get_urls()]

    # -- columns ------------------------------------------------------------------------

    @admin.display(description="item")
    def item(self, obj: ReviewItem) -> str:
        return f"#{obj.id}"

    @admin.display(description="kind")
    def kind_badge(self, obj: ReviewItem):
        return format_html('<span class="vb-badge vb-kind-{}">{}</span>', obj.kind, obj.get_kind_display())

    @admin.display(description="summary")
    def summary_excerpt(self, obj: ReviewItem) -> str:
        text = " ".join(obj.summary.split())
        return text if len(text) <= SUMMARY_LENGTH else text[: SUMMARY_LENGTH - 1] + "…"

    @admin.display(description="user")
    def user_link(self, obj: ReviewItem):
        return views.page_link("admin:tracking_videorequest_user", obj.user_id)

    @admin.display(description="waiting since (UTC)")
    def waiting(self, obj: ReviewItem) -> str:
        return f"{obj.created_at:%Y-%m-%d %H:%M}"

    @admin.display(description="claimed by")
    def claim(self, obj: ReviewItem) -> str:
        if obj.state == ItemState.RESOLVED:
            return f"resolved: {obj.get_decision_display().lower()} by {obj.resolved_by}"
        if obj.claimed_by and obj.claimed_until > timezone.now():
            return f"{obj.claimed_by} until {obj.claimed_until:%H:%M}"
        return ""

    @admin.display(description="request")
    def request_link(self, obj: ReviewItem):
        return views.page_link("admin:tracking_videorequest_change", obj.request_id, f"#{obj.request_id}")

    # -- the list and "take the next" ----------------------------------------------------------

    def changelist_view(self, request, extra_context=None):
        kind = request.GET.get("kind__exact")
        extra = {
            "title": "Review queue",
            "can_take": self.has_change_permission(request),
            "take_kind": kind if kind in ItemKind.values else "",
            "take_kind_label": ItemKind(kind).label.lower() if kind in ItemKind.values else "",
            "count_cap": COUNT_CAP,
            "noun": "item",
            "nouns": "items",
        }
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def take_next_view(self, request):
        changelist = reverse("admin:tracking_reviewitem_changelist")
        if request.method != "POST":
            return HttpResponseRedirect(changelist)
        if not self.has_change_permission(request):
            raise PermissionDenied
        kind = request.POST.get("kind") or None
        try:
            item_id = services.review.take_next(actor=actor_of(request), kind=kind)
        except TrackingError as error:
            self.message_user(request, f"Nothing taken: {error}.", messages.ERROR)
            return HttpResponseRedirect(changelist)
        if item_id is None:
            of_kind = f" of {ItemKind(kind).label.lower()} items" if kind else ""
            self.message_user(request, f"The queue is empty: no unclaimed open item{of_kind}.", messages.INFO)
            return HttpResponseRedirect(changelist + (f"?kind__exact={kind}" if kind else ""))
        self.message_user(request, f"Item #{item_id} is yours for now.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:tracking_reviewitem_change", args=[item_id]))

    # -- bulk actions -----------------------------------------------------------------------

    def response_action(self, request, queryset):
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if any(digits(value) is None or digits(value) >= 2**63 for value in selected):
            self.message_user(
                request, "Nothing done: the selection holds something that is no item id.", messages.ERROR
            )
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)

    def _selected_ids(self, request, queryset) -> list[int] | None:
        ids = list(queryset.order_by().values_list("id", flat=True)[: ACTION_LIMIT + 1])
        if len(ids) > ACTION_LIMIT:
            self.message_user(request, f"Select at most {ACTION_LIMIT} items for one action.", messages.ERROR)
            return None
        return ids

    @admin.action(description="Resolve selected…", permissions=["change"])
    def resolve_items(self, request, queryset):
        ids = self._selected_ids(request, queryset)
        if ids is None:
            return None
        form = DecisionForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            data = form.cleaned_data
            try:
                result = services.review.resolve_many(
                    item_ids=ids, actor=actor_of(request), decision=data["decision"], reason=data["reason"],
                    ban=form.ban_terms(),
                )  # fmt: skip
            except TrackingError as error:
                self.message_user(request, f"Nothing resolved: {error}.", messages.ERROR)
                return None
            for done in result.resolved:
                self.message_user(request, f"Item #{done.item_id} resolved: {done.effect}.", messages.SUCCESS)
            for item_id, why in result.skipped:
                self.message_user(request, f"Item #{item_id} skipped: {why}.", messages.WARNING)
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Resolve the selected items",
            "form": form,
            "items": ReviewItem.objects.filter(id__in=ids).order_by("created_at", "id")[:50],
            "count": len(ids),
            "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/tracking/reviewitem/resolve_many.html", context)

    def _each(self, request, queryset, verb: str, run) -> None:
        ids = self._selected_ids(request, queryset)
        if ids is None:
            return
        done, refused = [], []
        for item_id in sorted(ids):
            try:
                if run(item_id):
                    done.append(item_id)
                else:
                    refused.append(f"#{item_id}: not yours")
            except TrackingError as error:
                refused.append(str(error))
        if done:
            self.message_user(request, f"{verb}: " + ", ".join(f"#{i}" for i in done) + ".", messages.SUCCESS)
        if refused:
            self.message_user(request, "Skipped " + "; ".join(refused) + ".", messages.WARNING)

    @admin.action(description="Claim selected", permissions=["change"])
    def claim_items(self, request, queryset):
        self._each(request, queryset, "Claimed", lambda i: services.review.claim(item_id=i, actor=actor_of(request)))

    @admin.action(description="Release selected", permissions=["change"])
    def release_items(self, request, queryset):
        self._each(request, queryset, "Released", lambda i: services.review.release(item_id=i, actor=actor_of(request)))
