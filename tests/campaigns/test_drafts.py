from __future__ import annotations

from datetime import time, timedelta

import pytest
from django.utils import timezone

from campaigns.drafts import (
    CampaignInput,
    build_campaign,
    create_campaign,
    launch_problems,
    preview,
    snapshot_templates,
    update_campaign,
)
from campaigns.models import AudienceKind, Campaign, CampaignPurpose, CampaignRecipient, ScheduleKind
from controlpanel.models import AuditEntry
from controlpanel.services import Actor
from subscribers.errors import InvalidInput
from subscribers.models import ConsentState, Segment, TagDefinition, TagValue
from subscribers.segments.text import parse_rule
from tests.factories import ProjectFactory, SubscriberFactory
from whatsapp.models import AccountStatus

from .conftest import make_template

pytestmark = pytest.mark.django_db
ACTOR = Actor(label="test")
BINDINGS = {
    "body": {"1": '{{ tags.first_name | default: "Kunde" }}', "2": "{{ values.order_id }}"},
    "button:0": {"1": "{{ values.order_id }}"},
}


@pytest.fixture
def segment(account):
    return Segment.objects.create(project=account.project, name="Everyone", rule=parse_rule("ALL"))


def ready(account, segment, **kw) -> CampaignInput:
    data = CampaignInput(
        name="Order news",
        purpose=CampaignPurpose.TRANSACTIONAL,
        account=account,
        template_name="order_update",
        languages=["en_US"],
        bindings=BINDINGS,
        audience_kind=AudienceKind.SEGMENT,
        segment=segment,
    )
    for name, value in kw.items():
        setattr(data, name, value)
    return data


# --- validation -------------------------------------------------------------------------------------


def test_a_valid_draft(account, template, segment):
    campaign = build_campaign(project=account.project, data=ready(account, segment))
    assert campaign.pk is None
    assert (campaign.languages, campaign.fallback_language) == (["en_US"], "en_US")
    assert campaign.bindings == BINDINGS
    assert launch_problems(campaign) == []


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"name": "  "}, "name", "name"),
        ({"purpose": "spam"}, "purpose", "must be one of"),
        ({"template_name": "nope"}, "template_name", "no template named nope"),
        ({"languages": ["fr"]}, "languages", "has no fr version; it has en_US"),
        ({"languages": ["english!"]}, "languages", "not a language code"),
        ({"fallback_language": "de"}, "fallback_language", "not one of the campaign's languages"),
        ({"bindings": {"body": {"1": "{{ tags.first_name "}}}, "bindings.body.1", "character 1"),
        ({"bindings": {"body": {"7": "x"}}}, "bindings.body.7", "no placeholder body {{7}}"),
        ({"header_media_url": "ftp://x"}, "header_media_url", "https://"),
        ({"audience_kind": AudienceKind.RULE, "rule": 'T("city", eq'}, "rule", "at position"),
        ({"audience_kind": AudienceKind.RULE, "rule": 'E("NoSuchEvent", gte, 1)'}, "rule", ""),
        ({"recipients": [("+49151123", {}), ("nonsense", {})]}, "recipients.0", "not a valid phone number"),
        ({"recipients": [("+4915112345678", {"bad name": 1})]}, "recipients.0.values.bad name", "value name"),
        ({"schedule_kind": ScheduleKind.LOCAL_TIME, "local_time": "25:99"}, "local_time", "time of day"),
        (
            {
                "schedule_kind": ScheduleKind.LOCAL_TIME,
                "local_time": "09:30",
                "fallback_time_zone": "Mars/Base",
            },
            "fallback_time_zone",
            "not a time zone",
        ),
        ({"throttle_mps": 0}, "throttle_mps", "1 to 1,000"),
        ({"throttle_mps": 5000}, "throttle_mps", "1 to 1,000"),
    ],
)
def test_bad_input_names_the_field(account, template, segment, changes, field, text):
    with pytest.raises(InvalidInput) as err:
        build_campaign(project=account.project, data=ready(account, segment, **changes))
    assert err.value.field == field
    assert text in err.value.message


def test_objects_of_another_project_are_refused(account, template, segment):
    other = ProjectFactory()
    foreign_segment = Segment.objects.create(project=other, name="X", rule=parse_rule("ALL"))
    with pytest.raises(InvalidInput) as err:
        build_campaign(project=account.project, data=ready(account, foreign_segment))
    assert err.value.field == "segment"
    with pytest.raises(InvalidInput) as err:
        build_campaign(project=other, data=ready(account, None))
    assert err.value.field == "account"


def test_languages_are_spelled_as_the_template_and_default_to_its_only_one(account, template, segment):
    make_template(account, language="pt_BR")
    campaign = build_campaign(
        project=account.project,
        data=ready(account, segment, languages=["pt-br", "EN_us"], fallback_language="en-US"),
    )
    assert (campaign.languages, campaign.fallback_language) == (["pt_BR", "en_US"], "en_US")
    make_template(account, name="single", language="de")
    campaign = build_campaign(
        project=account.project,
        data=ready(account, segment, template_name="single", languages=[], bindings={}),
    )
    assert campaign.languages == ["de"]


def test_an_unfinished_draft_is_valid_and_launch_problems_say_what_is_missing(account, segment):
    campaign = build_campaign(project=account.project, data=CampaignInput(name="Later"))
    assert launch_problems(campaign) == [
        "Choose a template.",
        "Choose a segment (or another audience).",
    ]


def test_authentication_code_binding_fills_the_button_too(account, segment):
    make_template(
        account,
        name="login_code",
        category="AUTHENTICATION",
        components=[
            {"type": "BODY", "text": "{{1}} is your verification code."},
            {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]},
        ],
    )
    data = ready(
        account,
        segment,
        purpose=CampaignPurpose.VERIFICATION,
        template_name="login_code",
        bindings={"body": {"1": "{{ values.code }}"}},
    )
    campaign = build_campaign(project=account.project, data=data)
    assert campaign.bindings == {"body": {"1": "{{ values.code }}"}, "button:0": {"1": "{{ values.code }}"}}
    assert launch_problems(campaign) == []


# --- create / update ---------------------------------------------------------------------------------


def test_create_saves_the_draft_its_recipients_and_an_audit_entry(account, template):
    data = ready(
        account,
        None,
        audience_kind=AudienceKind.LIST,
        recipients=[
            ("0151 1234 5678", {"order_id": "A-1"}),
            ("+4915112345678", {"x": 2}),
            ("+4915199999999", {}),
        ],
    )
    campaign = create_campaign(project=account.project, actor=ACTOR, data=data)
    assert campaign.status == "draft"
    given = dict(CampaignRecipient.objects.filter(campaign=campaign).values_list("key", "values"))
    # Phones of the list are normalized (the project's country) and merged when listed twice.
    assert given == {"+4915112345678": {"order_id": "A-1", "x": 2}, "+4915199999999": {}}
    entry = AuditEntry.objects.get(action="campaign.create")
    assert entry.object_id == str(campaign.public_id)
    assert entry.project == account.project


def test_update_changes_drafts_only(account, template, segment):
    campaign = create_campaign(project=account.project, actor=ACTOR, data=ready(account, segment))
    updated = update_campaign(campaign=campaign, actor=ACTOR, data=ready(account, segment, name="Renamed"))
    assert Campaign.objects.get(pk=campaign.pk).name == "Renamed" == updated.name
    entry = AuditEntry.objects.get(action="campaign.update")
    assert entry.changes == {"name": {"from": "Order news", "to": "Renamed"}}
    Campaign.objects.filter(pk=campaign.pk).update(status="running")
    with pytest.raises(InvalidInput) as err:
        update_campaign(campaign=campaign, actor=ACTOR, data=ready(account, segment, name="Again"))
    assert err.value.code == "not_draft"
    assert Campaign.objects.get(pk=campaign.pk).name == "Renamed"


def test_update_with_bad_input_changes_nothing(account, template, segment):
    campaign = create_campaign(project=account.project, actor=ACTOR, data=ready(account, segment))
    with pytest.raises(InvalidInput):
        update_campaign(campaign=campaign, actor=ACTOR, data=ready(account, segment, name="", throttle_mps=3))
    assert Campaign.objects.get(pk=campaign.pk).name == "Order news"


# --- launch problems ---------------------------------------------------------------------------------


def test_launch_problems_in_plain_words(account, segment):
    make_template(account, status="PENDING", language="de")
    make_template(account, category="MARKETING")
    make_template(
        account,
        name="banner",
        category="UTILITY",
        components=[{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Hi {{1}}"}],
    )
    campaign = build_campaign(
        project=account.project,
        data=ready(account, segment, languages=["en_US", "de"], bindings={"body": {"1": "x"}}),
    )
    problems = launch_problems(campaign)
    assert "Template order_update (de) is pending review, not approved by Meta." in problems
    assert (
        "Template order_update (en_US) is a marketing template; "
        "a transactional notice needs a utility template." in problems
    )
    assert any(p.startswith("Bind body {{2}}") for p in problems)
    banner = build_campaign(
        project=account.project,
        data=ready(
            account, segment, template_name="banner", languages=["en_US"], bindings={"body": {"1": "x"}}
        ),
    )
    assert launch_problems(banner) == ["The template's header shows an image: give the header media URL."]
    banner.header_media_url = "https://cdn.test/a.jpg"
    assert launch_problems(banner) == []


def test_launch_problems_account_audience_schedule_and_throttle(account, template, segment):
    campaign = build_campaign(project=account.project, data=ready(account, segment))
    account.status = AccountStatus.SUSPENDED
    account.status_reason = "Payment failed"
    campaign.throttle_mps = 500
    campaign.schedule_kind = ScheduleKind.AT
    campaign.scheduled_at = timezone.now() - timedelta(minutes=1)
    campaign.audience_kind = AudienceKind.LIST
    campaign.pending_recipients = []
    assert launch_problems(campaign) == [
        f"Sending from {account} is stopped: Payment failed.",
        "Upload the list of phone numbers to send to.",
        "The send time has passed: choose a time in the future (or send now).",
        "The throttle of 500 messages per second is above the number's limit of 80.",
    ]
    campaign.status = "running"
    assert launch_problems(campaign)[0] == "The campaign is sending; only a draft can be launched."


def test_launch_problems_for_local_time_and_rules(account, template):
    data = ready(
        account,
        None,
        audience_kind=AudienceKind.RULE,
        rule='T("city", eq, "Berlin")',
        schedule_kind=ScheduleKind.LOCAL_TIME,
        local_time=time(9, 30),
    )
    TagDefinition.objects.create(project=account.project, name="city", type="string")
    campaign = build_campaign(project=account.project, data=data)
    assert campaign.fallback_time_zone == "Europe/Berlin"  # the project's zone
    assert campaign.rule["type"]
    assert launch_problems(campaign) == []
    campaign.rule = {}
    assert launch_problems(campaign) == ["Write the audience rule."]


def test_snapshot_templates_holds_every_language(account, template, segment):
    german = make_template(account, language="de")
    campaign = build_campaign(
        project=account.project, data=ready(account, segment, languages=["de", "en_US"])
    )
    snapshot = snapshot_templates(campaign)
    assert set(snapshot) == {"de", "en_US"}
    assert snapshot["de"] == {
        "id": german.pk,
        "name": "order_update",
        "language": "de",
        "category": "UTILITY",
        "parameter_format": "POSITIONAL",
        "components": german.components,
    }
    german.status = "PAUSED"
    german.save()
    with pytest.raises(InvalidInput):
        snapshot_templates(campaign)


# --- preview -----------------------------------------------------------------------------------------


def test_preview_renders_three_real_recipients_of_the_segment(
    account, template, segment, django_assert_max_num_queries
):
    project = account.project
    first_name = TagDefinition.objects.create(project=project, name="First name", type="string")
    people = [SubscriberFactory(project=project) for _ in range(5)]
    TagValue.objects.create(project=project, subscriber=people[-1], tag=first_name, value_text="Lena")
    people[-2].whatsapp_consent = ConsentState.OPTED_OUT
    people[-2].save()
    data = ready(
        account,
        segment,
        bindings={
            "body": {"1": "{{ tags.first_name }}", "2": "{{ values.order_id | default: 'A-0' }}"},
            "button:0": {"1": "{{ values.order_id | default: 'A-0' }}"},
        },
    )
    campaign = build_campaign(project=project, data=data)  # unsaved: the panel's live preview
    with django_assert_max_num_queries(12):
        shown = preview(campaign)
    assert [p.subscriber.pk for p in shown] == [people[-1].pk, people[-2].pk, people[-3].pk]
    assert shown[0].skip_reason == ""
    assert shown[0].body == "Hi Lena, your order A-0 is on its way."
    assert shown[0].buttons == ["Track"]
    assert shown[0].language == "en_US"
    assert shown[0].skip_reason == ""
    assert shown[1].skip_reason == "The subscriber opted out of WhatsApp messages."
    assert "{{ tags.first_name }} is empty for this subscriber" in shown[2].skip_reason


def test_preview_of_a_list_uses_the_given_values(account, template):
    project = account.project
    anna = SubscriberFactory(project=project, phone="+4915112345678", name="Anna")
    data = ready(
        account,
        None,
        audience_kind=AudienceKind.LIST,
        recipients=[("+4915100000000", {}), ("+4915112345678", {"order_id": "B-7"})],
        bindings={**BINDINGS, "body": {"1": "{{ subscriber.name }}", "2": "{{ values.order_id }}"}},
    )
    campaign = create_campaign(project=project, actor=ACTOR, data=data)
    campaign = Campaign.objects.get(pk=campaign.pk)
    (shown,) = preview(campaign)
    assert shown.subscriber == anna
    assert shown.body == "Hi Anna, your order B-7 is on its way."
