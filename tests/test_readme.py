"""The README is executable documentation: every ```bash and ```python block in README.md runs.

Rules (keep README authors and this test in step):
- Only fenced blocks tagged ```bash or ```python run; untagged blocks (output excerpts, the
  architecture sketch, `$ ` prompts in them) are examples of output and never run.
- A block is skipped when the line just before its fence (blank lines between allowed) is
  `<!-- readme-test: skip (reason) -->`; the reason is mandatory.
- Blocks run in document order in ONE temporary working directory, so a later block sees what an
  earlier one made (`afsearch search --name quickstart` before `afsearch leaderboard quickstart`).
- bash: each line is one command (a trailing `# comment` is dropped). `afsearch` and
  `.venv/bin/X` resolve to the bin directory of the interpreter running this test, and the
  commands import the checkout this test imports. In a `&&` chain, install steps (`python3 -m
  venv`, `pip install`) and the test suite itself (`python -m pytest`) are dropped: CI runs those
  (`.ci/run`). `[--flag]` marks an optional flag: the command runs with every optional flag given.
- Commands that train get a tiny budget appended (argparse keeps the last value of a flag):
  see TINY. Commands that need what cannot exist offline go in SKIP with the reason.
- python: each block runs in a fresh interpreter after PRELUDE, which makes what the README's
  snippets presume without showing: `model`, a small torch model with a ReLU module. A block
  whose first line is a comment naming a file (`# mytask.py`) is that file: it is written to
  the working directory (for the commands after it) and imported there, not run after PRELUDE.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import afsearch

ROOT = Path(afsearch.__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

#: subcommand -> flags appended so that the command trains for seconds, not minutes
TINY: dict[str, list[str]] = {
    # no ladder: at 30 steps the quality gate's noise could reject both candidates on one of
    # the default's two tasks, leaving nothing for the README's `export --top 3` to export
    "search": ["--budget", "2", "--steps", "30", "--backend", "local", "--validate-top", "0", "--no-ladder"],
    "resume": ["--budget", "3", "--backend", "local"],
    "validate": ["--seeds", "2", "--steps", "30", "--backend", "local"],
    "eval": ["--budget", "30"],
}

#: substring of a command -> why it cannot run here
SKIP: dict[str, str] = {
    "--data-dir": "needs the CIFAR-10 python batches on disk (never downloaded)",
}

#: `&&` segments that are not run (CI runs them): the install and the test suite itself
_DROPPED = re.compile(r"^(python3? -m venv|\S*pip install|\S*python -m pytest)\b")

PRELUDE = """\
import torch
from torch import nn

model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))  # for patch_activations
"""

_FILE_LINE = re.compile(r"#\s*([\w.-]+\.py)\s*")
_SKIP_MARK = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.+)\)\s*-->")


@dataclass
class Block:
    lang: str
    line: int  # 1-based line of the opening fence
    text: str
    skip: str | None  # reason, from the skip comment


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block with its language tag ('' for untagged) and opt-out reason."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        before = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        mark = _SKIP_MARK.fullmatch(before.strip())
        blocks.append(Block(fence.group(1), start + 1, "\n".join(body) + "\n",
                            mark.group(1) if mark else None))
        i += 1
    return blocks


def bash_commands(block: Block) -> list[list[str]]:
    """The commands of a bash block as argument lists, after the rules in the module doc."""
    commands = []
    for line in block.text.splitlines():
        for segment in line.split("&&"):
            segment = re.sub(r"\[(--[^\]]+)\]", r"\1", segment)  # optional flags: given
            words = shlex.split(segment, comments=True)
            if not words or _DROPPED.match(" ".join(words)):
                continue
            commands.append(_resolve(words))
    return commands


def _resolve(words: list[str]) -> list[str]:
    head = words[0]
    if head.startswith(".venv/bin/"):
        head = head.removeprefix(".venv/bin/")
    if "/" not in head and (BIN / head).exists():
        head = str(BIN / head)
    words = [head, *words[1:]]
    if Path(head).name == "afsearch" and len(words) > 1:
        words += TINY.get(words[1], [])
    return words


def _env() -> dict[str, str]:
    # the commands must exercise this checkout, whatever the venv's editable install points at
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "COLUMNS": "100"}


def test_readme_blocks_are_found_and_the_rules_hold():
    blocks = readme_blocks(README.read_text())
    langs = {b.lang for b in blocks}
    assert {"bash", "python"} <= langs, langs
    assert all(b.skip is None or b.skip.strip() for b in blocks)
    sample = Block("bash", 1, ".venv/bin/afsearch leaderboard q --top 3 [--json]  # c\n"
                   "python3 -m venv .venv && .venv/bin/pip install -e . && afsearch search\n", None)
    assert bash_commands(sample) == [
        [str(BIN / "afsearch"), "leaderboard", "q", "--top", "3", "--json"],
        [str(BIN / "afsearch"), "search", *TINY["search"]],
    ]


@pytest.mark.slow
def test_every_readme_block_runs(tmp_path):
    failures, ran = [], 0
    for block in readme_blocks(README.read_text()):
        if block.lang not in ("bash", "python") or block.skip:
            continue
        if block.lang == "python":
            named = _FILE_LINE.fullmatch(block.text.splitlines()[0])
            if named:
                (tmp_path / named.group(1)).write_text(block.text)
                module = named.group(1).removesuffix(".py")
                runs = [[sys.executable, "-c", f"import {module}"]]
            else:
                runs = [[sys.executable, "-c", PRELUDE + block.text]]
        else:
            runs = [c for c in bash_commands(block)
                    if not any(key in " ".join(c) for key in SKIP)]
        for command in runs:
            ran += 1
            started = time.perf_counter()
            proc = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True,
                                  text=True, timeout=600)
            print(f"README.md:{block.line} {time.perf_counter() - started:5.1f} s  "
                  f"{command[-1][:60] if block.lang == 'python' else shlex.join(command)}")
            if proc.returncode != 0:
                shown = "python block" if block.lang == "python" else shlex.join(command)
                failures.append(f"README.md:{block.line}: {shown} exited {proc.returncode}:\n"
                                f"{(proc.stdout + proc.stderr)[-1500:]}")
    assert ran >= 10
    assert not failures, "\n\n".join(failures)
