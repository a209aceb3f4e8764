"""EvoNorm-B0 and EvoNorm-S0 twice: hand-written from the published formulas, and as layer
graphs. Tests hold the two forms equal; the graphs also seed searches.

Defaults follow the official TensorFlow code: eps=1e-5, groups=32 reduced until it divides C,
running variance with decay 0.9 (initialised to 1), gamma=1, beta=0, v=1. Variances are
population variances (no Bessel correction), and gradients flow through batch statistics.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from afsearch.layers.graph import reduce_groups

# v is the initial node v1 (index 3, init 1); x is index 0.
EVONORM_B0_GRAPH = {
    "nodes": [
        ["batch_std", 0],  # 4: sqrt(Var_NHW(x) + eps), a running estimate in eval mode
        ["mul", 3, 0],  # 5: v * x
        ["instance_std", 0],  # 6: sqrt(Var_HW(x) + eps)
        ["add", 5, 6],  # 7
        ["max", 4, 7],  # 8
        ["div", 0, 8],  # 9: x / max(...)
    ],
    "output": 9,
    "groups": 32,
}
EVONORM_S0_GRAPH = {
    "nodes": [
        ["mul", 3, 0],  # 4: v * x
        ["sigmoid", 4],  # 5
        ["mul", 0, 5],  # 6: x * sigmoid(v * x)
        ["group_std", 0],  # 7: sqrt(Var_HWG(x) + eps)
        ["div", 6, 7],  # 8
    ],
    "output": 8,
    "groups": 32,
}


class EvoNormB0(nn.Module):
    """y = x / max(sqrt(Var_NHW(x)+eps), v*x + sqrt(Var_HW(x)+eps)) * gamma + beta."""

    def __init__(self, channels: int, eps: float = 1e-5, decay: float = 0.9):
        super().__init__()
        self.eps, self.decay = eps, decay
        self.v = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1, 1, 1)
        if self.training:
            var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
            with torch.no_grad():
                self.running_var -= (self.running_var - var.flatten()) * (1 - self.decay)
        else:
            var = self.running_var.view(shape)
        left = torch.sqrt(var + self.eps)
        instance_var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
        right = self.v.view(shape) * x + torch.sqrt(instance_var + self.eps)
        return x / torch.maximum(left, right) * self.gamma.view(shape) + self.beta.view(shape)


class EvoNormS0(nn.Module):
    """y = x * sigmoid(v*x) / sqrt(Var_HWG(x)+eps) * gamma + beta (G channel groups)."""

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-5):
        super().__init__()
        self.groups, self.eps = reduce_groups(groups, channels), eps
        self.v = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        grouped = x.reshape(n, self.groups, c // self.groups, h, w)
        var = grouped.var(dim=(2, 3, 4), keepdim=True, unbiased=False)
        std = torch.sqrt(var + self.eps).expand_as(grouped).reshape(n, c, h, w)
        shape = (1, -1, 1, 1)
        v = self.v.view(shape)
        return x * torch.sigmoid(v * x) / std * self.gamma.view(shape) + self.beta.view(shape)
