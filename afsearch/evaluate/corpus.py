"""A real text corpus that every machine running afsearch has offline: a fixed selection of the
Python standard library's own source files (code, comments and docstrings; English prose and
Python in one byte stream).

The selection is a documented list of modules that exist from Python 3.8 to 3.13 (`FILES`).
Their bytes differ between Python versions, so the corpus carries its sha256: results obtained
on a machine with another standard library are recognisably on another corpus (the LM task
records the hash in every result's task config). A missing file is refused in one line, never
silently skipped.

Split: the concatenated bytes are cut into `BLOCK`-byte blocks; of every 20 consecutive blocks,
block 18 goes to validation, block 19 to test, the rest to training. Every module contributes to
every split, and the split depends on nothing but the bytes."""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from afsearch.errors import TaskError

#: standard-library modules in the corpus, in this order (3.1 MB on CPython 3.11)
FILES: tuple[str, ...] = (
    "argparse.py", "textwrap.py", "difflib.py", "inspect.py", "typing.py", "dataclasses.py",
    "functools.py", "heapq.py", "calendar.py", "string.py", "shlex.py", "fractions.py",
    "statistics.py", "random.py", "csv.py", "configparser.py", "gettext.py", "pprint.py",
    "tokenize.py", "ast.py", "copy.py", "enum.py", "subprocess.py", "tarfile.py", "shutil.py",
    "tempfile.py", "threading.py", "queue.py", "smtplib.py", "ftplib.py", "optparse.py",
    "getopt.py", "cmd.py", "contextlib.py", "selectors.py", "trace.py", "pdb.py", "doctest.py",
    "pydoc.py", "turtle.py", "mailbox.py", "imaplib.py", "locale.py", "codecs.py", "weakref.py",
    "bisect.py", "operator.py", "sched.py", "base64.py", "hmac.py", "uuid.py", "ipaddress.py",
    "datetime.py", "numbers.py", "abc.py", "fnmatch.py", "glob.py", "linecache.py",
    "traceback.py", "warnings.py", "zipimport.py", "plistlib.py", "netrc.py", "mimetypes.py",
    "wave.py", "colorsys.py", "quopri.py", "stringprep.py", "webbrowser.py", "timeit.py",
    "cProfile.py", "pstats.py", "code.py", "codeop.py", "dis.py", "filecmp.py", "fileinput.py",
    "graphlib.py", "keyword.py", "reprlib.py", "runpy.py", "secrets.py", "signal.py",
    "socket.py", "socketserver.py", "ssl.py", "struct.py", "symtable.py", "tabnanny.py",
    "token.py", "types.py", "zipapp.py",
)
BLOCK = 4096
PERIOD = 20  # blocks: PERIOD - 2 train, 1 validation, 1 test


@dataclass(frozen=True)
class Corpus:
    train: np.ndarray  # uint8 byte streams
    val: np.ndarray
    test: np.ndarray
    sha256: str  # of the concatenated bytes (before any `limit`)
    n_bytes: int


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


@lru_cache(maxsize=1)
def raw_bytes() -> tuple[bytes, str]:
    """The concatenated files and their sha256; TaskError naming the first missing file."""
    folder = stdlib_dir()
    parts = []
    for name in FILES:
        path = folder / name
        try:
            parts.append(path.read_bytes())
        except OSError:
            raise TaskError(f"the LM corpus needs the standard-library file {path}, which is missing "
                            f"(a stripped Python install?); the corpus is the {len(FILES)} files listed in "
                            "afsearch/evaluate/corpus.py") from None
    data = b"".join(parts)
    return data, hashlib.sha256(data).hexdigest()


def load_corpus(limit: int | None = None) -> Corpus:
    """The split corpus; `limit` keeps only the first `limit` bytes before splitting (small
    corpora for tests; the hash stays that of the full corpus)."""
    data, digest = raw_bytes()
    stream = np.frombuffer(data[:limit] if limit else data, dtype=np.uint8)
    n_blocks = -(-len(stream) // BLOCK)
    which = np.arange(n_blocks) % PERIOD
    blocks = [stream[i * BLOCK:(i + 1) * BLOCK] for i in range(n_blocks)]

    def pick(mask: np.ndarray) -> np.ndarray:
        chosen = [b for b, keep in zip(blocks, mask, strict=True) if keep]
        return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.uint8)

    return Corpus(pick(which < PERIOD - 2), pick(which == PERIOD - 2), pick(which == PERIOD - 1),
                  digest, len(data))
