"""The import's phone shortcut must give exactly what normalize_phone gives, errors included."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from subscribers.errors import InvalidInput
from subscribers.imports import fast_phone
from subscribers.phones import normalize_phone

TYPES = [
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER,
    PhoneNumberType.UAN,
    PhoneNumberType.VOICEMAIL,
]


def outcome(fn, text: str, country: str) -> str:
    try:
        return fn(text, country)
    except InvalidInput as exc:
        return f"error: {exc.message}"


def example_numbers() -> list[str]:
    """Every example number the library ships, in E.164, plus near misses of each."""
    rng = random.Random(3)
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for type_ in TYPES:
            number = phonenumbers.example_number_for_type(region, type_)
            if number is None:
                continue
            e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
            out.append(e164)
            out.append(e164[:-1])  # one digit short
            out.append(e164 + str(rng.randint(0, 9)))  # one digit long
            out.append(e164[:-3] + f"{rng.randint(0, 999):03d}")
    return out


def random_numbers(n: int) -> list[str]:
    rng = random.Random(11)
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    out = []
    for _ in range(n):
        cc = str(rng.choice(codes))
        length = rng.randint(6, 14)
        first = rng.choice("0123456789")
        out.append("+" + cc + first + "".join(rng.choice("0123456789") for _ in range(length - 1)))
    return out


def test_shortcut_agrees_with_the_library_on_every_example_number():
    numbers = example_numbers()
    assert len(numbers) > 2000
    differences = [
        (n, outcome(fast_phone, n, "DE"), outcome(normalize_phone, n, "DE"))
        for n in numbers
        if outcome(fast_phone, n, "DE") != outcome(normalize_phone, n, "DE")
    ]
    assert differences == []


def test_shortcut_agrees_with_the_library_on_random_numbers():
    numbers = random_numbers(20_000)
    differences = [n for n in numbers if outcome(fast_phone, n, "US") != outcome(normalize_phone, n, "US")]
    assert differences == []
    valid = sum(1 for n in numbers if not outcome(fast_phone, n, "US").startswith("error"))
    assert valid > 500  # the sample exercises the valid path too, not only errors


@pytest.mark.parametrize(
    "text",
    [
        "0151 12345678",
        "00491511234567",
        "+49 151 1234 5678",
        "+4901511234567",
        "+39 06 6982 0000",
        "+390669820000",
    ],
)
def test_other_spellings_take_the_full_path(text):
    assert outcome(fast_phone, text, "DE") == outcome(normalize_phone, text, "DE")


@pytest.mark.parametrize("region", ["DE", "FR", "GB", "US", "BR", "IN", "NG", "ID", "ES", "TR"])
def test_valid_mobile_numbers_do_not_need_the_slow_path(monkeypatch, region):
    from subscribers.imports import phone_numbers

    slow = []
    monkeypatch.setattr(phone_numbers, "normalize_phone", lambda *a, **k: slow.append(a) or a[0])
    number = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    assert fast_phone(e164, "DE") == e164
    assert slow == []
