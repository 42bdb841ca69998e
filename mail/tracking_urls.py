"""Open pixel, click redirect and unsubscribe URLs (public, signed), mounted at /email/."""

from django.urls import path

from . import tracking_views

app_name = "mail_tracking"

urlpatterns = [
    path("o/<str:token>.gif", tracking_views.opened, name="open"),
    path("c/<str:token>/", tracking_views.clicked, name="click"),
    path("u/<str:token>/", tracking_views.unsubscribe, name="unsubscribe"),
]
