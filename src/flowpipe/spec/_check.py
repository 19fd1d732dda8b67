"""Rules that relate parts of a flow to each other; no knowledge of stage plugins needed.

Each rule yields a :class:`Finding` located by its path in the spec, so the caller can place it
in the file. The runtime would otherwise fail on these at start-up, or hang: a queue with no
reader blocks its producers once full, one with no writer keeps its consumers waiting forever.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from typing import NamedTuple

from ._enums import InMemorySchemaFormat
from ._model import DEFAULT_CAPACITY, FlowSpec, StageSpec
from ._text import suggest
from ._yaml import Loc, dotted

__all__ = ["Finding", "check"]

_PRIORITY_RANGE = range(1, 100)  # SCHED_FIFO priorities on Linux


class Finding(NamedTuple):
    loc: Loc
    message: str
    hint: str = ""
    warning: bool = False


def check(
    spec: FlowSpec, line_of: Callable[[Loc], int], unreadable: Collection[Loc] = ()
) -> Iterator[Finding]:
    """Every rule broken by ``spec``.

    ``line_of`` gives the line of a path, to point back at earlier items. ``unreadable`` lists
    the fields (paths without list indexes, e.g. ``("stages", "input_queue")``) that were
    invalid in some item and so are missing from ``spec``; rules that would draw wrong
    conclusions from their absence are skipped.
    """

    def known(key: str, *fields: str) -> bool:
        return (key,) not in unreadable and not any((key, f) in unreadable for f in fields)

    yield from _names(spec, line_of)
    yield from _stages(spec)
    yield from _queues(spec)
    yield from _wiring(
        spec,
        check_refs=known("queues", "name"),
        check_usage=known("stages", "input_queue", "output_queue", "input_queues"),
    )
    yield from _kubernetes(spec, check_stage_names=known("stages", "name"), check_cron=known("execution"))


def _stage_label(stage: StageSpec) -> str:
    return f"stage '{stage.name}'" if stage.name else "unnamed stage"


def _names(spec: FlowSpec, line_of: Callable[[Loc], int]) -> Iterator[Finding]:
    if not spec.name:
        yield Finding(("name",), "the flow name is empty", "set one, or remove the key to use the file name")
    if not spec.stages:
        yield Finding(("stages",), "the flow has no stages", "add at least one stage under 'stages:'")
    yield from _unique("stage", [stage.name for stage in spec.stages], line_of)
    yield from _unique("queue", [queue.name for queue in spec.queues], line_of)


def _unique(kind: str, names: list[str], line_of: Callable[[Loc], int]) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        loc: Loc = (f"{kind}s", i, "name")
        if not name:
            yield Finding(loc, f"a {kind} has no name", f"give every {kind} a unique name")
        elif name in first:
            earlier = line_of((f"{kind}s", first[name], "name"))
            yield Finding(
                loc,
                f"{kind} name '{name}' is already used at line {earlier}",
                f"give every {kind} a unique name",
            )
        else:
            first[name] = i


def _stages(spec: FlowSpec) -> Iterator[Finding]:
    for i, stage in enumerate(spec.stages):
        label = _stage_label(stage)
        if not stage.type:
            yield Finding(
                ("stages", i, "type"), f"{label} has no type", "set type to a stage type such as noop_source"
            )
        if stage.threads < 1:
            yield Finding(
                ("stages", i, "threads"),
                f"{label}: threads must be ≥ 1, got {stage.threads}",
                "set threads to 1 or more, or remove it for 1",
            )
        if stage.realtime_priority is not None and stage.realtime_priority not in _PRIORITY_RANGE:
            yield Finding(
                ("stages", i, "realtime_priority"),
                f"{label}: realtime_priority must be between 1 and 99, got {stage.realtime_priority}",
                "use a SCHED_FIFO priority from 1 to 99, or remove it",
            )
        if stage.input_queue is not None and stage.input_queues:
            yield Finding(
                ("stages", i, "input_queues"),
                f"{label} has both input_queue and input_queues",
                "keep one: input_queue for one input, input_queues for several",
            )
        # One queue read twice would split its records between the two; one table name twice
        # would hide an input.
        for key in ("queue", "table"):
            seen: set[str] = set()
            for j, named in enumerate(stage.input_queues):
                value = getattr(named, key)
                if value in seen:
                    yield Finding(
                        ("stages", i, "input_queues", j, key),
                        f"{label}: input_queues[{j}].{key} '{value}' is already an input of this stage",
                        f"give each input its own {key}",
                    )
                seen.add(value)


# The formats the runtime enforces on a queue's records (runtime/_formats.py).
_CHECKED_FORMATS = (
    InMemorySchemaFormat.IN_MEMORY_SCHEMA_FORMAT_UNSPECIFIED,
    InMemorySchemaFormat.IN_MEMORY_SCHEMA_FORMAT_ARROW,
)


def _queues(spec: FlowSpec) -> Iterator[Finding]:
    for i, queue in enumerate(spec.queues):
        label = f"queue '{queue.name}'" if queue.name else "unnamed queue"
        if queue.capacity <= 0:
            yield Finding(
                ("queues", i, "capacity"),
                f"{label}: capacity must be > 0, got {queue.capacity}",
                f"set a positive capacity, or remove it for {DEFAULT_CAPACITY}",
            )
        if queue.schema is not None and not queue.schema.schema_id:
            yield Finding(
                ("queues", i, "schema"),
                f"{label}: schema is given without a schema_id",
                "set schema.schema_id, or remove schema",
            )
        if queue.schema is not None and queue.schema.format not in _CHECKED_FORMATS:
            yield Finding(
                ("queues", i, "schema", "format"),
                f"{label}: records are not checked against schema.format {queue.schema.format.name}",
                "only IN_MEMORY_SCHEMA_FORMAT_ARROW is enforced; the records pass as they are",
                warning=True,
            )


def _wiring(spec: FlowSpec, *, check_refs: bool, check_usage: bool) -> Iterator[Finding]:
    declared = [queue.name for queue in spec.queues if queue.name]
    readers: defaultdict[str, list[str]] = defaultdict(list)
    writers: defaultdict[str, list[str]] = defaultdict(list)
    for i, stage in enumerate(spec.stages):
        label = _stage_label(stage)
        refs: list[tuple[Loc, str | None, defaultdict[str, list[str]]]] = [
            (("stages", i, "input_queue"), stage.input_queue, readers),
            (("stages", i, "output_queue"), stage.output_queue, writers),
        ]
        refs += [
            (("stages", i, "input_queues", j, "queue"), named.queue, readers)
            for j, named in enumerate(stage.input_queues)
        ]
        for loc, name, users in refs:
            if name is None:
                continue
            users[name].append(label)
            if not name:
                yield Finding(loc, f"{label}: {dotted(loc[2:])} is empty", "name a queue, or remove the key")
            elif check_refs and name not in declared:
                yield Finding(
                    loc,
                    f"{label}: {dotted(loc[2:])} '{name}' is not a declared queue",
                    suggest(name, declared, f"declare it under 'queues:' with name: {name}"),
                )
    for name in dict.fromkeys(declared) if check_usage else ():
        loc = ("queues", declared.index(name), "name")
        if name in readers and name not in writers:
            yield Finding(
                loc,
                f"queue '{name}' is read by {_listing(readers[name])} but no stage writes to it",
                f"add a stage with output_queue: {name}; until then its readers wait forever",
            )
        elif name in writers and name not in readers:
            yield Finding(
                loc,
                f"queue '{name}' is written by {_listing(writers[name])} but no stage reads it",
                f"add a stage with input_queue: {name}; until then its writers block once it is full",
            )
        elif name not in readers:
            yield Finding(loc, f"queue '{name}' is not used by any stage", "remove it", warning=True)
        elif len(dict.fromkeys(readers[name])) > 1:
            # As in flow-pipe, readers compete for records; an aggregate would see a share.
            yield Finding(
                loc,
                f"queue '{name}' is read by {_listing(readers[name])}: each record goes to one of"
                " them, not to each",
                "if each needs every record, give each its own queue and source",
                warning=True,
            )


def _listing(labels: list[str]) -> str:
    return ", ".join(dict.fromkeys(labels))


def _kubernetes(spec: FlowSpec, *, check_stage_names: bool, check_cron: bool) -> Iterator[Finding]:
    options = spec.kubernetes_options
    if check_cron and options is not None and options.cron is not None and not spec.is_job:
        yield Finding(
            ("kubernetes_options", "cron"),
            "cron options are set but the flow does not run as a job",
            "set execution.mode to EXECUTION_MODE_JOB, or remove kubernetes_options.cron",
        )
    if spec.kubernetes is None:
        return
    stage_names = [stage.name for stage in spec.stages if stage.name]
    # CPU ids are checked against the machine only where the flow runs (the runtime's plan):
    # a flow rendered for a Kubernetes node may pin CPUs this machine does not have.
    for stage_name, cpus in spec.kubernetes.cpu_pinning.items():
        loc: Loc = ("kubernetes", "cpu_pinning", stage_name)
        if check_stage_names and stage_name not in stage_names:
            yield Finding(
                loc,
                f"cpu_pinning names stage '{stage_name}', which is not in the flow",
                suggest(stage_name, stage_names, "use the name of a stage"),
            )
        if not cpus.cpu:
            yield Finding(
                loc,
                f"cpu_pinning for '{stage_name}' lists no CPUs, so it is not pinned",
                "list CPU ids, or remove it",
                True,
            )
        seen: set[int] = set()
        for j, cpu in enumerate(cpus.cpu):
            if cpu in seen:
                yield Finding(
                    (*loc, "cpu", j),
                    f"cpu_pinning for '{stage_name}': CPU {cpu} is listed twice",
                    "list each CPU once",
                )
            seen.add(cpu)
