"""The text form of segment rules: every construct, precedence, error positions and round trips.

These are pure functions (no database): parse_rule(text) -> tree, rule_to_text(tree) -> text.
"""

from __future__ import annotations

import json
import random

import pytest

from subscribers.segments import RuleSyntaxError, parse_rule, rule_to_text

CITY = {"type": "tag", "tag": "city", "op": "eq", "value": "Berlin"}
VIP = {"type": "tag", "tag": "vip", "op": "eq", "value": True}
PUSH = {"type": "reachability", "channel": "push"}
EMAIL = {"type": "reachability", "channel": "email"}


def group(op, *children, negate=False):
    return {"type": "group", "op": op, "negate": negate, "children": list(children)}


def NOT(node):
    return group("and", node, negate=True)


def event(name, op, count, window=None, where=()):
    return {"type": "event", "event": name, "op": op, "count": count, "window": window, "where": list(where)}


CONSTRUCTS = [
    ('T("city", eq, "Berlin")', CITY),
    ('T("age", gt, 30)', {"type": "tag", "tag": "age", "op": "gt", "value": 30}),
    ('T("price", lte, -19.99)', {"type": "tag", "tag": "price", "op": "lte", "value": -19.99}),
    ('T("vip", eq, true)', VIP),
    ('T("vip", noteq, FALSE)', {"type": "tag", "tag": "vip", "op": "noteq", "value": False}),
    ('T("age", between, [18, 30])', {"type": "tag", "tag": "age", "op": "between", "value": [18, 30]}),
    ('T("city", in, ["Berlin", "Hamburg"])',
     {"type": "tag", "tag": "city", "op": "in", "value": ["Berlin", "Hamburg"]}),
    ('T("city", notin, [])', {"type": "tag", "tag": "city", "op": "notin", "value": []}),
    ('T("interests", contains, "golf")',
     {"type": "tag", "tag": "interests", "op": "contains", "value": "golf"}),
    ('T("city", any)', {"type": "tag", "tag": "city", "op": "any"}),
    ('T("city", none)', {"type": "tag", "tag": "city", "op": "none"}),
    ('T("birthday", before, "2026-01-31")',
     {"type": "tag", "tag": "birthday", "op": "before", "value": "2026-01-31"}),
    ('T("birthday", within, 30)', {"type": "tag", "tag": "birthday", "op": "within", "value": 30}),
    ('T("Time zone", EQ, "Europe/Berlin")',
     {"type": "tag", "tag": "Time zone", "op": "eq", "value": "Europe/Berlin"}),
    ('T("quote", eq, "say \\"hi\\" \\\\ bye")',
     {"type": "tag", "tag": "quote", "op": "eq", "value": 'say "hi" \\ bye'}),
    ('F("language", eq, "de")', {"type": "field", "field": "language", "op": "eq", "value": "de"}),
    ('F("created_at", within, 7)', {"type": "field", "field": "created_at", "op": "within", "value": 7}),
    ('F("email", any)', {"type": "field", "field": "email", "op": "any"}),
    ('E("OrderPlaced", gte, 1)', event("OrderPlaced", "gte", 1)),
    ('E("OrderPlaced", eq, 0, 7d)', event("OrderPlaced", "eq", 0, {"kind": "days", "n": 7})),
    ('E("AppOpened", lt, 3, 12h)', event("AppOpened", "lt", 3, {"kind": "hours", "n": 12})),
    ('E("OrderPlaced", gte, 1, since "2026-01-01")',
     event("OrderPlaced", "gte", 1, {"kind": "since", "from": "2026-01-01"})),
    ('E("OrderPlaced", gte, 1, between "2026-01-01" and "2026-01-31")',
     event("OrderPlaced", "gte", 1, {"kind": "between", "from": "2026-01-01", "to": "2026-01-31"})),
    ('E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")',
     event("OrderPlaced", "gte", 1, {"kind": "days", "n": 30},
           [{"attribute": "cuisine", "op": "eq", "value": "asian"}])),
    ('E("OrderPlaced", gte, 3, "amount" between [10, 20.5], "coupon" none, "cuisine" in ["thai"])',
     event("OrderPlaced", "gte", 3, None, [
         {"attribute": "amount", "op": "between", "value": [10, 20.5]},
         {"attribute": "coupon", "op": "none"},
         {"attribute": "cuisine", "op": "in", "value": ["thai"]},
     ])),
    ('S("VIP customers")', {"type": "segment", "name": "VIP customers"}),
    ("R(whatsapp)", {"type": "reachability", "channel": "whatsapp"}),
    ("R(window)", {"type": "reachability", "channel": "window"}),
    ("R(email)", EMAIL),
    ("R( push )", PUSH),
    ("ALL", {"type": "all"}),
    ("none", {"type": "none"}),
]  # fmt: skip


@pytest.mark.parametrize(("text", "tree"), CONSTRUCTS, ids=[c[0] for c in CONSTRUCTS])
def test_every_construct_parses(text, tree):
    assert parse_rule(text) == tree


C, V, P, E_ = 'T("city", eq, "Berlin")', 'T("vip", eq, true)', "R(push)", "R(email)"

PRECEDENCE = [
    (f"{C} * {V}", group("and", CITY, VIP)),
    (f"{C} + {V}", group("or", CITY, VIP)),
    (f"{C} + {V} * {P}", group("or", CITY, group("and", VIP, PUSH))),
    (f"{C} * {V} + {P}", group("or", group("and", CITY, VIP), PUSH)),
    (f"({C} + {V}) * {P}", group("and", group("or", CITY, VIP), PUSH)),
    (f"{C} * {V} * {P}", group("and", CITY, VIP, PUSH)),
    (f"{C} * ({V} * {P})", group("and", CITY, VIP, PUSH)),
    (f"{C} + ({V} + {P})", group("or", CITY, VIP, PUSH)),
    (f"{C} \\ {V}", group("and", CITY, NOT(VIP))),
    (f"{C} * {V} \\ {P}", group("and", CITY, VIP, NOT(PUSH))),
    (f"{C} \\ {V} * {P}", group("and", CITY, group("and", VIP, PUSH, negate=True))),
    (f"{C} + {V} \\ {P}", group("and", group("or", CITY, VIP), NOT(PUSH))),
    (f"{C} \\ {V} + {P}", group("or", group("and", CITY, NOT(VIP)), PUSH)),
    (f"!{C}", NOT(CITY)),
    (f"!!{C}", CITY),
    (f"!({C})", NOT(CITY)),
    (f"!{C} * {V}", group("and", NOT(CITY), VIP)),
    (f"!({C} * {V})", group("and", CITY, VIP, negate=True)),
    (f"!({C} + {V})", group("or", CITY, VIP, negate=True)),
    (f"!!({C} + {V})", group("or", CITY, VIP)),
    (f"!({C} * {V}) * {P}", group("and", group("and", CITY, VIP, negate=True), PUSH)),
    (f"(({C}))", CITY),
    (f"{C}*{V}+{P}\\{E_}", group("and", group("or", group("and", CITY, VIP), PUSH), NOT(EMAIL))),
]


@pytest.mark.parametrize(("text", "tree"), PRECEDENCE, ids=[p[0] for p in PRECEDENCE])
def test_precedence_and_grouping(text, tree):
    assert parse_rule(text) == tree


ERRORS = [
    # (text, position, message)
    ('T("city" eq "Berlin")', 9, "expected ',' at position 9, found 'eq'"),
    ('T("city", eq "Berlin")', 13, "expected ',' and a value after eq at position 13"),
    ("T(city, eq, 1)", 2, "expected the tag name in quotes"),
    ('T("city", equals, "x")', 10, "unknown operator 'equals'"),
    ('T("city", any, "x")', 13, "any takes no value at position 13"),
    ('T("age", between, 5)', 18, "between needs a list of two values"),
    ('T("age", between, [1, 2, 3])', 18, "between needs a list of two values"),
    ('T("city", in, "Berlin")', 14, "in needs a list"),
    ('T("city", eq, ["a"])', 14, "eq needs a single value, not a list"),
    ('T("city", eq, [["a"]])', 15, "lists cannot be nested"),
    ('T("city", eq, [1, 2)', 19, "expected ',' or ']' at position 19"),
    ('T("city", eq, Berlin)', 14, "expected a value"),
    ('T("city", eq, "Berlin"', 22, "expected ')' at position 22, found the end of the rule"),
    ('T("city", eq, "Berl', 14, "unterminated string at position 14"),
    ('T("c\\ity", any)', 4, "unknown escape in string"),
    ('F("colour", eq, "red")', 2, "unknown field 'colour'"),
    ('E("OrderPlaced", atleast, 1)', 17, "unknown operator 'atleast'"),
    ('E("OrderPlaced", gte, "1")', 22, "expected a count (a whole number) at position 22"),
    ('E("OrderPlaced", gte, 1.5)', 22, "expected a count"),
    ('E("OrderPlaced", gte, -1)', 22, "expected a count"),
    ('E("OrderPlaced", gte, 1, 30x)', 27, "unexpected 'x' after the number at position 27"),
    ('E("OrderPlaced", gte, 1, 0d)', 25, "a time window must be at least 1"),
    ('E("OrderPlaced", gte, 1, lately)', 25, "expected a time window"),
    ('E("OrderPlaced", gte, 1, between "2026-01-01" "2026-01-31")', 46, "expected 'and' at position 46"),
    ('E("OrderPlaced", gte, 1, "cuisine" "asian")', 35, "expected an operator at position 35"),
    ('E("OrderPlaced", gte, 1, "cuisine" eq)', 37, "expected a value"),
    ("S(VIP)", 2, "expected the segment name in quotes"),
    ("R(sms)", 2, "expected one of whatsapp, window, email, push at position 2, found 'sms'"),
    ("X(1)", 0, "unknown condition 'X'"),
    ("", 0, "the rule is empty"),
    ("   ", 0, "the rule is empty"),
    ('T("a", any) +', 13, "expected a condition like T(...)"),
    ('T("a", any) T("b", any)', 12, "expected an operator (*, +, \\) or the end of the rule at position 12"),
    ('T("a", any))', 11, "unmatched ')' at position 11"),
    ('(T("a", any)', 12, "expected ')' at position 12"),
    ('T("a", any) & T("b", any)', 12, "unexpected character '&' at position 12"),
    ("!", 1, "expected a condition"),
    ("T", 1, "expected '(' after T at position 1"),
]


@pytest.mark.parametrize(("text", "position", "message"), ERRORS, ids=[e[0] or "<empty>" for e in ERRORS])
def test_errors_point_at_the_position(text, position, message):
    with pytest.raises(RuleSyntaxError) as exc:
        parse_rule(text)
    assert exc.value.position == position
    assert message in exc.value.message
    assert str(exc.value) == exc.value.message


ROUND_TRIPS = (
    [c[0] for c in CONSTRUCTS]
    + [p[0] for p in PRECEDENCE]
    + [
        'T("city", eq, "Berlin") * E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")',
        '!(S("a") + !(R(push) * !T("x", any))) \\ (F("language", in, ["de", "en"]) + ALL)',
        'T("price", eq, 20.0) + T("price", eq, 0.00001) + T("big", gt, 12345678901234)',
        'T("tab", eq, "a\\tb\\nc")',
    ]
)


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_round_trip_is_stable(text):
    tree = parse_rule(text)
    again = rule_to_text(tree)
    assert parse_rule(again) == tree
    assert rule_to_text(parse_rule(again)) == again


def test_serializer_writes_the_canonical_form():
    assert rule_to_text(parse_rule(f"{C}\\{V}")) == f"{C} * !{V}"
    assert rule_to_text(parse_rule(f"( {C} +{V} )*{P}")) == f"({C} + {V}) * {P}"
    assert rule_to_text(parse_rule(f"!({C} + {V})")) == f"!({C} + {V})"
    assert rule_to_text(parse_rule('T("x", eq, 007)')) == 'T("x", eq, 7)'


def test_builder_trees_serialize_to_equivalent_text():
    # Groups from the visual builder: single-child groups, or inside and, negated groups of groups.
    tree = group(
        "and", group("or", CITY), group("or", VIP, PUSH), group("or", group("and", EMAIL), negate=True)
    )
    text = rule_to_text(tree)
    assert text == f"{C} * ({V} + {P}) * !{E_}"
    assert parse_rule(rule_to_text(parse_rule(text))) == parse_rule(text)
    assert rule_to_text(group("and", group("or", VIP, PUSH), negate=True)) == f"!({V} + {P})"
    assert rule_to_text(group("or", group("and", NOT(CITY)), negate=True)) == f"!!{C}"
    assert parse_rule(f"!!{C}") == CITY


def test_an_empty_group_has_no_text_form():
    with pytest.raises(ValueError, match="empty group"):
        rule_to_text(group("and"))


def _random_tree(rng, depth=0):
    leaves = [CITY, VIP, PUSH, EMAIL, {"type": "all"}, event("X", "gte", 2, {"kind": "days", "n": 3})]
    if depth > 3 or rng.random() < 0.35:
        return rng.choice(leaves)
    children = [_random_tree(rng, depth + 1) for _ in range(rng.randint(1, 3))]
    return group(rng.choice(["and", "or"]), *children, negate=rng.random() < 0.3)


def _evaluate(node, truth):
    if node["type"] != "group":
        return truth[json.dumps(node, sort_keys=True)]
    values = [_evaluate(c, truth) for c in node["children"]]
    result = all(values) if node["op"] == "and" else any(values)
    return not result if node["negate"] else result


@pytest.mark.parametrize("seed", range(300))
def test_random_builder_trees_keep_their_meaning_through_text(seed):
    rng = random.Random(seed)
    original = _random_tree(rng)
    text = rule_to_text(original)
    tree = parse_rule(text)
    assert parse_rule(rule_to_text(tree)) == tree
    assert rule_to_text(tree) == rule_to_text(parse_rule(rule_to_text(tree)))
    leaves = {json.dumps(n, sort_keys=True) for n in (CITY, VIP, PUSH, EMAIL, {"type": "all"})}
    leaves.add(json.dumps(event("X", "gte", 2, {"kind": "days", "n": 3}), sort_keys=True))
    for _ in range(8):
        truth = {leaf: rng.random() < 0.5 for leaf in leaves}
        assert _evaluate(tree, truth) == _evaluate(original, truth), text


def test_absurd_nesting_is_a_syntax_error_not_a_crash():
    from subscribers.segments import RuleSyntaxError, parse_rule

    text = "(" * 2000 + 'T("city", eq, "Berlin")' + ")" * 2000
    with pytest.raises(RuleSyntaxError) as exc:
        parse_rule(text)
    assert exc.value.position == 50
    with pytest.raises(RuleSyntaxError):
        parse_rule("!" * 3000 + 'T("city", eq, "Berlin")')
    assert parse_rule("(" * 10 + 'T("city", eq, "Berlin")' + ")" * 10)


# ---- input that once crashed the parser (a 500 in the API and the builder's preview URL) ------------

HOSTILE = [
    ("¹", 0, "unknown condition '¹'"),
    ('T("age", eq, ¹)', 13, "expected a value"),
    ('T("age", eq, ٣)', 13, "expected a value"),  # other scripts' digits are not numbers here
    ('T("age", eq, 1²)', 14, "unexpected '²' after the number"),
    ('T("age", eq, ' + "9" * 5000 + ")", 13, "a number may have at most 40 characters"),
    ('T("age", eq, -' + "9" * 400 + ".5)", 13, "a number may have at most 40 characters"),
    ('E("Order", gte, ' + "1" * 4301 + ")", 16, "a number may have at most 40 characters"),
    ('E("Order", gte, 1, ' + "1" * 4301 + "d)", 19, "a number may have at most 40 characters"),
    ('T("city", eq, "a\x00b")', 16, "a text cannot contain the character U+0000"),
    ('T("city", eq, "\ud800")', 15, "a text cannot contain the character U+D800"),
]


@pytest.mark.parametrize(("text", "position", "message"), HOSTILE, ids=[h[0][:30] for h in HOSTILE])
def test_hostile_input_is_a_syntax_error_with_its_position(text, position, message):
    with pytest.raises(RuleSyntaxError) as exc:
        parse_rule(text)
    assert exc.value.position == position
    assert message in exc.value.message


def test_random_input_is_a_rule_or_a_syntax_error_never_a_crash():
    """A little fuzzing: rule fragments, odd characters and random code points, 20,000 times."""
    rng = random.Random(8)
    pieces = ['T(', 'E(', 'F("name"', 'S(', 'R(', '"city"', '"a\\"b"', ",", " eq ", " eq_cs ", " in ",
              "[", "]", "(", ")", "*", "+", "\\", "!", "1", "-", ".", "5", "d", "30d", " since ", "true",
              "ALL", '"', "¹", "٣", "\u00a0", "\x00", "\ud800", "9" * 50, "é", "ß", "İ", "\n", "1e5", "_",
              "NONE"]  # fmt: skip
    for _ in range(20_000):
        if rng.random() < 0.1:
            text = "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 12)))
        else:
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 20)))
        try:
            tree = parse_rule(text)
        except RuleSyntaxError:
            continue
        assert parse_rule(rule_to_text(tree)) == tree, text


@pytest.mark.parametrize("depth", [51, 10_000])
def test_deep_nesting_is_refused_before_python_recursion_is(depth):
    for text in ("(" * depth + "ALL" + ")" * depth, "!" * depth + "ALL"):
        with pytest.raises(RuleSyntaxError, match="nested more than 50 levels"):
            parse_rule(text)
