from django.urls import path

from . import views

app_name = "mail"

# Project-scoped email pages, under /p/<slug>/email/.
urlpatterns = [
    path("email/", views.templates, name="templates"),
]
