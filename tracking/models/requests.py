"""The request and its history: video_requests, video_request_events, and their value sets."""

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.search import SearchVectorField
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
    HD = "720p", "720p"
    FULL_HD = "1080p", "1080p"


class PersonGeneration(models.TextChoices):
    DONT_ALLOW = "dont_allow", "No people"
    ALLOW_ADULT = "allow_adult", "Adults only"
    ALLOW_ALL = "allow_all", "Anyone"


class Source(models.TextChoices):
    DISCORD = "discord", "Discord"
    CLI = "cli", "command line"


class DerivedAs(models.TextChoices):
    """How a request was made from another (its parent), from the buttons on a result."""

    REROLL = "reroll", "Re-roll"
    EDIT = "edit", "Edit"
    EXTEND = "extend", "Extension"


class DeliveryMethod(models.TextChoices):
    INTERACTION = "interaction", "Edited the interaction response"
    CHANNEL = "channel", "Posted in the channel"
    CLI = "cli", "Printed by the CLI"
    UNDELIVERABLE = "undeliverable", "Could not be delivered"


DURATION_CHOICES = [(4, "4 s"), (6, "6 s"), (8, "8 s")]


class WithoutSearchVector(models.Manager):
    """Rows without prompt_tsv: only the database's search reads it, and it is as large as the
    prompt, so no page or service loads it."""

    def get_queryset(self):
        return super().get_queryset().defer("prompt_tsv")


class VideoRequest(models.Model):
    objects = WithoutSearchVector()

    id = models.BigAutoField(primary_key=True)
    source = models.TextField(choices=Source.choices, db_default=Source.DISCORD)

    interaction_id = models.BigIntegerField(unique=True)
    user_id = models.BigIntegerField()
    guild_id = models.BigIntegerField(null=True, blank=True)
    channel_id = models.BigIntegerField(null=True, blank=True)

    prompt = models.TextField()
    # The prompt's text-search vector, stored by the database for the moderation search
    # (tracking/search.py); never loaded (see WithoutSearchVector).
    prompt_tsv = models.GeneratedField(
        expression=models.expressions.RawSQL("to_tsvector('english'::regconfig, prompt)", ()),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    negative_prompt = models.TextField(null=True, blank=True)
    duration_seconds = models.SmallIntegerField(choices=DURATION_CHOICES)
    aspect_ratio = models.TextField(choices=AspectRatio.choices)
    resolution = models.TextField(choices=Resolution.choices)
    generate_audio = models.BooleanField(db_default=True)
    person_generation = models.TextField(choices=PersonGeneration.choices, db_default=PersonGeneration.ALLOW_ADULT)
    seed = models.BigIntegerField(null=True, blank=True)
    model = models.TextField()
    # Higher starts sooner among waiting requests; copied from the admitting policy.
    priority = models.SmallIntegerField(db_default=0)
    # USD, set by the database (never written here): the estimate on insert (price in effect at
    # created_at x duration; 0 if rejected; NULL if no price was known), the final cost at the end
    # (the estimate while it counts toward quota, 0 once refunded).
    cost_estimated_usd = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    cost_final_usd = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    # Stamped by the database on insert (video_requests_take_turn): the fair-share start order is
    # (fair_round, fair_turn, id) among pending requests. Never written by Python.
    fair_round = models.BigIntegerField(db_default=0, editable=False)
    fair_turn = models.IntegerField(db_default=0, editable=False)

    # The database sets parent_id to NULL when the parent is erased (ON DELETE SET NULL).
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.DO_NOTHING, related_name="children", db_constraint=False
    )
    derived_as = models.TextField(choices=DerivedAs.choices, null=True, blank=True)
    image_uri = models.TextField(null=True, blank=True)
    last_frame_uri = models.TextField(null=True, blank=True)
    video_input_uri = models.TextField(null=True, blank=True)

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
    REPORTED = "reported"


class VideoRequestEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    request = models.ForeignKey(
        VideoRequest, on_delete=models.DO_NOTHING, related_name="events", db_column="request_id"
    )
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
