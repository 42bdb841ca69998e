"""Template lint rules (what Meta rejects), Meta's create payload, and reading parameters back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from campaigns import policy
from whatsapp import templates_lint as lint
from whatsapp.models import MessageTemplate
from whatsapp.templates_lint import Button, Draft


def marketing(**kw) -> Draft:
    base = Draft(
        name="spring_sale",
        language="en_US",
        category="MARKETING",
        body="Hi {{1}}, our spring sale starts on {{2}} in every store.",
        examples={"1": "Mark", "2": "Monday"},
    )
    return replace(base, **kw)


def authentication(**kw) -> Draft:
    base = Draft(name="login_code", language="en_US", category="AUTHENTICATION", otp_type="COPY_CODE")
    return replace(base, **kw)


def found(draft: Draft) -> set[tuple[str, str]]:
    return {(p.field, p.severity) for p in lint.lint(draft)}


def messages(draft: Draft, field: str) -> list[str]:
    return [p.message for p in lint.lint(draft) if p.field == field]


def test_a_good_marketing_draft_has_no_problems():
    assert lint.lint(marketing()) == []


def test_a_good_authentication_draft_has_no_problems():
    assert lint.lint(authentication(code_expiration_minutes=10, add_security_recommendation=True)) == []


ERROR_CASES = [
    # name rules
    ("no name", marketing(name=""), "name", "Give the template a name"),
    ("uppercase name", marketing(name="Spring_Sale"), "name", "lowercase letters, digits and underscores"),
    ("name with space", marketing(name="spring sale"), "name", "lowercase letters"),
    ("name too long", marketing(name="a" * 513), "name", "Meta allows 512"),
    ("bad language", marketing(language="english"), "language", "language code"),
    ("no category", marketing(category=""), "category", "Choose marketing"),
    # numbering
    ("gap in numbers",
     marketing(body="Hi {{1}}, see you on {{3}} at the shop.", examples={"1": "a", "3": "b"}),
     "body", "{{2}} is missing"),
    ("starts at 2", marketing(body="Hi {{2}}, see you soon at the shop.", examples={"2": "a"}), "body",
     "{{1}} is missing"),
    ("starts at 0", marketing(body="Hi {{0}}, see you soon at the shop.", examples={"0": "a"}), "body",
     "numbering starts at {{1}}"),
    ("duplicate", marketing(body="Hi {{1}}, yes you {{1}}, come to the shop.", examples={"1": "a"}), "body",
     "appears more than once"),
    ("mixed", marketing(body="Hi {{1}}, your order {{order_id}} has shipped.", examples={"1": "a"}), "body",
     "mixes numbered"),
    ("named in positional", marketing(body="Hi {{first_name}}, come to the shop."), "body",
     "switch the format to named"),
    ("positional in named", marketing(parameter_format="NAMED"), "body", "switch the format to numbered"),
    ("uppercase named", marketing(parameter_format="NAMED", body="Hi {{First_Name}}, come to the shop."),
     "body", "is not a parameter"),
    ("spaces inside", marketing(body="Hi {{ 1 }}, come to the shop today.", examples={"1": "a"}), "body",
     "without spaces"),
    ("unmatched", marketing(body="Hi {{1}, come to the shop today."), "body", "unmatched braces"),
    # samples
    ("missing sample", marketing(examples={"1": "Mark"}), "example:2", "sample value for {{2}}"),
    ("blank sample", marketing(examples={"1": "Mark", "2": "  "}), "example:2", "sample value"),
    # placement
    ("starts with parameter", marketing(body="{{1}}, our spring sale starts today in every store.",
                                        examples={"1": "a"}), "body", "may not start with a parameter"),
    ("ends with parameter", marketing(body="Our spring sale starts today, dear {{1}}", examples={"1": "a"}),
     "body", "may not end with a parameter"),
    ("adjacent", marketing(body="Hi {{1}} {{2}}, our spring sale starts today.",
                           examples={"1": "a", "2": "b"}), "body", "stand next to each other"),
    # lengths
    ("body too long", marketing(body="Hello there, " + "x" * 1020, examples={}), "body", "Meta allows 1024"),
    ("no body", marketing(body="", examples={}), "body", "Write the message body"),
    ("header too long", marketing(header_format="TEXT", header_text="H" * 61), "header_text",
     "Meta allows 60"),
    ("footer too long", marketing(footer="F" * 61), "footer", "Meta allows 60"),
    ("footer parameter", marketing(footer="Bye {{1}}"), "footer", "cannot have parameters"),
    # header
    ("two header parameters", marketing(header_format="TEXT", header_text="{{1}} and {{2}}",
                                        header_example="x"), "header_text", "one parameter at most"),
    ("header sample missing", marketing(header_format="TEXT", header_text="Sale for {{1}}"),
     "header_example", "sample value for {{1}}"),
    ("header with line break", marketing(header_format="TEXT", header_text="Big\nsale"), "header_text",
     "one line"),
    ("media without sample", marketing(header_format="IMAGE"), "header_media", "sample image"),
    ("media sample with spaces", marketing(header_format="VIDEO", header_media="my video.mp4"),
     "header_media", "upload handle"),
    # buttons
    ("button label too long", marketing(buttons=[Button("QUICK_REPLY", text="x" * 26)]), "button-0-text",
     "Meta allows 25"),
    ("button without label", marketing(buttons=[Button("QUICK_REPLY", text="")]), "button-0-text",
     "Write the button's label"),
    ("url too long", marketing(buttons=[Button("URL", text="Go", url="https://x.test/" + "a" * 2000)]),
     "button-0-url", "Meta allows 2000"),
    ("url not http", marketing(buttons=[Button("URL", text="Go", url="shop.example")]), "button-0-url",
     "starts with https://"),
    ("url parameter not at end", marketing(buttons=[Button("URL", text="Go", url="https://x.test/{{1}}/a",
                                                           example="a")]), "button-0-url", "at the very end"),
    ("url parameter is 2", marketing(buttons=[Button("URL", text="Go", url="https://x.test/{{2}}",
                                                     example="a")]), "button-0-url", "{{1}}"),
    ("url sample missing", marketing(buttons=[Button("URL", text="Go", url="https://x.test/{{1}}")]),
     "button-0-example", "sample for the end of the address"),
    ("bad phone", marketing(buttons=[Button("PHONE_NUMBER", text="Call", phone_number="call me")]),
     "button-0-phone_number", "country code"),
    ("copy code without sample", marketing(buttons=[Button("COPY_CODE")]), "button-0-example",
     "sample coupon code"),
    ("coupon too long", marketing(buttons=[Button("COPY_CODE", example="A" * 16)]), "button-0-example",
     "at most 15"),
    ("copy code in utility", marketing(category="UTILITY", buttons=[Button("COPY_CODE", example="SAVE")]),
     "button-0-type", "only for marketing"),
    ("eleven buttons", marketing(buttons=[Button("QUICK_REPLY", text=f"B{i}") for i in range(11)]), "buttons",
     "Meta allows 10"),
    ("three links", marketing(buttons=[Button("URL", text="Go", url="https://x.test/")] * 3), "buttons",
     "3 link buttons; Meta allows 2"),
    ("two calls", marketing(buttons=[Button("PHONE_NUMBER", text="Call", phone_number="+4930123456")] * 2),
     "buttons", "call buttons; Meta allows 1"),
    ("two copy codes", marketing(buttons=[Button("COPY_CODE", example="A1")] * 2), "buttons",
     "copy-code buttons; Meta allows 1"),
    ("quick replies split", marketing(buttons=[Button("QUICK_REPLY", text="A"),
                                               Button("URL", text="Go", url="https://x.test/"),
                                               Button("QUICK_REPLY", text="B")]), "buttons", "together"),
    # authentication
    ("auth with header", authentication(header_format="IMAGE"), "header_format", "no header"),
    ("auth with body", authentication(body="Your code is {{1}}, thanks."), "body", "Meta writes the body"),
    ("auth with footer", authentication(footer="Thanks"), "footer", "no footer text"),
    ("auth with buttons", authentication(buttons=[Button("QUICK_REPLY", text="Hi")]), "buttons",
     "exactly one button"),
    ("auth without otp", authentication(otp_type=""), "otp_type", "copy code or one-tap"),
    ("auth emoji", authentication(otp_button_text="Copy 🔑"), "otp_button_text", "emoji"),
    ("auth link", authentication(otp_button_text="www.x.test"), "otp_button_text", "links"),
    ("one tap without package", authentication(otp_type="ONE_TAP", signature_hash="K8a/AINcGX7"),
     "package_name", "package name"),
    ("one tap bad package",
     authentication(otp_type="ONE_TAP", package_name="shop", signature_hash="K8a/AINcGX7"),
     "package_name", "com.example.shop"),
    ("one tap bad hash", authentication(otp_type="ONE_TAP", package_name="com.x.y", signature_hash="short"),
     "signature_hash", "11 characters"),
    ("expiry too long", authentication(code_expiration_minutes=91), "code_expiration_minutes", "1 to 90"),
    ("expiry zero", authentication(code_expiration_minutes=0), "code_expiration_minutes", "1 to 90"),
    ("expiry on marketing", marketing(code_expiration_minutes=5), "code_expiration_minutes",
     "Only authentication"),
    ("otp on marketing", marketing(otp_type="COPY_CODE"), "otp_type", "only for authentication"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("draft", "field", "words"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_error_rules(draft, field, words):
    problems = [p for p in lint.lint(draft) if p.field == field and p.is_error]
    assert problems, f"no error on {field}: {lint.lint(draft)}"
    assert any(words in p.message for p in problems), [p.message for p in problems]


WARNING_CASES = [
    ("promotional utility",
     marketing(category="UTILITY", body="Hi {{1}}, get 20% off with this coupon on {{2}}."),
     "category", "sounds promotional"),
    ("more parameters than words", marketing(body="Hi {{1}}, {{2}}, {{3}} and {{4}}!",
                                             examples={"1": "a", "2": "b", "3": "c", "4": "d"}),
     "body", "More parameters than fixed words"),
    ("empty lines", marketing(body="Hi {{1}},\n\n\n\nsale on {{2}} in every store.",), "body", "empty line"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("draft", "field", "words"), [c[1:] for c in WARNING_CASES], ids=[c[0] for c in WARNING_CASES]
)
def test_warning_rules_do_not_block(draft, field, words):
    problems = [p for p in lint.lint(draft) if p.field == field]
    assert any(words in p.message and p.severity == lint.WARNING for p in problems), problems
    assert lint.errors(lint.lint(draft)) == []


def test_utility_with_plain_wording_gets_no_warning():
    draft = marketing(category="UTILITY", body="Hi {{1}}, your order ships on {{2}} from our store.")
    assert lint.lint(draft) == []


def test_named_parameters_are_checked_by_name_not_number():
    draft = marketing(
        parameter_format="NAMED",
        body="Hi {{first_name}}, your order {{order_id}} has shipped today.",
        examples={"first_name": "Jess", "order_id": "A-1"},
    )
    assert lint.lint(draft) == []
    assert messages(replace(draft, examples={"first_name": "Jess"}), "example:order_id") == [
        "Give a sample value for {{order_id}}."
    ]


def test_quick_replies_grouped_after_other_buttons_are_fine():
    buttons = [
        Button("URL", text="Shop", url="https://x.test/"),
        Button("PHONE_NUMBER", text="Call", phone_number="+49 30 1234567"),
        Button("QUICK_REPLY", text="Yes"),
        Button("QUICK_REPLY", text="No"),
    ]
    assert lint.lint(marketing(buttons=buttons)) == []


def test_every_problem_names_a_field_and_a_sentence():
    draft = Draft(body="{{1}} {{1}}", buttons=[Button("URL", url="ftp://x")], footer="{{x}}")
    problems = lint.lint(draft)
    assert len(problems) >= 6
    assert all(p.field and p.message.endswith((".", "!")) for p in problems), problems


# --- payload ----------------------------------------------------------------------------------------


def test_positional_payload_orders_samples_by_number():
    draft = marketing(
        body="Visit us on {{2}}, dear {{1}}, at the shop.", examples={"1": "Mark", "2": "Monday"}
    )
    payload = lint.build_payload(draft)
    assert payload["components"][0]["example"] == {"body_text": [["Mark", "Monday"]]}


def test_media_header_payload_carries_the_handle():
    payload = lint.build_payload(marketing(header_format="DOCUMENT", header_media="4::aGFuZGxl"))
    assert payload["components"][0] == {
        "type": "HEADER",
        "format": "DOCUMENT",
        "example": {"header_handle": ["4::aGFuZGxl"]},
    }


def test_one_tap_payload_lists_the_app():
    payload = lint.build_payload(
        authentication(
            otp_type="ONE_TAP",
            otp_button_text="Copy code",
            autofill_text="Autofill",
            package_name="com.example.shop",
            signature_hash="K8a/AINcGX7",
        )
    )
    assert payload["components"][-1] == {
        "type": "BUTTONS",
        "buttons": [
            {
                "type": "OTP",
                "otp_type": "ONE_TAP",
                "text": "Copy code",
                "autofill_text": "Autofill",
                "supported_apps": [{"package_name": "com.example.shop", "signature_hash": "K8a/AINcGX7"}],
            }
        ],
    }


def test_stored_components_of_authentication_carry_metas_text():
    payload = lint.build_payload(authentication(add_security_recommendation=True, code_expiration_minutes=5))
    body, footer, _ = lint.stored_components(payload)
    assert body["text"] == "*{{1}}* is your verification code. For your security, do not share this code."
    assert footer["text"] == "This code expires in 5 minutes."
    # The payload itself is untouched: Meta writes that text.
    assert "text" not in payload["components"][0]


# --- reading components back ---------------------------------------------------------------------


def test_parameters_agree_with_the_sending_policy(db):
    components = [
        {"type": "HEADER", "format": "TEXT", "text": "Sale for {{1}}", "example": {"header_text": ["you"]}},
        {"type": "BODY", "text": "Hi {{1}}, use {{2}} today.", "example": {"body_text": [["Mark", "SAVE"]]}},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "QUICK_REPLY", "text": "Stop"},
                {
                    "type": "URL",
                    "text": "Go",
                    "url": "https://x.test/{{1}}",
                    "example": ["https://x.test/a1"],
                },
            ],
        },
    ]
    template = MessageTemplate(components=components, category="MARKETING", parameter_format="POSITIONAL")
    found = lint.template_parameters(components, category="MARKETING", parameter_format="POSITIONAL")
    by_key: dict[str, list[str]] = {}
    for p in found:
        by_key.setdefault(p.component, []).append(p.name)
    assert by_key == policy.template_parameters(template)
    assert [(p.label, p.example) for p in found] == [
        ("Header", "you"),
        ("Body", "Mark"),
        ("Body", "SAVE"),
        ("Button 2 (link)", "a1"),
    ]


def test_authentication_parameters_agree_with_the_sending_policy(db):
    payload = lint.build_payload(authentication())
    components = lint.stored_components(payload)
    template = MessageTemplate(
        components=components, category="AUTHENTICATION", parameter_format="POSITIONAL"
    )
    found = lint.template_parameters(components, category="AUTHENTICATION", parameter_format="POSITIONAL")
    assert {p.component: [p.name] for p in found} == policy.template_parameters(template)
