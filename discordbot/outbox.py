"""The Discord half of the moderators' outbox: deleting the message of a removed output.

The web process queues it (``discord_actions``); the bot, which holds the token, performs it
through ``generation.outbox.Outbox`` with this performer:
- deleted, or Discord answers 404 (Unknown Message / Unknown Channel): done, the message is gone;
- 403 and other refusals: the reason is recorded and the action retried with a doubling backoff
  (permissions can be granted meanwhile), until its attempts are used up: then it has failed;
- Discord unreachable (5xx after discord.py's retries, network errors): retried likewise.
"""

from __future__ import annotations

import aiohttp
import discord

from generation.outbox import Failure, Performer, report
from tracking.models import DiscordAction, DiscordActionKind


def message_deleter(client: discord.Client) -> dict[str, Performer]:
    """The performers a bot adds to its outbox."""

    async def delete_message(action: DiscordAction) -> Failure | None:
        try:
            await client.http.delete_message(
                action.channel_id,
                action.message_id,
                reason=f"veobot moderation: output of request {action.request_id} removed",
            )
        except discord.NotFound as error:
            # 10008 Unknown Message, 10003 Unknown Channel: nothing left to delete.
            return report(action, "already gone", None, f" ({error.status} {error.code})")
        except discord.HTTPException as error:
            return report(action, "refused", Failure(f"{error.status} {error.code} {error.text}"[:1000]))
        except (TimeoutError, aiohttp.ClientError) as error:
            return report(action, "unreachable", Failure(f"could not reach Discord ({type(error).__name__})"))
        return report(action, "deleted", None)

    return {DiscordActionKind.DELETE_MESSAGE: delete_message}
