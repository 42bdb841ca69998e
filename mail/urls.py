from django.urls import path

from . import settings_views, views

app_name = "mail"

# Project-scoped email pages, under /p/<slug>/email/.
urlpatterns = [
    path("email/", views.templates, name="templates"),
    path("email/new/", views.template_new, name="template_new"),
    path("email/settings/", settings_views.email_settings, name="settings"),
    path("email/settings/test/", settings_views.settings_test, name="settings_test"),
    path("email/mailbox/", views.mailbox, name="mailbox"),
    path("email/mailbox/<uuid:public_id>/", views.mailbox_detail, name="mailbox_detail"),
    path("email/<uuid:public_id>/", views.template_edit, name="template_edit"),
    path("email/<uuid:public_id>/preview/", views.template_preview, name="template_preview"),
    path("email/<uuid:public_id>/test/", views.template_test, name="template_test"),
    path("email/<uuid:public_id>/delete/", views.template_delete, name="template_delete"),
]
