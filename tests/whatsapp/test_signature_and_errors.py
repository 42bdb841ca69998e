from __future__ import annotations

import json

import pytest

from whatsapp import signature
from whatsapp.errors import (
    AccountError,
    ErrorKind,
    GraphError,
    PermanentError,
    TransientError,
    classify,
    typed,
)


def test_reference_vector():
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    expected = "sha256=99c9e583df383a49a6a002e426eed3bcf111d832dc72b4b256ae2f00fe909922"
    assert signature.sign(body, "test_secret") == expected
    assert signature.is_valid(body, expected, "test_secret")


@pytest.mark.parametrize(
    "header",
    [
        "",
        "sha256=",
        "sha1=abc",
        "sha256=" + "0" * 64,
        "99c9e583df383a49a6a002e426eed3bcf111d832dc72b4b256ae2f00fe909922",
    ],
)
def test_wrong_or_missing_signatures_fail(header):
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    assert not signature.is_valid(body, header, "test_secret")


def test_reencoded_body_fails():
    # Meta escapes non-ASCII; re-serializing the parsed dict changes the bytes and must not verify.
    original = b'{"text":"Gr\\u00fc\\u00dfe \\/ <b>"}'
    header = signature.sign(original, "s")
    reencoded = json.dumps(json.loads(original), ensure_ascii=False).encode()
    assert signature.is_valid(original, header, "s")
    assert not signature.is_valid(reencoded, header, "s")


# Reference section 5.3, with the policy of 5.4.
CODES = {
    ErrorKind.TRANSIENT: [1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057, 133004],
    ErrorKind.RETRY_LATER: [131049, 133016],
    ErrorKind.PERMANENT: [
        33, 100, 131008, 131009, 131021, 131026, 131047, 131050, 130472, 131051, 131052, 131053,
        131037, 131062, 131063, 132000, 132005, 132007, 132008, 132012, 135000, 137000,
    ],
    ErrorKind.ACCOUNT: [
        0, 190, 3, 10, 200, 250, 299, 368, 131031, 130497, 131042, 131045, 131048, 131064,
        132001, 132015, 132016, 133010,
    ],
}  # fmt: skip


@pytest.mark.parametrize(("kind", "code"), [(k, c) for k, codes in CODES.items() for c in codes])
def test_every_code_is_classified(kind, code):
    assert classify(code) == kind


def test_network_errors_are_transient():
    assert classify(None) == ErrorKind.TRANSIENT


def test_sync_error_shape_is_parsed():
    body = {
        "error": {
            "message": "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "type": "OAuthException",
            "code": 131056,
            "error_data": {"messaging_product": "whatsapp", "details": "Too many messages to this user."},
            "error_subcode": 2494055,
            "fbtrace_id": "A4O5a8RAgePwbcGSu",
        }
    }
    error = typed(GraphError.from_response(429, body))
    assert isinstance(error, TransientError)
    assert (error.code, error.trace_id, error.details) == (
        131056,
        "A4O5a8RAgePwbcGSu",
        "Too many messages to this user.",
    )
    assert "pair rate limit" in str(error)


@pytest.mark.parametrize(
    ("code", "cls"), [(190, AccountError), (132000, PermanentError), (130429, TransientError)]
)
def test_typed_exception_classes(code, cls):
    assert isinstance(typed(GraphError(code, "t")), cls)


def test_async_error_shape_is_parsed():
    error = GraphError.from_webhook(
        {"code": 131049, "title": "This message was not delivered to maintain healthy ecosystem engagement.",
         "error_data": {"details": "In order to maintain healthy ecosystem engagement ..."}}
    )  # fmt: skip
    assert error.kind == ErrorKind.RETRY_LATER
    assert error.explanation.startswith("Meta did not deliver this marketing message")
