"""The keyword shortcut, statistics and dry run pages: tenancy, roles, bad input, htmx partials."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from controlpanel.models import Role
from journeys import counters, services
from journeys.models import Journey, JourneyRun, JourneyStatus, JourneyVersion, RunState
from journeys.steps import Problem
from tests.factories import ProjectFactory, SubscriberFactory
from whatsapp.models import MessageTemplate, WhatsAppAccount

pytestmark = pytest.mark.django_db

PROMO = {
    "name": "PROMO keyword",
    "entry": {
        "type": "event",
        "event": "WhatsAppReceived",
        "conditions": [{"attribute": "text", "op": "keyword", "value": "promo"}],
    },
    "settings": {"reentry": "after_exit"},
    "steps": [
        {"id": "reply", "type": "whatsapp_text", "text": "Danke! Dein Code: SUSHI20", "next": "wait"},
        {"id": "wait", "type": "wait", "duration": "PT1H", "next": "offer"},
        {
            "id": "offer",
            "type": "whatsapp_template",
            "template": {"name": "o", "language": "de"},
            "next": None,
        },
    ],
}


@pytest.fixture
def marketer_client(client, member_of):
    client.force_login(member_of(Role.MARKETER))
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def outsider_client(client, outsider):
    client.force_login(outsider)
    return client


def _journey(project, status=JourneyStatus.DRAFT, definition=PROMO) -> Journey:
    journey = Journey.objects.create(
        project=project, name=definition["name"], definition=definition, status=status
    )
    if status != JourneyStatus.DRAFT:
        JourneyVersion.objects.create(project=project, journey=journey, number=1, definition=definition)
        journey.version = 1
        journey.save()
    return journey


def _template(project, name="follow_up_offer", body="Hallo {{1}}, 20 % heute."):
    account = WhatsAppAccount.objects.create(
        project=project, waba_id="w1", phone_number_id="p1", access_token="t", app_secret="s"
    )
    return MessageTemplate.objects.create(
        project=project,
        account=account,
        name=name,
        language="de",
        category="MARKETING",
        status="APPROVED",
        components=[{"type": "BODY", "text": body, "example": {"body_text": [["Ana"]]}}],
    )


# --- keyword shortcut -----------------------------------------------------------------------------


def _keyword_url(project):
    return reverse("journeys:keyword_new", args=[project.slug])


FORM = {"name": "PROMO", "keywords": "PROMO, Aktion", "match": "exact", "reply": "Dein Code: SUSHI20"}


def test_keyword_page_outsider_404_viewer_403(project, outsider_client):
    assert outsider_client.get(_keyword_url(project)).status_code == 404
    assert outsider_client.post(_keyword_url(project), FORM).status_code == 404


def test_viewer_cannot_open_or_post_the_shortcut(project, viewer_client):
    assert viewer_client.get(_keyword_url(project)).status_code == 403
    assert viewer_client.post(_keyword_url(project), FORM).status_code == 403
    assert not Journey.objects.exists()


def test_keyword_page_lists_approved_templates_and_the_examples(project, marketer_client):
    _template(project)
    page = marketer_client.get(_keyword_url(project)).content.decode()
    assert "follow_up_offer (de)" in page
    assert 'data-testid="example-promo"' in page and 'data-testid="example-hilfe"' in page
    assert reverse("journeys:example_new", args=[project.slug, "promo"]) in page


def test_save_as_draft_creates_the_journey_and_goes_to_the_list(project, marketer_client):
    response = marketer_client.post(_keyword_url(project), {**FORM, "action": "draft"})
    assert response.status_code == 302 and response["Location"] == reverse(
        "journeys:list", args=[project.slug]
    )
    journey = Journey.objects.get(project=project)
    assert journey.status == JourneyStatus.DRAFT and journey.name == "PROMO"
    assert journey.definition["entry"]["conditions"][0]["value"] == ["PROMO", "Aktion"]
    assert journey.keywords == ["aktion", "promo"]


def test_follow_up_template_with_its_bindings_after_the_delay(project, marketer_client):
    _template(project)
    data = {**FORM, "template": "follow_up_offer|de", "delay_amount": "30", "delay_unit": "minutes"}
    response = marketer_client.post(
        _keyword_url(project), {**data, "bindings.body.1": "{{ subscriber.name }}"}
    )
    assert response.status_code == 302
    steps = Journey.objects.get(project=project).definition["steps"]
    assert steps[1] == {
        "id": "wait",
        "type": "wait",
        "duration": "PT30M",
        "next": "follow_up",
        "ui": steps[1]["ui"],
    }
    assert steps[2]["template"] == {"name": "follow_up_offer", "language": "de"}
    assert steps[2]["bindings"] == {"body.1": "{{ subscriber.name }}"}


def test_a_missing_binding_is_shown_at_its_input(project, marketer_client):
    _template(project)
    response = marketer_client.post(_keyword_url(project), {**FORM, "template": "follow_up_offer|de"})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-problem="bindings.body.1"' in page and "Bind Body {{1}}" in page
    assert not Journey.objects.exists()


def test_template_choice_swaps_in_its_placeholders(project, marketer_client):
    _template(project)
    response = marketer_client.get(
        _keyword_url(project),
        {**FORM, "template": "follow_up_offer|de"},
        headers={"HX-Request": "true", "HX-Target": "keyword-bindings"},
    )
    page = response.content.decode()
    assert response.status_code == 200 and page.lstrip().startswith('<div id="keyword-bindings"')
    assert 'name="bindings.body.1"' in page and "<html" not in page


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"keywords": " , "}, "Give at least one keyword"),
        ({"keywords": "(a+", "match": "regex"}, "not a valid regular expression"),
        ({"reply": ""}, "This field is required"),
        ({"match": "soundex"}, "Select a valid choice"),
        ({"template": "someone_elses|de"}, "Select a valid choice"),
    ],
)
def test_bad_input_re_renders_with_the_error_and_saves_nothing(project, marketer_client, data, problem):
    response = marketer_client.post(_keyword_url(project), {**FORM, **data})
    assert response.status_code == 400
    assert problem in response.content.decode()
    assert not Journey.objects.exists()


def test_a_collision_blocks_activation_names_the_other_journey_and_saves_nothing(
    project, marketer_client, monkeypatch
):
    other = _journey(project, JourneyStatus.ACTIVE, definition={**PROMO, "name": "Promo 2"})
    Journey.objects.filter(pk=other.pk).update(keywords=["promo"])
    response = marketer_client.post(_keyword_url(project), {**FORM, "action": "activate"})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-problem="keywords"' in page and "claimed by journey &#x27;Promo 2&#x27;" in page
    assert list(Journey.objects.values_list("name", flat=True)) == ["Promo 2"]


def test_a_draft_save_says_what_would_block_activation(project, marketer_client, monkeypatch):
    problem = Problem(None, "entry.conditions[0].value", "STOP is an opt-out keyword of 15550001234.")
    monkeypatch.setattr(services, "validate", lambda journey: [problem])
    response = marketer_client.post(_keyword_url(project), {**FORM, "action": "draft"}, follow=True)
    page = response.content.decode()
    assert "Before it can be activated: STOP is an opt-out keyword" in page
    assert Journey.objects.get(project=project).status == JourneyStatus.DRAFT


def test_examples_from_the_list_open_the_form_filled_in_or_point_at_their_card(project, marketer_client):
    _template(project, name="follow_up_offer", body="Noch hungrig? 20 % heute.")
    page = marketer_client.get(_keyword_url(project), {"example": "promo"}).content.decode()
    assert 'value="PROMO keyword"' in page and 'value="promo"' in page and "Ihr Code: SUSHI20" in page
    assert '<option value="follow_up_offer|de" selected>' in page
    page = marketer_client.get(_keyword_url(project), {"example": "hilfe"}).content.decode()
    assert 'data-testid="hilfe-hint"' in page and "example-chosen" in page


def test_save_and_activate(project, marketer_client, monkeypatch):
    monkeypatch.setattr(services, "validate", lambda journey: [])  # templates: messaging's step checks
    response = marketer_client.post(_keyword_url(project), {**FORM, "action": "activate"})
    assert response.status_code == 302
    assert Journey.objects.get(project=project).status == JourneyStatus.ACTIVE


def test_example_creates_a_draft_or_says_what_is_missing(project, marketer_client):
    url = reverse("journeys:example_new", args=[project.slug, "hilfe"])
    response = marketer_client.post(url, follow=True)
    assert "support_menu" in response.content.decode() and not Journey.objects.exists()
    response = marketer_client.post(reverse("journeys:example_new", args=[project.slug, "promo"]))
    journey = Journey.objects.get(project=project)
    assert response.status_code == 302 and str(journey.public_id) in response["Location"]
    assert journey.name == "PROMO keyword" and journey.status == JourneyStatus.DRAFT


def test_example_refused_to_viewer_and_outsider(project, viewer, outsider, client):
    url = reverse("journeys:example_new", args=[project.slug, "promo"])
    client.force_login(viewer)
    assert client.post(url).status_code == 403
    client.force_login(outsider)
    assert client.post(url).status_code == 404
    assert not Journey.objects.exists()


# --- statistics -----------------------------------------------------------------------------------


def _stats_url(journey):
    return reverse("journeys:stats", args=[journey.project.slug, journey.public_id])


def test_stats_page_outsider_404_and_other_projects_journey_404(project, client, outsider, member_of):
    journey = _journey(project, JourneyStatus.ACTIVE)
    client.force_login(outsider)
    assert client.get(_stats_url(journey)).status_code == 404
    client.force_login(member_of(Role.MARKETER))
    assert client.get(_stats_url(journey)).status_code == 200
    foreign = _journey(ProjectFactory(), JourneyStatus.ACTIVE)
    url = reverse("journeys:stats", args=[project.slug, foreign.public_id])
    assert client.get(url).status_code == 404


def test_viewer_reads_the_stats_page(project, viewer_client):
    journey = _journey(project, JourneyStatus.ACTIVE)
    sub = SubscriberFactory(project=project)
    JourneyRun.objects.create(
        project=project, journey=journey, version=1, subscriber=sub, state=RunState.WAITING,
        step_id="wait", entry_key="e1", entered_at=journey.created_at,
    )  # fmt: skip
    counters.bump(
        project.pk,
        journey.pk,
        {("", "entered"): 8, ("", "converted"): 2, ("", "exited:goal"): 2, ("reply", "sent"): 7},
    )
    response = viewer_client.get(_stats_url(journey))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="stat-entered">8<' in page and 'data-testid="stat-rate">25.0 %<' in page
    assert 'data-testid="stat-in-journey">1<' in page and 'data-testid="channel-sent">7<' in page
    assert 'data-reason="goal"' in page and 'id="journey-chart"' in page
    assert 'hx-trigger="every 5s"' in page


def test_stats_partial_polls_while_active_and_stops_for_a_draft(project, marketer_client):
    headers = {"HX-Request": "true", "HX-Target": "journey-stats"}
    active = _journey(project, JourneyStatus.ACTIVE)
    response = marketer_client.get(_stats_url(active), headers=headers)
    assert response.status_code == 200 and response.content.decode().lstrip().startswith(
        '<div id="journey-stats"'
    )
    draft = _journey(project)
    assert marketer_client.get(_stats_url(draft), headers=headers).status_code == 286
    changed = marketer_client.get(_stats_url(active) + "?shown=draft", headers=headers)
    assert changed["HX-Refresh"] == "true"


# --- dry run --------------------------------------------------------------------------------------


def _dry_url(journey, name="dryrun"):
    return reverse(f"journeys:{name}", args=[journey.project.slug, journey.public_id])


HX_RUN = {"HX-Request": "true", "HX-Target": "dryrun-run"}


def test_dryrun_page_outsider_404_viewer_reads_without_controls(project, client, outsider, viewer):
    journey = _journey(project)
    client.force_login(outsider)
    assert client.get(_dry_url(journey)).status_code == 404
    client.force_login(viewer)
    viewer_client = client
    page = viewer_client.get(_dry_url(journey)).content.decode()
    assert 'data-testid="dryrun-start"' not in page and 'data-step="reply"' in page
    sub = SubscriberFactory(project=project)
    assert (
        viewer_client.post(_dry_url(journey, "dryrun_start"), {"subscriber": sub.public_id}).status_code
        == 403
    )


def test_dryrun_walks_the_draft_step_by_step(project, marketer_client, monkeypatch):
    _template(project, name="o", body="Noch hungrig?")
    journey = _journey(project)
    # The window is open (a real keyword journey's inbound message opened it).
    sub = SubscriberFactory(project=project, name="Ana Lima", last_inbound_at=timezone.now())
    form = marketer_client.get(_dry_url(journey)).content.decode()
    assert 'value="WhatsAppReceived"' in form and ">text=promo</textarea>" in form
    data = {
        "subscriber": sub.public_id,
        "source": "draft",
        "event_name": "WhatsAppReceived",
        "event_attributes": "text=Promo!",
    }
    response = marketer_client.post(_dry_url(journey, "dryrun_start"), data, headers=HX_RUN)
    page = response.content.decode()
    assert response.status_code == 200 and page.lstrip().startswith('<div id="dryrun-run"')
    run = JourneyRun.objects.get(journey=journey)
    assert run.dry_run and run.state == RunState.WAITING and run.step_id == "wait"
    assert run.context["event"]["attributes"] == {"text": "Promo!"}
    assert "Dein Code: SUSHI20" in page and 'aria-current="step"' in page
    assert 'data-testid="fast-forward"' in page
    response = marketer_client.post(
        _dry_url(journey, "dryrun_forward"), {"run": run.public_id}, headers=HX_RUN
    )
    run.refresh_from_db()
    page = response.content.decode()
    assert run.state == RunState.DONE and 'aria-current="step"' not in page
    assert 'is-visited" data-testid="path-step" data-step="offer"' in page
    assert not counters.read(journey.pk)  # dry runs are never counted
    again = marketer_client.post(_dry_url(journey, "dryrun_forward"), {"run": run.public_id}, headers=HX_RUN)
    assert "Nothing to fast-forward" in again.content.decode()


def test_dryrun_path_shows_where_a_wait_for_an_event_times_out_to(project, marketer_client):
    reply, _, offer = PROMO["steps"]
    wait = {"id": "wait", "type": "wait_event", "events": [{"event": "WhatsAppRead"}], "timeout": "P1D"}
    definition = {**PROMO, "steps": [reply, {**wait, "timeout_next": "offer"}, offer]}
    page = marketer_client.get(_dry_url(_journey(project, definition=definition))).content.decode()
    # wait_event's "timeout" is its duration; the branch's target is "timeout_next".
    assert "timeout → offer" in page and "timeout → P1D" not in page


def test_dryrun_fire_taps_a_button_and_bad_attributes_come_back(project, marketer_client, monkeypatch):
    template = _template(project, name="m", body="Wobei helfen?")
    buttons = {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Lieferung"}]}
    MessageTemplate.objects.filter(pk=template.pk).update(
        category="UTILITY", components=[*template.components, buttons]
    )
    menu = {
        "name": "HILFE",
        "entry": {"type": "event", "event": "WhatsAppReceived"},
        "steps": [
            {"id": "menu", "type": "whatsapp_template", "template": {"name": "m", "language": "de"},
             "buttons": {"Lieferung": "delivery"}, "next": None},
            {"id": "delivery", "type": "whatsapp_text", "text": "Kommt gleich.", "next": None},
        ],
    }  # fmt: skip
    journey = _journey(project, definition=menu)
    sub = SubscriberFactory(project=project, last_inbound_at=timezone.now())
    page = marketer_client.post(
        _dry_url(journey, "dryrun_start"), {"subscriber": sub.public_id}, headers=HX_RUN
    ).content.decode()
    assert "Tap “Lieferung”" in page
    run = JourneyRun.objects.get(journey=journey)
    nothing = marketer_client.post(
        _dry_url(journey, "dryrun_fire"), {"run": run.public_id, "name": "OrderPlaced"}, headers=HX_RUN
    )
    assert "OrderPlaced moved nothing" in nothing.content.decode()
    bad = marketer_client.post(
        _dry_url(journey, "dryrun_fire"),
        {"run": run.public_id, "name": "9bad", "attributes": "no equals sign"},
        headers=HX_RUN,
    )
    assert bad.status_code == 200
    assert (
        'data-problem="name"' in bad.content.decode() and "Line 1: write name=value" in bad.content.decode()
    )
    plain = marketer_client.post(
        _dry_url(journey, "dryrun_fire"), {"run": run.public_id, "name": "X", "attributes": "oops"}
    )
    assert plain.status_code == 400 and "Line 1" in plain.content.decode()
    done = marketer_client.post(
        _dry_url(journey, "dryrun_fire"),
        {
            "run": run.public_id,
            "name": "WhatsAppReceived",
            "attributes": "button_text=Lieferung\ntext=Lieferung",
        },
    )
    assert done.status_code == 302 and done["Location"].endswith(f"?run={run.public_id}")
    run.refresh_from_db()
    assert run.state == RunState.DONE
    page = marketer_client.get(done["Location"]).content.decode()
    assert "Kommt gleich." in page and "passed by button:Lieferung" in page
    assert not counters.read(journey.pk)


def test_dryrun_refuses_other_projects_subscribers_and_runs(project, marketer_client, monkeypatch):
    journey = _journey(project)
    stranger = SubscriberFactory(project=ProjectFactory())
    page = marketer_client.post(
        _dry_url(journey, "dryrun_start"), {"subscriber": stranger.public_id}, headers=HX_RUN
    ).content.decode()
    assert "Pick a subscriber of this project" in page and not JourneyRun.objects.exists()
    other = _journey(ProjectFactory())
    mine = SubscriberFactory(project=project)
    marketer_client.post(_dry_url(journey, "dryrun_start"), {"subscriber": mine.public_id})
    run = JourneyRun.objects.get()
    other_url = reverse("journeys:dryrun_forward", args=[project.slug, other.public_id])
    assert marketer_client.post(other_url, {"run": run.public_id}).status_code == 404
    assert marketer_client.post(_dry_url(journey, "dryrun_forward"), {"run": "junk"}).status_code == 404


def test_dryrun_search_finds_subscribers_of_this_project_only(project, marketer_client):
    journey = _journey(project)
    SubscriberFactory(project=project, name="Ana Lima")
    SubscriberFactory(project=project, name="Ben Ott")
    SubscriberFactory(project=ProjectFactory(), name="Ana Other")
    response = marketer_client.get(
        _dry_url(journey), {"q": "ana"}, headers={"HX-Request": "true", "HX-Target": "dryrun-subscribers"}
    )
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="dryrun-subscribers"')
    assert "Ana Lima" in page and "Ben Ott" not in page and "Ana Other" not in page


def test_stats_page_takes_a_fixed_number_of_queries(project, marketer_client, django_assert_max_num_queries):
    journey = _journey(project, JourneyStatus.ACTIVE)
    for i in range(30):
        JourneyRun.objects.create(
            project=project, journey=journey, version=1, subscriber=SubscriberFactory(project=project),
            state=RunState.WAITING, step_id="wait", entry_key=f"e{i}", entered_at=timezone.now(),
        )  # fmt: skip
    marketer_client.get(_stats_url(journey))  # session, caches
    with django_assert_max_num_queries(8):
        assert marketer_client.get(_stats_url(journey)).status_code == 200


@pytest.fixture
def simulator(settings, tmp_path):
    from whatsapp.simulator import store

    settings.SIMULATOR_ENABLED = True
    settings.SIMULATOR_STATE_DIR = str(tmp_path / "simulator")
    yield
    store.close()


def test_dryrun_offers_the_simulator_handsets_of_the_project(project, marketer_client, simulator):
    WhatsAppAccount.objects.create(
        project=project, waba_id="w9", phone_number_id="p9", access_token="t", app_secret="s",
        base_url="http://testserver/simulator/graph",
    )  # fmt: skip
    SubscriberFactory(project=project, name="Ana Handset", phone="+4915123456789")
    SubscriberFactory(project=ProjectFactory(), name="Not Mine", phone="+4915123456780")
    page = marketer_client.get(_dry_url(_journey(project))).content.decode()
    handsets = page.split('data-testid="dryrun-handsets"', 1)[1].split("</div>", 1)[0]
    assert "Ana Handset" in handsets and "Not Mine" not in handsets
