from django.urls import path

from . import views

app_name = "labeling"
urlpatterns = [
    path("", views.projects, name="projects"),
    path("<slug:project>/", views.project, name="project"),
]
