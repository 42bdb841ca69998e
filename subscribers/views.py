from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from controlpanel.tenancy import project_view

from .models import Subscriber


@project_view(section="subscribers")
def subscriber_list(request: HttpRequest) -> HttpResponse:
    subscribers = Subscriber.objects.for_project(request.project).order_by("-created_at", "-id")[:50]
    return render(request, "subscribers/list.html", {"subscribers": subscribers})


urlpatterns = [
    path("subscribers/", subscriber_list, name="list"),
]
