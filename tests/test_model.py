"""The model: Job, Task, Run, schedules and enums; validation that names the field and the rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import claude_scheduler as cs

JOB_ID = "11111111-1111-4111-8111-111111111111"
TASK_ID = "22222222-2222-4222-8222-222222222222"
RUN_ID = "33333333-3333-4333-8333-333333333333"
STAMP = "2026-03-01T10:00:00.000+00:00"


def task_data(**changes: Any) -> dict[str, Any]:
    """A stored task (as tasks.json holds it) with `changes` applied."""
    return {
        "id": TASK_ID,
        "name": "Review",
        "prompt": "Review the diff.",
        "created_at": STAMP,
        "updated_at": STAMP,
        **changes,
    }


def job_data(**changes: Any) -> dict[str, Any]:
    return {"id": JOB_ID, "name": "Ship it", "created_at": STAMP, "updated_at": STAMP, **changes}


def invalid(parse: Callable[[], object]) -> cs.Invalid:
    with pytest.raises(cs.Invalid) as caught:
        parse()
    return caught.value


def service(home: Path) -> cs.Service:
    return cs.Service(cs.Store(home))


# Enums -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        (cs.JobStatus, {"pending", "in_progress", "completed", "failed"}),
        (cs.PermissionMode, {"default", "acceptEdits", "auto", "bypassPermissions", "dontAsk", "plan"}),
        (cs.SessionMode, {"new", "resume", "previous"}),
        (cs.Overlap, {"skip", "queue", "parallel"}),
        (cs.CatchUp, {"skip", "once"}),
        (cs.ScheduleType, {"manual", "once", "interval", "cron", "startup", "file_watch"}),
        (
            cs.RunStatus,
            {
                "queued",
                "running",
                "success",
                "failed",
                "timeout",
                "cancelled",
                "skipped",
                "missed",
                "deferred",
                "interrupted",
            },
        ),
        (
            cs.Trigger,
            {"manual", "schedule", "catch_up", "startup", "file_watch", "job", "retry", "api", "cli", "task"},
        ),
    ],
)
def test_enums_hold_exactly_the_values_of_the_spec(kind: type[Any], values: set[str]) -> None:
    assert {member.value for member in kind} == values


# Defaults and round trips ------------------------------------------------------


def test_a_minimal_task_gets_the_documented_defaults() -> None:
    task = cs.Task.from_dict(task_data(), strict=True)
    assert task.job_id is None
    assert task.model == "sonnet"
    assert task.permission_mode is cs.PermissionMode.DEFAULT
    assert task.session_mode is cs.SessionMode.NEW
    assert task.timeout_seconds == 1800
    assert task.schedule.type is cs.ScheduleType.MANUAL
    assert task.enabled is True
    assert task.overlap is cs.Overlap.SKIP
    assert task.catch_up is cs.CatchUp.ONCE
    assert task.retry.to_dict() == {"max_attempts": 0, "delay_seconds": 60, "backoff": 2.0}
    assert (task.allowed_tools, task.disallowed_tools, task.env) == ([], [], {})
    assert (task.max_turns, task.append_system_prompt, task.working_directory) == (None, None, None)


def test_a_minimal_job_is_pending_with_an_empty_order() -> None:
    job = cs.Job.from_dict(job_data())
    assert job.status is cs.JobStatus.PENDING
    assert (job.description, job.working_directory, job.task_order) == ("", None, [])


FULL_TASK = task_data(
    job_id=JOB_ID,
    model="claude-opus-4-1-20250805",
    permission_mode="acceptEdits",
    working_directory="/srv/app",
    allowed_tools=["Read", "Grep"],
    disallowed_tools=["Bash"],
    max_turns=12,
    append_system_prompt="Be brief.",
    system_prompt="You review code.",
    max_budget_usd=2.5,
    fallback_model="sonnet",
    add_dirs=["~/shared", "/srv/data"],
    mcp_config="/srv/app/mcp.json",
    strict_mcp_config=True,
    extra_args=["--effort", "high"],
    session_mode="resume",
    timeout_seconds=600,
    enabled=False,
    overlap="queue",
    catch_up="skip",
    retry={"max_attempts": 3, "delay_seconds": 30, "backoff": 1.5},
    env={"APP_ENV": "test"},
    fail_on_permission_denials=True,
    on_failure="continue",
    skip_in_job=True,
    run_after={"task_id": "22222222-2222-4222-8222-222222222222", "when": "failed"},
)

SCHEDULES = [
    {"type": "manual"},
    {"type": "once", "at": "2026-04-01T07:30:00.000+00:00"},
    {"type": "interval", "every_seconds": 900, "anchor": "2026-03-01T00:00:00.000+00:00"},
    {"type": "interval", "every_seconds": 60, "anchor": None},
    {"type": "cron", "expression": "0 9 * * mon-fri", "timezone": "Europe/Amsterdam"},
    {"type": "cron", "expression": "@daily", "timezone": None},
    {"type": "startup"},
    {"type": "file_watch", "path": "/srv/app/docs", "recursive": False, "debounce_seconds": 2.5},
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s["type"])
def test_task_round_trips_through_its_dict_with_every_schedule_kind(schedule: dict[str, Any]) -> None:
    data = {**FULL_TASK, "schedule": schedule}
    stored = cs.Task.from_dict(data, strict=True).to_dict(derived=False)
    assert stored == data
    assert cs.Task.from_dict(stored).to_dict(derived=False) == stored


def test_job_round_trips_through_its_dict() -> None:
    data = job_data(
        description="All of it",
        status="in_progress",
        working_directory="~/src",
        task_order=[TASK_ID],
        schedule={"type": "cron", "expression": "0 3 * * 1-5", "timezone": "UTC"},
        overlap="queue",
        catch_up="skip",
    )
    assert cs.Job.from_dict(data).to_dict() == data


def test_run_round_trips_through_its_dict() -> None:
    data = {
        "id": RUN_ID,
        "task_id": TASK_ID,
        "status": "success",
        "trigger": "catch_up",
        "created_at": "2026-03-01T10:00:00.000+00:00",
        "scheduled_for": "2026-03-01T09:59:00.000+00:00",
        "started_at": "2026-03-01T10:00:01.000+00:00",
        "finished_at": "2026-03-01T10:01:31.500+00:00",
        "exit_code": 0,
        "attempt": 2,
        "session_id": "sess-1",
        "model": "sonnet",
        "cost_usd": 0.0125,
        "input_tokens": 1200,
        "output_tokens": 340,
        "num_turns": 3,
        "result": "Done.",
        "error": None,
        "pid": 4242,
        "owner": "host:1",
        "stop_requested": False,
        "missed_count": None,
        "job_run_id": None,
        "failure_kind": None,
        "limit_resets_at": None,
        "start_by": None,
        "cache_read_tokens": 1000,
        "cache_creation_tokens": 100,
        "model_usage": {"claude-sonnet-5": {"input_tokens": 100, "output_tokens": 340, "cost_usd": 0.0125}},
        "permission_denials": [{"tool_name": "Bash", "tool_use_id": "t1", "tool_input": {"command": "ls"}}],
        "session_duration_ms": 88000,
        "duration_seconds": 90.5,
    }
    run = cs.Run.from_dict(data)
    assert run.status is cs.RunStatus.SUCCESS
    assert run.trigger is cs.Trigger.CATCH_UP
    assert run.to_dict() == data


def test_a_run_in_memory_and_read_back_says_the_same_wall_time() -> None:
    # Started at .000999 s, ended at .251 s: 0.250001 s in memory (0.2 to one place),
    # but the store keeps milliseconds (.000 and .251: 0.3 to one place when read back).
    queued = cs.Run.from_dict({"id": RUN_ID, "task_id": TASK_ID, "status": "queued"})
    run = dataclasses.replace(
        queued,
        status=cs.RunStatus.SUCCESS,
        started_at=datetime(2026, 3, 1, 10, 0, 0, 999, tzinfo=UTC),
        finished_at=datetime(2026, 3, 1, 10, 0, 0, 251_000, tzinfo=UTC),
    )
    read_back = cs.Run.from_dict(run.to_dict())

    assert cs.format_durations(run.to_dict()) == cs.format_durations(read_back.to_dict()) == "wall time 0.3s"


def test_timestamps_are_stored_in_utc_whatever_offset_they_came_with() -> None:
    task = cs.Task.from_dict(
        task_data(
            created_at="2026-03-01T12:00:00+02:00",
            schedule={"type": "once", "at": "2026-03-02T09:00:00-05:00"},
        )
    )
    stored = task.to_dict(derived=False)
    assert stored["created_at"] == "2026-03-01T10:00:00.000+00:00"
    assert stored["schedule"]["at"] == "2026-03-02T14:00:00.000+00:00"


def test_only_the_fields_of_the_schedule_type_are_kept() -> None:
    schedule = cs.Schedule.from_dict({"type": "cron", "expression": "*/5 * * * *", "every_seconds": 60})
    assert schedule.to_dict() == {"type": "cron", "expression": "*/5 * * * *", "timezone": None}


def test_a_task_without_job_id_is_unassigned() -> None:
    data = task_data()
    assert "job_id" not in data
    task = cs.Task.from_dict(data)
    assert task.job_id is None
    assert task.to_dict()["job_id"] is None


def test_derived_fields_are_shown_but_never_stored() -> None:
    task = cs.Task.from_dict(task_data(schedule={"type": "interval", "every_seconds": 3600}))
    task.apply_derived({"next_run_at": "2026-03-01T11:00:00Z", "last_run_status": "failed"})
    shown = task.to_dict()
    assert shown["next_run_at"] == "2026-03-01T11:00:00.000+00:00"
    assert shown["last_run_status"] == "failed"
    assert shown["schedule_text"] == "Every 1 hour"
    stored = task.to_dict(derived=False)
    assert not {"next_run_at", "last_run_at", "last_run_status", "schedule_text"} & set(stored)


# Validation ------------------------------------------------------------------

LONG_NAME = "x" * 201

TASK_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({"name": "   "}, "name", "name: is required and must not be empty"),
    ({"name": LONG_NAME}, "name", "name: must be at most 200 characters (got 201)"),
    ({"prompt": ""}, "prompt", "prompt: is required and must not be empty"),
    ({"name": 7}, "name", "name: must be a string"),
    (
        {"permission_mode": "yolo"},
        "permission_mode",
        "permission_mode: must be one of default, acceptEdits, auto, bypassPermissions, dontAsk, plan "
        "(got 'yolo')",
    ),
    (
        {"session_mode": "fork"},
        "session_mode",
        "session_mode: must be one of new, resume, previous (got 'fork')",
    ),
    ({"overlap": "kill"}, "overlap", "overlap: must be one of skip, queue, parallel (got 'kill')"),
    ({"catch_up": "all"}, "catch_up", "catch_up: must be one of skip, once (got 'all')"),
    ({"timeout_seconds": 0}, "timeout_seconds", "timeout_seconds: must be between 1 and 604800 (got 0)"),
    ({"timeout_seconds": 1.5}, "timeout_seconds", "timeout_seconds: must be a whole number"),
    ({"max_turns": 0}, "max_turns", "max_turns: must be between 1 and 10000 (got 0)"),
    ({"enabled": "yes"}, "enabled", "enabled: must be true or false"),
    ({"job_id": "job-1"}, "job_id", "job_id: must be a UUID (got 'job-1')"),
    ({"id": "nope"}, "id", "id: must be a UUID (got 'nope')"),
    ({"allowed_tools": "Read"}, "allowed_tools", "allowed_tools: must be a list of strings"),
    (
        {"allowed_tools": ["Read", " "]},
        "allowed_tools[1]",
        "allowed_tools[1]: is required and must not be empty",
    ),
    ({"env": {"1X": "a"}}, "env", "env: '1X' is not a valid environment variable name"),
    ({"env": {"A": 1}}, "env.A", "env.A: must be a string"),
    (
        {"retry": {"max_attempts": -1}},
        "retry.max_attempts",
        "retry.max_attempts: must be between 0 and 100 (got -1)",
    ),
    ({"retry": {"backoff": 0.5}}, "retry.backoff", "retry.backoff: must be between 1 and 10 (got 0.5)"),
    ({"created_at": "yesterday"}, "created_at", "created_at: 'yesterday' is not an ISO 8601 date and time"),
    ({"schedule": "daily"}, "schedule", "schedule: must be a JSON object"),
    (
        {"schedule": {"type": "weekly"}},
        "schedule.type",
        "schedule.type: must be one of manual, once, interval, cron, startup, file_watch (got 'weekly')",
    ),
    (
        {"schedule": {"type": "cron", "expression": "61 * * * *"}},
        "schedule.expression",
        "schedule.expression: minute field 61 is out of range 0-59",
    ),
    (
        {"schedule": {"type": "cron", "expression": "0 9 * * * *"}},
        "schedule.expression",
        "schedule.expression: expected 5 fields (minute hour day-of-month month day-of-week), got 6",
    ),
    (
        {"schedule": {"type": "cron", "expression": "0 9 * * *", "timezone": "Mars/Olympus"}},
        "schedule.timezone",
        "schedule.timezone: unknown time zone 'Mars/Olympus' (use an IANA name like Europe/Amsterdam)",
    ),
    (
        {"schedule": {"type": "interval", "every_seconds": 59}},
        "schedule.every_seconds",
        "schedule.every_seconds: must be between 60 and 31622400 (got 59)",
    ),
    ({"schedule": {"type": "once"}}, "schedule.at", "schedule.at: is required"),
    (
        {"schedule": {"type": "once", "at": "tomorrow"}},
        "schedule.at",
        "schedule.at: 'tomorrow' is not an ISO 8601 date and time",
    ),
    (
        {"schedule": {"type": "file_watch", "path": "/tmp", "debounce_seconds": -1}},
        "schedule.debounce_seconds",
        "schedule.debounce_seconds: must be between 0 and 3600 (got -1)",
    ),
]


@pytest.mark.parametrize(("changes", "field", "message"), TASK_ERRORS, ids=[e[2][:60] for e in TASK_ERRORS])
def test_task_errors_name_the_field_and_the_rule(changes: dict[str, Any], field: str, message: str) -> None:
    error = invalid(lambda: cs.Task.from_dict(task_data(**changes), strict=True))
    assert error.field == field
    assert str(error) == message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "name: is required and must not be empty"),
        ({"name": LONG_NAME}, "name: must be at most 200 characters (got 201)"),
        ({"status": "done"}, "status: must be one of pending, in_progress, completed, failed (got 'done')"),
        ({"task_order": ["a"]}, "task_order[0]: must be a UUID (got 'a')"),
    ],
)
def test_job_errors_name_the_field_and_the_rule(changes: dict[str, Any], message: str) -> None:
    assert str(invalid(lambda: cs.Job.from_dict(job_data(**changes)))) == message


def test_run_errors_name_the_field_and_the_rule() -> None:
    error = invalid(lambda: cs.Run.from_dict({"id": RUN_ID, "task_id": TASK_ID, "status": "done"}))
    assert str(error).startswith("status: must be one of queued, running, success")


@pytest.mark.parametrize(
    ("name", "value"), [("attempt", "x"), ("pid", "abc"), ("cost_usd", "lots"), ("exit_code", [1])]
)
def test_stored_run_values_are_checked_for_type(name: str, value: object) -> None:
    data = {"id": RUN_ID, "task_id": TASK_ID, "status": "running", name: value}
    assert invalid(lambda: cs.Run.from_dict(data)).field == name


def test_names_are_trimmed_and_200_characters_are_allowed() -> None:
    assert cs.Job.from_dict(job_data(name="  Ship it  ")).name == "Ship it"
    assert cs.Task.from_dict(task_data(name="y" * 200)).name == "y" * 200


def test_every_seconds_of_exactly_60_is_allowed() -> None:
    schedule = cs.Schedule.from_dict({"type": "interval", "every_seconds": 60}, strict=True)
    assert schedule.every_seconds == 60


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"prompt": "p"}, "name: is required"),
        ({"name": "n"}, "prompt: is required"),
        ({"name": "n", "prompt": "p", "schedule": {"type": "cron"}}, "schedule.expression: is required"),
        ({"name": "n", "prompt": "p", "schedule": {"type": "file_watch"}}, "schedule.path: is required"),
    ],
)
def test_a_missing_required_field_says_it_is_required(home: Path, data: dict[str, Any], message: str) -> None:
    with pytest.raises(cs.Invalid) as caught:
        service(home).create_task(data)
    assert str(caught.value).startswith(message)


# Unknown fields: an error on user input, kept when read from the files ----------


def test_unknown_fields_on_user_input_are_rejected_naming_the_field(home: Path) -> None:
    backend = service(home)
    with pytest.raises(cs.Invalid) as caught:
        backend.create_task({"name": "n", "prompt": "p", "colour": "red"})
    assert caught.value.field == "colour"
    assert str(caught.value).startswith("colour: unknown field (known fields: add_dirs, allowed_tools,")
    with pytest.raises(cs.Invalid) as caught:
        backend.create_job({"name": "n", "owner": "me"})
    assert str(caught.value).startswith("owner: unknown field")
    assert backend.list_tasks() == []
    assert backend.list_jobs() == []


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"schedule": {"type": "cron", "expression": "* * * * *", "every_seconds": 60}},
            "schedule.every_seconds",
        ),
        ({"retry": {"max_attempts": 1, "tries": 2}}, "retry.tries"),
    ],
)
def test_unknown_nested_fields_on_user_input_are_named_with_their_path(
    home: Path, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(cs.Invalid) as caught:
        service(home).create_task({"name": "n", "prompt": "p", **data})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: unknown field")


def test_unknown_fields_read_from_a_file_are_kept_on_the_record() -> None:
    task = cs.Task.from_dict(task_data(colour="red", plugin={"a": [1, 2]}))
    assert task.to_dict(derived=False)["colour"] == "red"
    assert task.to_dict(derived=False)["plugin"] == {"a": [1, 2]}
    job = cs.Job.from_dict(job_data(owner="me"))
    assert job.to_dict()["owner"] == "me"
    run = cs.Run.from_dict({"id": RUN_ID, "task_id": TASK_ID, "status": "queued", "host": "box"})
    assert run.to_dict()["host"] == "box"


def test_read_only_fields_sent_back_by_a_client_are_ignored(home: Path) -> None:
    backend = service(home)
    job = backend.create_job({"name": "J", "id": JOB_ID, "progress": {"text": "9/9"}, "tasks": []})
    assert job["id"] != JOB_ID
    assert job["progress"]["text"] == "0/0"


# One validation path: the CLI says exactly what the Service says ------------------

SAME_ERRORS = [
    (
        ["tasks", "create", "--name", "t", "--prompt", "p", "--cron", "61 * * * *"],
        {"name": "t", "prompt": "p", "schedule": {"type": "cron", "expression": "61 * * * *"}},
    ),
    (
        ["tasks", "create", "--name", "t", "--prompt", "p", "--every", "30s"],
        {"name": "t", "prompt": "p", "schedule": {"type": "interval", "every_seconds": 30}},
    ),
    (
        [
            "tasks",
            "create",
            "--name",
            "t",
            "--prompt",
            "p",
            "--cron",
            "0 9 * * *",
            "--timezone",
            "Nowhere/City",
        ],
        {
            "name": "t",
            "prompt": "p",
            "schedule": {"type": "cron", "expression": "0 9 * * *", "timezone": "Nowhere/City"},
        },
    ),
    (["tasks", "create", "--name", LONG_NAME, "--prompt", "p"], {"name": LONG_NAME, "prompt": "p"}),
    (["tasks", "create", "--name", "t", "--prompt", "  "], {"name": "t", "prompt": "  "}),
    (
        ["tasks", "create", "--name", "t", "--prompt", "p", "--max-turns", "0"],
        {"name": "t", "prompt": "p", "max_turns": 0},
    ),
    (
        ["tasks", "create", "--name", "t", "--prompt", "p", "--env", "1X=a"],
        {"name": "t", "prompt": "p", "env": {"1X": "a"}},
    ),
    (["jobs", "create", "--name", " "], {"name": " "}),
]


@pytest.mark.parametrize(
    ("argv", "data"), SAME_ERRORS, ids=[" ".join(a[:2] + a[-2:]) for a, _ in SAME_ERRORS]
)
def test_cli_and_service_give_the_same_validation_error(
    cli: Callable[..., Any], home: Path, argv: list[str], data: dict[str, Any]
) -> None:
    backend = service(home)
    create = backend.create_job if argv[0] == "jobs" else backend.create_task
    with pytest.raises(cs.Invalid) as caught:
        create(data)
    result = cli(*argv)
    assert result.code == 1
    assert result.out == ""
    assert result.err == f"error: {cs.cli_error_text(caught.value)}\n"  # named by the option typed
    assert backend.list_tasks() == [] and backend.list_jobs() == []


def test_an_update_is_validated_like_a_create(cli: Callable[..., Any], home: Path) -> None:
    task = service(home).create_task({"name": "t", "prompt": "p"})
    result = cli("tasks", "update", task["id"], "--cron", "0 24 * * *")
    assert (result.code, result.err) == (
        1,
        "error: --cron: hour field 24 is out of range 0-23\n",
    )
    assert service(home).get_task(task["id"])["schedule"] == {"type": "manual"}


# Progress and status: pure functions of the tasks' latest runs ----------------------


def latest(*statuses: str | None) -> list[cs.RunStatus | None]:
    """The latest-run statuses of a job's tasks, as the store hands them over."""
    return [cs.RunStatus(status) if status else None for status in statuses]


@pytest.mark.parametrize(
    ("statuses", "counts", "text", "percent"),
    [
        ((), (0, 0, 0, 0), "0/0", 0),
        ((None, "queued", "success", "failed"), (1, 1, 1, 1), "1/4", 25),
        (("success", "success", "success"), (0, 0, 3, 0), "3/3", 100),
        (("running", "timeout", "cancelled", "interrupted"), (0, 1, 0, 3), "0/4", 0),
        (("skipped", "missed", "success"), (2, 0, 1, 0), "1/3", 33),
        (("success", "success", None), (1, 0, 2, 0), "2/3", 67),
    ],
)
def test_job_progress_counts_tasks_by_their_latest_run(
    statuses: tuple[str | None, ...], counts: tuple[int, int, int, int], text: str, percent: int
) -> None:
    progress = cs.job_progress(latest(*statuses))
    assert (progress["never_run"], progress["running"], progress["success"], progress["failed"]) == counts
    assert (progress["total"], progress["done"]) == (len(statuses), counts[2])
    assert (progress["text"], progress["percent"]) == (text, percent)


@pytest.mark.parametrize(
    ("statuses", "status"),
    [
        ((), "pending"),
        ((None, None), "pending"),
        (("success", None), "pending"),
        (("success", "skipped"), "pending"),
        (("success", "success"), "completed"),
        (("success", "failed"), "failed"),
        (("timeout", "success"), "failed"),
        (("failed", "running"), "in_progress"),
        (("queued", "success"), "in_progress"),
    ],
)
def test_job_status_is_derived_from_the_latest_runs(statuses: tuple[str | None, ...], status: str) -> None:
    assert cs.derive_job_status(latest(*statuses)) == status


def test_a_time_without_offset_is_read_in_the_given_zone_and_kept_in_utc() -> None:
    moment = cs.parse_time("2026-03-01T09:00", "at", cs.get_zone("Asia/Tokyo"))
    assert moment == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    assert moment.tzinfo is UTC
