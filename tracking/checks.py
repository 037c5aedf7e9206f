"""Start-up checks (Django's system checks: runbot, runworker and runserver run them first)."""

from django.conf import settings
from django.core import checks

from tracking import capabilities


@checks.register()
def defaults_fit_the_model(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Defaults the configured model does not make would refuse every /veo that leaves them out."""
    problem = capabilities.defaults_problem(
        model=settings.VEO_MODEL,
        duration=settings.VEO_DEFAULT_DURATION,
        resolution=settings.VEO_DEFAULT_RESOLUTION,
        ratio=settings.VEO_DEFAULT_RATIO,
    )
    if problem is None:
        return []
    return [checks.Error(problem, hint="Change the default, or VEO_MODEL.", id="veobot.E001")]
