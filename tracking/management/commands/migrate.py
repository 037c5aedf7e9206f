"""manage.py migrate: Django's, on the "direct" database by default.

Migrations are DDL in long transactions: they go to the server itself (DATABASE_DIRECT_URL when
DATABASE_URL goes through a transaction-pooling PgBouncer), like migrate_sql. Without a direct
URL the two databases are the same server; ``--database`` still chooses.
"""

from django.core.management.commands import migrate

from tracking.sql_migrations import DIRECT_DB_ALIAS


class Command(migrate.Command):
    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.set_defaults(database=DIRECT_DB_ALIAS)
