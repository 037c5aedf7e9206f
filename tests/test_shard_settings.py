"""DISCORD_SHARD_COUNT and DISCORD_SHARD_IDS: what is accepted, and what stops start-up with one
line naming the variable."""

import pytest

from discordbot.shards import describe
from tests.test_settings_and_health import _manage
from veosite import config
from veosite.config import ConfigError


@pytest.mark.parametrize(
    "count,ids,expected",
    [
        ("", "", (None, None)),
        ("auto", "", ("auto", None)),
        ("4", "", (4, None)),
        ("4", "0-3", (4, (0, 1, 2, 3))),
        ("8", "4,5", (8, (4, 5))),
        ("8", " 6-7 , 0 ", (8, (6, 7, 0))),
        ("1", "0", (1, (0,))),
    ],
)
def test_accepted_shard_settings(monkeypatch, count, ids, expected):
    monkeypatch.setenv("DISCORD_SHARD_COUNT", count)
    monkeypatch.setenv("DISCORD_SHARD_IDS", ids)
    assert config.get_shards("DISCORD_SHARD_COUNT", "DISCORD_SHARD_IDS") == expected


@pytest.mark.parametrize(
    "count,ids,message",
    [
        ("", "0-3", "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT"),
        ("auto", "0", "DISCORD_SHARD_IDS needs a numeric DISCORD_SHARD_COUNT, not auto"),
        ("0", "", "DISCORD_SHARD_COUNT must be auto or a whole number between 1 and 65536 (got '0')"),
        ("four", "", "DISCORD_SHARD_COUNT must be auto or a whole number"),
        ("4", "4", "DISCORD_SHARD_IDS: shard 4 does not exist with DISCORD_SHARD_COUNT 4 (ids run from 0 to 3)"),
        ("4", "2-5", "DISCORD_SHARD_IDS: shard 5 does not exist"),
        ("4", "0,1,1", "DISCORD_SHARD_IDS lists shard 1 twice"),
        ("8", "0-3,2-5", "DISCORD_SHARD_IDS lists shard 2 twice"),
        ("4", "3-1", "DISCORD_SHARD_IDS: the range '3-1' runs backwards (write 1-3)"),
        ("4", "0;1", "DISCORD_SHARD_IDS must list shard ids or ranges like 0-3 or 4,5 (got '0;1'"),
        ("4", "-1", "DISCORD_SHARD_IDS must list shard ids or ranges"),
        ("4", "1,", "DISCORD_SHARD_IDS must list shard ids or ranges"),
    ],
)
def test_wrong_shard_settings_are_refused_with_the_reason(monkeypatch, count, ids, message):
    monkeypatch.setenv("DISCORD_SHARD_COUNT", count)
    monkeypatch.setenv("DISCORD_SHARD_IDS", ids)
    with pytest.raises(ConfigError) as refused:
        config.get_shards("DISCORD_SHARD_COUNT", "DISCORD_SHARD_IDS")
    assert str(refused.value).startswith(message)


def test_a_wrong_shard_setting_stops_start_up_with_one_line():
    result = _manage("check", SECRET_KEY="k", DISCORD_SHARD_COUNT="4", DISCORD_SHARD_IDS="0,4")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "veobot: configuration error: DISCORD_SHARD_IDS: shard 4 does not exist with DISCORD_SHARD_COUNT 4 "
        "(ids run from 0 to 3)"
    ]


def test_shard_ids_are_named_as_ranges_in_the_logs():
    assert describe([3, 0, 1, 2, 6, 8, 9]) == "0-3,6,8-9" and describe(range(1)) == "0"
