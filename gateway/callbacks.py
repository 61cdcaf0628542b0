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
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from gateway.config import AccountSettings, ReceiverSettings
from gateway.model import EVENT_BITS
from gateway.store import wh_queue_name


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


# --- callback targets ---------------------------------------------------------
# A callback URL is chosen by a tenant, so the gateway must not become their way
# into its own network (SSRF): the gateway's Redis, a cloud metadata service, an
# admin port on loopback. Literal addresses are refused at submit time; host
# names are checked on every address DNS gives for them when a connection is
# made (`TargetPolicy.allowed_addresses`, asked by gateway.webhook_client), so
# an answer that changes after submit (DNS rebinding) is refused too. docs/security.md.

# Ranges `ipaddress` has no property for: CGNAT (RFC 6598), and the cloud
# metadata addresses (AWS's IPv6 one is inside ULA, but say it by name).
_EXTRA_REFUSED = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def refused_address(address: IPAddress) -> str | None:
    """Why a callback may not go to `address`; None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for name in ("loopback", "private", "link_local", "multicast", "unspecified", "reserved"):
        if getattr(address, f"is_{name}"):
            return f"{address} is a {name.replace('_', '-')} address"
    for net in _EXTRA_REFUSED:
        if address.version == net.version and address in net:
            return f"{address} is in {net}, a refused range"
    return None


class TargetPolicy:
    """An account's `callback_allow`: networks and host names callbacks may go
    to even though the rules above refuse them (a receiver on the LAN)."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        # URL → refused_url's answer: one-message requests name the same few
        # receivers again and again (bounded: cleared when full).
        self._judged: dict[str, str | None] = {}
        for entry in allow:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def refused(self, address: IPAddress) -> str | None:
        if any(address.version == n.version and address in n for n in self.networks):
            return None
        return refused_address(address)

    def allowed_addresses(self, host: str, found: list[str]) -> list[str]:
        """The addresses `host` resolved to that a callback may connect to;
        RefusedTarget if none is (a host named in the allowlist keeps all)."""
        if host.lower().rstrip(".") in self.hosts:
            return found
        kept, reasons = [], []
        for address in found:
            reason = self.refused(ipaddress.ip_address(address.partition("%")[0]))
            if reason is None:
                kept.append(address)
            else:
                reasons.append(reason)
        if not kept:
            raise RefusedTarget(f"{host} resolves only to refused addresses: "
                                + "; ".join(reasons))
        return kept

    def refused_url(self, url: str) -> str | None:
        """Why `url` is refused before any DNS: its scheme, or a literal address
        in a refused range. Host names pass here; their addresses are checked on connecting."""
        try:
            return self._judged[url]
        except KeyError:
            pass
        if len(self._judged) >= 10_000:
            self._judged.clear()
        reason = self._judged[url] = self._judge(url)
        return reason

    def _judge(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            return "not a valid URL"
        if parts.scheme not in ("http", "https") or not host:
            return "must be an http(s) URL with a host"
        host = host.rstrip(".")
        if host in self.hosts:
            return None
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        reason = self.refused(address)
        return f"{reason} (callback_allow opens exceptions)" if reason else None


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


class RefusedTarget(OSError):
    """A callback host resolved only to refused addresses."""
