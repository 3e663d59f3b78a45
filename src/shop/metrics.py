"""Prometheus metrics shared by the services and the worker (served at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "shop_http_requests_total", "HTTP requests by route and status", ["route", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    "shop_http_request_seconds", "HTTP request duration by route", ["route", "method"]
)
BREAKER_STATE = Gauge(
    "shop_breaker_state", "Circuit breaker state: 0 closed, 2 open (a background probe closes it)",
    ["breaker"],
)
BREAKER_PROBES = Counter(
    "shop_breaker_probes_total", "Background probes of an open breaker, by outcome",
    ["breaker", "outcome"],
)
BREAKER_TRANSITIONS = Counter(
    "shop_breaker_transitions_total", "Circuit breaker transitions by new state",
    ["breaker", "state"],
)
FALLBACKS = Counter(
    "shop_fallbacks_total", "Answers served by a fallback instead of the database", ["kind"]
)
CACHE_REFRESHES = Counter(
    "shop_cache_refreshes_total", "Catalog cache refreshes written to DynamoDB", ["outcome"]
)
CACHE_READS = Counter(
    "shop_cache_reads_total",
    "Catalog cache scans: ok, or stale (DynamoDB out, the copy last read served)", ["outcome"],
)
WORKER_MESSAGES = Counter(
    "shop_worker_messages_total", "Queued orders handled by the worker, by outcome", ["outcome"]
)
ORDERS_FAILED = Counter(
    "shop_orders_failed_total",
    "Buffered orders given the final status failed (their message dead-lettered), by reason:"
    " unparseable, receives_exhausted (the worker gave up on the last receive),"
    " dead_lettered (moved by the queue's redrive policy, seen by the DLQ watcher)",
    ["reason"],
)
OUTBOX_ORDERS = Gauge(
    "shop_outbox_orders",
    "Orders answered 202 whose enqueue had an unknown outcome, held to be sent again",
)
SHED = Counter(
    "shop_requests_shed_total", "Requests answered 503 at once: more in progress than the cap"
)
QUEUE_MESSAGES = Gauge(
    "shop_queue_messages",
    "Messages in an SQS queue (visible + in flight, SQS's approximate counts), read by the"
    " order-worker every few seconds: orders, dead-letter",
    ["queue"],
)
