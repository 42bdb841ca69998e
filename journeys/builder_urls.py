from django.urls import path

from . import views

urlpatterns = [
    path("journeys/", views.journey_list, name="list"),
]
