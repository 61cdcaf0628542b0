"""Routes: the first rule that matches a message picks its ordered connectors.

A rule matches on account, class and destination prefix (E.164 without "+");
unset fields match anything. Rules are tried in file order, as in Kannel's
and Jasmin's routers, so specific rules go first and a catch-all last.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import RouteSettings


class NoRoute(LookupError):
    code = "no_route"


@dataclass(frozen=True, slots=True)
class Router:
    rules: tuple[RouteSettings, ...]

    def route(self, account: str, msg_class: str, e164: str) -> list[str]:
        digits = e164.lstrip("+")
        for rule in self.rules:
            if rule.account is not None and rule.account != account:
                continue
            if rule.message_class is not None and rule.message_class != msg_class:
                continue
            if rule.prefix is not None and not digits.startswith(rule.prefix.lstrip("+")):
                continue
            return list(rule.connectors)
        raise NoRoute(f"no route for account {account!r}, class {msg_class!r}")
