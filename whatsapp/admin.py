from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from controlpanel.services import Actor

from . import automatic_texts, services
from .forms import ConnectionForm
from .models import (
    AccountStatus,
    AutomaticText,
    MessageTemplate,
    PhoneNumberEvent,
    WebhookDelivery,
    WhatsAppAccount,
)


@admin.register(WhatsAppAccount)
class WhatsAppAccountAdmin(admin.ModelAdmin):
    """Edits go through services.save_connection (validation of the endpoint, audit entry, cache
    reset); the sending status changes only through the resume service (the action below)."""

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
    # The panel's form: the same checks (allowed endpoints, secrets re-entered when the endpoint
    # or account changes, throughput range), secrets write-only.
    form = ConnectionForm
    # Status only changes through the resume action (services.resume_sending).
    readonly_fields = ["project", "public_id", "status", "status_reason", "last_webhook_at", "created_at"]
    fields = [*ConnectionForm.Meta.fields, *ConnectionForm.declared_fields, *readonly_fields]
    actions = ["resume_sending"]

    def has_add_permission(self, request) -> bool:
        # A connection belongs to a project: Settings → WhatsApp or `manage.py connect_whatsapp`.
        return False

    def save_model(self, request, obj: WhatsAppAccount, form, change: bool) -> None:
        stored = WhatsAppAccount.objects.select_related("project").get(pk=obj.pk)
        editable = {*ConnectionForm.Meta.fields, *ConnectionForm.declared_fields}
        services.save_connection(
            project=stored.project,
            account=stored,
            fields={name: form.cleaned_data[name] for name in form.changed_data if name in editable},
            actor=Actor(user=request.user),
        )

    @admin.action(description=_("Resume sending (after fixing the account-level error)"))
    def resume_sending(self, request, queryset) -> None:
        resumed = 0
        for account in queryset.filter(status=AccountStatus.SUSPENDED).select_related("project"):
            services.resume_sending(account=account, actor=Actor(user=request.user))
            resumed += 1
        self.message_user(
            request,
            ngettext(
                "Sending resumed for %(count)s account.", "Sending resumed for %(count)s accounts.", resumed
            )
            % {"count": resumed},
        )


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "language", "category", "status", "quality_score", "project", "synced_at"]
    list_filter = ["project", "status", "category", "language"]
    search_fields = ["name", "meta_id"]
    readonly_fields = ["public_id", "synced_at", "updated_at"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["received_at", "project", "account", "processed_at", "attempts", "malformed", "error"]
    list_filter = ["project", "malformed", ("processed_at", admin.EmptyFieldListFilter)]
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
        "malformed",
    ]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(PhoneNumberEvent)
class PhoneNumberEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "project", "account", "field", "summary"]
    list_filter = ["project", "field"]
    search_fields = ["summary"]


@admin.register(AutomaticText)
class AutomaticTextAdmin(admin.ModelAdmin):
    """Edits go through automatic_texts.save_texts (limits, audit entry); new languages are added in
    the panel (Settings → WhatsApp → Automatic replies)."""

    list_display = ["project", "language", "kind", "text", "updated_at"]
    list_filter = ["project", "kind", "language"]
    search_fields = ["text", "project__slug"]
    readonly_fields = ["project", "kind", "language", "updated_at"]
    fields = ["project", "kind", "language", "text", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def save_model(self, request, obj: AutomaticText, form, change: bool) -> None:
        automatic_texts.save_texts(
            project=obj.project,
            language=obj.language,
            texts={obj.kind: obj.text},
            actor=Actor(user=request.user),
        )
