"""Records and the batches they travel in.

A record is its data (``bytes`` or any Python object) plus optional :class:`PayloadMeta`.
The runtime moves records between stages as :class:`Batch` objects: one list of data and,
only when some record carries metadata, a parallel list of metas. A batch with no metadata
costs nothing per record beyond the data itself, which is what keeps the runtime fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

__all__ = ["Batch", "Payload", "PayloadMeta"]

AttrValue = int | float | bool | str

_NO_TRACE: Final = bytes(16)
_NO_SPAN: Final = bytes(8)


class PayloadMeta:
    """Metadata of one record, with the fields of flow-pipe's ``PayloadMeta``.

    - ``enqueue_ts_ns``: monotonic time (``time.monotonic_ns``) the record last entered a queue.
    - ``trace_id`` (16 bytes) and ``span_id`` (8 bytes): W3C trace context; all zero means none.
    - ``flags``: the low byte holds the W3C trace flags.
    - ``schema_id``: the schema the record conforms to, as its producer set it (queues keep
      their declared ``schema_id`` but do not stamp records with it: docs/compatibility.md).
    - ``attrs``: free-form attributes (``int``, ``float``, ``bool`` or ``str`` values).
    """

    __slots__ = ("attrs", "enqueue_ts_ns", "flags", "schema_id", "span_id", "trace_id")

    def __init__(
        self,
        *,
        enqueue_ts_ns: int = 0,
        trace_id: bytes = _NO_TRACE,
        span_id: bytes = _NO_SPAN,
        flags: int = 0,
        schema_id: str = "",
        attrs: dict[str, AttrValue] | None = None,
    ) -> None:
        self.enqueue_ts_ns = enqueue_ts_ns
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.schema_id = schema_id
        self.attrs: dict[str, AttrValue] = {} if attrs is None else attrs

    @property
    def has_trace(self) -> bool:
        """True when a trace id is set (not all zero)."""
        return self.trace_id != _NO_TRACE

    def copy(self) -> PayloadMeta:
        """An independent copy (``attrs`` is copied too)."""
        return PayloadMeta(
            enqueue_ts_ns=self.enqueue_ts_ns,
            trace_id=self.trace_id,
            span_id=self.span_id,
            flags=self.flags,
            schema_id=self.schema_id,
            attrs=dict(self.attrs),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PayloadMeta):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in sorted(self.__slots__))
        return f"PayloadMeta({fields})"


class Payload:
    """One record: ``data`` plus its :class:`PayloadMeta`, created on first access of ``meta``."""

    __slots__ = ("_meta", "data")

    def __init__(self, data: Any, meta: PayloadMeta | None = None) -> None:
        self.data = data
        self._meta = meta

    @property
    def meta(self) -> PayloadMeta:
        if self._meta is None:
            self._meta = PayloadMeta()
        return self._meta

    @meta.setter
    def meta(self, value: PayloadMeta) -> None:
        self._meta = value

    @property
    def has_meta(self) -> bool:
        """True when metadata was given or accessed (reading ``meta`` creates it)."""
        return self._meta is not None

    def __repr__(self) -> str:
        return f"Payload({self.data!r}, meta={self._meta!r})"


class Batch:
    """Records that move together between two stages.

    ``data[i]`` is the data of record *i*; ``metas`` is ``None`` when no record has metadata,
    otherwise a list of the same length holding a :class:`PayloadMeta` or ``None`` per record.
    Batch boundaries carry no meaning: the runtime forms batches from whatever is available,
    so a stage must not assume a batch size or that related records share a batch.

    Set by the producer when known:

    - ``nbytes``: the size of the data in bytes. Queues are bounded in bytes as well as in
      records, counting the batches whose size is known: a stage emitting large records
      (Arrow record batches, images) sets it so that memory stays bounded.
    - ``ack``: set by a source that acknowledges (see ``Source.acknowledge``): a token of
      its choosing, handed back once every record derived from this batch was consumed by
      the sinks or dropped.

    Set by the runtime:

    - ``enqueue_ts_ns``: ``time.monotonic_ns()`` when the batch last entered a queue, the
      enqueue time of each of its records, kept once per batch;
    - ``input``: the input it was read from: the ``table`` of a stage's ``input_queues``
      entry, else the queue's name.
    """

    __slots__ = ("_lineage", "ack", "data", "enqueue_ts_ns", "input", "metas", "nbytes")

    def __init__(
        self,
        data: list[Any],
        metas: list[PayloadMeta | None] | None = None,
        *,
        nbytes: int | None = None,
    ) -> None:
        self.data = data
        self.metas = metas
        self.nbytes = nbytes
        self.ack: Any = None
        self.enqueue_ts_ns = 0
        self.input = ""
        self._lineage: tuple[Any, ...] = ()  # the runtime's acknowledgement trackers

    def __len__(self) -> int:
        return len(self.data)

    def payloads(self) -> Iterator[Payload]:
        """Each record as a :class:`Payload` (its meta object shared, not copied)."""
        metas = self.metas
        if metas is None:
            for data in self.data:
                yield Payload(data)
        else:
            for data, meta in zip(self.data, metas, strict=True):
                yield Payload(data, meta)

    @classmethod
    def of(cls, records: Iterable[Any]) -> Batch:
        """A batch from records given as data or as :class:`Payload`."""
        builder = BatchBuilder()
        for record in records:
            builder.add(record)
        return builder.build()

    def __repr__(self) -> str:
        return f"Batch({self.data!r}, metas={self.metas!r})"


class BatchBuilder:
    """Collects records (data or :class:`Payload`) into a :class:`Batch`, allocating the metas
    list only once a record with metadata shows up."""

    __slots__ = ("data", "metas")

    def __init__(self) -> None:
        self.data: list[Any] = []
        self.metas: list[PayloadMeta | None] | None = None

    def add(self, record: Any, inherited: PayloadMeta | None = None) -> None:
        """Add one record; raw data takes ``inherited`` as its metadata."""
        if isinstance(record, Payload):
            meta = record._meta
            self.data.append(record.data)
        else:
            meta = inherited
            self.data.append(record)
        if meta is not None:
            if self.metas is None:
                self.metas = [None] * (len(self.data) - 1)
            self.metas.append(meta)
        elif self.metas is not None:
            self.metas.append(None)

    def __len__(self) -> int:
        return len(self.data)

    def build(self) -> Batch:
        return Batch(self.data, self.metas)
