"""The CLI verbs that run things: `tasks run`, `runs log|stop`, `jobs run|stop`, `engine ...`.

They go through `main(["cli", ...])` like a user (the `cli` fixture), or through a separate
`claude_scheduler.py cli` process where another process is the point (stop, Ctrl-C, crash).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import Result, child_env
from run_helpers import (
    SCRIPT,
    WAIT_SECONDS,
    Recorder,
    cli_process,
    default_ctrl_c,
    drive,
    kill_foreground,
    pid_gone,
    run_of,
    stop_process,
    wait_for,
    wait_session,
    wait_status,
)

import claude_scheduler as cs
import fake_claude as fake

GRACE = 0.5
Cli = Callable[..., Result]
CliJson = Callable[..., Any]


pytestmark = pytest.mark.usefixtures("record")  # every session is recorded, leftovers killed


@pytest.fixture
def engine(home: Path) -> Iterator[cs.Engine]:
    """This process's engine (thread=False: the test ticks it), on the real clock."""
    engine = cs.Engine(cs.Store(home), kill_grace=GRACE)
    assert engine.start(thread=False)
    yield engine
    engine.stop(timeout=WAIT_SECONDS)


@pytest.fixture
def processes() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `claude_scheduler.py cli ...` processes that are ended with the test."""
    started: list[subprocess.Popen[str]] = []

    def start(home: Path, *words: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "cli", *words],
            env=child_env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_ctrl_c,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_process(proc, signal.SIGKILL)


def create_task(cli_json: CliJson, prompt: str = "Say hello.", *options: str) -> dict[str, Any]:
    return dict(cli_json("tasks", "create", "--name", prompt[:40], "--prompt", prompt, *options))


def create_job(cli_json: CliJson, prompts: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    job = cli_json("jobs", "create", "--name", "Release")
    return job, [create_task(cli_json, prompt, "--job", job["id"][:8]) for prompt in prompts]


def only_run(home: Path, task_id: str) -> dict[str, Any]:
    (run,) = cs.Service(cs.Store(home)).list_runs(task_id=task_id)
    return run


def log_text(home: Path, run_id: str) -> str:
    return (home / cs.LOGS_DIR / f"{run_id}.log").read_text(encoding="utf-8")


def running_run(home: Path, task_id: str) -> dict[str, Any]:
    """Wait until the task has a running run whose claude has begun its session; return it."""

    def found() -> dict[str, Any] | None:
        runs = cs.Service(cs.Store(home)).list_runs(task_id=task_id, status="running")
        return runs[0] if runs else None

    return wait_session(home, wait_for(found, "a running run")["id"])


def job_listed(cli_json: CliJson, job_id: str) -> dict[str, Any]:
    (job,) = [job for job in cli_json("jobs", "list")["jobs"] if job["id"] == job_id]
    return dict(job)


####
# tasks run
####


def test_tasks_run_streams_a_readable_session_and_a_summary(
    home: Path, tmp_path: Path, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, "Say hello.")

    result = cli("tasks", "run", task["id"][:8])

    assert result.code == 0, result.err
    run = only_run(home, task["id"])
    lines = result.out.splitlines()
    assert lines[0] == f"Running task {task['id'][:8]}: Say hello."
    session = f"Session {run['session_id'][:8]} · {fake.MODEL_IDS['sonnet']} · {tmp_path / 'user'}"
    assert lines[1:-1] == [
        session,
        "Looking at the repo.",
        "  → Bash: ls",
        "    README.md ⏎ src",
        "Done.",
        "✓ Done in 3 turns · $0.0123 · 62 in / 17 out tokens · claude 4.2s",
    ]
    assert re.fullmatch(
        rf"Run {run['id'][:8]} success · wall time \d+\.\ds · claude 4\.2s · cost \$0\.0123"
        r" · 62 in / 17 out tokens",
        lines[-1],
    )
    assert (run["status"], run["trigger"]) == ("success", "cli")


def test_tasks_run_exits_1_when_the_run_fails(home: Path, cli: Cli, cli_json: CliJson) -> None:
    task = create_task(cli_json, "[exit=3]")

    result = cli("tasks", "run", task["id"])

    assert result.code == 1
    run = only_run(home, task["id"])
    assert run["status"] == "failed"
    lines = result.out.splitlines()
    assert lines[-2] == "✗ Run failed: claude exited with code 3"
    assert lines[-1].startswith(f"Run {run['id'][:8]} failed · wall time ")
    assert result.out.count("claude exited with code 3") == 1  # said once


def test_tasks_run_raw_prints_the_stream_json_lines(home: Path, cli: Cli, cli_json: CliJson) -> None:
    task = create_task(cli_json)

    result = cli("tasks", "run", task["id"], "--raw")

    assert result.code == 0
    run = only_run(home, task["id"])
    assert result.out.splitlines()[1:-1] == log_text(home, run["id"]).splitlines()


def test_tasks_run_says_clearly_when_claude_is_missing(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json)
    monkeypatch.setenv(cs.CLAUDE_ENV, str(tmp_path / "nowhere" / "claude"))

    result = cli("tasks", "run", task["id"])

    assert result.code == 1
    assert "$CLAUDE_SCHEDULER_CLAUDE is set to" in result.out
    assert only_run(home, task["id"])["status"] == "failed"


def test_ctrl_c_stops_a_foreground_run_and_records_it_cancelled(
    home: Path, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]]
) -> None:
    task = create_task(cli_json, "[hang]")
    proc = processes(home, "tasks", "run", task["id"])
    run = running_run(home, task["id"])

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=WAIT_SECONDS)

    assert proc.returncode == 1
    assert "Stopping…" in err
    assert run_of(home, run["id"])["status"] == "cancelled"
    wait_for(lambda: pid_gone(run["pid"]), "claude to end")


@pytest.mark.parametrize("deleted", ["task", "job"])
def test_a_forced_delete_during_a_foreground_run_ends_it_cleanly(
    home: Path, cli: Cli, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]], deleted: str
) -> None:
    job, (task,) = create_job(cli_json, ["[hang]"])
    proc = processes(home, "tasks", "run", task["id"])
    run = running_run(home, task["id"])

    refused = cli(f"{deleted}s", "delete", (job if deleted == "job" else task)["id"])
    assert (refused.code, "active run" in refused.err) == (1, True)
    assert cli(f"{deleted}s", "delete", (job if deleted == "job" else task)["id"], "--force").code == 0
    _, err = proc.communicate(timeout=WAIT_SECONDS)

    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == f"error: {cs.RUN_DELETED}"
    assert "Traceback" not in err
    wait_for(lambda: pid_gone(run["pid"]), "claude to end")
    assert not (home / cs.RUNS_DIR / f"{task['id']}.json").exists()


def test_a_forced_delete_of_one_task_stops_a_foreground_job_run_there(
    home: Path, cli: Cli, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]]
) -> None:
    job, tasks = create_job(cli_json, ["[hang]", "second", "third"])
    proc = processes(home, "jobs", "run", job["id"])
    run = running_run(home, tasks[0]["id"])
    assert cli("tasks", "delete", tasks[0]["id"], "--force").code == 0
    _, err = proc.communicate(timeout=WAIT_SECONDS)
    assert proc.returncode == 1
    assert err.splitlines()[-2:] == [f"error: {cs.RUN_DELETED}", "Stopped there; not run: second, third."]
    wait_for(lambda: pid_gone(run["pid"]), "claude to end")
    assert [t["name"] for t in cli_json("jobs", "tasks", job["id"])["tasks"]] == ["second", "third"]


def test_a_forced_delete_during_an_engine_run_stops_it_quietly(
    home: Path, cli: Cli, cli_json: CliJson, engine: cs.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    task = create_task(cli_json, "[hang]")
    run = cli_json("tasks", "run", task["id"], "--detach")
    engine.tick()
    running = wait_status(home, run["id"], "running")

    assert cli("tasks", "delete", task["id"], "--force").code == 0
    wait_for(lambda: pid_gone(running["pid"]), "claude to end")
    wait_for(lambda: not engine.active_run_ids, "the engine to let the run go")
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []


def test_tasks_run_detach_hands_the_run_to_the_engine(
    home: Path, cli: Cli, cli_json: CliJson, record: Recorder
) -> None:
    task = create_task(cli_json)

    result = cli("tasks", "run", task["id"], "--detach")

    assert result.code == 0
    run = only_run(home, task["id"])
    first, note = result.out.splitlines()
    assert first == f"Queued run {run['id'][:8]}"
    assert note.startswith("No scheduler engine is running")
    assert (run["status"], run["trigger"]) == ("queued", "cli")
    assert record.entries() == []

    engine = cs.Engine(cs.Store(home), kill_grace=GRACE)
    assert engine.start(thread=False)
    try:
        drive(engine)
    finally:
        engine.stop()
    assert run_of(home, run["id"])["status"] == "success"


def test_tasks_run_detach_json_prints_the_queued_run(home: Path, cli_json: CliJson) -> None:
    task = create_task(cli_json)

    run = cli_json("tasks", "run", task["id"], "--detach")

    assert (run["id"], run["status"]) == (only_run(home, task["id"])["id"], "queued")


####
# runs log and runs stop
####


def test_runs_log_is_readable_and_raw_gives_the_lines_as_logged(
    home: Path, tmp_path: Path, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, "[malformed]")
    cli("tasks", "run", task["id"])
    run = only_run(home, task["id"])

    readable = cli("runs", "log", run["id"][:8])
    raw = cli("runs", "log", run["id"][:8], "--raw")

    assert readable.code == raw.code == 0
    assert raw.out == log_text(home, run["id"])
    assert readable.out.splitlines() == [
        f"Session {run['session_id'][:8]} · {fake.MODEL_IDS['sonnet']} · {tmp_path / 'user'}",
        "Looking at the repo.",
        *fake.MALFORMED_LINES[:4],  # lines that are not JSON objects are shown as they are
        "  → Bash: ls",  # stream_event partials and unknown types are hidden
        "    README.md ⏎ src",
        "Done.",
        "✓ Done in 3 turns · $0.0123 · 62 in / 17 out tokens · claude 4.2s",
    ]


def test_runs_log_of_a_run_without_a_log_says_why(home: Path, cli: Cli, cli_json: CliJson) -> None:
    task = create_task(cli_json)
    queued = cli_json("tasks", "run", task["id"], "--detach")
    result = cli("runs", "log", queued["id"])
    assert (result.code, result.out, result.err) == (0, "", "No log yet: the run is queued.\n")
    cli("runs", "stop", queued["id"])
    result = cli("runs", "log", queued["id"])
    assert result.err == "No log: the run was cancelled (stopped before it started).\n"
    assert cli("runs", "log", queued["id"], "--json").err == ""


def test_runs_log_follow_follows_a_live_run_to_its_end(home: Path, cli: Cli, cli_json: CliJson) -> None:
    engine = cs.Engine(cs.Store(home), kill_grace=GRACE)
    assert engine.start()  # its own thread, on the real clock
    try:
        task = create_task(cli_json, "[delay=0.1]")
        run = cli_json("tasks", "run", task["id"], "--detach")

        followed = cli("runs", "log", run["id"], "--follow")
    finally:
        engine.stop()

    assert followed.code == 0
    assert run_of(home, run["id"])["status"] == "success"
    lines = followed.out.splitlines()
    assert lines[1:3] == ["Looking at the repo.", "  → Bash: ls"]
    assert lines[-1] == "✓ Done in 3 turns · $0.0123 · 62 in / 17 out tokens · claude 4.2s"


def test_runs_stop_from_another_process_cancels_the_engines_run(
    home: Path, cli_json: CliJson, engine: cs.Engine
) -> None:
    task = create_task(cli_json, "[hang]")
    run = cli_json("tasks", "run", task["id"], "--detach")
    engine.tick()
    running = wait_status(home, run["id"], "running")

    stopped = cli_process(home, "runs", "stop", run["id"][:8], env=child_env(home))

    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"Asked run {run['id'][:8]} to stop."
    assert wait_status(home, run["id"], "cancelled")["error"] == "stopped by request"
    wait_for(lambda: pid_gone(running["pid"]), "claude to end")


def test_runs_stop_cancels_a_queued_run_at_once(home: Path, cli: Cli, cli_json: CliJson) -> None:
    task = create_task(cli_json)
    run = cli_json("tasks", "run", task["id"], "--detach")

    result = cli("runs", "stop", run["id"])

    assert result.code == 0
    assert result.out.strip() == f"Run {run['id'][:8]} cancelled - stopped before it started"
    assert run_of(home, run["id"])["status"] == "cancelled"


def test_a_foreground_run_whose_cli_was_killed_is_marked_interrupted_by_the_engine(
    home: Path, cli_json: CliJson, engine: cs.Engine, processes: Callable[..., subprocess.Popen[str]]
) -> None:
    task = create_task(cli_json, "[hang]")
    proc = processes(home, "tasks", "run", task["id"])
    run = running_run(home, task["id"])

    kill_foreground(proc)
    assert not pid_gone(run["pid"])  # claude outlived the CLI that started it
    engine.tick()

    interrupted = wait_status(home, run["id"], "interrupted")
    assert f"the process that ran it ({run['owner']}) ended unexpectedly" in interrupted["error"]
    wait_for(lambda: pid_gone(run["pid"]), "claude to end")


def test_stopping_a_run_whose_process_died_ends_it_without_an_engine(
    home: Path, cli: Cli, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]]
) -> None:
    task = create_task(cli_json, "[hang]")
    proc = processes(home, "tasks", "run", task["id"])
    run = running_run(home, task["id"])
    kill_foreground(proc)

    result = cli("runs", "stop", run["id"])

    assert result.code == 0
    assert run_of(home, run["id"])["status"] in ("cancelled", "interrupted")
    wait_for(lambda: pid_gone(run["pid"]), "claude to end")


def test_ctrl_c_on_a_foreground_job_run_stops_it_and_the_rest_never_start(
    home: Path, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]], record: Recorder
) -> None:
    job, (first, second) = create_job(cli_json, ["[hang] first", "second"])
    proc = processes(home, "jobs", "run", job["id"])
    run = running_run(home, first["id"])

    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=WAIT_SECONDS)

    assert proc.returncode == 1
    assert run_of(home, run["id"])["status"] == "cancelled"
    assert cs.Service(cs.Store(home)).list_runs(task_id=second["id"]) == []
    assert record.prompts() == ["[hang] first"]


def test_ctrl_c_stops_a_foreground_job_run_even_with_continue_on_failure(
    home: Path, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]], record: Recorder
) -> None:
    job, (first, second) = create_job(cli_json, ["[hang] first", "second"])
    proc = processes(home, "jobs", "run", job["id"], "--continue-on-failure")
    run = running_run(home, first["id"])

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=WAIT_SECONDS)

    assert proc.returncode == 1
    assert err.splitlines()[-1] == "Stopped there; not run: second."
    assert run_of(home, run["id"])["status"] == "cancelled"
    assert cs.Service(cs.Store(home)).list_runs(task_id=second["id"]) == []
    assert record.prompts() == ["[hang] first"]


@pytest.mark.parametrize("deleted", ["task", "job"])
def test_a_forced_delete_ends_the_session_of_a_run_whose_owner_died(
    home: Path, cli: Cli, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]], deleted: str
) -> None:
    job, (task,) = create_job(cli_json, ["[hang][ignore_term]"])
    proc = processes(home, "tasks", "run", task["id"])
    run = running_run(home, task["id"])
    kill_foreground(proc)
    assert not pid_gone(run["pid"])

    result = cli(f"{deleted}s", "delete", (job if deleted == "job" else task)["id"], "--force")

    assert result.code == 0
    assert pid_gone(run["pid"])  # ended before the command returned, SIGKILL after the grace
    assert cs.Service(cs.Store(home)).list_runs() == []


####
# jobs run and jobs stop
####


def test_jobs_run_in_the_foreground_runs_tasks_in_order_and_stops_at_a_failure(
    home: Path, cli: Cli, cli_json: CliJson, record: Recorder
) -> None:
    job, tasks = create_job(cli_json, ["first", "second [exit=1]", "third"])

    result = cli("jobs", "run", job["id"][:8])

    assert result.code == 1
    started = [line for line in result.out.splitlines() if line.startswith("Running task")]
    assert started == [f"Running task {task['id'][:8]}: {task['name']}" for task in tasks[:2]]
    assert record.prompts() == ["first", "second [exit=1]"]
    assert result.err.splitlines()[-1] == "Stopped there; not run: third."
    assert only_run(home, tasks[0]["id"])["trigger"] == "job"
    listed = job_listed(cli_json, job["id"])
    assert (listed["status"], listed["progress"]["text"]) == ("failed", "1/3")


def test_jobs_run_continue_on_failure_runs_every_task(cli: Cli, cli_json: CliJson, record: Recorder) -> None:
    job, _ = create_job(cli_json, ["first", "second [exit=1]", "third"])

    result = cli("jobs", "run", job["id"], "--continue-on-failure")

    assert result.code == 1
    assert record.prompts() == ["first", "second [exit=1]", "third"]
    assert job_listed(cli_json, job["id"])["progress"]["text"] == "2/3"


def test_jobs_run_exits_0_and_completes_the_job_when_all_succeed(cli: Cli, cli_json: CliJson) -> None:
    job, _ = create_job(cli_json, ["first", "second"])

    assert cli("jobs", "run", job["id"]).code == 0

    listed = job_listed(cli_json, job["id"])
    assert (listed["status"], listed["progress"]["percent"]) == ("completed", 100)


def test_jobs_run_detach_queues_the_job_for_the_engine(
    home: Path, cli: Cli, cli_json: CliJson, record: Recorder
) -> None:
    job, _ = create_job(cli_json, ["first", "second"])

    result = cli("jobs", "run", job["id"], "--detach")

    assert result.code == 0
    head, note = result.out.splitlines()
    assert re.fullmatch(r"Handed to the engine: job run [0-9a-f]{8}, 2 tasks one after another\.", head)
    assert note.startswith("No scheduler engine is running")
    assert record.entries() == []
    assert job_listed(cli_json, job["id"])["status"] == "in_progress"

    engine = cs.Engine(cs.Store(home), kill_grace=GRACE)
    assert engine.start(thread=False)
    try:
        drive(engine)
    finally:
        engine.stop()
    assert record.prompts() == ["first", "second"]
    assert job_listed(cli_json, job["id"])["status"] == "completed"


def test_jobs_run_hands_the_job_to_a_running_engine(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job, _ = create_job(cli_json, ["first", "second"])

    result = cli("jobs", "run", job["id"])

    assert result.code == 0
    head, note = result.out.splitlines()
    assert head.startswith("Handed to the engine: job run ")
    assert note == f"Follow it with: runs list --job {job['id'][:8]}"
    assert record.entries() == []  # nothing ran in the CLI itself
    drive(engine)
    assert record.prompts() == ["first", "second"]


def test_jobs_stop_stops_the_current_run_and_the_rest_never_start(
    home: Path, cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job, (first, second) = create_job(cli_json, ["[hang] first", "second"])
    cli_json("jobs", "run", job["id"])
    engine.tick()
    run = running_run(home, first["id"])
    listed = job_listed(cli_json, job["id"])
    assert (listed["status"], listed["progress"]["running"]) == ("in_progress", 1)

    result = cli("jobs", "stop", job["id"][:8])

    assert (result.code, result.out.strip()) == (0, "Asked 1 run to stop.")
    wait_status(home, run["id"], "cancelled")
    drive(engine)
    assert cs.Service(cs.Store(home)).list_runs(task_id=second["id"]) == []
    assert record.prompts() == ["[hang] first"]
    assert job_listed(cli_json, job["id"])["status"] == "failed"
    assert cli("jobs", "stop", job["id"]).out.strip() == "Nothing was running."


def test_jobs_run_refuses_a_job_that_is_already_running(cli: Cli, cli_json: CliJson) -> None:
    job, _ = create_job(cli_json, ["first"])
    assert cli("jobs", "run", job["id"], "--detach").code == 0

    again = cli("jobs", "run", job["id"], "--detach")

    assert again.code == 1
    assert again.err.startswith("error: the job is already running")


####
# engine status, pause and resume
####


def test_engine_status_says_whether_and_where_the_engine_runs(
    cli: Cli, cli_json: CliJson, home: Path
) -> None:
    assert cli("init").code == 0
    assert cli("engine", "status").out.startswith("Engine: not running")
    idle = cli_json("engine", "status")
    assert (idle["running"], idle["paused"], idle["owner"], idle["here"]) == (False, False, None, False)

    engine = cs.Engine(cs.Store(home))
    assert engine.start(thread=False)
    try:
        status = cli_json("engine", "status")
        text = cli("engine", "status").out
    finally:
        engine.stop()

    assert (status["running"], status["here"], status["owner"]["pid"]) == (True, True, os.getpid())
    assert text.startswith(f"Engine: running in process {os.getpid()} since ")


def test_engine_pause_holds_new_runs_until_resume(
    home: Path, cli: Cli, cli_json: CliJson, engine: cs.Engine
) -> None:
    paused = cli("engine", "pause")
    assert paused.code == 0
    assert "Paused: no new runs start until `engine resume`." in paused.out
    task = create_task(cli_json)

    detached = cli("tasks", "run", task["id"], "--detach")
    engine.tick()

    assert "Paused: it will start when the engine is resumed." in detached.out
    run = only_run(home, task["id"])
    assert run["status"] == "queued"
    assert cli_json("engine", "status")["paused"] is True

    resumed = cli_json("engine", "resume")
    drive(engine)

    assert resumed["paused"] is False
    assert run_of(home, run["id"])["status"] == "success"


def limited_task(cli_json: CliJson, reset: datetime, *options: str) -> dict[str, Any]:
    """A task whose session hits the subscription's usage limit, resetting at `reset`."""
    return create_task(cli_json, f"[usage_limit={int(reset.timestamp())}]", *options)


def shown_until(local: datetime, before: datetime) -> set[str]:
    """How the CLI shows the coming moment `local` when it read its clock between `before`
    and now: the time alone on the day it is, else with the date. Two forms only when a
    midnight of `local`'s zone passed in between."""
    days = {moment.astimezone(local.tzinfo).date() for moment in (before, datetime.now(UTC))}
    return {local.strftime("%H:%M" if local.date() == day else "%Y-%m-%d %H:%M") for day in days}


def test_a_usage_limit_holds_the_engine_until_its_reset_and_resume_lifts_it(
    home: Path, cli: Cli, cli_json: CliJson, engine: cs.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Europe/Amsterdam")
    before = datetime.now(UTC)
    reset = before.replace(microsecond=0) + timedelta(hours=2)
    limited = limited_task(cli_json, reset, "--retries", "2", "--retry-delay", "0")
    cli("tasks", "run", limited["id"], "--detach")
    drive(engine)

    (run,) = cs.Service(cs.Store(home)).list_runs(task_id=limited["id"])  # not retried
    assert (run["status"], run["failure_kind"]) == ("failed", "usage_limit")
    hold = cli_json("engine", "status")["hold"]
    assert (hold["until"], hold["kind"], hold["run_id"]) == (
        cs.fmt_time(reset + timedelta(seconds=60)),
        "usage_limit",
        run["id"],
    )
    local = (reset + timedelta(seconds=60)).astimezone(ZoneInfo("Europe/Amsterdam"))
    assert (hold["until_local"], hold["timezone"]) == (local.isoformat(), "Europe/Amsterdam")
    status = cli("engine", "status").out
    reason = f"usage limit: {fake.USAGE_LIMIT_TEXT}"
    assert any(
        f"\nHolding new runs until {when} (Europe/Amsterdam) — {reason}\n" in status
        for when in shown_until(local, before)
    )

    waiting = create_task(cli_json, "waiting")
    queued = cli("tasks", "run", waiting["id"], "--detach")
    whens = shown_until(local, before)
    own = create_task(cli_json, "own account", "--env", "ANTHROPIC_API_KEY=sk-its-own")
    cli("tasks", "run", own["id"], "--detach")
    drive(engine)

    assert any(f"Holding new runs until {when}" in queued.out for when in whens)
    assert only_run(home, waiting["id"])["status"] == "queued"
    assert only_run(home, own["id"])["status"] == "success"

    resumed = cli("engine", "resume")
    drive(engine)

    assert resumed.out.startswith("Lifted the usage-limit hold: runs start again")
    assert "Holding" not in resumed.out
    assert only_run(home, waiting["id"])["status"] == "success"
    assert cli_json("engine", "status")["hold"] is None
    assert cli("engine", "resume").out.startswith("Nothing to lift: the engine was neither paused nor")


def test_a_foreground_run_sets_the_hold_and_one_during_it_warns_then_runs(
    home: Path, cli: Cli, cli_json: CliJson, record: Recorder
) -> None:
    reset = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    first = cli("tasks", "run", limited_task(cli_json, reset)["id"])
    assert first.code == 1
    assert cli_json("engine", "status")["hold"]["until"] == cs.fmt_time(reset + timedelta(seconds=60))

    second = cli("tasks", "run", create_task(cli_json, "asked for")["id"])

    assert second.code == 0
    assert "Note: a usage-limit hold is on until " in second.err
    assert second.err.splitlines()[0].endswith("; this run may hit the same limit.")
    assert record.prompts()[-1] == "asked for"


def test_jobs_list_json_shows_a_jobs_progress(cli: Cli, cli_json: CliJson) -> None:
    job, _ = create_job(cli_json, ["first", "second [exit=1]"])
    before = job_listed(cli_json, job["id"])["progress"]

    cli("jobs", "run", job["id"], "--continue-on-failure")

    after = job_listed(cli_json, job["id"])["progress"]
    assert (before["never_run"], before["text"], before["percent"]) == (2, "0/2", 0)
    assert (after["success"], after["failed"], after["text"], after["percent"]) == (1, 1, "1/2", 50)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_foreground_run_ended_by_a_signal_is_recorded_and_its_claude_ends(
    home: Path, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]], signame: str
) -> None:
    task = create_task(cli_json, "[hang]")
    proc = processes(home, "tasks", "run", task["id"])
    run = running_run(home, task["id"])

    proc.send_signal(getattr(signal, signame))
    proc.communicate(timeout=WAIT_SECONDS)

    assert proc.returncode == 1
    assert run_of(home, run["id"])["status"] == "cancelled"
    wait_for(lambda: pid_gone(run["pid"]), "claude to end")


def test_json_output_of_a_foreground_run_is_the_run_and_of_a_log_its_chunks(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, "Say hi")
    result = cli("tasks", "run", task["id"], "--json")
    assert result.code == 0, result.err
    run = result.json()
    assert run["status"] == "success" and run["task_id"] == task["id"]

    chunk = cli_json("runs", "log", run["id"])
    assert chunk["run_id"] == run["id"] and chunk["active"] is False
    assert chunk["next_offset"] == len(chunk["data"].encode())
    assert '"type":"result"' in chunk["data"].replace(" ", "")


def test_output_cut_short_by_the_reader_is_no_traceback(home: Path, cli: Cli, cli_json: CliJson) -> None:
    task = create_task(cli_json, "Talk a lot [lines=3000]")
    run = cli("tasks", "run", task["id"], "--json").json()
    listing = subprocess.run(
        f"{sys.executable} {SCRIPT} cli runs log {run['id']} | head -n 1",
        shell=True,
        env=child_env(home),
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert listing.stdout.startswith("Session ")
    assert listing.stderr == ""


####
# Every process a session started ends with it
####


def daemon_pid(record: Recorder) -> tuple[Path, Callable[[], int]]:
    """A pid file for the fake claude's `[daemon=PATH]`, and a wait for the pid in it."""
    path = record.grandchild_file("daemon.pid")
    return path, lambda: int(wait_for(lambda: path.exists() and path.read_text(), "the daemon to start"))


@pytest.mark.skipif(sys.platform != "linux", reason="sessions are tracked beyond their group on Linux")
def test_a_daemon_claude_left_running_ends_with_its_run(
    home: Path, cli: Cli, cli_json: CliJson, record: Recorder
) -> None:
    path, daemon = daemon_pid(record)
    task = create_task(cli_json, f"Say hello. [daemon={path}]")

    result = cli("tasks", "run", task["id"])

    assert result.code == 0
    assert pid_gone(daemon())
    run = only_run(home, task["id"])
    assert run["status"] == "success"
    assert (
        "[scheduler] processes started by claude were still running; terminating them"
        in log_text(home, run["id"]).splitlines()
    )


@pytest.mark.skipif(sys.platform != "linux", reason="sessions are tracked beyond their group on Linux")
def test_a_daemon_out_of_claudes_process_group_ends_at_a_timeout(
    home: Path, cli: Cli, cli_json: CliJson, record: Recorder
) -> None:
    path, daemon = daemon_pid(record)
    # Long enough for claude to start its daemon first (a loaded machine may take seconds).
    task = create_task(cli_json, f"[hang][daemon={path}]", "--timeout", "10s")

    result = cli("tasks", "run", task["id"])

    assert result.code == 1
    assert only_run(home, task["id"])["status"] == "timeout"
    assert pid_gone(daemon())


@pytest.mark.skipif(sys.platform != "linux", reason="sessions are tracked beyond their group on Linux")
def test_stopping_an_orphaned_run_ends_its_daemon_too(
    home: Path, cli: Cli, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]], record: Recorder
) -> None:
    path, daemon = daemon_pid(record)
    task = create_task(cli_json, f"[hang][daemon={path}]")
    proc = processes(home, "tasks", "run", task["id"])
    run = running_run(home, task["id"])
    daemon_id = daemon()
    kill_foreground(proc)

    assert cli("runs", "stop", run["id"]).code == 0

    assert run_of(home, run["id"])["status"] == "interrupted"
    assert pid_gone(run["pid"]) and pid_gone(daemon_id)


def test_stopping_an_orphaned_run_that_ignores_sigterm_leaves_the_store_free_meanwhile(
    home: Path,
    cli_json: CliJson,
    processes: Callable[..., subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task = create_task(cli_json, "[hang][ignore_term]")
    proc = processes(home, "tasks", "run", task["id"])
    run = running_run(home, task["id"])
    kill_foreground(proc)
    waiting = threading.Event()
    end_sessions = cs.end_stray_sessions

    def end_after_a_long_grace(sessions: Iterable[cs.StraySession], grace: float = 0) -> None:
        waiting.set()
        end_sessions(sessions, 3600.0)  # claude ignores the SIGTERM: this waits until it is killed

    monkeypatch.setattr(cs, "end_stray_sessions", end_after_a_long_grace)
    stopper = threading.Thread(target=cs.Service(cs.Store(home)).stop_run, args=(run["id"],), daemon=True)
    stopper.start()
    assert waiting.wait(WAIT_SECONDS)

    created = cli_process(home, "jobs", "create", "--name", "meanwhile", env=child_env(home))

    assert created.returncode == 0, created.stderr
    assert stopper.is_alive(), "the stop ended before its grace period"
    assert run_of(home, run["id"])["status"] == "running"
    os.kill(run["pid"], signal.SIGKILL)  # what the grace period would end in
    stopper.join(WAIT_SECONDS)
    assert not stopper.is_alive()
    run_after = run_of(home, run["id"])
    assert run_after["status"] == "interrupted"
    assert run_after["error"].endswith("its Claude process was still running and has been ended")


def orphaned_runs(
    home: Path, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]], prompt: str, count: int
) -> list[dict[str, Any]]:
    """`count` foreground runs whose CLI process was SIGKILLed while claude ran."""
    started = []
    for n in range(count):
        task = create_task(cli_json, f"{prompt} {n}")
        started.append((processes(home, "tasks", "run", task["id"], "--now"), task))
    runs = []
    for proc, task in started:
        runs.append(running_run(home, task["id"]))
        kill_foreground(proc)
    return runs


def recover_in_a_thread(home: Path, grace: float) -> cs.Engine:
    engine = cs.Engine(cs.Store(home), kill_grace=grace)
    starter = threading.Thread(target=engine.start, kwargs={"thread": False}, daemon=True)
    starter.start()
    starter.join(WAIT_SECONDS)
    assert not starter.is_alive(), "recovery waits on sessions that have ended"
    return engine


def test_recovery_counts_a_session_ended_as_a_zombie_as_ended(
    home: Path, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]]
) -> None:
    """Nobody may reap the orphans' claude (init in a container): a zombie holds nothing,
    so recovery does not wait out the grace period for it. This test is the orphans'
    reaper and does not reap them until the end."""
    with not_reaping_orphans():
        runs = orphaned_runs(home, cli_json, processes, "[hang]", 3)

        engine = recover_in_a_thread(home, grace=3600.0)
        engine.stop()

        for run in runs:
            assert run_of(home, run["id"])["status"] == "interrupted"
            assert pid_gone(run["pid"])
            with contextlib.suppress(ChildProcessError):
                os.waitpid(run["pid"], 0)


PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def not_reaping_orphans() -> Iterator[None]:
    """Make this process the reaper of orphaned descendants (Linux), which it leaves as
    zombies; skip where that is not possible."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        pytest.skip("no libc")
    if sys.platform != "linux" or libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("cannot become a subreaper")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_recovery_ends_many_orphans_together_not_one_grace_period_after_another(
    home: Path, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]]
) -> None:
    grace = 3.0
    runs = orphaned_runs(home, cli_json, processes, "[hang][ignore_term]", 3)

    engine = recover_in_a_thread(home, grace)
    engine.stop()

    ended = [run_of(home, run["id"]) for run in runs]
    assert [run["status"] for run in ended] == ["interrupted"] * 3
    assert all(pid_gone(run["pid"]) for run in runs)
    finished = sorted(cs.parse_time(run["finished_at"], "finished_at") for run in ended)
    # One after another, each session would wait out its own grace: the first and the last
    # would end at least 2 x grace apart. Together they end within one, however loaded the
    # machine is while the three are recorded.
    assert (finished[-1] - finished[0]).total_seconds() < 2 * grace


####
# Output: read to the end, in bounded memory
####


def test_a_detached_process_writing_after_its_run_ended_is_read_without_an_error(
    home: Path, cli_json: CliJson, engine: cs.Engine, record: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    path = record.grandchild_file("writer.pid")
    task = create_task(cli_json, f"Say hello. [writer={path}]")
    queued = cli_json("tasks", "run", task["id"], "--detach")
    engine.tick()

    run = wait_status(home, queued["id"], "success")

    count_file = Path(f"{path}.count")
    ended_at = int(count_file.read_text())
    # Past what a pipe buffers: the writer goes on only while someone reads.
    wait_for(lambda: int(count_file.read_text()) > ended_at + 256, "the writer to go on writing")
    assert errors == []
    assert (
        "[scheduler] a detached process still holds claude's output; stopped reading it"
        in log_text(home, run["id"]).splitlines()
    )


LONG_LINE_BYTES = 96 << 20


def test_a_huge_output_line_is_logged_whole_but_not_held_whole_in_memory(
    home: Path, cli_json: CliJson, tmp_path: Path
) -> None:
    task = create_task(cli_json, f"Say hello. [long_line={LONG_LINE_BYTES}]")
    measure = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    argv = [sys.executable, "-c", measure, sys.executable, str(SCRIPT), "cli", "tasks", "run", task["id"]]

    measured = subprocess.run(
        argv, env=child_env(home), capture_output=True, text=True, timeout=120, check=False
    )

    assert measured.returncode == 0, measured.stderr
    peak_bytes = int(measured.stdout) * 1024  # Linux counts kilobytes
    assert peak_bytes < LONG_LINE_BYTES  # holding it whole takes several times that
    run = only_run(home, task["id"])
    assert run["status"] == "success"
    with open(home / cs.LOGS_DIR / f"{run['id']}.log", "rb") as log:
        longest = max(len(line) for line in log)
    assert longest > LONG_LINE_BYTES


####
# Foreground runs: the cap, and a watchdog for a CLI that dies
####


def test_a_foreground_run_whose_cli_is_killed_is_ended_and_recorded_without_any_engine(
    home: Path, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]]
) -> None:
    task = create_task(cli_json, "[hang][ignore_term]", "--timeout", "10m")
    proc = processes(home, "tasks", "run", task["id"])
    run = running_run(home, task["id"])

    proc.kill()
    proc.wait(WAIT_SECONDS)

    interrupted = wait_status(home, run["id"], "interrupted")
    assert interrupted["error"] == (
        f"the process that ran it ({run['owner']}) ended unexpectedly; "
        "its Claude process was still running and has been ended"
    )
    wait_for(lambda: pid_gone(run["pid"]), "claude to end")


def test_a_foreground_run_waits_for_a_free_slot_under_max_concurrent_runs(
    home: Path, cli: Cli, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]], record: Recorder
) -> None:
    assert cli("settings", "set", "max_concurrent_runs", "1").code == 0
    first = create_task(cli_json, "[hang] first")
    second = create_task(cli_json, "second")
    holder = processes(home, "tasks", "run", first["id"])
    running = running_run(home, first["id"])
    waiter = processes(home, "tasks", "run", second["id"])
    assert waiter.stderr is not None
    assert waiter.stderr.readline() == (
        "Waiting: 1 session already running (max_concurrent_runs is 1); --now starts it at once.\n"
    )
    assert cs.Service(cs.Store(home)).list_runs(task_id=second["id"]) == []

    assert cli("runs", "stop", running["id"]).code == 0
    holder.communicate(timeout=WAIT_SECONDS)
    waiter.communicate(timeout=WAIT_SECONDS)

    assert waiter.returncode == 0
    assert only_run(home, second["id"])["status"] == "success"
    assert record.prompts() == ["[hang] first", "second"]


def test_a_foreground_run_with_now_starts_at_once_past_the_cap(
    home: Path, cli: Cli, cli_json: CliJson, processes: Callable[..., subprocess.Popen[str]]
) -> None:
    assert cli("settings", "set", "max_concurrent_runs", "1").code == 0
    first = create_task(cli_json, "[hang] first")
    second = create_task(cli_json, "second")
    processes(home, "tasks", "run", first["id"])
    running_run(home, first["id"])

    result = cli("tasks", "run", second["id"], "--now")

    assert (result.code, "Waiting" in result.err) == (0, False)
    assert only_run(home, second["id"])["status"] == "success"


def test_the_engine_counts_a_foreground_run_against_the_cap(
    home: Path,
    cli: Cli,
    cli_json: CliJson,
    engine: cs.Engine,
    processes: Callable[..., subprocess.Popen[str]],
) -> None:
    assert cli("settings", "set", "max_concurrent_runs", "1").code == 0
    first = create_task(cli_json, "[hang] first")
    second = create_task(cli_json, "second")
    processes(home, "tasks", "run", first["id"])
    running = running_run(home, first["id"])
    queued = cli_json("tasks", "run", second["id"], "--detach")

    engine.tick()
    assert run_of(home, queued["id"])["status"] == "queued"

    assert cli("runs", "stop", running["id"]).code == 0
    wait_status(home, running["id"], "cancelled")
    engine.tick()
    assert wait_status(home, queued["id"], "success")["trigger"] == "cli"


def live_watchdogs() -> list[int]:
    """This process's children that are foreground-run watchdogs and not yet ended (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # it ended while we looked
        if b"claude_scheduler_watchdog" in command and int(parent) == os.getpid() and state not in "ZX":
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_foreground_runs_watchdog_ends_with_the_run(cli: Cli, cli_json: CliJson) -> None:
    """Each step's watchdog is let go when its run is recorded, not when the CLI exits
    (a long `jobs run` would otherwise keep one process per step)."""
    task = create_task(cli_json)
    before = set(live_watchdogs())  # another test's, ending in its own time, are not this run's
    assert cli("tasks", "run", task["id"]).code == 0
    wait_for(lambda: not set(live_watchdogs()) - before, "the run's watchdog to end")


def test_a_ctrl_c_at_the_terminal_leaves_the_watchdog_to_end_the_run_if_the_cli_then_dies(
    home: Path, cli_json: CliJson
) -> None:
    """A terminal's Ctrl-C goes to its whole foreground group: the watchdog is not in it, so
    when the CLI is killed while it stops a claude that ignores SIGTERM, the run still ends."""
    task = create_task(cli_json, "[hang][ignore_term]", "--timeout", "10m")
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "cli", "tasks", "run", task["id"]],
        env=child_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_ctrl_c,
        start_new_session=True,  # the group a terminal's Ctrl-C goes to
    )
    try:
        run = running_run(home, task["id"])
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.stderr is not None
        while "Stopping" not in (line := proc.stderr.readline()):
            assert line, "the CLI ended without stopping the run"
        proc.kill()
        proc.wait(WAIT_SECONDS)
        ended = wait_for(
            lambda: run_of(home, run["id"])["status"] not in ("running", "queued"), "the run to end"
        )
        assert ended
        wait_for(lambda: pid_gone(run["pid"]), "claude to end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(WAIT_SECONDS)
