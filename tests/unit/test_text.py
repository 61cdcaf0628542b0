"""SMS text: what a user notices is the number of parts, the bytes an SMSC gets,
and that the handset shows exactly the text that was sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.text import (
    Concat,
    Encoding,
    Part,
    Reassembler,
    TextError,
    choose_encoding,
    count_parts,
    decode_gsm7,
    decode_short_message,
    encode_gsm7,
    is_gsm7,
    pack_septets,
    parse_udh,
    split,
    unpack_septets,
)

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = "\x0c^{}\\[~]|€"
EMOJI = "😀"  # U+1F600: a surrogate pair in UTF-16


def texts_of(parts: list[Part], encoding: Encoding) -> list[str]:
    return [decode_short_message(p.short_message, p.data_coding, p.esm_class)[0] for p in parts]


# ---------------------------------------------------------------- choosing


@pytest.mark.parametrize(
    ("text", "requested", "expected"),
    [
        ("Hello world", "auto", Encoding.GSM7),
        (GSM_BASIC + GSM_EXT, "auto", Encoding.GSM7),
        ("", "auto", Encoding.GSM7),
        ("Prix: 5€ {ok}", "auto", Encoding.GSM7),
        ("ç", "auto", Encoding.UCS2),  # only capital Ç is in GSM 03.38
        ("`backtick`", "auto", Encoding.UCS2),
        ("您好", "auto", Encoding.UCS2),
        (EMOJI, "auto", Encoding.UCS2),
        ("ç", "latin1", Encoding.LATIN1),  # Latin-1 only on request
        ("Hello", "ucs2", Encoding.UCS2),
        ("Hello", "GSM7", Encoding.GSM7),
    ],
)
def test_choose_encoding(text: str, requested: str, expected: Encoding) -> None:
    assert choose_encoding(text, requested) is expected


@pytest.mark.parametrize(
    ("text", "requested"),
    [("您好", "gsm7"), ("ç", "gsm7"), ("您好", "latin1"), ("5€", "latin1"), (EMOJI, "gsm7")],
)
def test_forced_encoding_that_cannot_carry_the_text_is_unencodable(
    text: str, requested: str
) -> None:
    with pytest.raises(TextError) as exc:
        choose_encoding(text, requested)
    assert exc.value.code == "unencodable"
    with pytest.raises(TextError) as exc:
        count_parts(text, requested)
    assert exc.value.code == "unencodable"


def test_unknown_requested_encoding() -> None:
    with pytest.raises(TextError) as exc:
        choose_encoding("x", "ebcdic")
    assert exc.value.code == "bad_encoding"


def test_data_coding_values() -> None:
    assert Encoding.GSM7.data_coding == 0x00
    assert Encoding.LATIN1.data_coding == 0x03
    assert Encoding.UCS2.data_coding == 0x08
    assert Encoding("ucs2") is Encoding.UCS2 and Concat("sar") is Concat.SAR


# ---------------------------------------------------------------- counting

CJK = "中"


@pytest.mark.parametrize(
    ("text", "concat", "encoding", "parts"),
    [
        ("", Concat.UDH8, Encoding.GSM7, 1),
        ("a" * 160, Concat.UDH8, Encoding.GSM7, 1),
        ("a" * 161, Concat.UDH8, Encoding.GSM7, 2),
        ("a" * 306, Concat.UDH8, Encoding.GSM7, 2),
        ("a" * 307, Concat.UDH8, Encoding.GSM7, 3),
        ("a" * 304, Concat.UDH16, Encoding.GSM7, 2),
        ("a" * 305, Concat.UDH16, Encoding.GSM7, 3),
        ("a" * 320, Concat.SAR, Encoding.GSM7, 2),
        ("a" * 321, Concat.SAR, Encoding.GSM7, 3),
        ("a" * 5000, Concat.PAYLOAD, Encoding.GSM7, 1),
        ("€" * 80, Concat.UDH8, Encoding.GSM7, 1),  # 160 septets
        ("€" * 80 + "a", Concat.UDH8, Encoding.GSM7, 2),
        ("a" * 159 + "€", Concat.UDH8, Encoding.GSM7, 2),  # 161 septets
        ("€" * 153, Concat.UDH8, Encoding.GSM7, 3),  # 76 escapes per part, not 76.5
        (CJK * 70, Concat.UDH8, Encoding.UCS2, 1),
        (CJK * 71, Concat.UDH8, Encoding.UCS2, 2),
        (CJK * 134, Concat.UDH8, Encoding.UCS2, 2),
        (CJK * 135, Concat.UDH8, Encoding.UCS2, 3),
        (CJK * 132, Concat.UDH16, Encoding.UCS2, 2),
        (CJK * 133, Concat.UDH16, Encoding.UCS2, 3),
        (CJK * 140, Concat.SAR, Encoding.UCS2, 2),
        (CJK * 141, Concat.SAR, Encoding.UCS2, 3),
        (EMOJI * 35, Concat.UDH8, Encoding.UCS2, 1),  # 70 code units
        (EMOJI * 36, Concat.UDH8, Encoding.UCS2, 2),
        (EMOJI * 67, Concat.UDH8, Encoding.UCS2, 3),  # 33 pairs per part, not 33.5
    ],
)
def test_count_parts_table(text: str, concat: Concat, encoding: Encoding, parts: int) -> None:
    assert count_parts(text, "auto", concat) == (encoding, parts)
    assert len(split(text, encoding, concat)) == parts


@pytest.mark.parametrize(
    ("n", "concat", "parts"),
    [
        (140, Concat.UDH8, 1),
        (141, Concat.UDH8, 2),
        (268, Concat.UDH8, 2),
        (269, Concat.UDH8, 3),
        (266, Concat.UDH16, 2),
        (267, Concat.UDH16, 3),
        (280, Concat.SAR, 2),
    ],
)
def test_latin1_counts_octets(n: int, concat: Concat, parts: int) -> None:
    assert count_parts("é" * n, "latin1", concat) == (Encoding.LATIN1, parts)
    assert len(split("é" * n, Encoding.LATIN1, concat)) == parts


def test_count_parts_max_parts() -> None:
    assert count_parts("a" * 153 * 3, max_parts=3) == (Encoding.GSM7, 3)
    with pytest.raises(TextError) as exc:
        count_parts("a" * (153 * 3 + 1), max_parts=3)
    assert exc.value.code == "too_long"


def test_payload_over_64k_is_too_long() -> None:
    with pytest.raises(TextError) as exc:
        count_parts(CJK * 40000, concat=Concat.PAYLOAD)
    assert exc.value.code == "too_long"
    with pytest.raises(TextError):
        split(CJK * 40000, Encoding.UCS2, Concat.PAYLOAD)


# ---------------------------------------------------------------- splitting


def test_single_part_has_no_udh() -> None:
    (p,) = split("a" * 160, Encoding.GSM7, reference=9)
    assert p == Part(b"a" * 160, 0x00, 0x00, 1, 1, 0, None, False)


def test_udh8_bytes() -> None:
    parts = split("a" * 161, Encoding.GSM7, Concat.UDH8, reference=0x2A)
    assert [p.short_message[:6] for p in parts] == [
        bytes([0x05, 0x00, 0x03, 0x2A, 2, 1]),
        bytes([0x05, 0x00, 0x03, 0x2A, 2, 2]),
    ]
    assert [len(p.short_message) for p in parts] == [6 + 153, 6 + 8]
    assert all(p.esm_class == 0x40 and p.sar is None and not p.payload for p in parts)
    assert [(p.seq, p.total, p.reference) for p in parts] == [(1, 2, 0x2A), (2, 2, 0x2A)]


def test_udh8_reference_is_reduced_to_one_octet() -> None:
    parts = split("a" * 161, Encoding.GSM7, Concat.UDH8, reference=0x1FF)
    assert parts[0].reference == 0xFF and parts[0].short_message[3] == 0xFF


def test_udh16_bytes() -> None:
    parts = split(CJK * 71, Encoding.UCS2, Concat.UDH16, reference=0xBEEF)
    assert len(parts) == 2
    assert parts[0].short_message[:7] == bytes([0x06, 0x08, 0x04, 0xBE, 0xEF, 2, 1])
    assert parts[1].short_message[:7] == bytes([0x06, 0x08, 0x04, 0xBE, 0xEF, 2, 2])
    assert len(parts[0].short_message) == 7 + 66 * 2
    assert parts[0].data_coding == 0x08 and parts[0].esm_class == 0x40


def test_sar_parts_carry_no_udh() -> None:
    parts = split("b" * 321, Encoding.GSM7, Concat.SAR, reference=0x1234)
    assert [p.sar for p in parts] == [(0x1234, 3, 1), (0x1234, 3, 2), (0x1234, 3, 3)]
    assert [p.short_message for p in parts] == [b"b" * 160, b"b" * 160, b"b"]
    assert all(p.esm_class == 0 for p in parts)


def test_payload_is_one_part() -> None:
    (p,) = split(CJK * 500, Encoding.UCS2, Concat.PAYLOAD)
    assert p.payload and p.total == 1 and p.esm_class == 0
    assert p.short_message == (CJK * 500).encode("utf-16-be")


def test_euro_at_a_part_boundary_moves_whole_to_next_part() -> None:
    text = "a" * 152 + "€" + "b" * 10  # the escape would be septets 153 and 154
    parts = split(text, Encoding.GSM7)
    assert parts[0].short_message[6:] == b"a" * 152
    assert parts[1].short_message[6:8] == b"\x1b\x65"
    assert "".join(texts_of(parts, Encoding.GSM7)) == text


def test_emoji_at_a_ucs2_boundary_is_not_split() -> None:
    text = CJK * 66 + EMOJI + CJK * 5  # the pair would be units 67 and 68
    parts = split(text, Encoding.UCS2)
    assert len(parts[0].short_message) == 6 + 66 * 2
    assert parts[1].short_message[6:10] == EMOJI.encode("utf-16-be")
    assert [t for t in texts_of(parts, Encoding.UCS2)] == [CJK * 66, EMOJI + CJK * 5]


def test_too_long_above_max_parts() -> None:
    assert len(split("a" * 153 * 4, Encoding.GSM7, max_parts=4)) == 4
    with pytest.raises(TextError) as exc:
        split("a" * (153 * 4 + 1), Encoding.GSM7, max_parts=4)
    assert exc.value.code == "too_long"
    with pytest.raises(TextError) as exc:  # the UDH counts in one octet
        split("a" * (153 * 255 + 1), Encoding.GSM7, max_parts=1000)
    assert exc.value.code == "too_long"


def test_split_with_wrong_encoding_is_unencodable() -> None:
    with pytest.raises(TextError) as exc:
        split("您好", Encoding.GSM7)
    assert exc.value.code == "unencodable"
    with pytest.raises(TextError) as exc:
        split("您好", Encoding.LATIN1)
    assert exc.value.code == "unencodable"


# ---------------------------------------------------------------- GSM codec


def test_gsm7_table_round_trip() -> None:
    data = encode_gsm7(GSM_BASIC + GSM_EXT)
    assert len(data) == len(GSM_BASIC) + 2 * len(GSM_EXT)
    assert max(data) < 0x80
    assert decode_gsm7(data) == GSM_BASIC + GSM_EXT
    assert encode_gsm7("@£$") == b"\x00\x01\x02"
    assert encode_gsm7("€[") == b"\x1b\x65\x1b\x3c"
    assert is_gsm7(GSM_BASIC + GSM_EXT) and not is_gsm7("\x1b")


def test_gsm7_decode_oddities() -> None:
    assert decode_gsm7(b"\x1b\x41") == "A"  # unknown extension shows the base char
    assert decode_gsm7(b"A\x1b") == "A "  # trailing escape shows a space


def test_pack_known_vector() -> None:
    # 23.038's classic example: "hello" → E8 32 9B FD 06
    assert pack_septets(encode_gsm7("hello")) == bytes.fromhex("e8329bfd06")
    assert unpack_septets(bytes.fromhex("e8329bfd06"), 5) == encode_gsm7("hello")


@pytest.mark.parametrize("fill", range(7))
@given(data=st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)))
def test_pack_unpack_round_trip_with_fill_bits(fill: int, data: bytes) -> None:
    packed = pack_septets(data, fill)
    assert len(packed) == (len(data) * 7 + fill + 7) // 8
    assert packed[0] & ((1 << fill) - 1) == 0 if packed else True
    assert unpack_septets(packed, len(data), fill) == data


@pytest.mark.parametrize("concat", [Concat.UDH8, Concat.UDH16])
def test_packed_parts_start_on_a_septet_boundary_after_the_udh(concat: Concat) -> None:
    text = "The quick brown fox {jumps} over the lazy dog. " * 5
    parts = split(text, Encoding.GSM7, concat, reference=3, packed=True)
    assert len(parts) == 2
    udh_len = 6 if concat is Concat.UDH8 else 7
    fill = (7 - udh_len * 8 % 7) % 7
    assert fill == (1 if concat is Concat.UDH8 else 0)
    first = parts[0].short_message
    cap = 153 if concat is Concat.UDH8 else 152
    assert len(first) == 140  # UDH + packed septets fill the 140-octet TP-UD
    body = unpack_septets(first[udh_len:], cap, fill)
    assert body == encode_gsm7(text)[:cap]
    out = [
        decode_short_message(p.short_message, 0, p.esm_class, smsc_default="gsm7-packed")[0]
        for p in parts
    ]
    assert "".join(out) == text


def test_packed_single_part_with_seven_spare_bits_is_padded_with_cr() -> None:
    (p,) = split("1234567", Encoding.GSM7, packed=True)
    assert len(p.short_message) == 7
    assert unpack_septets(p.short_message, 8)[-1] == 0x0D
    assert decode_short_message(p.short_message, 0, smsc_default="gsm7-packed")[0] == "1234567"


def test_packed_cr_on_an_octet_boundary_reads_as_padding() -> None:
    # The documented limit of packed GSM over SMPP: 8 septets fill 7 octets
    # exactly, and a final CR there is taken for the padding CR.
    (p,) = split("1234567\r", Encoding.GSM7, packed=True)
    assert decode_short_message(p.short_message, 0, smsc_default="gsm7-packed")[0] == "1234567"
    (p,) = split("123456\r", Encoding.GSM7, packed=True)  # not on a boundary: kept
    assert decode_short_message(p.short_message, 0, smsc_default="gsm7-packed")[0] == "123456\r"


# ---------------------------------------------------------------- inbound


def test_decode_short_message_data_codings() -> None:
    assert decode_short_message(b"\x00\x02\x11", 0x00) == ("@$_", None)
    assert decode_short_message(b"Hi @ \xe9", 0x00) == ("Hi @ é", None)  # not septets
    assert decode_short_message(b"Hi @", 0x00, smsc_default="ascii") == ("Hi @", None)
    assert decode_short_message(b"Hi @", 0x01) == ("Hi @", None)
    assert decode_short_message("café".encode("latin-1"), 0x03) == ("café", None)
    assert decode_short_message(b"\x00\xff", 0x04) == ("\x00\xff", None)
    assert decode_short_message(b"\x00\xff", 0x02) == ("\x00\xff", None)
    assert decode_short_message(("您好" + EMOJI).encode("utf-16-be"), 0x08) == (
        "您好" + EMOJI,
        None,
    )
    assert decode_short_message(b"\x00A\x00", 0x08) == ("A\ufffd", None)
    assert decode_short_message("é".encode("utf-16-be"), 0x18)[0] == "é"  # DCS class group


def test_decode_short_message_strips_udh() -> None:
    sm = bytes([0x05, 0x00, 0x03, 0x07, 0x03, 0x02]) + "您好".encode("utf-16-be")
    text, udh = decode_short_message(sm, 0x08, 0x40)
    assert text == "您好"
    assert udh is not None and udh.concat == (7, 3, 2) and udh.length == 6
    # a non-concat element (port addressing 0x05) is kept, concat info is None
    sm = bytes([0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0]) + b"x"
    text, udh = decode_short_message(sm, 0x04, 0x43)
    assert text == "x" and udh is not None and udh.concat is None
    assert udh.elements == ((0x05, bytes([0x0B, 0x84, 0x23, 0xF0])),)


@pytest.mark.parametrize("bad", [b"", b"\x05\x00\x03\x01", b"\x03\x00\x05\x01", b"\x01\x00"])
def test_malformed_udh(bad: bytes) -> None:
    with pytest.raises(TextError) as exc:
        parse_udh(bad)
    assert exc.value.code == "bad_udh"


def test_reassembler_in_any_order_with_duplicates() -> None:
    r = Reassembler(timeout=60)
    assert r.add("k", 7, 3, 3, "c", now=0) is None
    assert r.add("k", 7, 3, 1, "a", now=1) is None
    assert r.add("k", 7, 3, 1, "DUP", now=2) is None
    assert r.add("other", 7, 3, 2, "X", now=2) is None  # another conversation
    assert r.add("k", 7, 3, 2, "b", now=3) == "abc"
    assert r.add("k", 7, 3, 9, "bad seq", now=3) is None  # seq > total: ignored
    assert len(r) == 1  # only "other" is still waiting
    assert r.add("k", 1, 1, 1, "single", now=3) == "single"


def test_reassembler_expires_partial_messages() -> None:
    r = Reassembler(timeout=10)
    r.add("k", 1, 3, 1, "a", now=0)
    r.add("k", 1, 3, 3, "c", now=5)
    r.add("j", 2, 2, 2, "z", now=8)
    assert r.expire(now=9) == []
    assert r.expire(now=10) == [("k", 1, "ac")]
    assert r.expire(now=100) == [("j", 2, "z")]
    assert len(r) == 0


def test_reassembler_joins_a_surrogate_pair_split_by_a_careless_sender() -> None:
    pair = EMOJI.encode("utf-16-be")
    p1 = bytes([0x05, 0x00, 0x03, 0x01, 0x02, 0x01]) + b"\x00a" + pair[:2]
    p2 = bytes([0x05, 0x00, 0x03, 0x01, 0x02, 0x02]) + pair[2:] + b"\x00b"
    r = Reassembler(timeout=10)
    out = None
    for sm in (p1, p2):
        text, udh = decode_short_message(sm, 0x08, 0x40)
        assert udh is not None and udh.concat is not None
        out = r.add("k", udh.concat[0], udh.concat[1], udh.concat[2], text, now=0)
    assert out == "a" + EMOJI + "b"


# ---------------------------------------------------------------- properties

MIXED = st.one_of(
    st.text(max_size=700),
    st.text(alphabet=GSM_BASIC + GSM_EXT, max_size=900),
    st.text(alphabet=st.sampled_from(["a", "€", "{", CJK, EMOJI, "é"]), max_size=600),
)


@settings(max_examples=300, deadline=None)
@given(text=MIXED, concat=st.sampled_from(list(Concat)))
def test_count_parts_equals_len_split(text: str, concat: Concat) -> None:
    encoding, n = count_parts(text, "auto", concat)
    assert len(split(text, encoding, concat)) == n


@settings(max_examples=200, deadline=None)
@given(
    text=MIXED,
    concat=st.sampled_from(list(Concat)),
    ref=st.integers(0, 0xFFFF),
    packed=st.booleans(),
)
def test_split_then_decode_reassembles_the_original(
    text: str, concat: Concat, ref: int, packed: bool
) -> None:
    if packed:
        # Over SMPP no septet count travels with packed GSM: a CR that ends a
        # part exactly on an octet boundary reads as 23.038 padding (see
        # test_packed_cr_on_an_octet_boundary_reads_as_padding).
        text = text.replace("\r", "\n")
    encoding = choose_encoding(text)
    parts = split(text, encoding, concat, reference=ref, packed=packed)
    smsc_default = "gsm7-packed" if packed else "gsm7"
    r = Reassembler(timeout=30)
    whole: str | None = None
    for p in reversed(parts):  # arrival order must not matter
        got, udh = decode_short_message(
            p.short_message, p.data_coding, p.esm_class, smsc_default=smsc_default
        )
        if udh is not None:
            assert udh.concat is not None
            ref_, total, seq = udh.concat
        elif p.sar is not None:
            ref_, total, seq = p.sar
        else:
            ref_, total, seq = 0, 1, 1
        whole = r.add("k", ref_, total, seq, got, now=0)
    assert whole == text


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=400), encoding=st.sampled_from(list(Encoding)))
def test_parts_respect_the_140_octet_user_data_when_packed_or_not_gsm(
    text: str, encoding: Encoding
) -> None:
    try:
        parts = split(text, encoding, packed=True)
    except TextError as e:
        assert e.code == "unencodable"
        return
    for p in parts:
        assert len(p.short_message) <= 140


def _reference_decode(data: bytes) -> str:
    # The rule spelled out one octet at a time (23.038 §6.2.1.1).
    out: list[str] = []
    escaped = False
    for b in data:
        if escaped:
            escaped = False
            ext = dict(zip(b"\x0a\x14\x28\x29\x2f\x3c\x3d\x3e\x40\x65", GSM_EXT, strict=True))
            if b in ext:
                out.append(ext[b])
                continue
            if b == 0x1B:
                out.append(" ")
                continue
        elif b == 0x1B:
            escaped = True
            continue
        out.append(GSM_BASIC[b - (b > 0x1B)] if b < 0x80 else chr(b))
    if escaped:
        out.append(" ")
    return "".join(out)


@settings(max_examples=500)
@given(
    st.binary(max_size=60) | st.lists(st.sampled_from(b"\x1b\x1b\x65\x28\x41\x00\x80")).map(bytes)
)
def test_decode_gsm7_matches_the_octet_by_octet_rule(data: bytes) -> None:
    assert decode_gsm7(data) == _reference_decode(data)


@settings(max_examples=200, deadline=None)
@given(
    text=MIXED,
    requested=st.sampled_from(["gsm7", "latin1", "ucs2", "auto"]),
    concat=st.sampled_from(list(Concat)),
)
def test_forced_encodings_count_like_they_split(text: str, requested: str, concat: Concat) -> None:
    try:
        encoding, n = count_parts(text, requested, concat)
    except TextError as e:
        assert e.code == "unencodable"
        with pytest.raises(TextError):
            split(text, Encoding(requested), concat)
        return
    assert encoding == (choose_encoding(text) if requested == "auto" else requested)
    assert len(split(text, encoding, concat)) == n


def test_split_accepts_plain_strings() -> None:
    parts = split("a" * 161, "gsm7", "udh16", reference=1)  # type: ignore[arg-type]
    assert parts[0].short_message[:2] == b"\x06\x08"
