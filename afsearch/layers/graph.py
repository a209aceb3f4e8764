"""EvoNorm-style layer graphs: the genotype, its validation, and its compilation to a module.

A layer graph is a DAG over NCHW tensors, stored as JSON:

    {"nodes": [["batch_std", 0], ["mul", 3, 0], ...], "output": 9, "groups": 32}

Indices 0-3 are the initial nodes: 0 the input `x`, 1 the constant zero, 2 `v0` and 3 `v1`
(trainable per-channel vectors, initialised to 0 and 1). `nodes[k]` is node `4 + k`: an op
name followed by the indices of its inputs, each smaller than its own index (so the list is
topologically ordered and acyclic by construction). `output` names the node the layer returns;
`groups` (default 32) is the channel-group count for group aggregates, reduced until it divides
the channel count. The compiled layer multiplies the output by a per-channel `gamma` (init 1)
and adds `beta` (init 0), as BatchNorm does, so it replaces a whole BatchNorm+activation pair.

Element-wise ops are primitives of the expression registry (`afsearch.expr.primitives`: the
same torch forms and numeric guards as in formulas); aggregates are `STATISTICS` x `AXES`.
Validation, the module, the formula printer and the search space all read these tables. The
layer graph is a phenotype like a formula: the EvoNorm search space (`afsearch.spaces.evonorm`)
produces graphs, and candidates of kind "layer" hold them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from afsearch.compile.codegen import primitive_function
from afsearch.errors import plain_key, space_error
from afsearch.expr.primitives import PRIMITIVES

#: added under the square root of a variance or second moment (EvoNorm's own default); the
#: element-wise ops have the registry's guards
EPS = 1e-5
DECAY = 0.9  # running estimates of batch statistics: r <- DECAY * r + (1 - DECAY) * batch
DEFAULT_GROUPS = 32
INITIAL_NODES = ("x", "0", "v0", "v1")
INPUT = 0
_SOURCE = "layer graph"  # how genotype errors name their source


@dataclass(frozen=True)
class ElementwiseOp:
    """A registry primitive as a graph op: how the graph's formula prints it."""

    primitive: str
    template: str  # {0}, {1} are the inputs
    precedence: int  # 1 sum, 2 product, 3 negation, 9 a function call

    @property
    def arity(self) -> int:
        return PRIMITIVES[self.primitive].arity

    @property
    def fn(self) -> Callable[..., Tensor]:
        return primitive_function(self.primitive)


def _call(name: str) -> ElementwiseOp:
    return ElementwiseOp(name, f"{name}({{0}})" if PRIMITIVES[name].arity == 1 else f"{name}({{0}}, {{1}})", 9)


#: EvoNorm's element-wise ops (slog = sign(x) log(|x| + eps), ssqrt = sign(x) sqrt(|x| + eps))
ELEMENTWISE: dict[str, ElementwiseOp] = {
    "add": ElementwiseOp("add", "{0} + {1}", 1),
    "mul": ElementwiseOp("mul", "{0} * {1}", 2),
    "div": ElementwiseOp("div", "{0} / {1}", 2),
    "max": _call("max"),
    "neg": ElementwiseOp("neg", "-{0}", 3),
    **{name: _call(name) for name in ("sigmoid", "tanh", "exp", "slog", "abs", "square", "ssqrt")},
}
UNARY = tuple(name for name, op in ELEMENTWISE.items() if op.arity == 1)
BINARY = tuple(name for name, op in ELEMENTWISE.items() if op.arity == 2)

# A statistic is a moment, optionally followed by sqrt(. + EPS).
_MOMENTS: dict[str, Callable[[Tensor, list[int]], Tensor]] = {
    "mean": lambda a, dims: a.mean(dims, keepdim=True),
    "var": lambda a, dims: a.var(dims, keepdim=True, correction=0),
    "m2": lambda a, dims: a.square().mean(dims, keepdim=True),  # second moment
}
_RUNNING_INIT = {"mean": 0.0, "var": 1.0, "m2": 1.0}
STATISTICS: dict[str, tuple[str, bool]] = {  # name -> (moment, take sqrt(. + EPS))
    "mean": ("mean", False),
    "var": ("var", False),
    "std": ("var", True),
    "m2": ("m2", False),
    "rms": ("m2", True),
}
# Axes reduced over, and how the formula names them. Batch statistics keep a running estimate,
# updated in train mode and used in eval mode.
AXES = {"batch": "NHW", "instance": "HW", "group": "HWG"}
AGGREGATES = tuple(f"{axis}_{stat}" for axis in AXES for stat in STATISTICS)
ALL_OPS = (*ELEMENTWISE, *AGGREGATES)


def arity(op: str) -> int:
    return ELEMENTWISE[op].arity if op in ELEMENTWISE else 1


def reduce_groups(groups: int, channels: int) -> int:
    """The largest group count <= `groups` that divides `channels`."""
    g = max(1, min(groups, channels))
    while channels % g:
        g -= 1
    return g


@dataclass(frozen=True)
class LayerGraph:
    """A validated layer graph. `nodes[k]` is `(op, *inputs)` for node index `4 + k`."""

    nodes: tuple[tuple[Any, ...], ...]
    output: int
    groups: int = DEFAULT_GROUPS

    # -- JSON ---------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Any) -> LayerGraph:
        """Validate a JSON value; raise `SpaceError` naming the bad key and what is allowed."""
        if not isinstance(data, dict):
            raise space_error(
                _SOURCE,
                "",
                f"expected an object, got {type(data).__name__}",
                "{nodes, output, groups}",
            )
        for key in data:
            if key not in ("nodes", "output", "groups"):
                raise space_error(_SOURCE, plain_key(key), "unknown key", "nodes, output, groups")
        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise space_error(
                _SOURCE,
                "nodes",
                "expected a non-empty list of [op, inputs...]",
                'lists like ["mul", 0, 3]',
            )
        nodes = tuple(_parse_node(raw, len(INITIAL_NODES) + k) for k, raw in enumerate(raw_nodes))
        last = len(INITIAL_NODES) + len(nodes) - 1
        output = data.get("output")
        if not _is_int(output) or not len(INITIAL_NODES) <= output <= last:
            raise space_error(
                _SOURCE,
                "output",
                f"expected a node index, got {output!r}",
                f"integers {len(INITIAL_NODES)}..{last}",
            )
        groups = data.get("groups", DEFAULT_GROUPS)
        if not _is_int(groups) or groups < 1:
            raise space_error(
                _SOURCE, "groups", f"expected a positive integer, got {groups!r}", "integers >= 1"
            )
        graph = cls(nodes, output, groups)
        if not graph.depends_on_input:
            raise space_error(
                _SOURCE,
                "output",
                f"node {output} does not depend on the input x "
                "(batch statistics are constants in eval mode)",
                "nodes computed from node 0 along a path without batch_* ops",
            )
        return graph

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [list(node) for node in self.nodes],
            "output": self.output,
            "groups": self.groups,
        }

    # -- structure ----------------------------------------------------------------------------

    def active(self) -> set[int]:
        """Indices the output depends on (itself included)."""
        return self._ancestors(through_batch=True)

    @property
    def depends_on_input(self) -> bool:
        """Whether the output depends on x in eval mode too, where batch statistics are
        constants: some path from x to the output must avoid batch aggregates."""
        return INPUT in self._ancestors(through_batch=False)

    def _ancestors(self, through_batch: bool) -> set[int]:
        seen: set[int] = set()
        stack = [self.output]
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            if index >= len(INITIAL_NODES):
                op, *inputs = self.node(index)
                if through_batch or not op.startswith("batch_"):
                    stack.extend(inputs)
        return seen

    def node(self, index: int) -> tuple[Any, ...]:
        return self.nodes[index - len(INITIAL_NODES)]

    def ops(self) -> set[str]:
        return {node[0] for node in self.nodes}

    # -- compilation --------------------------------------------------------------------------

    def build(self, channels: int) -> GraphLayer:
        """A fresh module (own parameters and running statistics) for `channels` channels."""
        return GraphLayer(self, channels)

    def formula(self) -> str:
        """Readable form, e.g. `x / max(std_NHW(x), v1 * x + std_HW(x))`. std = sqrt(var+eps),
        rms = sqrt(m2+eps); _NHW batch, _HW instance, _HWG channel-group statistics; the final
        `* gamma + beta` is implied."""
        cache: dict[int, tuple[str, int]] = {}

        def show(index: int) -> tuple[str, int]:
            if index < len(INITIAL_NODES):
                return INITIAL_NODES[index], 9
            if index not in cache:
                op, *inputs = self.node(index)
                if op in ELEMENTWISE:
                    spec = ELEMENTWISE[op]
                    args = [_wrap(show(i), op, pos) for pos, i in enumerate(inputs)]
                    cache[index] = spec.template.format(*args), spec.precedence
                else:
                    axis, stat = op.split("_")
                    cache[index] = f"{stat}_{AXES[axis]}({show(inputs[0])[0]})", 9
            return cache[index]

        return show(self.output)[0]

    def fingerprint(self) -> str:
        """Hash of the layer's outputs on a fixed probe (float64, seeded v0/v1), in train mode
        and then in eval mode, so graphs that compute the same function (dead nodes, reordered
        sums...) collide."""
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(4, 64, 4, 4, generator=gen, dtype=torch.float64)
        layer = self.build(64).to(torch.float64).train()
        with torch.no_grad():
            layer.v0.copy_(0.5 * torch.randn(64, generator=gen, dtype=torch.float64))
            layer.v1.copy_(1 + 0.5 * torch.randn(64, generator=gen, dtype=torch.float64))
            y = torch.cat([layer(x).flatten(), layer.eval()(x).flatten()])
        from afsearch.expr.fingerprint import quantise  # the one quantiser for all fingerprints

        return hashlib.sha256(quantise(y.numpy()).tobytes()).hexdigest()[:16]


class GraphLayer(nn.Module):
    """A compiled layer graph; replaces BatchNorm + activation on (N, C, *spatial) inputs."""

    def __init__(self, graph: LayerGraph, channels: int):
        super().__init__()
        self.graph = graph
        self.channels = channels
        self.groups = reduce_groups(graph.groups, channels)
        self.v0 = nn.Parameter(torch.zeros(channels))
        self.v1 = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        active = graph.active()
        self._plan = [(i, *graph.node(i)) for i in sorted(active) if i >= len(INITIAL_NODES)]
        for index, op, *_ in self._plan:
            if op.startswith("batch_"):
                moment = STATISTICS[op.split("_")[1]][0]
                self.register_buffer(
                    f"running_{index}", torch.full((channels,), _RUNNING_INIT[moment])
                )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3:
            raise ValueError(f"expected an (N, C, H, W) input, got shape {tuple(x.shape)}")
        shape = (1, -1) + (1,) * (x.dim() - 2)
        values = {0: x, 1: x.new_zeros(()), 2: self.v0.view(shape), 3: self.v1.view(shape)}
        for index, op, *inputs in self._plan:
            args = [values[i] for i in inputs]
            if op in ELEMENTWISE:
                values[index] = ELEMENTWISE[op].fn(*args)
            else:
                values[index] = self._aggregate(index, op, args[0].expand_as(x))
        y = values[self.graph.output].expand_as(x)
        return y * self.gamma.view(shape) + self.beta.view(shape)

    def _aggregate(self, index: int, op: str, a: Tensor) -> Tensor:
        axis, stat = op.split("_")
        moment, root = STATISTICS[stat]
        spatial = list(range(2, a.dim()))
        if axis == "instance":
            m = _MOMENTS[moment](a, spatial)
        elif axis == "group":
            n, c, *rest = a.shape
            grouped = a.reshape(n, self.groups, c // self.groups, *rest)
            m = _MOMENTS[moment](grouped, list(range(2, grouped.dim())))
            m = m.expand(n, self.groups, c // self.groups, *([1] * len(rest))).reshape(
                n, c, *([1] * len(rest))
            )
        else:
            running: Tensor = getattr(self, f"running_{index}")
            if self.training:
                m = _MOMENTS[moment](a, [0, *spatial])
                with torch.no_grad():
                    running.lerp_(m.detach().flatten().to(running.dtype), 1 - DECAY)
            else:
                m = running.view(1, -1, *([1] * len(spatial))).to(a.dtype)
        return torch.sqrt(m + EPS) if root else m

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}, formula={self.graph.formula()!r}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_node(raw: Any, index: int) -> tuple[Any, ...]:
    key = f"nodes[{index - len(INITIAL_NODES)}]"
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], str):
        raise space_error(
            _SOURCE, key, f"expected [op, inputs...], got {raw!r}", 'lists like ["mul", 0, 3]'
        )
    op, *inputs = raw
    if op not in ALL_OPS:
        raise space_error(_SOURCE, key, f"unknown op {op!r}", ALL_OPS)
    if len(inputs) != arity(op):
        raise space_error(
            _SOURCE,
            key,
            f"op {op!r} takes {arity(op)} input(s), got {len(inputs)}",
            f"{arity(op)} input index(es)",
        )
    for i in inputs:
        if not _is_int(i) or not 0 <= i < index:
            raise space_error(
                _SOURCE,
                key,
                f"input {i!r} is not an earlier node of node {index}",
                f"integers 0..{index - 1}",
            )
    return (op, *inputs)


def _wrap(shown: tuple[str, int], op: str, position: int) -> str:
    """Parenthesise an operand of an infix or prefix op where precedence requires it."""
    text, inner = shown
    outer = ELEMENTWISE[op].precedence
    if outer == 9:  # a function call's arguments need no parentheses
        return text
    if inner < outer or (inner == outer and (op == "neg" or (op == "div" and position == 1))):
        return f"({text})"
    return text
