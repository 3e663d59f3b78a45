"""The lab's emulator (moto's server with its SQS made O(1) per message) answers as moto does:
the counts it no longer computes per message are still right when asked for."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos_lab.aws import MotoServer, client
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
