import torch
from torch import nn

import afsearch
from afsearch.compile.export import export_activation
from afsearch.expr import parse


class BasicBlock(nn.Module):
    """torchvision-style: one ReLU module reused twice."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


def test_patch_resnet_style_and_transformer_mlp():
    resnet = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), BasicBlock(8), BasicBlock(8))
    assert afsearch.patch_activations(resnet, "x * sigmoid(beta * x)") == 3
    assert not any(isinstance(m, nn.ReLU) for m in resnet.modules())
    betas = [n for n, _ in resnet.named_parameters() if n.endswith("beta")]
    assert len(betas) == 3  # each site its own trainable constant
    out = resnet(torch.randn(2, 3, 10, 10))
    out.sum().backward()

    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, activation=nn.GELU(), batch_first=True)
    assert afsearch.patch_activations(layer, afsearch.Candidate.activation("max(x, tanh(x))")) == 1
    assert layer(torch.randn(2, 5, 16)).shape == (2, 5, 16)


def test_patch_with_module_class_and_custom_replace_set():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU())
    assert afsearch.patch_activations(model, nn.SiLU, replace=(nn.Tanh,)) == 1
    assert isinstance(model[1], nn.SiLU) and isinstance(model[3], nn.ReLU)


def test_load_all_export_formats(tmp_path):
    expr = parse("x * tanh(softplus(beta * x))")
    written = export_activation(expr, tmp_path, "mishy")
    x = torch.linspace(-4, 4, 12).reshape(3, 4)
    want = afsearch.compile_activation(expr).new_module()(x)
    for path in written.values():
        module = afsearch.load(path)
        torch.testing.assert_close(module(x), want)
