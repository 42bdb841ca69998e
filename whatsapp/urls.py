from django.urls import path

from . import views

app_name = "whatsapp"

urlpatterns = [
    path("templates/", views.template_list, name="templates"),
    path("conversations/", views.conversation_list, name="conversations"),
]
