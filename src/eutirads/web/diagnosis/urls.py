"""Diagnosis pages under /diagnosis/ and the JSON API under /api/v1/ (one include at the root)."""

from django.urls import path, re_path

from . import api, views

app_name = "diagnosis"

urlpatterns = [
    path("diagnosis/", views.classify, name="classify"),
    path("diagnosis/history/", views.history, name="history"),
    path("diagnosis/history/<int:pk>/", views.prediction_detail, name="prediction"),
    path("diagnosis/history/<int:pk>/image.png", views.prediction_image, name="prediction_image"),
    path("diagnosis/models/", views.model_list, name="models"),
    path("diagnosis/models/add/", views.model_add, name="model_add"),
    path("diagnosis/models/<int:pk>/activate/", views.model_activate, name="model_activate"),
    path("diagnosis/reading/", views.reading, name="reading"),
    path("diagnosis/reading/report/", views.reading_report, name="reading_report"),
    path("api/v1/predict", api.predict, name="api_predict"),
    path("api/v1/models", api.models, name="api_models"),
    path("api/v1/schema", api.schema, name="api_schema"),
    re_path(r"^api/v1/(?P<rest>.*)$", api.not_found, name="api_not_found"),
]
