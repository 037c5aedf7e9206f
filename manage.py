#!/usr/bin/env python
"""Django's command-line utility for veobot."""

import os
import sys

# The commands that serve (and keep a pool of database connections); every other one is one-shot.
SERVING = {"runbot", "runworker", "runserver"}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veosite.settings")
    if sys.argv[1:2] and sys.argv[1] not in SERVING:
        os.environ["VEOBOT_ONE_SHOT"] = "1"
    from django.core.management import execute_from_command_line
    from django.db import OperationalError as DjangoOperationalError
    from psycopg import OperationalError

    from veosite.config import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as error:
        # One line naming the variable, not a traceback.
        print(f"veobot: configuration error: {error}", file=sys.stderr)
        sys.exit(2)
    except (OperationalError, DjangoOperationalError) as error:
        from tracking.health import database_location

        # The first line of PostgreSQL's message (a one-shot command keeps no pool that would
        # replace it with its own); it does not carry the password.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        # The migrations reach the server itself (DATABASE_DIRECT_URL), the rest DATABASE_URL.
        alias = "direct" if sys.argv[1:2] in (["migrate"], ["migrate_sql"], ["dump_schema"]) else "default"
        print(f"veobot: the database at {database_location(alias)} is unreachable: {reason}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
