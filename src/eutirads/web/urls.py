"""Root URLs. Each app adds one include here."""

from django.contrib import admin
from django.urls import include, path

from .core.views import admin_login

admin.site.site_header = "eutirads administration"
admin.site.site_title = "eutirads"
# The admin uses the app's own login page (with its throttling), not a second one.
admin.site.login = admin_login

urlpatterns = [
    path("", include("eutirads.web.core.urls")),
    path("labeling/", include("eutirads.web.labeling.urls")),
    # Further apps: path("diagnosis/", include("eutirads.web.diagnosis.urls")),
    # Diagnosis pages (diagnosis/...) and the JSON API (api/v1/...).
    path("", include("eutirads.web.diagnosis.urls")),
    path("admin/", admin.site.urls),
]

handler403 = "eutirads.web.core.errors.forbidden"
handler404 = "eutirads.web.core.errors.not_found"
