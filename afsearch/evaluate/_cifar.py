"""Reading CIFAR-10 python-pickle batches from a local directory, safely.

The batches are pickles (`data_batch_1..5`, `test_batch`, each a dict with b"data": uint8
N x 3072 and b"labels": list of int). Unpickling a user-supplied file can execute arbitrary
code, so `_SafeUnpickler.find_class` refuses every global except the few numpy functions that
reconstruct arrays; a crafted file fails with TaskError instead of running code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from afsearch.errors import TaskError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # pickle protocol 5 arrays
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes written by Python 3 at protocol 2 (str -> bytes only)
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 3 x 32 x 32, labels int64 N) from one batch file."""
    expected = "a CIFAR-10 python batch (pickle dict with b'data' uint8 Nx3072 and b'labels')"
    if not path.is_file():
        raise TaskError(f"CIFAR-10 file {path} is missing; expected {expected}")
    try:
        with path.open("rb") as fh:
            obj = _SafeUnpickler(fh, encoding="bytes").load()
        data = np.asarray(obj[b"data"], dtype=np.uint8)
        labels = np.asarray(obj[b"labels"], dtype=np.int64)
    except Exception as exc:  # any failure means "not a valid batch"
        raise TaskError(f"CIFAR-10 file {path} is corrupt ({type(exc).__name__}: {exc}); "
                        f"expected {expected}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise TaskError(f"CIFAR-10 file {path} has data of shape {data.shape} and "
                        f"{len(labels)} labels; expected {expected}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise TaskError(f"CIFAR-10 file {path} has labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(data_dir: str | Path | None):  # noqa: ANN201
    """((x_train, y_train), (x_test, y_test)) as numpy arrays, train = the 5 batches."""
    root = check_data_dir(data_dir)
    parts = [load_batch(root / f) for f in TRAIN_FILES]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return (x_train, y_train), load_batch(root / TEST_FILE)


def check_data_dir(data_dir: str | Path | None) -> Path:
    """The data directory, checked without reading a batch: given, a directory, no file
    missing (cheap enough to run before a search creates its run directory)."""
    if not data_dir:
        raise TaskError("task cifar10-resnet needs data_dir: a directory holding the CIFAR-10 "
                        f"python batches {', '.join(TRAIN_FILES)}, {TEST_FILE}")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise TaskError(f"CIFAR-10 data_dir {root} does not exist; expected a directory holding "
                        f"{', '.join(TRAIN_FILES)}, {TEST_FILE}")
    missing = [f for f in (*TRAIN_FILES, TEST_FILE) if not (root / f).is_file()]
    if missing:
        raise TaskError(f"CIFAR-10 data_dir {root} lacks {', '.join(missing)} "
                        "(python-pickle batches from cifar-10-python.tar.gz)")
    return root
