"""PNG plots of a run (headless, matplotlib Agg):

- ``activations.png``: the top-k activations and their derivatives on [-5, 5] beside ReLU,
  GELU and SiLU;
- ``progress.png``: best score so far vs number of evaluations (and every evaluation's score);
- ``funnel.png``: how many candidates each stage of the rejection ladder let through."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from afsearch.compile import compile_activation  # noqa: E402
from afsearch.errors import ConfigError  # noqa: E402
from afsearch.reference import get_reference  # noqa: E402
from afsearch.search.report import BASELINE, leaderboard_rows, main_task_and_steps  # noqa: E402
from afsearch.store import EvaluationRecord, RunStore  # noqa: E402

REFERENCE_CURVES = ("relu", "gelu", "silu")
LADDER = ("screen", "stability", "quality", "train")


def _all_evaluations(store: RunStore) -> list[tuple[EvaluationRecord, str | None]]:
    """(evaluation, origin of its candidate) in the order the results arrived."""
    origins: dict[int, str | None] = {}
    out = []
    for ev in store.evaluations():
        if ev.candidate_id not in origins:
            origins[ev.candidate_id] = store.candidate(ev.candidate_id).origin
        out.append((ev, origins[ev.candidate_id]))
    out.sort(key=lambda pair: (pair[0].finished_at or math.inf, pair[0].id))
    return out


def _curve(formula: str, x: torch.Tensor) -> tuple[list[float], list[float]]:
    module = compile_activation(formula).new_module().double()
    xi = x.clone().requires_grad_(True)
    y = module(xi)
    (grad,) = torch.autograd.grad(y.sum(), xi) if y.requires_grad else (torch.zeros_like(x),)
    return y.detach().tolist(), grad.tolist()


def plot_run(store: RunStore, out_dir: str | Path | None = None, top: int = 5) -> list[Path]:
    out = Path(out_dir) if out_dir else store.path / "plots"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write plots to {out}: {exc.strerror}; choose another -o") from None
    written = [_plot_activations(store, out / "activations.png", top),
               _plot_progress(store, out / "progress.png"),
               _plot_funnel(store, out / "funnel.png")]
    return written


def _plot_activations(store: RunStore, path: Path, top: int) -> Path:
    x = torch.linspace(-5, 5, 401, dtype=torch.float64)
    fig, (ax_y, ax_d) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in REFERENCE_CURVES:
        y, d = _curve(get_reference(name).formula, x)
        ax_y.plot(x, y, "--", lw=1.2, label=name, alpha=0.8)
        ax_d.plot(x, d, "--", lw=1.2, label=name, alpha=0.8)
    rows = [r for r in leaderboard_rows(store, top=10_000) if r["origin"] != BASELINE][:top]
    for rank, row in enumerate(rows, 1):
        record = store.candidate(row["id"])
        if record.kind != "activation" or not record.formula:
            continue
        y, d = _curve(record.formula, x)
        label = f"#{rank} ({row['mean']:.3f}) {record.formula[:48]}"
        ax_y.plot(x, y, lw=2, label=label)
        ax_d.plot(x, d, lw=2, label=f"#{rank}")
    ax_y.set_title("activation f(x)")
    ax_d.set_title("derivative f'(x)")
    for ax in (ax_y, ax_d):
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlabel("x")
        ax.set_ylim(-3, 5)
    ax_y.legend(fontsize=7, loc="upper left")
    ax_d.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_progress(store: RunStore, path: Path) -> Path:
    task, steps = main_task_and_steps(store)
    xs, scores, best_curve = [], [], []
    best = -math.inf
    n = 0
    baselines = []
    for ev, origin in _all_evaluations(store):
        if ev.task != task or ev.budget != steps or ev.status not in ("done", "rejected", "failed"):
            continue
        if origin == BASELINE:
            if ev.score is not None:
                baselines.append(ev.score)
            continue
        n += 1
        if ev.status == "done" and ev.score is not None and math.isfinite(ev.score):
            xs.append(n)
            scores.append(ev.score)
            best = max(best, ev.score)
        best_curve.append((n, best))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if scores:
        ax.scatter(xs, scores, s=10, alpha=0.5, label="evaluation")
    finite = [(i, b) for i, b in best_curve if math.isfinite(b)]
    if finite:
        ax.step([i for i, _ in finite], [b for _, b in finite], where="post", lw=2, label="best so far")
    if baselines:
        ax.axhline(max(baselines), color="k", ls="--", lw=1, label="best baseline")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"validation accuracy ({task})")
    ax.set_title("best score vs evaluations")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_funnel(store: RunStore, path: Path) -> Path:
    counts = store.counts()
    rejected = counts.rejected_by_stage
    total = sum(v for k, v in counts.by_status.items() if k in ("done", "rejected", "failed"))
    failed = counts.by_status.get("failed", 0)
    labels, values = ["evaluated"], [total]
    remaining = total - failed
    labels.append("ran (not failed)")
    values.append(remaining)
    for stage in LADDER:
        remaining -= rejected.get(stage, 0)
        labels.append(f"passed {stage}")
        values.append(remaining)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bars = ax.barh(labels[::-1], values[::-1], color="tab:blue")
    for bar, value in zip(bars, values[::-1], strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value}", va="center")
    ax.set_title("rejection funnel")
    ax.set_xlabel("evaluations")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
