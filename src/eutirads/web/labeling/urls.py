from django.urls import path

from . import views

app_name = "labeling"
urlpatterns = [
    path("", views.projects, name="projects"),
    path("<slug:project>/", views.project, name="project"),
    path("<slug:project>/read/", views.read, name="read"),
    path("<slug:project>/unskip/", views.unskip, name="unskip"),
    path("<slug:project>/api/next/", views.api_next, name="api_next"),
    path("<slug:project>/api/<int:image_id>/save/", views.api_save, name="api_save"),
    path("<slug:project>/api/<int:image_id>/skip/", views.api_skip, name="api_skip"),
    path("<slug:project>/api/<int:image_id>/mine/", views.api_mine, name="api_mine"),
    path("<slug:project>/image/<int:image_id>/", views.image, name="image"),
    path("<slug:project>/image/<int:image_id>/overlay/", views.overlay, name="overlay"),
    path("<slug:project>/mine/", views.mine, name="mine"),
    path("<slug:project>/agreement/", views.agreement, name="agreement"),
    path("<slug:project>/adjudication/", views.adjudication, name="adjudication"),
    path("<slug:project>/adjudication/<int:image_id>/", views.adjudicate, name="adjudicate"),
]
