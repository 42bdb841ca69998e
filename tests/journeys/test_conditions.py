"""Conditions of entries, waits and goals: folded text, numbers, a regex that cannot hang a worker."""

from __future__ import annotations

import time

import pytest

from journeys import conditions
from journeys.conditions import check, matches, regex_search


def cond(op, value=None, attribute="text"):
    return [{"attribute": attribute, "op": op, "value": value}]


@pytest.mark.parametrize("text", ["hilfe", "Hilfe!", " HILFE", "Hílfe."])
def test_keyword_matches_every_spelling(text):
    assert matches(cond("keyword", "HILFE"), {"text": text})
    assert matches(cond("keyword", ["help", "hilfe"]), {"text": text})
    assert not matches(cond("keyword", "hilf"), {"text": text})


def test_contains_and_starts_with_compare_folded_text():
    assert matches(cond("contains", "code"), {"text": "Mein CÓDE bitte"})
    assert not matches(cond("contains", "coupon"), {"text": "Mein Code"})
    assert matches(cond("starts_with", "promo"), {"text": "¡Promo 20!"})
    assert not matches(cond("starts_with", "promo"), {"text": "no promo"})


def test_eq_is_exact_and_numbers_compare_numerically():
    assert matches(cond("eq", "asian", "cuisine"), {"cuisine": "asian"})
    assert not matches(cond("eq", "asian", "cuisine"), {"cuisine": "Asian"})
    assert matches(cond("eq", 3, "n"), {"n": 3.0})
    assert matches(cond("eq", "3", "n"), {"n": 3})
    assert matches(cond("gt", 9, "total"), {"total": "10.5"})  # "10.5" > 9 as numbers, not as text
    assert not matches(cond("gt", 9, "total"), {"total": 9})
    assert matches(cond("gte", 9, "total"), {"total": 9})
    assert matches(cond("lt", 100, "total"), {"total": 20})  # as text "20" > "100"
    assert matches(cond("lte", "2026-12-31", "day"), {"day": "2026-06-01"})
    assert not matches(cond("gt", 1, "flag"), {"flag": True})
    assert not matches(cond("eq", True, "flag"), {"flag": 1})


def test_a_missing_attribute_never_matches_except_exists_false():
    for op, value in [
        ("eq", "x"),
        ("ne", "x"),
        ("contains", "x"),
        ("gt", 1),
        ("regex", ".*"),
        ("keyword", "x"),
    ]:
        assert not matches(cond(op, value, "nope"), {"text": "x"}), op
    assert matches(cond("exists", False, "nope"), {})
    assert matches(cond("exists", False, "nope"), {"nope": None})
    assert not matches(cond("exists", True, "nope"), {})
    assert matches(cond("exists", None, "text"), {"text": ""})
    assert matches(cond("ne", "x"), {"text": "y"})


def test_all_conditions_must_hold_and_nested_attributes_are_found():
    both = [
        {"attribute": "cuisine", "op": "eq", "value": "asian"},
        {"attribute": "order.total", "op": "gte", "value": 20},
    ]
    assert matches(both, {"cuisine": "asian", "order": {"total": 25}})
    assert not matches(both, {"cuisine": "asian", "order": {"total": 5}})
    assert matches([], {}) and matches(None, {})
    assert not matches([{"op": "eq"}], {"text": "x"})  # malformed: does not hold, does not raise


def test_regex_searches_folded_text_with_folded_literals():
    assert matches(cond("regex", r"^promo\s*\d{2}$"), {"text": "PROMO 20!"})
    assert matches(cond("regex", r"^(promo|angebot)\b"), {"text": "Angebot heute"})
    assert not matches(cond("regex", r"^promo\d+$"), {"text": "promo"})
    assert regex_search("CAFÉ", "cafe")
    assert regex_search("[A-Z]{3}", "abc")
    assert not regex_search(r"[^a-z]", "abc")
    assert regex_search(r"a{2,3}$", "baaa")
    assert not regex_search(r"^a{2,3}$", "aaaa")
    assert regex_search(r"x?", "")


@pytest.mark.parametrize(
    "pattern,text",
    [
        (r"(a+)+$", "a" * 4000 + "!"),
        (r"(a|aa)*b", "a" * 4000),
        (r"(.*a){12}", "a" * 30 + "b"),
        (r".*.*.*=.*", "x" * 4000),
    ],
)
def test_catastrophic_patterns_stay_within_the_time_limit(pattern, text):
    started = time.perf_counter()
    regex_search(pattern, text)
    # Python's re needs minutes to years for each of these; the limit is 50 ms plus a slack for a
    # loaded machine (the clock is read every 32 characters).
    assert time.perf_counter() - started < 0.5


def test_the_time_limit_gives_up_and_does_not_match():
    assert not regex_search(r"(x|y|z)*q", "x" * 4000, time_limit=0.0)
    assert regex_search(r"(x|y|z)*q", "x" * 40 + "q")


def test_check_names_each_problem():
    problems = check(
        [
            {"attribute": "text", "op": "regex", "value": r"(a)\1"},
            {"attribute": "text", "op": "regex", "value": "("},
            {"attribute": "", "op": "eq", "value": "x"},
            {"attribute": "text", "op": "like", "value": "x"},
            {"attribute": "text", "op": "keyword", "value": "!!"},
            {"attribute": "text", "op": "exists", "value": "yes"},
            {"attribute": "text", "op": "regex", "value": r"(?=a)b"},
        ]
    )
    assert problems[0].startswith("condition 1:") and "back-references" in problems[0]
    assert problems[1].startswith("condition 2: Not a valid regular expression")
    assert problems[2] == "condition 3: name the attribute (1-64 characters)."
    assert problems[3].startswith("condition 4: op 'like' is not one of")
    assert "folds to nothing" in problems[4]
    assert problems[5] == "condition 6: exists takes true or false."
    assert "look-ahead" in problems[6]
    assert check("x") == ["Conditions are a list of {attribute, op, value}."]
    assert check([{"attribute": "text", "op": "regex", "value": "a{1,1000}b{1,1000}c{1,1000}"}])
    assert check(cond("keyword", ["promo", "angebot"])) == []


def test_refused_patterns_never_match():
    assert not regex_search(r"(a)\1", "aa")
    assert not regex_search("x" * (conditions.MAX_PATTERN + 1), "x" * 600)
