from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "eutirads.web.core"
    label = "core"
    verbose_name = "eutirads core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the login audit receivers)
