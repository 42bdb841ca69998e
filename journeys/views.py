from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from controlpanel.tenancy import project_view


@project_view(section="journeys")
def journey_list(request: HttpRequest) -> HttpResponse:
    return render(request, "journeys/list.html")
