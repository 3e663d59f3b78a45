"""The queues' depth for the dashboard: ``shop_queue_messages`` for the order queue and its
DLQ, read every ``QUEUE_DEPTH_SECONDS``. A round that fails is logged and leaves the last
values; the loop never dies."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from order_worker.dead_letters import DeadLetters
from shop.background import pause
from shop.metrics import QUEUE_MESSAGES
from shop.settings import Settings

log = logging.getLogger("order_worker")

QUEUE_DEPTH_SECONDS = 5.0
QUEUE_DEPTH_ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")


async def queue_depth(sqs: Any, queue_url: str) -> int:
    """Visible plus in-flight messages (SQS's approximate counts)."""
    response = await sqs.get_queue_attributes(QueueUrl=queue_url,
                                              AttributeNames=list(QUEUE_DEPTH_ATTRIBUTES))
    attributes = response.get("Attributes", {})
    return sum(int(attributes.get(name, 0)) for name in QUEUE_DEPTH_ATTRIBUTES)


class QueueDepth:
    def __init__(self, settings: Settings, sqs: Any, queue_url: str,
                 dead_letters: DeadLetters) -> None:
        self.settings = settings
        self.sqs = sqs
        self.queue_url = queue_url
        self.dead_letters = dead_letters

    async def refresh(self) -> dict[str, int]:
        """One round: each queue's visible + in-flight messages into the gauge. Every call is
        bounded (the client bounds connecting and reading, not the wait for one of its pooled
        connections, which the long-polling pollers hold: the deadline covers that too)."""
        bound = 2 * (self.settings.aws_timeout + self.settings.worker_wait_seconds)
        async with asyncio.timeout(bound):
            policy = await self.dead_letters.policy()
        queues = {"orders": self.queue_url}
        if policy is not None:
            queues["dead-letter"] = policy.dead_letter_queue_url
        depths = {}
        for name, url in queues.items():
            async with asyncio.timeout(bound):
                depths[name] = await queue_depth(self.sqs, url)
            QUEUE_MESSAGES.labels(queue=name).set(depths[name])
        return depths

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.refresh()
            except Exception as exc:  # never dies
                log.warning("queue depth not read: %s: %s", type(exc).__name__, exc)
            await pause(stopping, QUEUE_DEPTH_SECONDS)
