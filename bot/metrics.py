"""Prometheus metrics (`/metrics`), with the well-kept prometheus-client.

One registry per process; with `mst serve --workers N` each process reports its own
(scrape each, or run one process per host behind the balancer)."""

from __future__ import annotations

from prometheus_client import Counter

TOKEN_REFRESHES = Counter(
    "mst_wechat_token_refreshes_total", "WeChat access tokens fetched by this process"
)
DELIVERIES = Counter("mst_outbox_deliveries_total", "Outbox rows handled, by result", ["result"])
