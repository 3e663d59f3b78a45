"""A TCP proxy that can slow every answer: the brownout fault, between the shop's services
and PgBouncer, in the local lab and in the compose stack alike (asyncpg's own tests put a
proxy like this in front of their cluster). Transparent until a delay is set; then every
chunk the server sends is handed to the client that much later, in order: each database
answer arrives late, the requests themselves are not held back. The standard library only,
so that it also runs as a plain file in any Python image (compose runs it in moto's).

    python -m chaos_lab.local.latency_proxy serve --listen 127.0.0.1:6433 --upstream 127.0.0.1:6432
    python -m chaos_lab.local.latency_proxy set 3      # the brownout
    python -m chaos_lab.local.latency_proxy set 0      # its restore

The delay lives in a control file (``--control``, default ``$LATENCY_CONTROL``), read again
every tenth of a second, so the fault starts and ends without a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger("latency_proxy")

CONTROL = Path(os.environ.get("LATENCY_CONTROL", "/tmp/latency-proxy/delay"))
CHUNK = 65536
POLL_SECONDS = 0.1


class Delay:
    """The current delay, from the control file (missing or unreadable: none)."""

    def __init__(self, control: Path) -> None:
        self.control = control
        self.seconds = 0.0

    def read(self) -> None:
        try:
            text = self.control.read_text().strip()
            seconds = max(0.0, float(text)) if text else 0.0
        except (OSError, ValueError):
            seconds = 0.0
        if seconds != self.seconds:
            log.warning("delay on server answers: %.3fs (was %.3fs)", seconds, self.seconds)
            self.seconds = seconds

    async def watch(self) -> None:
        while True:
            self.read()
            await asyncio.sleep(POLL_SECONDS)


def write_delay(control: Path, seconds: float) -> None:
    """Atomically: the proxy never reads half a number."""
    control.parent.mkdir(parents=True, exist_ok=True)
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


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)


async def serve(listen: tuple[str, int], upstream: tuple[str, int], control: Path) -> None:
    write_delay(control, 0)  # a restarted proxy starts transparent
    delay = Delay(control)
    watcher = asyncio.create_task(delay.watch())

    async def connection(client_r: asyncio.StreamReader,
                         client_w: asyncio.StreamWriter) -> None:
        try:
            # the name is resolved for each connection: a recreated PgBouncer is found
            server_r, server_w = await asyncio.wait_for(asyncio.open_connection(*upstream), 5)
        except (OSError, TimeoutError) as exc:
            log.warning("upstream %s:%d unreachable: %s", *upstream, exc)
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w),
                             _delayed_pipe(server_r, client_w, delay))

    server = await asyncio.start_server(connection, *listen)
    log.warning("listening on %s:%d -> %s:%d (control %s)", *listen, *upstream, control)
    try:
        async with server:
            await server.serve_forever()
    finally:
        watcher.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--control", type=Path, default=CONTROL,
                        help="the file holding the delay (default $LATENCY_CONTROL)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the proxy")
    serve_cmd.add_argument("--listen", type=_address, default=("0.0.0.0", 6432))
    serve_cmd.add_argument("--upstream", type=_address, default=("pgbouncer", 6432))
    set_cmd = commands.add_parser("set", help="the delay in seconds (0: transparent)")
    set_cmd.add_argument("seconds", type=float)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "set":
        write_delay(args.control, args.seconds)
        print(f"latency-proxy: delay {args.seconds:g}s")
    else:
        asyncio.run(serve(args.listen, args.upstream, args.control))


if __name__ == "__main__":
    main()
