"""factory-boy factories over the unmanaged models.

VideoRequestFactory writes *historical* rows: any status and explicit timestamps, inserted
with triggers off (session_replication_role = replica, as a bulk import would). Tests of
the lifecycle rules themselves go through tracking.services instead.
"""

from datetime import timedelta
from itertools import count

import factory
from django.db import connection, transaction
from django.utils import timezone

from tracking.models import QuotaPolicy, UserBan, VideoRequest

_snowflakes = count(10**17)


def snowflake() -> int:
    return next(_snowflakes)


class VideoRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VideoRequest

    interaction_id = factory.LazyFunction(snowflake)
    user_id = 1001
    guild_id = 2001
    channel_id = 3001
    prompt = factory.Sequence(lambda n: f"a red fox running through fresh snow, take {n}")
    duration_seconds = 4
    aspect_ratio = "16:9"
    resolution = "720p"
    model = "veo-3.1-generate-001"
    status = "completed"
    counts_toward_quota = factory.LazyAttribute(
        lambda o: o.status not in ("rejected", "failed", "timeout", "cancelled")
    )
    created_at = factory.LazyFunction(timezone.now)
    started_at = factory.LazyAttribute(
        lambda o: o.created_at + timedelta(seconds=1) if o.status not in ("pending", "rejected") else None
    )
    completed_at = factory.LazyAttribute(
        lambda o: o.started_at + timedelta(seconds=40) if o.status in ("completed", "failed", "timeout") else None
    )
    operation_name = factory.LazyAttribute(lambda o: "projects/p/locations/l/operations/x" if o.started_at else None)
    output_uris = factory.LazyAttribute(lambda o: ["file:sample.mp4"] if o.status == "completed" else [])
    error_code = factory.LazyAttribute(
        lambda o: {"failed": "backend_error", "timeout": "timeout", "rejected": "quota_exceeded"}.get(o.status)
    )

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # SET LOCAL, in a transaction of its own: outside one, a plain SET would stay with the
        # server connection, and behind PgBouncer that is someone else's next.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
            row = super()._create(model_class, *args, **kwargs)
            cursor.execute("SET LOCAL session_replication_role = origin")
            return row


class QuotaPolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = QuotaPolicy

    quota_limit = 3
    quota_window = timedelta(hours=24)


class UserBanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UserBan

    user_id = 1001
    reason = "spamming the channel"
    banned_by = "mod"
