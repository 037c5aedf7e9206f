"""Forms of the review queue: a decision with its reason (and a ban's terms), a reopening, a
note. They check what a moderator typed; tracking.services.review does the work."""

from __future__ import annotations

from datetime import UTC

from django import forms

from tracking.admin.forms import BanForm
from tracking.models import Decision
from tracking.services.review import NOTE_MAX, BanTerms

DECISION_HELP = "Recorded with your name in the item's history and the audit log."


class DecisionForm(BanForm):
    """One decision and its required reason; the scope and expiry count only for a ban."""

    SCOPES = [("everywhere", "Everywhere"), ("guild", "Only in the item's server")]
    decision = forms.ChoiceField(choices=Decision.choices, widget=forms.RadioSelect)
    scope = forms.ChoiceField(
        choices=SCOPES, initial="everywhere", widget=forms.RadioSelect, label="Ban scope", required=False
    )
    field_order = ["decision", "reason", "scope", "expires_at"]

    def __init__(self, *args, choices=None, **kwargs):
        super().__init__(*args, **kwargs)
        if choices is not None:  # the decisions that fit one item
            self.fields["decision"].choices = choices
        self.fields["reason"].help_text = DECISION_HELP
        self.fields["expires_at"].label = "Ban expires at (UTC)"

    @property
    def offers_ban(self) -> bool:
        return any(value == Decision.BAN for value, _ in self.fields["decision"].choices)

    def ban_terms(self) -> BanTerms | None:
        data = self.cleaned_data
        if data["decision"] != Decision.BAN:
            return None
        expires = data["expires_at"].astimezone(UTC) if data["expires_at"] else None
        return BanTerms(everywhere=data["scope"] != "guild", expires_at=expires)


class ReopenForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}), max_length=1000, help_text="Why it needs deciding again."
    )


class NoteForm(forms.Form):
    body = forms.CharField(
        label="Note", widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=NOTE_MAX, strip=True
    )


def first_error(form: forms.Form) -> str:
    """A form's first problem, in words for a message: "reason: This field is required."."""
    for field, errors in form.errors.items():
        if field not in form.fields:
            return errors[0].rstrip(".")
        label = form.fields[field].label or field.replace("_", " ")
        return f"{label.lower()}: {errors[0].rstrip('.')}"
    return "the form is not valid"
