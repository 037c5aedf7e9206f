"""What keeps the system running: applied SQL migrations, the start budget, dashboard snapshots,
the sign-in throttle, the data lifecycle audit, quarantined journal entries."""

from django.db import models
from django.db.models.functions import Now

from tracking.models.requests import VideoRequest


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


class FairShareClock(models.Model):
    """The fair-share virtual time (one row): the highest round a started request had."""

    only_row = models.BooleanField(primary_key=True, db_default=True)
    round = models.BigIntegerField(db_default=0)

    class Meta:
        managed = False
        db_table = "fair_share_clock"

    def __str__(self) -> str:
        return f"fair-share round {self.round}"


class FairShareTurns(models.Model):
    """How many requests a guild (or, for direct messages, -user id) has put into a fair-share
    round: the next one's turn. Written only by the insert trigger (0025)."""

    pk = models.CompositePrimaryKey("guild_key", "round")
    guild_key = models.BigIntegerField()
    round = models.BigIntegerField()
    turns = models.IntegerField()

    class Meta:
        managed = False
        db_table = "fair_share_turns"


class VeoStartSlot(models.Model):
    id = models.BigAutoField(primary_key=True)
    request = models.ForeignKey(
        VideoRequest, on_delete=models.DO_NOTHING, db_column="request_id", related_name="start_slots"
    )
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


class ReplyToken(models.Model):
    """The token of a reply awaiting its outcome (discordbot.discord_delivery). A secret while it
    lives: no admin page, export or log shows it, and __str__ leaves it out."""

    interaction_id = models.BigIntegerField(primary_key=True)
    application_id = models.BigIntegerField()
    token = models.TextField()
    size_limit = models.IntegerField()
    expires_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "reply_tokens"

    def __str__(self) -> str:
        return f"reply token of interaction {self.interaction_id}"
