"""``python -m order_worker``: drain the order queue (serving /health on the health port).
``python -m order_worker redrive``: move the dead-letter queue's messages back into the order
queue (those there when it starts); prints what it moved. A decided order stays decided."""

import argparse
import asyncio
import signal
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

import uvicorn

from shop.aws import open_clients
from shop.settings import get_settings


async def _redrive() -> int:
    from order_worker.dead_letters import redrive

    settings = get_settings()
    if not settings.order_queue_url:
        print("SHOP_ORDER_QUEUE_URL is required", file=sys.stderr)
        return 2
    async with AsyncExitStack() as stack:
        (sqs,) = await open_clients(stack, settings, "sqs")
        result = await redrive(sqs, settings.order_queue_url)
    print(f"moved {result.moved} message(s) from the dead-letter queue back to the order queue")
    for order_id in result.order_ids:
        print(f"order {order_id}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m order_worker", description=__doc__)
    parser.add_argument("command", nargs="?", default="run", choices=["run", "redrive"])
    args = parser.parse_args()
    if args.command == "redrive":
        return asyncio.run(_redrive())
    settings = get_settings()
    config = uvicorn.Config("order_worker.app:app", host="0.0.0.0",
                            port=settings.worker_health_port, access_log=False,
                            timeout_graceful_shutdown=30)
    _Server(config).run()
    return 0


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after a graceful shutdown (exit status -15). For the worker a
    SIGTERM is the orchestrator's normal stop: finish in-flight messages, exit 0."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        yield


if __name__ == "__main__":
    sys.exit(main())
