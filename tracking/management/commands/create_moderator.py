"""manage.py create_moderator NAME: a staff account in the Moderators group.

It also (re)creates the Moderators group with its permissions if needed. The password is
read from MODERATOR_PASSWORD, or asked for interactively, or (with
--random) generated and printed once. Running it again for an existing account adds it to
the group and leaves its password alone.
"""

import getpass
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tracking.roles import ensure_moderators_group


class Command(BaseCommand):
    help = "Create a moderator account (staff, in the Moderators group)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--random", action="store_true", help="generate a password and print it once")

    def handle(self, *args, username, email, random, **options):
        import os

        group = ensure_moderators_group()
        users = get_user_model()
        user = users.objects.filter(username=username).first()
        shown = None
        if user is None:
            password = os.environ.get("MODERATOR_PASSWORD", "")
            if not password and random:
                password = shown = secrets.token_urlsafe(12)
            elif not password:
                password = getpass.getpass(f"Password for {username}: ")
            user = users(username=username, email=email, is_staff=True)
            try:
                validate_password(password, user)
            except ValidationError as error:
                raise CommandError("password refused: " + " ".join(error.messages)) from None
            user.set_password(password)
            user.save()
            verb = "created"
        else:
            if not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
            verb = "updated"
        user.groups.add(group)
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} moderator '{username}'" + (f" with password: {shown} (shown once)" if shown else "")
            )
        )
