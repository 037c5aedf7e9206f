"""A review item's page: what it is about (the request, its video and reports; the user's
refusals; the appeal and its ban), the claim, the decision, notes and the item's audit
history. Nothing on it is a model form: each button posts one operation, which goes through
services.review; a refusal becomes a message, never a traceback."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from tracking import selectors, services
from tracking.admin.actions import actor_of
from tracking.admin.query import digits
from tracking.admin.queue_forms import DecisionForm, NoteForm, ReopenForm, first_error
from tracking.errors import TrackingError
from tracking.models import (
    Appeal,
    Decision,
    ItemKind,
    ItemState,
    ModerationLogEntry,
    Report,
    ReviewItem,
    Status,
    VideoRequest,
)
from tracking.services.review import REQUEST_KINDS

HISTORY_LIMIT = 100
REFUSALS_SHOWN = 20


def decision_choices(item: ReviewItem) -> list[tuple[str, str]]:
    """The decisions that fit the item (the service refuses the others)."""
    if item.kind == ItemKind.APPEAL:
        return [(Decision.APPROVE, "Grant the appeal (lift the ban)"), (Decision.DISMISS, "Deny the appeal")]
    if item.kind in REQUEST_KINDS and item.request_id is not None:
        return Decision.choices
    return [choice for choice in Decision.choices if choice[0] != Decision.REMOVE_OUTPUT]


class ItemPage:
    """Mixed into the queue's ModelAdmin (tracking.admin.queue)."""

    def change_view(self, request, object_id, form_url="", extra_context=None):
        item_id = digits(object_id)
        obj = ReviewItem.objects.filter(id=item_id).first() if item_id is not None and item_id < 2**63 else None
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        bound = {}
        if request.method == "POST":
            if not self.has_change_permission(request, obj):
                raise PermissionDenied
            done, bound = self._operate(request, obj)
            if done:
                return HttpResponseRedirect(request.path)
        return self._render(request, obj, bound)

    # -- the operations -----------------------------------------------------------------

    def _operate(self, request, obj: ReviewItem) -> tuple[bool, dict]:
        """Run the posted operation: (True, {}) when done or refused outright (the message
        says which), (False, {name: bound form}) when the form needs correcting."""
        op, actor = request.POST.get("op"), actor_of(request)
        forms = {
            "resolve": ("decision_form", lambda: DecisionForm(request.POST, choices=decision_choices(obj))),
            "reopen": ("reopen_form", lambda: ReopenForm(request.POST)),
            "note": ("note_form", lambda: NoteForm(request.POST)),
        }
        form = None
        try:
            if op == "claim":
                until = services.review.claim(item_id=obj.id, actor=actor)
                self.message_user(request, f"Item #{obj.id} is yours until {until:%H:%M} UTC.", messages.SUCCESS)
            elif op == "release":
                if services.review.release(item_id=obj.id, actor=actor):
                    self.message_user(request, f"Released item #{obj.id}.", messages.SUCCESS)
                else:
                    self.message_user(request, f"Item #{obj.id} was not claimed by you.", messages.WARNING)
            elif op in forms:
                name, make = forms[op]
                form = make()
                if not form.is_valid():
                    self.message_user(request, f"Nothing done: {first_error(form)}.", messages.ERROR)
                    return False, {name: form}
                self._run_form(request, obj, op, form, actor)
            else:
                self.message_user(request, "Nothing done: unknown operation.", messages.ERROR)
        except TrackingError as error:
            self.message_user(request, f"Nothing done: {error}.", messages.ERROR)
            if form is not None:
                return False, {forms[op][0]: form}
        return True, {}

    def _run_form(self, request, obj: ReviewItem, op: str, form, actor: str) -> None:
        data = form.cleaned_data
        if op == "resolve":
            done = services.review.resolve(
                item_id=obj.id, actor=actor, decision=data["decision"], reason=data["reason"], ban=form.ban_terms()
            )
            self.message_user(request, f"Item #{obj.id} resolved: {done.effect}.", messages.SUCCESS)
        elif op == "reopen":
            services.review.reopen(item_id=obj.id, actor=actor, reason=data["reason"])
            self.message_user(request, f"Item #{obj.id} is open again, claimed by you.", messages.SUCCESS)
        else:
            services.review.add_note(item_id=obj.id, actor=actor, body=data["body"])
            self.message_user(request, f"Note added to item #{obj.id}.", messages.SUCCESS)

    # -- the page ---------------------------------------------------------------------------

    def _render(self, request, obj: ReviewItem, bound: dict):
        now = timezone.now()
        claimed = bool(obj.claimed_by and obj.claimed_until and obj.claimed_until > now)
        mine = claimed and obj.claimed_by == actor_of(request)
        can_change = self.has_change_permission(request, obj)
        is_open = obj.state == ItemState.OPEN
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Review item #{obj.id}",
            "item": obj,
            "claimed": claimed,
            "mine": mine,
            "can_change": can_change,
            "can_decide": can_change and is_open and (mine or not claimed),
            "decision_form": bound.get("decision_form") or DecisionForm(choices=decision_choices(obj)),
            "reopen_form": bound.get("reopen_form") or ReopenForm(),
            "note_form": bound.get("note_form") or NoteForm(),
            "notes": list(obj.notes.order_by("id")),
            "history": list(
                ModerationLogEntry.objects.filter(target_table="review_items", target_id=obj.id).order_by("-id")[
                    :HISTORY_LIMIT
                ]
            ),
            "user_url": reverse("admin:tracking_videorequest_user", args=[obj.user_id]),
            "changelist_url": reverse("admin:tracking_reviewitem_changelist"),
            **self._subject(obj),
        }
        return TemplateResponse(request, "admin/tracking/reviewitem/item.html", context)

    def _subject(self, obj: ReviewItem) -> dict:
        """What the item is about, for the page."""
        subject: dict = {}
        video = VideoRequest.objects.filter(id=obj.request_id).first() if obj.request_id is not None else None
        if video is not None:
            pages = self.admin_site._registry[VideoRequest]  # the request page's players and frames
            subject.update(
                video=video,
                outputs=pages._outputs(video, selectors.removal_progress(request_id=video.id)),
                inputs=pages._inputs(video),
                reports=list(Report.objects.filter(request_id=video.id).order_by("-id")[:50]),
            )
        if obj.kind in (ItemKind.BLOCKED_TERM, ItemKind.REPEATED_REFUSALS):
            subject["refused"] = list(
                VideoRequest.objects.filter(user_id=obj.user_id, status=Status.REJECTED).order_by("-created_at", "-id")[
                    :REFUSALS_SHOWN
                ]
            )
        if obj.appeal_id is not None:
            subject["appeal"] = Appeal.objects.select_related("ban").filter(id=obj.appeal_id).first()
        return subject
