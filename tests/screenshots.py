#!/usr/bin/env python3
"""Screenshots of the window for the README, made under Xvfb so they can be refreshed.

    python3 tests/screenshots.py OUT_DIR                    1280x800 and 1920x1080, light and dark
    python3 tests/screenshots.py OUT_DIR --size 3840x2160 --scaling 2.0 --theme dark
    python3 tests/screenshots.py OUT_DIR --shot job-dialog  the job dialog with a schedule

Each shot starts an Xvfb of that size, seeds a temporary data home (jobs, tasks and runs
made with the fake claude, so no real session is started) and photographs the screen with
ImageMagick's `import`. Needs Xvfb and ImageMagick; touches no real data home.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import claude_scheduler as cs  # noqa: E402

FAKE_CLAUDE = Path(__file__).with_name("fake_claude.py")
SIZES = ("1280x800", "1920x1080")
THEMES = ("light", "dark")
XVFB_START_SECONDS = 10.0
SHOT_TIMEOUT_SECONDS = 60.0
RUNS_PER_TASK = 12
SCALING_ENV = "SHOTS_TK_SCALING"  # parent to child: the Tk scaling to use
SEED_TASKS = (  # job, task name, schedule, statuses of its runs (oldest first, repeating)
    (
        "Nightly maintenance",
        "Update dependencies",
        {"type": "cron", "expression": "0 2 * * *", "timezone": "Europe/Amsterdam"},
        "SSSFSS",
    ),
    ("Nightly maintenance", "Triage new issues", {"type": "cron", "expression": "30 7 * * 1-5"}, "SSSSSS"),
    (
        "Nightly maintenance",
        "Write the changelog for the weekly release",
        {"type": "cron", "expression": "0 16 * * 5"},
        "SFSSTS",
    ),
    ("Docs", "Check links", {"type": "interval", "every_seconds": 21600}, "SSFFSS"),
    ("Docs", "Summarise open pull requests", {"type": "cron", "expression": "0 9 * * *"}, "SSSSFS"),
    (None, "One-off refactor", {"type": "once", "at": "2030-01-01T10:00:00+00:00"}, "S"),
)
SEED_LOG = (
    {"type": "system", "subtype": "init", "model": "claude-sonnet"},
    {"type": "assistant", "message": {"content": [{"type": "text", "text": "Looking at the repository."}]}},
    {"type": "result", "subtype": "success", "result": "Done: 3 files changed.", "total_cost_usd": 0.05},
)
SHOTS = ("window", "job-dialog")
JOB_SCHEDULE = {"type": "cron", "expression": "0 2 * * 1-5", "timezone": "Europe/Amsterdam"}
STATUS_CODES = {"S": cs.RunStatus.SUCCESS, "F": cs.RunStatus.FAILED, "T": cs.RunStatus.TIMEOUT}


def seed(home: Path) -> None:
    """Jobs, tasks and a history of finished runs with costs, in `home`."""
    store = cs.Store(home)
    service = cs.Service(store)
    jobs: dict[str, str] = {}
    now = cs.utcnow()
    for number, (job_name, name, schedule, statuses) in enumerate(SEED_TASKS):
        if job_name and job_name not in jobs:
            jobs[job_name] = service.create_job(
                {"name": job_name, "description": f"{job_name} for the repo"}
            )["id"]
        task = service.create_task(
            {
                "name": name,
                "prompt": f"{name} in this repository and report what changed.",
                "job_id": jobs.get(job_name or ""),
                "schedule": schedule,
                "working_directory": "~/src/project",
            }
        )
        for index in range(RUNS_PER_TASK if len(statuses) > 1 else 1):
            status = STATUS_CODES[statuses[index % len(statuses)]]
            started = now - timedelta(hours=10 * index + number, minutes=7 * number)
            seconds = 40 + 23 * ((index + number) % 7)
            run = cs.Run(
                cs.new_id(),
                task["id"],
                status=status,
                started_at=started,
                finished_at=started + timedelta(seconds=seconds),
                cost_usd=round(0.04 + 0.013 * ((index * 3 + number) % 9), 4),
                error=None if status is cs.RunStatus.SUCCESS else "claude exited with code 1: tests failed",
            )
            store.save_run(run)
            store.log_path(run.id).write_text("".join(json.dumps(line) + "\n" for line in SEED_LOG))


def child(out: Path, theme: str, shot: str) -> int:
    """In the Xvfb: open the window full screen, select a task, photograph the screen
    (with the first job's dialog open over it, its schedule set, for `job-dialog`)."""
    import tkinter

    store = cs.Store(Path(os.environ[cs.HOME_ENV]))
    store.update_settings({cs.GUI_SETTINGS_KEY: {"theme": theme}})
    if shot == "job-dialog":
        service = cs.Service(store)
        first = service.list_jobs()[0]
        service.update_job(first["id"], {"schedule": JOB_SCHEDULE, "overlap": "skip"})
    root = tkinter.Tk(className=cs.GUI_CLASS_NAME)
    root.tk.call("tk", "scaling", float(os.environ.get(SCALING_ENV, "1.0")))
    app = cs.App(store, root=root, api_port=None, start_engine=False)
    width, height = app.layout.usable_screen(app.root)
    app.root.geometry(f"{width}x{height}+0+0")
    app.settle()
    job_iid = next(iter(app.jobs_pane.table.tree.get_children()), None)
    if shot == "job-dialog":
        job_iid = cs.Service(store).list_jobs()[0]["id"]
    if job_iid:
        app.jobs_pane.table.tree.selection_set(job_iid)
        app.settle()
    tasks = app.tasks_pane.table.tree.get_children()
    if tasks:
        app.tasks_pane.table.tree.selection_set(tasks[0])
        app.settle()
    runs = app.runs_pane.table.tree.get_children()
    if runs:
        app.runs_pane.table.tree.selection_set(runs[0])
        app.settle()
    if shot == "job-dialog":
        app.edit_job()
        app.settle()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # let the log and geometry settle on screen
        app.root.update()
        time.sleep(0.02)
    # 256 colours (PNG8): a window of flat colours stays sharp at a fraction of the size.
    subprocess.run(["import", "-window", "root", "-colors", "256", f"PNG8:{out}"], check=True)
    app.close()
    return 0


def shoot(out: Path, size: str, scaling: float, theme: str, shot: str) -> None:
    xvfb = shutil.which("Xvfb")
    if xvfb is None or shutil.which("import") is None:
        raise SystemExit("needs Xvfb and ImageMagick's import (apt-get install xvfb imagemagick)")
    with tempfile.TemporaryDirectory(prefix="ccs-shots-") as tmp:
        home, user = Path(tmp) / "data", Path(tmp) / "user"
        (user / "src" / "project").mkdir(parents=True)  # the tasks' folder: no setup problem to show
        env = {
            **os.environ,
            cs.HOME_ENV: str(home),
            "HOME": str(user),
            cs.CLAUDE_ENV: str(FAKE_CLAUDE),
            "TZ": "UTC",
        }
        env.pop(cs.API_ENV, None)
        os.environ.update({cs.HOME_ENV: str(home), "HOME": str(user)})
        seed(home)
        read_end, write_end = os.pipe()
        server = subprocess.Popen(
            [xvfb, "-displayfd", str(write_end), "-screen", "0", f"{size}x24", "-nolisten", "tcp"],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            number = pipe.readline().strip()
        try:
            env["DISPLAY"] = f":{number}"
            env[SCALING_ENV] = str(scaling)
            argv = [sys.executable, __file__, "--child", str(out), "--theme", theme, "--shot", shot]
            subprocess.run(argv, env=env, check=True, timeout=SHOT_TIMEOUT_SECONDS)
        finally:
            server.terminate()
            server.wait(timeout=XVFB_START_SECONDS)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--size", action="append", help="WIDTHxHEIGHT (repeatable; default 1280x800 and 1920x1080)"
    )
    parser.add_argument("--theme", action="append", choices=THEMES, help="default: both")
    parser.add_argument("--scaling", type=float, default=1.0, help="Tk scaling (pixels per point)")
    parser.add_argument("--shot", choices=SHOTS, default="window", help="what to photograph (default window)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.out_dir, (args.theme or ["light"])[0], args.shot)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for size in args.size or SIZES:
        for theme in args.theme or THEMES:
            out = args.out_dir / f"{args.shot}-{size}-{theme}.png"
            shoot(out, size, args.scaling, theme, args.shot)
            print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
