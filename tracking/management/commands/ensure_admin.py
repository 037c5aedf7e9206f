"""manage.py ensure_admin: make sure a local superuser exists for the admin panel.

Uses ADMIN_USERNAME / ADMIN_PASSWORD when set. Otherwise creates 'admin' with a random
password and prints it once; later runs leave the account alone.
"""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the local admin account if it does not exist (credentials from env or printed once)."

    def handle(self, *args, **options):
        from veosite.config import env

        username = env.ENVIRON.get("ADMIN_USERNAME", "admin")
        password = env.ENVIRON.get("ADMIN_PASSWORD", "")
        users = get_user_model()
        if users.objects.filter(username=username).exists():
            self.stdout.write(f"admin account '{username}' already exists")
            return
        shown = not password
        password = password or secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        if shown:
            self.stdout.write(
                self.style.SUCCESS(
                    f"created admin account '{username}' with password: {password}\n"
                    "(shown once; change it in the admin, or set ADMIN_USERNAME/ADMIN_PASSWORD before the first run)"
                )
            )
        else:
            self.stdout.write(f"created admin account '{username}' (password from ADMIN_PASSWORD)")
