"""One upsert for every path (subscribers.upsert): the API, its bulk form, the CSV import and
WhatsApp inbound processing find, create and change subscribers by the same rules."""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from controlpanel.services import Actor
from subscribers import imports
from subscribers.errors import InvalidInput
from subscribers.models import ConsentChange, ConsentSource, ConsentState, Event, ImportJob, Subscriber
from subscribers.upsert import (
    Item,
    match,
    phone_from_wa_id,
    plan_changes,
    upsert_subscriber,
    upsert_subscribers,
)
from tests.factories import ProjectFactory, SubscriberFactory
from whatsapp.models import WebhookDelivery, WhatsAppAccount
from whatsapp.processing import process_pending

from .test_api_subscribers import ApiClient, key_for
from .test_import import report_rows

ACTOR = Actor(label="test")
_wamids = itertools.count(1)


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.WEBHOOK_GROUP_COMMIT = False


# --- the four paths, driven as their users drive them ---------------------------------------------


def via_api(client, project, person: dict) -> None:
    ApiClient(client, key_for(project)).post("/subscribers", person)


def via_bulk(client, project, person: dict) -> None:
    ApiClient(client, key_for(project)).post("/subscribers/bulk", {"subscribers": [person]})


def via_import(client, project, person: dict) -> ImportJob:
    columns = [key for key in ("phone", "external_id", "name") if key in person]
    text = ",".join(columns) + "\n" + ",".join(person[c] for c in columns) + "\n"
    job = imports.create_import(
        project=project, upload=SimpleUploadedFile("people.csv", text.encode()), actor=ACTOR
    )
    imports.start_import(
        job=job, columns=job.mapping["columns"], key="phone", default_evidence="", actor=ACTOR
    )
    imports.run_import(job_id=job.pk)
    job.refresh_from_db()
    return job


def via_inbound(client, project, person: dict) -> None:
    """A text message from the person's WhatsApp (the wa_id is their number in digits)."""
    account = WhatsAppAccount.objects.create(
        project=project,
        waba_id=f"waba-{project.pk}",
        phone_number_id=f"pn-{project.pk}",
        display_phone_number="15550783881",
        access_token="token",
        app_secret="secret",
    )
    wa_id = "".join(ch for ch in person["phone"] if ch.isdigit())
    message = {"from": wa_id, "id": f"wamid.UPSERT{next(_wamids)}", "timestamp": "1749416383"}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": account.phone_number_id},
        "contacts": [{"profile": {"name": person.get("name", "")}, "wa_id": wa_id}],
        "messages": [{**message, "type": "text", "text": {"body": "Hello"}}],
    }
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "w", "changes": [{"field": "messages", "value": value}]}],
        }
    )
    WebhookDelivery.objects.create(
        project=project,
        account=account,
        body=body,
        body_sha256=hashlib.sha256(body.encode()).hexdigest(),
        received_at=timezone.now(),
    )
    assert process_pending(account.pk) == 1


PATHS = {"api": via_api, "bulk": via_bulk, "import": via_import, "inbound": via_inbound}


def outcome(project) -> list[tuple]:
    """What the paths must agree on: subscribers with identities, consent, ledger and events."""
    return [
        (
            s.phone,
            s.external_id,
            s.name,
            s.whatsapp_consent,
            s.consent_changes.count(),
            sorted(s.events.filter(name__in=["Subscribed", "Unsubscribed"]).values_list("name", flat=True)),
        )
        for s in Subscriber.objects.for_project(project).order_by("id")
    ]


def test_the_four_paths_create_the_same_subscriber_from_the_same_person(client, db):
    # The same number as people type it, and as WhatsApp sends it (digits, as wa_id).
    spellings = {"api": "+49 151 1234 5678", "bulk": "0151 12345678", "import": "+4915112345678"}
    outcomes = {}
    for path, drive in PATHS.items():
        project = ProjectFactory(default_country="DE")
        drive(client, project, {"phone": spellings.get(path, "+4915112345678"), "name": "Ada Lovelace"})
        outcomes[path] = outcome(project)
        sources = list(Event.objects.for_project(project).filter(name="Subscribed").values_list("attributes"))
        assert sources == [({"source": {"inbound": "whatsapp", "bulk": "api"}.get(path, path)},)]
    expected = [("+4915112345678", None, "Ada Lovelace", ConsentState.UNKNOWN, 0, ["Subscribed"])]
    assert outcomes == dict.fromkeys(PATHS, expected)


def test_the_four_paths_find_the_same_existing_subscriber_and_record_nothing_new(client, db):
    outcomes = {}
    for path, drive in PATHS.items():
        project = ProjectFactory(default_country="DE")
        known = SubscriberFactory(
            project=project,
            phone="+4915112345678",
            external_id="crm-1",
            name="",
            whatsapp_consent=ConsentState.UNKNOWN,
        )
        drive(client, project, {"phone": "+4915112345678", "name": "Ada"})
        assert list(Subscriber.objects.for_project(project).values_list("pk", flat=True)) == [known.pk]
        outcomes[path] = outcome(project)
    expected = [("+4915112345678", "crm-1", "Ada", ConsentState.UNKNOWN, 0, [])]
    assert outcomes == dict.fromkeys(PATHS, expected)


def test_a_handset_never_overwrites_what_the_marketer_stored(client, db):
    names = {}
    for path, drive in PATHS.items():
        project = ProjectFactory(default_country="DE")
        SubscriberFactory(project=project, phone="+4915112345678", name="Ada (VIP)")
        drive(client, project, {"phone": "+4915112345678", "name": "ada"})
        names[path] = Subscriber.objects.for_project(project).get().name
    assert names == {"api": "ada", "bulk": "ada", "import": "ada", "inbound": "Ada (VIP)"}


def test_a_phone_and_an_external_id_of_two_people_are_the_same_conflict_everywhere(client, db):
    messages = {}
    for path in ("api", "bulk", "import"):
        project = ProjectFactory(default_country="DE")
        SubscriberFactory(project=project, phone="+4915112345678", external_id="crm-1")
        SubscriberFactory(project=project, phone="+4915112345679", external_id="crm-2")
        person = {"phone": "+4915112345678", "external_id": "crm-2", "name": "Who"}
        api = ApiClient(client, key_for(project))
        if path == "api":
            response = api.post("/subscribers", person)
            assert response.status_code == 409
            messages[path] = response.json()["message"]
        elif path == "bulk":
            error = api.post("/subscribers/bulk", {"subscribers": [person]}).json()["results"][0]["error"]
            assert error["code"] == "conflict"
            messages[path] = error["message"]
        else:
            job = via_import(client, project, person)
            messages[path] = report_rows(job)[0]["reason"]
        assert not Subscriber.objects.for_project(project).filter(name="Who").exists()
    assert len(set(messages.values())) == 1, messages
    assert "belong to two different subscribers" in messages["api"]


# --- the rules themselves -------------------------------------------------------------------------


def existing(pk: int, **columns) -> dict:
    base = {"id": pk, "phone": None, "external_id": None, "bsuid": None, "wa_id": "", "name": ""}
    return {**base, "whatsapp_consent": ConsentState.UNKNOWN, **columns}


def test_a_bsuid_names_the_subscriber_before_a_phone_held_by_someone_else():
    by_bsuid = {"US.1": existing(1, bsuid="US.1", phone="+4915100000001")}
    by_phone = {"+4915100000002": existing(2, phone="+4915100000002")}
    item = Item(phone="+4915100000002", bsuid="US.1", wa_id="4915100000002", fills=frozenset({"phone"}))
    target = match(item, by_bsuid, by_phone, {})
    assert target["id"] == 1
    # The number stays with the subscriber who has it; Meta's id is kept current.
    assert plan_changes(item, target, now=None, taken_phone=True) == {"wa_id": "4915100000002"}


def test_a_phone_and_an_external_id_of_two_subscribers_is_a_conflict():
    item = Item(phone="+4915100000001", external_id="crm-2")
    with pytest.raises(InvalidInput) as caught:
        match(item, {}, {"+4915100000001": existing(1)}, {"crm-2": existing(2)})
    assert (caught.value.code, caught.value.field) == ("conflict", "external_id")


def test_an_unknown_external_id_without_a_phone_creates_nobody():
    with pytest.raises(InvalidInput) as caught:
        match(Item(external_id="crm-9"), {}, {}, {})
    assert caught.value.code == "not_found"


def test_fills_only_set_blanks_and_given_fields_overwrite():
    target = existing(1, phone="+4915100000001", name="Stored")
    assert plan_changes(Item(profile={"name": "New"}), target, now=None) == {"name": "New"}
    fills = frozenset({"name", "phone"})
    item = Item(phone="+4915100000009", profile={"name": "New"}, fills=fills)
    assert plan_changes(item, target, now=None) == {}
    assert plan_changes(item, existing(1, bsuid="US.1"), now=None) == {
        "phone": "+4915100000009",
        "name": "New",
    }


@pytest.mark.parametrize(
    ("wa_id", "phone"),
    [
        ("4915112345678", "+4915112345678"),
        ("49015112345678", "+4915112345678"),  # E.164 as the other paths store it
        ("15550001234", "+15550001234"),  # unknown to the phone library, but WhatsApp verified it
        ("", None),
        ("user.name", None),
    ],
)
def test_a_whatsapp_id_becomes_the_phone_every_path_stores(wa_id, phone):
    assert phone_from_wa_id(wa_id) == phone


def test_an_inbound_message_finds_the_subscriber_the_api_stored_under_the_normalized_number(client, db):
    project = ProjectFactory(default_country="DE")
    via_api(client, project, {"phone": "0151 12345678", "name": "Ada"})
    via_inbound(client, project, {"phone": "49015112345678", "name": "Ada on WhatsApp"})
    stored = Subscriber.objects.for_project(project).get()
    assert (stored.phone, stored.wa_id, stored.name) == ("+4915112345678", "49015112345678", "Ada")


def test_the_bulk_form_is_idempotent_and_records_events_and_ledger_once(project):
    def items():
        return [
            Item(
                phone="+4915100000001", profile={"name": "In"}, consent=ConsentState.OPTED_IN, evidence="form"
            ),
            Item(phone="+4915100000002", consent=ConsentState.OPTED_OUT),
        ]

    with transaction.atomic():
        first = upsert_subscribers(project=project, items=items(), source=ConsentSource.API, actor=ACTOR)
    assert [r.status for r in first.results] == ["created", "created"]
    with transaction.atomic():
        again = upsert_subscribers(project=project, items=items(), source=ConsentSource.API, actor=ACTOR)
    assert [r.status for r in again.results] == ["unchanged", "unchanged"]
    assert [r.subscriber_id for r in again.results] == [r.subscriber_id for r in first.results]
    assert sorted(Event.objects.for_project(project).values_list("name", flat=True)) == [
        "Subscribed",
        "Subscribed",
        "Unsubscribed",
    ]
    assert sorted(ConsentChange.objects.for_project(project).values_list("state", "evidence")) == [
        (ConsentState.OPTED_IN, "form"),
        (ConsentState.OPTED_OUT, ""),
    ]


def test_the_single_form_raises_the_items_error_and_writes_nothing(project):
    SubscriberFactory(project=project, phone="+4915100000001", external_id="a")
    SubscriberFactory(project=project, phone="+4915100000002", external_id="b")
    with pytest.raises(InvalidInput) as caught:
        upsert_subscriber(
            project=project,
            item=Item(phone="+4915100000001", external_id="b", profile={"name": "X"}),
            source=ConsentSource.API,
            actor=ACTOR,
        )
    assert caught.value.code == "conflict"
    assert not Subscriber.objects.for_project(project).filter(name="X").exists()
