"""Push pages of the panel. STAND-IN (foundation): slice "push" builds them."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from controlpanel.tenancy import project_view


@project_view(section="push")
@require_safe
def templates(request: HttpRequest) -> HttpResponse:
    return render(request, "push/stand_in.html")
