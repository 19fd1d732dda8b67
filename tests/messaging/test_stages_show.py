"""Every messaging stage loads, documents each config field, and says whether it acknowledges."""

from __future__ import annotations

from typing import Any

import pytest

from flowpipe.registry import build_registry

ACKNOWLEDGES = {
    "redis_pubsub_source": False,
    "redis_stream_source": True,
    "nats_source": False,
    "nats_jetstream_source": True,
    "kafka_source": True,
    "tcp_source": False,
    "udp_source": False,
    "http_source": True,
}
SINKS = [
    "redis_pubsub_sink",
    "redis_stream_sink",
    "nats_sink",
    "nats_jetstream_sink",
    "kafka_sink",
    "tcp_sink",
    "udp_sink",
    "http_sink",
]


@pytest.mark.parametrize("type_name", [*ACKNOWLEDGES, *SINKS])
def test_every_config_field_is_described(type_name: str) -> None:
    info = build_registry().get(type_name)
    assert info.origin == "built-in" and info.description
    undocumented = [name for name, field in info.config_model.model_fields.items() if not field.description]
    assert undocumented == []


def test_stages_show_says_which_sources_acknowledge(flowpipe: Any) -> None:
    for type_name, acks in ACKNOWLEDGES.items():
        result = flowpipe("stages", "show", type_name)
        assert result.returncode == 0, result.stderr
        assert f"  acknowledges: {'yes' if acks else 'no'}\n" in result.stdout, type_name
    assert "acknowledges" not in flowpipe("stages", "show", "kafka_sink").stdout
