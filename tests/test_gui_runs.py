"""The window's view of a run: the Runs list's status, tokens and wall time, the details
window a double-click (or Enter) opens, and the editor's fail-on-denials checkbox.
Real widgets under Xvfb (the fixtures of test_gui)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from test_gui import Gui, display, gui, make_task, open_gui, service  # noqa: F401  # fixtures

import claude_scheduler as cs

STARTED = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
ERROR = "Invalid API key · Fix external API key\nSecond line of claude's words"


def failed_run(store: cs.Store, task_id: str) -> cs.Run:
    """A run with every signal: kind, tokens of two models, denials, a reset, a long error."""
    run = cs.Run(
        cs.new_id(),
        task_id,
        status=cs.RunStatus.FAILED,
        trigger=cs.Trigger.SCHEDULE,
        attempt=2,
        scheduled_for=STARTED,
        started_at=STARTED,
        finished_at=datetime(2026, 12, 2, 9, 3, 4, 500000, tzinfo=UTC),
        cost_usd=0.0123,
        input_tokens=45104,
        cache_read_tokens=45000,
        cache_creation_tokens=100,
        output_tokens=56,
        model_usage={
            "claude-sonnet-5": {
                "input_tokens": 2,
                "cache_read_tokens": 45000,
                "cache_creation_tokens": 0,
                "output_tokens": 50,
                "cost_usd": 0.0113,
            },
            "claude-haiku-4-5": {
                "input_tokens": 2,
                "cache_read_tokens": 0,
                "cache_creation_tokens": 100,
                "output_tokens": 6,
                "cost_usd": 0.001,
            },
        },
        permission_denials=[
            {"tool_name": "Bash", "tool_use_id": "t1", "tool_input": {"command": "rm -rf build"}}
        ],
        failure_kind="auth",
        limit_resets_at=datetime(2026, 12, 2, 14, 0, tzinfo=UTC),
        session_duration_ms=181988,
        session_id="8afccf9d-1488-4e6e-86b9-449c41ea5aa6",
        model="claude-sonnet-5",
        error=ERROR,
    )
    store.save_run(run)
    store.log_path(run.id).write_text('{"type": "result", "subtype": "success", "is_error": true}\n')
    return run


def open_details(window: Gui, run_id: str, how: str) -> cs.RunDetailsDialog:
    tree = window.app.runs_pane.table.tree
    window.wait(lambda: tree.exists(run_id), "the run to be listed")
    tree.selection_set(run_id)
    window.settle()
    tree.see(run_id)
    window.app.root.update()
    if how == "double-click":
        x, y, _, height = tree.bbox(run_id, "#0")
        tree.focus_force()
        for _ in range(2):  # two clicks in a row are what Tk calls a double click
            tree.event_generate("<ButtonPress-1>", x=x + 5, y=y + height // 2)
            tree.event_generate("<ButtonRelease-1>", x=x + 5, y=y + height // 2)
        window.settle()
    else:
        window.press(tree, "<Return>")
    window.wait(lambda: window.app.run_details, "the details window")
    assert window.app.run_details is not None
    return window.app.run_details


def test_the_runs_list_shows_the_kind_the_denials_and_the_tokens(home: Path, display: str) -> None:  # noqa: F811
    other = cs.Service(cs.Store(home))
    task = make_task(other, "Nightly")
    run = failed_run(other.store, task["id"])
    with open_gui(home) as window:
        tree = window.app.runs_pane.table.tree
        window.wait(lambda: tree.exists(run.id), "the run to be listed")
        headings = [tree.heading(column, "text") for column in ("#0", *tree["columns"])]
        assert "Wall time" in headings and "Tokens" in headings
        assert tree.item(run.id, "text") == "failed (auth) ⚠1"
        assert tree.set(run.id, "tokens") == "45,104 in (45,100 cached) / 56 out"
        assert tree.set(run.id, "duration") == "3m 04s"


def test_a_double_click_on_a_run_opens_its_details(home: Path, display: str) -> None:  # noqa: F811
    other = cs.Service(cs.Store(home))
    task = make_task(other, "Nightly")
    run = failed_run(other.store, task["id"])
    with open_gui(home) as window:
        details = open_details(window, run.id, "double-click")

        shown = details.values
        assert shown["Task"] == "Nightly"
        assert shown["Status"] == "failed (auth) ⚠1: Invalid API key · Fix external API key"
        assert (shown["Trigger"], shown["Attempt"]) == ("schedule", "2")
        assert shown["Scheduled"] == shown["Started"] == "2026-12-02 09:00:00 UTC"
        assert shown["Finished"] == "2026-12-02 09:03:04 UTC"
        assert shown["Durations"] == "wall time 184.5s · claude 182.0s"
        assert shown["Tokens"] == "45,104 in (45,100 cached) / 56 out"
        assert shown["  claude-sonnet-5"] == "45,002 in (45,000 cached) / 50 out · $0.0113"
        assert shown["  claude-haiku-4-5"] == "102 in (100 cached) / 6 out · $0.0010"
        assert shown["Cost"] == "$0.0123"
        assert shown["Denied"] == "1 permission denial (Bash)"
        assert "Bash: rm -rf build" in shown.values()
        assert shown["Limit resets"] == "2026-12-02 14:00:00 UTC"
        assert shown["Session"] == run.session_id

        assert not details.error_box.winfo_ismapped()
        details.error_button.invoke()
        window.app.root.update()
        assert details.error_box.winfo_ismapped()
        assert details.error_box.get("1.0", "end-1c") == ERROR

        window.press(details.top, "<Escape>")
        assert window.app.run_details is None
        assert not details.top.winfo_exists()


def test_enter_on_a_run_opens_its_details_and_a_plain_run_shows_no_error_button(
    home: Path,
    display: str,  # noqa: F811
) -> None:
    other = cs.Service(cs.Store(home))
    task = make_task(other, "Plain")
    run = cs.Run(
        cs.new_id(), task["id"], status=cs.RunStatus.SUCCESS, started_at=STARTED, finished_at=STARTED
    )
    other.store.save_run(run)
    with open_gui(home) as window:
        details = open_details(window, run.id, "enter")
        assert details.values["Status"] == "success"
        assert details.values["Tokens"] == "—"
        assert "Denied" not in details.values
        assert not details.error_button.winfo_ismapped()
        details.close_button.invoke()
        assert window.app.run_details is None


def test_the_editor_sets_fail_on_permission_denials(gui: Gui, service: cs.Service) -> None:  # noqa: F811
    task = make_task(service, "Strict")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    editor = gui.app.editor
    assert editor._flags["fail_on_permission_denials"].get() is False
    editor._flags["fail_on_permission_denials"].set(True)
    editor.save_button.invoke()
    gui.wait(lambda: service.get_task(task["id"])["fail_on_permission_denials"], "the save")


def test_claudes_api_retries_show_in_the_log_one_line_each(gui: Gui, service: cs.Service) -> None:  # noqa: F811
    task = make_task(service, "Retried", prompt="Hello [api_retry=2][denied=Write]")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    gui.app.tasks_pane.buttons["run"].invoke()
    gui.wait(lambda: "Done with" in gui.log_text(), "the summary")

    lines = gui.log_text().splitlines()
    retries = [line for line in lines if line.startswith("API ")]
    assert retries == [
        "API overloaded (529), retry 1 of 10 in 0.5 s",
        "API overloaded (529), retry 2 of 10 in 1 s",
    ]
    text = gui.app.logs_pane.text
    tagged = text.get(*text.tag_ranges("retry")[:2])  # the two lines are one range of the tag
    assert tagged.splitlines() == retries
    summary = next(line for line in lines if "Done with" in line)
    assert summary.startswith("⚠ Done with 1 permission denial (Write) in 3 turns")
    assert text.tag_ranges("summary_warning")


def test_the_details_of_a_running_run_follow_it_to_its_end(
    gui: Gui,  # noqa: F811
    service: cs.Service,  # noqa: F811
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"  # the session ends only when the test has seen it running
    task = make_task(service, "Slow", prompt=f"Talk [gate={gate}]")
    gui.app.refresh_now()
    gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
    gui.select_task(task["id"])
    gui.app.tasks_pane.buttons["run"].invoke()
    gui.wait(lambda: gui.app.runs and gui.app.runs[0]["status"] == "running", "the run to start")
    details = open_details(gui, gui.app.runs[0]["id"], "enter")
    assert details.values["Status"] == "running"
    gate.touch()

    gui.wait(lambda: details.values["Status"] == "success", "the details to follow the run")
    assert details.values["Tokens"] == "62 in / 17 out"
    assert details.values["Durations"].startswith("wall time ")
    assert details.values["Durations"].endswith(" · claude 4.2s")


def test_a_jobs_fires_that_started_no_steps_are_listed_with_their_note(home: Path, display: str) -> None:  # noqa: F811
    other = cs.Service(cs.Store(home))
    job = other.create_job({"name": "Nightly"})
    run = failed_run(other.store, make_task(other, "Step", job["id"])["id"])
    fires = {
        status: cs.note_job_fire(
            other.store, other.store.job(job["id"]), cs.Trigger.SCHEDULE, status, f"why {status}", STARTED
        )
        for status in (cs.JobRunStatus.DEFERRED, cs.JobRunStatus.SKIPPED, cs.JobRunStatus.MISSED)
    }
    with open_gui(home) as window:
        window.wait(lambda: job["id"] in window.app.jobs, "the job to show")
        table = window.app.runs_pane.table
        rows = {status: cs.JOB_RUN_IID_PREFIX + job_run_id for status, job_run_id in fires.items()}
        for scope in (job["id"], cs.SCOPE_ALL):  # the job's runs, then all runs
            window.select_in_jobs(scope)
            window.wait(lambda: all(map(table.tree.exists, rows.values())), "the job's fires to be listed")
            for status, iid in rows.items():
                assert table.tree.item(iid, "text").strip() == status.value
                assert table.whole_text(iid, "task") == f"Job run {fires[status][:8]} · why {status}"
                assert table.tree.set(iid, "trigger") == "schedule"
            assert table.tree.exists(run.id)  # among the runs, not instead of them
            assert window.app.runs_pane.subtitle.text.endswith("· 4 runs")

        window.app.runs_pane.filters["status"].set("Failed")
        window.app.refilter_runs()
        assert not any(map(table.tree.exists, rows.values())) and table.tree.exists(run.id)


def test_the_details_of_a_queued_run_show_its_start_by_time_and_once_expired_why(
    home: Path,
    display: str,  # noqa: F811
) -> None:
    other = cs.Service(cs.Store(home))
    queued = other.request_run(make_task(other, "Waiting")["id"])
    start_by = datetime.fromisoformat(queued["start_by"])
    shown_by = f"{start_by:%Y-%m-%d %H:%M:%S} UTC"
    with open_gui(home) as window:  # with no engine: the run waits, its limit kept
        details = open_details(window, queued["id"], "enter")
        assert details.values["Status"] == "queued"
        assert details.values["Start by"] == f"{shown_by} · expires then unless an engine has started it"
        assert "Expired" not in details.values
        details.close_button.invoke()

    expired = cs.Engine(cs.Store(home, clock=lambda: start_by))  # no engine started it in time
    assert expired.start(thread=False)
    try:
        expired.tick()
    finally:
        expired.stop()
    with open_gui(home) as window:
        details = open_details(window, queued["id"], "enter")
        assert details.values["Status"] == "cancelled (expired)"
        reason = other.get_run(queued["id"])["error"]
        assert reason.startswith("expired: asked for at ")
        assert (details.values["Expired"], details.values["Start by"]) == (reason, shown_by)


def test_a_run_asked_for_while_an_engine_ran_shows_no_start_by(home: Path, display: str) -> None:  # noqa: F811
    other = cs.Service(cs.Store(home))
    run = failed_run(other.store, make_task(other, "Nightly")["id"])
    with open_gui(home) as window:
        details = open_details(window, run.id, "enter")
        assert "Start by" not in details.values and "Expired" not in details.values
