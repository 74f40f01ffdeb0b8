from django.contrib.auth import views as auth_views
from django.views.i18n import JavaScriptCatalog
from django.urls import path

from . import views
from .access import ROLES, role_required

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("audit/", views.audit_log, name="audit"),
    path("language/", views.set_language, name="set_language"),
    path("password/", role_required(*ROLES)(views.PasswordChangeView.as_view()),
         name="password_change"),
    # The JavaScript translations (gettext() in the pages' scripts), one catalogue per app.
    path("jsi18n/", JavaScriptCatalog.as_view(packages=["eutirads.web.core",
                                                        "eutirads.web.labeling",
                                                        "eutirads.web.diagnosis"]),
         name="javascript-catalog"),
]
