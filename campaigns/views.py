from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from controlpanel.tenancy import project_view


@project_view(section="campaigns")
def campaign_list(request: HttpRequest) -> HttpResponse:
    return render(request, "campaigns/list.html")


urlpatterns = [
    path("campaigns/", campaign_list, name="list"),
]
