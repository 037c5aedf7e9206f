"""Django's view of the tracking tables, and the Moderators group: one migration in place of seven.

The tables themselves come from migrations_sql/ (every model here is unmanaged, so these
CreateModel operations touch no table); what this migration does to the database is create the
Moderators group. It replaces 0001_initial to 0006_lifecycle_models, which had grown two 0002s
and a merge. A database that applied all seven counts this one as applied (Django records it on
the next `migrate`, which changes nothing else); a new database runs it instead of them. Keep
`replaces` for as long as any database may still hold the old names in django_migrations.

A database that applied only some of the seven (deployed before 0006_lifecycle_models and never
migrated since) must first run `migrate` with a checkout that still has them. With the old files
gone, Django leaves a partly applied squash out of the graph: tracking shows no migrations, and the
Moderators group is missing if 0003_moderators_group never ran (manage.py create_moderator makes it).
"""

from django.contrib.auth.management import create_permissions
from django.contrib.postgres.fields import ArrayField
from django.db import migrations, models
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now

# The Moderators group as 0003_moderators_group made it: view everything, moderate requests,
# manage bans, quota policies and blocked terms; never delete rows, edit request facts (the
# database refuses that anyway) or manage users. A frozen copy of tracking.roles, as migrations
# must not import app code.
GROUP = "Moderators"
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
    group.permissions.set(permission_model.objects.filter(content_type__app_label="tracking", codename__in=codenames))


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


BLOCKED_TERM_MATCH_PATTERN = (
    "CASE WHEN kind = 'word' THEN '(^|[^[:alnum:]_])' || regexp_replace(pattern, '([.^$*+?()\\[\\]{}|\\\\-])', "
    "'\\\\\\1', 'g') || '($|[^[:alnum:]_])' ELSE pattern END"
)


class Migration(migrations.Migration):
    replaces = [
        ("tracking", "0001_initial"),
        ("tracking", "0002_moderation_models"),
        ("tracking", "0003_moderators_group"),
        ("tracking", "0002_veo_start_slots"),
        ("tracking", "0004_merge_0002_veo_start_slots_0003_moderators_group"),
        ("tracking", "0005_dashboard_snapshot"),
        ("tracking", "0006_lifecycle_models"),
    ]

    initial = True

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.CreateModel(
            name="QuotaPolicy",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "user_id",
                    models.BigIntegerField(
                        blank=True, help_text="Applies to this user (with guild: only there).", null=True
                    ),
                ),
                (
                    "guild_id",
                    models.BigIntegerField(blank=True, help_text="Applies to everyone in this guild.", null=True),
                ),
                ("quota_limit", models.IntegerField(help_text="Videos allowed per window.")),
                ("quota_window", models.DurationField(help_text="Rolling window, e.g. 1 00:00:00 for a day.")),
                (
                    "max_in_flight",
                    models.IntegerField(
                        blank=True, help_text="Queued or generating at once (blank: no cap).", null=True
                    ),
                ),
                ("note", models.TextField(blank=True, db_default="")),
                ("created_by", models.TextField(db_default="system")),
                ("created_at", models.DateTimeField(db_default=Now())),
                ("updated_at", models.DateTimeField(db_default=Now())),
            ],
            options={"verbose_name_plural": "quota policies", "db_table": "quota_policies", "managed": False},
        ),
        migrations.CreateModel(
            name="SchemaMigration",
            fields=[
                ("version", models.IntegerField(primary_key=True, serialize=False)),
                ("name", models.TextField()),
                ("checksum", models.TextField()),
                ("applied_at", models.DateTimeField(db_default=Now())),
            ],
            options={"db_table": "schema_migrations", "ordering": ["version"], "managed": False},
        ),
        migrations.CreateModel(
            name="UserBan",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("user_id", models.BigIntegerField()),
                ("guild_id", models.BigIntegerField(blank=True, help_text="Blank: banned everywhere.", null=True)),
                ("reason", models.TextField()),
                ("banned_by", models.TextField()),
                ("created_at", models.DateTimeField(db_default=Now())),
                ("expires_at", models.DateTimeField(blank=True, help_text="Blank: permanent.", null=True)),
                ("lifted_at", models.DateTimeField(blank=True, null=True)),
                ("lifted_by", models.TextField(blank=True, null=True)),
            ],
            options={"db_table": "user_bans", "managed": False},
        ),
        migrations.CreateModel(
            name="VideoRequest",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("source", models.TextField(choices=[("discord", "Discord"), ("cli", "Cli")], db_default="discord")),
                ("interaction_id", models.BigIntegerField(unique=True)),
                ("user_id", models.BigIntegerField()),
                ("guild_id", models.BigIntegerField(blank=True, null=True)),
                ("channel_id", models.BigIntegerField(blank=True, null=True)),
                ("prompt", models.TextField()),
                ("negative_prompt", models.TextField(blank=True, null=True)),
                ("duration_seconds", models.SmallIntegerField(choices=[(4, "4 s"), (6, "6 s"), (8, "8 s")])),
                ("aspect_ratio", models.TextField(choices=[("16:9", "16:9 (landscape)"), ("9:16", "9:16 (portrait)")])),
                ("resolution", models.TextField(choices=[("720p", "Hd"), ("1080p", "Full Hd")])),
                ("generate_audio", models.BooleanField(db_default=True)),
                (
                    "person_generation",
                    models.TextField(
                        choices=[("dont_allow", "No people"), ("allow_adult", "Adults only"), ("allow_all", "Anyone")],
                        db_default="allow_adult",
                    ),
                ),
                ("seed", models.BigIntegerField(blank=True, null=True)),
                ("model", models.TextField()),
                (
                    "status",
                    models.TextField(
                        choices=[
                            ("pending", "Pending"),
                            ("generating", "Generating"),
                            ("completed", "Completed"),
                            ("failed", "Failed"),
                            ("timeout", "Timeout"),
                            ("cancelled", "Cancelled"),
                            ("rejected", "Rejected"),
                        ]
                    ),
                ),
                ("operation_name", models.TextField(blank=True, null=True)),
                ("created_at", models.DateTimeField(db_default=Now())),
                ("available_at", models.DateTimeField(db_default=Now())),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("completed_at", models.DateTimeField(blank=True, null=True)),
                (
                    "duration_ms",
                    models.GeneratedField(
                        db_persist=True,
                        output_field=models.IntegerField(null=True),
                        expression=RawSQL("(extract(epoch FROM (completed_at - started_at)) * 1000)::integer", ()),
                    ),
                ),
                ("output_uris", ArrayField(base_field=models.TextField(), blank=True, db_default="{}", size=None)),
                ("public_urls", ArrayField(base_field=models.TextField(), blank=True, db_default="{}", size=None)),
                ("output_size_bytes", models.BigIntegerField(blank=True, null=True)),
                ("safety_filtered_count", models.IntegerField(db_default=0)),
                (
                    "safety_filtered_reasons",
                    ArrayField(base_field=models.TextField(), blank=True, db_default="{}", size=None),
                ),
                ("error_code", models.TextField(blank=True, null=True)),
                ("error_message", models.TextField(blank=True, null=True)),
                ("delivered_at", models.DateTimeField(blank=True, null=True)),
                (
                    "delivery_method",
                    models.TextField(
                        blank=True,
                        null=True,
                        choices=[
                            ("interaction", "Edited the interaction response"),
                            ("channel", "Posted in the channel"),
                            ("cli", "Printed by the CLI"),
                            ("undeliverable", "Could not be delivered"),
                        ],
                    ),
                ),
                ("discord_message_id", models.BigIntegerField(blank=True, null=True)),
                ("delivery_error", models.TextField(blank=True, null=True)),
                ("counts_toward_quota", models.BooleanField()),
                ("claimed_by", models.TextField(blank=True, null=True)),
                ("lease_expires_at", models.DateTimeField(blank=True, null=True)),
                ("attempts", models.IntegerField(db_default=0)),
                (
                    "review_status",
                    models.TextField(
                        choices=[
                            ("unreviewed", "Unreviewed"),
                            ("approved", "Approved"),
                            ("flagged", "Flagged"),
                            ("removed", "Removed"),
                        ],
                        db_default="unreviewed",
                    ),
                ),
                ("reviewed_by", models.TextField(blank=True, null=True)),
                ("reviewed_at", models.DateTimeField(blank=True, null=True)),
                ("review_note", models.TextField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "video request",
                "db_table": "video_requests",
                "ordering": ["-id"],
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="VideoRequestEvent",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("at", models.DateTimeField(db_default=Now())),
                (
                    "kind",
                    models.TextField(
                        choices=[
                            ("created", "Created"),
                            ("status_changed", "Status Changed"),
                            ("refunded", "Refunded"),
                            ("review_changed", "Review Changed"),
                            ("delivered", "Delivered"),
                            ("released", "Released"),
                            ("note", "Note"),
                        ]
                    ),
                ),
                ("from_status", models.TextField(blank=True, null=True)),
                ("to_status", models.TextField(blank=True, null=True)),
                ("actor", models.TextField(db_default="system")),
                ("detail", models.JSONField(db_default={})),
            ],
            options={"db_table": "video_request_events", "ordering": ["id"], "managed": False},
        ),
        migrations.CreateModel(
            name="BlockedTerm",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("guild_id", models.BigIntegerField(blank=True, help_text="Blank: blocked everywhere.", null=True)),
                (
                    "kind",
                    models.TextField(
                        choices=[("word", "Word or phrase"), ("regex", "Regular expression")],
                        db_default="word",
                        default="word",
                    ),
                ),
                (
                    "pattern",
                    models.TextField(
                        help_text=(
                            "A word or phrase (matched whole, any case), or a PostgreSQL regular expression (any case; "
                            "at most 200 characters, no back-references)."
                        )
                    ),
                ),
                (
                    "match_pattern",
                    models.GeneratedField(
                        db_persist=True,
                        expression=RawSQL(BLOCKED_TERM_MATCH_PATTERN, ()),
                        output_field=models.TextField(),
                    ),
                ),
                (
                    "message",
                    models.TextField(
                        blank=True,
                        db_default="",
                        default="",
                        help_text='Shown to the user after "prompt refused: " (blank: a standard message).',
                    ),
                ),
                ("enabled", models.BooleanField(db_default=True, default=True)),
                ("created_by", models.TextField(db_default="system")),
                ("created_at", models.DateTimeField(db_default=Now())),
            ],
            options={"db_table": "blocked_terms", "ordering": ["id"], "managed": False},
        ),
        migrations.CreateModel(
            name="DiscordAction",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("action", models.TextField(choices=[("delete_message", "Delete Message")])),
                ("channel_id", models.BigIntegerField()),
                ("message_id", models.BigIntegerField()),
                ("requested_by", models.TextField()),
                ("reason", models.TextField()),
                ("created_at", models.DateTimeField(db_default=Now())),
                ("done_at", models.DateTimeField(blank=True, null=True)),
                ("attempts", models.IntegerField(db_default=0)),
                ("last_error", models.TextField(blank=True, null=True)),
            ],
            options={"db_table": "discord_actions", "ordering": ["-id"], "managed": False},
        ),
        migrations.CreateModel(
            name="VeoStartSlot",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("worker", models.TextField()),
                ("granted_at", models.DateTimeField(db_default=Now())),
            ],
            options={"db_table": "veo_start_slots", "ordering": ["-id"], "managed": False},
        ),
        migrations.CreateModel(
            name="DashboardSnapshot",
            fields=[
                ("days", models.SmallIntegerField(primary_key=True, serialize=False)),
                ("until", models.DateTimeField()),
                ("computed_at", models.DateTimeField(db_default=Now())),
                ("compute_ms", models.IntegerField()),
                ("data", models.JSONField()),
            ],
            options={"db_table": "dashboard_snapshots", "managed": False},
        ),
        migrations.CreateModel(
            name="DataLifecycleAudit",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "operation",
                    models.TextField(
                        choices=[("purge_requests", "Retention purge"), ("erase_user", "Erasure of a user's data")]
                    ),
                ),
                ("actor", models.TextField()),
                (
                    "subject_key",
                    models.TextField(blank=True, help_text="Keyed hash of the erased user's id.", null=True),
                ),
                ("parameters", models.JSONField(db_default={})),
                ("counts", models.JSONField(db_default={})),
                ("started_at", models.DateTimeField(db_default=Now())),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "outcome",
                    models.TextField(
                        choices=[("running", "Running"), ("done", "Done"), ("interrupted", "Interrupted")],
                        db_default="running",
                    ),
                ),
            ],
            options={
                "verbose_name": "data lifecycle record",
                "db_table": "data_lifecycle_audit",
                "ordering": ["-id"],
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="LoginFailure",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("at", models.DateTimeField(db_default=Now())),
                ("username_key", models.TextField()),
                ("client_ip", models.TextField()),
            ],
            options={"db_table": "login_failures", "ordering": ["-id"], "managed": False},
        ),
        # After every model, so its permissions can be made; not elidable, so a later squash keeps it.
        migrations.RunPython(create_group, delete_group, elidable=False),
    ]
