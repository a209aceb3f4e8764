"""A watchdog for an embedded Ray cluster: when the process that started it dies without
shutting Ray down (SIGKILL, an OOM kill), Ray's own head processes notice only after a minute
or two (DashboardAgent, RuntimeEnvAgent). This process polls the driver and, once it is gone,
ends every process of that Ray session at once.

    python -m afsearch.execute._reaper DRIVER_PID DRIVER_START_TIME SESSION_DIR

It learns the session's processes while the driver lives (the driver's descendants, and
whatever names the session directory; agents and workers rename themselves `ray::...`, so only
their ancestry tells) and ends those still alive with the same start time. Linux only (/proc);
elsewhere it exits at once and Ray's own timeouts apply."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.5
EARLY_POLLS = 60  # the first 30 s, while Ray starts its processes, scan at every poll
RESCAN_EVERY = 4  # then every 4th poll
GRACE_S = 3.0


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, None when it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else (int(fields[1]), fields[19])


def _table() -> dict[int, tuple[int, str, bytes]]:
    """pid -> (parent pid, start time, command line) of every live process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        info = _stat(int(entry.name))
        if info is None:
            continue
        try:
            out[int(entry.name)] = (info[0], info[1], (entry / "cmdline").read_bytes())
        except OSError:
            continue
    return out


def _holds_files_in(pid: int, folder: str) -> bool:
    """Whether the process has a file open under `folder` (Ray's processes keep their logs in
    the session directory open, whatever they renamed themselves to)."""
    try:
        return any(os.readlink(fd).startswith(folder) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _session(table: dict[int, tuple[int, str, bytes]], roots: set[int], session_dir: str,
             open_files: bool = False) -> dict[int, str]:
    """pid -> start time of the session's processes: those naming the session directory (or,
    with `open_files`, holding a file open in it), and every descendant of `roots` or of those
    (agents and workers rename themselves `ray::...`)."""
    found = {pid for pid, (_, _, cmd) in table.items()
             if session_dir.encode() in cmd or (open_files and _holds_files_in(pid, session_dir))}
    found |= roots & set(table)
    grew = True
    while grew:
        extra = {pid for pid, (parent, _, _) in table.items() if parent in found and pid not in found}
        found |= extra
        grew = bool(extra)
    found.discard(os.getpid())
    return {pid: table[pid][1] for pid in found}


def _end(known: dict[int, str]) -> None:
    """SIGTERM, then SIGKILL, to the processes still alive with the start time recorded (a
    reused pid is left alone)."""
    def alive() -> list[int]:
        return [pid for pid, started in known.items() if (info := _stat(pid)) is not None and info[1] == started]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and alive():
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    driver, started, session_dir = int(argv[0]), argv[1], argv[2]
    if not Path("/proc").is_dir():
        return 0
    known: dict[int, str] = {}
    polls = 0
    while True:
        info = _stat(driver)
        if info is None or info[1] != started:  # gone (or its pid reused)
            break
        if polls < EARLY_POLLS or polls % RESCAN_EVERY == 0:  # learn the session while it descends from the driver
            known.update(_session(_table(), {driver}, session_dir))
        polls += 1
        time.sleep(POLL_S)
    known.update(_session(_table(), set(known), session_dir, open_files=True))
    known.pop(driver, None)
    _end(known)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
