from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    name = "eutirads.web.diagnosis"
    label = "diagnosis"
    verbose_name = "Diagnosis"
    default_auto_field = "django.db.models.BigAutoField"
