"""A TCP proxy that can slow every answer: the lab's brownout, between the services and
PgBouncer (asyncpg's own tests put a proxy like this in front of their cluster).

Transparent while its control file holds 0 (or is missing). While it holds a number of
seconds, every chunk the server sends is handed to the client that much later, in order: each
database answer arrives late, the requests themselves are not held back. The file is read
again every tenth of a second, so the fault starts and ends without a restart.

    python -m chaos_lab.latency_proxy --listen 6433 --upstream 6432 --control delay.txt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

log = logging.getLogger("latency_proxy")

CHUNK = 65536
POLL_SECONDS = 0.1


class Delay:
    """The current delay, read from the control file."""

    def __init__(self, control: Path) -> None:
        self.control = control
        self.seconds = 0.0

    def read(self) -> None:
        try:
            text = self.control.read_text().strip()
            seconds = float(text) if text else 0.0
        except (OSError, ValueError):
            seconds = 0.0
        if seconds != self.seconds:
            log.warning("delay on server answers: %.3fs (was %.3fs)", seconds, self.seconds)
            self.seconds = max(0.0, seconds)

    async def watch(self) -> None:
        while True:
            self.read()
            await asyncio.sleep(POLL_SECONDS)


def write_delay(control: Path, seconds: float) -> None:
    """Turn the delay on (> 0) or off (0): what the brownout fault does."""
    tmp = control.with_suffix(".tmp")
    tmp.write_text(f"{seconds:g}\n")
    tmp.replace(control)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()


async def _delayed_pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        delay: Delay) -> None:
    """Server to client: each chunk is due ``delay`` after it arrived, sent in order."""
    loop = asyncio.get_running_loop()
    due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            at, data = await due.get()
            if not data:
                return
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(CHUNK):
                due.put_nowait((loop.time() + delay.seconds, data))
        due.put_nowait((loop.time() + delay.seconds, b""))  # the end, also delayed
        with contextlib.suppress(ConnectionError, OSError):
            await sender
    finally:
        sender.cancel()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()


async def serve(listen: int, upstream: int, control: Path) -> None:
    delay = Delay(control)
    delay.read()
    watcher = asyncio.create_task(delay.watch())

    async def connection(client_r: asyncio.StreamReader,
                         client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError as exc:
            log.warning("upstream :%d refused: %s", upstream, exc)
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w),
                             _delayed_pipe(server_r, client_w, delay))

    server = await asyncio.start_server(connection, "127.0.0.1", listen)
    log.warning("listening on :%d -> :%d (control %s)", listen, upstream, control)
    try:
        async with server:
            await server.serve_forever()
    finally:
        watcher.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--control", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.listen, args.upstream, args.control))


if __name__ == "__main__":
    main()
