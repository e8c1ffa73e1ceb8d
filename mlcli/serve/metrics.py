"""GET /metrics: Prometheus text (prometheus-client) — requests, errors, latency, batch sizes.

Each app has its own registry (not the process-wide default), so two servers in one process (tests)
count separately.
"""

from __future__ import annotations

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # deferred: only `serve` needs it

        self.registry = CollectorRegistry()
        self.requests = Counter("mlcli_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "code"], registry=self.registry)
        self.errors = Counter("mlcli_request_errors", "Requests answered with an error (4xx, 5xx), by endpoint "
                              "and status code", ["endpoint", "code"], registry=self.registry)
        self.latency = Histogram("mlcli_request_latency_seconds", "Time from request to response, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("mlcli_predict_requests_in_flight", "Predict requests received and not yet answered",
                               registry=self.registry)
        self.batch_rows = Histogram("mlcli_batch_size", "Rows per model call (several requests batched together)",
                                    buckets=SIZE_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("mlcli_batch_requests", "Requests per model call",
                                        buckets=SIZE_BUCKETS, registry=self.registry)

    def answered(self, endpoint: str, code: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(code)).inc()
        if code >= 400:
            self.errors.labels(endpoint, str(code)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def batch(self, requests: int, rows: int) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # deferred: only `serve` needs it

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
