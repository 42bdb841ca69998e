"""The import's phone shortcut for numbers already written as +<digits>.

Not libphonenumber's public API, on purpose: ``is_valid_number`` is restated over the
library's own metadata (``_length_checks``, ``_phone_rules``), because the public API is too
slow for the 60-second million-row goal. Measured with ``bench/import_bench.py --phones
200000`` (German mobiles, CPU time; docs/benchmarks-import.md): this shortcut 3.1 µs per
number, ``PhoneNumber`` + ``is_valid_number`` (the public API's cheapest route) 15.5 µs,
``normalize_phone`` (parse, check, format) 40 µs. The reader thread validates every row on
one core and is the pipeline's slower side, so the public API would add 12-37 s to a
million-row import that takes about 50 s. Every number the shortcut does not accept takes
the public path, and tests/subscribers/test_import_phones.py checks that both agree on every
example number the library ships and on 20,000 random ones (so a library upgrade that
changes the rules fails there, not in production).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

import phonenumbers

from ..phones import normalize_phone

_E164_DIGITS = re.compile(r"\+([1-9]\d{6,16})")

# Every number type; a number is valid when the general pattern and any type pattern match.
_NUMBER_TYPES = (
    "mobile",
    "fixed_line",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)

_MAX_NSN = 17


def _length_checks(metadata) -> dict[int, tuple[re.Pattern, re.Pattern]]:
    """For each national number length: (general pattern, any type's pattern as one regex).

    Restates the library's ``_number_type_helper(...) != UNKNOWN``: the general description
    matches, and so does at least one type's; a description with possible lengths applies only
    to those lengths. One alternation instead of up to ten calls is what makes it fast.
    """
    general = metadata.general_desc
    if general is None or not general.national_number_pattern:
        return {}
    out = {}
    for length in range(1, _MAX_NSN + 1):
        if general.possible_length and length not in general.possible_length:
            continue
        patterns = []
        for name in _NUMBER_TYPES:
            desc = getattr(metadata, name)
            if desc is None or not desc.national_number_pattern:
                continue
            if desc.possible_length and length not in desc.possible_length:
                continue
            patterns.append(f"(?:{desc.national_number_pattern})")
        if patterns:
            out[length] = (re.compile(general.national_number_pattern), re.compile("|".join(patterns)))
    return out


@cache
def _phone_rules(cc: int) -> tuple[re.Pattern | None, Callable[[str], bool]] | None:
    """(national prefix pattern, validity check) for a calling code; None: use the full path.

    The validity check is ``phonenumbers.is_valid_number`` restated over the library's own
    metadata: pick the region as ``region_code_for_number`` does, then check the number against
    that region's patterns (see _length_checks).
    """
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if not regions or phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY in regions:
        return None
    main = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
        cc, phonenumbers.region_code_for_country_code(cc)
    )
    if main is None:
        return None
    rules = []
    for region in regions:
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            continue
        leading = re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None
        rules.append((leading, _length_checks(metadata)))
    single = len(regions) == 1

    def valid(nsn: str) -> bool:
        for leading, checks in rules:
            check = checks.get(len(nsn))
            fits = (
                check is not None
                and check[0].fullmatch(nsn) is not None
                and check[1].fullmatch(nsn) is not None
            )
            if single:
                return fits
            if leading is not None:
                if leading.match(nsn):
                    return fits
            elif fits:
                return True
        return False

    prefix = main.national_prefix_for_parsing
    return (re.compile(prefix) if prefix else None), valid


def fast_phone(text: str, default_country: str) -> str:
    """``normalize_phone``, with a shortcut for numbers already written as +<digits>.

    ``phonenumbers`` spends ~40 µs per number (see the module's docstring). For "+" and
    digits only, parsing is splitting off the calling code, unless the national part starts
    with 0 or matches the country's national prefix (then parse may strip digits): those, and
    every number the shortcut does not find valid, take the full path, which words the error.
    tests/subscribers/test_import_phones.py checks that both paths agree.
    """
    match = _E164_DIGITS.fullmatch(text)
    if match is not None:
        digits = match.group(1)
        for size in (1, 2, 3):
            cc = int(digits[:size])
            if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                national = digits[size:]
                rules = _phone_rules(cc)
                if (
                    rules is not None
                    and national[0] != "0"
                    and (rules[0] is None or rules[0].match(national) is None)
                    and rules[1](national)
                ):
                    return text
                break
    return normalize_phone(text, default_country)
