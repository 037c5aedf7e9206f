"""The reply tokens kept in the database, so that whichever process delivers an outcome, the
answering one after a restart included, edits the reply while its token lives.

A /veo's token is normally written by its admission, in the same statement (``token_row`` goes
to ``Admitter.admit``): no round trip of its own. ``TokenKeeper`` writes the rest after the
answer (an admission redone one by one keeps none) and forgets a token kept for a reply that was
then not sent, since a kept token says there is a reply to edit.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import discord
from django.db import DatabaseError

from tracking import aio, services

log = logging.getLogger(__name__)

# Tokens last 15 minutes; stop using one a little earlier so an upload does not straddle it.
TOKEN_USABLE_FOR = timedelta(minutes=14, seconds=30)


def token_row(interaction: discord.Interaction) -> services.ReplyTokenRow:
    """What is kept of ``interaction``'s reply."""
    return services.ReplyTokenRow(
        interaction_id=interaction.id,
        application_id=interaction.application_id,
        token=interaction.token,
        size_limit=interaction.filesize_limit,
        expires_at=interaction.created_at + TOKEN_USABLE_FOR,
    )


class TokenKeeper:
    def __init__(self) -> None:
        self._unkept: list[services.ReplyTokenRow] = []  # answered, their tokens not yet written
        self._keeping: asyncio.Task | None = None
        self._forgetting: set[asyncio.Task] = set()  # held until done: the loop keeps tasks weakly

    def keep(self, interaction: discord.Interaction) -> None:
        """After a queued answer, off the answer's path. Written in batches by one task at a time,
        so a burst of /veo takes one pooled connection for its tokens, not one per answer from the
        admissions still waiting."""
        self._unkept.append(token_row(interaction))
        if self._keeping is None or self._keeping.done():
            self._keeping = asyncio.create_task(self._keep())

    def forget(self, interaction_id: int) -> None:
        """Off the answer's path; if this fails the token merely expires."""
        task = asyncio.create_task(self._forget(interaction_id))
        self._forgetting.add(task)
        task.add_done_callback(self._forgetting.discard)

    async def _keep(self) -> None:
        while self._unkept:
            rows, self._unkept = self._unkept, []
            try:
                await aio.run(services.keep_reply_tokens, rows=rows)
            except DatabaseError as error:
                log.info("%d reply token(s) not kept (%s)", len(rows), type(error).__name__)

    async def _forget(self, interaction_id: int) -> None:
        try:
            await aio.run(services.forget_reply_token, interaction_id=interaction_id)
        except DatabaseError as error:
            log.info("reply token of interaction %s not forgotten (%s)", interaction_id, type(error).__name__)
