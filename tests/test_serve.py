"""`serve`: the engine (and API) headless in its own process, as another process sees it.

Each test starts `claude_scheduler.py serve --port 0` on the test's data home, talks to it
through the store, the CLI and signals, and ends it (or SIGKILLs it) itself.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, child_env
from run_helpers import (
    SCRIPT,
    WAIT_SECONDS,
    Recorder,
    cli_process,
    pid_gone,
    run_of,
    stop_process,
    wait_for,
    wait_session,
    wait_status,
)

import claude_scheduler as cs

GRACE = 0.5


pytestmark = pytest.mark.usefixtures("record")  # every session is recorded, leftovers killed


class Served:
    """One `serve` process and the file its stderr goes to."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def serve(home: Path, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start `serve` processes on the test's data home; each is ended with the test.
    `journal`: $JOURNAL_STREAM names the file stderr goes to, as systemd's does the journal."""
    started: list[Served] = []

    def start(*, journal: str | None = None) -> Served:
        log = tmp_path / f"serve-{len(started)}.log"
        env = child_env(home)
        with log.open("wb") as stderr:
            if journal is not None:
                status = os.fstat(stderr.fileno())
                env[cs.JOURNAL_ENV] = journal.format(dev=status.st_dev, ino=status.st_ino)
            proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), "serve", "--port", "0"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        served = Served(proc, log)
        started.append(served)
        return served

    yield start
    for served in started:
        stop_process(served.proc)


@pytest.fixture
def engine_served(home: Path, serve: Callable[[], Served]) -> Served:
    """A `serve` process that owns the data home's engine."""
    served = serve()

    def owns_the_engine() -> bool:
        if served.proc.poll() is not None:
            raise AssertionError(f"serve exited with {served.proc.returncode}: {served.stderr()}")
        return engine_owner(home) == served.pid

    wait_for(owns_the_engine, "serve to start the engine")
    return served


def engine_owner(home: Path) -> int | None:
    status = cs.Service(cs.Store(home)).engine_status()
    return status["owner"]["pid"] if status["running"] else None


def create_task(cli_json: Callable[..., Any], prompt: str, *options: str) -> dict[str, Any]:
    return dict(cli_json("tasks", "create", "--name", prompt[:40], "--prompt", prompt, *options))


def start_run(cli_json: Callable[..., Any], home: Path, prompt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hand a run of a new task to the engine; return the task and the run once claude runs."""
    task = create_task(cli_json, prompt)
    run = cli_json("tasks", "run", task["id"], "--detach")
    return task, wait_status(home, run["id"], "running")


def test_serve_runs_the_engine_headless_and_runs_what_it_is_handed(
    home: Path, engine_served: Served, cli: Callable[..., Result], cli_json: Callable[..., Any]
) -> None:
    status = cli_json("engine", "status")
    assert status["owner"]["pid"] == engine_served.pid
    assert status["owner"]["api"].startswith("http://127.0.0.1:")
    task = create_task(cli_json, "Say hello.")

    detached = cli("tasks", "run", task["id"], "--detach")

    run_id = cli_json("runs", "list", "--task", task["id"])["runs"][0]["id"]
    assert detached.out.strip() == f"Queued run {run_id[:8]}"  # no note: an engine runs
    run = wait_status(home, run_id, "success")
    assert run["owner"].split(":")[1] == str(engine_served.pid)


def test_serve_logs_each_runs_start_and_end(
    home: Path, engine_served: Served, cli_json: Callable[..., Any]
) -> None:
    task = create_task(cli_json, "Say hello.")
    run = cli_json("tasks", "run", task["id"], "--detach")
    done = wait_status(home, run["id"], "success")
    said = f"run {run['id'][:8]} of 'Say hello.' ({done['trigger']})"
    ended = f"{said} success · {done['duration_seconds']:.1f}s · ${done['cost_usd']:.4f}"
    wait_for(lambda: ended in engine_served.stderr(), "serve to log the run's end")
    lines = engine_served.stderr().splitlines()
    assert [line.split(" INFO ", 1)[1] for line in lines if said in line] == [f"{said} started", ended]


@pytest.mark.parametrize(
    ("journal", "in_journal_format"), [("{dev}:{ino}", True), ("{dev}:0", False), (None, False)]
)
def test_serve_logs_in_the_journals_format_when_its_stderr_is_the_journal(
    home: Path,
    serve: Callable[..., Served],
    cli_json: Callable[..., Any],
    journal: str | None,
    in_journal_format: bool,
) -> None:
    served = serve(journal=journal)
    wait_for(lambda: engine_owner(home) == served.pid, "serve to start the engine")
    task = create_task(cli_json, "Say hello.")
    run = cli_json("tasks", "run", task["id"], "--detach")
    said = f"run {run['id'][:8]} of 'Say hello.' (cli) started"
    wait_for(lambda: said in served.stderr(), "serve to log the run's start")
    lines = served.stderr().splitlines()
    started = next(line for line in lines if "engine started for" in line)
    if in_journal_format:  # a syslog priority (6: info), no time of its own
        assert started.startswith("<6>engine started for ")
        assert f"<6>{said}" in lines
    else:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO engine started for ", started)
        assert not any(line.startswith("<") for line in lines)


def test_one_engine_per_data_home_across_processes(
    home: Path, engine_served: Served, serve: Callable[[], Served], cli: Callable[..., Result]
) -> None:
    assert cs.Engine(cs.Store(home)).start(thread=False) is False

    viewer = serve()
    wait_for(lambda: "as a viewer" in viewer.stderr(), "the second serve to start")
    assert re.search(
        r"runs the engine; serving the API on http://127\.0\.0\.1:\d+ as a viewer", viewer.stderr()
    )

    assert f"another process (pid {engine_served.pid}) runs the engine" in viewer.stderr()
    assert cli("engine", "status").out.startswith(f"Engine: running in process {engine_served.pid} since ")
    assert stop_process(viewer.proc) == 0
    assert engine_owner(home) == engine_served.pid


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_viewer_serve_takes_over_the_engine_when_its_holder_goes(
    home: Path, engine_served: Served, serve: Callable[[], Served], cli_json: Callable[..., Any], how: str
) -> None:
    viewer = serve()
    wait_for(lambda: "as a viewer" in viewer.stderr(), "the second serve to start as a viewer")
    task = create_task(cli_json, "Say hello.")

    stop_process(engine_served.proc, getattr(signal, how))
    run = cli_json("tasks", "run", task["id"], "--detach")

    finished = wait_status(home, run["id"], "success")
    assert finished["owner"].split(":")[1] == str(viewer.pid)
    assert engine_owner(home) == viewer.pid
    assert "this process now runs the engine" in viewer.stderr()
    assert viewer.proc.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_cleanly_on_a_signal_and_records_its_run_cancelled(
    home: Path, engine_served: Served, cli_json: Callable[..., Any], sig: int
) -> None:
    _, running = start_run(cli_json, home, "[hang]")

    assert stop_process(engine_served.proc, sig) == 0

    assert run_of(home, running["id"])["status"] == "cancelled"
    wait_for(lambda: pid_gone(running["pid"]), "claude to end")
    assert engine_owner(home) is None
    engine = cs.Engine(cs.Store(home))
    assert engine.start(thread=False)  # the engine lock was let go
    engine.stop()


@pytest.mark.parametrize("marker", ["[hang]", "[hang][ignore_term]"])
def test_after_an_engine_crash_the_next_engine_interrupts_its_runs_and_ends_their_claude(
    home: Path, engine_served: Served, cli_json: Callable[..., Any], record: Recorder, marker: str
) -> None:
    pid_file = record.grandchild_file()
    _, started = start_run(cli_json, home, f"{marker}[grandchild={pid_file}]")
    running = wait_session(home, started["id"])
    grandchild = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the grandchild"))

    engine_served.proc.kill()
    engine_served.proc.wait(WAIT_SECONDS)
    assert not pid_gone(running["pid"])
    assert not pid_gone(grandchild)
    assert run_of(home, running["id"])["status"] == "running"

    engine = cs.Engine(cs.Store(home), kill_grace=GRACE)
    assert engine.start(thread=False)
    try:
        run = run_of(home, running["id"])
    finally:
        engine.stop()

    assert run["status"] == "interrupted"
    assert run["error"] == (
        f"the process that ran it ({running['owner']}) ended unexpectedly; "
        "its Claude process was still running and has been ended"
    )
    wait_for(lambda: pid_gone(running["pid"]) and pid_gone(grandchild), "claude and its child to end")
    log = (home / cs.LOGS_DIR / f"{run['id']}.log").read_text(encoding="utf-8")
    assert log.splitlines()[-1] == f"[scheduler] {run['error']}"


def test_a_stop_from_a_cli_process_is_acted_on_by_serve(
    home: Path, engine_served: Served, cli_json: Callable[..., Any]
) -> None:
    _, running = start_run(cli_json, home, "[hang]")

    stopped = cli_process(home, "runs", "stop", running["id"], env=child_env(home))

    assert stopped.returncode == 0, stopped.stderr
    assert wait_status(home, running["id"], "cancelled")["error"] == "stopped by request"
    wait_for(lambda: pid_gone(running["pid"]), "claude to end")
    assert engine_served.proc.poll() is None


def test_serve_fires_a_task_scheduled_by_another_process(
    home: Path, engine_served: Served, cli_json: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    moment = datetime.now(UTC) + timedelta(seconds=2)
    soon = moment.isoformat()
    with monkeypatch.context() as patch:  # `soon` is ahead for the CLI however late a loaded machine runs it
        patch.setattr(cs, "Store", functools.partial(cs.Store, clock=lambda: moment - timedelta(minutes=1)))
        task_id = cli_json("tasks", "create", "--name", "soon", "--prompt", "soon", "--at", soon)["id"]

    def finished() -> dict[str, Any] | None:
        runs = cs.Service(cs.Store(home)).list_runs(task_id=task_id, status="success")
        return runs[0] if runs else None

    run = wait_for(finished, "the task to fire")
    assert (run["trigger"], run["scheduled_for"]) == ("schedule", cs.fmt_time(datetime.fromisoformat(soon)))
    assert cli_json("tasks", "get", task_id)["next_run_at"] is None


def test_serve_runs_a_job_handed_to_it_and_jobs_stop_stops_it(
    home: Path,
    engine_served: Served,
    cli: Callable[..., Result],
    cli_json: Callable[..., Any],
    record: Recorder,
) -> None:
    job = cli_json("jobs", "create", "--name", "Release")
    first = create_task(cli_json, "[hang] first", "--job", job["id"])
    second = create_task(cli_json, "second", "--job", job["id"])

    handed = cli("jobs", "run", job["id"])
    assert handed.out.startswith("Handed to the engine: job run ")
    run = wait_for(
        lambda: cs.Service(cs.Store(home)).list_runs(task_id=first["id"], status="running"), "the first run"
    )[0]
    wait_for(record.prompts, "the first session to read its prompt")  # a loaded machine starts it late
    listed = cli_json("jobs", "get", job["id"])
    assert (listed["status"], listed["progress"]["running"]) == ("in_progress", 1)

    assert cli("jobs", "stop", job["id"]).out.strip() == "Asked 1 run to stop."

    wait_status(home, run["id"], "cancelled")
    assert stop_process(engine_served.proc) == 0  # whatever it would still start has happened
    assert cs.Service(cs.Store(home)).list_runs(task_id=second["id"]) == []
    assert record.prompts() == ["[hang] first"]
    assert cli_json("jobs", "get", job["id"])["status"] == "failed"


def test_serve_starts_while_another_process_opens_the_data_home(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving made certain: another process opens the store (a CLI command, the
    window) just as serve's first start has written its new token to a temp file."""
    cs.Store(home)
    real_replace = os.replace

    def another_process_opens_the_store(source: Any, target: Any) -> None:
        if Path(target).name == cs.TOKEN_FILE:
            cs.Store(home)
        real_replace(source, target)

    monkeypatch.setattr(cs.os, "replace", another_process_opens_the_store)

    token = cs.api_token(home)  # what serve does first

    assert (home / cs.TOKEN_FILE).read_text(encoding="ascii").strip() == token
