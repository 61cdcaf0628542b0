"""Recipient numbers: E.164 normalisation, carrier and time zone, via `phonenumbers`.

`phonenumbers.parse` + `is_valid_number` run at about 37,000 numbers/s on one
core here, too slow for a 50,000 messages/s hot path on its own; marketing
lists repeat numbers across campaigns, so results are memoised per
(number, default region).
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType, carrier, is_number_type_geographical, timezone


class InvalidNumber(ValueError):
    code = "invalid_number"


_MOBILE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE,
                     PhoneNumberType.PAGER})


@lru_cache(maxsize=262_144)
def _lookup(raw: str, region: str) -> tuple[str, str, str] | None:
    """Same answers as is_valid_number + carrier.name_for_number +
    timezone.time_zones_for_number (tests/unit/test_numbers.py holds them
    together), but the number type is computed once instead of three times:
    each of those calls matches the number against its region's patterns again,
    a quarter of a first-seen number's cost."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    # is_valid_number(n) is number_type(n) != UNKNOWN for the region the number's
    # own country code maps to, which is the region number_type uses.
    ntype = phonenumbers.number_type(parsed)
    if ntype == PhoneNumberType.UNKNOWN:
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    name = carrier.name_for_valid_number(parsed, "en") if ntype in _MOBILE else ""
    if is_number_type_geographical(ntype, parsed.country_code):
        zones = timezone.time_zones_for_geographical_number(parsed)
    else:
        zones = timezone.time_zones_for_number(parsed)
    return e164, name, zones[0] if zones else ""


def normalize(raw: str, region: str) -> tuple[str, str, str]:
    """(E.164, carrier name or "", IANA time zone or "") or InvalidNumber."""
    result = _lookup(raw.strip(), region.upper())
    if result is None:
        raise InvalidNumber(f"{mask(raw)} is not a valid phone number for region {region}")
    return result


def mask(number: str) -> str:
    """+8613812348000 → +86138****8000: enough to debug, not enough to spam."""
    if len(number) < 9:
        return "****"
    return f"{number[:6]}****{number[-4:]}"


def configure(cache_size: int) -> None:
    """Resize the lookup cache (config `messages.number_cache`, about 300 bytes a
    number): a list bigger than the cache gets no hits when it is sent again."""
    global _lookup
    if _lookup.cache_info().maxsize != cache_size:
        _lookup = lru_cache(maxsize=cache_size)(_lookup.__wrapped__)
