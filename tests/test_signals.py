"""What the real CLI's signals look like to a person: tokens with the cached part, both
durations named, a failure said once with its kind, claude's API retries, a lost
session, permission denials. Through the CLI (`main`), on the fake claude."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from run_helpers import Recorder

import claude_scheduler as cs

Cli = Callable[..., Result]
CliJson = Callable[..., Any]

pytestmark = pytest.mark.usefixtures("record")  # every session is recorded, leftovers killed


def create_task(cli_json: CliJson, prompt: str, *options: str) -> dict[str, Any]:
    return dict(cli_json("tasks", "create", "--name", prompt[:40], "--prompt", prompt, *options))


def runs_of(home: Path, task_id: str) -> list[dict[str, Any]]:
    """Oldest first."""
    return list(reversed(cs.Service(cs.Store(home)).list_runs(task_id=task_id)))


def task_of(home: Path, task_id: str) -> dict[str, Any]:
    return cs.Service(cs.Store(home)).get_task(task_id)


# Tokens and durations ---------------------------------------------------------------


def test_tokens_show_all_input_with_its_cached_part_and_both_durations_are_named(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, "Work. [cache=45000]")

    ran = cli("tasks", "run", task["id"])

    (run,) = runs_of(home, task["id"])
    assert (run["input_tokens"], run["cache_read_tokens"], run["output_tokens"]) == (45062, 45000, 17)
    lines = ran.out.splitlines()
    assert (
        lines[-2] == "✓ Done in 3 turns · $0.0123 · 45,062 in (45,000 cached) / 17 out tokens · claude 4.2s"
    )
    wall = f"{run['duration_seconds']:.1f}s"
    assert lines[-1] == (
        f"Run {run['id'][:8]} success · wall time {wall} · claude 4.2s · cost $0.0123"
        " · 45,062 in (45,000 cached) / 17 out tokens"
    )
    listed = cli("runs", "list").out.splitlines()
    assert listed[0].split() == [
        *("TASK", "ID", "STATUS", "TRIGGER", "STARTED", "WALL", "TIME", "COST", "TOKENS", "ERROR")
    ]
    assert " ".join(listed[1].split()[-9:]) == f"{wall} $0.0123 45,062 in (45,000 cached) / 17 out"
    shown = dict(line.split(None, 1) for line in cli("runs", "get", run["id"]).out.splitlines())
    assert shown["tokens"] == "45,062 in (45,000 cached) / 17 out"
    assert shown["durations"] == f"wall time {wall} · claude 4.2s"


# A failure said once, with its kind ---------------------------------------------------


def test_an_api_error_is_said_once_with_its_kind_after_claudes_retries(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, "Hello. [api_error=401][api_retry=2]")

    ran = cli("tasks", "run", task["id"])

    assert ran.code == 1
    (run,) = runs_of(home, task["id"])
    assert (run["failure_kind"], run["error"]) == ("auth", "Invalid API key · Fix external API key")
    lines = ran.out.splitlines()
    assert lines[2:] == [
        "API key refused (401), retry 1 of 10 in 0.5 s",
        "API key refused (401), retry 2 of 10 in 1 s",
        "✗ Failed (auth) after 1 turn · $0.0000 · claude 4.2s — Invalid API key · Fix external API key",
        f"Run {run['id'][:8]} failed (auth) · wall time {run['duration_seconds']:.1f}s · claude 4.2s"
        " · cost $0.0000",
    ]
    assert ran.out.count("Invalid API key") == 1
    listed = cli("runs", "list").out.splitlines()[1]
    assert "failed (auth)" in listed and "Invalid API key · Fix external API key" in listed


# A lost session -------------------------------------------------------------------------


def test_a_resume_of_a_lost_session_drops_it_and_the_next_run_starts_anew_saying_so(
    home: Path, cli: Cli, cli_json: CliJson, record: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_SESSIONS", "1")  # the fake keeps sessions under HOME
    task = create_task(cli_json, "Carry on.", "--session-mode", "resume")
    assert cli("tasks", "run", task["id"]).code == 0
    (first,) = runs_of(home, task["id"])
    (kept,) = Path.home().glob(f".claude/projects/*/{first['session_id']}.jsonl")
    kept.unlink()  # claude has lost it (another machine, cleaned up...)

    failed = cli("tasks", "run", task["id"])

    lost = runs_of(home, task["id"])[1]
    assert failed.code == 1
    assert lost["status"] == "failed" and lost["failure_kind"] == "missing_session"
    assert lost["error"] == f"No conversation found with session ID: {first['session_id']}"
    assert task_of(home, task["id"])["last_session_id"] is None
    assert "the task's next run starts a new one" in failed.out
    assert failed.out.count("No conversation found") == 1  # claude's stderr and result say it: shown once

    again = cli("tasks", "run", task["id"])

    third = runs_of(home, task["id"])[2]
    assert again.code == 0 and third["status"] == "success"
    assert (
        f"starting a new session: claude no longer had the last one ({first['session_id'][:8]})" in again.out
    )
    argvs = [entry["argv"] for entry in record.entries()]
    assert argvs[1][-2:] == ["--resume", first["session_id"]]
    assert "--resume" not in argvs[2]
    assert third["session_id"] != first["session_id"]
    assert task_of(home, task["id"])["last_session_id"] == third["session_id"]


# Permission denials ------------------------------------------------------------------------

DENIED_CALL = "Bash: touch made-by-claude.txt && echo touched"


def test_a_run_with_denials_is_marked_wherever_it_is_shown(home: Path, cli: Cli, cli_json: CliJson) -> None:
    task = create_task(cli_json, "Touch a file. [denied=Bash]")

    ran = cli("tasks", "run", task["id"])

    (run,) = runs_of(home, task["id"])
    assert ran.code == 0 and run["status"] == "success"
    assert run["failure_kind"] is None
    assert [denial["tool_name"] for denial in run["permission_denials"]] == ["Bash"]
    summary = [line for line in ran.out.splitlines() if line.startswith(("✓", "⚠"))]
    assert summary == [
        "⚠ Done with 1 permission denial (Bash) in 3 turns · $0.0123 · 62 in / 17 out tokens · claude 4.2s"
    ]
    assert ran.out.splitlines()[-1].endswith(" · 1 permission denial (Bash)")
    assert re.split(r"\s{2,}", cli("runs", "list").out.splitlines()[1])[2] == "success ⚠1"
    shown = cli("runs", "get", run["id"]).out.splitlines()
    assert "denied                 1 permission denial (Bash)" in shown
    assert f"denied 1               {DENIED_CALL}" in shown


def test_a_task_that_fails_on_denials_fails_naming_the_refused_calls(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, "Touch a file. [denied=Bash]", "--fail-on-denials", "--retries", "2")
    assert task["fail_on_permission_denials"] is True

    ran = cli("tasks", "run", task["id"])

    (run,) = runs_of(home, task["id"])
    error = f"claude was refused 1 tool call: {DENIED_CALL}"
    assert ran.code == 1
    assert (run["status"], run["failure_kind"], run["error"]) == ("failed", "permission_denied", error)
    assert f"✗ Run failed: {error}" in ran.out.splitlines()
    assert re.split(r"\s{2,}", cli("runs", "list").out.splitlines()[1])[2] == "failed (permission denied) ⚠1"
    edited = cli_json("tasks", "update", task["id"], "--no-fail-on-denials")
    assert edited["fail_on_permission_denials"] is False
    assert cli("tasks", "run", task["id"]).code == 0


def test_fail_on_permission_denials_through_the_api_is_in_its_document_and_checked(home: Path) -> None:
    from test_api import Api

    store = cs.Store(home)
    server = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    server.start()
    api = Api(server, cs.api_token(store.home, create=False))
    try:
        schemas = api.ok("GET", "/api/openapi.json")["components"]["schemas"]
        assert schemas["TaskInput"]["properties"]["fail_on_permission_denials"]["type"] == "boolean"
        task = api.ok(
            "POST", "/api/tasks", {"name": "T", "prompt": "P", "fail_on_permission_denials": True}, 201
        )
        assert task["fail_on_permission_denials"] is True
        error = api.fails(
            "PATCH", f"/api/tasks/{task['id']}", {"fail_on_permission_denials": "yes"}, status=422
        )
        assert error["field"] == "fail_on_permission_denials"
        patched = api.ok("PATCH", f"/api/tasks/{task['id']}", {"fail_on_permission_denials": False})
        assert patched["fail_on_permission_denials"] is False
    finally:
        api.close()
        server.stop()


# After a foreground run -----------------------------------------------------------------


def test_a_foreground_limit_says_it_is_waited_out_and_until_when_in_words(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, "Hello. [usage_limit=4102444800]", "--retries", "2")  # resets in 2100

    ran = cli("tasks", "run", task["id"])

    assert ran.code == 1
    assert "Not retried: a limit is waited out, not retried (see `cli engine status`).\n" in ran.err
    assert "New runs are on hold until 2100-01-01 00:01 (UTC) (usage limit); " in ran.err
    assert "WARNING" not in ran.err  # said in words, not as a log line


def test_a_foreground_failure_that_would_repeat_says_so(cli: Cli, cli_json: CliJson) -> None:
    task = create_task(cli_json, "Hello. [max_budget]", "--retries", "2")

    ran = cli("tasks", "run", task["id"])

    assert ran.code == 1
    assert ran.err == "Not retried: a budget failure would fail the same way again.\n"


def test_tool_rules_are_split_alike_in_every_door(home: Path) -> None:
    service = cs.Service(cs.Store(home))  # what the API and the window call
    task = service.create_task(
        {"name": "t", "prompt": "p", "allowed_tools": ["Bash(git log, git diff),Read", "Edit"]}
    )
    assert task["allowed_tools"] == ["Bash(git log, git diff)", "Read", "Edit"]
    with pytest.raises(cs.Invalid) as refused:
        service.create_task({"name": "u", "prompt": "p", "disallowed_tools": ["Bash(rm"]})
    assert refused.value.field == "disallowed_tools[0]"
