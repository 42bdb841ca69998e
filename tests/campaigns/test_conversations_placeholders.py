"""One placeholder grammar and one service window: what a send fills, what the policy counts, what
the composer asks for and what the segment condition matches agree."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import policy
from campaigns.conversations import template_fields, template_preview
from campaigns.services import SendRefused, render_template, send_whatsapp
from controlpanel.services import SYSTEM
from subscribers.segments.compiler import audience
from whatsapp import placeholders

from .conftest import make_template

pytestmark = pytest.mark.django_db


def _body(template, params):
    return [{"type": "body", "parameters": params}]


@pytest.mark.parametrize(
    ("text", "parameter_format", "params"),
    [
        (
            "Hi {{1}}, order {{2}} ships.",
            "POSITIONAL",
            [{"type": "text", "text": "Ada"}, {"type": "text", "text": "#7"}],
        ),
        (
            "Hi {{ 1 }}, order {{ 2 }} ships.",
            "POSITIONAL",
            [{"type": "text", "text": "Ada"}, {"type": "text", "text": "#7"}],
        ),
        (
            "Hi {{first_name}}, order {{ order_id }} ships.",
            "NAMED",
            [
                {"type": "text", "parameter_name": "first_name", "text": "Ada"},
                {"type": "text", "parameter_name": "order_id", "text": "#7"},
            ],
        ),
    ],
    ids=["numbered", "numbered-with-spaces", "named"],
)
def test_fill_and_policy_count_agree(account, subscriber, text, parameter_format, params):
    template = make_template(
        account, parameter_format=parameter_format, components=[{"type": "BODY", "text": text}]
    )
    # The policy counts two parameters, so exactly two fit ...
    assert len(policy.template_parameters(template)["body"]) == 2
    assert policy.parameter_mismatch(template, _body(template, params)) == ""
    assert "needs 2 parameters, got 1" in policy.parameter_mismatch(template, _body(template, params[:1]))
    # ... and the rendered body shows both values, no braces left.
    assert render_template(template, _body(template, params)) == "Hi Ada, order #7 ships."
    message = send_whatsapp(
        project=account.project,
        subscriber=subscriber,
        actor=SYSTEM,
        template=template,
        components=_body(template, params),
    )
    assert message.body == "Hi Ada, order #7 ships."
    # The composer asks for the same parameters and previews the same text.
    fields = template_fields(
        template,
        {
            f"body.{n}": v
            for n, v in zip(policy.template_parameters(template)["body"], ["Ada", "#7"], strict=True)
        },
    )
    assert template_preview(template, fields).body == "Hi Ada, order #7 ships."


def test_numbered_parameters_are_passed_in_number_order(account, subscriber):
    """Meta fills {{1}} from the first value: a body naming {{2}} first still asks for {{1}} first."""
    template = make_template(account, components=[{"type": "BODY", "text": "Order {{2}} for {{1}} ships."}])
    assert policy.template_parameters(template) == {"body": ["1", "2"]}
    fields = template_fields(template, {"body.1": "Ada", "body.2": "#7"})
    assert [f.name for f in fields] == ["1", "2"]
    params = [{"type": "text", "text": "Ada"}, {"type": "text", "text": "#7"}]
    assert render_template(template, _body(template, params)) == "Order #7 for Ada ships."


def test_a_named_template_still_needs_its_link_parameter(account, subscriber):
    """A link's parameter is {{1}} in named templates too; without it Meta answers 132000."""
    template = make_template(
        account,
        parameter_format="NAMED",
        components=[
            {"type": "BODY", "text": "Hi {{first_name}}, track your order."},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Track", "url": "https://x.test/o/{{1}}"}],
            },
        ],
    )
    assert policy.template_parameters(template) == {"body": ["first_name"], "button:0": ["1"]}
    body = [{"type": "body", "parameters": [{"type": "text", "parameter_name": "first_name", "text": "Ada"}]}]
    with pytest.raises(SendRefused, match="button:0 needs 1 parameter, got 0"):
        send_whatsapp(
            project=account.project, subscriber=subscriber, actor=SYSTEM, template=template, components=body
        )


def test_the_browser_reads_the_same_grammar():
    grammar = placeholders.browser_grammar()
    token, name = re.compile(grammar["token"]), re.compile(grammar["name"])
    text = "Hi {{ 1 }}, {{first_name}}, {{First}} {{1a}}"
    found = [m.group(1).strip() for m in token.finditer(text)]
    assert [n for n in found if name.match(n)] == placeholders.parameters(text)


def test_the_window_closes_24_hours_after_the_last_message_everywhere(account, subscriber):
    """Policy, conversation page and the segment condition "inside the window" share one boundary."""
    now = timezone.now()
    subscriber.last_inbound_at = now - timedelta(hours=24)
    subscriber.save()
    window_tree = {"type": "reachability", "channel": "window"}
    assert not policy.window_open(subscriber, now)
    assert not audience(account.project, window_tree, now=now).exists()
    subscriber.last_inbound_at = now - timedelta(hours=24) + timedelta(seconds=1)
    subscriber.save()
    assert policy.window_open(subscriber, now)
    assert list(audience(account.project, window_tree, now=now)) == [subscriber]


def test_a_links_sample_loses_the_fixed_part_however_the_parameter_is_spaced(account):
    from whatsapp.template_views import copy_data

    template = make_template(
        account,
        components=[
            {"type": "BODY", "text": "Your order ships."},
            {
                "type": "BUTTONS",
                "buttons": [
                    {
                        "type": "URL",
                        "text": "Track",
                        "url": "https://x.test/o/{{ 1 }}",
                        "example": ["https://x.test/o/8812"],
                    }
                ],
            },
        ],
    )
    assert copy_data(template).getlist("button_example") == ["8812"]
    (field,) = template_fields(template)
    assert field.example == "8812"
