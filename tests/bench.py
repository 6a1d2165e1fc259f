#!/usr/bin/env python3
"""Benchmark claude-code-scheduler at scale S against the budget of SPEC section 10.

    python3 tests/bench.py                   full run (60 s idle-CPU window; 2-3 minutes)
    python3 tests/bench.py --quick           smoke run (shorter windows, fewer repetitions)
    python3 tests/bench.py --json out.json   also write the table as JSON
    python3 tests/bench.py --profile         cProfile the in-process rows that miss their budget

S is built in a temporary data home through the product's own Service and Store: 100 jobs
x 10 tasks, 20 finished runs per task, a 4 KB log (fake Claude's stream-json) per run. The
script prints the machine, one table (median of repeated runs | budget | PASS/FAIL) and
removes every file and process it made. pytest does not collect it (not `test_*.py`), and
no test asserts a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import functools
import http.client
import http.server
import io
import json
import math
import os
import platform
import pstats
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import claude_scheduler as cs  # noqa: E402

FAKE_CLAUDE = Path(__file__).with_name("fake_claude.py")
SCRIPT = ROOT / "claude_scheduler.py"
CHILD_TAG = "BENCH "  # prefix of the JSON lines a child process reports on stdout

# Scale S (SPEC section 10).
JOBS = 100
TASKS_PER_JOB = 10
RUNS_PER_TASK = 20
LOG_BYTES = 4096
SEED = 20240601

# Budgets (SPEC section 10).
BUDGET_OPEN_MS = 300.0
BUDGET_TASK_MS = 20.0
BUDGET_TRANSITION_MS = 5.0
BUDGET_DELETE_MS = 60.0
BUDGET_CLI_RATIO = 2.5
BUDGET_API_JOBS_MS = 30.0
BUDGET_HEALTH_RPS = 800.0
BUDGET_GUI_SHOWN_S = 1.0
BUDGET_GUI_SELECT_MS = 50.0
BUDGET_LATENESS_S = 1.0
BUDGET_IDLE_CPU_PCT = 2.0

HEALTH_CLIENTS = 4
CHILD_TIMEOUT = 120.0  # seconds a child may take to report before it counts as hung
STOP_TIMEOUT = 20.0
NOT_BUILT = "n/a (not built yet)"
TOP_FUNCTIONS = 12


SETTLE_SECONDS = 2.0  # after the engine starts, before its idle CPU is measured
SLOW_HOOK_SECONDS = 10.0  # --slow-hooks: how long the slow webhook takes to answer
FIRE_LEAD_SECONDS = 2.0  # the first fire of the lateness test is this far after its tasks exist
FIRE_CREATE_SECONDS = 0.06  # lead time allowed per fire task for creating it
JOB_FIRE_CREATE_SECONDS = 0.3  # per job of the job-schedule lateness row: a job and its task
FIRE_WAIT_SECONDS = 60.0  # extra time the fired runs get to finish
SELECT_PICKS = 10  # jobs selected in the window
SELECT_WAIT_SECONDS = 1.0  # how long a selection may take to change the other panes
CONSOLE_SCRIPT = "import sys; from claude_scheduler import main; sys.exit(main())"  # as pip writes it
MODEL_ID = "claude-sonnet-4-5-20250929"
PROMPT = (
    "Work through step {step} of '{job}'. Read the relevant modules first, keep the public "
    "interface stable, run the test suite before and after the change, and write a short "
    "summary of what changed and why. If a test fails for a reason unrelated to this step, "
    "note it in the summary instead of fixing it. Do not touch files outside src/ and tests/."
)
RESULT_TEXT = (
    "Done. Refactored the request parser into three functions, added tests for the empty "
    "body and the oversized header cases, and updated the changelog. All 214 tests pass."
)
ERROR_TEXT = "claude exited with code 1: Error: the test suite failed (3 failures in tests/test_api.py)"


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long and how often to measure."""

    reps: int  # repetitions of each in-process operation
    process_reps: int  # fresh processes per process row
    idle_seconds: float
    fires: int
    fire_spacing: float
    health_seconds: float
    api_requests: int
    gui_reps: int


FULL = Plan(
    reps=11,
    process_reps=21,  # start-up times are the noisiest figures here
    idle_seconds=60.0,
    fires=40,
    fire_spacing=0.5,
    health_seconds=3.0,
    api_requests=31,
    gui_reps=3,
)
QUICK = Plan(
    reps=5,
    process_reps=5,
    idle_seconds=10.0,
    fires=30,
    fire_spacing=0.2,
    health_seconds=1.5,
    api_requests=11,
    gui_reps=1,
)


@dataclasses.dataclass
class Row:
    """One line of the result table."""

    operation: str
    value: float | None  # the median (or the one figure) in `unit`
    unit: str
    budget: str
    verdict: str  # PASS, FAIL, info or n/a
    note: str = ""

    @property
    def shown(self) -> str:
        if self.value is None:
            return "-"
        size = abs(self.value)
        digits = 2 if size < 10 else 1 if size < 1000 else 0
        return f"{self.value:.{digits}f} {self.unit}".rstrip()


def judged(operation: str, value: float, unit: str, limit: float, note: str, *, floor: bool = False) -> Row:
    """A row that passes when `value` is within `limit` (at least it, with `floor`)."""
    passed = value >= limit if floor else value <= limit
    budget = f"{'≥' if floor else '≤'} {limit:g} {unit}".rstrip()
    return Row(operation, value, unit, budget, "PASS" if passed else "FAIL", note)


def missing(operation: str, budget: str, note: str, verdict: str = NOT_BUILT) -> Row:
    return Row(operation, None, "", budget, verdict, note)


def elapsed_ms(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share 0.95 = p95)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)), 1) - 1]


def spread(values: list[float], unit: str = "ms") -> str:
    digits = 2 if unit == "s" else 1
    return f"n={len(values)}, min {min(values):.{digits}f} {unit}, max {max(values):.{digits}f} {unit}"


def report(payload: dict[str, Any]) -> None:
    """Tell the parent something (used by child processes)."""
    print(CHILD_TAG + json.dumps(payload), flush=True)


####
# Scale S ####
####


def sample_log() -> bytes:
    """A LOG_BYTES log as the executor writes one: fake Claude's stream-json lines (the
    final result line last), topped up with a stderr line."""
    argv = [sys.executable, str(FAKE_CLAUDE), *cs.CLAUDE_BASE_ARGS]
    prompt = b"Review the open pull requests [lines=12]"
    done = subprocess.run(argv, input=prompt, capture_output=True, check=True, timeout=CHILD_TIMEOUT)
    *lines, result = done.stdout.decode().splitlines(keepends=True)
    room = LOG_BYTES - len(result.encode()) - 2 * len(cs.LOG_STDERR_PREFIX)
    body = ""
    for line in lines:
        if len((body + line).encode()) > room:
            break
        body += line
    filler = LOG_BYTES - len(body.encode()) - len(result.encode()) - len(cs.LOG_STDERR_PREFIX) - 1
    data = (body + cs.LOG_STDERR_PREFIX + "." * filler + "\n" + result).encode()
    if len(data) != LOG_BYTES:
        raise RuntimeError(f"the sample log has {len(data)} bytes, not {LOG_BYTES}")
    return data


class Scale:
    """Makes jobs with tasks and finished history through the product's Service and Store.

    Tasks are created with `Service.create_task`. Of each task's runs all but the newest
    are put into its runs file with the store's RecordFile (one write instead of one per
    run); the newest is recorded with `Store.save_run`, which rewrites the whole file
    through the store and derives the task's last status and the job's status, as the
    engine would. Every S schedule is due 12 hours or more from now, so nothing fires
    while the bench runs unless it asks for it.
    """

    def __init__(self, store: cs.Store, log: bytes) -> None:
        self.store = store
        self.service = cs.Service(store)
        self.log = log
        self.now = cs.utcnow()
        self.quiet_hour = (self.now.hour + 12) % 24  # UTC hour the cron schedules use
        self.rng = random.Random(SEED)

    def add_job(self, index: int) -> tuple[str, list[str]]:
        fields = {
            "name": f"Bench job {index:03d}",
            "description": f"Benchmark job {index} of scale S: ten steps run one after another",
            "working_directory": f"~/src/project-{index:03d}",
        }
        job_id = str(self.service.create_job(fields)["id"])
        task_ids = []
        for step in range(TASKS_PER_JOB):
            task = self.service.create_task(self.task_fields(job_id, index, step))
            task_ids.append(str(task["id"]))
            self.add_history(task_ids[-1])
        return job_id, task_ids

    def task_fields(self, job_id: str, index: int, step: int) -> dict[str, Any]:
        return {
            "job_id": job_id,
            "name": f"Step {step + 1} of job {index:03d}",
            "prompt": PROMPT.format(step=step + 1, job=f"Bench job {index:03d}"),
            "model": ("sonnet", "opus", "haiku")[step % 3],
            "permission_mode": "acceptEdits" if step % 2 else "default",
            "allowed_tools": ["Read", "Grep", "Edit", "Bash(git diff:*)"] if step % 2 else [],
            "max_turns": 30 if step % 3 == 0 else None,
            "retry": {"max_attempts": step % 3, "delay_seconds": 60, "backoff": 2.0},
            "schedule": self.schedule(step),
            "enabled": step != TASKS_PER_JOB - 1,
        }

    def schedule(self, step: int) -> dict[str, Any]:
        """A mix of schedule types, none due within the next 12 hours."""
        later = cs.fmt_time(self.now + timedelta(hours=12))
        if step < 3:
            return {"type": "cron", "expression": f"{15 * step} {self.quiet_hour} * * *", "timezone": "UTC"}
        if step == 3:
            return {"type": "cron", "expression": f"30 {self.quiet_hour} * * mon-fri", "timezone": "UTC"}
        if step < 6:
            return {"type": "interval", "every_seconds": 6 * 3600, "anchor": later}
        if step == 6:
            return {"type": "once", "at": cs.fmt_time(self.now + timedelta(days=30))}
        return {"type": "manual"}

    def add_history(self, task_id: str) -> None:
        runs = [self.finished_run(task_id, age) for age in range(RUNS_PER_TASK, 0, -1)]
        path = self.store.home / cs.RUNS_DIR / f"{task_id}.json"
        history = cs.RecordFile(path, "runs", cs.Run.from_dict, {"task_id": task_id})
        history.check()
        for run in runs[:-1]:
            history.put(run)
        history.save()
        for run in runs:
            self.store.log_path(run.id).write_bytes(self.log)
        self.store.save_run(runs[-1])

    def finished_run(self, task_id: str, age_days: int) -> cs.Run:
        created = self.now - timedelta(days=age_days, minutes=self.rng.randrange(600))
        started = created + timedelta(milliseconds=self.rng.randrange(50, 900))
        roll = self.rng.random()
        status = cs.RunStatus.SUCCESS if roll < 0.85 else cs.RunStatus.FAILED
        status = cs.RunStatus.TIMEOUT if roll > 0.96 else status
        failed = status is not cs.RunStatus.SUCCESS
        return cs.Run(
            cs.new_id(),
            task_id,
            status=status,
            trigger=cs.Trigger.SCHEDULE,
            created_at=created,
            scheduled_for=created,
            started_at=started,
            finished_at=started + timedelta(seconds=self.rng.randrange(20, 900)),
            exit_code=1 if failed else 0,
            session_id=cs.new_id(),
            model=MODEL_ID,
            cost_usd=round(self.rng.uniform(0.01, 0.9), 4),
            input_tokens=self.rng.randrange(1_000, 90_000),
            output_tokens=self.rng.randrange(200, 9_000),
            num_turns=self.rng.randrange(3, 30),
            result=None if failed else RESULT_TEXT,
            error=ERROR_TEXT if failed else None,
            pid=self.rng.randrange(1_000, 99_999),
            owner="bench-host:4242",
        )


def census(home: Path) -> str:
    """What the data home holds, counted by a fresh store (and checked against S)."""
    store = cs.Store(home)
    jobs, tasks, runs = len(store.job_list()), len(store.task_list()), len(store.all_runs())
    logs = list((home / cs.LOGS_DIR).iterdir())
    size = sum(path.stat().st_size for path in logs) + sum(
        path.stat().st_size for path in [*home.glob("*.json"), *(home / cs.RUNS_DIR).iterdir()]
    )
    expected = (JOBS, JOBS * TASKS_PER_JOB, JOBS * TASKS_PER_JOB * RUNS_PER_TASK)
    if (jobs, tasks, runs) != expected or len(logs) != runs:
        raise RuntimeError(f"S came out as {jobs} jobs, {tasks} tasks, {runs} runs, {len(logs)} logs")
    return f"{jobs} jobs, {tasks} tasks, {runs} runs, {len(logs)} logs, {size / 2**20:.0f} MiB on disk"


####
# Child processes ####
####


class Child:
    """A child process: its tagged stdout lines arrive on a queue, the rest of its output
    is kept (the tail) for error messages. `stop` ends it by its own pid only."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        self.tail: deque[str] = deque(maxlen=40)
        self._seen = threading.Condition()
        for pipe in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: IO[bytes] | None) -> None:
        for raw in pipe or ():
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(CHILD_TAG):
                self.reports.put(json.loads(line[len(CHILD_TAG) :]))
                continue
            with self._seen:
                self.tail.append(line)
                self._seen.notify_all()

    def expect(self, timeout: float) -> dict[str, Any] | None:
        """The next report, or None if none came in time (or the child ended)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                return self.reports.get(timeout=0.05)
            if self.proc.poll() is not None and self.reports.empty():
                time.sleep(0.1)  # let the reader threads hand over the last lines
                with contextlib.suppress(queue.Empty):
                    return self.reports.get_nowait()
                return None
        return None

    def wait_output(self, text: str, timeout: float) -> bool:
        """Wait until a line containing `text` was printed (stdout or stderr)."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while not any(text in line for line in self.tail):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return any(text in line for line in self.tail)
                self._seen.wait(min(left, 0.1))
            return True

    def last_words(self) -> str:
        return " | ".join(line for line in list(self.tail)[-3:] if line.strip()) or "no output"

    def stop(self, sig: int | None = signal.SIGTERM) -> int | None:
        """Close its stdin (and send `sig`), wait, kill it if it does not end."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                if self.proc.stdin:
                    self.proc.stdin.close()
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        return self.proc.returncode


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


class HttpClient:
    """A small keep-alive-when-allowed HTTP client for the API rows."""

    def __init__(self, address: str, token: str) -> None:
        host_port = address.split("://", 1)[-1].rstrip("/")
        self.host, _, port = host_port.rpartition(":")
        self.port = int(port)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.conn: http.client.HTTPConnection | None = None
        self.reused = 0

    def get(self, path: str) -> tuple[int, bytes]:
        for attempt in (1, 2):
            fresh = self.conn is None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                self.conn.request("GET", path, headers=self.headers)
                response = self.conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if fresh or attempt == 2:
                    raise
                continue  # the server closed a kept-alive connection: once more, afresh
            self.reused += not fresh
            if response.will_close:
                self.close()
            return response.status, body
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def start_xvfb() -> tuple[subprocess.Popen[bytes], str] | None:
    """A private X server for the GUI rows when there is no display; None without Xvfb."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return None
    read_end, write_end = os.pipe()
    argv = [xvfb, "-displayfd", str(write_end), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"]
    proc = subprocess.Popen(argv, pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        number = pipe.readline().decode().strip()
    if not number:
        proc.kill()
        proc.wait()
        return None
    return proc, f":{number}"


####
# The benchmark ####
####


class Bench:
    """Builds S in `tmp`, measures every row, and owns every process it starts."""

    def __init__(self, plan: Plan, tmp: Path, *, profile: bool, slow_hooks: bool = False) -> None:
        self.plan = plan
        self.slow_hooks = slow_hooks
        self.tmp = tmp
        self.profile = profile
        self.home = tmp / "home"
        self.user_home = tmp / "user"
        self.user_home.mkdir()
        self.rows: list[Row] = []
        self.profiles: list[str] = []
        self.children: list[Child] = []
        self.xvfb: subprocess.Popen[bytes] | None = None
        self.facts: dict[str, Any] = {}

    # Set-up --------------------------------------------------------------------

    def build(self) -> None:
        start = time.perf_counter()
        self.scale = Scale(cs.Store(self.home), sample_log())
        made = [self.scale.add_job(index) for index in range(JOBS)]
        self.job_ids = [job_id for job_id, _ in made]
        self.task_ids = [task_id for _, task_ids in made for task_id in task_ids]
        self.facts["build_seconds"] = round(time.perf_counter() - start, 1)
        self.facts["scale"] = census(self.home)
        print(f"S: {self.facts['scale']}; built in {self.facts['build_seconds']} s", flush=True)
        # The measuring service has its own store, warmed the way a window's is by its first view.
        self.service = cs.Service(cs.Store(self.home))
        self.service.list_jobs()

    def child_env(self) -> dict[str, str]:
        """Environment of every child: this data home, fake Claude, a private HOME, and
        bytecode caching on (into the temp dir), as an installed command has it."""
        env = dict(os.environ)
        env.pop(cs.API_ENV, None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env[cs.HOME_ENV] = str(self.home)
        env[cs.CLAUDE_ENV] = str(FAKE_CLAUDE)
        env["HOME"] = str(self.user_home)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONPYCACHEPREFIX"] = str(self.tmp / "pycache")
        return env

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(argv, env or self.child_env())
        self.children.append(child)
        return child

    def cleanup(self) -> None:
        for child in self.children:
            child.stop()  # SIGTERM first: serve then ends its own runs; killed if it lingers
        if self.xvfb is not None and self.xvfb.poll() is None:
            self.xvfb.terminate()
            self.xvfb.wait(STOP_TIMEOUT)

    def add(self, row: Row, action: Callable[[], object] | None = None) -> None:
        """Record a row (printing it at once); with --profile, profile a failing one."""
        self.rows.append(row)
        print(f"  [{row.verdict}] {row.operation}: {row.shown}", flush=True)
        if self.profile and row.verdict == "FAIL" and action is not None:
            self.profiles.append(profile_text(row.operation, action))

    # Rows 1-5: the store, in-process and as fresh processes -------------------------

    def bench_open(self) -> None:
        def open_and_list() -> None:
            jobs = cs.Service(cs.Store(self.home)).list_jobs()
            if len(jobs) < JOBS:
                raise RuntimeError(f"list_jobs gave {len(jobs)} jobs")

        times = [elapsed_ms(open_and_list) for _ in range(self.plan.reps)]
        row = judged(
            "open store + list jobs with progress (in-process, new Store each time)",
            statistics.median(times),
            "ms",
            BUDGET_OPEN_MS,
            spread(times),
        )
        self.add(row, open_and_list)
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", "open", str(self.home)]
        self.run_process(argv)  # warms the bytecode cache
        inner, walls = [], []
        for _ in range(self.plan.process_reps):
            start = time.perf_counter()
            inner.append(float(self.run_process(argv)["ms"]))
            walls.append((time.perf_counter() - start) * 1000)
        note = f"{spread(inner)}; whole process {statistics.median(walls):.0f} ms"
        self.add(
            judged(
                "open store + list jobs with progress (fresh process, after import)",
                statistics.median(inner),
                "ms",
                BUDGET_OPEN_MS,
                note,
            )
        )

    def run_process(self, argv: list[str]) -> dict[str, Any]:
        done = subprocess.run(argv, env=self.child_env(), capture_output=True, timeout=CHILD_TIMEOUT)
        for line in done.stdout.decode().splitlines():
            if line.startswith(CHILD_TAG):
                payload: dict[str, Any] = json.loads(line[len(CHILD_TAG) :])
                return payload
        raise RuntimeError(f"{argv} reported nothing: {done.stderr.decode()[-500:]}")

    def bench_task_edits(self) -> None:
        """Create tasks (removed afterwards) and edit S's tasks through the warm service."""
        service, scale = self.service, self.scale
        created: list[str] = []

        def create() -> None:
            index = len(created) % JOBS
            fields = scale.task_fields(self.job_ids[index], index, len(created) % TASKS_PER_JOB)
            created.append(str(service.create_task(fields)["id"]))

        def edit_text(task_id: str) -> Callable[[], object]:
            text = {"name": f"Edited {time.perf_counter_ns()}", "prompt": f"{PROMPT} (edited)"}
            return functools.partial(service.update_task, task_id, text)

        def edit_schedule(task_id: str, minute: int) -> Callable[[], object]:
            cron = {"type": "cron", "expression": f"{minute} {scale.quiet_hour} * * *", "timezone": "UTC"}
            return functools.partial(service.update_task, task_id, {"schedule": cron})

        picks = self.task_ids[:: len(self.task_ids) // self.plan.reps][: self.plan.reps]
        text_edits = [edit_text(task_id) for task_id in picks]
        schedule_edits = [edit_schedule(task_id, n + 1) for n, task_id in enumerate(picks)]
        cases = (  # operation, the timed actions, one more (unlike them) for --profile
            ("create one task", [create] * self.plan.reps, create),
            ("update one task (name, prompt)", text_edits, edit_text(picks[0])),
            ("update one task (schedule)", schedule_edits, edit_schedule(picks[0], 59)),
        )
        for operation, actions, again in cases:
            times = [elapsed_ms(action) for action in actions]
            note = f"warm store (as in the window or the API); {spread(times)}"
            self.add(judged(operation, statistics.median(times), "ms", BUDGET_TASK_MS, note), again)
        for task_id in created:
            service.delete_task(task_id)

    def bench_transitions(self) -> None:
        store = self.service.store
        samples: dict[str, list[float]] = {"queued": [], "running": [], "finished": []}
        made = []
        for n in range(self.plan.reps):
            task_id = self.task_ids[(n * 97) % len(self.task_ids)]
            store.runs_of(task_id)  # loaded, as the engine's overlap check leaves it
            run_id, times = record_transitions(store, task_id)
            made.append(run_id)
            for name, value in zip(samples, times, strict=True):
                samples[name].append(value)
        for run_id in made:
            store.delete_run(run_id)
        every = [value for values in samples.values() for value in values]
        parts = ", ".join(f"{name} {statistics.median(values):.2f}" for name, values in samples.items())
        note = f"each save_run; medians {parts} ms; {spread(every)}"
        row = judged(
            "record one run transition (queued→running→finished)",
            statistics.median(every),
            "ms",
            BUDGET_TRANSITION_MS,
            note,
        )
        self.add(row, lambda: record_transitions(store, self.task_ids[1]))

    def bench_delete(self) -> None:
        """Each repetition deletes a fresh job. Warm: the measuring store built it itself
        (as the window's store does what the window does); foreign: another store built it,
        so tasks.json changed under the measuring store since it last saved."""
        own = Scale(self.service.store, self.scale.log)
        variants = (
            ("built by the same store", own, "warm store"),
            ("built by another process", self.scale, "store re-reads what the other one wrote"),
        )
        for index, (label, builder, how) in enumerate(variants):
            times = [self.timed_delete(builder, JOBS + 100 * index + n) for n in range(self.plan.reps)]
            operation = f"cascade-delete one job: 10 tasks, 200 runs, 200 logs ({label})"
            row = judged(
                operation, statistics.median(times), "ms", BUDGET_DELETE_MS, f"{how}; {spread(times)}"
            )
            self.add(row)
            if self.profile and row.verdict == "FAIL":
                job_id = self.fresh_job(builder, JOBS + 100 * index + self.plan.reps)
                self.profiles.append(
                    profile_text(row.operation, functools.partial(self.service.delete_job, job_id))
                )

    def timed_delete(self, builder: Scale, index: int) -> float:
        runs = TASKS_PER_JOB * RUNS_PER_TASK
        expected = {"jobs": 1, "tasks": TASKS_PER_JOB, "runs": runs, "logs": runs}
        job_id = self.fresh_job(builder, index)
        start = time.perf_counter()
        counts = self.service.delete_job(job_id)["deleted"]
        took = (time.perf_counter() - start) * 1000
        if counts != expected:
            raise RuntimeError(f"cascade delete removed {counts}, expected {expected}")
        return took

    def fresh_job(self, builder: Scale, index: int) -> str:
        """A job like S's; the measuring service lists the jobs once after it is built, as
        a window's view refreshes after a change."""
        job_id, _ = builder.add_job(index)
        self.service.list_jobs()
        return job_id

    def bench_cli(self) -> None:
        """`cli jobs list` against `python -c pass`, interleaved, after one warming round.

        The installed command and `python3 -m` run the module from its cached bytecode.
        `python3 claude_scheduler.py` cannot: Python compiles the script it is started with
        on every start and caches only imported modules, so that row is for information.
        The -S pair leaves out site (here a .pth in site-packages imports certifi at every
        start, which a plain machine does not)."""
        installed = ["-c", CONSOLE_SCRIPT, "cli", "jobs", "list"]
        commands = {
            "pass": ["-c", "pass"],
            "installed": installed,
            "module": ["-m", "claude_scheduler", "cli", "jobs", "list"],
            "script": [str(SCRIPT), "cli", "jobs", "list"],
            "pass -S": ["-S", "-c", "pass"],
            "installed -S": ["-S", *installed],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for rep in range(self.plan.process_reps + 1):
            for name, args in commands.items():
                took = self.process_ms([sys.executable, *args], listing=not name.startswith("pass"))
                if rep:
                    samples[name].append(took)
        pairs = (
            ("installed command", "installed", "pass", True),
            ("python3 -m claude_scheduler", "module", "pass", True),
            ("python3 claude_scheduler.py, compiled at every start", "script", "pass", False),
            ("installed command, python -S in both", "installed -S", "pass -S", False),
        )
        for label, name, base_name, judged_row in pairs:
            median, base = statistics.median(samples[name]), statistics.median(samples[base_name])
            base_text = f"python{base_name[4:]} -c pass"
            note = f"{median:.0f} ms vs {base:.0f} ms for {base_text}; n={len(samples[name])} each"
            row = judged(
                f"cli jobs list, fresh process ({label})", median / base, "×", BUDGET_CLI_RATIO, note
            )
            if not judged_row:  # for the diagnosis; SPEC's ratio is about the command people run
                row.budget, row.verdict = "-", "info"
            self.add(row)

    def process_ms(self, argv: list[str], *, listing: bool) -> float:
        start = time.perf_counter()
        done = subprocess.run(argv, env=self.child_env(), capture_output=True, timeout=CHILD_TIMEOUT)
        took = (time.perf_counter() - start) * 1000
        if done.returncode != 0 or (listing and done.stdout.count(b"\n") <= JOBS):
            raise RuntimeError(f"{argv} failed: {done.stderr.decode()[-500:]}")
        return took

    # Row 7: API and window -------------------------------------------------------------

    def bench_api(self) -> None:
        jobs_row, health_row = "GET /api/jobs", f"GET /api/health, {HEALTH_CLIENTS} client threads"
        jobs_budget, health_budget = f"≤ {BUDGET_API_JOBS_MS:g} ms", f"≥ {BUDGET_HEALTH_RPS:g} req/s"
        if not hasattr(cs, "ApiServer"):
            self.add(missing(jobs_row, jobs_budget, "no ApiServer"))
            self.add(missing(health_row, health_budget, "no ApiServer"))
            return
        child = self.spawn([sys.executable, str(Path(__file__).resolve()), "--child", "api", str(self.home)])
        ready = child.expect(CHILD_TIMEOUT)
        if ready is None or "address" not in ready:
            note = f"the API server did not start: {child.last_words()}"
            self.add(missing(jobs_row, jobs_budget, note, "FAIL"))
            self.add(missing(health_row, health_budget, note, "FAIL"))
            return
        token = cs.api_token(self.home)
        try:
            self.add(api_jobs_row(jobs_row, HttpClient(ready["address"], token), self.plan.api_requests))
            self.add(health_rate_row(health_row, ready["address"], token, self.plan.health_seconds))
        finally:
            child.stop(None)

    def bench_gui(self) -> None:
        shown_row, select_row = "GUI: window shown with S (fresh process)", "GUI: select a job"
        shown_budget, select_budget = f"≤ {BUDGET_GUI_SHOWN_S:g} s", f"≤ {BUDGET_GUI_SELECT_MS:g} ms"
        reason = self.gui_unavailable()
        if reason:
            print(f"  note: GUI rows skipped: {reason}", flush=True)
            self.add(missing(shown_row, shown_budget, reason))
            self.add(missing(select_row, select_budget, reason))
            return
        env = {**self.child_env(), "DISPLAY": self.display}
        shown: list[float] = []
        selects: list[float] = []
        notes: list[str] = []
        for _ in range(self.plan.gui_reps):
            start = time.perf_counter()
            child = self.spawn(
                [sys.executable, str(Path(__file__).resolve()), "--child", "gui", str(self.home)], env
            )
            first = child.expect(CHILD_TIMEOUT)
            if first is None or first.get("event") != "shown":
                notes.append(str((first or {}).get("message") or child.last_words()))
                child.stop()
                break
            shown.append(time.perf_counter() - start)
            second = child.expect(CHILD_TIMEOUT) or {}
            selects.extend(float(value) for value in second.get("ms", []))
            if second.get("note"):
                notes.append(str(second["note"]))
            child.stop(None)
        note = "; ".join(dict.fromkeys(notes))
        if shown:
            shown_note = "; ".join(filter(None, ["from process start, " + spread(shown, "s"), note]))
            self.add(judged(shown_row, statistics.median(shown), "s", BUDGET_GUI_SHOWN_S, shown_note))
        else:
            self.add(missing(shown_row, shown_budget, note, "FAIL"))
        if selects:
            self.add(
                judged(select_row, statistics.median(selects), "ms", BUDGET_GUI_SELECT_MS, spread(selects))
            )
        else:
            self.add(missing(select_row, select_budget, note or "no job could be selected", "FAIL"))

    def gui_unavailable(self) -> str | None:
        if not hasattr(cs, "App"):
            return "claude_scheduler has no App class yet"
        try:
            import tkinter  # noqa: F401  (only to know whether this Python has Tk)
        except ImportError:
            return "this Python has no tkinter"
        self.display = os.environ.get("DISPLAY", "")
        if not self.display:
            started = start_xvfb()
            if started is None:
                return "no DISPLAY and no Xvfb"
            self.xvfb, self.display = started
        return None

    # Row 6: the engine, as `serve` --------------------------------------------------

    def bench_engine(self) -> None:
        names = (
            "engine: fire lateness p95",
            "engine: idle CPU",
            "engine: peak RSS (VmHWM)",
            "engine: job-schedule fire lateness p95",
        )
        argv = [sys.executable, str(SCRIPT), "--home", str(self.home), "serve", "--port", "0"]
        if self.slow_hooks:
            self.add_slow_hooks()
        start = time.perf_counter()
        child = self.spawn(argv)
        if not child.wait_output("engine started", CHILD_TIMEOUT):
            note = f"serve did not start an engine: {child.last_words()}"
            for name in names:
                self.add(missing(name, "-", note, "FAIL"))
            child.stop()
            return
        ready = time.perf_counter() - start
        self.add(
            Row(
                "serve: start to engine running at S",
                ready,
                "s",
                "-",
                "info",
                "process start, store, recovery",
            )
        )
        try:
            time.sleep(SETTLE_SECONDS)
            self.add(self.idle_cpu_row(names[1], child.proc.pid))
            self.add(self.lateness_row(names[0]))
            self.add(self.job_lateness_row(names[3]))
            rss = peak_rss_mib(child.proc.pid)
            if rss is not None:
                self.add(Row(names[2], rss, "MiB", "-", "info", "serve process, after the fires"))
        finally:
            code = child.stop()
        if code not in (0, None):
            print(f"  note: serve exited with {code}: {child.last_words()}", flush=True)

    def add_slow_hooks(self) -> None:
        """--slow-hooks: every fire fails and is told to a hook that answers after 10 s and
        to one that is unreachable (3 retries), so lateness shows whether delivery holds
        the engine up."""

        class Slow(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(SLOW_HOOK_SECONDS)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = sock.getsockname()[1]
        hooks = [
            {
                "name": "slow",
                "url": f"http://127.0.0.1:{server.server_port}/",
                "timeout_seconds": 30,
                "retries": 0,
            },
            {"name": "unreachable", "url": f"http://127.0.0.1:{closed}/", "retries": 3, "backoff_seconds": 1},
        ]
        self.service.update_notify_settings({"webhooks": hooks})

    def idle_cpu_row(self, name: str, pid: int) -> Row:
        before, start = cpu_seconds(pid), time.monotonic()
        time.sleep(self.plan.idle_seconds)
        used, window = cpu_seconds(pid) - before, time.monotonic() - start
        note = f"{used:.2f} s CPU over {window:.0f} s, nothing due (serve process)"
        return judged(name, 100 * used / window, "%", BUDGET_IDLE_CPU_PCT, note)

    def lateness_row(self, name: str) -> Row:
        """Once-tasks due `fire_spacing` apart; lateness = started_at - scheduled_for."""
        plan, service = self.plan, self.service
        job_id = str(service.create_job({"name": "Bench fires"})["id"])
        first = cs.utcnow() + timedelta(seconds=FIRE_LEAD_SECONDS + FIRE_CREATE_SECONDS * plan.fires)
        task_ids = []
        for n in range(plan.fires):
            at = cs.fmt_time(first + timedelta(seconds=n * plan.fire_spacing))
            fields = {
                "job_id": job_id,
                "name": f"Fire {n:02d}",
                "prompt": "[exit=1] Say done." if self.slow_hooks else "Say done.",
                "schedule": {"type": "once", "at": at},
            }
            task_ids.append(str(service.create_task(fields)["id"]))
        if cs.utcnow() >= first:
            raise RuntimeError(f"creating {plan.fires} tasks took longer than their lead time")
        deadline = time.monotonic() + FIRE_LEAD_SECONDS + plan.fires * plan.fire_spacing + FIRE_WAIT_SECONDS
        runs: list[cs.Run] = []
        while time.monotonic() < deadline:
            runs = [run for task_id in task_ids for run in service.store.runs_of(task_id)]
            if len(runs) >= plan.fires and not any(run.is_active for run in runs):
                break
            time.sleep(0.25)
        late = [
            (run.started_at - run.scheduled_for).total_seconds()
            for run in runs
            if run.started_at and run.scheduled_for and run.trigger is cs.Trigger.SCHEDULE
        ]
        statuses = ", ".join(f"{status} {count}" for status, count in count_statuses(runs).items())
        if not late:
            return missing(
                name, f"≤ {BUDGET_LATENESS_S:g} s", f"no run started ({statuses or 'no runs'})", "FAIL"
            )
        fired = f"{len(late)}/{plan.fires} fired ({statuses})"
        note = f"p50 {percentile(late, 0.5):.3f} s, max {max(late):.3f} s; {fired}"
        row = judged(name, percentile(late, 0.95), "s", BUDGET_LATENESS_S, note)
        if len(late) < plan.fires:
            row.verdict = "FAIL"
        return row

    def job_lateness_row(self, name: str) -> Row:
        """Jobs of one task each, on once-schedules due `fire_spacing` apart; lateness =
        the first step's started_at - the job run's scheduled_for (same budget as tasks)."""
        plan, service = self.plan, self.service
        first = cs.utcnow() + timedelta(seconds=FIRE_LEAD_SECONDS + JOB_FIRE_CREATE_SECONDS * plan.fires)
        job_ids, task_ids = [], []
        for n in range(plan.fires):
            at = cs.fmt_time(first + timedelta(seconds=n * plan.fire_spacing))
            job = service.create_job(
                {"name": f"Bench job fire {n:02d}", "schedule": {"type": "once", "at": at}}
            )
            task = service.create_task({"job_id": job["id"], "name": "Step", "prompt": "Say done."})
            job_ids.append(str(job["id"]))
            task_ids.append(str(task["id"]))
        if cs.utcnow() >= first:
            raise RuntimeError(f"creating {plan.fires} jobs took longer than their lead time")
        deadline = time.monotonic() + FIRE_LEAD_SECONDS + plan.fires * plan.fire_spacing + FIRE_WAIT_SECONDS
        while time.monotonic() < deadline:  # the steps' run files, as the task row reads them
            runs = [run for task_id in task_ids for run in service.store.runs_of(task_id)]
            if len(runs) >= plan.fires and not any(run.is_active for run in runs):
                break
            time.sleep(0.25)
        wanted = set(job_ids)
        records = [entry for entry in service.store.job_runs().values() if entry.get("job_id") in wanted]
        late = [lateness for record in records if (lateness := self.job_run_lateness(record)) is not None]
        statuses = ", ".join(sorted(str(record["status"]) for record in records))
        if not late:
            return missing(
                name, f"≤ {BUDGET_LATENESS_S:g} s", f"no job run started ({statuses or 'none'})", "FAIL"
            )
        note = f"p50 {percentile(late, 0.5):.3f} s, max {max(late):.3f} s; {len(late)}/{plan.fires} fired"
        row = judged(name, percentile(late, 0.95), "s", BUDGET_LATENESS_S, note)
        if len(late) < plan.fires:
            row.verdict = "FAIL"
        return row

    def job_run_lateness(self, record: dict[str, Any]) -> float | None:
        """For a job run of one step: its run is the job run's current (and first) one."""
        if record.get("trigger") != cs.Trigger.SCHEDULE or not record.get("current_run_id"):
            return None
        run = self.service.store.run(record["current_run_id"])
        if run.started_at is None:
            return None
        return (run.started_at - cs.parse_time(record["scheduled_for"], "scheduled_for")).total_seconds()

    # Everything --------------------------------------------------------------------

    def run(self) -> None:
        self.build()
        for step in (
            self.bench_open,
            self.bench_task_edits,
            self.bench_transitions,
            self.bench_delete,
            self.bench_cli,
            self.bench_api,
            self.bench_gui,
            self.bench_engine,
        ):
            try:
                step()
            except Exception as error:  # one broken row must not hide the others; the table says it
                traceback.print_exc()
                self.add(
                    missing(
                        f"{step.__name__} (did not finish)", "-", f"{type(error).__name__}: {error}", "FAIL"
                    )
                )


def record_transitions(store: cs.Store, task_id: str) -> tuple[str, list[float]]:
    """One run through queued, running and finished, timing each `save_run`."""
    run = cs.Run(cs.new_id(), task_id, trigger=cs.Trigger.MANUAL, created_at=cs.utcnow(), model="sonnet")
    queued = elapsed_ms(lambda: store.save_run(run))
    run = dataclasses.replace(
        run, status=cs.RunStatus.RUNNING, started_at=cs.utcnow(), owner="bench:1", pid=1
    )
    running = elapsed_ms(lambda: store.save_run(run))
    run = dataclasses.replace(
        run,
        status=cs.RunStatus.SUCCESS,
        finished_at=cs.utcnow(),
        exit_code=0,
        session_id=cs.new_id(),
        cost_usd=0.0123,
        result=RESULT_TEXT,
    )
    finished = elapsed_ms(lambda: store.save_run(run))
    return run.id, [queued, running, finished]


def count_statuses(runs: list[cs.Run]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status.value] = counts.get(run.status.value, 0) + 1
    return counts


def api_jobs_row(name: str, client: HttpClient, requests: int) -> Row:
    budget = f"≤ {BUDGET_API_JOBS_MS:g} ms"
    status, body = client.get("/api/jobs")
    with contextlib.suppress(ValueError):
        payload = json.loads(body)
        if status == 200 and isinstance(payload, dict) and len(payload.get("jobs") or []) >= JOBS:
            times = [elapsed_ms(lambda: client.get("/api/jobs")) for _ in range(requests)]
            note = f"{spread(times)}; {'kept-alive' if client.reused else 'new'} connections"
            return judged(name, statistics.median(times), "ms", BUDGET_API_JOBS_MS, note)
    return missing(name, budget, f"the route answers {status} without the jobs list")


def health_rate_row(name: str, address: str, token: str, seconds: float) -> Row:
    probe = HttpClient(address, token)
    status, body = probe.get("/api/health")
    if status != 200 or b'"ok"' not in body:
        return missing(name, f"≥ {BUDGET_HEALTH_RPS:g} req/s", f"/api/health answered {status}")
    clients = [HttpClient(address, token) for _ in range(HEALTH_CLIENTS)]
    counts = [0] * HEALTH_CLIENTS
    errors = [0] * HEALTH_CLIENTS
    gate = threading.Barrier(HEALTH_CLIENTS + 1)
    deadline = [0.0]

    def hammer(n: int) -> None:
        gate.wait()
        while time.perf_counter() < deadline[0]:
            try:
                status, _ = clients[n].get("/api/health")
            except (OSError, http.client.HTTPException):
                errors[n] += 1
                continue
            counts[n] += status == 200
        clients[n].close()

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(HEALTH_CLIENTS)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    start = time.perf_counter()
    gate.wait()
    for thread in threads:
        thread.join()
    rate = sum(counts) / (time.perf_counter() - start)
    reuse = "kept-alive" if any(client.reused for client in clients) else "a new connection per request"
    note = f"{sum(counts)} answers in {seconds:g} s, {sum(errors)} errors, {reuse}; server in its own process"
    return judged(name, rate, "req/s", BUDGET_HEALTH_RPS, note, floor=True)


def profile_text(operation: str, action: Callable[[], object]) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(action)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats("claude_scheduler", TOP_FUNCTIONS)
    stats.sort_stats("tottime").print_stats(TOP_FUNCTIONS // 2)
    text = "\n".join(line for line in out.getvalue().splitlines() if line.strip())
    order = "the product's functions by cumulative time, then all by own time"
    return f"--- profile of one '{operation}': {order}\n{text}"


####
# Output ####
####


def machine_facts() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "nproc": affinity,
        "cpu": model,
        "version": cs.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": load_average(),
    }


def load_average() -> str:
    """The 1/5/15-minute load: other work on the machine skews every timing."""
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def table(rows: list[Row]) -> str:
    header = ("operation", "median", "budget", "result", "notes")
    cells = [header, *((row.operation, row.shown, row.budget, row.verdict, row.note) for row in rows)]
    widths = [max(len(cell[n]) for cell in cells) for n in range(len(header) - 1)]
    lines = []
    for n, cell in enumerate(cells):
        lines.append(
            " | ".join(text.ljust(width) for text, width in zip(cell, widths, strict=False))
            + " | "
            + cell[-1]
        )
        if n == 0:
            lines.append("-+-".join("-" * width for width in widths) + "-+------")
    return "\n".join(lines)


def write_json(path: Path, facts: dict[str, Any], plan: Plan, rows: list[Row], quick: bool) -> None:
    document = {
        "machine": facts,
        "mode": "quick" if quick else "full",
        "plan": dataclasses.asdict(plan),
        "rows": [dataclasses.asdict(row) for row in rows],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


####
# Child process roles ####
####


def child_open(home: Path) -> int:
    start = time.perf_counter()
    jobs = cs.Service(cs.Store(home)).list_jobs()
    report({"ms": (time.perf_counter() - start) * 1000, "jobs": len(jobs)})
    return 0


def child_api(home: Path) -> int:
    """Serve the API over `home` until the parent closes our stdin."""
    server = cs.ApiServer(cs.Service(cs.Store(home)), "127.0.0.1", 0)
    server.start()
    report({"address": server.address})
    sys.stdin.read()
    server.stop()
    return 0


def child_gui(home: Path) -> int:
    """Open the window through main(["gui"]); when it enters the Tk main loop, wait until
    it is shown, report, time job selections, report, and close it."""
    import tkinter

    entered: list[bool] = []

    def measure(self: tkinter.Misc, n: int = 0) -> None:
        entered.append(True)
        root = self.winfo_toplevel()
        try:
            deadline = time.monotonic() + CHILD_TIMEOUT
            root.update()
            while not root.winfo_viewable() and time.monotonic() < deadline:
                time.sleep(0.005)
                root.update()
            report({"event": "shown"})
            report({"event": "select", **time_job_selections(root)})
        finally:
            root.destroy()

    tkinter.Misc.mainloop = measure  # type: ignore[method-assign]  # the window's loop is measured
    code = cs.main(["--home", str(home), "gui", "--no-api"])
    if not entered:
        report({"event": "error", "message": f"main(['gui']) returned {code} without a Tk main loop"})
    return 0


def time_job_selections(root: Any) -> dict[str, Any]:
    """Select jobs in the tree that lists them; each timing lasts until another pane's
    rows change (or SELECT_WAIT_SECONDS pass)."""
    from tkinter import ttk

    trees = [widget for widget in all_widgets(root) if isinstance(widget, ttk.Treeview)]
    listed = {tree: job_items(tree) for tree in trees}
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not any(listed.values()) and time.monotonic() < deadline:  # a window shown before its data
        time.sleep(0.005)
        root.update()
        listed = {tree: job_items(tree) for tree in trees}
    jobs_tree = max(trees, key=lambda tree: len(listed[tree]), default=None)
    if jobs_tree is None or not listed[jobs_tree]:
        return {"ms": [], "note": "no Treeview lists the jobs"}
    others = [tree for tree in trees if tree is not jobs_tree]
    items = listed[jobs_tree]
    picks = items[:: max(len(items) // SELECT_PICKS, 1)][:SELECT_PICKS]
    times, unchanged = [], 0
    for item in picks:
        before = [tree.get_children("") for tree in others]
        start = time.perf_counter()
        jobs_tree.selection_set(item)
        jobs_tree.focus(item)
        jobs_tree.see(item)
        root.update()
        handled = time.perf_counter() - start  # the selection's event handlers have run
        while [tree.get_children("") for tree in others] == before:
            if time.perf_counter() - start > SELECT_WAIT_SECONDS:
                unchanged += 1
                break
            time.sleep(0.001)
            root.update()
        else:
            handled = time.perf_counter() - start
        times.append(handled * 1000)
    note = f"{unchanged} selections changed no other pane (timed to their handlers)" if unchanged else ""
    return {"ms": times, "note": note}


def all_widgets(widget: Any) -> Iterator[Any]:
    yield widget
    for child in widget.winfo_children():
        yield from all_widgets(child)


def job_items(tree: Any) -> list[str]:
    """Items of a Treeview (any depth) whose text or values name a bench job."""
    found: list[str] = []
    pending = list(tree.get_children(""))
    while pending:
        item = pending.pop(0)
        words = [str(tree.item(item, "text")), *(str(value) for value in tree.item(item, "values") or ())]
        if any(word.startswith("Bench job") for word in words):
            found.append(item)
        pending.extend(tree.get_children(item))
    return found


CHILD_ROLES: dict[str, Callable[[Path], int]] = {"open": child_open, "api": child_api, "gui": child_gui}


####
# Entry point ####
####


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark claude-code-scheduler at scale S (SPEC 10).")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 s idle window, fewer repetitions")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--profile", action="store_true", help="cProfile in-process rows that miss budget")
    parser.add_argument(
        "--slow-hooks",
        action="store_true",
        help="engine rows with every fire told to a slow and a dead webhook",
    )
    parser.add_argument("--child", nargs=2, metavar=("ROLE", "HOME"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up of processes and files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        role, home = args.child
        return CHILD_ROLES[role](Path(home))
    signal.signal(signal.SIGTERM, _exit_on_signal)
    plan = QUICK if args.quick else FULL
    facts = machine_facts()
    print(" ".join(f"{key}={value}" for key, value in facts.items()))
    print(
        f"mode={'quick' if args.quick else 'full'}, {plan.reps} repetitions in-process, "
        f"{plan.process_reps} fresh processes per process row, medians reported",
        flush=True,
    )
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ccs-bench-") as tmp:
        bench = Bench(plan, Path(tmp), profile=args.profile, slow_hooks=args.slow_hooks)
        try:
            bench.run()
        finally:
            bench.cleanup()
    facts.update(
        bench.facts, total_seconds=round(time.perf_counter() - began, 1), loadavg_at_end=load_average()
    )
    print()
    print(table(bench.rows))
    print(f"\nS: {facts.get('scale')}; built in {facts.get('build_seconds')} s")
    load = f"load average {facts['loadavg_at_start']} at start, {facts['loadavg_at_end']} at end"
    print(f"whole bench: {facts['total_seconds']} s; {load}")
    for text in bench.profiles:
        print("\n" + text)
    if args.json:
        write_json(args.json, facts, plan, bench.rows, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
