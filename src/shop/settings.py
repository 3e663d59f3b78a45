"""One typed settings object for every process of the shop.

Every service, the worker, Terraform's task definitions and docker-compose read the same
names: the ``SHOP_`` prefix plus the field name in capitals. AWS credentials, region and
endpoint come from the standard ``AWS_*`` variables that botocore reads itself.
"""

from functools import lru_cache

from pydantic import Field, PostgresDsn
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore")

    # Database endpoints. The reader defaults to the writer (a single local PostgreSQL).
    database_url: PostgresDsn = PostgresDsn("postgresql://shop:shop@localhost:5432/shop")
    database_reader_url: PostgresDsn | None = None
    # Injected separately (ECS secrets, compose ${VAR:?}) so URLs never carry it.
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
    # Worst case for one request: the budget plus one last attempt, under the 5 s client timeout.
    db_connect_timeout: float = Field(1.5, gt=0)
    db_command_timeout: float = Field(2.0, gt=0)
    db_acquire_timeout: float = Field(1.5, gt=0)
    db_pool_max_size: int = Field(10, ge=1)
    retry_budget_seconds: float = Field(3.0, ge=0)
    migrate_max_backoff_seconds: float = Field(5.0, gt=0)

    # How long the catalog keeps its encoded product list (0: every request reads).
    catalog_max_age_seconds: float = Field(1.0, ge=0)

    # Circuit breakers (one per database endpoint per process).
    breaker_fail_max: int = Field(3, ge=1)
    breaker_reset_seconds: float = Field(5.0, gt=0)

    # AWS resources, created by Terraform, compose or the lab; never by the services.
    aws_timeout: float = Field(2.0, gt=0)
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
