"""The moderators' audit log (moderation_log, written by 0018's triggers): read-only, newest
first, filtered through its indexes, never counted in full, exported as a stream."""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.template.response import TemplateResponse
from django.urls import path

from tracking.admin import views
from tracking.admin.changelist import COUNT_CAP, ModerationChangeList
from tracking.admin.filters import CreatedFromFilter, CreatedToFilter, InputFilter
from tracking.admin.policies import ReadOnlyAdmin
from tracking.admin.query import digits
from tracking.models import ModerationLogEntry

# The tables 0018 audits (a trigger on each), for the target filter and the id search.
AUDITED_TABLES = (
    "video_requests",
    "user_bans",
    "quota_policies",
    "blocked_terms",
    "reports",
    "review_items",
    "review_notes",
    "appeals",
    "journal_quarantine",
)
TARGET_PAGES = {
    "video_requests": "admin:tracking_videorequest_change",
    "review_items": "admin:tracking_reviewitem_change",
    "user_bans": "admin:tracking_userban_change",
}
EXPORT_COLUMNS = [
    "id",
    "at",
    "actor",
    "action",
    "target_table",
    "target_id",
    "subject_user_id",
    "reason",
    "before",
    "after",
]
TEXT_MAX = 200


class _ExactTextFilter(InputFilter):
    field = ""

    def clean(self, value: str) -> str:
        if not value or len(value) > TEXT_MAX:
            raise ValueError(f"type the exact {self.title} (at most {TEXT_MAX} characters)")
        return value

    def filter(self, queryset, value):
        return queryset.filter(**{self.field: value})


class ActorFilter(_ExactTextFilter):
    title = "moderator"
    parameter_name = "actor"
    placeholder = "exact username"
    field = "actor"


class ActionFilter(_ExactTextFilter):
    title = "action"
    parameter_name = "action"
    placeholder = "e.g. claim, resolve: ban"
    field = "action"


class TargetTableFilter(admin.SimpleListFilter):
    title = "target table"
    parameter_name = "target_table"

    def lookups(self, request, model_admin):
        return [(table, table.replace("_", " ")) for table in AUDITED_TABLES]

    def queryset(self, request, queryset):
        return queryset.filter(target_table=self.value()) if self.value() in AUDITED_TABLES else queryset


class AtFromFilter(CreatedFromFilter):
    title = "from (UTC day, inclusive)"
    parameter_name = "from"
    field = "at"


class AtToFilter(CreatedToFilter):
    title = "to (UTC day, inclusive)"
    parameter_name = "to"
    field = "at"


class ModerationLogAdmin(ReadOnlyAdmin):
    list_display = ("when", "actor", "action", "target", "subject", "reason")
    list_display_links = ("when",)
    list_filter = (ActorFilter, ActionFilter, TargetTableFilter, AtFromFilter, AtToFilter)
    search_fields = ("=target_id",)  # shows the box; get_search_results does the work
    search_help_text = "A target id (request, item, ban…) or a subject user id: digits, exact."
    ordering = ("-id",)
    sortable_by = ()
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def get_changelist(self, request, **kwargs):
        return ModerationChangeList

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_view)
        return [path("export/", export, name="tracking_moderationlogentry_export"), *super().get_urls()]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().removeprefix("#")
        if not term:
            return queryset, False
        number = digits(term)
        if number is None or number >= 2**63:
            self.message_user(request, "Search by an id: digits only.", level="error")
            return queryset.none(), False
        # The target index leads with the table: the audited tables' ranges, not a scan.
        return queryset.filter(Q(target_table__in=AUDITED_TABLES, target_id=number) | Q(subject_user_id=number)), False

    def text_search(self, search_term: str) -> None:
        return None  # ids only: ModerationChangeList pages them without counting

    @admin.display(description="when (UTC)")
    def when(self, obj: ModerationLogEntry) -> str:
        return f"{obj.at:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="target")
    def target(self, obj: ModerationLogEntry):
        return target_link(obj)

    @admin.display(description="subject user")
    def subject(self, obj: ModerationLogEntry):
        return views.page_link("admin:tracking_videorequest_user", obj.subject_user_id)

    def changelist_view(self, request, extra_context=None):
        extra = {"title": "Audit log", "count_cap": COUNT_CAP, "noun": "entry", "nouns": "entries"}
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return views.export_list(
            self, request, name="veobot-audit-log", columns=EXPORT_COLUMNS, what="the moderators' audit log"
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        entry_id = digits(object_id)
        obj = ModerationLogEntry.objects.filter(id=entry_id).first() if entry_id and entry_id < 2**63 else None
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Audit log entry #{obj.id}",
            "entry": obj,
            "target": target_link(obj),
            "before_json": pretty(obj.before),
            "after_json": pretty(obj.after),
            "diff": diff_rows(obj.before, obj.after),
        }
        return TemplateResponse(request, "admin/tracking/moderationlogentry/entry.html", context)


def target_link(obj: ModerationLogEntry):
    name = f"{obj.target_table} #{obj.target_id}" if obj.target_id is not None else obj.target_table
    page = TARGET_PAGES.get(obj.target_table)
    return name if page is None or obj.target_id is None else views.page_link(page, obj.target_id, name)


def pretty(value) -> str:
    return "" if value is None else json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def diff_rows(before: dict | None, after: dict | None) -> list[dict]:
    """One row per column: its value before and after (an insertion has no before, a deletion no after)."""
    before, after = before or {}, after or {}
    rows = []
    for key in sorted(before.keys() | after.keys()):
        old = json.dumps(before[key], ensure_ascii=False) if key in before else ""
        new = json.dumps(after[key], ensure_ascii=False) if key in after else ""
        rows.append({"column": key, "before": old, "after": new, "changed": old != new})
    return rows
