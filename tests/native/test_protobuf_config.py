"""A stage in flow-pipe's own style, configured through google::protobuf::Struct."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flowpipe import Batch, PayloadMeta

from .native_support import Plugins, make_context


def test_struct_config_reaches_the_stage(protobuf_plugins: Plugins, caplog: pytest.LogCaptureFixture) -> None:
    cls = protobuf_plugins.load("suffix_transform")
    logger = logging.getLogger("flowpipe.stage.suffix")
    stage = cls(
        cls.config_model.model_validate({"suffix": "?!"}), make_context("suffix_transform", logger=logger)
    )
    with caplog.at_level(logging.INFO, logger="flowpipe.stage.suffix"):
        stage.open()
        try:
            meta = PayloadMeta(schema_id="s", attrs={"k": "v"})
            out = stage.process_batch(Batch([b"a", b""], [meta, None]))
        finally:
            stage.close()
    assert out.data == [b"a?!", b"?!"]
    assert out.metas == [meta, None]
    messages = [r.getMessage() for r in caplog.records if r.name == "flowpipe.stage.suffix"]
    assert messages == ["creating suffix_transform stage", "destroying suffix_transform stage"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"bogus": 1}, "suffix_transform: unknown config field 'bogus'"),
        ({"suffix": 5}, "suffix_transform: suffix must be a string"),
    ],
)
def test_struct_config_rejections(protobuf_plugins: Plugins, config: dict[str, Any], message: str) -> None:
    cls = protobuf_plugins.load("suffix_transform")
    [problem] = cls.check_config(cls.config_model.model_validate(config))
    assert problem.endswith(f"the stage rejected its config: {message}")
