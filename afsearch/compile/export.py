"""Export an activation as artefacts usable without afsearch:

- ``python``: a ``.py`` module whose only import is torch (formula + LaTeX in the docstring,
  trainable constants as ``nn.Parameter``);
- ``torchscript``: ``torch.jit.save`` of the scripted module (TorchScript is deprecated upstream
  but still asked for);
- ``pt2``: a ``torch.export`` program for 2-D input ``(batch, features)`` with both dimensions
  dynamic; reshape other shapes to 2-D (the function is element-wise);
- ``ffn`` (with an FFN form, `afsearch.export.export_candidate`): ``<name>_ffn.py``, the activation plus a
  drop-in transformer feed-forward block using it (plain or GLU), torch only.

Token-wise activations (MoA, PolyNorm; `afsearch.compile.token`) export as ``python`` only.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from afsearch.compile.codegen import generate_module
from afsearch.compile.compiler import load_generated
from afsearch.errors import ConfigError
from afsearch.expr.tree import Expr
from afsearch.files import replacing, write_atomic

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


def prepare_dir(out_dir: Path) -> None:
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
    prepare_dir(out)
    stem = file_stem(name)
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


def export_layer(graph: Any, formula: str, out_dir: str | Path, name: str) -> Path:
    """A layer candidate exports as its JSON graph and readable formula (rebuild the module
    with `afsearch.layers.LayerGraph.from_json(data["graph"]).build(channels)`)."""
    out = Path(out_dir)
    prepare_dir(out)
    path = out / f"{name}.layer.json"
    write_atomic(path, json.dumps({"formula": formula, "graph": graph}, indent=2) + "\n")
    return path


def file_stem(name: str) -> str:
    """`name` as a Python module file stem."""
    stem = re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "activation"
    return "act_" + stem if stem[0].isdigit() else stem
