"""manage.py replay_journal: list, retry or discard the journal entries that could not be replayed.

Degraded mode quarantines a journal entry the database refused (generation.replay), beside the
journal in VEO_JOURNAL_DIR/quarantine/, and reports it in the database (/healthz counts it,
the admin lists it). Once the cause is fixed (a migration, say), --retry replays it.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation import journal
from generation.replay import discard_quarantined, retry_quarantined

ACTOR = "replay_journal"


class Command(BaseCommand):
    help = "List the journal entries quarantined on this machine; --retry replays them, --discard gives one up."

    def add_arguments(self, parser):
        parser.add_argument("keys", nargs="*", help="entries to act on (default with --retry: all of them)")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--retry", action="store_true", help="replay the entries again")
        action.add_argument(
            "--discard", action="store_true", help="give the named entries up (their record in the database keeps them)"
        )

    def handle(self, *args, keys: list[str], retry: bool, discard: bool, **options):
        kept = journal.quarantined(settings.VEO_JOURNAL_DIR)
        unknown = set(keys) - {entry.key for entry in kept}
        if unknown:
            raise CommandError(f"no quarantined entry {', '.join(sorted(unknown))} in {settings.VEO_JOURNAL_DIR}")
        chosen = [entry for entry in kept if not keys or entry.key in keys]
        if discard:
            if not keys:
                raise CommandError("--discard needs the keys of the entries to give up (see the list)")
            for entry in chosen:
                discard_quarantined(entry, actor=ACTOR)
                self.stdout.write(f"{entry.key}: discarded (kept in the database's journal_quarantine)")
            return
        if not chosen:
            self.stdout.write(f"nothing quarantined in {settings.VEO_JOURNAL_DIR}")
            return
        failed = 0
        for entry in chosen:
            if not retry:
                self.stdout.write(_describe(entry))
                continue
            problem = retry_quarantined(entry, actor=ACTOR)
            failed += problem is not None
            self.stdout.write(f"{entry.key}: " + ("replayed" if problem is None else f"still refused: {problem}"))
        if failed:
            raise CommandError(f"{failed} of {len(chosen)} entries could not be replayed")


def _describe(entry: journal.Quarantined) -> str:
    what = (
        f"request of interaction {entry.entry.get('interaction_id')}"
        if entry.replayable
        else f"line {entry.entry.get('line')} of {entry.entry.get('source')}"
    )
    return f"{entry.key}: {what}, quarantined {entry.entry.get('quarantined_at')}: {entry.entry.get('error')}"
