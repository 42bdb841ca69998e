from django.urls import path

from . import views

app_name = "push"

# Project-scoped push pages, under /p/<slug>/push/.
urlpatterns = [
    path("push/", views.templates, name="templates"),
]
