"""Checks on user text, done before the database (or Veo, or Discord) sees it."""

from __future__ import annotations

import unicodedata

from tracking.errors import InvalidInput

# Embeddings, overrides and isolates: they reorder whatever is shown after them, so a prompt
# echoed into a message could make the rest of the line read differently.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
VISIBLE = ("L", "N", "P", "S")  # Unicode categories: letters, numbers, punctuation, symbols (emoji)


def storable_text(field: str, value: str) -> str:
    """Return value unchanged, or raise InvalidInput naming the field and the position.

    PostgreSQL text cannot hold NUL (U+0000), and a lone UTF-16 surrogate (U+D800-U+DFFF,
    which arrives from JSON escapes like \\ud83d) cannot be encoded as UTF-8.
    """
    if not isinstance(value, str):
        raise InvalidInput(field, f"{field} must be text")
    nul = value.find("\x00")
    if nul != -1:
        raise InvalidInput(
            field, f"{field} contains a NUL character (U+0000) at position {nul + 1}; remove it and try again"
        )
    for position, char in enumerate(value):
        if "\ud800" <= char <= "\udfff":
            raise InvalidInput(
                field,
                f"{field} contains an unpaired surrogate (U+{ord(char):04X}) at position {position + 1}, "
                "which is not valid Unicode text; remove it and try again",
            )
    return value


def prompt_text(field: str, value: str) -> str:
    """Storable text that is also safe to show back: no control characters (an escape
    sequence would reach a terminal through the CLI) and no bidirectional controls."""
    storable_text(field, value)
    for position, char in enumerate(value):
        if char in BIDI_CONTROLS:
            raise InvalidInput(
                field,
                f"{field} contains a bidirectional control character (U+{ord(char):04X}) "
                f"at position {position + 1}; remove it and try again",
            )
        if unicodedata.category(char) == "Cc" and not char.isspace():
            raise InvalidInput(
                field,
                f"{field} contains a control character (U+{ord(char):04X}) "
                f"at position {position + 1}; remove it and try again",
            )
    return value


def has_visible(value: str) -> bool:
    """Whether anything would show: spaces, zero-width and combining characters alone do not."""
    return any(unicodedata.category(char)[0] in VISIBLE for char in value)
