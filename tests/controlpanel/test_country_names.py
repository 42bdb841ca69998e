"""The project's default-country select lists countries by name, in the order of the names."""

from __future__ import annotations

import re

from django.urls import reverse

from controlpanel.models import COUNTRY_CHOICES


def test_the_country_select_shows_country_names(owner_client, project):
    page = owner_client.get(reverse("controlpanel:settings", args=[project.slug])).content.decode()
    select = re.search(r'<select name="default_country".*?</select>', page, re.S).group(0)
    assert '<option value="DE" selected>Germany (+49)</option>' in select
    assert '<option value="CI">Côte d&#x27;Ivoire (+225)</option>' in select
    labels = re.findall(r'<option value="[A-Z]{2}"[^>]*>([^<]+)</option>', select)
    assert labels == sorted(labels) and len(labels) == len(COUNTRY_CHOICES)
    # Every region has a name, none falls back to its bare code.
    assert not [label for label in labels if re.fullmatch(r"[A-Z]{2} \(\+\d+\)", label)]
