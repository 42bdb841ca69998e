"""The unsubscribe link of our emails: a page on GET, the ledger on POST (RFC 8058 one-click too)."""

from __future__ import annotations

import pytest
from django.test import Client

from campaigns.channel_policy import EMAIL_OPTED_OUT, email_refusal
from mail import tracking
from subscribers.models import ConsentChange, ConsentSource, ConsentState, Event
from tests.mail.test_tracking import email_message, path_of

pytestmark = pytest.mark.django_db
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def recipient():
    """A mail client or a person's browser: no session, and CSRF enforced as in production."""
    return Client(enforce_csrf_checks=True)


def test_get_shows_a_button_and_unsubscribes_nobody(recipient, project):
    message = email_message(project)

    response = recipient.get(path_of(tracking.unsubscribe_url(message)))

    assert response.status_code == 200
    assert b'data-testid="unsubscribe-confirm"' in response.content
    assert project.name in response.text and "a•••@example.com" in response.text  # masked
    message.subscriber.refresh_from_db()
    assert message.subscriber.email_consent == ConsentState.OPTED_IN
    assert not ConsentChange.objects.exists()


def test_one_click_post_opts_out_with_source_and_evidence(recipient, project):
    message = email_message(project)
    # The URL a mail client takes from the header, POSTed without cookies or a CSRF token.
    header_url = tracking.headers(message)["List-Unsubscribe"].strip("<>")

    response = recipient.post(path_of(header_url), ONE_CLICK)

    assert response.status_code == 200
    assert b'data-testid="unsubscribed"' in response.content
    change = ConsentChange.objects.get()
    assert (change.channel, change.state, change.source) == (
        "email",
        "opted_out",
        ConsentSource.UNSUBSCRIBE_LINK,
    )
    assert str(message.public_id) in change.evidence and "Spring sale" in change.evidence
    assert "one-click" in change.evidence
    assert Event.objects.filter(name="Unsubscribed", attributes__channel="email").count() == 1
    message.subscriber.refresh_from_db()
    # Acceptance 2: the next marketing email to this person is refused, and the ledger says why.
    assert email_refusal(message.subscriber, marketing=True) == EMAIL_OPTED_OUT


def test_the_page_s_button_needs_its_csrf_token(recipient, project):
    message = email_message(project)
    url = path_of(tracking.unsubscribe_url(message))

    refused = recipient.post(url, {})
    page = recipient.get(url)
    confirmed = recipient.post(url, {"csrfmiddlewaretoken": page.context["csrf_token"]})

    assert refused.status_code == 403
    assert confirmed.status_code == 200 and b'data-testid="unsubscribed"' in confirmed.content
    assert "confirmation page" in ConsentChange.objects.get().evidence


def test_a_second_unsubscribe_writes_nothing_new(recipient, project):
    message = email_message(project)
    url = path_of(tracking.unsubscribe_url(message))

    recipient.post(url, ONE_CLICK)
    again = recipient.post(url, ONE_CLICK)

    assert again.status_code == 200
    # Back on the page later: it says so instead of offering the button again.
    assert b'data-testid="unsubscribed"' in recipient.get(url).content
    assert ConsentChange.objects.count() == 1
    assert Event.objects.filter(name="Unsubscribed").count() == 1


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_bad_token_unsubscribes_nobody(recipient, project, method):
    message = email_message(project)
    token = path_of(tracking.unsubscribe_url(message)).split("/")[3]
    open_token = path_of(tracking.open_url(message)).split("/")[3].removesuffix(".gif")

    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), open_token, "nonsense"):
        response = getattr(recipient, method)(f"/email/u/{bad}/", ONE_CLICK if method == "post" else None)
        assert response.status_code == 404
        assert b'data-testid="unsubscribe-invalid"' in response.content
    assert not ConsentChange.objects.exists()
