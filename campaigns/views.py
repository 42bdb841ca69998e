from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from controlpanel.tenancy import project_view


@project_view(section="campaigns")
def campaign_list(request: HttpRequest) -> HttpResponse:
    return render(request, "campaigns/list.html")
