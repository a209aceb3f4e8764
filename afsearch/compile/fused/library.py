"""Building and loading the fused kernel library: ``_fused.c`` compiled once per machine with
the system C compiler into a cache directory (``AFSEARCH_CACHE_DIR``, default
``~/.cache/afsearch``) and loaded with ctypes. Without a compiler, libmvec or a working build,
`fused_status` says why and every fused module runs its eager twin instead."""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from afsearch.compile.fused.lowering import OPS
from afsearch.expr.primitives import EPS, EXP_CLAMP

log = logging.getLogger(__name__)
ABI = 3

_FLAGS: tuple[str, ...] = (
    "-O3", "-std=gnu11", "-fPIC", "-shared", "-fopenmp",
    # math functions without errno are what lets gcc call libmvec's vector variants, and
    # without trapping-math it if-converts the guards around them; NaN/inf/signed-zero
    # semantics stay IEEE (no -ffast-math)
    "-fno-math-errno", "-fno-trapping-math",
    # no implicit fma: _fused.c writes fmaf exactly where torch's own kernels have one, and
    # rounds every other product like torch's separate ops do
    "-ffp-contract=off",
    "-march=native", "-mprefer-vector-width=512",
    # blocks are multiples of the vector width but for the last one: vectorised epilogue
    # loops would only add code and compile time
    "--param=vect-epilogues-nomask=0",
)
_LIBS: tuple[str, ...] = ("-lmvec", "-lm")
#: the numeric guards of afsearch.expr.primitives, compiled into the kernel (one definition)
_GUARDS: tuple[str, ...] = (f"-DAFS_EPS={EPS!r}f", f"-DAFS_EXP_CLAMP={EXP_CLAMP!r}f")


class _Prog(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_void_p),
        ("imm", ctypes.c_void_p),
        ("consts", ctypes.c_void_p),
        ("n_instr", ctypes.c_int32),
        ("n_fixed", ctypes.c_int32),
        ("first_param", ctypes.c_int32),
        ("n_params", ctypes.c_int32),
        ("param_offset", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
    ]


@dataclass(frozen=True)
class FusedStatus:
    available: bool
    reason: str
    path: str | None = None


@dataclass
class _Library:
    status: FusedStatus
    lib: ctypes.CDLL | None = None


_LOCK = threading.Lock()
_STATE: _Library | None = None


def default_cache_dir() -> Path:
    env = os.environ.get("AFSEARCH_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "afsearch"


def _compiler_command(compiler: str | None) -> list[str]:
    return shlex.split(compiler if compiler is not None else os.environ.get("CC", "cc"))


def _machine_id() -> str:
    """-march=native code only runs where it was built: key the cache on the CPU features."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_key(cc: list[str]) -> str:
    version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30, check=True)
    h = hashlib.sha256()
    for part in (Path(__file__).with_name("_fused.c").read_bytes(), " ".join(cc).encode(),
                 " ".join(_FLAGS + _GUARDS + _LIBS).encode(), version.stdout.encode(), _machine_id().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def build_library(compiler: str | None = None, cache_dir: str | os.PathLike[str] | None = None) -> FusedStatus:
    """Build (once per machine; later calls find it in the cache) and load the fused kernel
    library. ``compiler`` defaults to ``$CC`` or ``cc``, ``cache_dir`` to
    :func:`default_cache_dir`. Never raises: a failure is reported in the returned status."""
    return _build_and_load(compiler, cache_dir)[1]


def _build_and_load(compiler: str | None, cache_dir: str | os.PathLike[str] | None) -> tuple[ctypes.CDLL | None, FusedStatus]:
    if os.environ.get("AFSEARCH_FUSED", "1") == "0":
        return None, FusedStatus(False, "disabled by AFSEARCH_FUSED=0")
    cc = _compiler_command(compiler)
    if not cc:
        return None, FusedStatus(False, "no C compiler configured")
    try:
        key = _cache_key(cc)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, FusedStatus(False, f"C compiler {cc[0]!r} not usable: {exc}")
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"afsearch-fused-{key}.so"
    if path.exists():
        lib, reason = _load(path)
        if lib is not None:
            return lib, FusedStatus(True, "ok (cached)", str(path))
        log.warning("cached fused kernel library %s is unusable (%s); rebuilding", path, reason)
    try:
        _compile(cc, path)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        detail = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        return None, FusedStatus(False, f"building the fused kernels failed: {detail.strip()[-600:]}")
    lib, reason = _load(path)
    if lib is None:
        return None, FusedStatus(False, reason, str(path))
    return lib, FusedStatus(True, "ok (built)", str(path))


def _compile(cc: list[str], path: Path) -> None:
    """Compile to a private temporary file and rename it into place: atomic, so concurrent
    builders (several processes, Ray workers) never load a half-written library."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".afsearch-fused-", suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        source = Path(__file__).with_name("_fused.c")
        subprocess.run([*cc, *_FLAGS, *_GUARDS, str(source), "-o", tmp, *_LIBS], capture_output=True,
                       timeout=300, check=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path) -> tuple[ctypes.CDLL | None, str]:
    try:
        if b"_ZGV" not in path.read_bytes():
            # scalar libm calls per element make the kernels slower than eager torch
            return None, "the C library has no vectorised math (libmvec) calls; using eager modules"
        # torch is imported (and has loaded its libgomp.so.1) before this library, whose
        # libgomp.so.1 dependency therefore resolves to torch's copy: one OpenMP runtime and
        # thread pool in the process, not two competing for the cores
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        return None, f"cannot load {path}: {exc}"
    try:
        lib.afs_abi.restype = ctypes.c_int
        lib.afs_op_count.restype = ctypes.c_int
        lib.afs_op_name.restype = ctypes.c_char_p
        lib.afs_op_name.argtypes = [ctypes.c_int]
        lib.afs_forward.restype = ctypes.c_int
        lib.afs_forward.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int64,
                                    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32]
        lib.afs_backward.restype = ctypes.c_int
        lib.afs_backward.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p,
                                     ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p,
                                     ctypes.c_void_p, ctypes.c_int32]
        if lib.afs_abi() != ABI:
            return None, f"{path}: ABI {lib.afs_abi()} != {ABI}"
        names = tuple(lib.afs_op_name(i).decode() for i in range(lib.afs_op_count()))
        if names != OPS:
            return None, f"{path}: op table differs from fused.py"
    except (AttributeError, OSError) as exc:
        return None, f"{path}: {exc}"
    return lib, "ok"


def _library() -> _Library:
    global _STATE
    state = _STATE
    if state is not None:
        return state
    with _LOCK:
        if _STATE is None:
            lib, status = _build_and_load(None, None)
            if lib is None:
                log.warning("fused activation kernels unavailable, using eager modules: %s", status.reason)
            _STATE = _Library(status, lib)
        return _STATE


def fused_status() -> FusedStatus:
    """Whether fused kernels are in use in this process (building them on first call)."""
    return _library().status


def reset_library() -> None:
    """Forget this process's library state, so the next use builds or loads it again (after
    changing ``CC``, ``AFSEARCH_CACHE_DIR`` or ``AFSEARCH_FUSED``)."""
    global _STATE
    with _LOCK:
        _STATE = None


def loaded() -> ctypes.CDLL | None:
    """This process's library (built or loaded on first use), None when unavailable."""
    state = _STATE
    return (state if state is not None else _library()).lib
