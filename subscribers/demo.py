"""Demo audience for the embedded mode: enough people, tags and events to try segments on."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from controlpanel.models import Project

from . import tags as tagtypes
from .models import (
    ConsentChange,
    ConsentChannel,
    ConsentSource,
    ConsentState,
    Event,
    EventDefinition,
    Subscriber,
    TagDefinition,
    TagType,
    TagValue,
)

FIRST = [
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Elif",
    "Finn",
    "Greta",
    "Hannah",
    "Ivan",
    "Jana",
    "Karim",
    "Lena",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Rosa",
    "Sven",
    "Tara",
    "Yusuf",
]
LAST = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Schulz",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Yilmaz",
    "Nowak",
]
CITIES = ["Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Leipzig"]
CUISINES = ["asian", "italian", "german", "indian", "mexican"]
INTERESTS = ["sushi", "pizza", "vegan", "desserts", "wine", "delivery", "pickup"]
# What demo customers wrote on WhatsApp, with the normalized text whatsapp.processing stores.
INBOUND = [
    "Hallo! Habt ihr heute offen?",
    "Wann kommt meine Bestellung?",
    "Danke, war super lecker!",
    "Gibt es das Angebot noch?",
    "PROMO",
]


@transaction.atomic
def seed_demo_audience(project: Project, *, size: int = 240, seed: int = 7) -> int:
    """Create ``size`` demo subscribers with tags, consent and a few months of events.

    The data holds what the product's own writers would have written: everyone signed up before
    their events and consent; an opt-in has its ledger row at the time on the subscriber; a
    "last inbound" time is the time of their latest ``WhatsAppReceived`` event, so the
    conversation shows what they wrote. Does nothing when the project has subscribers already,
    so running it again is harmless.
    """
    if Subscriber.objects.for_project(project).exists():
        return 0
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    now = timezone.now()
    people = []
    joined_at, consented_at = [], []
    for i in range(size):
        opted_in = rng.random() < 0.7
        # Before every event (up to 90 days back) and opt-in (up to 200 days back) below.
        joined_at.append(now - timedelta(days=rng.randint(201, 400)))
        consented_at.append(now - timedelta(days=rng.randint(1, 200), minutes=rng.randint(0, 1440)))
        people.append(
            Subscriber(
                project=project,
                phone=f"+49151{5550000 + i:08d}",
                wa_id=f"49151{5550000 + i:08d}",
                name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                language=rng.choice(["de", "de", "de", "en", "tr"]),
                country="DE",
                time_zone="Europe/Berlin",
                whatsapp_consent=ConsentState.OPTED_IN if opted_in else ConsentState.UNKNOWN,
                whatsapp_consent_at=consented_at[i] if opted_in else None,
                last_inbound_at=now - timedelta(hours=rng.randint(1, 24 * 20))
                if rng.random() < 0.3
                else None,
            )
        )
    people = Subscriber.objects.bulk_create(people)
    people = list(Subscriber.objects.for_project(project).order_by("id"))
    for person, joined in zip(people, joined_at, strict=True):
        person.created_at = joined  # auto_now_add: set by bulk_create to "now", kept by bulk_update
    Subscriber.objects.bulk_update(people, ["created_at"], batch_size=2000)

    tags = {
        name: TagDefinition.objects.get_or_create(project=project, name=name, defaults={"type": type_})[0]
        for name, type_ in [
            ("city", TagType.STRING),
            ("vip", TagType.BOOLEAN),
            ("lifetime_value", TagType.DECIMAL),
            ("orders", TagType.INTEGER),
            ("interests", TagType.LIST),
        ]
    }
    for name, attributes in {
        "OrderPlaced": {"cuisine": "string", "amount": "decimal", "items": "integer"},
        "AppOpened": {"screen": "string"},
    }.items():
        EventDefinition.objects.get_or_create(project=project, name=name, defaults={"attributes": attributes})

    values, events, consents = [], [], []
    for person in people:
        orders = rng.randint(0, 8)
        values += [
            TagValue(project=project, subscriber=person, tag=tags["city"], value_text=rng.choice(CITIES)),
            TagValue(project=project, subscriber=person, tag=tags["vip"], value_bool=rng.random() < 0.15),
            TagValue(
                project=project,
                subscriber=person,
                tag=tags["lifetime_value"],
                value_number=Decimal(rng.randint(0, 90000)) / 100,
            ),
            TagValue(project=project, subscriber=person, tag=tags["orders"], value_number=Decimal(orders)),
        ]
        values += [
            TagValue(project=project, subscriber=person, tag=tags["interests"], value_text=item)
            for item in rng.sample(INTERESTS, rng.randint(0, 3))
        ]
        favourite = rng.choice(CUISINES)
        for _ in range(orders):
            cuisine = favourite if rng.random() < 0.6 else rng.choice(CUISINES)
            events.append(
                Event(
                    project=project,
                    subscriber=person,
                    name="OrderPlaced",
                    occurred_at=now - timedelta(days=rng.randint(0, 90), minutes=rng.randint(0, 1440)),
                    attributes={
                        "cuisine": cuisine,
                        "amount": rng.randint(800, 6000) / 100,
                        "items": rng.randint(1, 6),
                    },
                )
            )
        for _ in range(rng.randint(0, 10)):
            events.append(
                Event(
                    project=project,
                    subscriber=person,
                    name="AppOpened",
                    occurred_at=now - timedelta(days=rng.randint(0, 60), minutes=rng.randint(0, 1440)),
                    attributes={"screen": rng.choice(["home", "menu", "cart", "offers"])},
                )
            )
        if person.last_inbound_at is not None:
            # A short chat whose latest message is the one that set last_inbound_at.
            for k in range(rng.randint(1, 3), 0, -1):
                text = rng.choice(INBOUND)
                message_id = f"wamid.demo{person.pk}x{k}"
                events.append(
                    Event(
                        project=project,
                        subscriber=person,
                        name="WhatsAppReceived",
                        occurred_at=person.last_inbound_at - timedelta(minutes=7 * (k - 1)),
                        attributes={
                            "text": text,
                            "normalized_text": text.strip(" .!?").upper(),
                            "type": "text",
                            "message_id": message_id,
                        },
                        dedup_key=f"wa:{message_id}",  # as whatsapp.processing keys them
                    )
                )
        if person.whatsapp_consent == ConsentState.OPTED_IN:
            consents.append(
                ConsentChange(
                    project=project,
                    subscriber=person,
                    channel=ConsentChannel.WHATSAPP,
                    state=ConsentState.OPTED_IN,
                    source=ConsentSource.IMPORT,
                    evidence="Demo data: ticked “News on WhatsApp” at checkout.",
                    actor_label="demo",
                )
            )
    tagtypes.hold_definitions(d.pk for d in tags.values())  # as every writer of tag values does
    TagValue.objects.bulk_create(values, batch_size=2000)
    Event.objects.bulk_create(events, batch_size=2000)
    consents = ConsentChange.objects.bulk_create(consents, batch_size=2000)
    # created_at is auto_now_add, which bulk_create overwrites with "now": the ledger must say
    # when the person agreed, the time the subscriber row carries.
    for change in consents:
        change.created_at = change.subscriber.whatsapp_consent_at
    ConsentChange.objects.bulk_update(consents, ["created_at"], batch_size=2000)
    return len(people)
