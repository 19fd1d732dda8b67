"""Kafka stages against Tansu (a Kafka-compatible broker): round trips, committed offsets, the
partitioner, a SIGKILL in the middle of a topic. Group joins take ~20 s on Tansu, so most tests
assign a partition; one test subscribes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from flowpipe import Payload
from flowpipe.stages.kafka import KafkaSink, KafkaSinkConfig

from .messaging_support import Server, crash_and_restart, eventually, free_port, receive, send


def create_topic(server: Server, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": server.address, "log_level": 3})  # no notices on exit
    for future in admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)]
    ).values():
        future.result(10)


def committed(server: Server, group: str, topic: str, partition: int = 0) -> int:
    consumer = Consumer({"bootstrap.servers": server.address, "group.id": group})
    try:
        offset: int = consumer.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
        return offset
    finally:
        consumer.close()


def per_partition(server: Server, topic: str, partitions: int, total: int) -> Counter[int]:
    """How many records each partition holds (Tansu's watermarks are not reliable: read them)."""
    consumer = Consumer(
        {"bootstrap.servers": server.address, "group.id": "count", "auto.offset.reset": "earliest"}
    )
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    counts: Counter[int] = Counter()
    try:
        eventually(
            lambda: (
                counts.update(m.partition() for m in consumer.consume(1000, 0.1) if not m.error())
                or counts.total() >= total
            ),
            what=f"{total} records in {topic}",
        )
        return counts
    finally:
        consumer.close()


def source_config(server: Server, topic: str, **extra: Any) -> dict[str, Any]:
    return {
        "brokers": server.address,
        "topic": topic,
        "group_id": "g",
        "auto_offset_reset": "earliest",
        **extra,
    }


def test_round_trip_on_an_assigned_partition_commits_what_reached_the_sink(kafka_server: Server) -> None:
    create_topic(kafka_server, "rt")
    records = [b"k%d" % i for i in range(3000)]
    send("kafka_sink", {"brokers": kafka_server.address, "topic": "rt", "partition": 0}, records)
    out: list[Payload] = []
    config = source_config(kafka_server, "rt", partition=0, max_messages=2000)
    assert receive("kafka_source", config, out).exit_code == 0
    assert [p.data for p in out] == records[:2000]
    assert committed(kafka_server, "g", "rt") == 2000
    # The next run resumes after what was committed.
    more: list[Payload] = []
    assert receive("kafka_source", {**config, "max_messages": 1000}, more).exit_code == 0
    assert [p.data for p in more] == records[2000:]
    assert committed(kafka_server, "g", "rt") == 3000


def test_the_sink_partitioner_spreads_records_by_default(kafka_server: Server) -> None:
    create_topic(kafka_server, "spread", partitions=3)
    # librdkafka's sticky partitioner keeps one partition for 10 ms at a time: switch that off.
    config = {
        "brokers": kafka_server.address,
        "topic": "spread",
        "producer_config": {"sticky.partitioning.linger.ms": "0"},
    }
    send("kafka_sink", config, [b"r%d" % i for i in range(300)])
    counts = per_partition(kafka_server, "spread", 3, 300)
    assert counts.total() == 300
    assert len(counts) >= 2, f"everything went to one partition: {counts}"


def test_an_idle_topic_does_not_end_the_source_but_exit_on_idle_does(kafka_server: Server) -> None:
    create_topic(kafka_server, "quiet")
    out: list[Payload] = []
    config = source_config(kafka_server, "quiet", partition=0, exit_on_idle_ms=1500, poll_timeout_ms=50)
    assert receive("kafka_source", config, out).exit_code == 0
    assert out == []


@pytest.mark.slow
def test_subscribe_mode_joins_the_group(kafka_server: Server) -> None:
    create_topic(kafka_server, "sub", partitions=2)
    producer = Producer({"bootstrap.servers": kafka_server.address})
    for i in range(100):  # both partitions get records (unkeyed, the sticky partitioner may pick one)
        producer.produce("sub", b"s%d" % i, partition=i % 2)
    assert producer.flush(10) == 0
    out: list[Payload] = []
    config = source_config(kafka_server, "sub", group_id="joiners", max_messages=100)
    assert receive("kafka_source", config, out).exit_code == 0
    assert sorted(p.data for p in out) == sorted(b"s%d" % i for i in range(100))
    assert committed(kafka_server, "joiners", "sub", 0) + committed(kafka_server, "joiners", "sub", 1) == 100


CRASH_FLOW = """\
name: relay
execution: {{mode: streaming}}
queues: [{{name: q, capacity: 64}}]
stages:
  - name: src
    type: kafka_source
    output_queue: q
    config: {{brokers: '{brokers}', topic: crash, group_id: relay, partition: 0, auto_offset_reset: earliest}}
  - {{name: out, type: append_sink, input_queue: q, config: {{path: '{out}'}}}}
"""


def test_sigkill_mid_stream_then_restart_delivers_every_message_at_least_once(
    kafka_server: Server, plugin_dir: Path, tmp_path: Path
) -> None:
    create_topic(kafka_server, "crash")
    records = [b"c%05d" % i for i in range(20000)]
    send("kafka_sink", {"brokers": kafka_server.address, "topic": "crash"}, records)
    out = tmp_path / "out.txt"
    flow = tmp_path / "relay.yaml"
    flow.write_text(CRASH_FLOW.format(brokers=kafka_server.address, out=out))

    crash_and_restart("kafka (assigned partition)", flow, plugin_dir, out, records)
    assert committed(kafka_server, "relay", "crash") == len(records)  # the drain committed the rest


def test_unreachable_broker_at_start_names_host_and_port(flowpipe: Any, write: Any) -> None:
    port = free_port()
    config = KafkaSinkConfig(brokers=f"127.0.0.1:{port}", topic="t")
    assert KafkaSink.preflight(config) == [f"cannot reach Kafka at 127.0.0.1:{port} (Connection refused)"]
    flow = write(
        "f.yaml",
        f"""
name: f
execution: {{mode: job}}
queues: [{{name: q, capacity: 8}}]
stages:
  - {{name: src, type: noop_source, output_queue: q, config: {{max_messages: 1}}}}
  - {{name: out, type: kafka_sink, input_queue: q, config: {{brokers: '127.0.0.1:{port}', topic: t}}}}
""",
    )
    result = flowpipe("run", flow)
    assert result.returncode == 2
    assert f"stage 'out' (kafka_sink): cannot reach Kafka at 127.0.0.1:{port}" in result.stderr
    assert "nothing was started" in result.stderr
