"""TCP and UDP stages on loopback: framing both ways, unix sockets, reconnection, ports in use."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from flowpipe import Payload, StageContext
from flowpipe.stages.sockets import TcpSource, TcpSourceConfig, UdpSource, UdpSourceConfig
from flowpipe.testing import FlowResult, TestingSource, run_flow

from .messaging_support import accepts, eventually, flow_text, free_port, in_thread, receive, send, two_rounds


def udp_bound(port: int) -> bool:
    # Read the kernel's table rather than probe with a bind: a probe holding the port for an
    # instant could make the source's own bind fail.
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(line.split()[1].endswith(f":{port:04X}") for line in lines)


def start_source(
    source: str, config: dict[str, Any], out: list[Payload]
) -> tuple[threading.Thread, list[FlowResult]]:
    results: list[FlowResult] = []
    thread = in_thread(lambda: results.append(receive(source, config, out)))
    return thread, results


@pytest.mark.parametrize("framing", ["newline", "length_prefixed"])
def test_tcp_round_trip_keeps_record_boundaries(framing: str) -> None:
    port = free_port()
    # Length-prefixed records may hold anything, newlines included.
    records = [b"line %d" % i for i in range(3000)]
    if framing == "length_prefixed":
        records += [b"", b"two\nlines", bytes(range(256)) * 100]
    out: list[Payload] = []
    config = {"bind_address": "127.0.0.1", "port": port, "framing": framing, "max_messages": len(records)}
    thread, results = start_source("tcp_source", config, out)
    eventually(lambda: accepts(port), what="tcp_source to listen")
    thread.join(0.3)  # idle polls must not end it
    assert thread.is_alive()
    send("tcp_sink", {"port": port, "framing": framing}, records)
    thread.join(20)
    assert results[0].exit_code == 0
    assert [p.data for p in out] == records


def test_tcp_over_a_unix_socket_and_an_unterminated_last_line(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    out: list[Payload] = []
    thread, results = start_source("tcp_source", {"unix_socket_path": path, "max_messages": 3}, out)
    clients: list[socket.socket] = []

    def connected() -> bool:  # the socket file exists during the preflight check already
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if client.connect_ex(path) == 0:
            clients.append(client)
            return True
        client.close()
        return False

    eventually(connected, what="tcp_source to listen on the unix socket")
    with clients[0] as client:
        client.sendall(b"a\nb\nc")  # the sender closes without a final newline
    thread.join(20)
    assert results[0].exit_code == 0
    assert [p.data for p in out] == [b"a", b"b", b"c"]
    assert not Path(path).exists()


def test_tcp_source_drops_a_client_sending_a_too_long_record_and_serves_the_others() -> None:
    port = free_port()
    out: list[Payload] = []
    config = {"bind_address": "127.0.0.1", "port": port, "max_payload_size": 10, "max_messages": 1}
    thread, results = start_source("tcp_source", config, out)
    eventually(lambda: accepts(port), what="tcp_source to listen")
    with (
        socket.create_connection(("127.0.0.1", port)) as bad,
        socket.create_connection(("127.0.0.1", port)) as good,
    ):
        bad.sendall(b"x" * 100)
        eventually(lambda: bad.recv(1) == b"", what="the bad client to be dropped")
        good.sendall(b"fine\n")
        thread.join(20)
    assert results[0].exit_code == 0
    assert [p.data for p in out] == [b"fine"]


def test_tcp_sink_refuses_a_record_with_a_newline_in_newline_framing() -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        flow = flow_text("records", {}, "tcp_sink", {"port": port})
        result = run_flow(flow, stages={"records": TestingSource.of([b"a\nb"])})
    assert result.exit_code == 1 and result.failure is not None
    assert "use framing: length_prefixed" in str(result.failure)


def test_tcp_sink_reconnects_when_the_receiver_closed_the_connection() -> None:
    released = threading.Event()

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        results: list[FlowResult] = []
        flow = flow_text("rounds", {}, "tcp_sink", {"port": port})
        thread = in_thread(lambda: results.append(run_flow(flow, stages={"rounds": two_rounds(released)})))
        probe, _ = server.accept()  # the preflight check: connects, sends nothing
        assert probe.recv(100) == b""
        probe.close()
        first, _ = server.accept()
        assert first.recv(100) == b"round1\n"
        first.close()  # the receiver goes away; the sink's next batch needs a new connection
        released.set()
        second, _ = server.accept()
        assert second.recv(100) == b"round2\n"
        second.close()
        thread.join(20)
    assert results[0].exit_code == 0


def test_udp_round_trip() -> None:
    port = free_port(socket.SOCK_DGRAM)
    records = [b"d%d" % i for i in range(200)]
    out: list[Payload] = []
    thread, results = start_source(
        "udp_source", {"bind_address": "127.0.0.1", "port": port, "max_messages": 200}, out
    )
    eventually(lambda: udp_bound(port), what="udp_source to bind")
    send("udp_sink", {"port": port}, records)
    thread.join(20)
    assert results[0].exit_code == 0
    assert sorted(p.data for p in out) == sorted(records)


def test_udp_source_asks_for_a_receive_buffer_that_holds_a_burst() -> None:
    """Linux grants min(asked, net.core.rmem_max) and doubles it for its bookkeeping."""
    config = UdpSourceConfig(bind_address="127.0.0.1", port=free_port(socket.SOCK_DGRAM))
    source = UdpSource(config, StageContext(flow_name="f", stage_name="u", stage_type="udp_source"))
    source.open()
    try:
        granted = source._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
        assert granted == 2 * min(4 << 20, rmem_max)
    finally:
        source.close()


def test_udp_over_a_unix_socket_drops_oversized_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    out: list[Payload] = []
    thread, results = start_source(
        "udp_source", {"unix_socket_path": path, "max_payload_size": 4, "max_messages": 2}, out
    )
    eventually(lambda: Path(path).exists(), what="the unix socket")
    send("udp_sink", {"unix_socket_path": path}, [b"ok", b"too long", b"fine"])
    thread.join(20)
    assert results[0].exit_code == 0
    assert [p.data for p in out] == [b"ok", b"fine"]


@pytest.mark.parametrize(
    ("stage", "kind"), [("tcp_source", socket.SOCK_STREAM), ("udp_source", socket.SOCK_DGRAM)]
)
def test_port_in_use_is_a_clear_error(stage: str, kind: socket.SocketKind, flowpipe: Any, write: Any) -> None:
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            holder.listen()
        port = holder.getsockname()[1]
        config = {"bind_address": "127.0.0.1", "port": port}
        problems = (
            TcpSource.preflight(TcpSourceConfig(bind_address="127.0.0.1", port=port))
            if stage == "tcp_source"
            else UdpSource.preflight(UdpSourceConfig(bind_address="127.0.0.1", port=port))
        )
        assert problems == [f"cannot listen on 127.0.0.1:{port}: address already in use"]
        result = flowpipe("run", write("f.yaml", flow_text(stage, config, "stdout_sink", {})))
    assert result.returncode == 2
    assert (
        f"stage 'src' ({stage}): cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
    )
    assert "nothing was started" in result.stderr


def test_a_port_is_required_without_a_unix_socket(flowpipe: Any, write: Any) -> None:
    result = flowpipe("validate", write("f.yaml", flow_text("tcp_source", {}, "stdout_sink", {})))
    assert result.returncode == 2
    assert "port is required unless unix_socket_path is set" in result.stderr
