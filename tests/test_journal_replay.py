"""Degraded mode's journal, written by the real runner and replayed into the real database.

Every outcome is produced the way it happens in an outage: the engine runs the request with the
journal store, the real google-genai client talking to the Veo fake, and whatever the runner
wrote is then replayed. A journal holding what the database refuses, or lines that are not
entries at all, replays everything else and keeps those aside (quarantine), reported and
retried by ``manage.py replay_journal``.
"""

import asyncio
import base64
import io
import json
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from discordbot import buttons
from generation import journal as journal_module
from generation.degraded import journal_request
from generation.health import DatabaseHealth
from generation.journal import Journal
from generation.replay import JournalReplayer
from tests.degraded_harness import Degraded
from tests.factories import VideoRequestFactory
from tests.fakes.veo_server import FakeVeoServer
from tests.image_files import png
from tests.outcomes import BY_NAME, OUTCOMES, QUICK_DEADLINES
from tests.workers import truncate_requests
from tracking.models import JournalQuarantine, Status, VideoRequest, VideoRequestEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sql]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations_sql"


@pytest.fixture(autouse=True)
def degraded_settings(settings, tmp_path):
    truncate_requests()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE journal_quarantine")
    settings.VEO_MEDIA_ROOT = tmp_path / "media"
    settings.VEO_JOURNAL_DIR = tmp_path / "journal"
    settings.VEO_BACKEND = "vertex"
    settings.GOOGLE_CLOUD_PROJECT = "veobot-test"
    for name, value in QUICK_DEADLINES.items():
        setattr(settings, name, value)


@pytest.fixture
def veo(settings):
    with FakeVeoServer() as fake:
        settings.VEO_API_BASE_URL = fake.url
        yield fake


def history(request_id: int) -> list[tuple]:
    return [(e.kind, e.to_status) for e in VideoRequestEvent.objects.filter(request_id=request_id).order_by("id")]


def assert_recorded_as(outcome, row: VideoRequest) -> None:
    assert (row.status, row.error_code, row.counts_toward_quota) == (
        outcome.status,
        outcome.code,
        not outcome.refunded,
    ), outcome.name
    assert outcome.told_by(history(row.id)), (outcome.name, history(row.id))
    assert row.delivered_at is not None and row.delivery_method == "cli"
    assert row.created_at <= row.completed_at <= row.delivered_at
    assert (row.started_at is not None) == outcome.started and bool(row.operation_name) == outcome.started
    if outcome.name == "completed":
        assert row.output_uris and row.output_size_bytes
    if outcome.name == "content_filtered":
        assert row.safety_filtered_count == 1 and row.safety_filtered_reasons


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda outcome: outcome.name)
def test_every_outcome_the_degraded_runner_journals_replays_whole(outcome, veo, tmp_path):
    degraded = Degraded(tmp_path / "journal", tmp_path / "media")
    request = degraded.request(outcome.prompt("a heron at dusk"))

    async def outage_then_recovery():
        await degraded.run(request, cancel_generating={request.interaction_id} if outcome.cancelled_while else set())
        return await degraded.replay()

    assert asyncio.run(outage_then_recovery()) == 1
    assert_recorded_as(outcome, VideoRequest.objects.get(interaction_id=request.interaction_id))
    creates = veo.create_count()
    assert creates >= 2 if outcome.name == "queue_timeout" else creates == 1  # a 429 is retried; nothing else
    assert not degraded.journal.path.exists() and JournalQuarantine.objects.count() == 0
    # The process's own count agrees with the database's once replayed.
    assert degraded.limiter.status(user_id=7).used == int(not outcome.refunded)


def test_all_outcomes_in_one_journal_replay_in_one_pass(veo, tmp_path):
    degraded = Degraded(tmp_path / "journal", tmp_path / "media")
    requests = {
        outcome.name: degraded.request(outcome.prompt(f"a heron, take {n}"), user_id=100 + n)
        for n, outcome in enumerate(OUTCOMES)
    }

    async def outage_then_recovery():
        await degraded.run(*requests.values(), cancel_generating={requests["cancelled"].interaction_id})
        return await degraded.replay()

    assert asyncio.run(outage_then_recovery()) == len(OUTCOMES)
    for name, request in requests.items():
        assert_recorded_as(BY_NAME[name], VideoRequest.objects.get(interaction_id=request.interaction_id))
    assert JournalQuarantine.objects.count() == 0


def _as_the_previous_version_wrote_it(path: Path, interaction_id: int) -> None:
    """Its ending step with the null safety-filter fields the bot used to journal."""
    lines = []
    for line in path.read_bytes().splitlines(keepends=True):
        entry = json.loads(line)
        ending = entry["kind"] == "step" and entry["step"].get("status") == "failed"
        if ending and entry["interaction_id"] == interaction_id:
            entry["step"].update(safety_filtered_count=None, safety_filtered_reasons=None)
            line = json.dumps(entry).encode() + b"\n"
        lines.append(line)
    path.write_bytes(b"".join(lines))


def _function(path: Path) -> str:
    """The CREATE OR REPLACE FUNCTION replay_video_request statement of a migration file."""
    text = path.read_text()
    start = text.index("CREATE OR REPLACE FUNCTION replay_video_request")
    return text[start : text.index("$$;", text.index("BEGIN", start)) + 3]


def _latest_function() -> str:
    """replay_video_request as the newest migration that defines it leaves it: what a test that
    put an older one back must restore (the test database outlives the test)."""
    newest = max(
        path
        for path in MIGRATIONS.glob("[0-9]*.sql")
        if not path.name.endswith(".down.sql") and "FUNCTION replay_video_request" in path.read_text()
    )
    return _function(newest)


def test_an_unreplayable_entry_is_quarantined_and_retried_after_the_fix(veo, tmp_path, capsys):
    """The outage that lost requests: the bot journaled a failed generation's ending with
    "safety_filtered_reasons": null, replay_video_request as it was before 0013 raised on it, and
    every pass gave up on it and on every entry after it, forever. Replayed by that function, the
    entry is now quarantined and the others land; once the function is fixed, a retry lands it."""
    degraded = Degraded(tmp_path / "journal", tmp_path / "media")
    first, failed, last = (
        degraded.request(BY_NAME[name].prompt(f"a heron, {name}"), user_id=200 + n)
        for n, name in enumerate(["completed", "operation_failed", "completed"])
    )
    asyncio.run(degraded.run(first, failed, last))
    _as_the_previous_version_wrote_it(degraded.journal.path, failed.interaction_id)
    with connection.cursor() as cursor:
        cursor.execute(_function(MIGRATIONS / "0013_journal_quarantine.down.sql"))  # the bug is back
    try:
        assert asyncio.run(degraded.replay()) == 2
    finally:
        with connection.cursor() as cursor:
            cursor.execute(_latest_function())  # the fix, as it stands now
    landed = set(VideoRequest.objects.values_list("interaction_id", flat=True))
    assert landed == {first.interaction_id, last.interaction_id}  # the one after the bad entry too
    assert not degraded.journal.path.exists()  # nothing left behind: in the database or in quarantine
    [report] = JournalQuarantine.objects.all()
    assert (report.interaction_id, report.user_id, report.kind) == (failed.interaction_id, 201, "request")
    assert "cannot extract elements from a scalar" in report.error and report.resolved_at is None
    [kept] = journal_module.quarantined(tmp_path / "journal")
    assert kept.key == report.entry_key and kept.entry["steps"][-1]["delivered"] is True

    health = Client().get("/healthz").json()
    assert health["journal"] == {"quarantined": 1} and "journal: 1 quarantined" in health["warnings"][0]

    out = io.StringIO()
    call_command("replay_journal", stdout=out)
    assert re.search(
        rf"{re.escape(kept.key)}: request of interaction {failed.interaction_id}, quarantined .*"
        r"cannot extract elements from a scalar",
        out.getvalue(),
    )
    call_command("replay_journal", "--retry", stdout=out)
    assert f"{kept.key}: replayed" in out.getvalue()
    assert_recorded_as(BY_NAME["operation_failed"], VideoRequest.objects.get(interaction_id=failed.interaction_id))
    report.refresh_from_db()
    assert (report.resolution, report.resolved_by) == ("replayed", "replay_journal")
    assert journal_module.quarantined(tmp_path / "journal") == []
    assert Client().get("/healthz").json()["journal"] == {"quarantined": 0}


def test_lines_that_are_not_entries_are_kept_aside_and_the_rest_lands(tmp_path):
    """A journal left by a dead process, with garbage, a step whose request is missing and a request the
    database refuses among good requests: the good ones land, the others are quarantined, byte for byte."""
    directory = tmp_path / "journal"
    directory.mkdir()
    good = [journal_request(_request(user_id=300 + n)) for n in range(2)]
    refused = {**journal_request(_request(user_id=302)), "duration_seconds": 5}  # no such length: a CHECK refuses it
    garbage, orphan_step = b"\x00\xff not json at all\n", {"kind": "step", "interaction_id": 1, "step": {}}
    lines = [
        json.dumps({"kind": "request", "interaction_id": good[0]["interaction_id"], "request": good[0]}).encode()
        + b"\n",
        garbage,
        json.dumps(orphan_step).encode() + b"\n",
        json.dumps({"kind": "request", "interaction_id": refused["interaction_id"], "request": refused}).encode()
        + b"\n",
        json.dumps({"kind": "request", "interaction_id": good[1]["interaction_id"], "request": good[1]}).encode()
        + b"\n",
    ]
    (directory / "deadhost-1-abc.jsonl").write_bytes(b"".join(lines))

    replayer = JournalReplayer(journal=Journal(directory), under_way=set, health=DatabaseHealth())
    assert asyncio.run(replayer.replay()) == 2
    assert set(VideoRequest.objects.values_list("user_id", flat=True)) == {300, 301}
    assert not (directory / "deadhost-1-abc.jsonl").exists()
    kept = {
        entry.entry.get("line") or entry.entry["interaction_id"]: entry
        for entry in journal_module.quarantined(directory)
    }
    assert set(kept) == {2, 3, refused["interaction_id"]}
    assert base64.b64decode(kept[2].entry["raw_base64"]) == garbage
    assert "a step whose request is not in the file" in kept[3].entry["error"]
    assert "video_requests_duration_check" in kept[refused["interaction_id"]].entry["error"]
    assert JournalQuarantine.objects.filter(resolved_at__isnull=True).count() == 3

    out = io.StringIO()
    with pytest.raises(CommandError, match="3 of 3 entries could not be replayed"):
        call_command("replay_journal", "--retry", stdout=out)
    assert "an unreadable line cannot be replayed" in out.getvalue()
    call_command("replay_journal", "--discard", kept[2].key, stdout=out)
    assert f"{kept[2].key}: discarded" in out.getvalue()
    assert JournalQuarantine.objects.get(entry_key=kept[2].key).resolution == "discarded"
    assert len(journal_module.quarantined(directory)) == 2


def _request(*, user_id: int):
    return Degraded.request(f"a heron for user {user_id}", user_id=user_id)


def test_a_run_that_ends_during_a_pass_is_written_whole_in_a_later_one(tmp_path):
    """It was read while still generating; written from that read, the worker would have taken
    the delivered request for unfinished and delivered it again."""
    journal = Journal(tmp_path / "journal")
    steps = {
        "generating": {"status": Status.GENERATING, "operation_name": "operations/1"},
        "completed": {
            "status": Status.COMPLETED,
            "output_uris": ["file:1.mp4"],
            "public_urls": [],
            "output_size_bytes": 10,
        },
        "delivered": {"delivered": True, "method": "interaction", "message_id": 99, "error": None},
    }
    one, two = _request(user_id=7), _request(user_id=8)

    def journaled(request, *names):
        if not names or names[0] == "generating":
            journal.append(
                {"kind": "request", "interaction_id": request.interaction_id, "request": journal_request(request)}
            )
        for name in names:
            journal.append(
                {
                    "kind": "step",
                    "interaction_id": request.interaction_id,
                    "step": {"at": timezone.now().isoformat(), **steps[name]},
                }
            )

    journaled(one, "generating", "completed", "delivered")  # ended before the pass
    journaled(two, "generating")  # still running when the pass begins ...
    under_way = {two.interaction_id}

    def two_ends(interaction_id: int) -> None:  # ... and ends while request one is written
        if interaction_id == one.interaction_id:
            journaled(two, "completed", "delivered")
            under_way.discard(two.interaction_id)

    replayer = JournalReplayer(
        journal=journal, under_way=lambda: set(under_way), health=DatabaseHealth(), written=two_ends
    )

    async def passes():
        return await replayer.replay(), await replayer.replay()

    assert asyncio.run(passes()) == (1, 1)
    second = VideoRequest.objects.get(interaction_id=two.interaction_id)
    assert (second.status, second.delivery_method) == (Status.COMPLETED, "interaction")
    assert not journal.path.exists()  # everything replayed: the journal is discarded


def test_what_is_written_ahead_leaves_no_file_once_recorded_and_a_file_when_killed(tmp_path, monkeypatch):
    """A live worker never reads its write-ahead back: a full file gives way to a new one and goes
    once everything in it is recorded; a clean stop removes what is all recorded; what a stopped
    process had not recorded stays, for replay."""
    monkeypatch.setattr(journal_module.WriteAhead, "LINES_PER_FILE", 2)
    ahead = journal_module.WriteAhead(tmp_path)

    def start(n: int):
        return ahead.write(
            {
                "kind": "started",
                "interaction_id": n,
                "request_id": n,
                "operation_name": f"op/{n}",
                "at": timezone.now().isoformat(),
            }
        )

    files = lambda: sorted(path.name for path in tmp_path.glob("*.ahead.jsonl"))  # noqa: E731
    one, two = start(1), start(2)
    assert one is two and files() == [one.path.name]
    three = start(3)  # the first file is full: a new one
    assert three is not one and len(files()) == 2
    ahead.recorded(one)
    assert len(files()) == 2  # start 2 is not recorded yet
    ahead.recorded(two)
    assert files() == [three.path.name]  # the full file went with its last entry
    ahead.recorded(three)
    assert files() == [three.path.name]  # the current file stays while the process lives
    left = start(4)
    assert left is three
    ahead.close()  # stopped with start 4 unrecorded: its file stays, for whoever replays it
    assert files() == [left.path.name]
    entries = journal_module.read(left.path).ahead  # replay records 4; 3 is recorded already (a no-op)
    assert [(e.kind, e.request_id, e.facts) for e in entries] == [
        ("started", 3, {"operation_name": "op/3"}),
        ("started", 4, {"operation_name": "op/4"}),
    ]
    assert journal_module.degraded_journals(tmp_path) == []  # not taken for degraded mode's journal


def test_the_requester_cancels_a_request_degraded_mode_has_not_started_yet(veo, tmp_path, settings):
    # One slot: the first request generates (slowly), the second waits for the slot; its
    # requester's Cancel (discordbot.buttons.cancel, as a click runs it) ends it here, refunded.
    settings.VEO_WORKER_SLOTS = 1
    degraded = Degraded(tmp_path / "journal", tmp_path / "media")
    running = degraded.request("a slow fox [scenario:slow seconds=1.5]")
    waiting = degraded.request("a red fox waiting for the slot")
    health = DatabaseHealth()
    health.failed(ConnectionError("the database is away in this test"))

    async def scenario():
        run = asyncio.create_task(degraded.run(running, waiting))
        while degraded.runner.runs.get(running.interaction_id) is None or running.status != Status.GENERATING:
            await asyncio.sleep(0.02)
        answers = [
            await buttons.cancel(waiting.interaction_id, user_id=8, health=health, runner=degraded.runner),
            await buttons.cancel(running.interaction_id, user_id=7, health=health, runner=degraded.runner),
            await buttons.cancel(waiting.interaction_id, user_id=7, health=health, runner=degraded.runner),
        ]
        await run
        return answers

    answers = asyncio.run(scenario())

    assert answers == [
        "Only the person who asked for this video can cancel it.",
        "Veo has already started this video, so it can no longer be cancelled (Veo bills it from the start).",
        "Cancelled. Nothing was charged: your quota slot is back.",
    ]
    assert asyncio.run(degraded.replay()) == 2
    rows = {row.prompt: row for row in VideoRequest.objects.all()}
    cancelled, completed = rows[waiting.prompt], rows[running.prompt]
    assert (cancelled.status, cancelled.counts_toward_quota, cancelled.error_message) == (
        "cancelled",
        False,
        buttons.REQUESTER_CANCELLED,
    )
    assert not cancelled.operation_name and completed.status == "completed"
    assert [create.prompt for create in veo.creates()] == [running.prompt]  # the cancelled one never reached Veo


def test_inputs_and_lineage_journaled_in_an_outage_replay_with_the_request(veo, tmp_path, settings):
    media = tmp_path / "media"
    (media / "inputs").mkdir(parents=True)
    (media / "inputs" / "1-image.png").write_bytes(first := png(4, 4))
    (media / "inputs" / "1-last_frame.png").write_bytes(last := png(5, 5))
    parent, erased = VideoRequestFactory(), VideoRequestFactory()
    degraded = Degraded(tmp_path / "journal", media)
    framed = degraded.request("a heron takes off")
    framed.image_uri, framed.last_frame_uri = "file:inputs/1-image.png", "file:inputs/1-last_frame.png"
    framed.parent_id, framed.derived_as = parent.id, "edit"
    orphan = degraded.request("a heron lands", user_id=8)
    orphan.parent_id, orphan.derived_as = erased.id, "reroll"

    async def outage_then_recovery():
        await degraded.run(framed, orphan)
        # Erased while the outage lasted.
        await asyncio.to_thread(lambda: VideoRequest.objects.filter(id=erased.id).delete())
        return await degraded.replay()

    assert asyncio.run(outage_then_recovery()) == 2
    row = VideoRequest.objects.get(interaction_id=framed.interaction_id)
    assert (row.image_uri, row.last_frame_uri, row.parent_id, row.derived_as, row.status) == (
        "file:inputs/1-image.png",
        "file:inputs/1-last_frame.png",
        parent.id,
        "edit",
        "completed",
    )
    [create] = veo.creates("a heron takes off")
    assert (create.image_bytes, create.last_frame_bytes) == (first, last)  # the outage run sent them
    gone = VideoRequest.objects.get(interaction_id=orphan.interaction_id)
    assert (gone.parent_id, gone.derived_as) == (None, "reroll")  # how it was made, from a parent now gone
    assert JournalQuarantine.objects.count() == 0
