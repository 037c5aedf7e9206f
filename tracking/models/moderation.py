"""What moderators set and what they ask the bots to do: quota policies, bans, blocked terms,
the outbox (discord_actions); and what users report to them (reports)."""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now

from tracking.durations import humanize_duration
from tracking.models.requests import VideoRequest


class QuotaPolicy(models.Model):
    id = models.BigAutoField(primary_key=True)
    user_id = models.BigIntegerField(null=True, blank=True, help_text="Applies to this user (with guild: only there).")
    guild_id = models.BigIntegerField(null=True, blank=True, help_text="Applies to everyone in this guild.")
    role_id = models.BigIntegerField(
        null=True, blank=True, help_text="Applies to members of this guild holding this Discord role (needs the guild)."
    )
    role_label = models.TextField(null=True, blank=True, help_text="The role's name, for people reading this list.")
    quota_limit = models.IntegerField(help_text="Videos allowed per window.")
    quota_window = models.DurationField(help_text='Rolling window: "24h", "7d", "1h 30m".')
    max_in_flight = models.IntegerField(
        null=True, blank=True, help_text="Queued or generating at once (blank: no cap)."
    )
    priority = models.SmallIntegerField(
        default=0, help_text="Higher starts sooner when requests wait for Veo (-100 to 100; 0 is the default)."
    )
    budget_usd = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="USD each user may spend per budget window."
    )
    budget_window = models.DurationField(null=True, blank=True, help_text='Rolling window of the budget: "24h", "30d".')
    guild_budget_usd = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="USD the whole guild may spend per its window, all users together (guild policies only).",
    )
    guild_budget_window = models.DurationField(null=True, blank=True, help_text="Rolling window of the guild budget.")
    note = models.TextField(db_default="", blank=True)
    created_by = models.TextField(db_default="system")
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "quota_policies"
        verbose_name_plural = "quota policies"

    def __str__(self) -> str:
        return f"{self.quota_limit} per {humanize_duration(self.quota_window)}"


class UserBan(models.Model):
    id = models.BigAutoField(primary_key=True)
    user_id = models.BigIntegerField()
    guild_id = models.BigIntegerField(null=True, blank=True, help_text="Blank: banned everywhere.")
    reason = models.TextField()
    banned_by = models.TextField()
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Blank: permanent.")
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "user_bans"

    def __str__(self) -> str:
        return f"ban of {self.user_id}"


class BlockedTermKind(models.TextChoices):
    WORD = "word", "Word or phrase"
    REGEX = "regex", "Regular expression"


class BlockedTerm(models.Model):
    id = models.BigAutoField(primary_key=True)
    guild_id = models.BigIntegerField(null=True, blank=True, help_text="Blank: blocked everywhere.")
    kind = models.TextField(
        choices=BlockedTermKind.choices, db_default=BlockedTermKind.WORD, default=BlockedTermKind.WORD
    )
    pattern = models.TextField(
        help_text="A word or phrase (matched whole, any case), or a PostgreSQL regular "
        "expression (any case; at most 200 characters, no back-references)."
    )
    match_pattern = models.GeneratedField(
        expression=models.expressions.RawSQL(
            "CASE WHEN kind = 'word' THEN '(^|[^[:alnum:]_])' || regexp_replace(pattern, "
            "'([.^$*+?()\\[\\]{}|\\\\-])', '\\\\\\1', 'g') || '($|[^[:alnum:]_])' ELSE pattern END",
            (),
        ),
        output_field=models.TextField(),
        db_persist=True,
    )
    message = models.TextField(
        db_default="",
        default="",
        blank=True,
        help_text='Shown to the user after "prompt refused: " (blank: a standard message).',
    )
    enabled = models.BooleanField(db_default=True, default=True)
    created_by = models.TextField(db_default="system")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "blocked_terms"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.pattern!r}"


class DiscordActionKind(models.TextChoices):
    DELETE_MESSAGE = "delete_message", "Delete the Discord message"
    DELETE_GCS_OBJECTS = "delete_gcs_objects", "Delete the bucket objects"


class DiscordAction(models.Model):
    """Outbox the bot consumes: the web process asks, the bot (which holds the token and the
    bucket credentials) acts. An action is pending until done_at or failed_at ends it."""

    id = models.BigAutoField(primary_key=True)
    request = models.ForeignKey(
        VideoRequest, on_delete=models.DO_NOTHING, related_name="discord_actions", db_column="request_id"
    )
    action = models.TextField(choices=DiscordActionKind.choices)
    channel_id = models.BigIntegerField(null=True, blank=True)  # delete_message only
    message_id = models.BigIntegerField(null=True, blank=True)  # delete_message only
    object_uris = ArrayField(models.TextField(), null=True, blank=True)  # delete_gcs_objects only
    requested_by = models.TextField()
    reason = models.TextField()
    created_at = models.DateTimeField(db_default=Now())
    done_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)  # given up; last_error says why
    attempts = models.IntegerField(db_default=0)
    last_error = models.TextField(null=True, blank=True)
    not_before = models.DateTimeField(db_default=Now())  # the claiming bot's lease, or the retry backoff

    class Meta:
        managed = False
        db_table = "discord_actions"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.action} for #{self.request_id}"


class ReportState(models.TextChoices):
    OPEN = "open", "Open"
    DISMISSED = "dismissed", "Dismissed"
    ACTIONED = "actioned", "Acted on"


class Report(models.Model):
    """A delivered video reported by a Discord user (its Report button), with their reason."""

    id = models.BigAutoField(primary_key=True)
    request = models.ForeignKey(
        VideoRequest, on_delete=models.DO_NOTHING, related_name="reports", db_column="request_id"
    )
    reporter_id = models.BigIntegerField(help_text="The Discord user who reported it.")
    guild_id = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField()
    state = models.TextField(choices=ReportState.choices, db_default=ReportState.OPEN)
    created_at = models.DateTimeField(db_default=Now())
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "reports"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"report {self.id} of #{self.request_id}"
