from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from controlpanel.tenancy import project_view


@project_view(section="segments")
def segment_list(request: HttpRequest) -> HttpResponse:
    return render(request, "subscribers/segments.html")


urlpatterns = [
    path("segments/", segment_list, name="segments"),
]
