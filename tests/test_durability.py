"""The store across processes: writers killed (SIGKILL) at random moments lose nothing they
reported as done and never leave a torn file; concurrent writers lose no update."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import child_env

import claude_scheduler as cs

WORKER = Path(__file__).with_name("store_worker.py")
KILL_ROUNDS = 30
DELETE_ROUNDS = 12
WORKERS = 4
TASKS_PER_WORKER = 12
CHILD_TIMEOUT = 120

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork-style processes")


def start_worker(home: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        env=child_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n", proc.stderr.read() if proc.stderr else ""
    return proc


def lock_waiters(home: Path) -> int:
    """How many processes wait for the store's lock (Linux /proc/locks lists blocked
    flock requests with "->")."""
    if not os.path.exists("/proc/locks"):
        pytest.skip("no /proc/locks to see who waits for the lock")
    inode = f":{(home / cs.LOCK_FILE).stat().st_ino} "
    with open("/proc/locks", encoding="ascii") as locks:
        return sum(1 for line in locks if "->" in line and inode in line)


def wait_for_lock_waiters(home: Path, count: int) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT
    while lock_waiters(home) < count:
        assert time.monotonic() < deadline, f"{count} processes never all reached the lock"
        time.sleep(0.02)


def kill_after(proc: subprocess.Popen[str], acked: int, delay: float) -> list[list[str]]:
    """SIGKILL the worker `delay` seconds after it acknowledged its first `acked` lines (so
    each round does some work however slow the machine is); return the operations it
    acknowledged. Its output is read through the one buffered file: `communicate` would
    read the pipe underneath and miss lines already buffered by `readline`."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    head = "".join(proc.stdout.readline() for _ in range(acked))
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(CHILD_TIMEOUT)
    with proc.stdin, proc.stdout, proc.stderr:
        out, err = head + proc.stdout.read(), proc.stderr.read()
    assert proc.returncode in (-signal.SIGKILL, 0), err
    return acks(out)


def acks(out: str) -> list[list[str]]:
    """Complete lines only: a line cut by the kill was never acknowledged."""
    lines = out.split("\n")[:-1]
    failures = [line for line in lines if line.startswith("fail")]
    assert failures == [], failures
    return [line.split() for line in lines]


@dataclass
class Expected:
    """What every acknowledged operation so far promises about the store."""

    tasks: dict[str, int] = field(default_factory=dict)  # task id -> lowest prompt version
    deleted: set[str] = field(default_factory=set)
    runs: dict[str, str] = field(default_factory=dict)  # run id -> task id
    jobs: set[str] = field(default_factory=set)

    def take(self, ops: list[list[str]]) -> None:
        for op in ops:
            kind, ident = op[0], op[1]
            if kind == "create":
                self.tasks[ident] = 0
            elif kind == "update":
                self.tasks[ident] = max(self.tasks[ident], int(op[2]))
            elif kind == "run":
                self.runs[ident] = op[2]
            elif kind == "job":
                self.jobs.add(ident)
            elif kind == "deleting":
                self.tasks.pop(ident, None)
            elif kind == "delete":
                self.deleted.add(ident)


def check_files_whole(home: Path) -> None:
    """Every data file parses: a kill left the old or the new file, never a torn one."""
    for path in [*home.glob("*.json"), *(home / "runs").glob("*.json")]:
        try:
            json.loads(path.read_bytes())
        except ValueError as error:
            pytest.fail(f"{path.name} is torn: {error}")


def check_promises(home: Path, expected: Expected) -> cs.Store:
    check_files_whole(home)
    store = cs.Store(home)
    backend = cs.Service(store)
    tasks = {task["id"]: task for task in backend.list_tasks()}
    for task_id, version in expected.tasks.items():
        assert task_id in tasks, "an acknowledged task is gone"
        assert int(tasks[task_id]["prompt"][1:]) >= version, "an acknowledged update is gone"
    assert not expected.deleted & set(tasks), "an acknowledged delete came back"
    jobs = {job["id"] for job in backend.list_jobs()}
    assert expected.jobs <= jobs, "an acknowledged job is gone"
    runs = {run.id: run.task_id for run in store.all_runs()}
    for run_id, task_id in expected.runs.items():
        if task_id in tasks:
            assert runs.get(run_id) == task_id, "an acknowledged run is gone"
    for task in tasks.values():
        assert task["job_id"] is None or task["job_id"] in jobs
    assert not list(home.glob(".*.tmp")) and not list((home / "runs").glob(".*.tmp")), "temp files stay"
    return store


def test_a_writer_killed_at_random_moments_loses_nothing_it_acknowledged(home: Path) -> None:
    rng = random.Random(20260301)
    expected = Expected()
    total = 0
    for round_number in range(KILL_ROUNDS):
        worker = start_worker(home, "churn", str(round_number), f"r{round_number}")
        ops = kill_after(worker, rng.randint(1, 6), rng.uniform(0.0, 0.3))
        total += len(ops)
        expected.take(ops)
        check_promises(home, expected)
    assert total >= KILL_ROUNDS, "the workers were killed before they did anything"
    assert len(expected.tasks) >= 10 and expected.deleted and expected.runs and expected.jobs


def test_a_job_delete_killed_part_way_leaves_a_consistent_home(home: Path) -> None:
    rng = random.Random(7)
    for round_number in range(DELETE_ROUNDS):
        world = home / f"round-{round_number}"
        job_id, task_ids = build_world(world)
        worker = start_worker(world, "delete-job", job_id)
        ops = kill_after(worker, 0, rng.uniform(0.0, 0.08))
        store = cs.Store(world)  # the open sweeps what the kill left
        jobs = {job.id for job in store.job_list()}
        tasks = {task.id for task in store.task_list()}
        for task in store.task_list():
            assert task.job_id is None or task.job_id in jobs, "a task points at a missing job"
        assert tasks & set(task_ids) in (set(), set(task_ids)), "a job half emptied"
        assert {p.stem for p in (world / "runs").glob("*.json")} <= tasks, "orphaned run file"
        referenced = {run.id for run in store.all_runs()}
        assert {p.stem for p in (world / "logs").glob("*.log")} <= referenced, "orphaned log"
        if ops == [["deleted", job_id]]:
            assert job_id not in jobs, "an acknowledged delete came back"
        if job_id in jobs:  # killed before it finished: doing it again completes it
            cs.Service(store).delete_job(job_id, force=True)
        check_files_whole(world)
        assert cs.Service(cs.Store(world)).list_jobs() == []
        assert not list((world / "runs").iterdir()) and not list((world / "logs").iterdir())


def build_world(home: Path) -> tuple[str, list[str]]:
    """A job with 20 tasks, each with two runs and their logs, written straight to disk."""
    home.mkdir(parents=True)
    (home / "runs").mkdir()
    (home / "logs").mkdir()
    stamp = "2026-03-01T09:00:00.000+00:00"
    job_id = cs.new_id()
    job = {"id": job_id, "name": "Doomed", "created_at": stamp, "updated_at": stamp}
    tasks = [
        {
            "id": cs.new_id(),
            "job_id": job_id,
            "name": f"t{n}",
            "prompt": "p",
            "created_at": stamp,
            "updated_at": stamp,
        }
        for n in range(20)
    ]
    (home / "jobs.json").write_text(json.dumps({"version": 1, "jobs": [job]}))
    (home / "tasks.json").write_text(json.dumps({"version": 1, "tasks": tasks}))
    for task in tasks:
        runs = [
            {"id": cs.new_id(), "task_id": task["id"], "status": "success", "created_at": stamp}
            for _ in range(2)
        ]
        (home / "runs" / f"{task['id']}.json").write_text(json.dumps({"version": 1, "runs": runs}))
        for run in runs:
            (home / "logs" / f"{run['id']}.log").write_text("line\n" * 50)
    return job_id, [task["id"] for task in tasks]


def test_concurrent_cli_processes_lose_and_duplicate_nothing(home: Path) -> None:
    backend = cs.Service(cs.Store(home))
    backend.list_tasks()  # this process's cache is warm and goes stale as the workers write
    workers = [start_worker(home, "batch", f"w{n}", str(TASKS_PER_WORKER)) for n in range(WORKERS)]
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    mine = []
    for n in range(TASKS_PER_WORKER):
        mine.append(backend.create_task({"name": f"parent-{n}", "prompt": "v0"})["id"])
        backend.update_task(mine[0], {"prompt": f"v{n + 1}"})
    expected = Expected()
    for worker in workers:
        out, err = worker.communicate(timeout=CHILD_TIMEOUT)
        assert worker.returncode == 0, err
        expected.take(acks(out))
    expected.take([["create", task_id] for task_id in mine])
    expected.take([["update", mine[0], str(TASKS_PER_WORKER)]])

    store = check_promises(home, expected)
    stored = json.loads((home / "tasks.json").read_text())["tasks"]
    ids = [task["id"] for task in stored]
    assert len(ids) == len(set(ids)) == (WORKERS + 1) * TASKS_PER_WORKER
    names = sorted(task["name"] for task in stored)
    assert names == sorted(
        [f"w{w}-{n}" for w in range(WORKERS) for n in range(TASKS_PER_WORKER)]
        + [f"parent-{n}" for n in range(TASKS_PER_WORKER)]
    )
    final = {task.id: task.prompt for task in store.task_list()}
    for task_id, version in expected.tasks.items():
        assert final[task_id] == f"v{version}", "a later update was overwritten by an earlier one"
    assert len(store.job_list()) == WORKERS
    assert len(backend.list_tasks()) == len(ids), "the long-lived store did not reload"
    for job in backend.list_jobs():
        assert job["progress"]["total"] == len(range(0, TASKS_PER_WORKER, 3))
    assert set(json.loads((home / "state.json").read_text())["tasks"]) == set(ids)


def test_the_lock_serialises_read_modify_write_across_processes(home: Path) -> None:
    """While one process holds the store's lock, another's write waits for it."""
    store = cs.Store(home)
    with store.locked():
        proc = subprocess.Popen(
            [sys.executable, "-m", "claude_scheduler", "cli", "jobs", "create", "--name", "waited"],
            env=child_env(home),
            cwd=os.fspath(Path(cs.__file__).parent),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_lock_waiters(home, 1)  # it got as far as the lock, and waits there
        assert proc.poll() is None
        assert not (home / "jobs.json").exists(), "the other process wrote while we held the lock"
    _, err = proc.communicate(timeout=CHILD_TIMEOUT)
    assert proc.returncode == 0, err
    assert [job.name for job in store.job_list()] == ["waited"]


def test_concurrent_partial_updates_of_one_task_all_land(home: Path) -> None:
    """`tasks update --env` merges one variable and `--retries`/`--retry-delay` one field
    of the retry policy: from several processes at once, every change is kept."""
    task_id = cs.Service(cs.Store(home)).create_task({"name": "t", "prompt": "p"})["id"]
    changes = [["--env", f"V{n}={n}"] for n in range(6)] + [["--retries", "3"], ["--retry-delay", "10"]]
    with cs.Store(home).locked():  # they all start, then meet at the lock when it is let go
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "claude_scheduler", "cli", "tasks", "update", task_id, *change],
                env=child_env(home),
                cwd=os.fspath(Path(cs.__file__).parent),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for change in changes
        ]
        wait_for_lock_waiters(home, len(procs))
    for proc in procs:
        _, err = proc.communicate(timeout=CHILD_TIMEOUT)
        assert proc.returncode == 0, err
    task = cs.Service(cs.Store(home)).get_task(task_id)
    assert task["env"] == {f"V{n}": str(n) for n in range(6)}
    assert (task["retry"]["max_attempts"], task["retry"]["delay_seconds"]) == (3, 10)
