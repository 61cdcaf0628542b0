"""Routes: the first rule that matches a message picks its ordered connectors.

A rule matches on account, class, carrier (as `phonenumbers` names it, e.g.
"China Mobile"), destination prefix (E.164 digits without "+") and sender;
unset fields match anything. Rules are tried in file order, as in Kannel's and
Jasmin's routers, so specific rules go first and a catch-all last.

The result is one ordered list per message: within a rank, connectors are
ordered by a weighted random draw (so weights split traffic), and later ranks
follow as fallbacks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gateway.config import RouteSettings, WeightedConnector


class NoRoute(LookupError):
    code = "no_route"


def weighted_order(rank: list[WeightedConnector], rng: random.Random) -> list[str]:
    """Connectors of one rank, first drawn with probability weight/total, and so on."""
    if len(rank) == 1:
        return [rank[0].connector]
    pool = list(rank)
    out: list[str] = []
    while pool:
        pick = rng.choices(range(len(pool)), weights=[c.weight for c in pool])[0]
        out.append(pool.pop(pick).connector)
    return out


@dataclass(frozen=True, slots=True)
class Router:
    rules: tuple[RouteSettings, ...]
    rng: random.Random = field(default_factory=random.Random)

    def route(
        self, account: str, msg_class: str, e164: str, carrier: str = "", sender: str = ""
    ) -> list[str]:
        digits = e164.lstrip("+")
        for rule in self.rules:
            if rule.account is not None and rule.account != account:
                continue
            if rule.message_class is not None and rule.message_class != msg_class:
                continue
            if rule.carrier is not None and rule.carrier.casefold() != carrier.casefold():
                continue
            if rule.prefix is not None and not digits.startswith(rule.prefix.lstrip("+")):
                continue
            if rule.sender is not None and rule.sender != sender:
                continue
            order: list[str] = []
            for rank in rule.ranked():
                order += [c for c in weighted_order(rank, self.rng) if c not in order]
            return order
        raise NoRoute(f"no route for account {account!r}, class {msg_class!r}")
