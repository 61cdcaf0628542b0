"""Where a tenant's callback may go: the callback target rules.

A callback URL is chosen by a tenant, so the gateway must not become their way
into its own network (SSRF): the gateway's Redis, a cloud metadata service, an
admin port on loopback. Literal addresses are refused at submit time (and in
the config, at load); host names are checked on every address DNS gives for
them when a connection is made (`TargetPolicy.allowed_addresses`, asked by
gateway.notify.client), so an answer that changes after submit (DNS
rebinding) is refused too. docs/security.md.

Pure rules with no gateway imports, so the config can check its own URLs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

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


class RefusedTarget(OSError):
    """A callback host resolved only to refused addresses."""
