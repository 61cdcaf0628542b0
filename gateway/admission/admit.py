"""Admission: turn one submitted message into a validated, routed Message.

Shared by every ingress (HTTP now, SMPP later) so the same input is judged the
same way whichever door it came through.

Opt-outs are decided here too, and only here: `Admission.optout_key` says which
opt-out list entry (account, number) may stop a message (marketing only), and
`Admission.opted_out` checks a batch's messages against the list. An ingress
never reads the list itself. The one-message path without an idempotency key
passes `optout_key`'s answer to the enqueue script, which reads the list in
the same atomic step that stores the message (no race with an opt-out added
meanwhile, no extra round trip); every other path calls `opted_out` before it
stores anything.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.admission.callbacks import Receivers, events_mask, refused_target
from gateway.admission.routing import NoRoute, Router
from gateway.core import numbers
from gateway.core.config import (
    AccountSettings,
    ConnectorSettings,
    MessageSettings,
    RouteSettings,
)
from gateway.core.model import Message, id_sequence, new_id, shard_of
from protocols.text import Concat, TextError, count_parts

if TYPE_CHECKING:
    from gateway.store import Store

# Message classes an opt-out stops (OTP and transactional always go).
OPT_OUT_CLASSES = frozenset({"marketing"})


class AdmissionError(ValueError):
    """A message we refuse, with the stable code clients program against."""

    def __init__(self, code: str, detail: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field
        self.status = status


@dataclass(slots=True)
class Submission:
    to: str
    sender: str
    text: str
    msg_class: str = "transactional"
    encoding: str = "auto"
    callback_url: str | None = None
    client_ref: str | None = None
    send_at: float | None = None
    validity: int | None = None
    batch_id: str | None = None
    callback_events: list[str] | None = None


def _check_target(account: AccountSettings, url: str | None) -> None:
    reason = refused_target(account, url)  # gateway.admission.callbacks: SSRF rules
    if reason:
        raise AdmissionError("invalid_callback_url", f"callback_url: {reason}", "callback_url")


Admit = Callable[[str, str, "str | None"], Message]


# --- fields checked the same way on every endpoint ----------------------------------

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_NUMERIC_SENDER = re.compile(r"\+?[0-9]{1,15}")
_senders: dict[str, str | None] = {}  # sender → why it is refused (None: fine)


def parse_send_at(value: Any, horizon: float, now: float | None = None) -> float | None:
    """`send_at` as a Unix time: RFC 3339 with an offset (`Z` or `±hh:mm`), at most
    `horizon` seconds ahead; else 422 `invalid_send_at`. A time past is now."""
    if value is None:
        return None
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise AdmissionError(
            "invalid_send_at",
            "send_at must be an RFC 3339 date-time with an offset, e.g. 2030-01-01T09:00:00Z",
            "send_at",
        )
    try:
        at = dt.datetime.fromisoformat(value.replace("z", "Z")).timestamp()
    except (ValueError, OverflowError):
        raise AdmissionError("invalid_send_at", "send_at is not a real date-time",
                             "send_at") from None
    if at > (now if now is not None else time.time()) + horizon:
        raise AdmissionError(
            "invalid_send_at", f"send_at is more than {int(horizon)} s ahead", "send_at"
        )
    return at


def _sender_problem(sender: str) -> str | None:
    for ch in sender:
        if unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp"):
            return "from holds a control or invisible character"
    if _NUMERIC_SENDER.fullmatch(sender):
        return None
    if sender.isdigit() or sender.lstrip("+").isdigit():
        return "a numeric from has at most 15 digits"
    if len(sender) > 11:
        return "an alphanumeric from has at most 11 characters"
    try:
        sender.encode("latin-1")
    except UnicodeEncodeError:
        return "an alphanumeric from must be Latin-1 (GSM) characters"
    return None


def check_sender(sender: str) -> None:
    """422 `invalid_sender` unless an SMSC can send from `sender`: numeric up to 15
    digits, else alphanumeric up to 11 Latin-1 characters, no control characters."""
    problem = _senders.get(sender, "")
    if problem == "":
        problem = _sender_problem(sender)
        if len(_senders) < 10_000:
            _senders[sender] = problem
    if problem is not None:
        raise AdmissionError("invalid_sender", problem, "from")


class Admission:
    def __init__(self, *, routes: Sequence[RouteSettings],
                 accounts: Mapping[str, AccountSettings],
                 connectors: Mapping[str, ConnectorSettings],
                 messages: MessageSettings) -> None:
        self.limits = messages
        self.router = Router(tuple(routes))
        self.receivers = Receivers()
        self._default_masks = {
            name: events_mask(account.callback_events)
            for name, account in accounts.items()
        }
        self._concat = {
            name: Concat(c.concat) if c.kind == "smpp" else Concat.UDH8
            for name, c in connectors.items()
        }

    def admit(self, account_name: str, account: AccountSettings, sub: Submission,
              shard: int | None = None) -> Message:
        """One message, judged by the same rules as each recipient of a batch
        (`admitter`) without building the closure a batch shares; its id of
        store shard `shard` (default: any)."""
        now = time.time()
        check_sender(sub.sender)
        expires_at = self._expires_at(now, sub.send_at, sub.validity)
        e164, carrier, connectors = self._place(
            account_name, account.default_region, sub.msg_class, sub.sender, sub.to
        )
        enc, parts = self._parts(sub.text, sub.encoding, self._concat[connectors[0]])
        message_id = new_id(shard)
        callback_url = sub.callback_url or account.callback_url
        _check_target(account, callback_url)
        webhook = self.receivers.spec(account_name, account, callback_url,
                                      self._mask(account_name, sub.callback_events), message_id)
        return Message(
            message_id, account_name, e164, sub.sender, sub.text, sub.msg_class, enc, parts,
            now, expires_at, connectors, carrier, callback_url, sub.client_ref, sub.batch_id,
            sub.send_at, {}, webhook,
        )

    def admitter(
        self,
        account_name: str,
        account: AccountSettings,
        *,
        sender: str,
        msg_class: str = "transactional",
        encoding: str = "auto",
        callback_url: str | None = None,
        send_at: float | None = None,
        validity: int | None = None,
        batch_id: str | None = None,
        callback_events: list[str] | None = None,
    ) -> Admit:
        """A function admitting one recipient (to, text, client_ref) with everything
        a batch shares checked and computed once. Raises AdmissionError for a
        shared field that is wrong (validity); the function raises it per
        recipient (number, route, text)."""
        now = time.time()
        check_sender(sender)
        expires_at = self._expires_at(now, send_at, validity)
        callback_url = callback_url or account.callback_url
        _check_target(account, callback_url)
        mask = self._mask(account_name, callback_events)
        spec = self.receivers.spec
        region = account.default_region
        place = self._place
        count = self._parts
        concat = self._concat
        # A batch's messages live in the batch's store shard.
        next_id = id_sequence(shard_of(batch_id) if batch_id else None)
        # (text, concat) -> (encoding, parts): a template without variables is
        # counted once per batch, not once per recipient.
        counted: dict[tuple[str, Concat], tuple[str, int]] = {}

        def admit_one(to: str, text: str, client_ref: str | None) -> Message:
            e164, carrier, connectors = place(account_name, region, msg_class, sender, to)
            key = (text, concat[connectors[0]])
            known = counted.get(key)
            if known is None:
                known = count(text, encoding, key[1])
                if len(counted) < 64:
                    counted[key] = known
            # Positional, in field order: keyword calls cost a microsecond more
            # per recipient.
            message_id = next_id()
            return Message(
                message_id, account_name, e164, sender, text, msg_class, known[0], known[1],
                now, expires_at, connectors, carrier, callback_url, client_ref, batch_id,
                send_at, {}, spec(account_name, account, callback_url, mask, message_id),
            )

        return admit_one

    @staticmethod
    def optout_key(account_name: str, message: Message) -> tuple[str, str] | None:
        """The opt-out list entry (account, number) that stops `message` if
        listed; None when no opt-out applies to it."""
        if message.msg_class in OPT_OUT_CLASSES:
            return account_name, message.to
        return None

    async def opted_out(self, store: Store, account_name: str,
                        messages: Sequence[Message]) -> list[bool]:
        """Per message, whether its recipient's opt-out stops it (one Redis
        call for all; none when no opt-out applies to any)."""
        keys = [self.optout_key(account_name, m) for m in messages]
        checked = [key[1] for key in keys if key is not None]
        if not checked:
            return [False] * len(messages)
        if len(checked) == 1:  # one SISMEMBER, not EXISTS then SMISMEMBER
            listed = iter([await store.optout_has(account_name, checked[0])])
        else:
            listed = iter(await store.optout_many(account_name, checked))
        return [key is not None and next(listed) for key in keys]

    def _mask(self, account_name: str, callback_events: list[str] | None) -> int:
        """The statuses that make a callback: the request's, else the account's."""
        if callback_events is not None:
            return events_mask(callback_events)
        return self._default_masks.get(account_name, 0)

    def _expires_at(self, now: float, send_at: float | None, validity: int | None) -> float:
        limits = self.limits
        if validity is None:
            validity = limits.default_validity
        if not 0 < validity <= limits.max_validity:
            raise AdmissionError(
                "invalid_validity",
                f"validity must be between 1 and {limits.max_validity} seconds",
                "validity",
            )
        return max(now, send_at or now) + validity

    def _place(
        self, account_name: str, region: str, msg_class: str, sender: str, to: str
    ) -> tuple[str, str, list[str]]:
        """The recipient in E.164, its carrier, and the connectors of its route."""
        try:
            e164, carrier, _tz = numbers.normalize(to, region)
        except numbers.InvalidNumber as exc:
            raise AdmissionError("invalid_number", str(exc), "to") from exc
        try:
            connectors = self.router.route(account_name, msg_class, e164, carrier, sender)
        except NoRoute as exc:
            raise AdmissionError("no_route", str(exc), "to") from exc
        return e164, carrier, connectors

    def _parts(self, text: str, encoding: str, concat: Concat) -> tuple[str, int]:
        """Encoding and parts as the first connector of the route will cut the text
        (UDH, SAR and message_payload carry different amounts per submit_sm)."""
        try:
            enc, parts = count_parts(text, encoding, concat)
        except TextError as exc:
            raise AdmissionError(exc.code, str(exc), "text") from exc
        max_parts = self.limits.max_parts
        if parts > max_parts:
            raise AdmissionError(
                "too_long",
                f"text needs {parts} parts ({enc}); this gateway allows {max_parts}",
                "text",
            )
        return str(enc), parts
