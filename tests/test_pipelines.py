"""Jobs as pipelines: job runs as records, per-step policy, skipped steps, the job's order.

Through the CLI (`cli` / `cli_json`), the HTTP API, and an engine ticked by the test
(thread=False, the real clock); sessions are the fake claude's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, child_env
from run_helpers import (
    SCRIPT,
    WAIT_SECONDS,
    FakeClock,
    Recorder,
    at,
    drive,
    stamp,
    stop_process,
    wait_for,
    wait_session,
    wait_status,
)

import claude_scheduler as cs

GRACE = 0.5
Cli = Callable[..., Result]
CliJson = Callable[..., Any]

pytestmark = pytest.mark.usefixtures("record")


@pytest.fixture
def engine(home: Path) -> Iterator[cs.Engine]:
    engine = cs.Engine(cs.Store(home), kill_grace=GRACE)
    assert engine.start(thread=False)
    yield engine
    engine.stop(timeout=WAIT_SECONDS)


def create_job(
    cli_json: CliJson, prompts: list[str], *options: list[str]
) -> tuple[str, list[dict[str, Any]]]:
    """A job with one task per prompt; `options[n]` are more `tasks create` options for task n."""
    job = cli_json("jobs", "create", "--name", "Nightly")
    tasks = []
    for n, prompt in enumerate(prompts):
        more = options[n] if n < len(options) else []
        tasks.append(
            cli_json(
                "tasks", "create", "--name", f"step {n + 1}", "--prompt", prompt, "--job", job["id"], *more
            )
        )
    return job["id"], tasks


def job_runs(cli_json: CliJson, job_id: str) -> list[dict[str, Any]]:
    return list(cli_json("jobs", "runs", job_id[:8])["job_runs"])


def steps(job_run: dict[str, Any]) -> list[tuple[str, str]]:
    return [(step["task_name"], step["status"]) for step in job_run["steps"]]


def run_detached(cli: Cli, engine: cs.Engine, job_id: str, *options: str) -> None:
    assert cli("jobs", "run", job_id, "--detach", *options).code == 0
    drive(engine)


# The job run as a record ------------------------------------------------------------


def test_a_job_run_is_recorded_with_its_trigger_times_and_each_steps_run(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job_id, tasks = create_job(cli_json, ["one", "two"])
    assert job_runs(cli_json, job_id) == []

    run_detached(cli, engine, job_id)

    (job_run,) = job_runs(cli_json, job_id)
    assert (job_run["status"], job_run["trigger"], job_run["job_id"]) == ("completed", "cli", job_id)
    assert job_run["started_at"] <= job_run["finished_at"]
    assert steps(job_run) == [("step 1", "success"), ("step 2", "success")]
    runs = {run["task_id"]: run for run in cli_json("runs", "list", "--job", job_id)["runs"]}
    assert [step["run_id"] for step in job_run["steps"]] == [runs[task["id"]]["id"] for task in tasks]
    assert {run["job_run_id"] for run in runs.values()} == {job_run["id"]}
    assert [step["result"] for step in job_run["steps"]] == ["Done.", "Done."]
    text = cli("jobs", "runs", job_id).out
    assert text.startswith(f"Job run {job_run['id'][:8]}: completed (cli), started ")
    assert "step 2" in text.splitlines()[-1] and "success" in text.splitlines()[-1]


def test_jobs_runs_lists_newest_first_and_says_when_there_are_none(
    cli: Cli, cli_json: CliJson, engine: cs.Engine
) -> None:
    job_id, _ = create_job(cli_json, ["one"])
    assert cli("jobs", "runs", job_id).out.strip() == "No job runs yet."

    run_detached(cli, engine, job_id)
    run_detached(cli, engine, job_id)

    first, second = job_runs(cli_json, job_id)
    assert first["started_at"] >= second["started_at"] and first["id"] != second["id"]
    assert len(cli_json("jobs", "runs", job_id, "-n", "1")["job_runs"]) == 1


def test_a_job_keeps_its_newest_ended_job_runs_and_forgets_the_oldest(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, home: Path
) -> None:
    job_id, _ = create_job(cli_json, ["one"])
    run_detached(cli, engine, job_id)
    store = cs.Store(home)
    ((first_id, entry),) = store.job_runs().items()
    started = cs.parse_time(entry["started_at"], "started_at")
    old_ids = [f"old{n:05d}" for n in range(cs.JOB_RUNS_KEPT)]
    for n, old_id in enumerate(old_ids):  # older than the real one, the oldest first
        at = cs.fmt_time(started - timedelta(hours=cs.JOB_RUNS_KEPT - n))
        store.save_job_run(old_id, {**entry, "started_at": at, "finished_at": at})

    run_detached(cli, engine, job_id)  # its end forgets the oldest past JOB_RUNS_KEPT

    kept = [job_run["id"] for job_run in cli_json("jobs", "runs", job_id, "-n", "1000")["job_runs"]]
    assert len(kept) == cs.JOB_RUNS_KEPT
    assert kept[1] == first_id and kept[-1] == old_ids[2], "the newest kept, the two oldest forgotten"
    assert old_ids[0] not in kept and old_ids[1] not in kept


def test_a_failed_second_step_stops_the_job_run_and_the_rest_is_not_run(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job_id, _ = create_job(cli_json, ["one", "two [exit=1]", "three"])

    run_detached(cli, engine, job_id)

    (job_run,) = job_runs(cli_json, job_id)
    assert job_run["status"] == "failed"
    assert steps(job_run) == [("step 1", "success"), ("step 2", "failed"), ("step 3", "not_run")]
    assert record.prompts() == ["one", "two [exit=1]"]


def test_a_step_that_says_continue_lets_the_job_run_go_on_and_it_ends_failed(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job_id, _ = create_job(cli_json, ["one", "two [exit=1]", "three"], [], ["--on-failure", "continue"])

    run_detached(cli, engine, job_id)

    (job_run,) = job_runs(cli_json, job_id)
    assert steps(job_run) == [("step 1", "success"), ("step 2", "failed"), ("step 3", "success")]
    assert job_run["status"] == "failed"
    assert record.prompts() == ["one", "two [exit=1]", "three"]


def test_a_step_that_says_retry_is_retried_before_the_job_run_stops(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    options = ["--on-failure", "retry", "--retry-delay", "0"]
    job_id, _ = create_job(cli_json, ["one [exit=1]", "two"], options)

    run_detached(cli, engine, job_id)

    (job_run,) = job_runs(cli_json, job_id)
    assert (job_run["status"], job_run["steps"][0]["attempts"]) == ("failed", 2)
    assert steps(job_run) == [("step 1", "failed"), ("step 2", "not_run")]
    assert record.prompts() == ["one [exit=1]", "one [exit=1]"]


def test_a_skipped_step_stays_in_the_job_but_does_not_run(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job_id, tasks = create_job(cli_json, ["one", "two", "three"], [], ["--skip-in-job"])
    assert cli_json("tasks", "get", tasks[1]["id"])["skip_in_job"] is True

    run_detached(cli, engine, job_id)

    (job_run,) = job_runs(cli_json, job_id)
    assert steps(job_run) == [("step 1", "success"), ("step 2", "skipped"), ("step 3", "success")]
    assert job_run["status"] == "completed"
    assert record.prompts() == ["one", "three"]
    assert [task["id"] for task in cli_json("jobs", "tasks", job_id)["tasks"]] == [t["id"] for t in tasks]


def test_a_job_whose_every_task_is_skipped_is_refused_naming_why(cli: Cli, cli_json: CliJson) -> None:
    job_id, _ = create_job(cli_json, ["one"], ["--skip-in-job"])

    result = cli("jobs", "run", job_id, "--detach")

    assert result.code == 1
    assert (
        result.err.strip() == "error: every enabled task of the job is skipped (skip_in_job): nothing to run"
    )


def test_an_unknown_step_policy_is_refused_naming_the_option(cli_json: CliJson, cli: Cli) -> None:
    _, (task,) = create_job(cli_json, ["one"])

    result = cli("tasks", "update", task["id"], "--on-failure", "ignore")

    assert result.code == 2 and "--on-failure: invalid choice: 'ignore'" in result.err


def test_jobs_order_sets_the_order_the_job_runs_in(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job_id, (a, b, c) = create_job(cli_json, ["a", "b", "c"])

    result = cli("jobs", "order", job_id[:8], c["id"][:8], a["id"][:8])

    assert (result.code, result.out.strip()) == (0, "Order: 1. step 3, 2. step 1, 3. step 2")
    assert cli_json("jobs", "get", job_id)["task_order"] == [c["id"], a["id"], b["id"]]
    run_detached(cli, engine, job_id)
    assert record.prompts() == ["c", "a", "b"]
    assert steps(job_runs(cli_json, job_id)[0]) == [
        ("step 3", "success"),
        ("step 1", "success"),
        ("step 2", "success"),
    ]


def test_jobs_order_refuses_a_task_of_another_job(cli: Cli, cli_json: CliJson) -> None:
    job_id, _ = create_job(cli_json, ["a"])
    other = cli_json("tasks", "create", "--name", "elsewhere", "--prompt", "x")

    result = cli("jobs", "order", job_id, other["id"])

    assert (result.code, result.err.strip()) == (
        1,
        f"error: no task of the job 'Nightly' has the id '{other['id']}'",
    )


# Stop and crash -----------------------------------------------------------------------


def test_stopping_a_job_run_stops_its_step_and_records_the_rest_as_not_run(
    home: Path, cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job_id, (first, _, _) = create_job(cli_json, ["[hang] one", "two", "three"])
    cli_json("jobs", "run", job_id, "--detach")
    engine.tick()
    (run,) = cli_json("runs", "list", "--task", first["id"])["runs"]
    wait_session(home, run["id"])
    assert job_runs(cli_json, job_id)[0]["status"] == "running"
    assert steps(job_runs(cli_json, job_id)[0])[1:] == [("step 2", "pending"), ("step 3", "pending")]

    assert cli("jobs", "stop", job_id).code == 0

    wait_status(home, run["id"], "cancelled")
    drive(engine)
    (job_run,) = job_runs(cli_json, job_id)
    assert job_run["status"] == "stopped" and job_run["finished_at"]
    assert steps(job_run) == [("step 1", "cancelled"), ("step 2", "not_run"), ("step 3", "not_run")]
    assert record.prompts() == ["[hang] one"]


def test_a_job_run_whose_process_died_is_recovered_as_interrupted(
    home: Path, cli_json: CliJson, record: Recorder
) -> None:
    job_id, (first, _) = create_job(cli_json, ["[hang] one", "two"])
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "cli", "jobs", "run", job_id],
        env=child_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        runs = wait_for(lambda: cli_json("runs", "list", "--task", first["id"])["runs"], "the first step")
        wait_session(home, runs[0]["id"])
    finally:
        stop_process(proc, signal.SIGKILL)
    state = json.loads((home / cs.STATE_FILE).read_text(encoding="utf-8"))
    assert [entry["status"] for entry in state["job_runs"].values()] == ["running"]  # as it was left

    engine = cs.Engine(cs.Store(home), kill_grace=GRACE)
    assert engine.start(thread=False)
    try:
        (job_run,) = job_runs(cli_json, job_id)
    finally:
        engine.stop(timeout=WAIT_SECONDS)
    assert (job_run["status"], job_run["trigger"]) == ("interrupted", "cli")
    assert steps(job_run) == [("step 1", "interrupted"), ("step 2", "not_run")]
    assert record.prompts() == ["[hang] one"]


def test_a_foreground_job_run_is_recorded_like_one_the_engine_drives(cli: Cli, cli_json: CliJson) -> None:
    job_id, _ = create_job(cli_json, ["one", "two [exit=1]", "three"], [], ["--on-failure", "continue"])

    assert cli("jobs", "run", job_id).code == 1

    (job_run,) = job_runs(cli_json, job_id)
    assert (job_run["status"], job_run["trigger"]) == ("failed", "cli")
    assert steps(job_run) == [("step 1", "success"), ("step 2", "failed"), ("step 3", "success")]


# Through the API --------------------------------------------------------------------


def test_the_api_lists_a_jobs_runs_with_their_steps(home: Path, cli_json: CliJson, engine: cs.Engine) -> None:
    job_id, _ = create_job(cli_json, ["one"])
    server = cs.ApiServer(cs.Service(cs.Store(home)), "127.0.0.1", 0)
    server.start()
    try:
        client = cs.ApiClient(f"http://127.0.0.1:{server.server_port}", cs.api_token(home))
        started = client.run_job(job_id)
        drive(engine)
        (job_run,) = client.list_job_runs(job_id)
        with pytest.raises(cs.NotFound):
            client.list_job_runs("0" * 8 + "-0000-4000-8000-" + "0" * 12)
    finally:
        server.stop()
    assert (job_run["id"], job_run["trigger"], job_run["status"]) == (
        started["job_run_id"],
        "manual",
        "completed",
    )
    assert [step["status"] for step in job_run["steps"]] == ["success"]


# A job's own schedule ----------------------------------------------------------------

HOURLY = {"type": "interval", "every_seconds": 3600}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(home: Path, clock: FakeClock) -> Iterator[tuple[cs.Service, cs.Engine]]:
    """A service and an engine (thread=False) on the fake clock."""
    store = cs.Store(home, clock=clock)
    engine = cs.Engine(store, kill_grace=GRACE)
    assert engine.start(thread=False)
    yield cs.Service(store), engine
    engine.stop(timeout=WAIT_SECONDS)


def scheduled_job(
    service: cs.Service, prompts: list[str], **job_fields: Any
) -> tuple[str, list[dict[str, Any]]]:
    job = service.create_job({"name": "Nightly", "schedule": HOURLY, **job_fields})
    tasks = [
        service.create_task({"name": f"step {n + 1}", "prompt": prompt, "job_id": job["id"]})
        for n, prompt in enumerate(prompts)
    ]
    return job["id"], tasks


@pytest.mark.parametrize(
    ("on_failure", "expected", "status"),
    [
        ("stop", [("step 1", "success"), ("step 2", "failed"), ("step 3", "not_run")], "failed"),
        ("continue", [("step 1", "success"), ("step 2", "failed"), ("step 3", "success")], "failed"),
    ],
)
def test_a_scheduled_job_runs_its_steps_as_one_job_run_when_it_fires(
    cli_json: CliJson,
    clock: FakeClock,
    timed: tuple[cs.Service, cs.Engine],
    on_failure: str,
    expected: list[tuple[str, str]],
    status: str,
) -> None:
    service, engine = timed
    job_id, (_, second, _) = scheduled_job(service, ["one", "two [exit=1]", "three"])
    service.update_task(second["id"], {"on_failure": on_failure})
    assert service.get_job(job_id)["next_run_at"] == stamp(3600)
    drive(engine)
    assert job_runs(cli_json, job_id) == []

    clock.set(at(3600))
    drive(engine)

    (job_run,) = job_runs(cli_json, job_id)
    assert (job_run["trigger"], job_run["scheduled_for"], job_run["status"]) == (
        "schedule",
        stamp(3600),
        status,
    )
    assert steps(job_run) == expected
    job = service.get_job(job_id)
    assert (job["next_run_at"], job["schedule_text"]) == (stamp(7200), "Every 1 hour")


def test_a_job_that_fires_while_its_last_run_goes_on_is_skipped_by_default(
    home: Path, cli_json: CliJson, clock: FakeClock, timed: tuple[cs.Service, cs.Engine], record: Recorder
) -> None:
    service, engine = timed
    job_id, (first,) = scheduled_job(service, ["[hang] one"])
    clock.set(at(3600))
    engine.tick()
    (run,) = service.list_runs(task_id=first["id"])
    wait_session(home, run["id"])

    clock.set(at(7200))
    engine.tick()

    latest, running = job_runs(cli_json, job_id)
    assert (latest["status"], latest["scheduled_for"], latest["steps"]) == ("skipped", stamp(7200), [])
    assert latest["note"] == "the job's last run was still going (overlap: skip)"
    assert running["status"] == "running"


def test_a_job_with_overlap_queue_runs_the_waiting_fire_after_its_last_run(
    home: Path, cli_json: CliJson, clock: FakeClock, timed: tuple[cs.Service, cs.Engine], record: Recorder
) -> None:
    service, engine = timed
    job_id, (first,) = scheduled_job(service, ["[hang] one"], overlap="queue")
    clock.set(at(3600))
    engine.tick()
    (run,) = service.list_runs(task_id=first["id"])
    wait_session(home, run["id"])
    clock.set(at(7200))
    engine.tick()
    assert [job_run["status"] for job_run in job_runs(cli_json, job_id)] == ["running"]

    service.update_task(first["id"], {"prompt": "one"})
    service.stop_job(job_id)
    wait_status(home, run["id"], "cancelled")
    drive(engine)

    latest, stopped = job_runs(cli_json, job_id)
    assert (stopped["status"], stopped["scheduled_for"]) == ("stopped", stamp(3600))
    assert (latest["status"], latest["scheduled_for"], latest["trigger"]) == (
        "completed",
        stamp(7200),
        "schedule",
    )
    assert record.prompts() == ["[hang] one", "one"]


def test_a_job_refuses_overlap_parallel_naming_the_field(timed: tuple[cs.Service, cs.Engine]) -> None:
    service, _ = timed
    with pytest.raises(cs.Invalid) as refused:
        service.create_job({"name": "N", "overlap": "parallel"})
    assert refused.value.field == "overlap"


def look(engine: cs.Engine, clock: FakeClock, times: int = 1) -> None:
    """Let the engine take `times` more looks at the watched folders (one per poll period)."""
    for _ in range(times):
        clock.advance(cs.WATCH_POLL_SECONDS)
        engine.tick()


def test_a_job_that_watches_a_folder_runs_as_one_job_run_once_it_is_quiet(
    tmp_path: Path,
    cli_json: CliJson,
    clock: FakeClock,
    timed: tuple[cs.Service, cs.Engine],
    record: Recorder,
) -> None:
    service, engine = timed
    # The folder holds the fake claude's record, which each step writes: not news.
    job = cli_json("jobs", "create", "--name", "On change", "--watch", str(tmp_path), "--debounce", "4")
    assert (job["schedule"]["type"], job["schedule"]["debounce_seconds"]) == ("file_watch", 4.0)
    for n, prompt in enumerate(["one", "two"]):
        service.create_task({"name": f"step {n + 1}", "prompt": prompt, "job_id": job["id"]})
    look(engine, clock)  # the first look: the baseline

    (tmp_path / "notes.txt").write_text("news", encoding="utf-8")
    look(engine, clock, times=2)  # changed, then quiet for 2 s of the 4
    assert job_runs(cli_json, job["id"]) == []
    look(engine, clock)  # quiet long enough: it fires
    fired_at = clock()
    drive(engine)
    look(engine, clock, times=4)
    drive(engine)

    (job_run,) = job_runs(cli_json, job["id"])
    assert (job_run["trigger"], job_run["status"], job_run["scheduled_for"]) == (
        "file_watch",
        "completed",
        cs.fmt_time(fired_at),
    )
    assert steps(job_run) == [("step 1", "success"), ("step 2", "success")]
    assert record.prompts() == ["one", "two"]


def test_missed_job_fires_are_caught_up_once_and_the_rest_recorded(
    cli_json: CliJson, clock: FakeClock, timed: tuple[cs.Service, cs.Engine]
) -> None:
    service, engine = timed
    job_id, _ = scheduled_job(service, ["one"])

    clock.set(at(3 * 3600 + 300))
    drive(engine)

    caught_up, missed = job_runs(cli_json, job_id)
    assert (caught_up["trigger"], caught_up["scheduled_for"], caught_up["status"]) == (
        "catch_up",
        stamp(3 * 3600),
        "completed",
    )
    assert (missed["status"], missed["scheduled_for"]) == ("missed", stamp(3600))
    assert missed["note"].startswith("2 scheduled time(s) missed while the scheduler was not running")
    assert service.get_job(job_id)["next_run_at"] == stamp(4 * 3600)


def test_a_paused_engine_records_a_job_fire_as_skipped(
    cli_json: CliJson, clock: FakeClock, timed: tuple[cs.Service, cs.Engine], record: Recorder
) -> None:
    service, engine = timed
    job_id, _ = scheduled_job(service, ["one"])
    service.set_paused(True)

    clock.set(at(3600))
    drive(engine)

    (job_run,) = job_runs(cli_json, job_id)
    assert (job_run["status"], job_run["note"]) == ("skipped", "the scheduler was paused")
    assert record.prompts() == []


RESET = 3 * 3600 + 1800  # claude's resetsAt in the hold tests: T0 + 3 h 30
HELD_UNTIL = RESET + 60  # the reset plus the engine's margin


def hit_the_limit(service: cs.Service, engine: cs.Engine) -> None:
    """Run a task whose session hits the subscription's usage limit, resetting at RESET."""
    epoch = int(at(RESET).timestamp())
    limited = service.create_task({"name": "limited", "prompt": f"[usage_limit={epoch}]"})
    service.request_run(limited["id"])
    drive(engine)
    assert service.engine_status()["hold"]["until"] == stamp(HELD_UNTIL)


def test_a_job_due_during_a_hold_is_deferred_then_runs_once_after_it(
    cli_json: CliJson, clock: FakeClock, timed: tuple[cs.Service, cs.Engine], record: Recorder
) -> None:
    service, engine = timed
    job_id, _ = scheduled_job(service, ["one", "two"])
    skipping = service.create_job({"name": "No catch-up", "schedule": HOURLY, "catch_up": "skip"})
    service.create_task({"name": "alone", "prompt": "alone", "job_id": skipping["id"]})
    hit_the_limit(service, engine)
    for hour in (1, 2, 3):
        clock.set(at(hour * 3600))
        drive(engine)

    (deferred,) = job_runs(cli_json, job_id)
    assert (deferred["status"], deferred["trigger"], deferred["scheduled_for"], deferred["steps"]) == (
        "deferred",
        "schedule",
        stamp(3600),
        [],
    )
    span = f"{cs.fmt_local(at(3600))} to {cs.fmt_local(at(3 * 3600))}"
    assert deferred["note"] == (
        f"3 fires ({span}) held back by the usage-limit hold until {cs.fmt_local(at(HELD_UNTIL))}; "
        "one job run follows when it lifts (catch_up: once)"
    )
    assert len(record.prompts()) == 1  # only the session that hit the limit
    (held,) = job_runs(cli_json, skipping["id"])
    assert set(service.engine_status()["hold"]["deferred_job_run_ids"]) == {deferred["id"], held["id"]}

    clock.set(at(HELD_UNTIL))
    drive(engine)

    caught_up, deferred = job_runs(cli_json, job_id)
    assert (caught_up["trigger"], caught_up["scheduled_for"], caught_up["status"]) == (
        "catch_up",
        stamp(3 * 3600),
        "completed",
    )
    assert deferred["note"] == (
        f"3 fires ({span}) held back by the usage-limit hold; "
        f"caught up by job run {caught_up['id'][:8]} when it lifted"
    )
    (skipped,) = job_runs(cli_json, skipping["id"])
    assert (skipped["status"], skipped["note"].split("; ")[-1]) == (
        "deferred",
        "not run after it (catch_up: skip)",
    )
    assert record.prompts()[1:] == ["one", "two"]


def test_jobs_create_and_update_take_a_schedule(cli: Cli, cli_json: CliJson) -> None:
    job = cli_json("jobs", "create", "--name", "Nightly", "--daily", "03:00", "--overlap", "queue")
    assert (job["schedule"]["type"], job["schedule"]["expression"], job["overlap"]) == (
        "cron",
        "0 3 * * *",
        "queue",
    )
    assert job["next_run_at"] is not None and job["schedule_text"] == "At 03:00"

    updated = cli_json("jobs", "update", job["id"], "--every", "2h")
    assert (updated["schedule"], updated["schedule_text"]) == (
        {"type": "interval", "every_seconds": 7200, "anchor": None},
        "Every 2 hours",
    )
    watching = cli_json("jobs", "update", job["id"], "--watch", "/srv/docs")
    assert (watching["schedule"], watching["next_run_at"]) == (
        {"type": "file_watch", "path": "/srv/docs", "recursive": True, "debounce_seconds": 5.0},
        None,
    )


# Placeholders and the previous step's session ----------------------------------------


def test_placeholders_carry_the_previous_steps_result_into_the_next_prompt(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    second = (
        "Fix: {{previous.result}} ({{ previous.status }}); literal \\{{previous.result}}; "
        "run {{job_run.id}} from {{job_run.started_at}}; code {x} stays"
    )
    job_id, _ = create_job(cli_json, ["one [result=Found 3 bugs]", second])

    run_detached(cli, engine, job_id)

    (job_run,) = job_runs(cli_json, job_id)
    assert record.prompts() == [
        "one [result=Found 3 bugs]",
        f"Fix: Found 3 bugs (success); literal {{{{previous.result}}}}; "
        f"run {job_run['id']} from {job_run['started_at']}; code {{x}} stays",
    ]


def test_a_task_run_alone_reads_its_placeholders_as_empty(
    cli: Cli, cli_json: CliJson, record: Recorder
) -> None:
    task = cli_json("tasks", "create", "--name", "alone", "--prompt", "[{{previous.result}}] then")

    assert cli("tasks", "run", task["id"]).code == 0

    assert record.prompts() == ["[] then"]


@pytest.mark.parametrize("prompt", ["{{previous.reslt}}", "a {{ result }} b"])
def test_an_unknown_placeholder_is_refused_when_the_task_is_saved(
    cli: Cli, cli_json: CliJson, prompt: str
) -> None:
    result = cli("tasks", "create", "--name", "bad", "--prompt", prompt)

    assert result.code == 1
    assert result.err.startswith("error: --prompt: unknown placeholder '{{")
    assert "known: {{previous.result}}" in result.err and "write \\{{ for a literal {{" in result.err
    assert cli_json("tasks", "list")["tasks"] == []
    task = cli_json("tasks", "create", "--name", "ok", "--prompt", "fine")
    assert cli("tasks", "update", task["id"], "--prompt", prompt).code == 1
    assert cli_json("tasks", "get", task["id"])["prompt"] == "fine"


def test_a_step_can_continue_the_previous_steps_session(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job_id, _ = create_job(cli_json, ["one", "two"], [], ["--session-mode", "previous"])

    run_detached(cli, engine, job_id)

    (job_run,) = job_runs(cli_json, job_id)
    first = cli_json("runs", "get", job_run["steps"][0]["run_id"])
    argvs = [entry["argv"] for entry in record.entries()]
    assert "--resume" not in argvs[0]
    assert argvs[1][argvs[1].index("--resume") + 1] == first["session_id"]
    assert job_run["status"] == "completed"


def test_a_first_step_that_would_continue_a_previous_session_fails_saying_why(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job_id, _ = create_job(cli_json, ["one", "two"], ["--session-mode", "previous"])

    run_detached(cli, engine, job_id)

    (job_run,) = job_runs(cli_json, job_id)
    assert steps(job_run) == [("step 1", "failed"), ("step 2", "not_run")]
    error = cli_json("runs", "get", job_run["steps"][0]["run_id"])["error"]
    assert error.startswith("session_mode: there is no previous step's session to continue")
    assert record.entries() == []


# Progress ------------------------------------------------------------------------------


def test_job_progress_counts_the_steps_of_its_latest_job_run(
    home: Path, cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    job_id, (first, _, third) = create_job(cli_json, ["one", "two", "three"], [], [], ["--skip-in-job"])
    run_detached(cli, engine, job_id)
    listed = cli_json("jobs", "get", job_id)["progress"]
    assert (listed["text"], listed["total"], listed["percent"]) == (
        "2/2",
        2,
        100,
    )  # the skipped one is not a step

    cli_json("tasks", "update", first["id"], "--prompt", "[hang] one")
    cli_json("jobs", "run", job_id, "--detach")
    engine.tick()
    (run,) = [
        run for run in cli_json("runs", "list", "--task", first["id"])["runs"] if run["status"] == "running"
    ]
    wait_session(home, run["id"])

    (job,) = [job for job in cli_json("jobs", "list")["jobs"] if job["id"] == job_id]
    progress = job["progress"]
    assert (progress["text"], progress["running"], progress["never_run"]) == ("0/2", 1, 1)
    assert cli_json("jobs", "get", job_id)["progress"] == progress
    cli_json("jobs", "stop", job_id)
    wait_status(home, run["id"], "cancelled")
    assert third["skip_in_job"] is True


# Task-on-task triggers --------------------------------------------------------------


def runs_of(cli_json: CliJson, task_id: str) -> list[tuple[str, str]]:
    return [(run["trigger"], run["status"]) for run in cli_json("runs", "list", "--task", task_id)["runs"]]


def test_a_task_runs_once_each_time_the_task_it_follows_succeeds(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    first = cli_json("tasks", "create", "--name", "A", "--prompt", "a")
    second = cli_json("tasks", "create", "--name", "B", "--prompt", "b", "--after", first["id"][:8])
    assert second["run_after"] == {"task_id": first["id"], "when": "succeeded"}

    for _ in range(2):
        assert cli("tasks", "run", first["id"], "--detach").code == 0
        drive(engine)

    assert runs_of(cli_json, second["id"]) == [("task", "success"), ("task", "success")]
    assert record.prompts() == ["a", "b", "a", "b"]
    cli_json("tasks", "update", first["id"], "--prompt", "a [exit=1]")
    cli("tasks", "run", first["id"], "--detach")
    drive(engine)
    assert len(runs_of(cli_json, second["id"])) == 2  # a failure is not a success


def test_a_task_can_follow_another_ones_failures(
    cli: Cli, cli_json: CliJson, engine: cs.Engine, record: Recorder
) -> None:
    first = cli_json("tasks", "create", "--name", "A", "--prompt", "a [exit=1]")
    cli_json(
        "tasks",
        "create",
        "--name",
        "Fix",
        "--prompt",
        "fix",
        "--after",
        first["id"],
        "--after-when",
        "failed",
    )
    cli("tasks", "run", first["id"], "--detach")
    drive(engine)

    assert record.prompts() == ["a [exit=1]", "fix"]


def test_a_foreground_run_queues_the_tasks_that_follow_it(
    cli: Cli, cli_json: CliJson, engine: cs.Engine
) -> None:
    first = cli_json("tasks", "create", "--name", "A", "--prompt", "a")
    second = cli_json(
        "tasks", "create", "--name", "B", "--prompt", "b", "--after", first["id"], "--after-when", "any"
    )

    result = cli("tasks", "run", first["id"])

    assert result.code == 0 and "of B (it runs after this task)" in result.err
    drive(engine)
    assert runs_of(cli_json, second["id"]) == [("task", "success")]


def test_a_cycle_of_task_triggers_is_refused_when_saved(cli: Cli, cli_json: CliJson) -> None:
    a = cli_json("tasks", "create", "--name", "A", "--prompt", "a")
    b = cli_json("tasks", "create", "--name", "B", "--prompt", "b", "--after", a["id"])
    c = cli_json("tasks", "create", "--name", "C", "--prompt", "c", "--after", b["id"])

    result = cli("tasks", "update", a["id"], "--after", c["id"])

    assert (result.code, result.err.strip()) == (
        1,
        "error: --after: that makes a cycle: A → C → B → A",
    )
    assert cli_json("tasks", "get", a["id"])["run_after"] is None
    itself = cli("tasks", "update", a["id"], "--after", a["id"])
    assert itself.err.strip() == "error: --after: a task cannot run after itself"
    assert cli_json("tasks", "update", c["id"], "--after", "none")["run_after"] is None
    assert cli_json("tasks", "update", a["id"], "--after", c["id"])["run_after"]["task_id"] == c["id"]


def test_deleting_a_job_forgets_its_job_runs_and_schedule(
    home: Path, cli: Cli, cli_json: CliJson, engine: cs.Engine
) -> None:
    job_id, _ = create_job(cli_json, ["one"])
    cli_json("jobs", "update", job_id, "--every", "1h")
    run_detached(cli, engine, job_id)
    kept, _ = create_job(cli_json, ["two"])
    run_detached(cli, engine, kept)

    assert cli("jobs", "delete", job_id, "--force").code == 0

    state = json.loads((home / cs.STATE_FILE).read_text(encoding="utf-8"))
    assert [entry["job_id"] for entry in state["job_runs"].values()] == [kept]
    assert job_id not in state["job_schedules"]


def test_a_job_run_whose_process_died_reads_as_interrupted_without_an_engine(
    home: Path, cli_json: CliJson, record: Recorder
) -> None:
    job_id, (first, _) = create_job(cli_json, ["[hang] one", "two"])
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "cli", "jobs", "run", job_id],
        env=child_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        runs = wait_for(lambda: cli_json("runs", "list", "--task", first["id"])["runs"], "the first step")
        wait_session(home, runs[0]["id"])
    finally:
        stop_process(proc, signal.SIGKILL)

    (job_run,) = job_runs(cli_json, job_id)

    assert job_run["status"] == "interrupted"
    assert steps(job_run) == [("step 1", "interrupted"), ("step 2", "not_run")]


# Pinned by the mutation run (tests/mutate.py) -------------------------------------------


def test_a_foreground_job_run_whose_process_died_between_steps_reads_as_interrupted(
    cli_json: CliJson, home: Path
) -> None:
    job_id, tasks = create_job(cli_json, ["one", "two"])
    service = cs.Service(cs.Store(home))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    job_run_id, _ = service.open_job_run(
        job_id, continue_on_failure=False, trigger=cs.Trigger.MANUAL, owner=f"{cs.host_name()}:{gone.pid}:"
    )
    now = cs.utcnow()
    step = cs.Run(
        cs.new_id(),
        tasks[0]["id"],
        status=cs.RunStatus.SUCCESS,
        created_at=now,
        started_at=now,
        finished_at=now,
        job_run_id=job_run_id,
    )
    service.store.save_run(step)
    service.note_job_step(job_run_id, 0, step.id)
    (job_run,) = job_runs(cli_json, job_id)
    assert job_run["status"] == "interrupted"
    assert cli_json("runs", "get", step.id[:8])["status"] == "success", "the ended step stays as it ended"
