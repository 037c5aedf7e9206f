"""purge_requests and erase_user against the real database and real files."""

import io
from datetime import timedelta

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from tests.concurrency import conninfo
from tests.factories import QuotaPolicyFactory, UserBanFactory, VideoRequestFactory
from tests.helpers import admit, next_interaction
from tests.workers import truncate_requests
from tracking import lifecycle, selectors, services
from tracking.models import (
    DataLifecycleAudit,
    ModerationLogEntry,
    QuotaPolicy,
    Report,
    ReviewItem,
    UserBan,
    UserNotice,
    VideoRequest,
    VideoRequestEvent,
)

pytestmark = [pytest.mark.django_db, pytest.mark.sql]


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def with_video(media_root, days: float, **fields) -> VideoRequest:
    """A finished request with a local file and two events, created `days` ago."""
    row = VideoRequestFactory(created_at=days_ago(days), **fields)
    path = media_root / f"{row.id}.mp4"
    path.write_bytes(b"video")
    VideoRequest.objects.filter(id=row.id).update(output_uris=[f"file:{row.id}.mp4"])
    services.add_review_note(request_id=row.id, actor="mod", reason="seen")
    services.add_review_note(request_id=row.id, actor="mod", reason="seen again")
    return row


@pytest.fixture
def retention(settings):
    settings.REQUEST_RETENTION_DAYS = 30
    return settings


# -- purge ----------------------------------------------------------------------------------


def test_purge_deletes_old_finished_requests_in_batches_and_keeps_the_rest(media_root, retention):
    old = [with_video(media_root, 40 + n) for n in range(5)]
    old_rejected = VideoRequestFactory(created_at=days_ago(50), status="rejected")
    in_flight = [VideoRequestFactory(created_at=days_ago(60), status=s) for s in ("pending", "generating")]
    leased = VideoRequestFactory(
        created_at=days_ago(60), claimed_by="w1", lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    recent = with_video(media_root, 10)

    out = run("purge_requests", "--batch", "2", "--actor", "ops")

    assert "deleted 6 finished requests created before" in out and "with 10 events and 5 local files" in out
    assert out.count("... ") == 3  # 2 + 2 + 2 rows: three short transactions
    kept = set(VideoRequest.objects.values_list("id", flat=True))
    assert kept == {r.id for r in (*in_flight, leased, recent)}
    assert not VideoRequestEvent.objects.filter(request_id__in=[r.id for r in old]).exists()
    assert sorted(p.name for p in media_root.iterdir()) == [f"{recent.id}.mp4"]
    audit = DataLifecycleAudit.objects.get()
    assert (audit.operation, audit.actor, audit.outcome, audit.subject_key) == ("purge_requests", "ops", "done", None)
    assert audit.counts == {
        "requests": 6,
        "events": 10,
        "local_files": 5,
        "gcs_objects_deleted": 0,
        "gcs_objects_left": 0,
    }
    assert audit.parameters["batch"] == 2 and audit.finished_at is not None
    assert old_rejected.id not in kept


def test_dry_run_counts_and_changes_nothing(media_root, retention):
    with_video(media_root, 40)
    VideoRequestFactory(created_at=days_ago(40), output_uris=["gs://bucket/a.mp4"])
    out = run("purge_requests", "--dry-run")
    assert out.startswith("dry run: would delete 2 finished requests")
    assert out.endswith("with 2 events, 1 local files and 1 gs:// objects\n")
    assert VideoRequest.objects.count() == 2 and len(list(media_root.iterdir())) == 1
    assert not DataLifecycleAudit.objects.exists()


def test_retention_zero_keeps_everything(media_root, settings):
    settings.REQUEST_RETENTION_DAYS = 0
    with_video(media_root, 4000)
    assert run("purge_requests") == "retention is 0 (keep forever): nothing to purge\n"
    assert VideoRequest.objects.count() == 1


def test_the_purge_never_reaches_inside_a_quota_window(retention):
    """A 90-day policy: rows 60 days old still count toward that quota, so they stay."""
    QuotaPolicyFactory(user_id=1001, quota_limit=2, quota_window=timedelta(days=90))
    for _ in range(2):
        VideoRequestFactory(created_at=days_ago(60), user_id=1001)
    before = selectors.quota_status(user_id=1001, guild_id=2001)
    assert "deleted 0 " in run("purge_requests")
    assert VideoRequest.objects.count() == 2
    assert selectors.quota_status(user_id=1001, guild_id=2001) == before and before.remaining == 0


@pytest.mark.django_db(transaction=True)
def test_a_row_locked_elsewhere_is_skipped_not_waited_for(db_settings, retention):
    truncate_requests()  # committed rows of earlier tests would be purged too
    rows = [VideoRequestFactory(created_at=days_ago(40)) for _ in range(3)]
    with psycopg.connect(**conninfo(db_settings)) as other:
        other.execute("SELECT 1 FROM video_requests WHERE id = %s FOR UPDATE", [rows[0].id])
        assert "deleted 2 " in run("purge_requests", "--batch", "1")
        other.rollback()
    assert list(VideoRequest.objects.values_list("id", flat=True)) == [rows[0].id]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--batch", "0"), "--batch must be at least 1"),
        (("--actor", "x" * 201), "the actor recorded in the audit must be 1 to 200 characters"),
        (("--actor", "ops\x00"), "actor"),
    ],
)
def test_bad_options_are_refused_and_change_nothing(media_root, retention, args, message):
    with_video(media_root, 40)
    with pytest.raises(CommandError, match=message):
        run("purge_requests", *args)
    assert VideoRequest.objects.count() == 1 and not DataLifecycleAudit.objects.exists()


def test_audit_records_cannot_be_deleted_or_rewritten(retention):
    run("purge_requests")
    audit = DataLifecycleAudit.objects.get()
    for statement in ("DELETE FROM data_lifecycle_audit", "UPDATE data_lifecycle_audit SET counts = '{}'"):
        with (
            pytest.raises(Exception, match="data_lifecycle_audit keeps its records"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    assert DataLifecycleAudit.objects.get().counts == audit.counts


# -- erasure --------------------------------------------------------------------------------


@pytest.fixture
def subject(media_root):
    """User 4242's data of every kind, and someone else's."""
    rows = [
        with_video(media_root, 400, user_id=4242),
        with_video(media_root, 1, user_id=4242),
        VideoRequestFactory(user_id=4242, status="rejected"),
    ]
    QuotaPolicyFactory(user_id=4242, quota_limit=9)
    UserBanFactory(user_id=4242, lifted_at=timezone.now(), lifted_by="mod")
    other = with_video(media_root, 1, user_id=7)
    UserBanFactory(user_id=7)
    # What moderation keeps about them: a report of their video (a queue item), a moderator's
    # action on it (audit log), a notice, and a report they filed about someone else's.
    services.report_request(interaction_id=rows[0].interaction_id, reporter_id=9, guild_id=None, reason="gross")
    services.flag(request_ids=[rows[0].id], actor="mod", reason="odd")
    UserNotice.objects.create(user_id=4242, body="your appeal was denied")
    services.report_request(interaction_id=other.interaction_id, reporter_id=4242, guild_id=None, reason="meh")
    return rows, other


def test_erasure_needs_confirmation_and_changes_nothing_without_it(subject):
    with pytest.raises(CommandError, match="cannot be undone; run again with --yes to confirm"):
        run("erase_user", "4242")
    assert VideoRequest.objects.filter(user_id=4242).count() == 3 and not DataLifecycleAudit.objects.exists()


def test_erasure_deletes_the_users_data_and_keeps_others(subject, media_root):
    rows, other = subject
    ban_in_force = UserBanFactory(user_id=4242, reason="abuse")
    out = run("erase_user", "4242", "--yes", "--actor", "dpo")
    # 6 events: one per row as the factory made them, a "reported" and a "review_changed"
    assert out.startswith("erased user 4242: 3 requests, 6 events, 2 local files, 1 quota policies, 1 old bans")
    assert "kept 1 ban(s) in force" in out

    assert not VideoRequest.objects.filter(user_id=4242).exists()
    assert not VideoRequestEvent.objects.filter(request_id__in=[r.id for r in rows]).exists()
    assert not QuotaPolicy.objects.filter(user_id=4242).exists()
    assert list(UserBan.objects.filter(user_id=4242)) == [ban_in_force]
    assert sorted(p.name for p in media_root.iterdir()) == [f"{other.id}.mp4"]
    assert VideoRequest.objects.filter(user_id=7).count() == 1 and UserBan.objects.filter(user_id=7).exists()

    audit = DataLifecycleAudit.objects.get()
    assert (audit.operation, audit.actor, audit.outcome) == ("erase_user", "dpo", "done")
    assert audit.subject_key == lifecycle.subject_key(4242) and "4242" not in str(audit.counts) + audit.subject_key
    assert audit.counts == {
        "requests": 3,
        "events": 6,
        "local_files": 2,
        "gcs_objects_deleted": 0,
        "gcs_objects_left": 0,
        "quota_policies": 1,
        "bans_deleted": 1,
        "bans_kept": 1,
        "review_items": 1,
        "user_notices": 1,
        "reports_filed": 1,
        "moderation_log": 5,  # the flag, and with_video's two notes on each video
    }
    assert not ModerationLogEntry.objects.filter(subject_user_id=4242).exists()
    assert not Report.objects.filter(reporter_id=4242).exists()
    assert not ReviewItem.objects.filter(user_id=4242).exists() and not UserNotice.objects.exists()
    assert ReviewItem.objects.filter(user_id=7).count() == 1  # the report of user 7's video: another user's
    assert run("erase_user", "4242", "--check").startswith("erased on ")
    assert run("erase_user", "7", "--check") == "no erasure of user 7 is recorded\n"


def test_erasure_is_refused_while_a_request_is_in_flight(subject):
    admit(user_id=4242)
    VideoRequestFactory(user_id=4242, claimed_by="w1", lease_expires_at=timezone.now() + timedelta(minutes=1))
    with pytest.raises(CommandError, match="user 4242 has 2 request\\(s\\) queued, generating or being delivered"):
        run("erase_user", "4242", "--yes")
    assert VideoRequest.objects.filter(user_id=4242).count() == 5 and not DataLifecycleAudit.objects.exists()


def test_after_erasure_the_ban_in_force_still_refuses_the_user(subject):
    UserBanFactory(user_id=4242, reason="abuse")
    run("erase_user", "4242", "--yes")
    answer = admit(user_id=4242)
    assert not answer.admitted and answer.reason_code == "banned"


# -- outputs in Cloud Storage ---------------------------------------------------------------------


def gcs_video(fake, user_id: int, days: float) -> tuple[VideoRequest, str]:
    """A finished request whose video Veo wrote to the fake's bucket."""
    uri = f"gs://veo-out/veo/{next_interaction()}/sample_0.mp4"
    fake.state._gcs[uri] = b"video"
    return VideoRequestFactory(user_id=user_id, created_at=days_ago(days), output_uris=[uri]), uri


@pytest.fixture
def bucket(settings):
    from google.oauth2.credentials import Credentials

    from tests.fakes.veo_server import FakeVeoServer

    with FakeVeoServer() as fake:
        settings.VEO_OUTPUT_GCS_URI, settings.GCS_API_BASE_URL = "gs://veo-out/veo", fake.url
        yield fake, Credentials(token="test")


def test_purge_and_erasure_delete_objects_in_the_bucket(bucket, retention):
    fake, credentials = bucket
    old, old_uri = gcs_video(fake, 1001, 40)
    _, kept_uri = gcs_video(fake, 1001, 1)
    deleted = lifecycle.purge_requests(
        cutoff=lifecycle.purge_cutoff(retention_days=30), batch=10, actor="ops", gcs_credentials=credentials
    )
    assert (deleted.requests, deleted.gcs_deleted, deleted.gcs_left) == (1, 1, [])
    assert set(fake.gcs_objects) == {kept_uri}
    assert [r.method for r in fake.requests if r.kind == "delete"] == ["DELETE"]
    assert {r.auth for r in fake.requests if r.kind == "delete"} == {"bearer"}

    erasure = lifecycle.erase_user(user_id=1001, actor="dpo", gcs_credentials=credentials)
    assert (erasure.deleted.gcs_deleted, fake.gcs_objects) == (1, {})
    assert DataLifecycleAudit.objects.get(operation="erase_user").counts["gcs_objects_deleted"] == 1


@pytest.mark.parametrize(
    ("bucket_setting", "api", "problem"),
    [
        ("", None, "no bucket is configured (VEO_OUTPUT_GCS_URI)"),
        ("gs://veo-out/veo", "http://127.0.0.1:9", "Cloud Storage unreachable (ConnectionError)"),
    ],
)
def test_objects_that_cannot_be_deleted_are_listed(bucket, settings, retention, bucket_setting, api, problem):
    fake, credentials = bucket
    _, uri = gcs_video(fake, 1001, 40)
    settings.VEO_OUTPUT_GCS_URI, settings.GCS_API_BASE_URL = bucket_setting, api or settings.GCS_API_BASE_URL
    deleted = lifecycle.purge_requests(
        cutoff=lifecycle.purge_cutoff(retention_days=30), batch=10, actor="ops", gcs_credentials=credentials
    )
    assert lifecycle.gcs_report(deleted) == [
        f"1 gs:// objects are left in the bucket ({problem}); remove them with `gcloud storage rm`:",
        f"  {uri}",
    ]
    assert set(fake.gcs_objects) == {uri} and deleted.requests == 1
    assert DataLifecycleAudit.objects.get().counts["gcs_objects_left"] == 1


def test_an_interrupted_purge_records_what_it_had_deleted(media_root, retention):
    for n in range(4):
        with_video(media_root, 40 + n)

    def stop_after_the_first_batch(deleted):
        raise KeyboardInterrupt  # Ctrl-C between two batches

    with pytest.raises(KeyboardInterrupt):
        lifecycle.purge_requests(
            cutoff=lifecycle.purge_cutoff(retention_days=30), batch=3, actor="ops", progress=stop_after_the_first_batch
        )
    audit = DataLifecycleAudit.objects.get()
    assert (audit.outcome, audit.counts["requests"], audit.counts["local_files"]) == ("interrupted", 3, 3)
    assert VideoRequest.objects.count() == 1 and len(list(media_root.iterdir())) == 1
    assert "deleted 1 " in run("purge_requests")  # running it again carries on


@pytest.mark.parametrize("how", ["purge", "erase"])
def test_the_frames_a_request_gave_veo_go_with_it_and_its_parents_video_stays(media_root, retention, how):
    parent = with_video(media_root, 1, user_id=7001)  # recent, and another user's: kept either way
    child = with_video(media_root, 40, derived_as="extend", parent=parent)
    (media_root / "first.png").write_bytes(b"png")
    (media_root / "last.png").write_bytes(b"png")
    VideoRequest.objects.filter(id=child.id).update(
        image_uri="file:first.png", last_frame_uri="file:last.png", video_input_uri=f"file:{parent.id}.mp4"
    )

    if how == "purge":
        run("purge_requests")
    else:
        lifecycle.erase_user(user_id=child.user_id, actor="dpo")

    assert sorted(p.name for p in media_root.iterdir()) == [f"{parent.id}.mp4"]
    assert list(VideoRequest.objects.values_list("id", flat=True)) == [parent.id]
