"""Journal replay against the real database: what a pass writes while degraded runs still end."""

import asyncio

import pytest
from django.utils import timezone

from generation.admission import unsaved_request
from generation.degraded import DatabaseHealth, DirectRunner, JournalReplayer, LocalLimiter, journal_request, now_iso
from generation.delivery import CliDelivery
from generation.journal import Journal
from generation.storage import LocalStorage
from tests.bot_harness import ScriptedVeo
from tests.workers import truncate_requests
from tracking import services
from tracking.models import Status, VideoRequest
from tracking.services import VideoParameters

pytestmark = pytest.mark.django_db(transaction=True)


def journaled(journal: Journal, interaction_id: int, *steps: dict) -> None:
    params = services.clean_parameters(VideoParameters(prompt=f"a heron at dusk, take {interaction_id}"))
    request = unsaved_request(request_id=None, interaction_id=interaction_id, user_id=7, guild_id=None,
                              channel_id=8, params=params, status=Status.PENDING, created_at=timezone.now())
    journal.append({"kind": "request", "interaction_id": interaction_id, "request": journal_request(request)})
    for step in steps:
        journal.append({"kind": "step", "interaction_id": interaction_id, "step": {"at": now_iso(), **step}})


GENERATING = {"status": Status.GENERATING, "operation_name": "scripted/ok/0/1"}
COMPLETED = {"status": Status.COMPLETED, "output_uris": ["file:///1.mp4"], "public_urls": [], "output_size_bytes": 10}
DELIVERED = {"delivered": True, "method": "interaction", "message_id": 99, "error": None}


def test_a_run_that_ends_during_a_pass_is_written_whole_in_a_later_one(tmp_path):
    """It was read while still generating; written from that read, the worker would have taken
    the delivered request for unfinished and delivered it again."""
    truncate_requests()
    journal = Journal(tmp_path / "journal")
    runner = DirectRunner(backend=ScriptedVeo(), delivery=CliDelivery(), storage=LocalStorage(tmp_path),
                          record=None, limiter=LocalLimiter())
    journaled(journal, 1, GENERATING, COMPLETED, DELIVERED)  # ended before the pass
    journaled(journal, 2, GENERATING)  # still running when the pass begins ...

    def run_2_ends(interaction_id: int) -> None:  # ... and ends while request 1 is written
        if interaction_id == 1:
            journal.append({"kind": "step", "interaction_id": 2, "step": {"at": now_iso(), **COMPLETED}})
            journal.append({"kind": "step", "interaction_id": 2, "step": {"at": now_iso(), **DELIVERED}})
            runner.tasks.pop(2)

    replayer = JournalReplayer(journal=journal, runner=runner, health=DatabaseHealth(), written=run_2_ends)

    async def passes():
        runner.tasks[2] = asyncio.create_task(asyncio.Event().wait())
        first = await replayer.replay()
        second = await replayer.replay()
        return first, second

    assert asyncio.run(passes()) == (1, 1)
    second = VideoRequest.objects.get(interaction_id=2)
    assert (second.status, second.delivery_method) == (Status.COMPLETED, "interaction")
    assert not journal.path.exists()  # everything replayed: the journal is discarded
