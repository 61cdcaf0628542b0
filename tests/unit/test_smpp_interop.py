"""Interop with two independent SMPP codecs: smpplib and aiosmpplib, both directions."""

from __future__ import annotations

from typing import Any

import pytest
import smpplib.smpp as smpplib_smpp
from aiosmpplib import protocol as aio
from aiosmpplib import state as aio_state

from protocols.smpp import (
    BindTransceiver,
    BindTransceiverResp,
    CommandId,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Unbind,
    UnbindResp,
    decode,
    encode,
)

UDH = b"\x05\x00\x03\x2a\x02\x01"  # concatenation IE, 8-bit ref 42, part 1 of 2
RECEIPT = (
    b"id:0a1b2c3d sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
    b"stat:DELIVRD err:000 text:hello"
)


# ---------------------------------------------------------------------------
# smpplib
# ---------------------------------------------------------------------------


class _Client:
    """smpplib's PDUs take their sequence numbers from a client object."""

    sequence = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


def smpplib_make(command: str, sequence: int, **fields: Any) -> bytes:
    pdu = smpplib_smpp.make_pdu(command, client=_Client(), **fields)
    pdu.sequence = sequence
    return bytes(pdu.generate())


def smpplib_parse(data: bytes) -> Any:
    return smpplib_smpp.parse_pdu(data, client=_Client())


def test_smpplib_bind_transceiver_decodes_here() -> None:
    wire = smpplib_make(
        "bind_transceiver", 1, system_id="gw01", password="secret", system_type="SMS"
    )
    assert decode(wire) == BindTransceiver(
        1, system_id="gw01", password="secret", system_type="SMS", interface_version=0x34
    )


def test_our_bind_transceiver_and_resp_decode_in_smpplib() -> None:
    theirs = smpplib_parse(encode(BindTransceiver(7, system_id="gw01", password="pw", addr_ton=1)))
    assert (theirs.command, theirs.sequence) == ("bind_transceiver", 7)
    assert (theirs.system_id, theirs.password, theirs.addr_ton) == (b"gw01", b"pw", 1)
    assert theirs.interface_version == 0x34
    resp = BindTransceiverResp(7, system_id="SMSC")
    resp.set(Tag.SC_INTERFACE_VERSION, 0x34)
    theirs = smpplib_parse(encode(resp))
    assert (theirs.command, theirs.system_id, theirs.sc_interface_version) == (
        "bind_transceiver_resp",
        b"SMSC",
        0x34,
    )


def test_smpplib_submit_sm_with_udh_and_tlvs_decodes_here() -> None:
    wire = smpplib_make(
        "submit_sm",
        5,
        source_addr_ton=5,
        source_addr="Sender",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="8613800138000",
        esm_class=0x40,
        registered_delivery=1,
        data_coding=0,
        short_message=UDH + b"hello",
        user_message_reference=3,
        source_port=1234,
        destination_port=5678,
    )
    pdu = decode(wire)
    assert isinstance(pdu, SubmitSm)
    assert pdu.sequence_number == 5
    assert (pdu.source_addr_ton, pdu.source_addr, pdu.dest_addr_ton, pdu.dest_addr_npi) == (
        5,
        "Sender",
        1,
        1,
    )
    assert (pdu.destination_addr, pdu.esm_class, pdu.registered_delivery) == (
        "8613800138000",
        0x40,
        1,
    )
    assert pdu.short_message == UDH + b"hello"
    assert pdu.get(Tag.USER_MESSAGE_REFERENCE) == 3
    assert pdu.get(Tag.SOURCE_PORT) == 1234
    assert pdu.get(Tag.DESTINATION_PORT) == 5678
    assert encode(pdu) == wire  # and we write back the very same bytes


def test_our_submit_sm_with_udh_and_tlvs_decodes_in_smpplib() -> None:
    pdu = SubmitSm(
        9,
        source_addr="Sender",
        source_addr_ton=5,
        destination_addr="8613800138000",
        dest_addr_ton=1,
        dest_addr_npi=1,
        esm_class=0x40,
        registered_delivery=1,
        data_coding=8,
        short_message=UDH + "你好".encode("utf-16-be"),
    )
    pdu.set(Tag.USER_MESSAGE_REFERENCE, 77)
    pdu.set(Tag.SAR_MSG_REF_NUM, 0x1234)
    theirs = smpplib_parse(encode(pdu))
    assert (theirs.command, theirs.sequence) == ("submit_sm", 9)
    assert (theirs.source_addr, theirs.destination_addr) == (b"Sender", b"8613800138000")
    assert (theirs.esm_class, theirs.data_coding, theirs.registered_delivery) == (0x40, 8, 1)
    assert theirs.short_message == UDH + "你好".encode("utf-16-be")
    assert (theirs.user_message_reference, theirs.sar_msg_ref_num) == (77, 0x1234)


def test_submit_sm_resp_both_ways_with_smpplib() -> None:
    wire = smpplib_make("submit_sm_resp", 11, message_id="0a1b2c3d")
    assert decode(wire) == SubmitSmResp(11, 0, "0a1b2c3d")
    theirs = smpplib_parse(encode(SubmitSmResp(12, 0, "msg-12")))
    assert (theirs.command, theirs.sequence, theirs.message_id) == ("submit_sm_resp", 12, b"msg-12")


def test_smpplib_receipt_decodes_here() -> None:
    wire = smpplib_make(
        "deliver_sm",
        3,
        source_addr="8613800138000",
        destination_addr="10690",
        esm_class=0x04,
        short_message=RECEIPT,
        receipted_message_id="0a1b2c3d",
        message_state=2,
    )
    pdu = decode(wire)
    assert isinstance(pdu, DeliverSm)
    assert (pdu.esm_class, pdu.short_message) == (0x04, RECEIPT)
    assert pdu.get(Tag.RECEIPTED_MESSAGE_ID) == "0a1b2c3d"
    assert pdu.get(Tag.MESSAGE_STATE) == 2


def test_our_receipt_decodes_in_smpplib() -> None:
    pdu = DeliverSm(4, source_addr="8613800138000", esm_class=0x04, short_message=RECEIPT)
    pdu.set(Tag.RECEIPTED_MESSAGE_ID, "0a1b2c3d")
    pdu.set(Tag.MESSAGE_STATE, 2)
    theirs = smpplib_parse(encode(pdu))
    assert (theirs.command, theirs.esm_class, theirs.short_message) == (
        "deliver_sm",
        4,
        RECEIPT,
    )
    assert (theirs.receipted_message_id, theirs.message_state) == (b"0a1b2c3d", 2)
    assert smpplib_parse(encode(DeliverSmResp(4))).command == "deliver_sm_resp"


@pytest.mark.parametrize(
    ("command", "ours"),
    [
        ("enquire_link", EnquireLink(21)),
        ("unbind", Unbind(21)),
        ("unbind_resp", UnbindResp(21)),
    ],
)
def test_bodyless_pdus_with_smpplib(command: str, ours: Any) -> None:
    assert decode(smpplib_make(command, 21)) == ours
    theirs = smpplib_parse(encode(ours))
    assert (theirs.command, theirs.sequence) == (command, 21)


# ---------------------------------------------------------------------------
# aiosmpplib
# ---------------------------------------------------------------------------


def aio_parse(data: bytes) -> Any:
    header = aio.SmppMessage.parse_header(data)
    cls = {
        CommandId.BIND_TRANSCEIVER: aio.BindTransceiver,
        CommandId.BIND_TRANSCEIVER_RESP: aio.BindTransceiverResp,
        CommandId.SUBMIT_SM: aio.SubmitSm,
        CommandId.SUBMIT_SM_RESP: aio.SubmitSmResp,
        CommandId.DELIVER_SM: aio.DeliverSm,
        CommandId.DELIVER_SM_RESP: aio.DeliverSmResp,
        CommandId.ENQUIRE_LINK: aio.EnquireLink,
        CommandId.ENQUIRE_LINK_RESP: aio.EnquireLinkResp,
        CommandId.UNBIND: aio.Unbind,
        CommandId.UNBIND_RESP: aio.UnbindResp,
    }[header.smpp_command]
    return cls.from_pdu(data, header)


def test_aiosmpplib_bind_transceiver_decodes_here() -> None:
    wire = aio.BindTransceiver(sequence_num=1, system_id="gw01", password="secret").pdu()
    assert decode(wire) == BindTransceiver(1, system_id="gw01", password="secret")


def test_our_bind_transceiver_and_resp_decode_in_aiosmpplib() -> None:
    theirs = aio_parse(encode(BindTransceiver(3, system_id="gw01", password="pw")))
    assert (theirs.sequence_num, theirs.system_id, theirs.password) == (3, "gw01", "pw")
    assert theirs.interface_version == 0x34
    theirs = aio_parse(encode(BindTransceiverResp(3, system_id="SMSC")))
    assert (theirs.sequence_num, theirs.system_id) == (3, "SMSC")


def test_aiosmpplib_submit_sm_with_udh_and_tlvs_decodes_here() -> None:
    msg = aio.SubmitSm(
        sequence_num=5,
        short_message="hello",
        source=aio_state.PhoneNumber("Sender", aio_state.TON.ALPHANUMERIC),
        destination=aio_state.PhoneNumber(
            "8613800138000", aio_state.TON.INTERNATIONAL, aio_state.NPI.ISDN
        ),
        esm_class=0x40,
        optional_params=[aio_state.OptionalParam(Tag.USER_MESSAGE_REFERENCE, 3)],
    )
    msg.set_encoded_message(UDH + b"hello")  # how aiosmpplib sends a concatenated part
    pdu = decode(msg.pdu())
    assert isinstance(pdu, SubmitSm)
    assert (pdu.sequence_number, pdu.source_addr_ton, pdu.source_addr) == (5, 5, "Sender")
    assert (pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr) == (1, 1, "8613800138000")
    assert (pdu.esm_class, pdu.short_message, pdu.registered_delivery) == (0x40, UDH + b"hello", 1)
    assert pdu.get(Tag.USER_MESSAGE_REFERENCE) == 3


def test_our_submit_sm_with_udh_and_tlvs_decodes_in_aiosmpplib() -> None:
    pdu = SubmitSm(
        6,
        source_addr="Sender",
        destination_addr="8613800138000",
        dest_addr_ton=1,
        dest_addr_npi=1,
        esm_class=0x40,
        registered_delivery=1,
        short_message=UDH + b"hello",
    )
    pdu.set(Tag.USER_MESSAGE_REFERENCE, 3)
    theirs = aio_parse(encode(pdu))
    assert theirs.sequence_num == 6
    assert (theirs.source.number, theirs.destination.number) == ("Sender", "8613800138000")
    assert (theirs.esm_class, theirs.registered_delivery, theirs.short_message) == (
        0x40,
        1,
        "hello",
    )
    params = {p.tag: p.value for p in theirs.optional_params}
    # aiosmpplib turns the UDH concatenation IE into SAR values: ref 42, part 1 of 2.
    assert params[Tag.SAR_MSG_REF_NUM] == 42
    assert (params[Tag.SAR_SEGMENT_SEQNUM], params[Tag.SAR_TOTAL_SEGMENTS]) == (1, 2)
    assert params[Tag.USER_MESSAGE_REFERENCE] == 3


def test_submit_sm_resp_both_ways_with_aiosmpplib() -> None:
    wire = aio.SubmitSmResp(sequence_num=8, message_id="0a1b2c3d").pdu()
    assert decode(wire) == SubmitSmResp(8, 0, "0a1b2c3d")
    theirs = aio_parse(encode(SubmitSmResp(9, 0, "msg-9")))
    assert (theirs.sequence_num, theirs.message_id) == (9, "msg-9")


def test_aiosmpplib_receipt_decodes_here() -> None:
    msg = aio.DeliverSm(
        sequence_num=4,
        short_message=RECEIPT.decode(),
        source=aio_state.PhoneNumber("8613800138000"),
        destination=aio_state.PhoneNumber("10690"),
        esm_class=0x04,
        optional_params=[
            aio_state.OptionalParam(Tag.RECEIPTED_MESSAGE_ID, "0a1b2c3d"),
            aio_state.OptionalParam(Tag.MESSAGE_STATE, 2),
        ],
    )
    pdu = decode(msg.pdu())
    assert isinstance(pdu, DeliverSm)
    assert (pdu.esm_class, pdu.short_message) == (0x04, RECEIPT)
    assert pdu.get(Tag.RECEIPTED_MESSAGE_ID) == "0a1b2c3d"
    assert pdu.get(Tag.MESSAGE_STATE) == 2


def test_our_receipt_decodes_in_aiosmpplib() -> None:
    pdu = DeliverSm(4, source_addr="8613800138000", esm_class=0x04, short_message=RECEIPT)
    pdu.set(Tag.RECEIPTED_MESSAGE_ID, "0a1b2c3d")
    pdu.set(Tag.MESSAGE_STATE, 2)
    theirs = aio_parse(encode(pdu))
    assert (theirs.esm_class, theirs.short_message) == (0x04, RECEIPT.decode())
    params = {p.tag: p.value for p in theirs.optional_params}
    assert params == {Tag.RECEIPTED_MESSAGE_ID: "0a1b2c3d", Tag.MESSAGE_STATE: 2}
    assert aio_parse(encode(DeliverSmResp(4))).sequence_num == 4


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        (aio.EnquireLink(sequence_num=31), EnquireLink(31)),
        (aio.Unbind(sequence_num=31), Unbind(31)),
        (aio.UnbindResp(sequence_num=31), UnbindResp(31)),
    ],
)
def test_bodyless_pdus_with_aiosmpplib(theirs: Any, ours: Any) -> None:
    assert decode(theirs.pdu()) == ours
    back = aio_parse(encode(ours))
    assert (type(back), back.sequence_num) == (type(theirs), 31)
