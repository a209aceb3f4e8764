"""Packed convolutional stacks: K CNNs of one architecture as one network of grouped
convolutions.

Member k owns channel block k of every feature map (``[B, K*C, ...]``): a convolution with
``groups=K`` applies each member's own kernels to its own block, BatchNorm keeps per-channel
(so per-member) statistics, pooling is per channel, and the head is a batched matmul per
member. Activations (and any other leaf module the stack holds) run member by member on their
block, or as one fused kernel call for all members. `scripts/bench_cnn_packing.py` measures what
this buys on mnist1d-cnn and digits-cnn.

`conv_stack` says which models qualify: an ``nn.Sequential`` (nested ones are flattened) of
shape-only input modules (``Unflatten``), then convolutions (``Conv1d``/``Conv2d``, groups 1,
zero padding), BatchNorm with running statistics, channel-wise pooling and parameter-free or
member-local leaf modules, ending in ``Flatten, Linear``. Anything else (residual blocks,
dropout, EvoNorm layer graphs) trains one by one."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from afsearch.compile.fused import FusedActivation
from afsearch.evaluate.packed_base import StackedMembers, fused_site, program_of

_CONVS = (nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
#: parameter-free modules that act on every channel alone: one call serves all members
_CHANNELWISE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AvgPool1d, nn.AvgPool2d,
                nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.Identity)
#: leaf modules the stacked body may not hold: random draws would differ from one-by-one
#: training, and linear or reshaping layers would mix the members' channel blocks
_REFUSED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Linear, nn.Flatten, nn.Unflatten)


@dataclass(frozen=True)
class ConvLayout:
    """A packable model, read: `prefix` shapes one member's input, `body` is what runs on the
    stacked feature maps, `head` is the final Linear (after a Flatten)."""

    prefix: list[nn.Module]
    body: list[nn.Module]
    head: nn.Linear

    def signature(self) -> tuple:
        """What must agree between members (activations may differ)."""
        def sig(m: nn.Module) -> tuple:
            if isinstance(m, _CONVS):
                return (type(m).__name__, m.in_channels, m.out_channels, m.kernel_size, m.stride,
                        m.padding, m.dilation, m.bias is not None)
            if isinstance(m, _NORMS):
                return (type(m).__name__, m.num_features, m.eps, m.momentum)
            if isinstance(m, _CHANNELWISE):
                return (repr(m),)
            return ("site",)
        return (tuple(repr(m) for m in self.prefix), tuple(sig(m) for m in self.body),
                self.head.in_features, self.head.out_features)


def _leaves(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    return [module]


def conv_stack(model: nn.Module) -> ConvLayout | None:
    """The model read as a packable convolutional stack, or None."""
    if not isinstance(model, nn.Sequential):
        return None
    leaves = _leaves(model)
    if len(leaves) < 3 or not isinstance(leaves[-1], nn.Linear) or not isinstance(leaves[-2], nn.Flatten):
        return None
    flatten = leaves[-2]
    if flatten.start_dim != 1 or flatten.end_dim != -1:
        return None
    n_prefix = 0
    while n_prefix < len(leaves) and isinstance(leaves[n_prefix], nn.Unflatten):
        n_prefix += 1
    body = leaves[n_prefix:-2]
    if not any(isinstance(m, _CONVS) for m in body):
        return None
    for m in body:
        if isinstance(m, _CONVS):
            if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                return None
        elif isinstance(m, _NORMS):
            if not (m.affine and m.track_running_stats and m.momentum is not None):
                return None
        elif isinstance(m, _REFUSED) or any(True for _ in m.children()):
            return None
    return ConvLayout(leaves[:n_prefix], body, leaves[-1])


@dataclass(frozen=True)
class _Conv:
    weight: int  # index into ConvPack.stacked
    bias: int | None
    dims: int
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]


@dataclass(frozen=True)
class _Norm:
    weight: int
    bias: int
    mean: int  # index into ConvPack.buffers
    var: int
    momentum: float
    eps: float


@dataclass(frozen=True)
class _Site:
    index: int  # activation site: member k's module is acts[k][index]


class ConvPack(StackedMembers):
    """K convolutional stacks of one architecture (`conv_stack`) as grouped layers."""

    measure_chunk = 500

    def __init__(self, models: list[nn.Module], device: torch.device) -> None:
        layouts = [conv_stack(m) for m in models]
        if any(lay is None for lay in layouts):
            raise ValueError("packed training needs MLPs or plain convolutional stacks (see conv_stack)")
        if len({lay.signature() for lay in layouts}) != 1:
            raise ValueError("packed training needs members of one architecture")
        first = layouts[0]
        self.prefix = first.prefix
        self.stacked, self.buffers, self.ops = [], [], []
        sites: list[list[nn.Module]] = []
        for i, m in enumerate(first.body):
            column = [lay.body[i] for lay in layouts]
            if isinstance(m, _CONVS):
                w = self._stack([c.weight for c in column], device)
                b = self._stack([c.bias for c in column], device) if m.bias is not None else None
                self.ops.append(_Conv(w, b, 1 if isinstance(m, nn.Conv1d) else 2, m.stride, m.padding, m.dilation))
            elif isinstance(m, _NORMS):
                w = self._stack([c.weight for c in column], device)
                b = self._stack([c.bias for c in column], device)
                self.buffers += [torch.cat([c.running_mean for c in column]).to(device),
                                 torch.cat([c.running_var for c in column]).to(device)]
                self.ops.append(_Norm(w, b, len(self.buffers) - 2, len(self.buffers) - 1, m.momentum, m.eps))
            elif isinstance(m, _CHANNELWISE):
                self.ops.append(m)
            else:
                self.ops.append(_Site(len(sites)))
                sites.append([c.to(device) for c in column])
        heads = [lay.head for lay in layouts]
        self._stack([h.weight.t() for h in heads], device, new_axis=True)  # the head: last two
        self._stack([h.bias.unsqueeze(0) for h in heads], device, new_axis=True)
        self.acts = [[site[k] for site in sites] for k in range(len(models))]
        self.fused = [fused_site(site, device) for site in sites]
        #: one module for every member where all of them compute the same parameter-free formula
        #: (the seeds of one candidate): it runs on the whole stacked map, no per-member split
        self.shared = [_shared(site) for site in sites]

    def _stack(self, tensors: list[torch.Tensor], device: torch.device, new_axis: bool = False) -> int:
        """Stack the members' tensors (along a new axis, or concatenated along dim 0), add to
        `stacked`, return the index. A tensor stays frozen when every member's is."""
        grads = {t.requires_grad for t in tensors}
        if len(grads) != 1:
            raise ValueError("packed training needs every member to freeze the same layers")
        joined = torch.stack(tensors) if new_axis else torch.cat(tensors)
        self.stacked.append(joined.detach().to(device).requires_grad_(grads == {True}))
        return len(self.stacked) - 1

    def features(self, x: torch.Tensor, training: bool = True) -> torch.Tensor:
        k, b = x.shape[:2]
        h = x.reshape(k * b, *x.shape[2:])
        for m in self.prefix:
            h = m(h)
        # member k's channels become channel block k
        h = h.reshape(k, b, *h.shape[1:]).transpose(0, 1).reshape(b, k * h.shape[1], *h.shape[2:])
        for op in self.ops:
            h = self._apply(op, h, training)
        return h.reshape(b, k, -1).transpose(0, 1)

    def _apply(self, op: object, h: torch.Tensor, training: bool) -> torch.Tensor:
        if isinstance(op, _Conv):
            conv = F.conv1d if op.dims == 1 else F.conv2d
            bias = self.stacked[op.bias] if op.bias is not None else None
            return conv(h, self.stacked[op.weight], bias, op.stride, op.padding, op.dilation, self.size)
        if isinstance(op, _Norm):
            return F.batch_norm(h, self.buffers[op.mean], self.buffers[op.var], self.stacked[op.weight],
                                self.stacked[op.bias], training, op.momentum, op.eps)
        if isinstance(op, _Site):
            return self._activate_blocks(op.index, h)
        assert isinstance(op, nn.Module)
        return op(h)

    def _activate_blocks(self, site: int, h: torch.Tensor) -> torch.Tensor:
        shared = self.shared[site]
        if shared is not None:
            return shared(h)
        # [B, K*C, ...] viewed as [B, K, C, ...]: member k's block is its own [B, C, ...] map
        return self.activate(site, h.unflatten(1, (self.size, -1)), dim=1).flatten(1, 2)


def _shared(site: list[nn.Module]) -> nn.Module | None:
    """A module computing every member's activation at this site at once, when they are all the
    same parameter-free generated formula; else None."""
    formulas = {getattr(type(m), "formula", None) for m in site}
    if len(formulas) != 1 or None in formulas or any(True for m in site for _ in m.parameters()):
        return None
    (formula,) = formulas
    program = program_of(formula)
    return FusedActivation(site[0], program) if program is not None else site[0]
