"""Veo prices in the panel: a history to add to, never to edit.

A price change is a new row whose "effective from" is now or later; requests made from that
moment are estimated at it, and earlier requests keep the cost recorded when they were admitted.
Past prices stay as they were (the database refuses updates, and deletes of prices in effect);
a price not yet in effect can be deleted, to withdraw it.
"""

from __future__ import annotations

from django import forms
from django.utils import timezone

from tracking import services
from tracking.admin.forms import DatabaseCheckedForm
from tracking.admin.policies import StampedAdmin, actor_of
from tracking.models import VeoPrice


class VeoPriceForm(DatabaseCheckedForm):
    effective_from = forms.DateTimeField(
        required=False,
        label="Effective from (UTC)",
        help_text="YYYY-MM-DD HH:MM, now or later; leave empty for now. Earlier requests keep their price.",
        widget=forms.DateTimeInput(attrs={"placeholder": "YYYY-MM-DD HH:MM"}),
    )

    class Meta:
        model = VeoPrice
        fields = ["model", "resolution", "generate_audio", "usd_per_second", "effective_from", "source"]

    def clean_effective_from(self):
        moment = self.cleaned_data["effective_from"]
        now = timezone.now()
        if moment is None:
            return now
        if moment < now - services.prices.CLOCK_SLACK:
            raise forms.ValidationError(
                "Prices are history: a new price starts now or later (past requests keep the price they were"
                " admitted with). Leave it empty to start now."
            )
        return moment

    def clean_model(self):
        return self.cleaned_data["model"].strip()


class VeoPriceAdmin(StampedAdmin):
    """Add a price to change one; past rows are read-only history."""

    form = VeoPriceForm
    list_display = ("model", "resolution", "generate_audio", "usd_per_second", "effective_from", "source", "created_by")
    list_filter = ("model", "resolution", "generate_audio")
    search_fields = ("model",)
    readonly_fields = ("created_by", "created_at")
    stamps = readonly_fields

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)  # the list, never a row

    def has_delete_permission(self, request, obj=None):
        in_effect = obj is not None and obj.effective_from <= timezone.now()
        return not in_effect and super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        services.prices.add_price(price=obj, actor=actor_of(request))

    def delete_model(self, request, obj):
        services.prices.withdraw_price(price=obj, actor=actor_of(request))
