"""Recipient numbers: E.164 normalisation, carrier and time zone, via `phonenumbers`.

Two paths give the same answers (tests/unit/test_numbers.py holds them together):

- *Full path* — any input (national format, spaces, dashes, `00` prefix...):
  `phonenumbers.parse` + number type + carrier + time zone, about 40-90 µs
  for a number seen for the first time.
- *Fast path* — input already written `+` then ASCII digits, which is what
  bulk senders send: a marketing blast is a million numbers never seen
  before, so a cache of whole numbers does not help it. The steps `parse` would
  take on such a string are done directly on the digits, with phonenumbers'
  own metadata and prefix data, about 4-6 µs a number
  (`python -m loadtest.bench_numbers`):
  1. the country calling code is the first 1-3 digits that name one in
     `COUNTRY_CODE_TO_REGION_CODE` (`parse` takes the shortest too); a `+`
     with no known code makes `parse` retry with the default region's
     international prefix, so that input takes the full path;
  2. the national number is the rest, passed through phonenumbers' own national
     prefix stripping (`parse` does it even after a `+`: `+7 8...`, `+44 0...`)
     when the main region's `national_prefix_for_parsing` matches at its start;
  3. the region, for codes shared by several (+1, +7, +44...), is picked as
     `region_code_for_number` does: the first, in phonenumbers' order, whose
     `leading_digits` match or, having none, whose patterns accept the number;
  4. the number type is `_number_type_helper` over the region's descs, with
     their patterns compiled once and those a number's length rules out
     dropped beforehand (`phonenumbers` compiles per call, through `re`'s
     bounded cache);
  5. carrier names and time zones are longest-prefix lookups in phonenumbers'
     data on the E.164 digits, which depend on no more digits than the
     longest key that can match for that country (6 for +86 carriers, 3 for
     +86 time zones): they are memoised by that prefix and computed, on a
     miss, by the same `phonenumbers` calls as the full path.
  Leading zeros (Italy) need nothing: a national number kept as a digit
  string is what `national_significant_number` rebuilds from
  `italian_leading_zero` and `number_of_leading_zeros`.

Both paths sit behind one cache of whole answers per (number, default region),
which a list sent again hits (~1 µs through `normalize`).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

import phonenumbers
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberType,
    carrier,
    is_number_type_geographical,
    timezone,
)
from phonenumbers import phonenumberutil as _pnu
from phonenumbers.carrierdata import CARRIER_DATA
from phonenumbers.tzdata import TIMEZONE_DATA


class InvalidNumber(ValueError):
    code = "invalid_number"


_MOBILE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE,
                     PhoneNumberType.PAGER})

Answer = tuple[str, str, str]


def _lookup_full(raw: str, region: str) -> Answer | None:
    """Same answers as is_valid_number + carrier.name_for_number +
    timezone.time_zones_for_number, but the number type is computed once
    instead of three times: each of those calls matches the number against its
    region's patterns again, a quarter of a first-seen number's cost."""
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


# --- fast path for "+<digits>" -------------------------------------------------

# parse() refuses fewer than 3 digits after "+", and more than 17 after the
# country code; longer inputs take the full path to be refused there.
_PLUS_DIGITS = re.compile(r"\+[1-9][0-9]{2,19}")
_NOT_FAST = ("", "", "")  # "take the full path"; a real answer's E.164 is never ""

# _number_type_helper's order: these are tried before fixed line and mobile.
_SPECIAL_TYPES = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)

Pattern = re.Pattern[str]
# For one national number length: the general pattern, then (type, pattern) of
# the special types in order, the fixed-line and mobile patterns (None: never
# matches), and same_mobile_and_fixed_line_pattern.
_Plan = tuple[Pattern, tuple[tuple[int, Pattern], ...], Pattern | None, Pattern | None, bool]


def _plans(metadata: PhoneMetadata) -> tuple[_Plan | None, ...]:
    """phonenumberutil._number_type_helper for one region, as one plan per
    length of national number (0.._MAX_LENGTH_FOR_NSN), None where the number
    cannot be valid. _is_number_matching_desc checks a desc's possible lengths
    before its pattern, so a desc whose lengths exclude a length is dropped
    from that length's plan; a desc without pattern never matches
    (_match_national_number refuses an empty one)."""

    descs = {}
    for name in ("general_desc", *(n for n, _ in _SPECIAL_TYPES), "fixed_line", "mobile"):
        d = getattr(metadata, name)
        if d is not None and d.national_number_pattern:
            descs[name] = (frozenset(d.possible_length), re.compile(d.national_number_pattern))

    def desc_for(name: str, length: int) -> Pattern | None:
        if name not in descs:
            return None
        lengths, pattern = descs[name]
        return pattern if not lengths or length in lengths else None

    same = bool(metadata.same_mobile_and_fixed_line_pattern)
    plans: list[_Plan | None] = []
    for length in range(_pnu._MAX_LENGTH_FOR_NSN + 1):
        general = desc_for("general_desc", length)
        if general is None:
            plans.append(None)
            continue
        specials = tuple((t, p) for name, t in _SPECIAL_TYPES
                         if (p := desc_for(name, length)) is not None)
        plans.append((general, specials, desc_for("fixed_line", length),
                      desc_for("mobile", length), same))
    return tuple(plans)


def _number_type(plans: tuple[_Plan | None, ...], nsn: str) -> int:
    plan = plans[len(nsn)]
    if plan is None:
        return PhoneNumberType.UNKNOWN
    general, specials, fixed, mobile, same = plan
    if general.fullmatch(nsn) is None:
        return PhoneNumberType.UNKNOWN
    for ntype, pattern in specials:
        if pattern.fullmatch(nsn) is not None:
            return ntype
    if fixed is not None and fixed.fullmatch(nsn) is not None:
        if same or (mobile is not None and mobile.fullmatch(nsn) is not None):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return PhoneNumberType.FIXED_LINE
    if not same and mobile is not None and mobile.fullmatch(nsn) is not None:
        return PhoneNumberType.MOBILE
    return PhoneNumberType.UNKNOWN


def _longest_keys(data: dict[str, Any]) -> dict[str, int]:
    """For each country code, how many leading digits of an E.164 number a
    longest-prefix lookup in `data` can read: the longest key that begins with
    that code (the first 1-3 digits naming a code, as parse() reads them). A
    key shorter than the code it is a prefix of is outdone by the code itself."""
    longest = {code: len(code) for code in _CODES}
    for key in data:
        for n in (1, 2, 3):
            if n <= len(key) and key[:n] in _CODES:
                longest[key[:n]] = max(longest[key[:n]], len(key))
                break
    return longest


@cache
def _carrier_digits() -> dict[str, int]:
    return _longest_keys(CARRIER_DATA)


@cache
def _tz_digits() -> dict[str, int]:
    return _longest_keys(TIMEZONE_DATA)


class _Country:
    """What the fast path needs for one country calling code, built on first use."""

    __slots__ = ("carrier_digits", "cc", "code", "country_zone", "geographical", "main",
                 "regions", "strip_re", "transform", "tz_digits")

    def __init__(self, code: str) -> None:
        self.cc = int(code)
        self.code = code
        region_codes = COUNTRY_CODE_TO_REGION_CODE[self.cc]
        main = PhoneMetadata.metadata_for_region_or_calling_code(self.cc, region_codes[0])
        assert main is not None  # every code in the map has metadata (tested)
        # parse() strips a national prefix with the main region's metadata.
        self.main = main
        self.strip_re = (re.compile(main.national_prefix_for_parsing)
                         if main.national_prefix_for_parsing else None)
        self.transform = main.national_prefix_transform_rule or ""
        # (region's leading_digits compiled or None, its type plans). A code
        # of one region is that region's (or, "001", the non-geographical
        # entity's); among several, region_code_for_number skips any without
        # metadata of its own.
        regions: list[tuple[Pattern | None, tuple[_Plan | None, ...]]] = []
        if len(region_codes) == 1:
            regions.append((None, _plans(main)))
        else:
            for region in region_codes:
                md = PhoneMetadata.metadata_for_region(region, None)
                if md is None:
                    continue
                leading = re.compile(md.leading_digits) if md.leading_digits is not None else None
                regions.append((leading, _plans(md)))
        self.regions = tuple(regions)
        self.geographical = frozenset(t for t in PhoneNumberType.values()
                                      if is_number_type_geographical(t, self.cc))
        self.carrier_digits = _carrier_digits()[code]
        self.tz_digits = _tz_digits()[code]
        self.country_zone: str | None = None

    def national_number(self, rest: str) -> str:
        """The national significant number parse() ends with for +<cc><rest>."""
        m = self.strip_re.match(rest) if self.strip_re is not None else None
        if m is None:
            return rest
        if m.end() == 0 and not (self.transform and m.groups() and m.groups()[-1] is not None):
            # An empty match with no transformation (Argentina's optional
            # prefix) leaves the number as it is, whatever the length test says.
            return rest
        _, stripped, _ = _pnu._maybe_strip_national_prefix_carrier_code(rest, self.main)
        result = _pnu._test_number_length(stripped, self.main)
        if result in (_pnu.ValidationResult.TOO_SHORT, _pnu.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
                      _pnu.ValidationResult.INVALID_LENGTH):
            return rest
        return str(stripped)

    def number_type(self, nsn: str) -> int:
        """number_type(): the region as region_code_for_number picks it, then its type."""
        regions = self.regions
        if len(regions) == 1 and regions[0][0] is None:
            return _number_type(regions[0][1], nsn)
        for leading, plans in regions:
            if leading is not None:
                if leading.match(nsn):
                    return _number_type(plans, nsn)
            elif (ntype := _number_type(plans, nsn)) != PhoneNumberType.UNKNOWN:
                return ntype
        return PhoneNumberType.UNKNOWN


_CODES = frozenset(str(cc) for cc in COUNTRY_CODE_TO_REGION_CODE)
_countries: dict[str, _Country] = {}

# E.164 digit prefix → answer. Exact (see _longest_keys), and bounded by the
# numbering plans, but a list of random numbers could still fill them: cleared
# when they reach this size.
_PREFIX_MEMO_MAX = 1 << 16
_carrier_by_prefix: dict[str, str] = {}
_zone_by_prefix: dict[str, str] = {}


def _phone_number(country: _Country, nsn: str) -> PhoneNumber:
    numobj = PhoneNumber(country_code=country.cc, national_number=int(nsn))
    _pnu._set_italian_leading_zeros_for_phone_number(nsn, numobj)
    return numobj


def _lookup_e164(raw: str) -> Answer | None:
    """_lookup_full(raw, any region) for raw = "+" then digits, without parse();
    _NOT_FAST where the answer would depend on the region."""
    digits = raw[1:]
    for n in (1, 2, 3):
        if digits[:n] in _CODES:
            code = digits[:n]
            break
    else:
        return _NOT_FAST
    country = _countries.get(code)
    if country is None:
        country = _countries[code] = _Country(code)
    rest = digits[len(code):]
    if len(rest) < _pnu._MIN_LENGTH_FOR_NSN:
        return None
    nsn = country.national_number(rest)
    if not _pnu._MIN_LENGTH_FOR_NSN <= len(nsn) <= _pnu._MAX_LENGTH_FOR_NSN:
        return None
    ntype = country.number_type(nsn)
    if ntype == PhoneNumberType.UNKNOWN:
        return None
    e164_digits = code + nsn

    name = ""
    if ntype in _MOBILE:
        key = e164_digits[:country.carrier_digits]
        found = _carrier_by_prefix.get(key)
        if found is None:
            found = carrier.name_for_valid_number(_phone_number(country, nsn), "en")
            if len(_carrier_by_prefix) >= _PREFIX_MEMO_MAX:
                _carrier_by_prefix.clear()
            _carrier_by_prefix[key] = found
        name = found

    if ntype in country.geographical:
        key = e164_digits[:country.tz_digits]
        zone = _zone_by_prefix.get(key)
        if zone is None:
            zones = timezone.time_zones_for_geographical_number(_phone_number(country, nsn))
            zone = zones[0] if zones else ""
            if len(_zone_by_prefix) >= _PREFIX_MEMO_MAX:
                _zone_by_prefix.clear()
            _zone_by_prefix[key] = zone
    else:
        # A valid number of a non-geographical type gets its country's zones.
        zone = country.country_zone
        if zone is None:
            zones = timezone.time_zones_for_number(_phone_number(country, nsn))
            zone = country.country_zone = zones[0] if zones else ""
    return "+" + e164_digits, name, zone


@lru_cache(maxsize=65_536)  # resized by configure() from messages.number_cache
def _lookup(raw: str, region: str) -> Answer | None:
    if _PLUS_DIGITS.fullmatch(raw):
        answer = _lookup_e164(raw)
        if answer is not _NOT_FAST:
            return answer
    return _lookup_full(raw, region)


# What a number must not hold (rather than being silently stripped): control
# and invisible (format) characters, line breaks, and extensions (`;ext=1`,
# `ext. 12`, `x12`, `#12`), which an SMS cannot reach.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
                        r"\u2060-\u206f\ufeff\ufff9-\ufffb;#,*]|(?i:ext|\bx\s*\.?\s*\d)")


def check_chars(raw: str) -> None:
    """InvalidNumber if `raw` holds a character or an extension no number has."""
    if _FORBIDDEN.search(raw):
        raise InvalidNumber("the number holds a control or invisible character or an extension")


def normalize(raw: str, region: str) -> tuple[str, str, str]:
    """(E.164, carrier name or "", IANA time zone or "") or InvalidNumber."""
    if not _PLUS_DIGITS.fullmatch(raw):
        check_chars(raw)
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
