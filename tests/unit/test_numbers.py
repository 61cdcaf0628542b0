"""gateway.numbers gives exactly what the plain phonenumbers calls give."""

from __future__ import annotations

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import carrier, timezone

from gateway import numbers


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


def test_known_numbers() -> None:
    assert numbers.normalize("13800138000", "CN") == (
        "+8613800138000", "China Mobile", "Asia/Shanghai"
    )
    assert numbers.normalize("+447911123456", "CN")[0] == "+447911123456"
