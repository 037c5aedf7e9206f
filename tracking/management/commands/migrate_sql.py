"""manage.py migrate_sql: apply, list or roll back the SQL files in migrations_sql/."""

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from tracking.sql_migrations import DIRECT_DB_ALIAS, MigrationError, Runner


class Command(BaseCommand):
    help = "Apply pending migrations_sql/ files with psql (each in one transaction), --list them, or --down."

    def add_arguments(self, parser):
        parser.add_argument("--list", action="store_true", help="show applied and pending migrations")
        parser.add_argument("--down", action="store_true", help="roll back the newest applied migration")
        parser.add_argument(
            "--to",
            type=int,
            metavar="VERSION",
            help="with --down: roll back every migration newer than VERSION (0 = all)",
        )
        parser.add_argument("--database", default=DIRECT_DB_ALIAS)

    def handle(self, *args, list: bool, down: bool, to: int | None, database: str, **options):
        if to is not None and not down:
            raise CommandError("--to only makes sense with --down")
        runner = Runner(connections[database].settings_dict, log=lambda line: self.stdout.write(line))
        try:
            if list:
                self._print_status(runner)
            elif down:
                done = runner.rollback(to_version=to)
                self.stdout.write(f"rolled back {len(done)} migration(s)" + (": " + ", ".join(done) if done else ""))
            else:
                done = runner.migrate()
                self.stdout.write(f"applied {len(done)} migration(s)" if done else "schema is up to date")
        except MigrationError as error:
            raise CommandError(str(error)) from None

    def _print_status(self, runner: Runner) -> None:
        for state in runner.status():
            when = f"applied {state.applied_at:%Y-%m-%d %H:%M:%S}" if state.applied_at else "pending"
            problem = f"  !! {state.problem}" if state.problem else ""
            self.stdout.write(f"{state.label:<40} {when}{problem}")
