"""The contract with the REAL Claude Code CLI (the pinned version .ci/run installs).

The scheduler runs `tests/real_claude.py` as its claude: that wrapper runs the real CLI
inside a loopback-only network namespace, talking to the stand-in Messages API
(`standin_api.py`) that this test process serves on a Unix socket. So each test drives
the scheduler's real doors (a foreground `cli tasks run`, `serve`, the engine) through a
real session, and checks what the user sees and what is stored against what the CLI's
stream said and what the stand-in received.

Without root, a working `unshare --net` or the installed CLI these tests skip, saying
why; in CI (`CI=true`) they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import real_claude
import standin_api as api
from conftest import Result, child_env
from run_helpers import (
    SCRIPT,
    WAIT_SECONDS,
    FakeClock,
    drive,
    pid_gone,
    run_of,
    stop_process,
    wait_for,
    wait_status,
)

import claude_scheduler as cs

WRAPPER = Path(real_claude.__file__).resolve()
CLAUDE = real_claude.installed_claude()  # read before any fixture moves HOME
MODEL = "claude-sonnet-5"  # what the pinned CLI resolves `sonnet` to
UNCACHED, CACHE_CREATION, CACHE_READ = 1234, 100, 50  # the stand-in's usage per answer
COST_ONE_ANSWER = 0.004932  # what the CLI computes for one such answer
SESSION_SECONDS = 120.0  # a deadline for a whole real session (the CLI starts in ~1s, slower under load)
TASK_TIMEOUT = "2m"  # no contract task may hang a test for the default 30 minutes
Cli = Callable[..., Result]
CliJson = Callable[..., Any]


@cache
def problem() -> str | None:
    return real_claude.sandbox_problem(CLAUDE)


@dataclass
class Sandbox:
    """The stand-in API and what the real CLI keeps between runs of one test."""

    api: api.StandIn
    project: Path  # the tasks' working folder
    claude_home: Path  # the CLI's HOME: its sessions live here, so --resume finds them
    argv_log: Path  # the wrapper writes the argv of each call here
    monkeypatch: pytest.MonkeyPatch

    def argvs(self) -> list[list[str]]:
        """The options the scheduler gave claude, one list per session."""
        lines = self.argv_log.read_text(encoding="utf-8").splitlines() if self.argv_log.exists() else []
        return [json.loads(line) for line in lines]

    def subscription(self) -> None:
        """Run the CLI as a claude.ai subscriber (OAuth token) instead of with an API key."""
        self.monkeypatch.setenv(real_claude.AUTH_ENV, "oauth")


@pytest.fixture
def sandbox(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    reason = problem()
    if reason:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):  # as test_gui.py
            pytest.fail(f"the contract tests must run in CI: {reason}")
        pytest.skip(reason)
    socket_dir = Path(tempfile.mkdtemp(prefix="ccs-api-"))  # short: a socket path has ~100 bytes
    standin = api.StandIn(socket_dir / "api.sock")
    project = tmp_path / "project"
    claude_home = tmp_path / "claude-home"
    project.mkdir()
    claude_home.mkdir()
    monkeypatch.setenv(cs.CLAUDE_ENV, str(WRAPPER))
    monkeypatch.setenv(real_claude.CLAUDE_ENV, str(CLAUDE))
    monkeypatch.setenv(real_claude.SOCKET_ENV, str(standin.socket_path))
    monkeypatch.setenv(real_claude.HOME_ENV, str(claude_home))
    monkeypatch.setenv(real_claude.ARGV_LOG_ENV, str(tmp_path / "argv.jsonl"))
    monkeypatch.delenv(real_claude.AUTH_ENV, raising=False)
    try:
        yield Sandbox(standin, project, claude_home, tmp_path / "argv.jsonl", monkeypatch)
    finally:
        standin.close()
        shutil.rmtree(socket_dir, ignore_errors=True)


def create_task(cli_json: CliJson, sandbox: Sandbox, prompt: str, *options: str) -> dict[str, Any]:
    words = ["--name", prompt[:40], "--prompt", prompt, "--working-dir", str(sandbox.project)]
    if "--timeout" not in options:
        words += ["--timeout", TASK_TIMEOUT]
    return dict(cli_json("tasks", "create", *words, *options))


def runs_of(home: Path, task_id: str) -> list[dict[str, Any]]:
    return list(cs.Service(cs.Store(home)).list_runs(task_id=task_id))


def only_run(home: Path, task_id: str) -> dict[str, Any]:
    (run,) = runs_of(home, task_id)
    return run


def stream(home: Path, run_id: str) -> list[dict[str, Any]]:
    """The JSON lines the CLI printed for a run, as its log kept them."""
    log = (home / cs.LOGS_DIR / f"{run_id}.log").read_text(encoding="utf-8")
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def line_of(lines: list[dict[str, Any]], kind: str, subtype: str | None = None) -> dict[str, Any]:
    (found,) = [
        line for line in lines if line["type"] == kind and (subtype is None or line.get("subtype") == subtype)
    ]
    return found


def the_result(home: Path, run_id: str) -> dict[str, Any]:
    return line_of(stream(home, run_id), "result")


def foreground(cli: Cli, task: dict[str, Any]) -> Result:
    return cli("tasks", "run", task["id"])


def times_sent(request: api.Request, prompt: str) -> int:
    """How often `prompt` is in the conversation a request sent."""
    return sum(text.strip() == prompt for text in request.texts())


def prompt_sent(request: api.Request, prompt: str) -> bool:
    return times_sent(request, prompt) > 0


def resumed(argv: list[str]) -> str | None:
    return argv[argv.index("--resume") + 1] if "--resume" in argv else None


####
# The pinned CLI itself
####


def test_the_sandboxed_cli_is_the_pinned_version(sandbox: Sandbox) -> None:
    done = subprocess.run(
        [str(WRAPPER), "--version"], capture_output=True, text=True, timeout=60, check=False
    )

    assert (done.returncode, done.stdout.strip()) == (0, f"{real_claude.PINNED_VERSION} (Claude Code)")


FAKE_TOOLS = {  # a broken `unshare` or `ip` put first on PATH
    "unshare fails": ("unshare", "exit 1"),
    "unshare does not isolate": ("unshare", 'shift 2; exec "$@"'),  # drops `--net --`
    "ip fails": ("ip", "echo 'RTNETLINK answers: Operation not permitted' >&2; exit 2"),
}


@pytest.mark.parametrize("broken", list(FAKE_TOOLS))
def test_the_sandbox_never_starts_the_cli_without_an_isolated_network(
    sandbox: Sandbox, tmp_path: Path, broken: str
) -> None:
    marker = tmp_path / "started"
    fake_cli = tmp_path / "fake-cli"
    fake_cli.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake_cli.chmod(0o755)
    tools = tmp_path / "bin"
    tools.mkdir()
    name, body = FAKE_TOOLS[broken]
    (tools / name).write_text(f"#!/bin/sh\n{body}\n")
    (tools / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", real_claude.CLAUDE_ENV: str(fake_cli)}

    done = subprocess.run(
        [str(WRAPPER), "-p"], env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode != 0
    assert not marker.exists()
    if broken != "unshare fails":
        assert done.returncode == real_claude.SANDBOX_FAILED
        assert done.stderr.rstrip().endswith("; the CLI was not started")


####
# Sessions that work
####


def test_a_foreground_run_shows_and_stores_what_the_real_cli_said(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, sandbox, "Say hello.")

    shown = foreground(cli, task)

    assert shown.code == 0, shown.out + shown.err
    run = only_run(home, task["id"])
    lines = stream(home, run["id"])
    init, result = line_of(lines, "system", "init"), line_of(lines, "result")
    assert (init["claude_code_version"], init["model"], init["cwd"]) == (
        real_claude.PINNED_VERSION,
        MODEL,
        str(sandbox.project),
    )
    out = shown.out.splitlines()
    assert out[0] == f"Running task {task['id'][:8]}: Say hello."
    assert out[1] == f"Session {init['session_id'][:8]} · {MODEL} · {sandbox.project}"
    assert api.ANSWER in out
    cached = CACHE_READ + CACHE_CREATION
    tokens = f"{UNCACHED + cached:,} in ({cached:,} cached)"
    seconds = r"\d+(?:\.\d+)?s"
    closing = rf"Run {run['id'][:8]} success · wall time {seconds} · claude {seconds} · cost \$0\.0049"
    assert re.fullmatch(rf"{closing} · {re.escape(tokens)} / \d+ out tokens", out[-1]), out[-1]
    stored = cli_json("runs", "get", run["id"])
    assert stored["status"] == "success" and stored["error"] is None
    assert stored["session_id"] == result["session_id"] == init["session_id"]
    assert (stored["model"], stored["num_turns"], stored["result"]) == (MODEL, 1, api.ANSWER)
    assert stored["cost_usd"] == pytest.approx(result["total_cost_usd"]) == pytest.approx(COST_ONE_ANSWER)
    (request,) = sandbox.api.messages_requests()
    assert request.body["stream"] is True and request.body["model"] == MODEL
    assert prompt_sent(request, "Say hello.")


def test_tokens_count_the_cached_input_and_the_cost_is_the_clis(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, sandbox, "Say hello.")

    assert foreground(cli, task).code == 0

    run = cli_json("runs", "get", only_run(home, task["id"])["id"])
    usage = the_result(home, run["id"])["modelUsage"][MODEL]
    assert (usage["inputTokens"], usage["cacheReadInputTokens"], usage["cacheCreationInputTokens"]) == (
        UNCACHED,
        CACHE_READ,
        CACHE_CREATION,
    )
    assert run["input_tokens"] == UNCACHED + CACHE_READ + CACHE_CREATION
    assert (run["cache_read_tokens"], run["cache_creation_tokens"]) == (CACHE_READ, CACHE_CREATION)
    assert run["output_tokens"] == usage["outputTokens"] == api.OUTPUT_TOKENS
    assert run["cost_usd"] == pytest.approx(usage["costUSD"])
    assert run["model_usage"] == {
        MODEL: {
            "input_tokens": UNCACHED,
            "cache_read_tokens": CACHE_READ,
            "cache_creation_tokens": CACHE_CREATION,
            "output_tokens": api.OUTPUT_TOKENS,
            "cost_usd": pytest.approx(COST_ONE_ANSWER),
        }
    }
    assert run["session_duration_ms"] == the_result(home, run["id"])["duration_ms"]


def test_a_tool_call_runs_and_its_result_goes_back_to_the_api(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    sandbox.api.play(api.tool_use(), api.text())
    task = create_task(cli_json, sandbox, "Run the marker.", "--allowed-tools", "Bash(echo:*),Bash(pwd)")

    shown = foreground(cli, task)

    assert shown.code == 0, shown.out + shown.err
    first, follow_up = sandbox.api.messages_requests()
    (tool_result,) = follow_up.tool_results()
    assert not first.tool_results()
    assert tool_result["content"] == f"tool-ran-ok\n{sandbox.project}"
    run = cli_json("runs", "get", only_run(home, task["id"])["id"])
    assert (run["status"], run["num_turns"], run["result"]) == ("success", 2, api.ANSWER)
    assert f"  → Bash: {api.MARKER_COMMAND}" in shown.out.splitlines()
    assert f"    tool-ran-ok ⏎ {sandbox.project}" in shown.out.splitlines()


def test_resume_continues_the_clis_conversation_across_runs(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    sandbox.api.play(api.text("The first answer."), api.text("The second answer."))
    task = create_task(cli_json, sandbox, "Remember this.", "--session-mode", "resume")

    assert foreground(cli, task).code == 0
    assert foreground(cli, task).code == 0

    first, second = sorted(runs_of(home, task["id"]), key=lambda run: run["created_at"])
    assert (first["status"], second["status"]) == ("success", "success")
    fresh, again = sandbox.api.messages_requests()
    assert "The first answer." not in fresh.texts()
    assert "The first answer." in again.texts()  # the CLI found and sent the conversation
    assert times_sent(again, "Remember this.") == 2
    assert [resumed(argv) for argv in sandbox.argvs()] == [None, first["session_id"]]
    assert second["session_id"] == line_of(stream(home, second["id"]), "result")["session_id"]


def test_a_resume_whose_conversation_is_gone_fails_and_the_next_run_starts_fresh(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, sandbox, "Remember this.", "--session-mode", "resume")
    assert foreground(cli, task).code == 0
    lost = only_run(home, task["id"])["session_id"]
    shutil.rmtree(sandbox.claude_home / ".claude" / "projects")  # the CLI's stored conversations

    missing = foreground(cli, task)
    fresh = foreground(cli, task)

    _, failed, third = sorted(runs_of(home, task["id"]), key=lambda run: run["created_at"])
    assert missing.code == 1
    assert failed["status"] == "failed"
    assert failed["error"] == f"No conversation found with session ID: {lost}"
    assert failed["failure_kind"] == "missing_session"
    assert fresh.code == 0, fresh.out
    assert third["status"] == "success" and third["session_id"] != lost
    assert len(sandbox.api.messages_requests()) == 2  # the failed resume never reached the API
    assert times_sent(sandbox.api.messages_requests()[-1], "Remember this.") == 1
    assert [resumed(argv) for argv in sandbox.argvs()] == [None, lost, None]


def test_dont_ask_mode_refuses_a_tool_and_the_run_lists_the_denial(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    command = "touch made-by-claude.txt && echo touched"
    sandbox.api.play(api.tool_use(command), api.text())
    task = create_task(cli_json, sandbox, "Make a file.", "--permission-mode", "dontAsk")

    shown = foreground(cli, task)

    assert shown.code == 0, shown.out + shown.err
    assert not (sandbox.project / "made-by-claude.txt").exists()
    run = cli_json("runs", "get", only_run(home, task["id"])["id"])
    (denial,) = the_result(home, run["id"])["permission_denials"]
    assert run["status"] == "success"
    assert run["permission_denials"] == [denial]
    assert (denial["tool_name"], denial["tool_input"]["command"]) == ("Bash", command)
    assert "Bash" in cli("runs", "get", run["id"]).out
    assert line_of(stream(home, run["id"]), "system", "init")["permissionMode"] == "dontAsk"


@pytest.mark.parametrize("mode", ["default", "acceptEdits", "plan", "auto", "dontAsk"])
def test_each_permission_mode_reaches_the_cli(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson, mode: str
) -> None:
    task = create_task(cli_json, sandbox, "Say hello.", "--permission-mode", mode)

    shown = foreground(cli, task)

    assert shown.code == 0, shown.out + shown.err
    run = only_run(home, task["id"])
    assert line_of(stream(home, run["id"]), "system", "init")["permissionMode"] == mode
    (argv,) = sandbox.argvs()
    assert argv[argv.index("--permission-mode") + 1] == mode


def test_bypass_permissions_as_root_fails_with_the_clis_reason(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    task = create_task(cli_json, sandbox, "Say hello.", "--permission-mode", "bypassPermissions")

    shown = foreground(cli, task)

    run = cli_json("runs", "get", only_run(home, task["id"])["id"])
    assert (shown.code, run["status"]) == (1, "failed")
    assert "cannot be used with root/sudo privileges" in run["error"]
    assert stream(home, run["id"]) == []  # nothing on stdout
    assert sandbox.api.messages_requests() == []


####
# Sessions that fail
####


def failed_run(
    home: Path, cli: Cli, cli_json: CliJson, task: dict[str, Any]
) -> tuple[Result, dict[str, Any]]:
    shown = foreground(cli, task)
    run = cli_json("runs", "get", only_run(home, task["id"])["id"])
    assert (shown.code, run["status"]) == (1, "failed"), shown.out + shown.err
    kind = run["failure_kind"].replace("_", " ")
    assert shown.out.splitlines()[-1].startswith(f"Run {run['id'][:8]} failed ({kind}) · wall time ")
    assert shown.out.count(run["error"]) == 1, shown.out  # claude's reason, said once
    return shown, run


@pytest.mark.parametrize(
    ("reply", "kind", "error", "status"),
    [
        (api.unauthorized(), "auth", "Invalid API key · Fix external API key", 401),
        (api.rate_limited(), "rate_limit", "API Error: Request rejected (429) · Rate limited", 429),
        (api.server_error(retry=False), "server_error", "API Error: 500 Internal server error.", 500),
    ],
    ids=["401", "429", "500"],
)
def test_an_api_error_fails_the_run_with_its_kind_and_the_clis_sentence(
    home: Path,
    sandbox: Sandbox,
    cli: Cli,
    cli_json: CliJson,
    reply: api.Reply,
    kind: str,
    error: str,
    status: int,
) -> None:
    sandbox.api.play(then=reply)
    task = create_task(cli_json, sandbox, "Say hello.")

    _, run = failed_run(home, cli, cli_json, task)

    result = the_result(home, run["id"])
    assert (result["is_error"], result["api_error_status"]) == (True, status)
    assert run["error"].startswith(error) and result["result"].startswith(run["error"].rstrip("…"))
    assert run["failure_kind"] == kind
    assert run["limit_resets_at"] is None
    assert cli("runs", "get", run["id"]).out.count(error) == 1


def test_api_retries_are_shown_while_the_foreground_run_waits(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    sandbox.api.play(api.overloaded(), api.overloaded(), then=api.text())
    task = create_task(cli_json, sandbox, "Say hello.")

    shown = foreground(cli, task)

    assert shown.code == 0, shown.out + shown.err
    retries = [
        line for line in stream(home, only_run(home, task["id"])["id"]) if line.get("subtype") == "api_retry"
    ]
    assert [(line["attempt"], line["error_status"]) for line in retries] == [(1, 529), (2, 529)]
    shown_retries = [line for line in shown.out.splitlines() if "retry" in line]
    assert len(shown_retries) == 2
    for line, retry in zip(shown_retries, retries, strict=True):
        delay = retry["retry_delay_ms"] / 1000
        seconds = f"{delay:.1f}" if delay < 1 else str(round(delay))
        said = f"API overloaded (529), retry {retry['attempt']} of {retry['max_retries']} in {seconds} s"
        assert line.strip().endswith(said)
    assert len(sandbox.api.messages_requests()) == 3


def test_max_turns_ends_the_run_with_the_clis_reason(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    sandbox.api.play(api.tool_use(), api.text())
    task = create_task(cli_json, sandbox, "Run the marker.", "--max-turns", "1", "--allowed-tools", "Bash")

    _, run = failed_run(home, cli, cli_json, task)

    result = the_result(home, run["id"])
    assert (result["subtype"], result["errors"]) == (
        "error_max_turns",
        ["Reached maximum number of turns (1)"],
    )
    assert run["error"] == "Reached maximum number of turns (1)"
    assert run["failure_kind"] == "max_turns"


def test_a_spent_budget_ends_the_run_with_the_clis_reason(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    sandbox.api.play(api.tool_use(), api.text())
    task = create_task(cli_json, sandbox, "Run the marker.", "--max-budget-usd", "0.001")

    _, run = failed_run(home, cli, cli_json, task)

    result = the_result(home, run["id"])
    assert (result["subtype"], result["errors"]) == (
        "error_max_budget_usd",
        ["Reached maximum budget ($0.001)"],
    )
    assert run["error"] == "Reached maximum budget ($0.001)"
    assert run["failure_kind"] == "budget"
    assert run["cost_usd"] == pytest.approx(result["total_cost_usd"])


def test_no_answer_ends_at_the_tasks_timeout_with_the_cli_ended(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    sandbox.api.play(then=api.hang())
    # Long enough for the CLI to start and ask (~1 s; several on a loaded machine) first.
    task = create_task(cli_json, sandbox, "Say hello.", "--timeout", "20s")

    shown = foreground(cli, task)

    run = cli_json("runs", "get", only_run(home, task["id"])["id"])
    assert shown.code == 1
    assert (run["status"], run["error"]) == ("timeout", "timed out after 20s")
    assert len(sandbox.api.messages_requests()) == 1  # the CLI was waiting for its answer
    assert line_of(stream(home, run["id"]), "system", "init")["session_id"] == run["session_id"]
    assert not any(line["type"] == "result" for line in stream(home, run["id"]))
    wait_for(lambda: pid_gone(run["pid"]), "the sandboxed CLI to end")
    assert run["failure_kind"] == "timeout"


####
# The subscription's usage limit, and the engine's hold
####


def test_a_usage_limit_is_recorded_once_with_its_reset_and_the_engine_holds_until_then(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson
) -> None:
    sandbox.subscription()
    resets_at = int(time.time()) + 3600
    sandbox.api.play(api.usage_limit(resets_at))
    clock = FakeClock(datetime.fromtimestamp(resets_at - 3600, UTC))
    engine = cs.Engine(cs.Store(home, clock=clock), kill_grace=0.5)
    assert engine.start(thread=False)
    try:
        limited = create_task(cli_json, sandbox, "Say hello.", "--retries", "2", "--retry-delay", "1")
        waiting = create_task(cli_json, sandbox, "Say hello later.")
        # due 4 times in the hold (its first fire is its creation: the engine's clock is behind):
        due = create_task(cli_json, sandbox, "Say hello on time.", "--every", "20m")
        cli_json("tasks", "run", limited["id"], "--detach")
        drive(engine, SESSION_SECONDS)
        (run,) = runs_of(home, limited["id"])
        hold = cli_json("engine", "status")["hold"]
        queued = cli_json("tasks", "run", waiting["id"], "--detach")
        drive(engine, SESSION_SECONDS)
        held = run_of(home, queued["id"])["status"]
        anchor = datetime.fromisoformat(due["created_at"])  # an interval counts from its creation
        for minutes in (0, 20, 40, 60):  # the engine looks at least every 30 s; these are enough
            clock.set(anchor + timedelta(minutes=minutes, seconds=1))
            drive(engine, SESSION_SECONDS)
        deferred = runs_of(home, due["id"])
        clock.set(datetime.fromtimestamp(resets_at + cs.HOLD_MARGIN_SECONDS + 1, UTC))
        drive(engine, SESSION_SECONDS)
    finally:
        engine.stop()

    event = line_of(stream(home, run["id"]), "rate_limit_event")["rate_limit_info"]
    assert (event["status"], event["resetsAt"]) == ("rejected", resets_at)
    assert run["status"] == "failed" and run["failure_kind"] == "usage_limit"
    assert datetime.fromisoformat(run["limit_resets_at"]) == datetime.fromtimestamp(resets_at, UTC)
    assert "session limit" in run["error"]  # which limit, in the CLI's words
    margin = timedelta(seconds=cs.HOLD_MARGIN_SECONDS)  # claude's clock and ours may differ a little
    assert datetime.fromisoformat(hold["until"]) == datetime.fromtimestamp(resets_at, UTC) + margin
    assert hold["reason"]
    assert held == "queued"
    assert run_of(home, queued["id"])["status"] == "success"
    assert len(runs_of(home, limited["id"])) == 1  # never retried
    assert [(held_back["status"], held_back["missed_count"]) for held_back in deferred] == [("deferred", 4)]
    after = [later for later in runs_of(home, due["id"]) if later["id"] != deferred[0]["id"]]
    assert [(later["status"], later["trigger"]) for later in after] == [
        ("success", "catch_up")
    ]  # once, not twice
    requests = sandbox.api.messages_requests()
    assert prompt_sent(requests[0], "Say hello.") and len(requests) == 3
    assert sorted(
        prompt
        for prompt in ("Say hello later.", "Say hello on time.")
        for request in requests[1:]
        if prompt_sent(request, prompt)
    ) == ["Say hello later.", "Say hello on time."]


####
# serve: the engine in its own process, as a user runs it
####


@pytest.fixture
def served(home: Path, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        with (tmp_path / "serve.log").open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), "serve", "--port", "0"],
                env=child_env(home),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_process(proc)


def test_serve_runs_a_scheduled_task_through_the_real_cli(
    home: Path, sandbox: Sandbox, cli_json: CliJson, served: Callable[[], subprocess.Popen[bytes]]
) -> None:
    task = create_task(cli_json, sandbox, "Good morning.", "--startup")

    served()

    started = wait_for(lambda: runs_of(home, task["id"]), "the startup run", SESSION_SECONDS)[0]
    run = wait_status(home, started["id"], "success", timeout=SESSION_SECONDS)
    assert run["trigger"] == "startup"
    assert (run["model"], run["num_turns"], run["result"]) == (MODEL, 1, api.ANSWER)
    assert run["session_id"] == the_result(home, run["id"])["session_id"]
    (request,) = sandbox.api.messages_requests()
    assert prompt_sent(request, "Good morning.")


def test_a_stop_ends_the_real_cli_that_serve_runs(
    home: Path, sandbox: Sandbox, cli: Cli, cli_json: CliJson, served: Callable[[], subprocess.Popen[bytes]]
) -> None:
    sandbox.api.play(then=api.hang())
    task = create_task(cli_json, sandbox, "Say hello.")
    served()
    queued = cli_json("tasks", "run", task["id"], "--detach")
    sandbox.api.wait_requests(1, timeout=SESSION_SECONDS)  # the CLI waits for its answer
    running = wait_status(home, queued["id"], "running", timeout=SESSION_SECONDS)
    (cli_pid,) = children(running["pid"])

    stopped = cli("runs", "stop", running["id"])

    assert stopped.code == 0, stopped.err
    run = wait_status(home, running["id"], "cancelled")
    assert run["error"] == "stopped by request"
    wait_for(lambda: pid_gone(running["pid"]) and pid_gone(cli_pid), "the wrapper and the CLI to end")
    assert run["failure_kind"] == "cancelled"


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


@pytest.fixture
def waiting_cli(sandbox: Sandbox) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The wrapper, started by hand, and the pid of its CLI, which waits for an answer."""
    sandbox.api.play(then=api.hang())
    proc = subprocess.Popen(
        [str(WRAPPER), "-p", "--output-format", "stream-json", "--verbose"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=sandbox.project,
    )
    assert proc.stdin
    proc.stdin.write(b"Say hello.")
    proc.stdin.close()
    sandbox.api.wait_requests(1, timeout=SESSION_SECONDS)
    (cli_pid,) = children(proc.pid)
    yield proc, cli_pid
    stop_process(proc, signal.SIGKILL)


def test_the_wrapper_passes_sigterm_to_the_cli(waiting_cli: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, cli_pid = waiting_cli

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(WAIT_SECONDS) in (-signal.SIGTERM, 128 + signal.SIGTERM)
    wait_for(lambda: pid_gone(cli_pid), "the CLI to end")


def test_the_cli_never_outlives_a_killed_wrapper(waiting_cli: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, cli_pid = waiting_cli

    proc.kill()

    assert proc.wait(WAIT_SECONDS) == -signal.SIGKILL
    wait_for(lambda: pid_gone(cli_pid), "the CLI to end")
