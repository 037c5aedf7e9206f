"""Moderation reaching Discord: the bot performs the discord_actions outbox, and a video removed
before delivery is not delivered. The real VeoBot (discord.py) against the fake Discord server,
the real services and database; removals go through ``services.remove_output``."""

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from tests.bot_harness import delivered, eventually, new_bot, quick_bot_settings, run_bot
from tests.bot_harness import veo_command as veo
from tests.factories import VideoRequestFactory
from tests.fakes import veo_server
from tests.fakes.discord_server import BOT_TOKEN
from tests.fakes.interactions import CHANNEL_ID, GUILD_ID, USER_ID, deliver_and_wait
from tracking import aio, services
from tracking.models import DiscordAction, VideoRequest, VideoRequestEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sql]

MODERATOR = "mod-alice"


@pytest.fixture(autouse=True)
def bot_settings(settings, tmp_path, veo_fake):
    quick_bot_settings(settings, tmp_path)
    settings.DISCORD_ACTIONS_POLL = timedelta(milliseconds=50)


def action_of(request_id):
    return lambda: DiscordAction.objects.filter(request_id=request_id).first()


async def remove(request_id, reason="graphic content"):
    return await aio.run(services.remove_output, request_ids=[request_id], actor=MODERATOR, reason=reason)


async def deliver_one(bot, server, **options):
    """A /veo through the bot, delivered; returns the row."""
    payload = veo(**options)
    await deliver_and_wait(bot, payload, server=server)
    return await eventually(delivered(int(payload["id"])), what="delivery")


def deletes(server):
    return server.requests("DELETE /channels/*/messages/*")


# -- the outbox ----------------------------------------------------------------------------------


def test_removing_a_delivered_video_deletes_its_message(server):
    async def scenario(bot):
        row = await deliver_one(bot, server)
        assert server.message(row.discord_message_id) is not None
        [removal] = await remove(row.id)
        assert removal.discord_action_id is not None
        done = await eventually(
            lambda: DiscordAction.objects.filter(id=removal.discord_action_id, done_at__isnull=False).first(),
            what="the deletion",
        )
        return row, done

    row, action = run_bot(scenario)
    assert server.message(row.discord_message_id) is None  # gone for everyone in the channel
    assert server.messages_in(CHANNEL_ID) == []
    assert (action.channel_id, action.message_id, action.attempts, action.last_error) == (
        CHANNEL_ID,
        row.discord_message_id,
        1,
        None,
    )
    [delete] = deletes(server)
    assert delete.path == f"/channels/{CHANNEL_ID}/messages/{row.discord_message_id}" and delete.status == 204
    stored = Path(django_settings.VEO_MEDIA_ROOT) / row.output_uris[0].removeprefix("file:")
    assert not stored.exists()  # remove_output deleted the local file after commit


@pytest.mark.parametrize("gone", ["message", "channel"])
def test_a_message_or_channel_already_gone_counts_as_done(server, gone):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)

    async def scenario(bot):
        message = await bot.get_partial_messageable(CHANNEL_ID, guild_id=GUILD_ID).send("a video")
        request = await aio.run(
            VideoRequestFactory.create,
            channel_id=CHANNEL_ID,
            guild_id=GUILD_ID,
            discord_message_id=message.id,
            delivered_at=timezone.now(),
            delivery_method="channel",
        )
        if gone == "message":
            await message.delete()  # e.g. the user or a Discord moderator deleted it first
        else:
            server.delete_channel(CHANNEL_ID)
        [removal] = await remove(request.id)
        return await eventually(
            lambda: DiscordAction.objects.filter(id=removal.discord_action_id, done_at__isnull=False).first(),
            what="the action done",
        )

    action = run_bot(scenario, run_worker=False)
    assert (action.attempts, action.last_error) == (1, None)
    assert [r.status for r in deletes(server)][-1] == 404


def test_missing_permissions_is_recorded_and_retried_later_then_given_up_once(server, settings, caplog):
    settings.DISCORD_ACTIONS_MAX_ATTEMPTS = 1
    caplog.set_level(logging.INFO, logger="generation.outbox")

    async def scenario(bot):
        row = await deliver_one(bot, server)
        server.deny_channel(CHANNEL_ID)
        [removal] = await remove(row.id)
        action = await eventually(
            lambda: DiscordAction.objects.filter(id=removal.discord_action_id, failed_at__isnull=False).first(),
            what="the refusal recorded",
        )
        await asyncio.sleep(0.5)  # ten polls: a given-up action is not claimed again
        return row, action

    row, action = run_bot(scenario)
    action.refresh_from_db()
    assert action.done_at is None and action.attempts == 1
    assert action.failed_at is not None  # ended: failed, with the reason below
    assert action.last_error.startswith("403 50013") and "Missing Permissions" in action.last_error
    assert action.not_before > timezone.now() + timedelta(seconds=20)  # the backoff
    assert server.message(row.discord_message_id) is not None  # still there: nothing was deleted
    assert len(deletes(server)) == 1
    gave_up = [r for r in caplog.records if "giving up" in r.getMessage()]
    assert len(gave_up) == 1 and f"request {row.id}" in gave_up[0].getMessage()
    assert BOT_TOKEN not in caplog.text


def test_a_refused_action_is_retried_after_its_backoff(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)

    async def scenario(bot):
        message = await bot.get_partial_messageable(CHANNEL_ID, guild_id=GUILD_ID).send("a video")
        request = await aio.run(
            VideoRequestFactory.create,
            channel_id=CHANNEL_ID,
            guild_id=GUILD_ID,
            discord_message_id=message.id,
            delivered_at=timezone.now(),
            delivery_method="channel",
        )
        server.deny_channel(CHANNEL_ID)
        [removal] = await remove(request.id)
        await eventually(
            lambda: DiscordAction.objects.filter(id=removal.discord_action_id, last_error__isnull=False).exists(),
            what="a refusal",
        )
        server.deny_channel(CHANNEL_ID, error=None)  # permissions fixed
        # The backoff has passed (as if 30 s went by): the next poll deletes it.
        await aio.run(
            lambda: DiscordAction.objects.filter(id=removal.discord_action_id).update(not_before=timezone.now())
        )
        return message.id, await eventually(
            lambda: DiscordAction.objects.filter(id=removal.discord_action_id, done_at__isnull=False).first(),
            what="the retry",
        )

    message_id, action = run_bot(scenario, run_worker=False)
    assert (action.attempts, action.last_error) == (2, None)
    assert server.message(message_id) is None


def test_two_bots_perform_each_action_once(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)
    count = 12

    async def scenario(first):
        channel = first.get_partial_messageable(CHANNEL_ID, guild_id=GUILD_ID)
        messages = [await channel.send(f"video {n}") for n in range(count)]
        second = new_bot(run_worker=False)
        await second.login(BOT_TOKEN)
        try:
            ids = []
            for message in messages:
                request = await aio.run(
                    VideoRequestFactory.create,
                    channel_id=CHANNEL_ID,
                    guild_id=GUILD_ID,
                    discord_message_id=message.id,
                    delivered_at=timezone.now(),
                    delivery_method="channel",
                )
                ids.append(request.id)
            removals = await aio.run(services.remove_output, request_ids=ids, actor=MODERATOR, reason="spam")
            assert len(removals) == count and all(r.discord_action_id for r in removals)
            await eventually(
                lambda: not DiscordAction.objects.filter(done_at__isnull=True).exists(), what="every action done"
            )
            await asyncio.sleep(0.3)  # room for a second performance, if there were one
        finally:
            await second.close()
        return [m.id for m in messages]

    message_ids = run_bot(scenario, run_worker=False)
    assert server.messages_in(CHANNEL_ID) == []
    assert all(server.message(m) is None for m in message_ids)
    performed = deletes(server)
    assert len(performed) == count and all(r.status == 204 for r in performed)
    assert sorted(DiscordAction.objects.values_list("attempts", flat=True)) == [1] * count


# -- removed before delivery -----------------------------------------------------------------------


@pytest.mark.parametrize("way", ["interaction", "channel"])
def test_a_video_removed_before_delivery_is_not_delivered(server, way, veo_fake):
    veo_fake.default_scenario = veo_server.scenario("slow", seconds=0.5)
    payload = veo()

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        row = await eventually(
            lambda: VideoRequest.objects.filter(interaction_id=payload["id"]).first(), what="the request"
        )
        await remove(row.id, reason="a real person's likeness")
        if way == "channel":
            server.advance(16 * 60)  # the token is spent: the outcome is posted in the channel
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario)
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    assert (row.status, row.review_status, row.delivery_method) == ("completed", "removed", way)
    message = server.message(row.discord_message_id)
    assert message["attachments"] == []  # no video
    [embed] = message["embeds"]
    assert embed["title"] == "Video removed by moderators"
    text = str(embed)
    assert "removed" in text and "file:" not in text and "http" not in text  # no link either
    assert not any(r.uploads for r in server.requests("*"))  # nothing was uploaded, ever
    assert VideoRequestEvent.objects.filter(request_id=row.id, kind="delivered").count() == 1
    # The video was generated after the removal: its file does not outlive it.
    stored = Path(django_settings.VEO_MEDIA_ROOT) / row.output_uris[0].removeprefix("file:")
    assert not stored.exists()
    # Nothing for the outbox to do: the message never carried the video.
    assert not DiscordAction.objects.filter(request_id=row.id).exists()


def test_removed_while_the_delivery_was_on_its_way_queues_the_deletion():
    """remove_output committed after the worker read the row but before record_delivery: the
    delivery's message id was unknown to it, so record_delivery queues the deletion."""
    request = VideoRequestFactory(channel_id=CHANNEL_ID, guild_id=GUILD_ID, user_id=USER_ID)
    [removal] = services.remove_output(request_ids=[request.id], actor=MODERATOR, reason="spam")
    assert removal.discord_action_id is None  # no message yet
    assert services.record_delivery(request_id=request.id, worker=None, method="channel", message_id=555)
    [action] = DiscordAction.objects.filter(request_id=request.id)
    assert (action.channel_id, action.message_id, action.requested_by, action.reason, action.done_at) == (
        CHANNEL_ID,
        555,
        MODERATOR,
        "spam",
        None,
    )


def test_a_delivery_that_said_removed_queues_nothing():
    request = VideoRequestFactory(channel_id=CHANNEL_ID, guild_id=GUILD_ID, user_id=USER_ID)
    services.remove_output(request_ids=[request.id], actor=MODERATOR, reason="spam")
    assert services.record_delivery(
        request_id=request.id, worker=None, method="channel", message_id=555, removal_known=True
    )
    assert not DiscordAction.objects.filter(request_id=request.id).exists()
