"""A CLI user in a separate process, for the durability tests (not collected by pytest).

    store_worker.py churn SEED TAG      random creates/updates/runs/deletes until killed
    store_worker.py batch TAG COUNT     after a line on stdin: creates and updates, then exit
    store_worker.py delete-job JOB_ID   `jobs delete --force`, then exit

Every command goes through `main(["cli", ...])` on $CLAUDE_SCHEDULER_HOME. A line is
printed (and flushed) only after main returned 0, so each printed line is an operation
the CLI reported as done: `create ID`, `update ID VERSION`, `run RUN_ID TASK_ID`,
`job ID`, `delete ID`; `deleting ID` comes before a delete is tried. `ready` comes first,
`fail ...` reports a non-zero exit.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import sys
from typing import Any

import claude_scheduler as cs


def cli(*words: str) -> Any:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cs.main(["cli", *words, "--json"])
    if code != 0:
        say("fail", str(code), " ".join(words), err.getvalue().replace("\n", " "))
        return None
    return json.loads(out.getvalue())


def say(*words: str) -> None:
    print(*words, flush=True)


def create(tag: str, n: int, *extra: str) -> str | None:
    task = cli("tasks", "create", "--name", f"{tag}-{n}", "--prompt", "v0", "--every", "1h", *extra)
    if task is None:
        return None
    say("create", task["id"])
    return str(task["id"])


def update(task_id: str, version: int) -> None:
    if cli("tasks", "update", task_id, "--prompt", f"v{version}") is not None:
        say("update", task_id, str(version))


def churn(seed: int, tag: str) -> None:
    rng = random.Random(seed)
    own: list[str] = []
    for n in range(1, 10_000):
        roll = rng.random()
        if roll < 0.35 or not own:
            task_id = create(tag, n)
            if task_id:
                own.append(task_id)
        elif roll < 0.7:
            update(rng.choice(own), n)
        elif roll < 0.82:
            task_id = rng.choice(own)
            run = cli("tasks", "run", task_id, "--detach")
            if run is not None:
                say("run", run["id"], task_id)
        elif roll < 0.9:
            job = cli("jobs", "create", "--name", f"{tag}-job-{n}")
            if job is not None:
                say("job", job["id"])
                task_id = create(tag, n, "--job", job["id"])
                if task_id:
                    own.append(task_id)
        else:
            task_id = own.pop(rng.randrange(len(own)))
            say("deleting", task_id)  # from here on the task may be gone, acknowledged or not
            if cli("tasks", "delete", task_id, "--force") is not None:
                say("delete", task_id)


def batch(tag: str, count: int) -> None:
    job = cli("jobs", "create", "--name", f"{tag}-job")
    say("job", job["id"])
    previous: str | None = None
    for n in range(count):
        task_id = create(tag, n, "--job", job["id"]) if n % 3 == 0 else create(tag, n)
        if previous:
            update(previous, n)
        previous = task_id
    if previous:
        update(previous, count)


def main(argv: list[str]) -> None:
    say("ready")
    if argv[0] == "churn":
        churn(int(argv[1]), argv[2])
    elif argv[0] == "batch":
        sys.stdin.readline()  # wait for "go", so that every worker starts at once
        batch(argv[1], int(argv[2]))
    elif argv[0] == "delete-job":
        cli("jobs", "delete", argv[1], "--force")
        say("deleted", argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
