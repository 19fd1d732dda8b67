"""Redis stages against a real redis-server: round trips, acknowledgements, idling, reconnection,
a SIGKILL in the middle of a stream, two replicas sharing a consumer group, bad input."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from flowpipe import Payload
from flowpipe.stages.redis import RedisStreamSource, RedisStreamSourceConfig
from flowpipe.testing import FlowResult, run_flow

from .messaging_support import (
    Server,
    crash_and_restart,
    eventually,
    flow_text,
    free_port,
    in_thread,
    lines,
    make_redis,
    receive,
    send,
    start_flow,
    two_rounds,
)


def client(server: Server) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port)


def test_stream_round_trip_with_a_group_acknowledges_every_entry(redis_server: Server) -> None:
    records = [b"m%d" % i for i in range(2500)]
    send("redis_stream_sink", {"port": redis_server.port, "stream": "rt1"}, records)
    out: list[Payload] = []
    config = {"stream": "rt1", "group": "g", "consumer": "c1", "start_id": "0", "max_messages": 2500}
    assert receive("redis_stream_source", {"port": redis_server.port, **config}, out).exit_code == 0
    assert [p.data for p in out] == records
    assert client(redis_server).xpending("rt1", "g")["pending"] == 0


def test_stream_without_group_reads_from_start_id_and_picks_a_field(redis_server: Server) -> None:
    r = client(redis_server)
    r.xadd("rt2", {"a": "x1", "b": "y1"})
    r.xadd("rt2", {"b": "y2"})  # no field 'a': skipped
    r.xadd("rt2", {"a": "x3"})
    out: list[Payload] = []
    config = {
        "port": redis_server.port,
        "stream": "rt2",
        "start_id": "0",
        "field_name": "a",
        "exit_on_idle_ms": 300,
    }
    assert receive("redis_stream_source", config, out).exit_code == 0
    assert [p.data for p in out] == [b"x1", b"x3"]


def test_stream_sink_trims_with_maxlen(redis_server: Server) -> None:
    send(
        "redis_stream_sink",
        {"port": redis_server.port, "stream": "rt3", "maxlen": 10, "field_name": "f"},
        [b"r"] * 50,
    )
    r = client(redis_server)
    assert r.xlen("rt3") == 10
    assert r.xrange("rt3", count=1)[0][1] == {b"f": b"r"}


def test_pubsub_round_trip_and_an_idle_source_keeps_running(redis_server: Server) -> None:
    out: list[Payload] = []
    results: list[FlowResult] = []
    config = {"port": redis_server.port, "channel": "ch1", "max_messages": 20, "poll_timeout_ms": 20}
    thread = in_thread(lambda: results.append(receive("redis_pubsub_source", config, out)))
    r = client(redis_server)
    eventually(lambda: r.pubsub_numsub("ch1")[0][1] == 1, what="the subscription")
    # Many idle polls of 20 ms pass: the source must still be there.
    thread.join(0.5)
    assert thread.is_alive()
    send("redis_pubsub_sink", {"port": redis_server.port, "channel": "ch1"}, [b"p%d" % i for i in range(20)])
    thread.join(20)
    assert results[0].exit_code == 0
    assert [p.data for p in out] == [b"p%d" % i for i in range(20)]


def test_exit_on_idle_ends_a_job(redis_server: Server) -> None:
    out: list[Payload] = []
    result = receive(
        "redis_pubsub_source", {"port": redis_server.port, "channel": "q", "exit_on_idle_ms": 200}, out
    )
    assert result.exit_code == 0 and out == []


def test_reconnects_after_the_server_restarts(own_redis: Server, caplog: pytest.LogCaptureFixture) -> None:
    """A sink and a pub/sub source both lose the server mid-flow and carry on once it is back."""
    restarted = threading.Event()

    sink_done = threading.Event()
    out: list[Payload] = []
    results: list[FlowResult] = []
    config = {"port": own_redis.port, "channel": "ch", "max_messages": 2, "poll_timeout_ms": 50}
    with caplog.at_level(logging.INFO, logger="flowpipe"):
        source = in_thread(lambda: results.append(receive("redis_pubsub_source", config, out)))
        r = client(own_redis)
        eventually(lambda: r.pubsub_numsub("ch")[0][1] == 1, what="the subscription")
        r.publish("ch", b"before")
        eventually(lambda: len(out) == 1, what="the first message")

        stream_flow = flow_text("rounds", {}, "redis_stream_sink", {"port": own_redis.port, "stream": "s"})

        def run_sink() -> None:
            results.append(run_flow(stream_flow, stages={"rounds": two_rounds(restarted)}))
            sink_done.set()

        sink = in_thread(run_sink)
        eventually(lambda: r.xlen("s") == 1, what="the first round")
        own_redis.restart()
        restarted.set()
        r = client(own_redis)
        eventually(lambda: r.xlen("s") == 1, what="the second round, after the restart")
        assert r.xrange("s")[0][1] == {b"data": b"round2"}
        sink.join(30)
        assert sink_done.is_set()

        eventually(lambda: r.pubsub_numsub("ch")[0][1] == 1, what="the source to subscribe again")
        r.publish("ch", b"after")
        source.join(30)
    assert [res.exit_code for res in results] == [0, 0]
    assert [p.data for p in out] == [b"before", b"after"]
    messages = caplog.text
    assert f"lost connection to Redis at 127.0.0.1:{own_redis.port}" in messages
    assert f"reconnected to Redis at 127.0.0.1:{own_redis.port}" in messages


STREAMING = """\
name: relay
execution: {{mode: streaming}}
queues: [{{name: q, capacity: 64}}]
stages:
  - name: src
    type: redis_stream_source
    output_queue: q
    config: {{port: {port}, stream: {stream}, group: g, consumer: {consumer}, start_id: '0', count: 50,
              claim_idle_ms: {claim}}}
  - {{name: out, type: append_sink, input_queue: q, config: {{path: '{out}'}}}}
"""


def test_sigkill_mid_stream_then_restart_delivers_every_entry_at_least_once(
    redis_server: Server, plugin_dir: Path, tmp_path: Path
) -> None:
    r = client(redis_server)
    records = [b"k%05d" % i for i in range(20000)]
    pipe = r.pipeline(transaction=False)
    for record in records:
        pipe.xadd("crash", {"data": record})
    pipe.execute()
    out = tmp_path / "out.txt"
    flow = tmp_path / "relay.yaml"
    flow.write_text(STREAMING.format(port=redis_server.port, stream="crash", consumer="c", claim=0, out=out))

    crash_and_restart(
        "redis stream (consumer group)",
        flow,
        plugin_dir,
        out,
        records,
        lambda: r.xpending("crash", "g")["pending"] == 0,
    )


def test_two_replicas_share_a_group_and_the_survivor_finishes(
    redis_server: Server, plugin_dir: Path, tmp_path: Path
) -> None:
    r = client(redis_server)
    r.xgroup_create("shared", "g", "0", mkstream=True)
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    procs = []
    for name, out in zip("ab", outs, strict=True):
        flow = tmp_path / f"{name}.yaml"
        # claim_idle_ms well above the time an entry spends in flight, or the replicas would take
        # each other's entries while both run.
        flow.write_text(
            STREAMING.format(port=redis_server.port, stream="shared", consumer=name, claim=3000, out=out)
        )
        procs.append(start_flow(flow, plugin_dir, tmp_path / f"{name}.log"))
    eventually(lambda: r.xinfo_groups("shared")[0]["consumers"] == 2, what="both replicas")

    first = [b"s%05d" % i for i in range(2000)]
    for record in first:
        r.xadd("shared", {"data": record})

    def seen() -> list[str]:
        return lines(outs[0]) + lines(outs[1])

    eventually(lambda: len(set(seen())) == len(first), what="the first half")
    a, b = lines(outs[0]), lines(outs[1])
    assert a and b, "both replicas take part"
    assert len(a) + len(b) == len(first), "while both run, each entry goes to exactly one"

    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(10)
    second = [b"t%05d" % i for i in range(2000)]
    for record in second:
        r.xadd("shared", {"data": record})
    expected = {x.decode() for x in first + second}
    eventually(lambda: set(seen()) == expected, 60, "the survivor to finish")
    eventually(lambda: r.xpending("shared", "g")["pending"] == 0, 30, "every entry acknowledged")
    procs[1].send_signal(signal.SIGTERM)
    assert procs[1].wait(30) == 0


def test_unreachable_server_at_start_names_host_and_port(flowpipe: Any, write: Any) -> None:
    port = free_port()  # nothing listens there
    flow = write("f.yaml", flow_text("redis_stream_source", {"port": port, "stream": "s"}, "stdout_sink", {}))
    result = flowpipe("run", flow)
    assert result.returncode == 2
    assert f"stage 'src' (redis_stream_source): cannot reach Redis at 127.0.0.1:{port}" in result.stderr
    assert "nothing was started" in result.stderr
    config = RedisStreamSourceConfig(port=port, stream="s")
    assert RedisStreamSource.preflight(config) == [
        f"cannot reach Redis at 127.0.0.1:{port} (Connection refused)"
    ]


def test_bad_config_is_exit_2(flowpipe: Any, write: Any) -> None:
    flow = write(
        "f.yaml", flow_text("redis_stream_source", {"port": 70000, "streem": "s"}, "stdout_sink", {})
    )
    result = flowpipe("validate", flow)
    assert result.returncode == 2
    assert "config.port" in result.stderr and "config: missing required key 'stream'" in result.stderr
    assert "did you mean 'stream'?" in result.stderr


def test_password_protected_server_round_trip_and_refusals_before_start(
    tmp_path: Path, flowpipe: Any, write: Any
) -> None:
    server = make_redis(tmp_path / "redis", "--requirepass", "s3cret")
    server.start()
    try:
        login = {"port": server.port, "password": "s3cret"}
        records = [b"p%d" % i for i in range(100)]
        send("redis_stream_sink", {**login, "stream": "locked"}, records)
        out: list[Payload] = []
        result = receive(
            "redis_stream_source", {**login, "stream": "locked", "start_id": "0", "max_messages": 100}, out
        )
        assert result.exit_code == 0 and [p.data for p in out] == records

        refusals = [
            ({"password": "wrong"}, "refused the credentials (invalid username-password pair"),
            ({}, "refused the credentials (Authentication required"),
            (
                {"password": "s3cret", "database": 99},
                "refused the connection's set-up (DB index is out of range)",
            ),
        ]
        for extra, complaint in refusals:
            config = {"port": server.port, "stream": "locked", **extra}
            flow = write("f.yaml", flow_text("redis_stream_source", config, "stdout_sink", {}))
            done = flowpipe("run", flow)
            assert done.returncode == 2, done.stderr
            where = f"stage 'src' (redis_stream_source): Redis at 127.0.0.1:{server.port} {complaint}"
            assert where in done.stderr and "nothing was started" in done.stderr
    finally:
        server.stop()
