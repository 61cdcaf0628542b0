"""Routes as an operator writes them: first match wins, ranks fall back, weights split."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gateway.admission.routing import NoRoute, Router
from gateway.core.config import RouteSettings, WeightedConnector


def rule(**kw: object) -> RouteSettings:
    return RouteSettings.model_validate(kw)


def test_first_matching_rule_wins_and_unset_fields_match_anything() -> None:
    router = Router((
        rule(account="shop", **{"class": "otp"}, connectors=["fast"]),
        rule(carrier="China Mobile", connectors=["cmcc", "backup"]),
        rule(prefix="86", connectors=["cn"]),
        rule(connectors=["any"]),
    ))
    assert router.route("shop", "otp", "+8613800138000", "China Mobile") == ["fast"]
    assert router.route("crm", "otp", "+8613800138000", "China Mobile") == ["cmcc", "backup"]
    assert router.route("crm", "otp", "+8618900000000", "China Telecom") == ["cn"]
    assert router.route("crm", "otp", "+447911123456", "Vodafone") == ["any"]


def test_sender_rule_and_no_route() -> None:
    router = Router((rule(sender="BANK", connectors=["secure"]),))
    assert router.route("a", "otp", "+8613800138000", sender="BANK") == ["secure"]
    with pytest.raises(NoRoute):
        router.route("a", "otp", "+8613800138000", sender="SHOP")


def test_weights_split_traffic_within_a_rank_and_later_ranks_are_fallbacks() -> None:
    ranks = [
        [WeightedConnector(connector="a", weight=3), WeightedConnector(connector="b", weight=1)],
        [WeightedConnector(connector="c")],
    ]
    router = Router((RouteSettings(ranks=ranks),), rng=random.Random(7))
    firsts = Counter()
    for _ in range(4000):
        order = router.route("x", "marketing", "+8613800138000")
        assert sorted(order[:2]) == ["a", "b"] and order[2] == "c"
        firsts[order[0]] += 1
    assert 2700 < firsts["a"] < 3300  # 3:1 split, with room for chance


def test_a_route_needs_exactly_one_form() -> None:
    with pytest.raises(ValueError):
        RouteSettings.model_validate({"connectors": ["a"], "ranks": [[{"connector": "b"}]]})
    with pytest.raises(ValueError):
        RouteSettings.model_validate({})


def test_memoised_answers_follow_the_longest_prefix_and_every_match_field() -> None:
    router = Router((
        rule(prefix="+8613", connectors=["cn-mobile"]),
        rule(prefix="86", connectors=["cn"]),
        rule(carrier="Vodafone", connectors=["voda"]),
        rule(connectors=["any"]),
    ))
    for _ in range(2):  # the second round is answered from the memo
        assert router.route("a", "otp", "+8613800138000") == ["cn-mobile"]
        assert router.route("a", "otp", "+8618900000000") == ["cn"]
        assert router.route("a", "otp", "+447911123456", "Vodafone") == ["voda"]
        assert router.route("a", "otp", "+447911123456", "EE") == ["any"]
