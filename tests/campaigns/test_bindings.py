from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from campaigns import bindings
from campaigns.bindings import Renderer, check_bindings, contexts_for, required_fields
from campaigns.outcomes import Skip
from subscribers.errors import InvalidInput
from subscribers.models import TagDefinition, TagValue
from tests.factories import ProjectFactory, SubscriberFactory


def context(**parts):
    base = {"subscriber": {}, "tags": bindings.TagValues(), "values": {}, "event": {}}
    base.update(parts)
    return base


# --- rendering ----------------------------------------------------------------------------------


def test_default_filter_fills_a_missing_name():
    renderer = Renderer({"body": {"1": '{{ subscriber.name | default: "Kunde" }}'}})
    assert renderer.render(context(subscriber={"name": ""})) == {"body": {"1": "Kunde"}}
    assert renderer.render(context(subscriber={"name": "Anna"})) == {"body": {"1": "Anna"}}
    assert renderer.render(context()) == {"body": {"1": "Kunde"}}  # no such key at all
    assert Renderer({"body": {"1": "{{ tags.missing | upcase }}"}}).render(context()) == Skip(
        "{{ tags.missing | upcase }} is empty for this subscriber (body {{1}}), and WhatsApp refuses empty "
        'placeholders. Give it a fallback, e.g. {{ tags.first_name | default: "there" }}.'
    )


def test_tags_values_and_filters():
    renderer = Renderer(
        {
            "body": {"1": "{{ tags.first_name }}", "2": "{{ tags.city | upcase }}"},
            "button:0": {"1": "{{ values.order_id }}"},
        }
    )
    rendered = renderer.render(
        context(tags=bindings.TagValues(first_name="Anna", city="berlin"), values={"order_id": 8812})
    )
    assert rendered == {"body": {"1": "Anna", "2": "BERLIN"}, "button:0": {"1": "8812"}}


def test_tag_names_ignore_case_and_spaces():
    renderer = Renderer({"body": {"1": "{{ tags.First_Name }}", "2": '{{ tags["time zone"] }}'}})
    tags = bindings.TagValues(first_name="Anna", time_zone="Europe/Berlin")
    assert renderer.render(context(tags=tags)) == {"body": {"1": "Anna", "2": "Europe/Berlin"}}


def test_a_missing_value_without_fallback_skips_with_the_reason():
    renderer = Renderer({"body": {"1": "{{ tags.first_name }}", "2": "{{ values.order_id }}"}})
    outcome = renderer.render(context(values={"order_id": "A-1"}))
    assert isinstance(outcome, Skip)
    assert "{{ tags.first_name }} is empty for this subscriber (body {{1}})" in outcome.reason


def test_whitespace_only_output_counts_as_empty():
    outcome = Renderer({"body": {"1": "  {{ tags.nickname }}  "}}).render(context())
    assert isinstance(outcome, Skip)


def test_output_is_stripped_and_text_with_a_missing_value_is_not_empty():
    renderer = Renderer({"body": {"1": " Hi {{ tags.first_name }} "}})
    assert renderer.render(context()) == {"body": {"1": "Hi"}}


def test_assigned_variables_do_not_leak_into_the_next_binding():
    renderer = Renderer(
        {"body": {"1": "{% assign values = 'leak' %}ok", "2": "{{ values.order_id | upcase }}"}}
    )
    assert renderer.render(context(values={"order_id": "a-1"})) == {"body": {"1": "ok", "2": "A-1"}}


def test_a_failing_filter_skips_instead_of_raising():
    outcome = Renderer({"body": {"1": "{{ values.n | divided_by: 0 }}"}}).render(context(values={"n": 3}))
    assert isinstance(outcome, Skip)
    assert "divide by 0" in outcome.reason


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in (1..1000) %}{% for j in (1..1000) %}x{% endfor %}{% endfor %}",
        "{% assign s = 'xx' %}{% for i in (1..40) %}{% assign s = s | append: s %}{% endfor %}{{ s }}",
        "{% for i in (1..1000) %}xxxxxxxxxx{% endfor %}",
    ],
)
def test_runaway_bindings_are_stopped(source):
    outcome = Renderer({"body": {"1": source}}).render(context())
    assert isinstance(outcome, Skip)
    assert "limit reached" in outcome.reason


def test_cpu_budget_stops_a_slow_binding(monkeypatch):
    monkeypatch.setattr(bindings, "CPU_BUDGET", 0.0)
    source = "{% for i in (1..900) %}{{ tags.a }}{% endfor %}x"
    outcome = Renderer({"body": {"1": source}}).render(context())
    assert isinstance(outcome, Skip)
    assert "took too long" in outcome.reason


def test_python_objects_expose_no_attributes():
    # Only item lookup: a date's methods or dunder attributes are not reachable.
    renderer = Renderer({"body": {"1": "{{ tags.birthday.year }}{{ tags.birthday.__class__ }}-"}})
    assert renderer.render(context(tags=bindings.TagValues(birthday=date(1990, 5, 17)))) == {
        "body": {"1": "-"}
    }


# --- checking ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ tags.first_name ", "character 1: expected '}}'"),
        ("Hi {% if %}", "character 7: missing expression"),
        ("{% include 'other' %}", "unexpected tag 'include'"),
        ("{% render 'other' %}", "unexpected tag 'render'"),
        ("{{ tags.x | shout }}", "character 13: there is no filter “shout”"),
        ("{{ customer.name }}", "uses “customer”"),
        ("{{ subscriber.nmae }}", "subscriber.nmae"),
        ("line one\n{{ tags.x | }}", "not valid Liquid"),
        ("x" * 1001, "at most 1,000"),
    ],
)
def test_syntax_errors_name_the_placeholder_and_position(source, expected):
    with pytest.raises(InvalidInput) as err:
        check_bindings({"body": {"1": source}}, {"body": ["1"]})
    assert err.value.field == "bindings.body.1"
    assert "body {{1}}" in err.value.message
    assert expected in err.value.message


def test_position_on_a_later_line():
    with pytest.raises(InvalidInput) as err:
        check_bindings({"body": {"1": "Hello\n  {% if %}"}}, {"body": ["1"]})
    assert "line 2, column 6" in err.value.message


def test_every_placeholder_must_be_bound_and_exist():
    expected = {"header": ["image"], "body": ["1", "2"], "button:0": ["1"]}
    with pytest.raises(InvalidInput) as err:
        check_bindings({"body": {"1": "{{ tags.a }}"}, "button:0": {"1": "x"}}, expected)
    assert err.value.field == "bindings.body.2"
    with pytest.raises(InvalidInput) as err:
        check_bindings({"body": {"3": "x"}}, expected, partial=True)
    assert err.value.field == "bindings.body.3"
    assert err.value.code == "unknown_placeholder"
    # The media header is filled by the header media URL, not a binding.
    check_bindings({"body": {"1": "a", "2": "b"}, "button:0": {"1": "c"}}, expected)
    check_bindings({"body": {"1": "a"}}, expected, partial=True)


def test_bindings_must_be_an_object_of_objects():
    with pytest.raises(InvalidInput) as err:
        check_bindings({"body": "{{ tags.a }}"}, {"body": ["1"]})
    assert err.value.field == "bindings"


def test_required_fields_are_those_without_a_fallback():
    required = required_fields(
        {
            "body": {
                "1": "{{ tags.first_name }}",
                "2": '{{ subscriber.name | default: "Kunde" }}',
                "3": "Hi {{ values.greeting }}",
                "4": "{{ tags.language | upcase }}",
                "5": "{{ values.order_id }}",
                "6": "{{ tags.first_name }} {{ tags.last_name }}",
                "7": "{{ subscriber.email }}",
            }
        }
    )
    assert required.tags == {"first_name"}
    assert required.subscriber_fields == {"language", "email"}
    assert required.values == {"order_id"}


# --- contexts ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_contexts_hold_typed_tags_in_a_fixed_number_of_queries(django_assert_num_queries):
    project = ProjectFactory()
    other = ProjectFactory()
    definitions = {
        name: TagDefinition.objects.create(project=project, name=name, type=type_)
        for name, type_ in [
            ("First name", "string"),
            ("Orders", "integer"),
            ("Balance", "decimal"),
            ("VIP", "boolean"),
            ("Birthday", "date"),
            ("Hobbies", "list"),
        ]
    }
    anna = SubscriberFactory(project=project, name="Anna", language="de_AT", country="AT")
    ben = SubscriberFactory(project=project, name="Ben")
    stranger = SubscriberFactory(project=other)

    def tag(subscriber, name, **value):
        TagValue.objects.create(project=project, subscriber=subscriber, tag=definitions[name], **value)

    tag(anna, "First name", value_text="Anna")
    tag(anna, "Orders", value_number=Decimal("3"))
    tag(anna, "Balance", value_number=Decimal("12.50"))
    tag(anna, "VIP", value_bool=True)
    tag(anna, "Birthday", value_date=date(1990, 5, 17))
    tag(anna, "Hobbies", value_text="chess")
    tag(anna, "Hobbies", value_text="tango")
    tag(ben, "Orders", value_number=Decimal("100"))

    with django_assert_num_queries(3):  # subscribers, tag definitions, tag values
        contexts = contexts_for(
            project, [anna.pk, ben.pk, stranger.pk], values={anna.pk: {"order_id": "A-1"}}, event={"sku": "X"}
        )
    assert set(contexts) == {anna.pk, ben.pk}
    a = contexts[anna.pk]
    assert a["subscriber"]["name"] == "Anna"
    assert a["subscriber"]["language"] == "de_AT"
    assert a["tags"]["first_name"] == "Anna"
    assert a["tags"]["orders"] == 3
    assert a["tags"]["balance"] == 12.5
    assert a["tags"]["vip"] is True
    assert a["tags"]["birthday"] == date(1990, 5, 17)
    assert a["tags"]["hobbies"] == ["chess", "tango"]
    assert a["tags"]["country"] == "AT"  # a built-in tag
    assert a["tags"]["whatsapp_opt-in"] is True
    assert a["values"] == {"order_id": "A-1"}
    assert a["event"] == {"sku": "X"}
    assert str(contexts[ben.pk]["tags"]["orders"]) == "100"
    renderer = Renderer({"body": {"1": "{{ tags.hobbies | join: ', ' }} / {{ tags.balance | plus: 1 }}"}})
    assert renderer.render(a) == {"body": {"1": "chess, tango / 13.5"}}


@pytest.mark.django_db
def test_contexts_read_only_the_tags_asked_for(django_assert_num_queries):
    project = ProjectFactory()
    city = TagDefinition.objects.create(project=project, name="City", type="string")
    subscriber = SubscriberFactory(project=project)
    TagValue.objects.create(project=project, subscriber=subscriber, tag=city, value_text="Berlin")
    with django_assert_num_queries(1):  # built-in tags only: no tag query at all
        contexts = contexts_for(project, [subscriber.pk], tag_names={"language"})
    assert "city" not in contexts[subscriber.pk]["tags"]
    with django_assert_num_queries(3):
        contexts = contexts_for(project, [subscriber.pk], tag_names={"City"})
    assert contexts[subscriber.pk]["tags"]["city"] == "Berlin"
    assert bindings.tag_names_used({"body": {"1": "{{ tags.City }}", "2": "{{ subscriber.name }}"}}) == {
        "city"
    }
    assert bindings.tag_names_used({"body": {"1": "{% for t in tags %}{{ t }}{% endfor %}"}}) is None
