"""Template helpers for the panel's look (Tabler classes on Django form widgets)."""

from __future__ import annotations

from django import forms, template
from django.utils.translation import gettext_lazy as _

from controlpanel.wording import mid_sentence as in_sentence

register = template.Library()

# The audit log's action keys (machine values, stored as they are) as people read them; a key not
# listed here shows as derived from its spelling ("member.role_changed" -> "Member role changed").
ACTION_LABELS = {
    "api_key.created": _("API key created"),
    "api_key.revoked": _("API key revoked"),
    "attribute_index.removed": _("Attribute index removed"),
    "attribute_index.requested": _("Attribute index requested"),
    "campaign.cancel": _("Campaign cancelled"),
    "campaign.complete": _("Campaign completed"),
    "campaign.create": _("Campaign created"),
    "campaign.launch": _("Campaign launched"),
    "campaign.pause": _("Campaign paused"),
    "campaign.resume": _("Campaign resumed"),
    "campaign.start": _("Campaign started"),
    "campaign.test_send": _("Campaign test sent"),
    "campaign.update": _("Campaign updated"),
    "consent.exported": _("Consent exported"),
    "device.registered": _("Device registered"),
    "device.reregistered": _("Device registered again"),
    "email_settings.created": _("Email settings created"),
    "email_settings.tested": _("Email settings tested"),
    "import.deleted": _("Import deleted"),
    "import.encoding_chosen": _("Import encoding chosen"),
    "import.finished": _("Import finished"),
    "import.started": _("Import started"),
    "import.uploaded": _("Import uploaded"),
    "journey.activate": _("Journey activated"),
    "journey.clone": _("Journey cloned"),
    "journey.create": _("Journey created"),
    "journey.import": _("Journey imported"),
    "journey.pause": _("Journey paused"),
    "journey.resume": _("Journey resumed"),
    "journey.stop": _("Journey stopped"),
    "journey.update": _("Journey updated"),
    "member.invitation_revoked": _("Member invitation revoked"),
    "member.invited": _("Member invited"),
    "member.joined": _("Member joined"),
    "member.removed": _("Member removed"),
    "member.role_changed": _("Member role changed"),
    "project.created": _("Project created"),
    "project.updated": _("Project updated"),
    "push.settings_changed": _("Push settings changed"),
    "rate_card.reset": _("Rate card reset"),
    "rate_card.update": _("Rate card updated"),
    "segment.created": _("Segment created"),
    "segment.deleted": _("Segment deleted"),
    "sending_policy.update": _("Sending policy updated"),
    "subscriber.device_removed": _("Subscriber device removed"),
    "subscriber.email_deliverable": _("Subscriber email deliverable"),
    "subscriber.erased": _("Subscriber erased"),
    "subscriber.exported": _("Subscriber exported"),
    "subscriber.phone_changed": _("Subscriber phone changed"),
    "subscriber.updated": _("Subscriber updated"),
    "subscribers.exported": _("Subscribers exported"),
    "whatsapp.connected": _("WhatsApp connected"),
    "whatsapp.resumed": _("WhatsApp resumed"),
    "whatsapp.template_submitted": _("WhatsApp template submitted"),
}


@register.simple_tag
def widget(field: forms.BoundField) -> str:
    w = field.field.widget
    if isinstance(w, forms.CheckboxInput):
        css = "form-check-input"
    elif isinstance(w, forms.Select):
        css = "form-select"
    else:
        css = "form-control"
    if field.errors:
        css += " is-invalid"
    # The widget's own classes (e.g. font-monospace on a code box) stay: attrs given here replace.
    css = " ".join(dict.fromkeys([*css.split(), *w.attrs.get("class", "").split()]))
    return field.as_widget(attrs={"class": css})


@register.filter
def change_text(value) -> str:
    """An audit change as text: [old, new] pairs become "old → new"."""
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"{value[0]} → {value[1]}"
    return str(value)


@register.filter
def action_label(action: str) -> str:
    """``member.role_changed`` -> "Member role changed" (in the reader's language, if listed)."""
    label = ACTION_LABELS.get(action)
    if label is not None:
        return str(label)
    return action.replace(".", " ").replace("_", " ").capitalize()


@register.filter
def pairs(mapping) -> list:
    """``dict.items()`` for templates: ``d.items`` would find a key named "items" first."""
    return list(mapping.items()) if isinstance(mapping, dict) else []


@register.simple_tag
def javascript_catalog_url() -> str:
    """The JavaScript catalog's URL for the active language (controlpanel.i18n_views)."""
    from controlpanel.i18n_views import javascript_catalog_url as url

    return url()


@register.filter
def mid_sentence(label) -> str:
    """``{{ status|mid_sentence }}``: a choice label inside a sentence (lower case in English only)."""
    return in_sentence(label)
