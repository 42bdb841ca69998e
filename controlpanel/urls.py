from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from . import account_views, i18n_views, views
from .api import api
from .api import not_found as api_not_found

# Everything tenant-scoped lives under /p/<slug>/ and is wrapped in tenancy.project_view.
project_patterns = [
    path("", include("controlpanel.project_urls")),
    path("", include("subscribers.urls")),
    path("", include("whatsapp.urls")),
    path("", include("campaigns.urls")),
    path("", include("mail.urls")),
    path("", include("push.urls")),
    path("", include("journeys.urls")),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/new/", views.project_create, name="project_create"),
    path("p/<slug:slug>/", include(project_patterns)),
    path("invite/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("account/profile/", account_views.profile, name="profile"),
    # gettext() for the panel's scripts, in the request's language (locale/*/djangojs.po).
    path("jsi18n/", i18n_views.javascript_catalog, name="javascript-catalog"),
    path("healthz", views.healthz, name="healthz"),
    path("webhooks/whatsapp/", include("whatsapp.webhook_urls")),
    # Email providers' delivery, bounce and complaint webhooks (django-anymail), per project.
    path("webhooks/email/", include("mail.webhook_urls")),
    # Signed open pixels, click redirects and one-click unsubscribes in the emails we send.
    path("email/", include("mail.tracking_urls")),
    path("api/v1/", api.urls),
    # Not ".*": a path with a newline (%0A) is an unknown route too, not an HTML 404.
    re_path(r"^api/v1/(?P<path>[\s\S]*)$", api_not_found),
    path("favicon.ico", views.favicon),
    path("admin/", admin.site.urls),
]

if settings.SIMULATOR_ENABLED:
    urlpatterns.append(path("simulator/", include("whatsapp.simulator.urls")))
    # The push simulator: FCM's URL shape for the sender, a device page for people.
    urlpatterns.append(path("simulator/", include("push.simulator.urls")))
