"""manage.py veo "prompt" --user ID [...] [--wait]: submit a request from the command line.

It goes through the same admission as /veo (quota, bans, validation); a worker (`make run`
or `manage.py runworker`) generates it. With --wait, prints progress and the outcome.
"""

import random
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from generation import storage, wakeup
from tracking import capabilities, services
from tracking.durations import humanize_duration
from tracking.errors import InvalidInput
from tracking.models import Status, VideoRequest

DISCORD_EPOCH_MS = 1_420_070_400_000


def cli_interaction_id() -> int:
    """A snowflake-shaped id (time + random bits), so CLI requests share admission's idempotency key."""
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | random.getrandbits(22)


class Command(BaseCommand):
    help = "Submit a video request through admission (as /veo would); --wait prints the outcome."

    def add_arguments(self, parser):
        parser.add_argument("prompt")
        parser.add_argument("--user", type=int, required=True, help="Discord user id to charge the quota to")
        parser.add_argument("--guild", type=int, help="Discord guild id (for guild quota policies and bans)")
        parser.add_argument("--duration", type=int, default=4, choices=[4, 6, 8], help="seconds (default 4)")
        parser.add_argument("--ratio", default="16:9", choices=["16:9", "9:16"])
        parser.add_argument("--resolution", default="720p", choices=["720p", "1080p"])
        parser.add_argument("--audio", action="store_true", default=True, help="generate audio (default)")
        parser.add_argument("--no-audio", dest="audio", action="store_false")
        parser.add_argument("--negative", help="what the video should not contain")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--wait", action="store_true", help="wait for the outcome and print it")
        parser.add_argument("--timeout", type=float, default=900, help="with --wait: give up after this many seconds")

    def handle(self, *args, **opts):
        params = services.VideoParameters(
            prompt=opts["prompt"],
            duration_seconds=opts["duration"],
            aspect_ratio=opts["ratio"],
            resolution=opts["resolution"],
            generate_audio=opts["audio"],
            negative_prompt=opts["negative"],
            seed=opts["seed"],
        )
        try:
            answer = services.admit_request(
                interaction_id=cli_interaction_id(),
                user_id=opts["user"],
                guild_id=opts["guild"],
                channel_id=None,
                params=params,
                source="cli",
            )
        except InvalidInput as error:
            raise CommandError(str(error)) from None
        if not answer.admitted:
            refusal = f"request {answer.request_id} refused: {answer.reason}"
            if answer.reason_code == "quota_exceeded" and answer.reset_at is not None:
                refusal += f"; next slot in {humanize_duration(answer.reset_at - timezone.now())}"
            raise CommandError(refusal)
        wakeup.work_admitted()
        self.stdout.write(
            f"request {answer.request_id} queued ({answer.remaining} of {answer.limit} left in the window)"
        )
        if opts["wait"]:
            self._wait(answer.request_id, opts["timeout"])

    def _wait(self, request_id: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_status = None
        while time.monotonic() < deadline:
            request = VideoRequest.objects.get(id=request_id)
            if request.status != last_status:
                last_status = request.status
                self.stdout.write(f"  {timezone.now():%H:%M:%S} {request.status}")
            if (
                request.status in (Status.COMPLETED, Status.FAILED, Status.TIMEOUT, Status.CANCELLED)
                and request.delivered_at
            ):
                self._report(request)
                return
            time.sleep(0.5)
        raise CommandError(
            f"request {request_id} still {last_status} after {timeout:g} s "
            "(is a worker running? `make run` starts one, or `manage.py runworker`)"
        )

    def _report(self, request: VideoRequest) -> None:
        queued = (request.started_at - request.created_at).total_seconds() if request.started_at else None
        lines = [
            f"request {request.id}: {request.status}",
            f"  model:      {request.model}"
            + ("  (SAMPLE video: no Veo credentials configured)" if request.model == capabilities.SAMPLE_MODEL else ""),
            f"  queued:     {queued:.1f} s" if queued is not None else "  queued:     -",
            f"  generating: {request.duration_ms / 1000:.1f} s"
            if request.duration_ms is not None
            else "  generating: -",
        ]
        if request.status == Status.COMPLETED:
            for uri in request.output_uris:
                where = storage.local_storage().path(uri) if uri.startswith(storage.FILE_SCHEME) else uri
                lines.append(f"  video:      {where}")
            lines += [f"  link:       {url}" for url in request.public_urls]
        else:
            lines.append(f"  reason:     {request.error_code}: {request.error_message}")
            lines.append("  quota:      " + ("refunded" if not request.counts_toward_quota else "counted"))
        self.stdout.write("\n".join(lines))
        if request.status != Status.COMPLETED:
            raise CommandError(f"request {request.id} {request.status}")
