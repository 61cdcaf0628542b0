"""Prometheus metrics, all named smsgw_…; the registry is served at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES = Counter(
    "smsgw_messages", "Messages by status reached", ["status"], registry=REGISTRY
)
POLICY_REJECTIONS = Counter(
    "smsgw_rejections", "Submissions refused at admission, by code", ["code"], registry=REGISTRY
)
SUBMIT_SM = Counter(
    "smsgw_submit_sm", "submit_sm sent, by connector and command_status of the response",
    ["connector", "status"], registry=REGISTRY,
)
RECEIPTS = Counter(
    "smsgw_receipts", "Delivery receipts received, by connector and stat",
    ["connector", "stat"], registry=REGISTRY,
)
CONNECTOR_BOUND = Gauge(
    "smsgw_connector_bound", "Binds currently bound per connector", ["connector"],
    registry=REGISTRY,
)
SUBMIT_LATENCY = Histogram(
    "smsgw_submit_latency_seconds", "submit_sm to submit_sm_resp", ["connector"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "smsgw_webhooks", "Webhook deliveries by outcome (delivered, dead)", ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_FAILURES = Counter(
    "smsgw_webhook_failures", "Failed webhook attempts, by reason (http_<status>, timeout, ...)",
    ["reason"], registry=REGISTRY,
)

_STATUS_CHILDREN: dict[str, Counter] = {}


def count_status(status: str) -> None:
    """smsgw_messages_total{status} += 1, with the label child looked up once
    (labels() costs more than the increment on the per-message path)."""
    child = _STATUS_CHILDREN.get(status)
    if child is None:
        child = _STATUS_CHILDREN[status] = MESSAGES.labels(status)
    child.inc()
