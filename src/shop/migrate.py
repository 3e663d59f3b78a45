"""``python -m shop.migrate``: the schema migrations, as the owner of the tables, once per deploy.

Where the services run as least-privilege roles (``SHOP_MIGRATE=false``: the orders service and
the worker as ``shop_orders``, the catalog as ``shop_catalog``) they cannot change the schema;
this one-shot step does, before they start (an init container on ECS, a one-shot service in
compose, the lab before it starts the services). Like the services' own start-up it keeps
trying, with capped backoff, until the database answers; ``--timeout`` bounds the whole step.

``SHOP_ROLE_SECRETS`` (JSON: role name -> Secrets Manager secret ARN) sets each role's password
to its secret's, so that the services' secrets and the database agree after every deploy.

Reads the same ``SHOP_*`` settings as the services (``SHOP_DATABASE_URL`` is the owner's).
Exit status 0 when the schema is current, 1 when the timeout ran out.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import sys
from functools import partial

import asyncpg

from shop.credentials import read_secret_password
from shop.db import Endpoint, prepare_until_ready
from shop.logs import configure_logging
from shop.settings import Settings, get_settings

log = logging.getLogger("shop.migrate")


async def migrate(settings: Settings, give_up_after: float) -> None:
    """Raises TimeoutError when the schema could not be made current in time."""
    endpoint = Endpoint("migrate", settings.writer_url, settings)
    await endpoint.open()
    try:
        async with asyncio.timeout(give_up_after):
            await prepare_until_ready(endpoint, migrate=True,
                                      max_backoff=settings.migrate_max_backoff_seconds)
            for role, arn in settings.role_secrets.items():
                password = await read_secret_password(arn, settings)
                await endpoint.run(partial(set_password, role=role, password=password))
                log.info("role %s: password set from %s", role, arn)
    finally:
        await endpoint.close()


async def set_password(conn: asyncpg.Connection, role: str, password: str) -> None:
    """Sent as a SCRAM verifier, never in clear: the statement is DDL, and Aurora's
    ``log_statement = ddl`` would write a plain password to the exported log."""
    statement = await conn.fetchval(
        "SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
        role, scram_verifier(password))
    await conn.execute(statement)


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802 / 7677), made here so
    that the password never reaches the server; it takes a verifier as it is."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
            f"${b64(stored_key).decode()}:{b64(server_key).decode()}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m shop.migrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="give up after this many seconds (default 300)")
    args = parser.parse_args()
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    configure_logging()
    try:
        asyncio.run(migrate(get_settings(), args.timeout))
    except TimeoutError:
        log.error("the schema could not be made current within %.0f s", args.timeout)
        return 1
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    log.info("schema current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
