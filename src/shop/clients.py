"""Who is ordering: the scope of an Idempotency-Key (and of the per-client quota).

A key is only ever looked up within its client's scope, so two clients choosing the same key
(and body) place two orders, and an order id made from a key cannot be computed without the
client's credential. How a client is identified, strongest first:

* ``SHOP_API_KEY_SECRET`` set: ``POST /orders`` requires a signed API key,
  ``Authorization: Bearer <client>.<signature>``, the signature being the URL-safe base64 of
  the HMAC-SHA256 of ``<client>`` under the secret (``python -m shop.clients <client>`` makes
  one). The client is ``client:<client>``; a missing or forged key is 401.
* otherwise any bearer credential the client sends names it by its SHA-256
  (``token:<hash>``): unverified, but two clients with different credentials never meet;
* a client that sends none is ``anonymous``: anonymous clients share one key space (and an
  order id made from a key can be computed by anyone who knows the key and the body).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import re
import sys
import time

from shop.errors import Unauthorized

ANONYMOUS = "anonymous"
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def signature(client: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), client.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def api_key(client: str, secret: str) -> str:
    """A client's signed API key."""
    if not CLIENT_ID.match(client):
        raise ValueError(f"a client id is 1-64 letters, digits, '_' or '-': {client!r}")
    return f"{client}.{signature(client, secret)}"


def client_of(credential: str | None, secret: str | None) -> str:
    """The client's scope name (no spaces: see ``shop.orders.scoped_key``) from its bearer
    credential, the API key secret being set or not."""
    if secret is not None:
        client, _, given = (credential or "").partition(".")
        if not CLIENT_ID.match(client) or not hmac.compare_digest(
                given.encode(), signature(client, secret).encode()):
            raise Unauthorized()
        return f"client:{client}"
    if credential:
        return f"token:{hashlib.sha256(credential.encode()).hexdigest()[:32]}"
    return ANONYMOUS


class Quota:
    """Each client's orders per second, in this process: a token bucket per client, refilled
    at ``rate`` a second up to ``burst``. A client past it is refused (429 with
    Retry-After), so that one client cannot take every product's stock, or flood the order
    table while the database is out. Per process: with N processes behind the load balancer a
    client gets about N times ``rate`` in all (the WAF's rate-based rule is the fleet-wide
    limit, by address). Clients are named as ``client_of`` names them; an anonymous client by
    its address (the orders route's choice)."""

    MAX_CLIENTS = 10_000  # buckets kept; the least recently used go first

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)

    def take(self, client: str, now: float | None = None) -> float:
        """0 when the client may order now (a token taken), else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, when = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[client] = (tokens, now)  # re-inserted: the most recently used last
        if len(self._buckets) > self.MAX_CLIENTS:
            del self._buckets[next(iter(self._buckets))]
        return wait


def main() -> int:
    """``python -m shop.clients <client>``: a signed API key for that client, made with
    SHOP_API_KEY_SECRET."""
    from shop.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m shop.clients", description=main.__doc__)
    parser.add_argument("client", help="the client's id: 1-64 letters, digits, '_' or '-'")
    args = parser.parse_args()
    secret = get_settings().api_key_secret
    if secret is None:
        print("SHOP_API_KEY_SECRET is not set", file=sys.stderr)
        return 2
    try:
        print(api_key(args.client, secret.get_secret_value()))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
