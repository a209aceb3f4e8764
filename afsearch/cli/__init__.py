"""`afsearch` command line. Each command group lives in its own module with a `register`
function; this module only wires them together and turns user errors into exit code 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from afsearch.errors import AfsearchError, shorten

#: modules under afsearch.cli that each define `register(subparsers)`; order = order in --help
COMMAND_MODULES = ("expr_cmds", "eval_cmd", "spaces_cmd", "search_cmds", "inspect_cmds")


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
        importlib.import_module(f"afsearch.cli.{name}").register(sub)
    return parser


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type` for an integer flag in [low, high]: out-of-range values are refused
    while parsing (one line, exit 2) instead of reaching torch or SQLite, where --threads
    100000 segfaults and an id of 20 digits overflows."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {shorten(text)}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {shorten(value)}")
        return value

    parse.__name__ = "integer"  # argparse names the type in "invalid integer value" messages
    return parse


def max_threads() -> int:
    """The most torch threads a command may ask for: oversubscribing the CPUs a few times is
    a user's choice, 100000 threads is a crash."""
    return min(256, 4 * len(os.sched_getaffinity(0)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a flag refused while parsing: an exit code, not an exit
        return exc.code if isinstance(exc.code, int) else 2
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
    except BrokenPipeError:
        # the reader went away (`afsearch runs | head -1`): stop quietly. Point stdout at
        # devnull so the interpreter's final flush does not raise again (Python docs, "Note
        # on SIGPIPE").
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file (captured in-process)
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
