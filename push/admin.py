from django.contrib import admin

from .models import PushSettings, PushTemplate, SimulatedPush


@admin.register(PushSettings)
class PushSettingsAdmin(admin.ModelAdmin):
    list_display = ["project", "mode", "fcm_project_id", "updated_at"]
    exclude = ["service_account"]  # the private key: set on the panel's settings page, never shown
    # Changes go through the panel's settings page (push.services.save_settings: checked, audited).
    readonly_fields = ["project", "mode", "fcm_project_id", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(PushTemplate)
class PushTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "marketing", "updated_at"]
    list_filter = ["project", "marketing"]
    search_fields = ["name", "title"]


@admin.register(SimulatedPush)
class SimulatedPushAdmin(admin.ModelAdmin):
    list_display = ["received_at", "fcm_name", "opened_at", "project"]
    exclude = ["token"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
