"""Every project page and partial in German, with a project full of things: no error, no
unformatted placeholder, and no German decimal comma where a script or a URL reads a number.

The URL list is the tenancy walk (tests/controlpanel/test_tenancy.py), so a new page is covered
the day it is added. Object URLs get the id of a real object of the right kind.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import CampaignStatus, Message, MessageStatus
from controlpanel.models import Role
from controlpanel.services import SYSTEM
from journeys import services as journey_services
from mail.models import MailboxMessage
from push.models import PushTemplate
from subscribers.demo import seed_demo_audience
from subscribers.models import Segment, Subscriber, TagDefinition
from subscribers.segments.text import parse_rule
from tests.campaigns.conftest import make_template
from tests.campaigns.launch_helpers import make_campaign
from tests.factories import EmailTemplateFactory, MembershipFactory
from whatsapp.demo import connect_to_simulator
from whatsapp.models import WhatsAppAccount

from .test_tenancy import ROUTES

DE = {"HTTP_ACCEPT_LANGUAGE": "de"}
JOURNEY = {
    "name": "PROMO keyword",
    "entry": {
        "type": "event",
        "event": "WhatsAppReceived",
        "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
    },
    "settings": {"reentry": "after_exit"},
    "steps": [
        {"id": "reply", "type": "whatsapp_text", "text": "Danke! Dein Code: SUSHI20", "next": "wait"},
        {"id": "wait", "type": "wait", "duration": "PT1H30M", "next": None},
    ],
}


@pytest.fixture
def world(db, project, settings):
    """A project with what a real one has, and the ids the object URLs take."""
    settings.SIMULATOR_ENABLED = True
    settings.REDIS_URL = ""
    owner = MembershipFactory(project=project, role=Role.OWNER).user
    other = MembershipFactory(project=project, role=Role.MARKETER)
    seed_demo_audience(project, size=30)
    connect_to_simulator(project, "http://127.0.0.1:8000/")
    account = WhatsAppAccount.objects.for_project(project).get()
    # The simulator holds approved templates; a sync would copy them over HTTP, so make one here.
    template = make_template(account, name="autumn_promo", language="de", category="MARKETING")
    subscriber = Subscriber.objects.for_project(project).order_by("id").first()
    segment = Segment.objects.create(
        project=project, name="Germans", rule=parse_rule('F("language", eq, "de")')
    )
    draft = make_campaign(account, name="Draft", template_name=template.name, languages=[template.language])
    done = make_campaign(
        account,
        name="Winter sale",
        template_name=template.name,
        languages=[template.language],
        status=CampaignStatus.COMPLETED,
        launched_at=timezone.now() - timedelta(days=2),
    )
    statuses = [MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED]
    for i, person in enumerate(Subscriber.objects.for_project(project).order_by("id")[:12]):
        Message.objects.create(
            project=project,
            subscriber=person,
            campaign=done,
            account=account,
            template=template,
            template_name=template.name,
            template_language=template.language,
            status=statuses[i % 4],
            marketing=True,
            sent_at=timezone.now() - timedelta(days=2),
            sending_at=timezone.now() - timedelta(days=2),
        )
    journey = journey_services.create_journey(project=project, data=JOURNEY, actor=SYSTEM)
    email = EmailTemplateFactory(project=project)
    push = PushTemplate.objects.create(project=project, name="order-ready", title="Hallo", body="Fertig")
    mail = MailboxMessage.objects.create(
        project=project, from_email="shop@example.com", to="ada@example.com", subject="Hallo", text="Hi"
    )
    # A decimal tag: its value is shown German (509,26) and edited in an input a script or form reads.
    tag = TagDefinition.objects.get(project=project, name="lifetime_value")
    ids = {
        "member_id": other.public_id,
        "subscriber_id": subscriber.public_id,
        "segment_id": segment.public_id,
        "template_id": template.public_id,
        "journey_id": journey.public_id,
        "tag_id": tag.public_id,
        "name": "OrderPlaced",  # has a decimal attribute (amount)
        "key": str(tag.public_id),  # a tag row is addressed by its definition's id
    }
    return {
        "owner": owner,
        "project": project,
        "ids": ids,
        "email": email,
        "push": push,
        "mail": mail,
        "done": done,
        "draft": draft,
    }


def _kwargs(name: str, converters: dict, world: dict) -> dict | None:
    ids = world["ids"]
    kwargs = {"slug": world["project"].slug}
    for param in converters:
        if param == "slug":
            continue
        if param == "public_id":
            obj = {"mail:mailbox_detail": world["mail"]}.get(name) or (
                world["push"] if name.startswith("push:") else world["email"]
            )
            kwargs[param] = obj.public_id
        elif param == "campaign_id":
            drafts = {"campaigns:edit", "campaigns:preflight", "campaigns:launch", "campaigns:test_send"}
            kwargs[param] = (world["draft"] if name in drafts else world["done"]).public_id
        elif param == "key" and name == "journeys:example_new":
            return None  # takes a catalogue key; covered by the journeys tests
        elif ids.get(param) is None:
            return None  # an object kind this walk does not make (import jobs, API keys, ...)
        else:
            kwargs[param] = ids[param]
    return kwargs


# "{{1}}" and "{{first_name}}" are Meta's template parameters (shown as examples), not Django's.
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|(?<![%\w])%[sd](?!\w)|\{\{(?!\w+\}\})|\{%")
# A number in German style where an English one was meant: 0,5 / 1.234,56.
DE_DECIMAL = re.compile(r"\d,\d")
ATTRIBUTE = re.compile(r"""\s(data-[\w-]+|hx-vals|hx-vars)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
NUMBER_INPUT = re.compile(r"<input\b[^>]*\btype=[\"']?(?:number|range|hidden)[^>]*>", re.IGNORECASE)
VALUE = re.compile(r"""\bvalue=(?:"([^"]*)"|'([^']*)')""")
# Numbers in attributes the browser reads: input bounds and SVG geometry (bars, funnels).
BOUNDS = re.compile(r"""\s(?:step|min|max|x|y|width|height|cx|cy|r|offset)=["']?[\d.]*\d,\d""")
JSON_SCRIPT = re.compile(r"<script[^>]*type=[\"']application/json[\"'][^>]*>(.*?)</script>", re.DOTALL)
SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)
# Texts of the demo data and user-written templates that are allowed to hold braces (Liquid).
USER_TEXT = re.compile(r"\{\{\s*(subscriber|values|event|attributes|tags|unsubscribe_url|project)\b[^}]*\}\}")


def problems(html: str) -> list[str]:
    found = []
    visible = USER_TEXT.sub("", SCRIPT.sub("", html))
    for match in PLACEHOLDER.finditer(visible):
        found.append(f"placeholder {visible[max(0, match.start() - 60) : match.end() + 40]!r}")
    for match in ATTRIBUTE.finditer(html):
        attr, value = match.group(1), match.group(2) or match.group(3) or ""
        if DE_DECIMAL.search(value) and not _text_attribute(attr, value):
            found.append(f"{attr}={value[:120]!r}")
    for tag in NUMBER_INPUT.findall(html):
        value = VALUE.search(tag)
        if value and re.search(r"\d,\d", value.group(1) or value.group(2) or ""):
            found.append(f"input {tag[:160]!r}")
    for match in BOUNDS.finditer(html):
        found.append(f"bound {match.group(0)!r}")
    for body in JSON_SCRIPT.findall(html):
        data = json.loads(body)  # a German comma in a number would break it or turn it into a string
        found += [f"json {s!r}" for s in _numberish_strings(data)]
    return found


def _text_attribute(attr: str, value: str) -> bool:
    # data-confirm and friends hold sentences for people ("1.234,56 €" is right there).
    if attr in {"hx-vals", "hx-vars"} or value.lstrip()[:1] in ("{", "["):
        return False  # JSON for a script or the request, never a sentence
    return (
        attr in {"data-confirm", "data-title", "data-label", "data-text", "data-bs-title"}
        or " " in value.strip()
    )


def _numberish_strings(data) -> list[str]:
    if isinstance(data, str):
        return [data] if re.fullmatch(r"-?\d{1,3}(\.\d{3})*,\d+", data) else []
    if isinstance(data, dict):
        return [s for v in data.values() for s in _numberish_strings(v)]
    if isinstance(data, list):
        return [s for v in data for s in _numberish_strings(v)]
    return []


STATUSES: dict[str, int] = {}


def _walk(client, world, *, extra: dict | None = None) -> tuple[int, list[str]]:
    seen, bad = 0, []
    for name, converters, _view in ROUTES:
        kwargs = _kwargs(name, converters, world)
        if kwargs is None:
            continue
        url = reverse(name, kwargs=kwargs)
        try:
            response = client.get(url, **DE, **(extra or {}))
        except Exception as exc:  # a 500 is what we are looking for
            bad.append(f"{name} {url}: {type(exc).__name__}: {exc}")
            continue
        seen += 1
        STATUSES[name] = response.status_code
        if response.status_code >= 500:
            bad.append(f"{name} {url}: {response.status_code}")
            continue
        if response.get("Content-Type", "").startswith("text/html"):
            bad += [f"{name} {url}: {p}" for p in problems(response.content.decode())]
    return seen, bad


def test_every_project_page_in_german(client, world):
    client.force_login(world["owner"])
    seen, bad = _walk(client, world)
    assert seen > 60
    assert not bad, "\n".join(bad)


def test_every_project_partial_in_german(client, world):
    # The same URLs as HTMX asks for them: views that answer a fragment to HX-Request.
    client.force_login(world["owner"])
    seen, bad = _walk(client, world, extra={"HTTP_HX_REQUEST": "true"})
    assert seen > 60
    assert not bad, "\n".join(bad)


def test_the_walk_made_what_it_needs(world):
    assert world["done"].status == CampaignStatus.COMPLETED
    assert Message.objects.filter(campaign=world["done"]).count() == 12


HX = {"HTTP_HX_REQUEST": "true"}
AMOUNT_RULE = 'E("OrderPlaced", gte, 1, 30d, "amount" gte 12.5)'


def test_htmx_partials_with_input_in_german(client, world):
    """The live previews and partials that take input, asked as the panel's scripts ask them."""
    client.force_login(world["owner"])
    project, slug = world["project"], world["project"].slug
    journey = world["ids"]["journey_id"]
    subscriber = world["ids"]["subscriber_id"]

    def url(name, *args):
        return reverse(name, args=[slug, *args])

    requests = [
        ("get", url("subscribers:segment_preview"), {"source": "text", "text": AMOUNT_RULE}),
        ("get", url("subscribers:segment_sample"), {"source": "text", "text": AMOUNT_RULE, "count": "3"}),
        ("get", url("subscribers:list"), {"q": "a", "consent": "opted_in", "page": "2"}),
        ("get", url("subscribers:event_stats", "OrderPlaced"), {"days": "90"}),
        ("get", url("campaigns:detail", world["done"].public_id), {"state": "failed"}),
        ("get", url("campaigns:messages"), {"state": "failed", "channel": "whatsapp"}),
        ("get", url("campaigns:conversation", subscriber), {}),
        ("get", url("subscribers:tag_row", subscriber, world["ids"]["key"]), {"mode": "edit"}),
        ("get", url("journeys:stats", journey), {"days": "7"}),
        ("get", url("journeys:builder_counts", journey), {}),
        (
            "post",
            url("campaigns:composer_preview"),
            {
                "name": "Autumn sale",
                "purpose": "promotion",
                "template_name": "autumn_promo",
                "languages": ["de"],
                "audience_kind": "rule",
                "rule": AMOUNT_RULE,
                "schedule_kind": "now",
                "throttle_mps": "12",
                "passed_local_time": "next_day",
                "fallback_time_zone": "Europe/Berlin",
            },
        ),
        (
            "post",
            url("journeys:dryrun_start", journey),
            {
                "subscriber": subscriber,
                "source": "draft",
                "event_name": "WhatsAppReceived",
                "event_attributes": "text=promo\namount=12.5",
            },
        ),
        ("post", url("push:preview"), {"title": "Hallo {{ subscriber.name }}", "body": "Summe 12.5"}),
    ]
    bad = []
    for method, address, data in requests:
        response = getattr(client, method)(address, data, **DE, **HX)
        if response.status_code >= 500:
            bad.append(f"{address}: {response.status_code}")
        elif response.get("Content-Type", "").startswith("text/html"):
            bad += [f"{address}: {p}" for p in problems(response.content.decode())]
    assert not bad, "\n".join(bad)
    assert project.slug == slug


# ---- labels inside sentences -------------------------------------------------------------------


def test_a_label_inside_a_sentence_is_lower_case_only_in_english():
    from django.utils import translation

    from campaigns.models import CampaignPurpose
    from controlpanel.wording import mid_sentence

    assert mid_sentence(CampaignStatus.DRAFT.label) == "draft"
    with translation.override("de"):
        # German nouns keep their capital: „Entwurf“, not „entwurf“.
        assert mid_sentence(CampaignStatus.DRAFT.label) == "Entwurf"
        assert mid_sentence(CampaignPurpose.PROMOTION.label) == "Werbung"


def test_a_refused_campaign_action_names_the_status_as_the_panel_shows_it(client, world):
    from django.utils import translation

    from campaigns import lifecycle
    from subscribers.errors import InvalidInput

    with translation.override("de"), pytest.raises(InvalidInput) as refused:
        lifecycle._locked(world["draft"], "pause")
    assert "„Entwurf“" in refused.value.message
    with pytest.raises(InvalidInput) as refused:
        lifecycle._locked(world["draft"], "pause")
    assert refused.value.message == "A draft campaign cannot be paused."


# ---- the API's human message in German, its code unchanged --------------------------------------


def _api_pairs(project):
    from journeys.models import JourneyStatus
    from tests.journeys.test_start_api import _journey

    TagDefinition.objects.create(project=project, name="lifetime_value", type="decimal")
    paused = _journey(project, status=JourneyStatus.PAUSED)
    active = _journey(project)
    start = f"/journeys/{active.public_id}/start"
    no_api = _journey(project, entries=[{"type": "event", "event": "OrderPlaced"}])
    body = {"subscribers": [{"phone": "+4915112345678"}]}
    return [
        (f"/journeys/{paused.public_id}/start", body),
        (f"/journeys/{no_api.public_id}/start", body),
        (start, {}),
        (start, {"subscribers": []}),
        (start, {"rule": 'T("nope", eq, 1.5)'}),
        (
            start,
            {"subscribers": [{"id": "x"}], "values": {"big": "x" * 9000}},
        ),
        ("/subscribers", {"phone": "12"}),
        ("/subscribers", {"phone": "+4915112345678", "tags": {"lifetime_value": "viel"}}),
        ("/events", {"name": "OrderPlaced", "subscriber": {"phone": "+4915112345678"}, "attributes": 3}),
        ("/campaigns", {"name": ""}),
        ("/count", {"rule": "T(("}),
        ("/journeys/drop", {"subscribers": []}),
    ]


def test_api_errors_keep_their_code_and_speak_german(client, project):
    from tests.subscribers.test_api_subscribers import key_for

    headers = {"HTTP_AUTHORIZATION": f"Bearer {key_for(project)}"}
    untranslated = []
    for path, body in _api_pairs(project):
        answers = {}
        for language in ("en", "de"):
            response = client.post(
                f"/api/v1{path}",
                json.dumps(body),
                content_type="application/json",
                HTTP_ACCEPT_LANGUAGE=language,
                **headers,
            )
            assert response.status_code < 500, (path, body, response.content)
            assert 400 <= response.status_code < 500, (path, body, response.status_code)
            answers[language] = response.json()
        assert answers["de"]["code"] == answers["en"]["code"], (path, answers)
        assert answers["de"].get("field") == answers["en"].get("field"), (path, answers)
        if answers["de"]["message"] == answers["en"]["message"]:
            untranslated.append(f"{path} {body}: {answers['en']['message']}")
    assert not untranslated, "\n".join(untranslated)


def test_the_journey_start_refusal_reads_german(client, project):
    from journeys.models import JourneyStatus
    from tests.journeys.test_start_api import _journey
    from tests.subscribers.test_api_subscribers import key_for

    paused = _journey(project, status=JourneyStatus.PAUSED)
    response = client.post(
        f"/api/v1/journeys/{paused.public_id}/start",
        json.dumps({"subscribers": [{"phone": "+4915112345678"}]}),
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="de",
        HTTP_AUTHORIZATION=f"Bearer {key_for(project)}",
    )
    assert response.status_code == 409
    assert response.json() == {
        "code": "journey_not_startable",
        "message": "Die Journey ist im Status „Pausiert“: Nur eine aktive Journey kann gestartet werden.",
    }


def test_liquid_binding_errors_read_german():
    from django.utils import translation

    from campaigns.bindings import compile_binding
    from campaigns.policy_settings import clean_country
    from subscribers.errors import InvalidInput

    with translation.override("de"):
        with pytest.raises(InvalidInput) as bad:
            compile_binding("{{ tags.x | shout }}", component="body", name="1")
        assert "kein gültiges Liquid (Zeichen 13): Einen Filter „shout“ gibt es nicht." in bad.value.message
        with pytest.raises(InvalidInput) as bad:
            compile_binding("Hi\n{{ subscriber.plan }}", component="body", name="1")
        assert "verwendet subscriber.plan (Zeile 2, Spalte 4), das es nicht gibt" in bad.value.message
        with pytest.raises(InvalidInput) as bad:
            clean_country("XX", "country")
        assert bad.value.message == "'XX' ist kein Ländercode (z. B. DE, US, BR)."
    with pytest.raises(InvalidInput) as bad:
        compile_binding("{{ tags.x | shout }}", component="body", name="1")
    assert "is not valid Liquid at character 13: there is no filter “shout”." in bad.value.message


def test_the_checks_catch_what_they_look_for():
    # Guard against checks that silently pass everything.
    assert problems('<div data-share="0,5"></div>')
    assert problems("<div hx-vals='{\"rate\": 0,25}'></div>")
    assert problems('<input type="number" name="p" value="0,0499">')
    assert problems('<div data-rule=\'{"op": "gte", "value": 12,5}\'></div>')
    assert problems('<input type="number" step="0,0001">')
    assert problems('<svg><rect x="0" width="66,7"/></svg>')
    assert problems('<script type="application/json">{"price": "1.234,56"}</script>')
    assert problems("<p>Sent to %(count)s subscribers</p>")
    assert problems("<p>{{ name }}</p>")
    assert not problems('<p data-confirm="Für 1.234,56 € senden?">1.234,56 €</p><p>Hi {{1}}</p>')
    assert not problems('<div data-share="0.5"></div><input type="number" value="0.0499">')
