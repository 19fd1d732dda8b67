"""NATS and JetStream stages against a real nats-server: round trips, acknowledgements, idling,
reconnection, a SIGKILL in the middle of a JetStream stream, two replicas in one queue group."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from nats.aio.client import Client

from flowpipe import Payload
from flowpipe.stages.nats import NatsJetStreamSource, NatsJetStreamSourceConfig
from flowpipe.testing import FlowResult

from .messaging_support import (
    Server,
    crash_and_restart,
    eventually,
    free_port,
    in_thread,
    lines,
    nats_subscriptions,
    receive,
    send,
    start_flow,
)

T = TypeVar("T")


def with_client(server: Server, work: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        client = await nats.connect(f"nats://{server.address}")
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(main())


def publish(server: Server, subject: str, records: list[bytes]) -> None:
    async def work(client: Client) -> None:
        for record in records:
            await client.publish(subject, record)
        await client.flush()

    with_client(server, work)


def add_stream(server: Server, name: str, subject: str) -> None:
    async def work(client: Client) -> None:
        await client.jetstream().add_stream(name=name, subjects=[subject])

    with_client(server, work)


def consumer_info(server: Server, stream: str, durable: str) -> Any:
    async def work(client: Client) -> Any:
        return await client.jetstream().consumer_info(stream, durable)

    return with_client(server, work)


def test_core_round_trip_and_an_idle_source_keeps_running(nats_server: Server) -> None:
    out: list[Payload] = []
    results: list[FlowResult] = []
    url = f"nats://{nats_server.address}"
    config = {"url": url, "subject": "rt.core", "max_messages": 500, "poll_timeout_ms": 20}
    thread = in_thread(lambda: results.append(receive("nats_source", config, out)))
    eventually(lambda: nats_subscriptions(nats_server, "rt.core") == 1, what="the subscription")
    thread.join(0.5)  # many idle polls of 20 ms: the source must still be there
    assert thread.is_alive()
    records = [b"n%d" % i for i in range(500)]
    send("nats_sink", {"url": url, "subject": "rt.core"}, records)
    thread.join(20)
    assert results[0].exit_code == 0
    assert [p.data for p in out] == records


def test_jetstream_round_trip_acknowledges_every_message(nats_server: Server) -> None:
    add_stream(nats_server, "RT", "rt.js")
    url = f"nats://{nats_server.address}"
    records = [b"j%d" % i for i in range(3000)]
    send("nats_jetstream_sink", {"url": url, "subject": "rt.js"}, records)
    out: list[Payload] = []
    config = {"url": url, "subject": "rt.js", "durable_name": "d1", "max_messages": 3000}
    assert receive("nats_jetstream_source", config, out).exit_code == 0
    assert [p.data for p in out] == records
    eventually(lambda: consumer_info(nats_server, "RT", "d1").num_ack_pending == 0, what="every ack")
    assert consumer_info(nats_server, "RT", "d1").num_pending == 0


def test_jetstream_without_a_stream_is_a_clear_error(nats_server: Server) -> None:
    url = f"nats://{nats_server.address}"
    out: list[Payload] = []
    result = receive("nats_jetstream_source", {"url": url, "subject": "nowhere"}, out)
    assert result.exit_code == 1 and result.failure is not None
    assert "no JetStream stream captures subject 'nowhere'" in str(result.failure)


def test_reconnects_after_the_server_restarts(own_nats: Server, caplog: pytest.LogCaptureFixture) -> None:
    url = f"nats://{own_nats.address}"
    out: list[Payload] = []
    results: list[FlowResult] = []
    config = {"url": url, "subject": "rc", "max_messages": 2, "poll_timeout_ms": 50}
    with caplog.at_level(logging.INFO, logger="flowpipe"):
        thread = in_thread(lambda: results.append(receive("nats_source", config, out)))
        eventually(lambda: nats_subscriptions(own_nats, "rc") == 1, what="the subscription")
        publish(own_nats, "rc", [b"before"])
        eventually(lambda: len(out) == 1, what="the first message")
        own_nats.restart()
        eventually(lambda: nats_subscriptions(own_nats, "rc") == 1, what="the source to subscribe again")
        send("nats_sink", {"url": url, "subject": "rc"}, [b"after"])
        thread.join(30)
    assert results[0].exit_code == 0
    assert [p.data for p in out] == [b"before", b"after"]
    assert f"lost connection to NATS at {url}" in caplog.text
    assert f"reconnected to NATS at {url}" in caplog.text


def test_queue_group_replicas_split_a_subject_and_the_survivor_takes_over(
    nats_server: Server, plugin_dir: Path, tmp_path: Path
) -> None:
    url = f"nats://{nats_server.address}"
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    procs = []
    for name, out in zip("ab", outs, strict=True):
        flow = tmp_path / f"{name}.yaml"
        flow.write_text(QUEUE_GROUP_FLOW.format(url=url, out=out))
        procs.append(start_flow(flow, plugin_dir, tmp_path / f"{name}.log"))
    eventually(lambda: nats_subscriptions(nats_server, "work") == 2, what="both replicas")

    first = [b"w%05d" % i for i in range(2000)]
    publish(nats_server, "work", first)

    def seen() -> list[str]:
        return lines(outs[0]) + lines(outs[1])

    eventually(lambda: len(seen()) == len(first), what="the first half")
    a, b = lines(outs[0]), lines(outs[1])
    assert a and b, "both replicas take part"
    assert sorted(a + b) == sorted(x.decode() for x in first), "each message to exactly one replica"

    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(10)
    eventually(lambda: nats_subscriptions(nats_server, "work") == 1, what="the server to drop the dead one")
    second = [b"x%05d" % i for i in range(2000)]
    publish(nats_server, "work", second)
    eventually(lambda: len(lines(outs[1])) == len(b) + len(second), what="the survivor to take all")
    assert set(lines(outs[1])) >= {x.decode() for x in second}
    procs[1].send_signal(signal.SIGTERM)
    assert procs[1].wait(30) == 0


QUEUE_GROUP_FLOW = """\
name: workers
execution: {{mode: streaming}}
queues: [{{name: q, capacity: 64}}]
stages:
  - {{name: src, type: nats_source, output_queue: q, config: {{url: '{url}', subject: work, queue_group: w}}}}
  - {{name: out, type: append_sink, input_queue: q, config: {{path: '{out}'}}}}
"""

JETSTREAM_FLOW = """\
name: relay
execution: {{mode: streaming}}
queues: [{{name: q, capacity: 64}}]
stages:
  - name: src
    type: nats_jetstream_source
    output_queue: q
    config: {{url: '{url}', subject: crash.js, durable_name: relay, ack_wait_ms: 1500}}
  - {{name: out, type: append_sink, input_queue: q, config: {{path: '{out}'}}}}
"""


def test_sigkill_mid_stream_then_restart_delivers_every_message_at_least_once(
    nats_server: Server, plugin_dir: Path, tmp_path: Path
) -> None:
    add_stream(nats_server, "CRASH", "crash.js")
    url = f"nats://{nats_server.address}"
    records = [b"c%05d" % i for i in range(20000)]
    send("nats_jetstream_sink", {"url": url, "subject": "crash.js"}, records)
    out = tmp_path / "out.txt"
    flow = tmp_path / "relay.yaml"
    flow.write_text(JETSTREAM_FLOW.format(url=url, out=out))

    crash_and_restart(
        "nats jetstream (durable consumer)",
        flow,
        plugin_dir,
        out,
        records,
        lambda: consumer_info(nats_server, "CRASH", "relay").num_ack_pending == 0,
    )


def test_unreachable_server_at_start_names_host_and_port(flowpipe: Any, write: Any) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    config = NatsJetStreamSourceConfig(url=url, subject="s")
    assert NatsJetStreamSource.preflight(config) == [
        f"cannot reach NATS at 127.0.0.1:{port} (Connection refused)"
    ]
    flow = write(
        "f.yaml",
        f"""
name: f
execution: {{mode: streaming}}
queues: [{{name: q, capacity: 8}}]
stages:
  - {{name: src, type: nats_source, output_queue: q, config: {{url: '{url}', subject: s}}}}
  - {{name: out, type: stdout_sink, input_queue: q}}
""",
    )
    result = flowpipe("run", flow)
    assert result.returncode == 2
    assert f"stage 'src' (nats_source): cannot reach NATS at 127.0.0.1:{port}" in result.stderr
    assert "nothing was started" in result.stderr
