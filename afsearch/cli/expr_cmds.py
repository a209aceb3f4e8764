"""`afsearch show` and `afsearch export` for a formula or a reference activation.

Both commands also take a run (``show RUN ID``, ``export RUN --top K | --id ID``); those forms
are served by afsearch.cli.inspect_cmds when a run is given."""

from __future__ import annotations

import argparse
import json
import keyword

from afsearch.candidate import Candidate
from afsearch.cli import bounded_int
from afsearch.compile.export import FORMATS, class_name_for, parse_formats
from afsearch.errors import ConfigError, shorten
from afsearch.expr import canonical_form, fingerprint, parse, to_latex, to_string
from afsearch.expr.simplify import readable, simplify
from afsearch.expr.tree import Expr
from afsearch.reference import get_reference


def add_formula_source(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--expr", metavar="FORMULA", help="a formula in x, e.g. 'x * sigmoid(beta * x)'")
    group.add_argument("--ref", metavar="NAME", help="a reference activation, e.g. gelu, swish, crrelu")


def candidate_from_args(args: argparse.Namespace) -> tuple[Candidate, str]:
    """(candidate, suggested name) from --expr or --ref; a reference keeps its kind and FFN
    form (``--ref swiglu`` trains SiLU in a GLU FFN on lm-transformer whatever its ffn option)."""
    if args.ref:
        ref = get_reference(args.ref)
        return ref.candidate(), ref.name.replace("@", "_")
    expr, name = formula_from_args(args)
    return Candidate.activation(to_string(expr)), name


def formula_from_args(args: argparse.Namespace) -> tuple[Expr, str]:
    """(expression, suggested name) from --expr or --ref (element-wise references only)."""
    if args.ref:
        ref = get_reference(args.ref)
        if ref.kind != "activation":
            raise ConfigError(f"reference {ref.name} is a token-wise module ({ref.description}), not a formula")
        return parse(ref.formula), ref.name.replace("@", "_")
    if args.expr is not None:
        return parse(args.expr), "activation"
    raise ConfigError("give a formula with --expr FORMULA or a reference with --ref NAME")


def describe_formula(expr: Expr) -> dict[str, object]:
    from afsearch.evaluate.screen import screen

    verdict = screen(expr)
    canon = canonical_form(expr)
    return {
        "formula": to_string(expr),
        "simplified": readable(simplify(expr)),
        "canonical": canon.text,
        "canonical_simplified": canon.simplified,
        "latex": to_latex(expr),
        "fingerprint": fingerprint(expr),
        "parameters": expr.params(),
        "depth": expr.depth,
        "size": expr.size,
        "screen": verdict.to_json(),
    }


def _show(args: argparse.Namespace) -> int:
    if args.run is not None:
        from afsearch.cli import inspect_cmds

        return inspect_cmds.show_candidate(args)
    if args.ref and get_reference(args.ref).kind != "activation":
        ref = get_reference(args.ref)
        cand = ref.candidate()
        info = {"name": ref.name, "kind": cand.kind, "formula": cand.describe()[0], "description": ref.description,
                "fingerprint": cand.fingerprint()}
        print(json.dumps(info) if args.json else "\n".join(f"{k:<12} {v}" for k, v in info.items()))
        return 0
    info = describe_formula(formula_from_args(args)[0])
    if args.ref and get_reference(args.ref).ffn:
        info["ffn"] = get_reference(args.ref).ffn  # the FFN form the reference is meant for
    if args.json:
        print(json.dumps(info))
        return 0
    screen_info = info["screen"]
    print(f"formula      {info['formula']}")
    if "ffn" in info:
        print(f"ffn          {info['ffn']} (trains in a {info['ffn']} FFN on tasks with an ffn option)")
    print(f"simplified   {info['simplified']}")
    print(f"canonical    {info['canonical']}" + ("" if info["canonical_simplified"] else "  (structural)"))
    print(f"latex        {info['latex']}")
    print(f"fingerprint  {info['fingerprint']}")
    params = info["parameters"] or {}
    print("parameters   " + (", ".join(f"{k}={v:g}" for k, v in params.items()) or "none"))  # type: ignore[union-attr]
    verdict = "pass" if screen_info["passed"] else f"reject: {screen_info['reason']}"  # type: ignore[index]
    print(f"screen       {verdict}")
    for key, value in screen_info["stats"].items():  # type: ignore[index]
        print(f"  {key:<26} {value:.6g}")
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.run is not None:
        from afsearch.cli import inspect_cmds

        return inspect_cmds.export_run(args)
    from afsearch.export import export_candidate, skipped_formats

    candidate, name = candidate_from_args(args)
    formats = parse_formats(args.format)
    written = export_candidate(candidate, args.output, args.name or name, formats)
    for fmt, path in written.items():
        print(f"{fmt:<12} {path}")
    for fmt in skipped_formats(candidate, formats):
        print(f"{fmt:<12} not written: token-wise activations (MoA, PolyNorm) export as python only")
    return 0


def _export_name(text: str) -> str:
    """--name: a stem whose class name (CamelCase of it) is a Python identifier, not a keyword
    such as None."""
    class_name = class_name_for(text)
    if len(text) > 100 or not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise argparse.ArgumentTypeError(f"{shorten(text)} does not give a valid Python class name "
                                         f"({shorten(class_name)}); use letters, digits and '_'")
    return text


def register(sub: argparse._SubParsersAction) -> None:
    show = sub.add_parser(
        "show",
        help="describe a formula, a reference activation, or a candidate of a run",
        description="Print canonical form, LaTeX, fingerprint and screening verdict.",
        epilog="examples:\n  afsearch show --expr 'max(x, sigmoid(x))'\n  afsearch show --ref gelu"
        "\n  afsearch show runs/demo 12",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("run", nargs="?", help="run directory or name (to show one of its candidates)")
    show.add_argument("id", nargs="?", help="candidate id within the run")
    add_formula_source(show)
    show.add_argument("--runs-dir", default="runs", help="where runs live (default: runs/)")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=_show)

    export = sub.add_parser(
        "export",
        help="write an activation as a Python module, TorchScript and torch.export files",
        description="Export a formula, reference activation or a run's winners.",
        epilog="examples:\n  afsearch export --ref swish -o out/\n"
        "  afsearch export --expr 'x * tanh(softplus(x))' --format python,pt2 -o out/\n"
        "  afsearch export runs/demo --top 3 -o out/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("run", nargs="?", help="run directory or name (to export its candidates)")
    add_formula_source(export)
    export.add_argument("--top", type=bounded_int(1, 10_000), help="with a run: export the best K candidates")
    export.add_argument("--id", dest="candidate_id", help="with a run: export this candidate")
    export.add_argument("--format", default=",".join(FORMATS), help=f"comma list of {', '.join(FORMATS)} (default: all)")
    export.add_argument("-o", "--output", default="exports", help="output directory (default: exports/)")
    export.add_argument("--name", type=_export_name,
                        help="file and class name stem (default: reference name or 'activation')")
    export.add_argument("--runs-dir", default="runs", help="where runs live (default: runs/)")
    export.set_defaults(handler=_export)
