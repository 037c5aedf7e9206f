"""The moderation panel: request facts are read-only; policies and bans are editable."""

from django.contrib import admin

from tracking.models import QuotaPolicy, SchemaMigration, UserBan, VideoRequest, VideoRequestEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class EventInline(admin.TabularInline):
    model = VideoRequestEvent
    fields = ("at", "kind", "from_status", "to_status", "actor", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(VideoRequest)
class VideoRequestAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "status", "user_id", "guild_id", "prompt_excerpt", "duration_seconds",
                    "aspect_ratio", "resolution", "duration_ms", "review_status")
    list_filter = ("status", "review_status", "duration_seconds", "aspect_ratio", "resolution", "source")
    search_fields = ("=id", "=user_id", "=interaction_id")
    date_hierarchy = "created_at"
    show_full_result_count = False
    list_per_page = 50
    inlines = [EventInline]

    @admin.display(description="prompt")
    def prompt_excerpt(self, obj: VideoRequest) -> str:
        return obj.prompt if len(obj.prompt) <= 80 else obj.prompt[:79] + "…"


@admin.register(QuotaPolicy)
class QuotaPolicyAdmin(admin.ModelAdmin):
    list_display = ("id", "user_id", "guild_id", "quota_limit", "quota_window", "max_in_flight", "note")
    search_fields = ("=user_id", "=guild_id")
    readonly_fields = ("created_by", "created_at", "updated_at")


@admin.register(UserBan)
class UserBanAdmin(admin.ModelAdmin):
    list_display = ("id", "user_id", "guild_id", "reason", "banned_by", "created_at", "expires_at", "lifted_at")
    search_fields = ("=user_id",)
    readonly_fields = ("created_at",)


@admin.register(SchemaMigration)
class SchemaMigrationAdmin(ReadOnlyAdmin):
    list_display = ("version", "name", "checksum", "applied_at")
