from django.contrib import admin

from .models import Subscriber


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ["phone", "name", "project", "whatsapp_consent", "last_inbound_at", "created_at"]
    list_filter = ["project", "whatsapp_consent", "country", "language"]
    search_fields = ["phone", "name", "external_id", "email", "public_id"]
    readonly_fields = ["public_id", "created_at", "updated_at"]
    list_select_related = ["project"]
