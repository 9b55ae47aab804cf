"""Prometheus metrics (`/metrics`), with the well-kept prometheus-client.

One registry per process; with `mst serve --workers N` each process reports its own
(scrape each, or run one process per host behind the balancer)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

TOKEN_REFRESHES = Counter(
    "mst_wechat_token_refreshes_total", "WeChat access tokens fetched by this process"
)
DELIVERIES = Counter("mst_outbox_deliveries_total", "Outbox rows handled, by result", ["result"])

REQUESTS = Counter(
    "mst_http_requests_total", "HTTP requests, by route and status", ["route", "status"]
)
LATENCY = Histogram(
    "mst_http_request_seconds",
    "Time to answer, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 5, 10),
)
OUTBOX_ROWS = Gauge("mst_outbox_rows", "Outbox rows by status (read at scrape time)", ["status"])
OUTBOX_OLDEST = Gauge("mst_outbox_oldest_waiting_seconds", "Age of the oldest notice not yet sent")


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
