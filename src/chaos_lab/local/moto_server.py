"""The lab's AWS emulator: ``python -m moto.server``, with two fixes to its SQS.

moto 5.2.5 builds *all* of a queue's attributes, three of which are passes over every message
in the queue, to check each message it hands out against the retention period, and to look up
content-based deduplication for each message it is sent. With a backlog of n messages, each
message sent or received costs O(n): with 1,000 orders queued during an outage, a receive of
ten took 1.3 s and the drain ran at 14 orders a second, the emulator's pace, not the worker's;
a send took 11 ms on an empty queue and 30 ms behind 400 messages (``py-spy record`` on the
moto process, BENCHMARKS.md). Both now skip the three counts. Everything else is moto as it
ships; the tests run moto unpatched.

    python -m chaos_lab.local.moto_server -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.utils import unix_time
from moto.server import main
from moto.sqs.models import Message, Queue, SQSBackend

COUNTS = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed",
          "ApproximateNumberOfMessagesNotVisible")
_attributes: Any = vars(Queue)["attributes"].fget
_send_message = SQSBackend.send_message
_local = threading.local()  # moto's server answers each request on a thread of its own


class _WithoutCounts:
    """A queue as ``Queue.attributes`` sees it, minus the three counts."""

    BASE_ATTRIBUTES = tuple(name for name in Queue.BASE_ATTRIBUTES if name not in COUNTS)

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


def attributes(self: Queue) -> dict[str, Any]:
    if getattr(_local, "without_counts", False):
        return dict(_attributes(_WithoutCounts(self)))
    return dict(_attributes(self))


def send_message(self: SQSBackend, *args: Any, **kwargs: Any) -> Message:
    _local.without_counts = True
    try:
        return _send_message(self, *args, **kwargs)
    finally:
        _local.without_counts = False


def is_message_valid_based_on_retention_period(self: SQSBackend, queue_name: str,
                                               message: Message) -> bool:
    queue: Any = self.get_queue(queue_name)  # moto sets queue attributes by name
    sent_ms: int = message.sent_timestamp or 0
    return bool(int(queue.message_retention_period) + sent_ms / 1000 > unix_time())


Queue.attributes = property(attributes)  # type: ignore[method-assign,assignment]
SQSBackend.send_message = send_message  # type: ignore[method-assign]
SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
    is_message_valid_based_on_retention_period)

if __name__ == "__main__":
    main()
