"""The wake-up poller: receive the order queue's messages, settle the orders they name.

A message is a wake-up: the order is its record in the order table, read (consistently) by
the id the message carries, and settled like any other (``order_worker.settle``). So:

* a message that cannot be parsed goes to the dead-letter queue at once;
* one naming an order without a record but carrying the whole order (the queue's format
  before the order table was the store of record) has its record written first: an
  upgrade loses nothing in flight; one naming nothing at all is dropped, logged;
* the database out during the settle: the message comes back in a few seconds, so the queue
  drains quickly once it returns; every other outcome deletes the message, the record now
  carrying the order's state (decided, or an attempt counted for later: the sweep retries).

If reading or writing the records fails nothing is deleted: the messages come back (their
visibility timeout) and the settle replays.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import suppress
from typing import Any

from order_worker.dead_letters import DeadLetters
from order_worker.settle import RETRY, Settler
from shop.metrics import WORKER_MESSAGES
from shop.order_queue import WakeUp
from shop.order_records import OrderRecords
from shop.settings import Settings

log = logging.getLogger("order_worker")

RETRY_VISIBILITY_SECONDS = 2  # database out: back soon, the queue drains fast once it returns


class WakeUpPoller:
    def __init__(self, settings: Settings, sqs: Any, queue_url: str, records: OrderRecords,
                 settler: Settler, dead_letters: DeadLetters) -> None:
        self.settings = settings
        self.sqs = sqs
        self.queue_url = queue_url
        self.records = records
        self.settler = settler
        self.dead_letters = dead_letters
        self.backlogged = False  # the last receive came back full: the queue has more

    async def receive(self) -> list[dict[str, Any]]:
        response = await self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.settings.worker_concurrency,
            WaitTimeSeconds=self.settings.worker_wait_seconds,
            VisibilityTimeout=self.settings.worker_visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],  # kept when a message moves to the DLQ
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        self.backlogged = len(messages) >= self.settings.worker_concurrency
        return messages

    async def handle(self, messages: list[dict[str, Any]]) -> list[str]:
        """Settle a batch: one read of the records, the orders side by side, one write of the
        decisions, one delete. Returns each message's outcome (also counted in metrics)."""
        names: dict[str, str] = {}
        wake_ups: dict[str, WakeUp] = {}
        for message in messages:
            try:
                wake_ups[message["MessageId"]] = WakeUp.parse(message["Body"])
            except (ValueError, KeyError, TypeError) as exc:
                moved = await self.dead_letters.move(message, f"unparseable message: {exc}")
                names[message["MessageId"]] = "dead-lettered" if moved else "malformed"
        found = await self.records.get_many([w.order_id for w in wake_ups.values()])
        unrecorded = [w.request for w in wake_ups.values()
                      if w.order_id not in found and w.request is not None]
        for request in unrecorded:
            await self.records.adopt(request)
        if unrecorded:
            found.update(await self.records.get_many([r.order_id for r in unrecorded]))
        outcomes = await self.settler.settle(list(found.values()))
        done: list[dict[str, Any]] = []
        again: list[dict[str, Any]] = []
        for message in messages:
            wake = wake_ups.get(message["MessageId"])
            if wake is None:
                continue
            name = self._outcome(wake.order_id, found, outcomes)
            names[message["MessageId"]] = name
            (again if name == RETRY else done).append(message)
        if again:
            await self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"],
                 "VisibilityTimeout": RETRY_VISIBILITY_SECONDS} for i, m in enumerate(again)])
        if done:
            await self._delete(done)
        result = [names[m["MessageId"]] for m in messages]
        for name in result:
            WORKER_MESSAGES.labels(outcome=name).inc()
        return result

    @staticmethod
    def _outcome(order_id: uuid.UUID, found: dict[uuid.UUID, Any],
                 outcomes: dict[uuid.UUID, str]) -> str:
        if order_id not in found:
            log.warning("a wake-up for order %s, which the order table does not hold: "
                        "dropped", order_id)
            return "no-record"
        return outcomes.get(order_id, "duplicate")  # decided before this message came

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        response = await self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        for failed in response.get("Failed", []):
            # Delivered again later: a no-op for a decided order, but worth a line.
            with suppress(KeyError):
                log.warning("could not delete message %s: %s", failed["Id"],
                            failed.get("Message"))
