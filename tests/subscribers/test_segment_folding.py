"""Text conditions ignore case and accents unless they match case (eq_cs, "match_case": true).

Tag texts compare their folded copy (TagValue.value_folded), event attributes their folded
facets, subscriber columns the database's wcp_fold; count() and audience() must agree, on
SQLite and on PostgreSQL alike (CI runs both).
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection

from controlpanel.services import SYSTEM
from subscribers.errors import InvalidInput
from subscribers.models import Event, TagDefinition, TagType, TagValue
from subscribers.segments import (
    RuleSyntaxError,
    audience,
    count,
    parse_rule,
    rule_to_text,
    save_segment,
    validate_rule,
)
from subscribers.services import record_event, set_tags
from subscribers.textfold import fold, search_key
from tests.factories import SubscriberFactory

LONG = "Bitte liefern Sie die Bestellung an den Hintereingang, die KLINGEL ist kaputt. Danke schön!"


@pytest.fixture
def people(project):
    """Names, cities, interests and orders spelled the way real data is: any case, with accents."""
    rows = [
        ("Jürgen Müller", "Köln", ["Golf", "Tennis"], "Asian", "Straße 1"),
        ("ANNA SCHMIDT", "BERLIN", ["golf"], "asian", "Hauptstrasse 2"),
        ("Zoë Weiß", "Düsseldorf", ["Chess"], "Italian", LONG),
    ]
    for name, city, interests, cuisine, note in rows:
        s = SubscriberFactory(project=project, name=name, email=f"{name.split()[0]}@Example.com")
        set_tags(project=project, subscriber=s, tags={"city": city, "interests": interests})
        record_event(
            project=project, subscriber=s, name="OrderPlaced", attributes={"cuisine": cuisine, "note": note}
        )
    return project


def matching(project, text: str) -> set[str]:
    rule = parse_rule(text)
    names = {name.split()[0] for name in audience(project, rule).values_list("name", flat=True)}
    assert count(project, rule) == len(names), text
    return names


CASES = [
    # tags: texts
    ('T("city", eq, "berlin")', {"ANNA"}),
    ('T("city", eq, "koln")', {"Jürgen"}),
    ('T("city", eq, "KÖLN")', {"Jürgen"}),
    ('T("city", eq_cs, "Köln")', {"Jürgen"}),
    ('T("city", eq_cs, "köln")', set()),
    ('T("city", noteq, "berlin")', {"Jürgen", "Zoë"}),
    ('T("city", noteq_cs, "Berlin")', {"Jürgen", "Zoë", "ANNA"}),
    ('T("city", in, ["berlin", "dusseldorf"])', {"ANNA", "Zoë"}),
    ('T("city", in_cs, ["Berlin", "Düsseldorf"])', {"Zoë"}),
    ('T("city", notin, ["BERLIN"])', {"Jürgen", "Zoë"}),
    ('T("city", contains, "ÜSSEL")', {"Zoë"}),
    ('T("city", contains_cs, "üssel")', {"Zoë"}),
    ('T("city", contains_cs, "ÜSSEL")', set()),
    ('T("city", startswith, "ko")', {"Jürgen"}),
    ('T("city", startswith_cs, "ko")', set()),
    ('T("city", startswith, "%")', set()),  # LIKE wildcards are text here
    # tags: lists, one row per item
    ('T("interests", contains, "GOLF")', {"Jürgen", "ANNA"}),
    ('T("interests", eq_cs, "golf")', {"ANNA"}),
    ('T("interests", noteq, "golf")', {"Zoë"}),
    ('T("interests", noteq_cs, "golf")', {"Jürgen", "Zoë"}),
    ('T("interests", in, ["chess", "tennis"])', {"Jürgen", "Zoë"}),
    # event attributes
    ('E("OrderPlaced", gte, 1, "cuisine" eq "ASIAN")', {"Jürgen", "ANNA"}),
    ('E("OrderPlaced", gte, 1, "cuisine" eq_cs "Asian")', {"Jürgen"}),
    ('E("OrderPlaced", gte, 1, "cuisine" noteq "asian")', {"Zoë"}),
    ('E("OrderPlaced", gte, 1, "cuisine" noteq_cs "asian")', {"Jürgen", "Zoë"}),
    ('E("OrderPlaced", gte, 1, "cuisine" in ["asian", "ITALIAN"])', {"Jürgen", "ANNA", "Zoë"}),
    ('E("OrderPlaced", gte, 1, "cuisine" in_cs ["asian", "ITALIAN"])', {"ANNA"}),
    ('E("OrderPlaced", gte, 1, "cuisine" contains "SIA")', {"Jürgen", "ANNA"}),
    ('E("OrderPlaced", gte, 1, "cuisine" startswith "it")', {"Zoë"}),
    ('E("OrderPlaced", gte, 1, "note" contains "strasse")', {"Jürgen", "ANNA"}),
    ('E("OrderPlaced", gte, 1, "note" contains_cs "Straße")', {"Jürgen"}),
    # a text longer than the facets hold: compared from the attributes, folded by the database
    ('E("OrderPlaced", gte, 1, "note" contains "klingel ist")', {"Zoë"}),
    ('E("OrderPlaced", gte, 1, "note" contains "SCHON")', {"Zoë"}),
    ('E("OrderPlaced", gte, 1, "note" contains_cs "klingel")', set()),
    (f'E("OrderPlaced", gte, 1, "note" eq "{LONG.upper()}")', {"Zoë"}),
    (f'E("OrderPlaced", gte, 1, "note" eq_cs "{LONG.upper()}")', set()),
    (f'E("OrderPlaced", gte, 1, "note" eq_cs "{LONG}")', {"Zoë"}),
    ('E("OrderPlaced", gte, 1, "note" startswith "bitte")', {"Zoë"}),
    # subscriber columns: folded by the database
    ('F("name", eq, "jurgen muller")', {"Jürgen"}),
    ('F("name", contains, "WEISS")', {"Zoë"}),
    ('F("name", contains_cs, "Weiß")', {"Zoë"}),
    ('F("name", contains_cs, "weiß")', set()),
    ('F("name", startswith, "anna")', {"ANNA"}),
    ('F("email", eq, "anna@example.com")', {"ANNA"}),
    ('F("email", eq_cs, "anna@example.com")', set()),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:70] for c in CASES])
def test_text_conditions_ignore_case_and_accents_unless_they_match_case(people, text, expected):
    assert matching(people, text) == expected


def test_the_asian_food_in_berlin_count_finds_what_a_marketer_types(people):
    rule = parse_rule('T("city", eq, "Berlin") * E("OrderPlaced", gte, 1, "cuisine" eq "Asian")')
    assert count(people, rule) == 1


def test_match_case_round_trips_through_text_and_validation(people):
    text = 'T("city", eq_cs, "Köln") * E("OrderPlaced", gte, 1, "cuisine" in_cs ["Asian"])'
    tree = validate_rule(people, parse_rule(text))
    assert tree["children"][0]["match_case"] is True
    assert tree["children"][1]["where"][0] == {
        "attribute": "cuisine",
        "op": "in",
        "value": ["Asian"],
        "match_case": True,
    }
    assert rule_to_text(tree) == text
    plain = validate_rule(people, parse_rule('T("city", eq, "Köln")'))
    assert "match_case" not in plain


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"type": "tag", "tag": "age", "op": "eq", "value": 3, "match_case": True}, "text conditions only"),
        ({"type": "tag", "tag": "city", "op": "any", "match_case": True}, "text conditions only"),
        ({"type": "tag", "tag": "city", "op": "eq", "value": "x", "match_case": "yes"}, "true or false"),
        ({"type": "tag", "tag": "city", "op": "eq", "value": "a\x00b"}, "cannot hold"),
        ({"type": "field", "field": "name", "op": "contains", "value": "\ud800"}, "cannot hold"),
    ],
)
def test_match_case_and_unstorable_characters_are_refused_by_validation(people, rule, message):
    TagDefinition.objects.create(project=people, name="age", type=TagType.INTEGER)
    with pytest.raises(InvalidInput) as exc:
        validate_rule(people, rule)
    assert message in exc.value.message


def test_match_case_exists_for_text_operators_only():
    for text in ('T("age", gt_cs, 1)', 'T("city", any_cs)', 'E("OrderPlaced", gte_cs, 1)'):
        with pytest.raises(RuleSyntaxError, match="unknown operator"):
            parse_rule(text)


def test_a_saved_segment_keeps_match_case(people):
    segment = save_segment(
        project=people, name="Exact", rule=parse_rule('T("city", eq_cs, "BERLIN")'), actor=SYSTEM
    )
    assert segment.cached_count == 1
    assert rule_to_text(segment.rule) == 'T("city", eq_cs, "BERLIN")'


def test_writers_store_folded_copies(people):
    assert set(
        TagValue.objects.filter(project=people, value_text="Köln").values_list("value_folded", flat=True)
    ) == {"koln"}
    event = Event.objects.filter(project=people, attributes__cuisine="Asian").get()
    assert event.facets == {"cuisine": "asian", "note": "strasse 1"}
    assert event.attributes["cuisine"] == "Asian"  # the original stays as sent
    s = SubscriberFactory(project=people)
    definition = TagDefinition.objects.get(project=people, name="city")
    TagValue.objects.bulk_create(
        [TagValue(project=people, subscriber=s, tag=definition, value_text="MÜNCHEN")]
    )
    assert TagValue.objects.get(subscriber=s).value_folded == "munchen"


def test_fold_and_the_search_key():
    assert fold("Straße ÉCOLE ﬁ İ") == "strasse ecole fi i"
    assert {search_key(x) for x in ("Müller", "Mueller", "muller", "MÜLLER")} == {"muller"}


def test_the_migration_fills_folded_copies_of_existing_rows(people):
    TagValue.objects.filter(project=people).update(value_folded=None)
    Event.objects.filter(project=people).update(facets={"cuisine": "Asian"})
    migration = importlib.import_module("subscribers.migrations.0008_fold_tag_values_and_facets")
    # The functions take the schema editor for its connection only.
    editor = connection.schema_editor()
    migration.fold_tag_values(apps, editor)
    migration.fold_facets(apps, editor)
    assert TagValue.objects.filter(project=people, value_text="BERLIN").get().value_folded == "berlin"
    assert not TagValue.objects.filter(
        project=people, value_text__isnull=False, value_folded__isnull=True
    ).exists()
    assert matching(people, 'E("OrderPlaced", gte, 1, "cuisine" eq "italian")') == {"Zoë"}
