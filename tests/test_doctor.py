"""`cli doctor` and GET /api/doctor: the setup check, through `main` and real HTTP.

Each test has a temp data home and user home (conftest's `home`); claude is the fake
claude (`--version` says what the pinned CLI says) unless a test puts a small script of its own in its place.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, child_env
from run_helpers import SCRIPT, WAIT_SECONDS, pid_gone, stop_process, wait_for

import claude_scheduler as cs

TESTED = cs.CLAUDE_TESTED_VERSION
Checks = list[dict[str, Any]]


def doctor(cli: Callable[..., Result], *words: str) -> tuple[int, Checks]:
    result = cli("doctor", "--json", *words)
    assert result.err == ""
    checks = result.json()["checks"]
    assert all(set(check) == {"check", "level", "message", "fix"} for check in checks), checks
    return result.code, checks


def named(checks: Checks, name: str) -> dict[str, Any]:
    found = [check for check in checks if check["check"] == name]
    assert len(found) == 1, (name, checks)
    return found[0]


def script(path: Path, body: str) -> Path:
    """A stand-in claude: a shell script (it runs whatever PATH is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def old_claude(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A claude older than the one the contract tests cover, set by $CLAUDE_SCHEDULER_CLAUDE."""
    old = script(tmp_path / "old-bin" / "claude", 'echo "2.0.0 (Claude Code)"')
    monkeypatch.setenv(cs.CLAUDE_ENV, str(old))
    return old


@pytest.fixture
def user_home(home: Path) -> Path:
    return Path(os.environ["HOME"])


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No claude configured and none on PATH."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.delenv(cs.CLAUDE_ENV)
    monkeypatch.setenv("PATH", str(empty))
    return empty


# claude ---------------------------------------------------------------------------------------


def test_an_older_claude_is_a_warning_with_its_fix(cli: Callable[..., Result], old_claude: Path) -> None:
    code, checks = doctor(cli)
    assert named(checks, "claude") == {
        "check": "claude",
        "level": "ok",
        "message": f"{old_claude} (set by $CLAUDE_SCHEDULER_CLAUDE)",
        "fix": None,
    }
    assert named(checks, "claude version") == {
        "check": "claude version",
        "level": "warning",
        "message": f"2.0.0, older than {TESTED}, the version the scheduler is tested with",
        "fix": "Update Claude Code: `claude update`, or npm install -g @anthropic-ai/claude-code@latest.",
    }
    assert code == 0  # warnings only


def test_claude_in_the_native_installer_place_is_found_without_path(
    cli: Callable[..., Result], user_home: Path, bare_path: Path
) -> None:
    native = script(user_home / ".local" / "bin" / "claude", f'echo "{TESTED} (Claude Code)"')
    _, checks = doctor(cli)
    assert named(checks, "claude") == {
        "check": "claude",
        "level": "ok",
        "message": f"{native} (found in ~/.local/bin, the native installer's place)",
        "fix": None,
    }
    assert named(checks, "claude version")["message"] == f"{TESTED}, the version the scheduler is tested with"
    assert named(checks, "claude version")["level"] == "ok"
    assert cli("init").code == 0
    shown = cli("settings", "show")
    assert shown.code == 0
    where = "found in ~/.local/bin, the native installer's place"
    assert shown.out.splitlines()[-1] == f"claude in use        {native} ({where}), version {TESTED}"


def test_a_newer_claude_is_fine(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cs.CLAUDE_ENV, str(script(tmp_path / "claude", 'echo "2.2.0 (Claude Code)"')))
    _, checks = doctor(cli)
    assert named(checks, "claude version") == {
        "check": "claude version",
        "level": "ok",
        "message": f"2.2.0, newer than {TESTED}, the version the scheduler is tested with",
        "fix": None,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('echo "boom" >&2; exit 3', "`{path} --version` failed (exited with code 3): boom"),
        ('echo "hello"', "`{path} --version` printed no version number: 'hello'"),
    ],
)
def test_a_claude_whose_version_cannot_be_read_is_a_problem(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, message: str
) -> None:
    claude = script(tmp_path / "claude", body)
    monkeypatch.setenv(cs.CLAUDE_ENV, str(claude))
    code, checks = doctor(cli)
    check = named(checks, "claude version")
    assert (check["level"], check["message"]) == ("problem", message.format(path=claude))
    assert (
        check["fix"]
        == "Check that this is Claude Code's CLI and that it runs for this user; else reinstall it."
    )
    assert code == 1


def test_a_claude_that_never_answers_is_stopped_and_asked_again_next_time(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"
    claude = script(tmp_path / "claude", f'echo $$ >> "{pids}"; exec sleep 600')
    monkeypatch.setenv(cs.CLAUDE_ENV, str(claude))
    seconds = f"{cs.CLAUDE_VERSION_TIMEOUT_SECONDS:g}s"
    for attempt in (1, 2):  # a timeout is not cached: the next check asks again
        code, checks = doctor(cli)
        check = named(checks, "claude version")
        assert (check["level"], check["message"]) == (
            "problem",
            f"`{claude} --version` gave no answer within {seconds}",
        )
        assert code == 1
        started = [int(pid) for pid in pids.read_text().split()]
        assert len(started) == attempt
        assert wait_for(functools.partial(pid_gone, started[-1]), "the silent claude to be ended")


def test_the_version_is_asked_once_per_version_of_the_file(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    claude = tmp_path / "claude"
    body = f'echo x >> "{calls}"; echo "2.1.190 (Claude Code)"'
    monkeypatch.setenv(cs.CLAUDE_ENV, str(script(claude, body)))
    for _ in range(3):
        assert named(doctor(cli)[1], "claude version")["message"].startswith("2.1.190, older")
    assert calls.read_text().count("x") == 1
    script(claude, body.replace("2.1.190", "2.1.199") + "  # updated")
    os.utime(claude, ns=(claude.stat().st_atime_ns, claude.stat().st_mtime_ns + 1_000_000_000))
    assert named(doctor(cli)[1], "claude version")["message"].startswith("2.1.199, newer")
    assert calls.read_text().count("x") == 2


def test_no_claude_anywhere_names_the_places_and_the_fix(
    cli: Callable[..., Result], user_home: Path, bare_path: Path
) -> None:
    code, checks = doctor(cli)
    check = named(checks, "claude")
    assert check["level"] == "problem"
    assert check["message"] == (
        "Claude Code CLI not found: the claude_path setting and $CLAUDE_SCHEDULER_CLAUDE are not set, "
        f"and there is no claude on PATH ({bare_path}), at {user_home / '.local/bin/claude'} or at "
        f"{user_home / '.claude/local/claude'}"
    )
    assert check["fix"].startswith("Install Claude Code (its native installer puts it in ~/.local/bin;")
    assert check["fix"].endswith("to the full path of the claude executable.")
    assert [check["check"] for check in checks if check["check"].startswith("claude")] == ["claude"]
    assert code == 1


# credentials ----------------------------------------------------------------------------------


def test_credentials_are_named_never_shown(
    cli: Callable[..., Result], user_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in cs.CREDENTIAL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv(cs.CLAUDE_CONFIG_ENV, raising=False)
    check = named(doctor(cli)[1], "credentials")
    assert check["level"] == "warning"
    assert check["message"] == (
        "none found: neither ANTHROPIC_API_KEY nor CLAUDE_CODE_OAUTH_TOKEN is set, and there is no login "
        f"in {user_home / '.claude/.credentials.json'} or {user_home / '.claude.json'} "
        "(claude may still be logged in some other way)"
    )
    assert "log in" in check["fix"] and "ANTHROPIC_API_KEY" in check["fix"]

    (user_home / ".claude.json").write_text(json.dumps({"oauthAccount": {"emailAddress": "me@example.org"}}))
    check = named(doctor(cli)[1], "credentials")
    assert (check["level"], check["message"]) == (
        "ok",
        f"Claude Code is logged in ({user_home / '.claude.json'} names an account)",
    )

    secret = "sk-ant-oat01-very-secret"
    (user_home / ".claude").mkdir()
    (user_home / ".claude" / ".credentials.json").write_text(
        json.dumps({"claudeAiOauth": {"accessToken": secret}})
    )
    check = named(doctor(cli)[1], "credentials")
    assert check["message"] == f"Claude Code's login file {user_home / '.claude/.credentials.json'} is there"

    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", secret)
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret + "-key")
    check = named(doctor(cli)[1], "credentials")
    assert check["message"] == "ANTHROPIC_API_KEY and CLAUDE_CODE_OAUTH_TOKEN set in the environment"
    for words in (("doctor",), ("doctor", "--json")):
        assert secret not in cli(*words).out


def test_on_macos_the_keychain_cannot_be_read(tmp_path: Path) -> None:
    check = cs._check_credentials({}, tmp_path, "darwin")
    assert check.level == "warning"
    assert check.message.startswith("can't tell: on macOS Claude Code keeps its login in the keychain")


# data home ------------------------------------------------------------------------------------


def test_a_missing_data_home_is_reported_and_not_created(cli: Callable[..., Result], home: Path) -> None:
    code, checks = doctor(cli)
    assert named(checks, "data home") == {
        "check": "data home",
        "level": "warning",
        "message": f"{home} does not exist yet",
        "fix": "It is made when the window, `serve` or another command first uses it; "
        "if your jobs are elsewhere, pass --home or set $CLAUDE_SCHEDULER_HOME.",
    }
    assert not home.exists()
    assert [check["check"] for check in checks] == ["claude", "claude version", "credentials", "data home"]
    assert code == 0


def test_a_data_home_that_is_a_file_is_a_problem(cli: Callable[..., Result], home: Path) -> None:
    home.write_text("not a folder")
    code, checks = doctor(cli)
    check = named(checks, "data home")
    assert (check["level"], check["message"]) == ("problem", f"{home} is not a folder")
    assert code == 1


def test_a_read_only_data_home_is_a_problem(cli: Callable[..., Result], home: Path) -> None:
    assert cli("jobs", "create", "--name", "Kept").code == 0
    if os.geteuid() != 0:
        home.chmod(0o500)
        try:
            code, checks = doctor(cli)
        finally:
            home.chmod(0o700)
    else:  # root writes through permission bits: only a read-only mount stops it
        if not shutil.which("unshare"):
            pytest.skip("needs unshare(1) to mount the home read-only")
        mount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" || exit 97; shift; exec "$@"'
        argv = ["unshare", "-m", "sh", "-c", mount, str(home), "x"]
        argv += [sys.executable, str(SCRIPT), "cli", "doctor", "--json"]
        proc = subprocess.run(argv, env=child_env(home), capture_output=True, text=True, timeout=60)
        if proc.returncode == 97:
            pytest.skip(f"cannot mount the home read-only here: {proc.stderr.strip()}")
        assert proc.stderr == ""
        code, checks = proc.returncode, json.loads(proc.stdout)["checks"]
    check = named(checks, "data home")
    assert (check["level"], check["message"]) == ("problem", f"{home} is not writable")
    assert "read and write access" in check["fix"] and "--home" in check["fix"]
    assert code == 1


def test_an_unreadable_store_file_is_named(cli: Callable[..., Result], home: Path) -> None:
    assert cli("init").code == 0
    (home / cs.TASKS_FILE).write_text("{ not json")
    code, checks = doctor(cli)
    check = named(checks, "tasks")
    assert check["level"] == "problem"
    assert str(home / cs.TASKS_FILE) in check["message"]
    assert check["fix"] == cs.STORE_FILE_FIX
    assert code == 1


# tasks ----------------------------------------------------------------------------------------


def test_a_task_whose_folder_is_gone_will_be_refused(
    cli: Callable[..., Result], cli_json: Callable[..., Any], tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    cli_json("tasks", "create", "--name", "Nightly", "--prompt", "p", "--working-dir", str(folder))
    cli_json(
        "tasks", "create", "--name", "Paused one", "--prompt", "p", "--working-dir", str(folder), "--disabled"
    )
    code, checks = doctor(cli)
    assert named(checks, "tasks") == {
        "check": "tasks",
        "level": "ok",
        "message": "2 tasks, none that will be refused",
        "fix": None,
    }
    assert code == 0
    folder.rmdir()
    code, checks = doctor(cli)
    fix = "Create that folder, or change the working folder of the task (or of its job)."
    message = f"working directory {folder} (set by the task) does not exist"
    assert [check for check in checks if check["check"].startswith("task")] == [
        {"check": "task “Nightly”", "level": "problem", "message": message, "fix": fix},
        {"check": "task “Paused one”", "level": "warning", "message": message, "fix": fix},
    ]
    assert code == 1


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="claude refuses it only to root")
def test_bypass_permissions_as_root_will_be_refused(
    cli: Callable[..., Result], cli_json: Callable[..., Any]
) -> None:
    cli_json(
        "tasks", "create", "--name", "Reckless", "--prompt", "p", "--permission-mode", "bypassPermissions"
    )
    code, checks = doctor(cli)
    check = named(checks, "task “Reckless”")
    assert check["level"] == "problem"
    assert check["message"] == "permission mode bypassPermissions, which claude refuses to run as root"
    assert check["fix"].startswith("Choose another permission mode")
    assert code == 1


# engine and API -------------------------------------------------------------------------------


def test_the_engine_of_serve_and_its_api_are_checked(cli: Callable[..., Result], home: Path) -> None:
    log = home.parent / "serve.log"
    home.mkdir()
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "serve", "--port", "0"],
            env=child_env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        store = cs.Store(home)
        owner = wait_for(
            lambda: (store.engine_state().get("owner") or {}).get("api") and store.engine_state()["owner"],
            "serve's API",
        )
        assert owner["process"] == "serve"
        code, checks = doctor(cli)
        assert named(checks, "engine") == {
            "check": "engine",
            "level": "ok",
            "message": f"running in `serve` (pid {proc.pid} on {cs.host_name()})",
            "fix": None,
        }
        assert named(checks, "api") == {
            "check": "api",
            "level": "ok",
            "message": f"answers at {owner['api']}",
            "fix": None,
        }
        assert code == 0
        assert cli("engine", "pause").code == 0
        check = named(doctor(cli)[1], "engine")
        assert (check["level"], check["message"]) == (
            "warning",
            f"running in `serve` (pid {proc.pid} on {cs.host_name()}), paused: no new runs start",
        )
        assert "engine resume" in check["fix"]
        over_api = cli("doctor", "--json", "--api", owner["api"])
        assert named(over_api.json()["checks"], "engine")["message"] == check["message"]
    finally:
        stop_process(proc)
    code, checks = doctor(cli)
    assert named(checks, "engine")["level"] == "warning"
    assert named(checks, "engine")["message"] == "not running, and paused: scheduled tasks do not fire"


def test_an_engine_whose_api_does_not_answer_is_a_problem(cli: Callable[..., Result], home: Path) -> None:
    store = cs.Store(home)
    closed = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    address = closed.address
    closed.stop()  # nothing listens there any more
    owner = {
        "pid": os.getpid(),
        "host": cs.host_name(),
        "id": cs.process_owner(),
        "api": address,
        "process": "window",
    }
    store.set_engine_state(owner=owner)
    code, checks = doctor(cli)
    assert (
        named(checks, "engine")["message"] == f"running in a window (pid {os.getpid()} on {cs.host_name()})"
    )
    check = named(checks, "api")
    assert check["level"] == "problem"
    assert check["message"].startswith(f"the engine's API at {address} does not answer: ")
    assert code == 1


def test_a_usage_limit_hold_is_a_warning_naming_when_runs_start_again(
    cli: Callable[..., Result], home: Path
) -> None:
    store = cs.Store(home)
    owner = {"pid": os.getpid(), "host": cs.host_name(), "id": cs.process_owner(), "process": "serve"}
    hold = {
        "until": "2100-01-01T00:01:00.000+00:00",
        "kind": "usage_limit",
        "reason": "You've hit your limit",
    }
    store.set_engine_state(owner=owner, hold=hold)
    _, checks = doctor(cli)
    check = named(checks, "engine")
    assert (check["level"], check["message"]) == (
        "warning",
        f"running in `serve` (pid {os.getpid()} on {cs.host_name()}),"
        " holding new runs until 2100-01-01 00:01 UTC (usage limit)",
    )
    assert check["fix"].startswith("Wait for the reset, or lift the hold now: `cli engine resume`")


def test_doctor_over_an_unreachable_api_says_so(cli: Callable[..., Result], home: Path) -> None:
    cs.api_token(cs.Store(home).home)
    result = cli("doctor", "--json", "--api", "http://127.0.0.1:9")
    assert result.code == 1
    [check] = result.json()["checks"]
    assert (check["check"], check["level"]) == ("api", "problem")
    assert check["message"].startswith("cannot reach the API server at http://127.0.0.1:9")


# the table ------------------------------------------------------------------------------------


def test_the_table_lines_up_within_the_terminal(
    cli: Callable[..., Result], cli_json: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    gone = tmp_path / "gone"
    cli_json(
        "tasks",
        "create",
        "--name",
        "A task with a rather long name indeed",
        "--prompt",
        "p",
        "--working-dir",
        str(gone),
    )
    result = cli("doctor")
    checks = json.loads(cli("doctor", "--json").out)["checks"]
    lines = result.out.splitlines()
    column = lines[0].index("RESULT")
    assert lines[0].split() == ["LEVEL", "CHECK", "RESULT"] and lines[0].startswith("LEVEL    CHECK")
    rows = lines[1:-2]
    heads = [line for line in rows if not line.startswith(" ")]
    assert [line.split()[0] for line in heads] == [check["level"] for check in checks]
    for line in rows:
        assert line[column - 2 : column] == "  " and line[column] != " ", line
        assert len(line) <= 79 or " " not in line[column:].strip(), line
    fixes = [line[column:] for line in rows if line[column:].startswith("fix: ")]
    assert len(fixes) == sum(1 for check in checks if check["fix"])
    assert lines[-2] == ""
    problems = sum(check["level"] == "problem" for check in checks)
    warnings = sum(check["level"] == "warning" for check in checks)
    assert (
        lines[-1] == f"{problems} problem{'s' * (problems != 1)}, {warnings} warning{'s' * (warnings != 1)}."
    )
    clipped = "task “A task with a rathe…"  # the check column keeps to its width
    assert len(clipped) == cs.DOCTOR_CHECK_MAX
    [task_line] = [line for line in heads if line.startswith("problem  task")]
    assert task_line.startswith(f"problem  {clipped}  working directory")
    assert result.code == 1


# the API door ---------------------------------------------------------------------------------


@pytest.fixture
def server(home: Path) -> Iterator[cs.ApiServer]:
    server = cs.ApiServer(cs.Service(cs.Store(home)), "127.0.0.1", 0)
    server.start()
    yield server
    server.stop()


def get(server: cs.ApiServer, path: str, token: str | None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT_SECONDS)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_api_gives_the_same_checks(
    server: cs.ApiServer, home: Path, cli: Callable[..., Result], old_claude: Path
) -> None:
    token = cs.api_token(home, create=False)
    assert get(server, "/api/doctor", None)[0] == 401
    status, body = get(server, "/api/doctor", token)
    assert status == 200 and list(body) == ["checks"]
    checks = body["checks"]
    assert [check["check"] for check in checks] == [
        "claude",
        "claude version",
        "credentials",
        "data home",
        "engine",
        "api",
        "tasks",
    ]
    assert named(checks, "claude version")["level"] == "warning"
    assert named(checks, "data home") == {
        "check": "data home",
        "level": "ok",
        "message": f"{home} is readable and writable",
        "fix": None,
    }
    schema = cs.openapi_document()["components"]["schemas"]
    assert set(schema["SetupCheck"]["properties"]) == set(checks[0])
    assert schema["SetupCheck"]["properties"]["level"] == {"enum": ["ok", "warning", "problem"]}
    assert cs.openapi_document()["paths"]["/api/doctor"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"] == {"$ref": "#/components/schemas/SetupCheckList"}
    remote = cli("doctor", "--json", "--api", server.address)
    assert remote.code == 0
    assert list(remote.json()) == list(cli("doctor", "--json").json()) == list(body)  # one shape
    assert [check["check"] for check in remote.json()["checks"]] == [check["check"] for check in checks]


def test_doctor_json_writes_text_as_it_is_like_every_json_output(
    cli: Callable[..., Result], cli_json: Callable[..., Any], tmp_path: Path
) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    cli_json("tasks", "create", "--name", "Café", "--prompt", "p", "--working-dir", str(folder))
    folder.rmdir()
    assert '"task “Café”"' in cli("doctor", "--json").out, "UTF-8 as `tasks list --json` writes it"
    assert '"name": "Café"' in cli("tasks", "list", "--json").out
