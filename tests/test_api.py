import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import afsearch
from afsearch.api import activation_factory
from afsearch.compile.export import export_activation
from afsearch.errors import ConfigError
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


# Each order runs in a fresh interpreter: the bugs were import-order dependent (a RecursionError
# when `afsearch.evaluate` was first touched through the lazy hook, a "module is not callable"
# once a search had imported the `afsearch.evaluate` subpackage).
_PUBLIC_NAMES_CHECK = """
import afsearch
for name in afsearch.__all__:
    assert getattr(afsearch, name) is not None, name
r = afsearch.evaluate("cos(x) - x", "breast-cancer-mlp", budget=20, seeds=1, ladder=False,
                      measure_cost=False)
assert r.status == "done", r
assert afsearch.evaluate.evaluate is afsearch.evaluate.core.evaluate
assert "mnist1d-mlp" in afsearch.TASKS and afsearch.get_task("mnist1d-mlp").name == "mnist1d-mlp"
assert callable(afsearch.evaluate_multi) and callable(afsearch.load_space)
"""

_PRELUDES = {
    "fresh": "",
    "search imported": "import afsearch.search.engine\n",
    "evaluate subpackage imported": "import afsearch.evaluate.core\n",
    "from-import": "from afsearch import evaluate, TASKS, Search\n",
    "after a search": """
from afsearch import Search, SearchConfig
cfg = SearchConfig(space="swish1", task="breast-cancer-mlp", budget=2, backend="local",
                   steps=20, validate_top=0, baselines=[])
Search.create(cfg).run()
""",
}


def _same_checkout_env() -> dict[str, str]:
    """The child imports the afsearch this test imported (not whatever the venv points at)."""
    root = str(Path(afsearch.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("order", list(_PRELUDES))
def test_every_public_name_works_in_any_import_order(order, tmp_path):
    code = textwrap.dedent(_PRELUDES[order]) + _PUBLIC_NAMES_CHECK
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=240, env=_same_checkout_env())
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_patch_shared_instance_replaces_every_registration_and_counts_modules():
    r = nn.ReLU()
    model = nn.Sequential(nn.Linear(4, 4), r, nn.Linear(4, 4), r, nn.Tanh())
    # distinct modules replaced: the shared ReLU counts once, the Tanh once
    assert afsearch.patch_activations(model, "x * sigmoid(beta * x)") == 2
    assert not any(isinstance(m, (nn.ReLU, nn.Tanh)) for m in model.modules())
    assert model[1] is model[3]  # still one shared module, as the original was
    assert model[4] is not model[1]
    assert sum(n.endswith("beta") for n, _ in model.named_parameters()) == 2


class FunctionalOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x))


def test_patch_with_nothing_to_replace_warns_or_raises_when_strict():
    with pytest.warns(UserWarning, match="nothing patched in FunctionalOnly.*patch_functional"):
        assert afsearch.patch_activations(FunctionalOnly(), "tanh(x)") == 0
    with pytest.raises(ConfigError, match="nothing patched in FunctionalOnly"):
        afsearch.patch_activations(FunctionalOnly(), "tanh(x)", strict=True)
    with pytest.raises(ConfigError, match="nothing patched in Linear"):
        afsearch.patch_functional_activations(nn.Linear(2, 2), "tanh(x)", strict=True)


# Two small models written with functional activations; given `acts` (one module per call
# site, in call order) they use those instead: the hand-patched reference.
class FunctionalResBlock(nn.Module):
    def __init__(self, c: int = 4, acts: nn.ModuleList | None = None) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.acts = acts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x))
        if self.acts is None:
            F.relu(out, inplace=True)  # result read through `out`: in-place semantics matter
        else:
            out = self.acts[0](out)
        out = self.bn2(self.conv2(out)) + x
        if self.acts is None:
            out.relu_()
            return out
        return self.acts[1](out)


class FunctionalTransformerBlock(nn.Module):
    def __init__(self, d: int = 8, heads: int = 2, acts: nn.ModuleList | None = None) -> None:
        super().__init__()
        self.heads, self.acts = heads, acts
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        h = self.up(self.norm2(x))
        h = F.gelu(h, approximate="tanh") if self.acts is None else self.acts[0](h)
        gate = torch.tanh(h) if self.acts is None else self.acts[1](h)
        return x + self.down(h * gate)


@pytest.mark.parametrize("make,sites,shape", [(FunctionalResBlock, 2, (2, 4, 6, 6)),
                                              (FunctionalTransformerBlock, 2, (2, 5, 8))])
def test_patch_functional_matches_hand_patched_model(make, sites, shape):
    torch.manual_seed(0)
    formula = "x * sigmoid(beta * x)"
    original = make().eval()
    x = torch.randn(*shape)
    before = original(x.clone())
    patched = afsearch.patch_functional_activations(original, formula)
    acts = [n for n, _ in patched.named_children() if n.startswith("afsearch_act_")]
    assert len(acts) == sites
    hand = make(acts=nn.ModuleList(activation_factory(formula)() for _ in range(sites))).eval()
    hand.load_state_dict(original.state_dict(), strict=False)
    torch.testing.assert_close(patched(x.clone()), hand(x.clone()))
    torch.testing.assert_close(original(x.clone()), before)  # the original is untouched
    assert not torch.allclose(patched(x.clone()), before)
    patched(x.clone()).sum().backward()
    betas = [p for n, p in patched.named_parameters() if n.endswith("beta")]
    assert len(betas) == sites and all(p.grad is not None for p in betas)


def test_patch_functional_refuses_an_untraceable_model_in_one_line():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, activation="gelu", batch_first=True)
    with pytest.raises(ConfigError, match="torch.fx cannot trace TransformerEncoderLayer"):
        afsearch.patch_functional_activations(layer, "tanh(x)")


def test_search_run_progress_prints_the_cli_lines_and_validate_returns_rows(tmp_path, capsys):
    from afsearch import Search, SearchConfig

    events = []
    cfg = SearchConfig(space="swish1", task="breast-cancer-mlp", budget=2, steps=20,
                       backend="local", baselines=["relu"], name="api", ladder=False)
    search = Search.create(cfg, tmp_path, on_event=events.append)
    try:
        summary = search.run(progress=True)
        out = capsys.readouterr().out
        assert "baseline relu:" in out and "[2/2] " in out  # the display's plain lines
        assert {"start", "baseline", "result", "finish"} <= {e.kind for e in events}  # still fed
        assert summary.state == "finished"
        report = search.validate(top=1, seeds=2)
    finally:
        search.close()
    assert capsys.readouterr().out == ""  # validate() prints nothing; the report says it all
    searched = [r for r in report["rows"] if not r["baseline"]]
    assert len(searched) == 1 and len(searched[0]["per_seed"]) == 2
    assert [r["name"] for r in report["rows"] if r["baseline"]] == ["relu"]
    assert report["seeds"] == 2 and events[-1].kind == "validate"
