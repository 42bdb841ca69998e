"""Event facets: the short form of the attributes that the segment index carries.

An inbound WhatsApp message may carry 8 kB of text, far above PostgreSQL's btree entry limit
(2,704 bytes), so the index covers ``facets`` (long texts shortened to ``true``) instead of the
attributes. Recording such an event must work, and segment conditions on long texts must still
compare the full text.
"""

from __future__ import annotations

import json
import random
import string

import pytest

from subscribers.errors import InvalidInput
from subscribers.facets import MAX_FACETS_BYTES, facets_of
from subscribers.models import Event
from subscribers.segments import count, parse_rule
from subscribers.services import record_event
from tests.factories import SubscriberFactory


def noise(n: int, seed: int = 1) -> str:
    """Text that does not compress, as the worst case for an index entry."""
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def receive(project, text: str) -> Event:
    return record_event(
        project=project,
        subscriber=SubscriberFactory(project=project),
        name="WhatsAppReceived",
        attributes={"text": text, "normalized_text": noise(4096, seed=2), "type": "text"},
    )


@pytest.fixture
def long_message(project):
    text = noise(4096)
    return receive(project, text), text


def test_an_event_with_long_texts_is_recorded_and_its_facets_shorten_them(long_message):
    event, text = long_message
    stored = Event.objects.get(pk=event.pk)
    assert stored.attributes["text"] == text
    assert stored.facets == {"text": True, "normalized_text": True, "type": "text"}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # Segment values stop at 255 characters: a 200-character text is the longest compared.
        ('"text" eq "{text}"', 1),
        ('"text" eq "{short}"', 0),
        ('"text" noteq "{short}"', 2),
        ('"text" noteq "{text}"', 1),
        ('"text" in ["{short}", "{text}"]', 1),
        ('"text" notin ["{text}"]', 1),
        ('"text" contains "{middle}"', 1),
        ('"text" contains "{short}"', 0),
        ('"text" any', 2),
        ('"text" none', 0),
        ('"type" eq "text"', 2),
    ],
)
def test_conditions_on_long_texts_compare_the_full_text(project, long_message, condition, expected):
    _, longest = long_message
    text = noise(200, seed=3)
    receive(project, text)
    filled = condition.format(text=text, short="hello", middle=longest[2000:2040])
    rule = parse_rule(f'E("WhatsAppReceived", gte, 1, {filled})')
    assert count(project, rule) == expected


def test_attributes_too_large_to_index_are_refused_with_the_reason(project):
    subscriber = SubscriberFactory(project=project)
    attributes = {f"attribute_{i:02d}_with_a_long_name_{'x' * 20}": noise(60, seed=i) for i in range(30)}
    with pytest.raises(InvalidInput) as exc:
        record_event(project=project, subscriber=subscriber, name="Bulky", attributes=attributes)
    assert exc.value.code == "attributes_too_large"
    assert "1,800 bytes" in exc.value.message
    assert not Event.objects.filter(name="Bulky").exists()


def test_the_largest_facets_allowed_fit_the_index(project):
    """Just under the limit, with incompressible values and numbers: PostgreSQL accepts the row."""
    subscriber = SubscriberFactory(project=project)
    attributes = {f"a{i:02d}": noise(60, seed=i) for i in range(24)}
    attributes.update({f"n{i:02d}": 123456789.123 + i for i in range(6)})
    size = len(json.dumps(facets_of(attributes), separators=(",", ":")))
    assert MAX_FACETS_BYTES - 150 < size <= MAX_FACETS_BYTES
    event = record_event(project=project, subscriber=subscriber, name="Wide", attributes=attributes)
    assert Event.objects.get(pk=event.pk).facets == facets_of(attributes)  # texts folded


def test_every_write_path_derives_the_facets(project):
    """Facets come from the model itself, so no write path (bulk or not) can forget them."""
    subscriber = SubscriberFactory(project=project)
    long_text = noise(100)
    [bulk] = Event.objects.bulk_create(
        [Event(project=project, subscriber=subscriber, name="Note", occurred_at=subscriber.created_at,
               attributes={"text": long_text, "n": 1})]
    )  # fmt: skip
    assert Event.objects.get(pk=bulk.pk).facets == {"text": True, "n": 1}
    bulk.attributes = {"text": "short"}
    bulk.save(update_fields=["attributes"])
    assert Event.objects.get(pk=bulk.pk).facets == {"text": "short"}
