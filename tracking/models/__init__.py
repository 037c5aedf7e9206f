"""Unmanaged models over the tables in migrations_sql/ (the SQL is the source of truth).

Django never creates or alters these tables. tests/test_models_match_schema.py compares
every model with information_schema so the two cannot drift apart. One module per concern;
import them from here (``from tracking.models import VideoRequest``).
"""

from tracking.models.moderation import (
    BlockedTerm,
    BlockedTermKind,
    DiscordAction,
    DiscordActionKind,
    QuotaPolicy,
    Report,
    ReportState,
    UserBan,
)
from tracking.models.operations import (
    DashboardSnapshot,
    DataLifecycleAudit,
    JournalQuarantine,
    LifecycleOperation,
    LifecycleOutcome,
    LoginFailure,
    QuarantineResolution,
    ReplyToken,
    SchemaMigration,
    VeoStartSlot,
)
from tracking.models.requests import (
    DURATION_CHOICES,
    IN_FLIGHT_STATUSES,
    TERMINAL_STATUSES,
    AspectRatio,
    DeliveryMethod,
    DerivedAs,
    EventKind,
    PersonGeneration,
    Resolution,
    ReviewStatus,
    Source,
    Status,
    VideoRequest,
    VideoRequestEvent,
)

__all__ = [
    "DerivedAs",
    "Status",
    "ReviewStatus",
    "AspectRatio",
    "Resolution",
    "PersonGeneration",
    "Source",
    "DeliveryMethod",
    "VideoRequest",
    "EventKind",
    "VideoRequestEvent",
    "IN_FLIGHT_STATUSES",
    "TERMINAL_STATUSES",
    "DURATION_CHOICES",
    "QuotaPolicy",
    "UserBan",
    "BlockedTermKind",
    "BlockedTerm",
    "DiscordActionKind",
    "DiscordAction",
    "SchemaMigration",
    "VeoStartSlot",
    "ReplyToken",
    "DashboardSnapshot",
    "LoginFailure",
    "LifecycleOperation",
    "LifecycleOutcome",
    "DataLifecycleAudit",
    "QuarantineResolution",
    "JournalQuarantine",
    "Report",
    "ReportState",
]
