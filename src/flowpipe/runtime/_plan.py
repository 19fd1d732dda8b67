"""Turn a parsed flow into a plan the runtime can start, checking everything first.

This is the last validation step, the one that needs the plugins: every stage type resolved,
every stage config checked by the stage's own model, every stage wired as its kind requires.
All problems, including the spec reader's, are reported together; nothing has started yet.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..registry import StageInfo, StageRegistry, resolve
from ..sdk import FileScan, FlowSpecError, PluginError, Problem, Source, StageConfig, StageKind
from ..spec import InMemorySchemaFormat, ObservabilityConfig, ParsedFlow, StageSpec, validation_problem
from ._formats import missing_library

__all__ = ["FlowPlan", "StagePlan", "plan_flow"]


@dataclass(frozen=True)
class StagePlan:
    """One stage, ready to start: its type resolved and its config validated."""

    name: str
    info: StageInfo
    config: StageConfig
    threads: int
    inputs: tuple[tuple[str, str], ...]  # (input name, queue): table name or the queue itself
    output: str | None
    cpus: tuple[int, ...] = ()
    realtime_priority: int | None = None
    input_schemas: tuple[tuple[str, Any], ...] = ()  # known before start (None: unknown)
    scans: tuple[tuple[str, FileScan], ...] = ()  # inputs it reads from their files itself
    fused_into: str | None = None  # a source whose files that stage reads: it does not run


@dataclass(frozen=True)
class FlowPlan:
    name: str
    path: Path
    job: bool
    stages: tuple[StagePlan, ...]
    queue_capacities: dict[str, int]
    queue_formats: dict[str, InMemorySchemaFormat] = field(default_factory=dict)  # declared ones
    debug: bool = False
    warnings: tuple[Problem, ...] = ()
    version: int = 0
    observability: ObservabilityConfig | None = None  # the flow's block, None when absent


# Which queues each kind must (True), must not (False) or may (None) have.
_WIRING: dict[StageKind, tuple[bool, bool | None]] = {
    StageKind.SOURCE: (False, True),
    StageKind.TRANSFORM: (True, True),
    StageKind.SINK: (True, False),
    StageKind.SIDE_EFFECT: (True, None),
}


def plan_flow(
    parsed: ParsedFlow, registry: StageRegistry, *, preflight: bool = False, fuse: bool = True
) -> FlowPlan:
    """The flow's plan, or FlowSpecError listing every problem found.

    With ``preflight``, once everything else is valid, each stage type's ``preflight`` checks
    run too (servers reachable, ports free), then its ``output_schema`` (a query's columns
    against its inputs' schemas): what ``flowpipe run`` needs before starting. Then, with
    ``fuse``, a stage may take the files of the sources feeding it (``Stage.take_scans``).
    """
    problems = list(parsed.problems)
    spec = parsed.spec
    if spec is None:
        raise FlowSpecError(problems)
    pinning = spec.kubernetes.cpu_pinning if spec.kubernetes is not None else {}
    stages: list[StagePlan] = []
    stage_indexes: list[int] = []
    for index, stage in enumerate(spec.stages):
        checked = _check_stage(parsed, registry, index, stage, problems)
        cpus = pinning[stage.name].cpu if stage.name in pinning else ()
        problems.extend(_missing_cpus(parsed, stage.name, cpus))
        if checked is None:
            continue
        info, config = checked
        stage_indexes.append(index)
        stages.append(
            StagePlan(
                name=stage.name,
                info=info,
                config=config,
                threads=stage.threads,
                inputs=tuple((n.table, n.queue) for n in stage.input_queues)
                or tuple((q, q) for q in spec.stage_inputs(stage)),
                output=stage.output_queue,
                cpus=tuple(cpus),
                realtime_priority=stage.realtime_priority,
            )
        )
    for index, queue in enumerate(spec.queues):
        format = queue.schema.format if queue.schema is not None else None
        install = missing_library(format)
        if format is not None and install:
            problems.append(
                parsed.problem(
                    ("queues", index, "schema", "format"),
                    f"queue '{queue.name}': schema.format {format.name} needs a library not installed",
                    install,
                )
            )
    if preflight and not any(not p.warning for p in problems):
        for index, plan in zip(stage_indexes, stages, strict=True):
            problems.extend(
                _stage_problem(parsed, index, plan, message)
                for message in plan.info.stage_class.preflight(plan.config)
            )
        if not any(not p.warning for p in problems):
            inputs = _input_schemas(parsed, stages, stage_indexes, problems)
            stages = [replace(plan, input_schemas=tuple(inputs[plan.name].items())) for plan in stages]
            if fuse and not any(not p.warning for p in problems):
                stages = _fuse(parsed, stages, stage_indexes, inputs, problems)
    if any(not p.warning for p in problems):
        raise FlowSpecError(sorted(problems, key=lambda p: (p.line, p.column)))
    return FlowPlan(
        name=spec.name,
        path=parsed.path,
        job=spec.is_job,
        stages=tuple(stages),
        queue_capacities={q.name: q.capacity for q in spec.queues},
        queue_formats={q.name: q.schema.format for q in spec.queues if q.schema is not None},
        debug=bool(spec.observability and spec.observability.debug),
        warnings=tuple(problems),
        version=spec.version,
        observability=spec.observability,
    )


def _stage_problem(parsed: ParsedFlow, index: int, plan: StagePlan, message: str) -> Problem:
    """A stage's own finding, located at the config key it starts with (``config.path: …``),
    else at the stage."""
    key = re.match(r"config((?:\.\w+)+): ", message)
    where = ("stages", index, "config", *key[1].split(".")[1:]) if key else ("stages", index)
    return parsed.problem(where, f"stage '{plan.name}' ({plan.info.type_name}): {message}")


def _input_schemas(
    parsed: ParsedFlow, stages: Sequence[StagePlan], indexes: Sequence[int], problems: list[Problem]
) -> dict[str, dict[str, Any]]:
    """Each stage's inputs' schemas (input name -> schema, None when unknown), from asking each
    stage type for its ``output_schema``, upstream first: what a stage refuses (a query naming
    a missing column) is a problem found before anything starts. An input fed by several
    stages is known only when they all agree."""
    producers = _producers(stages)
    ask = _asker(parsed, stages, indexes, problems)
    schemas: dict[str, Any] = {}  # stage name -> what it emits (None: unknown)
    inputs_of: dict[str, dict[str, Any]] = {}

    def schema_of(plan: StagePlan) -> Any:
        if plan.name in schemas:
            return schemas[plan.name]
        schemas[plan.name] = None  # a cycle of queues reads as unknown
        inputs: dict[str, Any] = {}
        for name, queue in plan.inputs:
            fed = [schema_of(producer) for producer in producers.get(queue, [])]
            agreed = bool(fed) and all(schema == fed[0] for schema in fed[1:])
            inputs[name] = fed[0] if agreed else None
        inputs_of[plan.name] = inputs
        schemas[plan.name] = ask(plan, plan.info.stage_class.output_schema, plan.config, inputs)
        return schemas[plan.name]

    for plan in stages:
        schema_of(plan)
    return inputs_of


def _fuse(
    parsed: ParsedFlow,
    stages: Sequence[StagePlan],
    indexes: Sequence[int],
    inputs_of: dict[str, dict[str, Any]],
    problems: list[Problem],
) -> list[StagePlan]:
    """``stages`` with the inputs each takes as files (``Stage.take_scans``) and the sources of
    those inputs marked as not to run. Offered: an input whose queue one source alone feeds
    (``Source.file_scan``) and one stage alone reads."""
    producers = _producers(stages)
    readers: dict[str, int] = {}
    for plan in stages:
        for _, queue in plan.inputs:
            readers[queue] = readers.get(queue, 0) + 1
    ask = _asker(parsed, stages, indexes, problems)
    fused_into: dict[str, str] = {}  # source -> the stage reading its files
    scans_of: dict[str, tuple[tuple[str, FileScan], ...]] = {}
    for plan in stages:
        offers: dict[str, tuple[FileScan, str]] = {}
        for name, queue in plan.inputs:
            feeding = producers.get(queue, [])
            if len(feeding) != 1 or readers[queue] != 1:
                continue
            source = feeding[0].info.stage_class
            if issubclass(source, Source) and not source.can_acknowledge():
                scan = ask(feeding[0], source.file_scan, feeding[0].config)
                if scan is not None:
                    offers[name] = (scan, feeding[0].name)
        if not offers:
            continue
        scans = {name: scan for name, (scan, _) in offers.items()}
        inputs = inputs_of[plan.name]
        taken = ask(plan, plan.info.stage_class.take_scans, plan.config, scans, inputs) or ()
        scans_of[plan.name] = tuple((name, scans[name]) for name in taken if name in scans)
        fused_into.update((offers[name][1], plan.name) for name, _ in scans_of[plan.name])
    return [
        replace(plan, scans=scans_of.get(plan.name, ()), fused_into=fused_into.get(plan.name))
        for plan in stages
    ]


def _producers(stages: Sequence[StagePlan]) -> dict[str, list[StagePlan]]:
    """The stages writing to each queue."""
    producers: dict[str, list[StagePlan]] = {}
    for plan in stages:
        if plan.output is not None:
            producers.setdefault(plan.output, []).append(plan)
    return producers


def _asker(
    parsed: ParsedFlow, stages: Sequence[StagePlan], indexes: Sequence[int], problems: list[Problem]
) -> Callable[..., Any]:
    """``ask(plan, hook, *args)`` calls a hook of the stage type of ``plan``: its exception
    becomes that stage's problem (a ValueError's text as it is), not a crash, and None the answer."""
    where = dict(zip((plan.name for plan in stages), indexes, strict=True))

    def ask(plan: StagePlan, hook: Callable[..., Any], *args: Any) -> Any:
        try:
            return hook(*args)
        except Exception as error:
            text = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
            problems.append(_stage_problem(parsed, where[plan.name], plan, text))
            return None

    return ask


def _missing_cpus(parsed: ParsedFlow, stage_name: str, cpus: Sequence[int]) -> list[Problem]:
    """CPU ids this machine does not have (the spec cannot know the machine a flow runs on)."""
    count = os.cpu_count() or 1
    return [
        parsed.problem(
            ("kubernetes", "cpu_pinning", stage_name, "cpu", j),
            f"cpu_pinning for '{stage_name}': there is no CPU {cpu}; this machine has {count}",
            f"use CPU ids from 0 to {count - 1}",
        )
        for j, cpu in enumerate(cpus)
        if cpu >= count
    ]


def _check_stage(
    parsed: ParsedFlow, registry: StageRegistry, index: int, stage: StageSpec, problems: list[Problem]
) -> tuple[StageInfo, StageConfig] | None:
    where = ("stages", index)
    if not stage.type and not stage.plugin:
        return None  # the spec's checks already said: a stage needs a type
    try:
        info = resolve(registry, stage.type, stage.plugin, parsed.path.parent)
    except PluginError as error:
        field = "plugin" if stage.plugin else "type"
        problems.append(parsed.problem((*where, field), f"stage '{stage.name}': {error}"))
        return None
    label = f"stage '{stage.name}' ({stage.type})"
    kind = info.kind.value.replace("_", "-")
    needs_input, needs_output = _WIRING[info.kind]
    inputs = parsed.spec.stage_inputs(stage) if parsed.spec else []
    if needs_input and not inputs:
        problems.append(
            parsed.problem(where, f"{label} is a {kind} and needs an input_queue", "add input_queue: <queue>")
        )
    elif not needs_input and inputs:
        problems.append(
            parsed.problem(
                (*where, "input_queue"), f"{label} is a {kind} and takes no input", "remove input_queue"
            )
        )
    if len(inputs) > 1 and not info.stage_class.named_inputs:
        problems.append(
            parsed.problem(
                (*where, "input_queues"),
                f"{label} reads one input; it does not take several input_queues",
                "use a single input_queue, or a stage type that joins inputs",
            )
        )
    if needs_output and not stage.output_queue:
        problems.append(
            parsed.problem(
                where, f"{label} is a {kind} and needs an output_queue", "add output_queue: <queue>"
            )
        )
    elif needs_output is False and stage.output_queue:
        problems.append(
            parsed.problem(
                (*where, "output_queue"), f"{label} is a {kind} and has no output", "remove output_queue"
            )
        )
    try:
        config = info.config_model.model_validate(stage.config)
    except ValidationError as error:
        problems.extend(
            validation_problem(item, info.config_model, where, label, parsed.problem, ("config",))
            for item in error.errors()
        )
        return None
    rejected = [
        parsed.problem((*where, "config"), f"{label}: {m}") for m in info.stage_class.check_config(config)
    ]
    if rejected:
        problems.extend(rejected)
        return None
    return info, config
