"""The proxy trainer: tensors already on the device, one plain loop, validation at fixed steps.

It only trains and reports. Whoever wants to stop a run early (the quality gate, a search scheduler)
passes `report(step, val_accuracy, val_loss) -> bool`; returning False stops the run."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

Report = Callable[[int, float, float], bool]


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class Data:
    """train / validation (held out from the training data, used for selection) / test."""

    train: Split
    val: Split
    test: Split
    regression: bool = False  # targets are float vectors; accuracy is R^2 clipped to [0, 1]

    def to(self, device: torch.device | str) -> Data:
        if self.train.x.device == torch.device(device):
            return self
        return Data(self.train.to(device), self.val.to(device), self.test.to(device),
                    self.regression)


@dataclass(frozen=True)
class Recipe:
    """How to train: `steps` is the budget (optimizer steps, batches drawn epoch-wise)."""

    steps: int = 1200
    batch_size: int = 100
    lr: float = 3e-3
    optimizer: str = "adamw"  # or "sgd" (momentum 0.9, nesterov)
    weight_decay: float = 0.01
    warmup: int = 0  # linear warm-up steps before the cosine decay
    eval_every: int = 0  # 0: validate only at the end (plus any steps the caller asks for)
    #: at the start and before every validation, set the output layer to the least-squares fit
    #: of the training targets on the features feeding it (regression only): the score is then
    #: that of the best linear readout of the features, not of how far SGD got towards it
    refit_readout: bool = False
    #: clip the gradient's global norm to this before each step (0: no clipping); the LM task
    #: uses 1.0, as transformer recipes do, so a rare loss spike does not derail a short run
    grad_clip: float = 0.0


@dataclass
class TrainResult:
    val_accuracy: float
    val_loss: float
    test_accuracy: float
    test_loss: float
    steps: int  # optimizer steps actually taken
    seconds: float
    stopped_early: bool = False
    diverged: bool = False  # the training loss became non-finite
    history: list[tuple[int, float, float]] = field(default_factory=list)


#: what --device and the config's `device` accept; "auto" (or None) picks cuda when visible
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"


def pick_device(device: str | None = None) -> torch.device:
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device: str | None, *, here: bool = True) -> None:
    """Refuse a device name this machine cannot train on, in one line, before anything runs.
    `here=False` (workers on a joined Ray cluster) checks the spelling only: the GPUs that
    count are the workers', not this process's."""
    from afsearch.errors import ConfigError

    if device in (None, "auto", "cpu"):
        return
    match = re.fullmatch(r"cuda(?::(\d{1,3}))?", str(device))
    if match is None:
        raise ConfigError(f"unknown device {str(device)[:40]!r}; allowed: {DEVICE_CHOICES}")
    if not here:
        return
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        raise ConfigError(f"device {device}: no CUDA GPU is visible to torch {torch.__version__} "
                          "(a CPU build, or no driver); use --device cpu or auto")
    if match.group(1) is not None and int(match.group(1)) >= visible:
        raise ConfigError(f"device {device}: only {visible} GPU(s) visible "
                          f"(cuda:0 .. cuda:{visible - 1})")


def make_optimizer(params: list[torch.Tensor], recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over `params` (one definition for single and packed training)."""
    if recipe.optimizer == "adamw":
        # fused: one kernel per step for all parameters (~25% faster than foreach for these
        # small models on CPU, also on CUDA)
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, nesterov=True,
                               weight_decay=recipe.weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; use 'adamw' or 'sgd'")


def lr_at(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    span = max(1, recipe.steps - recipe.warmup)
    return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * (step - recipe.warmup) / span))


def loss_fn(regression: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return nn.functional.mse_loss if regression else nn.functional.cross_entropy


@torch.no_grad()
def measure(model: nn.Module, split: Split, regression: bool, chunk: int = 2000,
            autocast=nullcontext) -> tuple[float, float]:
    """(accuracy, loss) on a split; for regression accuracy is R^2 clipped to [0, 1].
    Non-finite outputs give accuracy 0 and loss inf."""
    was_training = model.training
    model.eval()
    with autocast():
        out = torch.cat([model(split.x[i:i + chunk]) for i in range(0, len(split), chunk)])
    model.train(was_training)
    return score(out.float(), split.y, regression)


def score(out: torch.Tensor, y: torch.Tensor, regression: bool) -> tuple[float, float]:
    """(accuracy, loss) of outputs against targets; for regression accuracy is R^2 clipped to
    [0, 1]. Non-finite outputs give accuracy 0 and loss inf."""
    if not bool(torch.isfinite(out).all()):
        return 0.0, math.inf
    loss = float(loss_fn(regression)(out, y))
    if regression:
        var = float(y.var(unbiased=False))
        acc = min(1.0, max(0.0, 1.0 - loss / var)) if var > 0 else 0.0
    else:
        acc = float((out.argmax(1) == y).float().mean())
    return acc, loss


def least_squares_readout(features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(weight [out, in], bias [out]) minimising the squared error of ``features @ weight.T +
    bias`` against `targets`; batched over leading dimensions. Solved in float64 on the CPU by
    SVD (rank-deficient features are fine: the minimum-norm solution). None when a feature is
    not finite."""
    a = features.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(a).all()):
        return None
    a = torch.cat([a, torch.ones(*a.shape[:-1], 1, dtype=a.dtype)], dim=-1)
    solution = torch.linalg.lstsq(a, targets.detach().to("cpu", torch.float64), driver="gelsd").solution
    if not bool(torch.isfinite(solution).all()):
        return None
    return solution[..., :-1, :].transpose(-1, -2), solution[..., -1, :]


def check_refit(recipe: Recipe, data: Data) -> None:
    """`Recipe.refit_readout` is for regression only: a ValueError otherwise."""
    if recipe.refit_readout and not data.regression:
        raise ValueError("Recipe.refit_readout is for regression tasks only")


@torch.no_grad()
def refit_readout(model: nn.Module, split: Split) -> None:
    """Set the output layer of a ``Sequential(..., Linear)`` model to the least-squares readout
    of `split`'s targets (see `Recipe.refit_readout`); left as it is when the features are not
    finite."""
    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise ValueError("refit_readout needs a Sequential model whose last module is a Linear layer")
    was_training = model.training
    model.eval()
    fit = least_squares_readout(model[:-1](split.x).float(), split.y)
    model.train(was_training)
    if fit is not None:
        model[-1].weight.copy_(fit[0])
        model[-1].bias.copy_(fit[1])


@contextmanager
def cpu_threads(threads: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Run with `threads` intra-op CPU threads (None: leave as is), restored afterwards."""
    old = torch.get_num_threads()
    if threads and (device is None or device.type == "cpu"):
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Members(Protocol):
    """What the training loop trains: K models stepped together (K = 1 for one model; a pack
    of stacked MLPs in `afsearch.evaluate.packed`). Row r of every batch belongs to the r-th
    member still live."""

    def params(self) -> list[torch.Tensor]: ...

    def losses(self, rows: list[torch.Tensor], data: Data, autocast: Callable) -> torch.Tensor:
        """Each live member's mean training loss on its batch (`rows[r]` indexes data.train)."""

    def measure(self, split: Split, regression: bool, autocast: Callable) -> list[tuple[float, float]]:
        """(accuracy, loss) of each live member on a split."""

    def refit_readout(self, split: Split) -> None: ...

    def keep(self, rows: list[int], optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Cut down to the members at `rows`, carrying their optimizer state."""


class _OneModel:
    """`Members` for a single model of any architecture."""

    def __init__(self, model: nn.Module, regression: bool) -> None:
        self.model = model
        self.criterion = loss_fn(regression)

    def params(self) -> list[torch.Tensor]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def losses(self, rows: list[torch.Tensor], data: Data, autocast: Callable) -> torch.Tensor:
        with autocast():
            out = self.model(data.train.x[rows[0]])
        return self.criterion(out.float(), data.train.y[rows[0]]).reshape(1)

    def measure(self, split: Split, regression: bool, autocast: Callable) -> list[tuple[float, float]]:
        return [measure(self.model, split, regression, autocast=autocast)]

    def refit_readout(self, split: Split) -> None:
        refit_readout(self.model, split)

    def keep(self, rows: list[int], optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        raise AssertionError("one model is never cut down: its run just ends")  # pragma: no cover


def autocast_for(device: torch.device) -> Callable:
    """bf16 autocast on CUDA (weights and optimizer stay float32); nothing on the CPU."""
    return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext


def train(build_model: Callable[[], nn.Module], data: Data, recipe: Recipe, seed: int = 0,
          report: Report | None = None, eval_steps: Sequence[int] = (),
          device: str | None = None, threads: int | None = 1) -> TrainResult:
    """Train a fresh model (built after seeding, so initialisation is reproducible) for
    `recipe.steps` steps. Validation runs at every step in `eval_steps`, every
    `recipe.eval_every` steps, and at the end; each is passed to `report`."""
    dev = pick_device(device)
    with cpu_threads(threads, dev):
        start = time.perf_counter()
        data = data.to(dev)
        torch.manual_seed(seed)
        model = build_model().to(dev)
        model.train()
        (result,) = train_members(_OneModel(model, data.regression), data, recipe, [seed], [report],
                                  eval_steps, dev)
        result.seconds = time.perf_counter() - start
        return result


def train_members(members: Members, data: Data, recipe: Recipe, seeds: Sequence[int],
                  reports: Sequence[Report | None], eval_steps: Sequence[int],
                  dev: torch.device) -> list[TrainResult]:
    """The one training loop. Member k draws its batches epoch-wise from its own generator
    seeded with seeds[k]; the loss stepped is the sum of the members' losses, so each gets
    exactly its own gradient. At every check step each member is validated and told its
    `report`; a member whose report returns False, or whose training loss turned non-finite,
    leaves the pack (its test values are measured then). `seconds` is left 0 for the caller.
    `data` must already be on `dev`."""
    k_total = len(seeds)
    check_refit(recipe, data)
    if recipe.grad_clip and k_total > 1:  # one norm per member would be needed; no packable task clips
        raise ValueError("packed training does not clip gradients (Recipe.grad_clip)")
    autocast = autocast_for(dev)
    if recipe.refit_readout:  # trainable constants then start against the best readout
        members.refit_readout(data.train)
    opt = make_optimizer(members.params(), recipe)
    gens = [torch.Generator(device=dev).manual_seed(s) for s in seeds]
    checks = {s for s in eval_steps if 0 < s < recipe.steps}
    if recipe.eval_every:
        checks |= set(range(recipe.eval_every, recipe.steps, recipe.eval_every))
    n, bs = len(data.train), min(recipe.batch_size, len(data.train))
    live = list(range(k_total))  # member index of each pack row
    orders = [torch.empty(0, dtype=torch.long, device=dev)] * k_total
    positions = [n] * k_total
    histories: list[list[tuple[int, float, float]]] = [[] for _ in range(k_total)]
    finished: dict[int, TrainResult] = {}
    step = 0
    while step < recipe.steps and live:
        rows = []
        for k in live:
            if positions[k] + bs > n:
                orders[k], positions[k] = torch.randperm(n, generator=gens[k], device=dev), 0
            rows.append(orders[k][positions[k]:positions[k] + bs])
            positions[k] += bs
        lr = lr_at(step, recipe)
        for group in opt.param_groups:
            group["lr"] = lr
        losses = members.losses(rows, data, autocast)
        opt.zero_grad(set_to_none=True)
        (losses.sum() if len(live) > 1 else losses[0]).backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(members.params(), recipe.grad_clip, foreach=True)
        opt.step()
        step += 1
        if step not in checks and step != recipe.steps:
            continue
        if recipe.refit_readout:
            members.refit_readout(data.train)
        finite = [math.isfinite(float(v)) for v in losses.detach()]
        measured = members.measure(data.val, data.regression, autocast) if any(finite) else []
        ended: dict[int, tuple[bool, bool]] = {}  # pack row -> (stopped, diverged)
        for r, k in enumerate(live):
            if not finite[r]:
                histories[k].append((step, 0.0, math.inf))
                if reports[k] is not None:
                    reports[k](step, 0.0, math.inf)
                ended[r] = (False, True)
                continue
            acc, vloss = measured[r]
            histories[k].append((step, acc, vloss))
            report = reports[k]
            if report is not None and not report(step, acc, vloss) and step < recipe.steps:
                ended[r] = (True, False)
        if step == recipe.steps:
            ended = {r: ended.get(r, (False, False)) for r in range(len(live))}
        if not ended:
            continue
        tests = members.measure(data.test, data.regression, autocast)
        for r, (stopped, diverged) in ended.items():
            k = live[r]
            val_acc, val_loss = histories[k][-1][1:]
            finished[k] = TrainResult(val_acc, val_loss, *tests[r], step, 0.0, stopped, diverged,
                                      list(histories[k]))
        keep = [r for r in range(len(live)) if r not in ended]
        if keep and ended:
            opt = members.keep(keep, opt)
        live = [live[r] for r in keep]
    return [finished[k] for k in range(k_total)]
