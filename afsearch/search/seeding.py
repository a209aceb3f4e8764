"""One master seed per run; every other seed is derived from it by name, so adding a new
consumer of randomness never shifts the streams of the existing ones."""

from __future__ import annotations

import hashlib


def derive_seed(master: int, *labels: object) -> int:
    """A 31-bit seed from the master seed and a path of labels, e.g. ("train", 0)."""
    text = "/".join([str(master), *map(str, labels)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % (2**31 - 1)
