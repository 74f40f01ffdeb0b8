from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "eutirads.web.diagnosis"
    label = "diagnosis"
    verbose_name = "Diagnosis"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import tokens  # noqa: F401 - connects the token-deletion audit signal
