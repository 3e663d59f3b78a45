"""The dead-letter queue: what can never be used, and the operator's redrive.

Since the order table is the store of record, a message is only a wake-up: one that reaches
the DLQ (moved there by the worker because it cannot even be read, or by the queue's redrive
policy after its receives ran out) takes no order with it. The watcher reads the DLQ every
few seconds and deletes the wake-ups of orders the order table knows (the sweep applies
those); what is left there needs a person: a message that cannot be parsed, or one naming an
order nobody accepted. ``python -m order_worker redrive`` moves the DLQ's messages back.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from shop.aws import AWS_ERRORS
from shop.order_queue import WakeUp
from shop.order_records import OrderRecords

log = logging.getLogger("order_worker")

SQS_MAX_ATTRIBUTES = 10  # message attributes SQS takes on one message
REASON_ATTRIBUTE = "dead_letter_reason"  # added by the worker, dropped again by redrive
# The watcher: a round every few seconds, at most this many receives of 10 a round. What it
# reads and leaves stays hidden for the round (so a deep DLQ is read through, not the same 10
# again) and is visible again well before the next one, so ``redrive`` never races it.
DLQ_WATCH_SECONDS = 10.0
DLQ_WATCH_RECEIVES = 10
DLQ_WATCH_VISIBILITY_SECONDS = 5


@dataclass(frozen=True)
class RedrivePolicy:
    dead_letter_queue_url: str
    max_receives: int


async def redrive_policy_of(sqs: Any, queue_url: str) -> RedrivePolicy | None:
    attributes = await sqs.get_queue_attributes(QueueUrl=queue_url,
                                                AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        return None
    parsed = json.loads(policy)
    arn = parsed["deadLetterTargetArn"]
    account, name = arn.split(":")[4], arn.split(":")[5]
    response = await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    return RedrivePolicy(response["QueueUrl"], int(parsed["maxReceiveCount"]))


def attributes_of(message: dict[str, Any]) -> dict[str, Any]:
    """The message's own attributes as SendMessage takes them (a receive adds empty list
    fields SendMessage does not want); a dead-letter reason of the worker's is not one."""
    kept = {}
    for name, value in message.get("MessageAttributes", {}).items():
        if name == REASON_ATTRIBUTE:
            continue
        kept[name] = {key: value[key] for key in ("DataType", "StringValue", "BinaryValue")
                      if key in value}
    return kept


def _with_reason(message: dict[str, Any], reason: str) -> dict[str, Any]:
    """Its attributes plus the reason, when SQS's limit of ten leaves room for it (the reason
    is also in the log)."""
    kept = attributes_of(message)
    if len(kept) < SQS_MAX_ATTRIBUTES:
        kept[REASON_ATTRIBUTE] = {"DataType": "String", "StringValue": reason[:256]}
    return kept


class DeadLetters:
    def __init__(self, sqs: Any, queue_url: str, records: OrderRecords) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.records = records
        self._policy: RedrivePolicy | None = None
        self._policy_read = False

    async def policy(self) -> RedrivePolicy | None:
        """The queue's redrive policy, read once (no second setting to keep in step)."""
        if not self._policy_read:
            self._policy = await redrive_policy_of(self.sqs, self.queue_url)
            self._policy_read = True
        return self._policy

    async def move(self, message: dict[str, Any], reason: str) -> bool:
        """A message that can never be used, to the DLQ now (not after its receives run out):
        a copy there, its attributes kept and the reason added, then the original goes.
        False when the queue names no DLQ (its redrive policy then moves it, later)."""
        policy = await self.policy()
        if policy is None:
            log.error("message %s %s; no DLQ found, leaving it to the redrive policy",
                      message.get("MessageId"), reason)
            return False
        await self.sqs.send_message(QueueUrl=policy.dead_letter_queue_url,
                                    MessageBody=message["Body"],
                                    MessageAttributes=_with_reason(message, reason))
        await self.sqs.delete_message(QueueUrl=self.queue_url,
                                      ReceiptHandle=message["ReceiptHandle"])
        log.error("message %s %s: moved to the dead-letter queue", message.get("MessageId"),
                  reason)
        return True

    async def clear_known(self, stopping: Any = None) -> int:
        """One round of the watcher: delete the DLQ's wake-ups whose order the order table
        holds (the sweep applies it, or has). Returns how many went."""
        policy = await self.policy()
        if policy is None:
            return 0
        cleared = 0
        for _ in range(DLQ_WATCH_RECEIVES):
            if stopping is not None and stopping.is_set():
                break
            response = await self.sqs.receive_message(
                QueueUrl=policy.dead_letter_queue_url, MaxNumberOfMessages=10,
                WaitTimeSeconds=0, VisibilityTimeout=DLQ_WATCH_VISIBILITY_SECONDS)
            messages = response.get("Messages", [])
            wake_ups: dict[str, Any] = {}
            for message in messages:
                with suppress(ValueError, KeyError, TypeError):
                    wake_ups[message["ReceiptHandle"]] = WakeUp.parse(message["Body"])
            known = await self.records.get_many([w.order_id for w in wake_ups.values()])
            gone = [handle for handle, wake in wake_ups.items() if wake.order_id in known]
            if gone:
                await self.sqs.delete_message_batch(
                    QueueUrl=policy.dead_letter_queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(gone)])
                cleared += len(gone)
                log.info("dead-letter queue: %d wake-ups of recorded orders cleared (the "
                         "sweep applies their orders)", len(gone))
            if len(messages) < 10:
                break
        return cleared


# redrive --------------------------------------------------------------------------------

REDRIVE_VISIBILITY_SECONDS = 60  # what redrive holds but does not move stays hidden this long
# How long redrive waits for messages a DLQ watcher hides, after the last one it received.
REDRIVE_PATIENCE_SECONDS = DLQ_WATCH_VISIBILITY_SECONDS + 5


@dataclass
class Redriven:
    moved: int = 0
    order_ids: list[str] = field(default_factory=list)


async def redrive(sqs: Any, queue_url: str) -> Redriven:
    """Move the messages the DLQ holds when it starts back to the main queue (an operator's
    command, after the cause was fixed), their attributes kept. Returns what moved. A
    decided order stays decided: a wake-up for it is a no-op.

    Only messages sent before it started: one that comes back while it runs (a poison
    message dead-lettered again at once by a running worker) is a new message, left where it
    is, so the command ends. SentTimestamp is SQS's clock against this machine's: a skew
    can leave a message for the next run, or move one twice, never loop forever. Messages a
    worker's DLQ watcher hides are waited for (``REDRIVE_PATIENCE_SECONDS`` at most).
    """
    policy = await redrive_policy_of(sqs, queue_url)
    if policy is None:
        raise RuntimeError(f"{queue_url} has no redrive policy naming a dead-letter queue")
    dlq = policy.dead_letter_queue_url
    started_ms = int(time.time() * 1000)
    result = Redriven()
    seen: set[str] = set()
    held: dict[str, str] = {}  # newer messages received and left: id -> receipt handle
    wait_until = time.monotonic() + REDRIVE_PATIENCE_SECONDS
    try:
        while True:
            response = await sqs.receive_message(
                QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                VisibilityTimeout=REDRIVE_VISIBILITY_SECONDS,
                MessageSystemAttributeNames=["SentTimestamp"], MessageAttributeNames=["All"],
            )
            fresh = False
            for message in response.get("Messages", []):
                message_id = message["MessageId"]
                if message_id in seen:
                    held[message_id] = message["ReceiptHandle"]  # ours, visible again
                    continue
                seen.add(message_id)
                fresh = True
                if int(message["Attributes"]["SentTimestamp"]) > started_ms:
                    held[message_id] = message["ReceiptHandle"]
                    continue
                await _move_back(sqs, dlq, queue_url, message, result)
            if fresh:
                wait_until = time.monotonic() + REDRIVE_PATIENCE_SECONDS
                continue
            # Nothing new: done, unless someone else (a worker's DLQ watcher) still hides
            # messages, which come back within its visibility timeout.
            if time.monotonic() >= wait_until or not await _others_hold(sqs, dlq, len(held)):
                return result
    finally:
        # Newer messages go back to being visible: the watcher, a later redrive see them.
        for handle in held.values():
            with suppress(*AWS_ERRORS):
                await sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=handle,
                                                    VisibilityTimeout=0)


async def _move_back(sqs: Any, dlq: str, queue_url: str, message: dict[str, Any],
                     result: Redriven) -> None:
    await sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"],
                           MessageAttributes=attributes_of(message))
    await sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
    result.moved += 1
    with suppress(ValueError, KeyError, TypeError, AttributeError):
        # Whatever else is wrong with it, the order id it names, for the operator.
        result.order_ids.append(str(uuid.UUID(json.loads(message["Body"])["order_id"])))


async def _others_hold(sqs: Any, dlq: str, held: int) -> bool:
    """More in the DLQ than what this run holds: hidden by someone else, or visible again
    since the last receive (hence visible ones count too)."""
    attributes = await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(n) for n in attributes["Attributes"].values()) > held
