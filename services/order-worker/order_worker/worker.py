"""The drain loop: receive buffered orders, apply them with the orders service's own
transaction (shop.orders.place_order), decide what happens to each message.

* confirmed or rejected (unknown product, no stock): record the status, delete the message;
  a business rejection is never retried;
* the database is out: leave the message for redelivery, soon (visibility back to a few
  seconds) so that the queue drains quickly once the database is back;
* any other error (a trigger, a permission, a bug): redelivered later and later (the
  visibility grows with the receive count), so that a cause someone fixes in minutes costs
  no order;
* a body that can never be parsed: straight to the dead-letter queue;
* still not applied on the last receive the redrive policy allows: the worker moves it to
  the dead-letter queue itself, with its reason, instead of letting SQS do it silently.

Every order whose message reaches the dead-letter queue gets the final status ``failed`` (with
a reason) in the order-status table, so ``GET /orders/{id}`` never says ``pending`` forever:
the worker writes it when it dead-letters a message itself, and a watcher reads the DLQ for
the messages the redrive policy moved behind its back (a worker that crashed holding one).

While the writer's breaker is not closed the worker does not receive at all (the breaker's
background probe closes it once the writer answers), so a long outage does not burn receive
counts and push good orders into the dead-letter queue. Redelivery is safe: place_order is
idempotent on the order id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from shop.aws import AWS_ERRORS, OrderBuffer, QueuedOrder
from shop.db import Endpoint
from shop.errors import DatabaseNotReady, DatabaseUnavailable
from shop.metrics import ORDERS_FAILED, QUEUE_MESSAGES, WORKER_MESSAGES
from shop.orders import Order, fetch_order, place_order
from shop.settings import Settings

log = logging.getLogger("order_worker")

RETRY_VISIBILITY_SECONDS = 2  # database out: back soon, the queue drains fast once it returns
# Any other error: 2 s after the first receive, doubling up to 5 minutes; with the lab's
# redrive policy (10 receives) that is about 13 minutes before an order is given up.
ERROR_VISIBILITY_SECONDS = 2
MAX_ERROR_VISIBILITY_SECONDS = 300
MAX_POLL_BACKOFF_SECONDS = 10.0  # well under the health limit: a pausing poller is alive
# The DLQ watcher: a round every few seconds, at most this many receives of 10 a round. What
# it reads stays hidden for the round (so a deep DLQ is read through, not the same 10 again)
# and is visible again well before the next one, so ``redrive`` never races it for a message.
DLQ_WATCH_SECONDS = 10.0
DLQ_WATCH_RECEIVES = 10
DLQ_WATCH_VISIBILITY_SECONDS = 5
DLQ_WATCH_REMEMBERED = 10_000  # message ids already handled: read again, nothing to do
SQS_MAX_ATTRIBUTES = 10  # message attributes SQS takes on one message
REASON_ATTRIBUTE = "dead_letter_reason"  # added by the worker, dropped again by redrive
# The queue-depth gauge (shop_queue_messages): read every few seconds, for the dashboard.
QUEUE_DEPTH_SECONDS = 5.0
QUEUE_DEPTH_ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")


@dataclass(frozen=True)
class RedrivePolicy:
    dead_letter_queue_url: str
    max_receives: int


@dataclass(frozen=True)
class Failure:
    """A message whose order could not be applied this time: why, for the log and the DLQ."""

    outcome: str  # "retry" (database out) or "error" (anything else)
    detail: str


class OrderWorker:
    def __init__(self, settings: Settings, writer: Endpoint, sqs: Any,
                 buffer: OrderBuffer) -> None:
        assert settings.order_queue_url, "SHOP_ORDER_QUEUE_URL is required"
        self.settings = settings
        self.writer = writer
        self.sqs = sqs
        self.buffer = buffer
        self.queue_url = settings.order_queue_url
        self._policy: RedrivePolicy | None = None
        self._policy_read = False
        self._dead_letters_seen: dict[str, None] = {}  # insertion-ordered: oldest out first
        self.stopping = asyncio.Event()
        self.last_poll = time.monotonic()  # the health signal: the loop is alive

    def healthy(self) -> bool:
        """Alive if the loop went round recently (a long poll plus the slowest batch)."""
        limit = self.settings.worker_wait_seconds + 3 * self.settings.retry_budget_seconds + 10
        return time.monotonic() - self.last_poll < limit

    async def run(self) -> None:
        """Until ``stopping`` is set; in-flight messages are finished before it returns.
        ``SHOP_WORKER_POLLERS`` receive loops run side by side: one loop spends most of its
        time waiting on SQS and the database, so a backlog drains that many times faster.
        Beside them, one loop watches the dead-letter queue and one reads the queues' depth."""
        log.info("order-worker draining %s with %d pollers", self.queue_url,
                 self.settings.worker_pollers)
        await asyncio.gather(*(self._poll() for _ in range(self.settings.worker_pollers)),
                             self._watch_dead_letters(), self._watch_queue_depth())
        log.info("order-worker stopped")

    async def _poll(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            self.last_poll = time.monotonic()
            try:
                if not self.database_usable():
                    await self._pause(1.0)
                    continue
                messages = await self.receive()
                if messages:
                    await self.handle(messages)
                failures = 0
            except Exception as exc:  # a poller never dies: say what it was, wait, go on
                failures += 1
                delay = _backoff(failures)
                if isinstance(exc, AWS_ERRORS):
                    log.warning("queue unreachable: %s; polling again in %.0f s", exc, delay)
                else:
                    log.error("poll failed: %s: %s; polling again in %.0f s",
                              type(exc).__name__, exc, delay, exc_info=exc)
                await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    def database_usable(self) -> bool:
        """True when the schema is in place and the breaker is closed (its background probe
        closes it once the writer answers again)."""
        breaker = self.writer.breaker
        return self.writer.ready.is_set() and (breaker is None or breaker.closed)

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
        return messages

    async def handle(self, messages: list[dict[str, Any]]) -> list[str]:
        """Apply a batch, its orders side by side; then one call records every decision and
        one deletes their messages (three AWS calls a batch, not two per order). Returns the
        outcomes (also counted in metrics). One message failing is that message's outcome,
        never its batch's. If recording fails nothing is deleted: the messages come back and
        place_order replays them."""
        results = await asyncio.gather(*(self.apply(m) for m in messages),
                                       return_exceptions=True)
        outcomes: list[Order | Failure | str] = []
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancelled: stopping
                log.error("message %s failed: %s: %s", message.get("MessageId"),
                          type(result).__name__, result)
                result = Failure("error", type(result).__name__)
            outcomes.append(result)
        names = [r.status if isinstance(r, Order) else r if isinstance(r, str) else r.outcome
                 for r in outcomes]
        # The messages not applied first: a failure to record the others below must not keep
        # them from their last-receive handling (an outage never fails an order).
        failed = [(i, m, r) for i, (m, r) in enumerate(zip(messages, outcomes, strict=True))
                  if isinstance(r, Failure)]
        if failed:
            fates = await self._not_applied([(m, r) for _, m, r in failed])
            for (i, _, _), fate in zip(failed, fates, strict=True):
                names[i] = fate
        decided = [(m, r) for m, r in zip(messages, outcomes, strict=True)
                   if isinstance(r, Order)]
        if decided:
            await self.buffer.record([order for _, order in decided])
            await self._delete([m for m, _ in decided])
            for _, order in decided:
                log.info("order %s %s%s", order.order_id, order.status,
                         f" ({order.reason})" if order.reason else "")
        for name in names:
            WORKER_MESSAGES.labels(outcome=name).inc()
        return names

    async def _not_applied(self, failed: list[tuple[dict[str, Any], Failure]]) -> list[str]:
        """Messages whose order was not applied. On the last receive the redrive policy
        allows, the worker decides their fate itself rather than let SQS move them silently:
        a database outage is never a reason to fail an order (a fresh copy goes back on the
        queue, its receive count starting again), anything else is given up. Before that
        they come back: soon after an outage, later and later after other errors."""
        policy = await self.redrive_policy()
        names: list[str] = []
        later: list[dict[str, Any]] = []
        for message, failure in failed:
            receives = _receive_count(message)
            if policy is None or receives < policy.max_receives:
                later.append({
                    "Id": str(len(later)), "ReceiptHandle": message["ReceiptHandle"],
                    "VisibilityTimeout": _visibility(failure, receives)})
                names.append(failure.outcome)
            else:
                names.append(await self._last_receive(message, failure, receives,
                                                      policy.dead_letter_queue_url))
        if later:
            await self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url,
                                                           Entries=later)
        return names

    async def _last_receive(self, message: dict[str, Any], failure: Failure, receives: int,
                            dlq: str) -> str:
        try:
            if failure.outcome == "retry":
                await self._requeue(message)
                return "requeued"
            await self._give_up(message, dlq,
                                f"not applied after {receives} receives: {failure.detail}")
            return "failed"
        except AWS_ERRORS as exc:
            # SQS moves it on the next receive instead, and the DLQ watcher marks it failed.
            log.warning("message %s on its last receive: %s", message.get("MessageId"), exc)
            return failure.outcome

    async def apply(self, message: dict[str, Any]) -> Order | Failure | str:
        """One message: the order decided, a Failure (not applied this time), or what became
        of a message that can never succeed. Any other exception is a Failure("error") too."""
        try:
            order = QueuedOrder.parse(message["Body"])
        except (ValueError, KeyError, TypeError) as exc:
            return await self.dead_letter(message, f"unparseable message: {exc}")
        try:
            # Bounded like a request (the order statement has no statement timeout, so that
            # its commit is never cut short): past it the outcome is unknown, the message
            # comes back, and place_order replays whatever did commit.
            deadline = asyncio.get_running_loop().time() + self.settings.request_budget_seconds
            return await self.writer.run(
                lambda conn: place_order(conn, order.order_id, order.product_id, order.quantity,
                                         order.idempotency_key),
                deadline=deadline, detach=True,
            )
        except (DatabaseUnavailable, DatabaseNotReady) as exc:
            log.info("order %s: database out (%s), left for redelivery", order.order_id, exc)
            return Failure("retry", type(exc).__name__)

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        response = await self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        for failed in response.get("Failed", []):
            # Delivered again later and replayed by place_order: harmless, but worth a line.
            log.warning("could not delete message %s: %s", failed.get("Id"),
                        failed.get("Message"))

    async def dead_letter(self, message: dict[str, Any], reason: str) -> str:
        """Move a message that can never succeed to the DLQ now, not after ten receives."""
        policy = await self.redrive_policy()
        if policy is None:
            log.error("message %s %s; no DLQ found, leaving it to the redrive policy",
                      message.get("MessageId"), reason)
            return "malformed"
        await self._move_to_dead_letters(message, policy.dead_letter_queue_url, reason)
        log.error("message %s %s: moved to the dead-letter queue", message.get("MessageId"),
                  reason)
        order_id, product_id, quantity = _order_fields(message["Body"])
        if order_id is not None:
            await self.fail_order(order_id, reason, "unparseable", product_id, quantity)
        return "dead-lettered"

    async def _give_up(self, message: dict[str, Any], dlq: str, reason: str) -> None:
        await self._move_to_dead_letters(message, dlq, reason)
        log.error("message %s %s: moved to the dead-letter queue", message.get("MessageId"),
                  reason)
        order_id, product_id, quantity = _order_fields(message["Body"])
        if order_id is not None:
            await self.fail_order(order_id, reason, "receives_exhausted", product_id, quantity)

    async def _move_to_dead_letters(self, message: dict[str, Any], dlq: str,
                                    reason: str) -> None:
        """A copy in the DLQ, its attributes kept and the reason added; then the original
        goes. Should the delete fail, the original comes back and is moved again: a second
        copy in the DLQ of an order that is failed once."""
        await self.sqs.send_message(QueueUrl=dlq, MessageBody=message["Body"],
                                    MessageAttributes=_with_reason(message, reason))
        await self.sqs.delete_message(QueueUrl=self.queue_url,
                                      ReceiptHandle=message["ReceiptHandle"])

    async def _requeue(self, message: dict[str, Any]) -> None:
        """The database went out under the last receive SQS allows: a fresh copy of the
        message (attributes kept), so an outage never sends an order to the DLQ."""
        await self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=message["Body"],
                                    MessageAttributes=_attributes(message),
                                    DelaySeconds=RETRY_VISIBILITY_SECONDS)
        await self.sqs.delete_message(QueueUrl=self.queue_url,
                                      ReceiptHandle=message["ReceiptHandle"])
        log.warning("message %s: database out on its last receive, queued again",
                    message.get("MessageId"))

    async def fail_order(self, order_id: uuid.UUID, reason: str, kind: str,
                         product_id: int = 0, quantity: int = 0) -> bool:
        """The final status ``failed``, written once: logged and counted only when this call
        made it so. Never over a decided order, in the status table (a conditional write) or
        in the database (an acknowledgement lost after the commit): such an order gets its
        decision recorded instead. A status table that cannot be written is logged; the DLQ
        watcher tries again, the message being in the DLQ."""
        try:
            decided = await self._decided_in_database(order_id)
        except _NotAsked as exc:
            # Failed would be a guess: its commit may be there. The DLQ watcher asks again.
            log.info("order %s: not marked failed yet, the database was not asked (%s)",
                     order_id, exc)
            return False
        try:
            if decided is not None:
                await self.buffer.record([decided])
                return False
            changed = await self.buffer.mark_failed(order_id, reason[:256], product_id,
                                                    quantity)
        except AWS_ERRORS as exc:
            log.warning("order %s could not be marked failed (%s); the DLQ watcher will retry",
                        order_id, exc)
            return False
        if changed:
            # One line per failed order, in this exact form: a log metric filter counts it.
            log.error("order failed: %s: %s", order_id, reason)
            ORDERS_FAILED.labels(reason=kind).inc()
        return changed

    # The dead-letter queue ----------------------------------------------------------------

    async def _watch_dead_letters(self) -> None:
        """Background loop: orders whose message the redrive policy moved to the DLQ behind
        the worker's back (it crashed holding one, say) get their failed status too."""
        failures = 0
        while not self.stopping.is_set():
            delay = DLQ_WATCH_SECONDS
            try:
                await self.check_dead_letters()
                failures = 0
            except Exception as exc:  # never dies either
                failures += 1
                delay = max(delay, _backoff(failures))
                log.warning("dead-letter queue check failed: %s: %s", type(exc).__name__, exc)
            await self._pause(delay)

    async def check_dead_letters(self) -> int:
        """One round: read what the DLQ shows (never deleting: the messages wait there for a
        human and ``redrive``) and mark their orders failed. Returns how many it marked."""
        policy = await self.redrive_policy()
        if policy is None:
            return 0
        marked = 0
        for _ in range(DLQ_WATCH_RECEIVES):
            if self.stopping.is_set():
                break
            response = await self.sqs.receive_message(
                QueueUrl=policy.dead_letter_queue_url, MaxNumberOfMessages=10,
                WaitTimeSeconds=0, VisibilityTimeout=DLQ_WATCH_VISIBILITY_SECONDS,
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            for message in messages:
                marked += await self._dead_lettered(message, policy)
            if len(messages) < 10:
                break
        return marked

    async def _dead_lettered(self, message: dict[str, Any], policy: RedrivePolicy) -> int:
        message_id = message["MessageId"]
        order_id, product_id, quantity = _order_fields(message["Body"])
        if message_id in self._dead_letters_seen or order_id is None:
            return 0  # done already, or nothing a customer can look up
        reason = (message.get("MessageAttributes", {}).get(REASON_ATTRIBUTE, {})
                  .get("StringValue") or f"dead-lettered after {policy.max_receives} receives")
        marked = await self.fail_order(order_id, reason, "dead_lettered", product_id, quantity)
        if not marked:
            current = await self.buffer.status(order_id)
            if current is None or current.status == "pending":
                return 0  # the status table could not be written: the next round tries again
        # Its order has a final status: the next rounds skip this message.
        self._dead_letters_seen[message_id] = None
        if len(self._dead_letters_seen) > DLQ_WATCH_REMEMBERED:
            del self._dead_letters_seen[next(iter(self._dead_letters_seen))]
        return int(marked)

    # The queues' depth ----------------------------------------------------------------------

    async def _watch_queue_depth(self) -> None:
        """Background loop: ``shop_queue_messages`` for the order queue and its DLQ, every
        ``QUEUE_DEPTH_SECONDS``. A round that fails is logged and leaves the last values; the
        loop never dies."""
        while not self.stopping.is_set():
            try:
                await self.refresh_queue_depth()
            except Exception as exc:  # never dies
                log.warning("queue depth not read: %s: %s", type(exc).__name__, exc)
            await self._pause(QUEUE_DEPTH_SECONDS)

    async def refresh_queue_depth(self) -> dict[str, int]:
        """One round: each queue's visible + in-flight messages into the gauge. Every call is
        bounded (the client bounds connecting and reading, not the wait for one of its pooled
        connections, which the long-polling pollers hold: the deadline covers that too)."""
        bound = 2 * (self.settings.aws_timeout + self.settings.worker_wait_seconds)
        async with asyncio.timeout(bound):
            policy = await self.redrive_policy()
        queues = {"orders": self.queue_url}
        if policy is not None:
            queues["dead-letter"] = policy.dead_letter_queue_url
        depths = {}
        for name, url in queues.items():
            async with asyncio.timeout(bound):
                depths[name] = await queue_depth(self.sqs, url)
            QUEUE_MESSAGES.labels(queue=name).set(depths[name])
        return depths

    async def _decided_in_database(self, order_id: uuid.UUID) -> Order | None:
        """The order's row if the database has it (decided: place_order commits a decision or
        nothing), None when it has not. Only asked while the breaker is closed; ``_NotAsked``
        when it could not be asked: unknown is not "not there"."""
        breaker = self.writer.breaker
        if not self.writer.ready.is_set() or (breaker is not None and breaker.state != "closed"):
            raise _NotAsked("the writer's breaker is not closed")
        try:
            return await self.writer.run(lambda conn: fetch_order(conn, order_id))
        except Exception as exc:
            raise _NotAsked(f"{type(exc).__name__}: {exc}") from exc

    async def redrive_policy(self) -> RedrivePolicy | None:
        """The queue's redrive policy, read once (no second setting to keep in step)."""
        if not self._policy_read:
            self._policy = await redrive_policy_of(self.sqs, self.queue_url)
            self._policy_read = True
        return self._policy


class _NotAsked(Exception):
    """The database could not be asked whether an order is there."""


def _backoff(failures: int) -> float:
    """1, 2, 4, 8, then 10 s: capped, so a poller is back soon after the cause goes away."""
    return float(min(2 ** (failures - 1), MAX_POLL_BACKOFF_SECONDS))


def _receive_count(message: dict[str, Any]) -> int:
    return int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))


def _visibility(failure: Failure, receives: int) -> int:
    if failure.outcome == "retry":
        return RETRY_VISIBILITY_SECONDS
    doublings = min(max(receives - 1, 0), 16)
    return min(ERROR_VISIBILITY_SECONDS << doublings, MAX_ERROR_VISIBILITY_SECONDS)


def _attributes(message: dict[str, Any]) -> dict[str, Any]:
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
    is also in the log and the status table)."""
    kept = _attributes(message)
    if len(kept) < SQS_MAX_ATTRIBUTES:
        kept[REASON_ATTRIBUTE] = {"DataType": "String", "StringValue": reason[:256]}
    return kept


def _order_fields(body: str) -> tuple[uuid.UUID | None, int, int]:
    """Order id, product and quantity of any body, as far as they can be read (0 where not):
    enough to give the order of an unusable message its failed status."""
    with suppress(ValueError, KeyError, TypeError):
        order = QueuedOrder.parse(body)
        return order.order_id, order.product_id, order.quantity
    try:
        data = json.loads(body)
        order_id = uuid.UUID(str(data["order_id"]))
    except (ValueError, KeyError, TypeError):
        return None, 0, 0

    def whole(value: Any) -> int:
        return value if type(value) is int and 0 <= value < 2**63 else 0

    return order_id, whole(data.get("product_id")), whole(data.get("quantity"))


async def queue_depth(sqs: Any, queue_url: str) -> int:
    """Visible plus in-flight messages (SQS's approximate counts)."""
    response = await sqs.get_queue_attributes(QueueUrl=queue_url,
                                              AttributeNames=list(QUEUE_DEPTH_ATTRIBUTES))
    attributes = response.get("Attributes", {})
    return sum(int(attributes.get(name, 0)) for name in QUEUE_DEPTH_ATTRIBUTES)


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


# redrive --------------------------------------------------------------------------------

REDRIVE_VISIBILITY_SECONDS = 60  # what redrive holds but does not move stays hidden this long
# How long redrive waits for messages a DLQ watcher hides, after the last one it received.
REDRIVE_PATIENCE_SECONDS = DLQ_WATCH_VISIBILITY_SECONDS + 5


@dataclass
class Redriven:
    moved: int = 0
    order_ids: list[str] = field(default_factory=list)


async def redrive(sqs: Any, queue_url: str, buffer: OrderBuffer | None = None) -> Redriven:
    """Move the messages the DLQ holds when it starts back to the main queue (an operator's
    command, after the cause was fixed), their attributes kept, their orders back to
    ``pending`` (only from failed). Returns what moved.

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
                await _move_back(sqs, dlq, queue_url, message, buffer, result)
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
                     buffer: OrderBuffer | None, result: Redriven) -> None:
    """Pending again first, then the message: should the send fail, the order is pending
    with its message still in the DLQ, and the watcher marks it failed again."""
    order_id, _, _ = _order_fields(message["Body"])
    if order_id is not None and buffer is not None:
        await buffer.reopen(order_id)
    await sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"],
                           MessageAttributes=_attributes(message))
    await sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
    result.moved += 1
    if order_id is not None:
        result.order_ids.append(str(order_id))


async def _others_hold(sqs: Any, dlq: str, held: int) -> bool:
    """More in the DLQ than what this run holds: hidden by someone else, or visible again
    since the last receive (hence visible ones count too)."""
    attributes = await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(n) for n in attributes["Attributes"].values()) > held
