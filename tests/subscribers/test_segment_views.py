"""Panel pages for segments: list, builder (new/edit/save), live preview, recount and delete."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.urls import reverse

from controlpanel.models import Role
from controlpanel.services import SYSTEM
from subscribers.models import ConsentState, Segment
from subscribers.segments import parse_rule, save_segment
from subscribers.services import record_event, set_tags
from tests.factories import ProjectFactory, SubscriberFactory

ASIAN_FOOD = 'T("city", eq, "Berlin") * E("OrderPlaced", gte, 1, 30d, "cuisine" eq "asian")'


def url(name, project, *args):
    return reverse(f"subscribers:{name}", args=[project.slug, *args])


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


@pytest.fixture
def people(project):
    """Three Berliners (two ordered Asian food) and one person from Munich."""
    result = []
    for i, (city, cuisine) in enumerate([("Berlin", "asian"), ("Berlin", "asian"), ("Berlin", "italian"),
                                         ("Munich", "asian")]):  # fmt: skip
        s = SubscriberFactory(project=project, name=f"Person {i}", whatsapp_consent=ConsentState.OPTED_IN)
        set_tags(project=project, subscriber=s, tags={"city": city})
        record_event(project=project, subscriber=s, name="OrderPlaced", attributes={"cuisine": cuisine})
        result.append(s)
    return result


def builder_tree(*children, op="and"):
    return {"type": "group", "op": op, "negate": False, "children": list(children)}


CITY_BERLIN = {"type": "tag", "tag": "city", "op": "eq", "value": "Berlin"}


# ---- list ------------------------------------------------------------------------------------------


def test_list_shows_segments_with_count_and_time(owner_client, project, people, django_assert_num_queries):
    for name in ("Berliners", "Asian food", "Everyone"):
        rule = {"Berliners": 'T("city", eq, "Berlin")', "Asian food": ASIAN_FOOD, "Everyone": "ALL"}[name]
        save_segment(project=project, name=name, rule=parse_rule(rule), actor=SYSTEM)
    save_segment(project=ProjectFactory(), name="Not ours", rule=parse_rule("ALL"), actor=SYSTEM)
    with django_assert_num_queries(5):  # session, user, membership+project, segments, project switcher
        response = owner_client.get(url("segments", project))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Not ours" not in body
    rows = body.split('data-testid="segment-row"')[1:]
    assert [r.split("</a>")[0].rsplit(">", 1)[1] for r in rows] == ["Asian food", "Berliners", "Everyone"]
    assert 'data-testid="segment-count">2<' in rows[0]
    assert 'data-testid="segment-count">3<' in rows[1]
    assert "just now" in rows[0]
    assert "T(&quot;city&quot;, eq, &quot;Berlin&quot;)" in rows[1]


def test_empty_list_invites_to_build_one(owner_client, project):
    body = owner_client.get(url("segments", project)).content.decode()
    assert "No segments yet" in body
    assert url("segment_new", project) in body


def test_viewer_sees_no_write_buttons(client, project, viewer):
    save_segment(project=project, name="All", rule=parse_rule("ALL"), actor=SYSTEM)
    client.force_login(viewer)
    body = client.get(url("segments", project)).content.decode()
    assert "Recount" not in body
    assert "New segment" not in body
    builder = client.get(url("segment_new", project)).content.decode()
    assert "saving segments needs the Marketer role" in builder
    assert 'data-testid="save-segment"' not in builder


# ---- live preview ------------------------------------------------------------------------------------


def preview(client, project, **params):
    response = client.get(url("segment_preview", project), params)
    assert response.status_code == 200
    return response.content.decode()


def sample(client, body: str) -> str:
    """Follow the preview's lazy request for the newest matching subscribers."""
    match = re.search(r'hx-get="([^"]+)" hx-trigger="load"', body)
    assert match, "the preview asks for no sample"
    response = client.get(html.unescape(match.group(1)))
    assert response.status_code == 200
    return response.content.decode()


def test_preview_counts_the_builder_tree_with_a_sample(client, project, viewer, people):
    client.force_login(viewer)  # a GET: viewers may explore audiences too
    tree = builder_tree(CITY_BERLIN)
    body = preview(client, project, source="builder", rule=json.dumps(tree))
    assert 'data-count="3"' in body
    assert "Person " not in body  # the sample follows in its own request
    names = sample(client, body)
    assert names.count("Person ") == 3
    assert "Person 3" not in names
    assert "All of them" in names
    # The canonical text comes back for the text box.
    assert 'data-rule-text="T(&quot;city&quot;, eq, &quot;Berlin&quot;)"' in body


def test_preview_counts_the_text_form_and_returns_the_tree(owner_client, project, people):
    body = preview(owner_client, project, source="text", text=ASIAN_FOOD)
    assert 'data-count="2"' in body
    assert 'data-source="text"' in body
    assert "data-rule=" in body


def test_preview_sample_is_at_most_ten(owner_client, project):
    for _ in range(12):
        SubscriberFactory(project=project)
    body = preview(owner_client, project, source="text", text="ALL")
    assert 'data-count="12"' in body
    names = sample(owner_client, body)
    assert names.count("<li ") == 10
    assert "The 10 newest" in names


def test_no_sample_is_asked_for_an_empty_audience(owner_client, project, people):
    body = preview(owner_client, project, source="text", text='T("city", eq, "Atlantis")')
    assert 'data-count="0"' in body
    assert 'hx-trigger="load"' not in body


@pytest.mark.parametrize("rule", ["not json", '{"type": "tag", "tag": "nope", "op": "any"}'])
def test_the_sample_refuses_a_rule_that_does_not_validate(owner_client, project, rule):
    response = owner_client.get(url("segment_sample", project), {"rule": rule, "count": "1"})
    assert response.status_code == 400


def test_preview_syntax_error_points_at_the_position(owner_client, project):
    body = preview(owner_client, project, source="text", text='T("city" eq "Berlin")')
    assert "expected &#x27;,&#x27; at position 9" in body
    assert "T(&quot;city&quot; <mark>e</mark>q &quot;Berlin&quot;)" in body


def test_preview_names_an_unknown_tag(owner_client, project):
    tree = builder_tree({"type": "tag", "tag": "colour", "op": "eq", "value": "red"})
    body = preview(owner_client, project, source="builder", rule=json.dumps(tree))
    assert "Unknown tag &#x27;colour&#x27;" in body
    assert 'data-error-path="rule.0"' in body
    assert 'data-error-kind="invalid"' in body


def test_preview_of_an_unfinished_condition_asks_for_the_value(owner_client, project, people):
    tree = builder_tree(CITY_BERLIN, {"type": "tag", "tag": "city", "op": "eq", "value": ""})
    body = preview(owner_client, project, source="builder", rule=json.dumps(tree))
    assert "needs a value" in body
    assert 'data-error-path="rule.1"' in body
    assert 'data-error-kind="incomplete"' in body


def test_preview_without_conditions_says_so(owner_client, project):
    assert "Add a condition" in preview(owner_client, project)
    assert "Add a condition" in preview(
        owner_client, project, source="builder", rule=json.dumps(builder_tree())
    )


def test_preview_never_counts_another_projects_subscribers(owner_client, project, people):
    other = ProjectFactory()
    s = SubscriberFactory(project=other)
    set_tags(project=other, subscriber=s, tags={"city": "Berlin"})
    assert 'data-count="3"' in preview(owner_client, project, source="text", text='T("city", eq, "Berlin")')


# ---- builder: new, edit, save -----------------------------------------------------------------------


def test_builder_page_offers_the_projects_tags_and_events(owner_client, project, people):
    body = owner_client.get(url("segment_new", project)).content.decode()
    schema = json.loads(body.split('id="segment-schema" type="application/json">')[1].split("</script>")[0])
    tags = {t["name"]: t for t in schema["tags"]}
    assert tags["city"]["type"] == "string"
    assert ["contains", "contains"] in tags["city"]["ops"]
    assert tags["Language"]["builtin"]
    events = {e["name"]: e for e in schema["events"]}
    assert [a["name"] for a in events["OrderPlaced"]["attributes"]] == ["cuisine"]
    assert "WhatsAppReceived" in events
    assert "segment-builder.js" in body


def test_save_from_the_builder(marketer_client, project, people):
    tree = builder_tree(
        CITY_BERLIN,
        {"type": "event", "event": "OrderPlaced", "op": "gte", "count": "1",
         "window": {"kind": "days", "n": "30"},
         "where": [{"attribute": "cuisine", "op": "eq", "value": "asian"}]},
    )  # fmt: skip
    response = marketer_client.post(
        url("segment_new", project),
        {
            "name": "Asian food",
            "description": "Berlin",
            "source": "builder",
            "rule": json.dumps(tree),
            "text": "",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == url("segments", project)
    segment = Segment.objects.get(project=project, name="Asian food")
    assert segment.cached_count == 2
    assert segment.count_computed_at is not None
    assert segment.rule["children"][1]["count"] == 1  # stored in canonical form
    assert "created: 2 subscribers" in marketer_client.get(url("segments", project)).content.decode()


def test_save_from_the_text_form(marketer_client, project, people):
    response = marketer_client.post(
        url("segment_new", project), {"name": "Asian food", "source": "text", "text": ASIAN_FOOD, "rule": ""}
    )
    assert response.status_code == 302
    assert Segment.objects.get(project=project).cached_count == 2


def test_save_with_a_syntax_error_keeps_the_text_and_saves_nothing(marketer_client, project, people):
    text = 'T("city", eq, "Berlin") *'
    response = marketer_client.post(
        url("segment_new", project), {"name": "Broken", "source": "text", "text": text, "rule": ""}
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert "at position 25" in body
    assert "T(&quot;city&quot;, eq, &quot;Berlin&quot;) *</textarea>" in body
    assert 'value="Broken"' in body
    assert not Segment.objects.exists()


def test_save_with_an_invalid_rule_keeps_the_builder_tree(marketer_client, project, people):
    tree = builder_tree(CITY_BERLIN, {"type": "tag", "tag": "city", "op": "gt", "value": "B"})
    response = marketer_client.post(
        url("segment_new", project),
        {"name": "Odd", "source": "builder", "rule": json.dumps(tree), "text": ""},
    )
    assert response.status_code == 422
    body = response.content.decode()
    assert "Operator &#x27;gt&#x27; is not allowed for tag &#x27;city&#x27;" in body
    assert 'data-error-path="rule.1"' in body
    kept = json.loads(body.split('id="segment-rule" type="application/json">')[1].split("</script>")[0])
    assert kept == tree
    assert not Segment.objects.exists()


def test_save_needs_a_unique_name(marketer_client, project, people):
    save_segment(project=project, name="Berliners", rule=parse_rule("ALL"), actor=SYSTEM)
    response = marketer_client.post(
        url("segment_new", project), {"name": "berliners", "source": "text", "text": "ALL", "rule": ""}
    )
    assert response.status_code == 422
    assert "A segment named &#x27;berliners&#x27; already exists." in response.content.decode()
    response = marketer_client.post(
        url("segment_new", project), {"name": " ", "source": "text", "text": "ALL"}
    )
    assert "A segment needs a name." in response.content.decode()
    assert Segment.objects.count() == 1


def test_edit_shows_the_rule_and_saves_changes(marketer_client, project, people):
    segment = save_segment(
        project=project, name="Berliners", rule=parse_rule('T("city", eq, "Berlin")'), actor=SYSTEM
    )
    body = marketer_client.get(url("segment_edit", project, segment.public_id)).content.decode()
    assert "T(&quot;city&quot;, eq, &quot;Berlin&quot;)</textarea>" in body
    assert 'data-count="3"' in body
    response = marketer_client.post(
        url("segment_edit", project, segment.public_id),
        {"name": "Munich", "source": "text", "text": 'T("city", eq, "Munich")', "rule": ""},
    )
    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.cached_count) == ("Munich", 1)


def test_edit_refuses_a_cycle(marketer_client, project, people):
    a = save_segment(project=project, name="A", rule=parse_rule("ALL"), actor=SYSTEM)
    save_segment(project=project, name="B", rule=parse_rule('S("A")'), actor=SYSTEM)
    response = marketer_client.post(
        url("segment_edit", project, a.public_id),
        {"name": "A", "source": "text", "text": 'S("B")', "rule": ""},
    )
    assert response.status_code == 422
    assert "A → B → A" in response.content.decode()
    a.refresh_from_db()
    assert a.rule == {"type": "all"}


def test_edit_page_does_not_offer_the_segment_itself(owner_client, project):
    a = save_segment(project=project, name="A", rule=parse_rule("ALL"), actor=SYSTEM)
    save_segment(project=project, name="B", rule=parse_rule("ALL"), actor=SYSTEM)
    body = owner_client.get(url("segment_edit", project, a.public_id)).content.decode()
    schema = json.loads(body.split('id="segment-schema" type="application/json">')[1].split("</script>")[0])
    assert [s["name"] for s in schema["segments"]] == ["B"]


def test_another_projects_segment_is_404(owner_client, project):
    theirs = save_segment(project=ProjectFactory(), name="Theirs", rule=parse_rule("ALL"), actor=SYSTEM)
    assert owner_client.get(url("segment_edit", project, theirs.public_id)).status_code == 404
    assert owner_client.post(url("segment_delete", project, theirs.public_id)).status_code == 404
    assert Segment.objects.filter(pk=theirs.pk).exists()


# ---- recount and delete ------------------------------------------------------------------------------


def test_recount_swaps_the_row_with_the_new_count(marketer_client, project, people):
    segment = save_segment(
        project=project, name="Berliners", rule=parse_rule('T("city", eq, "Berlin")'), actor=SYSTEM
    )
    newcomer = SubscriberFactory(project=project)
    set_tags(project=project, subscriber=newcomer, tags={"city": "Berlin"})
    response = marketer_client.post(
        url("segment_recount", project, segment.public_id), HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert body.strip().startswith(f'<tr id="segment-{segment.public_id}"')
    assert 'data-testid="segment-count">4<' in body
    segment.refresh_from_db()
    assert segment.cached_count == 4


def test_delete(marketer_client, project):
    segment = save_segment(project=project, name="Gone soon", rule=parse_rule("ALL"), actor=SYSTEM)
    response = marketer_client.post(url("segment_delete", project, segment.public_id), follow=True)
    assert "Segment “Gone soon” deleted." in response.content.decode()
    assert not Segment.objects.exists()


def test_delete_refuses_a_segment_that_another_includes(marketer_client, project):
    a = save_segment(project=project, name="A", rule=parse_rule("ALL"), actor=SYSTEM)
    save_segment(project=project, name="B", rule=parse_rule('S("A")'), actor=SYSTEM)
    response = marketer_client.post(url("segment_delete", project, a.public_id), follow=True)
    assert "is used by &#x27;B&#x27;" in response.content.decode()
    assert Segment.objects.filter(pk=a.pk).exists()


def test_an_empty_text_box_or_builder_asks_for_a_condition(owner_client, project):
    assert "Add a condition" in preview(owner_client, project, source="text", text="  ")
    body = preview(owner_client, project, source="builder", rule=json.dumps(builder_tree()))
    assert 'data-rule-text=""' in body  # the text box empties with the builder


@pytest.mark.parametrize("text", ["¹", 'T("city", eq, ' + "1" * 5000 + ")"])
def test_preview_of_input_that_once_crashed_shows_the_error(client, project, viewer, text):
    client.force_login(viewer)  # the preview is a GET a viewer can open from a shared URL
    body = preview(client, project, source="text", text=text)
    assert 'data-testid="preview-error"' in body
    assert "at position" in body


@pytest.mark.parametrize(
    "params",
    [
        {"rule": "[" * 100_000, "count": "1"},
        {"rule": json.dumps({"type": "all"}), "count": "1" * 5000},
        {"rule": json.dumps({"type": "tag", "tag": "city", "op": "eq", "value": "\x00"}), "count": "1"},
    ],
    ids=["deep-json", "huge-count", "nul-value"],
)
def test_the_sample_url_refuses_what_it_cannot_read(owner_client, project, people, params):
    assert owner_client.get(url("segment_sample", project), params).status_code == 400


def test_builder_json_nested_too_deep_is_an_error_not_a_crash(owner_client, project):
    body = preview(owner_client, project, source="builder", rule="[" * 100_000)
    assert "not valid JSON" in body


@pytest.mark.parametrize("probe_limit", [20_000, 2], ids=["ids-read-whole", "ids-joined"])
def test_the_sample_says_how_many_are_reachable_and_marks_who_is_not(
    owner_client, project, people, monkeypatch, probe_limit
):
    monkeypatch.setattr("subscribers.segments.compiler.PROBE_LIMIT", probe_limit)
    people[0].whatsapp_consent = ConsentState.UNKNOWN
    people[0].save()
    people[1].whatsapp_consent = ConsentState.OPTED_OUT
    people[1].save()
    no_number = SubscriberFactory(
        project=project, name="Person without number", phone=None, bsuid="US.1349120865",
        whatsapp_consent=ConsentState.OPTED_IN,
    )  # fmt: skip
    set_tags(project=project, subscriber=no_number, tags={"city": "Berlin"})
    body = sample(owner_client, preview(owner_client, project, source="text", text='T("city", eq, "Berlin")'))
    assert 'data-reachable="1"' in body  # of four Berliners, only Person 2 can get a WhatsApp message
    assert "1</span> of them reachable on WhatsApp" in body
    items = {li.split("</a>")[0].rsplit(">", 1)[1]: li for li in body.split("<li ")[1:]}
    assert "not reachable: not opted in" in items["Person 0"]
    assert "not reachable: opted out" in items["Person 1"]
    assert "not reachable: no phone number" in items["Person without number"]
    assert "not reachable" not in items["Person 2"]


@pytest.mark.parametrize(
    "text",
    [
        'T("city", eq, "Berlin")',
        'E("OrderPlaced", gte, 1)',
        'T("city", eq, "Berlin") * E("OrderPlaced", gte, 1)',
        'T("city", any) + E("OrderPlaced", gte, 1)',
        '!T("city", eq, "Munich")',
        'F("name", contains, "person")',
    ],
)
def test_the_sample_is_the_newest_matches_whatever_the_rule_compiles_to(owner_client, project, people, text):
    extra = [SubscriberFactory(project=project, name=f"Newer {i}") for i in range(11)]
    for s in extra:
        set_tags(project=project, subscriber=s, tags={"city": "Berlin"})
        record_event(project=project, subscriber=s, name="OrderPlaced", attributes={"cuisine": "thai"})
        record_event(project=project, subscriber=s, name="OrderPlaced", attributes={"cuisine": "thai"})
    names = re.findall(
        r'">(Newer \d+|Person \d)</a>',
        sample(owner_client, preview(owner_client, project, source="text", text=text)),
    )
    if text.startswith("F("):
        assert names == ["Person 3", "Person 2", "Person 1", "Person 0"]
    else:
        assert names == [f"Newer {i}" for i in range(10, 0, -1)]  # ten, newest first, each once
