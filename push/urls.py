from django.urls import path

from . import views

app_name = "push"

# Project-scoped push pages, under /p/<slug>/push/.
urlpatterns = [
    path("push/", views.templates, name="templates"),
    path("push/new/", views.new, name="new"),
    path("push/preview/", views.preview, name="preview"),
    path("push/settings/", views.settings_page, name="settings"),
    path("push/settings/test/", views.settings_test, name="settings_test"),
    path("push/<uuid:public_id>/", views.edit, name="edit"),
    path("push/<uuid:public_id>/delete/", views.delete, name="delete"),
    path("push/<uuid:public_id>/test/", views.test_send, name="test_send"),
]
