"""The segment compiler, table-driven: every operator of every tag type with present and missing values,
fields, reachability, events (counts, windows, attributes), negation, nesting and segment membership.

Three subscribers in the project: alice and bob have every tag (different values), carol has none.
A fourth subscriber in another project has alice's values and must never show up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlpanel.services import SYSTEM
from subscribers.errors import InvalidInput
from subscribers.models import ConsentState, Device, Subscriber
from subscribers.segments import audience, count, parse_rule, save_segment, validate_rule
from subscribers.services import record_event, set_tags
from tests.factories import ProjectFactory, SubscriberFactory

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVERYONE = {"alice", "bob", "carol"}

ALICE_TAGS = {
    "city": "Berlin",
    "age": 30,
    "price": 19.99,
    "vip": True,
    "birthday": "1990-05-01",
    "joined": "2026-02-19",  # NOW - 10 days
    "last_order": "2026-01-15T10:00:00+00:00",  # 11:00 in Berlin
    "interests": ["golf", "tennis"],
}
BOB_TAGS = {
    "city": "Munich",
    "age": 45,
    "price": 5.5,
    "vip": False,
    "birthday": "1985-12-24",
    "joined": "2025-11-21",  # NOW - 100 days
    "last_order": "2026-01-15T23:30:00+00:00",  # already the 16th in Berlin
    "interests": ["chess"],
}


def make_subscriber(project, name: str, **fields) -> Subscriber:
    fields.setdefault("whatsapp_consent", ConsentState.UNKNOWN)
    return SubscriberFactory(project=project, name=name, **fields)


def order(project, subscriber, days_ago: float, **attributes):
    return record_event(
        project=project,
        subscriber=subscriber,
        name="OrderPlaced",
        attributes=attributes,
        occurred_at=NOW - timedelta(days=days_ago),
    )


@pytest.fixture
def world(project):
    alice = make_subscriber(
        project,
        "alice",
        language="de",
        country="DE",
        email="alice@example.com",
        whatsapp_consent=ConsentState.OPTED_IN,
        last_inbound_at=NOW - timedelta(hours=2),
    )
    Device.objects.create(project=project, subscriber=alice, token="t-1", platform="android")
    bob = make_subscriber(
        project,
        "bob",
        language="en",
        country="AT",
        whatsapp_consent=ConsentState.OPTED_OUT,
        last_inbound_at=NOW - timedelta(days=3),
        external_id="crm-42",
    )
    carol = make_subscriber(project, "carol")
    set_tags(project=project, subscriber=alice, tags=ALICE_TAGS)
    set_tags(project=project, subscriber=bob, tags=BOB_TAGS)
    Subscriber.objects.filter(pk=alice.pk).update(created_at=NOW - timedelta(days=3))
    Subscriber.objects.filter(pk=bob.pk).update(created_at=NOW - timedelta(days=30))
    Subscriber.objects.filter(pk=carol.pk).update(created_at=NOW - timedelta(days=60))

    # The first OrderPlaced defines the attribute types: amount is a decimal (30.0), express a boolean.
    order(project, alice, 5, cuisine="asian", amount=30.0, express=True, delivered_on="2026-02-25",
          paid_at="2026-02-24T10:00:00+01:00")  # fmt: skip
    order(project, alice, 40, cuisine="italian", amount=12.5)
    order(project, bob, 12, cuisine="asian", amount=8, express=False, delivered_on="2026-02-19",
          paid_at="2026-02-19T09:00:00+00:00")  # fmt: skip
    order(project, bob, 11, cuisine="asian", amount=50)
    order(project, bob, 10, cuisine="asian")
    for hours in (24, 48, 72):
        record_event(
            project=project, subscriber=alice, name="AppOpened", occurred_at=NOW - timedelta(hours=hours)
        )
    record_event(project=project, subscriber=bob, name="AppOpened", occurred_at=NOW - timedelta(hours=2))

    # Someone in another project with alice's data: never part of this project's audience.
    other = ProjectFactory()
    dave = make_subscriber(other, "dave", language="de", email="dave@example.com",
                           whatsapp_consent=ConsentState.OPTED_IN, last_inbound_at=NOW)  # fmt: skip
    set_tags(project=other, subscriber=dave, tags=ALICE_TAGS)
    order(other, dave, 1, cuisine="asian", amount=30.0)
    return project


def matching(project, text: str) -> set[str]:
    """The names in the audience; the count (a different query shape: set operations counted
    without reading subscriber rows) must agree with it for every rule."""
    names = set(audience(project, parse_rule(text), now=NOW).values_list("name", flat=True))
    assert count(project, parse_rule(text), now=NOW) == len(names), text
    return names


TAG_CASES = [
    # string
    ('T("city", eq, "Berlin")', {"alice"}),
    ('T("city", eq, "berlin")', {"alice"}),  # texts compare without case (test_segment_folding.py)
    ('T("city", noteq, "Berlin")', {"bob"}),  # carol has no city: never matches
    ('T("city", in, ["Berlin", "Hamburg"])', {"alice"}),
    ('T("city", notin, ["Berlin"])', {"bob"}),
    ('T("city", contains, "unic")', {"bob"}),
    ('T("city", contains, "BER")', {"alice"}),  # contains ignores case
    ('T("city", any)', {"alice", "bob"}),
    ('T("city", none)', {"carol"}),
    ('T("CITY", eq, "Berlin")', {"alice"}),  # tag names are case-insensitive
    # integer
    ('T("age", eq, 30)', {"alice"}),
    ('T("age", noteq, 30)', {"bob"}),
    ('T("age", gt, 30)', {"bob"}),
    ('T("age", gte, 30)', {"alice", "bob"}),
    ('T("age", lt, 45)', {"alice"}),
    ('T("age", lte, 45)', {"alice", "bob"}),
    ('T("age", between, [31, 50])', {"bob"}),
    ('T("age", between, [30, 45])', {"alice", "bob"}),
    ('T("age", in, [30, 99])', {"alice"}),
    ('T("age", notin, [30])', {"bob"}),
    ('T("age", any)', {"alice", "bob"}),
    ('T("age", none)', {"carol"}),
    # decimal
    ('T("price", eq, 19.99)', {"alice"}),
    ('T("price", noteq, 5.5)', {"alice"}),
    ('T("price", gt, 10)', {"alice"}),
    ('T("price", gte, 19.99)', {"alice"}),
    ('T("price", lt, 10)', {"bob"}),
    ('T("price", lte, 5.5)', {"bob"}),
    ('T("price", between, [5.5, 5.5])', {"bob"}),
    ('T("price", in, [5.5, 1])', {"bob"}),
    ('T("price", notin, [5.5])', {"alice"}),
    ('T("price", any)', {"alice", "bob"}),
    ('T("price", none)', {"carol"}),
    # boolean
    ('T("vip", eq, true)', {"alice"}),
    ('T("vip", eq, false)', {"bob"}),
    ('T("vip", noteq, true)', {"bob"}),
    ('T("vip", any)', {"alice", "bob"}),
    ('T("vip", none)', {"carol"}),
    # date
    ('T("birthday", eq, "1990-05-01")', {"alice"}),
    ('T("birthday", noteq, "1990-05-01")', {"bob"}),
    ('T("birthday", before, "1990-01-01")', {"bob"}),
    ('T("birthday", after, "1990-01-01")', {"alice"}),
    ('T("birthday", gt, "1990-05-01")', set()),
    ('T("birthday", gte, "1990-05-01")', {"alice"}),
    ('T("birthday", lt, "1990-05-01")', {"bob"}),
    ('T("birthday", lte, "1985-12-24")', {"bob"}),
    ('T("birthday", between, ["1980-01-01", "1989-12-31"])', {"bob"}),
    ('T("joined", within, 30)', {"alice"}),
    ('T("joined", within, 101)', {"alice", "bob"}),
    ('T("birthday", any)', {"alice", "bob"}),
    ('T("birthday", none)', {"carol"}),
    # datetime: a date means that whole day in the project's time zone (Europe/Berlin)
    ('T("last_order", eq, "2026-01-15")', {"alice"}),
    ('T("last_order", eq, "2026-01-16")', {"bob"}),
    ('T("last_order", noteq, "2026-01-15")', {"bob"}),
    ('T("last_order", after, "2026-01-15")', {"bob"}),
    ('T("last_order", before, "2026-01-16")', {"alice"}),
    ('T("last_order", gte, "2026-01-15T10:00:00Z")', {"alice", "bob"}),
    ('T("last_order", gt, "2026-01-15T10:00:00Z")', {"bob"}),
    ('T("last_order", lte, "2026-01-15T10:00:00Z")', {"alice"}),
    ('T("last_order", lt, "2026-01-15T10:00:00Z")', set()),
    ('T("last_order", lte, "2026-01-15")', {"alice"}),
    ('T("last_order", between, ["2026-01-15", "2026-01-15"])', {"alice"}),
    # Without an offset, times are Berlin's: 12:00 is 11:00 UTC, 00:30 is 23:30 UTC (bob's).
    ('T("last_order", between, ["2026-01-15T12:00", "2026-01-16T00:30"])', {"bob"}),
    ('T("last_order", between, ["2026-01-15T12:00", "2026-01-16T00:29"])', set()),
    ('T("last_order", within, 45)', {"bob"}),  # since 2026-01-15 12:00 UTC
    ('T("last_order", within, 50)', {"alice", "bob"}),
    ('T("last_order", any)', {"alice", "bob"}),
    ('T("last_order", none)', {"carol"}),
    # list: one row per item
    ('T("interests", contains, "golf")', {"alice"}),
    ('T("interests", eq, "chess")', {"bob"}),
    ('T("interests", noteq, "golf")', {"bob"}),
    ('T("interests", in, ["tennis", "chess"])', {"alice", "bob"}),
    ('T("interests", notin, ["golf"])', {"bob"}),
    ('T("interests", any)', {"alice", "bob"}),
    ('T("interests", none)', {"carol"}),
    # built-in tags are subscriber columns
    ('T("Language", eq, "de")', {"alice"}),
    ('T("language", noteq, "de")', {"bob"}),
    ('T("Language", none)', {"carol"}),
    ('T("WhatsApp opt-in", eq, true)', {"alice"}),
    ('T("WhatsApp opt-in", eq, false)', {"bob", "carol"}),
    ('T("First seen", within, 7)', {"alice"}),
    ('T("External id", eq, "crm-42")', {"bob"}),
]

FIELD_CASES = [
    ('F("language", eq, "de")', {"alice"}),
    ('F("language", in, ["de", "en"])', {"alice", "bob"}),
    ('F("language", noteq, "de")', {"bob"}),
    ('F("language", none)', {"carol"}),
    ('F("country", eq, "at")', {"bob"}),  # countries are stored upper-case
    ('F("country", notin, ["DE"])', {"bob"}),
    ('F("email", any)', {"alice"}),
    ('F("email", none)', {"bob", "carol"}),
    ('F("email", contains, "EXAMPLE")', {"alice"}),
    ('F("name", contains, "ali")', {"alice"}),
    ('F("phone", any)', EVERYONE),
    ('F("external_id", eq, "crm-42")', {"bob"}),
    ('F("external_id", none)', {"alice", "carol"}),
    ('F("time_zone", none)', EVERYONE),
    ('F("whatsapp_consent", eq, "opted_out")', {"bob"}),
    ('F("whatsapp_consent", noteq, "opted_in")', {"bob", "carol"}),
    ('F("whatsapp_consent", in, ["opted_in", "unknown"])', {"alice", "carol"}),
    ('F("whatsapp_consent", notin, ["opted_in"])', {"bob", "carol"}),
    ('F("last_inbound_at", within, 1)', {"alice"}),
    ('F("last_inbound_at", within, 7)', {"alice", "bob"}),
    ('F("last_inbound_at", none)', {"carol"}),
    ('F("created_at", before, "2026-02-01")', {"carol", "bob"}),
    ('F("created_at", after, "2026-02-20")', {"alice"}),
    ('F("created_at", between, ["2026-01-01", "2026-01-31"])', {"bob"}),
]

REACHABILITY_CASES = [
    ("R(whatsapp)", {"alice"}),
    ("R(window)", {"alice"}),  # bob's last message is 3 days old
    ("R(email)", {"alice"}),
    ("R(push)", {"alice"}),
    ("!R(push)", {"bob", "carol"}),
    ("!R(whatsapp)", {"bob", "carol"}),
]

EVENT_CASES = [
    # performed / not performed, count ops
    ('E("OrderPlaced", gte, 1)', {"alice", "bob"}),
    ('E("OrderPlaced", gt, 0)', {"alice", "bob"}),
    ('E("OrderPlaced", noteq, 0)', {"alice", "bob"}),
    ('E("OrderPlaced", eq, 0)', {"carol"}),
    ('E("OrderPlaced", lt, 1)', {"carol"}),
    ('E("OrderPlaced", gte, 0)', EVERYONE),
    ('E("OrderPlaced", lt, 0)', set()),
    ('E("OrderPlaced", gte, 2)', {"alice", "bob"}),
    ('E("OrderPlaced", gte, 3)', {"bob"}),
    ('E("OrderPlaced", gt, 2)', {"bob"}),
    ('E("OrderPlaced", eq, 2)', {"alice"}),
    ('E("OrderPlaced", eq, 3)', {"bob"}),
    ('E("OrderPlaced", noteq, 2)', {"bob", "carol"}),
    ('E("OrderPlaced", lt, 3)', {"alice", "carol"}),
    ('E("OrderPlaced", lte, 2)', {"alice", "carol"}),
    ('E("OrderPlaced", lte, 0)', {"carol"}),
    ('!E("OrderPlaced", gte, 1)', {"carol"}),
    # windows
    ('E("OrderPlaced", gte, 1, 7d)', {"alice"}),
    ('E("OrderPlaced", gte, 1, 30d)', {"alice", "bob"}),
    ('E("OrderPlaced", eq, 0, 7d)', {"bob", "carol"}),
    ('E("OrderPlaced", gte, 2, 30d)', {"bob"}),
    ('E("AppOpened", gte, 1, 12h)', {"bob"}),
    ('E("AppOpened", gte, 3, 80h)', {"alice"}),
    ('E("AppOpened", gte, 3, 50h)', set()),
    ('E("OrderPlaced", gte, 1, since "2026-02-15")', {"alice", "bob"}),
    ('E("OrderPlaced", gte, 1, since "2026-02-20")', {"alice"}),
    ('E("OrderPlaced", gte, 1, between "2026-02-17" and "2026-02-18")', {"bob"}),
    ('E("OrderPlaced", eq, 2, between "2026-02-17" and "2026-02-18")', {"bob"}),
    ('E("OrderPlaced", gte, 1, between "2025-12-01" and "2025-12-31")', set()),
    # attributes: strings
    ('E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")', {"alice", "bob"}),
    ('E("OrderPlaced", gte, 1, "cuisine" eq "italian")', {"alice"}),
    ('E("OrderPlaced", gte, 1, 30d, "cuisine" eq "italian")', set()),
    ('E("OrderPlaced", gte, 1, "cuisine" noteq "asian")', {"alice"}),
    ('E("OrderPlaced", gte, 1, "cuisine" in ["italian", "thai"])', {"alice"}),
    ('E("OrderPlaced", gte, 1, "cuisine" notin ["asian"])', {"alice"}),
    ('E("OrderPlaced", gte, 1, "cuisine" contains "ASI")', {"alice", "bob"}),
    ('E("OrderPlaced", gte, 3, "cuisine" eq "asian")', {"bob"}),
    # attributes: numbers compare as numbers; a missing amount never matches
    ('E("OrderPlaced", gte, 1, "amount" gt 20)', {"alice", "bob"}),
    ('E("OrderPlaced", gte, 1, "amount" gt 30)', {"bob"}),
    ('E("OrderPlaced", gte, 1, "amount" lt 10)', {"bob"}),
    ('E("OrderPlaced", gte, 1, "amount" gte 50)', {"bob"}),
    ('E("OrderPlaced", gte, 1, "amount" lte 8)', {"bob"}),
    ('E("OrderPlaced", gte, 1, "amount" eq 12.5)', {"alice"}),
    ('E("OrderPlaced", gte, 1, "amount" between [10, 40])', {"alice"}),
    ('E("OrderPlaced", gte, 2, "amount" between [10, 40])', {"alice"}),
    ('E("OrderPlaced", gte, 2, "amount" noteq 30)', {"bob"}),
    ('E("OrderPlaced", gte, 1, "amount" in [8, 9])', {"bob"}),
    ('E("OrderPlaced", gte, 2, "amount" notin [30, 12.5])', {"bob"}),
    ('E("OrderPlaced", gte, 3, "amount" any)', set()),
    ('E("OrderPlaced", gte, 1, "amount" none)', {"bob"}),
    ('E("OrderPlaced", gte, 2, "cuisine" eq "asian", "amount" gt 5)', {"bob"}),
    ('E("OrderPlaced", eq, 0, "amount" gt 40)', {"alice", "carol"}),
    # attributes: booleans and dates
    ('E("OrderPlaced", gte, 1, "express" eq true)', {"alice"}),
    ('E("OrderPlaced", gte, 1, "express" eq false)', {"bob"}),
    ('E("OrderPlaced", gte, 1, "express" noteq true)', {"bob"}),
    ('E("OrderPlaced", gte, 1, "delivered_on" after "2026-02-20")', {"alice"}),
    ('E("OrderPlaced", gte, 1, "delivered_on" before "2026-02-20")', {"bob"}),
    ('E("OrderPlaced", gte, 1, "delivered_on" eq "2026-02-19")', {"bob"}),
    ('E("OrderPlaced", gte, 1, "delivered_on" within 7)', {"alice"}),
    ('E("OrderPlaced", gte, 1, "delivered_on" between ["2026-02-19", "2026-02-19"])', {"bob"}),
    ('E("OrderPlaced", gte, 1, "paid_at" after "2026-02-20")', {"alice"}),
    ('E("OrderPlaced", gte, 1, "paid_at" eq "2026-02-19")', {"bob"}),
]

LOGIC_CASES = [
    ('T("city", eq, "Berlin") + T("city", eq, "Munich")', {"alice", "bob"}),
    ('T("city", eq, "Berlin") * T("age", gt, 40)', set()),
    ('(T("city", eq, "Berlin") + T("age", gt, 40)) * R(whatsapp)', {"alice"}),
    ('T("city", eq, "Berlin") + T("age", gt, 40) * R(whatsapp)', {"alice"}),
    ('!(T("city", eq, "Berlin") + T("age", gt, 40))', {"carol"}),
    ('!T("city", eq, "Berlin")', {"bob", "carol"}),  # explicit NOT includes "not set"
    ('!!T("city", eq, "Berlin")', {"alice"}),
    ('T("city", any) \\ T("vip", eq, true)', {"bob"}),
    ('T("city", any) \\ T("vip", eq, true) + T("city", none)', {"bob", "carol"}),
    ('!(T("city", any) * !T("vip", eq, true))', {"alice", "carol"}),
    ("ALL", EVERYONE),
    ("NONE", set()),
    ("!ALL", set()),
    ("!NONE", EVERYONE),
    ('ALL * T("city", eq, "Berlin")', {"alice"}),
    ("NONE + R(email)", {"alice"}),
    ('!E("OrderPlaced", gte, 1, 7d) * !T("city", none)', {"bob"}),
    ('T("city", eq, "Berlin") * E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")', {"alice"}),
    ('(R(whatsapp) + R(window)) * !(E("AppOpened", gte, 2) + T("vip", eq, false))', set()),
    ('((T("age", gte, 30) * (T("price", lt, 10) + T("vip", eq, true))) \\ F("country", eq, "DE"))', {"bob"}),
]


def _ids(cases):
    return [text for text, _ in cases]


@pytest.mark.parametrize(("text", "expected"), TAG_CASES, ids=_ids(TAG_CASES))
def test_tag_operators(world, text, expected):
    assert matching(world, text) == expected


@pytest.mark.parametrize(("text", "expected"), FIELD_CASES, ids=_ids(FIELD_CASES))
def test_field_conditions(world, text, expected):
    assert matching(world, text) == expected


@pytest.mark.parametrize(("text", "expected"), REACHABILITY_CASES, ids=_ids(REACHABILITY_CASES))
def test_reachability(world, text, expected):
    assert matching(world, text) == expected


@pytest.mark.parametrize(("text", "expected"), EVENT_CASES, ids=_ids(EVENT_CASES))
def test_event_conditions(world, text, expected):
    assert matching(world, text) == expected


@pytest.mark.parametrize(("text", "expected"), LOGIC_CASES, ids=_ids(LOGIC_CASES))
def test_negation_and_nesting(world, text, expected):
    assert matching(world, text) == expected


def test_builder_shaped_tree_with_nested_groups(world):
    # Form inputs arrive as text ("1", "30", "20"); validation turns them into numbers.
    tree = {
        "type": "group",
        "op": "or",
        "negate": False,
        "children": [
            {"type": "group", "op": "and", "negate": False, "children": [
                {"type": "tag", "tag": "city", "op": "eq", "value": "Berlin"},
                {"type": "event", "event": "OrderPlaced", "op": "gte", "count": "1",
                 "window": {"kind": "days", "n": "30"},
                 "where": [{"attribute": "amount", "op": "gt", "value": "20"}]},
            ]},
            {"type": "group", "op": "and", "negate": True, "children": [
                {"type": "field", "field": "language", "op": "any"},
                {"type": "group", "op": "and", "negate": True, "children": [
                    {"type": "reachability", "channel": "email"},
                ]},
            ]},
        ],
    }  # fmt: skip
    # alice by the first group; carol has no language; bob has a language and no email.
    assert set(audience(world, tree, now=NOW).values_list("name", flat=True)) == {"alice", "carol"}


def test_count_matches_the_audience(world):
    assert count(world, parse_rule('T("city", any)')) == 2
    assert count(world, parse_rule("ALL")) == 3


# ---- segment membership --------------------------------------------------------------------------


def segment(project, name: str, text: str):
    return save_segment(project=project, name=name, rule=parse_rule(text), actor=SYSTEM)


def test_segment_membership_inlines_the_other_rule(world):
    segment(world, "Berliners", 'T("city", eq, "Berlin")')
    segment(world, "Opted out", 'F("whatsapp_consent", eq, "opted_out")')
    segment(world, "Either", 'S("Berliners") + S("Opted out")')
    assert matching(world, 'S("Berliners")') == {"alice"}
    assert matching(world, 'S("berliners")') == {"alice"}
    assert matching(world, '!S("Berliners")') == {"bob", "carol"}
    assert matching(world, 'S("Either")') == {"alice", "bob"}
    assert matching(world, 'S("Either") \\ S("Berliners")') == {"bob"}


def test_segment_membership_follows_the_current_rule(world):
    berliners = segment(world, "Berliners", 'T("city", eq, "Berlin")')
    tree = validate_rule(world, parse_rule('S("Berliners")'))
    save_segment(
        project=world, segment=berliners, name="Berliners", rule=parse_rule('T("city", any)'), actor=SYSTEM
    )
    assert set(audience(world, tree, now=NOW).values_list("name", flat=True)) == {"alice", "bob"}


def test_segment_refers_by_public_id_so_renaming_keeps_it(world):
    berliners = segment(world, "Berliners", 'T("city", eq, "Berlin")')
    tree = validate_rule(world, parse_rule('S("Berliners")'))
    assert tree == {"type": "segment", "segment": str(berliners.public_id), "name": "Berliners"}
    save_segment(project=world, segment=berliners, name="Hauptstadt", rule=berliners.rule, actor=SYSTEM)
    assert validate_rule(world, tree)["name"] == "Hauptstadt"
    assert set(audience(world, tree, now=NOW).values_list("name", flat=True)) == {"alice"}


def test_renaming_a_segment_updates_the_text_of_segments_that_include_it(world):
    from subscribers.segments import rule_to_text

    berliners = segment(world, "Berliners", 'T("city", eq, "Berlin")')
    fans = segment(world, "Fans", 'S("Berliners") * R(whatsapp)')
    save_segment(project=world, segment=berliners, name="Hauptstadt", rule=berliners.rule, actor=SYSTEM)
    fans.refresh_from_db()
    assert rule_to_text(fans.rule) == 'S("Hauptstadt") * R(whatsapp)'
    assert matching(world, rule_to_text(fans.rule)) == {"alice"}


def test_cycles_are_refused(world):
    a = segment(world, "A", 'T("city", any)')
    b = segment(world, "B", 'S("A") * R(whatsapp)')
    with pytest.raises(InvalidInput) as exc:
        save_segment(project=world, segment=a, name="A", rule=parse_rule('S("B")'), actor=SYSTEM)
    assert "cannot include themselves" in exc.value.message
    assert "A → B → A" in exc.value.message
    with pytest.raises(InvalidInput, match="cannot include themselves"):
        save_segment(project=world, segment=b, name="B", rule=parse_rule('S("B") + R(email)'), actor=SYSTEM)
    a.refresh_from_db()
    assert a.rule == {"type": "tag", "tag": "city", "op": "any"}


def test_segment_nesting_depth_is_limited(world):
    segment(world, "L0", 'T("city", any)')
    for level in range(1, 6):
        segment(world, f"L{level}", f'S("L{level - 1}")')
    assert matching(world, 'S("L4")') == {"alice", "bob"}
    with pytest.raises(InvalidInput, match="at most 5 levels"):
        matching(world, 'S("L5")')


def test_segments_of_another_project_are_unknown(world):
    other = ProjectFactory()
    save_segment(project=other, name="Theirs", rule=parse_rule("ALL"), actor=SYSTEM)
    with pytest.raises(InvalidInput, match="Unknown segment 'Theirs'"):
        matching(world, 'S("Theirs")')


# ---- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('T("colour", eq, "red")', "Unknown tag 'colour'"),
        ('T("city", gt, "B")', "Operator 'gt' is not allowed for tag 'city' (text)"),
        ('T("vip", contains, "x")', "Operator 'contains' is not allowed for tag 'vip'"),
        ('T("age", eq, "thirty")', "Tag 'age' is a whole number; 'thirty' is not."),
        ('T("vip", eq, "yes")', "Tag 'vip' is true or false"),
        ('T("birthday", eq, "01.05.1990")', "Tag 'birthday' is a date: use YYYY-MM-DD"),
        ('T("age", between, [50, 10])', "the first value must not be above the second"),
        ('T("joined", within, 0)', "needs a number of days"),
        ('E("OrderShipped", gte, 1)', "Unknown event 'OrderShipped'"),
        ('E("OrderPlaced", gte, 1, "colour" eq "red")', "Event 'OrderPlaced' has no attribute 'colour'"),
        (
            'E("OrderPlaced", gte, 1, "amount" contains "3")',
            "Operator 'contains' is not allowed for attribute",
        ),
        ('E("OrderPlaced", gte, 1, "amount" gt "lots")', "is a number; 'lots' is not"),
        ('E("OrderPlaced", gte, 1, between "2026-02-01" and "2026-01-01")', "ends before it starts"),
        ('E("OrderPlaced", gte, 1, since "yesterday")', "needs a start date"),
        ('S("Nobody")', "Unknown segment 'Nobody'"),
        ('F("whatsapp_consent", eq, "maybe")', "Field 'whatsapp_consent' is a consent state, one of"),
    ],
)
def test_invalid_rules_name_the_problem(world, text, message):
    with pytest.raises(InvalidInput) as exc:
        validate_rule(world, parse_rule(text))
    assert message in exc.value.message
    assert exc.value.code == "invalid_rule"


def test_an_empty_group_is_refused_not_guessed(world):
    with pytest.raises(InvalidInput, match="no conditions") as exc:
        validate_rule(world, {"type": "group", "op": "and", "children": [
            {"type": "tag", "tag": "city", "op": "any"},
            {"type": "group", "op": "or", "children": []},
        ]})  # fmt: skip
    assert exc.value.field == "rule.1"


def test_validation_returns_canonical_names_and_values(world):
    tree = validate_rule(world, parse_rule('T("CITY", in, ["Berlin", "Berlin"]) * E("orderplaced", gte, 1)'))
    assert tree["children"][0] == {"type": "tag", "tag": "city", "op": "in", "value": ["Berlin"]}
    assert tree["children"][1]["event"] == "OrderPlaced"


def test_tags_of_another_project_are_unknown(world):
    other = ProjectFactory()
    set_tags(project=other, subscriber=SubscriberFactory(project=other), tags={"shoe_size": 42})
    with pytest.raises(InvalidInput, match="Unknown tag 'shoe_size'"):
        matching(world, 'T("shoe_size", eq, 42)')


def test_compiled_query_is_one_statement(world, django_assert_num_queries):
    tree = validate_rule(world, parse_rule('T("city", eq, "Berlin") * E("OrderPlaced", gte, 2, 30d)'))
    qs = audience(world, tree, now=NOW)
    with django_assert_num_queries(1):
        assert qs.count() == 0


def test_between_window_uses_whole_days_in_the_project_time_zone(world):
    # alice's Italian order was at 2026-01-20 12:00 UTC: inside the 20th, outside the 19th.
    assert matching(world, 'E("OrderPlaced", gte, 1, between "2026-01-20" and "2026-01-20")') == {"alice"}
    assert matching(world, 'E("OrderPlaced", gte, 1, between "2026-01-01" and "2026-01-19")') == set()


@pytest.mark.parametrize(
    "text",
    [
        'T("last_order", eq, "9999-12-31")',
        'T("birthday", lte, "0001-01-01")',
        'T("last_order", after, "9999-12-31T23:59")',
        'E("OrderPlaced", gte, 1, between "2026-01-01" and "9999-12-31")',
        'E("OrderPlaced", gte, 1, "delivered_on" eq "9999-12-31")',
    ],
)
def test_dates_at_the_ends_of_the_calendar_are_refused_not_a_crash(world, text):
    # 9999-12-31 has no next day to end the range at (an OverflowError, a 500, before).
    with pytest.raises(InvalidInput, match=r"9999|0001|end date"):
        count(world, parse_rule(text), now=NOW)
