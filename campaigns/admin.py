from django.contrib import admin

from .models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Operators look; the outbox is written by the send services only.

    Every field is read-only: the state machine lives in campaigns.services (a message set back to
    ``queued`` would be claimed and sent again, a changed wamid would settle another message's
    status), and messages are created through send_whatsapp, which checks the policy.
    """

    list_display = ["public_id", "project", "subscriber", "channel", "status", "created_at"]
    list_filter = ["project", "channel", "status"]
    search_fields = ["public_id", "subscriber__phone"]
    list_select_related = ["project", "subscriber"]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
