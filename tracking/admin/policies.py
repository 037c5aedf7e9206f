"""Bans, quota policies, blocked terms, the Discord outbox and the migration log.

Saving goes through services, which stamp the moderator's name; the forms ask the database
(which owns the rules) before saving, so a refused value is a form error, not a crash.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from tracking import services
from tracking.admin import views
from tracking.admin.forms import BlockedTermForm, QuotaPolicyForm, UserBanForm
from tracking.admin.query import RefusesNulParameters
from tracking.durations import humanize_duration


def actor_of(request) -> str:
    return request.user.get_username()


class ReadOnlyAdmin(RefusesNulParameters, admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class StampedAdmin(RefusesNulParameters, admin.ModelAdmin):
    """A record whose who-and-when the database stamps when it is saved: the Add form leaves
    those out (unsaved, they hold only the database's default, which reads as an object's repr)."""

    stamps: tuple[str, ...] = ()

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return fields if obj is not None else [name for name in fields if name not in self.stamps]


class QuotaPolicyAdmin(StampedAdmin):
    form = QuotaPolicyForm
    list_display = (
        "id",
        "user_id",
        "guild_id",
        "role",
        "quota_limit",
        "window",
        "max_in_flight",
        "priority",
        "budget",
        "guild_budget",
        "note",
        "created_by",
        "updated_at",
    )
    search_fields = ("=user_id", "=guild_id", "=role_id", "role_label")
    readonly_fields = ("created_by", "created_at", "updated_at")
    stamps = readonly_fields

    @admin.display(description="window", ordering="quota_window")
    def window(self, obj) -> str:
        return humanize_duration(obj.quota_window)

    @admin.display(description="role", ordering="role_id")
    def role(self, obj) -> str:
        if obj.role_id is None:
            return ""
        return f"{obj.role_label} ({obj.role_id})" if obj.role_label else str(obj.role_id)

    @admin.display(description="budget per user", ordering="budget_usd")
    def budget(self, obj) -> str:
        return f"${obj.budget_usd} per {humanize_duration(obj.budget_window)}" if obj.budget_usd is not None else ""

    @admin.display(description="guild budget", ordering="guild_budget_usd")
    def guild_budget(self, obj) -> str:
        if obj.guild_budget_usd is None:
            return ""
        return f"${obj.guild_budget_usd} per {humanize_duration(obj.guild_budget_window)}"

    def save_model(self, request, obj, form, change):
        services.save_quota_policy(policy=obj, actor=actor_of(request))


class UserBanAdmin(StampedAdmin):
    form = UserBanForm
    list_display = ("id", "user_link", "guild_id", "reason", "banned_by", "created_at", "expires_at", "state")
    list_filter = (("lifted_at", admin.EmptyFieldListFilter),)
    search_fields = ("=user_id", "=guild_id")
    readonly_fields = ("banned_by", "created_at", "lifted_at", "lifted_by")
    stamps = readonly_fields
    actions = ["lift_bans"]

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        return {key: value for key, value in initial.items() if key in ("user_id", "guild_id")}

    def get_readonly_fields(self, request, obj=None):
        # A ban's subject is fixed once made; lift it and make another instead.
        return self.readonly_fields + (("user_id", "guild_id") if obj else ())

    @admin.display(description="user")
    def user_link(self, obj):
        return views.page_link("admin:tracking_videorequest_user", obj.user_id)

    @admin.display(description="state")
    def state(self, obj) -> str:
        if obj.lifted_at:
            return f"lifted by {obj.lifted_by}"
        if obj.expires_at and obj.expires_at <= timezone.now():
            return "expired"
        return "in force"

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["reason", "expires_at"])
        else:
            obj.id = services.ban_user(
                user_id=obj.user_id,
                guild_id=obj.guild_id,
                reason=obj.reason,
                actor=actor_of(request),
                expires_at=obj.expires_at,
            )

    @admin.action(description="Lift the selected bans", permissions=["change"])
    def lift_bans(self, request, queryset):
        lifted = services.lift_bans(ban_ids=list(queryset.values_list("id", flat=True)), actor=actor_of(request))
        for ban in queryset.model.objects.filter(id__in=lifted):
            self.log_change(request, ban, "lifted")
        self.message_user(request, f"Lifted {len(lifted)} ban(s).", messages.SUCCESS)


class BlockedTermAdmin(StampedAdmin):
    form = BlockedTermForm
    list_display = ("id", "kind", "pattern", "guild_id", "enabled", "message", "created_by", "created_at")
    list_filter = ("kind", "enabled")
    search_fields = ("pattern", "=guild_id")
    readonly_fields = ("match_pattern", "created_by", "created_at")
    stamps = readonly_fields

    def save_model(self, request, obj, form, change):
        services.save_blocked_term(term=obj, actor=actor_of(request))


class DiscordActionAdmin(ReadOnlyAdmin):
    """The outbox status: pending until done_at or failed_at; last_error says why it failed."""

    list_display = (
        "id",
        "action",
        "request",
        "channel_id",
        "message_id",
        "object_uris",
        "requested_by",
        "reason",
        "created_at",
        "done_at",
        "failed_at",
        "attempts",
        "last_error",
        "not_before",
    )
    list_filter = ("action", ("done_at", admin.EmptyFieldListFilter), ("failed_at", admin.EmptyFieldListFilter))
    raw_id_fields = ("request",)


class DataLifecycleAuditAdmin(ReadOnlyAdmin):
    """Purges and erasures, read-only and for superusers only (operations, not moderation)."""

    list_display = ("id", "operation", "actor", "started_at", "finished_at", "outcome", "counts", "subject_key")
    list_filter = ("operation", "outcome")
    search_fields = ("=subject_key",)

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser


class SchemaMigrationAdmin(ReadOnlyAdmin):
    list_display = ("version", "name", "checksum", "applied_at")


class JournalQuarantineAdmin(ReadOnlyAdmin):
    """Degraded-mode journal entries a bot could not replay: for operators (superusers), who fix
    the cause and run ``manage.py replay_journal --retry`` on the machine named in the key."""

    list_display = (
        "entry_key",
        "kind",
        "interaction_id",
        "user_id",
        "error",
        "quarantined_at",
        "resolution",
        "resolved_at",
        "resolved_by",
    )
    list_filter = ("kind", "resolution")
    search_fields = ("=interaction_id", "=user_id", "entry_key")

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser


class ReportAdmin(ReadOnlyAdmin):
    """What Discord users reported (a delivered video's Report button), newest first; the request
    links to its page, where the moderation actions are."""

    list_display = ("id", "request", "reporter_id", "reason", "state", "created_at", "resolved_at", "resolved_by")
    list_filter = ("state",)
    search_fields = ("reason", "=reporter_id", "=request__id")
    raw_id_fields = ("request",)
