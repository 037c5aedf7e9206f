"""Writes, one module per concern; every function is keyword-only and typed.

The database owns the rules (legal transitions, derived timestamps, the event history);
these functions pass values through one statement each and translate the database's
refusals into ``tracking.errors``. Callers use them as ``services.admit_request(...)``.
"""

# The review queue, appeals, the bot's notices and the audit log's attribution are used as
# modules (services.review.claim, services.appeals.file_appeal, services.notices.notice_sent):
# their verbs would be ambiguous here.
from tracking.services import appeals, audit, burst, notices, prices, review
from tracking.services.admission import (
    NOTIFY_WORK_SQL,
    WORK_CHANNEL,
    Admission,
    VideoParameters,
    admit_request,
    clean_parameters,
    notify_work,
)
from tracking.services.derived import Derivable, derivation_source, derived_parameters
from tracking.services.moderation import (
    Removal,
    add_review_note,
    approve,
    ban_user,
    cancel_requests,
    clean_reason,
    discard_removed_outputs,
    flag,
    lift_bans,
    mark_unreviewed,
    refund_requests,
    remove_output,
    save_blocked_term,
    save_quota_policy,
)
from tracking.services.outbox import claim_discord_action, finish_discord_action
from tracking.services.queue import claim_next, claim_work, record_delivery, release, renew_lease
from tracking.services.replay import (
    record_journaled_delivery,
    record_journaled_start,
    record_quarantined,
    replay_journaled_request,
    resolve_quarantined,
)
from tracking.services.replies import ReplyTokenRow, forget_reply_token, keep_reply_tokens, live_reply_token
from tracking.services.requester import (
    REPORT_REASON_MAX,
    Cancelled,
    Removed,
    Reported,
    cancel_by_requester,
    remove_by_requester,
    report_request,
)
from tracking.services.transitions import (
    Transition,
    cancel,
    mark_completed,
    mark_ended,
    mark_failed,
    mark_generating,
    mark_timeout,
    refund,
)

__all__ = [
    "forget_reply_token",
    "keep_reply_tokens",
    "ReplyTokenRow",
    "live_reply_token",
    "Derivable",
    "derivation_source",
    "derived_parameters",
    "NOTIFY_WORK_SQL",
    "WORK_CHANNEL",
    "Admission",
    "VideoParameters",
    "admit_request",
    "clean_parameters",
    "notify_work",
    "Removal",
    "add_review_note",
    "approve",
    "ban_user",
    "cancel_requests",
    "Cancelled",
    "cancel_by_requester",
    "Removed",
    "remove_by_requester",
    "Reported",
    "REPORT_REASON_MAX",
    "report_request",
    "clean_reason",
    "discard_removed_outputs",
    "flag",
    "lift_bans",
    "mark_unreviewed",
    "refund_requests",
    "remove_output",
    "save_blocked_term",
    "save_quota_policy",
    "claim_discord_action",
    "finish_discord_action",
    "claim_next",
    "claim_work",
    "record_delivery",
    "release",
    "renew_lease",
    "replay_journaled_request",
    "record_journaled_delivery",
    "record_journaled_start",
    "record_quarantined",
    "resolve_quarantined",
    "Transition",
    "cancel",
    "mark_completed",
    "mark_ended",
    "mark_failed",
    "mark_generating",
    "mark_timeout",
    "refund",
    "appeals",
    "audit",
    "burst",
    "notices",
    "review",
    "prices",
]
