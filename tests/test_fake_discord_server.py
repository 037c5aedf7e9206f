"""The fake Discord server, proven with the real discord.py 2.7 client: login over REST,
interactions delivered as the gateway would, no database."""

import asyncio
import contextlib
import io
import json
import time
import urllib.error
import urllib.request

import discord
import pytest
from discord import app_commands
from discord.app_commands import Choice

from tests.fakes import discord_server as fake
from tests.fakes.discord_server import BOT_TOKEN, FakeDiscordServer
from tests.fakes.interactions import (
    CHANNEL_ID,
    GUILD_ID,
    USER_ID,
    button_click,
    deliver,
    deliver_and_wait,
    message_command,
    modal_submit,
    slash_command,
    user,
    with_attachment,
)

OTHER_USER_ID = 1_180_000_000_000_000_999


@pytest.fixture
def server():
    with FakeDiscordServer() as server, server.patch_discord():
        yield server
        assert server.internal_errors == []


class Bot(discord.Client):
    """A tiny bot whose commands keep each Interaction and what discord.py raised, for the tests."""

    def __init__(self):
        super().__init__(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self)
        self.seen: dict[int, discord.Interaction] = {}
        self.failures: dict[int, discord.HTTPException] = {}
        self.values: tuple = ()
        _add_commands(self.tree)


@contextlib.asynccontextmanager
async def capture(interaction: discord.Interaction):
    interaction.client.seen[interaction.id] = interaction
    try:
        yield
    except discord.HTTPException as error:
        interaction.client.failures[interaction.id] = error


def _add_commands(tree: app_commands.CommandTree) -> None:
    @tree.command(description="Reply, then edit the reply to attach a video")
    async def echo(interaction: discord.Interaction, text: str, video_bytes: int = 16):
        async with capture(interaction):
            await interaction.response.send_message(text)
            video = discord.File(io.BytesIO(b"\0" * video_bytes), "video.mp4")
            await interaction.edit_original_response(attachments=[video])

    @tree.command(description="Defer, then send two followups")
    async def slow(interaction: discord.Interaction, ephemeral: bool = False):
        async with capture(interaction):
            await interaction.response.defer(ephemeral=ephemeral, thinking=True)
            await interaction.followup.send("first")
            await interaction.followup.send("second")

    @tree.command(description="Only defer")
    async def generate(interaction: discord.Interaction):
        async with capture(interaction):
            await interaction.response.defer()

    @tree.command(description="Refuse privately")
    async def refuse(interaction: discord.Interaction):
        async with capture(interaction):
            await interaction.response.send_message("No.", ephemeral=True)

    @tree.command(description="Every option type")
    @app_commands.choices(model=[Choice(name="Fast", value="veo-fast"), Choice(name="Best", value="veo")])
    async def options(
        interaction: discord.Interaction, prompt: str, seconds: int, audio: bool, ratio: float, model: Choice[str]
    ):
        async with capture(interaction):
            interaction.client.values = (prompt, seconds, audio, ratio, model.value)
            await interaction.response.send_message("ok")


def run(scenario, *, make=None):
    """Log a fresh Bot (or ``make()``) in against the fake (REST only, no gateway) and run `scenario(bot)`."""

    async def main():
        bot = (make or Bot)()
        await bot.login(BOT_TOKEN)
        try:
            return await scenario(bot)
        finally:
            await bot.close()

    return asyncio.run(main())


def handle(server, payload) -> Bot:
    """Deliver one interaction (registering it) to a fresh bot and wait for its command to finish."""

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        return bot

    return run(scenario)


def raw(server, method, path, body=None, *, bot_auth=False):
    """A request discord.py would never make (it checks some rules itself): (status, JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    return raw_bytes(server, method, path, data, bot_auth=bot_auth)[:2]


def raw_bytes(server, method, path, data: bytes | None, *, content_type="application/json", bot_auth=False):
    """(status, JSON body, headers) of a request with exactly this body and Content-Type."""
    headers = {"Content-Type": content_type}
    if bot_auth:
        headers["Authorization"] = f"Bot {BOT_TOKEN}"
    request = urllib.request.Request(server.base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def routes(server):
    return [f"{r.method} {r.route}" for r in server.requests()]


def test_login_needs_only_rest(server):
    async def scenario(bot):
        assert bot.user.id == server.application_id
        assert bot.application_id == server.application_id

    run(scenario)
    assert routes(server) == ["GET /users/@me", "GET /oauth2/applications/@me"]


def test_reply_then_edit_original_with_a_video(server):
    payload = slash_command("echo", {"text": "a red fox", "video_bytes": 4096})
    bot = handle(server, payload)

    assert bot.failures == {}
    interaction = server.interaction(payload["id"])
    assert interaction.response_type == 4
    assert interaction.acknowledged_after < fake.INTERACTION_DEADLINE
    original = server.original_response(payload["id"])
    assert original["content"] == "a red fox"
    [video] = original["attachments"]
    assert (video["filename"], video["size"], video["content_type"]) == ("video.mp4", 4096, "video/mp4")
    assert server.attachment_data(video["id"]) == b"\0" * 4096
    [edit] = server.requests("PATCH /webhooks/*/messages/@original")
    assert [(u.field, u.filename, u.size) for u in edit.uploads] == [("files[0]", "video.mp4", 4096)]
    assert server.messages_in(CHANNEL_ID) == [original]


def test_first_followup_after_a_defer_replaces_the_thinking_message(server):
    payload = slash_command("slow", {"ephemeral": True})
    handle(server, payload)

    original = server.original_response(payload["id"])
    assert original["content"] == "first"
    assert original["flags"] & fake.EPHEMERAL and not original["flags"] & fake.LOADING
    assert [m["content"] for m in server.followups(payload["id"])] == ["second"]
    assert len(server.requests("POST /webhooks/*")) == 2


def test_second_acknowledgement_is_rejected_with_40060(server):
    payload = slash_command("refuse")

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        assert bot.failures == {}
        await deliver_and_wait(bot, payload, server=server)  # a duplicate INTERACTION_CREATE
        return bot.failures[int(payload["id"])]

    error = run(scenario)
    assert (error.status, error.code) == (400, 40060)
    status, body = raw(
        server,
        "POST",
        f"/interactions/{payload['id']}/{payload['token']}/callback",
        {"type": 4, "data": {"content": "again"}},
    )
    assert (status, body["code"]) == (400, 40060)


def test_first_response_after_three_seconds_is_an_unknown_interaction(server):
    payload = slash_command("refuse")
    server.register_interaction(payload)
    server.advance(fake.INTERACTION_DEADLINE + 0.5)

    bot = handle(server, payload)
    error = bot.failures[int(payload["id"])]
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert server.interaction(payload["id"]).response_type is None


def test_attachment_over_the_interaction_limit_is_rejected_with_413(server):
    payload = slash_command("echo", {"text": "here it comes", "video_bytes": 1025}, attachment_size_limit=1024)
    bot = handle(server, payload)

    assert bot.seen[int(payload["id"])].filesize_limit == 1024  # discord.py exposes the payload's limit
    error = bot.failures[int(payload["id"])]
    assert (error.status, error.code) == (413, 40005)
    assert server.original_response(payload["id"])["attachments"] == []


def test_channel_posts_allow_10_mib_per_file_by_default(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)
    limit = fake.DEFAULT_ATTACHMENT_SIZE_LIMIT

    async def scenario(bot):
        channel = bot.get_partial_messageable(CHANNEL_ID)
        await channel.send(file=discord.File(io.BytesIO(b"\0" * limit), "exact.mp4"))
        with pytest.raises(discord.HTTPException) as too_big:
            await channel.send(file=discord.File(io.BytesIO(b"\0" * (limit + 1)), "over.mp4"))
        return too_big.value

    error = run(scenario)
    assert (error.status, error.code) == (413, 40005)
    assert [m["attachments"][0]["filename"] for m in server.messages_in(CHANNEL_ID)] == ["exact.mp4"]


def test_expired_token_fails_and_the_bot_can_post_in_the_channel_instead(server):
    payload = slash_command("generate")

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        interaction = bot.seen[int(payload["id"])]
        server.advance(16 * 60)
        with pytest.raises(discord.HTTPException) as edit:
            await interaction.edit_original_response(content="done")
        with pytest.raises(discord.HTTPException) as followup:
            await interaction.followup.send("done")
        only_requester = discord.AllowedMentions(everyone=False, roles=False, users=[interaction.user])
        await interaction.channel.send(
            f"<@{USER_ID}> your video (cc <@{OTHER_USER_ID}>)", allowed_mentions=only_requester
        )
        return edit.value, followup.value

    for error in run(scenario):
        assert (error.status, error.code) == (401, 50027)
    [thinking, post] = server.messages_in(CHANNEL_ID)
    assert thinking["flags"] & fake.LOADING
    assert post["allowed_mentions"]["parse"] == [] and post["allowed_mentions"]["users"] == [USER_ID]
    assert [u["id"] for u in post["mentions"]] == [str(USER_ID)]


def test_429_is_retried_after_retry_after(server):
    server.rate_limit("PATCH /webhooks/*/messages/@original", retry_after=0.2)
    server.rate_limit("POST /channels/*/messages", retry_after=0.2)
    payload = slash_command("echo", {"text": "hi"})

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await bot.get_partial_messageable(CHANNEL_ID).send("also hi")

    run(scenario)
    for route in ("PATCH /webhooks/*/messages/@original", "POST /channels/*/messages"):
        limited, retried = server.requests(route)
        assert (limited.status, retried.status) == (429, 200)
        assert limited.response == {"message": "You are being rate limited.", "retry_after": 0.2, "global": False}
        assert retried.at - limited.at >= 0.2
    assert server.original_response(payload["id"])["attachments"]


def test_scripted_errors_and_one_expired_interaction(server):
    server.fail("POST /channels/*/messages", fake.SERVICE_UNAVAILABLE, times=1)
    server.fail("PATCH /webhooks/*/messages/@original", fake.UNKNOWN_WEBHOOK, times=2)
    expired, live = slash_command("generate"), slash_command("generate")

    async def scenario(bot):
        for payload in (expired, live):
            await deliver_and_wait(bot, payload, server=server)
        server.expire_interaction(expired["id"])
        raised = []
        with pytest.raises(discord.DiscordServerError) as error:  # 503 is not retried by discord.py
            await bot.get_partial_messageable(CHANNEL_ID).send("hello")
        raised.append(error.value)
        await bot.get_partial_messageable(CHANNEL_ID).send("hello again")  # only the first one failed
        for payload in (expired, live):
            with pytest.raises(discord.HTTPException) as error:
                await bot.seen[int(payload["id"])].edit_original_response(content="done")
            raised.append(error.value)
        return raised

    unavailable, unknown_webhook, still_unknown = run(scenario)
    assert (unavailable.status, unknown_webhook.status, unknown_webhook.code) == (503, 404, 10015)
    assert (still_unknown.status, still_unknown.code) == (404, 10015)
    assert [r.status for r in server.requests("POST /channels/*/messages")] == [503, 200]
    # The scripted errors are used up; now the expiry shows: 401 for one token, the other still works.
    statuses = [
        raw(
            server,
            "PATCH",
            f"/webhooks/{fake.DEFAULT_APPLICATION_ID}/{p['token']}/messages/@original",
            {"content": "done"},
        )[0]
        for p in (expired, live)
    ]
    assert statuses == [401, 200]


def test_channel_errors_surface_as_forbidden_and_not_found(server):
    denied, deleted, read_only = CHANNEL_ID + 1, CHANNEL_ID + 2, CHANNEL_ID + 3
    server.add_channel(denied, guild_id=GUILD_ID)
    server.add_channel(deleted, guild_id=GUILD_ID)
    server.deny_channel(denied)
    server.delete_channel(deleted)
    server.register_interaction(
        slash_command("refuse", channel_id=read_only, app_permissions=discord.Permissions(view_channel=True).value)
    )

    async def scenario(bot):
        raised = []
        for channel_id in (denied, deleted, read_only):
            with pytest.raises(discord.HTTPException) as error:
                await bot.get_partial_messageable(channel_id).send("hello")
            raised.append(error.value)
        with pytest.raises(discord.NotFound):
            await bot.fetch_channel(deleted)
        return raised

    forbidden, not_found, no_send = run(scenario)
    assert isinstance(forbidden, discord.Forbidden) and forbidden.code == 50013
    assert isinstance(not_found, discord.NotFound) and not_found.code == 10003
    assert isinstance(no_send, discord.Forbidden) and no_send.code == 50013


def test_state_survives_a_new_client(server):
    payload = slash_command("generate")
    handle(server, payload)
    original_id = server.interaction(payload["id"]).original_message_id

    async def after_restart(bot):  # the token and message id would come from our database
        webhook = discord.Webhook.partial(bot.application_id, payload["token"], client=bot)
        await webhook.edit_message(original_id, content="your video")
        assert (await webhook.fetch_message(original_id)).content == "your video"
        channel = await bot.fetch_channel(CHANNEL_ID)
        await channel.send("posted after restart")

    run(after_restart)
    assert [m["content"] for m in server.messages_in(CHANNEL_ID)] == ["your video", "posted after restart"]
    assert not server.original_response(payload["id"])["flags"] & fake.LOADING


def test_deleting_a_message(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)

    async def scenario(bot):
        message = await bot.get_partial_messageable(CHANNEL_ID).send("soon gone")
        await message.delete()
        with pytest.raises(discord.NotFound) as again:
            await message.delete()
        return message.id, again.value.code

    message_id, code = run(scenario)
    assert server.message(message_id) is None and code == 10008
    assert [r.status for r in server.requests("DELETE /channels/*/messages/*")] == [204, 404]


def test_content_and_embed_limits_are_enforced(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)
    huge = [discord.Embed(description="x" * 1500) for _ in range(5)]  # each fine, 7500 together

    async def scenario(bot):
        channel = bot.get_partial_messageable(CHANNEL_ID)
        await channel.send("x" * fake.CONTENT_MAX)
        raised = []
        for kwargs in (
            {"content": "x" * (fake.CONTENT_MAX + 1)},
            {"embed": discord.Embed(title="t" * 257)},
            {"embeds": huge},
        ):
            with pytest.raises(discord.HTTPException) as error:
                await channel.send(**kwargs)
            raised.append(error.value)
        return raised

    for error, where in zip(run(scenario), ("In content:", "In embeds.0.title:", "Embed size exceeds"), strict=False):
        assert (error.status, error.code) == (400, 50035) and where in error.text
    status, body = raw(
        server, "POST", f"/channels/{CHANNEL_ID}/messages", {"embeds": [{"title": "t"}] * 11}, bot_auth=True
    )
    assert (status, body["code"], list(body["errors"])) == (400, 50035, ["embeds"])
    assert len(server.messages_in(CHANNEL_ID)) == 1


def test_ephemeral_reply_in_a_dm_is_invisible_on_channel_routes(server):
    payload = slash_command("refuse", guild_id=None)
    bot = handle(server, payload)

    interaction = bot.seen[int(payload["id"])]
    assert interaction.guild is None and isinstance(interaction.channel, discord.DMChannel)
    assert interaction.user.id == USER_ID
    original = server.original_response(payload["id"])
    assert original["flags"] & fake.EPHEMERAL
    assert server.messages_in(payload["channel_id"], ephemeral=False) == []
    status, body = raw(server, "DELETE", f"/channels/{payload['channel_id']}/messages/{original['id']}", bot_auth=True)
    assert (status, body["code"]) == (404, 10008)


def test_payloads_parse_as_discord_py_expects(server):
    payload = slash_command(
        "options",
        {
            "prompt": "fox",
            "seconds": 8,
            "audio": True,
            "ratio": (2, discord.AppCommandOptionType.number),
            "model": "veo-fast",
        },
        author=user(USER_ID, "bob"),
        roles=(GUILD_ID + 5,),
        locale="de",
        attachment_size_limit=25 * 1024 * 1024,
    )
    bot = handle(server, payload)

    assert bot.values == ("fox", 8, True, 2.0, "veo-fast")
    interaction = bot.seen[int(payload["id"])]
    assert interaction.filesize_limit == 25 * 1024 * 1024
    assert interaction.app_permissions.attach_files and interaction.permissions.use_application_commands
    assert isinstance(interaction.user, discord.Member) and interaction.user.name == "bob"
    assert interaction.user.roles == []  # no gateway, so no Role objects: only the ids are known
    assert list(interaction.user._roles) == [GUILD_ID + 5]
    assert interaction.guild_id == GUILD_ID and interaction.channel.id == CHANNEL_ID
    assert interaction.locale is discord.Locale.german and interaction.context.guild
    assert interaction.is_guild_integration()
    assert payload["id"] != slash_command("options")["id"]


def test_deliver_returns_the_tasks_it_started(server):
    payload = slash_command("refuse")

    async def scenario(bot):
        tasks = deliver(bot, payload, server=server)
        assert tasks and server.interaction(payload["id"]).response_type is None
        await asyncio.gather(*tasks)
        assert server.interaction(payload["id"]).response_type == 4

    run(scenario)


def test_sync_overwrites_global_and_guild_commands(server):
    async def scenario(bot):
        synced = await bot.tree.sync()
        bot.tree.copy_global_to(guild=discord.Object(GUILD_ID))
        await bot.tree.sync(guild=discord.Object(GUILD_ID))
        return synced

    synced = run(scenario)
    names = ["echo", "slow", "generate", "refuse", "options"]
    assert [c["name"] for c in server.commands()] == names
    assert [c.id for c in synced] == [int(c["id"]) for c in server.commands()]
    assert [c["name"] for c in server.commands(GUILD_ID)] == names


def test_webhook_rules_before_acknowledgement_and_unknown_routes(server):
    payload = slash_command("generate")
    server.register_interaction(payload)
    webhook = f"/webhooks/{payload['application_id']}/{payload['token']}"

    assert raw(server, "POST", webhook + "?wait=true", {"content": "early"})[1]["code"] == 10015
    assert raw(server, "GET", webhook + "/messages/@original")[1]["code"] == 10008
    status, body = raw(server, "GET", "/users/@me/guilds", bot_auth=True)  # a route the fake lacks
    assert (status, body) == (404, {"message": "404: Not Found", "code": 0})
    assert [r.path for r in server.unhandled_requests()] == ["/users/@me/guilds"]


def test_component_callbacks_update_the_clicked_message(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)
    _, message = raw(server, "POST", f"/channels/{CHANNEL_ID}/messages", {"content": "pick one"}, bot_auth=True)
    click = button_click(message, "retry")
    server.register_interaction(click)
    callback = f"/interactions/{click['id']}/{click['token']}/callback?with_response=true"

    status, body = raw(server, "POST", callback, {"type": 7, "data": {"content": "retrying", "components": []}})
    assert status == 200 and body["resource"]["message"]["id"] == message["id"]
    assert server.message(message["id"])["content"] == "retrying"
    command = slash_command("refuse")
    server.register_interaction(command)
    status, body = raw(server, "POST", f"/interactions/{command['id']}/{command['token']}/callback", {"type": 6})
    assert (status, body["code"], list(body["errors"])) == (400, 50035, ["type"])


CONTENT_TYPE_INVALID = {
    "message": "Invalid Form Body",
    "code": 50035,
    "errors": {
        "_errors": [
            {
                "code": "CONTENT_TYPE_INVALID",
                "message": "Expected \"Content-Type\" header to be one of {'application/json', 'multipart/form-data'}.",
            }
        ]
    },
}


def test_bodies_must_be_json_or_multipart(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)
    post = f"/channels/{CHANNEL_ID}/messages"
    body = json.dumps({"content": "hi"}).encode()

    accepted = raw_bytes(server, "POST", post, body, content_type="application/json; charset=utf-8", bot_auth=True)
    as_text = raw_bytes(server, "POST", post, body, content_type="text/plain", bot_auth=True)
    as_form = raw_bytes(
        server, "POST", post, b"content=hi", content_type="application/x-www-form-urlencoded", bot_auth=True
    )
    malformed = raw_bytes(server, "POST", post, b'{"content": "hi"', bot_auth=True)
    unauthorized = raw_bytes(server, "POST", post, b"{", content_type="text/plain")

    assert accepted[0] == 200 and accepted[1]["content"] == "hi"
    assert as_text[:2] == as_form[:2] == (400, CONTENT_TYPE_INVALID)
    assert malformed[:2] == (400, {"message": "The request body contains invalid JSON.", "code": 50109})
    assert unauthorized[:2] == (401, {"message": "401: Unauthorized", "code": 0})  # the token is checked first
    assert [m["content"] for m in server.messages_in(CHANNEL_ID)] == ["hi"]


def test_webhook_bodies_follow_the_same_rule(server):
    payload = slash_command("generate")
    handle(server, payload)
    original = f"/webhooks/{payload['application_id']}/{payload['token']}/messages/@original"

    status, body, _ = raw_bytes(server, "PATCH", original, b'{"content": "done"}', content_type="text/plain")
    assert (status, body) == (400, CONTENT_TYPE_INVALID)
    status, body, _ = raw_bytes(server, "PATCH", original, b"\xff", content_type="application/json")
    assert (status, body["code"]) == (400, 50109)
    assert server.original_response(payload["id"])["flags"] & fake.LOADING  # nothing was applied


MISSING_PERMISSIONS = {"message": "Missing Permissions", "code": 50013}


def test_channel_posts_and_edits_need_the_bots_permissions(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)  # default: view, send, embed links, attach files
    post = f"/channels/{CHANNEL_ID}/messages"
    with_embed = {"content": "look", "embeds": [{"title": "a fox"}]}

    assert raw(server, "POST", post, with_embed, bot_auth=True)[0] == 200
    server.revoke_permissions(CHANNEL_ID, fake.EMBED_LINKS)
    assert raw(server, "POST", post, with_embed, bot_auth=True) == (403, MISSING_PERMISSIONS)
    status, own = raw(server, "POST", post, {"content": "plain"}, bot_auth=True)
    assert status == 200
    assert raw(server, "PATCH", f"{post}/{own['id']}", with_embed, bot_auth=True) == (403, MISSING_PERMISSIONS)
    assert raw(server, "PATCH", f"{post}/{own['id']}", {"content": "edited"}, bot_auth=True)[0] == 200

    async def send_file(bot):
        with pytest.raises(discord.Forbidden) as error:
            await bot.get_partial_messageable(CHANNEL_ID).send(file=discord.File(io.BytesIO(b"\0"), "v.mp4"))
        return error.value

    server.revoke_permissions(CHANNEL_ID, fake.ATTACH_FILES)
    no_files = run(send_file)
    assert (no_files.status, no_files.code, no_files.text) == (403, 50013, "Missing Permissions")
    server.revoke_permissions(CHANNEL_ID, fake.SEND_MESSAGES)
    assert raw(server, "POST", post, {"content": "plain"}, bot_auth=True) == (403, MISSING_PERMISSIONS)
    server.revoke_permissions(CHANNEL_ID, fake.VIEW_CHANNEL)
    assert raw(server, "POST", post, {"content": "plain"}, bot_auth=True) == (
        403,
        {"message": "Missing Access", "code": 50001},
    )
    assert [m["content"] for m in server.messages_in(CHANNEL_ID)] == ["look", "edited"]


def test_interaction_responses_are_not_subject_to_channel_permissions(server):
    nothing_but_view = discord.Permissions(view_channel=True).value
    payload = slash_command("echo", {"text": "a red fox", "video_bytes": 64}, app_permissions=nothing_but_view)
    bot = handle(server, payload)  # replies, then edits the reply to attach a video

    assert bot.failures == {}
    assert server.original_response(payload["id"])["attachments"][0]["filename"] == "video.mp4"
    command = slash_command("refuse", app_permissions=nothing_but_view)
    server.register_interaction(command)
    status, _ = raw(
        server,
        "POST",
        f"/interactions/{command['id']}/{command['token']}/callback",
        {"type": 4, "data": {"embeds": [{"title": "queued"}]}},
    )
    assert status == 204 and server.original_response(command["id"])["embeds"][0]["title"] == "queued"
    # The channel route is checked against the same app_permissions.
    assert raw(server, "POST", f"/channels/{CHANNEL_ID}/messages", {"content": "x"}, bot_auth=True) == (
        403,
        MISSING_PERMISSIONS,
    )


def test_the_bot_edits_only_its_own_messages_and_deletes_others_only_with_manage_messages(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)
    theirs = server.add_user_message(CHANNEL_ID, "their words")
    assert theirs["author"]["id"] == str(fake.SOMEONE_ID)
    path = f"/channels/{CHANNEL_ID}/messages/{theirs['id']}"

    async def scenario(bot):
        channel = bot.get_partial_messageable(CHANNEL_ID)
        own = await channel.send("mine")
        await own.edit(content="still mine")
        other = channel.get_partial_message(int(theirs["id"]))
        raised = []
        for action in (lambda: other.edit(content="rewritten"), other.delete):
            with pytest.raises(discord.Forbidden) as error:
                await action()
            raised.append(error.value)
        await own.delete()  # its own: no MANAGE_MESSAGES needed
        return raised

    cannot_edit, cannot_delete = run(scenario)
    assert (cannot_edit.code, cannot_edit.text) == (50005, "Cannot edit a message authored by another user")
    assert (cannot_delete.code, cannot_delete.text) == (50013, "Missing Permissions")
    server.grant_permissions(CHANNEL_ID, fake.MANAGE_MESSAGES)
    assert raw(server, "PATCH", path, {"content": "rewritten"}, bot_auth=True) == (
        403,
        {"message": "Cannot edit a message authored by another user", "code": 50005},
    )
    assert raw(server, "DELETE", path, bot_auth=True) == (204, None)
    assert server.messages_in(CHANNEL_ID) == []


BUCKET_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-After",
    "X-RateLimit-Bucket",
)


def test_every_route_answers_with_its_bucket_headers(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)
    post = f"/channels/{CHANNEL_ID}/messages"

    first, second = (raw_bytes(server, "POST", post, b'{"content": "hi"}', bot_auth=True)[2] for _ in range(2))
    refused = raw_bytes(server, "POST", post, b'{"embeds": []}', bot_auth=True)  # an error, same bucket
    read = raw_bytes(server, "GET", f"/channels/{CHANNEL_ID}", None, bot_auth=True)[2]
    unknown = raw_bytes(server, "GET", "/users/@me/guilds", None, bot_auth=True)[2]

    assert (first["X-RateLimit-Limit"], first["X-RateLimit-Remaining"]) == ("50", "49")
    assert second["X-RateLimit-Remaining"] == "48" and refused[0] == 400 and refused[2]["X-RateLimit-Remaining"] == "47"
    assert 0 < float(second["X-RateLimit-Reset-After"]) <= fake.DEFAULT_BUCKET_WINDOW
    assert abs(float(second["X-RateLimit-Reset"]) - time.time() - float(second["X-RateLimit-Reset-After"])) < 0.5
    assert len(first["X-RateLimit-Bucket"]) == 32 and first["X-RateLimit-Bucket"] == second["X-RateLimit-Bucket"]
    assert read["X-RateLimit-Bucket"] != first["X-RateLimit-Bucket"] and read["X-RateLimit-Remaining"] == "49"
    assert not any(name in unknown for name in BUCKET_HEADERS)


def test_buckets_are_counted_per_channel_and_per_webhook_token(server):
    server.limit_route("POST /channels/*/messages", 2, per=10)
    server.limit_route("PATCH /webhooks/*", 1, per=10)
    for channel_id in (CHANNEL_ID, CHANNEL_ID + 1):
        server.add_channel(channel_id, guild_id=GUILD_ID)

    in_a = [
        raw_bytes(server, "POST", f"/channels/{CHANNEL_ID}/messages", b'{"content": "a"}', bot_auth=True)
        for _ in range(3)
    ]
    in_b = raw_bytes(server, "POST", f"/channels/{CHANNEL_ID + 1}/messages", b'{"content": "b"}', bot_auth=True)

    assert [status for status, _, _ in in_a] == [200, 200, 429] and in_b[0] == 200
    status, body, headers = in_a[2]
    assert body == {"message": "You are being rate limited.", "retry_after": body["retry_after"], "global": False}
    assert 9 < body["retry_after"] <= 10 and headers["Retry-After"] == "10"
    assert (headers["X-RateLimit-Remaining"], headers["X-RateLimit-Limit"], headers["X-RateLimit-Scope"]) == (
        "0",
        "2",
        "user",
    )
    assert in_b[2]["X-RateLimit-Bucket"] == headers["X-RateLimit-Bucket"]  # one bucket, counted per channel
    assert len(server.messages_in(CHANNEL_ID)) == 2

    first, second = slash_command("generate"), slash_command("generate")
    for payload in (first, second):
        handle(server, payload)
    edits = [
        raw(server, "PATCH", f"/webhooks/{p['application_id']}/{p['token']}/messages/@original", {"content": "done"})[0]
        for p in (first, second, first)
    ]
    assert edits == [200, 200, 429]


def test_discord_py_waits_for_an_exhausted_bucket_instead_of_hitting_429():
    with FakeDiscordServer(bucket_limit=2, bucket_window=0.4) as server, server.patch_discord():
        server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)

        async def scenario(bot):
            for n in range(5):
                await bot.get_partial_messageable(CHANNEL_ID).send(f"message {n}")

        run(scenario)
        payload = slash_command("slow")  # defer, then two followups through the webhook adapter
        server.limit_route("POST /webhooks/*", 1, per=0.4)
        handle(server, payload)
        assert server.internal_errors == []

    posts = server.requests("POST /channels/*/messages")
    assert [r.status for r in posts] == [200] * 5
    assert posts[2].at - posts[0].at >= 0.35 and posts[4].at - posts[2].at >= 0.35  # a new window each time
    followups = server.requests("POST /webhooks/*")
    assert [r.status for r in followups] == [200, 200] and followups[1].at - followups[0].at >= 0.35


# -- components, modals, context menus, attachments ------------------------------------------------


def _button(custom_id, label="Go", **extra):
    return {"type": 2, "style": 1, "custom_id": custom_id, "label": label, **extra}


def _rows(*rows):
    return [{"type": 1, "components": list(row)} for row in rows]


@pytest.mark.parametrize(
    "components,path,code",
    [
        (_rows(*[[_button(f"b{i}")] for i in range(6)]), ["components"], "BASE_TYPE_MAX_LENGTH"),
        (_rows([_button(f"b{i}") for i in range(6)]), ["components", "0", "components"], "BASE_TYPE_MAX_LENGTH"),
        (_rows([_button("x" * 101)]), ["components", "0", "components", "0", "custom_id"], "BASE_TYPE_MAX_LENGTH"),
        (
            _rows([_button("b", label="l" * 81)]),
            ["components", "0", "components", "0", "label"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            _rows([_button("b"), _button("b")]),
            ["components", "0", "components", "1", "custom_id"],
            "COMPONENT_CUSTOM_ID_DUPLICATED",
        ),
        (
            _rows([{"type": 2, "style": 1, "label": "no id"}]),
            ["components", "0", "components", "0", "custom_id"],
            "BASE_TYPE_REQUIRED",
        ),
    ],
    ids=["6 rows", "6 buttons in a row", "custom_id 101", "label 81", "duplicate custom_id", "no custom_id"],
)
def test_components_beyond_discords_limits_are_50035_with_the_path(server, components, path, code):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)
    ok, _ = raw(
        server,
        "POST",
        f"/channels/{CHANNEL_ID}/messages",
        {"content": "hi", "components": _rows([_button("a")])},
        bot_auth=True,
    )
    status, body = raw(
        server, "POST", f"/channels/{CHANNEL_ID}/messages", {"content": "hi", "components": components}, bot_auth=True
    )

    assert ok == 200 and (status, body["code"]) == (400, 50035)
    node = body["errors"]
    for key in path:
        node = node[key]
    assert node["_errors"][0]["code"] == code


def test_a_modal_response_is_checked_recorded_and_submitted_through_discord_py(server):
    modal_answers = {}

    class Report(discord.ui.Modal, title="Report this video"):
        reason = discord.ui.TextInput(label="Why?", style=discord.TextStyle.paragraph, max_length=500)

        async def on_submit(self, interaction: discord.Interaction):
            modal_answers[interaction.id] = self.reason.value
            await interaction.response.send_message("thanks", ephemeral=True)

    class ModalBot(discord.Client):
        def __init__(self):
            super().__init__(intents=discord.Intents.default())
            self.tree = app_commands.CommandTree(self)

            @self.tree.command(name="report")
            async def report(interaction: discord.Interaction):
                await interaction.response.send_modal(Report())

    opened = slash_command("report")

    async def scenario(bot):
        await deliver_and_wait(bot, opened, server=server)
        modal = server.interaction(opened["id"]).modal
        submitted = modal_submit(opened, modal, {modal["components"][0]["components"][0]["custom_id"]: "it is spam"})
        await deliver_and_wait(bot, submitted, server=server)
        return modal, submitted

    modal, submitted = run(scenario, make=ModalBot)

    assert modal["title"] == "Report this video" and server.interaction(opened["id"]).response_type == 9
    assert modal_answers == {int(submitted["id"]): "it is spam"}
    assert server.original_response(submitted["id"])["content"] == "thanks"


def test_a_modal_over_discords_limits_is_refused(server):
    command = slash_command("report")
    server.register_interaction(command)
    callback = f"/interactions/{command['id']}/{command['token']}/callback"
    field = {"type": 4, "custom_id": "why", "label": "Why?", "style": 2}
    too_long_title = {"custom_id": "m", "title": "t" * 46, "components": [{"type": 1, "components": [field]}]}
    no_fields = {"custom_id": "m", "title": "Report", "components": []}

    for data, key in ((too_long_title, "title"), (no_fields, "components")):
        status, body = raw(server, "POST", callback, {"type": 9, "data": data})
        assert (status, body["code"]) == (400, 50035) and key in body["errors"]["data"]
    assert server.interaction(command["id"]).modal is None


def test_a_message_command_hands_discord_py_the_resolved_message(server):
    server.add_channel(CHANNEL_ID, guild_id=GUILD_ID)
    target = server.add_user_message(CHANNEL_ID, "look at this")
    seen = {}

    class MenuBot(discord.Client):
        def __init__(self):
            super().__init__(intents=discord.Intents.default())
            self.tree = app_commands.CommandTree(self)

            @self.tree.context_menu(name="Animate with Veo")
            async def animate(interaction: discord.Interaction, message: discord.Message):
                seen["message"] = (message.id, message.content)
                await interaction.response.send_message("ok", ephemeral=True)

    run(lambda bot: deliver_and_wait(bot, message_command("Animate with Veo", target), server=server), make=MenuBot)
    assert seen["message"] == (int(target["id"]), "look at this")


def test_an_attachment_option_is_resolved_and_downloaded_from_the_fake_cdn(server):
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    attachment = server.add_user_attachment(png, "fox.png", channel_id=CHANNEL_ID, width=640, height=360)
    got = {}

    class UploadBot(discord.Client):
        def __init__(self):
            super().__init__(intents=discord.Intents.default())
            self.tree = app_commands.CommandTree(self)

            @self.tree.command(name="animate")
            async def animate(interaction: discord.Interaction, image: discord.Attachment):
                got["meta"] = (image.filename, image.content_type, image.size, image.width, image.height)
                got["bytes"] = await image.read()
                await interaction.response.send_message("ok", ephemeral=True)

    payload = with_attachment(slash_command("animate", {}), "image", attachment)
    run(lambda bot: deliver_and_wait(bot, payload, server=server), make=UploadBot)
    assert got == {"meta": ("fox.png", "image/png", len(png), 640, 360), "bytes": png}


def test_a_stalled_attachment_is_served_late(server):
    attachment = server.add_user_attachment(b"late", "late.png", channel_id=CHANNEL_ID)
    server.stall_attachment(attachment, 2)
    with pytest.raises(TimeoutError):  # a client that gives up first never gets it
        urllib.request.urlopen(attachment["url"], timeout=0.2).read()
    with urllib.request.urlopen(attachment["url"], timeout=10) as response:
        assert response.read() == b"late"


def test_a_dm_channel_is_opened_and_written_to_unless_the_user_refuses_dms(server):
    refusing = OTHER_USER_ID
    server.refuse_dms(refusing)

    async def scenario(bot):
        opened = await bot.http.start_private_message(USER_ID)
        again = await bot.http.start_private_message(USER_ID)
        sent = await bot.get_partial_messageable(int(opened["id"]), type=discord.ChannelType.private).send("hi")
        refused_dm = await bot.http.start_private_message(refusing)  # opening works; posting does not
        with pytest.raises(discord.Forbidden) as refused:
            await bot.get_partial_messageable(int(refused_dm["id"])).send("hi")
        return opened, again, sent, refused.value

    opened, again, sent, refused = run(scenario)
    assert opened["type"] == 1 and opened["id"] == again["id"] and opened["recipients"][0]["id"] == str(USER_ID)
    assert [m["content"] for m in server.dms_to(USER_ID)] == ["hi"] and sent.channel.id == int(opened["id"])
    assert (refused.status, refused.code, refused.text) == (403, 50007, "Cannot send messages to this user")
    assert server.dms_to(refusing) == []
    assert raw(server, "POST", "/users/@me/channels", {"recipient_id": str(USER_ID)})[0] == 401  # bot token needed
    status, body = raw(server, "POST", "/users/@me/channels", {"recipient_id": "me"}, bot_auth=True)
    assert (status, body["code"]) == (400, 50035) and "recipient_id" in body["errors"]
    assert raw(server, "POST", "/channels/42/messages", {"content": "x"}, bot_auth=True)[1]["code"] == 10003
