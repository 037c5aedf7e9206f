"""Forms of the moderation panel: they collect and check input; services do the work."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.admin import helpers
from django.contrib.admin.forms import AdminAuthenticationForm
from django.db import IntegrityError, transaction
from django.utils import timezone

from tracking import selectors, throttle
from tracking.durations import exact_duration, parse_written
from tracking.models import BlockedTerm, QuotaPolicy, UserBan, VideoRequest

REASON_HELP = "Recorded with your name in the request's history and the admin log."


class ThrottledLoginForm(AdminAuthenticationForm):
    """The admin sign-in, refused for a while after too many failures (tracking/throttle.py)."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many failed sign-in attempts. Try again in %(wait)s.",
    }

    def clean(self):
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()  # the field errors say what is missing
        wait = throttle.attempt(username=username, client_ip=throttle.client_ip(self.request))
        if wait is not None:
            raise forms.ValidationError(
                self.error_messages["throttled"], code="throttled", params={"wait": throttle.wait_text(wait)}
            )
        cleaned = super().clean()  # a wrong password raises here and the attempt stays counted
        throttle.succeeded(username=username)
        return cleaned


class ReasonForm(forms.Form):
    """The intermediate page of every moderation action."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=1000, help_text=REASON_HELP
    )


class BanForm(ReasonForm):
    SCOPES = [("everywhere", "Everywhere"), ("guild", "Only in the request's guild")]
    scope = forms.ChoiceField(choices=SCOPES, initial="everywhere", widget=forms.RadioSelect)
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires at (UTC)",
        help_text="YYYY-MM-DD HH:MM; leave empty for a permanent ban.",
        widget=forms.DateTimeInput(attrs={"placeholder": "YYYY-MM-DD HH:MM"}),
    )

    def clean_expires_at(self):
        # Here, not after submitting: a refusal then would lose the reason typed with it.
        expires = self.cleaned_data["expires_at"]
        if expires is not None and expires <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future (leave it empty for a permanent ban).")
        return expires


class ReviewForm(forms.ModelForm):
    """The request page: only the review state and a reason are editable."""

    class Meta:
        model = VideoRequest
        fields = ["review_status", "review_note"]
        labels = {"review_note": "Reason"}
        widgets = {"review_note": forms.Textarea(attrs={"rows": 2, "cols": 60})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "review_note" in self.fields:
            self.fields["review_note"].required = True
            self.fields["review_note"].help_text = REASON_HELP
            self.initial["review_note"] = ""  # a new reason each time; earlier ones are in the timeline


def action_form_context(form: forms.Form, queryset, action: str) -> dict:
    return {"form": form, "requests": queryset, "action": action, "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME}


# Messages for the constraints a moderator can hit while editing policies, bans and terms.
CONSTRAINT_MESSAGES = {
    "quota_policies_has_scope": "Set a user id, a guild id, or both.",
    "quota_policies_scope_key": "A policy for this user, guild and role already exists; edit that one.",
    "quota_policies_role_needs_guild": "A role policy needs the role's guild id, and no user id.",
    "quota_policies_role_id_check": "The role id must be a Discord id (a positive number).",
    "quota_policies_label_needs_role": "A role label needs a role id.",
    "quota_policies_role_label_check": "The role label must be 1 to 100 characters.",
    "quota_policies_budget_usd_check": "The budget must be between 0 and 1000000 US dollars.",
    "quota_policies_budget_window_check": "The budget window must be between 1 minute and 366 days.",
    "quota_policies_budget_pair": "A budget needs both an amount and a window (or neither).",
    "quota_policies_guild_budget_usd_check": "The guild budget must be between 0 and 100000000 US dollars.",
    "quota_policies_guild_budget_window_check": "The guild budget window must be between 1 minute and 366 days.",
    "quota_policies_guild_budget_pair": "A guild budget needs both an amount and a window (or neither).",
    "quota_policies_guild_budget_scope": "A guild budget belongs on the guild's own policy (a guild id, no user or role).",
    "veo_prices_one_per_moment": "A price for this model, resolution and audio already starts at that moment.",
    "veo_prices_usd_per_second_check": "The price must be between 0 and 100 US dollars per second.",
    "veo_prices_source_check": "Say where the price comes from (1 to 500 characters).",
    "quota_policies_window_check": "The window must be between 1 minute and 366 days.",
    "quota_policies_limit_check": "The limit must be between 0 and 10000.",
    "quota_policies_max_in_flight_check": "Max in flight must be between 1 and 1000 (or blank).",
    "quota_policies_user_id_check": "The user id must be a Discord id (a positive number).",
    "quota_policies_guild_id_check": "The guild id must be a Discord id (a positive number).",
    "user_bans_user_id_check": "The user id must be a Discord id (a positive number).",
    "user_bans_guild_id_check": "The guild id must be a Discord id (a positive number).",
    "blocked_terms_guild_id_check": "The guild id must be a Discord id (a positive number).",
    "user_bans_reason_check": "A reason of 1 to 1000 characters is required.",
    "user_bans_expiry_after_start": "The expiry must be later than the start of the ban.",
    "blocked_terms_scope_key": "This term is already blocked in that scope.",
    "blocked_terms_message_check": "The message must be at most 300 characters.",
}


class DatabaseCheckedForm(forms.ModelForm):
    """Asks PostgreSQL, which owns the invariants, before the admin saves: the instance is
    written in a savepoint that is always rolled back, and a refusal becomes a form error
    instead of a server error."""

    class _RolledBack(Exception):
        pass

    def _post_clean(self):
        super()._post_clean()
        if self.errors:
            return
        adding = self.instance._state.adding
        try:
            with transaction.atomic():
                self.instance.save()
                raise self._RolledBack
        except self._RolledBack:
            pass
        except IntegrityError as error:
            cause = error.__cause__
            diag = getattr(cause, "diag", None)
            name = getattr(diag, "constraint_name", None)
            self.add_error(
                None,
                CONSTRAINT_MESSAGES.get(name)
                or getattr(diag, "message_primary", None)
                or "The database refused these values.",
            )
        finally:
            if adding:
                self.instance.pk = None
                self.instance._state.adding = True


class WindowField(forms.DurationField):
    """A duration written as everywhere in veobot: "24h", "90m", "7d", "1h 30m"."""

    default_error_messages = {"invalid": 'Write a duration like "24h", "90m", "7d" or "1h 30m".'}

    def prepare_value(self, value):
        return exact_duration(value) if isinstance(value, timedelta) else value

    def to_python(self, value):
        written = parse_written(value) if isinstance(value, str) else None
        return written if written is not None else super().to_python(value)  # Django's "1 00:00:00" too


class QuotaPolicyForm(DatabaseCheckedForm):
    quota_window = WindowField(help_text='Rolling window: "24h", "7d", "1h 30m".')
    budget_window = WindowField(required=False, help_text='Rolling window of the budget: "24h", "30d".')
    guild_budget_window = WindowField(required=False, help_text="Rolling window of the guild budget.")
    priority = forms.IntegerField(
        required=False,
        min_value=-100,
        max_value=100,
        help_text="Higher starts sooner when requests wait for Veo (-100 to 100; empty: 0, the default).",
    )

    def clean_priority(self):
        return self.cleaned_data["priority"] or 0

    def clean_role_label(self):
        return (self.cleaned_data["role_label"] or "").strip() or None  # empty: no label

    class Meta:
        model = QuotaPolicy
        fields = [
            "user_id",
            "guild_id",
            "role_id",
            "role_label",
            "quota_limit",
            "quota_window",
            "max_in_flight",
            "priority",
            "budget_usd",
            "budget_window",
            "guild_budget_usd",
            "guild_budget_window",
            "note",
        ]

    def clean(self):
        """The plain mistakes, named on their field before the database is asked."""
        data = super().clean()
        if data.get("role_id") is not None and data.get("guild_id") is None:
            self.add_error("guild_id", "A role policy needs the guild the role belongs to.")
        if data.get("role_id") is not None and data.get("user_id") is not None:
            self.add_error("user_id", "A role policy applies to every member holding the role: leave the user empty.")
        for amount, window in (("budget_usd", "budget_window"), ("guild_budget_usd", "guild_budget_window")):
            if (data.get(amount) is None) != (data.get(window) is None) and amount not in self.errors:
                self.add_error(window, "A budget needs both an amount and a window (or neither).")
        return data


class UserBanForm(DatabaseCheckedForm):
    class Meta:
        model = UserBan
        fields = ["user_id", "guild_id", "reason", "expires_at"]

    def _post_clean(self):
        if not self.instance.banned_by:
            self.instance.banned_by = "admin"  # replaced by the moderator's name on save
        super()._post_clean()


class BlockedTermForm(DatabaseCheckedForm):
    class Meta:
        model = BlockedTerm
        fields = ["kind", "pattern", "guild_id", "message", "enabled"]

    def clean(self):
        data = super().clean()
        if data.get("kind") and data.get("pattern"):
            # The same check the table's trigger runs, so the message names the problem.
            problem = selectors.blocked_term_problem(kind=data["kind"], pattern=data["pattern"].strip())
            if problem:
                self.add_error("pattern", problem)
        return data
