"""HTTP stages on loopback: sink to source round trip with delivery-confirmed answers, the sink's
timeout in milliseconds, retries and rejections, the source's answers to bad requests."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from flowpipe import Batch, Payload, Sink, StageConfig
from flowpipe.stages.http import HttpSource, HttpSourceConfig
from flowpipe.testing import FlowResult, TestingSource, run_flow

from .messaging_support import accepts, eventually, flow_text, free_port, in_thread, receive, send


class Endpoint(BaseHTTPRequestHandler):
    """Answers each request with the next status of ``statuses`` (then 200), after ``delay``."""

    server: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        state = self.server
        time.sleep(state.delay)  # the slow server under test
        status = state.statuses.pop(0) if state.statuses else 200
        state.requests.append((self.command, self.path, self.headers["Content-Type"], body, status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    server.daemon_threads = True
    server.statuses, server.requests, server.delay = [], [], 0.0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server: Any, path: str = "/in") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_http_sink_to_http_source_round_trip() -> None:
    port = free_port()
    # Each request waits for its acknowledgement; the source's wake() makes that prompt, so
    # sequential requests are not held back by the 100 ms idle poll of the source.
    records = [b'{"n": %d}' % i for i in range(200)]
    out: list[Payload] = []
    results: list[FlowResult] = []
    config = {"bind_address": "127.0.0.1", "port": port, "path": "/ingest", "max_messages": 200}
    thread = in_thread(lambda: results.append(receive("http_source", config, out)))
    eventually(lambda: accepts(port), what="http_source to listen")
    send("http_sink", {"url": f"http://127.0.0.1:{port}/ingest", "method": "METHOD_PUT"}, records)
    thread.join(20)
    assert results[0].exit_code == 0
    assert [p.data for p in out] == records


def test_http_sink_sends_method_headers_and_body(endpoint: Any) -> None:
    config = {
        "url": url(endpoint, "/in?x=1"),
        "content_type": "text/plain",
        "headers": [{"name": "X-Flow", "value": "yes"}],
    }
    send("http_sink", config, [b"one", "two"])
    assert [r[:4] for r in endpoint.requests] == [
        ("POST", "/in?x=1", "text/plain", b"one"),
        ("POST", "/in?x=1", "text/plain", b"two"),
    ]


def test_http_sink_retries_server_errors_and_drops_rejected_records(
    endpoint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.statuses = [503, 500, 400]
    with caplog.at_level(logging.INFO, logger="flowpipe"):
        send("http_sink", {"url": url(endpoint)}, [b"a", b"b"])
    # a: 503, 500, then 400 (dropped, logged); b: 200.
    assert [(r[3], r[4]) for r in endpoint.requests] == [(b"a", 503), (b"a", 500), (b"a", 400), (b"b", 200)]
    assert "rejected a record: 400 Bad Request" in caplog.text
    assert "503 Service Unavailable" in caplog.text


def test_http_sink_timeout_is_in_milliseconds(endpoint: Any) -> None:
    endpoint.delay = 1.0
    flow = flow_text(
        "records", {}, "http_sink", {"url": url(endpoint), "timeout_ms": 100, "reconnect_timeout_ms": 300}
    )
    started = time.monotonic()
    result = run_flow(flow, stages={"records": TestingSource.of([b"slow"])})
    took = time.monotonic() - started
    # 100 ms per attempt and a 300 ms retry budget: the stage gives up well within a second or
    # two; a timeout read as seconds would have waited 100 s for the first answer.
    assert result.exit_code == 1 and result.failure is not None
    assert "unreachable for more than 0.3 s" in str(result.failure)
    assert took < 5


def test_http_source_answers_200_only_after_delivery_and_503_when_the_flow_fails() -> None:
    port = free_port()
    delivered: list[bytes] = []
    fail = threading.Event()

    class Picky(Sink[StageConfig]):
        def consume_batch(self, batch: Batch) -> None:
            if fail.is_set():
                raise RuntimeError("sink down")
            delivered.extend(batch.data)

    results: list[FlowResult] = []
    flow = flow_text("http_source", {"bind_address": "127.0.0.1", "port": port}, "picky", {})
    in_thread(lambda: results.append(run_flow(flow, stages={"picky": Picky})))
    eventually(lambda: accepts(port), what="http_source to listen")

    def post(body: bytes, path: str = "/", headers: dict[str, str] | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", path, body=body, headers=headers or {})
            status: int = conn.getresponse().status
            return status
        finally:
            conn.close()

    assert post(b"first") == 200
    assert delivered == [b"first"]  # answered only once the sink had it
    assert post(b"x", path="/elsewhere") == 404
    assert post(b"x" * (2 << 20)) == 413
    fail.set()
    assert post(b"lost") == 503  # the flow failed before the record reached the sink
    eventually(lambda: results, what="the flow to end")
    assert results[0].exit_code == 1


def test_http_source_port_in_use(flowpipe: Any, write: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        config = {"bind_address": "127.0.0.1", "port": port}
        problems = HttpSource.preflight(HttpSourceConfig(bind_address="127.0.0.1", port=port))
        assert problems == [f"cannot listen on 127.0.0.1:{port}: address already in use"]
        result = flowpipe("run", write("f.yaml", flow_text("http_source", config, "stdout_sink", {})))
    assert result.returncode == 2
    assert f"(http_source): cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
    assert "nothing was started" in result.stderr
