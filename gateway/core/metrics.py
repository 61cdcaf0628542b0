"""Prometheus metrics, all named smsgw_…; the registry is served at /metrics.

The counters and the histogram updated for every message (statuses, submit_sm,
receipts, submit latency) are plain Python numbers turned into Prometheus
samples only when /metrics is scraped: prometheus_client's own children take a
lock and walk the buckets on every update, several microseconds a message at
six updates per message. Everything in a worker runs on one event loop thread,
so no lock is needed.

With `--workers N` each worker counts for itself; `snapshot` turns a worker's
registry into bytes that the others can read (through Redis, see
`Store.publish_metrics`), and `render_merged` sums the snapshots of every worker
of this host into one exposition, so a scrape answered by any worker shows the
whole gateway.
"""

from __future__ import annotations

import socket
from bisect import bisect_left
from collections.abc import Iterator

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry(auto_describe=True)


class _CountChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are upper bounds inclusive: le="0.01" counts 0.01.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Counter:
    """A labelled counter with prometheus_client's calling convention
    (``counter.labels(...).inc()``), turned into samples when scraped."""

    def __init__(self, name: str, doc: str, labels: list[str]) -> None:
        self.name, self.doc, self.label_names = name, doc, labels
        self.children: dict[tuple[str, ...], _CountChild] = {}
        REGISTRY.register(self)  # type: ignore[arg-type]

    def labels(self, *values: str) -> _CountChild:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = _CountChild()
        return child

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=self.label_names)
        for values, child in self.children.items():
            family.add_metric(list(values), child.value)
        yield family

    def describe(self) -> Iterator[Metric]:
        return self.collect()


class _Histogram:
    """A labelled histogram (``histogram.labels(...).observe(v)``), collected at scrape time."""

    def __init__(self, name: str, doc: str, labels: list[str], buckets: tuple[float, ...]) -> None:
        self.name, self.doc, self.label_names, self.buckets = name, doc, labels, buckets
        self.children: dict[tuple[str, ...], _HistogramChild] = {}
        REGISTRY.register(self)  # type: ignore[arg-type]

    def labels(self, *values: str) -> _HistogramChild:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = _HistogramChild(self.buckets)
        return child

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.label_names)
        for values, child in self.children.items():
            running, buckets = 0, []
            for bound, count in zip((*self.buckets, float("inf")), child.counts, strict=True):
                running += count
                buckets.append((floatToGoString(bound), running))
            family.add_metric(list(values), buckets, child.sum)
        yield family

    def describe(self) -> Iterator[Metric]:
        return self.collect()


MESSAGES = _Counter("smsgw_messages", "Messages by status reached", ["status"])
POLICY_REJECTIONS = Counter(
    "smsgw_rejections", "Submissions refused at admission, by code", ["code"], registry=REGISTRY
)
SUBMIT_SM = _Counter(
    "smsgw_submit_sm", "submit_sm sent, by connector and command_status of the response",
    ["connector", "status"],
)
RECEIPTS = _Counter(
    "smsgw_receipts", "Delivery receipts received, by connector and stat", ["connector", "stat"],
)
CONNECTOR_BOUND = Gauge(
    "smsgw_connector_bound", "Binds currently bound per connector", ["connector"],
    registry=REGISTRY,
)
SUBMIT_LATENCY = _Histogram(
    "smsgw_submit_latency_seconds", "submit_sm to submit_sm_resp", ["connector"],
    (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
AUTH_FAILURES = Counter(
    "smsgw_auth_failures", "Requests with a wrong or missing API key, by outcome "
    "(unauthorized, rate_limited)", ["outcome"], registry=REGISTRY,
)
WEBHOOKS = Counter(
    "smsgw_webhooks", "Webhook deliveries by outcome (delivered, dead)", ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_FAILURES = Counter(
    "smsgw_webhook_failures", "Failed webhook attempts, by reason (http_<status>, timeout, ...)",
    ["reason"], registry=REGISTRY,
)

_STATUS_CHILDREN: dict[str, _CountChild] = {}


def count_status(status: str) -> None:
    """smsgw_messages_total{status} += 1, with the label child looked up once
    (labels() costs more than the increment on the per-message path)."""
    child = _STATUS_CHILDREN.get(status)
    if child is None:
        child = _STATUS_CHILDREN[status] = MESSAGES.labels(status)
    child.inc()


# --- one view over several workers ------------------------------------------------

HOST = socket.gethostname()  # workers of one host are summed; hosts are scraped apart
PUBLISH_EVERY = 1.0  # seconds between a worker's snapshots in Redis


def snapshot(registry: CollectorRegistry | None = None) -> bytes:
    """This process's metrics: per family its name, type, help and samples."""
    return orjson.dumps([
        [family.name, family.type, family.documentation,
         [[sample.name, sample.labels, sample.value] for sample in family.samples]]
        for family in (registry or REGISTRY).collect()
    ])


class _Merged:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render_merged(snapshots: list[bytes]) -> bytes:
    """The text exposition of several workers' snapshots: every sample summed
    over the workers (counters, histogram buckets, gauges such as binds bound),
    except `_created`, which is the earliest."""
    families: dict[str, tuple[str, str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
    for raw in snapshots:
        for name, kind, doc, samples in orjson.loads(raw):
            values = families.setdefault(name, (kind, doc, {}))[2]
            for sample_name, labels, value in samples:
                key = (sample_name, tuple(sorted(labels.items())))
                if key not in values:
                    values[key] = value
                elif sample_name.endswith("_created"):
                    values[key] = min(values[key], value)
                else:
                    values[key] += value
    out: list[Metric] = []
    for name, (kind, doc, values) in families.items():
        family = Metric(name, doc, kind)
        for (sample_name, labels), value in values.items():
            family.add_sample(sample_name, dict(labels), value)
        out.append(family)
    return generate_latest(_Merged(out))  # type: ignore[arg-type]
