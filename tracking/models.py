"""Unmanaged models over the tables in migrations_sql/ (the SQL is the source of truth).

Django never creates or alters these tables. tests/test_models_match_schema.py compares
every model with information_schema so the two cannot drift apart.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now


class Status(models.TextChoices):
    PENDING = "pending"
    GENERATING = "generating"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


IN_FLIGHT_STATUSES = (Status.PENDING, Status.GENERATING)
TERMINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.TIMEOUT, Status.CANCELLED, Status.REJECTED)


class ReviewStatus(models.TextChoices):
    UNREVIEWED = "unreviewed"
    APPROVED = "approved"
    FLAGGED = "flagged"
    REMOVED = "removed"


class AspectRatio(models.TextChoices):
    LANDSCAPE = "16:9", "16:9 (landscape)"
    PORTRAIT = "9:16", "9:16 (portrait)"


class Resolution(models.TextChoices):
    HD = "720p"
    FULL_HD = "1080p"


class PersonGeneration(models.TextChoices):
    DONT_ALLOW = "dont_allow", "No people"
    ALLOW_ADULT = "allow_adult", "Adults only"
    ALLOW_ALL = "allow_all", "Anyone"


class Source(models.TextChoices):
    DISCORD = "discord"
    CLI = "cli"


class DeliveryMethod(models.TextChoices):
    INTERACTION = "interaction", "Edited the interaction response"
    CHANNEL = "channel", "Posted in the channel"
    CLI = "cli", "Printed by the CLI"
    UNDELIVERABLE = "undeliverable", "Could not be delivered"


DURATION_CHOICES = [(4, "4 s"), (6, "6 s"), (8, "8 s")]


class VideoRequest(models.Model):
    id = models.BigAutoField(primary_key=True)
    source = models.TextField(choices=Source.choices, db_default=Source.DISCORD)

    interaction_id = models.BigIntegerField(unique=True)
    user_id = models.BigIntegerField()
    guild_id = models.BigIntegerField(null=True, blank=True)
    channel_id = models.BigIntegerField(null=True, blank=True)

    prompt = models.TextField()
    negative_prompt = models.TextField(null=True, blank=True)
    duration_seconds = models.SmallIntegerField(choices=DURATION_CHOICES)
    aspect_ratio = models.TextField(choices=AspectRatio.choices)
    resolution = models.TextField(choices=Resolution.choices)
    generate_audio = models.BooleanField(db_default=True)
    person_generation = models.TextField(choices=PersonGeneration.choices, db_default=PersonGeneration.ALLOW_ADULT)
    seed = models.BigIntegerField(null=True, blank=True)
    model = models.TextField()

    status = models.TextField(choices=Status.choices)
    operation_name = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    available_at = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.GeneratedField(
        expression=models.expressions.RawSQL("(extract(epoch FROM (completed_at - started_at)) * 1000)::integer", ()),
        output_field=models.IntegerField(null=True),
        db_persist=True,
    )

    output_uris = ArrayField(models.TextField(), db_default="{}", blank=True)
    public_urls = ArrayField(models.TextField(), db_default="{}", blank=True)
    output_size_bytes = models.BigIntegerField(null=True, blank=True)
    safety_filtered_count = models.IntegerField(db_default=0)
    safety_filtered_reasons = ArrayField(models.TextField(), db_default="{}", blank=True)
    error_code = models.TextField(null=True, blank=True)
    error_message = models.TextField(null=True, blank=True)

    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_method = models.TextField(choices=DeliveryMethod.choices, null=True, blank=True)
    discord_message_id = models.BigIntegerField(null=True, blank=True)
    delivery_error = models.TextField(null=True, blank=True)

    counts_toward_quota = models.BooleanField()

    claimed_by = models.TextField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.IntegerField(db_default=0)

    review_status = models.TextField(choices=ReviewStatus.choices, db_default=ReviewStatus.UNREVIEWED)
    reviewed_by = models.TextField(null=True, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "video_requests"
        ordering = ["-id"]
        verbose_name = "video request"

    def __str__(self) -> str:
        return f"#{self.id} {self.status}"


class EventKind(models.TextChoices):
    CREATED = "created"
    STATUS_CHANGED = "status_changed"
    REFUNDED = "refunded"
    REVIEW_CHANGED = "review_changed"
    DELIVERED = "delivered"
    RELEASED = "released"
    NOTE = "note"
    USER_BANNED = "user_banned"
    OUTPUT_REMOVED = "output_removed"


class VideoRequestEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    request = models.ForeignKey(VideoRequest, on_delete=models.DO_NOTHING, related_name="events",
                                db_column="request_id")
    at = models.DateTimeField(db_default=Now())
    kind = models.TextField(choices=EventKind.choices)
    from_status = models.TextField(null=True, blank=True)
    to_status = models.TextField(null=True, blank=True)
    actor = models.TextField(db_default="system")
    detail = models.JSONField(db_default={})

    class Meta:
        managed = False
        db_table = "video_request_events"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} on #{self.request_id}"


class QuotaPolicy(models.Model):
    id = models.BigAutoField(primary_key=True)
    user_id = models.BigIntegerField(null=True, blank=True, help_text="Applies to this user (with guild: only there).")
    guild_id = models.BigIntegerField(null=True, blank=True, help_text="Applies to everyone in this guild.")
    quota_limit = models.IntegerField(help_text="Videos allowed per window.")
    quota_window = models.DurationField(help_text="Rolling window, e.g. 1 00:00:00 for a day.")
    max_in_flight = models.IntegerField(null=True, blank=True, help_text="Queued or generating at once (blank: no cap).")
    note = models.TextField(db_default="", blank=True)
    created_by = models.TextField(db_default="system")
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "quota_policies"
        verbose_name_plural = "quota policies"

    def __str__(self) -> str:
        return f"{self.quota_limit} per {self.quota_window}"


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
    kind = models.TextField(choices=BlockedTermKind.choices, db_default=BlockedTermKind.WORD,
                            default=BlockedTermKind.WORD)
    pattern = models.TextField(help_text="A word or phrase (matched whole, any case), or a PostgreSQL regular "
                                         "expression (any case; at most 200 characters, no back-references).")
    match_pattern = models.GeneratedField(
        expression=models.expressions.RawSQL(
            "CASE WHEN kind = 'word' THEN '(^|[^[:alnum:]_])' || regexp_replace(pattern, "
            "'([.^$*+?()\\[\\]{}|\\\\-])', '\\\\\\1', 'g') || '($|[^[:alnum:]_])' ELSE pattern END", ()),
        output_field=models.TextField(),
        db_persist=True,
    )
    message = models.TextField(db_default="", default="", blank=True,
                               help_text="Shown to the user after \"prompt refused: \" (blank: a standard message).")
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
    request = models.ForeignKey(VideoRequest, on_delete=models.DO_NOTHING, related_name="discord_actions",
                                db_column="request_id")
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


class SchemaMigration(models.Model):
    version = models.IntegerField(primary_key=True)
    name = models.TextField()
    checksum = models.TextField()
    applied_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "schema_migrations"
        ordering = ["version"]

    def __str__(self) -> str:
        return f"{self.version:04d}_{self.name}"


class VeoStartSlot(models.Model):
    id = models.BigAutoField(primary_key=True)
    request = models.ForeignKey(VideoRequest, on_delete=models.DO_NOTHING, db_column="request_id",
                                related_name="start_slots")
    worker = models.TextField()
    granted_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "veo_start_slots"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"start of #{self.request_id} by {self.worker}"


class DashboardSnapshot(models.Model):
    """The dashboard of one period, kept by the workers (tracking/dashboards.py)."""

    days = models.SmallIntegerField(primary_key=True)
    until = models.DateTimeField()
    computed_at = models.DateTimeField(db_default=Now())
    compute_ms = models.IntegerField()
    data = models.JSONField()

    class Meta:
        managed = False
        db_table = "dashboard_snapshots"

    def __str__(self) -> str:
        return f"dashboard of {self.days} day(s) until {self.until:%Y-%m-%d %H:%M}"


class LoginFailure(models.Model):
    """A recent admin sign-in that failed or is being checked (tracking/throttle.py)."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(db_default=Now())
    username_key = models.TextField()  # keyed hash of the user name typed, never the name itself
    client_ip = models.TextField()

    class Meta:
        managed = False
        db_table = "login_failures"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"failed sign-in from {self.client_ip}"


class LifecycleOperation(models.TextChoices):
    PURGE_REQUESTS = "purge_requests", "Retention purge"
    ERASE_USER = "erase_user", "Erasure of a user's data"


class LifecycleOutcome(models.TextChoices):
    RUNNING = "running"
    DONE = "done"
    INTERRUPTED = "interrupted"


class DataLifecycleAudit(models.Model):
    """One purge or erasure: who, when, with what parameters, and how much was deleted."""

    id = models.BigAutoField(primary_key=True)
    operation = models.TextField(choices=LifecycleOperation.choices)
    actor = models.TextField()
    subject_key = models.TextField(null=True, blank=True, help_text="Keyed hash of the erased user's id.")
    parameters = models.JSONField(db_default={})
    counts = models.JSONField(db_default={})
    started_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(choices=LifecycleOutcome.choices, db_default=LifecycleOutcome.RUNNING)

    class Meta:
        managed = False
        db_table = "data_lifecycle_audit"
        ordering = ["-id"]
        verbose_name = "data lifecycle record"

    def __str__(self) -> str:
        return f"{self.operation} #{self.id}"


class QuarantineResolution(models.TextChoices):
    REPLAYED = "replayed"
    DISCARDED = "discarded"


class JournalQuarantine(models.Model):
    """A degraded-mode journal entry that could not be replayed, as its bot reported it."""

    id = models.BigAutoField(primary_key=True)
    entry_key = models.TextField(unique=True, help_text="The host that keeps the entry and its file name.")
    host = models.TextField()
    interaction_id = models.BigIntegerField(null=True, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    kind = models.TextField(choices=[("request", "request"), ("line", "unreadable line")])
    error = models.TextField()
    entry = models.TextField(help_text="The entry as JSON text.")
    quarantined_at = models.DateTimeField()
    reported_at = models.DateTimeField(db_default=Now())
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(choices=QuarantineResolution.choices, null=True, blank=True)
    resolved_by = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "journal_quarantine"
        ordering = ["-id"]
        verbose_name = "quarantined journal entry"
        verbose_name_plural = "quarantined journal entries"

    def __str__(self) -> str:
        return self.entry_key
