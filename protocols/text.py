"""SMS text: GSM 03.38 / Latin-1 / UCS-2 encoding, counting, splitting, reassembly.

Pure functions and one small state object (:class:`Reassembler`); no I/O, no
clocks (the caller supplies ``now``).

Units (3GPP TS 23.038 / 23.040, SMPP 3.4 §5.2.19 data_coding):

* GSM 7-bit default alphabet: a user data field of 140 octets holds 160
  septets; a character of the extension table costs two (``0x1B`` + code).
* Latin-1 (data_coding 0x03): one octet per character, 140 octets.
* UCS-2 (data_coding 0x08): two octets per UTF-16 code unit, 70 units; a
  character outside the BMP is a surrogate pair and costs two units.

A concatenation UDH (IEI 0x00, 8-bit reference: 6 octets; IEI 0x08, 16-bit
reference: 7 octets) takes room from every part: 153/152 septets, 134/133
octets, 67/66 units.  SAR TLVs and ``message_payload`` carry no UDH.

Splitting is greedy and never cuts an escape sequence or a surrogate pair;
:func:`count_parts` runs the very same rule, so it always equals
``len(split(...))``.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Concat",
    "Encoding",
    "Part",
    "Reassembler",
    "TextError",
    "Udh",
    "choose_encoding",
    "count_parts",
    "decode_gsm7",
    "decode_short_message",
    "encode_gsm7",
    "is_gsm7",
    "join_parts",
    "pack_septets",
    "parse_udh",
    "septet_length",
    "split",
    "unpack_septets",
]


class TextError(ValueError):
    """A text that cannot be encoded or split as asked; ``code`` is stable.

    Codes: ``too_long`` (more parts than allowed), ``unencodable`` (a forced
    encoding cannot represent the text), ``bad_encoding`` (unknown requested
    encoding), ``bad_udh`` (inbound UDH malformed).
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


class Encoding(StrEnum):
    GSM7 = "gsm7"
    LATIN1 = "latin1"
    UCS2 = "ucs2"

    @property
    def data_coding(self) -> int:
        """SMPP 3.4 §5.2.19 data_coding: 0x00 SMSC default alphabet (GSM 03.38
        here), 0x03 Latin-1, 0x08 UCS-2."""
        return _DATA_CODING[self]


_DATA_CODING: dict[Encoding, int] = {
    Encoding.GSM7: 0x00,
    Encoding.LATIN1: 0x03,
    Encoding.UCS2: 0x08,
}


class Concat(StrEnum):
    """How a long message is carried (a per-connector setting)."""

    UDH8 = "udh8"  # UDH IEI 0x00, 8-bit reference (the common case)
    UDH16 = "udh16"  # UDH IEI 0x08, 16-bit reference
    SAR = "sar"  # SMPP sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs
    PAYLOAD = "payload"  # one submit_sm with the whole text in message_payload


# --------------------------------------------------------------------------
# GSM 03.38 tables (3GPP TS 23.038 §6.2.1 default alphabet and its extension).
# Index = septet value.  0x1B is the escape to the extension table, not a
# character of its own.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_GSM_BASIC) == 128
_ESC = 0x1B
# Extension table: septet after 0x1B → character.  0x0A is FORM FEED (page
# break); 0x0D (CR2) and 0x1B (SS2) are control codes we never produce.
_GSM_EXT: dict[int, str] = {
    0x0A: "\x0c",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
_BASIC_CHARS = frozenset(_GSM_BASIC) - {"\x1b"}
_EXT_CHARS = frozenset(_GSM_EXT.values())
_ALL_GSM_CHARS = _BASIC_CHARS | _EXT_CHARS

# str.translate tables: char → unpacked septet(s) as a latin-1 string.
_ENCODE_TABLE: dict[int, str] = {ord(c): chr(i) for i, c in enumerate(_GSM_BASIC) if i != _ESC}
_ENCODE_TABLE.update({ord(c): "\x1b" + chr(code) for code, c in _GSM_EXT.items()})
_DECODE_BASIC: tuple[str, ...] = tuple(" " if i == _ESC else c for i, c in enumerate(_GSM_BASIC))
# The same as C-level codec tables: charmap_encode expands an extension char
# to its two octets; charmap_decode reads escape-free septets (octets above
# 0x7F are kept as Latin-1, see decode_gsm7).
_ENCODE_MAP: dict[int, bytes] = {k: v.encode("latin-1") for k, v in _ENCODE_TABLE.items()}
_DECODE_MAP = "".join(_DECODE_BASIC) + "".join(map(chr, range(0x80, 0x100)))
_DECODE_MAP_ESC = _DECODE_MAP[:_ESC] + "\x1b" + _DECODE_MAP[_ESC + 1 :]
_ESCAPE_PAIRS: tuple[tuple[str, str], ...] = tuple(
    ("\x1b" + _GSM_BASIC[code], char) for code, char in _GSM_EXT.items()
)

# One C-level scan answers "is there any char outside GSM 03.38?"; a second
# one counts extension chars (only run when the text is GSM).
_NON_GSM_RE = re.compile("[^" + "".join(re.escape(c) for c in sorted(_ALL_GSM_CHARS)) + "]")
_EXT_RE = re.compile("[" + "".join(re.escape(c) for c in sorted(_EXT_CHARS)) + "]")
# For ASCII-only text (the common case) the extension chars are all ASCII:
# deleting them from the encoded bytes with bytes.translate is the fastest count.
_EXT_ASCII = bytes(sorted(ord(c) for c in _EXT_CHARS if ord(c) < 0x80))
_NON_LATIN1_RE = re.compile("[^\x00-\xff]")
# A UTF-16 high surrogate or an astral char: the only things that make UCS-2
# length differ from len(text) or constrain a cut.
_HIGH_OR_ASTRAL_RE = re.compile("[\ud800-\udbff\U00010000-\U0010ffff]")
_GSM_ASCII = bytes(sorted(ord(c) for c in _ALL_GSM_CHARS if ord(c) < 0x80))
# ASCII → septet, 1:1; the ASCII extension chars map to themselves here (no
# ASCII default-alphabet char has their octet values as its septet) and are
# then expanded with bytes.replace, which beats a per-char codec.
_ASCII_TO_SEPTET = bytes(
    _ENCODE_MAP[b][0] if b in _ENCODE_MAP and len(_ENCODE_MAP[b]) == 1 else b for b in range(256)
)
_ASCII_EXT_EXPAND: dict[int, tuple[bytes, bytes]] = {
    b: (bytes([b]), _ENCODE_MAP[b]) for b in _EXT_ASCII
}
_NOT_EXT_ASCII = bytes(b for b in range(256) if b not in _EXT_ASCII)

# Capacity per part in units (septets / octets / UTF-16 code units).
_SINGLE: dict[Encoding, int] = {Encoding.GSM7: 160, Encoding.LATIN1: 140, Encoding.UCS2: 70}
_PER_PART: dict[Concat, dict[Encoding, int]] = {
    Concat.UDH8: {Encoding.GSM7: 153, Encoding.LATIN1: 134, Encoding.UCS2: 67},
    Concat.UDH16: {Encoding.GSM7: 152, Encoding.LATIN1: 133, Encoding.UCS2: 66},
    Concat.SAR: _SINGLE,
    Concat.PAYLOAD: _SINGLE,
}
# message_payload's length field is 16 bits (SMPP 3.4 §5.3.2.32).
_MAX_PAYLOAD_OCTETS = 0xFFFF

_REQUESTED: dict[str, Encoding | None] = {
    "auto": None,
    "": None,
    "gsm7": Encoding.GSM7,
    "gsm": Encoding.GSM7,
    "latin1": Encoding.LATIN1,
    "latin-1": Encoding.LATIN1,
    "ucs2": Encoding.UCS2,
    "ucs-2": Encoding.UCS2,
}


def is_gsm7(text: str) -> bool:
    """True if every character is in the GSM 03.38 default alphabet or its extension."""
    return _NON_GSM_RE.search(text) is None


def septet_length(text: str) -> int:
    """Septets needed for GSM text (extension characters count two); assumes is_gsm7."""
    if text.isascii():
        raw = text.encode("ascii")
        return 2 * len(raw) - len(raw.translate(None, _EXT_ASCII))
    return len(text) + len(_EXT_RE.findall(text))


def _requested_encoding(requested: str) -> Encoding | None:
    try:
        return _REQUESTED[requested]
    except KeyError:
        low = requested.lower() if isinstance(requested, str) else requested
        if low in _REQUESTED:
            return _REQUESTED[low]
        raise TextError("bad_encoding", f"unknown encoding {requested!r}") from None


def choose_encoding(text: str, requested: str = "auto") -> Encoding:
    """The cheapest encoding for ``text``, or the forced one if it can carry it.

    ``auto`` picks GSM7 when every character is in GSM 03.38 (default alphabet
    or extension table), else UCS2.  Latin-1 is only used when asked for: it is
    cheaper than UCS-2 for Western text but many SMSCs and handsets mangle
    data_coding 0x03, so it must be a connector's explicit choice.
    """
    forced = _requested_encoding(requested)
    if forced is None:
        return Encoding.GSM7 if _NON_GSM_RE.search(text) is None else Encoding.UCS2
    if forced is Encoding.GSM7:
        if _NON_GSM_RE.search(text) is not None:
            raise TextError("unencodable", "text has characters outside GSM 03.38")
    elif forced is Encoding.LATIN1 and _NON_LATIN1_RE.search(text) is not None:
        raise TextError("unencodable", "text has characters outside Latin-1")
    return forced


def _ucs2_units(text: str) -> tuple[int, bool]:
    """(UTF-16 code units, True if the text has no surrogate code points)."""
    try:
        return len(text.encode("utf-16-le")) >> 1, True
    except UnicodeEncodeError:  # lone surrogates: legal in str, one unit each
        return len(text.encode("utf-16-le", "surrogatepass")) >> 1, False


def _units(text: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return septet_length(text)
    if encoding is Encoding.UCS2:
        return len(text) if text.isascii() else _ucs2_units(text)[0]
    return len(text)


def _ucs2_leads(text: str) -> set[int]:
    """Code-unit offsets of every high surrogate (astral chars and lone ones)."""
    leads: set[int] = set()
    shift = 0
    for m in _HIGH_OR_ASTRAL_RE.finditer(text):
        leads.add(m.start() + shift)
        if m.group() > "\uffff":
            shift += 1
    return leads


def _count_cuts(total: int, cap: int, leads: set[int]) -> int:
    """How many parts :func:`_cuts` makes, computed in units from the offsets
    of the units a cut must not follow."""
    n = 0
    start = 0
    while True:
        n += 1
        end = start + cap
        if end >= total:
            return n
        if end - 1 in leads:
            end -= 1
        start = end


def count_parts(
    text: str,
    requested: str = "auto",
    concat: Concat = Concat.UDH8,
    *,
    max_parts: int | None = None,
) -> tuple[Encoding, int]:
    """(encoding, number of submit_sm) for ``text``; equals ``len(split(...))``.

    Raises TextError ``unencodable`` for a forced encoding that cannot carry
    the text, and ``too_long`` when ``max_parts`` is given and exceeded (or a
    PAYLOAD message exceeds 65,535 octets).  On the admission hot path: the
    common cases cost one or two C-level passes over the text.
    """
    clean = True  # no surrogate code points (UCS-2 only)
    if requested == "auto":
        if text.isascii():
            raw = text.encode("ascii")
            if raw.translate(None, _GSM_ASCII):  # a control char or backtick
                encoding, units = Encoding.UCS2, len(raw)
            else:
                encoding = Encoding.GSM7
                units = 2 * len(raw) - len(raw.translate(None, _EXT_ASCII))
        elif _NON_GSM_RE.search(text) is None:
            encoding = Encoding.GSM7
            units = len(text) + len(_EXT_RE.findall(text))
        else:
            encoding = Encoding.UCS2
            units, clean = _ucs2_units(text)
    else:
        encoding = choose_encoding(text, requested)
        if encoding is Encoding.UCS2 and not text.isascii():
            units, clean = _ucs2_units(text)
        else:
            units = _units(text, encoding)
    if concat is Concat.PAYLOAD:
        octets = units * 2 if encoding is Encoding.UCS2 else units
        if octets > _MAX_PAYLOAD_OCTETS:
            raise TextError("too_long", "message_payload over 65535 octets")
        return encoding, 1
    if units <= _SINGLE[encoding]:
        return encoding, 1
    cap = _PER_PART[concat][encoding]
    if units == len(text) and clean:  # no escapes, no surrogates: every cut is legal
        n = -(-units // cap)
    elif encoding is Encoding.GSM7:
        n = sum(1 for _ in _cuts(encode_gsm7(text), cap, 1))
    else:
        n = _count_cuts(units, cap, _ucs2_leads(text))
    if max_parts is not None and n > max_parts:
        raise TextError("too_long", f"{n} parts, at most {max_parts} allowed")
    return encoding, n


# --------------------------------------------------------------------------
# GSM 7-bit codec


def encode_gsm7(text: str) -> bytes:
    """Unpacked septets (one per octet), extension characters as 0x1B xx."""
    if text.isascii():
        raw = text.encode("ascii")
        if raw.translate(None, _GSM_ASCII):
            raise TextError("unencodable", "text has characters outside GSM 03.38")
        data = raw.translate(_ASCII_TO_SEPTET)
        ext = raw.translate(None, _NOT_EXT_ASCII)
        if ext:
            for b in set(ext):
                char, septets = _ASCII_EXT_EXPAND[b]
                data = data.replace(char, septets)
        return data
    try:
        return codecs.charmap_encode(text, "strict", _ENCODE_MAP)[0]
    except UnicodeEncodeError:
        raise TextError("unencodable", "text has characters outside GSM 03.38") from None


def decode_gsm7(data: bytes) -> str:
    """Unpacked septets → text.

    An escape followed by a code the extension table lacks shows the default
    alphabet character (23.038 §6.2.1.1); a trailing lone escape shows a
    space.  Octets above 0x7F are not septets: they are kept as Latin-1 so a
    mislabelled message degrades instead of failing.
    """
    if _ESC not in data:
        return codecs.charmap_decode(data, "strict", _DECODE_MAP)[0]
    # Decode with the escape kept as U+001B, then rewrite escape pairs with
    # str.replace, left to right like the handset: SS2 pairs first, then the
    # extension codes; a leftover escape vanishes before an unknown code and
    # is a space at the very end.
    text = codecs.charmap_decode(data, "strict", _DECODE_MAP_ESC)[0]
    text = text.replace("\x1b\x1b", " ")
    for pair, char in _ESCAPE_PAIRS:
        if pair in text:
            text = text.replace(pair, char)
    if text.endswith("\x1b"):
        text = text[:-1] + " "
    return text.replace("\x1b", "")


def pack_septets(data: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets 7-bit, LSB first (23.038 §6.1.2.1.1).

    ``fill_bits`` zero bits come first, so the result can follow a UDH of
    ``udhl + 1`` octets with ``fill_bits = (7 - (udh_octets * 8) % 7) % 7``.
    """
    if not 0 <= fill_bits < 7:
        raise ValueError("fill_bits must be 0..6")
    acc = 0
    shift = fill_bits
    for s in data:
        acc |= (s & 0x7F) << shift
        shift += 7
    return acc.to_bytes((shift + 7) >> 3, "little")


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """Inverse of :func:`pack_septets`: ``count`` septets after ``fill_bits``."""
    if not 0 <= fill_bits < 7:
        raise ValueError("fill_bits must be 0..6")
    avail = (len(data) * 8 - fill_bits) // 7
    if count > avail:
        raise ValueError(f"{count} septets asked, {avail} present")
    acc = int.from_bytes(data, "little") >> fill_bits
    return bytes((acc >> (7 * i)) & 0x7F for i in range(count))


def _fill_bits(udh_octets: int) -> int:
    return (7 - (udh_octets * 8) % 7) % 7


def _pack_with_cr_pad(septets: bytes, fill_bits: int) -> bytes:
    # 23.038 §6.1.2.1.1: when 7 spare bits would remain in the last octet the
    # receiver would read a phantom '@'; they are set to CR instead.
    if (len(septets) * 7 + fill_bits) % 8 == 1:
        septets += b"\r"
    return pack_septets(septets, fill_bits)


# --------------------------------------------------------------------------
# Splitting


@dataclass(frozen=True, slots=True)
class Part:
    """One submit_sm worth of text.

    ``short_message`` includes the UDH when ``esm_class`` has UDHI (0x40).
    With ``payload`` True the bytes belong in the message_payload TLV and
    short_message must be empty; with ``sar`` set, send sar_msg_ref_num,
    sar_total_segments, sar_segment_seqnum = ``sar``.
    """

    short_message: bytes
    esm_class: int
    data_coding: int
    seq: int
    total: int
    reference: int
    sar: tuple[int, int, int] | None = None
    payload: bool = False


ESM_UDHI = 0x40


def _cuts(data: bytes, cap: int, unit: int) -> Iterator[tuple[int, int]]:
    """(start, end) octet ranges of at most ``cap`` octets that never end
    inside a GSM escape (unit 1) or between the halves of a surrogate pair
    (unit 2, UTF-16-BE)."""
    n = len(data)
    start = 0
    while True:
        end = start + cap
        if end >= n:
            yield start, n
            return
        if unit == 1:
            # An escape's second octet is never 0x1B, so 0x1B here is a lead.
            if data[end - 1] == _ESC:
                end -= 1
        elif 0xD8 <= data[end - 2] <= 0xDB:  # high surrogate: keep it with its pair
            end -= 2
        yield start, end
        start = end


def _udh(concat: Concat, ref: int, total: int, seq: int) -> bytes:
    if concat is Concat.UDH8:
        return bytes((0x05, 0x00, 0x03, ref, total, seq))
    return bytes((0x06, 0x08, 0x04, ref >> 8, ref & 0xFF, total, seq))


_ENCODING_BY_NAME: dict[str, Encoding] = {e.value: e for e in Encoding}
_CONCAT_BY_NAME: dict[str, Concat] = {c.value: c for c in Concat}


def split(
    text: str,
    encoding: Encoding | str,
    concat: Concat | str = Concat.UDH8,
    reference: int = 0,
    max_parts: int = 255,
    packed: bool = False,
) -> list[Part]:
    """Encode ``text`` and cut it into submit_sm parts.

    A message that fits one part carries no UDH and no SAR.  ``reference`` is
    reduced to 8 bits for UDH8 and 16 bits for UDH16/SAR.  GSM7 is unpacked
    (one septet per octet) unless ``packed``; packed parts after a UDH start on
    a septet boundary (fill bits).  Raises TextError ``too_long`` above
    ``max_parts`` (at most 255: the UDH counts parts in one octet) and
    ``unencodable`` if the text does not fit ``encoding``.
    """
    # Plain strings are welcome (a stored message's encoding, a connector's
    # setting); a dict lookup instead of an enum call, which costs more than a
    # one-part split. An unknown value still raises ValueError.
    if type(encoding) is not Encoding:
        encoding = _ENCODING_BY_NAME.get(encoding) or Encoding(encoding)
    if type(concat) is not Concat:
        concat = _CONCAT_BY_NAME.get(concat) or Concat(concat)
    if encoding is Encoding.GSM7:
        data = encode_gsm7(text)
        unit = 1
    elif encoding is Encoding.UCS2:
        data = text.encode("utf-16-be", "surrogatepass")
        unit = 2
    else:
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:
            raise TextError("unencodable", "text has characters outside Latin-1") from None
        unit = 1
    dc = _DATA_CODING[encoding]
    gsm_packed = packed and encoding is Encoding.GSM7

    if concat is Concat.PAYLOAD:
        body = _pack_with_cr_pad(data, 0) if gsm_packed else data
        if len(body) > _MAX_PAYLOAD_OCTETS:
            raise TextError("too_long", "message_payload over 65535 octets")
        return [Part(body, 0, dc, 1, 1, 0, None, True)]

    single = _SINGLE[encoding] * unit if encoding is Encoding.UCS2 else _SINGLE[encoding]
    if len(data) <= single:
        body = _pack_with_cr_pad(data, 0) if gsm_packed else data
        return [Part(body, 0, dc, 1, 1, 0)]

    cap = _PER_PART[concat][encoding] * (2 if encoding is Encoding.UCS2 else 1)
    cuts = list(_cuts(data, cap, unit))
    total = len(cuts)
    limit = min(max_parts, 255)
    if total > limit:
        raise TextError("too_long", f"{total} parts, at most {limit} allowed")

    parts: list[Part] = []
    if concat is Concat.SAR:
        ref = reference & 0xFFFF
        for seq, (a, b) in enumerate(cuts, 1):
            chunk = data[a:b]
            body = _pack_with_cr_pad(chunk, 0) if gsm_packed else chunk
            parts.append(Part(body, 0, dc, seq, total, ref, (ref, total, seq)))
        return parts

    ref = reference & (0xFF if concat is Concat.UDH8 else 0xFFFF)
    for seq, (a, b) in enumerate(cuts, 1):
        header = _udh(concat, ref, total, seq)
        chunk = data[a:b]
        if gsm_packed:
            chunk = _pack_with_cr_pad(chunk, _fill_bits(len(header)))
        parts.append(Part(header + chunk, ESM_UDHI, dc, seq, total, ref))
    return parts


# --------------------------------------------------------------------------
# Inbound


@dataclass(frozen=True, slots=True)
class Udh:
    """A parsed User Data Header (23.040 §9.2.3.24).

    ``elements`` keeps every information element as (IEI, data) in order;
    ``ref``/``total``/``seq`` are set when a concatenation element (IEI 0x00
    or 0x08) is present.
    """

    length: int  # octets including the UDHL octet itself
    elements: tuple[tuple[int, bytes], ...]
    ref: int | None = None
    total: int | None = None
    seq: int | None = None

    @property
    def concat(self) -> tuple[int, int, int] | None:
        if self.ref is None or self.total is None or self.seq is None:
            return None
        return self.ref, self.total, self.seq


def parse_udh(data: bytes) -> Udh:
    """Parse the UDH at the start of ``data`` (UDHL first)."""
    if not data:
        raise TextError("bad_udh", "empty user data with UDHI set")
    udhl = data[0]
    end = 1 + udhl
    if end > len(data):
        raise TextError("bad_udh", "UDH longer than the message")
    elements: list[tuple[int, bytes]] = []
    ref = total = seq = None
    i = 1
    while i < end:
        if i + 2 > end:
            raise TextError("bad_udh", "truncated information element")
        iei, iedl = data[i], data[i + 1]
        value = data[i + 2 : i + 2 + iedl]
        if i + 2 + iedl > end:
            raise TextError("bad_udh", "information element overruns the UDH")
        elements.append((iei, bytes(value)))
        if iei == 0x00 and iedl == 3:
            ref, total, seq = value[0], value[1], value[2]
        elif iei == 0x08 and iedl == 4:
            ref, total, seq = (value[0] << 8) | value[1], value[2], value[3]
        i += 2 + iedl
    return Udh(end, tuple(elements), ref, total, seq)


_FIXED_CODECS: dict[int, str] = {
    0x01: "latin-1",  # IA5 (ASCII); latin-1 is a lossless superset
    0x02: "latin-1",  # 8-bit binary: pass octets through
    0x03: "latin-1",
    0x04: "latin-1",  # 8-bit binary
    0x05: "shift_jis",  # JIS (X 0208-1990)
    0x06: "iso8859-5",  # Cyrillic
    0x07: "iso8859-8",  # Latin/Hebrew
    0x09: "latin-1",  # pictogram: opaque
    0x0A: "iso2022_jp",  # music codes per SMPP; ISO-2022-JP in practice
    0x0D: "euc_jp",  # extended Kanji JIS (X 0212-1990)
    0x0E: "euc_kr",  # KS C 5601
}


def _alphabet(data_coding: int) -> str:
    """'gsm7', 'ucs2' or a Python codec name for an SMPP/GSM data_coding."""
    if data_coding == 0x00:
        return "gsm7"
    if data_coding == 0x08:
        return "ucs2"
    if data_coding in _FIXED_CODECS:
        return _FIXED_CODECS[data_coding]
    # 23.038 §4 coding groups carried through SMPP as raw DCS values.
    group = data_coding >> 4
    if group <= 0x3 or 0x4 <= group <= 0x7:  # general data coding (bit 5: compressed)
        if data_coding & 0x20:
            return "latin-1"
        alpha = (data_coding >> 2) & 0x3
        return ("gsm7", "latin-1", "ucs2", "latin-1")[alpha]
    if group in (0xC, 0xD):  # message waiting, GSM7
        return "gsm7"
    if group == 0xE:  # message waiting, UCS-2
        return "ucs2"
    if group == 0xF:
        return "latin-1" if data_coding & 0x04 else "gsm7"
    return "latin-1"


def decode_short_message(
    data: bytes,
    data_coding: int,
    esm_class: int = 0,
    *,
    smsc_default: str = "gsm7",
) -> tuple[str, Udh | None]:
    """Inbound short_message (or message_payload) → (text, UDH or None).

    The UDH is stripped when esm_class has UDHI (0x40).  ``smsc_default``
    says what data_coding 0x00 means on this connector: ``gsm7`` (unpacked
    septets, default), ``gsm7-packed``, ``ascii`` or ``latin1``.  A
    data_coding 0x00 body with octets above 0x7F cannot be unpacked septets
    and is read as Latin-1.  UCS-2 halves of a surrogate pair left at the end
    of a concatenated part are kept (as lone surrogates) so reassembly can
    join them; everywhere else undecodable input becomes U+FFFD.
    """
    udh: Udh | None = None
    body = data
    if esm_class & ESM_UDHI:
        udh = parse_udh(data)
        body = data[udh.length :]
    alphabet = _alphabet(data_coding)
    if alphabet == "gsm7" and data_coding == 0x00 and smsc_default != "gsm7":
        alphabet = {"gsm7-packed": "gsm7-packed", "ascii": "latin-1", "latin1": "latin-1"}.get(
            smsc_default, "gsm7"
        )
    if alphabet == "gsm7":
        if not body.isascii():
            return body.decode("latin-1"), udh
        return decode_gsm7(body), udh
    if alphabet == "gsm7-packed":
        fill = _fill_bits(udh.length) if udh is not None else 0
        bits = len(body) * 8 - fill
        count = max(bits, 0) // 7
        septets = unpack_septets(body, count, fill)
        # No septet count travels over SMPP: when the septets end exactly on
        # an octet boundary the last one may be the CR a 23.038 sender puts in
        # 7 spare bits, and is dropped.
        if count and bits == count * 7 and septets[-1] == 0x0D:
            septets = septets[:-1]
        return decode_gsm7(septets), udh
    if alphabet == "ucs2":
        errors = "surrogatepass" if udh is not None and udh.concat is not None else "replace"
        if len(body) % 2:  # a stray octet cannot be a code unit
            return body[:-1].decode("utf-16-be", errors) + "\ufffd", udh
        return body.decode("utf-16-be", errors), udh
    return body.decode(alphabet, "replace"), udh


# --------------------------------------------------------------------------
# Reassembly


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _fuse_surrogates(text: str) -> str:
    if _SURROGATE_RE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def join_parts(parts: Mapping[int, str]) -> str:
    """The text of the parts of a concatenated message (by part number) that
    are present, in order. UCS-2 surrogate halves left at the ends of parts
    (`decode_short_message` keeps them) become their character again; a half
    whose partner is missing becomes U+FFFD."""
    return _fuse_surrogates("".join(parts[k] for k in sorted(parts)))


class Reassembler:
    """Collects inbound parts (UDH or SAR) into whole messages.

    ``key`` names the conversation (e.g. connector + source + destination);
    a part is identified by (key, ref, total, seq).  The caller supplies
    time: a message whose first part arrived more than ``timeout`` seconds
    before ``now`` is handed back, incomplete, by :meth:`expire`.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # Insertion order == first-seen order, so expiry scans only the head
        # (as long as the caller's clock does not go backwards).
        self._pending: dict[tuple[str, int, int], tuple[float, dict[int, str]]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, key: str, ref: int, total: int, seq: int, text: str, now: float) -> str | None:
        """Store one part; return the whole text once every part is in."""
        if total <= 1:
            return _fuse_surrogates(text)
        if not 1 <= seq <= total:
            return None
        slot = (key, ref, total)
        entry = self._pending.get(slot)
        if entry is None:
            entry = (now, {})
            self._pending[slot] = entry
        parts = entry[1]
        parts.setdefault(seq, text)  # duplicates: first copy wins
        if len(parts) < total:
            return None
        del self._pending[slot]
        return join_parts(parts)

    def expire(self, now: float) -> list[tuple[str, int, str]]:
        """Drop and return (key, ref, partial text in seq order) for timed-out messages."""
        out: list[tuple[str, int, str]] = []
        deadline = now - self.timeout
        expired = [slot for slot, (first, _) in self._pending.items() if first <= deadline]
        for slot in expired:
            _, parts = self._pending.pop(slot)
            out.append((slot[0], slot[1], join_parts(parts)))
        return out
