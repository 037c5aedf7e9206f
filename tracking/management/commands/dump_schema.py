"""manage.py dump_schema: rewrite migrations_sql/schema.sql from a scratch database (`make schema`)."""

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from tracking.schema_dump import SCHEMA_FILE, SchemaDumpError, generate
from tracking.sql_migrations import DIRECT_DB_ALIAS, MigrationError


class Command(BaseCommand):
    help = (
        "Apply every migrations_sql/ file to a scratch database on the configured server, dump its schema "
        "and write it to migrations_sql/schema.sql."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--database",
            default=DIRECT_DB_ALIAS,
            help="the server to use (a scratch database is created and dropped there)",
        )

    def handle(self, *args, database: str, **options):
        try:
            text = generate(server=connections[database].settings_dict)
        except (MigrationError, SchemaDumpError) as error:
            raise CommandError(str(error)) from None
        SCHEMA_FILE.write_text(text)
        self.stdout.write(f"wrote {SCHEMA_FILE.parent.name}/{SCHEMA_FILE.name} ({text.count(chr(10))} lines)")
