"""Admission: turn one submitted message into a validated, routed Message.

Shared by every ingress (HTTP now, SMPP later) so the same input is judged the
same way whichever door it came through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway import numbers
from gateway.callbacks import Receivers, events_mask
from gateway.config import AccountSettings, Settings
from gateway.model import Message, id_sequence
from gateway.routing import NoRoute, Router
from protocols.text import Concat, TextError, count_parts


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


Admit = Callable[[str, str, "str | None"], Message]


class Admission:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.router = Router(tuple(settings.routes))
        self.receivers = Receivers()
        self._default_masks = {
            name: events_mask(account.callback_events)
            for name, account in settings.accounts.items()
        }
        self._concat = {
            name: Concat(c.concat) if c.kind == "smpp" else Concat.UDH8
            for name, c in settings.connectors.items()
        }

    def admit(self, account_name: str, account: AccountSettings, sub: Submission) -> Message:
        return self.admitter(
            account_name, account, sender=sub.sender, msg_class=sub.msg_class,
            encoding=sub.encoding, callback_url=sub.callback_url, send_at=sub.send_at,
            validity=sub.validity, batch_id=sub.batch_id, callback_events=sub.callback_events,
        )(sub.to, sub.text, sub.client_ref)

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
        limits = self.settings.messages
        if validity is None:
            validity = limits.default_validity
        if not 0 < validity <= limits.max_validity:
            raise AdmissionError(
                "invalid_validity",
                f"validity must be between 1 and {limits.max_validity} seconds",
                "validity",
            )
        now = time.time()
        start = max(now, send_at or now)
        expires_at = start + validity
        callback_url = callback_url or account.callback_url
        mask = (events_mask(callback_events) if callback_events is not None
                else self._default_masks.get(account_name, 0))
        spec = self.receivers.spec
        region = account.default_region
        route = self.router.route
        concat = self._concat
        max_parts = limits.max_parts
        next_id = id_sequence()
        # (text, concat) -> (encoding, parts): a template without variables is
        # counted once per batch, not once per recipient.
        counted: dict[tuple[str, Concat], tuple[str, int]] = {}

        def admit_one(to: str, text: str, client_ref: str | None) -> Message:
            try:
                e164, carrier, _tz = numbers.normalize(to, region)
            except numbers.InvalidNumber as exc:
                raise AdmissionError("invalid_number", str(exc), "to") from exc
            try:
                connectors = route(account_name, msg_class, e164, carrier, sender)
            except NoRoute as exc:
                raise AdmissionError("no_route", str(exc), "to") from exc
            # Parts as the first connector of the route will cut them (UDH, SAR and
            # message_payload carry different amounts of text per submit_sm).
            key = (text, concat[connectors[0]])
            known = counted.get(key)
            if known is None:
                try:
                    enc, parts = count_parts(text, encoding, key[1])
                except TextError as exc:
                    raise AdmissionError(exc.code, str(exc), "text") from exc
                if parts > max_parts:
                    raise AdmissionError(
                        "too_long",
                        f"text needs {parts} parts ({enc}); this gateway allows {max_parts}",
                        "text",
                    )
                known = (str(enc), parts)
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
