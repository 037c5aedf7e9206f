"""manage.py migrate: Django's, on the server itself when DATABASE_URL goes through PgBouncer.

Migrations are DDL in long transactions: like migrate_sql they go to DATABASE_DIRECT_URL when it
is set. The default database itself is rerouted for the command (tracking.routes), not another
alias chosen: the data migrations query the default database inside the schema editor's
transaction, and on another connection they would not see its uncommitted rows.
"""

from django.core.management.commands import migrate
from django.db import DEFAULT_DB_ALIAS

from tracking.routes import directly


class Command(migrate.Command):
    def handle(self, *args, **options):
        if options["database"] != DEFAULT_DB_ALIAS:
            return super().handle(*args, **options)
        with directly():
            return super().handle(*args, **options)
