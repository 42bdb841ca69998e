"""The builder and the statistics page for email and push steps."""

from __future__ import annotations

import pytest
from django.urls import reverse

from journeys import counters
from journeys.models import Journey, JourneyStatus, JourneyVersion
from mail.models import EmailTemplate
from push.models import PushTemplate

pytestmark = pytest.mark.django_db

OMNI = {
    "name": "Omni",
    "entry": {"type": "api"},
    "steps": [
        {
            "id": "reach",
            "type": "reachability",
            "channels": ["push", "email"],
            "push": "push",
            "email": "mail",
        },
        {"id": "push", "type": "send_push", "template": "cart_push"},
        {"id": "mail", "type": "send_email", "template": "cart_mail"},
    ],
}


def _journey(project, status=JourneyStatus.DRAFT, version=0) -> Journey:
    journey = Journey.objects.create(
        project=project, name="Omni", definition=OMNI, status=status, version=version
    )
    if version:
        JourneyVersion.objects.create(project=project, journey=journey, number=version, definition=OMNI)
    return journey


def test_the_builder_offers_the_projects_email_and_push_templates_and_channel_counters(owner_client, project):
    mail = EmailTemplate.objects.create(
        project=project, name="cart_mail", subject="Your cart", marketing=False
    )
    PushTemplate.objects.create(project=project, name="cart_push", title="Still hungry?", body="b")
    journey = _journey(project)
    page = owner_client.get(reverse("journeys:builder", args=[project.slug, journey.public_id]))
    assert page.status_code == 200
    data = page.context["data"]
    palette = {t["type"]: t for t in data["types"]}
    assert (palette["send_email"]["channel"], palette["send_push"]["channel"]) == ("email", "push")
    assert palette["send_email"]["counters"] == [
        ["sent", "sent"],
        ["opened", "opened"],
        ["clicked", "clicked"],
        ["bounced", "bounced"],
    ]
    assert palette["send_push"]["counters"] == [["sent", "sent"], ["opened", "opened"]]
    assert palette["wait"]["counters"] == []
    assert data["channel_templates"]["email"] == [
        {"id": str(mail.public_id), "name": "cart_mail", "marketing": False, "preview": "Your cart"}
    ]
    assert [t["name"] for t in data["channel_templates"]["push"]] == ["cart_push"]
    assert {"EmailOpened", "EmailClicked", "PushOpened"} <= set(data["events"])


def test_the_builder_lists_only_this_projects_templates(owner_client, project):
    from tests.factories import ProjectFactory

    EmailTemplate.objects.create(project=ProjectFactory(), name="foreign", subject="x")
    journey = _journey(project)
    data = owner_client.get(reverse("journeys:builder", args=[project.slug, journey.public_id])).context[
        "data"
    ]
    assert data["channel_templates"] == {"email": [], "push": []}


def test_the_statistics_page_shows_each_channels_counters(owner_client, project):
    journey = _journey(project, status=JourneyStatus.ACTIVE, version=1)
    counters.bump(
        project.pk,
        journey.pk,
        {
            ("mail", "sent"): 4,
            ("mail", "opened"): 3,
            ("mail", "bounced"): 1,
            ("push", "sent"): 2,
            ("push", "opened"): 1,
        },
    )
    page = owner_client.get(reverse("journeys:stats", args=[project.slug, journey.public_id]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-channel="email"' in html and 'data-channel="push"' in html
    assert 'data-testid="step-counter" data-key="bounced">bounced: 1<' in html
    assert 'data-testid="step-counter" data-key="opened">opened: 3<' in html
    assert 'data-testid="channel-counter" data-key="opened">opened: 1<' in html  # push


def test_the_dry_run_path_lists_a_reachability_chains_ways_out(project, owner_client):
    journey = _journey(project)
    page = owner_client.get(
        reverse("journeys:dryrun", args=[project.slug, journey.public_id])
    ).content.decode()
    assert "push → push" in page and "email → mail" in page and "none → end" in page
