"""The LM proxy side by side: GELU, ReLU, SwiGLU, GeGLU, an LA and an MoA member on
lm-transformer (5 seeds each: validation loss mean ± std, bits per byte, seconds per
evaluation), and the tokens per second of afsearch's training loop against a plain PyTorch loop
written here (the same model, tensors preloaded, fused AdamW, the same batches and schedule).

Evaluations run --workers at a time (one thread each: on this 2-core machine, one per core, as
a 2-worker Ray search runs them); the two speed loops run alone, alternating.

Resumable: every (member, seed) result and every speed trial is cached in a JSON file; a run
stops starting new work after --max-seconds, and the next run goes on from the cache. The table
is printed from whatever the cache holds (complete once nothing is left to do).

    flock /tmp/heavy.lock .venv/bin/python scripts/bench_lm.py --max-seconds 420   # repeat until done

The README figures are in scripts/data/bench_lm.json (--cache; --report-only prints them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch
from plain_loop import plain_steps  # a script beside this one

from afsearch.candidate import Candidate
from afsearch.evaluate import evaluate, get_task, train
from afsearch.evaluate.lm import bits_per_byte
from afsearch.evaluate.trainer import lr_at
from afsearch.reference import reference_candidate

MEMBERS: dict[str, Candidate] = {
    "gelu (plain)": reference_candidate("gelu"),
    "relu (plain)": reference_candidate("relu"),
    "swiglu (glu)": reference_candidate("swiglu"),
    "geglu (glu)": reference_candidate("geglu"),
    "la gelu+silu (plain)": Candidate.activation("alpha1[0.5] * gelu(x) + alpha2[0.5] * silu(x)"),
    "moa gelu|silu (plain)": Candidate.token(json.dumps({"type": "moa", "terms": [["gelu(x)", 0.5],
                                                                                   ["silu(x)", 0.5]]})),
}
SEEDS = (0, 1, 2, 3, 4)  # reported; the default recipe was chosen on seed 1000
SPEED_STEPS = 100
SPEED_TRIALS = 3  # afsearch and plain loops alternate, so machine noise hits both alike


def plain_loop(task: Any, seed: int, steps: int) -> float:
    """A plain PyTorch loop over the same preloaded tensors; seconds for `steps` steps and the
    final validation and test losses (what afsearch's loop also does)."""
    from torch.nn import GELU
    from torch.nn.functional import cross_entropy

    recipe = dataclasses.replace(task.recipe, steps=steps)
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = task.model(GELU)
    plain_steps(model, task.data.train.x, task.data.train.y, steps, recipe.batch_size,
                lambda step: lr_at(step, recipe), recipe.weight_decay, seed)
    model.eval()
    with torch.no_grad():
        for split in (task.data.val, task.data.test):
            cross_entropy(model(split.x), split.y)
    return time.perf_counter() - start


def afsearch_loop(task: Any, seed: int, steps: int) -> float:
    from torch.nn import GELU

    recipe = dataclasses.replace(task.recipe, steps=steps)
    start = time.perf_counter()
    train(lambda: task.model(GELU), task.data, recipe, seed)
    return time.perf_counter() - start


def evaluate_member(name: str, seed: int) -> dict[str, Any]:
    """One (member, seed) evaluation on one thread (run in a worker process)."""
    torch.set_num_threads(1)
    result = evaluate(MEMBERS[name], get_task("lm-transformer"), seed=seed, ladder=False)
    if not result.ok:
        raise RuntimeError(f"{name} seed {seed}: {result.status} {result.reason}")
    s = result.per_seed[0]
    return {"val_loss": s.val_loss, "test_loss": s.test_loss, "seconds": s.seconds, "params": result.params}


def run(cache_path: Path, max_seconds: float, workers: int) -> dict[str, Any]:
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    started = time.perf_counter()
    torch.set_num_threads(1)
    task = get_task("lm-transformer")
    cache.setdefault("corpus_sha256", task.config.corpus_sha256)
    cache["workers"] = workers

    def save() -> None:
        cache_path.write_text(json.dumps(cache, indent=1) + "\n")

    def out_of_time() -> bool:
        return time.perf_counter() - started > max_seconds

    todo = [(name, seed) for name in MEMBERS for seed in SEEDS if f"{name}|{seed}" not in cache]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        running: dict[Future[dict[str, Any]], tuple[str, int]] = {}
        while todo or running:
            while todo and len(running) < workers and not out_of_time():
                item = todo.pop(0)
                running[pool.submit(evaluate_member, *item)] = item
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name, seed = running.pop(future)
                cache[f"{name}|{seed}"] = row = future.result()
                print(f"{name:<24} seed {seed}: val loss {row['val_loss']:.4f}  {row['seconds']:.1f} s", flush=True)
                save()
    for trial in range(SPEED_TRIALS):  # alone on the machine: one loop at a time
        key = f"speed|{trial}"
        if key in cache or out_of_time():
            continue
        ours = afsearch_loop(task, 100 + trial, SPEED_STEPS)
        plain = plain_loop(task, 100 + trial, SPEED_STEPS)
        cache[key] = {"afsearch_s": ours, "plain_s": plain}
        print(f"speed trial {trial}: afsearch {ours:.2f} s, plain {plain:.2f} s", flush=True)
        save()
    return cache


def report(cache: dict[str, Any]) -> None:
    task = get_task("lm-transformer")
    cfg, recipe = task.config, task.recipe
    print(f"lm-transformer: width {cfg.width}, {cfg.layers} layers, {cfg.heads} heads, seq_len {cfg.seq_len}, "
          f"batch {recipe.batch_size}, {recipe.steps} steps, lr {recipe.lr}; 1 CPU thread per evaluation, "
          f"{cache.get('workers', 1)} at a time; corpus sha256 {str(cache.get('corpus_sha256'))[:16]}...")
    print(f"validation loss over seeds {list(SEEDS)} (nats per byte; bits per byte = loss / ln 2)")
    # s/eval: the median over seeds (a worker's first evaluation can meet a busy machine)
    print(f"{'member':<24} {'seeds':>5} {'val loss':>17} {'bits/byte':>10} {'test loss':>10} {'params':>8} {'s/eval':>7}")
    gelu = [cache.get(f"gelu (plain)|{s}", {}).get("val_loss") for s in SEEDS]
    for name in MEMBERS:
        rows = [cache[f"{name}|{s}"] for s in SEEDS if f"{name}|{s}" in cache]
        if not rows:
            print(f"{name:<24} {0:>5}  (not run yet)")
            continue
        val = [r["val_loss"] for r in rows]
        std = statistics.stdev(val) if len(val) > 1 else float("nan")
        mean = statistics.fmean(val)
        paired = ""
        if name != "gelu (plain)" and None not in gelu and len(rows) == len(SEEDS):
            diffs = [r["val_loss"] - g for r, g in zip(rows, gelu, strict=True)]
            paired = f"  vs gelu {statistics.fmean(diffs):+.4f} ± {statistics.stdev(diffs):.4f} (paired)"
        print(f"{name:<24} {len(rows):>5} {mean:>9.4f} ± {std:.4f} {bits_per_byte(mean):>10.4f} "
              f"{statistics.fmean(r['test_loss'] for r in rows):>10.4f} {rows[0]['params']:>8} "
              f"{statistics.median(r['seconds'] for r in rows):>7.1f}{paired}")
    trials = [cache[f"speed|{t}"] for t in range(SPEED_TRIALS) if f"speed|{t}" in cache]
    if trials:
        tokens = SPEED_STEPS * recipe.batch_size * cfg.seq_len
        ours = statistics.median(t["afsearch_s"] for t in trials)
        plain = statistics.median(t["plain_s"] for t in trials)
        print(f"training loop, GELU, {SPEED_STEPS} steps + final validation/test loss, median of {len(trials)}: "
              f"afsearch {tokens / ours:,.0f} tokens/s, plain PyTorch loop {tokens / plain:,.0f} tokens/s "
              f"(afsearch's speed / plain: {plain / ours:.2f}x)")
    missing = len(MEMBERS) * len(SEEDS) + SPEED_TRIALS - sum(1 for k in cache if "|" in k)
    print("complete" if missing <= 0 else f"incomplete: {missing} item(s) left; run again to continue")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="bench_lm.json", help="results cache (default: bench_lm.json)")
    parser.add_argument("--max-seconds", type=float, default=480.0,
                        help="start no new item after this many seconds (default 480)")
    parser.add_argument("--workers", type=int, default=2,
                        help="evaluations in parallel, one thread each (default 2: one per core here)")
    parser.add_argument("--report-only", action="store_true", help="print the table from the cache")
    args = parser.parse_args()
    path = Path(args.cache)
    if args.report_only:  # never trains: safe outside the heavy-job lock
        report(json.loads(path.read_text()) if path.exists() else {})
        return
    report(run(path, args.max_seconds, args.workers))


if __name__ == "__main__":
    main()
