"""One typed settings object for every process of the shop.

Every service, the worker, Terraform's task definitions and docker-compose read the same
names: the ``SHOP_`` prefix plus the field name in capitals. AWS credentials, region and
endpoint come from the standard ``AWS_*`` variables that botocore reads itself.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PostgresDsn, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore")

    # Database endpoints. The reader defaults to the writer (a single local PostgreSQL).
    database_url: PostgresDsn = PostgresDsn("postgresql://shop:shop@localhost:5432/shop")
    database_reader_url: PostgresDsn | None = None
    # Where the password comes from, never from the URLs. It is read again after an
    # authentication failure, so a rotated password costs no restart: a Secrets Manager secret
    # (JSON with a "password" field, as RDS keeps its managed master secret), else a file,
    # else this fixed value (compose ${VAR:?}; it cannot follow a rotation).
    database_secret_arn: str | None = None
    database_password_file: Path | None = None
    database_password: str | None = None

    log_level: str = "INFO"
    # FastAPI's native OpenTelemetry (traces, metrics, logs to the global providers). Off: the
    # shop's metrics are Prometheus at /metrics, and with no provider configured FastAPI still
    # looks the providers up on every request (a tenth of a cached read's CPU, BENCHMARKS.md).
    opentelemetry: bool = False

    # The reference's two switches.
    enable_proxy: bool = True  # False: the fragile baseline (one connection, no retry)
    enable_degradation: bool = True  # breakers, catalog cache, order buffer

    # Timeouts and budgets, seconds: no request can hang past a few seconds.
    # Every request has one deadline, request_budget_seconds after it starts, under the
    # client's 5 s: database attempts stop early enough to leave aws_timeout for the fallback,
    # and whatever is not done by the deadline is answered (503, or 202 when an order may
    # exist) instead of waited for.
    request_budget_seconds: float = Field(4.0, gt=0)
    # Requests one process works on at once: "adaptive" (shop.admission: a limit that follows
    # the admitted requests' latency) under the ceiling max_concurrent_requests, or "static"
    # (the ceiling alone). Beyond it a request is shed at once with 503 and Retry-After, as is
    # one that queued longer than max_queue_seconds before it reached the process (health and
    # metrics are never shed).
    admission: Literal["adaptive", "static"] = "adaptive"
    # The admitted requests' average latency the adaptive limit holds at capacity: well under
    # the latency promised (the orders' p99 goal is 250 ms); what a process does at normal
    # load stays far below it (a hot product's group commit: 12 ms at p50).
    admission_target_ms: float = Field(50.0, gt=0)
    max_concurrent_requests: int = Field(512, ge=1)
    max_queue_seconds: float = Field(0.5, gt=0)
    db_connect_timeout: float = Field(1.5, gt=0)
    db_command_timeout: float = Field(2.0, gt=0)
    db_acquire_timeout: float = Field(1.5, gt=0)
    db_pool_max_size: int = Field(10, ge=1)
    # A write that outlives its request's deadline (its commit may still land) is left to
    # finish on its own connection, never cancelled; past this bound that connection is
    # closed (the outcome stays unknown, as its caller was told), so that a black-holed
    # connection cannot hold a pool slot for good.
    db_detached_write_seconds: float = Field(30.0, gt=0)
    # TCP keepalive and TCP_USER_TIMEOUT on every database connection: a peer that vanished
    # without a word (a dropped route, a NAT that forgot the flow) is noticed within this.
    db_tcp_timeout_seconds: float = Field(15.0, ge=3)
    retry_budget_seconds: float = Field(3.0, ge=0)
    # With a fallback, a request waits this long for the database at most (retries included)
    # before it is answered from the fallback: nobody waits out a retry budget on a fault.
    # 0.2 s: under the orders' p99 goal during a fault (250 ms), far above what the database
    # takes at full load with no fault (a hot product's p99: 24 ms; the bench counts any
    # fallback taken then).
    fallback_after_seconds: float = Field(0.2, gt=0)
    migrate_max_backoff_seconds: float = Field(5.0, gt=0)
    # Apply the schema migrations at start (the owner's right). False where the service runs
    # as a least-privilege role: it waits for the schema `python -m shop.migrate` applies.
    migrate: bool = True
    # python -m shop.migrate only: role name -> Secrets Manager secret ARN (JSON); each role's
    # password is set to its secret's, so that the services' secrets and the database agree.
    role_secrets: dict[str, str] = Field(default_factory=dict)

    # How long the catalog keeps its encoded product list (0: every request reads).
    catalog_max_age_seconds: float = Field(1.0, ge=0)

    # Circuit breakers (one per database endpoint per process): open after this many
    # infrastructure failures in a row; while open no request waits on the database, and a
    # background probe (bounded by fallback_after_seconds) tries it every probe interval:
    # the first that succeeds closes the breaker.
    breaker_fail_max: int = Field(3, ge=1)
    breaker_probe_seconds: float = Field(1.0, gt=0)

    # AWS resources, created by Terraform, compose or the lab; never by the services.
    aws_timeout: float = Field(2.0, gt=0)
    # On a customer's request (the fallbacks), each AWS call waits this long at most. Such
    # failures count against that client's breaker: once open, orders that cannot be queued
    # are refused at once (503) until its background probe sees AWS answer again.
    aws_request_timeout: float = Field(0.3, gt=0)
    order_queue_url: str | None = None
    product_cache_table: str | None = None
    order_status_table: str | None = None
    cache_refresh_seconds: float = Field(5.0, gt=0)

    # order-worker
    worker_concurrency: int = Field(10, ge=1, le=10)  # messages per receive (SQS: 10 at most)
    # Receive loops side by side. One drains about 120 orders/s on the lab (BENCHMARKS.md),
    # where every loop shares one emulator process; on SQS more loops drain a backlog faster.
    worker_pollers: int = Field(1, ge=1, le=50)
    worker_wait_seconds: int = Field(5, ge=0, le=20)
    worker_visibility_timeout: int = Field(30, ge=1)
    worker_health_port: int = Field(8081, ge=0, le=65535)
    # The sweep: accepted orders still undecided this long after their acceptance (their
    # wake-up lost, never sent or dead-lettered) are applied from the order table, every
    # worker_sweep_seconds.
    worker_sweep_seconds: float = Field(5.0, gt=0)
    worker_sweep_after_seconds: float = Field(30.0, ge=0)
    # An order that fails with an error that is not an outage is tried again later and later
    # (worker_retry_seconds, doubling up to 5 minutes); after this many attempts it is failed
    # for good, with the last error as its reason (about 20 minutes with the defaults).
    worker_max_attempts: int = Field(10, ge=1)
    worker_retry_seconds: float = Field(2.0, gt=0)

    # POST /orders requires a signed API key when this is set (shop.clients); without it a
    # client is named by its bearer credential, or is anonymous.
    api_key_secret: SecretStr | None = None
    # Each client's orders per second in one process (a token bucket: shop.clients.Quota),
    # a burst of client_orders_burst; past it, 429 with Retry-After. 0: no quota (the lab's
    # experiments measure the shop, not its clients); the deployments set one.
    client_orders_per_second: float = Field(0.0, ge=0)
    client_orders_burst: float = Field(40.0, ge=1)

    @property
    def reader_url(self) -> str:
        """The fragile baseline has no separate reader: everything goes to the writer, as in
        the reference's BEFORE (separate reader and writer pools came with the proxy)."""
        if not self.enable_proxy:
            return self.writer_url
        return str(self.database_reader_url or self.database_url)

    @property
    def writer_url(self) -> str:
        return str(self.database_url)


@lru_cache
def get_settings() -> Settings:
    return Settings()
