"""Template helpers for the panel's look (Tabler classes on Django form widgets)."""

from __future__ import annotations

from django import forms, template

register = template.Library()


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
    return field.as_widget(attrs={"class": css})
