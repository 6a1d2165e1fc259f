"""The window, driven through its widgets under Xvfb.

A session fixture uses $DISPLAY, or starts Xvfb on a free display number. Without Xvfb
(or when no window can open) the tests skip, and fail when $CI says this is CI.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_CLAUDE, ROOT
from run_helpers import T0, FakeClock

import claude_scheduler as cs

POLL_SECONDS = 0.01
WAIT_SECONDS = 30.0  # a deadline only: waits end as soon as the window shows it
REFRESH_BUDGET_SECONDS = 2.0  # changes by other processes show within two seconds
XVFB_START_SECONDS = 30.0
SCREEN = "1600x1000x24"
FIXED_PORTS_FROM = 20_000  # the API port a test chooses lies from here to the ephemeral range


def _unavailable(reason: str) -> None:
    """Skip, or fail in CI: a CI run that silently skipped the window would prove nothing."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"the GUI tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """$DISPLAY if set; else an Xvfb of our own on a display number it picks itself."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    server, number = _start_xvfb(SCREEN)
    os.environ["DISPLAY"] = f":{number}"
    _wait_for_display()
    try:
        yield os.environ["DISPLAY"]
    finally:
        del os.environ["DISPLAY"]
        server.terminate()
        server.wait(timeout=XVFB_START_SECONDS)


def _start_xvfb(screen: str) -> tuple[subprocess.Popen[bytes], str]:
    """An Xvfb with one screen of `screen` ("WxHxDEPTH") and the display number it took."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        _unavailable("Xvfb is not installed (apt-get install xvfb)")
        raise AssertionError("unreachable")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", screen, "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    number = _read_line(read_end, XVFB_START_SECONDS)
    os.close(read_end)
    if not number.isdigit():
        server.kill()
        server.wait()
        _unavailable("Xvfb did not start")
    return server, number


def _read_line(fd: int, timeout: float) -> str:
    """The first line written to `fd` (the whole of it: Xvfb dies if its pipe closes early)."""
    data, deadline = b"", time.monotonic() + timeout
    while b"\n" not in data:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(fd, 64) if ready else b""
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _wait_for_display() -> None:
    """Xvfb names its display a moment before it takes connections."""
    try:
        import tkinter
    except ImportError as error:
        _unavailable(f"this Python has no tkinter ({error})")
        return
    deadline = time.monotonic() + XVFB_START_SECONDS
    while True:
        try:
            tkinter.Tk().destroy()
            return
        except tkinter.TclError as error:
            if time.monotonic() > deadline:
                _unavailable(f"no window can open on the new Xvfb: {error}")
            time.sleep(POLL_SECONDS * 10)


@dataclass
class Gui:
    """The app under test, with its questions to people answered by the test."""

    app: cs.App
    alerts: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    answers: list[bool] = field(default_factory=list)
    unsaved_answers: list[bool | None] = field(default_factory=list)

    def wait(self, condition: Callable[[], object], what: str, timeout: float = WAIT_SECONDS) -> float:
        """Process events until `condition()` holds; return how long it took."""
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > timeout:
                raise AssertionError(f"timed out waiting for {what}")
            self.app.root.update()
            time.sleep(POLL_SECONDS)
        return time.monotonic() - start

    def settle(self) -> None:
        assert self.app.settle(WAIT_SECONDS), "the window did not settle"

    def confirm(self, title: str, message: str) -> bool:
        self.questions.append(message)
        return self.answers.pop(0)

    def ask_unsaved(self, name: str) -> bool | None:
        self.questions.append(f"unsaved {name}")
        return self.unsaved_answers.pop(0)

    # What the panes show -------------------------------------------------------------

    def task_rows(self) -> list[str]:
        tree = self.app.tasks_pane.table.tree
        return [tree.item(iid, "text") for iid in tree.get_children()]

    def select_in_jobs(self, iid: str) -> None:
        self.app.jobs_pane.table.tree.selection_set(iid)
        self.settle()

    def select_task(self, task_id: str) -> None:
        self.app.tasks_pane.table.tree.selection_set(task_id)
        self.settle()

    def press(self, widget: Any, sequence: str) -> None:
        """A key press on a widget (which gets the keyboard focus first, as a click gives it)."""
        widget.focus_force()
        self.app.root.update()
        widget.event_generate(sequence)
        self.settle()

    def choose_menu(self, title: str, label: str) -> None:
        """Click a menu bar item (`title` → `label`)."""
        root = self.app.root
        bar = root.nametowidget(root.cget("menu"))
        root.nametowidget(bar.entrycget(title, "menu")).invoke(label)
        self.settle()

    def log_text(self) -> str:
        return str(self.app.logs_pane.text.get("1.0", "end-1c"))

    def type_into(self, widget: Any, text: str) -> None:
        """Replace an Entry's or a Text's content the way typing does."""
        if hasattr(widget, "edit_modified"):
            widget.delete("1.0", "end")
            widget.insert("1.0", text)
        else:
            widget.delete(0, "end")
            widget.insert(0, text)
        self.app.root.update()


@pytest.fixture
def service(home: Path) -> cs.Service:
    """Another door onto the same data home, as another process would have."""
    return cs.Service(cs.Store(home))


@contextlib.contextmanager
def open_gui(
    home: Path, *, engine: bool = False, root: Any = None, api_port: int | None = None
) -> Iterator[Gui]:
    """The window on a data home (no API; the engine if asked), closed at the end."""
    try:
        import tkinter
    except ImportError as error:
        _unavailable(f"this Python has no tkinter ({error})")
        raise
    try:
        app = cs.App(cs.Store(home), root=root, api_port=api_port, start_engine=engine)
    except tkinter.TclError as error:
        _unavailable(f"no window can open: {error}")
        raise
    gui = Gui(app)
    # The test answers the questions a person would (message boxes would wait for a click).
    app.alert = lambda title, message: gui.alerts.append(message)  # type: ignore[method-assign]  # see above
    app.confirm = gui.confirm  # type: ignore[method-assign]  # see above
    app.ask_unsaved = gui.ask_unsaved  # type: ignore[method-assign]  # see above
    try:
        gui.settle()
        if engine:
            gui.wait(lambda: gui.app.engine_info.get("here"), "the engine to start")
        yield gui
    finally:
        app.close()
        # Widgets and Tk variables must be freed on this thread: drop the window here,
        # before the garbage collector meets it on some worker thread of a later test.
        del app, gui.app
        gc.collect()
    assert gui.alerts == [], gui.alerts


@pytest.fixture
def gui(home: Path, display: str) -> Iterator[Gui]:
    """The window, with its engine, on a fresh data home."""
    with open_gui(home, engine=True) as window:
        yield window


def make_task(service: cs.Service, name: str, job_id: str | None = None, **fields: Any) -> cs.JSONDict:
    return service.create_task({"name": name, "prompt": f"Do {name}", "job_id": job_id, **fields})


def add_run(store: cs.Store, task_id: str, status: cs.RunStatus = cs.RunStatus.SUCCESS) -> cs.Run:
    run = cs.Run(cs.new_id(), task_id, status=status, started_at=cs.utcnow(), finished_at=cs.utcnow())
    store.save_run(run)
    store.log_path(run.id).write_text('{"type": "result", "subtype": "success", "result": "ok"}\n')
    return run


def pin_clock(monkeypatch: pytest.MonkeyPatch, now: datetime = T0) -> FakeClock:
    """The windows opened from here on read `now` from their store's clock, not the wall
    clock: a test's "today" cannot turn into tomorrow between its runs and its asserts."""
    clock = FakeClock(now)
    monkeypatch.setattr(cs, "Store", functools.partial(cs.Store, clock=clock))
    return clock


# The editor's values (pure: no window) ---------------------------------------------------


def test_a_task_survives_the_editor_unchanged(service: cs.Service) -> None:
    job = service.create_job({"name": "J"})
    task = make_task(
        service,
        "Full",
        job["id"],
        model="opus",
        permission_mode="acceptEdits",
        working_directory="~/src",
        allowed_tools=["Read", "Bash(git log, diff)"],
        max_turns=7,
        append_system_prompt="Be brief.",
        timeout_seconds=600,
        schedule={"type": "interval", "every_seconds": 5400, "anchor": "2025-01-01T00:00:00+00:00"},
        overlap="queue",
        catch_up="skip",
        retry={"max_attempts": 2, "delay_seconds": 30, "backoff": 1.5},
        env={"A": "1", "B": "x=y"},
        enabled=False,
        on_failure="retry",
        skip_in_job=True,
        session_mode="previous",
    )
    form = cs.task_to_form(task)
    assert form["schedule.every_seconds"] == "1h30m"
    assert (form["on_failure"], form["skip_in_job"], form["session_mode"]) == ("retry", True, "previous")
    fields = cs.form_to_task(form, task)
    stored = {key: task[key] for key in fields}
    assert fields == stored


@pytest.mark.parametrize(
    ("expression", "kind", "values"),
    [
        ("30 9 * * *", "daily", {"schedule.time": "09:30"}),
        ("0 18 * * mon,fri", "weekly", {"schedule.days": "mon,fri", "schedule.time": "18:00"}),
        ("5 7 L * *", "monthly", {"schedule.day": "L", "schedule.time": "07:05"}),
        ("0 9 * * fri,mon", "cron", {}),  # a preset would write it in another order
        ("*/5 * * * *", "cron", {}),
        ("0 9 1 1 *", "cron", {}),
    ],
)
def test_cron_presets_are_recognised_only_when_they_write_the_same_expression(
    expression: str, kind: str, values: dict[str, str]
) -> None:
    form = cs.task_to_form({"schedule": {"type": "cron", "expression": expression}})
    assert form["schedule.kind"] == kind
    assert values.items() <= form.items()
    assert cs.form_schedule(form)["expression"] == expression


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("schedule.time", "25:00", "schedule.time: '25:00' is not a time of day"),
        ("schedule.days", "", "schedule.days: choose at least one day"),
    ],
)
def test_preset_mistakes_name_their_field(name: str, value: str, message: str) -> None:
    form = cs.task_to_form({"schedule": {"type": "cron", "expression": "0 9 * * mon"}})
    form[name] = value
    with pytest.raises(cs.Invalid) as caught:
        cs.form_schedule(form)
    assert str(caught.value).startswith(message)


def test_form_values_that_cannot_be_read_name_their_field() -> None:
    form = cs.task_to_form({"name": "n", "prompt": "p"})
    for name, value in (("timeout_seconds", "soon"), ("env", "NO_EQUALS_SIGN"), ("schedule.at", "")):
        broken = {**form, name: value, "schedule.kind": "once" if name == "schedule.at" else "manual"}
        with pytest.raises(cs.Invalid) as caught:
            cs.form_to_task(broken)
        assert caught.value.field == name


def test_sashes_leave_every_pane_open(home: Path, display: str) -> None:
    with open_gui(home) as gui:
        layout = gui.app.layout
        gui.wait(lambda: layout.columns.winfo_width() > 1000, "the window's size")
        layout.columns.sash_place(0, 5, 0)
        layout.columns.sash_place(1, 10, 0)
        layout.right.sash_place(0, 0, 10_000)
        gui.app.root.update()
        frames = {
            "jobs": gui.app.jobs_pane.frame,
            "tasks": gui.app.tasks_pane.frame,
            "log": gui.app.logs_pane.frame,
        }
        for name, frame in frames.items():
            width, height = layout.minimum(name)
            assert frame.winfo_width() >= width and frame.winfo_height() >= height, name


# Jobs and tasks -------------------------------------------------------------------------


def test_selecting_a_job_lists_its_tasks_in_its_order(service: cs.Service, home: Path, display: str) -> None:
    alpha = service.create_job({"name": "Alpha"})
    beta = service.create_job({"name": "Beta"})
    first = make_task(service, "A1", alpha["id"])
    second = make_task(service, "A2", alpha["id"])
    make_task(service, "B1", beta["id"])
    make_task(service, "Loose")
    service.update_job(alpha["id"], {"task_order": [second["id"], first["id"]]})
    with open_gui(home) as gui:
        assert gui.task_rows() == ["A1", "A2", "B1", "Loose"]
        gui.select_in_jobs(alpha["id"])
        assert gui.task_rows() == ["A2", "A1"]
        tree = gui.app.jobs_pane.table.tree
        assert [tree.item(iid, "text") for iid in tree.get_children(alpha["id"])] == ["A2", "A1"]
        assert tree.set(alpha["id"], "done") == "0/2"
        gui.select_in_jobs(beta["id"])
        assert gui.task_rows() == ["B1"]
        gui.select_in_jobs(cs.SCOPE_ALL)
        assert len(gui.task_rows()) == 4


def test_unassigned_lists_exactly_the_tasks_without_a_job(
    service: cs.Service, home: Path, display: str
) -> None:
    job = service.create_job({"name": "Job"})
    make_task(service, "In the job", job["id"])
    make_task(service, "Loose one")
    make_task(service, "Loose two")
    with open_gui(home) as gui:
        gui.select_in_jobs(cs.SCOPE_UNASSIGNED)
        assert gui.task_rows() == ["Loose one", "Loose two"]
        tree = gui.app.jobs_pane.table.tree
        children = [tree.item(iid, "text") for iid in tree.get_children(cs.SCOPE_UNASSIGNED)]
        assert children == ["Loose one", "Loose two"]


def test_a_task_row_in_the_jobs_tree_opens_it(service: cs.Service, home: Path, display: str) -> None:
    job = service.create_job({"name": "Job"})
    task = make_task(service, "Child", job["id"])
    make_task(service, "Sibling", job["id"])
    with open_gui(home) as gui:
        gui.select_in_jobs(cs.TASK_IID_PREFIX + task["id"])
        assert gui.app.task_id == task["id"]
        assert gui.task_rows() == ["Child", "Sibling"]
        assert gui.app.tasks_pane.table.selected() == task["id"]
        assert gui.app.editor._strings["name"].get() == "Child"


def test_a_new_task_gets_the_selected_job(gui: Gui, service: cs.Service) -> None:
    job = service.create_job({"name": "Target"})
    gui.app.refresh_now()
    gui.wait(lambda: job["id"] in gui.app.jobs, "the job to show")
    gui.select_in_jobs(job["id"])
    gui.app.tasks_pane.buttons["new"].invoke()
    gui.settle()
    editor = gui.app.editor
    assert editor.is_open and editor.task is None
    assert editor._combos["job_id"].get() == "Target"
    gui.type_into(editor._entries["name"], "Fresh task")
    gui.type_into(editor._texts["prompt"], "Say hello")
    editor.save_button.invoke()
    gui.wait(lambda: "Fresh task" in gui.task_rows(), "the new task in the list")
    (created,) = service.list_tasks(job["id"])
    assert created["name"] == "Fresh task"
    assert created["prompt"] == "Say hello"
    assert gui.app.task_id == created["id"]
    assert not editor.is_dirty()


def test_deleting_a_job_asks_then_cascades(gui: Gui, service: cs.Service) -> None:
    job = service.create_job({"name": "Doomed"})
    first = make_task(service, "First", job["id"])
    second = make_task(service, "Second", job["id"])
    survivor = make_task(service, "Survivor")
    runs = [
        add_run(service.store, first["id"]),
        add_run(service.store, first["id"]),
        add_run(service.store, second["id"]),
    ]
    gui.app.refresh_now()
    gui.wait(lambda: job["id"] in gui.app.jobs, "the job to show")
    gui.select_in_jobs(job["id"])

    gui.answers.append(False)
    gui.app.jobs_pane.buttons["delete"].invoke()
    gui.wait(lambda: gui.questions, "the confirmation")
    gui.settle()
    message = gui.questions.pop()
    assert "Doomed" in message and "First" in message and "Second" in message
    assert "2 tasks, 3 runs and 3 log files" in message
    assert [j["id"] for j in service.list_jobs()] == [job["id"]]

    gui.answers.append(True)
    gui.app.jobs_pane.buttons["delete"].invoke()
    gui.wait(lambda: job["id"] not in gui.app.jobs, "the job to go")
    assert service.list_jobs() == []
    assert [task["id"] for task in service.list_tasks()] == [survivor["id"]]
    assert not any(service.store.log_path(run.id).exists() for run in runs)
    assert gui.app.scope == cs.ALL_TASKS
    assert gui.task_rows() == ["Survivor"]


def test_deleting_a_task_asks_and_removes_its_runs(gui: Gui, service: cs.Service) -> None:
    task = make_task(service, "Old")
    run = add_run(service.store, task["id"])
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    gui.answers.append(True)
    gui.press(gui.app.tasks_pane.table.tree, "<Delete>")
    gui.wait(lambda: task["id"] not in gui.app.tasks, "the task to go")
    assert "Old" in gui.questions[0] and "1 run" in gui.questions[0]
    assert not service.store.log_path(run.id).exists()
    assert not gui.app.editor.is_open


# The editor -------------------------------------------------------------------------------


def test_the_editor_blocks_a_bad_cron_with_a_message(gui: Gui, service: cs.Service) -> None:
    task = make_task(service, "Cron me")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    editor = gui.app.editor
    kind = editor._combos["schedule.kind"]
    kind.set(cs.SCHEDULE_KINDS["cron"])
    kind.event_generate("<<ComboboxSelected>>")
    gui.type_into(editor._entries["schedule.expression"], "61 * * * *")
    note = editor._notes["schedule.expression"][0]
    gui.wait(lambda: "out of range" in str(note.cget("text")), "the live message")
    editor.save_button.invoke()
    gui.settle()
    assert "minute field 61 is out of range 0-59" in str(note.cget("text"))
    assert "Not saved" in str(editor.message.cget("text"))
    assert service.get_task(task["id"])["schedule"] == {"type": "manual"}
    assert editor.is_dirty()

    gui.type_into(editor._entries["schedule.expression"], "30 2 * * *")
    gui.wait(lambda: "02:30" in str(editor.preview_times.cget("text")), "the preview")
    editor.save_button.invoke()
    gui.wait(lambda: not editor.is_dirty(), "the save")
    assert service.get_task(task["id"])["schedule"]["expression"] == "30 2 * * *"


def test_weekly_preset_is_saved_as_cron(gui: Gui, service: cs.Service) -> None:
    task = make_task(service, "Weekly")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    editor = gui.app.editor
    editor._combos["schedule.kind"].set(cs.SCHEDULE_KINDS["weekly"])
    editor._days["mon"].set(True)
    editor._days["fri"].set(True)
    gui.type_into(editor._entries["schedule.time"], "07:15")
    editor.save_button.invoke()
    gui.wait(lambda: service.get_task(task["id"])["schedule"]["type"] == "cron", "the save")
    assert service.get_task(task["id"])["schedule"]["expression"] == "15 7 * * mon,fri"


def choose(combo: Any, label: str) -> None:
    """Pick `label` in a read-only chooser, as a click on it does."""
    assert label in combo.cget("values"), f"{label!r} is not offered"
    combo.set(label)
    combo.event_generate("<<ComboboxSelected>>")


def test_the_editor_sets_which_task_a_task_runs_after_and_refuses_a_cycle_under_the_field(
    gui: Gui, service: cs.Service
) -> None:
    upstream, follower = make_task(service, "Upstream"), make_task(service, "Follower")
    gui.app.refresh_now()
    gui.wait(lambda: follower["id"] in gui.app.tasks, "the tasks to show")
    gui.select_task(follower["id"])
    editor = gui.app.editor
    choose(editor._combos["run_after.task_id"], "Upstream")
    choose(editor._combos["run_after.when"], cs.AFTER_WHEN_LABELS["failed"])
    editor.save_button.invoke()
    gui.wait(lambda: not editor.is_dirty(), "the save")
    assert service.get_task(follower["id"])["run_after"] == {"task_id": upstream["id"], "when": "failed"}

    gui.select_task(upstream["id"])
    gui.wait(lambda: editor.task is not None and editor.task["id"] == upstream["id"], "the other task")
    choose(editor._combos["run_after.task_id"], "Follower")
    editor.save_button.invoke()
    note = editor._notes["run_after.task_id"][0]
    gui.wait(lambda: "makes a cycle" in str(note.cget("text")), "the refusal under the field")
    assert str(note.cget("style")) == "Error.TLabel"
    assert str(editor.message.cget("text")) == (
        "Not saved: run_after.task_id: that makes a cycle: Upstream → Follower → Upstream"
    )
    assert service.get_task(upstream["id"])["run_after"] is None

    editor.revert_button.invoke()
    gui.select_task(follower["id"])
    gui.wait(lambda: editor.task is not None and editor.task["id"] == follower["id"], "the follower")
    assert editor._strings["run_after.task_id"].get() == "Upstream"
    choose(editor._combos["run_after.task_id"], cs.NO_TASK_LABEL)
    editor.save_button.invoke()
    gui.wait(lambda: service.get_task(follower["id"])["run_after"] is None, "the trigger removed")


def test_the_editor_sets_a_steps_policy_in_its_job_runs(gui: Gui, service: cs.Service) -> None:
    job = service.create_job({"name": "Pipeline"})
    step = make_task(service, "Step", job["id"])
    gui.app.refresh_now()
    gui.wait(lambda: step["id"] in gui.app.tasks, "the task to show")
    gui.select_task(step["id"])
    editor = gui.app.editor
    choose(editor._combos["on_failure"], cs.STEP_FAILURE_LABELS["continue"])
    editor._flags["skip_in_job"].set(True)
    editor.save_button.invoke()
    gui.wait(lambda: not editor.is_dirty(), "the save")

    stored = service.get_task(step["id"])
    assert (stored["on_failure"], stored["skip_in_job"]) == ("continue", True)


def test_the_preview_of_a_stored_interval_matches_its_next_run(gui: Gui, service: cs.Service) -> None:
    task = make_task(service, "Hourly", schedule={"type": "interval", "every_seconds": 3600})
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    first = cs.parse_time(service.get_task(task["id"])["next_run_at"], "next").astimezone()
    times = gui.app.editor.preview_times
    gui.wait(lambda: str(times.cget("text")), "the preview")
    assert str(times.cget("text")).splitlines()[0] == f"{first:%a %Y-%m-%d %H:%M}"


def test_switching_away_from_unsaved_changes_asks(gui: Gui, service: cs.Service) -> None:
    first = make_task(service, "First")
    second = make_task(service, "Second")
    gui.app.refresh_now()
    gui.wait(lambda: second["id"] in gui.app.tasks, "the tasks to show")
    gui.select_task(first["id"])
    editor = gui.app.editor
    gui.type_into(editor._entries["name"], "First, renamed")
    assert editor.is_dirty()

    gui.unsaved_answers.append(None)  # cancel: stay
    gui.select_task(second["id"])
    assert gui.questions == ["unsaved “First, renamed”"]
    assert gui.app.task_id == first["id"]
    assert gui.app.tasks_pane.table.selected() == first["id"]
    assert editor._strings["name"].get() == "First, renamed"

    gui.unsaved_answers.append(True)  # save, then switch
    gui.select_task(second["id"])
    gui.wait(lambda: gui.app.task_id == second["id"], "the switch")
    assert service.get_task(first["id"])["name"] == "First, renamed"
    assert editor._strings["name"].get() == "Second"


def test_keyboard_shortcuts(gui: Gui, service: cs.Service) -> None:
    job = service.create_job({"name": "Keys"})
    gui.app.refresh_now()
    gui.wait(lambda: job["id"] in gui.app.jobs, "the job to show")
    gui.select_in_jobs(job["id"])
    tree = gui.app.tasks_pane.table.tree
    gui.press(tree, "<Control-n>")
    assert gui.app.editor.is_open and gui.app.editor._value("job_id") == job["id"]
    gui.press(tree, "<Control-f>")
    assert gui.app.root.focus_get() is gui.app.tasks_pane.filter_entry
    gui.press(gui.app.tasks_pane.filter_entry, "<Control-N>")
    assert gui.app.job_dialog is not None
    gui.app.job_dialog.name.set("Made by keys")
    gui.app.job_dialog.save_button.invoke()
    gui.wait(lambda: any(j["name"] == "Made by keys" for j in gui.app.jobs.values()), "the new job")
    assert gui.app.job_dialog is None


def test_the_job_dialog_sets_the_jobs_schedule_with_the_editors_chooser_and_preview(
    gui: Gui, service: cs.Service
) -> None:
    gui.app.new_job()
    dialog = gui.app.job_dialog
    assert dialog is not None
    fields, chooser = dialog.fields, dialog.chooser
    assert (fields._strings["schedule.kind"].get(), chooser.preview_text.cget("text")) == (
        cs.SCHEDULE_KINDS["manual"],
        "Manual only",
    )
    assert list(fields._combos["schedule.kind"].cget("values")) == list(cs.SCHEDULE_KINDS.values())
    dialog.name.set("Nightly")
    fields._strings["schedule.kind"].set(cs.SCHEDULE_KINDS["interval"])
    assert fields._entries["schedule.every_seconds"].winfo_manager() == "grid"
    assert fields._entries["schedule.at"].winfo_manager() == ""  # only the chosen kind's rows
    fields._strings["schedule.every_seconds"].set("soon")
    note = fields._notes["schedule.every_seconds"][0]
    assert str(note.cget("style")) == "Error.TLabel"
    assert chooser.preview_text.cget("text") == "Fix the schedule to see its next runs."
    dialog.save_button.invoke()
    assert str(dialog.error.cget("text")).startswith("schedule.every_seconds: ")
    fields._strings["schedule.every_seconds"].set("2h")
    assert chooser.preview_text.cget("text") == "Every 2 hours"
    assert len(str(chooser.preview_times.cget("text")).splitlines()) == cs.GUI_PREVIEW_COUNT
    fields._strings["overlap"].set(cs.JOB_OVERLAP_LABELS["queue"])
    dialog.save_button.invoke()
    gui.wait(lambda: gui.app.job_dialog is None, "the dialog to close")

    (job,) = service.list_jobs()
    assert (job["schedule"]["type"], job["schedule"]["every_seconds"], job["overlap"]) == (
        "interval",
        7200,
        "queue",
    )
    assert job["next_run_at"] is not None
    gui.app.refresh_now()
    gui.wait(lambda: job["id"] in gui.app.jobs, "the job to show")
    gui.select_in_jobs(job["id"])
    gui.app.edit_job()
    edit = gui.app.job_dialog
    assert edit is not None
    shown = {
        key: edit.fields._strings[key].get() for key in ("schedule.kind", "schedule.every_seconds", "overlap")
    }
    assert shown == {
        "schedule.kind": cs.SCHEDULE_KINDS["interval"],
        "schedule.every_seconds": "2h",
        "overlap": cs.JOB_OVERLAP_LABELS["queue"],
    }
    edit.close()


def test_the_job_dialog_offers_every_kind_a_task_has_file_watch_and_presets_too(
    tmp_path: Path, gui: Gui, service: cs.Service
) -> None:
    job = service.create_job({"name": "Docs"})
    gui.app.refresh_now()
    gui.wait(lambda: job["id"] in gui.app.jobs, "the job to show")
    gui.select_in_jobs(job["id"])
    gui.app.edit_job()
    dialog = gui.app.job_dialog
    assert dialog is not None
    fields = dialog.fields
    fields._strings["schedule.kind"].set(cs.SCHEDULE_KINDS["weekly"])
    fields._days["mon"].set(False)
    fields._days["fri"].set(True)
    fields._strings["schedule.time"].set("23:00")
    assert fields._strings["schedule.expression"].get() == "0 23 * * fri"  # the preset writes its cron
    assert str(dialog.chooser.preview_text.cget("text")).startswith("At 23:00")
    fields._strings["schedule.kind"].set(cs.SCHEDULE_KINDS["file_watch"])
    fields._strings["schedule.path"].set(str(tmp_path))
    fields._strings["schedule.debounce_seconds"].set("3")
    dialog.save_button.invoke()
    gui.wait(lambda: gui.app.job_dialog is None, "the dialog to close")

    assert service.get_job(job["id"])["schedule"] == {
        "type": "file_watch",
        "path": str(tmp_path),
        "recursive": True,
        "debounce_seconds": 3.0,
    }


def test_the_runs_pane_shows_a_job_run_with_its_steps_beneath(gui: Gui, service: cs.Service) -> None:
    job = service.create_job({"name": "Pipeline"})
    for name in ("First", "Second"):
        make_task(service, name, job["id"])
    alone = make_task(service, "Alone", job["id"])
    service.update_task(alone["id"], {"skip_in_job": True})
    solo = service.request_run(alone["id"])
    started = service.run_job(job["id"])
    gui.wait(lambda: service.list_job_runs(job["id"])[0]["status"] == "completed", "the job run to end")
    gui.wait(lambda: service.get_run(solo["id"])["status"] == "success", "the run of Alone to end")
    gui.app.refresh_now()
    gui.wait(lambda: job["id"] in gui.app.jobs, "the job to show")

    gui.select_in_jobs(job["id"])

    tree = gui.app.runs_pane.table.tree
    parent = cs.JOB_RUN_IID_PREFIX + started["job_run_id"]
    gui.wait(lambda: tree.exists(parent) and len(tree.get_children(parent)) == 2, "the job run's row")
    table = gui.app.runs_pane.table
    steps = [table.whole_text(iid, "task") for iid in tree.get_children(parent)]
    assert steps == ["First", "Second"]  # whole, though a narrow column may cut them
    assert tree.item(parent, "text").strip() == "success"
    assert table.whole_text(parent, "task") == f"Job run {started['job_run_id'][:8]} · 2 steps"
    assert solo["id"] in tree.get_children("")  # a run outside the job run stays a row of its own


def test_a_tasks_place_in_its_jobs_order_moves_up_and_down(gui: Gui, service: cs.Service) -> None:
    job = service.create_job({"name": "Ordered"})
    a, b, c = (make_task(service, name, job["id"])["id"] for name in ("A", "B", "C"))
    gui.app.refresh_now()
    gui.wait(lambda: job["id"] in gui.app.jobs, "the job to show")
    gui.select_in_jobs(job["id"])
    gui.select_task(b)
    buttons = gui.app.tasks_pane.buttons
    tree = gui.app.tasks_pane.table.tree

    buttons["down"].invoke()
    gui.wait(lambda: service.get_job(job["id"])["task_order"] == [a, c, b], "B to move down")
    gui.settle()
    buttons["up"].invoke()
    gui.wait(lambda: service.get_job(job["id"])["task_order"] == [a, b, c], "B to move up")
    gui.settle()
    buttons["up"].invoke()
    gui.wait(lambda: service.get_job(job["id"])["task_order"] == [b, a, c], "B to come first")
    gui.settle()
    assert [tree.item(iid, "text") for iid in tree.get_children()] == ["B", "A", "C"]
    buttons["up"].invoke()  # already first: nothing changes
    gui.settle()
    assert service.get_job(job["id"])["task_order"] == [b, a, c]


# Settings ------------------------------------------------------------------------------------


def open_settings(gui: Gui) -> cs.SettingsDialog:
    gui.choose_menu("File", "Settings…")
    gui.wait(lambda: gui.app.settings_dialog, "the settings dialog")
    assert gui.app.settings_dialog is not None
    return gui.app.settings_dialog


def test_settings_are_changed_in_their_dialog(home: Path, display: str) -> None:
    with open_gui(home) as gui:
        dialog = open_settings(gui)
        assert {name: var.get() for name, var in dialog.values.items()} == {
            "claude_path": "",
            "max_concurrent_runs": "2",
            "retention_runs": "100",
            "start_by_minutes": "10",
        }
        gui.type_into(dialog.fields["claude_path"], "/opt/claude/bin/claude")
        gui.type_into(dialog.fields["retention_runs"], "25")
        gui.type_into(dialog.fields["start_by_minutes"], "30")
        dialog.save_button.invoke()
        gui.wait(lambda: gui.app.settings_dialog is None, "the dialog to close")
        assert not dialog.top.winfo_exists()
        stored = json.loads((home / cs.SETTINGS_FILE).read_text())
        assert stored["claude_path"] == "/opt/claude/bin/claude"
        assert stored["retention_runs"] == 25
        assert stored["start_by_minutes"] == 30
        assert stored["max_concurrent_runs"] == 2

        dialog = open_settings(gui)
        assert dialog.values["retention_runs"].get() == "25"
        gui.type_into(dialog.fields["claude_path"], "")  # empty: search for claude again
        gui.press(dialog.fields["claude_path"], "<Return>")
        gui.wait(lambda: gui.app.settings_dialog is None, "Enter to save")
        assert json.loads((home / cs.SETTINGS_FILE).read_text())["claude_path"] is None


def test_a_bad_setting_is_shown_by_its_field_and_nothing_is_saved(home: Path, display: str) -> None:
    settings_file = home / cs.SETTINGS_FILE
    with open_gui(home) as gui:
        dialog = open_settings(gui)
        gui.type_into(dialog.fields["claude_path"], "/elsewhere/claude")
        for value, message in (("0", "must be between 1 and 64 (got 0)"), ("many", "must be a whole number")):
            gui.type_into(dialog.fields["max_concurrent_runs"], value)
            dialog.save_button.invoke()
            gui.settle()
            note = dialog.notes["max_concurrent_runs"][0]
            assert message in str(note.cget("text"))
            assert str(note.cget("style")) == "Error.TLabel"
            assert gui.app.settings_dialog is dialog
            assert not settings_file.exists()
        gui.type_into(dialog.fields["max_concurrent_runs"], "3")
        assert "must" not in str(note.cget("text")), "the message stays while it is being fixed"
        gui.press(dialog.top, "<Escape>")
        assert gui.app.settings_dialog is None
        assert not settings_file.exists()
        assert gui.app.service.get_settings()["claude_path"] is None


def old_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A claude older than the one the contract tests cover, set by $CLAUDE_SCHEDULER_CLAUDE."""
    old = tmp_path / "old-bin" / "claude"
    old.parent.mkdir()
    old.write_text('#!/bin/sh\necho "2.0.0 (Claude Code)"\n')
    old.chmod(0o755)
    monkeypatch.setenv(cs.CLAUDE_ENV, str(old))
    return old


def test_the_settings_dialog_shows_the_claude_in_use(
    home: Path, display: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = old_claude(tmp_path, monkeypatch)
    with open_gui(home) as gui:
        dialog = open_settings(gui)
        note = dialog.notes["claude_path"][0]
        gui.wait(lambda: "looking" not in str(note.cget("text")), "the claude in use")
        assert str(note.cget("text")).splitlines() == [
            "Empty: search $CLAUDE_SCHEDULER_CLAUDE, PATH, ~/.local/bin, then ~/.claude/local.",
            f"In use: {old} (set by $CLAUDE_SCHEDULER_CLAUDE), version 2.0.0",
        ]
        gui.press(dialog.top, "<Escape>")


# Check setup -------------------------------------------------------------------------------------


def open_setup_check(gui: Gui) -> cs.SetupDialog:
    gui.choose_menu("Help", "Check setup…")
    dialog = gui.app.setup_dialog
    assert dialog is not None
    gui.wait(lambda: not dialog.is_busy, "the checks")
    return dialog


def test_check_setup_lists_every_check_with_symbol_colour_and_fix(
    home: Path, display: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in (*cs.CREDENTIAL_VARIABLES, cs.CLAUDE_CONFIG_ENV):
        monkeypatch.delenv(variable, raising=False)  # so that the credentials check warns
    old = old_claude(tmp_path, monkeypatch)
    folder = tmp_path / "gone"
    cs.Service(cs.Store(home)).create_task(
        {"name": "Nightly", "prompt": "p", "working_directory": str(folder)}
    )
    with open_gui(home, engine=True) as gui:
        assert cs.Store(home).engine_state()["owner"]["process"] == "window"
        dialog = open_setup_check(gui)
        checks = dialog.checks
        assert [check["check"] for check in checks] == [
            "claude",
            "claude version",
            "credentials",
            "data home",
            "engine",
            "api",
            "task “Nightly”",
        ]
        engine = checks[4]
        assert engine["message"] == f"running in a window (pid {os.getpid()} on {cs.host_name()})"
        text = str(dialog.text.get("1.0", "end-1c"))
        lines = text.splitlines()
        assert lines[0] == f"✓ ok  claude: {old} (set by $CLAUDE_SCHEDULER_CLAUDE)"
        tested = "the version the scheduler is tested with"
        assert lines[1] == f"! warning  claude version: 2.0.0, older than 2.1.197, {tested}"
        assert lines[2].startswith("Fix: Update Claude Code")
        problem = f"✗ problem  task “Nightly”: working directory {folder} (set by the task) does not exist"
        assert problem in lines
        # the level shows as a symbol and a word, and in its colour
        start = dialog.text.search("✗ problem", "1.0")
        assert "problem" in dialog.text.tag_names(start)
        palette = gui.app.looks.palette
        assert str(dialog.text.tag_cget("problem", "foreground")) == palette[cs.GUI_CHECK_LOOKS["problem"][1]]
        assert str(dialog.text.tag_cget("warning", "foreground")) == palette[cs.GUI_CHECK_LOOKS["warning"][1]]
        assert str(dialog.summary.cget("text")) == "1 problem, 3 warnings."
        assert str(dialog.text.cget("state")) == "disabled"

        dialog.copy_button.invoke()
        copied = gui.app.root.clipboard_get()
        assert copied == cs.doctor_text(checks)
        assert copied.splitlines()[0].split() == ["LEVEL", "CHECK", "RESULT"]

        folder.mkdir()
        dialog.again_button.invoke()
        assert dialog.is_busy and str(dialog.summary.cget("text")).startswith("Checking…")
        assert dialog.again_button.instate(["disabled"])
        gui.wait(lambda: not dialog.is_busy, "the checks again")
        assert dialog.checks[-1] == {
            "check": "tasks",
            "level": "ok",
            "message": "1 task, none that will be refused",
            "fix": None,
        }
        assert str(dialog.summary.cget("text")) == "0 problems, 3 warnings."
        gui.press(dialog.top, "<Escape>")
        assert gui.app.setup_dialog is None and not dialog.top.winfo_exists()


def test_checking_runs_off_the_tk_thread(
    home: Path, display: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claude --version that takes its time does not stop the window."""
    gate = tmp_path / "gate"
    slow = tmp_path / "slow-claude"
    slow.write_text(
        f'#!/bin/sh\nwhile [ ! -e "{gate}" ]; do sleep 0.02; done\necho "2.1.197 (Claude Code)"\n'
    )
    slow.chmod(0o755)
    monkeypatch.setenv(cs.CLAUDE_ENV, str(slow))
    with open_gui(home) as gui:
        root = gui.app.root
        help_menu = root.nametowidget(root.nametowidget(root.cget("menu")).entrycget("Help", "menu"))
        help_menu.invoke("Check setup…")  # no settle: that would wait for the checks
        dialog = gui.app.setup_dialog
        assert dialog is not None and dialog.is_busy
        answered: list[object] = []
        gui.app.submit(gui.app.service.get_settings, answered.append)
        gui.wait(lambda: answered, "the worker's answer while the check waits for claude")
        assert dialog.is_busy
        help_menu.invoke("Check setup…")  # asked again meanwhile: the same dialog, one check
        assert gui.app.setup_dialog is dialog and dialog.is_busy
        gate.touch()
        gui.wait(lambda: not dialog.is_busy, "the checks")
        assert dialog.checks[1]["message"] == "2.1.197, the version the scheduler is tested with"


# Runs and logs -------------------------------------------------------------------------------


def test_a_run_shows_live_in_the_logs_pane(gui: Gui, service: cs.Service, tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # the session ends only when the test has seen its first lines
    task = make_task(service, "Live", prompt=f"Talk [gate={gate}]")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    gui.app.tasks_pane.buttons["run"].invoke()
    gui.wait(lambda: "Looking at the repo." in gui.log_text(), "the first lines of the session")
    assert "Done in 3 turns" not in gui.log_text(), "the log was not shown while the run was going"
    assert gui.app._run(gui.app.run_id)["status"] in ("queued", "running")  # type: ignore[index]
    gate.touch()
    gui.wait(lambda: "Done in 3 turns" in gui.log_text(), "the summary")
    assert "$0.0123" in gui.log_text() and "62 in / 17 out tokens" in gui.log_text()
    assert "→ Bash: ls" in gui.log_text()
    gui.wait(lambda: gui.app.runs and gui.app.runs[0]["status"] == "success", "the run to finish")

    gui.app.logs_pane.raw.set(True)
    gui.app.logs_pane._rerender()
    assert '"type":"result"' in gui.log_text().replace(" ", "")


def test_a_run_started_by_another_process_shows(gui: Gui, home: Path) -> None:
    task = make_task(cs.Service(cs.Store(home)), "Elsewhere", prompt="Work [delay=0.3]")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "claude_scheduler.py"), "cli", "tasks", "run", task["id"][:8]],
        env={**os.environ, cs.HOME_ENV: str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        gui.wait(lambda: "Looking at the repo." in gui.log_text(), "the other process's run")
        gui.wait(lambda: "Done in 3 turns" in gui.log_text(), "its summary")
    finally:
        child.wait(timeout=WAIT_SECONDS)
    assert gui.app.runs[0]["trigger"] == "cli"


def test_the_runs_pane_says_what_the_selection_cost(
    service: cs.Service, home: Path, display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = pin_clock(monkeypatch)()  # 2030-01-07 09:00 UTC, 10:00 in Amsterdam
    monkeypatch.setenv("TZ", "Europe/Amsterdam")
    time.tzset()  # the C library too (conftest tzsets again at the end)
    job = service.create_job({"name": "Paid"})
    first, second = make_task(service, "First", job["id"]), make_task(service, "Second", job["id"])
    loose = make_task(service, "Loose")

    def paid(task: cs.JSONDict, hours_ago: float, cost: float, tokens: tuple[int, int, int, int]) -> None:
        finished = now - timedelta(hours=hours_ago)
        run = cs.Run(cs.new_id(), task["id"], status=cs.RunStatus.SUCCESS, created_at=finished)
        run.started_at, run.finished_at, run.cost_usd = finished - timedelta(minutes=3), finished, cost
        run.input_tokens, run.cache_read_tokens, run.cache_creation_tokens, run.output_tokens = tokens
        service.store.save_run(run)

    paid(first, 1, 0.12, (1_200_000, 1_000_000, 100_000, 40_000))
    paid(second, 11, 1.28, (950, 0, 0, 50))  # 23:00 yesterday in Amsterdam
    paid(first, 24 * 20, 3.7, (0, 0, 0, 0))
    paid(loose, 2, 2.0, (0, 0, 0, 0))
    with open_gui(home) as gui:
        line = gui.app.runs_pane.totals
        assert line.winfo_ismapped()
        assert line.cget("text") == (
            "Today $2.1200 · 7 days $3.4000 · 30 days $7.1000, 4 runs, 1.2M in (1.1M cached) / 40k out"
        )
        gui.select_in_jobs(job["id"])
        assert line.cget("text") == (
            "Today $0.1200 · 7 days $1.4000 · 30 days $5.1000, 3 runs, 1.2M in (1.1M cached) / 40k out"
        )
        gui.select_task(second["id"])
        assert (
            line.cget("text")
            == "Today $0.0000 · 7 days $1.2800 · 30 days $1.2800, 1 run, 950 in (0 cached) / 50 out"
        )
        paid(second, 0.5, 0.5, (9_050, 9_000, 0, 500))  # a run finishes, recorded by another process
        gui.wait(lambda: line.cget("text").startswith("Today $0.5000 · 7 days $1.7800"), "the new run's cost")
        assert line.cget("text").endswith(", 2 runs, 10k in (9k cached) / 550 out")


# Other processes, errors, layout -------------------------------------------------------------


def test_a_long_name_keeps_every_subtitle_on_one_line(service: cs.Service, home: Path, display: str) -> None:
    name = "Run the full test suite, then triage every failure and file an issue for it, naming the test"
    task = make_task(service, f"{name}, its log and the commit that broke it, and assign it to its owner")
    run = add_run(service.store, task["id"], cs.RunStatus.FAILED)
    with open_gui(home) as gui:
        gui.select_task(task["id"])
        gui.wait(lambda: gui.app.run_id == run.id, "its run in the Logs pane")
        gui.settle()
        subtitle = gui.app.logs_pane.subtitle
        shown = str(subtitle.label.cget("text"))
        assert shown.endswith(f"… · {run.id[:8]} · failed"), shown  # the name gave way
        assert subtitle.font.measure(shown) <= subtitle.label.winfo_width()
        panes = (gui.app.jobs_pane, gui.app.tasks_pane)  # the top row (the stacks' sashes may differ)
        toolbar_tops = {next(iter(pane.buttons.values())).winfo_rooty() for pane in panes}
        assert len(toolbar_tops) == 1, "the toolbars do not line up"


def test_a_clipped_name_shows_whole_while_the_pointer_rests_on_it(
    service: cs.Service, home: Path, display: str
) -> None:
    job = service.create_job({"name": "Weekly"})
    long_name = "Summarise every pull request merged this week for the release notes"
    clipped = make_task(service, long_name, job["id"])
    short = make_task(service, "Tag", job["id"])
    with open_gui(home) as gui:
        table = gui.app.jobs_pane.table

        def hover(task: cs.JSONDict) -> None:
            x, y, _, height = table.tree.bbox(cs.TASK_IID_PREFIX + task["id"], "#0")
            table.tree.event_generate("<Motion>", x=x + 40, y=y + height // 2)
            gui.app.root.update()

        shown = str(table.tree.item(cs.TASK_IID_PREFIX + clipped["id"], "text"))
        assert shown.endswith("…") and long_name.startswith(shown[:-1]), shown
        assert table.tree.item(cs.TASK_IID_PREFIX + short["id"], "text") == "Tag"
        tasks = gui.app.tasks_pane.table
        gui.select_in_jobs(job["id"])
        cell = str(tasks.tree.item(clipped["id"], "text"))
        assert cell.endswith("…") and long_name.startswith(cell[:-1]), cell
        assert tasks.clipped_text(clipped["id"], "#0") == long_name
        hover(clipped)
        gui.wait(lambda: table.tip.window is not None, "the tip")
        assert table.tip.window is not None
        (label,) = table.tip.window.winfo_children()
        assert label.cget("text") == long_name
        hover(short)
        assert table.tip.window is None, "the tip outlived the pointer"
        later: list[bool] = []  # Tk runs its timers in order: a tip due sooner shows first
        gui.app.root.after(cs.GUI_TIP_DELAY_MS * 2, lambda: later.append(True))
        gui.wait(lambda: later, "a moment past the tip's delay")
        assert table.tip.window is None, "a name that fits got a tip"


def test_a_task_made_by_the_cli_shows_within_two_seconds(
    gui: Gui, service: cs.Service, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = make_task(service, "Keep me selected")
    gui.app.refresh_now()
    gui.wait(lambda: keep["id"] in gui.app.tasks, "the task to show")
    gui.select_task(keep["id"])
    assert cs.main(["cli", "tasks", "create", "--name", "From the CLI", "--prompt", "hi"]) == 0
    # Without a nudge: the window looks for other processes' changes often enough.
    assert cs.GUI_REFRESH_MS / 1000 * 2 <= REFRESH_BUDGET_SECONDS
    gui.wait(lambda: "From the CLI" in gui.task_rows(), "the CLI's task")
    assert gui.app.tasks_pane.table.selected() == keep["id"]
    assert gui.app.task_id == keep["id"]


def test_a_refresh_keeps_the_scroll_position(gui: Gui, service: cs.Service) -> None:
    tasks = [make_task(service, f"Task {n:02d}") for n in range(60)]
    gui.app.refresh_now()
    gui.wait(lambda: len(gui.task_rows()) == len(tasks), "the tasks to show")
    tree = gui.app.tasks_pane.table.tree
    tree.yview_moveto(0.4)
    gui.settle()
    middle = tree.winfo_height() // 2
    shown = tree.identify_row(middle)
    make_task(service, "Task 99")
    gui.wait(lambda: "Task 99" in gui.task_rows(), "the new task")
    assert tree.identify_row(middle) == shown


def test_an_unexpected_error_goes_to_a_message_box_and_the_log(
    gui: Gui, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    gui.app.root.after(0, broken)
    gui.wait(lambda: gui.alerts, "the message box")
    assert "RuntimeError: boom" in gui.alerts.pop()
    assert "unexpected error" in caplog.text


def test_quitting_with_unsaved_changes_asks(gui: Gui, service: cs.Service) -> None:
    task = make_task(service, "Edited")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    gui.type_into(gui.app.editor._entries["name"], "Edited again")
    gui.unsaved_answers.append(None)
    gui.app.request_close()
    assert gui.questions == ["unsaved “Edited again”"]
    assert gui.app.root.winfo_exists()
    gui.unsaved_answers.append(False)
    gui.app.request_close()
    assert service.get_task(task["id"])["name"] == "Edited"
    assert gui.app._closed


def test_a_running_run_can_be_stopped(gui: Gui, service: cs.Service) -> None:
    task = make_task(service, "Long", prompt="Hang on [hang]")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    gui.app.tasks_pane.buttons["run"].invoke()
    gui.wait(lambda: gui.app.runs and gui.app.runs[0]["status"] == "running", "the run to start")
    gui.settle()
    gui.app.runs_pane.buttons["stop"].invoke()
    gui.wait(lambda: gui.app.runs[0]["status"] == "cancelled", "the run to stop")
    gui.wait(lambda: "stopped" in gui.log_text(), "the log to say so")


def test_pausing_shows_in_the_status_bar(gui: Gui, service: cs.Service) -> None:
    gui.app.paused.set(True)
    gui.app.toggle_pause()
    gui.wait(lambda: service.engine_status()["paused"], "the pause")
    label = gui.app.status_bar.labels["engine"]
    gui.wait(lambda: "paused" in str(label.cget("text")), "the status bar")
    assert "running in this window" in str(label.cget("text"))
    service.set_paused(False)
    gui.wait(lambda: "paused" not in str(label.cget("text")), "the resume made elsewhere")
    assert not gui.app.paused.get()


def test_the_status_bar_button_pauses_and_resumes_the_engine(gui: Gui, service: cs.Service) -> None:
    button, label = gui.app.status_bar.engine_button, gui.app.status_bar.labels["engine"]
    assert str(button.cget("text")) == "Pause" and button.winfo_ismapped()
    button.invoke()
    gui.wait(lambda: service.engine_status()["paused"], "the pause")
    gui.wait(lambda: str(button.cget("text")) == "Resume", "the button to offer resuming")
    assert "paused" in str(label.cget("text")) and gui.app.paused.get()
    button.invoke()
    gui.wait(lambda: not service.engine_status()["paused"], "the resume")
    gui.wait(lambda: str(button.cget("text")) == "Pause", "the button to offer pausing")
    assert "paused" not in str(label.cget("text"))


def test_a_usage_limit_hold_shows_in_the_status_bar_and_the_run_menu_lifts_it(
    gui: Gui, service: cs.Service
) -> None:
    before = cs.utcnow()
    reset = before.replace(microsecond=0) + timedelta(seconds=120)
    task = make_task(service, "limited", prompt=f"[usage_limit={int(reset.timestamp())}]")
    service.request_run(task["id"])
    label = gui.app.status_bar.labels["engine"]
    until = (reset + timedelta(seconds=60)).astimezone()
    gui.wait(lambda: "Holding" in str(label.cget("text")), "the hold in the status bar")

    # The time alone on its own day; with the weekday when the window read its clock
    # before a midnight that falls before the hold ends (from 23:57).
    days = {moment.astimezone().date() for moment in (before, cs.utcnow())}
    shown = {f"{until:%H:%M}" if until.date() == day else f"{until:%a %H:%M}" for day in days}
    assert str(label.cget("text")) in {
        f"Engine: running in this window · Holding until {when} — usage limit" for when in shown
    }
    run_menu = gui.app.run_menu
    assert run_menu is not None
    assert run_menu.entrycget(cs.GUI_RESUME_LABEL, "state") == "normal"
    gui.choose_menu("Run", cs.GUI_RESUME_LABEL)
    gui.wait(lambda: "Holding" not in str(label.cget("text")), "the hold to be lifted")
    assert service.engine_status()["hold"] is None
    assert run_menu.entrycget(cs.GUI_RESUME_LABEL, "state") == "disabled"


def test_an_unreadable_store_file_is_shown_once_and_cleared(gui: Gui, home: Path) -> None:
    tasks_file = home / cs.TASKS_FILE
    good = tasks_file.read_bytes() if tasks_file.exists() else b'{"version": 1, "tasks": []}'
    tasks_file.write_text("{ not json")
    gui.wait(lambda: gui.alerts, "the message box")
    assert cs.TASKS_FILE in gui.alerts.pop()
    error_label = gui.app.status_bar.labels["error"]
    assert cs.TASKS_FILE in str(error_label.cget("text"))
    for _ in range(2):  # two more reads of the store, which find the same error
        gui.app.refresh_now()
        gui.settle()
    assert gui.alerts == [], "the same error was shown twice"
    tasks_file.write_bytes(good)
    gui.wait(lambda: not str(error_label.cget("text")), "the error to clear")


def test_a_second_window_takes_the_engine_when_the_first_quits(home: Path, display: str) -> None:
    with open_gui(home, engine=True) as first, open_gui(home, engine=True) as second:
        engine = second.app.engine
        assert first.app.engine is not None and first.app.engine.owns
        assert engine is not None and not engine.owns
        first.app.close()
        second.wait(lambda: engine.owns, "the engine to move")


def _free_port() -> int:
    """A free port below the kernel's ephemeral range: a port-0 server or an outgoing
    connection (of this suite or one run alongside) cannot take it before the window does."""
    import random
    import socket

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(FIXED_PORTS_FROM, low), 100):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below the ephemeral range")


def test_the_api_follows_the_engine_to_the_window_that_takes_it_over(home: Path, display: str) -> None:
    port = _free_port()
    address = f"http://127.0.0.1:{port}"
    with (
        open_gui(home, engine=True, api_port=port) as first,
        open_gui(home, engine=True, api_port=port) as second,
    ):
        api = second.app.status_bar.labels["api"]
        assert first.app.api is not None and second.app.api is None
        assert second.app.api_error is not None and "in use" in second.app.api_error
        first.app.close()
        engine = second.app.engine
        assert engine is not None
        second.wait(lambda: engine.owns, "the engine to move")
        second.wait(lambda: second.app.api is not None, "the API to follow it")
        wanted = f"API: {address} (started here on taking over the engine)"
        second.wait(lambda: str(api.cget("text")) == wanted, "the status bar to say so")
        assert cs._probe_health(address) is None
        second.wait(
            lambda: (cs.Store(home).engine_state().get("owner") or {}).get("api") == address, "the record"
        )


def test_the_layout_is_remembered(home: Path, display: str) -> None:
    with open_gui(home) as gui:
        gui.app.root.geometry("1300x800")
        gui.settle()
        columns = gui.app.layout.columns
        gui.wait(lambda: columns.winfo_width() > 1000, "the new size")
        columns.sash_place(0, 300, 0)
        columns.event_generate("<ButtonRelease-1>", x=300, y=10)  # the end of a drag
        gui.app.root.update()
        width = columns.winfo_width()
    saved = cs.Store(home).settings()[cs.GUI_SETTINGS_KEY]
    assert saved["geometry"].startswith("1300x800")
    assert saved["panes"]["columns"][0] == round(300 / width, 4)
    with open_gui(home) as gui:
        columns = gui.app.layout.columns
        gui.wait(lambda: abs(columns.sash_coord(0)[0] - 300) <= 1, "the remembered sash")


def test_a_saved_geometry_is_clamped_to_the_screen() -> None:
    assert cs.clamp_geometry("3800x2100+2000+900", (1280, 760), (1100, 620)) == "1280x760+0+0"
    assert cs.clamp_geometry("1000x700+200+100", (1280, 760), (1100, 620)) == "1100x700+180+60"
    assert cs.clamp_geometry("1200x700+-50+10", (1920, 1040), (1100, 620)) == "1200x700+0+10"
    assert cs.clamp_geometry("900x500", (1920, 1040), (1100, 620)) == "1100x620"


FIT_SIZES = ("1280x800", "1920x1080", "3840x2160")


@pytest.fixture(scope="session")
def screens(display: str) -> Iterator[Callable[[str], str]]:
    """An Xvfb per screen size asked for ("WxH"), started on first use; gives its display."""
    started: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    def screen(size: str) -> str:
        if size not in started:
            started[size] = _start_xvfb(f"{size}x24")
        return f":{started[size][1]}"

    yield screen
    for server, _ in started.values():
        server.terminate()
        server.wait(timeout=XVFB_START_SECONDS)


def _box(widget: Any) -> tuple[int, int, int, int]:
    x, y = widget.winfo_rootx(), widget.winfo_rooty()
    return x, y, x + widget.winfo_width(), y + widget.winfo_height()


def _tab_widths(notebook: Any, y: int) -> dict[int, int]:
    """How wide each of a notebook's tabs is drawn, found by asking which tab is under x."""
    widths: dict[int, int] = {}
    for x in range(notebook.winfo_width()):
        index = notebook.tk.call(notebook, "index", f"@{x},{y}")
        if index != "":
            widths[int(index)] = widths.get(int(index), 0) + 1
    return widths


@pytest.mark.parametrize("scaling", [1.0, 2.0])
@pytest.mark.parametrize("size", FIT_SIZES)
def test_the_window_fits_every_screen(
    home: Path, service: cs.Service, screens: Callable[[str], str], size: str, scaling: float
) -> None:
    import tkinter

    job = service.create_job({"name": "A job with a rather long name for a narrow pane"})
    task = make_task(service, "A task whose name is longer than its column", job["id"])
    add_run(cs.Store(home), task["id"], cs.RunStatus.FAILED)
    # A layout saved on a bigger screen, partly off this one.
    cs.Store(home).update_settings({cs.GUI_SETTINGS_KEY: {"geometry": "5000x3000+3000+2000"}})
    root = tkinter.Tk(screenName=screens(size), className=cs.GUI_CLASS_NAME)
    root.tk.call("tk", "scaling", scaling)
    with open_gui(home, root=root) as gui:
        gui.select_in_jobs(job["id"])
        gui.select_task(task["id"])
        app = gui.app
        gui.wait(lambda: app.editor.is_open and app.root.winfo_ismapped(), "the task in the editor")
        for _ in range(5):
            app.root.update()
        width, height = app.root.winfo_screenwidth(), app.root.winfo_screenheight()
        assert f"{width}x{height}" == size
        panes = {
            "jobs": app.jobs_pane.frame,
            "tasks": app.tasks_pane.frame,
            "runs": app.runs_pane.frame,
            "editor": app.editor.frame,
            "log": app.logs_pane.frame,
            "status bar": app.status_bar.frame,
            "Save": app.editor.save_button,
            "Revert": app.editor.revert_button,
        }
        for name, widget in panes.items():
            left, top, right, bottom = _box(widget)
            assert widget.winfo_ismapped(), f"{name} is not shown"
            assert 0 <= left < right <= width and 0 <= top < bottom <= height, f"{name} is off screen"
        for name, frame in list(panes.items())[:5]:
            least_width, least_height = app.layout.minimum(name)
            assert frame.winfo_width() >= least_width and frame.winfo_height() >= least_height, name
        for button in (app.editor.save_button, app.editor.revert_button):
            assert button.winfo_width() >= button.winfo_reqwidth(), "a clipped button"
        notebook, font = app.editor.notebook, app.looks.fonts["body"]
        widths = _tab_widths(notebook, int(font.metrics("linespace")) // 2 + 4)
        assert sorted(widths) == [0, 1, 2], "a tab is not drawn"
        for index, drawn in widths.items():
            label = str(notebook.tab(index, "text"))
            assert drawn >= font.measure(label), f"the tab label {label!r} is clipped"
        assert _box(notebook)[2] <= _box(app.editor.frame)[2]
        assert_no_heading_clipped(app)
        assert_pictures_scale_with_the_text(app, task["id"])


def assert_no_heading_clipped(app: cs.App) -> None:
    """Each shown column is as wide as its title in the heading font, the heading's own
    padding and border, and the pixel a bold glyph overhangs its measure."""
    import tkinter.font
    from tkinter import ttk

    style = ttk.Style(app.root)
    pad_x = int(str(app.root.tk.splitlist(style.lookup("Treeview.Heading", "padding"))[0]))
    font = tkinter.font.nametofont(str(style.lookup("Treeview.Heading", "font")), root=app.root)
    for table in (app.jobs_pane.table, app.tasks_pane.table, app.runs_pane.table):
        tree = table.tree
        for key in ("#0", *tree.cget("displaycolumns")):
            title = str(tree.heading(key, "text"))
            need = font.measure(title) + 2 * pad_x + 2 + 1
            assert int(tree.column(key, "width")) >= need, f"the heading {title!r} is clipped"


def assert_pictures_scale_with_the_text(app: cs.App, task_id: str) -> None:
    """The run strip's cells and the chart's line grow with the text (Tk scaling 2.0)."""
    tk, line = app.root.tk, int(app.looks.fonts["body"].metrics("linespace"))
    strip = str(app.tasks_pane.table.tree.item(task_id, "image")[0])
    height, width = int(tk.call("image", "height", strip)), int(tk.call("image", "width", strip))
    middle = height // 2
    drawn = [x for x in range(width) if not tk.getboolean(tk.call(strip, "transparency", "get", x, middle))]
    assert drawn, "the strip shows no run"
    cell = max(x for x in drawn) - min(drawn) + 1  # the one run's cell
    assert height > line / 2 and cell > line / 4, (height, cell, line)
    chart = app.runs_pane.chart.canvas
    app.root.update()
    (duration,) = chart.find_withtag("duration")
    assert float(chart.itemcget(duration, "width")) >= line / 10


def test_without_tkinter_it_says_to_use_serve_or_cli(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tkinter", None)  # as on a Python built without Tk
    assert cs.main(["gui", "--no-api"]) == 2
    message = capsys.readouterr().err
    assert "no Tk" in message and "serve" in message and "cli" in message


def test_without_a_display_it_says_to_use_serve_or_cli(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "claude_scheduler.py"), "--home", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert result.returncode == 2
    assert "serve" in result.stderr and "cli" in result.stderr


# Import, export and copies -------------------------------------------------------------------


def test_file_menu_exports_and_imports_a_bundle(gui: Gui, service: cs.Service, tmp_path: Path) -> None:
    job = service.create_job({"name": "Shared"})
    make_task(service, "One", job["id"], env={"K": "v"})
    make_task(service, "Loose")
    gui.app.refresh_now()
    gui.wait(lambda: job["id"] in gui.app.jobs, "the job to show")
    told: list[str] = []
    gui.app.inform = lambda title, message: told.append(message)  # type: ignore[method-assign]  # a message box would wait
    path = tmp_path / "all.json"
    gui.app.ask_save_path = lambda title, initial: str(path)  # type: ignore[method-assign]  # the file dialog's answer
    gui.choose_menu("File", "Export all…")
    gui.wait(lambda: told, "the export to be reported")
    assert told.pop() == f"Exported 1 job and 2 tasks to {path}"
    bundle = json.loads(path.read_text())
    assert [task["name"] for task in bundle["tasks"]] == ["One", "Loose"]

    gui.select_in_jobs(job["id"])
    one = tmp_path / "one.json"
    gui.app.ask_save_path = lambda title, initial: str(one) if initial == "Shared.json" else ""  # type: ignore[method-assign]  # see above
    gui.choose_menu("File", "Export job…")
    gui.wait(lambda: told, "the job's export to be reported")
    assert [task["name"] for task in json.loads(one.read_text())["tasks"]] == ["One"]

    gui.app.ask_open_path = lambda title: str(one)  # type: ignore[method-assign]  # see above
    gui.answers.append(False)
    gui.choose_menu("File", "Import…")
    gui.wait(lambda: gui.questions, "the import question")
    question = gui.questions.pop()
    assert "Would import 1 job and 1 task" in question and "renamed job 'Shared' to 'Shared (2)'" in question
    assert len(service.list_jobs()) == 1
    gui.answers.append(True)
    gui.choose_menu("File", "Import…")
    gui.wait(lambda: len(gui.app.jobs) == 2, "the imported job")
    (copy,) = [item for item in service.list_jobs() if item["id"] != job["id"]]
    assert copy["name"] == "Shared (2)"
    gui.wait(lambda: gui.app.scope == cs.Scope(cs.SCOPE_JOB, copy["id"]), "the imported job to be chosen")
    assert gui.task_rows() == ["One"]


def test_a_bad_bundle_is_refused_with_its_record_named(gui: Gui, service: cs.Service, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    bundle = {
        "format": cs.BUNDLE_FORMAT,
        "version": 1,
        "jobs": [],
        "tasks": [{"id": cs.new_id(), "name": "X"}],
    }
    path.write_text(json.dumps(bundle))
    gui.app.ask_open_path = lambda title: str(path)  # type: ignore[method-assign]  # the file dialog's answer
    gui.choose_menu("File", "Import…")
    gui.wait(lambda: gui.alerts, "the refusal")
    assert gui.alerts.pop() == "tasks[0].prompt: is required (task 'X'); nothing was imported"
    assert gui.questions == [] and service.list_tasks() == []


def test_edit_menu_duplicates_a_task_and_a_job(gui: Gui, service: cs.Service) -> None:
    job = service.create_job({"name": "Original"})
    task = make_task(service, "Step", job["id"])
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_in_jobs(job["id"])
    gui.select_task(task["id"])
    gui.choose_menu("Edit", "Duplicate task")
    gui.wait(lambda: gui.task_rows() == ["Step", "Step (2)"], "the copy in the list")
    copy = gui.app.tasks[str(gui.app.task_id)]
    assert copy["name"] == "Step (2)" and copy["enabled"] is False and copy["job_id"] == job["id"]
    gui.choose_menu("Edit", "Duplicate job")
    gui.wait(lambda: len(gui.app.jobs) == 2, "the job's copy")
    (other,) = [item for item in gui.app.jobs.values() if item["id"] != job["id"]]
    assert other["name"] == "Original (2)"
    gui.wait(lambda: gui.app.scope == cs.Scope(cs.SCOPE_JOB, other["id"]), "the copy to be chosen")
    assert gui.task_rows() == ["Step", "Step (2)"]


# The launcher and the window's icon ------------------------------------------------------------


def test_the_window_has_its_own_icon(gui: Gui) -> None:
    icons = gui.app.icons
    assert [(icon.width(), icon.height()) for icon in icons] == [
        (size, size) for size in cs.WINDOW_ICON_SIZES
    ]
    big = icons[-1]
    assert big.transparency_get(0, 0) is True
    assert big.get(32, 32) == (255, 255, 255)
    assert big.get(8, 32) == cs.ICON_BACKGROUND


def catches_sigterm(pid: int) -> bool:
    """Whether a process has its SIGTERM handler in place (Linux: /proc's SigCgt mask)."""
    import signal

    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def test_the_desktop_launcher_opens_the_window(
    home: Path, display: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex
    import signal

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert cs.main(["cli", "desktop", "install"]) == 0
    entry = (tmp_path / "share" / "applications" / "claude-code-scheduler.desktop").read_text()
    command = next(line for line in entry.splitlines() if line.startswith("Exec="))
    argv = shlex.split(command.removeprefix("Exec=").replace("%%", "%"))
    assert argv[-1] == "gui" and "Terminal=false" in entry.splitlines()
    env = {**os.environ, "DISPLAY": display}
    env.pop(cs.HOME_ENV)  # the launcher names the data home itself
    window = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    service = cs.Service(cs.Store(home))
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while (service.engine_status().get("owner") or {}).get("pid") != window.pid or not catches_sigterm(
            window.pid
        ):
            assert window.poll() is None, window.stderr.read() if window.stderr else ""
            assert time.monotonic() < deadline, "the launcher's window did not take the engine"
            time.sleep(POLL_SECONDS)
    finally:
        window.send_signal(signal.SIGTERM)  # the window quits on SIGTERM as on its close button
        window.wait(WAIT_SECONDS)
    assert window.returncode == 0
    assert cs.main(["cli", "desktop", "uninstall"]) == 0


def test_the_notifications_dialog_changes_events_tests_and_shows_history(
    gui: Gui, service: cs.Service, tmp_path: Path
) -> None:
    said = tmp_path / "said.txt"
    fake = tmp_path / "notify.py"
    fake.write_text(f"import sys\nopen({str(said)!r}, 'w').write(sys.argv[1])\n")
    service.update_notify_settings(
        {"desktop": {"enabled": True, "command": [sys.executable, str(fake), "{title}"]}}
    )
    gui.choose_menu("File", "Notifications…")
    gui.wait(lambda: gui.app.notifications_dialog, "the notifications dialog")
    dialog = gui.app.notifications_dialog
    assert dialog is not None
    assert dialog.events["changed"].get() is False and dialog.desktop.get() is True
    assert dialog.history.get_children() == ()
    dialog.events["changed"].set(True)
    dialog.test_button.invoke()
    gui.wait(lambda: dialog.history.get_children(), "the test in the history")
    (row,) = dialog.history.get_children()
    assert dialog.history.item(row, "values")[1:5] == ("test", "desktop", "delivered", "1")
    assert said.read_text() == "Test notification"
    dialog.save_button.invoke()
    gui.wait(lambda: gui.app.notifications_dialog is None, "the dialog to close")
    assert service.notify_settings()["events"]["changed"] is True


def test_webhooks_are_added_changed_and_removed_in_the_notifications_dialog(
    gui: Gui, service: cs.Service, home: Path
) -> None:
    service.update_notify_settings(
        {"webhooks": [{"name": "old", "url": "http://127.0.0.1:9/", "secret": "k1"}]}
    )
    gui.choose_menu("File", "Notifications…")
    gui.wait(lambda: gui.app.notifications_dialog, "the notifications dialog")
    dialog = gui.app.notifications_dialog
    assert dialog is not None
    assert dialog.hook_list.item("old", "values")[4] == "yes"  # it has a secret, not shown

    def fill(values: dict[str, str]) -> cs.WebhookDialog:
        hook_dialog = dialog.hook_dialog
        assert hook_dialog is not None
        for key, value in values.items():
            hook_dialog.fields[key].set(value)
        return hook_dialog

    dialog.hook_buttons["add"].invoke()
    added = fill({"name": "team", "url": "ftp://example.invalid/", "preset": "slack", "secret": "s3"})
    added.events["limit_hold_began"].set(False)
    added.ok_button.invoke()
    assert added.error.cget("text") == "url: must be an http:// or https:// address"
    fill({"url": "https://hooks.example.invalid/x", "retries": "5"})
    added.ok_button.invoke()
    assert dialog.hook_dialog is None
    dialog.hook_buttons["add"].invoke()
    clash = fill({"name": "old", "url": "https://x.invalid/"})
    clash.ok_button.invoke()
    assert "names another webhook" in clash.error.cget("text")
    clash.close()
    dialog.hook_list.selection_set("old")
    dialog.hook_buttons["edit"].invoke()
    edited = fill({"preset": "ntfy"})
    assert str(edited.entries["name"].cget("state")) == "readonly"  # its secret is kept by name
    edited.ok_button.invoke()
    dialog.save_button.invoke()
    gui.wait(lambda: gui.app.notifications_dialog is None, "the dialog to close")
    stored = {hook["name"]: hook for hook in cs.load_notify_config(home)["webhooks"]}
    assert (stored["old"]["preset"], stored["old"]["secret"]) == ("ntfy", "k1")
    team = stored["team"]
    assert (team["url"], team["preset"], team["secret"], team["retries"]) == (
        "https://hooks.example.invalid/x",
        "slack",
        "s3",
        5,
    )
    assert team["events"] == [name for name in cs.NOTIFY_EVENTS if name != "limit_hold_began"]

    gui.choose_menu("File", "Notifications…")
    gui.wait(lambda: gui.app.notifications_dialog, "the notifications dialog")
    dialog = gui.app.notifications_dialog
    assert dialog is not None
    dialog.hook_list.selection_set("team")
    dialog.hook_buttons["edit"].invoke()
    assert dialog.hook_dialog is not None
    dialog.hook_dialog.no_secret.set(True)
    dialog.hook_dialog.ok_button.invoke()
    dialog.hook_list.selection_set("old")
    dialog.hook_buttons["remove"].invoke()
    dialog.save_button.invoke()
    gui.wait(lambda: gui.app.notifications_dialog is None, "the dialog to close")
    (team,) = cs.load_notify_config(home)["webhooks"]
    assert (team["name"], team["secret"]) == ("team", None)


def test_the_task_editor_overrides_notifications_for_its_task(gui: Gui, service: cs.Service) -> None:
    task = make_task(service, "Quiet")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task")
    gui.select_task(task["id"])
    editor = gui.app.editor
    assert editor._value("notify.failed") == ""  # as for all tasks
    editor._set("notify.failed", "off")
    editor._set("notify.changed", "on")
    editor.save_button.invoke()
    gui.settle()
    gui.wait(lambda: not editor.is_dirty(), "the task to be saved")
    assert service.notify_settings()["tasks"] == {task["id"]: {"events": {"failed": False, "changed": True}}}
    editor._set("notify.failed", "")
    editor._set("notify.changed", "")
    editor.save_button.invoke()
    gui.wait(lambda: service.notify_settings()["tasks"] == {}, "the overrides to go")
    service.update_notify_settings({"tasks": {task["id"]: {"events": {"recovered": False}}}})
    gui.app.refresh_now()
    gui.wait(lambda: editor._value("notify.recovered") == "off", "a change made elsewhere to show")


# Time zones ---------------------------------------------------------------------------------


def test_times_show_in_the_tasks_zone_named_when_it_differs(
    home: Path, service: cs.Service, display: str
) -> None:
    """TZ=UTC here: a task at 02:00 Amsterdam time shows 02:00 CET/CEST, not 01:00 or 00:00."""
    schedule = {"type": "cron", "expression": "0 2 * * *", "timezone": "Europe/Amsterdam"}
    amsterdam = make_task(service, "Amsterdam", schedule=schedule)
    utc = make_task(service, "Here", schedule={"type": "cron", "expression": "0 3 * * *", "timezone": "UTC"})
    plain = make_task(service, "Plain", schedule={"type": "cron", "expression": "0 4 * * *"})
    zoned_run, plain_run = add_run(service.store, amsterdam["id"]), add_run(service.store, plain["id"])
    with open_gui(home) as gui:
        cells = gui.app.tasks_pane.table
        zoned = str(cells.whole_text(amsterdam["id"], "next"))
        assert zoned.endswith((" CET", " CEST")) and "02:00" in zoned, zoned
        assert "03:00" in cells.whole_text(utc["id"], "next")
        assert not cells.whole_text(utc["id"], "next").endswith(("UTC", "CET", "CEST"))
        assert cells.whole_text(plain["id"], "next").endswith("04:00")
        gui.select_task(amsterdam["id"])
        editor = gui.app.editor
        gui.wait(lambda: editor.preview_times.cget("text"), "the preview")
        lines = str(editor.preview_times.cget("text")).splitlines()
        assert len(lines) == cs.GUI_PREVIEW_COUNT
        assert all(line.endswith(("02:00 CET", "02:00 CEST")) for line in lines), lines
        assert "(Europe/Amsterdam). Times in Europe/Amsterdam, not this computer's UTC." in str(
            editor.preview_text.cget("text")
        )
        runs = gui.app.runs_pane.table
        gui.wait(lambda: runs.tree.exists(zoned_run.id), "the task's run")
        assert runs.whole_text(zoned_run.id, "started").endswith((" CET", " CEST"))
        gui.select_task(plain["id"])
        gui.wait(lambda: str(editor.preview_times.cget("text")).endswith("04:00"), "the plain preview")
        assert "Times in" not in str(editor.preview_text.cget("text"))
        gui.wait(lambda: runs.tree.exists(plain_run.id), "the plain task's run")
        assert not runs.whole_text(plain_run.id, "started").endswith(("CET", "CEST", "UTC"))
        for other in (utc, plain):  # Amsterdam's is then the next fire, whatever the time of day
            service.set_enabled(other["id"], False)
        gui.app.refresh_now()
        label = gui.app.status_bar.labels["next"]
        gui.wait(lambda: str(label.cget("text")).startswith("Next: Amsterdam · "), "the next fire's task")
        assert str(label.cget("text")).endswith(zoned), str(label.cget("text"))


# Runs of whole jobs -----------------------------------------------------------------------


def test_a_job_run_that_stops_at_a_failure_says_which_task_failed_and_which_did_not_run(
    record: Any, gui: Gui, service: cs.Service
) -> None:
    job = service.create_job({"name": "Nightly"})
    for name, prompt in (("One", "ok"), ("Two", "[exit=3] break"), ("Three", "never"), ("Four", "never")):
        service.create_task({"name": name, "prompt": prompt, "job_id": job["id"]})
    gui.app.refresh_now()
    gui.wait(lambda: job["id"] in gui.app.jobs, "the job to show")
    gui.select_in_jobs(job["id"])
    gui.app.run_job()
    label, bar = gui.app.jobs_pane.job_run, gui.app.status_bar.labels["job"]
    wanted = "“Nightly” stopped: “Two” failed; not run: Three, Four"
    gui.wait(lambda: str(label.cget("text")) == wanted, "the failure under the Jobs tree")
    assert str(label.cget("style")) == "Error.TLabel"
    assert str(bar.cget("text")) == wanted and str(bar.cget("style")) == "StatusError.TLabel"
    assert record.prompts() == ["ok", "[exit=3] break"]
    gui.select_in_jobs(cs.SCOPE_ALL)
    assert str(label.cget("text")) == "", "another scope shows another job's run"
    assert str(bar.cget("text")) == wanted, "the status bar keeps saying it"


def long_job_chosen(gui: Gui, service: cs.Service) -> dict[str, Any]:
    """A job whose second of three steps hangs, shown and chosen in the Jobs pane."""
    job: dict[str, Any] = service.create_job({"name": "Long"})
    for name, prompt in (("First", "fine"), ("Slow", "[hang] wait"), ("Last", "never")):
        service.create_task({"name": name, "prompt": prompt, "job_id": job["id"]})
    gui.app.refresh_now()
    gui.wait(lambda: job["id"] in gui.app.jobs, "the job to show")
    gui.select_in_jobs(job["id"])
    return job


def stopped_steps(service: cs.Service, job: dict[str, Any]) -> list[str]:
    """The step statuses of the job's one job run once it is recorded stopped; else []."""
    (job_run,) = service.list_job_runs(job["id"])
    return [step["status"] for step in job_run["steps"]] if job_run["status"] == "stopped" else []


def test_a_running_job_shows_its_progress_and_can_be_stopped(
    record: Any, gui: Gui, service: cs.Service
) -> None:
    job = long_job_chosen(gui, service)
    gui.app.run_job()
    label, bar = gui.app.jobs_pane.job_run, gui.app.status_bar.labels["job"]
    running = "Running “Long”: Slow (2 of 3) · 1 done · 0 failed"
    gui.wait(lambda: str(label.cget("text")) == running, "the progress under the Jobs tree")
    gui.wait(lambda: len(record.prompts()) == 2, "the second session to read its prompt")
    gui.wait(lambda: str(bar.cget("text")) == running, "the progress in the status bar")
    gui.app.jobs_pane.buttons["stop"].invoke()
    stopped = "“Long” stopped by request after 1 of 3 done; not run: Last"
    gui.wait(lambda: str(label.cget("text")) == stopped, "the stop under the Jobs tree")
    gui.wait(lambda: str(bar.cget("text")) == "", "the status bar to let go of it")
    assert record.prompts() == ["fine", "[hang] wait"]

    gui.wait(lambda: stopped_steps(service, job)[1:2] == ["cancelled"], "the stopped step's session to end")
    assert stopped_steps(service, job) == ["success", "cancelled", "not_run"]


def test_the_status_bar_stops_the_running_job_run_whatever_is_chosen(
    record: Any, gui: Gui, service: cs.Service
) -> None:
    job = long_job_chosen(gui, service)
    button = gui.app.status_bar.job_button
    assert not button.winfo_manager()
    gui.app.run_job()
    gui.wait(lambda: len(record.prompts()) == 2, "the second step's session to read its prompt")
    gui.select_in_jobs(cs.SCOPE_ALL)
    gui.wait(lambda: button.winfo_manager() == "pack", "Stop beside the running job run")
    button.invoke()

    gui.wait(lambda: stopped_steps(service, job)[1:2] == ["cancelled"], "the job run and its step to stop")
    assert stopped_steps(service, job) == ["success", "cancelled", "not_run"]
    gui.wait(lambda: not button.winfo_manager(), "Stop to go with the job run")


def test_stopping_a_steps_run_in_the_runs_pane_stops_its_job_run(
    record: Any, gui: Gui, service: cs.Service
) -> None:
    job = long_job_chosen(gui, service)
    gui.app.run_job()
    gui.wait(lambda: len(record.prompts()) == 2, "the second step's session to read its prompt")
    slow = next(run for run in service.list_runs(job_id=job["id"]) if run["status"] == "running")
    tree = gui.app.runs_pane.table.tree
    gui.wait(lambda: tree.exists(slow["id"]), "the step's run in the Runs pane")
    tree.selection_set(slow["id"])
    gui.settle()
    gui.wait(lambda: gui.app.runs_pane.buttons["stop"].instate(["!disabled"]), "Stop to be offered")
    gui.app.runs_pane.buttons["stop"].invoke()

    def ended() -> list[dict[str, Any]]:
        return [
            run
            for run in service.list_job_runs(job["id"])
            if run["status"] != "running" and run["steps"][1]["status"] != "running"
        ]

    gui.wait(ended, "the job run and its step to end")
    (job_run,) = ended()
    assert job_run["status"] == "stopped"
    assert [step["status"] for step in job_run["steps"]] == ["success", "cancelled", "not_run"]
    assert record.prompts() == ["fine", "[hang] wait"]


# The Runs list's filters ------------------------------------------------------------------


def test_the_runs_list_filters_by_status_trigger_and_age(
    home: Path, service: cs.Service, display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = make_task(service, "Filtered")
    now = pin_clock(monkeypatch)()
    store = cs.Store(home)
    made = {}
    for name, status, trigger, days in (
        ("ok-now", cs.RunStatus.SUCCESS, cs.Trigger.SCHEDULE, 0),
        ("bad-now", cs.RunStatus.TIMEOUT, cs.Trigger.MANUAL, 0),
        ("ok-old", cs.RunStatus.SUCCESS, cs.Trigger.MANUAL, 10),
        ("bad-week", cs.RunStatus.FAILED, cs.Trigger.SCHEDULE, 3),
    ):
        started = now - timedelta(days=days)
        run = cs.Run(
            cs.new_id(), task["id"], status=status, trigger=trigger, started_at=started, finished_at=started
        )
        store.save_run(run)
        made[run.id] = name
    with open_gui(home) as gui:
        gui.select_task(task["id"])
        pane = gui.app.runs_pane

        def listed() -> list[str]:
            return sorted(made[iid] for iid in pane.table.tree.get_children())

        def choose(key: str, label: str) -> None:
            pane.filters[key].set(label)
            pane.filters[key].event_generate("<<ComboboxSelected>>")
            gui.settle()

        assert listed() == ["bad-now", "bad-week", "ok-now", "ok-old"]
        choose("status", "Failed")
        assert listed() == ["bad-now", "bad-week"]
        assert pane.subtitle.text == "Filtered · 4 runs (2 shown)"
        choose("trigger", "schedule")
        assert listed() == ["bad-week"]
        choose("age", "Today")
        assert listed() == []
        choose("status", "Any status")
        choose("trigger", "Any trigger")
        assert listed() == ["bad-now", "ok-now"]
        choose("age", "7 days")
        assert listed() == ["bad-now", "bad-week", "ok-now"]
        choose("age", "Any time")
        assert pane.subtitle.text == "Filtered · 4 runs"


def test_the_runs_list_filters_by_a_date_range_the_user_types(
    home: Path, service: cs.Service, display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = make_task(service, "Dated")
    now = pin_clock(monkeypatch)()
    store = cs.Store(home)
    made = {}
    for days in (0, 3, 10, 40):
        started = now - timedelta(days=days)
        run = cs.Run(
            cs.new_id(), task["id"], status=cs.RunStatus.SUCCESS, started_at=started, finished_at=started
        )
        store.save_run(run)
        made[run.id] = days
    today = now.astimezone().date()
    with open_gui(home) as gui:
        gui.select_task(task["id"])
        pane = gui.app.runs_pane
        fields = pane.day_fields

        def listed() -> list[int]:
            return sorted(made[iid] for iid in pane.table.tree.get_children())

        def type_dates(first: str, last: str) -> None:
            for key, text in (("from", first), ("to", last)):
                gui.type_into(fields[key], text)
            gui.press(fields["to"], "<Return>")

        assert not pane.dates.winfo_ismapped()
        pane.filters["age"].set("Dates…")
        pane.filters["age"].event_generate("<<ComboboxSelected>>")
        gui.settle()
        assert pane.dates.winfo_ismapped()
        assert (fields["from"].get(), fields["to"].get()) == (str(today - timedelta(days=6)), str(today))
        assert listed() == [0, 3]
        type_dates(str(today - timedelta(days=12)), str(today - timedelta(days=2)))
        assert listed() == [3, 10]
        assert pane.subtitle.text == "Dated · 4 runs (2 shown)"
        type_dates("2026-13-01", str(today))
        assert "From: '2026-13-01' is not a date" in pane.dates_error.cget("text")
        assert listed() == [3, 10], "a date that cannot be read changes nothing"
        type_dates(str(today), str(today - timedelta(days=1)))
        assert pane.dates_error.cget("text") == "To: is before the From date"
        type_dates(str(today - timedelta(days=50)), "")  # no end: up to today
        assert pane.dates_error.cget("text") == ""
        assert listed() == [0, 3, 10, 40]
        type_dates("", str(today - timedelta(days=5)))  # no start
        assert listed() == [10, 40]
        pane.filters["age"].set("Any time")
        pane.filters["age"].event_generate("<<ComboboxSelected>>")
        gui.settle()
        assert not pane.dates.winfo_ismapped()
        assert listed() == [0, 3, 10, 40]


def test_a_typed_date_range_is_read_in_the_users_days() -> None:
    assert cs.parse_day_span(" 2026-01-02 ", "") == (date(2026, 1, 2), None)
    assert cs.parse_day_span("", "") == (None, None)
    with pytest.raises(cs.Invalid) as caught:
        cs.parse_day_span("2026-01-05", "2026-01-04")
    assert caught.value.field == "to"
    run = {"status": "success", "trigger": "manual", "started_at": "2026-01-03T12:00:00Z"}
    day = cs.parse_time(run["started_at"], "t").astimezone().date()
    assert cs.run_matches(run, "Any status", "Any trigger", (day, day))
    assert not cs.run_matches(run, "Any status", "Any trigger", (day + timedelta(days=1), None))


# Finding in the log -------------------------------------------------------------------------


def test_ctrl_f_in_the_log_finds_highlights_and_steps_through_hits(
    home: Path, service: cs.Service, display: str
) -> None:
    task = make_task(service, "Searched")
    run = add_run(cs.Store(home), task["id"])
    lines = [
        {"type": "assistant", "message": {"content": [{"type": "text", "text": f"Alpha beta {n} alpha"}]}}
        for n in range(3)
    ]
    cs.Store(home).log_path(run.id).write_text("".join(json.dumps(line) + "\n" for line in lines))
    with open_gui(home) as gui:
        gui.select_task(task["id"])
        logs = gui.app.logs_pane
        gui.wait(lambda: "Alpha beta 2" in gui.log_text(), "the log")
        search = logs.search
        gui.press(logs.text, "<Control-f>")
        assert search.is_open and gui.app.root.focus_get() == search.entry
        assert gui.app.root.focus_get() != gui.app.tasks_pane.filter_entry, "Ctrl+F went to the Tasks filter"
        gui.type_into(search.entry, "ALPHA")
        hits = logs.text.tag_ranges("search_hit")
        assert len(hits) == 2 * 6
        assert all(
            str(logs.text.get(hits[n], hits[n + 1])).lower() == "alpha" for n in range(0, len(hits), 2)
        )
        assert str(search.count.cget("text")) == "1 of 6"
        current = logs.text.tag_ranges("search_current")
        assert [str(index) for index in current] == [str(hits[0]), str(hits[1])]
        gui.press(search.entry, "<Return>")
        assert str(search.count.cget("text")) == "2 of 6"
        assert str(logs.text.tag_ranges("search_current")[0]) == str(hits[2])
        gui.press(search.entry, "<Shift-Return>")
        gui.press(search.entry, "<Shift-Return>")
        assert str(search.count.cget("text")) == "6 of 6"
        gui.type_into(search.entry, "nowhere")
        assert str(search.count.cget("text")) == "no hits" and logs.text.tag_ranges("search_hit") == ()
        gui.press(search.entry, "<Escape>")
        assert not search.is_open and gui.app.root.focus_get() == logs.text


# Setup problems ----------------------------------------------------------------------------


def test_a_setup_problem_shows_as_a_banner_with_its_fix_until_it_is_fixed(
    home: Path, display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cs.CLAUDE_ENV, str(home.parent / "no-claude-here"))
    with open_gui(home) as gui:
        banner = gui.app.banner
        gui.wait(lambda: banner.is_shown, "the banner")
        (claude,) = [check for check in banner.problems if check["check"] == "claude"]
        text = str(banner.text.cget("text"))
        assert f"✗ claude: {claude['message']}. {claude['fix']}" in text.splitlines()
        assert "no-claude-here" in text
        panes_top = gui.app.layout.columns.winfo_rooty()
        assert banner.frame.winfo_rooty() < panes_top, "the banner is not above the panes"
        monkeypatch.setenv(cs.CLAUDE_ENV, str(FAKE_CLAUDE))
        buttons = banner.frame.winfo_children()[1].winfo_children()
        next(button for button in buttons if button.cget("text") == "Check again").invoke()
        gui.wait(lambda: not banner.is_shown, "the banner to go")


# Pictures: the run strip and the chart -----------------------------------------------------


def _strip_colours(image: Any, looks: cs.Looks) -> list[str]:
    """The colour of each cell of a run strip, left to right ("" for an empty cell)."""
    step = looks.px(cs.GUI_STRIP_CELL) + looks.px(cs.GUI_STRIP_GAP)
    middle = image.height() // 2
    colours = []
    for index in range(cs.GUI_STRIP_RUNS):
        red, green, blue = (int(part) for part in image.get(index * step + 1, middle))
        transparent = image.transparency_get(index * step + 1, middle)
        colours.append("" if transparent else f"#{red:02x}{green:02x}{blue:02x}")
    return colours


def test_each_task_shows_its_recent_runs_as_a_strip(home: Path, service: cs.Service, display: str) -> None:
    task = make_task(service, "Striped")
    fresh = make_task(service, "Fresh")
    store = cs.Store(home)
    statuses = (
        [cs.RunStatus.SUCCESS] * 3 + [cs.RunStatus.FAILED, cs.RunStatus.TIMEOUT] + [cs.RunStatus.SUCCESS] * 5
    )
    start = cs.utcnow() - timedelta(hours=len(statuses))
    for hours, status in enumerate(statuses):
        when = start + timedelta(hours=hours)
        store.save_run(
            cs.Run(cs.new_id(), task["id"], status=status, created_at=when, started_at=when, finished_at=when)
        )
    with open_gui(home) as gui:
        tree = gui.app.tasks_pane.table.tree
        recent = statuses[-cs.GUI_STRIP_RUNS :]
        strip = gui.app.looks.strip(tuple(status.value for status in recent))
        assert tree.item(task["id"], "image")[0] == str(strip), "the row does not show the strip of its runs"
        assert _strip_colours(strip, gui.app.looks) == [
            cs.GUI_STATUS_COLOURS[status.value] for status in recent
        ]
        assert tree.item(fresh["id"], "image")[0] == str(gui.app.looks.dot("never")), "no runs: the dot"
        store.save_run(cs.Run(cs.new_id(), fresh["id"], status=cs.RunStatus.FAILED, started_at=cs.utcnow()))
        gui.app.refresh_now()
        one = gui.app.looks.strip(("failed",))
        gui.wait(lambda: tree.item(fresh["id"], "image")[0] == str(one), "the new run in the strip")
        assert _strip_colours(one, gui.app.looks) == [""] * (cs.GUI_STRIP_RUNS - 1) + [
            cs.GUI_STATUS_COLOURS["failed"]
        ]


def test_the_chart_draws_cost_and_run_time_per_day(
    home: Path, service: cs.Service, display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = make_task(service, "Charted")
    now = pin_clock(monkeypatch)()
    store = cs.Store(home)
    for days, cost, seconds in ((0, 0.30, 60), (0, 0.10, 60), (2, 0.20, 300), (40, 9.0, 9)):
        started = now - timedelta(days=days)
        run = cs.Run(
            cs.new_id(),
            task["id"],
            status=cs.RunStatus.SUCCESS,
            started_at=started,
            finished_at=started + timedelta(seconds=seconds),
            cost_usd=cost,
        )
        store.save_run(run)
    with open_gui(home) as gui:
        gui.select_task(task["id"])
        chart = gui.app.runs_pane.chart
        gui.wait(lambda: len(chart.canvas.find_withtag("cost")) == 2, "two days of bars")
        assert [round(cost, 2) for cost, _ in chart.days if cost] == [0.2, 0.4]  # two days ago, today
        assert len(chart.days) == cs.GUI_CHART_DAYS
        assert chart.days[-1] == (pytest.approx(0.4), pytest.approx(120.0))
        older, today = sorted(
            chart.canvas.find_withtag("cost"), key=lambda item: chart.canvas.coords(item)[0]
        )
        height = {
            item: chart.canvas.coords(item)[3] - chart.canvas.coords(item)[1] for item in (older, today)
        }
        assert height[older] == pytest.approx(height[today] / 2, abs=1.0), "bars not in proportion to cost"
        (line,) = chart.canvas.find_withtag("duration")
        ys = chart.canvas.coords(line)[1::2]
        assert len(ys) == cs.GUI_CHART_DAYS and min(ys) == ys[-3], "the longest run time is two days ago"
        title = str(chart.canvas.itemcget(chart.canvas.find_withtag("title")[0], "text"))
        assert title == "Per day: cost (bars, up to $0.4000) · run time (line, up to 5m 00s)"
        totals = str(gui.app.runs_pane.totals.cget("text"))
        assert totals.startswith("Today $0.4000 · 7 days $0.6000 · 30 days $0.6000"), totals


# Keys ------------------------------------------------------------------------------------


def test_ctrl_a_selects_all_in_entries_choosers_and_text_boxes(
    home: Path, service: cs.Service, display: str
) -> None:
    task = make_task(service, "Select me", model="opus")
    with open_gui(home) as gui:
        gui.select_task(task["id"])
        editor = gui.app.editor
        name, model, prompt = editor._entries["name"], editor._combos["model"], editor._texts["prompt"]
        for entry in (name, model):
            entry.icursor(2)
            gui.press(entry, "<Control-a>")
            assert entry.selection_present() and entry.index("sel.first") == 0
            assert entry.index("sel.last") == len(entry.get()) and entry.index("insert") == len(entry.get())
        gui.press(prompt, "<Control-a>")
        assert prompt.get("sel.first", "sel.last") == "Do Select me"
        log = gui.app.logs_pane.text
        gui.press(log, "<Control-a>")
        assert str(log.get("sel.first", "sel.last")) == gui.log_text()


# Themes ------------------------------------------------------------------------------------


def test_contrast_ratios_follow_wcag() -> None:
    assert cs.contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert cs.contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert cs.contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # just short of AA


@pytest.mark.parametrize("theme", sorted(cs.GUI_THEMES))
def test_every_theme_passes_wcag_aa_for_its_text(theme: str) -> None:
    palette = cs.GUI_THEMES[theme]
    failing = {
        (fg, bg): round(cs.contrast_ratio(palette[fg], palette[bg]), 2)
        for fg, bg in cs.GUI_TEXT_PAIRS
        if cs.contrast_ratio(palette[fg], palette[bg]) < 4.5
    }
    assert failing == {}
    colours = [
        options[key]
        for options in cs.GUI_LOG_STYLES.values()
        for key in cs.GUI_COLOUR_OPTIONS
        if key in options
    ]
    assert {(role, "field") for role in colours if role != "error_bg"} <= set(cs.GUI_TEXT_PAIRS), (
        "a log colour unchecked"
    )


def pixel(image: Any, x: int, y: int) -> str:
    return "#{:02x}{:02x}{:02x}".format(*image.get(x, y))


def test_a_ticked_checkbox_draws_a_tick_on_the_accent_not_an_x(gui: Gui) -> None:
    from tkinter import ttk

    looks = gui.app.looks
    assert cs.GUI_TICK_ELEMENT in str(ttk.Style(gui.app.root).layout("TCheckbutton"))
    box = ttk.Checkbutton(gui.app.root, text="Ticked")
    assert box.cget("style") == "" and box.winfo_class() == "TCheckbutton"  # every checkbox: the class
    box.destroy()
    scale = looks.px(cs.GUI_TICK_SIZE) / cs.GUI_TICK_SIZE

    def at(name: str, x: float, y: float) -> str:
        return pixel(looks.checkboxes[name], round(x * scale), round(y * scale))

    palette = looks.palette
    bottom = cs.GUI_TICK_MARK[1]  # the tick's lowest point
    assert (at("on", *bottom), at("off", *bottom)) == (palette["on_accent"], palette["field"])
    assert at("on_disabled", *bottom) == palette["muted"]
    for corner in ((3, 3), (11, 11), (3, 11)):  # where an X's strokes would be: plain fill
        assert (at("on", *corner), at("off", *corner)) == (palette["accent"], palette["field"])
    assert at("off", 0, 0) == palette["muted"]  # an empty box still has a visible edge


def assert_coloured(gui: Gui, theme: str) -> None:
    """Real widget colours, of each kind of widget the window has, are `theme`'s."""
    from tkinter import ttk

    palette, app = cs.GUI_THEMES[theme], gui.app
    assert app.looks.theme == theme
    text = app.logs_pane.text
    assert (str(text.cget("background")), str(text.cget("foreground"))) == (palette["field"], palette["text"])
    assert str(text.tag_cget("error", "foreground")) == palette["error"]
    assert str(text.tag_cget("search_hit", "background")) == palette["hit"]
    chart = app.runs_pane.chart.canvas
    assert str(chart.cget("background")) == palette["field"]
    titles = chart.find_withtag("title")
    assert titles and str(chart.itemcget(titles[0], "fill")) == palette["muted"]
    assert str(chart.itemcget(chart.find_withtag("cost")[0], "fill")) == palette["accent"]
    assert str(app.layout.columns.cget("background")) == palette["border"]
    assert str(app.tasks_pane.table.tree.tag_configure("failed", "foreground")) == palette["error"]
    assert str(ttk.Style(app.root).lookup("TFrame", "background")) == palette["window"]
    assert str(ttk.Style(app.root).lookup("Status.TLabel", "background")) == palette["heading"]
    menu_bar = app.root.nametowidget(app.root.cget("menu"))
    file_menu = app.root.nametowidget(menu_bar.entrycget("File", "menu"))
    assert str(file_menu.cget("background")) == palette["window"]
    inside = app.looks.px(2)
    assert pixel(app.looks.checkboxes["on"], inside, inside) == palette["accent"]
    assert pixel(app.looks.checkboxes["off"], inside, inside) == palette["field"]
    prompt = app.editor._texts["prompt"]
    assert (str(prompt.cget("background")), str(prompt.cget("insertbackground"))) == (
        palette["field"],
        palette["text"],
    )


def test_the_theme_chosen_in_settings_applies_at_once_and_is_kept(
    home: Path, display: str, service: cs.Service
) -> None:
    task = make_task(service, "Costly")
    now = cs.utcnow()
    run = cs.Run(cs.new_id(), task["id"], status=cs.RunStatus.FAILED, started_at=now, finished_at=now)
    run.cost_usd = 0.5
    cs.Store(home).save_run(run)
    with open_gui(home) as gui:
        gui.select_task(task["id"])
        start = "light" if gui.app.looks.theme == "dark" else "dark"
        for theme in (start, "dark" if start == "light" else "light"):
            gui.choose_menu("File", "Settings…")
            gui.wait(lambda: gui.app.settings_dialog is not None, "the dialog")
            dialog = gui.app.settings_dialog
            assert dialog is not None
            dialog.theme.set(theme.capitalize())
            dialog.save_button.invoke()
            gui.wait(lambda: gui.app.settings_dialog is None, "the dialog to close")
            assert_coloured(gui, theme)  # in this window, without a restart
        assert cs.Store(home).settings()[cs.GUI_SETTINGS_KEY]["theme"] == theme
    with open_gui(home) as gui:
        gui.select_task(task["id"])
        assert_coloured(gui, theme)


def test_the_system_theme_is_read_from_the_platform() -> None:
    assert cs.system_theme("linux", {"GTK_THEME": "Adwaita:dark"}) == "dark"
    assert cs.system_theme("linux", {"GTK_THEME": "Adwaita"}) == "light"
    assert cs.system_theme("linux", {}) == "light"
    assert cs.chosen_theme("dark") == "dark" and cs.chosen_theme("light") == "light"


def test_the_shortcuts_line_up_in_two_columns(gui: Gui) -> None:
    gui.choose_menu("Help", "Keyboard shortcuts")
    top = gui.app.shortcuts
    assert top is not None
    gui.app.root.update()
    labels = [
        widget for widget in top.winfo_children()[0].winfo_children() if widget.winfo_class() == "TLabel"
    ]
    keys, whats = labels[0::2], labels[1::2]
    assert [str(label.cget("text")) for label in keys] == [keys for keys, _ in cs.GUI_SHORTCUTS]
    assert len({label.winfo_x() for label in keys}) == 1 and len({label.winfo_x() for label in whats}) == 1
    assert min(label.winfo_x() for label in whats) > max(
        label.winfo_x() + label.winfo_width() for label in keys
    )
    close = next(
        widget for widget in top.winfo_children()[0].winfo_children() if widget.winfo_class() == "TButton"
    )
    gui.press(close, "<Escape>")
    gui.wait(lambda: not top.winfo_exists(), "Escape to close the dialog")


def test_tab_goes_through_the_panes_as_the_eye_does(gui: Gui, service: cs.Service) -> None:
    task = make_task(service, "Tabbed")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task")
    gui.select_task(task["id"])
    app = gui.app
    panes = {
        "jobs": app.jobs_pane.frame,
        "tasks": app.tasks_pane.frame,
        "runs": app.runs_pane.frame,
        "editor": app.editor.frame,
        "log": app.logs_pane.frame,
    }
    widget, visited = app.jobs_pane.table.tree, ["jobs"]
    for _ in range(300):
        widget = widget.tk_focusNext()
        if widget is None:
            break
        name = next((pane for pane, frame in panes.items() if str(widget).startswith(str(frame) + ".")), None)
        if name and (not visited or visited[-1] != name):
            visited.append(name)
        if name == "log":
            break
    assert visited == ["jobs", "tasks", "runs", "editor", "log"]
