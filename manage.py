#!/usr/bin/env python
"""Django's command-line utility for veobot."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veosite.settings")
    from django.core.management import execute_from_command_line

    from veosite.config import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as error:
        # One line naming the variable, not a traceback.
        print(f"veobot: configuration error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
