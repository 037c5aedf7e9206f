"""/appeal, moderators' decisions reaching the user (by DM, else at their next command), and new
queue items announced in the moderators' channel: the real VeoBot (discord.py) against the fake
Discord server, the real services and database (tests/bot_harness.py)."""

import asyncio
import logging
from datetime import timedelta

import pytest
from django.db import OperationalError, connection

from tests.bot_harness import eventually, new_bot, run_bot
from tests.bot_harness import veo_command as veo
from tests.factories import UserBanFactory, VideoRequestFactory
from tests.fakes import discord_server as fake
from tests.fakes.discord_server import BOT_TOKEN
from tests.fakes.interactions import GUILD_ID, USER_ID, deliver_and_wait, slash_command, user
from tracking import aio, services
from tracking.models import Appeal, ReviewItem, UserBan, UserNotice, VideoRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("bot_settings")]

MODERATOR = "mod-alice"
MOD_CHANNEL = 1_180_000_000_000_000_777
OTHER_USER_ID = USER_ID + 1


@pytest.fixture(autouse=True)
def quick_polls(settings):
    settings.DISCORD_ACTIONS_POLL = timedelta(milliseconds=50)
    settings.MOD_CHANNEL_ID = None
    with connection.cursor() as cursor:  # unmanaged tables: pytest-django does not flush them
        cursor.execute("TRUNCATE user_notices, review_items, appeals CASCADE")


def appeal(text, **kwargs) -> dict:
    return slash_command("appeal", {"text": text}, **kwargs)


async def ask(bot, server, payload) -> str:
    """Deliver ``payload``; its private answer."""
    await deliver_and_wait(bot, payload, server=server)
    reply = server.original_response(payload["id"])
    assert reply["flags"] & fake.EPHEMERAL
    return reply["content"]


async def resolve_appeal(decision: str, reason: str) -> None:
    item = await aio.run(lambda: ReviewItem.objects.get(kind="appeal", state="open"))
    await aio.run(services.review.resolve, item_id=item.id, actor=MODERATOR, decision=decision, reason=reason)


def test_a_banned_user_appeals_once_the_grant_comes_by_dm_and_the_next_veo_is_admitted(server):
    UserBanFactory(user_id=USER_ID)
    first, second, after = appeal("  I was testing   a bot, sorry  "), appeal("please"), veo()

    async def scenario(bot):
        filed = await ask(bot, server, first)
        again = await ask(bot, server, second)
        await resolve_appeal("approve", "first offence")
        await eventually(lambda: server.dms_to(USER_ID), what="the DM")
        await deliver_and_wait(bot, after, server=server)
        await asyncio.sleep(0.1)  # a follow-up, were one (wrongly) due, would be out by now
        return filed, again

    filed, again = run_bot(scenario, run_worker=False)

    [row] = Appeal.objects.all()
    assert filed == f"Your appeal #{row.id} was sent to the moderators; you will hear back here or by DM."
    assert (row.user_id, row.body, row.state, row.decision_reason) == (
        USER_ID,
        "I was testing   a bot, sorry",
        "granted",
        "first offence",
    )
    assert ReviewItem.objects.get(appeal_id=row.id).kind == "appeal"
    sent = int(row.created_at.timestamp())
    assert again == f"You already have an open appeal (#{row.id}, sent <t:{sent}:R>); one at a time per ban."
    [dm] = server.dms_to(USER_ID)
    assert dm["content"] == "Your appeal was granted and your veobot ban lifted: first offence"
    assert dm["allowed_mentions"] == {"parse": []}
    [notice] = UserNotice.objects.all()
    assert (notice.delivered_via, notice.attempts, notice.dm_refused_at) == ("dm", 1, None)
    assert not UserBan.objects.filter(user_id=USER_ID, lifted_at__isnull=True).exists()
    assert server.original_response(after["id"])["embeds"][0]["title"] == "Queued"
    assert VideoRequest.objects.get(interaction_id=after["id"]).status == "pending"
    assert server.followups(after["id"]) == []


def test_nothing_to_appeal_a_text_too_long_or_empty_and_the_commands_own_limit(server):
    UserBanFactory(user_id=OTHER_USER_ID)
    too_long = appeal("x" * 1001, author=user(OTHER_USER_ID, username="bob"))
    empty = appeal("   ", author=user(OTHER_USER_ID, username="bob"))

    async def scenario(bot):
        options = bot.tree.get_command("appeal").to_dict(bot.tree)["options"]
        return options, [await ask(bot, server, payload) for payload in (appeal("let me in"), too_long, empty)]

    [option], (not_banned, long_text, blank) = run_bot(scenario, run_worker=False)

    assert (option["name"], option["required"], option["min_length"], option["max_length"]) == ("text", True, 1, 1000)
    assert not_banned == "You are not banned from veobot here, so there is nothing to appeal."
    assert long_text == "Your appeal was not sent: an appeal must be at most 1000 characters (got 1001)."
    assert blank == "Your appeal was not sent: write why the ban should be lifted."
    assert not Appeal.objects.exists() and not ReviewItem.objects.exists()


def test_while_the_database_is_unreachable_an_appeal_is_not_taken_and_the_user_is_told(server, monkeypatch):
    def unreachable(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(services.appeals, "file_appeal", unreachable)
    first, second = appeal("please"), appeal("please, again")

    async def scenario(bot):
        return await ask(bot, server, first), await ask(bot, server, second)  # then without asking the database

    for answer in run_bot(scenario, run_worker=False):
        assert answer == (
            "Appeals cannot be taken right now (the database is unreachable), so yours was not sent. "
            "Please try again later."
        )


def test_with_dms_refused_a_denial_is_shown_once_at_the_next_command(server):
    UserBanFactory(user_id=USER_ID)
    services.appeals.file_appeal(user_id=USER_ID, guild_id=GUILD_ID, interaction_id=fake.new_snowflake(), body="sorry")
    server.refuse_dms(USER_ID)
    first, second = slash_command("quota"), slash_command("quota")

    async def scenario(bot):
        await resolve_appeal("dismiss", "you did it again")
        await eventually(lambda: UserNotice.objects.filter(dm_refused_at__isnull=False).exists(), what="the refusal")
        await asyncio.sleep(0.1)  # the owed users are refreshed every poll
        await deliver_and_wait(bot, first, server=server)
        await eventually(lambda: server.followups(first["id"]), what="the follow-up")
        await deliver_and_wait(bot, second, server=server)
        await asyncio.sleep(0.1)

    run_bot(scenario, run_worker=False)

    assert server.original_response(first["id"])["content"].startswith("You have used 0 of 5 videos")
    [shown] = server.followups(first["id"])
    assert shown["content"] == "Your appeal of your veobot ban was denied: you did it again"
    assert shown["flags"] & fake.EPHEMERAL and shown["allowed_mentions"] == {"parse": []}
    assert server.followups(second["id"]) == [] and server.dms_to(USER_ID) == []
    [refused] = server.requests("POST /channels/*/messages")
    assert (refused.status, refused.response["code"]) == (403, 50007)
    [notice] = UserNotice.objects.all()
    assert (notice.delivered_via, notice.attempts) == ("next_command", 1)
    assert notice.last_error == "403 50007 Cannot send messages to this user"
    assert UserBan.objects.filter(user_id=USER_ID, lifted_at__isnull=True).exists()


def test_a_dm_that_cannot_reach_discord_is_retried_after_a_backoff(server):
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO user_notices (user_id, body) VALUES (%s, 'hello from the moderators')", [USER_ID])
    server.fail("POST /users/@me/channels", fake.SERVICE_UNAVAILABLE)

    async def scenario(bot):
        await eventually(lambda: UserNotice.objects.filter(last_error__isnull=False).first(), what="the failure")
        failed = await aio.run(UserNotice.objects.get)
        await aio.run(lambda: UserNotice.objects.update(not_before=failed.created_at))  # the backoff, over
        await eventually(lambda: UserNotice.objects.filter(delivered_at__isnull=False).exists(), what="the retry")
        return failed

    failed = run_bot(scenario, run_worker=False)
    assert failed.attempts == 1 and failed.last_error.startswith("503")
    assert timedelta(seconds=25) < failed.not_before - failed.created_at < timedelta(seconds=35)
    [notice] = UserNotice.objects.all()
    assert (notice.delivered_via, notice.attempts) == ("dm", 2)
    assert [m["content"] for m in server.dms_to(USER_ID)] == ["hello from the moderators"]


# -- announcements in MOD_CHANNEL_ID ------------------------------------------------------------------------


def _new_items():
    """An appeal and a report (with a mention in its reason), each an item; one older item."""
    UserBanFactory(user_id=USER_ID)
    services.appeals.file_appeal(user_id=USER_ID, guild_id=GUILD_ID, interaction_id=fake.new_snowflake(), body="sorry")
    request = VideoRequestFactory(user_id=OTHER_USER_ID)
    services.report_request(
        interaction_id=request.interaction_id, reporter_id=USER_ID, guild_id=GUILD_ID, reason="@everyone look <@1>"
    )
    old = VideoRequestFactory(user_id=OTHER_USER_ID)
    services.report_request(interaction_id=old.interaction_id, reporter_id=USER_ID, guild_id=GUILD_ID, reason="old")
    ReviewItem.objects.filter(request_id=old.id).update(created_at=old.created_at - timedelta(hours=2))
    return ReviewItem.objects.get(kind="appeal"), ReviewItem.objects.get(request_id=request.id)


def test_new_items_are_announced_once_with_a_link_by_two_bots(server, settings):
    settings.MOD_CHANNEL_ID, settings.ADMIN_BASE_URL = MOD_CHANNEL, "https://veobot.example.com"
    server.add_channel(MOD_CHANNEL, guild_id=GUILD_ID)
    appealed, reported = _new_items()

    async def scenario(bot):
        other = new_bot(run_worker=False)
        await other.login(BOT_TOKEN)
        try:
            await eventually(lambda: len(server.messages_in(MOD_CHANNEL)) >= 2, what="the announcements")
            await asyncio.sleep(0.15)  # three more polls of each bot
        finally:
            await other.close()

    run_bot(scenario, run_worker=False)

    posts = server.messages_in(MOD_CHANNEL)
    assert [p["content"].splitlines()[0] for p in posts] == [
        f"New in the review queue: #{appealed.id} Appeal (1 hit)",
        f"New in the review queue: #{reported.id} User report (1 hit)",
    ]
    link = f"https://veobot.example.com/admin/tracking/reviewitem/{reported.id}/change/"
    assert posts[1]["content"].splitlines()[-1] == link
    assert "@\u200beveryone" in posts[1]["content"] and posts[1]["mentions"] == [] and not posts[1]["mention_everyone"]
    assert all(p["allowed_mentions"] == {"parse": []} for p in posts)
    assert ReviewItem.objects.filter(announced_at__isnull=True).count() == 1  # the old one, never


def test_a_channel_that_refuses_is_logged_once_a_poll_and_the_items_wait(server, settings, caplog):
    settings.MOD_CHANNEL_ID = MOD_CHANNEL
    server.add_channel(MOD_CHANNEL, guild_id=GUILD_ID)
    server.delete_channel(MOD_CHANNEL)
    _new_items()
    posts = f"POST /channels/{MOD_CHANNEL}/messages"

    async def scenario(bot):
        await eventually(lambda: len(server.requests(posts)) >= 3, what="three polls")
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and "MOD_CHANNEL_ID" in r.message]
        attempts = len(server.requests(posts))
        # The items wait: a poll marks what it claims as announced and hands it back when the post
        # fails, so between two polls all three are waiting again (during one, fewer are).
        await eventually(
            lambda: ReviewItem.objects.filter(announced_at__isnull=True).count() == 3,
            what="every item waiting again between two polls",
        )
        server.add_channel(MOD_CHANNEL, guild_id=GUILD_ID)  # the channel is back
        await eventually(lambda: len(server.messages_in(MOD_CHANNEL)) == 2, what="the retried announcements")
        return errors, attempts

    with caplog.at_level(logging.ERROR, logger="discordbot.notices"):
        errors, attempts = run_bot(scenario, run_worker=False)

    assert attempts - 1 <= len(errors) <= attempts  # one post tried, and one error, per poll
    assert "404 10003 Unknown Channel" in errors[0].message
    assert ReviewItem.objects.filter(announced_at__isnull=True).count() == 1
