"""Hostile input shared by tests/test_hostile_input.py: fixed cases and Hypothesis strategies.

A case either names the start of the message a user (or moderator) must see, or is None:
accepted, and then stored exactly as normalised (whitespace runs collapsed).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.hostile_rules import BIDI_CONTROLS as BIDI

ZALGO = "".join(letter + "\u0301\u0316\u0334\u035c\u0360" for letter in "a fox in snow")


@dataclass(frozen=True)
class Text:
    name: str
    text: str
    refusal: str | None  # the message starts with this; None: accepted

    def __str__(self) -> str:
        return self.name


PROMPTS = [
    Text("nul", "a fox\x00 in snow", "prompt contains a NUL character (U+0000) at position 6"),
    Text("lone_high_surrogate", "a fox \ud83d in snow", "prompt contains an unpaired surrogate (U+D83D) at position 7"),
    Text("lone_low_surrogate", "\udc00 a fox in snow", "prompt contains an unpaired surrogate (U+DC00) at position 1"),
    Text("hundred_thousand_chars", "a fox " * 16_667, "prompt must be 5-600 characters (got 100001)"),
    Text("zalgo", ZALGO, None),
    Text("zalgo_too_long", ZALGO * 10, "prompt must be 5-600 characters"),
    Text("right_to_left_override", "a fox \u202eons ni", "prompt contains a bidirectional control character (U+202E)"),
    Text("isolate", "a fox \u2067in snow\u2069", "prompt contains a bidirectional control character (U+2067)"),
    Text("ansi_escape", "a \x1b[31mred\x1b[0m fox", "prompt contains a control character (U+001B) at position 3"),
    Text("everyone", "@everyone a fox in snow", None),
    Text("here", "@here a fox in snow", None),
    Text("user_mention", "<@123456789012345678> and <@!123456789012345678> a fox", None),
    Text("role_mention", "<@&123456789012345678> a fox in snow", None),
    Text("unbalanced_code_fence", "```a fox in snow", None),
    Text("code_fence_breakout", "``` ``` a fox ``` in **snow", None),
    Text("masked_link", "[free nitro](https://phish.example/login) a fox in snow", None),
    Text("spoiler_and_heading", "# ||a fox|| > in _snow_ ~~melting~~", None),
    Text("sql_drop", "a fox'); DROP TABLE video_requests; --", None),
    Text("sql_comment_union", 'a fox" OR 1=1 UNION SELECT password FROM auth_user /*', None),
    Text("emoji_only", "🦊🦊🦊🦊🦊", None),
    Text("flag_and_zwj_emoji", "🏳️‍🌈👩‍👩‍👧‍👦🏴‍☠️", None),
    Text("whitespace_only", " \t\n\u3000\u00a0   ", "prompt has no visible characters"),
    Text("zero_width_only", "\u200b\u200c\u200d\ufeff\u200b\u200b", "prompt has no visible characters"),
    Text("combining_marks_only", "\u0301\u0316\u0334\u035c\u0360", "prompt has no visible characters"),
    Text("too_short", "hi", "prompt must be 5-600 characters (got 2)"),
]

# Pieces that Hypothesis mixes into generated text: everything above, in small parts.
FRAGMENTS = [
    "\x00",
    "\ud83d",
    "\udfff",
    "\u202e",
    "\u2066",
    "\x1b",
    "\x07",
    "@everyone",
    "@here",
    "<@123456789012345678>",
    "<@&123456789012345678>",
    "```",
    "`",
    "**",
    "||",
    "[x](https://e.example)",
    "'; DROP TABLE video_requests; --",
    "\u0301\u0334",
    "🦊",
    "\u200b",
    " ",
    "\n",
    "\t",
    "%s",
    "{}",
    "\\",
]

# Any code point (lone surrogates included) and the fragments, joined.
hostile_text = st.lists(
    st.one_of(st.text(st.characters(codec=None, exclude_categories=()), max_size=12), st.sampled_from(FRAGMENTS)),
    max_size=12,
).map("".join)


# Text that must be accepted: hostile for Discord (mentions, markdown, SQL, zalgo, emoji) but
# without what the bot refuses (NUL, surrogates, control and bidirectional characters), after
# a visible start. It stays far below the 600-character limit.


def _refused(fragment: str) -> bool:
    """Whether the bot refuses text containing this: control characters, surrogates, bidi controls."""
    return any(unicodedata.category(char) in ("Cc", "Cs") or char in BIDI for char in fragment)


displayable_text = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="".join(BIDI)), max_size=12),
        st.sampled_from([fragment for fragment in FRAGMENTS if not _refused(fragment)]),
    ),
    max_size=12,
).map(lambda parts: "a fox " + "".join(parts))


# -- what the bot sent must be inert ----------------------------------------------------------------

_LIVE = [
    (re.compile(r"@(everyone|here)"), "a live @everyone/@here"),
    (re.compile(r"<@[!&]?\d+>"), "a live user or role mention"),
    (re.compile(r"(?<!\\)\[[^\]]*\]\("), "a live masked link"),
]
# Markers that only act in pairs (a lone one shows as typed): code, spoiler, bold.
_PAIRED = {"`": "a code span or block", "||": "a spoiler", "**": "bold text"}


def live_markup(text: str) -> list[str]:
    """What in ``text`` Discord would render as markup or a mention rather than as typed."""
    found = [what for pattern, what in _LIVE if pattern.search(text)]
    for marker, what in _PAIRED.items():
        if len(re.findall(r"(?<!\\)" + re.escape(marker), text)) >= 2:
            found.append(what)
    return found


def shown_texts(message: dict) -> list[str]:
    """Every piece of text a message shows: its content and its embeds' parts."""
    texts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        texts += [embed.get("title") or "", embed.get("description") or "", (embed.get("footer") or {}).get("text", "")]
        texts += [field["value"] for field in embed.get("fields") or []]
    return texts


# -- tampered /veo payloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    name: str
    options: list[dict]  # the raw "options" of the interaction's data
    refusal: str | None

    def __str__(self) -> str:
        return self.name


def option(name: str, value, kind: int) -> dict:
    return {"name": name, "type": kind, "value": value}


PROMPT = option("prompt", "a red fox running through fresh snow", 3)
TAMPERED = [
    Options(
        "length_as_string", [PROMPT, option("length", "8", 3)], "the option length must be a whole number, not text"
    ),
    Options(
        "length_string_typed_integer",
        [PROMPT, option("length", "8", 4)],
        "the option length must be a whole number (got '8')",
    ),
    Options(
        "length_as_float", [PROMPT, option("length", 6.5, 10)], "the option length must be a whole number, not a number"
    ),
    Options(
        "length_out_of_choices", [PROMPT, option("length", 5, 4)], "the option length must be one of 4, 6, 8 (got 5)"
    ),
    Options(
        "length_negative", [PROMPT, option("length", -8, 4)], r"the option length must be one of 4, 6, 8 (got \-8)"
    ),
    Options(
        "length_huge", [PROMPT, option("length", 2**70, 4)], "the option length must be one of 4, 6, 8 (got 1180591"
    ),
    Options(
        "length_boolean", [PROMPT, option("length", True, 4)], "the option length must be a whole number (got True)"
    ),
    Options(
        "unknown_ratio", [PROMPT, option("ratio", "21:9", 3)], "the option ratio must be one of 16:9, 9:16 (got '21:9')"
    ),
    Options(
        "ratio_with_mention",
        [PROMPT, option("ratio", "@everyone", 3)],
        "the option ratio must be one of 16:9, 9:16 (got '@\u200beveryone')",
    ),
    Options("hd_as_string", [PROMPT, option("hd", "true", 5)], "the option hd must be true or false (got 'true')"),
    Options(
        "audio_as_integer",
        [PROMPT, option("audio", 1, 4)],
        "the option audio must be true or false, not a whole number",
    ),
    Options("seed_unknown_option", [PROMPT, option("seed", 2**64, 4)], "/veo has no option 'seed'"),
    Options(
        "unknown_option_long_name",
        [PROMPT, option("x" * 500, 1, 4)],
        "/veo has no option 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx….",
    ),
    Options("missing_prompt", [option("length", 8, 4)], "the option prompt is required"),
    Options("no_options_at_all", [], "the option prompt is required"),
    Options("prompt_twice", [PROMPT, PROMPT], "the option prompt was given twice"),
    Options("prompt_as_integer", [option("prompt", 12345, 4)], "the option prompt must be text, not a whole number"),
    Options(
        "prompt_as_user_option", [option("prompt", "not-a-snowflake", 6)], "the option prompt must be text, not a user"
    ),
    Options(
        "prompt_as_subcommand",
        [{"name": "prompt", "type": 1, "options": []}],
        "the option prompt must be text, not a subcommand",
    ),
    Options(
        "unknown_type_code",
        [option("prompt", "a fox in snow", 99)],
        "the option prompt must be text, not option type 99",
    ),
    Options("option_without_name", [PROMPT, {"type": 4, "value": 8}], "/veo has no option None"),
    Options("prompt_null", [option("prompt", None, 3)], "the option prompt must be text (got None)"),
    Options(
        "negative_as_list",
        [PROMPT, option("negative_prompt", ["a"], 3)],
        r"the option negative_prompt must be text (got \['a'\])",
    ),
    Options(
        "all_valid_plus_float_length_as_integer_type",
        [PROMPT, option("length", 8.0, 4)],
        "the option length must be a whole number (got 8.0)",
    ),
    Options(
        "every_option_valid",
        [
            PROMPT,
            option("length", 8, 4),
            option("ratio", "9:16", 3),
            option("hd", True, 5),
            option("audio", False, 5),
            option("negative_prompt", "rain", 3),
        ],
        None,
    ),
]

# Ids that are integers (discord.py parses them) but no Discord snowflake.
NOT_SNOWFLAKES = [0, -1, 2**63, 2**64 + 5]

# Raw option values of every JSON type, for generated payloads.
json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
    st.lists(st.integers(), max_size=2),
)
generated_option = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["prompt", "length", "ratio", "hd", "audio", "negative_prompt", "seed", "", "PROMPT"]),
        "type": st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, -1, 99]),
        "value": json_values,
    }
)
# Options as a registered /veo could send them (the right type code, a value of that type, often
# one of the choices), so that generated lists also pass the shape checks and reach the text
# checks and the queue.
_text = hostile_text | displayable_text
well_formed_option = st.one_of(
    st.builds(option, st.just("prompt"), _text, st.just(3)),
    st.builds(option, st.just("length"), st.sampled_from([4, 6, 8]) | st.integers(-10, 10), st.just(4)),
    st.builds(option, st.just("ratio"), st.sampled_from(["16:9", "9:16"]) | hostile_text, st.just(3)),
    st.builds(option, st.sampled_from(["hd", "audio"]), st.booleans(), st.just(5)),
    st.builds(option, st.just("negative_prompt"), _text, st.just(3)),
)
generated_options = st.one_of(
    st.lists(generated_option | well_formed_option, max_size=5),
    st.lists(well_formed_option, max_size=6, unique_by=lambda option: option["name"]),
)
