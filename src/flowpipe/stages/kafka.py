"""Kafka stages: ``kafka_source`` and ``kafka_sink`` (confluent-kafka, i.e. librdkafka).

``kafka_source`` never lets librdkafka commit by itself: it commits a partition's offset only
up to the first message whose records have not all reached the sinks yet, so after a crash
the group resumes at the oldest message not fully handled (messages after it that were
handled come again: at least once). ``kafka_sink`` returns from a batch only once the broker
confirmed every record of it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from flowpipe import Batch, Sink, Source, StageContext

from ._net import (
    Outage,
    ReconnectConfig,
    SourceEnd,
    SourceEndConfig,
    idle_wait,
    missing_library,
    probe,
    split_endpoints,
)

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
except ImportError as error:  # pragma: no cover - the messaging extra is not installed
    raise missing_library("confluent-kafka", "kafka_* stages") from error

__all__ = ["KafkaSink", "KafkaSource"]

_METADATA_TIMEOUT_S = 5.0
_CLOSE_COMMIT_TIMEOUT_S = 5.0
_FLUSH_STEP_S = 1.0  # a batch's flush waits this long between checks of the outage
# librdkafka reports these while it reconnects by itself; anything else is logged as an error.
_TRANSIENT = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE, KafkaError._TIMED_OUT}


class KafkaConfig(ReconnectConfig):
    brokers: str = Field(min_length=1, description="bootstrap servers, 'host:port' comma-separated")
    client_id: str = Field("", description="client.id reported to the brokers (empty: librdkafka's default)")


def _client_settings(config: KafkaConfig, context: StageContext, outage: Outage) -> dict[str, Any]:
    """Settings common to consumers and producers; broker errors go to the stage's log."""

    def on_error(error: KafkaError) -> None:
        if error.code() in _TRANSIENT:
            outage.lost(error.str())
        else:
            context.logger.error("Kafka: %s", error.str())

    settings: dict[str, Any] = {
        "bootstrap.servers": config.brokers,
        "error_cb": on_error,
        "logger": context.logger,
    }
    if config.client_id:
        settings["client.id"] = config.client_id
    return settings


def _require_brokers(config: KafkaConfig) -> None:
    unreachable = probe("Kafka", split_endpoints(config.brokers, 9092))
    if unreachable:
        raise ConnectionError(unreachable[0])


class _KafkaStage:
    @classmethod
    def preflight(cls, config: KafkaConfig) -> list[str]:
        """Problems to report before the flow starts: no broker accepting connections."""
        return probe("Kafka", split_endpoints(config.brokers, 9092))


class KafkaSourceConfig(KafkaConfig, SourceEndConfig):
    topic: str = Field(min_length=1, description="topic to read")
    group_id: str = Field(
        min_length=1,
        description="consumer group: offsets are committed under it; when subscribing, the group's "
        "members (replicas) share the partitions",
    )
    partition: int = Field(
        -1,
        ge=-1,
        description="≥ 0: read only this partition (assigned, no group rebalancing); -1: subscribe "
        "to the topic and share its partitions among the group",
    )
    auto_offset_reset: str = Field(
        "", description="where to start without a committed offset: earliest or latest (empty: latest)"
    )
    poll_timeout_ms: int = Field(
        1000, ge=0, description="longest one poll waits for messages (at most 100 ms are used)"
    )
    consumer_config: dict[str, str] = Field(
        default_factory=dict,
        description="extra librdkafka consumer settings (leave enable.auto.commit alone: offsets are "
        "committed after the sinks)",
    )


class KafkaSource(_KafkaStage, Source[KafkaSourceConfig]):
    """Reads a Kafka topic; commits offsets only once the sinks have every record before them."""

    def open(self) -> None:
        config, context = self.config, self.context
        _require_brokers(config)
        self._outage = Outage(context, f"Kafka at {config.brokers}", config.reconnect_timeout_ms)
        self._end = SourceEnd(config)
        self._wait = idle_wait(config.poll_timeout_ms)
        settings = _client_settings(config, context, self._outage)
        settings.update(
            {
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "on_commit": self._on_commit,
            }
        )
        if config.auto_offset_reset:
            settings["auto.offset.reset"] = config.auto_offset_reset
        settings.update(config.consumer_config)
        self._consumer = Consumer(settings)
        try:
            self._consumer.list_topics(config.topic, timeout=_METADATA_TIMEOUT_S)
        except KafkaException as error:
            self._consumer.close()
            raise ConnectionError(f"Kafka at {config.brokers} does not answer: {error}") from error
        if config.partition >= 0:
            self._consumer.assign([TopicPartition(config.topic, config.partition)])
        else:
            self._consumer.subscribe([config.topic])
        # Batches in the order they were emitted, each with the last offset per partition it
        # holds; a prefix of fully acknowledged batches becomes a commit.
        self._seq = 0
        self._emitted: dict[int, dict[tuple[str, int], int]] = {}
        self._acked: set[int] = set()
        self._committed: dict[tuple[str, int], int] = {}

    def produce_batch(self, limit: int) -> Batch:
        self._outage.check()
        want = self._end.room(limit)
        messages = self._consumer.consume(num_messages=want, timeout=self._wait)
        data: list[Any] = []
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_message_error(error)
                continue
            value = message.value()
            if value is not None:  # a tombstone carries no record
                data.append(value)
            offsets[(message.topic() or "", message.partition() or 0)] = message.offset() or 0
        if not offsets:
            if self._outage.since is not None:
                self._probe_brokers()
            self._end.took(0)
            return Batch([])
        self._outage.restored()
        self._end.took(len(data))
        self._seq += 1
        self._emitted[self._seq] = offsets
        if not data:  # only tombstones: nothing to wait for
            self.acknowledge([self._seq])
        batch = Batch(data)
        if data:
            batch.ack = self._seq
        return batch

    def _on_message_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:  # the end of what is there now, not of the stream
            return
        if error.fatal():
            raise KafkaException(error)
        self.context.logger.warning("Kafka: %s", error.str())

    def _probe_brokers(self) -> None:
        """While librdkafka reports the brokers down, find out whether they are back."""
        try:
            self._consumer.list_topics(self.config.topic, timeout=self._wait)
        except KafkaException:
            return
        self._outage.restored()

    def acknowledge(self, tokens: list[Any]) -> None:
        acked, emitted = self._acked, self._emitted
        acked.update(tokens)
        ready = []
        for seq in emitted:
            if seq not in acked:
                break
            ready.append(seq)
        if not ready:
            return
        commit: dict[tuple[str, int], int] = {}
        for seq in ready:
            commit.update(emitted.pop(seq))
            acked.discard(seq)
        self._committed.update(commit)
        # The committed offset is the next message to read, hence + 1.
        offsets = [
            TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in commit.items()
        ]
        self._consumer.commit(offsets=offsets, asynchronous=True)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        # A failed commit loses nothing: a later one covers it, or the messages come again.
        if error is not None:
            self.context.logger.warning("Kafka: offset commit failed: %s", error.str())

    def close(self) -> None:
        try:
            if self._committed:  # make sure the last asynchronous commit landed
                offsets = [TopicPartition(t, p, o + 1) for (t, p), o in self._committed.items()]
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            self.context.logger.warning("Kafka: final offset commit failed: %s", error)
        finally:
            self._consumer.close()


class KafkaSinkConfig(KafkaConfig):
    topic: str = Field(min_length=1, description="topic to write")
    partition: int = Field(
        -1,
        ge=-1,
        description="≥ 0: every record to this partition; -1: the partitioner spreads them "
        "(the original defaulted to 0, sending everything to partition 0)",
    )
    producer_config: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka producer settings"
    )


class KafkaSink(_KafkaStage, Sink[KafkaSinkConfig]):
    """Produces each record to a Kafka topic; a batch is done once the broker confirmed all of it."""

    def open(self) -> None:
        config, context = self.config, self.context
        _require_brokers(config)
        self._outage = Outage(context, f"Kafka at {config.brokers}", config.reconnect_timeout_ms)
        self._failed: list[KafkaError] = []
        settings = _client_settings(config, context, self._outage)
        settings.update({"delivery.report.only.error": True, "on_delivery": self._on_delivery})
        settings.update(config.producer_config)
        self._producer = Producer(settings)
        try:
            self._producer.list_topics(config.topic, timeout=_METADATA_TIMEOUT_S)
        except KafkaException as error:
            raise ConnectionError(f"Kafka at {config.brokers} does not answer: {error}") from error

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failed.append(error)

    def consume_batch(self, batch: Batch) -> None:
        # -1 is librdkafka's "unassigned" partition: the partitioner chooses.
        producer, topic, partition = self._producer, self.config.topic, self.config.partition
        produce = producer.produce
        for record in batch.data:
            while True:
                try:
                    produce(topic, record, partition=partition)
                    break
                except BufferError:  # librdkafka's queue is full: let it send some first
                    producer.poll(_FLUSH_STEP_S)
                    self._outage.check()
        # Returning means the records are safe: wait until the broker confirmed each one.
        while producer.flush(_FLUSH_STEP_S):
            self._outage.check()  # error_cb reports the outage; librdkafka keeps resending
        self._outage.restored()
        if self._failed:
            failed, self._failed = self._failed, []
            raise KafkaException(failed[0])

    def close(self) -> None:
        self._producer.flush(_CLOSE_COMMIT_TIMEOUT_S)
