"""The run engine, driven by hand: an injected clock, `Engine.start(thread=False)` and `tick()`.

Runs go through the fake claude (tests/fake_claude.py), whose prompt markers shape each
session and whose `$FAKE_CLAUDE_RECORD` file tells what it was started with.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import child_env
from run_helpers import (
    T0,
    WAIT_SECONDS,
    FakeClock,
    Recorder,
    at,
    cli_process,
    drive,
    pid_gone,
    run_of,
    stamp,
    wait_for,
    wait_status,
)

import claude_scheduler as cs
import fake_claude as fake

GRACE = 0.5  # seconds between SIGTERM and SIGKILL for the engines started here
SONNET_ID = fake.MODEL_IDS["sonnet"]
EVERY_MINUTE = {"type": "interval", "every_seconds": 60}
HOURLY = {"type": "interval", "every_seconds": 3600}
StartEngine = Callable[..., cs.Engine]


pytestmark = pytest.mark.usefixtures("record")  # every session is recorded, leftovers killed


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(home: Path, clock: FakeClock) -> cs.Store:
    return cs.Store(home, clock=clock)


@pytest.fixture
def service(store: cs.Store) -> cs.Service:
    return cs.Service(store)


@pytest.fixture
def engines() -> Iterator[StartEngine]:
    """Start engines (thread=False) that are stopped at the end of the test."""
    started: list[cs.Engine] = []

    def start(store: cs.Store, **options: Any) -> cs.Engine:
        engine = cs.Engine(store, kill_grace=GRACE, **options)
        assert engine.start(thread=False)
        started.append(engine)
        return engine

    yield start
    for engine in reversed(started):
        engine.stop(timeout=WAIT_SECONDS)


@pytest.fixture
def engine(engines: StartEngine, store: cs.Store) -> cs.Engine:
    return engines(store)


def new_task(service: cs.Service, prompt: str = "Say hello.", **fields: Any) -> dict[str, Any]:
    return service.create_task({"name": fields.pop("name", prompt[:40]), "prompt": prompt, **fields})


def run_task(service: cs.Service, engine: cs.Engine, task: dict[str, Any]) -> dict[str, Any]:
    """Run a task by hand through the engine, to its end."""
    run = service.request_run(task["id"])
    drive(engine)
    return service.get_run(run["id"])


def history(home: Path, task_id: str) -> list[dict[str, Any]]:
    """A task's runs in the order they were created, as a fresh Store reads them."""
    return [run.to_dict() for run in cs.Store(home).runs_of(task_id)]


def log_lines(home: Path, run_id: str) -> list[str]:
    return (home / cs.LOGS_DIR / f"{run_id}.log").read_text(encoding="utf-8").splitlines()


def job_with_tasks(service: cs.Service, prompts: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    job = service.create_job({"name": "Release"})
    return job, [new_task(service, prompt, job_id=job["id"]) for prompt in prompts]


def listed_job(home: Path, job_id: str) -> dict[str, Any]:
    (job,) = [job for job in cs.Service(cs.Store(home)).list_jobs() if job["id"] == job_id]
    return job


####
# Executing a run
####


def test_a_run_records_session_model_cost_tokens_turns_and_result(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    task = new_task(service)
    queued = service.request_run(task["id"])
    assert queued["status"] == "queued"

    drive(engine)

    run = run_of(home, queued["id"])
    (session,) = record.entries()
    init = json.loads(log_lines(home, run["id"])[0])
    assert run["status"] == "success"
    assert run["exit_code"] == 0
    assert run["session_id"] == init["session_id"]
    assert run["model"] == SONNET_ID
    assert (run["cost_usd"], run["input_tokens"], run["output_tokens"]) == (0.0123, 62, 17)
    assert (run["num_turns"], run["result"], run["error"]) == (3, "Done.", None)
    assert run["pid"] == session["pid"]
    assert run["owner"] == cs.process_owner()
    assert run["owner"].startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert run["started_at"] == run["finished_at"] == stamp(0)  # the injected clock
    assert (run["trigger"], run["attempt"]) == ("manual", 1)


def test_claude_gets_the_exact_command_line_and_the_prompt_on_stdin(
    service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    prompt = "--verbose is text here, not an option\nList the files."
    task = new_task(
        service,
        prompt,
        model="opus",
        permission_mode="acceptEdits",
        allowed_tools=["Bash", "Read"],
        disallowed_tools=["Write"],
        max_turns=5,
        append_system_prompt="Answer briefly.",
    )

    assert run_task(service, engine, task)["status"] == "success"

    (session,) = record.entries()
    assert session["argv"] == [
        *("-p", "--output-format", "stream-json", "--verbose"),
        *("--model", "opus", "--permission-mode", "acceptEdits"),
        *("--allowedTools", "Bash", "Read", "--disallowedTools", "Write"),
        *("--max-turns", "5", "--append-system-prompt", "Answer briefly."),
    ]
    assert session["stdin"] == prompt


def test_resume_mode_continues_the_tasks_last_session(
    service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    task = new_task(service, session_mode="resume")

    first = run_task(service, engine, task)
    second = run_task(service, engine, task)

    before, after = (session["argv"] for session in record.entries())
    assert "--resume" not in before
    assert after[-2:] == ["--resume", first["session_id"]]
    assert second["session_id"] == first["session_id"]
    assert service.get_task(task["id"])["last_session_id"] == first["session_id"]


def test_new_session_mode_never_resumes(service: cs.Service, engine: cs.Engine, record: Recorder) -> None:
    task = new_task(service, session_mode="new")

    first = run_task(service, engine, task)
    second = run_task(service, engine, task)

    assert all("--resume" not in session["argv"] for session in record.entries())
    assert first["session_id"] != second["session_id"]


def test_the_working_directory_is_the_tasks_then_the_jobs_then_home(
    tmp_path: Path, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    task_dir, job_dir, user_home = tmp_path / "task-dir", tmp_path / "job-dir", tmp_path / "user"
    for folder in (task_dir, job_dir, user_home / "proj"):
        folder.mkdir(parents=True, exist_ok=True)
    job = service.create_job({"name": "Docs", "working_directory": str(job_dir)})
    prompts = {
        "own": {"job_id": job["id"], "working_directory": str(task_dir)},
        "inherited": {"job_id": job["id"]},
        "unassigned": {},
        "tilde": {"working_directory": "~/proj"},
    }
    for prompt, fields in prompts.items():
        service.request_run(new_task(service, prompt, **fields)["id"])

    drive(engine)

    cwd = {session["stdin"]: session["cwd"] for session in record.entries()}
    assert cwd == {
        "own": str(task_dir),
        "inherited": str(job_dir),
        "unassigned": str(user_home),
        "tilde": str(user_home / "proj"),
    }


@pytest.mark.parametrize("set_on", ["task", "job"])
def test_a_missing_working_directory_fails_the_run_without_starting_claude(
    tmp_path: Path, home: Path, service: cs.Service, engine: cs.Engine, record: Recorder, set_on: str
) -> None:
    missing = tmp_path / "no-such-folder"
    job = service.create_job(
        {"name": "Docs", **({"working_directory": str(missing)} if set_on == "job" else {})}
    )
    fields = {"working_directory": str(missing)} if set_on == "task" else {}
    task = new_task(service, job_id=job["id"], **fields)

    run = run_task(service, engine, task)

    assert run["status"] == "failed"
    assert str(missing) in run["error"]
    assert "does not exist" in run["error"]
    assert f"set by the {set_on}" in run["error"]
    assert record.entries() == []  # never a silent fallback to another folder
    assert log_lines(home, run["id"]) == [f"[scheduler] run failed: {run['error']}"]


def test_the_tasks_env_reaches_claude_on_top_of_the_schedulers(
    monkeypatch: pytest.MonkeyPatch,
    store: cs.Store,
    service: cs.Service,
    engines: StartEngine,
    record: Recorder,
) -> None:
    monkeypatch.setenv("FAKE_FROM_SCHEDULER", "inherited")
    monkeypatch.setenv("FAKE_OVERRIDDEN", "by the scheduler")
    engine = engines(store)
    task = new_task(service, env={"FAKE_TASK_FLAVOUR": "mint", "FAKE_OVERRIDDEN": "by the task"})

    run_task(service, engine, task)

    env = record.entries()[0]["env"]
    assert env["FAKE_TASK_FLAVOUR"] == "mint"
    assert env["FAKE_FROM_SCHEDULER"] == "inherited"
    assert env["FAKE_OVERRIDDEN"] == "by the task"


def test_the_log_has_every_stdout_line_and_every_stderr_line_marked(
    home: Path, service: cs.Service, engine: cs.Engine
) -> None:
    extra, flood = 400, 20_000
    task = new_task(service, f"[lines={extra}][stderr={flood}]")

    run = run_task(service, engine, task)

    lines = log_lines(home, run["id"])
    stderr = [line for line in lines if line.startswith("[stderr] ")]
    stdout = [json.loads(line) for line in lines if not line.startswith("[stderr] ")]
    assert run["status"] == "success"
    assert [line["type"] for line in stdout] == [
        *("system", "assistant", "assistant", "user"),
        *["assistant"] * extra,
        *("assistant", "result"),
    ]
    progress = [line["message"]["content"][0]["text"] for line in stdout[4 : 4 + extra]]
    assert progress == [f"Progress line {n}: " + "x" * 80 for n in range(extra)]
    assert stderr == ["[stderr] " + fake.STDERR_LINE.rstrip("\n")] * (flood // len(fake.STDERR_LINE) + 1)


@pytest.mark.parametrize(
    ("prompt", "exit_code", "error"),
    [
        ("[exit=3]", 3, "claude exited with code 3"),
        ("[is_error]", 1, "claude reported error_during_execution (exited with code 1)"),
        ("[no_result][exit=0]", 0, "claude exited with code 0 and printed no result"),
    ],
)
def test_a_failed_run_keeps_the_real_exit_code_and_says_why(
    service: cs.Service, engine: cs.Engine, prompt: str, exit_code: int, error: str
) -> None:
    run = run_task(service, engine, new_task(service, prompt))

    assert (run["status"], run["exit_code"], run["error"]) == ("failed", exit_code, error)


def test_a_run_past_its_timeout_is_ended_as_timeout(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    task = new_task(service, "[hang]", timeout_seconds=1)

    run = run_task(service, engine, task)

    assert run["status"] == "timeout"
    assert run["error"] == "timed out after 1s"
    assert log_lines(home, run["id"])[-1].startswith("[scheduler] timed out after 1s; process group")
    assert pid_gone(record.entries()[0]["pid"])


@pytest.mark.parametrize(
    ("prompt", "fields", "kind"),
    [("Work. [max_budget]", {}, "budget"), ("Work.", {"max_turns": 1}, "max_turns")],
)
def test_a_spent_budget_or_turn_limit_is_not_retried_it_would_fail_the_same_way(
    home: Path, service: cs.Service, engine: cs.Engine, prompt: str, fields: dict[str, Any], kind: str
) -> None:
    task = new_task(service, prompt, retry={"max_attempts": 3, "delay_seconds": 0}, **fields)

    run = run_task(service, engine, task)
    drive(engine)

    assert (run["status"], run["failure_kind"]) == ("failed", kind)
    assert len(history(home, task["id"])) == 1  # a retry would spend the budget again


@pytest.mark.parametrize(
    ("marker", "reset"),
    [
        ("[usage_limit]", "2026-01-01T00:00:00.000+00:00"),  # the rate_limit_event's epoch
        ("[usage_limit=text]", "2030-01-08T00:00:00.000+00:00"),  # "resets 12am (UTC)" after T0
    ],
)
def test_a_usage_limit_is_its_own_failure_naming_the_reset_and_is_not_retried(
    home: Path, service: cs.Service, engine: cs.Engine, marker: str, reset: str | None
) -> None:
    task = new_task(service, marker, retry={"max_attempts": 3, "delay_seconds": 0})

    run = run_task(service, engine, task)
    drive(engine)

    assert run["status"] == "failed"
    assert run["error"] == fake.USAGE_LIMIT_TEXT
    assert (run["failure_kind"], run["limit_resets_at"]) == ("usage_limit", reset)
    assert len(history(home, task["id"])) == 1  # retrying now would hit the same limit


def test_claude_variable_pointing_nowhere_fails_the_run_saying_how_to_fix_it(
    tmp_path: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    store: cs.Store,
    service: cs.Service,
    engines: StartEngine,
) -> None:
    nowhere = tmp_path / "nowhere" / "claude"
    monkeypatch.setenv(cs.CLAUDE_ENV, str(nowhere))
    engine = engines(store)

    run = run_task(service, engine, new_task(service))

    assert run["status"] == "failed"
    assert f"$CLAUDE_SCHEDULER_CLAUDE is set to '{nowhere}'" in run["error"]
    assert "not an executable file" in run["error"]
    assert log_lines(home, run["id"]) == [f"[scheduler] run failed: {run['error']}"]


def test_a_wrong_claude_path_setting_fails_the_run_naming_the_setting(
    tmp_path: Path, store: cs.Store, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    store.update_settings({"claude_path": str(tmp_path / "missing-claude")})

    run = run_task(service, engine, new_task(service))

    assert run["status"] == "failed"
    assert "the claude_path setting" in run["error"]
    assert str(tmp_path / "missing-claude") in run["error"]
    assert record.entries() == []  # the working fake from the variable is not used instead


def test_no_claude_anywhere_fails_the_run_saying_how_to_install_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    store: cs.Store,
    service: cs.Service,
    engines: StartEngine,
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.delenv(cs.CLAUDE_ENV)
    monkeypatch.setenv("PATH", str(empty))
    engine = engines(store)

    run = run_task(service, engine, new_task(service))

    assert run["status"] == "failed"
    assert "Claude Code CLI not found" in run["error"]
    assert "npm install -g @anthropic-ai/claude-code" in run["error"]


####
# One engine per data home
####


def test_only_one_engine_per_data_home(home: Path, clock: FakeClock, engines: StartEngine) -> None:
    first = engines(cs.Store(home, clock=clock))
    second = cs.Engine(cs.Store(home, clock=clock))

    assert second.start(thread=False) is False
    status = cs.Service(cs.Store(home)).engine_status()
    assert status["running"] is True
    assert status["owner"]["pid"] == os.getpid()

    first.stop()
    assert second.start(thread=False) is True
    second.stop()


####
# Firing on schedule
####


def test_a_cron_task_fires_at_its_time_and_keeps_its_next_and_last_run(
    home: Path,
    clock: FakeClock,
    service: cs.Service,
    engine: cs.Engine,
    cli_json: Callable[..., Any],
) -> None:
    cron = {"type": "cron", "expression": "*/15 * * * *", "timezone": "UTC"}
    task = new_task(service, schedule=cron)
    assert task["next_run_at"] == stamp(900)

    clock.set(at(899))
    drive(engine)
    assert history(home, task["id"]) == []

    clock.set(at(902))
    drive(engine)

    (run,) = history(home, task["id"])
    assert (run["status"], run["trigger"], run["scheduled_for"]) == ("success", "schedule", stamp(900))
    shown = cli_json("tasks", "get", task["id"])
    assert (shown["next_run_at"], shown["last_run_at"]) == (stamp(1800), stamp(902))
    assert shown["last_run_status"] == "success"
    reread = cs.Store(home).task(task["id"])
    assert (reread.next_run_at, reread.last_run_at) == (at(1800), at(902))


def test_an_interval_task_fires_on_its_anchor_grid_without_drift(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    task = new_task(service, schedule={"type": "interval", "every_seconds": 600})

    clock.set(at(630))  # fired 30 s late: the next time stays on the grid
    drive(engine)
    clock.set(at(1201))
    drive(engine)

    runs = history(home, task["id"])
    assert [run["scheduled_for"] for run in runs] == [stamp(600), stamp(1200)]
    assert {run["trigger"] for run in runs} == {"schedule"}
    assert service.get_task(task["id"])["next_run_at"] == stamp(1800)


def test_a_once_task_fires_once(home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine) -> None:
    task = new_task(service, schedule={"type": "once", "at": stamp(120)})

    clock.set(at(125))
    drive(engine)
    clock.set(at(86_400))
    drive(engine)

    (run,) = history(home, task["id"])
    assert (run["trigger"], run["scheduled_for"], run["status"]) == ("schedule", stamp(120), "success")
    assert service.get_task(task["id"])["next_run_at"] is None


@pytest.mark.parametrize(
    "schedule",
    [
        {"type": "cron", "expression": "* * * * *", "timezone": "UTC"},
        {"type": "interval", "every_seconds": 60},
    ],
    ids=["every-minute cron", "interval"],
)
def test_after_the_clock_steps_back_an_hour_fires_go_on_every_minute(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine, schedule: dict[str, Any]
) -> None:
    task = new_task(service, schedule=schedule)
    clock.set(at(3600 + 61))
    drive(engine)
    assert service.get_task(task["id"])["next_run_at"] == stamp(3600 + 120)

    clock.set(at(61))  # an hour back (NTP, a hand fix)
    drive(engine)
    assert service.get_task(task["id"])["next_run_at"] == stamp(120)
    clock.set(at(121))
    drive(engine)

    fired = [run["scheduled_for"] for run in history(home, task["id"]) if run["status"] == "success"]
    assert fired[-1] == stamp(120)
    assert service.get_task(task["id"])["next_run_at"] == stamp(180)


def test_a_once_task_that_fired_does_not_fire_again_after_the_clock_steps_back(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    task = new_task(service, schedule={"type": "once", "at": stamp(120)})
    clock.set(at(125))
    drive(engine)

    clock.set(at(60))
    drive(engine)
    clock.set(at(125))
    drive(engine)

    (run,) = history(home, task["id"])
    assert (run["scheduled_for"], run["status"]) == (stamp(120), "success")
    assert service.get_task(task["id"])["next_run_at"] is None


def test_an_engine_started_after_the_clock_went_back_does_not_wait_for_it_to_catch_up(
    home: Path, clock: FakeClock, store: cs.Store, service: cs.Service, engines: StartEngine
) -> None:
    task = new_task(service, schedule={"type": "cron", "expression": "*/5 * * * *", "timezone": "UTC"})
    clock.set(at(7200 + 10))
    first = engines(store)
    drive(first)
    first.stop(timeout=WAIT_SECONDS)
    assert service.get_task(task["id"])["next_run_at"] == stamp(7200 + 300)

    clock.set(at(10))
    drive(engines(store))

    assert service.get_task(task["id"])["next_run_at"] == stamp(300)


def test_a_fire_time_exactly_now_fires_once(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    task = new_task(service, schedule={"type": "cron", "expression": "*/15 * * * *", "timezone": "UTC"})

    clock.set(at(900))
    drive(engine)
    drive(engine)

    (run,) = history(home, task["id"])
    assert (run["scheduled_for"], run["trigger"], run["status"]) == (stamp(900), "schedule", "success")
    assert service.get_task(task["id"])["next_run_at"] == stamp(1800)


def test_an_interval_anchored_in_the_future_first_fires_at_its_anchor(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    schedule = {"type": "interval", "every_seconds": 600, "anchor": stamp(1500)}
    task = new_task(service, schedule=schedule)
    assert task["next_run_at"] == stamp(1500)

    clock.set(at(1499))
    drive(engine)
    assert history(home, task["id"]) == []
    clock.set(at(1500))
    drive(engine)

    (run,) = history(home, task["id"])
    assert run["scheduled_for"] == stamp(1500)
    assert service.get_task(task["id"])["next_run_at"] == stamp(2100)


@pytest.mark.parametrize("change", [{"name": "Renamed"}, {"enabled": False}, {"prompt": "Other."}])
def test_editing_a_once_task_whose_time_has_passed_never_fires_it_again(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine, change: dict[str, Any]
) -> None:
    task = new_task(service, schedule={"type": "once", "at": stamp(120)})
    clock.set(at(125))
    drive(engine)

    service.update_task(task["id"], change)
    if "enabled" in change:
        service.update_task(task["id"], {"enabled": True})
    clock.set(at(200))
    drive(engine)

    (run,) = history(home, task["id"])
    assert run["scheduled_for"] == stamp(120)
    assert service.get_task(task["id"])["next_run_at"] is None


def test_a_startup_task_fires_each_time_an_engine_starts(
    home: Path, clock: FakeClock, store: cs.Store, service: cs.Service, engines: StartEngine
) -> None:
    task = new_task(service, schedule={"type": "startup"})

    first = engines(store)
    drive(first)
    clock.advance(3600)
    drive(first)
    assert [run["trigger"] for run in history(home, task["id"])] == ["startup"]
    first.stop()

    drive(engines(cs.Store(home, clock=clock)))

    runs = history(home, task["id"])
    assert [(run["trigger"], run["status"]) for run in runs] == [("startup", "success")] * 2


def look(engine: cs.Engine, clock: FakeClock, times: int = 1) -> None:
    """Let the engine take `times` more looks at the watched folders (one per poll period)."""
    for _ in range(times):
        clock.advance(cs.WATCH_POLL_SECONDS)
        engine.tick()


def watch(path: Path, debounce: float = 0) -> dict[str, Any]:
    return {"type": "file_watch", "path": str(path), "debounce_seconds": debounce}


def test_a_file_watch_task_fires_once_its_folder_has_been_quiet_for_the_debounce(
    tmp_path: Path, home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    watched = tmp_path / "watched"
    (watched / "sub").mkdir(parents=True)
    task = new_task(service, schedule=watch(watched, debounce=5))
    look(engine, clock)  # T0+2 s, the first look: the baseline

    (watched / "a.txt").write_text("a", encoding="utf-8")
    look(engine, clock)  # +4 s: changed
    (watched / "sub" / "b.txt").write_text("b", encoding="utf-8")
    look(engine, clock)  # +6 s: changed again, the quiet period starts over
    look(engine, clock, times=2)  # +10 s: quiet for 4 s of the 5
    assert history(home, task["id"]) == []

    look(engine, clock)  # +12 s: quiet long enough
    drive(engine)
    look(engine, clock, times=3)

    (run,) = history(home, task["id"])
    assert (run["trigger"], run["status"], run["scheduled_for"]) == ("file_watch", "success", stamp(12))


def test_a_file_watch_task_ignores_version_control_and_editor_temp_files(
    tmp_path: Path, home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    watched = tmp_path / "watched"
    (watched / ".git").mkdir(parents=True)
    task = new_task(service, schedule=watch(watched))
    look(engine, clock)

    for ignored in (".git/index", "notes.txt.swp", "draft~", ".#notes.txt", "download.part"):
        (watched / ignored).write_text("ignored", encoding="utf-8")
    look(engine, clock, times=3)
    assert history(home, task["id"]) == []

    (watched / "notes.txt").write_text("news", encoding="utf-8")
    look(engine, clock, times=2)
    drive(engine)

    assert [run["trigger"] for run in history(home, task["id"])] == ["file_watch"]


def test_a_file_watch_task_is_not_fired_by_its_own_run_log(
    tmp_path: Path,
    home: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    store: cs.Store,
    engines: StartEngine,
) -> None:
    monkeypatch.delenv("FAKE_CLAUDE_RECORD")  # claude itself writes nothing here
    engine = engines(store)
    task = new_task(cs.Service(store), schedule=watch(tmp_path))  # tmp_path holds the data home
    look(engine, clock)
    (tmp_path / "trigger.txt").write_text("go", encoding="utf-8")
    look(engine, clock, times=2)
    (first,) = history(home, task["id"])

    wait_status(home, first["id"], "success")  # its log and history were written meanwhile
    look(engine, clock, times=3)

    assert len(history(home, task["id"])) == 1


def test_a_file_watch_task_is_not_fired_by_what_its_own_run_writes(
    tmp_path: Path,
    home: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    store: cs.Store,
    engines: StartEngine,
) -> None:
    watched = tmp_path / "project"
    watched.mkdir()
    monkeypatch.setenv("FAKE_CLAUDE_RECORD", str(watched / "claude-wrote-this.jsonl"))
    engine = engines(store)
    task = new_task(cs.Service(store), "[delay=0.2]", schedule=watch(watched))
    look(engine, clock)
    (watched / "trigger.txt").write_text("go", encoding="utf-8")
    look(engine, clock, times=2)  # quiet: fires, and the run starts
    look(engine, clock)  # a look while it runs
    (first,) = history(home, task["id"])

    wait_status(home, first["id"], "success")  # claude wrote into the folder meanwhile
    look(engine, clock, times=3)
    drive(engine)

    assert len(history(home, task["id"])) == 1


def test_a_file_watch_task_is_not_fired_by_what_a_short_run_of_it_writes(
    tmp_path: Path,
    home: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    store: cs.Store,
    engines: StartEngine,
) -> None:
    watched = tmp_path / "project"
    watched.mkdir()
    monkeypatch.setenv("FAKE_CLAUDE_RECORD", str(watched / "claude-wrote-this.jsonl"))
    engine = engines(store)
    task = new_task(cs.Service(store), schedule=watch(watched))
    look(engine, clock)
    (watched / "trigger.txt").write_text("go", encoding="utf-8")
    look(engine, clock, times=2)  # quiet: fires, and the run starts
    (first,) = history(home, task["id"])

    wait_status(home, first["id"], "success")  # done before the next look; it wrote a file
    look(engine, clock, times=3)
    drive(engine)

    assert len(history(home, task["id"])) == 1


def test_the_engine_sleeps_until_the_next_due_time(
    clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    new_task(service, schedule={"type": "interval", "every_seconds": 600})

    clock.set(at(590))
    assert engine.tick() == pytest.approx(10.0)
    clock.set(at(60))
    assert engine.tick() == cs.ENGINE_WAKE_MAX  # wakes anyway, to notice clock jumps


####
# Missed runs
####


@pytest.mark.parametrize(
    ("now", "catch_up", "missed_count", "caught_up_for"),
    [
        (5 * 3600 + 600, "once", 4, 5 * 3600),  # the latest is within the grace (half the period)
        (5 * 3600 + 600, "skip", 5, None),
        (5 * 3600 + 2400, "once", 5, None),  # the latest is past the grace: all missed
        (3600 + 300, "once", None, 3600),  # one late time within the grace: just caught up
        (3600 + 300, "skip", 1, None),
    ],
)
def test_missed_times_are_caught_up_once_or_recorded_never_dropped(
    home: Path,
    clock: FakeClock,
    service: cs.Service,
    engine: cs.Engine,
    now: int,
    catch_up: str,
    missed_count: int | None,
    caught_up_for: int | None,
) -> None:
    task = new_task(service, schedule=HOURLY, catch_up=catch_up)

    clock.set(at(now))
    drive(engine)

    runs = history(home, task["id"])
    missed = [run for run in runs if run["status"] == "missed"]
    ran = [run for run in runs if run["status"] != "missed"]
    if missed_count is None:
        assert missed == []
    else:
        (record,) = missed
        assert (record["missed_count"], record["scheduled_for"]) == (missed_count, stamp(3600))
        times = "time was" if missed_count == 1 else "times were"
        assert f"{missed_count} scheduled {times} missed" in record["error"]
    if caught_up_for is None:
        assert ran == []
    else:
        (run,) = ran
        assert (run["trigger"], run["scheduled_for"], run["status"]) == (
            "catch_up",
            stamp(caught_up_for),
            "success",
        )
    assert service.get_task(task["id"])["next_run_at"] == stamp((now // 3600 + 1) * 3600)


def test_a_restarted_engine_catches_up_from_the_kept_next_run(
    home: Path, clock: FakeClock, store: cs.Store, service: cs.Service, engines: StartEngine
) -> None:
    daily = {"type": "cron", "expression": "0 3 * * *", "timezone": "UTC"}
    task = new_task(service, schedule=daily)  # created Monday 09:00: next is Tuesday 03:00
    first = engines(store)
    clock.advance(3600)
    drive(first)
    first.stop()

    clock.set(at(3 * 86_400 - 6 * 3600 + 1800))  # Thursday 03:30: Tuesday to Thursday were missed
    drive(engines(cs.Store(home, clock=clock)))

    runs = history(home, task["id"])
    assert [(run["status"], run["trigger"], run["scheduled_for"], run["missed_count"]) for run in runs] == [
        ("success", "catch_up", stamp(3 * 86_400 - 6 * 3600), None),
        ("missed", "schedule", stamp(86_400 - 6 * 3600), 2),
    ]


def test_many_catch_ups_at_once_go_through_the_queue(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine, tmp_path: Path
) -> None:
    home.joinpath(cs.SETTINGS_FILE).write_text(json.dumps({"max_concurrent_runs": 1}), encoding="utf-8")
    gate = tmp_path / "gate"  # the first session lasts until the test has looked
    tasks = [new_task(service, f"[gate={gate}] {n}", schedule=HOURLY) for n in range(3)]

    clock.set(at(3600 + 300))
    engine.tick()

    statuses = sorted(history(home, task["id"])[0]["status"] for task in tasks)
    assert statuses == ["queued", "queued", "running"]
    gate.touch()
    drive(engine)
    for task in tasks:
        assert [(run["trigger"], run["status"]) for run in history(home, task["id"])] == [
            ("catch_up", "success")
        ]


####
# Overlap and the concurrency cap
####


def test_overlap_skip_records_a_skipped_run_while_the_previous_one_runs(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    task = new_task(service, "[hang]", schedule=EVERY_MINUTE, overlap="skip")
    clock.set(at(61))
    engine.tick()
    (first,) = history(home, task["id"])
    wait_status(home, first["id"], "running")

    clock.set(at(121))
    engine.tick()

    running, skipped = history(home, task["id"])
    assert running["status"] == "running"
    assert (skipped["status"], skipped["scheduled_for"]) == ("skipped", stamp(120))
    assert "still going" in skipped["error"]


def test_overlap_parallel_starts_another_claude(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    task = new_task(service, "[hang]", schedule=EVERY_MINUTE, overlap="parallel")
    for minute in (1, 2):
        clock.set(at(60 * minute + 1))
        engine.tick()

    runs = [wait_status(home, run["id"], "running") for run in history(home, task["id"])]

    assert len({run["pid"] for run in runs}) == 2


def test_overlap_queue_keeps_one_run_waiting_until_the_running_one_ends(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    task = new_task(service, "[hang]", schedule=EVERY_MINUTE, overlap="queue")
    clock.set(at(61))
    engine.tick()
    first = wait_status(home, history(home, task["id"])[0]["id"], "running")

    for minute in (2, 3):
        clock.set(at(60 * minute + 1))
        engine.tick()

    assert [run["status"] for run in history(home, task["id"])] == ["running", "queued", "skipped"]
    assert "already waiting" in history(home, task["id"])[2]["error"]
    service.stop_run(first["id"])
    wait_status(home, first["id"], "cancelled")
    wait_for(lambda: not engine.active_run_ids, "the first run to let go of its slot")
    engine.tick()
    assert [run["status"] for run in history(home, task["id"])] == ["cancelled", "running", "skipped"]


def test_max_concurrent_runs_caps_claude_processes_and_the_rest_wait_in_order(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder, tmp_path: Path
) -> None:
    home.joinpath(cs.SETTINGS_FILE).write_text(json.dumps({"max_concurrent_runs": 1}), encoding="utf-8")
    gate = tmp_path / "gate"  # the first session lasts until the test has looked
    prompts = [f"[gate={gate}] {name}" for name in ("first", "second", "third")]
    runs = [service.request_run(new_task(service, prompt)["id"]) for prompt in prompts]
    engine.tick()
    assert [run_of(home, run["id"])["status"] for run in runs] == ["running", "queued", "queued"]
    gate.touch()
    peaks: list[int] = []

    def all_done() -> bool:
        engine.tick()
        statuses = [service.get_run(run["id"])["status"] for run in runs]
        peaks.append(statuses.count("running"))
        return statuses == ["success"] * 3

    wait_for(all_done, "the three runs to finish")

    assert max(peaks) == 1
    assert record.prompts() == prompts


####
# Retries
####


def test_a_failed_run_is_retried_as_new_runs_with_backoff(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    task = new_task(service, "[exit=2]", retry={"max_attempts": 2, "delay_seconds": 60, "backoff": 3.0})

    def runs() -> list[tuple[str, int, str]]:
        return [(run["trigger"], run["attempt"], run["status"]) for run in history(home, task["id"])]

    run_task(service, engine, task)
    assert runs() == [("manual", 1, "failed"), ("retry", 2, "queued")]

    clock.set(at(59))  # delay × backoff^0 = 60 s after the failure
    drive(engine)
    assert runs()[-1] == ("retry", 2, "queued")
    clock.set(at(60))
    drive(engine)
    assert runs()[1:] == [("retry", 2, "failed"), ("retry", 3, "queued")]

    clock.set(at(60 + 179))  # delay × backoff^1 = 180 s after the second failure
    drive(engine)
    assert runs()[-1] == ("retry", 3, "queued")
    clock.set(at(60 + 180))
    drive(engine)
    clock.advance(86_400)
    drive(engine)

    assert runs() == [("manual", 1, "failed"), ("retry", 2, "failed"), ("retry", 3, "failed")]
    assert {run["exit_code"] for run in history(home, task["id"])} == {2}


def test_a_timed_out_run_is_retried_and_a_successful_one_is_not(
    home: Path, service: cs.Service, engine: cs.Engine
) -> None:
    retry = {"max_attempts": 1, "delay_seconds": 0}
    hanging = new_task(service, "[hang]", timeout_seconds=1, retry=retry)
    fine = new_task(service, "fine", retry=retry)

    run_task(service, engine, hanging)
    run_task(service, engine, fine)

    assert [(run["attempt"], run["status"]) for run in history(home, hanging["id"])] == [
        (1, "timeout"),
        (2, "timeout"),
    ]
    assert [run["status"] for run in history(home, fine["id"])] == ["success"]


####
# Pause, and changes made elsewhere
####


def test_pause_stops_dispatching_but_not_the_running_runs(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    slow = service.request_run(new_task(service, "[delay=0.05] slow")["id"])
    engine.tick()
    other = cs.Service(cs.Store(home, clock=clock))
    assert other.set_paused(True)["paused"] is True
    waiting = service.request_run(new_task(service, "waiting")["id"])
    timed = new_task(service, "timed", schedule=EVERY_MINUTE)
    clock.set(at(61))

    def slow_done() -> bool:
        engine.tick()
        return run_of(home, slow["id"])["status"] == "success"

    wait_for(slow_done, "the running run to finish while paused")

    assert run_of(home, waiting["id"])["status"] == "queued"
    (fired,) = history(home, timed["id"])
    assert fired["status"] == "skipped"
    assert "paused" in fired["error"]
    assert cs.Service(cs.Store(home)).engine_status()["paused"] is True
    assert cs.Store(home).task(timed["id"]).enabled is True  # pause leaves the enabled flags alone

    other.set_paused(False)
    drive(engine)

    assert run_of(home, waiting["id"])["status"] == "success"


####
# The usage-limit hold
####

RESET = 3 * 3600  # claude's resetsAt in these tests: T0 + 3 h
HELD_UNTIL = RESET + 60  # the reset plus the engine's margin


def hit_the_limit(service: cs.Service, engine: cs.Engine, **fields: Any) -> dict[str, Any]:
    """Run a task whose session hits the subscription's usage limit, resetting at RESET."""
    epoch = int(at(RESET).timestamp())
    return run_task(service, engine, new_task(service, f"[usage_limit={epoch}]", name="limited", **fields))


def test_a_usage_limit_holds_new_runs_until_its_reset_and_queued_runs_wait_in_order(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    home.joinpath(cs.SETTINGS_FILE).write_text(json.dumps({"max_concurrent_runs": 1}), encoding="utf-8")
    limited = hit_the_limit(service, engine, retry={"max_attempts": 2, "delay_seconds": 0})
    first = service.request_run(new_task(service, "first")["id"])
    second = service.request_run(new_task(service, "second")["id"])
    clock.set(at(RESET))
    drive(engine)

    hold = cs.Service(cs.Store(home, clock=clock)).engine_status()["hold"]
    assert (hold["until"], hold["kind"], hold["reason"]) == (
        stamp(HELD_UNTIL),
        "usage_limit",
        fake.USAGE_LIMIT_TEXT,
    )
    assert (hold["run_id"], hold["task_id"]) == (limited["id"], limited["task_id"])
    assert len(history(home, limited["task_id"])) == 1  # not retried
    assert [run_of(home, run["id"])["status"] for run in (first, second)] == ["queued", "queued"]
    assert len(record.entries()) == 1
    clock.set(at(HELD_UNTIL - 10))
    assert engine.tick() == pytest.approx(10.0)  # it wakes when the hold ends

    clock.set(at(HELD_UNTIL))
    drive(engine)

    assert cs.Service(cs.Store(home, clock=clock)).engine_status()["hold"] is None
    assert record.prompts()[1:] == ["first", "second"]
    assert [run_of(home, run["id"])["status"] for run in (first, second)] == ["success", "success"]


def test_listeners_are_told_when_a_hold_begins_and_when_it_ends(
    clock: FakeClock, store: cs.Store, service: cs.Service, engines: StartEngine
) -> None:
    events: list[dict[str, Any]] = []
    engine = engines(store, on_event=events.append)
    hit_the_limit(service, engine)
    holds = [event for event in events if event["event"] == "limit_hold"]
    assert holds == [
        {"event": "limit_hold", "began": True, "resets_at": cs.fmt_local(at(HELD_UNTIL), zone=True)}
    ]

    clock.set(at(HELD_UNTIL))
    drive(engine)

    holds = [event for event in events if event["event"] == "limit_hold"]
    assert holds[1:] == [{"event": "limit_hold", "began": False, "resets_at": None}]


def test_a_task_due_during_the_hold_is_deferred_then_runs_once_after_it_even_across_a_restart(
    home: Path, clock: FakeClock, store: cs.Store, service: cs.Service, engines: StartEngine
) -> None:
    once = new_task(service, "hourly", schedule=HOURLY)
    skip = new_task(service, "hourly, no catch-up", schedule=HOURLY, catch_up="skip")
    first = engines(store)
    hit_the_limit(service, first)
    for hour in (1, 2):
        clock.set(at(hour * 3600))
        drive(first)
    first.stop()

    restarted = engines(cs.Store(home, clock=clock))
    clock.set(at(3 * 3600))
    drive(restarted)
    (deferred,) = history(home, once["id"])
    assert (deferred["status"], deferred["missed_count"], deferred["scheduled_for"]) == (
        "deferred",
        3,
        stamp(3600),
    )
    assert deferred["error"] == (
        "3 fires (2030-01-07 10:00 to 2030-01-07 12:00) held back by the usage-limit hold until "
        "2030-01-07 12:01; one run follows when it lifts (catch_up: once)"
    )
    assert [run["status"] for run in history(home, skip["id"])] == ["deferred"]
    assert service.get_task(once["id"])["last_run_status"] is None  # a deferred fire never ran

    clock.set(at(HELD_UNTIL + 1))
    drive(restarted)
    clock.set(at(HELD_UNTIL + 120))
    drive(restarted)

    deferred, caught_up = history(home, once["id"])
    assert (caught_up["trigger"], caught_up["scheduled_for"], caught_up["status"]) == (
        "catch_up",
        stamp(3 * 3600),
        "success",
    )
    assert deferred["error"].endswith(f"; caught up by run {caught_up['id'][:8]} when it lifted")
    (skipped,) = history(home, skip["id"])
    assert skipped["error"].endswith("; not run after it (catch_up: skip)")
    assert service.get_task(once["id"])["last_run_status"] == "success"


def test_a_usage_limit_without_a_reset_time_holds_for_an_hour(service: cs.Service, engine: cs.Engine) -> None:
    run = run_task(service, engine, new_task(service, "[usage_limit=none]"))

    assert run["limit_resets_at"] is None  # neither an event nor the sentence said when
    hold = service.engine_status()["hold"]
    assert (hold["until"], hold["since"], hold["run_id"]) == (stamp(3600), stamp(0), run["id"])


def test_a_job_waits_between_its_steps_while_held_and_goes_on_after(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    epoch = int(at(RESET).timestamp())
    job, (limited, after) = job_with_tasks(service, [f"[usage_limit={epoch}]", "after"])
    service.run_job(job["id"], continue_on_failure=True)
    drive(engine)

    (waiting,) = history(home, after["id"])
    assert (waiting["status"], waiting["trigger"]) == ("queued", "job")
    assert listed_job(home, job["id"])["status"] == "in_progress"

    clock.set(at(HELD_UNTIL))
    drive(engine)

    assert run_of(home, waiting["id"])["status"] == "success"
    assert record.prompts() == [limited["prompt"], "after"]


def test_a_task_with_its_own_account_runs_through_the_hold_and_sets_none(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    own = {"ANTHROPIC_API_KEY": "sk-its-own"}
    hit_the_limit(service, engine, env={"CLAUDE_CODE_OAUTH_TOKEN": "its-own"})
    assert service.engine_status()["hold"] is None  # its own account's limit holds nobody else

    hit_the_limit(service, engine)
    timed = new_task(service, "own, timed", schedule=HOURLY, env=own)
    asked = run_task(service, engine, new_task(service, "own, asked", env=own))
    clock.set(at(3600))
    drive(engine)

    assert service.engine_status()["hold"]["until"] == stamp(HELD_UNTIL)
    assert asked["status"] == "success"
    assert [(run["trigger"], run["status"]) for run in history(home, timed["id"])] == [
        ("schedule", "success")
    ]


def test_a_later_limit_only_extends_the_hold_and_resume_lifts_it_at_once(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine, cli: Callable[..., Any]
) -> None:
    timed = new_task(service, "hourly", schedule=HOURLY)
    hit_the_limit(service, engine)
    for reset, until in ((2 * 3600, HELD_UNTIL), (4 * 3600, 4 * 3600 + 60)):  # sooner, then later
        epoch = int(at(reset).timestamp())
        assert cli("tasks", "run", new_task(service, f"[usage_limit={epoch}]")["id"]).code == 1
        assert service.engine_status()["hold"]["until"] == stamp(until)
    clock.set(at(3600))
    drive(engine)

    lifted = cs.Service(cs.Store(home, clock=clock)).set_paused(False)
    drive(engine)

    assert (lifted["lifted"], lifted["hold"], lifted["paused"]) == (["hold"], None, False)
    assert [(run["trigger"], run["status"]) for run in history(home, timed["id"])] == [
        ("schedule", "deferred"),
        ("catch_up", "success"),
    ]
    assert cs.Store(home).engine_state()["hold"] is None


def test_tasks_created_and_edited_through_another_store_are_picked_up(
    home: Path, clock: FakeClock, engine: cs.Engine, record: Recorder
) -> None:
    other = cs.Service(cs.Store(home, clock=clock))
    task = other.create_task({"name": "elsewhere", "prompt": "before", "schedule": HOURLY})

    clock.set(at(3601))
    drive(engine)
    other.update_task(task["id"], {"schedule": EVERY_MINUTE, "prompt": "after"})
    assert other.get_task(task["id"])["next_run_at"] == stamp(3660)
    clock.set(at(3661))
    drive(engine)

    runs = history(home, task["id"])
    assert [run["scheduled_for"] for run in runs] == [stamp(3600), stamp(3660)]
    assert record.prompts() == ["before", "after"]


def test_a_task_disabled_elsewhere_does_not_fire_until_enabled(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine, cli: Callable[..., Any]
) -> None:
    task = new_task(service, schedule=EVERY_MINUTE)

    assert cli("tasks", "disable", task["id"]).code == 0
    clock.set(at(3600))
    drive(engine)
    assert history(home, task["id"]) == []

    cs.Service(cs.Store(home, clock=clock)).set_enabled(task["id"], True)
    clock.set(at(3661))
    drive(engine)

    (run,) = history(home, task["id"])
    assert (run["scheduled_for"], run["status"]) == (stamp(3660), "success")


def test_a_task_deleted_by_another_process_never_fires_again(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    task = new_task(service, schedule=EVERY_MINUTE)
    clock.set(at(61))
    drive(engine)
    assert len(record.entries()) == 1

    deleted = cli_process(home, "tasks", "delete", task["id"], "--force", env=child_env(home))
    assert deleted.returncode == 0, deleted.stderr
    for minute in (2, 3, 60):
        clock.set(at(60 * minute + 1))
        drive(engine)

    assert len(record.entries()) == 1
    assert not (home / cs.RUNS_DIR / f"{task['id']}.json").exists()


def test_deleting_a_task_stops_its_running_claude(home: Path, service: cs.Service, engine: cs.Engine) -> None:
    task = new_task(service, "[hang]")
    run = service.request_run(task["id"])
    engine.tick()
    running = wait_status(home, run["id"], "running")

    cs.Service(cs.Store(home)).delete_task(task["id"], force=True)

    wait_for(lambda: pid_gone(running["pid"]), "claude to end")
    wait_for(lambda: not engine.active_run_ids, "the engine to let go of the run")
    assert not (home / cs.LOGS_DIR / f"{run['id']}.log").exists()
    assert not (home / cs.RUNS_DIR / f"{task['id']}.json").exists()


####
# Stopping runs
####


def test_a_stop_recorded_by_another_store_cancels_the_run(
    home: Path, service: cs.Service, engine: cs.Engine
) -> None:
    task = new_task(service, "[hang]", retry={"max_attempts": 2, "delay_seconds": 0})
    run = service.request_run(task["id"])
    engine.tick()
    running = wait_status(home, run["id"], "running")

    asked = cs.Service(cs.Store(home)).stop_run(run["id"])

    assert (asked["status"], asked["stop_requested"]) == ("running", True)
    cancelled = wait_status(home, run["id"], "cancelled")
    assert cancelled["error"] == "stopped by request"
    assert log_lines(home, run["id"])[-1].startswith("[scheduler] stopped by request")
    wait_for(lambda: pid_gone(running["pid"]), "claude to end")
    drive(engine)
    assert len(history(home, task["id"])) == 1  # a stopped run is not retried


def test_a_queued_run_stopped_before_it_starts_never_runs(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    run = service.request_run(new_task(service)["id"])

    stopped = cs.Service(cs.Store(home)).stop_run(run["id"])
    drive(engine)

    assert (stopped["status"], stopped["error"]) == ("cancelled", "stopped before it started")
    assert run_of(home, run["id"])["status"] == "cancelled"
    assert record.entries() == []


def test_an_engine_owner_whose_pid_was_reused_reads_as_not_running(
    store: cs.Store, service: cs.Service
) -> None:
    pid, host = os.getpid(), cs.host_name()  # a live process, started at another time than recorded
    store.set_engine_state(owner={"pid": pid, "host": host, "id": f"{host}:{pid}:1"})
    assert service.engine_status()["running"] is False
    store.set_engine_state(owner={"pid": pid, "host": host, "id": cs.process_owner()})
    assert service.engine_status()["running"] is True


def test_stopping_the_engine_cancels_its_runs_and_frees_the_data_home(
    home: Path, clock: FakeClock, store: cs.Store, service: cs.Service, engines: StartEngine
) -> None:
    engine = engines(store)
    run = service.request_run(new_task(service, "[hang]")["id"])
    engine.tick()
    running = wait_status(home, run["id"], "running")

    engine.stop()

    assert run_of(home, run["id"])["status"] == "cancelled"
    wait_for(lambda: pid_gone(running["pid"]), "claude to end")
    assert cs.Service(cs.Store(home)).engine_status()["running"] is False
    engines(cs.Store(home, clock=clock))  # another engine may start now


####
# Jobs
####


def test_a_job_runs_its_enabled_tasks_one_after_another_in_task_order(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"  # the first step lasts until the test has looked
    job, (a, b, c, off) = job_with_tasks(service, ["a", "b", f"c [gate={gate}]", "disabled"])
    service.set_enabled(off["id"], False)
    service.update_job(job["id"], {"task_order": [c["id"], off["id"], a["id"], b["id"]]})

    started = service.run_job(job["id"])
    engine.tick()

    assert started["task_ids"] == [c["id"], a["id"], b["id"]]
    assert [run["status"] for run in history(home, c["id"])] == ["running"]
    assert history(home, a["id"]) == history(home, b["id"]) == []  # one after another
    gate.touch()
    drive(engine)
    assert record.prompts() == [c["prompt"], "a", "b"]
    for task in (a, b, c):
        assert [(run["trigger"], run["status"]) for run in history(home, task["id"])] == [("job", "success")]


def test_a_job_that_succeeds_is_completed_with_full_progress(
    home: Path, service: cs.Service, engine: cs.Engine
) -> None:
    job, _ = job_with_tasks(service, ["a", "b", "c"])
    assert listed_job(home, job["id"])["status"] == "pending"

    service.run_job(job["id"])
    drive(engine)

    listed = listed_job(home, job["id"])
    assert listed["status"] == "completed"
    assert (listed["progress"]["text"], listed["progress"]["percent"]) == ("3/3", 100)


def test_a_job_stops_at_its_first_failure(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    job, _ = job_with_tasks(service, ["a", "b [exit=1]", "c"])

    service.run_job(job["id"])
    drive(engine)

    assert record.prompts() == ["a", "b [exit=1]"]
    listed = listed_job(home, job["id"])
    assert listed["status"] == "failed"
    progress = listed["progress"]
    assert (progress["success"], progress["failed"], progress["never_run"], progress["text"]) == (
        1,
        1,
        1,
        "1/3",
    )


def test_a_job_can_continue_after_a_failure(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    job, _ = job_with_tasks(service, ["a", "b [exit=1]", "c"])

    service.run_job(job["id"], continue_on_failure=True)
    drive(engine)

    assert record.prompts() == ["a", "b [exit=1]", "c"]
    listed = listed_job(home, job["id"])
    assert (listed["status"], listed["progress"]["text"], listed["progress"]["failed"]) == (
        "failed",
        "2/3",
        1,
    )


def test_a_job_is_in_progress_while_it_runs_and_stopping_it_stops_its_current_run(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    job, (first, second) = job_with_tasks(service, ["[hang] first", "second"])
    service.run_job(job["id"])
    engine.tick()
    (run,) = history(home, first["id"])
    running = wait_status(home, run["id"], "running")
    wait_for(record.prompts, "the first session to read its prompt")  # a loaded machine starts it late
    listed = listed_job(home, job["id"])
    assert (listed["status"], listed["progress"]["running"]) == ("in_progress", 1)

    result = cs.Service(cs.Store(home)).stop_job(job["id"])

    assert [stopped["id"] for stopped in result["stopped_runs"]] == [run["id"]]
    wait_status(home, run["id"], "cancelled")
    wait_for(lambda: pid_gone(running["pid"]), "claude to end")
    drive(engine)
    assert history(home, second["id"]) == []
    assert record.prompts() == ["[hang] first"]
    listed = listed_job(home, job["id"])
    assert (listed["status"], listed["progress"]["running"]) == ("failed", 0)


def test_a_job_stops_after_a_step_that_timed_out(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    job, (first, second) = job_with_tasks(service, ["[hang] first", "second"])
    service.update_task(first["id"], {"timeout_seconds": 1})

    service.run_job(job["id"])
    drive(engine)

    (run,) = history(home, first["id"])
    assert run["status"] == "timeout"
    assert history(home, second["id"]) == []
    assert record.prompts() == ["[hang] first"]
    assert listed_job(home, job["id"])["status"] == "failed"


def test_a_job_stops_after_a_step_that_was_cancelled(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder
) -> None:
    job, (first, second) = job_with_tasks(service, ["[hang] first", "second"])
    service.run_job(job["id"])
    engine.tick()
    (run,) = history(home, first["id"])
    wait_status(home, run["id"], "running")
    wait_for(record.prompts, "the first session to read its prompt")

    service.stop_run(run["id"])  # the run alone, not the job
    wait_status(home, run["id"], "cancelled")
    drive(engine)

    assert history(home, second["id"]) == []
    assert record.prompts() == ["[hang] first"]
    assert listed_job(home, job["id"])["status"] == "failed"


def test_a_job_stops_after_a_step_that_was_interrupted(
    home: Path, clock: FakeClock, store: cs.Store, service: cs.Service, engines: StartEngine, record: Recorder
) -> None:
    job, (first, second) = job_with_tasks(service, ["first", "second"])
    service.run_job(job["id"])
    (queued,) = history(home, first["id"])
    dead_owner = f"{cs.host_name()}:999999999:1"  # a process that is gone
    with store.locked():
        store.dequeue([queued["id"]])
        run = store.run(queued["id"])
        store.save_run(cs.dataclasses.replace(run, status=cs.RunStatus.RUNNING, owner=dead_owner))

    drive(engines(store))

    assert run_of(home, queued["id"])["status"] == "interrupted"
    assert history(home, second["id"]) == []
    assert record.prompts() == []
    assert listed_job(home, job["id"])["status"] == "failed"


def test_task_order_refuses_another_jobs_task_and_a_repeated_id(service: cs.Service) -> None:
    job, (first, second) = job_with_tasks(service, ["a", "b"])
    other = service.create_job({"name": "Other"})
    stranger = new_task(service, "c", job_id=other["id"])
    loose = new_task(service, "d")

    for order, message in [
        ([first["id"], stranger["id"]], f"task {stranger['id']} is not a task of this job"),
        ([loose["id"], first["id"]], f"task {loose['id']} is not a task of this job"),
        ([first["id"], second["id"], first["id"]], "lists a task more than once"),
    ]:
        with pytest.raises(cs.Invalid) as refused:
            service.update_job(job["id"], {"task_order": order})
        assert (refused.value.field, refused.value.message) == ("task_order", message)
    assert service.get_job(job["id"])["task_order"] == []


def test_a_running_job_cannot_be_started_twice(service: cs.Service) -> None:
    job, _ = job_with_tasks(service, ["[hang] a"])
    service.run_job(job["id"])

    with pytest.raises(cs.Conflict, match="already running"):
        service.run_job(job["id"])


def test_a_job_without_enabled_tasks_cannot_run(service: cs.Service) -> None:
    job, (task,) = job_with_tasks(service, ["a"])
    service.set_enabled(task["id"], False)

    with pytest.raises(cs.Conflict, match="no enabled tasks"):
        service.run_job(job["id"])


@pytest.mark.parametrize("continue_on_failure", [True, False])
def test_a_job_goes_on_after_a_step_that_was_retried(
    home: Path, service: cs.Service, engine: cs.Engine, record: Recorder, continue_on_failure: bool
) -> None:
    job, (flaky, _) = job_with_tasks(service, ["flaky [exit=1]", "next"])
    service.update_task(flaky["id"], {"retry": {"max_attempts": 1, "delay_seconds": 0}})

    service.run_job(job["id"], continue_on_failure=continue_on_failure)
    drive(engine)

    expected = ["flaky [exit=1]", "flaky [exit=1]", *(["next"] if continue_on_failure else [])]
    assert record.prompts() == expected
    service.run_job(job["id"])  # the job run ended: it may be started again


def test_a_waiting_retry_can_be_stopped_before_it_starts(
    home: Path, clock: FakeClock, service: cs.Service, engine: cs.Engine
) -> None:
    task = new_task(service, "[exit=1]", retry={"max_attempts": 1, "delay_seconds": 600})
    run_task(service, engine, task)
    _, retry = history(home, task["id"])
    assert retry["status"] == "queued"

    cs.Service(cs.Store(home)).stop_run(retry["id"])
    clock.advance(3600)
    drive(engine)

    assert run_of(home, retry["id"])["status"] == "cancelled"
    assert len(history(home, task["id"])) == 2


def test_a_failed_runs_log_ends_saying_why_even_after_the_session_said_done(
    home: Path, service: cs.Service, engine: cs.Engine
) -> None:
    run = run_task(service, engine, new_task(service, "Tidy up [exit=2]"))

    assert run["status"] == "failed" and run["exit_code"] == 2
    last = log_lines(home, run["id"])[-1]
    assert last == f"[scheduler] run failed: {run['error']}"
    assert cs.render_log_line(last) == [("error", f"✗ Run failed: {run['error']}")]


def test_a_run_whose_owner_pid_was_reused_by_another_process_is_interrupted(
    store: cs.Store, service: cs.Service, engines: StartEngine
) -> None:
    """After a restart (a container, say) the old owner's pid may belong to a new process:
    the owner id carries the process start time, so the run is still known to be orphaned."""
    task = new_task(service)
    reused = f"{socket.gethostname()}:{os.getpid()}:1"
    run = cs.Run(cs.new_id(), task["id"], status=cs.RunStatus.RUNNING, owner=reused, started_at=store.clock())
    store.save_run(run)
    assert not cs.owner_alive(reused) and cs.owner_alive(cs.process_owner())

    engines(store)

    after = service.get_run(run.id)
    assert after["status"] == "interrupted"
    assert f"the process that ran it ({reused}) ended unexpectedly" in after["error"]


# Pinned by the mutation run (tests/mutate.py) -------------------------------------------


def test_an_engine_start_sweeps_the_logs_no_run_names(
    engines: StartEngine, store: cs.Store, home: Path
) -> None:
    (home / "logs").mkdir(exist_ok=True)
    stray = home / "logs" / f"{cs.new_id()}.log"
    stray.write_text("a run's log whose run is gone\n")
    engines(store)
    assert not stray.exists()


BUSY_CLOCK_READS = 1000  # an idle engine reads its clock a few times a second; a spinning one, thousands
IDLE_WATCH_SECONDS = 2.0


def test_an_idle_engine_waits_between_passes(home: Path) -> None:
    """A pass that finds nothing due is followed by a wait, not straight by the next pass
    (a loaded machine only makes passes rarer, so this cannot fail by slowness)."""
    reads = 0
    busy = threading.Event()

    def clock() -> datetime:
        nonlocal reads
        reads += 1
        if reads > BUSY_CLOCK_READS:
            busy.set()
        return T0

    engine = cs.Engine(cs.Store(home, clock=clock))
    assert engine.start()
    try:
        assert not busy.wait(IDLE_WATCH_SECONDS), f"the clock was read {reads} times: the engine spins"
    finally:
        engine.stop(timeout=WAIT_SECONDS)
