from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .models import Project, Role, User, country_choices


class SecretTextarea(forms.Textarea):
    """A textarea that never renders its value back (as ``PasswordInput``): a pasted key that did
    not validate is not echoed into the page."""

    def format_value(self, value: Any) -> None:
        return None


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name", "time_zone", "default_country"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Country names in the reader's language, in that language's order.
        self.fields["default_country"].choices = country_choices()


class InviteForm(forms.Form):
    email = forms.EmailField(label=_("Email"))
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MARKETER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices)


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label=_("Name"), max_length=100, help_text=_("What uses this key, e.g. “Shop backend”.")
    )


class SignupForm(forms.Form):
    """Account creation for someone who accepts an invitation with a new email."""

    name = forms.CharField(label=_("Name"), max_length=150)
    password1 = forms.CharField(label=_("Password"), widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label=_("Repeat password"), widget=forms.PasswordInput, strip=False)

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self):
        cleaned = super().clean()
        p1, p2 = cleaned.get("password1"), cleaned.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", gettext("The two passwords differ."))
        elif p1:
            try:
                password_validation.validate_password(p1, User(email=self.email))
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


class ProfileForm(forms.ModelForm):
    """A user's own name and panel language (empty language: the browser's)."""

    class Meta:
        model = User
        fields = ["name", "language"]
        labels = {"name": _("Your name"), "language": _("Panel language")}
        help_texts = {"language": _("Without a choice the panel follows your browser's language.")}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = [("", _("Browser's language")), *settings.LANGUAGES]
