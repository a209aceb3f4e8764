"""The proxy trainer: tensors already on the device, one plain loop, validation at fixed steps.

It only trains and reports. Whoever wants to stop a run early (the rejection ladder, a pruner)
passes `report(step, val_accuracy, val_loss) -> bool`; returning False stops the run."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

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


def _make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "adamw":
        # fused: one kernel per step for all parameters (~25% faster than foreach for these
        # small models on CPU, also on CUDA)
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay,
                                 fused=True)
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
    out = out.float()
    model.train(was_training)
    if not bool(torch.isfinite(out).all()):
        return 0.0, math.inf
    loss = float(loss_fn(regression)(out, split.y))
    if regression:
        var = float(split.y.var(unbiased=False))
        acc = min(1.0, max(0.0, 1.0 - loss / var)) if var > 0 else 0.0
    else:
        acc = float((out.argmax(1) == split.y).float().mean())
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


def train(build_model: Callable[[], nn.Module], data: Data, recipe: Recipe, seed: int = 0,
          report: Report | None = None, eval_steps: Sequence[int] = (),
          device: str | None = None, threads: int | None = 1) -> TrainResult:
    """Train a fresh model (built after seeding, so initialisation is reproducible) for
    `recipe.steps` steps. Validation runs at every step in `eval_steps`, every
    `recipe.eval_every` steps, and at the end; each is passed to `report`."""
    dev = pick_device(device)
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda"
                else nullcontext)
    check_refit(recipe, data)
    with cpu_threads(threads, dev):
        start = time.perf_counter()
        data = data.to(dev)
        torch.manual_seed(seed)
        model = build_model().to(dev)
        model.train()
        if recipe.refit_readout:  # trainable constants then start against the best readout
            refit_readout(model, data.train)
        opt = _make_optimizer(model, recipe)
        gen = torch.Generator(device=dev).manual_seed(seed)
        criterion = loss_fn(data.regression)
        checks = {s for s in eval_steps if 0 < s < recipe.steps}
        if recipe.eval_every:
            checks |= set(range(recipe.eval_every, recipe.steps, recipe.eval_every))
        n, bs = len(data.train), min(recipe.batch_size, len(data.train))
        order, pos = torch.empty(0, dtype=torch.long, device=dev), n
        history: list[tuple[int, float, float]] = []
        stopped = diverged = False
        step = 0
        while step < recipe.steps:
            if pos + bs > n:
                order, pos = torch.randperm(n, generator=gen, device=dev), 0
            idx = order[pos:pos + bs]
            pos += bs
            for group in opt.param_groups:
                group["lr"] = lr_at(step, recipe)
            with autocast():
                loss = criterion(model(data.train.x[idx]).float(), data.train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip, foreach=True)
            opt.step()
            step += 1
            if step in checks or step == recipe.steps:
                if not math.isfinite(float(loss.detach())):
                    diverged = True
                    history.append((step, 0.0, math.inf))
                    if report is not None:
                        report(step, 0.0, math.inf)
                    break
                if recipe.refit_readout:
                    refit_readout(model, data.train)
                acc, vloss = measure(model, data.val, data.regression, autocast=autocast)
                history.append((step, acc, vloss))
                if report is not None and not report(step, acc, vloss) and step < recipe.steps:
                    stopped = True
                    break
        test_acc, test_loss = measure(model, data.test, data.regression, autocast=autocast)
        val_acc, val_loss = history[-1][1:] if history else (0.0, math.inf)
        return TrainResult(val_acc, val_loss, test_acc, test_loss, step,
                           time.perf_counter() - start, stopped, diverged, history)
