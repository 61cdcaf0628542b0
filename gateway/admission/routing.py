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

from gateway.core.config import RouteSettings, WeightedConnector


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


class Router:
    def __init__(self, rules: tuple[RouteSettings, ...], rng: random.Random | None = None) -> None:
        self.rules = rules
        self.rng = rng or random.Random()
        # Ranks built once (RouteSettings.ranked() builds models on every call).
        self._ranks = [rule.ranked() for rule in rules]
        # A rule whose ranks are single connectors always gives the same order, so
        # its answer is memoised per (account, class, carrier, sender, the number's
        # digits up to the longest prefix any rule tests): exact, and a batch of
        # 10,000 recipients routes with a dict lookup each.
        self._prefix_len = max((len(r.prefix.lstrip("+")) for r in rules if r.prefix), default=0)
        self._memo: dict[tuple[str, str, str, str, str], list[str]] = {}

    def route(
        self, account: str, msg_class: str, e164: str, carrier: str = "", sender: str = ""
    ) -> list[str]:
        """The message's connectors in order: primary first, then fallbacks. The
        list may be shared between messages; callers must not change it."""
        digits = e164.lstrip("+")
        key = (account, msg_class, carrier, sender, digits[: self._prefix_len])
        order = self._memo.get(key)
        if order is not None:
            return order
        for rule, ranks in zip(self.rules, self._ranks, strict=True):
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
            order = []
            for rank in ranks:
                order += [c for c in weighted_order(rank, self.rng) if c not in order]
            if all(len(rank) == 1 for rank in ranks) and len(self._memo) < 100_000:
                self._memo[key] = order
            return order
        raise NoRoute(f"no route for account {account!r}, class {msg_class!r}")
