from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from controlpanel.tenancy import project_view


@project_view(section="templates")
def template_list(request: HttpRequest) -> HttpResponse:
    return render(request, "whatsapp/templates.html")


urlpatterns = [
    path("templates/", template_list, name="templates"),
]
