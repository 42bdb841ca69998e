"""The campaign composer (new, edit, live preview), the preflight page, the test send and the launch."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from campaigns.models import AudienceKind, Campaign, CampaignRecipient, CampaignStatus, Message
from controlpanel.models import AuditEntry, Role
from subscribers.models import ConsentState, Segment
from subscribers.segments.text import parse_rule
from tests.factories import ProjectFactory, SubscriberFactory
from whatsapp.models import WhatsAppAccount

from .conftest import make_template

pytestmark = pytest.mark.django_db

PROMO_COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Autumn sale"},
    {"type": "BODY", "text": "Hi {{1}}, use code {{2}} for 20% off."},
    {"type": "FOOTER", "text": "Tap Stop to opt out"},
    {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Shop now"}]},
]
BINDINGS = {"bindings.body.1": '{{ subscriber.name | default: "Kunde" }}', "bindings.body.2": "AUTUMN20"}
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "composer-live"}


@pytest.fixture
def account(project):
    return WhatsAppAccount.objects.create(
        project=project,
        waba_id="102290129340398",
        phone_number_id="106540352242922",
        display_phone_number="15550783881",
        access_token="EAAG-secret-token",
        app_secret="app-secret",
        throughput_mps=80,
        messaging_tier="TIER_1K",
    )


@pytest.fixture
def promo(account):
    return make_template(account, name="autumn_promo", category="MARKETING", components=PROMO_COMPONENTS)


@pytest.fixture
def segment(project):
    return Segment.objects.create(project=project, name="Germans", rule=parse_rule('F("language", eq, "de")'))


@pytest.fixture
def people(project):
    return [
        SubscriberFactory(project=project, name="Ana Lima", phone="+4915112300001", language="de"),
        SubscriberFactory(project=project, name="Ben Ott", phone="+4915112300002", language="de"),
        SubscriberFactory(project=project, name="Cem Kaya", phone="+4915112300003", language="de"),
        SubscriberFactory(
            project=project, name="Out", phone="+4915112300004", language="de",
            whatsapp_consent=ConsentState.OPTED_OUT,
        ),
        SubscriberFactory(project=project, name="Elsewhere", phone="+4915112300005", language="en"),
    ]  # fmt: skip


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


def new_url(project) -> str:
    return reverse("campaigns:new", args=[project.slug])


def preview_url(project) -> str:
    return reverse("campaigns:composer_preview", args=[project.slug])


def form(segment=None, **kw) -> dict:
    data = {
        "name": "Autumn sale",
        "purpose": "promotion",
        "template_name": "autumn_promo",
        "languages": ["en_US"],
        "audience_kind": "segment",
        "segment": str(segment.public_id) if segment else "",
        "schedule_kind": "now",
        "passed_local_time": "next_day",
        "fallback_time_zone": "Europe/Berlin",
        **BINDINGS,
    }
    data.update(kw)
    return {k: v for k, v in data.items() if v is not None}


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- access ------------------------------------------------------------------------------------


def test_outsiders_get_404_everywhere(client, outsider, project, account):
    draft = Campaign.objects.create(project=project, name="Draft", account=account)
    client.force_login(outsider)
    for url in (
        new_url(project),
        reverse("campaigns:edit", args=[project.slug, draft.public_id]),
        reverse("campaigns:preflight", args=[project.slug, draft.public_id]),
    ):
        assert client.get(url).status_code == 404
    assert client.post(preview_url(project), form()).status_code == 404
    assert client.post(reverse("campaigns:launch", args=[project.slug, draft.public_id])).status_code == 404


def test_a_viewer_cannot_compose_test_or_launch(client, viewer, project, account, promo, segment, people):
    draft = Campaign.objects.create(
        project=project, name="Draft", account=account, template_name="autumn_promo", languages=["en_US"],
        bindings={"body": {"1": "x", "2": "y"}}, audience_kind="segment", segment=segment,
    )  # fmt: skip
    client.force_login(viewer)
    assert client.get(new_url(project)).status_code == 403
    assert client.post(preview_url(project), form(segment)).status_code == 403
    page = client.get(reverse("campaigns:preflight", args=[project.slug, draft.public_id]))
    assert page.status_code == 200
    assert 'data-testid="launch"' not in text(page) and 'data-testid="viewer-note"' in text(page)
    launch = client.post(reverse("campaigns:launch", args=[project.slug, draft.public_id]))
    test = client.post(
        reverse("campaigns:test_send", args=[project.slug, draft.public_id]), {"phone": "+491"}
    )
    assert (launch.status_code, test.status_code) == (403, 403)
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT


def test_the_list_offers_new_campaign_to_marketers_only(client, member_of, project):
    url = reverse("campaigns:list", args=[project.slug])
    client.force_login(member_of(Role.MARKETER))
    assert 'data-testid="new-campaign"' in text(client.get(url))
    client.force_login(member_of(Role.VIEWER))
    assert 'data-testid="new-campaign"' not in text(client.get(url))


# --- the composer ------------------------------------------------------------------------------


def test_templates_offered_are_the_approved_ones_of_the_purposes_category(
    marketer_client, project, account, promo
):
    make_template(account, name="order_update", category="UTILITY")
    make_template(account, name="pending_promo", category="MARKETING", status="PENDING")
    theirs = WhatsAppAccount.objects.create(project=ProjectFactory(), waba_id="9", phone_number_id="9")
    make_template(theirs, name="theirs", category="MARKETING")
    html = text(marketer_client.get(new_url(project)))
    options = re.findall(
        r'<option value="([^"]*)"', html.split('name="template_name"')[1].split("</select>")[0]
    )
    assert options == ["", "autumn_promo"]
    live = text(
        marketer_client.post(preview_url(project), form(purpose="transactional", template_name=""), **HTMX)
    )
    template_select = live.split('name="template_name"')[1].split("</select>")[0]
    assert re.findall(r'<option value="([^"]*)"', template_select) == ["", "order_update"]


def test_live_preview_renders_three_real_recipients_of_the_segment(
    marketer_client, project, promo, segment, people
):
    response = marketer_client.post(preview_url(project), form(segment), **HTMX)
    assert response.status_code == 200
    html = text(response)
    assert html.strip().startswith('<div id="composer-live"')
    assert html.count('data-testid="preview"') == 3
    # Newest first: the opted-out one is in the segment (and would be skipped), then the next two.
    assert "Hi Out, use code AUTUMN20 for 20% off." in html and "Skipped: " in html
    assert "Hi Cem Kaya, use code AUTUMN20 for 20% off." in html
    assert "Hi Ben Ott, use code AUTUMN20" in html and "Ana Lima" not in html
    assert "Autumn sale" in html and "Shop now" in html
    assert 'data-testid="audience-size">4<' in html
    assert 'data-check="ok"' in html  # nothing stands in the way of a launch
    assert Campaign.objects.count() == 0


def test_a_broken_binding_is_an_error_next_to_its_input_not_a_500(
    marketer_client, project, promo, segment, people
):
    data = form(segment, **{"bindings.body.1": "{{ subscriber.name "})
    html = text(marketer_client.post(preview_url(project), data, **HTMX))
    assert 'data-problem-fields="bindings.body.1"' in html
    assert re.search(r'data-field="bindings.body.1">.*Body \{\{1\}\}.*character', html)
    assert 'data-testid="preview"' not in html


def test_an_empty_binding_without_default_skips_the_recipient_in_the_preview(
    marketer_client, project, promo, segment, people
):
    data = form(segment, **{"bindings.body.1": "{{ tags.nickname }}"})
    html = text(marketer_client.post(preview_url(project), data, **HTMX))
    assert html.count('data-testid="skip-reason"') == 3


def test_the_template_inputs_are_redrawn_when_the_template_changes(marketer_client, project, promo, segment):
    data = form(segment, fields_for="")
    html = text(marketer_client.post(preview_url(project), data, **HTMX))
    assert 'id="composer-template" data-testid="template-section" hx-swap-oob="true"' in html
    assert html.count('data-testid="binding"') == 2
    key = re.search(r'name="fields_for" value="([^"]*)"', html).group(1)
    again = text(marketer_client.post(preview_url(project), {**data, "fields_for": key}, **HTMX))
    assert "hx-swap-oob" not in again


def test_the_media_header_asks_for_its_url(marketer_client, project, account, segment, people):
    make_template(
        account, name="photo_promo", category="MARKETING",
        components=[{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "New in store"}],
    )  # fmt: skip
    data = form(segment, template_name="photo_promo", fields_for="", **{"bindings.body.1": None})
    data = {k: v for k, v in data.items() if not k.startswith("bindings.")}
    html = text(marketer_client.post(preview_url(project), data, **HTMX))
    assert 'name="header_media_url"' in html
    assert "give the header media URL" in html
    bad = text(marketer_client.post(preview_url(project), {**data, "header_media_url": "ftp://x"}, **HTMX))
    assert 'data-problem-fields="header_media_url"' in bad and "https://" in bad


def test_rule_audience_counts_live_and_a_bad_rule_is_a_field_error(marketer_client, project, promo, people):
    data = form(audience_kind="rule", rule='F("language", eq, "en")')
    html = text(marketer_client.post(preview_url(project), data, **HTMX))
    assert 'data-testid="audience-size">1<' in html and "Hi Elsewhere" in html
    bad = text(marketer_client.post(preview_url(project), {**data, "rule": 'F("language", eq'}, **HTMX))
    assert 'data-problem-fields="rule"' in bad and "The audience rule is not valid" in bad


def test_throttle_above_the_numbers_limit_is_refused_on_its_field(marketer_client, project, promo, segment):
    html = text(marketer_client.post(preview_url(project), form(segment, throttle_mps="500"), **HTMX))
    assert 'data-problem-fields="throttle_mps"' in html and "At most 80 messages per second" in html


# --- saving --------------------------------------------------------------------------------------


def test_save_draft_then_edit_it(marketer_client, project, promo, segment, people):
    response = marketer_client.post(new_url(project), {**form(segment), "action": "save"})
    campaign = Campaign.objects.get(project=project)
    assert response.status_code == 302
    assert response["Location"] == reverse("campaigns:edit", args=[project.slug, campaign.public_id])
    assert campaign.status == CampaignStatus.DRAFT and campaign.segment == segment
    assert campaign.bindings == {"body": {"1": BINDINGS["bindings.body.1"], "2": "AUTUMN20"}}
    assert AuditEntry.objects.filter(project=project, action="campaign.create").count() == 1

    page = text(marketer_client.get(response["Location"]))
    assert 'value="Autumn sale"' in page and 'value="AUTUMN20"' in page
    assert "Hi Cem Kaya, use code AUTUMN20" in page  # the saved draft is previewed at once

    edit = marketer_client.post(
        response["Location"],
        {**form(segment, name="Autumn sale II", throttle_mps="20"), "action": "preflight"},
    )
    assert edit["Location"] == reverse("campaigns:preflight", args=[project.slug, campaign.public_id])
    campaign.refresh_from_db()
    assert (campaign.name, campaign.throttle_mps) == ("Autumn sale II", 20)
    assert Campaign.objects.count() == 1


def test_saving_without_a_name_says_so_and_saves_nothing(marketer_client, project, promo, segment):
    response = marketer_client.post(new_url(project), {**form(segment, name=""), "action": "save"})
    assert response.status_code == 400
    html = text(response)
    assert 'data-testid="form-errors"' in html
    assert re.search(r'data-field="name">.*Give the campaign a name', html)
    assert Campaign.objects.count() == 0


def test_schedule_at_a_time_and_at_a_local_time(marketer_client, project, promo, segment):
    at = (timezone.localtime() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    marketer_client.post(
        new_url(project), {**form(segment, schedule_kind="at", scheduled_at=at), "action": "save"}
    )
    scheduled = Campaign.objects.get()
    assert scheduled.schedule_kind == "at" and scheduled.scheduled_at > timezone.now() + timedelta(days=1)
    data = form(
        segment, name="Local", schedule_kind="local_time", local_time="09:30", passed_local_time="skip"
    )
    marketer_client.post(new_url(project), {**data, "action": "save"})
    local = Campaign.objects.get(name="Local")
    assert (local.local_time.isoformat(), local.fallback_time_zone, local.passed_local_time) == (
        "09:30:00", "Europe/Berlin", "skip",
    )  # fmt: skip
    bad = marketer_client.post(new_url(project), {**form(segment, schedule_kind="at", scheduled_at="soon")})
    assert bad.status_code == 400 and 'data-problem="scheduled_at"' in text(bad)


def test_a_list_of_phones_typed_and_uploaded(marketer_client, project, promo, people):
    upload = SimpleUploadedFile("phones.csv", b"phone;name\n+49 151 12300002;Ben\n015112300003;Cem\n")
    data = {
        **form(audience_kind="list", phones="+4915112300001\n\n"),
        "phones_file": upload,
        "action": "save",
    }
    assert marketer_client.post(new_url(project), data).status_code == 302
    campaign = Campaign.objects.get()
    assert sorted(CampaignRecipient.objects.filter(campaign=campaign).values_list("key", flat=True)) == [
        "+4915112300001", "+4915112300002", "+4915112300003",
    ]  # fmt: skip
    # Editing without a new list keeps the saved one.
    edit_url = reverse("campaigns:edit", args=[project.slug, campaign.public_id])
    page = text(marketer_client.get(edit_url))
    assert "3 phones saved with this draft" in page
    kept = {**form(audience_kind="list"), "campaign": str(campaign.public_id)}
    live = text(marketer_client.post(preview_url(project), kept, **HTMX))
    assert 'data-testid="audience-size">3<' in live and "Hi Cem Kaya" in live
    marketer_client.post(edit_url, {**form(audience_kind="list", name="Renamed"), "action": "save"})
    assert CampaignRecipient.objects.filter(campaign=campaign).count() == 3
    bad = marketer_client.post(edit_url, {**form(audience_kind="list", phones="+4915112300001\nnot a phone")})
    assert bad.status_code == 400 and re.search(r'data-field="phones">.*Line 2: ', text(bad))
    assert CampaignRecipient.objects.filter(campaign=campaign).count() == 3


def test_only_drafts_can_be_edited(marketer_client, project, account):
    running = Campaign.objects.create(project=project, name="Live", account=account, status="running")
    url = reverse("campaigns:edit", args=[project.slug, running.public_id])
    response = marketer_client.post(url, form(name="Changed"))
    assert response.status_code == 302
    assert response["Location"] == reverse("campaigns:detail", args=[project.slug, running.public_id])
    running.refresh_from_db()
    assert running.name == "Live"


# --- preflight, test send, launch ----------------------------------------------------------------


@pytest.fixture
def draft(project, account, promo, segment, people):
    return Campaign.objects.create(
        project=project, name="Autumn sale", account=account, template_name="autumn_promo",
        languages=["en_US"], fallback_language="en_US",
        bindings={"body": {"1": '{{ subscriber.name | default: "Kunde" }}', "2": "AUTUMN20"}},
        audience_kind=AudienceKind.SEGMENT, segment=segment, throttle_mps=2,
    )  # fmt: skip


def test_preflight_shows_audience_exclusions_cost_duration_and_tier(marketer_client, project, draft):
    html = text(marketer_client.get(reverse("campaigns:preflight", args=[project.slug, draft.public_id])))
    assert 'data-testid="pf-audience">4<' in html
    assert 'data-testid="pf-sendable">3<' in html
    assert 'data-testid="excluded-opted_out">1<' in html
    assert re.search(r'data-testid="pf-cost">\$\d+\.\d\d<', html)  # |money:currency: "$0.12" in English
    assert 'data-testid="pf-duration">about 2 seconds<' in html  # 3 messages at 2 per second
    assert 'data-testid="pf-tier">1,000 a day<' in html
    assert 'data-testid="launch-problems"' not in html
    assert "to 3 recipients for about" in html  # the launch confirmation states audience and cost
    assert html.count('data-testid="preview"') == 3


def test_preflight_of_an_unfinished_draft_lists_what_to_fix_and_disables_launch(
    marketer_client, project, account
):
    draft = Campaign.objects.create(project=project, name="Half", account=account)
    html = text(marketer_client.get(reverse("campaigns:preflight", args=[project.slug, draft.public_id])))
    assert "Choose a template." in html and "Choose a segment" in html
    assert re.search(r'data-testid="launch" disabled', html)


def test_test_send_to_a_subscriber_phone(marketer_client, project, draft, people, graph):
    url = reverse("campaigns:test_send", args=[project.slug, draft.public_id])
    response = marketer_client.post(url, {"phone": "+49 151 12300001"})
    assert response.status_code == 302
    message = Message.objects.get(subscriber=people[0])
    assert message.campaign is None and "Hi Ana Lima, use code AUTUMN20" in message.body
    assert AuditEntry.objects.filter(action="campaign.test_send").count() == 1
    page = text(marketer_client.get(response["Location"]))
    assert 'data-testid="last-test"' in page and "+4915112300001" in page


def test_test_send_to_an_unknown_phone_is_an_error_on_the_phone_field(marketer_client, project, draft):
    url = reverse("campaigns:test_send", args=[project.slug, draft.public_id])
    response = marketer_client.post(url, {"phone": "+49 151 99999999"})
    assert response.status_code == 400
    assert re.search(r'data-problem="phone">No subscriber of this project has the number', text(response))
    assert Message.objects.count() == 0


def test_launch_goes_to_the_live_page(marketer_client, project, draft):
    response = marketer_client.post(reverse("campaigns:launch", args=[project.slug, draft.public_id]))
    assert response["Location"] == reverse("campaigns:detail", args=[project.slug, draft.public_id])
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.SCHEDULED
    assert AuditEntry.objects.filter(action="campaign.launch").count() == 1
    # Launched: the composer and the preflight page send people to the live page.
    for name in ("edit", "preflight"):
        again = marketer_client.get(reverse(f"campaigns:{name}", args=[project.slug, draft.public_id]))
        assert again["Location"] == response["Location"]


def test_a_refused_launch_says_why_and_changes_nothing(marketer_client, project, draft, promo):
    promo.status = "PAUSED"
    promo.save()
    response = marketer_client.post(reverse("campaigns:launch", args=[project.slug, draft.public_id]))
    assert response.status_code == 400
    assert 'data-testid="launch-errors"' in text(response) and "not approved by Meta" in text(response)
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT


def test_a_language_group_gives_each_recipient_their_language(
    marketer_client, project, account, promo, people
):
    german = [dict(c) for c in PROMO_COMPONENTS]
    german[1] = {"type": "BODY", "text": "Hallo {{1}}, mit Code {{2}} gibt es 20% Rabatt."}
    make_template(account, name="autumn_promo", language="de", category="MARKETING", components=german)
    data = form(audience_kind="everyone", languages=["en_US", "de"], fallback_language="en_US", fields_for="")
    html = text(marketer_client.post(preview_url(project), data, **HTMX))
    assert 'name="fallback_language"' in html and html.count('name="languages"') == 2
    assert 'data-testid="audience-size">4<' in html  # everyone opted in
    assert "Hallo Cem Kaya, mit Code AUTUMN20" in html  # language de
    assert "Hi Elsewhere, use code AUTUMN20" in html  # language en: the fallback
    marketer_client.post(new_url(project), {**data, "action": "save"})
    campaign = Campaign.objects.get()
    assert (sorted(campaign.languages), campaign.fallback_language) == (["de", "en_US"], "en_US")


def test_a_bad_phone_in_an_uploaded_file_names_its_row(marketer_client, project, promo):
    upload = SimpleUploadedFile("phones.csv", b"phone\n+4915112300001\n12\n")
    response = marketer_client.post(new_url(project), {**form(audience_kind="list"), "phones_file": upload})
    assert response.status_code == 400
    assert re.search(r'data-field="phones_file">.*Row 3: ', text(response))
    assert Campaign.objects.count() == 0


def test_preflight_warns_when_the_audience_exceeds_the_messaging_tier(
    marketer_client, project, account, draft
):
    account.messaging_tier = "TIER_2"
    account.save()
    html = text(marketer_client.get(reverse("campaigns:preflight", args=[project.slug, draft.public_id])))
    assert re.search(r'data-testid="pf-warning">The audience \(3 recipients\) exceeds the number', html)
