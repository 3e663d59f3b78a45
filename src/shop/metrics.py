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
    "Accepted orders given the final status failed, by reason: attempts_exhausted (the"
    " worker's attempts all failed with an error that is not an outage)",
    ["reason"],
)
ORDERS_UNDECIDED = Gauge(
    "shop_orders_undecided",
    "Orders accepted while the database was out (202) and not decided yet, older than the"
    " sweep's grace, as the worker's last sweep found them",
)
SWEPT = Counter(
    "shop_worker_swept_total",
    "Orders the worker's sweep applied from the order table (their wake-up lost, never sent or"
    " dead-lettered), by outcome",
    ["outcome"],
)
WAKE_UPS = Counter(
    "shop_wake_ups_total",
    "Wake-ups the orders service sent the worker for orders accepted while the database was"
    " out, by outcome: sent, failed, skipped (a sweep applies those orders)",
    ["outcome"],
)
ANSWERS_UNKNOWN = Counter(
    "shop_orders_outcome_unknown_total",
    "Orders answered 504 outcome unknown, by why: commit (a write that may still commit),"
    " record (the order table did not answer in time), unseen (a keyed order whose earlier"
    " requests could not be looked up)",
    ["why"],
)
DETACHED_WRITES = Gauge(
    "shop_db_detached_writes",
    "Writes still running past their request's deadline (their commit may land), by endpoint;"
    " at half the pool the process takes no more writes",
    ["endpoint"],
)
SHED = Counter(
    "shop_requests_shed_total",
    "Requests answered 503 at once, before any work, by why: limit (the process's adaptive"
    " admission limit reached), queued (waited longer than SHOP_MAX_QUEUE_SECONDS before it"
    " reached the process), waited (an order that waited its turn for the database past"
    " SHOP_FALLBACK_AFTER_SECONDS while the database answered: overload, not an outage)",
    ["why"],
)
ADMISSION_LIMIT = Gauge(
    "shop_admission_limit",
    "Requests a process admits at once: the adaptive limit (shop.admission), following the"
    " admitted requests' latency, under SHOP_MAX_CONCURRENT_REQUESTS", ["limit"],
)
QUOTA_REFUSED = Counter(
    "shop_client_quota_refused_total",
    "Orders refused (429) because their client was past its orders per second",
)
IN_FLIGHT = Gauge("shop_requests_in_flight", "Requests a process works on now (admitted)")
QUEUE_MESSAGES = Gauge(
    "shop_queue_messages",
    "Messages in an SQS queue (visible + in flight, SQS's approximate counts), read by the"
    " order-worker every few seconds: orders, dead-letter",
    ["queue"],
)
