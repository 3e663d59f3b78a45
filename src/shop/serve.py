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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shop.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", help="the ASGI app, e.g. orders.main:app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--forwarded-allow-ips", default=None, help=(
        "proxies whose X-Forwarded-* headers are trusted (default: $FORWARDED_ALLOW_IPS, "
        "else 127.0.0.1)"))
    args = parser.parse_args(argv)
    config = uvicorn.Config(args.app, host=args.host, port=args.port, workers=1,
                            access_log=False, forwarded_allow_ips=args.forwarded_allow_ips,
                            timeout_graceful_shutdown=30)
    Multiprocess(config, sockets=[config.bind_socket()]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
