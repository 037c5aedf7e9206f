from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Moderation"  # the admin section: requests, bans, policies, reports

    def ready(self) -> None:
        from tracking import checks  # noqa: F401  (registers the start-up checks)
