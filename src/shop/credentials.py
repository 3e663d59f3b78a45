"""The database password, read from its source again whenever the database refuses it.

RDS rotates its managed master password (every 7 days by default) while the tasks keep
running: a password read once at start stops working at the first rotation, and every new
connection fails authentication from then on. asyncpg asks a callable for the password of
each new connection; this one answers from memory and goes back to the source after an
authentication failure (``invalidate``), at most once a second, one reader at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from urllib.parse import unquote

import aioboto3
from aiobotocore.config import AioConfig

from shop.settings import Settings

log = logging.getLogger(__name__)

MIN_REREAD_SECONDS = 1.0


class PasswordSource:
    """``url_password``: the one in the endpoint's URL, used when no other source is set
    (asyncpg ignores a URL's password once it is given a password callable)."""

    def __init__(self, settings: Settings, url_password: str | None = None) -> None:
        self.secret_arn = settings.database_secret_arn
        self.file: Path | None = settings.database_password_file
        self.fixed = settings.database_password
        if self.fixed is None and url_password:
            self.fixed = unquote(url_password)
        self.settings = settings
        self._value: str | None = None
        self._read_at = float("-inf")
        self._stale = True
        self._lock = asyncio.Lock()

    @property
    def describe(self) -> str:
        if self.secret_arn:
            return f"secret {self.secret_arn}"
        if self.file:
            return f"file {self.file}"
        return "SHOP_DATABASE_PASSWORD" if self.fixed is not None else "none (trust/peer)"

    def invalidate(self) -> None:
        """The database refused the password: read the source again for the next connection."""
        self._stale = True

    async def __call__(self) -> str | None:
        if not self._stale:
            return self._value
        async with self._lock:
            if self._stale and time.monotonic() - self._read_at >= MIN_REREAD_SECONDS:
                try:
                    value = await self._read()
                    self._read_at = time.monotonic()  # a read that failed may be retried
                except Exception as exc:  # the source is out too: keep what we had
                    self._read_at = time.monotonic()
                    log.warning("database password source %s unreadable: %s: %s",
                                self.describe, type(exc).__name__, exc)
                    if self._value is None:
                        # A connection-class error: the endpoint retries and degrades.
                        raise ConnectionError(f"database password unavailable: {exc}") from exc
                    return self._value
                if self._value is not None and value != self._value:
                    log.warning("database password changed at its source (%s)", self.describe)
                self._value, self._stale = value, False
        return self._value

    async def _read(self) -> str | None:
        if self.secret_arn:
            return await read_secret_password(self.secret_arn, self.settings)
        if self.file:
            return (await asyncio.to_thread(self.file.read_text)).strip()
        return self.fixed



async def read_secret_password(arn: str, settings: Settings) -> str:
    """A Secrets Manager secret's password: the "password" field of its JSON (as RDS keeps
    its managed secrets), or the whole string of a plain-text secret."""
    config = AioConfig(connect_timeout=settings.aws_timeout, read_timeout=settings.aws_timeout,
                       retries={"max_attempts": 2, "mode": "standard"})
    async with aioboto3.Session().client("secretsmanager", config=config) as secrets:
        response = await secrets.get_secret_value(SecretId=arn)
    text: str = response["SecretString"]
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and isinstance(data.get("password"), str):
        return str(data["password"])
    raise ValueError(f"secret {arn} is JSON without a string 'password' field")
