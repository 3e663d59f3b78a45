"""The lab's emulator (moto's server, its SQS no longer counting the whole queue for every
message sent or received): it answers as moto does, the counts are still right when asked
for, and sending or receiving no longer computes them."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos_lab.local.aws import MotoServer, client
from chaos_lab.processes import free_port


@pytest.fixture(scope="module")
def lab_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = MotoServer(free_port(), Path(tmp_path_factory.mktemp("moto")) / "moto.log")
    server.start()
    yield server.url
    server.stop()


def test_counts_sends_receives_and_deletes(lab_moto: str) -> None:
    sqs = client("sqs", lab_moto)
    url = sqs.create_queue(QueueName="counts", Attributes={"DelaySeconds": "0"})["QueueUrl"]
    for i in range(25):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   VisibilityTimeout=60)["Messages"]
    assert len(received) == 10 and all(m["Body"].startswith("m") for m in received)
    sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received[:4])])
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "15"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "6"
    assert counts["ApproximateNumberOfMessagesDelayed"] == "1"
    assert counts["MessageRetentionPeriod"] == "345600"


def test_fifo_deduplication_still_applies(lab_moto: str) -> None:
    """Content-based deduplication is read from the attributes the patched send builds."""
    sqs = client("sqs", lab_moto)
    url = sqs.create_queue(QueueName="dedup.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    for _ in range(3):
        sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    counts = sqs.get_queue_attributes(QueueUrl=url,
                                      AttributeNames=["ApproximateNumberOfMessages"])
    assert counts["Attributes"]["ApproximateNumberOfMessages"] == "1"


# Counts how often the three per-queue counts (each a pass over every message) are computed
# while 20 messages are sent and 10 received, with moto as shipped or with the lab's patch.
PROBE = """
import sys
from moto.sqs.models import Queue, sqs_backends
computed = 0
for name in ("approximate_number_of_messages", "approximate_number_of_messages_delayed",
             "approximate_number_of_messages_not_visible"):
    def counting(self, _get=getattr(Queue, name).fget):
        global computed
        computed += 1
        return _get(self)
    setattr(Queue, name, property(counting))
if sys.argv[1] == "patched":
    import chaos_lab.local.moto_server
sqs = sqs_backends["123456789012"]["us-east-1"]
sqs.create_queue("probe")
for i in range(20):
    sqs.send_message("probe", f"m{i}")
assert len(sqs.receive_message("probe", 10, 0, 30)) == 10
print(computed)
"""


def computed_counts(which: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, which], capture_output=True, text=True,
                         timeout=60, check=True)
    return int(out.stdout)


def test_send_and_receive_no_longer_count_the_queue() -> None:
    assert computed_counts("as-shipped") >= 30  # one set per message sent and received
    assert computed_counts("patched") == 0
