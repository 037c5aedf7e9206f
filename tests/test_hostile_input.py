"""Hostile input through every entry point: /veo (the real discord.py against the fake Discord),
``manage.py veo`` and the moderation panel.

Each input is either refused with a specific message (privately, on Discord) and changes
nothing in the database, or accepted and stored as sent. Never a traceback, an HTTP 500 or a
database error, and nothing the bot sends pings anyone or lets user text turn into markup.
The fixed cases and the Hypothesis strategies are in tests/hostile_corpus.py.
"""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from tests import hostile_corpus as corpus
from tests import hostile_rules as rules
from tests.bot_harness import eventually, fake_discord, quick_bot_settings, run_bot
from tests.fakes import discord_server as fake
from tests.fakes import veo_server
from tests.fakes.interactions import CHANNEL_ID, deliver, deliver_and_wait, slash_command, user
from tests.hypothesis_profiles import examples
from tests.workers import database_url
from tracking import services
from tracking.errors import InvalidInput
from tracking.models import VideoRequest

ROOT = Path(__file__).resolve().parent.parent

# A new seed every run (tests/hypothesis_profiles.py, printed in pytest's header); more examples
# in CI and in `make chaos`; no per-example deadline on a shared machine.
PROPERTY = hypothesis_settings(
    max_examples=examples(quick=60), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def normalised(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def quiet_logs(caplog):
    """Fails the test if anything logged a traceback or an error (a database error included)."""
    caplog.set_level(logging.INFO)
    yield caplog
    loud = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert loud == []


# -- /veo through the bot -----------------------------------------------------------------------------

bot_test = pytest.mark.django_db(transaction=True)
server = pytest.fixture(fake_discord, name="server")


@pytest.fixture
def bot_settings(settings, tmp_path, veo_fake):
    quick_bot_settings(settings, tmp_path)
    settings.VEO_QUOTA_LIMIT = 10_000  # every case is judged on its input alone


def veo_payload(options: list[dict], *, user_id: int = 1_180_000_000_000_000_300, **kwargs) -> dict:
    payload = slash_command("veo", author=user(user_id), **kwargs)
    payload["data"]["options"] = options
    return payload


def prompt_payload(prompt: str, **kwargs) -> dict:
    return veo_payload([corpus.option("prompt", prompt, 3)], **kwargs)


def run_payloads(server, payloads: list[dict]) -> None:
    async def scenario(bot):
        for payload in payloads:
            await deliver_and_wait(bot, payload, server=server)

    run_bot(scenario, run_worker=False)


def reply_to(server, payload) -> dict:
    reply = server.original_response(payload["id"])
    assert reply is not None, "the interaction was never answered"
    return reply


def assert_inert(server, channel_ids=(CHANNEL_ID,)) -> int:
    """Every message the bot left pings nobody and shows user text as typed; returns how many."""
    messages = [message for channel in channel_ids for message in server.messages_in(channel)]
    for message in messages:
        assert message["allowed_mentions"] == {"parse": []}, message
        assert (message["mentions"], message["mention_roles"], message["mention_everyone"]) == ([], [], False)
        for text in corpus.shown_texts(message):
            assert corpus.live_markup(text) == [], text
    return len(messages)


def assert_refused_privately(server, payload, refusal: str) -> None:
    reply = reply_to(server, payload)
    assert reply["flags"] & fake.EPHEMERAL, reply
    if payload["data"]["name"] == "veo":
        assert reply["content"].startswith(f"Can't queue that: {refusal}"), reply["content"]
        assert reply["content"].endswith("Nothing was charged.")
    else:
        assert reply["content"] == f"Can't answer that: {refusal}.", reply["content"]
    assert not VideoRequest.objects.filter(interaction_id=int(payload["id"])).exists()


def assert_queued(server, payload, prompt: str) -> VideoRequest:
    reply = reply_to(server, payload)
    assert not reply["flags"] & fake.EPHEMERAL and reply["embeds"][0]["title"] == "Queued", reply
    row = VideoRequest.objects.get(interaction_id=int(payload["id"]))
    assert row.status == "pending" and row.prompt == normalised(prompt)
    return row


@bot_test
@pytest.mark.usefixtures("bot_settings")
def test_hostile_prompts_through_veo(server, quiet_logs):
    payloads = {case.name: prompt_payload(case.text) for case in corpus.PROMPTS}
    run_payloads(server, list(payloads.values()))
    for case in corpus.PROMPTS:
        payload = payloads[case.name]
        if case.refusal:
            assert_refused_privately(server, payload, case.refusal)
        else:
            assert_queued(server, payload, case.text)
    assert assert_inert(server) == len(corpus.PROMPTS)
    # The SQL-looking prompts were data: the table they name is still there, with all of them.
    assert VideoRequest.objects.count() == sum(case.refusal is None for case in corpus.PROMPTS)


@bot_test
@pytest.mark.usefixtures("bot_settings")
def test_markdown_and_mentions_are_escaped_in_the_queued_embed(server):
    masked, everyone = prompt_payload("[free nitro](https://phish.example) a fox"), prompt_payload("@everyone a fox")
    fence = veo_payload(
        [
            corpus.option("prompt", "```a fox in snow", 3),
            corpus.option("negative_prompt", "<@&123456789012345678> ||rain||", 3),
        ]
    )
    run_payloads(server, [masked, everyone, fence])
    assert reply_to(server, masked)["embeds"][0]["description"] == r"\[free nitro\](https://phish.example) a fox"
    assert reply_to(server, everyone)["embeds"][0]["description"] == "@\u200beveryone a fox"
    embed = reply_to(server, fence)["embeds"][0]
    assert embed["description"] == r"\`\`\`a fox in snow"
    assert {f["name"]: f["value"] for f in embed["fields"]}[
        "Avoid"
    ] == "\\<@\u200b&123456789012345678\\> \\|\\|rain\\|\\|"


@bot_test
@pytest.mark.usefixtures("bot_settings")
def test_a_hostile_prompt_delivered_in_the_channel_pings_only_the_requester(server, veo_fake):
    """Past the token's lifetime the video is posted in the channel with the one deliberate
    mention: the requester. The prompt in that post stays inert."""
    prompt = "@everyone <@&123456789012345678> <@123456789012345679> [win](https://phish.example) ```fox"
    payload = prompt_payload(prompt)
    veo_fake.default_scenario = veo_server.scenario("slow", seconds=0.3)

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        server.advance(16 * 60)
        await eventually(
            lambda: VideoRequest.objects.filter(interaction_id=int(payload["id"]), delivered_at__isnull=False).exists(),
            what="delivery",
        )

    run_bot(scenario)
    queued, post = server.messages_in(CHANNEL_ID)
    requester = int(payload["member"]["user"]["id"])
    assert post["content"] == f"<@{requester}>" and post["allowed_mentions"] == {"parse": [], "users": [requester]}
    assert [u["id"] for u in post["mentions"]] == [str(requester)] and not post["mention_everyone"]
    assert post["mention_roles"] == [] and queued["allowed_mentions"] == {"parse": []}
    for text in corpus.shown_texts(queued) + corpus.shown_texts(post)[1:]:
        assert corpus.live_markup(text) == [], text


@bot_test
@pytest.mark.usefixtures("bot_settings")
def test_prompt_and_negative_prompt_far_over_embed_limits_still_fit(server, settings):
    settings.VEO_PROMPT_MAX_LENGTH = 4000
    # Escaping doubles these (every character is markdown): 8000 characters each before fitting.
    payload = veo_payload([corpus.option("prompt", "*_" * 2000, 3), corpus.option("negative_prompt", "`|" * 2000, 3)])
    run_payloads(server, [payload])
    embed = reply_to(server, payload)["embeds"][0]
    assert len(embed["description"]) <= 4096 and embed["description"].endswith("…")
    assert VideoRequest.objects.get(interaction_id=int(payload["id"])).prompt == "*_" * 2000
    assert assert_inert(server) == 1


@bot_test
@pytest.mark.usefixtures("bot_settings")
def test_tampered_options_get_a_specific_private_refusal(server, quiet_logs):
    payloads = {case.name: veo_payload(case.options) for case in corpus.TAMPERED}
    run_payloads(server, list(payloads.values()))
    for case in corpus.TAMPERED:
        if case.refusal:
            assert_refused_privately(server, payloads[case.name], case.refusal)
    row = VideoRequest.objects.get(interaction_id=int(payloads["every_option_valid"]["id"]))
    assert (row.duration_seconds, row.aspect_ratio, row.resolution, row.generate_audio, row.negative_prompt) == (
        8,
        "9:16",
        "1080p",
        False,
        "rain",
    )
    assert VideoRequest.objects.count() == 1
    assert assert_inert(server) == len(corpus.TAMPERED)


@bot_test
@pytest.mark.usefixtures("bot_settings")
@pytest.mark.parametrize("command", ["veo", "quota", "history"])
def test_ids_that_are_not_snowflakes_are_refused_for_every_command(server, quiet_logs, command):
    channel_ids = {CHANNEL_ID}
    payloads = []
    for bad in corpus.NOT_SNOWFLAKES:
        options = {"prompt": "a red fox in snow"} if command == "veo" else {}
        as_user, in_guild = (
            slash_command(command, options, author=user(bad)),
            slash_command(command, options, guild_id=bad),
        )
        with_id, in_channel = slash_command(command, options), slash_command(command, options)
        with_id["id"] = str(bad)
        in_channel["channel_id"] = in_channel["channel"]["id"] = str(bad)
        channel_ids |= {bad}
        payloads += [(as_user, "user", bad), (in_guild, "guild", bad), (in_channel, "channel", bad)]
        if bad >= 0:  # Discord's routes take digits only: a negative interaction id cannot be answered at all
            payloads.append((with_id, "interaction", bad))
    run_payloads(server, [payload for payload, _, _ in payloads])
    for payload, what, bad in payloads:
        assert_refused_privately(server, payload, f"the {what} id {bad} is not a valid Discord id")
    assert not VideoRequest.objects.exists()
    assert assert_inert(server, channel_ids) == len(payloads)


@bot_test
@pytest.mark.usefixtures("bot_settings")
def test_ids_that_are_not_numbers_stop_in_discord_py_before_any_of_our_code(server):
    """discord.py parses every id with int(): a payload Discord itself would never send fails
    there, so nothing is answered and nothing is written."""
    payload = slash_command("veo", {"prompt": "a red fox in snow"}, author=user("abc"))  # type: ignore[arg-type]

    async def scenario(bot):
        with pytest.raises(ValueError):
            deliver(bot, payload)  # not registered with the fake, which would refuse it too

    run_bot(scenario, run_worker=False)
    assert server.requests("POST /interactions/*/callback") == [] and not VideoRequest.objects.exists()


@pytest.mark.parametrize("case", corpus.PROMPTS + corpus.TAMPERED, ids=str)
def test_the_model_of_the_rules_agrees_with_every_fixed_case(case):
    """tests/hostile_rules.py, which the properties below trust, answers each hand-written case
    of the corpus as the case says (its refusal is the start of the model's message)."""
    options = case.options if isinstance(case, corpus.Options) else [corpus.option("prompt", case.text, 3)]
    answer = rules.veo_answer(options, low=5, high=600)  # README: prompts of 5-600 characters
    if case.refusal is None:
        assert isinstance(answer, rules.Queued), answer
    elif isinstance(answer, rules.Refused):
        assert (answer.reason + ".").startswith(case.refusal), answer
    else:
        assert isinstance(answer, rules.Echo), answer
        assert (answer.before + answer.shown() + answer.after + ".").startswith(rules.as_rendered(case.refusal))


def expected_answer(options: list[dict]):
    """What the model (tests/hostile_rules.py) says /veo must answer, with this run's bounds."""
    return rules.veo_answer(
        options, low=django_settings.VEO_PROMPT_MIN_LENGTH, high=django_settings.VEO_PROMPT_MAX_LENGTH
    )


def assert_answer(server, payload, answer) -> str:
    """The bot answered ``payload`` exactly as the model says; returns "refused" or "queued"."""
    reply = reply_to(server, payload)
    row = VideoRequest.objects.filter(interaction_id=int(payload["id"])).first()
    if isinstance(answer, rules.Queued):
        assert not reply["flags"] & fake.EPHEMERAL and reply["embeds"][0]["title"] == "Queued", (answer, reply)
        assert row is not None and row.status == "pending", answer
        default = django_settings  # an option not sent: the configured default
        stored = (row.prompt, row.negative_prompt, row.duration_seconds, row.aspect_ratio, row.resolution)
        assert stored + (row.generate_audio,) == (
            answer.prompt,
            answer.negative_prompt,
            default.VEO_DEFAULT_DURATION if answer.duration_seconds is None else answer.duration_seconds,
            default.VEO_DEFAULT_RATIO if answer.aspect_ratio is None else answer.aspect_ratio,
            default.VEO_DEFAULT_RESOLUTION if answer.resolution is None else answer.resolution,
            default.VEO_DEFAULT_AUDIO if answer.generate_audio is None else answer.generate_audio,
        ), answer
        return "queued"
    assert reply["flags"] & fake.EPHEMERAL, (answer, reply)
    content, head, tail = reply["content"], "Can't queue that: ", ". Nothing was charged."
    if isinstance(answer, rules.Refused):
        assert content == head + answer.reason + tail
    else:  # the value sent is echoed: shortened, and shown as sent but inert
        head, tail = head + answer.before, answer.after + tail
        assert content.startswith(head) and content.endswith(tail), (answer, content)
        echoed = content[len(head) : len(content) - len(tail)]
        assert rules.as_rendered(echoed) == answer.shown(), (answer, content)
        assert corpus.live_markup(echoed) == [] and rules.unescaped_markdown(echoed) == [], content
    assert row is None, answer
    return "refused"


@bot_test
@pytest.mark.usefixtures("bot_settings")
def test_generated_prompts_and_options_through_veo(server, quiet_logs):
    """Hypothesis-generated prompts (any code point; then only what must be accepted), then
    whole generated option lists, into one running bot: the model of the rules
    (tests/hostile_rules.py) decides from each input whether it is refused, privately, with
    which message and no row, or queued with which stored values; the bot must answer exactly
    that."""
    seen = {"refused": 0, "queued": 0}

    async def scenario(bot):
        loop = asyncio.get_running_loop()

        def send(options):
            payload = veo_payload(options)
            asyncio.run_coroutine_threadsafe(deliver_and_wait(bot, payload, server=server), loop).result()
            return payload

        @PROPERTY
        @given(prompt=corpus.hostile_text)
        def prompts(prompt):
            options = [corpus.option("prompt", prompt, 3)]
            answer = expected_answer(options)
            seen[assert_answer(server, send(options), answer)] += 1

        @PROPERTY
        @given(prompt=corpus.displayable_text)
        def displayable(prompt):
            options = [corpus.option("prompt", prompt, 3)]
            answer = expected_answer(options)
            assert answer == rules.Queued(prompt=normalised(prompt)), "the strategy makes only acceptable prompts"
            payload = send(options)
            assert_queued(server, payload, prompt)
            seen[assert_answer(server, payload, answer)] += 1

        @PROPERTY
        @given(options=corpus.generated_options)
        def options(options):
            answer = expected_answer(options)
            seen[assert_answer(server, send(options), answer)] += 1

        def both():
            try:
                prompts()
                displayable()
                options()
            finally:
                connection.close()  # this thread's own connection

        await asyncio.to_thread(both)

    run_bot(scenario, run_worker=False)
    assert seen["refused"] > 0 and seen["queued"] > 0
    assert assert_inert(server) == sum(seen.values())


# -- the display, for any accepted text ----------------------------------------------------------------


@PROPERTY
@given(prompt=corpus.hostile_text | corpus.displayable_text, negative=corpus.hostile_text | corpus.displayable_text)
def test_any_accepted_text_is_shown_inert_and_within_discord_limits(prompt, negative):
    """The model (tests/hostile_rules.py) decides whether the pair is refused, for which field
    and why, or accepted as what; an accepted pair is shown as typed, inert, within the limits."""
    from discordbot import display
    from generation.admission import unsaved_request

    answer = rules.text_answer(
        prompt, negative, low=django_settings.VEO_PROMPT_MIN_LENGTH, high=django_settings.VEO_PROMPT_MAX_LENGTH
    )
    params = services.VideoParameters(prompt=prompt, negative_prompt=negative)
    if isinstance(answer, rules.Refused):
        with pytest.raises(InvalidInput) as raised:
            services.clean_parameters(params)
        assert (raised.value.field, str(raised.value)) == (answer.field, answer.reason)
        return
    clean = services.clean_parameters(params)
    assert (clean.prompt, clean.negative_prompt) == (answer.prompt, answer.negative_prompt)
    request = unsaved_request(
        request_id=1,
        interaction_id=1,
        user_id=1,
        guild_id=1,
        channel_id=1,
        params=clean,
        status="pending",
        created_at=None,
    )
    embed = display.queued_embed(request, ahead=0, median_ms=None, remaining=1, limit=5, reset_at=None)
    message = {"embeds": [embed.to_dict()]}
    assert len(embed) <= display.EMBED_TOTAL_MAX and len(embed.description) <= display.DESCRIPTION_MAX
    for text in corpus.shown_texts(message):
        assert corpus.live_markup(text) == [], text
    # Shown as typed (these texts are far below the limits: nothing is shortened).
    avoid = [field.value for field in embed.fields if field.name == "Avoid"]
    assert [rules.unescaped_markdown(text) for text in [embed.description, *avoid]] == [[]] * (1 + len(avoid))
    assert rules.as_rendered(embed.description) == rules.unseen(answer.prompt)
    assert [rules.as_rendered(value) for value in avoid] == (
        [rules.unseen(answer.negative_prompt)] if answer.negative_prompt else []
    )


# -- manage.py veo --------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("case", corpus.PROMPTS, ids=str)
def test_hostile_prompts_through_the_cli(case, quiet_logs):
    out, before = io.StringIO(), VideoRequest.objects.count()
    if case.refusal:
        with pytest.raises(CommandError) as raised:
            call_command("veo", case.text, "--user", "4242", stdout=out)
        assert str(raised.value).startswith(case.refusal)
        assert VideoRequest.objects.count() == before
    else:
        call_command("veo", case.text, "--user", "4242", stdout=out)
        row = VideoRequest.objects.latest("id")
        assert (row.source, row.status, row.prompt) == ("cli", "pending", normalised(case.text))
        assert out.getvalue().startswith(f"request {row.id} queued")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "0"], "user_id must be a positive 64-bit Discord id (got 0)"),
        (["--user", str(2**64)], "user_id must be a positive 64-bit Discord id"),
        (["--user", "42", "--guild", "-7"], "guild_id must be a positive 64-bit Discord id (got -7)"),
        (["--user", "42", "--seed", str(2**70)], "seed must be a whole number from 0 to 4294967295"),
        (["--user", "42", "--seed", "-1"], "seed must be a whole number from 0 to 4294967295"),
        (["--user", "42", "--negative", "rain\x00"], "negative_prompt contains a NUL character (U+0000) at position 5"),
        (["--user", "42", "--negative", "\u202erain"], "negative_prompt contains a bidirectional control character"),
    ],
)
def test_cli_refuses_out_of_range_ids_and_values_without_a_row(args, message):
    before = VideoRequest.objects.count()
    with pytest.raises(CommandError) as raised:
        call_command("veo", "a red fox in snow", *args, stdout=io.StringIO())
    assert str(raised.value).startswith(message)
    assert VideoRequest.objects.count() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape).
        ([b"a fox \xff in snow", b"--user", b"42"], "prompt contains an unpaired surrogate (U+DCFF) at position 7"),
        (["a red fox in snow", "--user", "abc"], "argument --user: invalid int value: 'abc'"),
        (["a red fox in snow", "--user", "42", "--duration", "5"], "argument --duration: invalid choice: 5"),
        (["a red fox in snow", "--user", "42", "--ratio", "21:9"], "argument --ratio: invalid choice: '21:9'"),
        (["a red fox in snow", "--user", "42", "--seed", "1e3"], "argument --seed: invalid int value: '1e3'"),
    ],
)
def test_cli_process_refuses_with_one_line_and_no_traceback(db_settings, argv, message):
    before = VideoRequest.objects.count()
    environment = {
        "PATH": "/usr/bin:/bin",
        "SECRET_KEY": "tests-only",
        "DISCORD_TOKEN": "",
        "DATABASE_URL": database_url(db_settings),
    }
    result = subprocess.run(
        [
            sys.executable.encode(),
            b"manage.py",
            b"veo",
            *[arg if isinstance(arg, bytes) else arg.encode() for arg in argv],
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        timeout=120,
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0 and message in stderr and "Traceback" not in stderr, stderr
    assert VideoRequest.objects.count() == before


# -- the moderation panel ------------------------------------------------------------------------------

LIST = "/admin/tracking/videorequest/"
# A browser cannot send a lone surrogate (it is not UTF-8); its bytes arrive decoded as U+FFFD.
PANEL_CASES = {
    "nul",
    "zalgo",
    "right_to_left_override",
    "ansi_escape",
    "everyone",
    "masked_link",
    "sql_drop",
    "emoji_only",
    "whitespace_only",
    "zero_width_only",
}
HOSTILE_VALUES = [case.text for case in corpus.PROMPTS if case.name in PANEL_CASES] + [
    "²",
    "١٢٣",
    "#²",
    "9999",
    "9" * 30,
    "-1",
    "0",
    "1e9",
    "' OR 1=1 --",
    "%00",
    "\\",
    "&&",
    "!!!",
    "-",
    '"',
    "a:*",
    "<->",
]


@pytest.fixture
def mod(as_role):
    return as_role("moderator")


def page(mod, url: str, data=None, *, post: bool = False):
    """The panel's answer: never a server error (the test client re-raises one as an exception)."""
    response = mod.post(url, data or {}) if post else mod.get(url, data or {})
    assert response.status_code in (200, 302, 400, 404), (url, data, response.status_code)
    return response


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "parameter",
    [
        "q",
        "guild",
        "created_from",
        "created_to",
        "status__exact",
        "review_status__exact",
        "duration_seconds__exact",
        "aspect_ratio__exact",
        "safety",
        "delivered",
        "o",
        "p",
        "created_at__year",
        "created_at__month",
        "created_at__day",
    ],
)
def test_hostile_list_parameters_never_break_the_list(mod, parameter, quiet_logs):
    from tests.factories import VideoRequestFactory

    VideoRequestFactory(prompt="a red fox in snow")
    for value in HOSTILE_VALUES:
        response = page(mod, LIST, {parameter: value})
        # The list itself, or Django's reload without the bad filter (?e=1), or ours without a NUL.
        assert "cl" in response.context if response.status_code == 200 else response.status_code == 302
    for value in ("\x00", "²", "9" * 30, "' OR 1=1 --"):
        page(mod, LIST + "export/", {parameter: value})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "parameters"),
    [
        ("/admin/tracking/userban/", ["q", "o", "p", "lifted_at__isempty"]),
        ("/admin/tracking/quotapolicy/", ["q", "o", "p"]),
        ("/admin/tracking/blockedterm/", ["q", "o", "p", "kind__exact", "enabled__exact"]),
        ("/admin/tracking/discordaction/", ["q", "o", "p"]),
    ],
)
def test_hostile_parameters_on_the_other_lists(mod, url, parameters, quiet_logs):
    for parameter in parameters:
        for value in HOSTILE_VALUES:
            page(mod, url, {parameter: value})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("²", "guild: enter a guild id (digits) or dm for direct messages"),
        ("9" * 30, "guild: enter a guild id (digits) or dm for direct messages"),
    ],
)
def test_a_hostile_guild_filter_says_what_to_enter(mod, value, message):
    assert message in shown_messages(page(mod, LIST, {"guild": value}))


@pytest.mark.django_db
def test_an_export_with_an_invalid_filter_says_so(mod):
    response = mod.get(LIST + "export/", {"duration_seconds__exact": "eight"}, follow=True)
    assert "Nothing exported: a filter in the address is not valid." in shown_messages(response)


@pytest.mark.django_db
@pytest.mark.parametrize("url", [LIST, LIST + "export/", "/admin/tracking/userban/", "/admin/tracking/blockedterm/"])
def test_a_nul_in_a_list_address_is_dropped_with_a_message(mod, url):
    response = mod.get(url, {"q": "a fox\x00 in snow", "status__exact": "\x00", "o": "1"}, follow=True)
    assert response.status_code == 200 and response.redirect_chain[-1][0].endswith("?o=1")
    assert (
        "Ignored 'q', 'status__exact': the address contained a NUL character (U+0000), which no value can hold."
        in shown_messages(response)
    )


NOT_FOUND, MISSING = "not found", "missing"  # a 404; Django's redirect to the index saying so


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "answer"),
    [
        # An id in the path that no request, user or output can have: not found.
        ("user/0/", NOT_FOUND),
        (f"user/{2**63}/", NOT_FOUND),
        (f"user/{2**70}/", NOT_FOUND),
        (f"{2**63}/output/0/", NOT_FOUND),
        (f"{{row}}/output/{2**70}/", NOT_FOUND),  # a real request, an output index it cannot have
        # The change page answers like the admin does for any missing object.
        (f"{2**70}/change/", MISSING),
        ("abc/change/", MISSING),
        # A query parameter that is not a usable value is ignored: the page as without it.
        ("user/42/?before=²", "user/42/"),
        (f"user/42/?before={2**70}", "user/42/"),
        ("user/42/?before=-5", "user/42/"),
        ("user/42/?before=%00", "user/42/"),
        ("dashboard/?days=%00", "dashboard/"),
        ("dashboard/?days=²", "dashboard/"),
    ],
)
def test_hostile_ids_in_panel_urls_are_not_found_or_ignored(mod, url, answer, quiet_logs):
    from tests.factories import VideoRequestFactory

    VideoRequestFactory.create_batch(3, user_id=42)
    row = VideoRequestFactory(output_uris=["file:sample.mp4"])
    url = LIST + url.format(row=row.id)
    if answer == NOT_FOUND:
        assert page(mod, url).status_code == 404
    elif answer == MISSING:
        response = mod.get(url, follow=True)
        missing = url.removeprefix(LIST).split("/")[0]
        assert response.redirect_chain == [("/admin/", 302)] and response.status_code == 200
        assert f"video request with ID “{missing}” doesn’t exist. Perhaps it was deleted?" in shown_messages(response)
    else:
        hostile, plain = page(mod, url), page(mod, LIST + answer)
        assert hostile.status_code == plain.status_code == 200
        assert hostile.context["title"] == plain.context["title"]
        if "o" in plain.context:  # the user's page: the same (first) page of their requests
            shown = [[r.id for r in response.context["o"].history.requests] for response in (hostile, plain)]
            assert shown[0] == shown[1] and len(shown[0]) == 3
        else:  # the dashboard: the default period
            assert hostile.context["days"] == plain.context["days"] == 1


ACTIONS = {  # the action, what its success message and the admin log call it
    "approve_requests": "approved",
    "flag_requests": "flagged",
    "remove_outputs": "output removed",
    "refund_requests": "refunded",
    "cancel_requests": "cancelled",
    "ban_users": "user banned",
}
HOSTILE_REASON = "@everyone <script>alert(1)</script> '; DROP TABLE user_bans; --"


@pytest.mark.django_db
@pytest.mark.parametrize("action", ACTIONS)
def test_hostile_reasons_in_action_forms(mod, action, quiet_logs):
    from django.contrib.admin.models import LogEntry

    from tests.factories import VideoRequestFactory
    from tracking.models import UserBan, VideoRequestEvent

    # A request the action applies to (only a pending or generating one can be cancelled).
    row = VideoRequestFactory(
        prompt="a red fox in snow", status="pending" if action == "cancel_requests" else "completed"
    )
    verb = ACTIONS[action]

    def post(reason: str):
        data = {
            "action": action,
            "_selected_action": [row.id],
            "apply": "1",
            "reason": reason,
            "scope": "everywhere",
            "_from_detail": "²",
        }
        return page(mod, LIST, data, post=True)

    for reason, error in [
        ("a\x00b", "Null characters are not allowed."),
        ("x" * 1001, "Ensure this value has at most 1000 characters (it has 1001)."),
        (" \t\n ", "This field is required."),
    ]:
        response = post(reason)
        assert response.status_code == 200 and response.context["form"].errors == {"reason": [error]}  # asked again
        assert b"<script>alert" not in response.content
        assert not LogEntry.objects.exists() and not VideoRequestEvent.objects.filter(actor="mod").exists()

    # Accepted: the action is done, and the reason is recorded as typed (data, not markup or SQL).
    response = post(HOSTILE_REASON)
    assert response.status_code == 302 and response["Location"] == LIST  # "²" is no request to go back to
    said = "Banned 1 user(s), from their next request (1 request(s))." if action == "ban_users" else None
    assert shown_messages(mod.get(LIST)) == [said or f"{verb.capitalize()}: 1 request(s)."]  # once
    assert [entry.change_message for entry in LogEntry.objects.filter(object_id=str(row.id))] == [
        f"{verb}; reason: {HOSTILE_REASON}"
    ]
    events = VideoRequestEvent.objects.filter(request_id=row.id, actor="mod")
    assert events.exists() and all(event.detail["reason"] == HOSTILE_REASON for event in events)
    bans = list(UserBan.objects.values_list("user_id", "reason"))  # the table named in the reason is still there
    assert bans == ([(row.user_id, HOSTILE_REASON)] if action == "ban_users" else [])
    assert VideoRequest.objects.filter(id=row.id).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "data", "error"),
    [
        ("/admin/tracking/userban/add/", {"user_id": str(2**64), "reason": "spam"}, "Ensure this value is less than"),
        ("/admin/tracking/userban/add/", {"user_id": "-4", "reason": "spam"}, "The user id must be a Discord id"),
        ("/admin/tracking/userban/add/", {"user_id": "42", "reason": "sp\x00am"}, "Null characters are not allowed."),
        (
            "/admin/tracking/userban/add/",
            {"user_id": "42", "reason": "spam", "expires_at_0": "9999999-01-01", "expires_at_1": "25:61"},
            "Enter a valid date.",
        ),
        (
            "/admin/tracking/quotapolicy/add/",
            {"user_id": "42", "quota_limit": str(2**40), "quota_window": "1 00:00:00"},
            "Ensure this value is less than",
        ),
        (
            "/admin/tracking/quotapolicy/add/",
            {"user_id": "42", "quota_limit": "5", "quota_window": "999999999999 00:00:00"},
            "The number of days must be between",
        ),
        (
            "/admin/tracking/quotapolicy/add/",
            {"user_id": "42", "quota_limit": "5", "quota_window": "\x00"},
            "Write a duration like &quot;24h&quot;",
        ),
        (
            "/admin/tracking/quotapolicy/add/",
            {"guild_id": "²", "quota_limit": "5", "quota_window": "1 00:00:00"},
            "Enter a whole number.",
        ),
        (
            "/admin/tracking/blockedterm/add/",
            {"kind": "word", "pattern": "kra\x00ken", "enabled": "on"},
            "Null characters are not allowed.",
        ),
        (
            "/admin/tracking/blockedterm/add/",
            {"kind": "regex", "pattern": "(a+)+$" * 50, "enabled": "on"},
            "a regular expression must be at most 200 characters (got 300)",  # docs/SCHEMA.md, blocked terms
        ),
        (
            "/admin/tracking/blockedterm/add/",
            {"kind": "sql", "pattern": "x", "enabled": "on"},
            "Select a valid choice.",
        ),
        (
            "/admin/tracking/blockedterm/add/",
            {"kind": "word", "pattern": "x", "guild_id": str(2**63), "enabled": "on"},
            "Ensure this value is less than",
        ),
    ],
)
def test_hostile_ban_policy_and_blocked_term_forms_are_refused_with_a_reason(as_role, url, data, error, quiet_logs):
    from tracking.models import BlockedTerm, QuotaPolicy, UserBan

    # Moderators ban and block terms; quota policies are the operator's.
    client = as_role("superuser" if "quotapolicy" in url else "moderator")
    counts = [model.objects.count() for model in (UserBan, QuotaPolicy, BlockedTerm)]
    response = page(client, url, data, post=True)
    assert response.status_code == 200, "the form was accepted"
    assert error and error in response.content.decode()
    assert [model.objects.count() for model in (UserBan, QuotaPolicy, BlockedTerm)] == counts
