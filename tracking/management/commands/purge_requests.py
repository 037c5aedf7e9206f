"""manage.py purge_requests: delete finished requests older than REQUEST_RETENTION_DAYS.

Their events and local videos go with them, in batches of --batch rows, each its own short
transaction. Requests in flight are never touched, nor anything inside a quota window.
--dry-run only counts. Each run is recorded in data_lifecycle_audit.
"""

import getpass

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tracking import lifecycle
from tracking.errors import InvalidInput


class Command(BaseCommand):
    help = "Delete finished requests older than REQUEST_RETENTION_DAYS, with their events and outputs."

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=500, help="rows per transaction (default 500)")
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="retention in days for this run (default REQUEST_RETENTION_DAYS; 0 keeps all)",
        )
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
        parser.add_argument("--actor", default=None, help="who runs it, for the audit (default: the OS user)")

    def handle(self, *args, batch, days, dry_run, actor, **options):
        days = settings.REQUEST_RETENTION_DAYS if days is None else days
        if days < 0:
            raise CommandError("--days must be 0 (keep everything) or more")
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        cutoff = lifecycle.purge_cutoff(retention_days=days)
        if cutoff is None:
            self.stdout.write("retention is 0 (keep forever): nothing to purge")
            return
        since = f"finished requests created before {cutoff:%Y-%m-%d %H:%M} UTC"
        if dry_run:
            found = lifecycle.count_purgeable(cutoff=cutoff)
            self.stdout.write(
                f"dry run: would delete {found['requests']} {since}, with {found['events']} events, "
                f"{found['local_files']} local files and {found['gcs_objects']} gs:// objects"
            )
            return
        try:
            deleted = lifecycle.purge_requests(
                cutoff=cutoff,
                batch=batch,
                actor=actor or getpass.getuser(),
                progress=lambda so_far: self.stdout.write(f"  ... {so_far.requests} requests deleted"),
            )
        except InvalidInput as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"deleted {deleted.requests} {since}, with {deleted.events} events and {deleted.local_files} local files"
        )
        for line in lifecycle.gcs_report(deleted):
            self.stdout.write(line)
