"""Removing an output deletes its gs:// objects: the removal queues a delete_gcs_objects action,
the bot's outbox performs it with the bucket credentials, and the request page says where it
stands. The real VeoBot outbox and services, the real database, and the Veo fake's Cloud Storage
JSON API (objects.delete, OAuth token) reached through google-auth's service-account flow."""

import logging
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from tests.bot_harness import eventually, fake_discord, quick_bot_settings, run_bot
from tests.factories import VideoRequestFactory, snowflake
from tracking import aio, gcs, services
from tracking.models import DiscordAction, DiscordActionKind

pytestmark = pytest.mark.django_db(transaction=True)

MODERATOR = "mod-alice"
BUCKET = "gs://veo-out/veo"
PAGE = "/admin/tracking/videorequest/{}/change/"


@pytest.fixture(autouse=True)
def bot_settings(settings, tmp_path, gcs_api, signing_key, veo_fake):
    quick_bot_settings(settings, tmp_path)
    settings.DISCORD_ACTIONS_POLL = timedelta(milliseconds=50)
    settings.VEO_OUTPUT_GCS_URI = BUCKET


server = pytest.fixture(fake_discord, name="server")


def stored_video(gcs_api, name="sample_0.mp4", **fields):
    """A finished, undelivered request whose video Veo wrote to the fake's bucket."""
    uri = f"{BUCKET}/{snowflake()}/{name}"
    gcs_api.state._gcs[uri] = b"video"
    return VideoRequestFactory(output_uris=[uri], **{"discord_message_id": None, **fields}), uri


def bucket_action(request_id, **ended):
    return lambda: DiscordAction.objects.filter(
        request_id=request_id, action=DiscordActionKind.DELETE_GCS_OBJECTS, **ended
    ).first()


def deletes(gcs_api, uri=None):
    """The objects.delete calls the fake saw (for ``uri`` only, when given)."""
    path = None if uri is None else urlsplit(gcs.object_url(uri)).path
    return [r for r in gcs_api.requests if r.kind == "delete" and path in (None, r.path)]


def remove_and_wait(request_id, **ended):
    """Remove the output with the bot running; returns (the removal, the action once ``ended`` holds)."""

    async def scenario(bot):
        [removal] = await aio.run(
            services.remove_output, request_ids=[request_id], actor=MODERATOR, reason="graphic content"
        )
        return removal, await eventually(bucket_action(request_id, **ended), what=f"the bucket action {ended}")

    return run_bot(scenario, run_worker=False)


def page(as_role, request_id) -> str:
    response = as_role("moderator").get(PAGE.format(request_id))
    assert response.status_code == 200
    return response.content.decode()


def test_removing_a_gcs_output_deletes_exactly_that_object(server, gcs_api, as_role):
    row, uri = stored_video(gcs_api)
    _, other = stored_video(gcs_api, name="another.mp4")
    removal, action = remove_and_wait(row.id, done_at__isnull=False)

    assert (removal.bucket_action_id, removal.gcs_objects, removal.discord_action_id) == (action.id, (uri,), None)
    assert (action.object_uris, action.attempts, action.last_error, action.failed_at) == ([uri], 1, None, None)
    [delete] = deletes(gcs_api)
    assert delete == deletes(gcs_api, uri)[0] and (delete.status, delete.auth) == (204, "bearer")
    assert set(gcs_api.gcs_objects) == {other}  # only the removed request's object is gone
    body = page(as_role, row.id)
    assert f"<code>{uri}</code> — removed by a moderator; bucket object deleted" in body
    assert '<li class="vb-removal-done">bucket object deleted</li>' in body


def test_a_delivered_gcs_output_loses_both_its_message_and_its_object(server, gcs_api, as_role):
    from tests.fakes.interactions import CHANNEL_ID, GUILD_ID

    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)

    async def scenario(bot):
        message = await bot.get_partial_messageable(CHANNEL_ID, guild_id=GUILD_ID).send("a signed link")
        row, uri = await aio.run(lambda: stored_video(gcs_api, channel_id=CHANNEL_ID, guild_id=GUILD_ID))
        await aio.run(
            lambda: (
                type(row)
                .objects.filter(id=row.id)
                .update(discord_message_id=message.id, delivered_at=timezone.now(), delivery_method="channel")
            )
        )
        [removal] = await aio.run(services.remove_output, request_ids=[row.id], actor=MODERATOR, reason="spam")
        await eventually(
            lambda: not DiscordAction.objects.filter(request_id=row.id, done_at__isnull=True).exists(),
            what="both actions done",
        )
        return removal, message.id, uri

    removal, message_id, uri = run_bot(scenario, run_worker=False)
    assert removal.discord_action_id and removal.bucket_action_id
    assert server.message(message_id) is None and uri not in gcs_api.gcs_objects
    body = page(as_role, removal.request_id)
    assert "Discord message deleted" in body and "bucket object deleted" in body


def test_an_object_already_gone_counts_as_deleted(server, gcs_api):
    row, uri = stored_video(gcs_api)
    del gcs_api.state._gcs[uri]  # e.g. a lifecycle rule on the bucket got there first
    _, action = remove_and_wait(row.id, done_at__isnull=False)
    assert (action.attempts, action.last_error) == (1, None)
    assert [r.status for r in deletes(gcs_api, uri)] == [404]


def test_a_server_error_is_retried_after_its_backoff_then_deleted(server, gcs_api, as_role):
    row, uri = stored_video(gcs_api)
    gcs_api.script_gcs_deletes(500)

    async def scenario(bot):
        await aio.run(services.remove_output, request_ids=[row.id], actor=MODERATOR, reason="spam")
        pending = await eventually(bucket_action(row.id, last_error__isnull=False), what="the 500 recorded")
        body = await aio.run(lambda: page(as_role, row.id))
        # The backoff has passed (as if 30 s went by): the next poll tries again.
        await aio.run(lambda: DiscordAction.objects.filter(id=pending.id).update(not_before=timezone.now()))
        return pending, body, await eventually(bucket_action(row.id, done_at__isnull=False), what="the retry")

    pending, body, done = run_bot(scenario, run_worker=False)
    assert pending.failed_at is None and pending.not_before > timezone.now() + timedelta(seconds=20)
    assert pending.last_error == f"Cloud Storage answered 500; left in the bucket: {uri}"
    assert "bucket object deletion pending (attempt 1 failed: Cloud Storage answered 500" in body
    assert (done.attempts, done.last_error, done.failed_at) == (2, None, None)
    assert [r.status for r in deletes(gcs_api, uri)] == [500, 204] and uri not in gcs_api.gcs_objects


def test_transient_failures_give_up_after_the_last_attempt_with_the_reason(server, gcs_api, settings):
    settings.DISCORD_ACTIONS_MAX_ATTEMPTS = 1
    row, uri = stored_video(gcs_api)
    gcs_api.script_gcs_deletes(503)
    _, action = remove_and_wait(row.id, failed_at__isnull=False)
    assert (action.attempts, action.done_at) == (1, None)
    assert action.last_error == f"Cloud Storage answered 503; left in the bucket: {uri}"
    assert uri in gcs_api.gcs_objects


def test_a_garbled_token_answer_is_retried_then_fails_with_its_reason(server, gcs_api, settings, caplog):
    settings.DISCORD_ACTIONS_MAX_ATTEMPTS = 1
    gcs_api.token_body = b"<html>proxy maintenance</html>"  # 200 OK, but no token in it
    row, uri = stored_video(gcs_api)
    _, action = remove_and_wait(row.id, failed_at__isnull=False)
    assert (action.attempts, action.done_at) == (1, None)
    assert action.last_error == f"Cloud Storage unreachable (TypeError); left in the bucket: {uri}"
    assert uri in gcs_api.gcs_objects and deletes(gcs_api) == []
    assert "Traceback" not in caplog.text


def test_permission_denied_fails_at_once_with_a_reason_the_moderators_see(
    server, gcs_api, as_role, caplog, signing_key
):
    caplog.set_level(logging.INFO)
    row, uri = stored_video(gcs_api)
    gcs_api.script_gcs_deletes(403)
    _, action = remove_and_wait(row.id, failed_at__isnull=False)

    reason = (
        "Cloud Storage answered 403 (permission denied: the credentials may not delete objects in this bucket)"
        f"; left in the bucket: {uri}"
    )
    assert (action.attempts, action.done_at, action.last_error) == (1, None, reason)
    assert uri in gcs_api.gcs_objects and len(deletes(gcs_api)) == 1  # failed for good: never tried again
    body = page(as_role, row.id)
    assert f'<li class="vb-removal-failed">could not delete the bucket object: {reason}</li>' in body
    outbox = as_role("moderator").get("/admin/tracking/discordaction/?failed_at__isnull=False").content.decode()
    assert "Cloud Storage answered 403" in outbox
    private_key = signing_key.path.read_text()
    for text in (body, outbox, caplog.text, action.last_error):
        assert "Traceback" not in text and "fake-access-token" not in text and "PRIVATE KEY" not in text
    assert private_key not in caplog.text
    assert [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and "failed: Cloud Storage answered 403" in r.getMessage()
    ]


def test_without_a_bucket_configured_the_removal_says_so(server, gcs_api, settings, as_role):
    settings.VEO_OUTPUT_GCS_URI = ""
    row, uri = stored_video(gcs_api)
    _, action = remove_and_wait(row.id, failed_at__isnull=False)
    assert action.last_error == f"no bucket is configured (VEO_OUTPUT_GCS_URI); left in the bucket: {uri}"
    assert deletes(gcs_api) == [] and uri in gcs_api.gcs_objects
    assert "could not delete the bucket object: no bucket is configured (VEO_OUTPUT_GCS_URI)" in page(as_role, row.id)


def test_a_local_file_output_is_removed_as_before(server, gcs_api, media_root, as_role):
    (media_root / "fox.mp4").write_bytes(b"video")
    row = VideoRequestFactory(output_uris=["file:fox.mp4"], discord_message_id=None)
    [removal] = services.remove_output(request_ids=[row.id], actor=MODERATOR, reason="spam")
    assert (removal.local_files, removal.bucket_action_id, removal.gcs_objects) == (("file:fox.mp4",), None, ())
    assert not Path(media_root / "fox.mp4").exists()
    assert not DiscordAction.objects.filter(request_id=row.id).exists() and deletes(gcs_api) == []
    assert 'id="vb-removal"' not in page(as_role, row.id)


def test_a_worker_without_the_gateway_deletes_the_objects_and_leaves_discord_actions(
    gcs_api, signing_key, db_settings, tmp_path
):
    from tests.workers import start_worker_process, truncate_requests, wait_for

    truncate_requests()
    row, uri = stored_video(
        gcs_api, discord_message_id=snowflake(), delivered_at=timezone.now(), delivery_method="channel"
    )
    [removal] = services.remove_output(request_ids=[row.id], actor=MODERATOR, reason="spam")
    assert removal.bucket_action_id and removal.discord_action_id
    worker = start_worker_process(
        db_settings,
        tmp_path / "worker.log",
        GCS_API_BASE_URL=gcs_api.url,
        VEO_OUTPUT_GCS_URI=BUCKET,
        GOOGLE_APPLICATION_CREDENTIALS=str(signing_key.path),
        DISCORD_ACTIONS_POLL="1s",
        VEO_MEDIA_ROOT=str(tmp_path),
    )
    try:
        wait_for(bucket_action(row.id, done_at__isnull=False), timeout=60, what="the bucket deletion")
    finally:
        worker.terminate()
        worker.wait(30)
    assert uri not in gcs_api.gcs_objects and len(deletes(gcs_api, uri)) == 1
    # The Discord message needs the bot's token: the worker left that action to the bot.
    message_action = DiscordAction.objects.get(id=removal.discord_action_id)
    assert (message_action.attempts, message_action.done_at, message_action.failed_at) == (0, None, None)
    assert "Traceback" not in (tmp_path / "worker.log").read_text()


def test_removing_twice_queues_one_bucket_deletion(gcs_api):
    row, uri = stored_video(gcs_api)
    [first] = services.remove_output(request_ids=[row.id], actor=MODERATOR, reason="spam")
    assert services.remove_output(request_ids=[row.id], actor=MODERATOR, reason="spam") == []
    assert list(DiscordAction.objects.filter(request_id=row.id).values_list("id", "object_uris")) == [
        (first.bucket_action_id, [uri])
    ]


def test_objects_stored_after_the_removal_are_queued_when_the_worker_finishes(gcs_api):
    row = VideoRequestFactory(status="generating", output_uris=[], discord_message_id=None)
    [removal] = services.remove_output(request_ids=[row.id], actor=MODERATOR, reason="spam")
    assert removal.bucket_action_id is None  # nothing in the bucket yet
    uri = f"{BUCKET}/late/sample_0.mp4"
    type(row).objects.filter(id=row.id).update(output_uris=[uri, "file:late.mp4"])  # the generation finished
    services.discard_removed_outputs(request_id=row.id)
    services.discard_removed_outputs(request_id=row.id)  # a repeat queues nothing more
    [action] = DiscordAction.objects.filter(request_id=row.id)
    assert (action.action, action.object_uris, action.requested_by, action.reason) == (
        DiscordActionKind.DELETE_GCS_OBJECTS,
        [uri],
        MODERATOR,
        "spam",
    )
