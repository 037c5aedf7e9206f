"""manage.py erase_user ID --yes: erase one Discord user's data (a data-subject request).

Deletes their requests, events, outbox rows, quota policies, lifted or expired bans and
local videos in one transaction, recorded in data_lifecycle_audit under a keyed hash of the
id. Bans in force are kept. Refused while a request of theirs is in flight, and without --yes.
"""

import getpass

from django.core.management.base import BaseCommand, CommandError

from tracking import lifecycle
from tracking.errors import InvalidInput
from tracking.models import DataLifecycleAudit


class Command(BaseCommand):
    help = "Erase everything kept about one Discord user (requests, events, outputs, policies, old bans)."

    def add_arguments(self, parser):
        parser.add_argument("user_id", type=int, help="the Discord user id")
        parser.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
        parser.add_argument(
            "--check", action="store_true", help="only say whether (and when) this user was erased before"
        )
        parser.add_argument("--actor", default=None, help="who runs it, for the audit (default: the OS user)")

    def handle(self, *args, user_id, yes, check, actor, **options):
        if check:
            records = DataLifecycleAudit.objects.filter(subject_key=lifecycle.subject_key(user_id))
            for record in records:
                self.stdout.write(
                    f"erased on {record.started_at:%Y-%m-%d %H:%M} UTC by {record.actor} "
                    f"({record.outcome}): {record.counts}"
                )
            if not records:
                self.stdout.write(f"no erasure of user {user_id} is recorded")
            return
        if not yes:
            raise CommandError(
                f"this deletes every request, video and record of user {user_id} and cannot be "
                "undone; run again with --yes to confirm"
            )
        try:
            erasure = lifecycle.erase_user(user_id=user_id, actor=actor or getpass.getuser())
        except InvalidInput as error:
            raise CommandError(str(error)) from None
        deleted = erasure.deleted
        self.stdout.write(
            f"erased user {user_id}: {deleted.requests} requests, {deleted.events} events, "
            f"{deleted.local_files} local files, {erasure.quota_policies} quota policies, "
            f"{erasure.bans_deleted} old bans (audit record {erasure.audit_id})"
        )
        if erasure.bans_kept:
            self.stdout.write(
                f"kept {erasure.bans_kept} ban(s) in force: lift them in the admin, then erase again, "
                "if they must go too"
            )
        for line in lifecycle.gcs_report(deleted):
            self.stdout.write(line)
