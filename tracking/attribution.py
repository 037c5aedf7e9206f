"""Every change a signed-in moderator makes through the panel is theirs in the audit log.

The services name their own actions (services.audit); this is the net under them: a POST to
the panel by staff runs in one transaction that names the moderator first, so even a change
made by Django's generic admin views (a superuser's delete, say) reaches moderation_log
through the database's triggers, attributed. Reads (GET) are left alone: the search's
budgets use their own savepoints and must not hold a transaction open.
"""

from __future__ import annotations

from django.db import transaction
from django.urls import reverse

from tracking.services.audit import attribute


class ModeratorAttribution:
    def __init__(self, get_response):
        self.get_response = get_response
        self.admin_prefix = None

    def __call__(self, request):
        if self.admin_prefix is None:
            self.admin_prefix = reverse("admin:index")
        user = getattr(request, "user", None)
        if (
            request.method == "POST"
            and request.path.startswith(self.admin_prefix)
            and user is not None
            and user.is_authenticated
            and user.is_staff
        ):
            with transaction.atomic():
                attribute(actor=user.get_username())
                return self.get_response(request)
        return self.get_response(request)
