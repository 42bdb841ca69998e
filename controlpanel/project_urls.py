"""Project-scoped URLs of the controlpanel app, mounted under /p/<slug>/."""

from django.urls import path

from . import views

app_name = "controlpanel"

urlpatterns = [
    path("", views.project_dashboard, name="dashboard"),
    path("settings/", views.project_settings, name="settings"),
    path("settings/members/", views.members, name="members"),
    path("settings/members/<uuid:member_id>/role/", views.member_role, name="member_role"),
    path("settings/members/<uuid:member_id>/remove/", views.member_remove, name="member_remove"),
    path(
        "settings/invitations/<uuid:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("settings/api-keys/", views.api_keys, name="api_keys"),
    path("settings/api-keys/<uuid:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("settings/audit/", views.audit_log, name="audit"),
]
