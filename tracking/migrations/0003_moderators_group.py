"""The Moderators group: view everything, moderate requests, manage bans, quota policies
and blocked terms; never delete rows, edit request facts (the database refuses that
anyway) or manage users. Superusers have every permission."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Moderators"  # frozen copy of tracking.roles, as migrations must not import app code
PERMISSIONS = [
    ("videorequest", ("view", "change")),  # change = the moderation actions; facts stay read-only
    ("videorequestevent", ("view",)),
    ("userban", ("view", "add", "change")),
    ("quotapolicy", ("view", "add", "change")),
    ("blockedterm", ("view", "add", "change")),
    ("discordaction", ("view",)),
]


def create_group(apps, schema_editor):
    # Permissions are normally created after all migrations (post_migrate); make sure they
    # exist now so that a fresh database gets a complete group.
    config = apps.get_app_config("tracking")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
    config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    group, _ = group_model.objects.get_or_create(name=GROUP)
    codenames = [f"{action}_{model}" for model, actions in PERMISSIONS for action in actions]
    group.permissions.set(permission_model.objects.filter(content_type__app_label="tracking",
                                                          codename__in=codenames))


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0002_moderation_models"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]
