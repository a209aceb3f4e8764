"""What every packed model shares: K members whose parameters are stacked along dimension 0
(member k owns the k-th equal block of every stacked tensor), a per-member linear head
``out[k] = features[k] @ W[k] + b[k]``, and the activations applied member by member.

`StackedMembers` implements the trainer's `Members` protocol once (losses, measuring, the
least-squares readout, cutting members out with their optimizer state); the MLP stack
(`afsearch.evaluate.packed`) and the grouped-convolution stack (`afsearch.evaluate.packed_conv`)
only say how features are computed."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from afsearch.compile.fused import (
    FusedActivation,
    FusedProgram,
    fused_packed,
    fused_status,
    to_program,
)
from afsearch.errors import AfsearchError
from afsearch.evaluate.trainer import Data, Split, least_squares_readout, score
from afsearch.expr.parser import parse


class StackedMembers:
    """Subclasses fill `stacked` (trainable or frozen tensors, the head's weight [K, F, out]
    and bias [K, 1, out] last), `buffers` (stacked, not trained: e.g. BatchNorm statistics)
    and `acts` (per member, its activation module at every activation site), and implement
    `features`."""

    stacked: list[torch.Tensor]
    buffers: list[torch.Tensor]
    acts: list[list[nn.Module]]
    fused: list[list[FusedActivation] | None]
    #: rows of a split measured at once (None: all); a CNN pack holds K copies of every row's
    #: feature maps
    measure_chunk: int | None = None

    @property
    def size(self) -> int:
        return len(self.acts)

    @property
    def head(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stacked[-2], self.stacked[-1]

    def features(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """x: [K, B, ...] (member k reads x[k]) -> [K, B, F], what feeds the head."""
        raise NotImplementedError

    def params(self) -> list[torch.Tensor]:
        act_params = [p for member in self.acts for a in member for p in a.parameters() if p.requires_grad]
        return [p for p in self.stacked if p.requires_grad] + act_params

    def forward(self, x: torch.Tensor, training: bool = True) -> torch.Tensor:
        """x: [K, B, ...] -> [K, B, out]."""
        w, b = self.head
        return torch.baddbmm(b, self.features(x, training), w)

    def activate(self, site: int, h: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Member k's activation at `site` applied to ``h.select(dim, k)``, for h stacked along
        `dim` (one fused kernel call when the members allow it)."""
        fused = self.fused[site]
        if fused is not None:
            return fused_packed(fused, h, dim)
        return torch.stack([member[site](h.select(dim, k)) for k, member in enumerate(self.acts)], dim)

    def set_training(self, training: bool) -> None:
        """Train or eval mode for the members' own modules (a layer with running statistics
        behaves differently in each), as `train` switches its model."""
        for member in self.acts:
            for m in member:
                if m.training != training:
                    m.train(training)

    def losses(self, rows: list[torch.Tensor], data: Data, autocast: Callable) -> torch.Tensor:
        """Each member's mean loss on its batch, [K], in one call."""
        self.set_training(True)
        idx = torch.stack(rows)  # [K, B]
        with autocast():
            out = self.forward(data.train.x[idx]).float()
        y = data.train.y[idx]
        k, b = out.shape[:2]
        if data.regression:
            return nn.functional.mse_loss(out, y, reduction="none").reshape(k, -1).mean(1)
        return nn.functional.cross_entropy(out.reshape(k * b, -1), y.reshape(-1), reduction="none").reshape(k, b).mean(1)

    def _on_split(self, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """fn applied to every member's view of the whole split, chunk by chunk: [K, N, ...]."""
        self.set_training(False)
        chunk = self.measure_chunk or len(x)
        parts = [fn(x[i:i + chunk].expand(self.size, *x[i:i + chunk].shape)) for i in range(0, len(x), chunk)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    @torch.no_grad()
    def refit_readout(self, split: Split) -> None:
        """Each member's head set to its least-squares readout (`Recipe.refit_readout`); a
        member whose features are not finite keeps its own."""
        features = self._on_split(split.x, lambda x: self.features(x, training=False)).float()
        w, b = self.head
        for k in range(features.shape[0]):
            fit = least_squares_readout(features[k], split.y)
            if fit is not None:
                w[k].copy_(fit[0].t())
                b[k, 0].copy_(fit[1])

    @torch.no_grad()
    def measure(self, split: Split, regression: bool, autocast: Callable) -> list[tuple[float, float]]:
        with autocast():
            out = self._on_split(split.x, lambda x: self.forward(x, training=False)).float()
        return [score(out[k], split.y, regression) for k in range(out.shape[0])]

    def keep(self, rows: list[int], optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Cut the pack down to `rows`, carrying the optimizer state of the survivors."""
        k = self.size
        old_state = {id(p): optimizer.state.get(p, {}) for p in self.params()}
        index = torch.tensor(rows, device=self.stacked[0].device)

        def take(t: torch.Tensor) -> torch.Tensor:
            blocks = t.detach().reshape(k, -1, *t.shape[1:]).index_select(0, index)
            return blocks.reshape(-1, *t.shape[1:]).clone().requires_grad_(t.requires_grad)

        new = [take(t) for t in self.stacked]
        carried: dict[int, dict[str, torch.Tensor]] = {}
        for old, fresh in zip(self.stacked, new, strict=True):
            state = old_state.get(id(old), {})
            carried[id(fresh)] = {name: (take(v) if v.dim() > 0 else v.clone()) for name, v in state.items()}
        self.stacked = new
        self.buffers = [take(t) for t in self.buffers]
        self.acts = [self.acts[r] for r in rows]
        self.fused = [None if f is None else [f[r] for r in rows] for f in self.fused]
        for p in (q for member in self.acts for a in member for q in a.parameters()):
            if old_state.get(id(p)):
                carried[id(p)] = old_state[id(p)]
        # same optimizer, same hyper-parameters: swap its parameters and their state in place
        optimizer.param_groups[0]["params"] = self.params()
        optimizer.state.clear()
        for p in self.params():
            if carried.get(id(p)):
                optimizer.state[p] = carried[id(p)]
        return optimizer


def fused_site(acts: Sequence[nn.Module], device: torch.device) -> list[FusedActivation] | None:
    """The members' activations at one site as fused-kernel modules sharing their parameters,
    so that one kernel call applies all of them (forward and backward); None when any member
    is not a generated formula module or the kernel cannot run here (then they run one by
    one, eagerly)."""
    if device.type != "cpu" or not fused_status().available:
        return None
    fused = []
    for act in acts:
        formula = getattr(type(act), "formula", None)
        if not isinstance(formula, str) or isinstance(act, FusedActivation):
            return None
        program = program_of(formula)
        if program is None:
            return None
        try:
            fused.append(FusedActivation(act, program, policy="always"))
        except ValueError:
            return None
    return fused


@functools.lru_cache(maxsize=4096)
def program_of(formula: str) -> FusedProgram | None:
    """The fused kernel's program for a formula, or None when it has none."""
    try:
        return to_program(parse(formula))
    except (ValueError, AfsearchError):
        return None
