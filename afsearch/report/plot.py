"""PNG plots of a run (headless, matplotlib Agg):

- ``activations.png``: the top-k activations and their derivatives on [-5, 5] beside ReLU,
  GELU and SiLU;
- ``progress.png``: best score so far vs number of evaluations (and every evaluation's score),
  in the direction of the run's metric (for a loss the best is the lowest);
- ``funnel.png``: how many candidates each stage of the rejection ladder let through."""

from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from afsearch.compile import compile_activation  # noqa: E402
from afsearch.defaults import OUTCOMES  # noqa: E402
from afsearch.errors import AfsearchError, ConfigError, shorten  # noqa: E402
from afsearch.reference import get_reference  # noqa: E402
from afsearch.report.runs import BASELINE, leaderboard_rows, main_task_and_steps, run_metric  # noqa: E402
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
        try:
            y, d = _curve(record.formula, x)
        except (AfsearchError, ValueError, ArithmeticError, RecursionError) as exc:
            # one bad formula (a damaged run, an older grammar) must not cost the other plots
            print(f"afsearch: warning: activations.png leaves out candidate #{record.id}: its "
                  f"formula {shorten(record.formula)} cannot be compiled ({shorten(str(exc), 100)})",
                  file=sys.stderr)
            continue
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


@dataclass
class Progress:
    """What progress.png shows: every finished search evaluation's score (raw metric value),
    the best so far in the metric's direction, and the best baseline."""

    xs: list[int]
    scores: list[float]
    best_curve: list[tuple[int, float]]
    best_baseline: float | None
    ylabel: str


def progress(store: RunStore) -> Progress:
    task, steps = main_task_and_steps(store)
    metric = run_metric(store)
    xs, scores, best_curve = [], [], []
    best = metric.worst
    n = 0
    baselines = []
    for ev, origin in _all_evaluations(store):
        if ev.task != task or ev.budget != steps or ev.status not in OUTCOMES:
            continue
        if origin == BASELINE:
            if ev.score is not None:
                baselines.append(ev.score)
            continue
        n += 1
        if ev.status == "done" and ev.score is not None and math.isfinite(ev.score):
            xs.append(n)
            scores.append(ev.score)
            if metric.better(ev.score, best):
                best = ev.score
        best_curve.append((n, best))
    return Progress(xs, scores, best_curve, metric.best(baselines), f"{metric.label()} ({_short(task)})")


def _short(task: str) -> str:
    return Path(task).name if ":" in task else task  # a user task: its file name and attribute


def _plot_progress(store: RunStore, path: Path) -> Path:
    data = progress(store)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if data.scores:
        ax.scatter(data.xs, data.scores, s=10, alpha=0.5, label="evaluation")
    finite = [(i, b) for i, b in data.best_curve if math.isfinite(b)]
    if finite:
        ax.step([i for i, _ in finite], [b for _, b in finite], where="post", lw=2, label="best so far")
    if data.best_baseline is not None:
        ax.axhline(data.best_baseline, color="k", ls="--", lw=1, label="best baseline")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(data.ylabel)
    ax.set_title("best score vs evaluations")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def funnel_counts(store: RunStore) -> tuple[list[tuple[str, int]], int]:
    """The funnel's bars, (label, evaluations), over the search's own finished evaluations, and
    the number of baseline evaluations, which the bars leave out (they are references trained
    once per run, not candidates the ladder screened)."""
    search, baselines = [], 0
    for ev, origin in _all_evaluations(store):
        if ev.status not in OUTCOMES:
            continue
        if origin == BASELINE:
            baselines += 1
        else:
            search.append(ev)
    rejected = Counter(ev.stage or "?" for ev in search if ev.status == "rejected")
    remaining = len(search) - sum(1 for ev in search if ev.status == "failed")
    bars = [("evaluated", len(search)), ("ran (not failed)", remaining)]
    for stage in [*LADDER, *sorted(set(rejected) - set(LADDER))]:
        remaining -= rejected.get(stage, 0)
        bars.append((f"passed {stage}", remaining))
    return bars, baselines


def _plot_funnel(store: RunStore, path: Path) -> Path:
    bars_data, baselines = funnel_counts(store)
    labels = [label for label, _ in bars_data]
    values = [value for _, value in bars_data]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bars = ax.barh(labels[::-1], values[::-1], color="tab:blue")
    for bar, value in zip(bars, values[::-1], strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value}", va="center")
    ax.set_title(f"rejection funnel: {values[0]} search evaluations "
                 f"({baselines} baseline evaluations not counted)")
    ax.set_xlabel("evaluations")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
