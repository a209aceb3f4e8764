"""lm-transformer from the command line at a tiny size: eval of references in both FFN forms,
LA and MoA searches whose members reach the leaderboard, validation with the paired test,
exports that train in a user-written transformer in an interpreter without afsearch, and the
transformer example as a user task."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from afsearch.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--task", "lm-transformer", *[a for o in ("width=12", "heads=2", "layers=1", "seq_len=16",
                                                  "corpus_bytes=100000", "eval_tokens=512", "batch_size=8")
                                      for a in ("--task-option", o)]]

USER_MODEL = """
    import importlib.util, sys
    sys.path.append(sys.argv[2])  # torch's site-packages; -S: its .pth files (afsearch's editable install) are not read
    import torch
    from torch import nn
    from torch.nn import functional as F
    try:
        import afsearch
        sys.exit("afsearch is importable")
    except ImportError:
        pass

    spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    FeedForward = next(v for k, v in vars(module).items() if k.endswith("FeedForward"))

    class Block(nn.Module):  # the user's own pre-norm block, with the exported FFN
        def __init__(self, width):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.attn = nn.MultiheadAttention(width, 2, batch_first=True)
            self.ffn = FeedForward(width)

        def forward(self, x):
            mask = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool), 1)
            h = self.ln1(x)
            x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            return x + self.ffn(self.ln2(x))

    torch.manual_seed(0)
    data = torch.tensor(list(open(torch.__file__, "rb").read() * 50)[:50000])
    emb, block, head = nn.Embedding(256, 16), Block(16), nn.Linear(16, 256)
    model = nn.Sequential(emb, block, head)
    model(data[:8][None])  # sizes a lazily shaped MoA gate before the optimizer is built
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(40):
        i = torch.randint(0, len(data) - 17, (16,)).tolist()
        x = torch.stack([data[j:j + 16] for j in i]); y = torch.stack([data[j + 1:j + 17] for j in i])
        loss = F.cross_entropy(model(x).transpose(1, 2), y)
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    print(f"{losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < losses[0] - 1.0
"""


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_prints_loss_spread_and_bits_per_byte_for_both_forms(capsys) -> None:
    for ref, form in (("swiglu", "glu"), ("gelu", "plain")):
        code, out, err = _run(["eval", "--ref", ref, *TINY, "--task-option", f"ffn={form}", "--seeds", "2",
                               "--budget", "10"], capsys)
        assert code == 0, err
        assert "val loss" in out and "±" in out and "bits per byte" in out
        assert out.startswith("glu: x * sigmoid(x)" if ref == "swiglu" else "0.5 * x")


def test_a_baseline_that_fixes_the_ffn_form_is_refused_on_other_tasks(tmp_path, capsys) -> None:
    code, _, err = _run(["search", "--task", "mnist1d-mlp", "--baselines", "relu,swiglu", "--backend", "local",
                         "--budget", "2", "--runs-dir", str(tmp_path)], capsys)
    assert code == 2 and "baseline swiglu fixes the task option(s) ffn" in err and not any(tmp_path.iterdir())


@pytest.mark.parametrize("space", ["la", "moa"])
def test_mixture_searches_rank_export_and_train_without_afsearch(tmp_path, capsys, space) -> None:
    runs = tmp_path / "runs"
    code, _, err = _run(["search", "--space", space, *TINY, "--steps", "10", "--budget", "3", "--backend", "local",
                         "--baselines", "gelu,swiglu", "--validate-top", "0", "--quiet", "--runs-dir", str(runs),
                         "--name", space], capsys)
    assert code == 0, err
    code, out, _ = _run(["leaderboard", space, "--runs-dir", str(runs), "--json"], capsys)
    rows = json.loads(out)
    members = [r for r in rows if r["origin"] != "baseline"]
    assert members and all(r["metric"] == "loss" for r in rows)
    assert all(r["formula"].startswith("moa(") if space == "moa" else "alpha1[" in r["formula"] for r in members)
    assert any(r["formula"].startswith("glu: ") for r in rows)  # SwiGLU beside GELU-plain
    if space == "moa":  # the best member beside GELU-plain and SwiGLU, 5 fresh seeds, a longer budget
        code, out, err = _run(["validate", space, "--runs-dir", str(runs), "--top", "1", "--seeds", "5",
                               "--steps", "15", "--backend", "local", "--json"], capsys)
        assert code == 0, err
        report = json.loads(out)
        assert report["seeds"] == 5 and report["steps"] == 15 and report["metric"] == "loss"
        assert {r["name"] for r in report["rows"] if r["baseline"]} == {"gelu", "swiglu"}
        member = next(r for r in report["rows"] if not r["baseline"])
        assert len(member["per_seed"]) == 5 and member["std"] > 0 and 0 <= member["p_raw"] <= 1
        means = [r["mean"] for r in report["rows"]]
        assert means == sorted(means)  # lowest loss first
    code, out, err = _run(["export", space, "--runs-dir", str(runs), "--top", "1", "-o", str(tmp_path / "out")],
                          capsys)
    assert code == 0, err
    ffn = next(Path(line.split()[-1]) for line in out.splitlines() if line.startswith("ffn"))
    script = tmp_path / "user_model.py"
    script.write_text(textwrap.dedent(USER_MODEL))
    site = sysconfig.get_paths()["purelib"]
    done = subprocess.run([sys.executable, "-I", "-S", str(script), str(ffn), site], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_the_transformer_example_runs_as_a_user_task(tmp_path, capsys) -> None:
    runs = tmp_path / "runs"
    code, _, err = _run(["search", "--task", f"{ROOT}/examples/transformer_block.py:make_task",
                         *[a for o in ("width=8", "steps=10", "n_train=200") for a in ("--task-option", o)],
                         "--space", "moa", "--budget", "2", "--backend", "local", "--baselines", "gelu",
                         "--validate-top", "0", "--quiet", "--runs-dir", str(runs), "--name", "ex"], capsys)
    assert code == 0, err
    code, out, _ = _run(["leaderboard", "ex", "--runs-dir", str(runs), "--json"], capsys)
    rows = json.loads(out)
    assert rows[0]["metric"] == "loss" and any(r["formula"].startswith("moa(") for r in rows)
