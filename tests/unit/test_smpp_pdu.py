"""SMPP 3.4 PDU codec: round trips, golden bytes, strict decoding, TLVs."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.smpp import (
    PDU_CLASSES,
    TAG_TYPES,
    AlertNotification,
    BindReceiverResp,
    BindTransceiver,
    BindTransmitter,
    BindTransmitterResp,
    CommandId,
    CommandStatus,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    SmeAddress,
    SmppError,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tag,
    TlvKind,
    Unbind,
    UnbindResp,
    UnsuccessSme,
    decode,
    encode,
    generic_nack,
    response_for,
    tlv_bytes,
)

S = CommandStatus
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def h(text: str) -> bytes:
    """Hex with spaces, newlines and `#` comments allowed."""
    return bytes.fromhex("".join(line.split("#")[0].strip() for line in text.splitlines()))


def header(length: int, command_id: int, status: int, seq: int) -> bytes:
    return struct.pack(">IIII", length, command_id, status, seq)


# ---------------------------------------------------------------------------
# Strategies built from each class's own layout table
# ---------------------------------------------------------------------------


def cstr(max_with_nul: int) -> st.SearchStrategy[str]:
    alphabet = st.characters(min_codepoint=1, max_codepoint=255)
    return st.text(alphabet, max_size=max_with_nul - 1)


u8 = st.integers(0, 255)
u32 = st.integers(0, 0xFFFF_FFFF)


def tlv_value_for(tag: int) -> st.SearchStrategy[bytes]:
    spec = TAG_TYPES[tag]
    if spec.kind is TlvKind.INT:
        return st.integers(0, 256**spec.size - 1).map(lambda v: tlv_bytes(tag, v))
    if spec.kind is TlvKind.CSTRING:
        return cstr(spec.max_len).map(lambda v: tlv_bytes(tag, v))
    if spec.kind is TlvKind.EMPTY:
        return st.just(b"")
    return st.binary(min_size=spec.min_len, max_size=min(spec.max_len, 300))


known_tlv = st.sampled_from(sorted(TAG_TYPES)).flatmap(
    lambda tag: st.tuples(st.just(tag), tlv_value_for(tag))
)
unknown_tlv = st.tuples(
    st.integers(0, 0xFFFF).filter(lambda t: t not in TAG_TYPES), st.binary(max_size=40)
)
tlv_dicts = st.lists(st.one_of(known_tlv, unknown_tlv), max_size=5).map(dict)

dest_address = st.one_of(
    st.builds(SmeAddress, cstr(21), u8, u8),
    st.builds(DistributionList, cstr(21)),
)
unsuccess_sme = st.builds(UnsuccessSme, cstr(21), u8, u8, u32)


def pdus_of(cls: type[Pdu]) -> st.SearchStrategy[Pdu]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "sequence_number": u32,
        "command_status": u32,
        "tlvs": tlv_dicts,
    }
    for f in cls._layout:
        if f.kind == "cstring":
            fields[f.name] = cstr(f.max)
        elif f.kind == "u8":
            fields[f.name] = u8
        elif f.kind == "sm":
            fields[f.name] = st.binary(max_size=254)
        elif f.kind == "dests":
            fields[f.name] = st.lists(dest_address, max_size=4)
        else:
            fields[f.name] = st.lists(unsuccess_sme, max_size=4)
    return st.builds(cls, **fields)


any_pdu = st.sampled_from(PDU_CLASSES).flatmap(pdus_of)


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", PDU_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_pdu_type_round_trips(cls: type[Pdu], data: st.DataObject) -> None:
    pdu = data.draw(pdus_of(cls))
    wire = encode(pdu)
    assert struct.unpack_from(">I", wire)[0] == len(wire)
    assert decode(wire) == pdu
    assert decode(memoryview(wire)) == pdu


@pytest.mark.parametrize("cls", PDU_CLASSES, ids=lambda c: c.__name__)
def test_defaults_round_trip_and_carry_their_command_id(cls: type[Pdu]) -> None:
    pdu = cls(sequence_number=9)
    wire = encode(pdu)
    assert struct.unpack_from(">I", wire, 4)[0] == cls.command_id
    assert decode(wire) == pdu


def test_short_construction_from_the_gateway() -> None:
    pdu = SubmitSm(destination_addr="8613800138000", short_message=b"hi")
    assert decode(encode(pdu)) == pdu
    assert pdu.sequence_number == 0 and pdu.command_status == 0 and pdu.tlvs == {}


# ---------------------------------------------------------------------------
# Golden bytes, hand-checked against the layouts of SMPP 3.4 section 4
# ---------------------------------------------------------------------------


def test_golden_enquire_link() -> None:
    wire = h("00000010 00000015 00000000 00000001")
    assert encode(EnquireLink(sequence_number=1)) == wire
    assert decode(wire) == EnquireLink(sequence_number=1)
    assert encode(EnquireLinkResp(1)) == h("00000010 80000015 00000000 00000001")


def test_golden_unbind_and_generic_nack() -> None:
    assert encode(Unbind(2)) == h("00000010 00000006 00000000 00000002")
    assert encode(UnbindResp(2)) == h("00000010 80000006 00000000 00000002")
    nack = generic_nack(7, S.ESME_RINVCMDID)
    assert encode(nack) == h("00000010 80000000 00000003 00000007")


def test_golden_bind_transmitter() -> None:
    # section 4.1.1: system_id, password, system_type, interface_version,
    # addr_ton, addr_npi, address_range.
    wire = h(
        """
        0000002f 00000002 00000000 00000001
        534d50503354455354 00   # system_id "SMPP3TEST"
        7365637265743038 00     # password "secret08"
        5355424d495431 00       # system_type "SUBMIT1"
        34                      # interface_version 0x34
        01 01                   # addr_ton, addr_npi
        00                      # address_range ""
        """
    )
    pdu = BindTransmitter(
        sequence_number=1,
        system_id="SMPP3TEST",
        password="secret08",
        system_type="SUBMIT1",
        addr_ton=1,
        addr_npi=1,
    )
    assert len(wire) == 0x2F
    assert encode(pdu) == wire
    assert decode(wire) == pdu


def test_golden_bind_transmitter_resp_with_sc_interface_version() -> None:
    wire = h("0000001a 80000002 00000000 00000001 534d534300 0210 0001 34")
    pdu = BindTransmitterResp(1, system_id="SMSC")
    pdu.set(Tag.SC_INTERFACE_VERSION, 0x34)
    assert encode(pdu) == wire
    assert decode(wire).get(Tag.SC_INTERFACE_VERSION) == 0x34


def test_golden_submit_sm_from_the_classic_example() -> None:
    # The 60-octet submit_sm dissected on Wikipedia's SMPP page (and smppserver.org).
    wire = h(
        """
        0000003C 00000004 00000000 00000005
        00 02 08 35353500             # service_type "", source 2/8 "555"
        01 01 35353535353535353500    # destination 1/1 "555555555"
        00 00 00 00 00 00 00 00 00    # esm_class .. sm_default_msg_id, times empty
        0F 48656C6C6F2077696B697065646961  # sm_length 15, "Hello wikipedia"
        """
    )
    pdu = SubmitSm(
        sequence_number=5,
        source_addr_ton=2,
        source_addr_npi=8,
        source_addr="555",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="555555555",
        short_message=b"Hello wikipedia",
    )
    assert encode(pdu) == wire
    assert decode(wire) == pdu


def test_golden_submit_sm_with_tlvs_in_wire_order() -> None:
    body = (
        h("00 01 01 3100 01 01 3200 40 00 00 00 00 01 00 08 00 02 0001")  # mandatory
        + h("020c 0002 1234")  # sar_msg_ref_num 0x1234
        + h("020e 0001 02")  # sar_total_segments 2
        + h("020f 0001 01")  # sar_segment_seqnum 1
    )
    wire = header(16 + len(body), 4, 0, 0x1122) + body
    pdu = decode(wire)
    assert isinstance(pdu, SubmitSm)
    assert (pdu.source_addr, pdu.destination_addr, pdu.esm_class) == ("1", "2", 0x40)
    assert (pdu.registered_delivery, pdu.data_coding, pdu.short_message) == (1, 8, b"\x00\x01")
    assert list(pdu.tlvs) == [Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM]
    assert pdu.get(Tag.SAR_MSG_REF_NUM) == 0x1234
    assert pdu.get(Tag.SAR_TOTAL_SEGMENTS) == 2
    assert pdu.get(Tag.SAR_SEGMENT_SEQNUM) == 1
    assert encode(pdu) == wire


def test_golden_deliver_sm_receipt_tlvs() -> None:
    pdu = DeliverSm(
        sequence_number=3,
        source_addr="8613800138000",
        destination_addr="10690",
        esm_class=0x04,
        short_message=b"id:abc sub:001 dlvrd:001 stat:DELIVRD err:000 text:",
    )
    pdu.set(Tag.RECEIPTED_MESSAGE_ID, "abc")
    pdu.set(Tag.MESSAGE_STATE, 2)
    pdu.set(Tag.NETWORK_ERROR_CODE, b"\x03\x00\x00")
    wire = encode(pdu)
    assert wire.endswith(h("001e 0004 61626300 0427 0001 02 0423 0003 030000"))
    back = decode(wire)
    assert back.get(Tag.RECEIPTED_MESSAGE_ID) == "abc"
    assert back.get(Tag.MESSAGE_STATE) == 2
    assert back.get(Tag.NETWORK_ERROR_CODE) == b"\x03\x00\x00"


def test_error_response_is_sent_without_body() -> None:
    # section 4.4.2: the body "is not returned if the command_status field
    # contains a non-zero value".
    assert encode(SubmitSmResp(4, S.ESME_RTHROTTLED)) == h("00000010 80000004 00000058 00000004")
    assert decode(h("00000010 80000004 00000058 00000004")) == SubmitSmResp(4, 0x58)
    assert decode(h("00000010 80000002 0000000e 00000001")) == BindTransmitterResp(1, 0xE)
    # ... and one that does carry a body (many SMSCs send message_id anyway) decodes too.
    assert decode(h("00000011 80000004 00000045 00000004 00")) == SubmitSmResp(4, 0x45)


def test_submit_multi_and_resp_layout() -> None:
    pdu = SubmitMulti(
        sequence_number=1,
        source_addr="S",
        dest_address=[SmeAddress("123", 1, 1), DistributionList("friends")],
        short_message=b"x",
    )
    wire = encode(pdu)
    assert h("02 01 01 01 31323300 02 667269656e647300") in wire
    assert decode(wire) == pdu
    resp = SubmitMultiResp(1, 0, "m1", [UnsuccessSme("123", 1, 1, S.ESME_RINVDSTADR)])
    assert encode(resp)[16:] == h("6d3100 01 01 01 31323300 0000000b")
    assert decode(encode(resp)) == resp


# ---------------------------------------------------------------------------
# TLVs
# ---------------------------------------------------------------------------


def test_unknown_tlvs_are_preserved_byte_for_byte() -> None:
    vendor = h("1401 0003 abcdef") + h("3000 0000") + h("020c 0002 0007") + h("ffff 0001 00")
    wire = encode(DeliverSm(sequence_number=2, short_message=b"x"))
    wire = header(len(wire) + len(vendor), 5, 0, 2) + wire[16:] + vendor
    pdu = decode(wire)
    assert pdu.tlvs == {0x1401: h("abcdef"), 0x3000: b"", 0x020C: h("0007"), 0xFFFF: b"\x00"}
    assert list(pdu.tlvs) == [0x1401, 0x3000, 0x020C, 0xFFFF]
    assert pdu.get(0x1401) == h("abcdef")
    assert encode(pdu) == wire


def test_tlv_typed_access() -> None:
    pdu = SubmitSm()
    pdu.set(Tag.MESSAGE_PAYLOAD, b"long" * 100)
    pdu.set(Tag.QOS_TIME_TO_LIVE, 86400)
    pdu.set(Tag.ALERT_ON_MESSAGE_DELIVERY, True)
    pdu.set(Tag.ADDITIONAL_STATUS_INFO_TEXT, "ok")
    assert pdu.tlvs[Tag.QOS_TIME_TO_LIVE] == h("00015180")
    assert pdu.tlvs[Tag.ADDITIONAL_STATUS_INFO_TEXT] == b"ok\0"
    back = decode(encode(pdu))
    assert back.get(Tag.MESSAGE_PAYLOAD) == b"long" * 100
    assert back.get_int(Tag.QOS_TIME_TO_LIVE) == 86400
    assert back.get(Tag.ALERT_ON_MESSAGE_DELIVERY) == b""
    assert back.get_str(Tag.ADDITIONAL_STATUS_INFO_TEXT) == "ok"
    assert back.get(Tag.SAR_MSG_REF_NUM) is None
    with pytest.raises(SmppError) as err:
        pdu.set(Tag.SAR_TOTAL_SEGMENTS, 256)
    assert err.value.command_status == S.ESME_RINVOPTPARAMVAL
    with pytest.raises(SmppError):
        pdu.set(Tag.NETWORK_ERROR_CODE, b"\x01")
    with pytest.raises(TypeError):
        pdu.set(Tag.MESSAGE_STATE, "2")


def test_receipted_message_id_without_nul_is_accepted() -> None:
    # Several SMSCs omit the terminating NUL; the receipt matters more.
    wire = encode(DeliverSm(1, esm_class=4))
    tlv = h("001e 0006") + b"ABC123"
    wire = header(len(wire) + len(tlv), 5, 0, 1) + wire[16:] + tlv
    assert decode(wire).get(Tag.RECEIPTED_MESSAGE_ID) == "ABC123"


def test_every_standard_tag_has_a_type() -> None:
    assert set(Tag) == set(TAG_TYPES)
    assert len(CommandStatus) == 48 and len(CommandId) == 27  # table 5-2, table 5-1


# ---------------------------------------------------------------------------
# Strict decoding: each error carries the status to answer with
# ---------------------------------------------------------------------------


def bad(wire: bytes) -> SmppError:
    with pytest.raises(SmppError) as err:
        decode(wire)
    return err.value


def with_body(command_id: int, body: bytes, seq: int = 42) -> bytes:
    return header(16 + len(body), command_id, 0, seq) + body


def test_command_length_disagreeing_with_data() -> None:
    wire = encode(EnquireLink(1))
    assert bad(wire[:12]).command_status == S.ESME_RINVCMDLEN
    err = bad(wire + b"\0")
    assert err.command_status == S.ESME_RINVCMDLEN
    assert (err.command_id, err.sequence_number) == (CommandId.ENQUIRE_LINK, 1)


def test_unknown_command_id() -> None:
    err = bad(header(16, 0x0000_0099, 0, 5))
    assert (err.command_status, err.command_id, err.sequence_number) == (S.ESME_RINVCMDID, 0x99, 5)


@pytest.mark.parametrize(
    ("pdu", "cut"),
    [(SubmitSm(1, source_addr="123", short_message=b"hello"), n) for n in (1, 3, 10, 20, 25)]
    + [(BindTransceiver(1, system_id="sys", password="pw"), n) for n in (1, 2, 5, 9)]
    + [(QuerySmResp(1, message_id="m", final_date=""), n) for n in (1, 2)],
)
def test_truncated_body_is_a_length_error(pdu: Pdu, cut: int) -> None:
    wire = encode(pdu)
    short = header(len(wire) - cut, pdu.command_id, 0, 1) + wire[16:-cut]
    err = bad(short)
    assert err.command_status == S.ESME_RINVCMDLEN
    assert err.sequence_number == 1


@pytest.mark.parametrize(
    ("command_id", "body", "status"),
    [
        (CommandId.BIND_TRANSMITTER, b"A" * 16 + b"\0pw\0\0\x34\0\0\0", S.ESME_RINVSYSID),
        (CommandId.BIND_TRANSMITTER, b"sys\0" + b"P" * 9 + b"\0\0\x34\0\0\0", S.ESME_RINVPASWD),
        (CommandId.BIND_RECEIVER, b"s\0p\0" + b"T" * 13 + b"\0\x34\0\0\0", S.ESME_RINVSYSTYP),
        (CommandId.SUBMIT_SM, b"CMTxyz\0" + b"\0" * 40, S.ESME_RINVSERTYP),
        (CommandId.SUBMIT_SM, b"\0\1\1" + b"1" * 21 + b"\0" + b"\0" * 40, S.ESME_RINVSRCADR),
        (CommandId.DELIVER_SM, b"\0\1\1\0\1\1" + b"2" * 21 + b"\0" + b"\0" * 40, S.ESME_RINVDSTADR),
        (CommandId.SUBMIT_SM_RESP, b"m" * 65 + b"\0", S.ESME_RINVMSGID),
        (CommandId.QUERY_SM, b"m" * 65 + b"\0\0\0\0", S.ESME_RINVMSGID),
        (CommandId.SUBMIT_SM, b"\0\0\0\0\0\0\0\0\0\0" + b"9" * 17 + b"\0" * 30, S.ESME_RINVSCHED),
        (
            CommandId.SUBMIT_SM,
            b"\0\0\0\0\0\0\0\0\0\0\0" + b"9" * 17 + b"\0" * 30,
            S.ESME_RINVEXPIRY,
        ),
    ],
)
def test_over_long_c_octet_strings(command_id: int, body: bytes, status: int) -> None:
    err = bad(with_body(command_id, body))
    assert err.command_status == status
    assert (err.command_id, err.sequence_number) == (command_id, 42)


def test_c_octet_maxima_are_exact() -> None:
    # 20 characters fit a source_addr (max 21 with NUL); 21 do not.
    ok = SubmitSm(source_addr="1" * 20, destination_addr="2" * 20, service_type="ABCDE")
    assert decode(encode(ok)) == ok
    for pdu in (SubmitSm(source_addr="1" * 21), SubmitSm(destination_addr="2" * 21)):
        with pytest.raises(SmppError):
            encode(pdu)
    assert decode(encode(DataSm(source_addr="1" * 64))).source_addr == "1" * 64  # data_sm: 65


def test_short_message_over_254_or_past_the_end() -> None:
    wire = encode(SubmitSm(1, short_message=b"x" * 10))
    sm_at = len(wire) - 11
    over = bytearray(wire)
    over[sm_at] = 255
    assert bad(bytes(over)).command_status == S.ESME_RINVMSGLEN
    past = bytearray(wire)
    past[sm_at] = 11
    assert bad(bytes(past)).command_status == S.ESME_RINVCMDLEN
    with pytest.raises(SmppError) as err:
        encode(SubmitSm(short_message=b"x" * 255))
    assert err.value.command_status == S.ESME_RINVMSGLEN


@pytest.mark.parametrize(
    ("tlv", "status"),
    [
        (h("0427"), S.ESME_RINVOPTPARSTREAM),  # half a TLV header
        (h("0427 0005 02"), S.ESME_RINVOPTPARSTREAM),  # length runs past the PDU
        (h("0427 0002 0002"), S.ESME_RINVPARLEN),  # message_state is 1 octet
        (h("0423 0002 0300"), S.ESME_RINVPARLEN),  # network_error_code is 3 octets
        (h("020c 0001 01"), S.ESME_RINVPARLEN),  # sar_msg_ref_num is 2 octets
        (b"\x00\x1e\x00\x42" + b"a" * 66, S.ESME_RINVPARLEN),  # receipted_message_id max 65
        (h("0427 0001 02 0427 0001 03"), S.ESME_RINVOPTPARSTREAM),  # repeated tag
    ],
)
def test_bad_tlvs(tlv: bytes, status: int) -> None:
    wire = encode(DeliverSm(9, esm_class=4))
    err = bad(header(len(wire) + len(tlv), 5, 0, 9) + wire[16:] + tlv)
    assert (err.command_status, err.sequence_number) == (status, 9)


def test_submit_multi_bad_dest_flag_and_count() -> None:
    body = b"\0\0\0\0" + b"\x01\x03" + b"\0" * 20
    assert bad(with_body(CommandId.SUBMIT_MULTI, body)).command_status == S.ESME_RINVDESTFLAG
    body = b"\0\0\0\0" + b"\xff" + b"\0" * 20
    assert bad(with_body(CommandId.SUBMIT_MULTI, body)).command_status == S.ESME_RINVNUMDESTS


def test_encode_refuses_what_decode_would_refuse() -> None:
    cases: list[tuple[Pdu, int]] = [
        (SubmitSm(source_addr="a\0b"), S.ESME_RINVSRCADR),
        (SubmitSm(destination_addr="电话"), S.ESME_RINVDSTADR),
        (SubmitSm(esm_class=256), S.ESME_RINVPARLEN),
        (BindTransmitter(password="1234567890"), S.ESME_RINVPASWD),
        (SubmitSmResp(message_id="m" * 65), S.ESME_RINVMSGID),
        (DeliverSmResp(sequence_number=-1), S.ESME_RSYSERR),
    ]
    for pdu, status in cases:
        with pytest.raises(SmppError) as err:
            encode(pdu)
        assert err.value.command_status == status, pdu
    bad_tlv = SubmitSm()
    bad_tlv.tlvs[Tag.MESSAGE_STATE] = b"\x00\x01"
    with pytest.raises(SmppError):
        encode(bad_tlv)


# ---------------------------------------------------------------------------
# Random input raises nothing but SmppError
# ---------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_smpp_error(data: bytes) -> None:
    with contextlib.suppress(SmppError):
        decode(data)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(CommandId)),
    st.integers(0, 3),
    st.binary(max_size=120),
)
def test_random_bodies_behind_valid_headers(command_id: int, status: int, body: bytes) -> None:
    wire = header(16 + len(body), command_id, status, 1) + body
    try:
        pdu = decode(wire)
    except SmppError as err:
        assert err.command_id == command_id and err.sequence_number == 1
        return
    # Whatever decodes, re-encodes, and decodes to the same thing.
    assert decode(encode(pdu)) == pdu


@FAST
@given(any_pdu, st.data())
def test_mutated_pdus_raise_only_smpp_error(pdu: Pdu, data: st.DataObject) -> None:
    wire = bytearray(encode(pdu))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(u8)
    try:
        back = decode(bytes(wire))
    except SmppError:
        return
    assert decode(encode(back)) == back


# ---------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------


def test_make_resp_and_response_for() -> None:
    req = SubmitSm(sequence_number=77, destination_addr="1")
    resp = req.make_resp(message_id="abc")
    assert resp == SubmitSmResp(77, 0, "abc")
    assert response_for(req, S.ESME_RTHROTTLED) == SubmitSmResp(77, S.ESME_RTHROTTLED)
    assert response_for(QuerySm(5), message_id="m", message_state=2) == QuerySmResp(
        5, 0, "m", message_state=2
    )
    assert response_for(BindTransceiver(3), system_id="x").command_id == (
        CommandId.BIND_TRANSCEIVER_RESP
    )
    assert response_for(Outbind(4), S.ESME_RINVCMDID) == GenericNack(4, S.ESME_RINVCMDID)
    assert response_for(AlertNotification(6)) == GenericNack(6, 0)
    assert isinstance(DeliverSm(2).make_resp(), DeliverSmResp)
    assert BindReceiverResp.command_id == CommandId.BIND_RECEIVER_RESP


def test_smpp_error_names_its_status() -> None:
    err = SmppError(S.ESME_RINVBNDSTS)
    assert "ESME_RINVBNDSTS" in str(err)
    assert "0x0000045f" in str(SmppError(0x45F))
