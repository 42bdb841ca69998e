"""Operator tooling for campaigns. Every write goes through a service: lifecycle for a campaign's
status, policy_settings for the sending policy and the rate card; the outbox is read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.db import transaction
from django.utils.translation import gettext_lazy, ngettext_lazy

from controlpanel.services import Actor
from subscribers.admin import EstimatedCountPaginator
from subscribers.errors import InvalidInput

from . import history_views, lifecycle, policy_settings
from .models import (
    AudienceRow,
    Campaign,
    CampaignCounter,
    CampaignMinute,
    CampaignRecipient,
    CampaignStatus,
    Channel,
    Message,
    RateCardEntry,
    SendingPolicy,
)


class ReadOnlyFieldsMixin:
    """Every field shown, none editable: the rows have a service that keeps their invariants."""

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(ReadOnlyFieldsMixin, admin.ModelAdmin):
    """Operators look; the outbox is written by the send services only.

    Every field is read-only: the state machine lives in campaigns.services (a message set back to
    ``queued`` would be claimed and sent again, a changed wamid would settle another message's
    status), and messages are created through send_whatsapp, which checks the policy.
    """

    list_display = [
        "public_id", "project", "subscriber", "channel", "subject", "status", "opened", "created_at",
    ]  # fmt: skip
    list_filter = ["project", "channel", "status"]
    search_fields = ["public_id", "subscriber__phone", "subscriber__email", "wamid", "provider_message_id"]
    list_select_related = ["project", "subscriber"]
    raw_id_fields = ["subscriber", "campaign"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_queryset(self, request):
        rows = super().get_queryset(request).annotate(headline=history_views.headline())
        if request.resolver_match and request.resolver_match.url_name.endswith("_changelist"):
            # The list shows the subject, not the email's HTML: a page of mails stays small.
            rows = rows.defer("content", "components", "history")
        return rows

    @admin.display(description=gettext_lazy("Subject / title"))
    def subject(self, obj: Message) -> str:
        return obj.headline or ""

    @admin.display(description=gettext_lazy("Opened"), boolean=True)
    def opened(self, obj: Message) -> bool | None:
        return None if obj.channel == Channel.WHATSAPP else obj.opened_at is not None


# Per action: what the changelist's action menu says, and the note after it ran.
ACTION_TEXTS = {
    "pause": (
        gettext_lazy("Pause the selected campaigns"),
        ngettext_lazy("%(n)s campaign paused.", "%(n)s campaigns paused.", "n"),
    ),
    "resume": (
        gettext_lazy("Resume the selected campaigns"),
        ngettext_lazy("%(n)s campaign resumed.", "%(n)s campaigns resumed.", "n"),
    ),
    "cancel": (
        gettext_lazy("Cancel the selected campaigns"),
        ngettext_lazy("%(n)s campaign cancelled.", "%(n)s campaigns cancelled.", "n"),
    ),
}


def _lifecycle_action(name: str, verb: str):
    description, done_text = ACTION_TEXTS[name]

    def action(modeladmin, request, queryset) -> None:
        done, refused = 0, []
        actor = Actor(user=request.user)
        for campaign in queryset.select_related("project"):
            try:
                getattr(lifecycle, name)(campaign=campaign, actor=actor)
            except InvalidInput as exc:
                refused.append(f"{campaign.name}: {exc.message}")
            else:
                done += 1
        if done:
            modeladmin.message_user(request, done_text % {"n": done}, messages.SUCCESS)
        for line in refused:
            modeladmin.message_user(request, line, messages.WARNING)

    action.__name__ = f"{name}_campaigns"
    return admin.action(
        description=description,
        permissions=["lifecycle"],
        location=[ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM],
    )(action)


class CampaignRecipientInline(admin.TabularInline):
    model = CampaignRecipient
    fields = ["key", "values"]
    readonly_fields = ["key", "values"]
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        # An uploaded list can hold a million phones: the page shows the first ones only.
        return super().get_queryset(request).order_by("id")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyFieldsMixin, admin.ModelAdmin):
    """Read-mostly: status changes only through the actions, which call the lifecycle service (with
    its checks and audit entry); a direct edit of ``status`` would skip the snapshot or the
    cancel's skipping of queued rows. Only drafts can be deleted: a launched campaign's outbox rows
    are the record of what was sent."""

    list_display = ["name", "project", "status", "purpose", "template_name", "audience_size", "launched_at"]
    list_filter = ["project", "status", "purpose"]
    search_fields = ["name", "public_id", "template_name", "project__slug"]
    list_select_related = ["project"]
    date_hierarchy = "created_at"
    actions = [
        _lifecycle_action("pause", "paused"),
        _lifecycle_action("resume", "resumed"),
        _lifecycle_action("cancel", "cancelled"),
    ]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [*super().get_readonly_fields(request, obj), "recipients_waiting"]

    @admin.display(description=gettext_lazy("recipients still to be written to the outbox"))
    def recipients_waiting(self, obj: Campaign) -> int:
        # AudienceRow has a composite primary key, which the admin cannot list (materialize.py).
        return AudienceRow.objects.filter(campaign=obj).count()

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_lifecycle_permission(self, request) -> bool:
        return request.user.has_perm("campaigns.change_campaign")

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.status != CampaignStatus.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        actions = super().get_actions(request, action_location=action_location)
        # The bulk delete would not ask each campaign whether it is a draft.
        actions.pop("delete_selected", None)
        return actions


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(ReadOnlyFieldsMixin, admin.ModelAdmin):
    """The phones and per-recipient values given for a campaign; written with its draft."""

    list_display = ["key", "campaign"]
    search_fields = ["key", "campaign__name"]
    list_select_related = ["campaign"]
    raw_id_fields = ["campaign"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class _CounterAdmin(ReadOnlyFieldsMixin, admin.ModelAdmin):
    """Figures the writers keep (campaigns/counters.py); `manage.py recount_campaigns` rebuilds them."""

    raw_id_fields = ["campaign"]
    list_select_related = ["campaign"]
    search_fields = ["campaign__name"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CampaignCounter)
class CampaignCounterAdmin(_CounterAdmin):
    list_display = ["campaign", "status", "pricing_category", "free", "n", "replied", "clicked"]
    list_filter = ["status"]


@admin.register(CampaignMinute)
class CampaignMinuteAdmin(_CounterAdmin):
    list_display = ["campaign", "minute", "n"]


class SendingPolicyForm(forms.ModelForm):
    class Meta:
        model = SendingPolicy
        fields = ["cap_messages", "cap_days", "quiet_start", "quiet_end"]


@admin.register(SendingPolicy)
class SendingPolicyAdmin(admin.ModelAdmin):
    """Edits go through policy_settings.update_sending_policy (its limits, its audit entry)."""

    form = SendingPolicyForm
    list_display = ["project", "cap_messages", "cap_days", "quiet_start", "quiet_end", "updated_at"]
    list_select_related = ["project"]
    search_fields = ["project__slug", "project__name"]

    def has_add_permission(self, request) -> bool:
        return False  # one per project, created by the Settings -> Sending page

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        original_clean = form.clean

        def clean(self):
            cleaned = original_clean(self)
            if not self.errors:
                # Validated by the service inside a transaction that is rolled back, so the admin
                # shows the service's message on the field instead of a 500 at save time.
                try:
                    with transaction.atomic():
                        policy_settings.update_sending_policy(
                            project=self.instance.project,
                            actor=Actor(label="admin check"),
                            **{k: cleaned.get(k) for k in SendingPolicyForm.Meta.fields},
                        )
                        transaction.set_rollback(True)
                except InvalidInput as exc:
                    self.add_error(exc.field if exc.field in self.fields else None, exc.message)
            return cleaned

        form.clean = clean
        return form

    def save_model(self, request, obj: SendingPolicy, form, change: bool) -> None:
        saved = policy_settings.update_sending_policy(
            project=obj.project,
            actor=Actor(user=request.user),
            **{k: form.cleaned_data.get(k) for k in SendingPolicyForm.Meta.fields},
        )
        obj.pk, obj.updated_at = saved.pk, saved.updated_at


@admin.register(RateCardEntry)
class RateCardEntryAdmin(admin.ModelAdmin):
    """One price per category and country; edits through policy_settings.update_rate_card."""

    list_display = ["project", "category", "country", "price", "currency", "updated_at"]
    list_filter = ["project", "category"]
    search_fields = ["project__slug", "country"]
    list_select_related = ["project"]
    fields = ["project", "category", "country", "price", "currency", "updated_at"]
    readonly_fields = ["project", "category", "country", "currency", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False  # countries are added on the Settings -> Sending page

    def has_delete_permission(self, request, obj=None) -> bool:
        # The "every other country" rows price everyone the card has no row for.
        if obj is not None and not obj.country:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj: RateCardEntry, form, change: bool) -> None:
        policy_settings.update_rate_card(
            project=obj.project,
            actor=Actor(user=request.user),
            prices={(obj.category, obj.country): obj.price},
        )

    def delete_model(self, request, obj: RateCardEntry) -> None:
        policy_settings.update_rate_card(
            project=obj.project, actor=Actor(user=request.user), prices={(obj.category, obj.country): None}
        )

    def delete_queryset(self, request, queryset) -> None:
        for entry in queryset.exclude(country="").select_related("project"):
            self.delete_model(request, entry)
