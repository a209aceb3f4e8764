"""Proxy networks. Every model takes the activation as a factory (`act() -> nn.Module`, one
fresh module per use so trainable constants are per layer); the CNNs also take `norm_act`
(`channels -> nn.Module`) that replaces each BatchNorm+activation pair (EvoNorm layers)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ActFactory = Callable[[], nn.Module]
NormActFactory = Callable[[int], nn.Module]


def mlp(sizes: list[int], act: ActFactory) -> nn.Sequential:
    """sizes = [in, hidden..., out]; the activation follows every hidden layer."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def bn_act(act: ActFactory, dims: int = 2) -> NormActFactory:
    """The default norm_act: BatchNorm followed by the activation."""
    bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return lambda channels: nn.Sequential(bn(channels), act())


def cnn1d(length: int, n_out: int, act: ActFactory, norm_act: NormActFactory | None = None,
          channels: int = 32) -> nn.Sequential:
    """MNIST-1D conv net: 3 conv layers (stride 2) + linear head."""
    norm_act = norm_act or bn_act(act, dims=1)
    layers: list[nn.Module] = [nn.Unflatten(1, (1, length))]
    c_in = 1
    for _ in range(3):
        layers += [nn.Conv1d(c_in, channels, 5, stride=2, padding=2, bias=False),
                   norm_act(channels)]
        c_in = channels
    layers += [nn.AdaptiveAvgPool1d(4), nn.Flatten(), nn.Linear(channels * 4, n_out)]
    return nn.Sequential(*layers)


def cnn2d(n_out: int, act: ActFactory, norm_act: NormActFactory | None = None,
          channels: int = 32) -> nn.Sequential:
    """Small conv net for 8x8 digits: 2 conv blocks + linear head."""
    norm_act = norm_act or bn_act(act)
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1, bias=False), norm_act(channels),
        nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False), norm_act(channels),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(channels * 4, n_out),
    )


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, act: ActFactory,
                 norm_act: NormActFactory) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.na1 = norm_act(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.na2 = norm_act(c_out)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.na2(self.conv2(self.na1(self.conv1(x))) + self.short(x))


def resnet20(act: ActFactory, norm_act: NormActFactory | None = None, blocks: int = 1,
             n_out: int = 10, width: int = 16) -> nn.Sequential:
    """ResNet-20-style CIFAR net: 3 stages of `blocks` basic blocks at width, 2x, 4x channels
    (blocks=3 is ResNet-20). The post-addition BN+act pair is replaced by norm_act too."""
    norm_act = norm_act or bn_act(act)
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1, bias=False), norm_act(width)]
    c_in = width
    for stage in range(3):
        c_out = width * 2**stage
        for b in range(blocks):
            layers.append(_Block(c_in, c_out, 2 if (stage > 0 and b == 0) else 1, act, norm_act))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_out)]
    return nn.Sequential(*layers)
