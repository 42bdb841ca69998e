from django.contrib import admin

from .models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["public_id", "project", "subscriber", "channel", "status", "created_at"]
    list_filter = ["project", "channel", "status"]
    search_fields = ["public_id", "subscriber__phone"]
    raw_id_fields = ["subscriber"]
    readonly_fields = ["public_id", "created_at", "updated_at"]
    list_select_related = ["project", "subscriber"]
