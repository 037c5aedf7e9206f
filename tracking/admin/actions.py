"""The moderation actions of the requests list and the request page: each asks for a reason,
runs one service, and is recorded in Django's admin log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from tracking import services
from tracking.admin.forms import BanForm, ReasonForm, action_form_context
from tracking.admin.query import digits
from tracking.errors import TrackingError
from tracking.models import VideoRequest

# Bulk actions apply to at most this many requests ("select all" included).
ACTION_LIMIT = 500


def actor_of(request) -> str:
    return request.user.get_username()


class ModerationActions:
    """Mixed into the requests' ModelAdmin (tracking.admin.requests)."""

    def _act(
        self,
        request,
        queryset,
        *,
        name: str,
        verb: str,
        form_class=ReasonForm,
        run: Callable[[dict, list[int]], list[int]],
        summary: Callable[[list[int]], str] | None = None,
    ):
        """The shared shape of every action: ask for a reason (intermediate page, worded as the
        action's own description: nothing is done yet), run the service, record each changed
        request in Django's admin log, report once in plain words (``summary``, else the count)."""
        ids = list(queryset.order_by().values_list("id", flat=True)[: ACTION_LIMIT + 1])
        if len(ids) > ACTION_LIMIT:
            self.message_user(request, f"Select at most {ACTION_LIMIT} requests for one action.", messages.ERROR)
            return None
        form = form_class(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                changed = run(form.cleaned_data, ids)
            except TrackingError as error:
                self.message_user(request, f"Nothing done: {error}", messages.ERROR)
                return None
            for obj in VideoRequest.objects.filter(id__in=changed):
                self.log_change(request, obj, f"{verb}; reason: {form.cleaned_data['reason']}")
            skipped = len(ids) - len(changed)
            done = summary(changed) if summary and changed else f"{verb.capitalize()}: {len(changed)} request(s)"
            self.message_user(
                request,
                done + (f"; {skipped} left unchanged (not applicable or already done)." if skipped else "."),
                messages.SUCCESS if changed else messages.WARNING,
            )
            back = digits(request.POST.get("_from_detail"))
            if back is not None:
                return HttpResponseRedirect(reverse("admin:tracking_videorequest_change", args=[back]))
            return None
        ask = self.get_actions(request)[name][2]  # "Ban the user(s)": what clicking will do
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{ask}: why?",
            "ask": ask,
            **action_form_context(form, VideoRequest.objects.filter(id__in=ids).order_by("-id")[:50], name),
            "count": len(ids),
            "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "from_detail": request.POST.get("_from_detail", ""),
            "verb": verb,
        }
        return TemplateResponse(request, "admin/tracking/action_form.html", context)

    @admin.action(description="Approve", permissions=["change"])
    def approve_requests(self, request, queryset):
        return self._act(
            request,
            queryset,
            name="approve_requests",
            verb="approved",
            run=lambda data, ids: services.approve(request_ids=ids, actor=actor_of(request), reason=data["reason"]),
        )

    @admin.action(description="Flag for review", permissions=["change"])
    def flag_requests(self, request, queryset):
        return self._act(
            request,
            queryset,
            name="flag_requests",
            verb="flagged",
            run=lambda data, ids: services.flag(request_ids=ids, actor=actor_of(request), reason=data["reason"]),
        )

    @admin.action(
        description="Remove output (and delete the Discord message and bucket object)", permissions=["change"]
    )
    def remove_outputs(self, request, queryset):
        def run(data, ids):
            removals = services.remove_output(request_ids=ids, actor=actor_of(request), reason=data["reason"])
            queued = sum(1 for removal in removals if removal.discord_action_id)
            if queued:
                self.message_user(request, f"{queued} Discord message(s) queued for deletion by the bot.")
            objects = sum(len(removal.gcs_objects) for removal in removals if removal.bucket_action_id)
            if objects:
                self.message_user(
                    request,
                    f"{objects} bucket object(s) queued for deletion by the bot; the request "
                    "page shows when they are gone.",
                )
            return [removal.request_id for removal in removals]

        return self._act(request, queryset, name="remove_outputs", verb="output removed", run=run)

    @admin.action(description="Refund quota", permissions=["change"])
    def refund_requests(self, request, queryset):
        return self._act(
            request,
            queryset,
            name="refund_requests",
            verb="refunded",
            run=lambda data, ids: services.refund_requests(
                request_ids=ids, actor=actor_of(request), reason=data["reason"]
            ),
        )

    @admin.action(description="Cancel (pending or generating)", permissions=["change"])
    def cancel_requests(self, request, queryset):
        return self._act(
            request,
            queryset,
            name="cancel_requests",
            verb="cancelled",
            run=lambda data, ids: services.cancel_requests(
                request_ids=ids, actor=actor_of(request), reason=data["reason"]
            ),
        )

    @admin.action(description="Ban the user(s)", permissions=["change"])
    def ban_users(self, request, queryset):
        def run(data, ids):
            rows = VideoRequest.objects.filter(id__in=ids).values_list("id", "user_id", "guild_id")
            scopes: dict[tuple[int, int | None], list[int]] = {}
            for request_id, user_id, guild_id in rows:
                if data["scope"] == "guild" and guild_id is None:
                    raise TrackingError(f"request {request_id} was made in a direct message: ban everywhere instead")
                scopes.setdefault((user_id, guild_id if data["scope"] == "guild" else None), []).append(request_id)
            expires = data["expires_at"].astimezone(UTC) if data["expires_at"] else None
            done = []
            for (user_id, guild_id), request_ids in sorted(scopes.items(), key=lambda item: item[0][0]):
                services.ban_user(
                    user_id=user_id,
                    guild_id=guild_id,
                    reason=data["reason"],
                    actor=actor_of(request),
                    expires_at=expires,
                    request_ids=request_ids,
                )
                done += request_ids
            banned.update(user_id for user_id, _ in scopes)
            return done

        banned: set[int] = set()
        return self._act(
            request,
            queryset,
            name="ban_users",
            verb="user banned",
            form_class=BanForm,
            run=run,
            summary=lambda changed: (
                f"Banned {len(banned)} user(s), from their next request ({len(changed)} request(s))"
            ),
        )
