"""How a message becomes submit_sm PDUs under each connector's settings."""

from __future__ import annotations

import time

from gateway.connectors.smpp import SmppConnector
from gateway.core.config import ConnectorSettings
from gateway.core.model import Message
from protocols.smpp import Tag


async def _never(_name: str, _pdus: list) -> list[int]:  # type: ignore[type-arg]
    return []


def message(text: str, encoding: str, sender: str = "SHOP") -> Message:
    now = time.time()
    return Message(id="01a2000000000000000000000001", account="a", to="+8613800138000",
                   sender=sender, text=text, msg_class="otp", encoding=encoding, parts=1,
                   created_at=now, expires_at=now + 60, connectors=["c"])


def pdus(text: str, encoding: str, **settings: object) -> list:  # type: ignore[type-arg]
    conn = SmppConnector("c", ConnectorSettings(system_id="x", **settings), _never)  # type: ignore[arg-type]
    m = message(text, encoding)
    return [conn.submit_sm(m, part) for part in conn.parts(m)]


def test_gsm_data_coding_is_a_connector_setting() -> None:
    assert pdus("hello", "gsm7")[0].data_coding == 0x00
    assert pdus("hello", "gsm7", gsm_data_coding=1)[0].data_coding == 0x01
    assert pdus("你好", "ucs2", gsm_data_coding=1)[0].data_coding == 0x08


def test_every_part_asks_for_a_receipt_and_addresses_are_typed() -> None:
    parts = pdus("x" * 400, "gsm7")
    assert len(parts) == 3
    assert all(p.registered_delivery == 1 for p in parts)
    assert all(p.esm_class & 0x40 for p in parts)  # UDH present
    assert {(p.source_addr_ton, p.source_addr_npi, p.source_addr) for p in parts} == {
        (5, 0, "SHOP")
    }
    assert {(p.dest_addr_ton, p.dest_addr_npi, p.destination_addr) for p in parts} == {
        (1, 1, "8613800138000")
    }


def test_sar_and_payload_carry_the_text_in_tlvs() -> None:
    sar = pdus("y" * 200, "gsm7", concat="sar")
    assert [(p.get(Tag.SAR_SEGMENT_SEQNUM), p.get(Tag.SAR_TOTAL_SEGMENTS)) for p in sar] == [
        (1, 2), (2, 2)
    ]
    assert all(p.esm_class & 0x40 == 0 for p in sar)
    (payload,) = pdus("z" * 500, "gsm7", concat="payload")
    assert payload.short_message == b"" and len(payload.get(Tag.MESSAGE_PAYLOAD)) == 500


def test_source_ton_npi_can_be_forced() -> None:
    (pdu,) = pdus("hi", "gsm7", source_ton=0, source_npi=1)
    assert (pdu.source_addr_ton, pdu.source_addr_npi) == (0, 1)
