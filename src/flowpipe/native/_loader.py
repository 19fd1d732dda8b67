"""Native stage libraries (``libstage_<type>.so``) presented as ordinary flowpipe stages.

Each library becomes one class: a :class:`~flowpipe.Source`, :class:`~flowpipe.Transform` or
:class:`~flowpipe.Sink` subclass whose batch methods hand the whole batch to the library
through the C extension ``_abi`` (which releases the GIL for the call). Each stage instance,
so each worker thread, gets its own native instance: created and configured in ``open()``,
destroyed in ``close()``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, ClassVar, cast

from pydantic import ConfigDict

from ..sdk import Batch, EndOfStream, PluginError, Sink, Source, Stage, StageConfig, Transform
from . import _abi

__all__ = ["NativeConfig", "NativeStageError", "load_stage_library"]

_log = logging.getLogger("flowpipe.native")


class NativeConfig(StageConfig):
    """Any keys, checked by the stage itself when the flow is validated."""

    model_config = ConfigDict(extra="allow", frozen=True)


class NativeStageError(RuntimeError):
    """A native stage failed while the flow ran: a C++ exception or an error it returned."""


def _log_to(logger: logging.Logger) -> _abi.LogFn:
    """A log callback for the library: records carry the C/C++ file and line."""

    def log(level: int, message: str, file: str, line: int) -> None:
        if logger.isEnabledFor(level):
            logger.handle(logger.makeRecord(logger.name, level, file, line, message, (), None))

    return log


_abi.set_default_log(_log_to(_log))


def _config_json(config: StageConfig) -> bytes:
    return json.dumps(config.model_dump(mode="json"), separators=(",", ":")).encode()


def _quiet(level: int, message: str, file: str, line: int) -> None:
    """Logs of a validation probe: its rejection, if any, is reported as the PluginError."""


_SILENT = logging.CRITICAL + 1


def _configured_instance(
    library: _abi.Library, config: StageConfig, logger: logging.Logger | None
) -> _abi.Instance:
    """A native instance, created and configured; ``logger`` None keeps it quiet."""
    log, level = (_quiet, _SILENT) if logger is None else (_log_to(logger), logger.getEffectiveLevel())
    try:
        instance = library.create(log, level)
    except _abi.NativeError as error:
        raise PluginError(f"{library.path}: cannot create the stage: {error}") from None
    try:
        instance.configure(_config_json(config))
    except _abi.NativeError as error:
        instance.destroy()
        raise PluginError(f"{library.path}: the stage rejected its config: {error}") from None
    return instance


class _NativeStage(Stage[NativeConfig]):
    """What the three kinds share: the native instance's life cycle and error mapping."""

    _library: ClassVar[_abi.Library]
    _instance: _abi.Instance

    @classmethod
    def check_config(cls, config: Any) -> list[str]:
        """The stage's own message when its ``configure`` rejects ``config``: a probe instance
        is created, configured and destroyed while the flow is validated."""
        try:
            _configured_instance(cls._library, config, None).destroy()
        except PluginError as error:
            return [str(error)]
        return []

    def open(self) -> None:
        self._instance = _configured_instance(self._library, self.config, self.context.logger)

    def close(self) -> None:
        self._instance.destroy()

    def _failure(self, error: _abi.NativeError) -> NativeStageError:
        context = self.context
        return NativeStageError(f"native stage '{context.stage_name}' ({context.stage_type}): {error}")

    def _after_call(self) -> None:
        # flow-pipe's StageContext::request_stop stops the whole flow, as setting the
        # flow's stop event does here.
        if self._instance.stop_requested:
            self.context.request_stop("requested by the native stage")


class _NativeSource(_NativeStage, Source[NativeConfig]):
    _native_ended = False

    def produce_batch(self, limit: int) -> Batch:
        if self._native_ended:
            raise EndOfStream
        try:
            data, metas, ended = self._instance.produce(limit, self.context.stopping)
        except _abi.NativeError as error:
            raise self._failure(error) from None
        self._after_call()
        if ended:
            self._native_ended = True
            if not data:
                raise EndOfStream
        return Batch(data, metas)


def _as_native_records(data: list[Any]) -> list[Any]:
    """Records a native stage can take: Arrow record batches and tables cross the boundary as
    Arrow IPC stream bytes (the format flow-pipe's Arrow plugins exchange); the rest as is."""
    if not any(type(record).__module__.startswith("pyarrow") for record in data):
        return data
    from ..stages.arrow import to_ipc  # pyarrow is imported only when Arrow data shows up

    return [to_ipc(r) if type(r).__module__.startswith("pyarrow") else r for r in data]


class _NativeTransform(_NativeStage, Transform[NativeConfig]):
    def process_batch(self, batch: Batch) -> Batch:
        try:
            try:
                data, metas = self._instance.process(batch.data, batch.metas, self.context.stopping)
            except TypeError:  # not bytes: convert what can be converted, else fail as before
                records = _as_native_records(batch.data)
                data, metas = self._instance.process(records, batch.metas, self.context.stopping)
        except _abi.NativeError as error:
            raise self._failure(error) from None
        self._after_call()
        return Batch(data, metas)


class _NativeSink(_NativeStage, Sink[NativeConfig]):
    def consume_batch(self, batch: Batch) -> None:
        try:
            try:
                self._instance.consume(batch.data, batch.metas, self.context.stopping)
            except TypeError:
                self._instance.consume(_as_native_records(batch.data), batch.metas, self.context.stopping)
        except _abi.NativeError as error:
            raise self._failure(error) from None
        self._after_call()


_BASES: dict[int, tuple[str, type[_NativeStage]]] = {
    _abi.KIND_SOURCE: ("source", _NativeSource),
    _abi.KIND_TRANSFORM: ("transform", _NativeTransform),
    _abi.KIND_SINK: ("sink", _NativeSink),
}

_lock = threading.Lock()
_libraries: dict[str, _abi.Library] = {}  # by real path: each file is loaded and initialised once
_classes: dict[tuple[str, str], type[Stage[Any]]] = {}


def load_stage_library(path: Path, type_name: str) -> type[Stage[Any]]:
    """The stage class of the native library at ``path``, providing stage type ``type_name``.

    Raises PluginError, one line naming the file, when the file is missing, cannot be
    loaded (the loader's message, e.g. a missing dependency), does not export the entry
    symbol, was built for another ABI version, or fails its own initialisation.
    """
    if not path.is_file():
        raise PluginError(f"{path}: no such file")
    real = os.path.realpath(path)  # also keeps dlopen from searching LD_LIBRARY_PATH
    with _lock:
        cached = _classes.get((real, type_name))
        if cached is not None:
            return cached
        library = _libraries.get(real)
        if library is None:
            try:
                library = _abi.load(real)
            except _abi.NativeError as error:
                raise PluginError(f"{path}: {error}") from None
            _libraries[real] = library
        kind, base = _BASES[library.kind]
        own_name = f" (it calls itself '{library.name}')" if library.name not in ("", type_name) else ""
        namespace = {
            "__doc__": f"Native {kind} from {Path(real).name}{own_name}.",
            "__module__": __name__,
            "__qualname__": f"native:{type_name}",
            "_library": library,
        }
        stage_class = cast("type[Stage[Any]]", type(f"native:{type_name}", (base,), namespace))
        _classes[(real, type_name)] = stage_class
        return stage_class
