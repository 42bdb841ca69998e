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
    """``member.role_changed`` -> "Member role changed"."""
    return action.replace(".", " ").replace("_", " ").capitalize()


@register.filter
def pairs(mapping) -> list:
    """``dict.items()`` for templates: ``d.items`` would find a key named "items" first."""
    return list(mapping.items()) if isinstance(mapping, dict) else []
