"""Real INTERACTION_CREATE payloads, and their delivery to a discord.py client without a gateway.

The builders produce what Discord sends in the gateway's INTERACTION_CREATE dispatch `d`
(API v10): snowflakes as strings, a full `channel` object (discord.py derives
`interaction.channel` and `channel_id` from it, not from `channel_id`), and
`attachment_size_limit`, which discord.py 2.7 reads unconditionally into
`Interaction.filesize_limit` (a payload without it raises KeyError).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import discord

from tests.fakes.discord_components import submitted_values
from tests.fakes.discord_server import (
    DEFAULT_APPLICATION_ID,
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    dm_channel_id,
    new_snowflake,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscordServer

GUILD_ID = 1_180_000_000_000_000_100
CHANNEL_ID = 1_180_000_000_000_000_200
USER_ID = 1_180_000_000_000_000_300

# The bot's permissions in a typical text channel, and a member's.
APP_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
    add_reactions=True,
    use_external_emojis=True,
).value
MEMBER_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
    use_application_commands=True,
).value

# Interaction context types
GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2

# Slash command option types, inferred from Python values (bool before int: bool is an int).
_OPTION_TYPES = ((bool, 5), (int, 4), (float, 10), (str, 3))


def user(user_id: int = USER_ID, username: str = "alice", global_name: str | None = "Alice") -> dict:
    return {
        "id": str(user_id),
        "username": username,
        "global_name": global_name,
        "discriminator": "0",
        "avatar": None,
        "public_flags": 0,
        "primary_guild": None,
        "avatar_decoration_data": None,
        "collectibles": None,
    }


def slash_command(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    author: dict | None = None,
    guild_id: int | None = GUILD_ID,
    channel_id: int | None = None,
    roles: tuple[int, ...] = (),
    permissions: int = MEMBER_PERMISSIONS,
    app_permissions: int = APP_PERMISSIONS,
    locale: str = "en-US",
    guild_locale: str = "en-US",
    attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
    entitlements: list[dict] | None = None,
    context: int | None = None,
    authorizing_integration_owners: dict[str, str] | None = None,
    command_id: int | None = None,
    command_guild_id: int | None = None,
    application_id: int = DEFAULT_APPLICATION_ID,
) -> dict:
    """A type 2 (APPLICATION_COMMAND) payload for `/name`, in a guild or, with guild_id=None, a DM.

    `options` maps option names to values; the type is inferred (str 3, int 4, bool 5, float 10)
    or given as a (value, type) pair, e.g. {"ratio": (2, discord.AppCommandOptionType.number)}.
    A choice is sent as its value, exactly like a free-form option. `command_guild_id` marks a
    guild-registered command (the tree then looks it up among that guild's commands).
    """
    data: dict[str, Any] = {
        "id": str(command_id or new_snowflake()),
        "name": name,
        "type": 1,  # CHAT_INPUT
        "options": [_option(key, value) for key, value in (options or {}).items()],
    }
    if command_guild_id is not None:
        data["guild_id"] = str(command_guild_id)
    return _interaction(
        2,
        data,
        author=author,
        guild_id=guild_id,
        channel_id=channel_id,
        roles=roles,
        permissions=permissions,
        app_permissions=app_permissions,
        locale=locale,
        guild_locale=guild_locale,
        attachment_size_limit=attachment_size_limit,
        entitlements=entitlements,
        context=context,
        authorizing_integration_owners=authorizing_integration_owners,
        application_id=application_id,
    )


def button_click(message: dict, custom_id: str, *, guild_id: int | None = GUILD_ID, **kwargs: Any) -> dict:
    """A type 3 (MESSAGE_COMPONENT) payload: someone clicked button `custom_id` on `message`
    (a message dict as the fake server stores it). Other keywords as for slash_command()."""
    data = {"custom_id": custom_id, "component_type": 2}
    channel_id = int(message["channel_id"])
    payload = _interaction(3, data, guild_id=guild_id, channel_id=channel_id, **kwargs)
    payload["message"] = {k: v for k, v in message.items() if k != "allowed_mentions"}
    return payload


def modal_submit(opened: dict, modal: dict, values: dict[str, str] | None = None, **kwargs: Any) -> dict:
    """A type 5 (MODAL_SUBMIT) payload: the user who got ``modal`` (as the fake recorded it,
    ``server.interaction(opened["id"]).modal``) in answer to the ``opened`` interaction submits it
    with ``values`` (custom_id -> text; others keep their prefilled value). From a button's modal,
    the payload carries the button's message, as Discord's does."""
    data = {"custom_id": modal["custom_id"], "components": submitted_values(modal, values or {})}
    kwargs.setdefault("author", (opened.get("member") or {}).get("user") or opened.get("user"))
    kwargs.setdefault("guild_id", int(opened["guild_id"]) if opened.get("guild_id") else None)
    kwargs.setdefault("channel_id", int(opened["channel_id"]))
    payload = _interaction(5, data, **kwargs)
    if "message" in opened:
        payload["message"] = opened["message"]
    return payload


def message_command(name: str, target: dict, *, guild_id: int | None = GUILD_ID, **kwargs: Any) -> dict:
    """A type 2 payload for a message context-menu command (type 3) run on ``target`` (a message
    dict), which Discord hands over in `data.resolved.messages`."""
    data = {
        "id": str(new_snowflake()),
        "name": name,
        "type": 3,  # MESSAGE
        "target_id": str(target["id"]),
        "resolved": {"messages": {str(target["id"]): {k: v for k, v in target.items() if k != "allowed_mentions"}}},
    }
    return _interaction(2, data, guild_id=guild_id, channel_id=int(target["channel_id"]), **kwargs)


def with_attachment(payload: dict, option: str, attachment: dict) -> dict:
    """``payload`` (a slash command) with an attachment option (type 11): the option carries the
    attachment's id, `data.resolved.attachments` the attachment (server.add_user_attachment())."""
    payload["data"]["options"].append({"name": option, "type": 11, "value": attachment["id"]})
    payload["data"].setdefault("resolved", {}).setdefault("attachments", {})[attachment["id"]] = attachment
    return payload


def deliver(client: discord.Client, payload: dict, *, server: FakeDiscordServer | None = None) -> list[asyncio.Task]:
    """Hand `payload` to a logged-in client as the gateway would; returns the tasks it started.

    This is DiscordWebSocket.received_message's path for a DISPATCH: it dispatches
    'socket_event_type', then calls `client._connection.parsers[event](data)`, where `parsers`
    is the very dict the websocket receives at connect (`ws._discord_parsers =
    client._connection.parsers`). For INTERACTION_CREATE that parser builds the Interaction,
    starts the CommandTree's invoker task, and dispatches 'interaction'. The payload goes
    through JSON first, as it would off the wire, so the client never shares our dicts.

    With `server`, the interaction is registered with the fake first (idempotent, so delivering
    the same payload twice simulates a duplicate INTERACTION_CREATE). Call it inside the
    client's running loop, after `await client.login(...)` (Interaction() needs the HTTP session).
    """
    if server is not None:
        server.register_interaction(payload)
    data = json.loads(json.dumps(payload))
    before = asyncio.all_tasks()
    client.dispatch("socket_event_type", "INTERACTION_CREATE")
    client._connection.parsers["INTERACTION_CREATE"](data)
    return list(asyncio.all_tasks() - before)


async def deliver_and_wait(
    client: discord.Client, payload: dict, *, server: FakeDiscordServer | None = None, timeout: float = 10.0
) -> None:
    """deliver(), then wait until the command handler (and any event listeners) finished."""
    tasks = deliver(client, payload, server=server)
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)


def _option(name: str, value: Any) -> dict:
    if isinstance(value, tuple):
        value, kind = value
        kind = getattr(kind, "value", kind)
    else:
        kind = next(code for cls, code in _OPTION_TYPES if isinstance(value, cls))
    return {"name": name, "type": kind, "value": value}


def _interaction(
    kind: int,
    data: dict,
    *,
    author: dict | None = None,
    guild_id: int | None = GUILD_ID,
    channel_id: int | None = None,
    roles: tuple[int, ...] = (),
    permissions: int = MEMBER_PERMISSIONS,
    app_permissions: int = APP_PERMISSIONS,
    locale: str = "en-US",
    guild_locale: str = "en-US",
    attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
    entitlements: list[dict] | None = None,
    context: int | None = None,
    authorizing_integration_owners: dict[str, str] | None = None,
    application_id: int = DEFAULT_APPLICATION_ID,
) -> dict:
    author = author or user()
    payload: dict[str, Any] = {
        "id": str(new_snowflake()),
        "application_id": str(application_id),
        "type": kind,
        "data": data,
        "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48),  # Discord's tokens start "interaction:" in base64
        "version": 1,
        "app_permissions": str(app_permissions),
        "locale": locale,
        "entitlements": entitlements or [],
        "attachment_size_limit": attachment_size_limit,
    }
    if guild_id is not None:
        channel_id = channel_id or CHANNEL_ID
        payload |= {
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": guild_locale, "features": []},
            "guild_locale": guild_locale,
            "channel_id": str(channel_id),
            "channel": {
                "id": str(channel_id),
                "type": 0,
                "guild_id": str(guild_id),
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "topic": None,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "flags": 0,
                "permissions": str(permissions),
            },
            "member": {
                "user": author,
                "roles": [str(r) for r in roles],
                "permissions": str(permissions),
                "joined_at": "2024-01-01T00:00:00.000000+00:00",
                "nick": None,
                "avatar": None,
                "banner": None,
                "premium_since": None,
                "communication_disabled_until": None,
                "deaf": False,
                "mute": False,
                "pending": False,
                "flags": 0,
                "unusual_dm_activity_until": None,
            },
            "context": GUILD if context is None else context,
            "authorizing_integration_owners": authorizing_integration_owners or {"0": str(guild_id)},
        }
    else:
        # A DM with the bot: Discord assigns the DM channel its own id.
        channel_id = channel_id or dm_channel_id(int(author["id"]))
        payload |= {
            "user": author,
            "channel_id": str(channel_id),
            "channel": {"id": str(channel_id), "type": 1, "last_message_id": None, "flags": 0, "recipients": [author]},
            "context": BOT_DM if context is None else context,
            # Guild-installed app used in its bot DM: the owner is reported as guild "0".
            "authorizing_integration_owners": authorizing_integration_owners or {"0": "0"},
        }
    return payload
