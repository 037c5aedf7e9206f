"""The review queue and what surrounds it: items, moderators' notes, appeals of bans, the
notices that tell users a decision, and the moderators' audit log (migrations_sql/0018)."""

from django.db import models
from django.db.models.functions import Now

from tracking.models.moderation import UserBan
from tracking.models.requests import VideoRequest


class AppealState(models.TextChoices):
    OPEN = "open", "Open"
    GRANTED = "granted", "Granted (ban lifted)"
    DENIED = "denied", "Denied"


class Appeal(models.Model):
    """A banned user's /appeal of one ban."""

    id = models.BigAutoField(primary_key=True)
    ban = models.ForeignKey(UserBan, on_delete=models.DO_NOTHING, db_column="ban_id", related_name="appeals")
    user_id = models.BigIntegerField()
    interaction_id = models.BigIntegerField(null=True, blank=True, unique=True)
    body = models.TextField()
    state = models.TextField(choices=AppealState.choices, db_default=AppealState.OPEN)
    created_at = models.DateTimeField(db_default=Now())
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.TextField(null=True, blank=True)
    decision_reason = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "appeals"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"appeal {self.id} of ban {self.ban_id}"


class ItemKind(models.TextChoices):
    REPORT = "report", "User report"
    SAFETY_FILTER = "safety_filter", "Veo safety filter"
    BLOCKED_TERM = "blocked_term", "Blocked term"
    REPEATED_REFUSALS = "repeated_refusals", "Repeated refusals"
    APPEAL = "appeal", "Appeal"


class ItemState(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REMOVE_OUTPUT = "remove_output", "Remove the output"
    BAN = "ban", "Ban the user"
    DISMISS = "dismiss", "Dismiss"


class ReviewItem(models.Model):
    """One thing for a moderator to decide; made by the database (see 0018's triggers)."""

    id = models.BigAutoField(primary_key=True)
    kind = models.TextField(choices=ItemKind.choices)
    subject_key = models.TextField()
    user_id = models.BigIntegerField()
    guild_id = models.BigIntegerField(null=True, blank=True)
    request = models.ForeignKey(
        VideoRequest,
        on_delete=models.DO_NOTHING,
        db_column="request_id",
        related_name="review_items",
        null=True,
        blank=True,
    )
    appeal = models.ForeignKey(
        Appeal, on_delete=models.DO_NOTHING, db_column="appeal_id", related_name="items", null=True, blank=True
    )
    summary = models.TextField()
    hits = models.IntegerField(db_default=1)
    state = models.TextField(choices=ItemState.choices, db_default=ItemState.OPEN)
    created_at = models.DateTimeField(db_default=Now())
    last_hit_at = models.DateTimeField(db_default=Now())
    claimed_by = models.TextField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    decision = models.TextField(choices=Decision.choices, null=True, blank=True)
    resolution_reason = models.TextField(null=True, blank=True)
    resolved_by = models.TextField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    announced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "review_items"
        ordering = ["created_at", "id"]
        verbose_name = "review item"

    def __str__(self) -> str:
        return f"#{self.id} {self.get_kind_display().lower()}"


class ReviewNote(models.Model):
    id = models.BigAutoField(primary_key=True)
    item = models.ForeignKey(ReviewItem, on_delete=models.DO_NOTHING, db_column="item_id", related_name="notes")
    author = models.TextField()
    body = models.TextField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "review_notes"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"note {self.id} on item {self.item_id}"


class UserNotice(models.Model):
    """A decision's message to a user: by DM, else at their next command (delivered_via)."""

    id = models.BigAutoField(primary_key=True)
    user_id = models.BigIntegerField()
    appeal = models.ForeignKey(
        Appeal, on_delete=models.DO_NOTHING, db_column="appeal_id", related_name="notices", null=True, blank=True
    )
    body = models.TextField()
    created_at = models.DateTimeField(db_default=Now())
    not_before = models.DateTimeField(db_default=Now())
    attempts = models.IntegerField(db_default=0)
    dm_refused_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivered_via = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "user_notices"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"notice {self.id} to {self.user_id}"


class ModerationLogEntry(models.Model):
    """One change made as a moderator, written by the database's audit triggers."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(db_default=Now())
    actor = models.TextField()
    action = models.TextField()
    target_table = models.TextField()
    target_id = models.BigIntegerField(null=True, blank=True)
    subject_user_id = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(null=True, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "moderation_log"
        ordering = ["-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target_table} {self.target_id}"
