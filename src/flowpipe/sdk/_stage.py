"""The stage contract: what a plugin implements and when the runtime calls it.

Every stage kind has a per-record method for simple stages and a batch method for fast ones.
The runtime only ever calls the batch method; its default loops over the per-record one, so a
stage overrides whichever suits it. One instance is created per worker thread (``threads: N``
gives N instances), and each instance is only ever called from its own thread.

Lifecycle of an instance, on its worker thread::

    __init__(config, context) -> open() -> *_batch(...) ... -> close()

``close()`` is called on every exit path once ``open()`` has returned: end of input, stop,
failure of this or another stage. Sinks flush buffered output there.
"""

from __future__ import annotations

import enum
import inspect
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

from ._payload import Batch, BatchBuilder, Payload, PayloadMeta
from ._values import as_written

__all__ = [
    "EndOfStream",
    "FileScan",
    "SideEffect",
    "Sink",
    "Source",
    "Stage",
    "StageConfig",
    "StageContext",
    "StageKind",
    "Transform",
]

# How long the default Source.produce_batch keeps collecting records before handing over
# what it has, so that a lone record at a low rate is never held back waiting for a batch.
_COLLECT_NS = 1_000_000


class StageKind(enum.Enum):
    """What a stage does, and so how it must be wired in a flow."""

    SOURCE = "source"  # no input queue, an output queue
    TRANSFORM = "transform"  # input and output queues
    SINK = "sink"  # input queue, no output queue
    SIDE_EFFECT = "side_effect"  # input queue, output queue optional (records pass unchanged)


class StageConfig(BaseModel):
    """Base of every stage's config model: unknown keys are rejected and values are frozen.
    A key may be written as the field's name (``output_type``) or in lowerCamel
    (``outputType``), as flow-pipe's plugins read their configs with protobuf JSON; a key
    given as null keeps its default; and a text field takes a number as the text it was
    written as (``null_values: [-999, 1.50]``), as flow-pipe's YAML reading made every scalar
    a string.

    Declare fields with defaults and ``Field(description=...)``; the descriptions are shown by
    ``flowpipe stages show TYPE`` and in validation errors.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        defer_build=True,
        alias_generator=to_camel,
        populate_by_name=True,
        coerce_numbers_to_str=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _as_written(cls, data: Any) -> Any:
        return as_written(cls, data)


class EndOfStream(Exception):
    """Raised by a source when it has no more records. The runtime then closes its output."""


@dataclass(frozen=True)
class FileScan:
    """The files a source reads and the table it emits from them, described so that the stage
    it feeds can read them itself (:meth:`Source.file_scan`, :meth:`Stage.take_scans`)."""

    format: str
    """The files' format, e.g. ``"parquet"``."""
    paths: tuple[str, ...]
    """Absolute paths of the files, read in this order."""
    schema: Any
    """What the source would emit: its columns, in order, and their types (as its
    ``output_schema``; a ``pyarrow.Schema`` for the built-in stages)."""


class StageContext:
    """What the runtime tells one stage instance about where and how it runs."""

    __slots__ = (
        "_on_request_stop",
        "_stop",
        "_wake",
        "flow_name",
        "input_schemas",
        "inputs",
        "logger",
        "scans",
        "shared",
        "stage_name",
        "stage_type",
        "worker_count",
        "worker_index",
    )

    def __init__(
        self,
        *,
        flow_name: str,
        stage_name: str,
        stage_type: str,
        worker_index: int = 0,
        worker_count: int = 1,
        inputs: tuple[str, ...] = (),
        shared: dict[str, Any] | None = None,
        stop: threading.Event | None = None,
        logger: logging.Logger | None = None,
        request_stop: Callable[[str], None] | None = None,
        scans: Mapping[str, FileScan] | None = None,
        input_schemas: Mapping[str, Any] | None = None,
    ) -> None:
        self.flow_name = flow_name
        self.stage_name = stage_name
        self.stage_type = stage_type
        self.worker_index = worker_index
        self.worker_count = worker_count
        self.inputs = inputs
        """The names a batch's ``input`` takes, in the flow's order: each ``input_queues``
        entry's ``table`` (else its queue), or the ``input_queue``; empty for a source."""
        self.input_schemas: Mapping[str, Any] = input_schemas if input_schemas is not None else {}
        """Each input's schema as ``flowpipe run`` learned it before start from the stages
        feeding it (:meth:`output_schema`), None when unknown; empty when not run by
        ``flowpipe run``. Lets a stage prepare for an input before its first batch, or for an
        input that sends none."""
        self.scans: Mapping[str, FileScan] = scans if scans is not None else {}
        """The inputs this stage reads from their files itself (:meth:`Stage.take_scans`), by
        input name; no batch comes on them."""
        self.shared: dict[str, Any] = shared if shared is not None else {}
        """State the workers of this stage share in this run (``threads: N``): one dict per
        stage and run, never shared with another stage or run. Guard what you keep in it."""
        self._stop = stop if stop is not None else threading.Event()
        self._wake = threading.Event()  # set on a stop request and when acknowledgements are ready
        self._on_request_stop = request_stop
        self.logger = logger if logger is not None else logging.getLogger(f"flowpipe.stage.{stage_name}")

    @property
    def stopping(self) -> bool:
        """True once the runtime asked this stage to stop (a source should then end)."""
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on a stop request or, in a source, when
        acknowledgements are ready to be delivered. Returns ``stopping``."""
        if self._stop.is_set():
            return True
        if self._wake.wait(seconds):
            self._wake.clear()
        return self._stop.is_set()

    def wake(self) -> None:
        """End the current (or next) :meth:`wait` early. Called by the runtime."""
        self._wake.set()

    def request_stop(self, reason: str) -> None:
        """Ask the whole flow to stop gracefully, as SIGTERM does: sources end, the rest drains."""
        if self._on_request_stop is not None:
            self._on_request_stop(f"stage '{self.stage_name}': {reason}")
        else:
            self._stop.set()
            self._wake.set()


ConfigT = TypeVar("ConfigT", bound=StageConfig)
"""The stage's config model; ``self.config`` is an instance of it."""


class Stage(Generic[ConfigT]):
    """Base of all stages. Subclass :class:`Source`, :class:`Transform`, :class:`Sink` or
    :class:`SideEffect`, not this.

    The config model is taken from the type argument (``class S(Transform[MyConfig])``) or
    from a ``config_model`` class attribute. The class docstring's first line is the stage's
    description in ``flowpipe stages``.
    """

    kind: ClassVar[StageKind]
    config_model: ClassVar[type[StageConfig]] = StageConfig
    #: True when the stage reads several inputs (``input_queues``); ``batch.input`` names each.
    named_inputs: ClassVar[bool] = False
    # Per-record and batch method names of the kind; the registry checks one is overridden.
    _record_method: ClassVar[str]
    _batch_method: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_model" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Stage):
                args = get_args(base)
                if args and isinstance(args[0], type) and issubclass(args[0], StageConfig):
                    cls.config_model = args[0]

    def __init__(self, config: ConfigT, context: StageContext) -> None:
        """Called on the worker thread; keep it free of I/O and put set-up in :meth:`open`."""
        self.config = config
        self.context = context

    @classmethod
    def check_config(cls, config: Any) -> list[str]:
        """Problems with a valid-looking config that its model cannot express, each a one-line
        message. Called while the flow is validated (``flowpipe validate`` too), so it must
        have no lasting effect; the native adapter probes its library's ``configure`` here."""
        return []

    @classmethod
    def preflight(cls, config: Any) -> list[str]:
        """Problems the runtime should report before starting anything, e.g. a server that
        cannot be reached or a port already in use: each a one-line message naming what and
        where. Called by ``flowpipe run`` once per stage, after the whole flow validated;
        any problem is an invalid flow (exit 2). Check, don't keep: close what you open."""
        return []

    @classmethod
    def output_schema(cls, config: Any, inputs: Mapping[str, Any]) -> Any:
        """The schema of the records the stage will emit, when its config and the schemas of
        its inputs tell it before anything runs; None (the default) when unknown.

        ``inputs`` maps each input name (``batch.input``) to its schema as the stages feeding
        it returned it, None when unknown; a source gets ``{}``. Called by ``flowpipe run``
        after every ``preflight`` passed, in flow order, so a stage's answer reaches the stages
        downstream. Raise ``ValueError`` with a one-line message when the inputs cannot work
        (a query naming a column no input has): the flow is then invalid (exit 2) and nothing
        starts. The runtime only compares schemas; the built-in Arrow stages use
        ``pyarrow.Schema``."""
        return None

    @classmethod
    def take_scans(
        cls, config: Any, scans: Mapping[str, FileScan], inputs: Mapping[str, Any]
    ) -> Collection[str]:
        """The inputs, out of ``scans``, that this stage will read from their files itself;
        empty (the default) to take none.

        ``scans`` maps an input name to the files its source would read (:meth:`Source.file_scan`),
        for each input fed by one source alone and read by this stage alone; ``inputs`` maps
        every input name to its schema, as for :meth:`output_schema`. Called by ``flowpipe run``
        after ``output_schema`` (not with ``--no-fuse``). A taken input's source does not run:
        its queue ends at once and ``context.scans`` hands the stage the :class:`FileScan`.
        Take one only when reading the files yourself gives the result reading their records
        would: e.g. for a query over the whole input, not one answered batch by batch."""
        return ()

    def open(self) -> None:
        """Called once on the worker thread before the first batch. Connect, open files here."""

    def close(self) -> None:
        """Called once on every exit path after :meth:`open` returned. Flush and release here."""

    @classmethod
    def implements_work(cls) -> bool:
        """True when the per-record or the batch method of the kind is overridden."""
        base = next(b for b in cls.__mro__ if b.__dict__.get("_record_method"))
        return any(
            getattr(cls, name) is not getattr(base, name) for name in (cls._record_method, cls._batch_method)
        )


def _missing(stage: Stage[Any]) -> TypeError:
    kind = type(stage)
    return TypeError(f"{kind.__qualname__} must override {kind._record_method}() or {kind._batch_method}()")


class Source(Stage[ConfigT]):
    """Produces records; wired with an ``output_queue`` and no ``input_queue``.

    The runtime calls :meth:`produce_batch` in a loop until it raises :class:`EndOfStream` or
    the flow stops (``context.stopping``). A call that has nothing should wait briefly for data
    (about 100 ms at most, e.g. with ``context.wait``) and return an empty batch: an idle
    source is not an ended one.
    """

    kind = StageKind.SOURCE
    _record_method = "produce"
    _batch_method = "produce_batch"
    _ended = False

    def produce(self) -> Any:
        """Return one record (data or :class:`Payload`), ``None`` when nothing is available
        right now, or raise :class:`EndOfStream` when there will be no more."""
        raise _missing(self)

    def acknowledge(self, tokens: list[Any]) -> None:
        """Override to acknowledge messages: receives the ``ack`` tokens of emitted batches
        whose records have all been consumed by the sinks or dropped, on this source's
        own worker thread, between calls to :meth:`produce_batch` and before :meth:`close`
        (after a graceful stop, once everything in flight has drained). Tokens of batches
        lost to a failure or a hard stop never come back: the broker redelivers them."""

    def wake(self) -> None:
        """Called from another thread when an idle :meth:`produce_batch` should return soon:
        a stop was requested or acknowledgements are ready. ``context.wait`` already wakes;
        override only when the source waits on something else (a socket, its own queue)."""

    @classmethod
    def file_scan(cls, config: Any) -> FileScan | None:
        """The files this source would read and the table it would emit, when reading them is
        all it does; None (the default) when it must run. Called by ``flowpipe run`` after
        ``output_schema``: if the one stage reading this source's queue takes the scan
        (:meth:`Stage.take_scans`), that stage reads the files and this source does not run."""
        return None

    @classmethod
    def can_acknowledge(cls) -> bool:
        """True when the source overrides :meth:`acknowledge` (at-least-once delivery)."""
        return cls.acknowledge is not Source.acknowledge

    def produce_batch(self, limit: int) -> Batch:
        """Return up to ``limit`` records, or raise :class:`EndOfStream`.

        The default calls :meth:`produce` until it has ``limit`` records, ``produce`` returns
        ``None``, or 1 ms has passed, whichever comes first.
        """
        if self._ended:
            raise EndOfStream
        builder = BatchBuilder()
        produce = self.produce
        deadline = time.monotonic_ns() + _COLLECT_NS
        try:
            while len(builder) < limit:
                record = produce()
                if record is None:
                    break
                builder.add(record)
                if time.monotonic_ns() >= deadline:
                    break
        except EndOfStream:
            if not builder:
                raise
            self._ended = True
        return builder.build()


class Transform(Stage[ConfigT]):
    """Turns each input record into zero, one or many output records.

    Wired with an ``input_queue`` and an ``output_queue``. Output records that are plain data
    inherit the input's metadata; return a :class:`Payload` to set metadata yourself.
    """

    kind = StageKind.TRANSFORM
    _record_method = "process"
    _batch_method = "process_batch"
    _process_yields: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._process_yields = inspect.isgeneratorfunction(cls.process)

    def process(self, record: Payload) -> Any:
        """Return the output (data or :class:`Payload`), or ``None`` to drop the record.

        Written as a generator, every value it yields is an output record (0..N).
        """
        raise _missing(self)

    def finish(self) -> Batch | None:
        """Called once after every input closed and drained (not after a hard stop), before
        :meth:`close`; what it returns goes downstream. For stages that need the whole input."""
        return None

    def process_batch(self, batch: Batch) -> Batch:
        """Return the outputs of a batch. The default calls :meth:`process` per record."""
        builder = BatchBuilder()
        add = builder.add
        process: Callable[[Payload], Any] = self.process
        metas = batch.metas or [None] * len(batch.data)
        for data, meta in zip(batch.data, metas, strict=True):
            record = Payload(data, meta)
            result = process(record)
            if self._process_yields:
                shared = False
                for output in result:
                    # Read after each step: the generator may set metadata as it goes.
                    inherited: PayloadMeta | None = record._meta
                    if shared and inherited is not None:
                        inherited = inherited.copy()  # siblings must not share one mutable meta
                    add(output, inherited)
                    shared = True
            elif result is not None:
                add(result, record._meta)
        return builder.build()


class Sink(Stage[ConfigT]):
    """Consumes records; wired with an ``input_queue`` and no ``output_queue``."""

    kind = StageKind.SINK
    _record_method = "consume"
    _batch_method = "consume_batch"

    def consume(self, record: Payload) -> None:
        """Handle one record."""
        raise _missing(self)

    def consume_batch(self, batch: Batch) -> None:
        """Handle a batch. The default calls :meth:`consume` per record."""
        consume = self.consume
        for record in batch.payloads():
            consume(record)


class SideEffect(Stage[ConfigT]):
    """Sees every record and acts on it (log, notify, count) without changing it.

    Wired with an ``input_queue``; with an ``output_queue`` the records pass on unchanged.
    """

    kind = StageKind.SIDE_EFFECT
    _record_method = "observe"
    _batch_method = "observe_batch"

    def observe(self, record: Payload) -> None:
        """Act on one record."""
        raise _missing(self)

    def observe_batch(self, batch: Batch) -> None:
        """Act on a batch. The default calls :meth:`observe` per record."""
        observe = self.observe
        for record in batch.payloads():
            observe(record)
