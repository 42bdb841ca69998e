from django.urls import path

from . import views

app_name = "subscribers"

urlpatterns = [
    path("subscribers/", views.subscriber_list, name="list"),
    path("segments/", views.segment_list, name="segments"),
]
