"""Attribution of moderators' changes for the audit log.

The database writes ``moderation_log`` itself (0018's triggers on every moderated table), for
every change made while ``veobot.moderator`` is set in the transaction; nothing in Python can
forget to log. This sets it, with the action's name and reason, for the rest of the
transaction (``set_config(..., true)``): a later statement of the same transaction that sets
it again names its own action.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

_ATTRIBUTE_SQL = """
SELECT set_config('veobot.moderator', %(actor)s, true), set_config('veobot.actor', %(actor)s, true),
       set_config('veobot.action', %(action)s, true), set_config('veobot.reason', %(reason)s, true)
"""


def attribute(*, actor: str, action: str = "", reason: str | None = None) -> None:
    """Name the moderator (and the action and its reason) for the current transaction's changes."""
    if not actor:
        raise ValueError("a moderator's change needs the moderator's name")
    with connection.cursor() as cursor:
        cursor.execute(_ATTRIBUTE_SQL, {"actor": actor, "action": action, "reason": reason or ""})


_CURRENT_SQL = """
SELECT current_setting('veobot.moderator', true), current_setting('veobot.action', true),
       current_setting('veobot.reason', true), current_setting('veobot.actor', true)
"""
_RESTORE_SQL = """
SELECT set_config('veobot.moderator', COALESCE(%s, ''), true), set_config('veobot.action', COALESCE(%s, ''), true),
       set_config('veobot.reason', COALESCE(%s, ''), true), set_config('veobot.actor', COALESCE(%s, ''), true)
"""


@contextmanager
def moderating(*, actor: str, action: str, reason: str | None = None) -> Iterator[None]:
    """A transaction (or savepoint) whose changes are logged as ``actor``'s ``action`` for
    ``reason``. Inside a longer transaction the attribution it found is put back afterwards,
    so that what follows is not logged under this action's name (or at all)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CURRENT_SQL)
        previous = cursor.fetchone()
        attribute(actor=actor, action=action, reason=reason)
        yield
        cursor.execute(_RESTORE_SQL, previous)
