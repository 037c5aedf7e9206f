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
        user_id=user_id,
        guild_id=guild_id,
        channel_id=3001,
        params=VideoParameters(prompt=prompt, **params),
    )


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str) -> int | None:
    """The status of a GET, or None while nothing answers there in time (a server starting up)."""
    import requests

    try:
        return requests.get(url, timeout=10).status_code
    except requests.RequestException:
        return None


def csrf_token(page: str) -> str:
    """The CSRF token of the (first) form on an admin page."""
    import re

    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
