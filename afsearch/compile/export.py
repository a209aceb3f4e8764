"""Export an activation as artefacts usable without afsearch:

- ``python``: a ``.py`` module whose only import is torch (formula + LaTeX in the docstring,
  trainable constants as ``nn.Parameter``);
- ``torchscript``: ``torch.jit.save`` of the scripted module (TorchScript is deprecated upstream
  but still asked for);
- ``pt2``: a ``torch.export`` program for 2-D input ``(batch, features)`` with both dimensions
  dynamic; reshape other shapes to 2-D (the function is element-wise);
- ``ffn`` (with an FFN form, `export_candidate`): ``<name>_ffn.py``, the activation plus a
  drop-in transformer feed-forward block using it (plain or GLU), torch only.

Token-wise activations (MoA, PolyNorm; `afsearch.compile.token`) export as ``python`` only.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch

from afsearch.candidate import ACTIVATION, FFN, TOKEN, Candidate
from afsearch.compile.codegen import GeneratedModule, generate_module
from afsearch.compile.compiler import load_generated
from afsearch.compile.token import TokenSpec, generate_token_module
from afsearch.errors import ConfigError
from afsearch.expr.parser import parse
from afsearch.expr.tree import Expr
from afsearch.store import replacing, write_atomic

FORMATS = ("python", "torchscript", "pt2")


def class_name_for(name: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", name)
    camel = "".join(p[:1].upper() + p[1:] for p in parts if p)
    if not camel or not camel[0].isalpha():
        camel = "Act" + camel
    return camel


def parse_formats(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(i.strip().lower() for i in items if i.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"unknown export format(s) {bad or text!r}; allowed: {', '.join(FORMATS)}")
    return formats


def _prepare_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out_dir}: {exc.strerror}; choose another -o") from None
    if not os.access(out_dir, os.W_OK):
        raise ConfigError(f"output directory {out_dir} is not writable; choose another -o")


def export_activation(
    expr: Expr, out_dir: str | Path, name: str = "activation", formats: tuple[str, ...] = FORMATS
) -> dict[str, Path]:
    """Write the requested artefacts into ``out_dir``; returns format -> path."""
    out = Path(out_dir)
    _prepare_dir(out)
    stem = _stem(name)
    generated = generate_module(expr, class_name_for(stem))
    written: dict[str, Path] = {}
    if "python" in formats:
        path = out / f"{stem}.py"
        write_atomic(path, generated.source)
        written["python"] = path
    needs_module = {"torchscript", "pt2"} & set(formats)
    if needs_module:
        cls = load_generated(generated, f"afsearch_export_{stem}_{os.getpid()}_{id(generated)}")
        module = cls()
    if "torchscript" in formats:
        path = out / f"{stem}.torchscript.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(module)
            with replacing(path) as tmp:
                torch.jit.save(scripted, str(tmp))
        written["torchscript"] = path
    if "pt2" in formats:
        path = out / f"{stem}.pt2"
        batch, feat = torch.export.Dim("batch"), torch.export.Dim("features")
        program = torch.export.export(
            module, (torch.randn(4, 3),), dynamic_shapes={"x": {0: batch, 1: feat}}
        )
        with replacing(path) as tmp:
            torch.export.save(program, str(tmp))
        written["pt2"] = path
    return written


def export_candidate(candidate: Candidate, out_dir: str | Path, name: str = "activation",
                     formats: tuple[str, ...] = FORMATS, ffn: str | None = None) -> dict[str, Path]:
    """Export any activation-like candidate: a formula (all formats), a token-wise module
    (``python`` only: its gate is sized by the first call), or a formula in a fixed FFN form.
    With an FFN form (the candidate's own, or `ffn` = the run's task option) a drop-in
    feed-forward module is written too (format ``ffn``: ``<name>_ffn.py``, torch only)."""
    if candidate.kind == FFN:
        ffn, candidate = candidate.ffn_form()
    if candidate.kind == ACTIVATION:
        expr = parse(candidate.spec)
        written = export_activation(expr, out_dir, name, formats)
        generated = generate_module(expr, class_name_for(_stem(name)))
    elif candidate.kind == TOKEN:
        if "python" not in formats:
            raise ConfigError("token-wise activations (MoA, PolyNorm) export as python only; add python to --format")
        out = Path(out_dir)
        _prepare_dir(out)
        generated = generate_token_module(TokenSpec.from_json(candidate.spec), class_name_for(_stem(name)))
        path = out / f"{_stem(name)}.py"
        write_atomic(path, generated.source)
        written = {"python": path}
    else:
        raise ConfigError(f"candidate of kind {candidate.kind!r} is not an activation; layers export as JSON")
    if ffn is not None:
        path = Path(out_dir) / f"{_stem(name)}_ffn.py"
        write_atomic(path, ffn_module_source(generated, ffn))
        written["ffn"] = path
    return written


def skipped_formats(candidate: Candidate, formats: tuple[str, ...]) -> tuple[str, ...]:
    """The requested formats `export_candidate` does not write for this candidate."""
    if candidate.kind == FFN:
        candidate = candidate.ffn_form()[1]
    return tuple(f for f in formats if f != "python") if candidate.kind == TOKEN else ()


def _stem(name: str) -> str:
    stem = re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "activation"
    return "act_" + stem if stem[0].isdigit() else stem


def ffn_module_source(activation: GeneratedModule, form: str) -> str:
    """A module (only import: torch) with the activation's class and a drop-in transformer
    feed-forward block ``<Class>FeedForward(width, hidden=4 * width)`` in `form`: plain
    ``W2 act(W1 x)`` or GLU ``W2 (act(W1 x) * V x)`` with 2/3 of `hidden`, so both forms have
    the same number of weights."""
    cls = activation.class_name
    # a token-wise module's source holds helper classes before its own: keep them all
    body = activation.source.split("import torch\n", 1)[1].lstrip("\n")
    glu = form == "glu"
    return (
        f'"""Drop-in {"gated (GLU)" if glu else "plain"} feed-forward block generated by afsearch.\n\n'
        f"Activation: {activation.formula}\n\n"
        f"    ffn = {cls}FeedForward(width=512)          # hidden defaults to 4 * width"
        + (" (GLU: 2/3 of it)" if glu else "") + "\n"
        f"    y = ffn(x)                                   # x: (..., width)\n"
        '"""\n\nimport torch\n\n\n'
        f"{body.rstrip()}\n\n\n"
        f"class {cls}FeedForward(torch.nn.Module):\n"
        f'    """{"W2 (act(W1 x) * (V x)), hidden = round(2/3 * hidden)" if glu else "W2 act(W1 x)"}; no biases by default."""\n\n'
        "    def __init__(self, width: int, hidden: int | None = None, bias: bool = False) -> None:\n"
        "        super().__init__()\n"
        "        hidden = hidden or 4 * width\n"
        + ("        hidden = max(1, round(2 * hidden / 3))\n" if glu else "")
        + "        self.w1 = torch.nn.Linear(width, hidden, bias=bias)\n"
        + ("        self.v = torch.nn.Linear(width, hidden, bias=bias)\n" if glu else "")
        + f"        self.act = {cls}()\n"
        "        self.w2 = torch.nn.Linear(hidden, width, bias=bias)\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        + ("        return self.w2(self.act(self.w1(x)) * self.v(x))\n" if glu
           else "        return self.w2(self.act(self.w1(x)))\n")
    )
