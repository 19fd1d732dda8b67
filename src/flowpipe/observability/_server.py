"""``/metrics``, ``/healthz`` and ``/readyz`` of a running flow, on one port, from one thread.

- ``/healthz``: 200 while no stage has failed (the process is alive to answer), 503 once one
  has; the JSON body names the failed stage, its type and the error.
- ``/readyz``: 200 while the flow is ``running`` (every worker opened its stage); 503 while it
  starts (naming the stages not open yet), drains after a stop request, or has ended.

Everything is read when a request comes: serving costs the flow nothing between scrapes.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ..runtime import Instrument
from ..sdk import FlowpipeError, Stage, StageConfig
from ._collect import collect
from ._policy import MetricGroups

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from ..runtime import FlowRun, StagePlan

__all__ = ["MetricsEndpoint", "health", "parse_address", "readiness"]


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every interface); port 0 picks a free one."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise FlowpipeError(f"metrics address '{address}': expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host.strip("[]") or "0.0.0.0", int(port)


def health(run: FlowRun | None, flow: str) -> tuple[int, dict[str, Any]]:
    """The status code and JSON body of ``/healthz``."""
    body: dict[str, Any] = {"status": "ok", "flow": flow, "state": run.state if run else "starting"}
    failure = run.failure if run else None
    if failure is None:
        return 200, body
    body.update(status="failed", stage=failure.stage_name, type=failure.stage_type, error=str(failure))
    return 503, body


def readiness(run: FlowRun | None, flow: str) -> tuple[int, dict[str, Any]]:
    """The status code and JSON body of ``/readyz``."""
    code, body = health(run, flow)
    state = body["state"]
    if state == "running":
        return 200, {**body, "status": "ready"}
    if code == 200:
        body["status"] = "not ready"
    if state == "starting" and run is not None:
        body["waiting_for"] = [s.plan.name for s in run.stats if not all(w.opened for w in s.workers)]
    return 503, body


class MetricsEndpoint(Instrument):
    """Serves a run's metrics and health from construction (bound at once, so that a busy
    port fails before the flow starts) until the run ends."""

    def __init__(self, address: str, flow: str, groups: MetricGroups) -> None:
        self.flow = flow
        self.log = logging.getLogger(f"flowpipe.{flow}")
        self.run: FlowRun | None = None  # set when the run has started
        self.groups = groups
        self._registry: CollectorRegistry | None = None
        self._registry_lock = threading.Lock()
        host, port = parse_address(address)
        try:
            self._server = _Server((host, port), _handler(self))
        except OSError as error:
            raise FlowpipeError(f"cannot serve metrics on {address}: {error.strerror or error}") from error
        # serve_forever notices shutdown() only between polls: a short poll keeps the exit prompt.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), name="metrics-http", daemon=True
        )
        self._thread.start()
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self.log.info("serving metrics on %s/metrics, health on /healthz and /readyz", self.url)

    @property
    def registry(self) -> CollectorRegistry:
        """Made at the first scrape: prometheus_client takes tens of milliseconds to import,
        which a run that is never scraped (or not yet) need not spend."""
        with self._registry_lock:
            if self._registry is None:
                from ._prometheus import FlowCollector, make_registry

                collector = FlowCollector(lambda: collect(self.run, self.groups))
                self._registry = make_registry(collector, self.groups.process)
            return self._registry

    def wrap_stage(self, run: FlowRun, stage: StagePlan, instance: Stage[StageConfig]) -> Stage[StageConfig]:
        self.run = run  # the first worker calls this before any stage opens: earlier than flow_started
        return instance

    def flow_started(self, run: FlowRun) -> None:
        self.run = run

    def flow_ended(self, run: FlowRun, exit_code: int) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


def _handler(endpoint: MetricsEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/metrics":
                self._metrics(endpoint.registry)
            elif path in ("/healthz", "/readyz"):
                check = health if path == "/healthz" else readiness
                code, body = check(endpoint.run, endpoint.flow)
                self._send(code, "application/json", json.dumps(body).encode() + b"\n")
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /readyz\n")

        def _metrics(self, registry: CollectorRegistry) -> None:
            from prometheus_client.exposition import choose_encoder

            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, content_type, encoder(registry))

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            endpoint.log.debug("%s " + format, self.address_string(), *args)

    return Handler
