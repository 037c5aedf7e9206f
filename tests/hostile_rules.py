"""What /veo must answer, decided from the input alone: a small model of the documented rules.

The properties in tests/test_hostile_input.py compare the bot with this model. It is written
from the rules as documented (README "How a request flows" step 1 and the /veo table,
docs/RELIABILITY.md "Hostile input", and the messages the corpus pins down), and imports
nothing from the project: a model that called the code under test could not find its faults.

An answer is a ``Refused`` (with the message after "Can't queue that: "), an ``Echo`` (a
refusal that shows back a value that was sent) or a ``Queued`` (with what must be stored).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

# -- the text fields (prompt, negative_prompt) -------------------------------------------------------

# Embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).
BIDI_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
# Categories that show: letters, numbers, punctuation and symbols (emoji). Separators, marks
# (combining characters) and the rest (controls, format characters such as zero-width ones,
# surrogates, private use, unassigned) do not show on their own.
VISIBLE = ("L", "N", "P", "S")


def normalised(text: str) -> str:
    """Whitespace runs collapsed to one space, none at the ends."""
    return " ".join(text.split())


def text_refusal(field: str, text: str) -> str | None:
    """Why ``text`` cannot be stored or shown back, first what PostgreSQL cannot store (the first
    NUL, then the first lone surrogate), then the first character that would act on what is
    shown (a bidirectional control, or a control character that is not whitespace); positions
    count characters of the text as sent, from 1."""
    nul = text.find("\x00") + 1
    if nul:
        return f"{field} contains a NUL character (U+0000) at position {nul}; remove it and try again"
    for position, char in enumerate(text, 1):
        if 0xD800 <= ord(char) <= 0xDFFF:
            return (
                f"{field} contains an unpaired surrogate (U+{ord(char):04X}) at position {position}, "
                "which is not valid Unicode text; remove it and try again"
            )
    for position, char in enumerate(text, 1):
        if char in BIDI_CONTROLS:
            what = "a bidirectional control character"
        elif unicodedata.category(char) == "Cc" and not char.isspace():
            what = "a control character"
        else:
            continue
        return f"{field} contains {what} (U+{ord(char):04X}) at position {position}; remove it and try again"
    return None


def shows_something(text: str) -> bool:
    return any(unicodedata.category(char)[0] in VISIBLE for char in text)


@dataclass(frozen=True)
class Refused:
    reason: str  # the user sees "Can't queue that: {reason}. Nothing was charged."
    field: str | None = None  # the parameter a text check refused


@dataclass(frozen=True)
class Queued:
    prompt: str  # as stored: normalised
    negative_prompt: str | None = None  # normalised; None when absent or only whitespace
    duration_seconds: int | None = None  # None: the configured default
    aspect_ratio: str | None = None
    resolution: str | None = None
    generate_audio: bool | None = None


def text_answer(prompt: str, negative: str | None = None, *, low: int, high: int) -> Refused | Queued:
    """The prompt is checked first (text, something visible, its length once normalised), then
    the negative prompt (text, at most ``high`` characters once normalised)."""
    refusal = text_refusal("prompt", prompt)
    if refusal:
        return Refused(refusal, "prompt")
    clean = normalised(prompt)
    if not shows_something(clean):
        return Refused("prompt has no visible characters (only spaces or invisible ones)", "prompt")
    if not low <= len(clean) <= high:
        return Refused(f"prompt must be {low}-{high} characters (got {len(clean)})", "prompt")
    if negative is not None:
        refusal = text_refusal("negative_prompt", negative)
        if refusal:
            return Refused(refusal, "negative_prompt")
        negative = normalised(negative) or None
        if negative and len(negative) > high:
            return Refused(
                f"negative_prompt must be at most {high} characters (got {len(negative)})", "negative_prompt"
            )
    return Queued(prompt=clean, negative_prompt=negative)


# -- the options of a raw /veo interaction ----------------------------------------------------------

TEXT, WHOLE, BOOLEAN, NUMBER = 3, 4, 5, 10
# What users are told each option type is, in plain words (Discord's documentation calls type 9
# MENTIONABLE: a user or a role); a code that is no type is echoed.
TYPE_NAMES = {
    1: "a subcommand",
    2: "a subcommand group",
    TEXT: "text",
    WHOLE: "a whole number",
    BOOLEAN: "true or false",
    6: "a user",
    7: "a channel",
    8: "a role",
    9: "a user or role",
    NUMBER: "a number",
    11: "an attachment",
}


@dataclass(frozen=True)
class Parameter:
    type: int
    choices: tuple = ()
    required: bool = False


# /veo as registered (README's command table): in this order.
VEO = {
    "prompt": Parameter(TEXT, required=True),
    "length": Parameter(WHOLE, (4, 6, 8)),
    "ratio": Parameter(TEXT, ("16:9", "9:16")),
    "hd": Parameter(BOOLEAN),
    "audio": Parameter(BOOLEAN),
    "negative_prompt": Parameter(TEXT),
}

QUOTED = 32  # an echoed value is shortened to this many characters, the last an ellipsis


@dataclass(frozen=True)
class Echo:
    """A refusal that shows back something the user sent: ``before`` + the value + ``after``.
    The value is Python's repr of what was sent, shortened to QUOTED characters, made inert."""

    before: str
    value: object
    after: str = ""

    def shown(self) -> str:
        text = repr(self.value)
        return text if len(text) <= QUOTED else text[: QUOTED - 1] + "…"


def has_type(value, kind: int) -> bool:
    if kind == TEXT:
        return isinstance(value, str)
    if kind == WHOLE:
        return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no number
    if kind == BOOLEAN:
        return isinstance(value, bool)
    raise AssertionError(kind)


def type_name(kind) -> str | Echo:
    return TYPE_NAMES.get(kind) or Echo("option type ", kind)


def options_answer(options: list[dict]) -> Refused | Echo | dict:
    """Each option in the order sent: an unknown name, a repeated one, a wrong type code, a value
    not of that type, a value outside the choices; then a missing prompt. Else the values."""
    values: dict = {}
    for option in options:
        name, kind, value = option.get("name"), option.get("type"), option.get("value")
        if name not in VEO:
            return Echo("/veo has no option ", name)
        if name in values:
            return Refused(f"the option {name} was given twice")
        parameter = VEO[name]
        expected = TYPE_NAMES[parameter.type]
        if kind != parameter.type:
            sent = type_name(kind)
            if isinstance(sent, Echo):
                return Echo(f"the option {name} must be {expected}, not {sent.before}", sent.value)
            return Refused(f"the option {name} must be {expected}, not {sent}")
        if not has_type(value, kind):
            return Echo(f"the option {name} must be {expected} (got ", value, ")")
        if parameter.choices and value not in parameter.choices:
            offered = ", ".join(map(str, parameter.choices))
            return Echo(f"the option {name} must be one of {offered} (got ", value, ")")
        values[name] = value
    if "prompt" not in values:
        return Refused("the option prompt is required")
    return values


def off_the_wire(options: list[dict]) -> list[dict]:
    """The options as the bot receives them: Discord sends JSON, where a high surrogate escape
    followed by a low one (\\ud83e\\udd8a) is one character (U+1F98A); only a lone one stays lone."""
    return json.loads(json.dumps(options))


def veo_answer(options: list[dict], *, low: int, high: int) -> Refused | Echo | Queued:
    """The whole answer to a /veo with these raw options (as they arrive off the wire): first
    their shape, then the text."""
    values = options_answer(off_the_wire(options))
    if not isinstance(values, dict):
        return values
    answer = text_answer(values["prompt"], values.get("negative_prompt"), low=low, high=high)
    if isinstance(answer, Refused):
        return answer
    hd = values.get("hd")
    return Queued(
        prompt=answer.prompt,
        negative_prompt=answer.negative_prompt,
        duration_seconds=values.get("length"),
        aspect_ratio=values.get("ratio"),
        resolution=None if hd is None else ("1080p" if hd else "720p"),
        generate_audio=values.get("audio"),
    )


# -- what the user reads -----------------------------------------------------------------------------

_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")  # Discord shows a backslash before ASCII punctuation as nothing


def unseen(text: str) -> str:
    """``text`` without what no one sees: a zero-width space after @ (it only breaks a mention)."""
    return text.replace("@\u200b", "@")


def as_rendered(text: str) -> str:
    """What Discord shows for ``text`` (escapes dropped), as ``unseen`` compares it."""
    return unseen(_ESCAPED.sub(r"\1", text))


INLINE_MARKERS = "*_`~|"  # bold, italics, code, strikethrough, spoilers: anywhere in a line
LINE_MARKERS = "#>-"  # headings, quotes, lists: at the start of a line


def unescaped_markdown(text: str) -> list[str]:
    """The markdown characters in ``text`` that Discord would act on (not escaped by a backslash)."""
    found, position = [], 0
    while position < len(text):
        char = text[position]
        if char == "\\" and _ESCAPED.match(text, position):
            position += 2
            continue
        at_line_start = position == 0 or text[position - 1] == "\n"
        if char in INLINE_MARKERS or (char in LINE_MARKERS and at_line_start):
            found.append(char)
        position += 1
    return found
