"""Which status callbacks a message gets, and which receiver lane they take.

Decided once, at admission, and stored with the message as its callback spec
(``"<events mask> <queue>"``, the store's `w` field), so the status scripts
queue exactly the events asked for without asking anyone:

- the events: the request's `callback_events`, else the account's (final
  statuses by default), as a mask of `model.EVENT_BITS`;
- the receiver: the callback URL of the message (or its account's), with the
  account's batch size, linger and concurrency, or those its
  `callback_receivers` entry gives that URL;
- the lane: one of the receiver's `concurrency` queues, picked from the
  message id. All of one message's callbacks share it and a lane has one
  request in flight at a time, which is what keeps them in order while the
  receiver as a whole takes `concurrency` requests at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from gateway.core.config import AccountSettings, ReceiverSettings
from gateway.core.model import EVENT_BITS
from gateway.core.targets import TargetPolicy
from gateway.store.keys import wh_queue_name


def events_mask(events: Iterable[str]) -> int:
    mask = 0
    for event in events:
        mask |= EVENT_BITS[event]
    return mask


def receiver_id(url: str) -> str:
    """A short, stable name of a receiver URL for queue names (no URL in keys)."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


class Receivers:
    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[ReceiverSettings, str]] = {}

    def spec(self, account_name: str, account: AccountSettings, url: str | None,
             mask: int, message_id: str) -> str:
        """The callback spec of one message; "" when it gets no callbacks."""
        if not url or not mask:
            return ""
        return f"{mask} {self.queue(account_name, account, url, message_id)}"

    def queue(self, account_name: str, account: AccountSettings, url: str,
              message_id: str) -> str:
        """The receiver queue (lane) of one message's callbacks to `url`."""
        known = self._known.get((account_name, url))
        if known is None:
            known = (account.receiver(url), receiver_id(url))
            if len(self._known) < 4096:  # per-message URLs must not grow it for ever
                self._known[(account_name, url)] = known
        receiver, rid = known
        # The id's last hex digits are random (or a batch's counter): an even spread.
        lane = int(message_id[-4:], 16) % receiver.concurrency
        return wh_queue_name(receiver.batch_size, receiver.batch_linger, lane, rid,
                             account_name)


# --- callback targets (rules: gateway.core.targets) ---------------------------------

_policies: dict[tuple[str, ...], TargetPolicy] = {}


def target_policy(account: AccountSettings) -> TargetPolicy:
    key = tuple(account.callback_allow)
    policy = _policies.get(key)
    if policy is None:
        policy = _policies[key] = TargetPolicy(key)
    return policy


def refused_target(account: AccountSettings, url: str | None) -> str | None:
    """Why the callback URL a message asks for is refused at submit; None if
    it is not (or there is none)."""
    if not url:
        return None
    return target_policy(account).refused_url(url)
