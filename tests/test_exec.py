"""Tests of the run executor against the fake claude (no network, no real CLI)."""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

import claude_scheduler as ex
import fake_claude as fake

FAKE = Path(__file__).with_name("fake_claude.py")
WATCHDOG_SECONDS = 60.0
DEATH_WAIT_SECONDS = 30.0  # a deadline only: a loaded machine reaps late
GRACE = 0.5
CLOCK_JUMP_SECONDS = 1000.0
SONNET_ID = "claude-sonnet-4-5-20250929"
DEFAULT_OPTIONS: dict[str, object] = {
    "model": "sonnet",
    "permission_mode": "default",
    "allowed_tools": [],
    "disallowed_tools": [],
    "max_turns": None,
    "append_system_prompt": None,
    "resume_session": None,
}


def command(**overrides: object) -> list[str]:
    return ex.build_command(str(FAKE), **{**DEFAULT_OPTIONS, **overrides})  # type: ignore[arg-type]


def fake_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "FAKE_CLAUDE_RECORD": str(tmp_path / "record.jsonl"), **extra}


def run(
    tmp_path: Path,
    prompt: str = "Do the thing.",
    *,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    **options: object,
) -> ex.RunOutcome:
    """execute() in a thread with a watchdog, so a deadlock fails the test instead of hanging."""
    arguments: dict[str, object] = {
        "prompt": prompt,
        "cwd": tmp_path,
        "env": env if env is not None else fake_env(tmp_path),
        "log_path": tmp_path / "logs" / "run.log",
        "timeout_seconds": 30.0,
        "should_stop": lambda: False,
        "kill_grace_seconds": GRACE,
        "poll_seconds": 0.05,
        **options,
    }
    outcomes: list[ex.RunOutcome] = []
    errors: list[Exception] = []

    def target() -> None:
        try:
            outcomes.append(ex.execute(argv or command(), **arguments))  # type: ignore[arg-type]
        except (RuntimeError, OSError) as exc:  # re-raised in the test's thread below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(WATCHDOG_SECONDS)
    assert not thread.is_alive(), "execute() did not return (deadlock?)"
    if errors:
        raise errors[0]
    (outcome,) = outcomes
    return outcome


def records(tmp_path: Path) -> list[dict[str, object]]:
    lines = (tmp_path / "record.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def log_lines(tmp_path: Path) -> list[str]:
    return (tmp_path / "logs" / "run.log").read_text(encoding="utf-8").splitlines()


def stdout_types(tmp_path: Path) -> list[object]:
    objects = [json.loads(line) for line in log_lines(tmp_path) if line.startswith("{")]
    return [obj["type"] for obj in objects]


def is_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie waiting for a slow reaper counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat_path = Path(f"/proc/{pid}/stat")
    if not stat_path.parent.parent.is_dir():
        return True
    try:
        state = stat_path.read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_dead(pid: int) -> bool:
    deadline = time.monotonic() + DEATH_WAIT_SECONDS
    while is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def make_executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ---- build_command ----


def test_build_command_minimal() -> None:
    assert command() == [
        *(str(FAKE), "-p", "--output-format", "stream-json", "--verbose"),
        *("--model", "sonnet", "--permission-mode", "default"),
    ]


def test_build_command_all_options() -> None:
    argv = command(
        model="opus",
        permission_mode="acceptEdits",
        allowed_tools=["Bash(git:*)", "Read"],
        disallowed_tools=["WebFetch"],
        max_turns=7,
        append_system_prompt="- be terse",
        resume_session="5b0c9e4e-1111-4222-8333-444455556666",
    )
    assert argv[5:] == [
        *("--model", "opus", "--permission-mode", "acceptEdits"),
        *("--allowedTools", "Bash(git:*)", "Read", "--disallowedTools", "WebFetch"),
        *("--max-turns", "7", "--append-system-prompt", "- be terse"),
        *("--resume", "5b0c9e4e-1111-4222-8333-444455556666"),
    ]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model": ""}, "model"),
        ({"permission_mode": "--dangerously-skip-permissions"}, "permission_mode"),
        ({"allowed_tools": ["Read", "-x"]}, "allowed_tools"),
        ({"disallowed_tools": [""]}, "disallowed_tools"),
        ({"resume_session": "--continue"}, "session_id"),
    ],
)
def test_build_command_refuses_values_claude_would_read_as_options(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ex.Invalid) as caught:
        command(**overrides)
    assert caught.value.field == field


# ---- what the fake receives ----


def test_fake_receives_exact_argv_prompt_on_stdin_and_cwd(tmp_path: Path) -> None:
    argv = command(
        allowed_tools=["Bash", "Read"],
        disallowed_tools=["Write"],
        max_turns=5,
        append_system_prompt="-start with a dash",
        resume_session="5b0c9e4e-1111-4222-8333-444455556666",
    )
    outcome = run(tmp_path, "List the files.", argv=argv)
    (entry,) = records(tmp_path)
    assert entry["argv"] == argv[1:]
    assert entry["stdin"] == "List the files."
    assert entry["cwd"] == os.path.realpath(tmp_path)
    assert outcome.status == ex.STATUS_SUCCESS
    assert outcome.session_id == "5b0c9e4e-1111-4222-8333-444455556666"


@pytest.mark.parametrize(
    "prompt",
    ["x" * 1_000_000 + "\nend [lines=3]", "-rf looks like an option", "--help"],
    ids=["1MB", "dash", "double-dash"],
)
def test_prompt_goes_on_stdin_whatever_it_holds(tmp_path: Path, prompt: str) -> None:
    outcome = run(tmp_path, prompt)
    (entry,) = records(tmp_path)
    assert entry["stdin"] == prompt
    assert prompt not in entry["argv"]  # type: ignore[operator]
    assert outcome.status == ex.STATUS_SUCCESS


def test_env_is_the_whole_environment_of_claude(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "FAKE_CLAUDE_RECORD": str(tmp_path / "record.jsonl"),
        "FAKE_CLAUDE_RECORD_ENV": "MY_SETTING,HOME",
        "FAKE_TOKEN": "abc",
        "MY_SETTING": "on",
    }
    run(tmp_path, env=env)
    recorded = records(tmp_path)[0]["env"]
    assert isinstance(recorded, dict)
    assert (recorded["FAKE_TOKEN"], recorded["MY_SETTING"], recorded["HOME"]) == ("abc", "on", None)


def test_on_started_gets_the_pid_of_claude(tmp_path: Path) -> None:
    pids: list[int] = []
    run(tmp_path, on_started=pids.append)
    assert pids == [records(tmp_path)[0]["pid"]]


# ---- outcomes ----


def test_success_parses_cost_tokens_turns_session_and_result(tmp_path: Path) -> None:
    outcome = run(tmp_path)
    init = json.loads(log_lines(tmp_path)[0])
    assert outcome.status == ex.STATUS_SUCCESS
    assert (outcome.exit_code, outcome.error, outcome.limit_resets_at) == (0, None, None)
    assert outcome.failure_kind is None
    assert (outcome.cost_usd, outcome.input_tokens, outcome.output_tokens) == (0.0123, 62, 17)
    assert (outcome.num_turns, outcome.result, outcome.model) == (3, "Done.", SONNET_ID)
    assert outcome.session_id == init["session_id"] == str(uuid.UUID(outcome.session_id or ""))


def test_legacy_shape_cost_usd_and_string_content(tmp_path: Path) -> None:
    outcome = run(tmp_path, "[legacy][cost=0.5]")
    assert '"content":"Looking at the repo."' in log_lines(tmp_path)[1]
    assert (outcome.status, outcome.cost_usd, outcome.result) == (ex.STATUS_SUCCESS, 0.5, "Done.")


def test_is_error_fails_with_the_subtype(tmp_path: Path) -> None:
    outcome = run(tmp_path, "[is_error]")
    assert (outcome.status, outcome.exit_code) == (ex.STATUS_FAILED, 1)
    assert outcome.error == "claude reported error_during_execution (exited with code 1)"


def test_is_error_with_a_result_text_gives_its_first_line(tmp_path: Path) -> None:
    env = fake_env(tmp_path, FAKE_CLAUDE_RESULT="\nTool crashed: boom\nTraceback ...")
    outcome = run(tmp_path, "[is_error]", env=env)
    assert (outcome.status, outcome.error) == (ex.STATUS_FAILED, "Tool crashed: boom")


def test_a_long_error_line_is_cut_to_the_limit_with_an_ellipsis(tmp_path: Path) -> None:
    outcome = run(tmp_path, "[is_error]", env=fake_env(tmp_path, FAKE_CLAUDE_RESULT="e" * 1000))
    assert outcome.error == "e" * (ex.ERROR_MAX_CHARS - 1) + "…"


def test_the_injected_clock_times_the_run(tmp_path: Path) -> None:
    ticks = iter(range(0, 10**9, 100))
    outcome = run(tmp_path, "[hang]", timeout_seconds=150.0, monotonic=lambda: next(ticks))
    assert (outcome.status, outcome.error) == (ex.STATUS_TIMEOUT, "timed out after 150s")


def test_is_error_fails_even_with_exit_code_zero(tmp_path: Path) -> None:
    outcome = run(tmp_path, "[is_error=error_max_turns][exit=0]")
    assert (outcome.status, outcome.exit_code) == (ex.STATUS_FAILED, 0)
    assert outcome.error == "claude reported error_max_turns (exited with code 0)"


def test_max_turns_reached_fails(tmp_path: Path) -> None:
    outcome = run(tmp_path, argv=command(max_turns=1))
    assert (outcome.status, outcome.num_turns) == (ex.STATUS_FAILED, 1)
    assert (outcome.error, outcome.failure_kind) == ("Reached maximum number of turns (1)", "max_turns")


def test_nonzero_exit_code_is_the_real_one(tmp_path: Path) -> None:
    outcome = run(tmp_path, "[exit=3]")
    assert (outcome.status, outcome.exit_code) == (ex.STATUS_FAILED, 3)
    assert outcome.error == "claude exited with code 3"


@pytest.mark.parametrize("code", [0, 137])
def test_no_result_line_fails_with_a_clear_error(tmp_path: Path, code: int) -> None:
    outcome = run(tmp_path, f"[no_result][exit={code}]")
    assert (outcome.status, outcome.exit_code) == (ex.STATUS_FAILED, code)
    assert outcome.error == f"claude exited with code {code} and printed no result"
    assert outcome.result == "Done."  # the last assistant text stands in


def test_a_session_that_never_named_its_model_keeps_the_one_it_was_started_with(tmp_path: Path) -> None:
    refused = run(tmp_path, "  \n", argv=command(model="opus"))  # claude refuses before its init line
    assert (refused.status, refused.model) == (ex.STATUS_FAILED, "opus")
    missing = run(tmp_path, argv=[str(tmp_path / "no-claude"), *command(model="opus")[1:]])
    assert (missing.failure_kind, missing.model) == ("not_started", "opus")


def test_a_refusal_names_the_last_stderr_line(tmp_path: Path) -> None:
    outcome = run(tmp_path, "  \n")
    assert outcome.status == ex.STATUS_FAILED
    assert outcome.error == (
        "claude exited with code 1 and printed no result: Error: Input must be provided "
        "either through stdin or as a prompt argument when using --print"
    )


def test_result_keeps_the_first_2000_characters(tmp_path: Path) -> None:
    outcome = run(tmp_path, env=fake_env(tmp_path, FAKE_CLAUDE_RESULT="y" * 5000))
    assert outcome.result == "y" * ex.RESULT_MAX_CHARS


@pytest.mark.parametrize(
    ("marker", "reset"),
    [
        ("[usage_limit]", datetime(2026, 1, 1, tzinfo=UTC)),
        ("[usage_limit=1796207914]", datetime(2026, 12, 2, 10, 38, 34, tzinfo=UTC)),
        ("[usage_limit=text]", None),
    ],
)
def test_usage_limit_is_told_apart_with_claudes_sentence_and_the_reset_of_its_event(
    tmp_path: Path, marker: str, reset: datetime | None
) -> None:
    outcome = run(tmp_path, marker)
    assert (outcome.status, outcome.exit_code) == (ex.STATUS_FAILED, 1)
    assert outcome.error == fake.USAGE_LIMIT_TEXT
    assert (outcome.failure_kind, outcome.limit_resets_at) == ("usage_limit", reset)


REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "real-claude"


def parse_recording(name: str) -> ex.StreamParser:
    parser = ex.StreamParser()
    for line in (REAL / name).read_text(encoding="utf-8").splitlines():
        parser.feed(line)
    return parser


@pytest.mark.skipif(not REAL.is_dir(), reason="shared/real-claude is not beside the project")
@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("oauth-usage-limit.jsonl", "usage_limit", "You've hit your session limit · resets 10:38am (UTC)"),
        ("oauth-usage-limit-weekly.jsonl", "usage_limit", None),
        ("429unified.jsonl", "rate_limit", "API Error: Request rejected (429) · Rate limited"),
        ("401.jsonl", "auth", None),
        ("529.jsonl", "overloaded", None),
        ("tool-maxturns1.jsonl", "max_turns", "Reached maximum number of turns (1)"),
        ("max-budget.jsonl", "budget", None),
        ("resume-missing.log", "missing_session", None),
    ],
)
def test_the_real_clis_failures_are_told_apart_in_its_own_words(
    name: str, kind: str, reason: str | None
) -> None:
    parser = parse_recording(name)
    assert parser.is_error
    assert parser.failure_kind() == kind
    if reason is not None:
        assert parser.failure_reason() == reason
    assert parser.failure_reason()


@pytest.mark.skipif(not REAL.is_dir(), reason="shared/real-claude is not beside the project")
def test_tokens_of_a_real_session_count_the_cached_input_and_denials_are_kept() -> None:
    parser = parse_recording("toolwrite-denied.jsonl")
    assert not parser.is_error
    assert (parser.input_tokens, parser.cache_read_tokens, parser.cache_creation_tokens) == (2768, 100, 200)
    assert parser.output_tokens == 112
    assert parser.model_usage is not None and parser.model_usage["claude-sonnet-5"]["input_tokens"] == 2468
    assert [denial["tool_name"] for denial in parser.permission_denials] == ["Bash"]
    assert parser.duration_ms == 139
    limited = parse_recording("oauth-usage-limit.jsonl")
    assert limited.limit_resets_at == datetime.fromtimestamp(1796207914, UTC)


def test_launch_failure_is_a_failed_outcome(tmp_path: Path) -> None:
    not_executable = tmp_path / "claude"
    not_executable.write_text("#!/bin/sh\n", encoding="utf-8")
    outcome = run(tmp_path, argv=[str(not_executable), "-p"])
    assert outcome.status == ex.STATUS_FAILED
    assert outcome.error == f"could not start {not_executable}: Permission denied"
    assert log_lines(tmp_path) == [f"[scheduler] {outcome.error}"]


def test_unwritable_log_is_a_failed_outcome(tmp_path: Path) -> None:
    (tmp_path / "logs" / "run.log").mkdir(parents=True)
    outcome = run(tmp_path)
    assert outcome.status == ex.STATUS_FAILED
    assert (outcome.error or "").startswith(f"could not open the run log {tmp_path}")
    assert not (tmp_path / "record.jsonl").exists()


# ---- the log ----


def test_every_line_lands_in_the_log_and_stderr_is_marked(tmp_path: Path) -> None:
    run(tmp_path, "[stderr=300][lines=500]")
    lines = log_lines(tmp_path)
    stderr = [line for line in lines if line.startswith(ex.LOG_STDERR_PREFIX)]
    assert stderr == [ex.LOG_STDERR_PREFIX + fake.STDERR_LINE.rstrip("\n")] * (
        300 // len(fake.STDERR_LINE) + 1
    )
    assert stdout_types(tmp_path) == ["system", "assistant", "assistant", "user"] + ["assistant"] * 501 + [
        "result"
    ]


def test_slow_output_is_read_as_it_comes(tmp_path: Path) -> None:
    outcome = run(tmp_path, "[delay=0.02]")
    assert (outcome.status, outcome.num_turns) == (ex.STATUS_SUCCESS, 3)


def test_malformed_lines_stay_in_the_log_and_do_not_fail_the_run(tmp_path: Path) -> None:
    outcome = run(tmp_path, "[malformed]")
    lines = log_lines(tmp_path)
    assert {"not json", "[1,2]", '"str"', '{"type": "assistant", "message": '} <= set(lines)
    assert outcome.status == ex.STATUS_SUCCESS
    assert outcome.cost_usd == 0.0123


def test_stderr_flood_does_not_deadlock(tmp_path: Path) -> None:
    outcome = run(tmp_path, "[stderr=2000000]")
    stderr = [line for line in log_lines(tmp_path) if line.startswith(ex.LOG_STDERR_PREFIX)]
    assert outcome.status == ex.STATUS_SUCCESS
    assert sum(len(line) + 1 for line in stderr) > 2_000_000


# ---- timeout, stop and the process group ----


def clock_jumping_once_ready(tmp_path: Path) -> Callable[[], float]:
    """A clock that runs true until the fake's init line is in the log, then jumps ahead.

    The fake prints init after it has set its SIGTERM handling and started its
    grandchild, so the timeout hits a fully set-up fake however slow the machine is.
    """
    log = tmp_path / "logs" / "run.log"

    def clock() -> float:
        ready = log.exists() and '"subtype":"init"' in log.read_text(encoding="utf-8")
        return time.monotonic() + (CLOCK_JUMP_SECONDS if ready else 0.0)

    return clock


def test_timeout_in_real_time(tmp_path: Path) -> None:
    outcome = run(tmp_path, "[hang]", timeout_seconds=0.3)
    assert (outcome.status, outcome.error) == (ex.STATUS_TIMEOUT, "timed out after 0.3s")


def test_timeout_ends_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    clock = clock_jumping_once_ready(tmp_path)
    outcome = run(tmp_path, f"[hang][grandchild={pid_file}]", monotonic=clock)
    assert (outcome.status, outcome.error) == (ex.STATUS_TIMEOUT, "timed out after 30s")
    assert outcome.exit_code == -signal.SIGTERM
    assert outcome.session_id is not None
    assert wait_dead(int(pid_file.read_text()))
    assert log_lines(tmp_path)[-1] == "[scheduler] timed out after 30s; process group terminated"


def test_sigterm_ignored_is_killed_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    clock = clock_jumping_once_ready(tmp_path)
    outcome = run(tmp_path, f"[hang][ignore_term][grandchild={pid_file}]", monotonic=clock)
    assert (outcome.status, outcome.exit_code) == (ex.STATUS_TIMEOUT, -signal.SIGKILL)
    assert wait_dead(int(pid_file.read_text()))
    assert log_lines(tmp_path)[-1] == (
        "[scheduler] timed out after 30s; process group killed after a 0.5s grace"
    )


def test_should_stop_cancels_the_run(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "run.log"

    def init_line_logged() -> bool:
        # True only if lines reach the log while claude still runs (it hangs after init).
        return '"subtype":"init"' in log.read_text(encoding="utf-8")

    outcome = run(tmp_path, "[hang]", should_stop=init_line_logged)
    assert (outcome.status, outcome.error) == (ex.STATUS_CANCELLED, "stopped by request")
    assert outcome.session_id is not None
    assert log_lines(tmp_path)[-1] == "[scheduler] stopped by request; process group terminated"


def test_an_exception_from_should_stop_still_ends_claude(tmp_path: Path) -> None:
    def should_stop() -> bool:
        raise RuntimeError("store unreadable")

    pids: list[int] = []
    with pytest.raises(RuntimeError, match="store unreadable"):
        run(tmp_path, "[hang]", should_stop=should_stop, on_started=pids.append)
    assert wait_dead(pids[0])


def test_leftover_process_holding_the_pipes_is_ended(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    outcome = run(tmp_path, f"[grandchild={pid_file}]")
    assert outcome.status == ex.STATUS_SUCCESS
    assert wait_dead(int(pid_file.read_text()))
    assert any("still hold its output" in line for line in log_lines(tmp_path))


# ---- resolve_claude ----


def test_claude_setting_wins_over_variable_and_path(tmp_path: Path) -> None:
    configured = make_executable(tmp_path / "set" / "claude")
    variable = make_executable(tmp_path / "var" / "claude")
    make_executable(tmp_path / "bin" / "claude")
    environ = {"CLAUDE_SCHEDULER_CLAUDE": str(variable), "PATH": str(tmp_path / "bin")}
    assert ex.resolve_claude(str(configured), environ, tmp_path) == str(configured)
    assert ex.resolve_claude(None, environ, tmp_path) == str(variable)


def test_claude_on_the_given_path_then_the_local_install(tmp_path: Path) -> None:
    on_path = make_executable(tmp_path / "bin" / "claude")
    assert ex.resolve_claude("", {"PATH": str(tmp_path / "bin")}, tmp_path) == str(on_path)
    local = make_executable(tmp_path / ".claude" / "local" / "claude")
    assert ex.resolve_claude(None, {"PATH": str(tmp_path / "empty")}, tmp_path) == str(local)


def test_claude_setting_expands_home(tmp_path: Path) -> None:
    configured = make_executable(tmp_path / "tools" / "claude")
    assert ex.resolve_claude("~/tools/claude", {"PATH": ""}, tmp_path) == str(configured)


def test_claude_from_the_native_installer_when_path_lacks_it(tmp_path: Path) -> None:
    native = make_executable(tmp_path / ".local" / "bin" / "claude")
    make_executable(tmp_path / ".claude" / "local" / "claude")
    environ = {"PATH": str(tmp_path / "empty")}
    assert ex.resolve_claude(None, environ, tmp_path) == str(native)  # before the old local install
    assert ex.locate_claude(None, environ, tmp_path) == (str(native), "native")
    on_path = make_executable(tmp_path / "bin" / "claude")
    assert ex.locate_claude(None, {"PATH": str(tmp_path / "bin")}, tmp_path) == (str(on_path), "path")


def test_a_folder_or_a_plain_file_named_claude_is_passed_over(tmp_path: Path) -> None:
    (tmp_path / ".local" / "bin" / "claude").mkdir(parents=True)  # a folder, searchable (x)
    local = make_executable(tmp_path / ".claude" / "local" / "claude")
    environ = {"PATH": str(tmp_path / "empty")}
    assert ex.resolve_claude(None, environ, tmp_path) == str(local)
    local.chmod(0o644)  # no longer executable
    with pytest.raises(ex.ClaudeNotFound):
        ex.resolve_claude(None, environ, tmp_path)


def test_claude_missing_names_every_place_searched_and_the_fix(tmp_path: Path) -> None:
    environ = {"PATH": os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")])}
    with pytest.raises(ex.ClaudeNotFound) as caught:
        ex.resolve_claude(None, environ, tmp_path)
    error = caught.value
    assert error.problem == (
        "Claude Code CLI not found: the claude_path setting and $CLAUDE_SCHEDULER_CLAUDE are not "
        f"set, and there is no claude on PATH ({tmp_path / 'a'}, {tmp_path / 'b'}), at "
        f"{tmp_path / '.local' / 'bin' / 'claude'} or at {tmp_path / '.claude' / 'local' / 'claude'}"
    )
    assert error.fix.startswith("install Claude Code (its native installer puts it in ~/.local/bin;")
    assert "`cli settings set claude_path /full/path/to/claude`" in error.fix
    assert "$CLAUDE_SCHEDULER_CLAUDE to the full path" in error.fix
    assert str(error) == f"{error.problem}; {error.fix}"


def test_a_wrong_claude_setting_is_not_skipped(tmp_path: Path) -> None:
    make_executable(tmp_path / "bin" / "claude")
    environ = {"PATH": str(tmp_path / "bin")}
    with pytest.raises(ex.ClaudeNotFound, match="claude_path setting is set to '/nowhere/claude'"):
        ex.resolve_claude("/nowhere/claude", environ, tmp_path)


# ---- resolve_workdir ----


def test_workdir_task_then_job_then_home(tmp_path: Path) -> None:
    task_dir, job_dir = tmp_path / "task", tmp_path / "job"
    task_dir.mkdir()
    job_dir.mkdir()
    assert ex.resolve_workdir(str(task_dir), str(job_dir), tmp_path, {}) == task_dir
    assert ex.resolve_workdir(" ", str(job_dir), tmp_path, {}) == job_dir
    assert ex.resolve_workdir(None, None, tmp_path, {}) == tmp_path


def test_workdir_expands_home_and_variables(tmp_path: Path) -> None:
    (tmp_path / "proj" / "sub").mkdir(parents=True)
    environ = {"PROJ": str(tmp_path / "proj")}
    assert ex.resolve_workdir("~/proj", None, tmp_path, {}) == tmp_path / "proj"
    assert ex.resolve_workdir("${PROJ}/sub", None, tmp_path, environ) == tmp_path / "proj" / "sub"


@pytest.mark.parametrize(
    ("name", "problem"),
    [("missing", "does not exist"), ("a-file", "is not a directory")],
)
def test_workdir_problems_name_the_path(tmp_path: Path, name: str, problem: str) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    with pytest.raises(ex.WorkdirMissing) as caught:
        ex.resolve_workdir(None, str(tmp_path / name), tmp_path, {})
    assert f"working directory {tmp_path / name} (set by the job) {problem}" in str(caught.value)


def test_relative_workdir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ex.WorkdirMissing, match="is not an absolute path"):
        ex.resolve_workdir("projects/x", None, tmp_path, {})


# ---- StreamParser ----

GARBAGE = [
    "",
    "null",
    "[]",
    "{",
    "[" * 100_000,
    '"result"',
    '{"type": 3}',
    '{"type": "assistant", "message": "text"}',
    '{"type": "assistant", "message": {"content": [1, "a", {"type": "text"}, {"text": 2}]}}',
    '{"type": "user", "message": {"content": {"type": "tool_result"}}}',
    '{"type": "system", "subtype": "init", "model": ["x"], "session_id": 5}',
    '{"type": "result", "usage": [], "num_turns": "3", "total_cost_usd": true, "result": 7}',
    '{"type": "stream_event", "event": {"delta": {"text": "x"}}}',
    '{"type": "result", "duration_ms": Infinity, "cost_usd": NaN, "usage": {"input_tokens": 1}}',
]


def test_parser_ignores_garbage() -> None:
    parser = ex.StreamParser()
    for line in GARBAGE:
        parser.feed(line)
    assert parser.has_result
    assert (parser.session_id, parser.model, parser.cost_usd, parser.num_turns) == (None,) * 4
    assert (parser.result, parser.last_text, parser.limit_resets_at) == (None,) * 3
    assert not parser.usage_limited


def test_parser_takes_session_from_any_line_and_ignores_old_limit_texts() -> None:
    parser = ex.StreamParser()
    parser.feed('{"type": "mystery", "session_id": "s-1"}')
    parser.feed('{"type": "assistant", "message": {"content": "Claude AI usage limit reached|1767225600"}}')
    parser.feed('{"type": "rate_limit_event", "rate_limit_info": {"status": "allowed", "resetsAt": 1}}')
    assert parser.session_id == "s-1"
    assert (parser.usage_limited, parser.limit_resets_at) == (False, None)


# ---- render_log_line ----


def line(obj: Mapping[str, object]) -> str:
    return json.dumps(obj)


def assistant(*blocks: dict[str, object]) -> str:
    return line({"type": "assistant", "message": {"content": list(blocks)}})


def tool_result(content: object, is_error: bool = False) -> str:
    block = {"type": "tool_result", "tool_use_id": "t", "content": content, "is_error": is_error}
    return line({"type": "user", "message": {"content": [block]}})


def tool_use(name: str, tool_input: dict[str, object]) -> str:
    return assistant({"type": "tool_use", "id": "t", "name": name, "input": tool_input})


RESULT_OK = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "num_turns": 3,
    "total_cost_usd": 0.0123,
    "duration_ms": 4200,
    "usage": {"input_tokens": 62, "output_tokens": 17},
    "result": "Done.",
}
INIT = {
    "type": "system",
    "subtype": "init",
    "session_id": "0123456789abcdef",
    "model": "claude-x",
    "cwd": "/wd",
}
MODEL_USAGE = {
    "claude-sonnet-5": {"inputTokens": 2, "outputTokens": 50, "cacheReadInputTokens": 45000},
    "claude-haiku-4-5": {"inputTokens": 2, "outputTokens": 6, "cacheCreationInputTokens": 100},
}
DENIAL = {"tool_name": "Bash", "tool_use_id": "toolu_1", "tool_input": {"command": "rm -rf build"}}
API_RETRY = {
    "type": "system",
    "subtype": "api_retry",
    "attempt": 3,
    "max_retries": 10,
    "retry_delay_ms": 2385.8,
    "error_status": 529,
    "error": "overloaded",
}
RENDERED = [
    (line(INIT), [("system", "Session 01234567 · claude-x · /wd")]),
    (line({"type": "system", "subtype": "compact_boundary"}), []),
    (assistant({"type": "text", "text": "Hi."}), [("assistant", "Hi.")]),
    (assistant({"type": "thinking", "thinking": "Hmm."}), [("thinking", "Hmm.")]),
    (line({"type": "assistant", "message": {"content": "Old."}}), [("assistant", "Old.")]),
    (tool_use("Bash", {"command": "ls -la"}), [("tool", "→ Bash: ls -la")]),
    (tool_use("Edit", {"file_path": "/a/b.py", "old_string": "x"}), [("tool", "→ Edit: /a/b.py")]),
    (tool_use("Bash", {"command": "cd x\nmake"}), [("tool", "→ Bash: cd x …")]),
    (tool_use("mcp__db__query", {"q": 1}), [("tool", '→ mcp__db__query: {"q":1}')]),
    (tool_use("TodoWrite", {}), [("tool", "→ TodoWrite")]),
    (tool_result("README.md\nsrc\ntests"), [("tool_result", "README.md ⏎ src …")]),
    (tool_result([{"type": "text", "text": "one"}]), [("tool_result", "one")]),
    (tool_result(""), [("tool_result", "(no output)")]),
    (tool_result("No such file", is_error=True), [("error", "No such file")]),
    (line(RESULT_OK), [("summary", "✓ Done in 3 turns · $0.0123 · 62 in / 17 out tokens · claude 4.2s")]),
    (
        line({"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 1}),
        [("summary", "✗ Failed (max turns) after 1 turn")],
    ),
    (
        line({"type": "result", "subtype": "error_during_execution", "is_error": True}),
        [("summary", "✗ Failed (error_during_execution)")],
    ),
    (
        line({**RESULT_OK, "is_error": True, "result": "You've hit your session limit · resets 8pm (UTC)"}),
        [
            (
                "summary",
                "✗ Failed (usage limit) after 3 turns · $0.0123 · 62 in / 17 out tokens · claude 4.2s",
            ),
            ("error", "You've hit your session limit · resets 8pm (UTC)"),
        ],
    ),
    (
        line(
            {
                **RESULT_OK,
                "modelUsage": MODEL_USAGE,
                "permission_denials": [DENIAL, {**DENIAL, "tool_name": "Write"}],
            }
        ),
        [
            (
                "summary",
                "⚠ Done with 2 permission denials (Bash, Write) in 3 turns · $0.0123"
                " · 45,104 in (45,100 cached) / 56 out tokens · claude 4.2s",
            )
        ],
    ),
    (
        line(
            {**RESULT_OK, "is_error": True, "api_error_status": 401, "usage": {}, "result": "Invalid API key"}
        ),
        [("summary", "✗ Failed (auth) after 3 turns · $0.0123 · claude 4.2s"), ("error", "Invalid API key")],
    ),
    (
        line(API_RETRY),
        [("retry", "API overloaded (529), retry 3 of 10 in 2 s")],
    ),
    (
        line({**API_RETRY, "error": "authentication_failed", "error_status": 401, "retry_delay_ms": 542.9}),
        [("retry", "API key refused (401), retry 3 of 10 in 0.5 s")],
    ),
    (
        line({"type": "system", "subtype": "api_retry", "error": "mystery", "error_status": None}),
        [("retry", "API error")],
    ),
    (line({"type": "system", "subtype": "compact_boundary", "session_id": "s"}), []),
    (
        tool_use("TaskCreate", {"subject": "Write tests", "description": "..."}),
        [("tool", "→ TaskCreate: Write tests")],
    ),
    (tool_use("Skill", {"skill": "code-review"}), [("tool", "→ Skill: code-review")]),
    (tool_use("CronCreate", {"cron": "0 9 * * *", "prompt": "x"}), [("tool", "→ CronCreate: 0 9 * * *")]),
    (
        line({"type": "assistant", "message": {"model": "<synthetic>", "content": "API Error: 401"}}),
        [],
    ),
    (
        line({"type": "result", "is_error": True, "errors": ["Reached maximum number of turns (1)"]}),
        [("summary", "✗ Failed"), ("error", "Reached maximum number of turns (1)")],
    ),
    (
        line({"type": "result", "is_error": True, "result": "API Error: 500\ntrace"}),
        [("summary", "✗ Failed"), ("error", "API Error: 500 …")],
    ),
    (line({"type": "stream_event", "event": {}}), []),
    (line({"type": "brand_new"}), []),
    ("[stderr] boom\n", [("error", "boom")]),
    ("[stderr] No conversation found with session ID: 9a5b0e80", []),  # the result says it
    ("[scheduler] timed out after 30s", [("scheduler", "timed out after 30s")]),
    ("not json", [("raw", "not json")]),
    ("[1,2]", [("raw", "[1,2]")]),
    ('"str"', [("raw", '"str"')]),
    ("\n", []),
]


@pytest.mark.parametrize(("raw", "expected"), RENDERED)
def test_render_log_line(raw: str, expected: list[tuple[str, str]]) -> None:
    assert ex.render_log_line(raw) == expected


def test_render_clips_long_tool_calls() -> None:
    ((tag, text),) = ex.render_log_line(tool_use("Bash", {"command": "x" * 500}))
    assert (tag, len(text), text[-1]) == ("tool", ex.RENDER_MAX_CHARS, "…")


@pytest.mark.parametrize("raw", GARBAGE)
def test_render_never_raises_on_garbage(raw: str) -> None:
    assert isinstance(ex.render_log_line(raw), list)


def test_render_a_whole_real_log(tmp_path: Path) -> None:
    run(tmp_path, "[malformed][stderr=100]")
    tags = {tag for raw in log_lines(tmp_path) for tag, _ in ex.render_log_line(raw)}
    assert tags == {"system", "assistant", "tool", "tool_result", "summary", "raw", "error"}


# ---- the usage limit's reset from claude's sentence ----

ENDED = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "reset"),
    [
        ("You've hit your session limit · resets 10:38am (UTC)", datetime(2026, 12, 2, 10, 38, tzinfo=UTC)),
        ("You've hit your session limit · resets 9am (UTC)", datetime(2026, 12, 3, 9, 0, tzinfo=UTC)),
        ("You've hit your session limit · resets 12am (UTC)", datetime(2026, 12, 3, 0, 0, tzinfo=UTC)),
        ("You've hit your session limit · resets 12:15pm (UTC)", datetime(2026, 12, 2, 12, 15, tzinfo=UTC)),
        (
            "You've hit your weekly limit · resets Dec 5, 6:58pm (UTC)",
            datetime(2026, 12, 5, 18, 58, tzinfo=UTC),
        ),
        (
            "You've hit your weekly limit · resets Dec 1, 6:58pm (UTC)",
            datetime(2027, 12, 1, 18, 58, tzinfo=UTC),
        ),
        ("You've hit your Opus limit · resets Jan 2, 1am (UTC)", datetime(2027, 1, 2, 1, 0, tzinfo=UTC)),
        (  # 5pm in New York is 22:00 UTC in December
            "You've hit your usage limit · resets 5pm (America/New_York)",
            datetime(2026, 12, 2, 22, 0, tzinfo=UTC),
        ),
        (  # 2am in Tokyo (UTC+9) is 17:00 UTC the day before: after 09:30 UTC, that is today
            "You’ve hit your session limit · resets 2am (Asia/Tokyo)",
            datetime(2026, 12, 2, 17, 0, tzinfo=UTC),
        ),
        ("You've hit your org's monthly spend limit", None),
        ("You've hit your session limit · resets 10:38am", None),
        ("You've hit your session limit · resets 10:38am (Mars/Olympus)", None),
        ("You've hit your session limit · resets 13pm (UTC)", None),
        ("You've hit your session limit · resets Feb 30, 1am (UTC)", None),
        ("You've hit your session limit · resets soon", None),
        ("The build broke · resets 10:38am (UTC)", None),
        ("", None),
    ],
)
def test_the_reset_is_read_from_claudes_sentence_as_the_next_such_time(
    text: str, reset: datetime | None
) -> None:
    assert ex.usage_limit_reset(text, ENDED) == reset
