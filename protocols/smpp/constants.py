"""SMPP 3.4 numbers: command ids, command statuses, TLV tags and their value types.

Every value here is from the SMPP v3.4 specification (12-Oct-1999, Issue 1.2):
command ids from section 5.1.2.1, command statuses from 5.1.3, TLV tags and
value sizes from 5.3.2. Names are the spec's names, upper-cased.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = [
    "TAG_TYPES",
    "CommandId",
    "CommandStatus",
    "Tag",
    "TagType",
    "TlvKind",
]

# A response's command_id is its request's with bit 31 set (section 5.1.2.1).
RESP_BIT = 0x8000_0000


class CommandId(enum.IntEnum):
    """SMPP 3.4 section 5.1.2.1, table 5-1."""

    GENERIC_NACK = 0x8000_0000
    BIND_RECEIVER = 0x0000_0001
    BIND_RECEIVER_RESP = 0x8000_0001
    BIND_TRANSMITTER = 0x0000_0002
    BIND_TRANSMITTER_RESP = 0x8000_0002
    QUERY_SM = 0x0000_0003
    QUERY_SM_RESP = 0x8000_0003
    SUBMIT_SM = 0x0000_0004
    SUBMIT_SM_RESP = 0x8000_0004
    DELIVER_SM = 0x0000_0005
    DELIVER_SM_RESP = 0x8000_0005
    UNBIND = 0x0000_0006
    UNBIND_RESP = 0x8000_0006
    REPLACE_SM = 0x0000_0007
    REPLACE_SM_RESP = 0x8000_0007
    CANCEL_SM = 0x0000_0008
    CANCEL_SM_RESP = 0x8000_0008
    BIND_TRANSCEIVER = 0x0000_0009
    BIND_TRANSCEIVER_RESP = 0x8000_0009
    OUTBIND = 0x0000_000B
    ENQUIRE_LINK = 0x0000_0015
    ENQUIRE_LINK_RESP = 0x8000_0015
    SUBMIT_MULTI = 0x0000_0021
    SUBMIT_MULTI_RESP = 0x8000_0021
    ALERT_NOTIFICATION = 0x0000_0102
    DATA_SM = 0x0000_0103
    DATA_SM_RESP = 0x8000_0103

    @property
    def is_response(self) -> bool:
        return bool(self & RESP_BIT)


class CommandStatus(enum.IntEnum):
    """SMPP 3.4 section 5.1.3, table 5-2 (every defined error code)."""

    ESME_ROK = 0x0000_0000  # No Error
    ESME_RINVMSGLEN = 0x0000_0001  # Message Length is invalid
    ESME_RINVCMDLEN = 0x0000_0002  # Command Length is invalid
    ESME_RINVCMDID = 0x0000_0003  # Invalid Command ID
    ESME_RINVBNDSTS = 0x0000_0004  # Incorrect BIND Status for given command
    ESME_RALYBND = 0x0000_0005  # ESME Already in Bound State
    ESME_RINVPRTFLG = 0x0000_0006  # Invalid Priority Flag
    ESME_RINVREGDLVFLG = 0x0000_0007  # Invalid Registered Delivery Flag
    ESME_RSYSERR = 0x0000_0008  # System Error
    ESME_RINVSRCADR = 0x0000_000A  # Invalid Source Address
    ESME_RINVDSTADR = 0x0000_000B  # Invalid Dest Addr
    ESME_RINVMSGID = 0x0000_000C  # Message ID is invalid
    ESME_RBINDFAIL = 0x0000_000D  # Bind Failed
    ESME_RINVPASWD = 0x0000_000E  # Invalid Password
    ESME_RINVSYSID = 0x0000_000F  # Invalid System ID
    ESME_RCANCELFAIL = 0x0000_0011  # Cancel SM Failed
    ESME_RREPLACEFAIL = 0x0000_0013  # Replace SM Failed
    ESME_RMSGQFUL = 0x0000_0014  # Message Queue Full
    ESME_RINVSERTYP = 0x0000_0015  # Invalid Service Type
    ESME_RINVNUMDESTS = 0x0000_0033  # Invalid number of destinations
    ESME_RINVDLNAME = 0x0000_0034  # Invalid Distribution List name
    ESME_RINVDESTFLAG = 0x0000_0040  # Destination flag is invalid (submit_multi)
    ESME_RINVSUBREP = 0x0000_0042  # Invalid 'submit with replace' request
    ESME_RINVESMCLASS = 0x0000_0043  # Invalid esm_class field data
    ESME_RCNTSUBDL = 0x0000_0044  # Cannot Submit to Distribution List
    ESME_RSUBMITFAIL = 0x0000_0045  # submit_sm or submit_multi failed
    ESME_RINVSRCTON = 0x0000_0048  # Invalid Source address TON
    ESME_RINVSRCNPI = 0x0000_0049  # Invalid Source address NPI
    ESME_RINVDSTTON = 0x0000_0050  # Invalid Destination address TON
    ESME_RINVDSTNPI = 0x0000_0051  # Invalid Destination address NPI
    ESME_RINVSYSTYP = 0x0000_0053  # Invalid system_type field
    ESME_RINVREPFLAG = 0x0000_0054  # Invalid replace_if_present flag
    ESME_RINVNUMMSGS = 0x0000_0055  # Invalid number of messages
    ESME_RTHROTTLED = 0x0000_0058  # Throttling error (ESME has exceeded allowed message limits)
    ESME_RINVSCHED = 0x0000_0061  # Invalid Scheduled Delivery Time
    ESME_RINVEXPIRY = 0x0000_0062  # Invalid message validity period (Expiry time)
    ESME_RINVDFTMSGID = 0x0000_0063  # Predefined Message Invalid or Not Found
    ESME_RX_T_APPN = 0x0000_0064  # ESME Receiver Temporary App Error Code
    ESME_RX_P_APPN = 0x0000_0065  # ESME Receiver Permanent App Error Code
    ESME_RX_R_APPN = 0x0000_0066  # ESME Receiver Reject Message Error Code
    ESME_RQUERYFAIL = 0x0000_0067  # query_sm request failed
    ESME_RINVOPTPARSTREAM = 0x0000_00C0  # Error in the optional part of the PDU Body
    ESME_ROPTPARNOTALLWD = 0x0000_00C1  # Optional Parameter not allowed
    ESME_RINVPARLEN = 0x0000_00C2  # Invalid Parameter Length
    ESME_RMISSINGOPTPARAM = 0x0000_00C3  # Expected Optional Parameter missing
    ESME_RINVOPTPARAMVAL = 0x0000_00C4  # Invalid Optional Parameter Value
    ESME_RDELIVERYFAILURE = 0x0000_00FE  # Delivery Failure (used for data_sm_resp)
    ESME_RUNKNOWNERR = 0x0000_00FF  # Unknown Error
    # 0x400-0x4FF are reserved for SMSC vendor specific errors; they stay plain ints.


class Tag(enum.IntEnum):
    """SMPP 3.4 section 5.3.2, table 5-11 (every standard optional parameter)."""

    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383


class TlvKind(enum.Enum):
    """How a TLV value is typed (section 3.1 data types)."""

    INT = "int"  # unsigned big-endian Integer
    CSTRING = "cstring"  # C-Octet String (NUL-terminated)
    OCTETS = "octets"  # Octet String
    EMPTY = "empty"  # no value: presence is the information


class TagType(NamedTuple):
    kind: TlvKind
    size: int  # canonical size for INT (what `set` writes); 0 otherwise
    min_len: int  # smallest value length accepted on decode
    max_len: int  # largest value length accepted on decode


def _int(size: int, min_len: int | None = None) -> TagType:
    return TagType(TlvKind.INT, size, size if min_len is None else min_len, size)


def _cstr(max_len: int) -> TagType:
    # A C-octet string TLV's length counts its NUL (section 5.3.2). We accept a
    # value without the NUL on decode: several SMSCs send receipted_message_id
    # that way, and a lost receipt costs more than a lenient parse.
    return TagType(TlvKind.CSTRING, 0, 0, max_len)


def _oct(min_len: int, max_len: int) -> TagType:
    return TagType(TlvKind.OCTETS, 0, min_len, max_len)


# Value sizes from the per-tag subsections of section 5.3.2. The spec gives
# source_telematics_id as 1 octet and dest_telematics_id as 2; smpplib and some
# SMSCs send 2 for both, so 1..2 is accepted for the source one.
TAG_TYPES: dict[int, TagType] = {
    Tag.DEST_ADDR_SUBUNIT: _int(1),  # 5.3.2.1
    Tag.DEST_NETWORK_TYPE: _int(1),  # 5.3.2.3
    Tag.DEST_BEARER_TYPE: _int(1),  # 5.3.2.5
    Tag.DEST_TELEMATICS_ID: _int(2),  # 5.3.2.7
    Tag.SOURCE_ADDR_SUBUNIT: _int(1),  # 5.3.2.2
    Tag.SOURCE_NETWORK_TYPE: _int(1),  # 5.3.2.4
    Tag.SOURCE_BEARER_TYPE: _int(1),  # 5.3.2.6
    Tag.SOURCE_TELEMATICS_ID: TagType(TlvKind.INT, 1, 1, 2),  # 5.3.2.8
    Tag.QOS_TIME_TO_LIVE: _int(4),  # 5.3.2.9
    Tag.PAYLOAD_TYPE: _int(1),  # 5.3.2.10
    Tag.ADDITIONAL_STATUS_INFO_TEXT: _cstr(256),  # 5.3.2.11
    Tag.RECEIPTED_MESSAGE_ID: _cstr(65),  # 5.3.2.12
    Tag.MS_MSG_WAIT_FACILITIES: _int(1),  # 5.3.2.13
    Tag.PRIVACY_INDICATOR: _int(1),  # 5.3.2.14
    Tag.SOURCE_SUBADDRESS: _oct(2, 23),  # 5.3.2.15
    Tag.DEST_SUBADDRESS: _oct(2, 23),  # 5.3.2.16
    Tag.USER_MESSAGE_REFERENCE: _int(2),  # 5.3.2.17
    Tag.USER_RESPONSE_CODE: _int(1),  # 5.3.2.18
    Tag.SOURCE_PORT: _int(2),  # 5.3.2.20
    Tag.DESTINATION_PORT: _int(2),  # 5.3.2.21
    Tag.SAR_MSG_REF_NUM: _int(2),  # 5.3.2.22
    Tag.LANGUAGE_INDICATOR: _int(1),  # 5.3.2.19
    Tag.SAR_TOTAL_SEGMENTS: _int(1),  # 5.3.2.23
    Tag.SAR_SEGMENT_SEQNUM: _int(1),  # 5.3.2.24
    Tag.SC_INTERFACE_VERSION: _int(1),  # 5.3.2.25
    Tag.CALLBACK_NUM_PRES_IND: _int(1),  # 5.3.2.37
    Tag.CALLBACK_NUM_ATAG: _oct(0, 65),  # 5.3.2.38
    Tag.NUMBER_OF_MESSAGES: _int(1),  # 5.3.2.39
    Tag.CALLBACK_NUM: _oct(4, 19),  # 5.3.2.36
    Tag.DPF_RESULT: _int(1),  # 5.3.2.28
    Tag.SET_DPF: _int(1),  # 5.3.2.29
    Tag.MS_AVAILABILITY_STATUS: _int(1),  # 5.3.2.30
    Tag.NETWORK_ERROR_CODE: _oct(3, 3),  # 5.3.2.31
    Tag.MESSAGE_PAYLOAD: _oct(0, 0xFFFF),  # 5.3.2.32
    Tag.DELIVERY_FAILURE_REASON: _int(1),  # 5.3.2.33
    Tag.MORE_MESSAGES_TO_SEND: _int(1),  # 5.3.2.34
    Tag.MESSAGE_STATE: _int(1),  # 5.3.2.35
    Tag.USSD_SERVICE_OP: _int(1),  # 5.3.2.44
    Tag.DISPLAY_TIME: _int(1),  # 5.3.2.26
    Tag.SMS_SIGNAL: _int(2),  # 5.3.2.40
    Tag.MS_VALIDITY: _int(1),  # 5.3.2.27
    Tag.ALERT_ON_MESSAGE_DELIVERY: TagType(TlvKind.EMPTY, 0, 0, 0),  # 5.3.2.41
    Tag.ITS_REPLY_TYPE: _int(1),  # 5.3.2.42
    Tag.ITS_SESSION_INFO: _oct(2, 2),  # 5.3.2.43
}
