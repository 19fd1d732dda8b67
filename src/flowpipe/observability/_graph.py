"""A flow as a picture: stages as nodes, queues as edges labelled with their capacity.

Drawn from the flow file alone (no plugin is loaded), so a stage's role comes from its wiring:
no input makes a source, no output a sink. A queue read by several stages (fan-out) or written
by several (fan-in) gives one edge per producer and consumer pair, all with the queue's label;
a queue missing its producer or its consumer ends at a node of its own.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from ..sdk import FlowpipeError
from ..spec import FlowSpec

__all__ = ["GRAPH_FORMATS", "render_graph"]

GRAPH_FORMATS = ("mermaid", "dot", "svg", "png")


@dataclass(frozen=True)
class _Node:
    id: str
    lines: tuple[str, ...]
    role: str  # source, transform, sink or queue (a dangling queue end)


@dataclass(frozen=True)
class _Edge:
    source: str
    target: str
    label: tuple[str, ...]


def _model(spec: FlowSpec) -> tuple[list[_Node], list[_Edge]]:
    nodes: list[_Node] = []
    ids: dict[str, str] = {}
    for index, stage in enumerate(spec.stages):
        ids[stage.name] = node_id = f"s{index}"
        inputs = spec.stage_inputs(stage)
        role = "source" if not inputs else "sink" if not stage.output_queue else "transform"
        lines = (stage.name, stage.type + (f", {stage.threads} threads" if stage.threads > 1 else ""))
        nodes.append(_Node(node_id, lines, role))
    edges: list[_Edge] = []
    for index, queue in enumerate(spec.queues):
        producers = [ids[s.name] for s in spec.stages if s.output_queue == queue.name]
        consumers = [ids[s.name] for s in spec.stages if queue.name in spec.stage_inputs(s)]
        if not producers or not consumers:
            nodes.append(_Node(f"q{index}", (queue.name,), "queue"))
            producers, consumers = producers or [f"q{index}"], consumers or [f"q{index}"]
        label = (queue.name, f"capacity {queue.capacity}")
        edges += [_Edge(p, c, label) for p in producers for c in consumers]
    return nodes, edges


def _dot(spec: FlowSpec) -> str:
    def quote(lines: tuple[str, ...]) -> str:
        return '"' + "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines) + '"'

    styles = {
        "source": 'shape=box, style="rounded,filled", fillcolor="#d9f2d9"',
        "transform": 'shape=box, style="rounded,filled", fillcolor="#ffffff"',
        "sink": 'shape=box, style="rounded,filled", fillcolor="#d9e6f7"',
        "queue": "shape=plaintext",
    }
    nodes, edges = _model(spec)
    out = [
        f"digraph {quote((spec.name or 'flow',))} {{",
        "  rankdir=LR;",
        '  node [fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    out += [f"  {n.id} [label={quote(n.lines)}, {styles[n.role]}];" for n in nodes]
    out += [f"  {e.source} -> {e.target} [label={quote(e.label)}];" for e in edges]
    return "\n".join([*out, "}"]) + "\n"


def _mermaid(spec: FlowSpec) -> str:
    def quote(lines: tuple[str, ...]) -> str:
        return '"' + "<br/>".join(line.replace('"', "#quot;") for line in lines) + '"'

    shapes = {"source": "([{}])", "transform": "[{}]", "sink": "[({})]", "queue": ">{}]"}
    nodes, edges = _model(spec)
    out = ["flowchart LR"]
    out += [f"  {n.id}{shapes[n.role].format(quote(n.lines))}" for n in nodes]
    out += [f"  {e.source} -->|{quote(e.label)}| {e.target}" for e in edges]
    return "\n".join(out) + "\n"


def render_graph(spec: FlowSpec, fmt: str) -> bytes:
    """The flow drawn in ``fmt`` (one of GRAPH_FORMATS); SVG and PNG through graphviz's ``dot``."""
    if fmt == "mermaid":
        return _mermaid(spec).encode()
    dot = _dot(spec)
    if fmt == "dot":
        return dot.encode()
    program = shutil.which("dot")
    if program is None:
        raise FlowpipeError(f"--format {fmt} needs graphviz's 'dot' program (apt-get install graphviz)")
    done = subprocess.run([program, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise FlowpipeError(f"graphviz failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
