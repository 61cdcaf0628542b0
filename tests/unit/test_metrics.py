"""The per-message counters and histogram, as a Prometheus scrape sees them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.core import metrics


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.REGISTRY).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def test_counters_and_histogram_expose_what_was_counted() -> None:
    before = samples()
    metrics.count_status("undelivered")
    metrics.count_status("undelivered")
    metrics.RECEIPTS.labels("t-conn", "UNDELIV").inc(3)
    latency = metrics.SUBMIT_LATENCY.labels("t-conn")
    for value in (0.001, 0.004, 0.3, 60):
        latency.observe(value)
    after = samples()

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert grew("smsgw_messages_total", status="undelivered") == 2
    assert grew("smsgw_receipts_total", connector="t-conn", stat="UNDELIV") == 3
    bucket = "smsgw_submit_latency_seconds_bucket"
    assert grew(bucket, connector="t-conn", le="0.001") == 1  # upper bounds are inclusive
    assert grew(bucket, connector="t-conn", le="0.005") == 2
    assert grew(bucket, connector="t-conn", le="0.25") == 2
    assert grew(bucket, connector="t-conn", le="0.5") == 3
    assert grew(bucket, connector="t-conn", le="10.0") == 3
    assert grew(bucket, connector="t-conn", le="+Inf") == 4
    assert grew("smsgw_submit_latency_seconds_count", connector="t-conn") == 4
    assert abs(grew("smsgw_submit_latency_seconds_sum", connector="t-conn") - 60.305) < 1e-9


def test_snapshots_of_several_workers_merge_into_one_exposition() -> None:
    """Counters, histogram buckets and gauges add up across workers; a series
    only one worker has is kept; `_created` is the earliest."""
    def worker(delivered: int, latencies: tuple[float, ...], bound: int) -> bytes:
        registry = CollectorRegistry()
        messages = Counter("smsgw_messages", "", ["status"], registry=registry)
        messages.labels("delivered").inc(delivered)
        latency = Histogram("smsgw_submit_latency_seconds", "", ["connector"],
                            buckets=(0.01, 0.1), registry=registry)
        for value in latencies:
            latency.labels("sim").observe(value)
        Gauge("smsgw_connector_bound", "", ["connector"], registry=registry).labels(
            "sim").set(bound)
        if bound == 4:
            messages.labels("failed").inc()
        return metrics.snapshot(registry)

    def parsed(raws: list[bytes]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = metrics.render_merged(raws).decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    first, second = worker(5, (0.005, 0.05), 4), worker(7, (0.5,), 2)
    got = parsed([first, second])
    delivered = (("status", "delivered"),)
    assert got[("smsgw_messages_total", delivered)] == 12
    assert got[("smsgw_messages_total", (("status", "failed"),))] == 1
    assert got[("smsgw_messages_created", delivered)] == min(
        parsed([first])[("smsgw_messages_created", delivered)],
        parsed([second])[("smsgw_messages_created", delivered)])
    bucket = "smsgw_submit_latency_seconds_bucket"
    assert got[(bucket, (("connector", "sim"), ("le", "0.01")))] == 1
    assert got[(bucket, (("connector", "sim"), ("le", "0.1")))] == 2
    assert got[(bucket, (("connector", "sim"), ("le", "+Inf")))] == 3
    assert got[("smsgw_submit_latency_seconds_count", (("connector", "sim"),))] == 3
    assert got[("smsgw_connector_bound", (("connector", "sim"),))] == 6
