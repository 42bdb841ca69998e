"""The push simulator: FCM v1's send URL and the device page (mounted under /simulator/ only when
settings.SIMULATOR_ENABLED, see controlpanel/urls.py)."""

from django.urls import path

from . import fcm, views

app_name = "push_simulator"

urlpatterns = [
    path("fcm/v1/projects/<str:fcm_project>/messages:send", fcm.send, name="fcm_send"),
    path("push/", views.devices, name="devices"),
    path("push/open/", views.open_push, name="open"),
]
