"""gateway.core.numbers gives exactly what the plain phonenumbers calls give, on both
of its paths: the full one (phonenumbers.parse) and the fast one for numbers
written "+<digits>" (its own parse of the digits over phonenumbers' data)."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import carrier, timezone

from gateway.core import numbers


def reference(raw: str, region: str) -> tuple[str, str, str] | None:
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    zones = timezone.time_zones_for_number(parsed)
    return e164, carrier.name_for_number(parsed, "en"), zones[0] if zones else ""


REGIONS = ["CN", "GB", "US", "DE", "IN", "BR", "MX", "ID", "VN", "AR", "FR", "JP", "IM", "SG"]
CODES = ["86", "44", "1", "49", "91", "55", "52", "62", "84", "54", "33", "81", "800", "882"]
ALL_CODES = sorted(str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
DIGITS = "0123456789"


def fast_agrees(raw: str, regions: tuple[str, ...] = ("CN",)) -> bool:
    """The fast path's answer for raw, which must take it, is the full path's
    and the plain calls' for any default region. Returns whether it is valid."""
    assert numbers._PLUS_DIGITS.fullmatch(raw), raw
    fast = numbers._lookup_e164(raw)
    assert fast is not numbers._NOT_FAST, raw
    for region in regions:
        assert fast == numbers._lookup_full(raw, region) == reference(raw, region), (raw, region)
    return fast is not None


def plus_digits(rng: random.Random, code: str, rest_lengths: range) -> list[str]:
    """Numbers "+<code><random digits>" whose digit count the fast path takes."""
    out = []
    for n in rest_lengths:
        if 3 <= len(code) + n <= 20:
            out.append(f"+{code}" + "".join(rng.choice(DIGITS) for _ in range(n)))
    return out


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(REGIONS),
    st.one_of(
        st.builds(lambda c, d: f"+{c}{d}", st.sampled_from(CODES),
                  st.text("0123456789", min_size=4, max_size=13)),
        st.text("0123456789", min_size=4, max_size=13),
        st.builds(lambda d: f"1{d}", st.text("0123456789", min_size=10, max_size=10)),
    ),
)
def test_the_fast_lookup_matches_plain_phonenumbers(region: str, raw: str) -> None:
    assert numbers._lookup.__wrapped__(raw, region) == reference(raw, region)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([*REGIONS, "001", "ZZ"]),
    st.sampled_from(ALL_CODES),
    st.text(DIGITS, min_size=4, max_size=17),
)
def test_plus_digits_after_any_country_code_match_plain_phonenumbers(
    region: str, code: str, rest: str
) -> None:
    raw = f"+{code}{rest}"
    assert numbers._lookup.__wrapped__(raw, region) == reference(raw, region)
    if numbers._PLUS_DIGITS.fullmatch(raw):
        # A known country code: the answer cannot depend on the region, so the
        # fast path answers instead of handing over to phonenumbers.parse.
        assert numbers._lookup_e164(raw) == reference(raw, region)


def test_random_digits_after_every_country_code() -> None:
    rng = random.Random(20261123)
    valid = 0
    for code in ALL_CODES:
        for raw in plus_digits(rng, code, range(4, 18)):
            valid += fast_agrees(raw, ("CN", "US"))
    assert valid > 100  # not only invalid ones


def test_a_national_prefix_written_after_the_plus() -> None:
    """parse() strips a national prefix even after "+": "+7 8 ...", "+44 0 ...",
    "+1 1 ...", Argentina's "9"/"15" rewriting, Brazil's carrier codes, Japan's
    "0"... The fast path hands these to phonenumbers' own stripping."""
    rng = random.Random(7)
    prefixes = ("0", "00", "1", "8", "9", "90", "15", "10", "11", "179", "180020", "0549")
    changed = 0
    for code in ALL_CODES:
        for prefix in prefixes:
            for raw in plus_digits(rng, code + prefix, range(3, 13, 3)):
                if fast_agrees(raw, ("CN",)):
                    changed += numbers._lookup_e164(raw)[0] != raw  # type: ignore[index]
    assert changed > 50  # stripping did happen, and matched


def test_example_numbers_of_every_region_and_type() -> None:
    rng = random.Random(3)
    seen = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for ntype in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, ntype)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            if not numbers._PLUS_DIGITS.fullmatch(e164):
                continue
            assert fast_agrees(e164, (region,)), (region, ntype, e164)
            seen += 1
            # Neighbours of a real number: mostly valid, same prefixes.
            for _ in range(2):
                k = rng.randint(1, 4)
                fast_agrees(e164[:-k] + "".join(rng.choice(DIGITS) for _ in range(k)))
    assert seen > 1000


@pytest.mark.parametrize("code", ["1", "7", "44", "39", "47", "61", "212", "262", "590", "599"])
def test_codes_shared_by_several_regions(code: str) -> None:
    """+1 (US, CA, the Caribbean), +7 (RU, KZ), +44 (GB, GG, IM, JE)...: the
    region is picked as phonenumbers picks it, then its own patterns decide."""
    rng = random.Random(int(code))
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[int(code)]
    for region in regions:
        for ntype in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, ntype)
            if example is None:
                continue
            nsn = phonenumbers.national_significant_number(example)
            fast_agrees(f"+{code}{nsn}", (region, "CN"))
            # Same leading digits (area code, mobile range), other subscriber digits.
            for _ in range(10):
                keep = rng.randint(3, max(3, len(nsn) - 1))
                tail = "".join(rng.choice(DIGITS) for _ in range(len(nsn) - keep))
                fast_agrees(f"+{code}{nsn[:keep]}{tail}", (region,))


TABLE = [
    ("+8613812345678", ("+8613812345678", "China Mobile", "Asia/Shanghai")),
    ("+14155550123", ("+14155550123", "", "America/Los_Angeles")),
    ("+16135550123", ("+16135550123", "", "America/Toronto")),
    ("+18092345678", ("+18092345678", "Claro", "America/Santo_Domingo")),
    ("+77011234567", ("+77011234567", "Kcell/Activ", "Asia/Almaty")),
    ("+73432123456", ("+73432123456", "", "Asia/Yekaterinburg")),
    ("+447624123456", ("+447624123456", "Manx Telecom", "Europe/Guernsey")),
    # Italy keeps its leading zero in E.164 (italian_leading_zero).
    ("+390612345678", ("+390612345678", "", "Europe/Rome")),
    ("+393123456789", ("+393123456789", "", "Europe/Rome")),
    # A national prefix written after the country code is dropped.
    ("+114155550123", ("+14155550123", "", "America/Los_Angeles")),
    ("+5491123456789", ("+5491123456789", "", "America/Buenos_Aires")),
    # Non-geographical: the country's zone.
    ("+80012345678", ("+80012345678", "", "Etc/Unknown")),
    ("+3906698", None),
    ("+87012345678", None),
    ("+8613812345", None),
]


@pytest.mark.parametrize(("raw", "answer"), TABLE)
def test_known_answers(raw: str, answer: tuple[str, str, str] | None) -> None:
    assert numbers._lookup_e164(raw) == answer
    assert fast_agrees(raw) == (answer is not None)


def test_a_plus_without_a_known_country_code_takes_the_full_path() -> None:
    # parse() then reads the digits with the default region's international
    # prefix: "+00 86..." dialled from China is a Chinese number.
    for raw in ("+008613812345678", "+08613812345678", "+99912345678"):
        assert numbers._lookup_e164(raw) is numbers._NOT_FAST
    assert numbers.normalize("+008613812345678", "CN")[0] == "+8613812345678"
    with pytest.raises(numbers.InvalidNumber):
        numbers.normalize("+008613812345678", "US")
    assert numbers._lookup.__wrapped__("+99912345678", "CN") == reference("+99912345678", "CN")


def test_the_prefix_memos_are_exact_when_cleared_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """Carrier and zone memos keyed by E.164 prefix give what a cold lookup
    gives, for numbers that share prefixes (same operator range, same area),
    whether an entry was made by another number or the memo was just cleared."""
    rng = random.Random(11)
    raws = []
    for region in ("CN", "US", "GB", "BR", "IT", "ID", "IN", "RU", "KZ", "JE", "AR", "MX"):
        for ntype in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, ntype)
            assert example is not None
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            for _ in range(15):
                k = rng.randint(2, 5)
                raws.append(e164[:-k] + "".join(rng.choice(DIGITS) for _ in range(k)))
    for size in (1 << 16, 7):
        monkeypatch.setattr(numbers, "_PREFIX_MEMO_MAX", size)
        numbers._carrier_by_prefix.clear()
        numbers._zone_by_prefix.clear()
        rng.shuffle(raws)
        for raw in raws:
            fast_agrees(raw, ("CN",))
        assert len(numbers._carrier_by_prefix) <= size
        assert len(numbers._zone_by_prefix) <= size


def test_other_ways_of_writing_a_number_take_the_full_path() -> None:
    for raw in ("+86 138 1234 5678", "0086 13812345678", "13812345678", "+86-138-1234-5678",
                "＋8613812345678", "+８６13812345678"):
        assert not numbers._PLUS_DIGITS.fullmatch(raw)
        assert numbers._lookup.__wrapped__(raw, "CN") == reference(raw, "CN")


def test_known_numbers() -> None:
    assert numbers.normalize("13800138000", "CN") == (
        "+8613800138000", "China Mobile", "Asia/Shanghai"
    )
    assert numbers.normalize("+447911123456", "CN")[0] == "+447911123456"
    assert numbers.normalize(" +8613812345678 ", "cn") == (
        "+8613812345678", "China Mobile", "Asia/Shanghai"
    )
    with pytest.raises(numbers.InvalidNumber):
        numbers.normalize("+8613812345", "CN")
