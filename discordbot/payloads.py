"""What an interaction must look like before discord.py turns it into arguments.

Discord only sends options that match the registered command, but a stale registration, a
modified client or a replayed payload can carry anything: an option of the wrong type, a
value outside its choices, an unknown or missing option, ids that are not snowflakes.
discord.py would then fail inside its own transformers (or, for a garbled snowflake option,
outside any error handler), and the user would see a generic error or no answer at all.
``problem()`` names what is wrong, so the bot can refuse with that sentence instead.
"""

from __future__ import annotations

import weakref
from typing import Any

import discord
from discord import app_commands

from discordbot import display

ATTACHMENT = 11  # an option's type: a file, described in data.resolved.attachments
SNOWFLAKE_MAX = 2**63  # PostgreSQL bigint; Discord's ids are far below
NAME_SHOWN = 32  # a made-up option name is quoted at most this long

# What users are told each option type is, in plain words ("a subcommand_group" and "a
# attachment", as discord.py's names would read, are not).
TYPE_NAMES = {
    1: "a subcommand",
    2: "a subcommand group",
    3: "text",
    4: "a whole number",
    5: "true or false",
    6: "a user",
    7: "a channel",
    8: "a role",
    9: "a user or role",
    10: "a number",
    11: "an attachment",
}


def problem(tree: app_commands.CommandTree, interaction: discord.Interaction) -> str | None:
    """Why this application command cannot be run as sent, or None when it can."""
    wrong_id = _id_problem(interaction)
    if wrong_id or interaction.type is not discord.InteractionType.application_command:
        return wrong_id
    data = interaction.data or {}
    command = tree.get_command(data.get("name", ""))
    if not isinstance(command, app_commands.Command) or data.get("type", 1) != 1:
        return None  # not one of ours: discord.py reports an unknown command itself
    return _options_problem(command, data.get("options", []), resolved=data.get("resolved"))


def _id_problem(interaction: discord.Interaction) -> str | None:
    ids = {
        "interaction": interaction.id,
        "guild": interaction.guild_id,
        "channel": interaction.channel_id,
        "user": user_id(interaction),
    }
    for what, value in ids.items():
        if value is not None and not 0 < value < SNOWFLAKE_MAX:
            return f"the {what} id {value} is not a valid Discord id"
    if ids["user"] is None:
        return "the interaction names no user"  # discord.py finds none in a guild id of 0, say
    return None


def user_id(interaction: discord.Interaction) -> int | None:
    """The user's id; discord.py leaves ``user`` unset when the payload has no user it can place."""
    return getattr(interaction.user, "id", None)


def _options_problem(command: app_commands.Command, options: Any, *, resolved: Any) -> str | None:
    if not isinstance(options, list) or not all(isinstance(option, dict) for option in options):
        return f"the options of /{command.name} arrived malformed"
    parameters = _parameters(command)
    seen = set()
    for option in options:
        name = option.get("name")
        if not isinstance(name, str) or name not in parameters:
            return f"/{command.name} has no option {_quoted(name)}"
        if name in seen:
            return f"the option {name} was given twice"
        seen.add(name)
        wrong = _value_problem(parameters[name], option)
        if wrong:
            return wrong
        attachments = resolved.get("attachments") if isinstance(resolved, dict) else None
        if option["type"] == ATTACHMENT and not (isinstance(attachments, dict) and option["value"] in attachments):
            return f"the file for the option {name} did not arrive with it"
    missing = [name for name, parameter in parameters.items() if parameter.required and name not in seen]
    if missing:
        return f"the option {missing[0]} is required"
    return None


# Command -> its options by name. discord.py builds Command.parameters anew on every read, and
# this runs on every interaction; a command's options are fixed once the bot is built.
_PARAMETERS: weakref.WeakKeyDictionary[app_commands.Command, dict[str, app_commands.Parameter]] = (
    weakref.WeakKeyDictionary()
)


def _parameters(command: app_commands.Command) -> dict[str, app_commands.Parameter]:
    parameters = _PARAMETERS.get(command)
    if parameters is None:
        parameters = _PARAMETERS[command] = {parameter.display_name: parameter for parameter in command.parameters}
    return parameters


def _value_problem(parameter: app_commands.Parameter, option: dict) -> str | None:
    expected = parameter.type.value
    name, kind, value = parameter.display_name, option.get("type"), option.get("value")
    if kind != expected:
        return f"the option {name} must be {_type_name(expected)}, not {_type_name(kind)}"
    if not _has_type(value, expected):
        return f"the option {name} must be {_type_name(expected)} (got {_quoted(value)})"
    if parameter.choices and value not in [choice.value for choice in parameter.choices]:
        offered = ", ".join(str(choice.value) for choice in parameter.choices)
        return f"the option {name} must be one of {offered} (got {_quoted(value)})"
    return None


def _has_type(value: Any, kind: int) -> bool:
    if kind == 3:
        return isinstance(value, str)
    if kind == 4:
        return type(value) is int  # noqa: E721 -- a JSON true is not a number
    if kind == 5:
        return isinstance(value, bool)
    if kind == 10:
        return type(value) in (int, float)  # noqa: E721
    return isinstance(value, str) and value.isascii() and value.isdigit()  # a snowflake option


def _type_name(kind: Any) -> str:
    if isinstance(kind, int) and kind in TYPE_NAMES:
        return TYPE_NAMES[kind]
    return f"option type {_quoted(kind)}"


def _quoted(value: Any) -> str:
    """What was sent, shortened and inert: it is shown back to the user."""
    return display.inert(display.fit(repr(value), NAME_SHOWN))
