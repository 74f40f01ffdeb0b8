"""Diagnosis pages under /diagnosis/ and the JSON API under /api/v1/ (one include at the root)."""

from django.urls import path, re_path

from . import api, views

app_name = "diagnosis"

urlpatterns = [
    path("diagnosis/", views.classify, name="classify"),
    path("diagnosis/history/", views.history, name="history"),
    path("diagnosis/history/<int:pk>/", views.prediction_detail, name="prediction"),
    path("diagnosis/history/<int:pk>/image.png", views.prediction_image, name="prediction_image"),
    path("diagnosis/history/<int:pk>/decision/", views.prediction_decision, name="decision"),
    path("diagnosis/history/<int:pk>/report/", views.prediction_report, name="report"),
    path("diagnosis/history/<int:pk>/report.pdf", views.prediction_report_pdf, name="report_pdf"),
    path("diagnosis/models/", views.model_list, name="models"),
    path("diagnosis/models/add/", views.model_add, name="model_add"),
    path("diagnosis/models/<int:pk>/activate/", views.model_activate, name="model_activate"),
    path("diagnosis/reading/", views.reading, name="reading"),
    path("diagnosis/reading/report/", views.reading_report, name="reading_report"),
    path("api/v1/predict", api.predict, name="api_predict"),
    path("api/v1/models", api.models, name="api_models"),
    path("api/v1/schema", api.schema, name="api_schema"),
    path("api/v1/predictions/<int:pk>/report.pdf", api.report_pdf, name="api_report_pdf"),
    re_path(r"^api/v1/(?P<rest>.*)$", api.not_found, name="api_not_found"),
]
