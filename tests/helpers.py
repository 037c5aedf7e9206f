"""Small helpers shared by the tests (no fakes of our own code)."""

from itertools import count

from tracking import services
from tracking.services import VideoParameters

_interactions = count(5 * 10**17)


def next_interaction() -> int:
    return next(_interactions)


def admit(user_id: int = 1001, guild_id: int | None = 2001, prompt: str = "a red fox in snow", **params):
    return services.admit_request(
        interaction_id=params.pop("interaction_id", None) or next_interaction(),
        user_id=user_id, guild_id=guild_id, channel_id=3001,
        params=VideoParameters(prompt=prompt, **params),
    )
