"""Template tags of the WhatsApp pages."""

from __future__ import annotations

from django import template
from django.utils.html import json_script
from django.utils.safestring import SafeString

from whatsapp import placeholders

register = template.Library()


@register.simple_tag
def placeholder_grammar() -> SafeString:
    """The placeholder patterns for the page's JavaScript, as <script id="placeholder-grammar">:
    the browser reads the server's grammar instead of keeping its own copy."""
    return json_script(placeholders.browser_grammar(), "placeholder-grammar")
