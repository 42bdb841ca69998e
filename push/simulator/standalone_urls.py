"""URLs of the standalone push simulator (``push/simulator/wsgi.py``): FCM's send route only."""

from django.urls import path

from . import fcm

urlpatterns = [
    path("simulator/fcm/v1/projects/<str:fcm_project>/messages:send", fcm.send),
]
