"""Building the bot: the one place where the client and its collaborators are made and joined.

As in discord.py's ``advanced_startup`` example, everything is built here and handed in: the
Discord delivery (which needs the client), the generation engine that delivers through it,
degraded mode (journal, local limiter, the runner of requests admitted during an outage, the
replay), admission, the worker, the moderators' outbox, the notices to users and the
announcements to moderators, and the commands.
"""

from __future__ import annotations

import asyncio

import discord
from django.conf import settings

from discordbot import buttons
from discordbot.animate import animate_menu
from discordbot.appeal import appeal_command
from discordbot.bot import VeoBot
from discordbot.buttons import cancel_button, delete_button, report_button
from discordbot.commands import veo_commands
from discordbot.derived import Deriver, derive_buttons
from discordbot.discord_delivery import DiscordDelivery
from discordbot.frames import FrameFetcher
from discordbot.modals import ModalRoutes
from discordbot.notices import Announcer, Notices
from discordbot.outbox import message_deleter
from generation import metrics
from generation.admission import Admitter, Decision
from generation.degraded import DegradedRunner, JournalStore
from generation.delivery import CliDelivery
from generation.engine import Engine
from generation.health import DatabaseHealth, watch_database
from generation.journal import Journal, WriteAhead
from generation.limiter import LocalLimiter
from generation.outbox import Outbox
from generation.replay import JournalReplayer
from generation.storage import LocalStorage, local_storage
from generation.veo import VeoBackend, configured_backend
from generation.worker import Worker
from tracking import capabilities
from tracking.models import Status, VideoRequest

MEANWHILE = (
    "/veo keeps working: admission from the in-process limiter, tracking to the journal in {journal}, "
    "replayed when the database returns"
)


def build_bot(
    *,
    backend: VeoBackend | None = None,
    storage: LocalStorage | None = None,
    run_worker: bool = True,
    worker_slots: int | None = None,
    worker_name: str | None = None,
) -> VeoBot:
    storage = storage or local_storage()
    backend = backend or configured_backend()
    bot = VeoBot()
    health = DatabaseHealth(meanwhile=MEANWHILE.format(journal=settings.VEO_JOURNAL_DIR))
    modals = ModalRoutes()  # forms answered by any process (discordbot.modals)
    delete, report = delete_button(health=health), report_button(health=health, modals=modals)

    def result_view(request: VideoRequest) -> discord.ui.View | None:
        # Only once recorded: an outcome delivered in degraded mode has no row to act on yet.
        if request.id is None:
            return None
        key = request.interaction_id
        again = [reroll(key), edit(key)]  # a failure is worth trying again too
        if request.status != Status.COMPLETED:
            return buttons.view_of(*again) if request.status in (Status.FAILED, Status.TIMEOUT) else None
        longer = [extend(key)] if capabilities.of(request.model).extension else []
        return buttons.view_of(*again, *longer, delete(key), report(key))

    delivery = DiscordDelivery(bot, storage=storage, result_view=result_view)
    engine = Engine(backend=backend, storage=storage, deliveries={"discord": delivery, "cli": CliDelivery()})
    limiter = LocalLimiter()
    journal = Journal(settings.VEO_JOURNAL_DIR)
    metrics.watch_journal(journal)
    runner = DegradedRunner(engine=engine, store=JournalStore(journal=journal, limiter=limiter))
    admitter = Admitter(health=health, limiter=limiter, runner=runner)
    # Each Veo start is written ahead to the journal folder before its record (generation.stores).
    ahead = WriteAhead(settings.VEO_JOURNAL_DIR)
    worker = Worker(engine=engine, health=health, slots=worker_slots, name=worker_name, ahead=ahead)
    replayer = JournalReplayer(
        journal=journal, under_way=lambda: runner.under_way, health=health, written=admitter.replayed
    )
    outbox = Outbox(performers=message_deleter(bot), health=health)

    async def probe_first() -> None:
        # Started during an outage, the bot would otherwise learn of it from the first call that
        # waits out the pool's connect timeout, with every early /veo waiting behind it.
        if not await asyncio.to_thread(health.probe):
            health.failed(ConnectionError("no answer to the start-up probe"))
        # What a killed process left, before the worker's first claim (as serve_standalone does).
        await replayer.replay()

    async def watch(stop: asyncio.Event) -> None:
        await watch_database(health, stop, every_pass=replayer.replay)

    # Moderators' decisions to users (by DM, else at their next command), new queue items to
    # the moderators' channel when there is one.
    notices = Notices(bot, health=health)
    bot.add_listener(notices.after_command, "on_app_command_completion")
    chores = [runner.run, watch, outbox.run, notices.run]
    if settings.MOD_CHANNEL_ID:
        chores.append(Announcer(bot, channel_id=settings.MOD_CHANNEL_ID, health=health).run)
    if run_worker:
        chores.append(worker.run)
    cancel = cancel_button(health=health, runner=runner)

    def queued_view(decision: Decision) -> discord.ui.View | None:
        # Not for a held request: until the database answers, nobody can say whether it runs.
        return (
            buttons.queued_view(cancel, interaction_id=decision.request.interaction_id) if not decision.held else None
        )

    deriver = Deriver(health=health, admitter=admitter, replies=delivery, queued_view=queued_view, storage=storage)
    reroll, edit, extend = derive_buttons(deriver, modals)

    frames = FrameFetcher(storage)
    bot.install(
        cog=veo_commands(admitter=admitter, replies=delivery, health=health, queued_view=queued_view, frames=frames),
        slash_commands=[appeal_command(health=health)],
        menus=[
            animate_menu(frames=frames, admitter=admitter, replies=delivery, queued_view=queued_view, modals=modals)
        ],
        items=[cancel, delete, report, reroll, edit, extend],
        modals=modals,
        chores=chores,
        closing=[journal.close, admitter.batches.close],
        starting=probe_first,
        description=f"backend {backend.label}" + ("" if run_worker else " (no worker in this process)"),
    )
    return bot
