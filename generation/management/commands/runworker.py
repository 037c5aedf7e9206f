"""manage.py runworker: a generation worker without the Discord gateway."""

from django.conf import settings
from django.core.management.base import BaseCommand

from generation.delivery import CliDelivery
from generation.health import DatabaseHealth
from generation.outbox import Outbox
from generation.runtime import run_until_signalled
from generation.veo import configured_backend
from generation.worker import serve_standalone, standalone_worker


class Command(BaseCommand):
    help = "Claim queued video requests from PostgreSQL and run them through Veo until SIGTERM/SIGINT."

    def add_arguments(self, parser):
        parser.add_argument("--slots", type=int, help="requests handled at once by this process (VEO_WORKER_SLOTS)")

    def handle(self, *args, slots: int | None, **options):
        health = DatabaseHealth()
        worker = standalone_worker(
            backend=configured_backend(),
            deliveries={"cli": CliDelivery()},
            health=health,
            slots=slots,
            journal_dir=settings.VEO_JOURNAL_DIR,  # each Veo start is written there first (generation.stores)
        )
        # No bot token here, but the bucket credentials are: the moderators' removals of gs://
        # outputs are carried out by whichever process holds them.
        outbox = Outbox(health=health)
        run_until_signalled(
            lambda stop: serve_standalone(worker, stop, journal_dir=settings.VEO_JOURNAL_DIR, chores=[outbox.run])
        )
