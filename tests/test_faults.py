"""Fault injection: every file change the store makes in a task create, a task update, a
run's transitions (queued, running, succeeded: the run file, the log, state.json) and a
job's cascade delete, with a fault at each one in turn.

A dry pass counts the changes (opens for writing, writes to a log, fsyncs, renames,
unlinks under the data home); then, for each step k, a fresh home gets one of three
faults at step k:

- error:   that one call raises OSError (EIO); later calls work;
- full:    the disk fills at step k: from then on every call that needs space fails
           with ENOSPC (renames and unlinks still work, as on a real full disk);
- garbage: just before step k another store file is made unreadable (a hand edit in
           progress), and put back as it was once the operation has returned.

Then the home is opened afresh as a restart would (a new Store and engine, the old
process gone) and checked: every file parses; nothing torn or half-applied that the
restart would act on (a task whose job is gone, a pending delete, a queue entry naming
no queued run, a queued run outside the queue, a run still `running`, a fire time made
for another schedule, a file or log nobody names); whatever the operation acknowledged
is all there; and an operation that failed happened wholly or not at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import threading
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from run_helpers import POLL_SECONDS, WAIT_SECONDS, FakeClock, wait_for

import claude_scheduler as cs

GRACE = 0.5
HOURLY = {"type": "interval", "every_seconds": 3600}
TWO_HOURLY = {"type": "interval", "every_seconds": 7200}
GARBAGE = b'{"version": 1, "tasks": [ half a hand edit'
TICKS_MAX = 8  # engine passes a faulty disk may cost one run before it is given up on
ALLOCATING = ("open", "write", "fsync")  # the calls a full disk refuses
KINDS = ("error", "full", "garbage")

pytestmark = pytest.mark.usefixtures("record")  # fake claude sessions are recorded, leftovers killed


class Disk:
    """The file changes made under `root`, counted as they happen; the `fail_at`-th
    one gets the fault of `kind`. Patches os (and the log's handle) for one operation."""

    def __init__(self, root: Path, kind: str = "", fail_at: int | None = None, sibling: str = "") -> None:
        self.root = str(root)
        self.kind, self.fail_at, self.sibling = kind, fail_at, sibling
        self.steps: list[tuple[str, str]] = []  # (call, the store file it changes)
        self.fired = False
        self.full = False
        self.restore: Callable[[], None] = lambda: None
        self._lock = threading.RLock()

    def step(self, call: str, path: str) -> None:
        """Count one change of `path` (when under the home); fault it as asked."""
        if not (path == self.root or path.startswith(self.root + os.sep)):
            return
        with self._lock:
            target = store_name(path, self.root)
            if target is None:
                return
            if len(self.steps) == self.fail_at:
                self.fired = True
                self._fault(call, target)
            self.steps.append((call, target))
            if self.full and call in ALLOCATING:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    def _fault(self, call: str, target: str) -> None:
        if self.kind == "error":
            self.steps.append((call, target))
            raise OSError(errno.EIO, os.strerror(errno.EIO), target)
        if self.kind == "full":
            self.full = True
        if self.kind == "garbage":
            self.restore = spoil(Path(self.root) / self.sibling)

    @contextlib.contextmanager
    def armed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
        real_open, real_replace, real_fsync = os.open, os.replace, os.fsync
        real_unlink, real_link, real_append = os.unlink, os.link, cs.open_private_append

        def opening(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR):
                self.step("open", os.fspath(path))
            return real_open(path, flags, mode, **kw)

        def replacing(src: Any, dst: Any, **kw: Any) -> None:
            self.step("replace", os.fspath(dst))
            real_replace(src, dst, **kw)

        def syncing(fd: int) -> None:
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                path = ""
            self.step("fsync", path)
            real_fsync(fd)

        def unlinking(path: Any, **kw: Any) -> None:
            self.step("unlink", os.fspath(path))
            real_unlink(path, **kw)

        def linking(src: Any, dst: Any, **kw: Any) -> None:
            self.step("link", os.fspath(dst))
            real_link(src, dst, **kw)

        def appending(path: Path) -> IO[str]:
            return typing.cast(IO[str], LogHandle(real_append(path), lambda: self.step("write", str(path))))

        with monkeypatch.context() as patch:
            for name, fake in (
                ("open", opening),
                ("replace", replacing),
                ("fsync", syncing),
                ("unlink", unlinking),
                ("link", linking),
            ):
                patch.setattr(os, name, fake)
            patch.setattr(cs, "open_private_append", appending)
            yield self

    def file_steps(self) -> list[str]:
        return [target for _, target in self.steps]


class LogHandle:
    """A log file whose every write is a counted step (where a full disk shows first)."""

    def __init__(self, handle: IO[str], step: Callable[[], None]) -> None:
        self._handle, self._step = handle, step

    def write(self, text: str) -> int:
        self._step()
        return self._handle.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> LogHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()


def store_name(path: str, root: str) -> str | None:
    """The store file a path under the home changes (a temp file: the file it becomes);
    None for lock files, which hold no data."""
    relative = os.path.relpath(path, root)
    folder, name = os.path.split(relative)
    match = re.fullmatch(cs.TEMP_NAME_RE, name)
    if match:
        name = match["name"]
    if name.endswith(".lock") or name == cs.HOME_MARKER:
        return None
    return os.path.join(folder, name) if folder else name


def spoil(path: Path) -> Callable[[], None]:
    """Make `path` unreadable; returns what puts it back as it was."""
    before = path.read_bytes() if path.exists() else None
    path.write_bytes(GARBAGE)

    def restore() -> None:
        if not path.exists():
            return  # the operation removed it (the file of a task it deleted)
        if before is None:
            path.unlink()
        else:
            path.write_bytes(before)

    return restore


# The world each case starts from, and the operations ---------------------------------


@dataclasses.dataclass
class World:
    home: Path
    clock: FakeClock
    job: str
    tasks: list[str]  # the job's two tasks
    other_job: str
    other_task: str
    runs: dict[str, list[str]]
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)

    def store(self) -> cs.Store:
        return cs.Store(self.home, clock=self.clock)


def make_world(home: Path) -> World:
    clock = FakeClock()
    store = cs.Store(home, clock=clock)
    service = cs.Service(store)
    job = service.create_job({"name": "Doomed"})["id"]
    other_job = service.create_job({"name": "Kept"})["id"]

    def task(name: str, job_id: str) -> str:
        fields = {"name": name, "prompt": "Hi.", "job_id": job_id, "schedule": HOURLY}
        return str(service.create_task(fields)["id"])

    tasks = [task(f"t{n}", job) for n in range(2)]
    other = task("kept", other_job)
    service.update_job(job, {"task_order": list(reversed(tasks))})
    runs = {task_id: [add_run(store, task_id)] for task_id in [*tasks, other]}
    return World(home, clock, job, tasks, other_job, other, runs)


def add_run(store: cs.Store, task_id: str) -> str:
    now = store.clock()
    run = cs.Run(cs.new_id(), task_id, status=cs.RunStatus.SUCCESS, created_at=now, finished_at=now)
    store.save_run(run)
    store.log_path(run.id).write_text(f"log of {run.id}\n")
    return run.id


@dataclasses.dataclass
class Outcome:
    """What the operation answered: its result, or the error it raised."""

    result: Any = None
    error: BaseException | None = None


def create_task(world: World, disk: Disk, patch: pytest.MonkeyPatch) -> Any:
    service = cs.Service(world.store())
    with disk.armed(patch):
        return service.create_task(
            {"name": "new", "prompt": "New work.", "job_id": world.job, "schedule": TWO_HOURLY}
        )


def update_task(world: World, disk: Disk, patch: pytest.MonkeyPatch) -> Any:
    service = cs.Service(world.store())
    with disk.armed(patch):
        return service.update_task(
            world.tasks[0], {"name": "moved", "schedule": TWO_HOURLY, "job_id": world.other_job}
        )


def run_task(world: World, disk: Disk, patch: pytest.MonkeyPatch) -> Any:
    """Request a run and let an engine take it to its end, as its loop would: a pass that
    fails is logged and tried again, a while."""
    store = world.store()
    engine = cs.Engine(store, kill_grace=GRACE)
    engine.executor.owner = f"{cs.host_name()}:{os.getpid()}:before-the-restart"
    assert engine.start(thread=False)
    patch.setattr(cs, "RECORD_RETRY_SECONDS", 0.0)
    try:
        with disk.armed(patch):
            run = cs.Service(store).request_run(world.tasks[0])
            drive(engine)
    finally:
        wait_for(lambda: not engine.active_run_ids, "the run's worker to end", WAIT_SECONDS)
        engine.stop(timeout=WAIT_SECONDS)  # its runs' owner, "before the restart", is gone
    return run


def drive(engine: cs.Engine) -> None:
    for _ in range(TICKS_MAX):
        with contextlib.suppress(cs.SchedulerError, OSError):
            engine.tick()
        wait_for(lambda: not engine.active_run_ids, "the run's worker to end", WAIT_SECONDS)
        with contextlib.suppress(cs.SchedulerError, OSError):
            if engine.wait_idle(POLL_SECONDS):
                return


def delete_job(world: World, disk: Disk, patch: pytest.MonkeyPatch) -> Any:
    service = cs.Service(world.store())
    with disk.armed(patch):
        return service.delete_job(world.job, force=True)


OPERATIONS: dict[str, Callable[[World, Disk, pytest.MonkeyPatch], Any]] = {
    "create": create_task,
    "update": update_task,
    "run": run_task,
    "delete": delete_job,
}


# After the restart -----------------------------------------------------------------


def restart(world: World) -> cs.Store:
    """Open the home as the next start does: a store, then an engine (paused, so nothing
    runs) that recovers the dead process's runs and derives what is missing."""
    store = world.store()
    assert store.unreadable_files() == {}, "a store file does not parse"
    store.set_engine_state(paused=True)
    engine = cs.Engine(store, kill_grace=GRACE)
    assert engine.start(thread=False)
    try:
        engine.tick()
    finally:
        engine.stop(timeout=WAIT_SECONDS)
    return world.store()


def assert_nothing_torn(world: World, store: cs.Store) -> None:
    home = world.home
    assert store.unreadable_files() == {}
    jobs = {job.id for job in store.job_list()}
    tasks = {task.id: task for task in store.task_list()}
    for task in tasks.values():
        assert task.job_id is None or task.job_id in jobs, f"task {task.name} names a missing job"
        if task.enabled and task.schedule.is_timed:
            expected = cs.next_fire_after(task.schedule, world.clock(), task.created_at)
            assert task.next_run_at == expected, f"task {task.name} fires by another schedule"
    assert {p.stem for p in (home / cs.RUNS_DIR).glob("*.json")} <= set(tasks), "a run file of no task"
    runs = {run.id: run for run in store.all_runs()}
    assert {p.stem for p in (home / cs.LOGS_DIR).glob("*.log")} <= set(runs), "a log of no run"
    state = store.state.data
    assert set(state.get("tasks", {})) <= set(tasks), "derived state of a deleted task"
    assert not state.get("deleting"), "a delete left pending"
    queued = [entry["run_id"] for entry in state.get("queue", [])]
    for run_id in queued:
        assert run_id in runs and runs[run_id].status is cs.RunStatus.QUEUED, "the queue names no queued run"
    for run in runs.values():
        assert run.status is not cs.RunStatus.RUNNING, "a run left running"
        if run.status is cs.RunStatus.QUEUED:
            assert run.id in queued, "a queued run outside the queue"
        if run.status in (cs.RunStatus.FAILED, cs.RunStatus.INTERRUPTED):
            assert run.error, "a run that ended without a reason"
    leftovers = [*home.glob(".*.tmp"), *(home / cs.RUNS_DIR).glob(".*.tmp")]
    assert not leftovers, "temp files left behind"


def check_create(world: World, store: cs.Store, outcome: Outcome) -> None:
    made = [task for task in store.task_list() if task.name == "new"]
    if outcome.error is None:
        assert [task.id for task in made] == [outcome.result["id"]], "an acknowledged create is missing"
    for task in made:
        assert (task.prompt, task.job_id, task.schedule.to_dict()) == (
            "New work.",
            world.job,
            cs.Schedule.from_dict(TWO_HOURLY).to_dict(),
        )
    assert len(store.task_list()) == 3 + len(made)


def check_update(world: World, store: cs.Store, outcome: Outcome) -> None:
    task = store.task(world.tasks[0])
    new = (task.name, task.schedule.every_seconds, task.job_id) == ("moved", 7200, world.other_job)
    old = (task.name, task.schedule.every_seconds, task.job_id) == ("t0", 3600, world.job)
    assert new or old, f"a half-applied update: {task.name}, {task.schedule}, {task.job_id}"
    if outcome.error is None:
        assert new, "an acknowledged update is missing"
        assert world.tasks[0] not in store.job(world.job).task_order


def check_run(world: World, store: cs.Store, outcome: Outcome) -> None:
    task_id = world.tasks[0]
    runs = {run.id: run for run in store.runs_of(task_id)}
    new = set(runs) - set(world.runs[task_id])
    if outcome.error is not None:
        assert not new, "a refused run request left a run behind"
        return
    run = runs.get(outcome.result["id"])
    assert run is not None and new == {run.id}, "an acknowledged run is missing"
    if run.status is cs.RunStatus.SUCCESS:
        assert run.result and run.session_id
        assert store.log_path(run.id).exists()
    else:
        assert run.status in (cs.RunStatus.QUEUED, cs.RunStatus.FAILED, cs.RunStatus.INTERRUPTED), run.status


def check_delete(world: World, store: cs.Store, outcome: Outcome) -> None:
    jobs = {job.id for job in store.job_list()}
    tasks = {task.id for task in store.task_list()}
    gone = world.job not in jobs and not tasks & set(world.tasks)
    if outcome.error is None:
        assert gone, "an acknowledged delete is not complete"
    if gone:
        for task_id in world.tasks:
            assert not (world.home / cs.RUNS_DIR / f"{task_id}.json").exists()
            assert not any(store.log_path(run_id).exists() for run_id in world.runs[task_id])
    else:
        assert world.job in jobs and tasks >= set(world.tasks), "a job half deleted"
        for task_id in world.tasks:
            assert [run.id for run in store.runs_of(task_id)] == world.runs[task_id]
            assert all(store.log_path(run_id).exists() for run_id in world.runs[task_id])
    assert {world.other_job} <= jobs and world.other_task in tasks
    assert [run.id for run in store.runs_of(world.other_task)] == world.runs[world.other_task]


CHECKS: dict[str, Callable[[World, cs.Store, Outcome], None]] = {
    "create": check_create,
    "update": check_update,
    "run": check_run,
    "delete": check_delete,
}
SIBLINGS = ("jobs.json", "tasks.json", "state.json", "runs/{task}.json")


# The test ---------------------------------------------------------------------------


def attempt(world: World, operation: str, disk: Disk, patch: pytest.MonkeyPatch) -> Outcome:
    try:
        return Outcome(result=OPERATIONS[operation](world, disk, patch))
    except (cs.SchedulerError, OSError) as error:
        return Outcome(error=error)
    finally:
        disk.restore()


def cases(dry: Disk, world: World, kind: str) -> list[tuple[int, str]]:
    """(step, sibling) for each fault of `kind`: every step; with garbage, a store file
    the step does not itself change, another one at each step."""
    if kind != "garbage":
        return [(k, "") for k in range(len(dry.steps))]
    siblings = [name.format(task=world.tasks[0]) for name in SIBLINGS]
    chosen = []
    for k, target in enumerate(dry.file_steps()):
        others = [name for name in siblings if name != target.replace(os.sep, "/")]
        chosen.append((k, others[k % len(others)]))  # each file in turn: every one is spoiled often
    return chosen


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_fault_at_any_write_step_leaves_no_torn_change_and_loses_nothing_acknowledged(
    home: Path, monkeypatch: pytest.MonkeyPatch, operation: str, kind: str
) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # no test cuts the power: only counted
    dry_world = make_world(home / "dry")
    dry = Disk(dry_world.home)
    outcome = attempt(dry_world, operation, dry, monkeypatch)
    assert outcome.error is None, outcome.error
    assert len(dry.steps) >= 3, f"only {dry.steps}: the steps were not seen"
    failures = []
    todo = cases(dry, dry_world, kind)
    for n, (step, sibling) in enumerate(todo):
        world = make_world(home / f"case-{n}")
        disk = Disk(world.home, kind, step, sibling.replace(dry_world.tasks[0], world.tasks[0]))
        outcome = attempt(world, operation, disk, monkeypatch)
        where = f"{kind} at step {step} ({' '.join(dry.steps[step])}){' on ' + sibling if sibling else ''}"
        try:
            assert disk.fired or step >= len(disk.steps), "the fault never came"
            store = restart(world)
            assert_nothing_torn(world, store)
            CHECKS[operation](world, store, outcome)
        except AssertionError as error:
            failures.append(f"{where}: {str(error).splitlines()[0]} [answer: {outcome.error or 'ok'}]")
    print(f"{operation}/{kind}: {len(todo)} fault cases over {len(dry.steps)} steps")
    assert not failures, "\n".join(failures)
