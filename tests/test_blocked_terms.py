"""Blocked prompt terms: validated by PostgreSQL when saved, enforced by admission."""

import pytest

from tests.helpers import admit
from tracking import selectors, services
from tracking.errors import InvalidInput
from tracking.models import BlockedTerm, VideoRequestEvent

pytestmark = [pytest.mark.django_db, pytest.mark.sql]


def block(pattern: str, kind: str = "word", guild_id: int | None = None, **fields) -> BlockedTerm:
    return services.save_blocked_term(
        term=BlockedTerm(pattern=pattern, kind=kind, guild_id=guild_id, **fields), actor="mod"
    )


def test_a_blocked_word_rejects_the_prompt_with_a_clear_message_and_records_it():
    block("kraken")
    answer = admit(prompt="a Kraken rising from the sea")
    assert not answer.admitted and answer.status == "rejected" and answer.reason_code == "blocked_term"
    assert answer.reason == 'prompt refused: "kraken" is not allowed'
    assert answer.remaining == answer.limit  # a refused prompt never costs quota
    event = VideoRequestEvent.objects.get(request_id=answer.request_id)
    assert event.kind == "created" and event.to_status == "rejected" and event.detail["error_code"] == "blocked_term"


def test_words_match_whole_words_only_and_any_case():
    block("ass")
    assert admit(prompt="a donkey, also called an ass, in a field").reason_code == "blocked_term"
    assert admit(prompt="a classic brass band at sunset").admitted


def test_words_with_regex_characters_are_literal():
    block("c++")
    assert admit(prompt="a c++ compiler on fire").reason_code == "blocked_term"
    assert admit(prompt="a cc compiler on fire").admitted


def test_negative_prompt_is_checked_too():
    block("gore")
    assert admit(prompt="a quiet forest", negative_prompt="no gore please").reason_code == "blocked_term"


def test_regex_terms_and_custom_message():
    block(r"kill(ing|ed)?\s+(him|her)", kind="regex", message="violent prompts are not allowed here")
    answer = admit(prompt="a knight killing him slowly")
    assert answer.reason == "prompt refused: violent prompts are not allowed here"
    assert admit(prompt="a knight kills time").admitted


def test_guild_terms_apply_only_in_that_guild_and_disabled_terms_not_at_all():
    block("pineapple", guild_id=2001)
    block("durian", enabled=False)
    assert admit(guild_id=2001, prompt="a pineapple pizza").reason_code == "blocked_term"
    assert admit(guild_id=2002, prompt="a pineapple pizza").admitted
    assert admit(guild_id=None, prompt="a pineapple pizza").admitted
    assert admit(prompt="a durian market").admitted


def test_bans_come_before_blocked_terms():
    block("kraken")
    services.ban_user(user_id=1001, reason="spam", actor="mod")
    assert admit(prompt="a kraken").reason_code == "banned"


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("(unclosed", "parentheses () not balanced"),
        (r"(a)\1", "back-references"),
        ("x*", "matches an empty prompt"),
        ("a" * 201, "at most 200 characters"),
        ("(?i)nude", "embedded options"),
        ("***:nude", "embedded options"),
    ],
)
def test_bad_regexes_are_refused_by_the_database_with_a_clear_message(pattern, problem):
    assert problem in selectors.blocked_term_problem(kind="regex", pattern=pattern)
    with pytest.raises(InvalidInput, match=problem.split()[0]):
        block(pattern, kind="regex")
    assert not BlockedTerm.objects.exists()


def test_a_good_regex_has_no_problem():
    assert selectors.blocked_term_problem(kind="regex", pattern=r"\mnude\M|naked") is None


def test_many_terms_are_checked_together_and_the_right_one_is_named():
    for n in range(60):  # more than PostgreSQL's cache of 32 compiled expressions
        block(f"forbidden{n}")
    block(r"bad(thing|stuff)\d+", kind="regex", message="no bad things")
    assert admit(prompt="a cat with forbidden42 written on it").reason == 'prompt refused: "forbidden42" is not allowed'
    assert admit(prompt="a badthing7 on a table").reason == "prompt refused: no bad things"
    assert admit(prompt="a forbidden fruit").admitted
