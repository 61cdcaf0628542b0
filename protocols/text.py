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

import re
from collections.abc import Iterator
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
_SURROGATE_OR_ASTRAL_RE = re.compile("[\ud800-\udfff\U00010000-\U0010ffff]")

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


def _units(text: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return septet_length(text)
    if encoding is Encoding.UCS2:
        if text.isascii():
            return len(text)
        return len(text.encode("utf-16-le", "surrogatepass")) >> 1
    return len(text)


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
    PAYLOAD message exceeds 65,535 octets).
    """
    encoding = choose_encoding(text, requested)
    units = _units(text, encoding)
    if concat is Concat.PAYLOAD:
        octets = units * 2 if encoding is Encoding.UCS2 else units
        if octets > _MAX_PAYLOAD_OCTETS:
            raise TextError("too_long", "message_payload over 65535 octets")
        return encoding, 1
    if units <= _SINGLE[encoding]:
        return encoding, 1
    cap = _PER_PART[concat][encoding]
    if encoding is Encoding.LATIN1:
        n = -(-units // cap)
    elif encoding is Encoding.GSM7:
        if units == len(text):  # no escapes: every cut is legal
            n = -(-units // cap)
        else:
            n = sum(1 for _ in _cuts(encode_gsm7(text), cap, 1))
    elif units == len(text) and _SURROGATE_OR_ASTRAL_RE.search(text) is None:
        n = -(-units // cap)
    else:
        n = sum(1 for _ in _cuts(text.encode("utf-16-be", "surrogatepass"), cap * 2, 2))
    if max_parts is not None and n > max_parts:
        raise TextError("too_long", f"{n} parts, at most {max_parts} allowed")
    return encoding, n


# --------------------------------------------------------------------------
# GSM 7-bit codec


def encode_gsm7(text: str) -> bytes:
    """Unpacked septets (one per octet), extension characters as 0x1B xx."""
    if _NON_GSM_RE.search(text) is not None:
        raise TextError("unencodable", "text has characters outside GSM 03.38")
    return text.translate(_ENCODE_TABLE).encode("latin-1")


def decode_gsm7(data: bytes) -> str:
    """Unpacked septets → text.

    An escape followed by a code the extension table lacks shows the default
    alphabet character (23.038 §6.2.1.1); a trailing lone escape shows a
    space.  Octets above 0x7F are not septets: they are kept as Latin-1 so a
    mislabelled message degrades instead of failing.
    """
    out: list[str] = []
    append = out.append
    basic = _DECODE_BASIC
    ext = _GSM_EXT
    escaped = False
    for b in data:
        if escaped:
            escaped = False
            if b in ext:
                append(ext[b])
                continue
            if b == _ESC:  # SS2: reserved; show a space and drop the code
                append(" ")
                continue
        elif b == _ESC:
            escaped = True
            continue
        append(basic[b] if b < 0x80 else chr(b))
    if escaped:
        append(" ")
    return "".join(out)


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


def split(
    text: str,
    encoding: Encoding,
    concat: Concat = Concat.UDH8,
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
    encoding = Encoding(encoding)
    concat = Concat(concat)
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
    dc = encoding.data_coding
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
        if any(b > 0x7F for b in body):
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
        return _fuse_surrogates("".join(parts[i] for i in range(1, total + 1)))

    def expire(self, now: float) -> list[tuple[str, int, str]]:
        """Drop and return (key, ref, partial text in seq order) for timed-out messages."""
        out: list[tuple[str, int, str]] = []
        deadline = now - self.timeout
        expired = [slot for slot, (first, _) in self._pending.items() if first <= deadline]
        for slot in expired:
            _, parts = self._pending.pop(slot)
            text = "".join(parts[i] for i in sorted(parts))
            out.append((slot[0], slot[1], _fuse_surrogates(text)))
        return out
