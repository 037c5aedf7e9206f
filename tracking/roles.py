"""Who may do what in the panel. The Moderators group is created by a data migration
(the squashed tracking migration keeps a frozen copy of this list) and repaired by
manage.py create_moderator, so a moderator account can always be made."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

MODERATORS = "Moderators"
MODERATOR_PERMISSIONS = {
    "videorequest": ("view", "change"),  # change = the moderation actions; facts stay read-only
    "videorequestevent": ("view",),
    "userban": ("view", "add", "change"),
    # Changing policies is the operator's (granted per account when wanted); viewing them also
    # shows the dashboard's spend and budgets.
    "quotapolicy": ("view",),
    "blockedterm": ("view", "add", "change"),
    "discordaction": ("view",),
    "report": ("view",),
    "reviewitem": ("view", "change"),  # change = claim, resolve, reopen, note
    "reviewnote": ("view",),
    "appeal": ("view",),
    "usernotice": ("view",),
    "moderationlogentry": ("view",),
}


def ensure_moderators_group() -> Group:
    """The Moderators group with exactly its permissions (none to delete, none on users)."""
    group, _ = Group.objects.get_or_create(name=MODERATORS)
    codenames = [f"{action}_{model}" for model, actions in MODERATOR_PERMISSIONS.items() for action in actions]
    group.permissions.set(Permission.objects.filter(content_type__app_label="tracking", codename__in=codenames))
    return group
