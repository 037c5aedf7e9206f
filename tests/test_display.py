"""What the bot writes for users, checked where it is decided (discordbot.display)."""

from datetime import timedelta

import pytest

from discordbot import display
from tracking.models import VideoRequest


@pytest.mark.parametrize(
    "ahead,concurrent,starts_per_minute,median_s,expected",
    [
        (0, 4, 10, 12, timedelta(seconds=12)),  # next up: its own generation
        (3, 4, 10, 12, timedelta(seconds=30)),  # 3 starts ahead take 18 s at 10 a minute
        (14, 4, 10, 12, timedelta(seconds=96)),  # the start cap binds: 14 starts take 84 s
        (8, 1, 100, 60, timedelta(seconds=540)),  # one at a time: 8 generations of 60 s each
    ],
)
def test_eta_counts_whichever_cap_binds(settings, ahead, concurrent, starts_per_minute, median_s, expected):
    settings.VEO_MAX_CONCURRENT, settings.VEO_MAX_STARTS_PER_MINUTE = concurrent, starts_per_minute
    assert display.eta(ahead, median_s * 1000) == expected


def test_position_15_under_the_start_cap_says_minutes_not_seconds(settings):
    settings.VEO_MAX_CONCURRENT, settings.VEO_MAX_STARTS_PER_MINUTE = 4, 10
    request = VideoRequest(id=7, prompt="a red fox", duration_seconds=8, aspect_ratio="16:9", resolution="720p")
    embed = display.queued_embed(request, ahead=14, median_ms=12_000, remaining=4, limit=5, reset_at=None)
    fields = {field.name: field.value for field in embed.fields}
    assert (fields["Position"], fields["ETA"]) == ("15 in queue", "~1m 36s")
    assert fields["Waiting"] == "Veo starts at most 10 videos a minute here, and 14 are ahead of this one"


@pytest.mark.parametrize("ahead", [0, 3, 7])
def test_no_waiting_note_while_the_generations_under_way_decide(settings, ahead):
    settings.VEO_MAX_CONCURRENT, settings.VEO_MAX_STARTS_PER_MINUTE = 4, 10
    request = VideoRequest(id=7, prompt="a red fox", duration_seconds=8, aspect_ratio="16:9", resolution="720p")
    # Generations of 60 s: four at a time hold the queue back longer than 10 starts a minute do,
    # or the starts hold it back less than 30 s (3 ahead: 18 s).
    embed = display.queued_embed(request, ahead=ahead, median_ms=60_000, remaining=4, limit=5, reset_at=None)
    assert "Waiting" not in {field.name for field in embed.fields}
