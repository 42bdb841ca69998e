from django.contrib import admin

from .models import MessageTemplate, PhoneNumberEvent, WebhookDelivery, WhatsAppAccount


@admin.register(WhatsAppAccount)
class WhatsAppAccountAdmin(admin.ModelAdmin):
    list_display = [
        "display_phone_number",
        "project",
        "phone_number_id",
        "waba_id",
        "status",
        "quality_rating",
        "last_webhook_at",
    ]
    list_filter = ["project", "status"]
    search_fields = ["display_phone_number", "phone_number_id", "waba_id", "project__slug"]
    # Secrets are write-only: set them in the panel or with `manage.py connect_whatsapp`.
    exclude = ["access_token", "app_secret"]
    readonly_fields = ["public_id", "last_webhook_at", "created_at", "updated_at"]


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "language", "category", "status", "quality_score", "project", "synced_at"]
    list_filter = ["project", "status", "category", "language"]
    search_fields = ["name", "meta_id"]
    readonly_fields = ["public_id", "synced_at", "updated_at"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["received_at", "project", "account", "processed_at", "attempts", "error"]
    list_filter = ["project", ("processed_at", admin.EmptyFieldListFilter)]
    search_fields = ["body_sha256", "error"]
    readonly_fields = [
        "project",
        "account",
        "body_sha256",
        "body",
        "received_at",
        "processed_at",
        "attempts",
        "error",
    ]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(PhoneNumberEvent)
class PhoneNumberEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "project", "account", "field", "summary"]
    list_filter = ["project", "field"]
    search_fields = ["summary"]
