"""``python -m shop.serve APP --port N``: one service process under uvicorn's process manager.

The manager (uvicorn's ``Multiprocess`` supervisor, here with a single worker) binds the
listening socket and runs the app in a worker process. Should the worker die (killed, out
of memory), the manager starts a new one at once on the same socket: connections that arrive
meanwhile wait in its backlog instead of being refused. ``SIGHUP`` replaces the worker with
no gap (the new one serves before the old one is stopped, which finishes what it holds);
``SIGTERM`` stops both, gracefully. Plain ``uvicorn --workers 1`` runs no manager at all.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shop.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", help="the ASGI app, e.g. orders.main:app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--forwarded-allow-ips", default=None, help=(
        "proxies whose X-Forwarded-* headers are trusted (default: $FORWARDED_ALLOW_IPS, "
        "else 127.0.0.1)"))
    parser.add_argument("--timeout-graceful-shutdown", type=int, default=30, metavar="SECONDS",
                        help=("how long a stopping worker finishes its requests in flight "
                              "before it closes them (default 30): a container's is shorter "
                              "than its stop grace period"))
    parser.add_argument("--timeout-worker-healthcheck", type=int, default=30, metavar="SECONDS",
                        help=("how long the manager waits for a worker to answer its ping, and "
                              "for a new worker to be ready on SIGHUP (default 30; uvicorn's "
                              "5 s is too short on a busy machine: the manager then kills a "
                              "live worker, or abandons the replacement and keeps the old one)"))
    return parser


def config(args: argparse.Namespace) -> uvicorn.Config:
    """One worker; X-Forwarded-For read (proxy headers) from the trusted proxies only; no
    access log; the manager's patience with its worker."""
    return uvicorn.Config(args.app, host=args.host, port=args.port, workers=1,
                          access_log=False, proxy_headers=True,
                          forwarded_allow_ips=args.forwarded_allow_ips,
                          timeout_graceful_shutdown=args.timeout_graceful_shutdown,
                          timeout_worker_healthcheck=args.timeout_worker_healthcheck)


def main(argv: list[str] | None = None) -> int:
    served = config(parser().parse_args(argv))
    Multiprocess(served, sockets=[served.bind_socket()]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
