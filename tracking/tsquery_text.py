"""Reading a tsquery's text (as PostgreSQL prints it): its lexemes and a phrase's word pairs."""

from __future__ import annotations

import re

# A lexeme as tsquery prints it: quoted, a quote inside doubled, a backslash escaped.
LEXEME = r"'(?:[^'\\]|''|\\.)*'"
PHRASE_PART = re.compile(rf"({LEXEME})|(<->)|(<\d+>)")


def pairs_of(query: str) -> str | None:
    """The pairs of neighbouring words every match of this tsquery text must hold ("'a b' & 'b c'"),
    or None: a query with an OR or a group gives none; a negated term gives none of its own."""
    if "|" in query or "(" in query:
        return None
    pairs = []
    for term in query.split(" & "):
        parts = _phrase_parts(term)
        if parts is None:
            continue  # a negation, or something this does not read: it requires no pair
        pairs += [f"{a[:-1]} {b[1:]}" for a, op, b in zip(parts[::2], parts[1::2], parts[2::2], strict=False) if op]
    return " & ".join(dict.fromkeys(pairs)) or None


def _phrase_parts(term: str) -> list | None:
    """A conjunct as [lexeme, adjacent?, lexeme, ...] (adjacent: joined by <->, not <N>), or None."""
    parts, at = [], 0
    for match in PHRASE_PART.finditer(term):
        if term[at : match.start()].strip():
            return None
        lexeme, next_to, apart = match.groups()
        expect_lexeme = len(parts) % 2 == 0
        if expect_lexeme != (lexeme is not None):
            return None
        parts.append(lexeme if lexeme is not None else bool(next_to))
        at = match.end()
    if term[at:].strip() or len(parts) % 2 == 0:
        return None
    return parts


def lexemes(text: str) -> list[str]:
    """The lexemes in a tsquery's text, quoted as printed."""
    return re.findall(LEXEME, text)


def unquoted(lexeme: str) -> str:
    """A printed lexeme's own text."""
    return re.sub(r"\\(.)", r"\1", lexeme[1:-1].replace("''", "'"))
