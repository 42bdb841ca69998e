from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from controlpanel.tenancy import project_view

from .models import Subscriber


@project_view(section="subscribers")
def subscriber_list(request: HttpRequest) -> HttpResponse:
    subscribers = Subscriber.objects.for_project(request.project).order_by("-created_at", "-id")[:50]
    return render(request, "subscribers/list.html", {"subscribers": subscribers})


@project_view(section="segments")
def segment_list(request: HttpRequest) -> HttpResponse:
    return render(request, "subscribers/segments.html")
