"""SMSC delivery receipts: the SMPP 3.4 Appendix B text, its real-world variants,
the message_state values (§5.2.28) and SMSC message id normalisation.

Appendix B calls the format "SMSC vendor specific" and gives one typical
example; parsers in the wild (Kannel, Jasmin, jsmpp, php-smpp, gosmpp) keep
meeting receipts that drop ``sub``/``dlvrd``, write ``submit_date``, send
12-digit dates with seconds, 32-hex-digit ids, ``err:0`` or ``err:0000``, or
an empty ``text:``.  So the parser finds keys rather than matching one rigid
regex, and only insists on ``id`` and ``stat``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "MESSAGE_STATE_TO_STAT",
    "STAT_TO_MESSAGE_STATE",
    "Receipt",
    "format_receipt",
    "merge_receipt_tlvs",
    "message_state_for",
    "normalize_message_id",
    "parse_receipt",
]

# SMPP 3.4 §5.2.28 message_state, keyed by the 7-letter Appendix B stat.
STAT_TO_MESSAGE_STATE: dict[str, int] = {
    "ENROUTE": 1,
    "DELIVRD": 2,
    "EXPIRED": 3,
    "DELETED": 4,
    "UNDELIV": 5,
    "ACCEPTD": 6,
    "UNKNOWN": 7,
    "REJECTD": 8,
}
MESSAGE_STATE_TO_STAT: dict[int, str] = {v: k for k, v in STAT_TO_MESSAGE_STATE.items()}

# Spelled-out states some SMSCs send instead of the 7-letter forms.
_STAT_ALIASES: dict[str, str] = {
    "DELIVERED": "DELIVRD",
    "UNDELIVERABLE": "UNDELIV",
    "UNDELIVERED": "UNDELIV",
    "ACCEPTED": "ACCEPTD",
    "REJECTED": "REJECTD",
}


def message_state_for(stat: str) -> int:
    """message_state for an Appendix B stat; UNKNOWN (7) for anything unlisted."""
    return STAT_TO_MESSAGE_STATE.get(stat.upper(), 7)


@dataclass(slots=True)
class Receipt:
    id: str
    sub: int | None
    dlvrd: int | None
    submit_date: datetime | None
    done_date: datetime | None
    stat: str
    err: str | None
    text: str


# A key is a known word at the start or after whitespace, then ':'.  "text"
# ends the scan: everything after it is the message text, colons included.
_KEY_RE = re.compile(
    r"(?:^|(?<=\s))(id|sub|dlvrd|submit[ _]?date|done[ _]?date|stat|err|text)[ \t]*:",
    re.IGNORECASE,
)
_INT_RE = re.compile(r"\d+")
# The layout nearly every SMSC sends (Appendix B order, any key case, either
# date spelling): one anchored match instead of a key scan, 10x cheaper.
_COMMON_RE = re.compile(
    r"\s*id:(\S+)\s+sub:(\S+)\s+dlvrd:(\S+)\s+submit[ _]date:(\S+)\s+done[ _]date:(\S+)"
    r"\s+stat:(\S+)\s+err:(\S+)(?:\s+text:(?: )?(.*))?\s*",
    re.IGNORECASE | re.DOTALL,
)


@functools.lru_cache(maxsize=4096)  # receipts arrive in bursts sharing their minute
def _parse_date(value: str) -> datetime | None:
    """YYMMDDhhmm, YYMMDDhhmmss or YYYYMMDDhhmmss; two-digit years are 20YY
    (receipts are never older than 2000, and strptime's 1969 pivot would put
    them a century off).  SMSC-local time: Appendix B gives no zone, so the
    result is naive.  Anything else, or an impossible date, gives None."""
    n = len(value)
    if n not in (10, 12, 14) or not value.isdigit():
        return None
    if n == 14:
        year, rest = int(value[:4]), value[4:]
    else:
        year, rest = 2000 + int(value[:2]), value[2:]
    try:
        return datetime(
            year,
            int(rest[0:2]),
            int(rest[2:4]),
            int(rest[4:6]),
            int(rest[6:8]),
            int(rest[8:10]) if len(rest) >= 10 else 0,
        )
    except ValueError:
        return None


def _parse_int(value: str) -> int | None:
    if value.isdigit():
        return int(value)
    m = _INT_RE.match(value)
    return int(m.group()) if m else None


def parse_receipt(text: str | bytes) -> Receipt | None:
    """Parse an Appendix B receipt; None when it is not one (no id or no stat).

    Tolerates any key case, ``submit_date``/``submitdate``, missing fields,
    fields in any order, extra whitespace, 10/12/14-digit dates (an invalid
    date gives None for that field) and a ``text:`` whose value has colons.
    """
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    m = _COMMON_RE.fullmatch(text)
    if m is not None:
        msg_id, sub, dlvrd, submit, done, stat, err, body = m.groups()
        stat = stat.upper()
        return Receipt(
            id=msg_id,
            sub=_parse_int(sub),
            dlvrd=_parse_int(dlvrd),
            submit_date=_parse_date(submit),
            done_date=_parse_date(done),
            stat=_STAT_ALIASES.get(stat, stat),
            err=err,
            text=body or "",
        )
    return _parse_by_keys(text)


def _parse_by_keys(text: str) -> Receipt | None:
    """The tolerant path: find each key, whatever the order or spacing."""
    fields: dict[str, str] = {}
    body = ""
    matches = list(_KEY_RE.finditer(text))
    for i, m in enumerate(matches):
        key = m.group(1).lower().replace("_", "").replace(" ", "")
        if key == "text":
            body = text[m.end() :]
            # A single separating space after "text:" is format, not content.
            body = body[1:] if body.startswith(" ") else body
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[m.end() : end].strip()
        # The first token is the value; anything after it (before the next
        # key) is noise some SMSCs leave, e.g. "err:000 ,".
        value = value.split()[0] if value else ""
        fields.setdefault(key, value)
    msg_id = fields.get("id", "")
    stat = fields.get("stat", "").upper()
    if not msg_id or not stat:
        return None
    stat = _STAT_ALIASES.get(stat, stat)
    sub = fields.get("sub")
    dlvrd = fields.get("dlvrd")
    submit = fields.get("submitdate")
    done = fields.get("donedate")
    return Receipt(
        id=msg_id,
        sub=_parse_int(sub) if sub else None,
        dlvrd=_parse_int(dlvrd) if dlvrd else None,
        submit_date=_parse_date(submit) if submit else None,
        done_date=_parse_date(done) if done else None,
        stat=stat,
        err=fields.get("err") or None,
        text=body,
    )


def _fmt_date(value: datetime | None, seconds: bool) -> str:
    if value is None:
        return "0" * (12 if seconds else 10)
    return value.strftime("%y%m%d%H%M%S" if seconds else "%y%m%d%H%M")


def format_receipt(r: Receipt, *, seconds: bool = False) -> str:
    """Appendix B text: ``id:… sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done
    date:YYMMDDhhmm stat:DDDDDDD err:E Text:`` + the first 20 characters.

    Missing counters print as 000, a missing err as 000, a missing date as
    zeros (which parse back to None); ``seconds`` writes 12-digit dates.
    """
    sub = 0 if r.sub is None else r.sub
    dlvrd = 0 if r.dlvrd is None else r.dlvrd
    err = "000" if r.err is None else r.err
    return (
        f"id:{r.id} sub:{sub:03d} dlvrd:{dlvrd:03d}"
        f" submit date:{_fmt_date(r.submit_date, seconds)}"
        f" done date:{_fmt_date(r.done_date, seconds)}"
        f" stat:{r.stat} err:{err} Text:{r.text[:20]}"
    )


def merge_receipt_tlvs(
    receipt: Receipt | None,
    receipted_message_id: str | None,
    message_state: int | None,
    network_error_code: bytes | None = None,
) -> Receipt | None:
    """Combine the text receipt with the deliver_sm TLVs (SMPP 3.4 §5.3.2.12,
    §5.3.2.35, §5.3.2.31).

    The TLVs are typed and win where present; a receipt carried only in TLVs
    (empty short_message) still yields a Receipt.  network_error_code (type
    octet + 2-octet code) fills ``err`` as the decimal code when the text has
    none.
    """
    if receipt is None:
        if not receipted_message_id or message_state is None:
            return None
        receipt = Receipt(receipted_message_id, None, None, None, None, "UNKNOWN", None, "")
    if receipted_message_id:
        receipt.id = receipted_message_id
    if message_state is not None:
        receipt.stat = MESSAGE_STATE_TO_STAT.get(message_state, "UNKNOWN")
    if receipt.err is None and network_error_code is not None and len(network_error_code) == 3:
        receipt.err = str(int.from_bytes(network_error_code[1:], "big"))
    return receipt


def normalize_message_id(smsc_id: str, mode: str = "auto") -> str:
    """A canonical form of an SMSC message id, so the id from submit_sm_resp,
    the receipt's ``id:`` and receipted_message_id compare equal.

    SMSCs mix representations: some answer submit_sm_resp with a hex id and
    write the receipt id in decimal (or the reverse), pad with zeros, or
    change case.  Modes (a per-connector setting):

    * ``hex``: the id is hexadecimal → its decimal value as a string.
    * ``dec``: the id is decimal → leading zeros stripped.
    * ``auto`` / ``str``: whitespace stripped, lower-cased, leading zeros
      stripped (works for both as long as one side is not converted).

    An id that is not valid for ``hex``/``dec`` falls back to ``auto``: a
    receipt must never be lost to a parse error.
    """
    s = smsc_id.strip().strip("\x00")
    if mode == "hex":
        t = s[2:] if s[:2] in ("0x", "0X") else s
        try:
            return str(int(t, 16))
        except ValueError:
            pass
    elif mode == "dec" and s.isdigit():
        return s.lstrip("0") or "0"
    low = s.lower()
    stripped = low.lstrip("0")
    if stripped:
        return stripped
    return "0" if low else ""
