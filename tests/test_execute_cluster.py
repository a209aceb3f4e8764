"""Scenarios that need a Ray of their own, each in a subprocess (one Ray per process): a
two-node `ray.cluster_utils.Cluster` losing a node mid-search, an embedded cluster that must
leave no Ray process behind after a normal exit or Ctrl-C, and an unreachable address."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MULTI_NODE = textwrap.dedent(
    """
    import json, time
    import ray
    from ray.cluster_utils import Cluster
    from afsearch.execute import Job, make_executor
    from tests import executor_jobs as tj

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "num_gpus": 1, "include_dashboard": False})
    other = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    out = {"head": ray.get_runtime_context().get_node_id(), "other": other.node_id}
    try:
        # the head declares one (fake) GPU: 0.25 GPU per trial -> four trials share it
        with make_executor("ray", fn=tj.echo, cpus_per_trial=0.25, gpus_per_trial=0.25) as gx:
            out["gpu_capacity"] = gx.capacity
            out["gpu_workers"] = [r.worker for r in gx.run_all(Job(str(i), {}) for i in range(4))]
        ex = make_executor("ray", fn=tj.sleep)
        out["capacity_before"] = ex.capacity
        results, removed = [], False
        for i in range(8):
            ex.submit(Job(str(i), {"seconds": 2.0}, timeout_s=60))
        end = time.monotonic() + 120
        while ex.pending and time.monotonic() < end:
            results += ex.poll(0.5)
            if not removed and len(results) >= 2:
                time.sleep(0.5)  # the next two jobs are running, one on each node
                cluster.remove_node(other)
                removed = True
        out["capacity_after"] = ex.capacity
        out["pending"] = ex.pending
        out["results"] = [
            {"id": r.job_id, "status": r.status, "worker": r.worker, "attempts": r.attempts,
             "error": r.error}
            for r in results
        ]
        ex.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("RESULT " + json.dumps(out))
    """
)

EMBEDDED = textwrap.dedent(
    """
    import faulthandler
    import signal
    import sys
    from afsearch.execute import Job, make_executor
    from tests import executor_jobs as tj

    # the test asks for every thread's stack (SIGUSR1) when the driver does not exit in time
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    mode, temp_dir = sys.argv[1], sys.argv[2]
    ex = make_executor("ray", fn=tj.sleep, init_kwargs={"_temp_dir": temp_dir})
    assert ex.owns_ray
    assert [r.status for r in ex.run_all([Job("a", {"seconds": 0.01})])] == ["done"]
    if mode in ("sigint", "sigkill"):
        ex.submit(Job("hang", {}))
        print("READY", flush=True)
        while True:
            ex.poll(1.0)
    print("READY", flush=True)
    # exits without calling shutdown(): the atexit hook must stop Ray
    """
)

UNREACHABLE = textwrap.dedent(
    """
    import ray
    from afsearch.errors import ExecutorError
    from afsearch.execute import make_executor
    from tests import executor_jobs as tj

    for address in ("127.0.0.1:1", "not-an-address"):
        try:
            make_executor("ray", fn=tj.echo, ray_address=address)
        except ExecutorError as exc:
            print("ERROR", exc)
    print("INITIALIZED", ray.is_initialized())
    """
)


def _python(code: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_two_nodes_share_work_and_survive_losing_one() -> None:
    proc = _python(MULTI_NODE, timeout=170)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = json.loads(line[0][len("RESULT ") :])
    results = out["results"]
    assert out["gpu_capacity"] == 4  # fractional GPUs: four trials per GPU, all on the head
    assert all(w.startswith(out["head"][:12]) for w in out["gpu_workers"])
    assert out["capacity_before"] == 2 and out["capacity_after"] == 1
    assert out["pending"] == 0
    assert sorted(r["id"] for r in results) == [str(i) for i in range(8)]  # each exactly once
    assert all(r["status"] == "done" for r in results), results
    nodes = {r["worker"].split(":")[0] for r in results}
    assert {out["head"][:12], out["other"][:12]} <= nodes  # spread over both nodes
    requeued = [r for r in results if r["attempts"] == 2]
    assert len(requeued) == 1, results  # the job in flight on the lost node ran again
    assert requeued[0]["worker"].startswith(out["head"][:12])


def _procs() -> dict[int, tuple[int, str, str, str]]:
    """pid -> (parent pid, start time, name, command line), read from /proc (no psutil: it
    is only vendored inside Ray)."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":  # a zombie has exited already
            continue
        procs[int(entry.name)] = (int(fields[1]), fields[19], name, cmdline)
    return procs


def _descendants(root: int) -> dict[int, tuple[int, str, str, str]]:
    procs = _procs()
    found: dict[int, tuple[int, str, str, str]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, info in procs.items():
            if info[0] == parent and pid not in found:
                found[pid] = info
                frontier.append(pid)
    return found


def _ray_processes(temp_dir: str, tree: dict[int, tuple[int, str, str, str]]) -> list[str]:
    """Processes of the subprocess's Ray still alive: its recorded descendants (same pid and
    start time), plus anything whose command line names its temp dir."""
    now = _procs()
    return [
        f"{pid} {info[2]}"
        for pid, info in now.items()
        if (pid in tree and tree[pid][1] == info[1]) or temp_dir in info[3]
    ]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exit", "sigint", "sigkill"])
def test_no_ray_processes_remain_after_exit(mode: str) -> None:
    """Whether the driver exits, is interrupted or is killed outright (SIGKILL: no atexit, no
    cleanup; the reaper started with the embedded cluster ends it), no Ray process of its
    session is left 20 s later."""
    temp_dir = tempfile.mkdtemp(prefix="afx-", dir="/tmp")  # short: Ray puts sockets in it
    # stderr goes to a file, not a pipe: nobody reads a pipe while the child runs, and Ray's
    # warnings on a loaded machine plus the KeyboardInterrupt traceback can fill it, blocking
    # the child's exit on a write
    stderr = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", EMBEDDED, mode, temp_dir],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        # a driver started from a terminal: when the tests themselves run as a background job
        # (`cmd &`), SIGINT is ignored and the child would inherit that, ignoring the test's
        # Ctrl-C as any Unix program started that way does
        preexec_fn=_default_sigint,
    )

    def stderr_tail(chars: int = 3000) -> str:
        stderr.seek(0)
        return stderr.read()[-chars:]

    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "READY", line + stderr_tail()
        tree = _descendants(proc.pid)
        names = " ".join(info[2] for info in tree.values())
        assert "raylet" in names and "gcs_server" in names, names
        if mode in ("sigint", "sigkill"):
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT if mode == "sigint" else signal.SIGKILL)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # where is it stuck: every thread's stack to stderr
            time.sleep(3)
            pytest.fail(f"the driver did not exit within 90 s of {mode}; its stderr:\n{stderr_tail(12000)}")
        end = time.monotonic() + 20
        while (left := _ray_processes(temp_dir, tree)) and time.monotonic() < end:
            time.sleep(0.5)
        assert not left, left
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_unreachable_address_is_an_executor_error() -> None:
    proc = _python(UNREACHABLE, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = [x for x in proc.stdout.splitlines() if x.startswith("ERROR ")]
    assert len(errors) == 2, proc.stdout
    assert all("cannot join the Ray cluster at --ray-address" in e for e in errors)
    assert "INITIALIZED False" in proc.stdout
