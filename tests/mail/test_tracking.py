"""Open pixel, click redirects and the unsubscribe headers of the emails we send (mail/tracking.py)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.utils import timezone

from campaigns.models import Channel, Message, MessageStatus
from mail import tracking
from subscribers.models import ConsentState, Event
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db
BASE = "https://mail.example.com"


@pytest.fixture(autouse=True)
def _public_base(settings):
    settings.PUBLIC_BASE_URL = BASE


def email_message(project, *, marketing: bool = True, **fields) -> Message:
    """An email as the channel sender leaves it: sent, with its rendered content."""
    subscriber = fields.pop("subscriber", None) or SubscriberFactory(
        project=project, email="ada@example.com", email_consent=ConsentState.OPTED_IN
    )
    defaults = {
        "channel": Channel.EMAIL,
        "status": MessageStatus.SENT,
        "marketing": marketing,
        "sent_at": timezone.now(),
        "content": {"subject": "Spring sale", "html": "<p>Hi</p>", "text": "Hi"},
    }
    return Message.objects.create(project=project, subscriber=subscriber, **{**defaults, **fields})


def path_of(url: str) -> str:
    return urlsplit(url).path


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html, re.IGNORECASE)


def test_links_go_through_a_signed_redirect_and_the_rest_stay(project):
    message = email_message(project)
    html = (
        "<html><head><link href='https://cdn.example.com/x.css' rel=stylesheet></head><body>"
        '<a href="https://shop.example.com/sale?a=1&amp;b=2">Sale</a>'
        "<a class=x href='http://example.org/'>Old</a>"
        "<A HREF=HTTPS://EXAMPLE.NET/UP>Up</A>"
        '<a href="https://shop.example.com/line\n  break">Wrapped by an editor</a>'
        '<a href="mailto:help@example.com">Mail</a><a href="#top">Top</a><a href="tel:+49301234">Call</a>'
        '<a href="//evil.example/">Relative</a>'
        f'<a href="{tracking.unsubscribe_url(message)}">Unsubscribe</a>'
        "</body></html>"
    )
    out = tracking.instrument(html, message)

    links = hrefs(out)
    clicks = [h for h in links if h.startswith(f"{BASE}/email/c/")]
    assert len(clicks) == 4
    targets = [tracking.read_token(tracking.CLICK, path_of(h).split("/")[3])[1] for h in clicks]
    # The HTML entity is the HTML's; the redirect goes to the URL a browser would have followed.
    assert targets == [
        "https://shop.example.com/sale?a=1&b=2",
        "http://example.org/",
        "HTTPS://EXAMPLE.NET/UP",
        "https://shop.example.com/line  break",  # as a browser reads it: no line break in a Location
    ]
    assert "mailto:help@example.com" in links and "#top" in links and "tel:+49301234" in links
    assert "//evil.example/" in links
    assert tracking.unsubscribe_url(message) in links
    assert "href='https://cdn.example.com/x.css'" in out  # a stylesheet is not a click
    # The pixel sits inside the body, and the template's own unsubscribe link is not doubled.
    pixel = f'<img src="{tracking.open_url(message)}"'
    assert pixel in out and out.index(pixel) < out.index("</body>")
    assert out.count("/email/u/") == 1


def test_a_marketing_email_without_an_unsubscribe_link_gets_one(project):
    marketing = tracking.instrument("<p>Hi</p>", email_message(project))
    receipt = email_message(project, marketing=False)
    transactional = tracking.instrument("<p>Your receipt</p>", receipt)

    assert "/email/u/" in marketing and ">Unsubscribe</a>" in marketing
    assert "/email/u/" not in transactional
    assert tracking.open_url(receipt) in transactional  # opens are tracked for every email


def test_unsubscribe_headers_for_marketing_emails_only(project):
    message = email_message(project)

    headers = tracking.headers(message)

    assert headers == {
        "List-Unsubscribe": f"<{tracking.unsubscribe_url(message)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert headers["List-Unsubscribe"].startswith(f"<{BASE}/email/u/")
    assert tracking.headers(email_message(project, marketing=False)) == {}
    # Stable: Liquid's {{ unsubscribe_url }} rendered when the row was written is the same link.
    assert tracking.unsubscribe_url(message) == tracking.unsubscribe_url(Message.objects.get(pk=message.pk))


def test_without_public_base_url_links_point_where_the_server_listens(project, settings, monkeypatch):
    settings.PUBLIC_BASE_URL = ""
    monkeypatch.setenv("HOST", "0.0.0.0")  # noqa: S104 - a bind address, as `serve` gets it
    monkeypatch.setenv("PORT", "9001")

    assert tracking.unsubscribe_url(email_message(project)).startswith("http://127.0.0.1:9001/email/u/")


def test_a_click_records_the_event_and_redirects_to_the_signed_url(client, project):
    message = email_message(project, content={"subject": "S", "origin": {"journey": "j-1", "step": "s-2"}})
    url = "https://shop.example.com/sale?a=1&b=2"

    first = client.get(path_of(tracking.click_url(message, url)))
    again = client.get(path_of(tracking.click_url(message, url)))
    other = client.get(path_of(tracking.click_url(message, "https://shop.example.com/other")))

    assert first.status_code == again.status_code == other.status_code == 302
    assert first["Location"] == url
    clicks = Event.objects.filter(name="EmailClicked").order_by("id")
    assert [e.attributes["url"] for e in clicks] == [url, "https://shop.example.com/other"]
    assert clicks[0].attributes["message"] == str(message.public_id)
    assert (clicks[0].attributes["journey"], clicks[0].attributes["step"]) == ("j-1", "s-2")
    message.refresh_from_db()
    assert message.clicked_at is not None


def _forge_click(url: str) -> str:
    """A click token for ``url`` as someone without our SECRET_KEY would make it."""
    return signing.Signer(key="not-our-key", salt="mail.tracking.click").sign_object(["x" * 22, url])


def test_forged_or_edited_click_tokens_are_a_404_and_no_redirect(client, project):
    message = email_message(project)
    good = path_of(tracking.click_url(message, "https://shop.example.com/"))
    token = good.split("/")[3]
    value, _, signature = token.rpartition(":")
    evil = signing.Signer(salt="other").sign_object(
        [tracking._short_id(message.public_id), "https://evil.example/"]
    )
    attempts = [
        f"/email/c/{value}:{signature[:-2]}xx/",  # signature edited
        f"/email/c/{evil.rpartition(':')[0]}:{signature}/",  # payload swapped, signature kept
        f"/email/c/{_forge_click('https://evil.example/')}/",  # signed with another key
        f"/email/c/{evil}/",  # signed by us, but for another purpose (salt)
        "/email/c/" + path_of(tracking.open_url(message)).split("/")[3].removesuffix(".gif") + "/",
        "/email/c/https:%2F%2Fevil.example/",
    ]

    for attempt in attempts:
        response = client.get(attempt)
        assert response.status_code == 404, attempt
        assert "Location" not in response
    assert not Event.objects.filter(name="EmailClicked").exists()


def test_only_http_urls_are_ever_redirected_to(project):
    message = email_message(project)
    signer = signing.Signer(salt="mail.tracking.click")
    short = tracking._short_id(message.public_id)

    assert tracking.read_token(tracking.CLICK, signer.sign_object([short, "javascript:alert(1)"])) is None
    assert tracking.read_token(tracking.CLICK, signer.sign_object([short, "https://ok.example/"])) == (
        message.public_id,
        "https://ok.example/",
    )
    # instrument never signs anything else in the first place
    assert "/email/c/" not in tracking.instrument('<a href="javascript:alert(1)">x</a>', message)


def test_the_pixel_records_one_open_and_is_always_a_gif(client, project):
    message = email_message(project)
    pixel = path_of(tracking.open_url(message))

    first, again = client.get(pixel), client.get(pixel)
    forged = client.get("/email/o/nonsense:abc.gif")
    headed = client.head(path_of(tracking.open_url(email_message(project))))

    for response in (first, again, forged, headed):
        assert response.status_code == 200
        assert response["Content-Type"] == "image/gif"
        assert "no-store" in response["Cache-Control"]
    assert first.content.startswith(b"GIF89a")
    assert Event.objects.filter(name="EmailOpened").count() == 1
    message.refresh_from_db()
    assert message.opened_at is not None and message.delivered_at is not None


def test_a_token_for_another_channel_s_message_names_nothing(client, project):
    push = email_message(project, channel=Channel.PUSH)

    assert client.get(path_of(tracking.open_url(push))).status_code == 200
    assert not Event.objects.filter(name__in=["EmailOpened", "PushOpened"]).exists()
