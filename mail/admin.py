from django.contrib import admin

from .models import EmailSettings, EmailTemplate, MailboxMessage


@admin.register(EmailSettings)
class EmailSettingsAdmin(admin.ModelAdmin):
    list_display = ["project", "backend", "from_email", "updated_at"]
    # Secrets are set on the panel's settings page, never shown.
    exclude = ["smtp_password", "provider_settings", "webhook_secret"]


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "marketing", "updated_at"]
    list_filter = ["project", "marketing"]
    search_fields = ["name", "subject"]


@admin.register(MailboxMessage)
class MailboxMessageAdmin(admin.ModelAdmin):
    list_display = ["created_at", "to", "subject", "test", "project"]
    list_filter = ["project", "test"]
    raw_id_fields = ["message"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
