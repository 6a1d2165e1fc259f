"""The store: layout, caching across instances, unreadable files, compatibility, cascade
delete with crashes part-way, the sweep, retention, and job progress and status."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import claude_scheduler as cs

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
STAMP = "2026-03-01T08:00:00.000+00:00"


class Clock:
    """A clock that moves one second per reading, so every record has its own time."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def open_store(home: Path) -> cs.Store:
    return cs.Store(home, clock=Clock())


def add_run(store: cs.Store, task_id: str, status: str = "success", *, log: bool = True) -> str:
    """Record a run of `task_id` in `status` (with a log file unless told not to)."""
    created = store.clock()
    run = cs.Run(cs.new_id(), task_id, status=cs.RunStatus(status), created_at=created)
    if status != "queued":
        run.started_at = created
    if run.status in cs.FINISHED_STATUSES:
        run.finished_at = store.clock()
    store.save_run(run)
    if log:
        store.log_path(run.id).write_text(f"log of {run.id}\n")
    return run.id


def finish(store: cs.Store, run_id: str, status: str) -> None:
    run = store.run(run_id)
    store.save_run(dataclasses.replace(run, status=cs.RunStatus(status), finished_at=store.clock()))


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def files_under(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def run_file(home: Path, task_id: str) -> Path:
    return home / "runs" / f"{task_id}.json"


@dataclasses.dataclass
class World:
    """Two jobs and an unassigned task, each with runs and logs."""

    home: Path
    store: cs.Store
    backend: cs.Service
    job: str
    tasks: list[str]
    runs: dict[str, list[str]]
    other_job: str
    other_task: str
    loose_task: str


@pytest.fixture
def world(home: Path) -> World:
    store = open_store(home)
    backend = cs.Service(store)
    job = backend.create_job({"name": "Doomed"})["id"]
    other_job = backend.create_job({"name": "Kept"})["id"]
    tasks = [backend.create_task({"name": f"t{n}", "prompt": "p", "job_id": job})["id"] for n in range(3)]
    other_task = backend.create_task({"name": "kept", "prompt": "p", "job_id": other_job})["id"]
    loose_task = backend.create_task({"name": "loose", "prompt": "p"})["id"]
    backend.update_job(job, {"task_order": list(reversed(tasks))})
    runs = {
        task_id: [add_run(store, task_id) for _ in range(2)] for task_id in [*tasks, other_task, loose_task]
    }
    return World(home, store, backend, job, tasks, runs, other_job, other_task, loose_task)


def assert_consistent(home: Path) -> cs.Store:
    """Open the home (which sweeps) and check the promises that hold after any crash."""
    store = cs.Store(home)
    jobs = {job.id for job in store.job_list()}
    tasks = store.task_list()
    for task in tasks:
        assert task.job_id is None or task.job_id in jobs, f"task {task.name} points at a missing job"
    task_ids = {task.id for task in tasks}
    assert {p.stem for p in (home / "runs").glob("*.json")} <= task_ids, "orphaned run file"
    referenced = {run.id for run in store.all_runs()}
    assert {p.stem for p in (home / "logs").glob("*.log")} <= referenced, "orphaned log"
    assert set(store.state.data.get("tasks", {})) <= task_ids, "derived state of a deleted task"
    assert not list(home.glob(".*.tmp")) and not list((home / "runs").glob(".*.tmp"))
    return store


# Layout ------------------------------------------------------------------------


def test_the_data_home_holds_the_documented_files(cli: Callable[..., Any], home: Path) -> None:
    job = cli("jobs", "create", "--name", "J", "--json").json()
    task = cli(
        "tasks", "create", "--name", "T", "--prompt", "p", "--job", job["id"], "--every", "1h", "--json"
    )
    task = task.json()
    store = open_store(home)
    run_id = cs.Service(store).request_run(task["id"])["id"]
    store.log_path(run_id).write_text("hello\n")
    store.update_settings({"retention_runs": 7})

    jobs = read(home / "jobs.json")
    assert (jobs["version"], [j["id"] for j in jobs["jobs"]]) == (1, [job["id"]])
    assert isinstance(jobs["rev"], str)
    tasks = read(home / "tasks.json")
    assert tasks["version"] == 1
    assert [(t["id"], t["job_id"]) for t in tasks["tasks"]] == [(task["id"], job["id"])]
    assert "next_run_at" not in tasks["tasks"][0], "derived fields belong in state.json"
    runs = read(run_file(home, task["id"]))
    assert (runs["version"], runs["task_id"], [r["id"] for r in runs["runs"]]) == (1, task["id"], [run_id])
    state = read(home / "state.json")
    assert state["tasks"][task["id"]]["next_run_at"] == task["next_run_at"]
    assert [entry["run_id"] for entry in state["queue"]] == [run_id]
    assert read(home / "settings.json")["retention_runs"] == 7
    assert (home / "logs" / f"{run_id}.log").read_text() == "hello\n"
    assert (home / ".lock").exists()


def test_every_write_gives_the_file_a_new_rev(home: Path) -> None:
    backend = cs.Service(open_store(home))
    job = backend.create_job({"name": "J"})
    first = read(home / "jobs.json")["rev"]
    backend.update_job(job["id"], {"description": "d"})
    assert read(home / "jobs.json")["rev"] != first


# Caching: several Store instances (and processes: see test_durability) share one truth


def test_two_stores_in_one_process_see_each_others_writes(home: Path) -> None:
    first, second = cs.Service(open_store(home)), cs.Service(open_store(home))
    assert first.list_jobs() == second.list_jobs() == []
    job = first.create_job({"name": "J"})
    assert [j["name"] for j in second.list_jobs()] == ["J"]
    task = second.create_task({"name": "T", "prompt": "p", "job_id": job["id"]})
    assert [t["id"] for t in first.list_tasks(job["id"])] == [task["id"]]
    run = first.request_run(task["id"])
    assert second.get_run(run["id"])["status"] == "queued"
    assert second.get_job(job["id"])["status"] == "in_progress"
    second.update_task(task["id"], {"name": "renamed"})
    assert first.get_task(task["id"])["name"] == "renamed"
    first.store.update_settings({"retention_runs": 5})
    assert second.store.settings()["retention_runs"] == 5
    second.set_paused(True)
    assert first.engine_status()["paused"] is True


def test_interleaved_writes_from_two_stores_lose_nothing(home: Path) -> None:
    stores = [cs.Service(open_store(home)), cs.Service(open_store(home))]
    for backend in stores:
        backend.list_tasks()  # both caches are warm before the race begins
    created = [stores[n % 2].create_task({"name": f"t{n}", "prompt": "p"})["id"] for n in range(20)]
    for n, task_id in enumerate(created):
        stores[(n + 1) % 2].update_task(task_id, {"prompt": f"p{n}"})
    for backend in stores:
        assert {t["id"]: t["prompt"] for t in backend.list_tasks()} == {
            task_id: f"p{n}" for n, task_id in enumerate(created)
        }


def test_derived_state_queue_job_runs_and_pause_live_in_state_json(home: Path) -> None:
    store, other = open_store(home), open_store(home)
    backend = cs.Service(store)
    task = backend.create_task(
        {"name": "T", "prompt": "p", "schedule": {"type": "interval", "every_seconds": 600}}
    )
    queued = backend.request_run(task["id"])["id"]
    finished = add_run(store, task["id"], "failed")
    store.save_job_run("job-run-1", {"job_id": None, "status": "running"})
    backend.set_paused(True)

    state = read(home / "state.json")
    entry = state["tasks"][task["id"]]
    assert entry["next_run_at"] == task["next_run_at"]
    assert entry["last_run_status"] == "failed"
    assert entry["last_run_at"] == cs.fmt_time(store.run(finished).started_at)
    assert [item["run_id"] for item in state["queue"]] == [queued]
    assert state["job_runs"] == {"job-run-1": {"job_id": None, "status": "running"}}
    assert state["engine"]["paused"] is True

    assert [item["run_id"] for item in other.queue()] == [queued]
    assert other.job_runs() == {"job-run-1": {"job_id": None, "status": "running"}}
    assert other.task(task["id"]).last_run_status is cs.RunStatus.FAILED
    other.dequeue([queued])
    other.save_job_run("job-run-1", None)
    assert store.queue() == [] and store.job_runs() == {}
    assert store.engine_state()["paused"] is True, "a write to one part of state.json keeps the rest"


def test_a_hand_edit_of_a_file_is_picked_up(home: Path) -> None:
    backend = cs.Service(open_store(home))
    task = backend.create_task({"name": "T", "prompt": "p"})
    assert backend.get_task(task["id"])["name"] == "T"
    document = read(home / "tasks.json")
    document["tasks"][0]["name"] = "Edited by hand"
    (home / "tasks.json").write_text(json.dumps(document))
    assert backend.get_task(task["id"])["name"] == "Edited by hand"


@pytest.mark.parametrize("how", ["delete the task", "move the task out"])
def test_dropping_a_task_from_a_job_order_keeps_other_processes_edits(home: Path, how: str) -> None:
    window, other = cs.Service(open_store(home)), cs.Service(open_store(home))
    job = window.create_job({"name": "Before"})["id"]
    tasks = [window.create_task({"name": f"t{n}", "prompt": "p", "job_id": job})["id"] for n in range(2)]
    window.update_job(job, {"task_order": tasks})
    other.update_job(job, {"name": "After", "description": "edited elsewhere"})
    if how == "delete the task":
        window.delete_task(tasks[0])
    else:
        window.update_task(tasks[0], {"job_id": None})
    stored = cs.Store(home).job(job)
    assert (stored.name, stored.description, stored.task_order) == ("After", "edited elsewhere", [tasks[1]])


# Files that cannot be read are kept, refused and reported ----------------------------


def corrupt_cases() -> Iterator[Any]:
    garbage = b'{"version": 1, "tasks": [{"id": '
    bad = {
        "jobs.json": {"jobs": [{"id": "not-a-uuid", "name": "J"}]},
        "tasks.json": {"tasks": [{"id": cs.new_id(), "name": "T", "prompt": "p", "permission_mode": "yolo"}]},
        "RUNS": {"runs": [{"id": cs.new_id(), "task_id": cs.new_id(), "status": "exploded"}]},
        "state.json": None,  # derived data: a bad part is repaired, see test_hardening.py
    }
    for name, invalid in bad.items():
        yield pytest.param(name, garbage, id=f"{name}-unparseable")
        if invalid is not None:
            yield pytest.param(name, json.dumps(invalid).encode(), id=f"{name}-invalid")
        yield pytest.param(name, b"\xff\xfe\x00garbage", id=f"{name}-binary")
    yield pytest.param("tasks.json", b'{"version": 2, "tasks": []}', id="tasks.json-newer-version")


READ_AND_WRITE = {
    "jobs.json": (["jobs", "list"], ["jobs", "create", "--name", "New"]),
    "tasks.json": (["tasks", "list"], ["tasks", "create", "--name", "New", "--prompt", "p"]),
    "RUNS": (["runs", "list", "--task", "{task}"], ["tasks", "run", "{task}", "--detach"]),
    "state.json": (["tasks", "list"], ["engine", "pause"]),
}


@pytest.mark.parametrize(("name", "content"), corrupt_cases())
def test_an_unreadable_file_is_kept_refused_and_reported(
    world: World, cli: Callable[..., Any], name: str, content: bytes
) -> None:
    task = world.loose_task
    path = run_file(world.home, task) if name == "RUNS" else world.home / name
    original = path.read_bytes()
    path.write_bytes(content)
    before = files_under(world.home)
    reader, writer = ([word.format(task=task) for word in argv] for argv in READ_AND_WRITE[name])

    for argv in (reader, writer):
        result = cli(*argv)
        assert result.code == 1, argv
        assert result.out == ""
        assert result.err.startswith(f"error: {path} cannot be read (")
        assert "changes to it are refused" in result.err
    cs.Store(world.home)  # opening (and sweeping) must not touch anything either
    assert files_under(world.home) == before, "nothing may change while a file is unreadable"

    path.write_bytes(original)  # fixed by hand: everything is back, nothing was dropped
    assert cli(*reader).code == 0
    assert len(cs.Service(cs.Store(world.home)).list_runs(task_id=task)) == 2
    assert len(cs.Service(cs.Store(world.home)).list_tasks()) == 5


def test_the_error_for_an_invalid_record_names_the_field(world: World, cli: Callable[..., Any]) -> None:
    document = read(world.home / "tasks.json")
    document["tasks"][1]["schedule"] = {"type": "cron", "expression": "0 25 * * *"}
    (world.home / "tasks.json").write_text(json.dumps(document))
    result = cli("tasks", "get", world.tasks[0])
    assert result.code == 1
    assert "tasks[1].schedule.expression: hour field 25 is out of range 0-23" in result.err


@pytest.mark.parametrize("content", [b"retention_runs = 5\n", b'{"retention_runs": 0}'])
def test_an_unreadable_settings_file_is_kept_refused_and_reported(home: Path, content: bytes) -> None:
    store = open_store(home)
    (home / "settings.json").write_bytes(content)
    with pytest.raises(cs.StorageError, match=r"settings\.json cannot be read"):
        store.settings()
    with pytest.raises(cs.StorageError, match=r"settings\.json cannot be read"):
        store.update_settings({"max_concurrent_runs": 3})
    assert (home / "settings.json").read_bytes() == content


def test_a_broken_settings_file_does_not_stop_runs_being_recorded(home: Path) -> None:
    store = open_store(home)
    task = cs.Service(store).create_task({"name": "T", "prompt": "p"})["id"]
    run_id = add_run(store, task, "running")
    (home / "settings.json").write_text('{"retention_runs": "ten"}')
    finish(store, run_id, "success")
    assert cs.Store(home).run(run_id).status is cs.RunStatus.SUCCESS


def test_moving_a_broken_tasks_file_away_keeps_the_run_history(world: World, cli: Callable[..., Any]) -> None:
    tasks_file = world.home / "tasks.json"
    good = tasks_file.read_text()
    tasks_file.write_text(good[:-5])
    assert "moved away" in cli("tasks", "list").err
    tasks_file.rename(world.home / "tasks.json.broken")  # what the message suggests
    assert cli("tasks", "list").out == "No tasks.\n"
    cs.Store(world.home).sweep(logs=True)
    assert len(list((world.home / "runs").glob("*.json"))) == 5
    assert len(list((world.home / "logs").glob("*.log"))) == 10
    tasks_file.write_text(good)  # repaired and put back: every run is still there
    assert len(cli("runs", "list", "--json").json()["runs"]) == 10


def test_an_unreadable_file_elsewhere_does_not_block_unrelated_writes(
    world: World, cli: Callable[..., Any]
) -> None:
    run_file(world.home, world.tasks[0]).write_text("not json")
    result = cli("tasks", "run", world.loose_task, "--detach", "--json")
    assert result.code == 0, result.err
    assert run_file(world.home, world.tasks[0]).read_text() == "not json"


# Unknown fields and older files ----------------------------------------------------


def add_fields(path: Path, key: str, extra: dict[str, Any]) -> None:
    document = read(path)
    for record in document[key]:
        record.update(extra)
    path.write_text(json.dumps(document))


def test_unknown_fields_on_records_survive_rewrites(world: World, cli: Callable[..., Any]) -> None:
    extra = {"x_future": {"nested": [1, "two"]}, "x_flag": True}
    add_fields(world.home / "jobs.json", "jobs", extra)
    add_fields(world.home / "tasks.json", "tasks", extra)
    add_fields(run_file(world.home, world.loose_task), "runs", extra)

    assert cli("jobs", "update", world.job, "--description", "changed").code == 0
    assert cli("tasks", "update", world.loose_task, "--name", "changed").code == 0
    assert cli("tasks", "create", "--name", "new", "--prompt", "p").code == 0
    assert cli("tasks", "run", world.loose_task, "--detach").code == 0

    jobs = read(world.home / "jobs.json")["jobs"]
    tasks = read(world.home / "tasks.json")["tasks"]
    runs = read(run_file(world.home, world.loose_task))["runs"]
    assert len(jobs) == 2 and len(tasks) == 6 and len(runs) == 3
    for record in [*jobs, *tasks[:5], *runs[:2]]:
        assert {key: record.get(key) for key in extra} == extra
    assert tasks[4]["name"] == "changed" and jobs[0]["description"] == "changed"


def test_unknown_nested_fields_survive_rewrites(world: World, cli: Callable[..., Any]) -> None:
    document = read(world.home / "tasks.json")
    document["tasks"][0]["schedule"] = {"type": "interval", "every_seconds": 600, "jitter_seconds": 30}
    document["tasks"][0]["retry"]["on"] = ["timeout"]
    (world.home / "tasks.json").write_text(json.dumps(document))
    assert cli("tasks", "create", "--name", "new", "--prompt", "p").code == 0
    stored = read(world.home / "tasks.json")["tasks"][0]
    assert stored["schedule"].get("jitter_seconds") == 30
    assert stored["retry"].get("on") == ["timeout"]


def test_old_files_bare_lists_without_version_or_job_id_are_read_and_kept(
    home: Path, cli: Callable[..., Any]
) -> None:
    job_id, task_id, run_id = cs.new_id(), cs.new_id(), cs.new_id()
    home.mkdir()
    (home / "runs").mkdir()
    (home / "jobs.json").write_text(
        json.dumps([{"id": job_id, "name": "Old job", "created_at": STAMP, "updated_at": STAMP}])
    )
    (home / "tasks.json").write_text(
        json.dumps(
            {
                "tasks": [
                    {
                        "id": task_id,
                        "name": "Old task",
                        "prompt": "p",
                        "created_at": STAMP,
                        "updated_at": STAMP,
                    }
                ]
            }
        )
    )
    run_file(home, task_id).write_text(
        json.dumps([{"id": run_id, "task_id": task_id, "status": "success", "created_at": STAMP}])
    )

    assert [j["name"] for j in cli("jobs", "list", "--json").json()["jobs"]] == ["Old job"]
    unassigned = cli("tasks", "list", "--unassigned", "--json").json()["tasks"]
    assert [(t["id"], t["job_id"]) for t in unassigned] == [(task_id, None)]
    assert [r["id"] for r in cli("runs", "list", "--task", task_id, "--json").json()["runs"]] == [run_id]
    assert cli("jobs", "tasks", job_id, "--json").json() == {"tasks": []}

    assert cli("tasks", "update", task_id, "--job", job_id).code == 0
    assert cli("jobs", "update", job_id, "--description", "now versioned").code == 0
    assert cli("tasks", "run", task_id, "--detach").code == 0
    for name in ("jobs.json", "tasks.json", f"runs/{task_id}.json"):
        assert read(home / name)["version"] == 1
    assert read(home / "tasks.json")["tasks"][0]["job_id"] == job_id
    assert {r["id"] for r in read(run_file(home, task_id))["runs"]} >= {run_id}


# Cascade delete ----------------------------------------------------------------------


def test_deleting_a_job_removes_its_tasks_runs_and_logs_and_nothing_else(
    world: World, cli: Callable[..., Any]
) -> None:
    result = cli("jobs", "delete", world.job[:8], "--force", "--json")
    assert result.code == 0, result.err
    assert result.json() == {"deleted": {"jobs": 1, "tasks": 3, "runs": 6, "logs": 6}}
    store = assert_consistent(world.home)
    assert [job.id for job in store.job_list()] == [world.other_job]
    assert {task.id for task in store.task_list()} == {world.other_task, world.loose_task}
    for task_id in world.tasks:
        assert not run_file(world.home, task_id).exists()
        assert all(not store.log_path(run_id).exists() for run_id in world.runs[task_id])
    for task_id in (world.other_task, world.loose_task):
        assert all(store.log_path(run_id).exists() for run_id in world.runs[task_id])
        assert len(store.runs_of(task_id)) == 2
    assert store.sweep(logs=True) == cs.DeleteCounts(), "the delete left something for the sweep"


def test_deleting_a_task_removes_its_runs_and_logs_and_its_place_in_the_order(
    world: World, cli: Callable[..., Any]
) -> None:
    doomed = world.tasks[1]
    result = cli("tasks", "delete", doomed, "--force", "--json")
    assert result.json() == {"deleted": {"jobs": 0, "tasks": 1, "runs": 2, "logs": 2}}
    store = assert_consistent(world.home)
    assert doomed not in {task.id for task in store.task_list()}
    assert not run_file(world.home, doomed).exists()
    assert all(not store.log_path(run_id).exists() for run_id in world.runs[doomed])
    assert sum(len(store.runs_of(task_id)) for task_id in store.tasks.records) == 8


@pytest.mark.parametrize("how", [["delete", "{task}", "--force"], ["update", "{task}", "--job", "none"]])
def test_a_task_that_leaves_a_job_leaves_its_order_and_the_job_stays_editable(
    world: World, cli: Callable[..., Any], how: list[str]
) -> None:
    leaving = world.tasks[1]
    assert cli("tasks", *(word.format(task=leaving) for word in how)).code == 0
    assert cs.Store(world.home).job(world.job).task_order == [world.tasks[2], world.tasks[0]]
    result = cli("jobs", "update", world.job, "--description", "still editable")
    assert (result.code, result.err) == (0, "")


def test_deleting_a_run_removes_its_log_only(world: World, cli: Callable[..., Any]) -> None:
    doomed, kept = world.runs[world.loose_task]
    result = cli("runs", "delete", doomed[:10], "--json", "--yes")
    assert result.json() == {"deleted": {"jobs": 0, "tasks": 0, "runs": 1, "logs": 1}}
    store = assert_consistent(world.home)
    assert [run.id for run in store.runs_of(world.loose_task)] == [kept]
    assert not store.log_path(doomed).exists() and store.log_path(kept).exists()


class Crash(BaseException):
    """The process dies here: nothing after it runs, no handler sees it."""


def crash_at(monkeypatch: pytest.MonkeyPatch, step: int) -> list[str]:
    """Make the `step`-th file change (a write or an unlink) crash; returns the changes done."""
    done: list[str] = []
    write, unlink = cs.atomic_write, cs.Store._unlink

    def changing(action: Callable[..., Any], path: Path, *args: Any) -> Any:
        if len(done) == step:
            raise Crash(f"crash before {path.name}")
        done.append(path.name)
        return action(path, *args)

    monkeypatch.setattr(cs, "atomic_write", lambda path, *args: changing(write, path, *args))
    monkeypatch.setattr(cs.Store, "_unlink", staticmethod(lambda path: changing(unlink, path)))
    return done


@pytest.mark.parametrize("what", ["job", "task"])
def test_a_crash_at_any_step_of_a_delete_leaves_a_consistent_home(
    home: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    step = 0
    while True:
        world_home = home / f"crash-{step}"
        w = _small_world(world_home)
        with monkeypatch.context() as patch:
            done = crash_at(patch, step)
            backend = cs.Service(cs.Store(world_home))
            try:
                if what == "job":
                    backend.delete_job(w["job"], force=True)
                else:
                    backend.delete_task(w["tasks"][0], force=True)
            except Crash:
                completed = False
            else:
                completed = True
        store = assert_consistent(world_home)
        jobs = {job.id for job in store.job_list()}
        tasks = {task.id for task in store.task_list()}
        assert w["other"] in tasks and len(store.runs_of(w["other"])) == 2
        if what == "job" and w["job"] in jobs:
            assert tasks >= set(w["tasks"]) or not tasks & set(w["tasks"]), "a job half emptied"
            cs.Service(store).delete_job(w["job"], force=True)
        elif what == "task" and w["tasks"][0] in tasks:
            cs.Service(store).delete_task(w["tasks"][0], force=True)
        store = assert_consistent(world_home)
        assert not {task.id for task in store.task_list()} & set(w["tasks"][: 2 if what == "job" else 1])
        if completed:
            break
        assert len(done) == step, "the crash did not come at the step asked for"
        step += 1
    assert step >= 4, f"only {step} steps: the crash points did not cover the delete"


def _small_world(home: Path) -> dict[str, Any]:
    store = open_store(home)
    backend = cs.Service(store)
    job = backend.create_job({"name": "J"})["id"]
    tasks = [backend.create_task({"name": f"t{n}", "prompt": "p", "job_id": job})["id"] for n in range(2)]
    other = backend.create_task({"name": "other", "prompt": "p"})["id"]
    for task_id in [*tasks, other]:
        add_run(store, task_id)
        add_run(store, task_id, "failed")
    return {"job": job, "tasks": tasks, "other": other}


def test_when_the_second_write_of_a_job_delete_fails_no_task_points_at_a_missing_job(
    world: World, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    write = cs.atomic_write

    def failing(path: Path, data: bytes, mode: int = 0o600) -> None:
        if path.name == "jobs.json":
            raise cs.StorageError(f"cannot write {path}: No space left on device")
        write(path, data, mode)

    with monkeypatch.context() as patch:
        patch.setattr(cs, "atomic_write", failing)
        result = cli("jobs", "delete", world.job, "--force")
    assert result.code == 1
    assert result.err == f"error: cannot write {world.home / 'jobs.json'}: No space left on device\n"

    on_disk_jobs = {job["id"] for job in read(world.home / "jobs.json")["jobs"]}
    on_disk_tasks = read(world.home / "tasks.json")["tasks"]
    assert all(task["job_id"] in on_disk_jobs | {None} for task in on_disk_tasks)
    assert not {task["id"] for task in on_disk_tasks} & set(world.tasks), "the tasks go first"
    store = assert_consistent(world.home)  # the next open finishes or undoes the rest
    assert (
        world.job not in {job.id for job in store.job_list()}
        or cs.Service(store).get_job(world.job)["tasks"] == []
    )
    for task_id in world.tasks:
        assert not run_file(world.home, task_id).exists()
        assert all(not store.log_path(run_id).exists() for run_id in world.runs[task_id])
    for task_id in (world.other_task, world.loose_task):
        assert [run.id for run in store.runs_of(task_id)] == world.runs[task_id]


def crash_on(monkeypatch: pytest.MonkeyPatch, file_name: str) -> None:
    """The process dies just before it would write `file_name`."""
    write = cs.atomic_write

    def crashing(path: Path, *args: Any) -> None:
        if path.name == file_name:
            raise Crash(f"crash before {file_name}")
        write(path, *args)

    monkeypatch.setattr(cs, "atomic_write", crashing)


def test_the_next_open_finishes_a_delete_cut_short(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        crash_on(patch, "jobs.json")
        with pytest.raises(Crash):
            cs.Service(cs.Store(world.home)).delete_job(world.job, force=True)
    assert not {task["id"] for task in read(world.home / "tasks.json")["tasks"]} & set(world.tasks)
    doomed_runs = [run_id for task_id in world.tasks for run_id in world.runs[task_id]]
    assert all(run_file(world.home, task_id).exists() for task_id in world.tasks), "cut short indeed"
    assert all((world.home / "logs" / f"{run_id}.log").exists() for run_id in doomed_runs)

    store = assert_consistent(world.home)
    assert not any(run_file(world.home, task_id).exists() for task_id in world.tasks)
    assert not any(store.log_path(run_id).exists() for run_id in doomed_runs)
    assert {task.id for task in store.task_list()} == {world.other_task, world.loose_task}
    assert store.sweep(logs=True) == cs.DeleteCounts(), "the open left nothing behind"


@pytest.mark.parametrize("how", ["crash", "file"])
def test_a_job_whose_order_names_a_gone_task_stays_editable(
    world: World, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A crash between the tasks.json and jobs.json writes of a task delete (or an older
    or hand-edited jobs.json) leaves a task id in the job's order that no task has."""
    gone = world.tasks[1]
    if how == "crash":
        with monkeypatch.context() as patch:
            crash_on(patch, "jobs.json")
            with pytest.raises(Crash):
                cs.Service(cs.Store(world.home)).delete_task(gone, force=True)
    else:
        document = read(world.home / "jobs.json")
        document["jobs"][0]["task_order"].append(cs.new_id())
        (world.home / "jobs.json").write_text(json.dumps(document))
    assert cli("tasks", "get", gone).code == (1 if how == "crash" else 0)
    result = cli("jobs", "update", world.job, "--description", "still editable")
    assert (result.code, result.err) == (0, "")
    assert [task["name"] for task in cli("jobs", "get", world.job, "--json").json()["tasks"]] == [
        "t2",
        *(["t1"] if how == "file" else []),
        "t0",
    ]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_opening_removes_left_over_temp_files_of_dead_writers(world: World) -> None:
    gone = dead_pid()
    temp = world.home / f".tasks.json.{gone}.1.tmp"
    temp.write_text('{"version": 1, "tas')
    run_temp = world.home / "runs" / f".{world.tasks[0]}.json.{gone}.9.tmp"
    run_temp.write_text("")
    live = world.home / f".api-token.{os.getpid()}.1.tmp"
    live.write_text("being written outside the store lock")
    before = read(world.home / "tasks.json")
    cs.Store(world.home)
    assert not temp.exists() and not run_temp.exists()
    assert live.exists(), "a temp file of a process that still runs may be mid-write"
    assert read(world.home / "tasks.json") == before


def test_sweeping_logs_removes_only_logs_that_no_run_refers_to(world: World) -> None:
    stray = world.home / "logs" / f"{cs.new_id()}.log"
    stray.write_text("nobody's\n")
    store = cs.Store(world.home)
    assert stray.exists(), "a plain open does not scan every log"
    assert store.sweep(logs=True) == cs.DeleteCounts(logs=1)
    assert not stray.exists()
    assert len(list((world.home / "logs").glob("*.log"))) == 10


def test_run_files_that_no_delete_explains_are_kept(world: World) -> None:
    """A run file whose task is not in tasks.json, with no delete recorded, is history the
    user may still want (tasks.json lost or restored from a backup): it stays."""
    stranger = cs.new_id()
    run_id = cs.new_id()
    run_file(world.home, stranger).write_text(
        json.dumps(
            {
                "version": 1,
                "task_id": stranger,
                "runs": [{"id": run_id, "task_id": stranger, "status": "success"}],
            }
        )
    )
    (world.home / "logs" / f"{run_id}.log").write_text("old\n")
    cs.Store(world.home).sweep(logs=True)
    assert run_file(world.home, stranger).exists()
    assert (world.home / "logs" / f"{run_id}.log").exists()


def test_the_sweep_keeps_run_files_it_cannot_read(world: World) -> None:
    orphan = run_file(world.home, cs.new_id())
    orphan.write_text("{broken")
    cs.Store(world.home).sweep(logs=True)
    assert orphan.read_text() == "{broken"
    assert len(list((world.home / "logs").glob("*.log"))) == 10


# Retention ----------------------------------------------------------------------------


def test_retention_defaults_to_100_runs() -> None:
    assert cs.DEFAULT_SETTINGS["retention_runs"] == 100


def test_retention_keeps_the_newest_finished_runs_and_every_active_one(home: Path) -> None:
    store = open_store(home)
    assert store.settings()["retention_runs"] == 100
    store.update_settings({"retention_runs": 3})
    backend = cs.Service(store)
    task, other = (backend.create_task({"name": n, "prompt": "p"})["id"] for n in ("t", "other"))
    others = [add_run(store, other) for _ in range(3)]
    running = add_run(store, task, "running")
    queued = add_run(store, task, "queued")
    finished = [add_run(store, task, status) for status in ("success", "failed", "timeout", "success")]
    assert {run.id for run in store.runs_of(task)} == {running, queued, *finished[1:]}
    finished.append(add_run(store, task, "cancelled"))
    missed = add_run(store, task, "missed")  # skipped/missed records are counted apart

    kept = {run.id for run in cs.Store(home).runs_of(task)}
    assert kept == {running, queued, *finished[-3:], missed}
    for run_id in finished[:-3]:
        assert not store.log_path(run_id).exists()
    for run_id in kept:
        assert store.log_path(run_id).exists()
    assert {run.id for run in store.runs_of(other)} == set(others)

    finish(store, running, "success")  # the oldest run finishing is trimmed at once
    assert {run.id for run in cs.Store(home).runs_of(task)} == {queued, *finished[-3:], missed}
    assert not store.log_path(running).exists()


def test_a_flood_of_skipped_records_does_not_push_real_runs_out(home: Path) -> None:
    store = open_store(home)
    store.update_settings({"retention_runs": 3})
    task = cs.Service(store).create_task({"name": "t", "prompt": "p"})["id"]
    real = [add_run(store, task) for _ in range(3)]
    skipped = [add_run(store, task, "skipped", log=False) for _ in range(10)]

    kept = {run.id for run in cs.Store(home).runs_of(task)}
    assert kept == {*real, *skipped[-3:]}
    assert all(store.log_path(run_id).exists() for run_id in real)


# Job progress and status ------------------------------------------------------------


def test_jobs_list_and_get_show_progress_from_the_latest_runs(home: Path, cli: Callable[..., Any]) -> None:
    store = open_store(home)
    backend = cs.Service(store)
    job = backend.create_job({"name": "J"})["id"]
    tasks = [backend.create_task({"name": f"t{n}", "prompt": "p", "job_id": job})["id"] for n in range(5)]
    backend.create_task({"name": "loose", "prompt": "p"})
    add_run(store, tasks[1], "running")
    add_run(store, tasks[2], "failed")
    add_run(store, tasks[2], "success")  # the latest run counts
    add_run(store, tasks[3], "success")
    add_run(store, tasks[3], "failed")
    add_run(store, tasks[4], "success")
    add_run(store, tasks[4], "skipped")  # a run that never executed says nothing

    expected = {
        "total": 5,
        "never_run": 1,
        "running": 1,
        "success": 2,
        "failed": 1,
        "done": 2,
        "percent": 40,
        "text": "2/5",
    }
    (listed,) = cli("jobs", "list", "--json").json()["jobs"]
    assert listed["progress"] == expected
    assert listed["status"] == "in_progress"
    got = cli("jobs", "get", job, "--json").json()
    assert got["progress"] == expected
    assert [task["id"] for task in got["tasks"]] == tasks
    assert [task["last_run_status"] for task in got["tasks"]] == [
        None,
        "running",
        "success",
        "failed",
        "success",
    ]
    table = cli("jobs", "list").out
    assert "2/5 (40%)" in table.splitlines()[1]


def test_a_run_cancelled_before_it_started_leaves_the_progress_as_it_was(home: Path) -> None:
    store = open_store(home)
    backend = cs.Service(store)
    job = backend.create_job({"name": "J"})["id"]
    task = backend.create_task({"name": "t", "prompt": "p", "job_id": job})["id"]
    add_run(store, task, "success")
    queued = add_run(store, task, "queued", log=False)
    assert backend.get_job(job)["progress"]["running"] == 1
    backend.stop_run(queued)
    assert store.run(queued).status is cs.RunStatus.CANCELLED
    assert backend.get_task(task)["last_run_status"] == "success"
    assert (backend.get_job(job)["progress"]["text"], backend.get_job(job)["status"]) == ("1/1", "completed")
    started = add_run(store, task, "running", log=False)
    finish(store, started, "cancelled")  # a run stopped once it had started does count
    assert backend.get_task(task)["last_run_status"] == "cancelled"


def listed_fresh(home: Path) -> tuple[list[dict[str, Any]], bool]:
    """Jobs with progress as a new process lists them, and whether it had to read tasks.json."""
    store = cs.Store(home)
    jobs = cs.Service(store).list_jobs()
    return jobs, store.tasks.loaded_stamp() is not None


def listed_from_tasks(home: Path) -> list[dict[str, Any]]:
    store = cs.Store(home)
    store.task_list()  # a store that has read every task computes progress from them
    return cs.Service(store).list_jobs()


def test_a_new_process_lists_jobs_from_the_index_without_reading_tasks(world: World) -> None:
    finish(world.store, world.runs[world.tasks[0]][-1], "failed")
    jobs, read_tasks = listed_fresh(world.home)
    assert not read_tasks
    assert jobs == listed_from_tasks(world.home)
    progress = {job["name"]: job["progress"]["text"] for job in jobs}
    assert progress == {"Doomed": "2/3", "Kept": "1/1"}


CHANGES: dict[str, Callable[[World], object]] = {
    "create a task": lambda w: w.backend.create_task({"name": "new", "prompt": "p", "job_id": w.other_job}),
    "move a task": lambda w: w.backend.update_task(w.tasks[0], {"job_id": w.other_job}),
    "unassign a task": lambda w: w.backend.update_task(w.tasks[1], {"job_id": None}),
    "assign a loose task": lambda w: w.backend.update_task(w.loose_task, {"job_id": w.job}),
    "rename a task": lambda w: w.backend.update_task(w.tasks[0], {"name": "renamed"}),
    "delete a task": lambda w: w.backend.delete_task(w.tasks[2]),
    "delete a job": lambda w: w.backend.delete_job(w.job),
    "record a run": lambda w: add_run(w.store, w.other_task, "failed"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_the_index_follows_every_change_to_the_tasks(world: World, change: str) -> None:
    CHANGES[change](world)
    jobs, read_tasks = listed_fresh(world.home)
    assert not read_tasks, "the index should match tasks.json after the store's own writes"
    assert jobs == listed_from_tasks(world.home)


def test_an_index_that_no_longer_matches_tasks_json_is_not_used(world: World) -> None:
    document = read(world.home / "tasks.json")
    for task in document["tasks"]:
        if task["id"] == world.loose_task:
            task["job_id"] = world.other_job  # a hand edit the index cannot know of
    (world.home / "tasks.json").write_text(json.dumps(document))
    jobs, read_tasks = listed_fresh(world.home)
    assert read_tasks
    assert {job["name"]: job["progress"]["total"] for job in jobs} == {"Doomed": 3, "Kept": 2}

    (world.home / "tasks.json").write_text("{not json")
    with pytest.raises(cs.StorageError, match=r"tasks\.json cannot be read"):
        cs.Service(cs.Store(world.home)).list_jobs()


def test_a_refused_save_leaves_no_trace_in_the_index_or_in_later_saves(home: Path) -> None:
    store = open_store(home)
    backend = cs.Service(store)
    first, second = (backend.create_job({"name": name})["id"] for name in ("First", "Second"))
    backend.create_task({"name": "kept", "prompt": "p", "job_id": first})
    (home / "state.json").write_text("{bad")
    with pytest.raises(cs.StorageError, match=r"state\.json cannot be read"):
        backend.create_task({"name": "refused", "prompt": "p", "job_id": second})
    (home / "state.json").rename(home / "state.json.broken")  # as the error advises
    store.set_engine_state(paused=False)  # a state write from the same process
    backend.create_task({"name": "later", "prompt": "p", "job_id": first})
    assert [task["name"] for task in read(home / "tasks.json")["tasks"]] == ["kept", "later"]
    jobs, _ = listed_fresh(home)
    assert {job["name"]: job["progress"]["total"] for job in jobs} == {"First": 2, "Second": 0}


def test_a_failed_write_drops_the_unsaved_change_from_the_cache(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(home)
    backend = cs.Service(store)
    job = backend.create_job({"name": "J"})["id"]

    def disk_full(path: Path, data: bytes, mode: int = 0o600) -> None:
        raise cs.StorageError(f"cannot write {path}: No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(cs, "atomic_write", disk_full)
        with pytest.raises(cs.StorageError, match="No space left"):
            backend.create_task({"name": "lost", "prompt": "p", "job_id": job})
    assert store.task_list() == []
    store.set_engine_state(paused=False)
    assert listed_fresh(home)[0][0]["progress"]["total"] == 0


@pytest.mark.parametrize("jobs", [{"x": ["not", "an", "id"]}, {"x": 7}, ["a", "list"], "text"])
def test_a_malformed_index_is_not_trusted(world: World, jobs: Any) -> None:
    document = read(world.home / "state.json")
    document["task_index"]["jobs"] = jobs
    (world.home / "state.json").write_text(json.dumps(document))
    listed, read_tasks = listed_fresh(world.home)
    assert read_tasks
    assert {job["name"]: job["progress"]["total"] for job in listed} == {"Doomed": 3, "Kept": 1}


def job_status(store: cs.Store, job_id: str) -> str:
    return cs.Store(store.home).job(job_id).status.value


def test_job_status_follows_run_events(home: Path, cli: Callable[..., Any]) -> None:
    store = open_store(home)
    backend = cs.Service(store)
    job = backend.create_job({"name": "J"})["id"]
    first, second = (backend.create_task({"name": n, "prompt": "p", "job_id": job})["id"] for n in "ab")
    assert job_status(store, job) == "pending"

    run = backend.request_run(first)["id"]
    assert job_status(store, job) == "in_progress"
    finish(store, run, "success")
    assert job_status(store, job) == "pending", "one task has never run"
    run = add_run(store, second, "running")
    assert job_status(store, job) == "in_progress"
    finish(store, run, "success")
    assert job_status(store, job) == "completed"
    assert cli("jobs", "get", job, "--json").json()["status"] == "completed"

    run = backend.request_run(first)["id"]
    finish(store, run, "failed")
    assert job_status(store, job) == "failed"
    assert cli("jobs", "list", "--json").json()["jobs"][0]["status"] == "failed"
    add_run(store, first, "success")
    assert job_status(store, job) == "completed"


def test_a_status_set_by_hand_holds_until_the_next_run_event(home: Path, cli: Callable[..., Any]) -> None:
    store = open_store(home)
    backend = cs.Service(store)
    job = backend.create_job({"name": "J"})["id"]
    task = backend.create_task({"name": "t", "prompt": "p", "job_id": job})["id"]
    add_run(store, task, "failed")
    assert job_status(store, job) == "failed"

    assert cli("jobs", "update", job, "--status", "completed").code == 0
    assert job_status(store, job) == "completed"
    assert cli("jobs", "get", job, "--json").json()["status"] == "completed"

    run = backend.request_run(task)["id"]
    assert job_status(store, job) == "in_progress"
    finish(store, run, "timeout")
    assert job_status(store, job) == "failed"


def test_unassigned_tasks_and_other_jobs_are_not_counted(world: World, cli: Callable[..., Any]) -> None:
    add_run(world.store, world.loose_task, "running")
    jobs = {job["name"]: job for job in cli("jobs", "list", "--json").json()["jobs"]}
    assert jobs["Doomed"]["progress"]["text"] == "3/3"
    assert jobs["Kept"]["progress"]["text"] == "1/1"
    assert jobs["Doomed"]["status"] == jobs["Kept"]["status"] == "completed"


# Atomic, durable writes ------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name file descriptors")
def test_a_write_is_fsynced_before_the_rename_and_the_folder_after(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = cs.Service(open_store(home))
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def recording_replace(src: Any, dst: Any) -> None:
        events.append(("replace", f"{src} -> {dst}"))
        replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", recording_fsync)
        patch.setattr(os, "replace", recording_replace)
        backend.create_job({"name": "J"})

    renames = [n for n, (kind, what) in enumerate(events) if kind == "replace" and what.endswith("jobs.json")]
    (at,) = renames
    temp = events[at][1].split(" -> ")[0]
    assert ("fsync", temp) in events[:at], "the data must be on disk before the rename"
    assert ("fsync", str(home)) in events[at + 1 :], "the rename must be on disk before we report success"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    home: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("tasks", "create", "--name", "first", "--prompt", "p").code == 0
    before = (home / "tasks.json").read_bytes()

    def full_disk(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", full_disk)
        result = cli("tasks", "create", "--name", "second", "--prompt", "p")
    assert result.code == 1
    assert result.err == f"error: cannot write {home / 'tasks.json'}: No space left on device\n"
    assert (home / "tasks.json").read_bytes() == before
    assert sorted(p.name for p in home.iterdir() if p.name.endswith(".tmp")) == []
    assert [t["name"] for t in cli("tasks", "list", "--json").json()["tasks"]] == ["first"]


def test_a_reloaded_file_is_saved_with_everyones_edits_whatever_its_layout(home: Path) -> None:
    """The first save after another process wrote a file reuses that file's record lines;
    a file laid out by hand (indented) is re-encoded whole. Both keep every edit."""
    window, cli_process = cs.Service(open_store(home)), cs.Service(open_store(home))
    first = window.create_task({"name": "first", "prompt": "p"})
    second = window.create_task({"name": "second", "prompt": "p"})
    cli_process.update_task(first["id"], {"name": "first, renamed elsewhere"})
    window.update_task(second["id"], {"name": "second, renamed here"})
    names = {task["name"] for task in read(home / "tasks.json")["tasks"]}
    assert names == {"first, renamed elsewhere", "second, renamed here"}

    (home / "tasks.json").write_text(json.dumps(read(home / "tasks.json"), indent=2))
    window.update_task(first["id"], {"model": "opus"})
    tasks = {task["name"]: task for task in read(home / "tasks.json")["tasks"]}
    assert tasks["first, renamed elsewhere"]["model"] == "opus"
    assert tasks["second, renamed here"]["model"] == "sonnet"
