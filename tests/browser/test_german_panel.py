"""The panel in German, page by page: no English UI text remains, and every page is screenshotted.

A word counts as English when the English side of our own catalog uses it and the German side
never does (so "Segment", "Status" or "Journey", the same in both, are fine), plus English function
words no German sentence has. Product names and the demo data's own words are allowed. Screenshots
go to $SCREENSHOT_DIR (default: the test's tmp dir) to look at for German labels that overflow.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.conf import settings
from django.core.management import call_command

from controlpanel.models import Project, User

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOCALE = Path(settings.BASE_DIR) / "locale" / "de" / "LC_MESSAGES"
CATALOGS = [LOCALE / "django.po", LOCALE / "djangojs.po"]
# Words no German UI sentence contains: one of them on a German page is an untranslated text.
_ENGLISH_ONLY = (
    "the and of to for with your you this that is are not new from by on at or has have can each "
    "when which what who how more less than none yet here there after before until only any every "
    "its our we been were would should could these those into about them they their"
)
ENGLISH_ONLY = set(_ENGLISH_ONLY.split())
# Names, codes and units that are the same in both languages.
_ALLOWED = (
    "WhatsApp Meta WABA API CSV JSON SMTP FCM Firebase Liquid HTML Webhook Webhooks Opt-in Opt-out ID "
    "IDs URL Google Amazon SES Mailgun Postmark SendGrid Brevo Chart Tabler Django OTP Cloud Business "
    "Journey Journeys Segment Segmente Status Push Tag Tags Export Import Simulator Demo Shop "
    "English Deutsch Marketer Owner Viewer Bearer Authorization UTC Europe Berlin Marketing Utility "
    "Authentication Messaging"
)
ALLOWED = set(_ALLOWED.split())
APOSTROPHES = "'\u2019"
# Identifiers (follow_up_offer, whatsapp.connected) are one word, so they never look English.
WORD = re.compile(rf"[A-Za-zÄÖÜäöüß][\w.{APOSTROPHES}-]{{2,}}")


def _words(text: str) -> set[str]:
    return {w.strip(APOSTROPHES + "-.") for w in WORD.findall(text)}


def _english_vocabulary() -> set[str]:
    english, german = set(), set()
    for path in CATALOGS:
        if not path.exists():
            continue
        with path.open("rb") as f:
            for message in read_po(f):
                if not message.id:
                    continue
                ids = message.id if isinstance(message.id, tuple) else (message.id,)
                strings = message.string if isinstance(message.string, tuple) else (message.string,)
                for text in ids:
                    english |= _words(re.sub(r"%\(\w+\)[sd]|\{[^}]*\}|<[^>]+>", " ", text))
                for text in strings:
                    german |= _words(text or "")
    german_lower = {w.lower() for w in german}
    return {w for w in english if w.lower() not in german_lower} | ENGLISH_ONLY


# What the page shows people: visible text, plus the texts of attributes people read.
VISIBLE_TEXT = """() => {
  const parts = [document.title, document.body.innerText];
  const labelled = '[placeholder],[title],[aria-label],[data-confirm],input[type=submit],input[type=button]';
  for (const el of document.querySelectorAll(labelled)) {
    if (el.closest('[translate=no], [data-user-content], .wa-bubble')) continue;
    for (const a of ['placeholder', 'title', 'aria-label', 'data-confirm', 'value']) {
      const button = el.type === 'submit' || el.type === 'button';
      if (el.hasAttribute(a) && (a !== 'value' || button)) parts.push(el.getAttribute(a));
    }
  }
  // Texts people did not write us: subscriber names, message bodies, template texts, codes.
  // translate="no" (HTML's own word for it) marks identifiers: event names, attribute keys.
  const theirs = '[translate=no], [data-user-content], code, pre, .font-monospace, .wa-bubble, textarea, '
    + 'input[type=text], input[type=email], input[type=tel], iframe, select[name$=time_zone]';
  let skip = '';
  for (const el of document.querySelectorAll(theirs)) {
    skip += '\\n' + (el.innerText || el.value || '');
  }
  return {text: parts.join('\\n'), skip};
}"""


def _english_on(page, vocabulary: set[str], seen_user_words: set[str]) -> list[str]:
    found = page.evaluate(VISIBLE_TEXT)
    skip = _words(found["skip"]) | seen_user_words
    return sorted(w for w in _words(found["text"]) if w in vocabulary and w not in ALLOWED and w not in skip)


@pytest.fixture
def demo(live_server, settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.VAR_DIR = tmp_path  # bootstrap_demo writes its password file there, not in ./var
    call_command("bootstrap_demo", url=live_server.url + "/")
    user = User.objects.get(email="demo@example.com")
    user.set_password("Passwort-1234")
    user.language = ""  # the browser's language: German below
    user.save()
    return Project.objects.get(slug="demo"), user


def _shots() -> Path | None:
    path = os.environ.get("SCREENSHOT_DIR")
    return Path(path) if path else None


def test_the_main_pages_in_german_have_no_english_left(browser, live_server, demo, tmp_path, settings):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    project, user = demo
    shots = _shots() or tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 1280, "height": 900},
        locale="de-DE",
        extra_http_headers={"Accept-Language": "de-DE,de;q=0.9"},
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    vocabulary = _english_vocabulary()
    # Words of the demo data (names, template bodies, event names) are not UI text.
    user_words = _demo_words(project)

    def visit(path: str, name: str) -> None:
        response = page.goto(path)
        page.wait_for_load_state("networkidle")
        assert response is not None and response.status < 400, f"{path}: {response and response.status}"
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        english = _english_on(page, vocabulary, user_words)
        if english:
            problems.append(f"{name} ({path}): {', '.join(english)}")

    visit("/accounts/login/", "login")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", "Passwort-1234")
    page.click("button[type=submit]")
    page.wait_for_url("**/p/demo/")

    base = "/p/demo"
    subscriber = project.subscribers.order_by("created_at").first()
    for path, name in [
        (f"{base}/", "dashboard"),
        (f"{base}/subscribers/", "subscribers"),
        (f"{base}/subscribers/{subscriber.public_id}/", "subscriber"),
        (f"{base}/subscribers/add/", "subscriber-add"),
        (f"{base}/subscribers/import/", "import"),
        (f"{base}/subscribers/tags/", "tags"),
        (f"{base}/subscribers/events/", "events"),
        (f"{base}/segments/", "segments"),
        (f"{base}/segments/new/", "segment-builder"),
        (f"{base}/templates/", "templates"),
        (f"{base}/templates/new/", "template-new"),
        (f"{base}/campaigns/", "campaigns"),
        (f"{base}/campaigns/new/", "composer"),
        (f"{base}/messages/", "messages"),
        (f"{base}/conversations/", "conversations"),
        (f"{base}/journeys/", "journeys"),
        (f"{base}/journeys/keyword/new/", "keyword-new"),
        (f"{base}/email/", "email-templates"),
        (f"{base}/email/new/", "email-template-new"),
        (f"{base}/email/settings/", "email-settings"),
        (f"{base}/email/mailbox/", "mailbox"),
        (f"{base}/push/", "push-templates"),
        (f"{base}/push/new/", "push-new"),
        (f"{base}/push/settings/", "push-settings"),
        (f"{base}/settings/", "settings"),
        (f"{base}/settings/whatsapp/", "whatsapp-connection"),
        (f"{base}/settings/whatsapp/automatic-replies/", "automatic-replies"),
        (f"{base}/settings/sending/", "sending-settings"),
        (f"{base}/settings/members/", "members"),
        (f"{base}/settings/api-keys/", "api-keys"),
        (f"{base}/settings/audit/", "audit"),
        ("/account/profile/", "profile"),
    ]:
        visit(path, name)

    # A journey in the builder, its stats and dry run: made through the panel like a marketer would.
    page.goto(f"{base}/journeys/")
    page.locator("form[action$='/journeys/new/'] button, a[href$='/journeys/new/']").first.click()
    page.wait_for_load_state("networkidle")
    if "/journeys/" in page.url and page.url.rstrip("/").split("/")[-1] not in ("journeys", "new"):
        journey = page.url.rstrip("/").split("/")[-1]
        visit(f"{base}/journeys/{journey}/", "journey-builder")
        visit(f"{base}/journeys/{journey}/stats/", "journey-stats")
        page.wait_for_function("() => window.Chart && Chart.getChart('journey-chart')")
        last_day = page.evaluate("() => Chart.getChart('journey-chart').data.labels.at(-1)")
        assert re.fullmatch(r"\d\d\.\d\d\.", last_day), f"the chart's days in German: {last_day}"
        visit(f"{base}/journeys/{journey}/dry-run/", "journey-dryrun")
    else:
        problems.append(f"no journey builder reached from the journeys page: {page.url}")

    context.close()
    assert problems == [], "\n".join(problems)


def _demo_words(project: Project) -> set[str]:
    """Words the demo data itself contains: people's names, template texts, event and tag names."""
    from subscribers.models import ConsentChange, Event, EventDefinition, Subscriber
    from whatsapp.models import MessageTemplate

    texts: list[str] = []
    texts += Subscriber.objects.filter(project=project).values_list("name", flat=True)
    texts += map(str, MessageTemplate.objects.filter(project=project).values_list("components", flat=True))
    texts += EventDefinition.objects.filter(project=project).values_list("name", flat=True)
    texts += map(str, EventDefinition.objects.filter(project=project).values_list("attributes", flat=True))
    texts += map(str, Event.objects.filter(project=project).values_list("attributes", flat=True)[:5000])
    texts += ConsentChange.objects.filter(project=project).values_list("evidence", flat=True).distinct()
    words: set[str] = set()
    for text in texts:
        words |= _words(re.sub(r"[{}\[\]'\":,=]", " ", text or ""))
    return words
