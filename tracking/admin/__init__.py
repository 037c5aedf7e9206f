"""The moderation panel: request facts are read-only, moderation goes through services."""

from django.contrib import admin

from tracking.admin.audit import ModerationLogAdmin
from tracking.admin.forms import ThrottledLoginForm
from tracking.admin.policies import (
    BlockedTermAdmin,
    DataLifecycleAuditAdmin,
    DiscordActionAdmin,
    JournalQuarantineAdmin,
    QuotaPolicyAdmin,
    ReportAdmin,
    SchemaMigrationAdmin,
    UserBanAdmin,
)
from tracking.admin.prices import VeoPriceAdmin
from tracking.admin.queue import ReviewItemAdmin
from tracking.admin.requests import VideoRequestAdmin
from tracking.models import (
    BlockedTerm,
    DataLifecycleAudit,
    DiscordAction,
    JournalQuarantine,
    ModerationLogEntry,
    QuotaPolicy,
    Report,
    ReviewItem,
    SchemaMigration,
    UserBan,
    VeoPrice,
    VideoRequest,
)

admin.site.register(VideoRequest, VideoRequestAdmin)
admin.site.register(UserBan, UserBanAdmin)
admin.site.register(QuotaPolicy, QuotaPolicyAdmin)
admin.site.register(VeoPrice, VeoPriceAdmin)
admin.site.register(BlockedTerm, BlockedTermAdmin)
admin.site.register(DiscordAction, DiscordActionAdmin)
admin.site.register(SchemaMigration, SchemaMigrationAdmin)
admin.site.register(DataLifecycleAudit, DataLifecycleAuditAdmin)
admin.site.register(JournalQuarantine, JournalQuarantineAdmin)
admin.site.register(Report, ReportAdmin)
admin.site.register(ReviewItem, ReviewItemAdmin)
admin.site.register(ModerationLogEntry, ModerationLogAdmin)
admin.site.login_form = ThrottledLoginForm
admin.site.site_header = "veobot moderation"
# Django's model sidebar takes a fifth of a laptop's width from the requests list; the index page
# and the breadcrumbs lead everywhere it does.
admin.site.enable_nav_sidebar = False
admin.site.site_title = "veobot"
admin.site.index_title = "Requests, quotas and bans"
admin.site.index_template = "admin/veobot/index.html"  # adds the dashboard link
