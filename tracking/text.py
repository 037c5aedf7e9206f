"""Checks for text PostgreSQL cannot store, done before the database sees it."""

from __future__ import annotations

from tracking.errors import InvalidInput


def storable_text(field: str, value: str) -> str:
    """Return value unchanged, or raise InvalidInput naming the field and the position.

    PostgreSQL text cannot hold NUL (U+0000), and a lone UTF-16 surrogate (U+D800-U+DFFF,
    which arrives from JSON escapes like \\ud83d) cannot be encoded as UTF-8.
    """
    nul = value.find("\x00")
    if nul != -1:
        raise InvalidInput(field, f"{field} contains a NUL character (U+0000) at position {nul + 1}; remove it and try again")
    for position, char in enumerate(value):
        if "\ud800" <= char <= "\udfff":
            raise InvalidInput(
                field, f"{field} contains an unpaired surrogate (U+{ord(char):04X}) at position {position + 1}, "
                       "which is not valid Unicode text; remove it and try again")
    return value
