"""`afsearch` command line. Each command group lives in its own module with a `register`
function; this module only wires them together and turns user errors into exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from afsearch.errors import AfsearchError

#: modules under afsearch.cli that each define `register(subparsers)`; order = order in --help
COMMAND_MODULES = ("expr_cmds", "eval_cmd", "spaces_cmd", "run_cmds")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump wall
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="afsearch",
        description="Discover activation functions and normalization-activation layers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"afsearch.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"afsearch.cli.{name}":
                continue  # command group not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except AfsearchError as exc:
        print(f"afsearch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("afsearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
