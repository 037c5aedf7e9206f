"""Prices of Veo generations, as dated history (migrations_sql/0020_costs_budgets_roles.sql)."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class PriceResolution(models.TextChoices):
    HD = "720p", "720p"
    FULL_HD = "1080p", "1080p"
    UHD = "4k", "4k"


class VeoPrice(models.Model):
    """USD per second of video. Never edited: a change is a new row with a later effective_from,
    and each request is priced by the row in effect at its created_at (the database refuses
    updates, and deletes of rows already in effect)."""

    id = models.BigAutoField(primary_key=True)
    model = models.TextField(help_text="The Veo model id, as requests record it (e.g. veo-3.1-generate-001).")
    resolution = models.TextField(choices=PriceResolution.choices)
    generate_audio = models.BooleanField(help_text="The price with audio (checked) or without.")
    usd_per_second = models.DecimalField(max_digits=10, decimal_places=4, help_text="USD per second of video.")
    effective_from = models.DateTimeField(help_text="Requests made from this moment on pay this price.")
    source = models.TextField(help_text="Where the price comes from (a pricing page and the date it was read).")
    created_by = models.TextField(db_default="system")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "veo_prices"
        ordering = ("model", "resolution", "-generate_audio", "-effective_from")

    def __str__(self) -> str:
        audio = "with audio" if self.generate_audio else "without audio"
        return f"{self.model} {self.resolution} {audio}: ${self.usd_per_second}/s from {self.effective_from:%Y-%m-%d}"


class OperatorSpendHour(models.Model):
    """The operator's ledger: estimated cost of the requests that count, per UTC hour of their
    creation and shard (operator_spend_shard(user_id)). Written only by the database's triggers; read by the
    operator's daily cap (spend_in_window) and for spend over time."""

    pk = models.CompositePrimaryKey("hour", "shard")
    hour = models.DateTimeField()
    shard = models.SmallIntegerField()
    usd = models.DecimalField(max_digits=14, decimal_places=4)

    class Meta:
        managed = False
        db_table = "operator_spend_hours"


class GuildSpendLedger(models.Model):
    """A guild's ledger: estimated cost of its requests that count, per UTC hour (hours=1) and
    per UTC day (hours=24) of their creation. Written only by the database's triggers; read by
    guild budgets (guild_spend_since)."""

    pk = models.CompositePrimaryKey("guild_id", "hours", "starts")
    guild_id = models.BigIntegerField()
    hours = models.SmallIntegerField()
    starts = models.DateTimeField()
    usd = models.DecimalField(max_digits=14, decimal_places=4)

    class Meta:
        managed = False
        db_table = "guild_spend_ledger"


class OperatorSpendAllowance(models.Model):
    """The operator's daily cap split per shard of the operator's ledger: admissions of a shard
    may spend up to its allowance; allowances add up to cap_usd. Written only by admission."""

    shard = models.SmallIntegerField(primary_key=True)
    cap_usd = models.DecimalField(max_digits=14, decimal_places=4, null=True)
    usd = models.DecimalField(max_digits=20, decimal_places=6)
    # This shard's spend in the 24 hours before closed_until, counted once an hour by admission.
    closed_until = models.DateTimeField(null=True)
    closed_usd = models.DecimalField(max_digits=20, decimal_places=6)

    class Meta:
        managed = False
        db_table = "operator_spend_allowances"
