"""Print the size of the one-unit Swish space and its count of distinct functions.

    .venv/bin/python scripts/swish_space_counts.py [SPACE] [--units N]

Enumerates every genotype with N core units (default 1) of the space (default `swish`),
fingerprints each function (REFERENCE §4: outputs on fixed N(0,1) probe points, trainable
constants at their initial value and at a perturbed one), and prints the total, the number of
distinct fingerprints and the time taken. Also reports which of the Swish paper's eight top
functions the space contains, with the unit count each needs."""

from __future__ import annotations

import argparse
import time

from afsearch.spaces import load_space
from afsearch.spaces.swish import TOP_EIGHT, SwishSpace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", nargs="?", default="swish", help="a swish-kind space name or file")
    parser.add_argument("--units", type=int, default=1, help="core units per function (default 1)")
    args = parser.parse_args()
    space = load_space(args.space)
    if not isinstance(space, SwishSpace):
        parser.error(f"{args.space} is not a swish-kind space")
    start = time.perf_counter()
    total = sum(1 for _ in space.enumerate(args.units))
    distinct = space.distinct(args.units)
    elapsed = time.perf_counter() - start
    print(
        f"space {space.name!r}, {args.units} unit(s): {len(space.binary)} binary x "
        f"{len(space.unary)}^2 unary ops"
    )
    print(f"total genotypes     {total}")
    print(f"distinct functions  {len(distinct)}  (by fingerprint)")
    print(f"time                {elapsed:.1f} s")
    print("Swish paper's top eight:")
    for formula in TOP_EIGHT:
        found = space.find(formula)
        where = f"{len(found['units'])} unit(s): {found['units']}" if found else "not found"
        print(f"  {formula:<24} {where}")


if __name__ == "__main__":
    main()
