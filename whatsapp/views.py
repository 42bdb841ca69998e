from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from controlpanel.tenancy import project_view


@project_view(section="templates")
def template_list(request: HttpRequest) -> HttpResponse:
    return render(request, "whatsapp/templates.html")


@project_view(section="conversations")
def conversation_list(request: HttpRequest) -> HttpResponse:
    return render(request, "whatsapp/conversations.html")
