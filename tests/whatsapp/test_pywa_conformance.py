"""An independent client (pywa 4.5, a test dependency only) talks to the simulator as it would to Meta.

pywa hard-codes graph.facebook.com, so it is pointed at the simulator as reference 9.1 says: give it
our own httpx.Client and re-point its base_url after construction. In-process tests give that client
a transport that calls Django directly (no sockets, same test transaction); one test goes over real
HTTP to the live server. Webhooks the simulator produces are fed to pywa's own validator and parser.
"""

from __future__ import annotations

import time

import httpx
import pytest
from pywa import WhatsApp, errors, handlers, types
from pywa.types.templates import BodyText, TemplateLanguage, TemplatesResult, TemplateStatus, URLButton

from tests.factories import ProjectFactory
from whatsapp.models import WhatsAppAccount
from whatsapp.simulator import callbacks, services, store, testing

TOKEN = "EAAG-pywa-token"
SECRET = "pywa-app-secret"
VERIFY = "pywa-verify-token"
WABA = "400000000000001"
NUMBER_ID = "400000000000002"
CUSTOMER = "4915112345678"


@pytest.fixture(autouse=True)
def simulator(settings, tmp_path):
    testing.quiet_settings(settings, tmp_path / "simulator")
    settings.SIMULATOR_APPROVAL_SECONDS = 0
    settings.PUBLIC_BASE_URL = ""
    yield
    store.close()


@pytest.fixture
def account(db):
    account = WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id=WABA,
        phone_number_id=NUMBER_ID,
        display_phone_number="15550001234",
        access_token=TOKEN,
        app_secret=SECRET,
        base_url="http://testserver/simulator/graph",
    )
    services.seed_templates(waba_id=WABA)
    return account


def pywa_client(base: str = "http://testserver", transport: httpx.BaseTransport | None = None) -> WhatsApp:
    session = httpx.Client(transport=transport or testing.httpx_transport(), timeout=10)
    wa = WhatsApp(
        phone_id=NUMBER_ID,
        token=TOKEN,
        session=session,
        api_version="23.0",
        waba_id=WABA,
        verify_token=VERIFY,
        app_secret=SECRET,
    )
    session.base_url = f"{base}/simulator/graph/v23.0"  # reference 9.1, option 1
    return wa


@pytest.fixture
def wa(account) -> WhatsApp:
    return pywa_client()


def order_params() -> list:
    return [BodyText.params("Ana", "#8812", "tomorrow"), URLButton.params(url_variable="8812", index=0)]


def next_page(wa: WhatsApp, result: TemplatesResult) -> TemplatesResult:
    """What ``result.next()`` does: GET the absolute ``paging.next`` through pywa's own session.

    pywa 4.5.0's ``TemplatesResult.next()`` itself raises TypeError (it passes ``item_factory`` to a
    constructor that does not take it), so the same request is made here through its API layer.
    """
    return TemplatesResult(wa=wa, response=wa.api._request(method="GET", endpoint=result._next_url))


def captured_webhooks() -> list[tuple[bytes, str]]:
    """The simulator's due webhooks as (exact bytes, X-Hub-Signature-256), instead of POSTing them."""
    seen: list[tuple[bytes, str]] = []
    callbacks.deliver_due(
        now=time.time() + 3600,
        limit=500,
        transport=lambda url, body, headers: seen.append((body, headers["X-Hub-Signature-256"])) or 200,
    )
    return seen


def parse(wa: WhatsApp, webhooks: list[tuple[bytes, str]]) -> list:
    """Feed the webhooks through pywa's validator and update handler; return the parsed updates."""
    updates: list = []

    def keep(_client, update):
        updates.append(update)

    wa.add_handlers(
        handlers.MessageHandler(keep),
        handlers.CallbackButtonHandler(keep),
        handlers.CallbackSelectionHandler(keep),
        handlers.MessageStatusHandler(keep),
        handlers.TemplateStatusUpdateHandler(keep),
        handlers.UserMarketingPreferencesHandler(keep),
        handlers.PhoneNumberChangeHandler(keep),
    )
    for body, signature in webhooks:
        assert wa.webhook_update_validator(body, signature) is None  # signature accepted
        assert wa.webhook_update_handler(body) == ("ok", 200)
    return updates


def open_window(account) -> None:
    services.send_inbound(
        account=account, phone=CUSTOMER, kind="text", text="Hi", callback_base="http://testserver"
    )
    captured_webhooks()


def test_pywa_sends_a_text(wa, account):
    open_window(account)
    sent = wa.send_message(to=CUSTOMER, text="Your table is ready", tracker="m:text-1")
    assert sent.id.startswith("wamid.")
    assert sent.chat.id == CUSTOMER and sent.input == CUSTOMER
    assert store.get_message(sent.id)["payload"]["text"]["body"] == "Your table is ready"


def test_pywa_sends_a_template(wa):
    sent = wa.send_template(
        to=CUSTOMER,
        name="order_update",
        language=TemplateLanguage.ENGLISH_US,
        params=order_params(),
        tracker="m:tpl-1",
    )
    assert sent.id.startswith("wamid.")
    stored = store.get_message(sent.id)["payload"]
    assert stored["template"]["name"] == "order_update" and stored["biz_opaque_callback_data"] == "m:tpl-1"


def test_pywa_lists_templates_and_follows_the_absolute_next_url(wa):
    services.seed_templates(
        waba_id=WABA,
        definitions=[
            {
                "name": f"note_{i}",
                "language": "en_US",
                "category": "UTILITY",
                "components": [{"type": "BODY", "text": f"Note number {i}."}],
            }
            for i in range(4)
        ],
    )
    result = wa.get_templates(pagination=types.Pagination(limit=3))
    assert result.total_count == 8 and result.message_template_limit == 250
    names = [t.name for t in result]
    assert result.has_next and result._next_url.startswith("http://testserver/simulator/graph/v23.0/")
    while result.has_next:
        result = next_page(wa, result)
        names += [t.name for t in result]
    assert sorted(names) == sorted(
        ["hello_world", "autumn_promo", "order_update", "login_code"] + [f"note_{i}" for i in range(4)]
    )
    approved = wa.get_templates(statuses=[TemplateStatus.APPROVED], name="autumn")
    assert [t.name for t in approved] == ["autumn_promo"]


def test_pywa_raises_its_typed_errors(wa, account):
    with pytest.raises(errors.TemplateNotExists) as missing:
        wa.send_template(to=CUSTOMER, name="nope", language=TemplateLanguage.ENGLISH_US, params=[])
    assert missing.value.code == 132001 and missing.value.fbtrace_id
    with pytest.raises(errors.TemplateParamCountMismatch):
        wa.send_template(
            to=CUSTOMER,
            name="order_update",
            language=TemplateLanguage.ENGLISH_US,
            params=[BodyText.params("only one")],
        )
    account.throughput_mps = 1
    account.save()
    wa.send_template(
        to=CUSTOMER, name="order_update", language=TemplateLanguage.ENGLISH_US, params=order_params()
    )
    with pytest.raises(errors.ThrottlingError) as throttled:
        wa.send_template(
            to=CUSTOMER, name="order_update", language=TemplateLanguage.ENGLISH_US, params=order_params()
        )
    assert throttled.value.code == 130429
    bad = pywa_client()
    bad.api._session.headers["Authorization"] = "Bearer wrong"
    with pytest.raises(errors.WhatsAppError) as denied:
        bad.send_message(to=CUSTOMER, text="x")
    assert denied.value.code == 190 and denied.value.status_code == 401


def test_pywa_parses_the_status_webhooks(wa):
    sent = wa.send_template(
        to=CUSTOMER,
        name="order_update",
        language=TemplateLanguage.ENGLISH_US,
        params=order_params(),
        tracker="m:tpl-2",
    )
    updates = parse(wa, captured_webhooks())
    assert [u.status.value for u in updates] == ["sent", "delivered", "read"]
    for update in updates:
        assert isinstance(update, types.MessageStatus)
        assert update.id == sent.id and update.tracker == "m:tpl-2"
        assert update.from_user.wa_id == CUSTOMER
        assert update.pricing.category.value == "utility" and update.pricing.billable
    assert updates[0].conversation.expiration is not None


def test_pywa_parses_a_failed_status_with_its_error(wa):
    wa.send_message(to=CUSTOMER, text="outside the window")
    (update,) = parse(wa, captured_webhooks())
    assert update.status.value == "failed"
    assert update.error.code == 131047 and isinstance(update.error, errors.ReEngagementMessage)


def test_pywa_parses_inbound_messages_of_the_handset(wa, account):
    sent = wa.send_template(
        to=CUSTOMER,
        name="autumn_promo",
        language=TemplateLanguage.ENGLISH_US,
        params=[BodyText.params("Ana", "AUTUMN20")],
    )
    captured_webhooks()
    base = "http://testserver"
    services.send_inbound(account=account, phone=CUSTOMER, kind="text", text="PROMO", callback_base=base)
    services.send_inbound(
        account=account,
        phone=CUSTOMER,
        kind="button",
        text="Stop promotions",
        payload="Stop promotions",
        context_id=sent.id,
        callback_base=base,
    )
    services.send_inbound(
        account=account,
        phone=CUSTOMER,
        kind="list_reply",
        payload="express",
        title="Express",
        context_id=sent.id,
        callback_base=base,
    )
    services.send_inbound(account=account, phone=CUSTOMER, kind="image", text="receipt", callback_base=base)
    services.send_inbound(account=account, phone=CUSTOMER, kind="location", callback_base=base)
    services.set_marketing_preference(account=account, phone=CUSTOMER, stop=True, callback_base=base)
    updates = parse(wa, captured_webhooks())
    text, button, selection, image, location, preference = updates
    assert isinstance(text, types.Message) and text.text == "PROMO"
    assert text.from_user.wa_id == CUSTOMER and text.from_user.name
    assert isinstance(button, types.CallbackButton) and button.data == "Stop promotions"
    assert button.reply_to_message.id == sent.id
    assert isinstance(selection, types.CallbackSelection) and selection.data == "express"
    assert image.type.value == "image" and image.caption == "receipt"
    assert location.location.latitude == pytest.approx(52.516275)
    assert isinstance(preference, types.UserMarketingPreferences) and preference.value.value == "stop"


def test_pywa_parses_the_template_review_webhook(wa, account):
    created = wa.api.create_template(
        waba_id=WABA,
        template={
            "name": "table_ready",
            "language": "en_US",
            "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Your table is ready."}],
        },
    )
    assert created["status"] == "APPROVED"  # SIMULATOR_APPROVAL_SECONDS = 0
    (update,) = parse(wa, captured_webhooks())
    assert isinstance(update, types.TemplateStatusUpdate)
    assert update.new_status.value == "APPROVED" and update.template_name == "table_ready"


@pytest.mark.django_db(transaction=True)
def test_pywa_over_real_http(live_server, settings, tmp_path):
    settings.SIMULATOR_STATE_DIR = str(tmp_path / "live")
    account = WhatsAppAccount.objects.create(
        project=ProjectFactory(),
        waba_id=WABA,
        phone_number_id=NUMBER_ID,
        display_phone_number="15550001234",
        access_token=TOKEN,
        app_secret=SECRET,
    )
    services.seed_templates(waba_id=account.waba_id)
    wa = pywa_client(base=live_server.url, transport=httpx.HTTPTransport())
    sent = wa.send_template(
        to=CUSTOMER, name="order_update", language=TemplateLanguage.ENGLISH_US, params=order_params()
    )
    assert sent.id.startswith("wamid.")
    result = wa.get_templates(pagination=types.Pagination(limit=1))
    assert result.has_next and len(list(next_page(wa, result))) == 1
