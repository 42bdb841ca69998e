"""Conversations: one thread per subscriber, inbound (events) and outbound (messages) together."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from controlpanel.tenancy import project_view


@project_view(section="conversations")
def conversation_list(request: HttpRequest) -> HttpResponse:
    return render(request, "campaigns/conversations.html")


urlpatterns = [
    path("conversations/", conversation_list, name="conversations"),
]
