"""`afsearch spaces`: list the search spaces; `afsearch spaces show NAME|FILE`: sample members.

afsearch spaces                          # shipped spaces: kind, size, primitives, parameters
afsearch spaces --space my.toml          # ... plus (or only) your own files
afsearch spaces show swish --n 10 --seed 0
afsearch spaces show my.toml --json
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

from afsearch.spaces import list_spaces, load_space, space_kind, space_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "spaces",
        help="list search spaces, or sample members of one",
        description="List the search spaces (size or 'unbounded', primitives, parameters), or "
        "show sampled members of one with their formulas. NAME is a shipped space; any path "
        "to a .toml space file works too.",
    )
    parser.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="FILE",
        help="also list this space file (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=_list)
    sub = parser.add_subparsers(dest="spaces_command", metavar="{show}")
    show = sub.add_parser("show", help="print sampled members of a space with their formulas")
    show.add_argument("space", metavar="NAME|FILE", help="a shipped space name or a .toml file")
    show.add_argument("--n", type=int, default=10, help="members to sample (default 10)")
    show.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    show.add_argument("--json", action="store_true", help="print JSON lines")
    show.set_defaults(handler=_show)


def _summary(name: str, path: Any) -> dict[str, Any]:
    space = load_space(path)
    info = space.describe()
    primitives = info.get("primitives", info.get("ops", []))
    return {
        "name": name,
        "file": str(path),
        "kind": space_kind(path),
        "size": space.size(),
        "primitives": primitives,
        "parameters": info.get("parameters", dict(space.continuous) or {}),
    }


def _flat(primitives: Any) -> str:
    if isinstance(primitives, dict):  # e.g. {"unary": {name: template}, "binary": {...}}
        return "; ".join(f"{k}: {', '.join(v)}" for k, v in primitives.items())
    return ", ".join(str(p) for p in primitives)


def _list(args: argparse.Namespace) -> int:
    entries = [(name, path) for name, path in list_spaces().items()]
    entries += [(str(p), space_path(p)) for p in args.space]
    rows = [_summary(name, path) for name, path in entries]
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    print(f"{'name':<14} {'kind':<11} size")
    for row in rows:
        size = "unbounded" if row["size"] is None else f"{row['size']:,}"
        print(f"{row['name']:<14} {row['kind']:<11} {size}")
        print(f"  primitives: {_flat(row['primitives']) or '-'}")
        params = row["parameters"]
        text = (
            ", ".join(f"{k} {v}" for k, v in params.items())
            if isinstance(params, dict)
            else str(params)
        )
        print(f"  parameters: {text or '-'}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from afsearch.errors import ConfigError

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    space = load_space(args.space)
    rng = random.Random(args.seed)
    info_fn = getattr(space, "candidate_info", None)
    for i in range(args.n):
        genotype = space.sample(rng)
        candidate = space.to_candidate(genotype)
        record: dict[str, Any] = {
            "genotype": genotype,
            "kind": candidate.kind,
            "spec": candidate.spec,
        }
        if info_fn is not None:
            info = info_fn(genotype)
            record["entropy"], record["base_entropy"] = info["entropy"], info["base_entropy"]
        if args.json:
            print(json.dumps(record))
            continue
        if candidate.kind == "token":  # a token-wise module: its readable form, not its JSON
            print(f"[{i}] token-wise: {candidate.describe()[0]}")
        else:
            label = "formula" if candidate.kind == "activation" else "layer"
            print(f"[{i}] {label}: {candidate.spec}")
        print(f"    genotype: {json.dumps(genotype)}")
        if "entropy" in record:
            e, b = record["entropy"], record["base_entropy"]
            print(
                f"    entropy (nats, N(0,1) input): histogram {e['histogram']:.4f} vs base {b['histogram']:.4f};"
                f" jacobian {e['jacobian']:.4f} vs base {b['jacobian']:.4f}"
            )
    return 0
