"""The bot process of bench/bot_latency.py: tests/bot_process.py with ``ScriptedVeo`` for Veo.

    python -m bench.scripted_bot     (started by bench/bot_latency.py, which feeds its stdin)

The tests run the bot against the Veo fake through the real google-genai client
(tests/bot_process.py). This benchmark does not, on purpose: it measures the bot's own cost --
the time to the first answer of /veo (which no Veo call is part of) and the bot's memory with
50 generations in flight and then 50 videos of 5 MB attached -- and its figures in
docs/BENCHMARKS.md were measured this way. A Veo fake would add the SDK's polling (and, for
inline videos, the base64 of 50 x 5 MB through JSON) to the memory figures, and the fake's own
CPU to the 2 cores the latency shares. So Veo here is a backend object in the bot's process:
SCRIPTED_VEO_SECONDS per video, each SCRIPTED_VEO_VIDEO_BYTES long (0: the bundled sample).
"""

from __future__ import annotations

import os
import time

from generation.veo import SAMPLE_VIDEO, GeneratedVideo, OperationLost, Outcome, VideoJob


class ScriptedVeo:
    """A Veo backend that takes ``seconds`` per video and never fails. The operation name
    carries the start time, so any process can resume it."""

    label = "scripted benchmark backend"

    def __init__(self, *, seconds: float = 0.0, video: bytes | None = None):
        self.seconds = seconds
        self.video = video or SAMPLE_VIDEO.read_bytes()

    async def start(self, job: VideoJob) -> str:
        return f"scripted/{time.time():.3f}/{job.request_id}"

    async def poll(self, operation_name: str) -> Outcome | None:
        try:
            _, started, _ = operation_name.split("/")
        except ValueError:
            raise OperationLost(operation_name) from None
        if time.time() < float(started) + self.seconds:
            return None
        return Outcome(videos=[GeneratedVideo(mime_type="video/mp4", data=self.video)])


def scripted_backend() -> ScriptedVeo:
    size = int(os.environ.get("SCRIPTED_VEO_VIDEO_BYTES", "0"))
    return ScriptedVeo(
        seconds=float(os.environ.get("SCRIPTED_VEO_SECONDS", "0")), video=(b"\0" * size) if size else None
    )


if __name__ == "__main__":
    from tests.bot_process import main

    main(backend=scripted_backend)
