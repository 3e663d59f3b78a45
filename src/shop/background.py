"""Background tasks tied to a process's lifetime: started in a lifespan, cancelled with it."""

import asyncio
from collections.abc import Coroutine
from contextlib import AsyncExitStack, suppress
from typing import Any


def run_in_background(stack: AsyncExitStack, coro: Coroutine[Any, Any, Any],
                      name: str) -> asyncio.Task[Any]:
    task = asyncio.create_task(coro, name=name)

    async def cancel() -> None:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(cancel)
    return task


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stopping`` is set meanwhile (a loop's wait between
    rounds, which must not hold up a shutdown)."""
    with suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
