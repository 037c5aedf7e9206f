"""The Discord bot end to end: the real discord.py client against the fake Discord server, the
real worker and database, and the real google-genai client against the Veo fake
(tests/bot_harness.py)."""

import asyncio
from datetime import timedelta
from pathlib import Path

import discord
import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from discordbot.commands import veo_commands
from generation import engine as engine_module
from generation.storage import LocalStorage
from generation.veo import OfflineBackend
from tests.bot_harness import delivered, eventually, new_bot, run_bot, run_to_delivery
from tests.bot_harness import veo_command as veo
from tests.concurrency import conninfo
from tests.factories import UserBanFactory, VideoRequestFactory
from tests.fakes import discord_server as fake
from tests.fakes import veo_server
from tests.fakes.discord_server import BOT_TOKEN
from tests.fakes.interactions import (
    CHANNEL_ID,
    GUILD_ID,
    MEMBER_PERMISSIONS,
    USER_ID,
    button_click,
    deliver,
    deliver_and_wait,
    modal_submit,
    slash_command,
    user,
)
from tracking import capabilities, services
from tracking.errors import InvalidInput
from tracking.models import Report, VideoRequest, VideoRequestEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("bot_settings")]


def events(request_id):
    return [(e.kind, e.to_status) for e in VideoRequestEvent.objects.filter(request_id=request_id).order_by("id")]


# -- the happy path ---------------------------------------------------------------------------------


def test_happy_path_queued_embed_then_the_video_attached_and_the_database_complete(server, veo_fake):
    veo_fake.default_scenario = veo_server.scenario("slow", seconds=0.3)
    payload = veo(opts={"length": 8, "ratio": "9:16", "hd": True, "audio": False, "negative_prompt": "rain"})

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        queued = server.original_response(payload["id"])
        await eventually(delivered(int(payload["id"])), what="delivery")
        return queued

    queued = run_bot(scenario)

    interaction = server.interaction(payload["id"])
    assert interaction.response_type == 4 and interaction.acknowledged_after < 1  # answered, not deferred
    [embed] = queued["embeds"]
    assert embed["title"] == "Queued" and not queued["flags"] & fake.EPHEMERAL
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Settings"] == "8 s · 9:16 · 1080p · no audio" and fields["Avoid"] == "rain"
    assert fields["Position"] == "next up" and fields["Quota"].startswith("4 of 5 left")
    assert queued["allowed_mentions"] == {"parse": []}

    row = VideoRequest.objects.get(interaction_id=payload["id"])
    final = server.original_response(payload["id"])
    assert final["embeds"][0]["title"] == "Your video is ready"
    [video] = final["attachments"]
    assert video["content_type"] == "video/mp4" and video["size"] == row.output_size_bytes
    assert server.attachment_data(video["id"])[4:8] == b"ftyp"
    assert (row.status, row.delivery_method, row.discord_message_id) == ("completed", "interaction", int(final["id"]))
    assert (row.duration_seconds, row.aspect_ratio, row.resolution, row.generate_audio, row.negative_prompt) == (
        8,
        "9:16",
        "1080p",
        False,
        "rain",
    )
    assert (row.user_id, row.guild_id, row.channel_id) == (USER_ID, GUILD_ID, CHANNEL_ID)
    assert row.created_at <= row.started_at <= row.completed_at <= row.delivered_at
    assert events(row.id) == [
        ("created", "pending"),
        ("status_changed", "generating"),
        ("status_changed", "completed"),
        ("delivered", None),
    ]
    assert len(server.messages_in(CHANNEL_ID)) == 1  # one message, edited in place


def test_happy_path_through_the_real_veo_client_and_the_veo_fake(server, veo_fake):
    """What Veo is sent and answers: the options as the create's parameters, the operation it
    names stored and polled until done."""
    veo_fake.default_scenario = veo_server.scenario("multi_poll", polls=2)
    payload = veo("a lighthouse in a storm", opts={"length": 6, "negative_prompt": "people"})

    async def scenario_(bot):
        await deliver_and_wait(bot, payload, server=server)
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario_)
    [create] = veo_fake.creates()
    [operation] = veo_fake.operations

    assert create.prompt == "a lighthouse in a storm"
    assert (create.parameters["durationSeconds"], create.parameters["negativePrompt"]) == (6, "people")
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    assert (row.status, row.delivery_method, row.operation_name) == ("completed", "interaction", operation)
    [video] = server.original_response(payload["id"])["attachments"]
    assert video["size"] == row.output_size_bytes and server.attachment_data(video["id"])[4:8] == b"ftyp"


def test_defaults_come_from_settings(server, settings):
    settings.VEO_DEFAULT_DURATION, settings.VEO_DEFAULT_RESOLUTION = 6, "1080p"
    settings.VEO_DEFAULT_RATIO, settings.VEO_DEFAULT_AUDIO = "9:16", False
    payload = veo()
    run_bot(lambda bot: deliver_and_wait(bot, payload, server=server), run_worker=False)
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    assert (row.duration_seconds, row.resolution, row.aspect_ratio, row.generate_audio) == (6, "1080p", "9:16", False)


def test_progress_edits_the_reply_while_generating(server, monkeypatch, veo_fake):
    monkeypatch.setattr(engine_module, "PROGRESS_EVERY", timedelta(milliseconds=300))
    veo_fake.default_scenario = veo_server.scenario("slow", seconds=2)
    payload = veo()

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await eventually(
            lambda: server.original_response(payload["id"])["embeds"][0]["title"] == "Generating…",
            what="a progress edit",
        )
        return server.original_response(payload["id"])["embeds"][0]

    progress = run_bot(scenario)
    assert {f["name"] for f in progress["fields"]} >= {"Settings", "Elapsed"}


def test_video_over_the_interactions_limit_is_linked_with_a_note(server, settings):
    settings.VEO_PUBLIC_MEDIA_URL = "https://media.example.com/veo/"
    payload = veo(attachment_size_limit=1024)

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario)
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    final = server.original_response(payload["id"])
    assert final["attachments"] == [] and row.delivery_method == "interaction"
    fields = {f["name"]: f["value"] for f in final["embeds"][0]["fields"]}
    assert fields["Video"] == "https://media.example.com/veo/" + row.output_uris[0].removeprefix("file:")
    assert "over the 0.0 MB upload limit, so here is a link" in fields["Note"]
    assert not server.requests("PATCH /webhooks/*")[-1].uploads  # nothing uploaded at all


@pytest.mark.parametrize("signing", [True, False])
def test_gcs_video_over_the_limit_is_linked_with_a_signed_url(
    server, settings, tmp_path, monkeypatch, signing, veo_fake
):
    """Veo writes to the bucket; the size read from it says "too big to attach"; the reply
    links a V4 signed URL (or, with signed links turned off, says to ask a moderator)."""
    from tests.bot_harness import SAMPLE_BYTES
    from tests.gcs_keys import service_account_key, signature_is_valid

    payload = veo(attachment_size_limit=1024)
    key = service_account_key(tmp_path, token_uri=f"{veo_fake.url}/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key.path))
    settings.VEO_GCS_SIGNED_URL_TTL = timedelta(days=7) if signing else timedelta(0)
    settings.GCS_API_BASE_URL = veo_fake.url
    settings.VEO_OUTPUT_GCS_URI = "gs://veo-out/videos"  # the bot's backend is made after this

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario)

    row = VideoRequest.objects.get(interaction_id=payload["id"])
    final = server.original_response(payload["id"])
    assert final["attachments"] == [] and row.delivery_method == "interaction"
    fields = {f["name"]: f["value"] for f in final["embeds"][0]["fields"]}
    if not signing:
        assert row.output_size_bytes == len(SAMPLE_BYTES) and "Video" not in fields
        assert "upload limit, so ask a moderator for it" in fields["Note"]
        return
    assert row.output_size_bytes == len(SAMPLE_BYTES) > 1024
    assert "over the 0.0 MB upload limit, so here is a link" in fields["Note"]
    link = fields["Video"]
    bucket_path = row.output_uris[0].removeprefix("gs://")
    assert link.startswith(f"https://storage.googleapis.com/{bucket_path}?") and "X-Goog-Expires=604800" in link
    assert signature_is_valid(link, key.public_key)
    assert not server.requests("PATCH /webhooks/*")[-1].uploads


# -- refusals: private, specific, free ------------------------------------------------------------


def _refusal(server, payload, **kwargs) -> str:
    run_bot(lambda bot: deliver_and_wait(bot, payload, server=server), run_worker=False, **kwargs)
    reply = server.original_response(payload["id"])
    assert reply["flags"] & fake.EPHEMERAL and reply["allowed_mentions"] == {"parse": []}
    return reply["content"]


def test_over_quota_is_refused_privately_with_the_reset_time(server, settings):
    settings.VEO_QUOTA_LIMIT = 1
    VideoRequestFactory(user_id=USER_ID, created_at=timezone.now() - timedelta(hours=21, minutes=45))
    payload = veo()
    text = _refusal(server, payload)
    assert text == "You have used all 1 of your videos for now. Next slot in 2h 15m. Nothing was charged."
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    assert (row.status, row.error_code, row.counts_toward_quota) == ("rejected", "quota_exceeded", False)


def test_banned_user_is_refused_privately(server):
    UserBanFactory(user_id=USER_ID, reason="spamming the channel")
    text = _refusal(server, veo())
    assert text == "You can't use /veo: banned: spamming the channel (permanent). Nothing was charged."


def test_channel_not_allowed_is_refused_without_a_row(server, settings):
    settings.ALLOWED_CHANNEL_IDS = frozenset({CHANNEL_ID + 1})
    text = _refusal(server, veo())
    assert text == f"/veo is not enabled in this channel. Try <#{CHANNEL_ID + 1}>. Nothing was charged."
    assert not VideoRequest.objects.exists()


@pytest.mark.parametrize(
    "prompt,expected",
    [
        ("hi", "prompt must be 5-600 characters (got 2)"),
        ("a fox\x00 in snow", "prompt contains a NUL character (U+0000) at position 6"),
    ],
)
def test_invalid_options_are_refused_without_a_row(server, prompt, expected):
    text = _refusal(server, veo(prompt))
    assert text.startswith("Can't queue that: " + expected) and text.endswith("Nothing was charged.")
    assert not VideoRequest.objects.exists()


def test_a_replay_of_an_interaction_whose_request_ended_gets_no_second_answer(server):
    payload = veo()

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await eventually(delivered(int(payload["id"])), what="delivery")
        before = len(server.requests())
        await deliver_and_wait(bot, payload, server=server)  # the same interaction again
        return server.requests()[before:]

    after_replay = run_bot(scenario, run_worker=True)
    assert [(r.method, r.route) for r in after_replay] == []  # not even an attempt Discord would refuse
    assert server.original_response(payload["id"])["embeds"][0]["title"] == "Your video is ready"
    assert VideoRequest.objects.filter(interaction_id=payload["id"]).count() == 1


def test_the_sample_video_says_it_is_one_in_discord(server, settings):
    settings.VEO_BACKEND, settings.VEO_RECORDED_MODEL = "offline", capabilities.SAMPLE_MODEL
    payload = veo()

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario, bot_factory=lambda **kwargs: new_bot(backend=OfflineBackend(seconds=0.1), **kwargs))
    final = server.original_response(payload["id"])
    [embed] = final["embeds"]
    assert embed["title"] == "Your sample video is ready" and final["attachments"]
    assert {f["name"]: f["value"] for f in embed["fields"]}["Note"] == capabilities.SAMPLE_NOTE
    assert VideoRequest.objects.get(interaction_id=payload["id"]).model == "offline-sample"


def test_a_length_the_model_does_not_make_at_that_resolution_is_refused_naming_the_model(server, settings):
    settings.VEO_MODEL = "veo-3.1-lite-generate-001"  # 1080p only at 8 s (tracking/capabilities.py)
    text = _refusal(server, veo(opts={"length": 4, "hd": True}))
    assert text == (
        "Can't queue that: veo-3.1-lite-generate-001 makes 1080p videos only 8 seconds long (got 4):"
        " choose 8 seconds, or another resolution. Nothing was charged."
    )
    assert not VideoRequest.objects.exists()


@pytest.mark.parametrize(
    "model,hd",
    [
        ("veo-3.1-generate-001", "1080p instead of 720p (default off)"),
        ("veo-3.1-lite-generate-001", "1080p instead of 720p (default off); only at 8 s"),
    ],
)
def test_the_commands_options_say_what_the_configured_model_makes(settings, model, hd):
    settings.VEO_MODEL = model
    cog = veo_commands(admitter=None, replies=None, health=None)
    [command] = [c for c in cog.get_app_commands() if c.name == "veo"]
    options = {parameter.name: parameter for parameter in command.parameters}
    assert options["hd"].description == hd and "model" not in options  # one model: no choice to make
    assert [choice.value for choice in options["length"].choices] == [4, 6, 8]
    assert [choice.value for choice in options["ratio"].choices] == ["16:9", "9:16"]


def test_slow_admission_defers_in_time_then_answers(server, db_settings):
    payload = veo()
    # Hold the user's admission lock, as a burst of their own requests would.
    with psycopg.connect(**conninfo(db_settings)) as blocker:
        blocker.execute("SELECT pg_advisory_xact_lock(1986161410, hashint8(%s::bigint))", [USER_ID])

        async def scenario(bot):
            tasks = deliver(bot, payload, server=server)
            await eventually(lambda: server.interaction(payload["id"]).response_type == 5, what="the defer")
            await asyncio.sleep(0.5)  # admission still blocked: the answer must wait for it
            await asyncio.to_thread(blocker.commit)
            await asyncio.gather(*tasks)

        run_bot(scenario, run_worker=False)
    interaction = server.interaction(payload["id"])
    assert interaction.acknowledged_after < fake.INTERACTION_DEADLINE
    reply = server.original_response(payload["id"])
    assert reply["embeds"][0]["title"] == "Queued" and not reply["flags"] & (fake.EPHEMERAL | fake.LOADING)


def test_refusal_after_a_slow_admission_stays_private(server, settings, db_settings):
    settings.VEO_QUOTA_LIMIT = 0
    payload = veo()
    with psycopg.connect(**conninfo(db_settings)) as blocker:
        blocker.execute("SELECT pg_advisory_xact_lock(1986161410, hashint8(%s::bigint))", [USER_ID])

        async def scenario(bot):
            tasks = deliver(bot, payload, server=server)
            await eventually(lambda: server.interaction(payload["id"]).response_type == 5, what="the defer")
            await asyncio.to_thread(blocker.commit)
            await asyncio.gather(*tasks)

        run_bot(scenario, run_worker=False)
    [message] = server.messages_in(CHANNEL_ID)  # the public placeholder is gone
    assert message["flags"] & fake.EPHEMERAL and "You have used all 0" in message["content"]


def test_user_text_never_pings_and_long_text_fits_discord(server, settings):
    settings.VEO_PROMPT_MAX_LENGTH = 4000
    prompt = ("@everyone <@123456789012345678> " + "a fox " * 700)[:4000]
    payload = veo(prompt, opts={"negative_prompt": "<@&1234> " + "x" * 3000})

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario)
    for message in server.messages_in(CHANNEL_ID):
        assert message["mentions"] == [] and not message["mention_everyone"]
    final = server.original_response(payload["id"])
    assert final["embeds"][0]["description"].endswith("…") and final["attachments"]
    assert VideoRequest.objects.get(interaction_id=payload["id"]).prompt == " ".join(prompt.split())


# -- failures and delivery fallbacks --------------------------------------------------------------


def test_veo_failure_says_so_and_refunds(server):
    payload = veo("a red fox in snow [scenario:error_operation]")

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario)
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    assert (row.status, row.error_code, row.counts_toward_quota) == ("failed", "operation_failed", False)
    assert ("refunded", None) in events(row.id)
    embed = server.original_response(payload["id"])["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == "Generation failed"
    assert fields["Why"] == "Veo reported an error: Video generation failed."  # the fake's message, passed on
    assert fields["Quota"] == "refunded: this one does not count"


def test_slow_generation_past_the_token_lifetime_is_posted_in_the_channel(server, veo_fake):
    veo_fake.default_scenario = veo_server.scenario("slow", seconds=0.5)
    payload = veo()

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        server.advance(16 * 60)  # the interaction token is now spent
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario)
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    queued, post = server.messages_in(CHANNEL_ID)
    assert queued["embeds"][0]["title"] == "Queued"  # the expired reply is left as it was
    assert (row.delivery_method, row.discord_message_id) == ("channel", int(post["id"]))
    assert post["content"] == f"<@{USER_ID}>" and [u["id"] for u in post["mentions"]] == [str(USER_ID)]
    assert post["allowed_mentions"] == {"parse": [], "users": [USER_ID]}
    assert post["attachments"] and "expired" in post["embeds"][0]["footer"]["text"]


@pytest.mark.parametrize(
    "revoked,form",
    [
        (fake.ATTACH_FILES, "linked"),  # the embed, with a note instead of the file
        (fake.EMBED_LINKS, "text"),  # no embed at all: the outcome as plain text
        (fake.EMBED_LINKS | fake.ATTACH_FILES, "text"),
    ],
)
def test_a_channel_that_refuses_files_or_embeds_gets_a_plainer_post(server, revoked, form, veo_fake):
    veo_fake.default_scenario = veo_server.scenario("slow", seconds=0.3)
    payload = veo()

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        server.revoke_permissions(CHANNEL_ID, revoked)
        server.advance(16 * 60)  # the interaction token is spent: the outcome goes to the channel
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario)
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    post = server.messages_in(CHANNEL_ID)[-1]
    assert (row.delivery_method, row.discord_message_id, row.delivery_error) == ("channel", int(post["id"]), None)
    assert not post["attachments"] and post["content"].startswith(f"<@{USER_ID}>")
    if form == "linked":
        [embed] = post["embeds"]
        assert embed["title"] == "Your video is ready" and "could not be attached" in str(embed["fields"])
    else:
        assert post["embeds"] == [] and "**Your video is ready**" in post["content"]
        assert "a red fox running through fresh snow" in post["content"]


@pytest.mark.parametrize(
    "break_channel,error,posts",
    [
        # Missing Permissions: each plainer form (no file, no embed) is tried once, in case it is enough.
        (lambda server: server.deny_channel(CHANNEL_ID), "missing permissions in channel", 3),
        (lambda server: server.delete_channel(CHANNEL_ID), "not found (10003", 1),
        # A refusal that is neither 429 nor 5xx is permanent: recorded at the first answer, not retried.
        (
            lambda server: server.fail(
                f"POST /channels/{CHANNEL_ID}/messages", (400, 50035, "Invalid Form Body"), times=None
            ),
            "Discord answered 400 50035",
            1,
        ),
    ],
)
def test_undeliverable_is_recorded_not_a_crash(server, break_channel, error, posts, veo_fake):
    veo_fake.default_scenario = veo_server.scenario("slow", seconds=0.3)
    payload = veo()

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        server.advance(16 * 60)
        break_channel(server)
        await eventually(delivered(int(payload["id"])), what="delivery")
        # the bot carries on: the next request in a good channel works
        second = veo(channel_id=CHANNEL_ID + 7)
        server.advance(-16 * 60)
        await deliver_and_wait(bot, second, server=server)
        await eventually(delivered(int(second["id"])), what="second delivery")

    run_bot(scenario)
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    assert row.delivery_method == "undeliverable" and error in row.delivery_error
    assert VideoRequestEvent.objects.filter(request_id=row.id, kind="delivered").count() == 1
    assert len(server.requests(f"POST /channels/{CHANNEL_ID}/messages")) == posts  # and never retried later


@pytest.mark.parametrize(
    "outage,method,posts",
    [
        (1, "channel", 2),  # the second attempt goes through
        (None, "undeliverable", engine_module.DELIVERY_ATTEMPTS),  # Discord never comes back: recorded, bounded
    ],
)
def test_discord_unavailable_in_the_channel_is_retried_then_recorded(server, settings, outage, method, posts, veo_fake):
    settings.VEO_RETRY_BACKOFF = timedelta(0)
    veo_fake.default_scenario = veo_server.scenario("slow", seconds=0.3)
    payload = veo()
    # 503 is not retried by discord.py; it used to escape as an "unexpected worker error" and the
    # finished row was claimed again at once, forever.
    server.fail(f"POST /channels/{CHANNEL_ID}/messages", fake.SERVICE_UNAVAILABLE, times=outage)

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        server.expire_interaction(payload["id"])
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario)
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    assert row.delivery_method == method
    assert len(server.requests(f"POST /channels/{CHANNEL_ID}/messages")) == posts
    if method == "undeliverable":
        assert row.delivery_error == (
            f"gave up after {posts} attempts: Discord answered 503 to a post in channel"
            f" {CHANNEL_ID}: 503: Service Unavailable"
        )
    assert row.attempts == 1  # retried under one claim, not released and re-claimed


# -- duplicates -----------------------------------------------------------------------------------


def test_duplicate_interaction_on_two_bot_instances_gives_one_request_and_one_answer(server, veo_fake):
    veo_fake.default_scenario = veo_server.scenario("slow", seconds=0.3)
    payload = veo()

    async def scenario(first):
        second = new_bot()
        await second.login(BOT_TOKEN)
        try:
            server.register_interaction(payload)
            await asyncio.gather(*deliver(first, payload), *deliver(second, payload))
            await eventually(delivered(int(payload["id"])), what="delivery")
            await asyncio.sleep(0.3)  # room for a second delivery, if there were one
        finally:
            await second.close()

    run_bot(scenario)
    assert VideoRequest.objects.filter(interaction_id=payload["id"]).count() == 1
    callbacks = server.requests("POST /interactions/*/callback")
    assert sorted(r.status for r in callbacks) == [200, 400]  # the second got 40060 and gave up
    assert len(server.messages_in(CHANNEL_ID)) == 1
    row = VideoRequest.objects.get(interaction_id=payload["id"])
    assert VideoRequestEvent.objects.filter(request_id=row.id, kind="delivered").count() == 1


def test_replayed_interaction_in_the_same_process_is_answered_once(server):
    payload = veo()

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await deliver_and_wait(bot, payload, server=server)
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario)
    assert VideoRequest.objects.filter(interaction_id=payload["id"]).count() == 1
    assert len(server.requests("POST /interactions/*/callback")) == 1
    assert len(server.messages_in(CHANNEL_ID)) == 1


# -- /quota and /history ------------------------------------------------------------------------------


def test_quota_shows_used_limit_and_next_slot(server, settings):
    settings.VEO_QUOTA_LIMIT = 3
    VideoRequestFactory(user_id=USER_ID, created_at=timezone.now() - timedelta(hours=21, minutes=45))
    VideoRequestFactory(user_id=USER_ID, created_at=timezone.now() - timedelta(hours=1))
    payload = slash_command("quota")
    run_bot(lambda bot: deliver_and_wait(bot, payload, server=server), run_worker=False)
    reply = server.original_response(payload["id"])
    assert reply["flags"] & fake.EPHEMERAL
    assert reply["content"] == "You have used 2 of 3 videos in the last 24h.\nNext slot frees in 2h 15m."


def test_history_lists_the_last_ten_with_status_age_and_link(server):
    now = timezone.now()
    for minutes in reversed(range(12)):  # oldest first, as they would have been made
        VideoRequestFactory(
            user_id=USER_ID,
            created_at=now - timedelta(minutes=minutes + 1),
            prompt=f"prompt number {minutes}",
            delivered_at=now,
            delivery_method="channel",
            discord_message_id=900 + minutes,
        )
    VideoRequestFactory(user_id=USER_ID + 1, prompt="someone else's")
    payload = slash_command("history")
    run_bot(lambda bot: deliver_and_wait(bot, payload, server=server), run_worker=False)
    reply = server.original_response(payload["id"])
    lines = reply["content"].splitlines()
    assert reply["flags"] & fake.EPHEMERAL and lines[0] == "Your last requests:" and len(lines) == 11
    assert "completed · 1m" in lines[1] and "ago · prompt number 0" in lines[1]
    assert lines[1].endswith("https://discord.com/channels/2001/3001/900")  # the factory's guild and channel
    assert "someone else's" not in reply["content"] and "prompt number 10" not in reply["content"]


# -- the Cancel button ---------------------------------------------------------------------------------

OTHER_USER_ID = USER_ID + 1


def _cancel_id(payload) -> str:
    return f"veo:cancel:{payload['id']}"


def _click(server, message: dict, custom_id: str, **kwargs) -> str:
    """Click a button on ``message`` in a freshly started bot (so the button must outlive the process
    that drew it); returns the private answer."""
    click = button_click(message, custom_id, **kwargs)
    run_bot(lambda bot: deliver_and_wait(bot, click, server=server), run_worker=False)
    reply = server.original_response(click["id"])
    assert reply["flags"] & fake.EPHEMERAL
    return reply["content"]


def _queued(server, payload) -> dict:
    run_bot(lambda bot: deliver_and_wait(bot, payload, server=server), run_worker=False)  # nobody starts it
    return server.original_response(payload["id"])


def test_the_requester_cancels_a_queued_request_from_another_process_and_gets_the_slot_back(server):
    payload = veo()
    queued = _queued(server, payload)
    [row] = queued["components"]
    [button] = row["components"]
    assert (button["label"], button["custom_id"]) == ("Cancel", _cancel_id(payload))

    answer = _click(server, queued, _cancel_id(payload))

    assert answer == "Cancelled. Nothing was charged: your quota slot is back."
    request = VideoRequest.objects.get(interaction_id=payload["id"])
    assert (request.status, request.error_code, request.counts_toward_quota) == ("cancelled", "cancelled", False)
    assert events(request.id)[:2] == [("created", "pending"), ("status_changed", "cancelled")]
    cancelled = VideoRequestEvent.objects.get(request_id=request.id, to_status="cancelled")
    assert cancelled.actor == f"discord:{USER_ID}"
    # A second click changes nothing and says why.
    assert _click(server, queued, _cancel_id(payload)) == "This request is already cancelled."


def test_someone_elses_cancel_changes_nothing(server):
    payload = veo()
    queued = _queued(server, payload)

    answer = _click(server, queued, _cancel_id(payload), author=user(OTHER_USER_ID, username="mallory"))

    assert answer == "Only the person who asked for this video can cancel it."
    request = VideoRequest.objects.get(interaction_id=payload["id"])
    assert (request.status, request.counts_toward_quota) == ("pending", True)


@pytest.mark.parametrize(
    "status,claimed,expected",
    [
        ("generating", False, "Veo has already started this video, so it can no longer be cancelled"),
        ("pending", True, "It is starting at Veo right now, so it can no longer be cancelled."),
        ("completed", False, "This request has already ended (completed); there is nothing to cancel."),
    ],
)
def test_cancel_once_veo_may_have_started_is_refused_with_the_reason(server, status, claimed, expected):
    payload = veo()
    queued = _queued(server, payload)
    request = VideoRequest.objects.get(interaction_id=payload["id"])
    with connection.cursor() as cursor:  # as a worker would have moved it on
        if claimed or status != "pending":
            cursor.execute(
                "UPDATE video_requests SET claimed_by = 'w', lease_expires_at = now() + interval '1 minute'"
                " WHERE id = %s",
                [request.id],
            )
        if status != "pending":
            cursor.execute(
                "UPDATE video_requests SET status = 'generating', operation_name = 'op' WHERE id = %s", [request.id]
            )
        if status == "completed":
            cursor.execute(
                "UPDATE video_requests SET status = 'completed', output_uris = '{file:///x.mp4}' WHERE id = %s",
                [request.id],
            )

    answer = _click(server, queued, _cancel_id(payload))

    assert answer.startswith(expected)
    assert VideoRequest.objects.get(id=request.id).status == status


def test_cancel_naming_an_unknown_request_says_so(server):
    queued = _queued(server, veo())
    # A message whose button names an interaction the database has no request for (discord.py
    # only dispatches a click to a button the clicked message carries).
    queued["components"][0]["components"][0]["custom_id"] = unknown = "veo:cancel:1180000000000000998"
    assert _click(server, queued, unknown) == "There is no such request (any more)."


# -- the Delete button ---------------------------------------------------------------------------------


def test_the_requester_deletes_the_video_its_message_and_its_file(server, veo_fake, settings):
    payload = veo()
    final = run_to_delivery(server, payload)
    request = VideoRequest.objects.get(interaction_id=payload["id"])
    video = LocalStorage(Path(settings.VEO_MEDIA_ROOT)).path(request.output_uris[0])
    assert video.is_file()

    answer = _click(server, final, f"veo:delete:{payload['id']}")

    assert answer == "Deleted: the video and its message are gone."
    assert server.message(final["id"]) is None and not video.exists()
    request.refresh_from_db()
    assert (request.review_status, request.reviewed_by, request.review_note) == (
        "removed",
        f"discord:{USER_ID}",
        "removed by its author",
    )
    removed = VideoRequestEvent.objects.get(request_id=request.id, kind="output_removed")
    assert (removed.actor, removed.detail["reason"]) == (f"discord:{USER_ID}", "removed by its author")
    assert _click(server, final, f"veo:delete:{payload['id']}") == "This video was already deleted."


def test_someone_elses_delete_is_refused_and_a_channel_moderators_is_not(server, veo_fake):
    payload = veo()
    final = run_to_delivery(server, payload)
    mallory = user(OTHER_USER_ID, username="mallory")

    refused = _click(server, final, f"veo:delete:{payload['id']}", author=mallory)
    assert refused == "Only the person who asked for this video, or a moderator of this channel, can delete it."
    assert server.message(final["id"]) is not None
    assert VideoRequest.objects.get(interaction_id=payload["id"]).review_status != "removed"

    moderator = user(OTHER_USER_ID + 1, username="mod")
    permissions = MEMBER_PERMISSIONS | discord.Permissions(manage_messages=True).value
    done = _click(server, final, f"veo:delete:{payload['id']}", author=moderator, permissions=permissions)
    assert done == "Deleted: the video and its message are gone."
    request = VideoRequest.objects.get(interaction_id=payload["id"])
    assert (request.review_status, request.review_note) == ("removed", "removed by a moderator of the Discord channel")


def test_while_veo_answers_429_the_queued_message_says_so_at_most_every_10_s(server, veo_fake, settings):
    settings.VEO_RETRY_BACKOFF = timedelta(milliseconds=100)
    veo_fake.default_scenario = veo_server.scenario("rate_limited", times=4)  # then a video
    payload = veo()

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await eventually(delivered(int(payload["id"])), what="delivery after the 429s")

    run_bot(scenario)
    edits = [
        r.json
        for r in server.requests()
        if r.method == "PATCH" and r.path.endswith("/messages/@original") and r.status == 200
    ]
    waiting = [e for e in edits if any(f["name"] == "Waiting" for f in e["embeds"][0].get("fields", []))]
    assert len(veo_fake.creates()) == 5  # four 429s, then the start
    [notice] = waiting  # four retries within a second: one edit, the rest held back by the 10 s
    fields = {f["name"]: f["value"] for f in notice["embeds"][0]["fields"]}
    assert notice["embeds"][0]["title"] == "Queued" and notice["components"] == []
    assert fields["Waiting"].startswith("Veo is at capacity right now (it answered 429); trying again in ~")
    assert edits[-1]["embeds"][0]["title"] == "Your video is ready"


def test_under_the_start_cap_the_queued_message_says_why_and_counts_it_in_the_eta(server, settings):
    settings.VEO_MAX_CONCURRENT, settings.VEO_MAX_STARTS_PER_MINUTE = 4, 2
    VideoRequestFactory(duration_seconds=4, resolution="720p")  # a generation of 40 s: the median
    for _ in range(6):
        VideoRequestFactory(status="pending", user_id=USER_ID + 7)  # someone else's, waiting
    payload = veo(opts={"length": 4, "hd": False})

    queued = _queued(server, payload)

    fields = {f["name"]: f["value"] for f in queued["embeds"][0]["fields"]}
    assert fields["Position"] == "7 in queue"
    assert fields["ETA"] == "~3m 40s"  # 6 starts at 2 a minute, then its own 40 s
    assert fields["Waiting"] == "Veo starts at most 2 videos a minute here, and 6 are ahead of this one"


# -- the Report button ---------------------------------------------------------------------------------


def _report(server, result: dict, payload: dict, reason: str, *, author: dict) -> tuple[dict, str]:
    """Click Report on ``result`` as ``author`` in one bot process, then submit the modal with
    ``reason`` to another (a form outlives the process that opened it). Returns the modal and the
    private answer."""
    click = button_click(result, f"veo:report:{payload['id']}", author=author)
    run_bot(lambda bot: deliver_and_wait(bot, click, server=server), run_worker=False)
    modal = server.interaction(click["id"]).modal
    field = modal["components"][0]["components"][0]["custom_id"]
    submitted = modal_submit(click, modal, {field: reason})
    run_bot(lambda bot: deliver_and_wait(bot, submitted, server=server), run_worker=False)
    answer = server.original_response(submitted["id"])
    assert answer["flags"] & fake.EPHEMERAL
    return modal, answer["content"]


def test_anyone_reports_a_video_with_a_reason_kept_for_moderators(server, veo_fake):
    payload = veo()
    result = run_to_delivery(server, payload)
    mallory = user(OTHER_USER_ID, username="mallory")

    modal, answer = _report(server, result, payload, "  it shows a   real person  ", author=mallory)

    assert modal["title"] == "Report this video"
    assert answer == "Thanks: the moderators will look at this video."
    request = VideoRequest.objects.get(interaction_id=payload["id"])
    [report] = Report.objects.filter(request=request)
    assert (report.reporter_id, report.reason, report.state, report.guild_id) == (
        OTHER_USER_ID,
        "it shows a real person",
        "open",
        GUILD_ID,
    )
    reported = VideoRequestEvent.objects.get(request_id=request.id, kind="reported")
    assert reported.actor == f"discord:{OTHER_USER_ID}"
    assert reported.detail == {"report_id": report.id, "reason": "it shows a real person"}
    # The same person again: kept once; an empty reason: kept nowhere.
    _, again = _report(server, result, payload, "still bad", author=mallory)
    assert again == "You have already reported this video; the moderators will look at it."
    _, empty = _report(server, result, payload, "   ", author=user(OTHER_USER_ID + 1, username="eve"))
    assert empty == "The report was not kept: a reason is required."
    assert Report.objects.count() == 1 and VideoRequestEvent.objects.filter(kind="reported").count() == 1


# -- a choice of models (VEO_MODELS) --------------------------------------------------------------------

FAST = "veo-3.1-fast-generate-001"


def test_with_several_models_veo_offers_them_and_the_choice_reaches_veo(server, veo_fake, settings):
    settings.VEO_MODELS = (settings.VEO_MODEL, FAST)
    cog = veo_commands(admitter=None, replies=None, health=None)
    [command] = [c for c in cog.get_app_commands() if c.name == "veo"]
    model = {parameter.name: parameter for parameter in command.parameters}["model"]
    assert [choice.value for choice in model.choices] == [settings.VEO_MODEL, FAST] and not model.required

    payload = veo(opts={"model": FAST})
    run_to_delivery(server, payload)

    assert VideoRequest.objects.get(interaction_id=payload["id"]).model == FAST
    [create] = veo_fake.creates()
    assert f"/models/{FAST}:" in create.path


def test_a_model_not_offered_is_refused_before_admission(settings):
    settings.VEO_MODELS = (settings.VEO_MODEL,)
    with pytest.raises(InvalidInput, match="model must be one of veo-3.1-generate-001"):
        services.clean_parameters(services.VideoParameters(prompt="a red fox", model=FAST))
