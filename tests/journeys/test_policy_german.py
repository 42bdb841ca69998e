"""A template's status inside a translated problem reads as the panel shows it, in German too."""

from __future__ import annotations

import pytest
from django.utils import translation

from journeys.steps import CheckContext
from journeys.steps import get as step_type
from tests.journeys.helpers import make_account, make_template
from whatsapp.models import TemplateStatus

pytestmark = pytest.mark.django_db

STEP = {"id": "offer", "type": "whatsapp_template", "template": {"name": "support_menu", "language": "de"}}


def _problem(project, language: str) -> str:
    ctx = CheckContext(project=project, definition={"steps": [STEP]}, strict=True)
    with translation.override(language):
        problems = [p for p in step_type("whatsapp_template").check(STEP, ctx) if p.field == "template"]
    assert len(problems) == 1
    return problems[0].message


@pytest.mark.parametrize(
    ("status", "german", "english"),
    [
        (TemplateStatus.PAUSED, "„Pausiert“", "is paused."),
        (TemplateStatus.PENDING, "„In Prüfung“", "is pending review."),
        ("SOMETHING_NEW", "„Something new“", "is something new."),  # a status Meta added later
    ],
)
def test_an_unapproved_templates_status_is_its_label(project, status, german, english):
    make_template(make_account(project), status=status)
    assert _problem(project, "de") == f"Die Vorlage support_menu (de) ist im Status {german}."
    assert _problem(project, "en").endswith(english)
