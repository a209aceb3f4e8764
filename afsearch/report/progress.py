"""Observers of a running search: a live rich display, a JSON event stream, or silence."""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from afsearch.evaluate.metric import compared_with_best_baseline, get_metric
from afsearch.search.events import SearchEvent


class JsonEvents:
    """One JSON object per line on stdout (machine-readable progress)."""

    def __call__(self, event: SearchEvent) -> None:
        print(json.dumps(event.to_json(), default=str), flush=True)

    def close(self) -> None:
        pass


class QuietEvents:
    def __call__(self, event: SearchEvent) -> None:
        pass

    def close(self) -> None:
        pass


class LiveDisplay:
    """Progress bar (evaluations done of budget, ETA), current best with its delta to the best
    baseline, rejections by stage and busy workers. Falls back to plain lines when stdout is
    not a terminal."""

    def __init__(self, budget: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.budget = budget
        self.progress = Progress(
            TextColumn("[bold]evaluations"), BarColumn(), MofNCompleteColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("elapsed"), TimeElapsedColumn(),
            console=self.console,
        )
        self.task_id = self.progress.add_task("search", total=budget)
        self.best: tuple[float, str] | None = None
        self.metric = get_metric(None)  # the main task's, from the events (a loss: lowest is best)
        self.baselines: dict[str, float] = {}
        self.rejections: Counter[str] = Counter()
        self.failures = 0
        self.cache_hits = 0
        self.done = 0
        #: the run's main task (from the start event): a candidate counts once, when its result
        #: there arrives; results on a run's other tasks are shown with their task's name
        self.main_task: str | None = None
        self.in_flight = 0
        self.capacity = 0
        self.live: Live | None = None
        self.interactive = self.console.is_terminal
        self._last_plain = 0.0

    def _render(self) -> Group:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        m = self.metric
        best_baseline = m.best(list(self.baselines.values()))
        if self.best:
            delta = "" if best_baseline is None else \
                f"  ({compared_with_best_baseline(m.delta(self.best[0], best_baseline))})"
            table.add_row(f"best {m.name}", f"{self.best[0]:.4f}  {self.best[1]}{delta}")
        if self.baselines:
            table.add_row("baselines", "  ".join(f"{k} {v:.4f}" for k, v in
                                                 sorted(self.baselines.items(), key=lambda kv: m.sort_key(kv[1]))))
        rejected = ", ".join(f"{stage} {n}" for stage, n in self.rejections.most_common()) or "none"
        table.add_row("rejected", rejected)
        table.add_row("failed / cached", f"{self.failures} / {self.cache_hits}")
        table.add_row("workers busy", f"{self.in_flight} of {self.capacity}")
        return Group(self.progress, table)

    def __call__(self, event: SearchEvent) -> None:
        d = event.data
        if event.kind == "start" and d.get("metric"):
            self.metric = get_metric(d["metric"])
        if event.kind == "start":
            self.main_task = (d.get("config") or {}).get("task")
            self.capacity = int(d.get("capacity", 0))
            self.done = int(d.get("done", 0))  # a resumed run counts on from its earlier results
            self.progress.update(self.task_id, completed=min(self.done, self.budget))
            if self.interactive:
                self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
                self.live.start()
            else:
                self._plain(f"run {d['run']}: {self.budget} evaluations on {self.capacity} worker(s)")
        elif event.kind == "baseline":
            score = f"{d['score']:.4f}" if d.get("score") is not None else d.get("status")
            if not self._on_main_task(d):
                self._plain(f"baseline {d.get('name')} on {d['task']}: {score}")
            else:
                if d.get("score") is not None:
                    self.baselines[d.get("name") or d["formula"]] = float(d["score"])
                self._plain(f"baseline {d.get('name')}: {score}")
        elif event.kind == "result" and not self._on_main_task(d):
            self.in_flight = int(d.get("in_flight", 0))
            score = f"{d['score']:.4f}" if d.get("score") is not None else ""
            self._plain(f"   {d['task']}: {d['status']:<8} {score:<7} {d['formula']}"
                        + (f"  ({d['stage']}: {d['reason']})" if d["status"] != "done" else ""))
        elif event.kind == "result":
            self.done += 1
            self.in_flight = int(d.get("in_flight", 0))
            self.progress.update(self.task_id, completed=min(int(d.get("trained", 0)) - self.in_flight, self.budget))
            if d["status"] == "done" and d.get("score") is not None:
                if self.best is None or self.metric.better(d["score"], self.best[0]):
                    self.best = (float(d["score"]), d["formula"])
            elif d["status"] == "rejected":
                self.rejections[d.get("stage") or "?"] += 1
            else:
                self.failures += 1
            score = f"{d['score']:.4f}" if d.get("score") is not None else ""
            self._plain(f"[{self.done}/{self.budget}] {d['status']:<8} {score:<7} {d['formula']}"
                        + (f"  ({d['stage']}: {d['reason']})" if d["status"] != "done" else ""))
        elif event.kind == "cache":
            self.cache_hits += 1
        elif event.kind in ("finish", "stop"):
            self.progress.update(self.task_id, completed=min(int(d.get("trained", 0)), self.budget))
        if self.live is not None:
            self.live.update(self._render())

    def _on_main_task(self, data: dict[str, Any]) -> bool:
        return self.main_task is None or data.get("task") in (None, self.main_task)

    def _plain(self, line: str) -> None:
        if not self.interactive:  # a log file or a pipe: whole lines, no wrapping
            print(line, file=self.console.file, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.stop()
            self.live = None


def make_observer(mode: str, budget: int) -> Any:
    if mode == "json":
        return JsonEvents()
    if mode == "quiet":
        return QuietEvents()
    return LiveDisplay(budget, Console(file=sys.stdout))
