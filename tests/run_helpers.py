"""Helpers shared by the run-engine tests: an injected clock, polling with a deadline,
and bookkeeping of the fake claude processes (what they recorded, which are still alive)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import claude_scheduler as cs

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "claude_scheduler.py"
FAKE_NAME = b"fake_claude.py"
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday, far from any DST change
WAIT_SECONDS = 30.0  # generous: a deadline for things that take well under a second
POLL_SECONDS = 0.02
GONE_STATES = ("Z", "X")  # zombies: nobody in this container reaps orphans
T = TypeVar("T")


class FakeClock:
    """The store's and engine's `now`, moved by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return self.now


def at(seconds: float) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    """T0 plus `seconds`, in the store's timestamp format."""
    return str(cs.fmt_time(at(seconds)))


def wait_for(predicate: Callable[[], T], what: str, timeout: float = WAIT_SECONDS) -> T:
    """Poll `predicate` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_SECONDS)


def drive(engine: cs.Engine, timeout: float = WAIT_SECONDS) -> None:
    """Tick an engine started with thread=False until nothing of it runs or is due."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine.tick()
        if engine.wait_idle(0.05):
            return
    raise AssertionError("the engine did not become idle")


def run_of(home: Path, run_id: str) -> dict[str, Any]:
    """A run as a fresh reader (another Store on the home) sees it."""
    return cs.Service(cs.Store(home)).get_run(run_id)


def wait_status(home: Path, run_id: str, *statuses: str, timeout: float = WAIT_SECONDS) -> dict[str, Any]:
    """Wait until a run has one of `statuses` (and, for `running`, claude's pid)."""

    def reached() -> dict[str, Any] | None:
        run = run_of(home, run_id)
        if run["status"] not in statuses:
            return None
        return None if run["status"] == "running" and not run["pid"] else run

    return wait_for(reached, f"run {run_id[:8]} to be {'/'.join(statuses)}", timeout)


def wait_session(home: Path, run_id: str, timeout: float = WAIT_SECONDS) -> dict[str, Any]:
    """Wait until claude has printed its first line for a running run; return the run.

    Until then, ending claude's reader would end claude too (a broken pipe), so tests that
    kill the process running a run wait for this first.
    """
    log = home / cs.LOGS_DIR / f"{run_id}.log"
    wait_for(
        lambda: log.exists() and '"subtype":"init"' in log.read_text(encoding="utf-8"), "claude's first line"
    )
    return wait_status(home, run_id, "running", timeout=timeout)


def process_state(pid: int) -> str | None:
    """The /proc state letter of `pid`, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()[0].decode()


def pid_gone(pid: int) -> bool:
    return process_state(pid) in (None, *GONE_STATES)


def is_fake_claude(pid: int) -> bool:
    """Whether `pid` is a live fake claude (or its grandchild), not some reused pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return not pid_gone(pid) and (FAKE_NAME in cmdline or b"time.sleep(3600)" in cmdline)


def kill_fake(pid: int) -> None:
    if is_fake_claude(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class Recorder:
    """The fake claude's `$FAKE_CLAUDE_RECORD` file: one JSON object per session."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid_files: list[Path] = []

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def prompts(self) -> list[str]:
        return [str(entry["stdin"]) for entry in self.entries()]

    def grandchild_file(self, name: str = "grandchild.pid") -> Path:
        path = self.path.with_name(name)
        self.pid_files.append(path)
        return path

    def kill_leftovers(self) -> None:
        """End any fake claude (or grandchild) a failing test left behind."""
        pids = [int(entry["pid"]) for entry in self.entries()]
        pids += [int(path.read_text()) for path in self.pid_files if path.exists()]
        for pid in pids:
            kill_fake(pid)


def kill_foreground(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a foreground `cli tasks run` and its watchdog together (as a machine-wide
    kill would), leaving its claude an orphan for whoever finds it."""
    for pid in child_pids(proc.pid):
        with contextlib.suppress(OSError):
            if b"claude_scheduler_watchdog" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.wait(WAIT_SECONDS)


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == parent:
                    found.append(int(entry.name))
    return found


def default_ctrl_c() -> None:
    """A child's `preexec_fn`: Ctrl-C (SIGINT) as a terminal gives it, even when the suite
    was started with SIGINT ignored (a background job), which a child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_process(home: Path, *words: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `claude_scheduler.py cli ...` as another process, to completion."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), "cli", *words],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> int:
    """Signal a child and reap it; SIGKILL if it does not end within the deadline."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(WAIT_SECONDS)
