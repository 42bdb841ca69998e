from __future__ import annotations

import pytest

from campaigns.drafts import snapshot_entry
from campaigns.models import Campaign, CampaignPurpose, Message
from campaigns.outcomes import Skip
from campaigns.rendering import Rendered, render_batch
from tests.factories import SubscriberFactory

from .conftest import make_template

pytestmark = pytest.mark.django_db


def campaign_for(account, templates, bindings, **kw) -> Campaign:
    snapshot = {t.language: snapshot_entry(t) for t in templates}
    return Campaign.objects.create(
        project=account.project,
        name="Spring",
        purpose=kw.pop("purpose", CampaignPurpose.TRANSACTIONAL),
        account=account,
        template_name=templates[0].name,
        languages=list(snapshot),
        fallback_language=kw.pop("fallback_language", templates[0].language),
        templates_snapshot=snapshot,
        bindings=bindings,
        status="running",
        **kw,
    )


def row(campaign, subscriber, **kw) -> Message:
    return Message.objects.create(
        project=campaign.project, subscriber=subscriber, campaign=campaign, account=campaign.account, **kw
    )


def test_positional_body_and_link_button(account, subscriber):
    template = make_template(account)
    campaign = campaign_for(
        account,
        [template],
        {
            "body": {"1": '{{ subscriber.name | default: "Kunde" }}', "2": "{{ values.order_id }}"},
            "button:0": {"1": "{{ values.order_id | downcase }}"},
        },
    )
    subscriber.name = "Mark"
    subscriber.save()
    message = row(campaign, subscriber, values={"order_id": "SKB-8812"})
    rendered = render_batch([message])[message.pk]
    assert rendered == Rendered(
        template_id=template.pk,
        template_name="order_update",
        language="en_US",
        components=[
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Mark"}, {"type": "text", "text": "SKB-8812"}],
            },
            {
                "type": "button",
                "sub_type": "url",
                "index": "0",
                "parameters": [{"type": "text", "text": "skb-8812"}],
            },
        ],
        body="Hi Mark, your order SKB-8812 is on its way.",
    )


def test_named_parameters_and_image_header(account, subscriber):
    template = make_template(
        account,
        name="promo",
        category="MARKETING",
        parameter_format="NAMED",
        components=[
            {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["https://x.test/h.jpg"]}},
            {"type": "BODY", "text": "Hallo {{first_name}}, {{discount}} off in {{city}}!"},
            {"type": "FOOTER", "text": "Reply STOP to opt out"},
        ],
    )
    campaign = campaign_for(
        account,
        [template],
        {
            "body": {
                "first_name": "{{ tags.first_name | default: 'du' }}",
                "discount": "20%",
                "city": "{{ subscriber.country | default: 'DE' | upcase }}",
            }
        },
        purpose=CampaignPurpose.PROMOTION,
        header_media_url="https://cdn.test/spring.jpg",
    )
    message = row(campaign, subscriber)
    rendered = render_batch([message])[message.pk]
    assert rendered.components == [
        {
            "type": "header",
            "parameters": [{"type": "image", "image": {"link": "https://cdn.test/spring.jpg"}}],
        },
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "du", "parameter_name": "first_name"},
                {"type": "text", "text": "20%", "parameter_name": "discount"},
                {"type": "text", "text": "DE", "parameter_name": "city"},
            ],
        },
    ]
    assert rendered.body == "Hallo du, 20% off in DE!"


def test_authentication_code_in_body_and_copy_code_button(account, subscriber):
    template = make_template(
        account,
        name="login_code",
        category="AUTHENTICATION",
        components=[
            {"type": "BODY", "text": "{{1}} is your verification code."},
            {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]},
        ],
    )
    campaign = campaign_for(
        account, [template], {"body": {"1": "{{ values.code }}"}}, purpose=CampaignPurpose.VERIFICATION
    )
    message = row(campaign, subscriber, values={"code": "J3FPNY"})
    rendered = render_batch([message])[message.pk]
    assert rendered.components == [
        {"type": "body", "parameters": [{"type": "text", "text": "J3FPNY"}]},
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "J3FPNY"}],
        },
    ]
    assert rendered.body == "J3FPNY is your verification code."


def test_language_group_picks_each_subscribers_language(account):
    project = account.project
    english = make_template(account, language="en_US")
    german = make_template(
        account,
        language="de",
        components=[
            {"type": "BODY", "text": "Hallo {{1}}, deine Bestellung {{2}} ist unterwegs."},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Verfolgen", "url": "https://x.test/o/{{1}}"}],
            },
        ],
    )
    campaign = campaign_for(
        account,
        [english, german],
        {"body": {"1": "{{ subscriber.name }}", "2": "42"}, "button:0": {"1": "42"}},
        fallback_language="en_US",
    )
    austrian = row(campaign, SubscriberFactory(project=project, name="Lisa", language="de_AT"))
    french = row(campaign, SubscriberFactory(project=project, name="Zoé", language="fr"))
    results = render_batch([austrian, french])
    assert results[austrian.pk].language == "de"
    assert results[austrian.pk].template_id == german.pk
    assert results[austrian.pk].body == "Hallo Lisa, deine Bestellung 42 ist unterwegs."
    assert results[french.pk].language == "en_US"
    assert results[french.pk].body == "Hi Zoé, your order 42 is on its way."


def test_empty_binding_skips_the_recipient_with_the_reason(account, subscriber):
    template = make_template(account)
    campaign = campaign_for(
        account,
        [template],
        {"body": {"1": "{{ tags.first_name }}", "2": "{{ values.order_id }}"}, "button:0": {"1": "x"}},
    )
    message = row(campaign, subscriber, values={"order_id": "1"})
    outcome = render_batch([message])[message.pk]
    assert isinstance(outcome, Skip)
    assert "{{ tags.first_name }} is empty" in outcome.reason


def test_line_breaks_in_a_value_become_spaces(account, subscriber):
    template = make_template(account)
    campaign = campaign_for(
        account,
        [template],
        {"body": {"1": "{{ values.name }}", "2": "{{ values.order_id }}"}, "button:0": {"1": "x"}},
    )
    message = row(campaign, subscriber, values={"name": "Anna\n  Maria", "order_id": "a\tb      c"})
    rendered = render_batch([message])[message.pk]
    assert rendered.components[0]["parameters"] == [
        {"type": "text", "text": "Anna Maria"},
        {"type": "text", "text": "a b c"},
    ]


def test_a_bad_value_for_a_link_button_skips(account, subscriber):
    template = make_template(account)
    campaign = campaign_for(
        account, [template], {"body": {"1": "a", "2": "b"}, "button:0": {"1": "{{ values.path }}"}}
    )
    message = row(campaign, subscriber, values={"path": "has spaces"})
    outcome = render_batch([message])[message.pk]
    assert isinstance(outcome, Skip)
    assert "No spaces" in outcome.reason


def test_the_snapshot_is_sent_after_the_template_changed_or_vanished(account, subscriber):
    template = make_template(account)
    campaign = campaign_for(account, [template], {"body": {"1": "a", "2": "b"}, "button:0": {"1": "c"}})
    template.delete()
    message = row(campaign, subscriber)
    rendered = render_batch([message])[message.pk]
    assert rendered.body == "Hi a, your order b is on its way."
    assert rendered.template_id is None  # the row is gone: no link to it


def test_rows_without_campaign_are_left_out(account, subscriber, template):
    single = Message.objects.create(project=account.project, subscriber=subscriber, account=account)
    assert render_batch([single]) == {}


def test_a_batch_costs_the_same_queries_whatever_its_size(account, django_assert_num_queries):
    from subscribers.models import TagDefinition, TagValue

    project = account.project
    city = TagDefinition.objects.create(project=project, name="City", type="string")
    template = make_template(account)
    campaign = campaign_for(
        account,
        [template],
        {"body": {"1": "{{ tags.city }}", "2": "{{ values.n }}"}, "button:0": {"1": "{{ values.n }}"}},
    )
    rows = []
    for n in range(30):
        subscriber = SubscriberFactory(project=project)
        TagValue.objects.create(project=project, subscriber=subscriber, tag=city, value_text=f"City{n}")
        rows.append(row(campaign, subscriber, values={"n": n}))
    small = list(Message.objects.filter(pk__in=[r.pk for r in rows[:2]]))
    large = list(Message.objects.filter(pk__in=[r.pk for r in rows]))
    # campaign, its templates still there, subscribers, tag definitions, tag values
    with django_assert_num_queries(5):
        render_batch(small)
    with django_assert_num_queries(5):
        results = render_batch(large)
    assert [results[r.pk].body for r in rows[:3]] == [
        "Hi City0, your order 0 is on its way.",
        "Hi City1, your order 1 is on its way.",
        "Hi City2, your order 2 is on its way.",
    ]
    # Loaded with their subscribers (as the sender loads a batch): those are read, not selected again.
    loaded = list(Message.objects.filter(pk__in=[r.pk for r in rows]).select_related("subscriber"))
    with django_assert_num_queries(4):
        again = render_batch(loaded)
    assert {pk: r.body for pk, r in again.items()} == {pk: r.body for pk, r in results.items()}


def test_each_row_keeps_its_own_values_when_a_subscriber_is_in_two_campaigns(account, subscriber):
    template = make_template(account)
    bindings = {"body": {"1": "x", "2": "{{ values.order_id }}"}, "button:0": {"1": "y"}}
    first, second = campaign_for(account, [template], bindings), campaign_for(account, [template], bindings)
    a = row(first, subscriber, values={"order_id": "A"})
    b = row(second, subscriber, values={"order_id": "B"})
    results = render_batch([a, b])
    assert (results[a.pk].body, results[b.pk].body) == (
        "Hi x, your order A is on its way.",
        "Hi x, your order B is on its way.",
    )
