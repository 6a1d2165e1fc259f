"""The command line on the data home (SPEC 8), driven through main() like a user would."""

from __future__ import annotations

import builtins
import io
import itertools
import json
import logging
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, child_env

import claude_scheduler as cs

Cli = Callable[..., Result]
CliJson = Callable[..., Any]


class Terminal(io.StringIO):
    """Standard input that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def answer(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[str]]:
    """Put the CLI on a terminal where the user types `reply`; returns the questions asked."""

    def reply_with(reply: str) -> list[str]:
        asked: list[str] = []
        monkeypatch.setattr(sys, "stdin", Terminal())
        monkeypatch.setattr(builtins, "input", lambda question="": asked.append(question) or reply)
        return asked

    return reply_with


def make_job(cli_json: CliJson, name: str = "Job", *extra: str) -> dict[str, Any]:
    return cli_json("jobs", "create", "--name", name, *extra)


def make_task(cli_json: CliJson, name: str = "Task", *extra: str) -> dict[str, Any]:
    return cli_json("tasks", "create", "--name", name, "--prompt", f"prompt of {name}", *extra)


def add_run(home: Path, task_id: str, status: str, created: datetime, *, log: bool = True) -> str:
    store = cs.Store(home)
    run = cs.Run(cs.new_id(), task_id, status=cs.RunStatus(status), created_at=created, started_at=created)
    if run.status in cs.FINISHED_STATUSES:
        run.finished_at = created + timedelta(seconds=42)
        run.cost_usd = 0.25
    store.save_run(run)
    if log:
        store.log_path(run.id).write_text("line\n")
    return run.id


def now() -> datetime:
    return datetime.now(UTC)


def shown(moment: str) -> str:
    """A stored time as the tables show it: local time to the minute."""
    return datetime.fromisoformat(moment).astimezone().strftime("%Y-%m-%d %H:%M")


# Global options, help and the module itself ---------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cs.main(["--version"]) == 0
    assert capsys.readouterr().out == f"claude-code-scheduler {cs.__version__}\n"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], ["serve", "cli", "--home", "--version"]),
        (["cli", "--help"], ["jobs", "tasks", "runs", "schedule", "engine"]),
        (["cli", "jobs", "--help"], ["list", "get", "create", "update", "delete", "tasks"]),
        (
            ["cli", "tasks", "--help"],
            ["list", "get", "create", "update", "delete", "enable", "disable", "next"],
        ),
        (
            ["cli", "tasks", "create", "--help"],
            [
                "--cron",
                "--timezone",
                "--every",
                "--at",
                "--daily",
                "--weekly",
                "--monthly",
                "--startup",
                "--watch",
                "--manual",
                "--job",
                "--prompt-file",
                "--json",
            ],
        ),
        (["cli", "runs", "--help"], ["list", "get", "delete", "log", "stop"]),
        (["cli", "schedule", "preview", "--help"], ["--cron", "--every", "--after", "-n"]),
    ],
)
def test_help_lists_what_is_there(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: list[str]
) -> None:
    assert cs.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: claude-code-scheduler")
    assert [word for word in expected if word not in out] == []


@pytest.mark.parametrize(("group", "verb"), [(group, verb) for group, verb, *_ in cs.CLI_COMMANDS])
def test_the_parser_built_for_one_command_reads_it_as_the_whole_parser_does(
    capsys: pytest.CaptureFixture[str], group: str, verb: str
) -> None:
    argv = ["cli", group, verb, "--help"]
    helps = []
    for parser in (cs.build_parser(), cs.build_parser(argv)):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1]
    assert "usage: claude-code-scheduler cli" in helps[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["cli"],
        ["cli", "jobs"],
        ["cli", "jobs", "lst"],
        ["cli", "job", "list"],
        ["cli", "tasks", "create", "--name", "x"],
        ["cli", "tasks", "update", "--every", "1h"],
        ["cli", "--json", "runs", "list", "--bogus"],
        ["cli", "tasks", "--help", "list"],
        ["cli", "jobs", "tasks", "--help"],
        ["--home", "jobs", "cli", "tasks", "-h"],
        ["serve", "--port", "x"],
        ["--help"],
        ["cli", "--help"],
        ["cli", "jobz", "list"],
        ["cli", "jobs", "list", "extra"],
        ["gui", "--help"],
        ["bogus"],
    ],
)
def test_the_parser_built_for_an_argv_answers_it_as_the_whole_parser_does(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    answers = []
    for parser in (cs.build_parser(), cs.build_parser(argv)):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args(argv)
        answers.append((stop.value.code, *capsys.readouterr()))
    assert answers[0] == answers[1]


def test_the_installed_command_leaves_its_objects_out_of_the_collectors_last_pass(
    home: Path, cli: Callable[..., Result]
) -> None:
    """main() without argv ends the process next: gc.freeze() spares the exit's walk of every
    object. main(argv), as tests and library callers use it, leaves the collector alone."""
    import gc

    console_script = "import gc, sys; from claude_scheduler import main; main(); print(gc.get_freeze_count())"
    env = {**child_env(home), "PYTHONPATH": str(Path(cs.__file__).parent)}
    done = subprocess.run(
        [sys.executable, "-c", console_script, "cli", "jobs", "list"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.splitlines()[-1]) > 1000
    frozen = gc.get_freeze_count()
    assert cli("init").code == 0
    assert gc.get_freeze_count() == frozen


def test_the_parser_built_for_one_command_leaves_out_the_other_modes_groups_and_verbs() -> None:
    parser = cs.build_parser(["cli", "jobs", "list"])
    paths = [path for path, _ in cs._commands_below(parser, "")]
    assert paths == ["", "cli", "cli jobs", "cli jobs list"]
    args = parser.parse_args(["cli", "jobs", "list", "--json"])
    assert (args.group, args.verb, args.json) == ("jobs", "list", True)


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["-v", "cli", "jobs", "list"], logging.INFO),
        (["cli", "-v", "jobs", "list"], logging.INFO),
        (["cli", "jobs", "list", "-vv"], logging.DEBUG),
        (["-v", "cli", "jobs", "list", "-v"], logging.DEBUG),
        (["cli", "jobs", "list"], logging.WARNING),
    ],
)
def test_verbose_is_taken_at_any_level_and_adds_up(
    home: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], level: int
) -> None:
    assert cs.main(["cli", "init"]) == 0
    monkeypatch.setattr(cs, "_log_level", None)
    assert cs.main(argv) == 0
    assert cs._log_level == level


def test_importing_the_module_does_nothing(tmp_path: Path) -> None:
    home = tmp_path / "data"
    env = {**child_env(home), "HOME": str(tmp_path / "user")}
    (tmp_path / "user").mkdir()
    probe = (
        "import logging, threading, claude_scheduler as cs; "
        "print(threading.active_count(), len(logging.getLogger().handlers), cs.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0", cs.__version__]
    assert done.stderr == ""
    assert not home.exists(), "importing created the data home"
    assert list((tmp_path / "user").iterdir()) == [], "importing wrote into the user's home"


# Imported only by the processes that use them: a CLI call's start-up is budgeted (SPEC 10).
LAZY_MODULES = {
    "http.client",
    "http.server",
    "socketserver",
    "socket",
    "subprocess",
    "signal",
    "logging",
    "zoneinfo",
    "uuid",
    "secrets",
    "tkinter",
}


def test_listing_jobs_imports_nothing_only_other_modes_need(tmp_path: Path, cli: Cli) -> None:
    home = tmp_path / "data"
    job = cli("jobs", "create", "--name", "J", "--home", str(home), "--json").json()["id"]
    for n in range(3):
        cli("tasks", "create", "--name", f"t{n}", "--prompt", "p", "--job", job, "--home", str(home))
    probe = (
        "import sys, claude_scheduler as cs; "
        "code = cs.main(['cli', 'jobs', 'list', '--json']); "
        f"print(code, sorted(set(sys.modules) & set({sorted(LAZY_MODULES)!r})), file=sys.stderr)"
    )
    env = {**child_env(home), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.stderr.strip() == "0 []"
    (listed,) = json.loads(done.stdout)["jobs"]
    assert listed["progress"]["text"] == "0/3"


# The data home ---------------------------------------------------------------------


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    capsys.readouterr()
    code = cs.main(list(argv))
    out, err = capsys.readouterr()
    return Result(code, out, err)


def job_names(home: Path) -> list[str]:
    path = home / "jobs.json"
    return [job["name"] for job in json.loads(path.read_text())["jobs"]] if path.exists() else []


@pytest.mark.parametrize(
    "argv",
    [
        ["--home", "{dir}", "cli", "jobs", "create", "--name", "Here"],
        ["cli", "--home", "{dir}", "jobs", "create", "--name", "Here"],
        ["cli", "jobs", "create", "--name", "Here", "--home", "{dir}"],
    ],
    ids=["before-cli", "after-cli", "after-verb"],
)
def test_home_option_wins_over_the_variable(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    chosen = tmp_path / "chosen"
    result = run_main(capsys, *(word.format(dir=chosen) for word in argv))
    assert result.code == 0, result.err
    assert job_names(chosen) == ["Here"]
    assert not home.exists()


def test_home_variable_is_used_without_the_option(home: Path, cli: Cli) -> None:
    assert cli("jobs", "create", "--name", "Env").code == 0
    assert job_names(home) == ["Env"]


def test_default_home_is_dot_claude_scheduler_in_the_user_home(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(cs.HOME_ENV)
    result = run_main(capsys, "cli", "jobs", "create", "--name", "Default")
    assert result.code == 0, result.err
    assert job_names(tmp_path / "user" / ".claude-scheduler") == ["Default"]
    assert not home.exists()


def test_home_option_expands_tilde(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(capsys, "--home", "~/elsewhere", "cli", "jobs", "create", "--name", "T").code == 0
    assert job_names(tmp_path / "user" / "elsewhere") == ["T"]


# Exit codes and errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["jobs"],
        ["jobs", "explode"],
        ["nosuchgroup", "list"],
        ["tasks", "create", "--name", "no prompt"],
        ["tasks", "create", "--prompt", "no name"],
        ["tasks", "create", "--name", "t", "--prompt", "p", "--permission-mode", "yolo"],
        ["tasks", "create", "--name", "t", "--prompt", "p", "--every", "1h", "--cron", "* * * * *"],
        ["tasks", "create", "--name", "t", "--prompt", "p", "--prompt-file", "f"],
        ["tasks", "list", "--job", "x", "--unassigned"],
        ["tasks", "next", "abc", "-n", "three"],
        ["jobs", "update", "abc", "--status", "done"],
        ["runs", "list", "--status", "exploded"],
        ["schedule", "preview", "--startup"],
        ["jobs", "get"],
    ],
)
def test_usage_errors_exit_2(cli: Cli, home: Path, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.code == 2
    lines = result.err.splitlines()
    assert ": error: " in lines[0] and result.out == ""
    assert "usage:" not in result.err and lines[-1].endswith("--help' for more.")
    assert not (home / "tasks.json").exists()


def test_failures_exit_1_with_the_error_on_stderr(cli: Cli) -> None:
    assert cli("init").code == 0
    for argv, message in [
        (["jobs", "get", "0123"], "error: no job with id '0123'\n"),
        (["tasks", "get", "zz"], "error: no task with id 'zz'\n"),
        (["runs", "get", "ff"], "error: no run with id 'ff'\n"),
        (
            ["tasks", "create", "--name", "t", "--prompt", "p", "--job", "abc"],
            "error: no job with id 'abc'\n",
        ),
        (
            ["tasks", "create", "--name", "t", "--prompt", "p", "--every", "soon"],
            "error: --every: 'soon' is not a duration like 90s, 15m, 2h, 1h30m or 1d\n",
        ),
        (
            ["tasks", "create", "--name", "t", "--prompt", "p", "--daily", "25:00"],
            "error: --daily: '25:00' is not a time of day like 09:30\n",
        ),
        (
            ["tasks", "create", "--name", "t", "--prompt", "p", "--weekly", "monday 9am"],
            "error: --weekly: 'monday 9am' is not like mon,fri@09:00\n",
        ),
        (
            ["tasks", "create", "--name", "t", "--prompt", "p", "--at", "next week"],
            "error: --at: 'next week' is not an ISO 8601 date and time\n",
        ),
        (
            ["tasks", "create", "--name", "t", "--prompt", "p", "--env", "NOVALUE"],
            "error: --env: 'NOVALUE' is not NAME=VALUE\n",
        ),
    ]:
        result = cli(*argv)
        assert (result.code, result.out, result.err) == (1, "", message), argv
    assert cli("tasks", "list", "--json").json() == {"tasks": []}


def test_json_errors_still_go_to_stderr(cli: Cli) -> None:
    assert cli("init").code == 0
    result = cli("jobs", "get", "0123", "--json")
    assert (result.code, result.out, result.err) == (1, "", "error: no job with id '0123'\n")


# Ids: unique prefixes, ambiguity -----------------------------------------------------

TWINS = ["abcd1234-aaaa-4aaa-8aaa-aaaaaaaaaaaa", "abcd1234-bbbb-4bbb-8bbb-bbbbbbbbbbbb"]
STAMP = "2026-01-01T00:00:00.000+00:00"


@pytest.fixture
def twins(home: Path) -> list[str]:
    home.mkdir()
    jobs = [
        {"id": job_id, "name": f"twin {n}", "created_at": STAMP, "updated_at": STAMP}
        for n, job_id in enumerate(TWINS)
    ]
    (home / "jobs.json").write_text(json.dumps({"version": 1, "jobs": jobs}))
    return TWINS


def test_any_unique_prefix_finds_the_record(cli_json: CliJson, twins: list[str]) -> None:
    for prefix, expected in [("abcd1234-a", twins[0]), ("ABCD1234-B", twins[1]), (twins[0], twins[0])]:
        assert cli_json("jobs", "get", prefix)["id"] == expected
    task = make_task(cli_json, "t", "--job", "abcd1234-b")
    assert task["job_id"] == twins[1]
    assert cli_json("tasks", "get", task["id"][:5])["id"] == task["id"]


def test_an_ambiguous_prefix_is_an_error_listing_the_candidates(cli: Cli, twins: list[str]) -> None:
    for prefix, argv in [
        ("abcd", ["jobs", "get", "abcd"]),
        ("abcd1234", ["jobs", "delete", "abcd1234", "--force"]),
        ("ab", ["tasks", "list", "--job", "ab"]),
    ]:
        result = cli(*argv)
        assert result.code == 1
        assert result.err.startswith(f"error: job id {prefix!r} is ambiguous; it matches ")
        assert "abcd1234-aaa" in result.err and "abcd1234-bbb" in result.err
    assert cli("jobs", "list", "--json").json()["jobs"][1]["id"] == twins[1]


def test_tables_show_eight_character_ids(cli: Cli, cli_json: CliJson) -> None:
    job = make_job(cli_json)
    task = make_task(cli_json, "t", "--job", job["id"])
    assert cli("jobs", "list").out.splitlines()[1].split()[:2] == ["Job", job["id"][:8]]
    row = cli("tasks", "list").out.splitlines()[1].split()
    assert row[:3] == ["t", task["id"][:8], "Job"]
    assert job["id"] not in cli("jobs", "list").out


# Jobs -------------------------------------------------------------------------------


def test_jobs_create_list_and_get(cli: Cli, cli_json: CliJson) -> None:
    assert cli("init").code == 0
    assert cli("jobs", "list").out == "No jobs yet.\n"
    assert cli_json("jobs", "list") == {"jobs": []}
    result = cli(
        "jobs",
        "create",
        "--name",
        "Implement CLI",
        "--description",
        "the jobs commands",
        "--working-dir",
        "/srv",
    )
    assert result.code == 0
    assert result.out.startswith("Created job ") and result.out.endswith(": Implement CLI\n")
    (job,) = cli_json("jobs", "list")["jobs"]
    assert (job["name"], job["description"], job["working_directory"], job["status"]) == (
        "Implement CLI",
        "the jobs commands",
        "/srv",
        "pending",
    )
    assert job["progress"]["text"] == "0/0"
    assert result.out == f"Created job {job['id'][:8]}: Implement CLI\n"
    detail = cli_json("jobs", "get", job["id"][:8])
    assert detail.pop("totals")["30d"]["runs"] == 0
    assert detail == {**job, "tasks": []}
    header, row = cli("jobs", "list").out.splitlines()
    assert header.split() == ["NAME", "ID", "STATUS", "PROGRESS", "RUNNING", "FAILED", "UPDATED"]
    assert row.split()[:7] == ["Implement", "CLI", job["id"][:8], "pending", "0/0", "(0%)", "0"]


def test_jobs_get_shows_the_job_with_its_tasks_and_progress(cli: Cli, cli_json: CliJson, home: Path) -> None:
    job = make_job(cli_json, "Release")
    first = make_task(cli_json, "Write notes", "--job", job["id"])
    second = make_task(cli_json, "Tag it", "--job", job["id"], "--daily", "09:00")
    make_task(cli_json, "Somebody else's")
    add_run(home, first["id"], "success", now())
    got = cli_json("jobs", "get", job["id"])
    assert [task["name"] for task in got["tasks"]] == ["Write notes", "Tag it"]
    assert got["progress"]["text"] == "1/2" and got["progress"]["percent"] == 50
    text = cli("jobs", "get", job["id"]).out
    assert "Release" in text
    assert "progress           1/2 done (50%): 1 never run, 0 running, 1 success, 0 failed" in text
    assert "Write notes" in text and second["id"][:8] in text and "Somebody else's" not in text
    assert "At 09:00" in text


def test_jobs_update_every_option(cli: Cli, cli_json: CliJson) -> None:
    job = make_job(cli_json)
    result = cli(
        "jobs",
        "update",
        job["id"][:6],
        "--name",
        "Renamed",
        "--description",
        "new",
        "--status",
        "completed",
        "--working-dir",
        "/tmp/w",
    )
    assert (result.code, result.out) == (0, f"Updated job {job['id'][:8]}: Renamed\n")
    got = cli_json("jobs", "get", job["id"])
    assert (got["name"], got["description"], got["status"], got["working_directory"]) == (
        "Renamed",
        "new",
        "completed",
        "/tmp/w",
    )
    assert got["created_at"] == job["created_at"]
    assert cli_json("jobs", "update", job["id"], "--name", "Again")["name"] == "Again"


def test_jobs_update_without_changes_is_refused(cli: Cli, cli_json: CliJson) -> None:
    job = make_job(cli_json)
    result = cli("jobs", "update", job["id"])
    assert result.code == 2
    assert result.err == "error: nothing to change: give at least one option (see --help)\n"


def test_jobs_tasks_lists_the_tasks_of_one_job(cli: Cli, cli_json: CliJson) -> None:
    job = make_job(cli_json)
    tasks = [make_task(cli_json, f"t{n}", "--job", job["id"])["id"] for n in range(3)]
    make_task(cli_json, "loose")
    assert [t["id"] for t in cli_json("jobs", "tasks", job["id"])["tasks"]] == tasks
    assert len(cli("jobs", "tasks", job["id"]).out.splitlines()) == 4
    assert cli("jobs", "tasks", make_job(cli_json, "empty")["id"]).out == "No tasks.\n"


@pytest.fixture
def full_job(cli_json: CliJson, home: Path) -> dict[str, Any]:
    """A job with two tasks and three runs (one still queued), each with a log."""
    job = make_job(cli_json, "Big job")
    tasks = [make_task(cli_json, f"t{n}", "--job", job["id"])["id"] for n in range(2)]
    add_run(home, tasks[0], "success", now())
    add_run(home, tasks[0], "failed", now())
    run = cs.Service(cs.Store(home)).request_run(tasks[1])["id"]
    cs.Store(home).log_path(run).write_text("queued\n")
    make_task(cli_json, "loose")
    return {"id": job["id"], "tasks": tasks}


def test_jobs_delete_asks_on_a_terminal_naming_the_cascade(
    cli: Cli, cli_json: CliJson, full_job: dict[str, Any], answer: Callable[[str], list[str]], home: Path
) -> None:
    asked = answer("y")
    result = cli("jobs", "delete", full_job["id"][:8])
    assert asked == [
        "Delete job 'Big job' with 2 tasks, 3 runs and 3 logs? Its 1 active run will be stopped. [y/N] "
    ]
    assert (result.code, result.out) == (0, "Deleted 1 job, 2 tasks, 3 runs, 3 logs.\n")
    assert cli_json("jobs", "list") == {"jobs": []}
    assert [t["name"] for t in cli_json("tasks", "list")["tasks"]] == ["loose"]
    assert list((home / "logs").iterdir()) == []


@pytest.mark.parametrize("reply", ["n", "", "no", "whatever"])
def test_jobs_delete_keeps_everything_unless_the_answer_is_yes(
    cli: Cli,
    cli_json: CliJson,
    full_job: dict[str, Any],
    answer: Callable[[str], list[str]],
    home: Path,
    reply: str,
) -> None:
    before = sorted(p.name for p in home.rglob("*"))
    asked = answer(reply)
    result = cli("jobs", "delete", full_job["id"])
    assert len(asked) == 1
    assert (result.code, result.out) == (1, "Nothing deleted.\n")
    assert sorted(p.name for p in home.rglob("*")) == before
    assert len(cli_json("jobs", "get", full_job["id"])["tasks"]) == 2


def test_ctrl_d_at_the_question_keeps_everything(
    cli: Cli, full_job: dict[str, Any], monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    def end_of_input(question: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(builtins, "input", end_of_input)
    before = sorted(p.name for p in home.rglob("*"))
    result = cli("jobs", "delete", full_job["id"])
    assert (result.code, result.out) == (1, "Nothing deleted.\n")
    assert sorted(p.name for p in home.rglob("*")) == before


@pytest.mark.parametrize("reply", ["Y", "yes", " y "])
def test_jobs_delete_accepts_any_yes(
    cli: Cli, cli_json: CliJson, full_job: dict[str, Any], answer: Callable[[str], list[str]], reply: str
) -> None:
    answer(reply)
    assert cli("jobs", "delete", full_job["id"]).code == 0
    assert cli_json("jobs", "list") == {"jobs": []}


def test_jobs_delete_without_a_terminal_refuses_unless_forced(
    cli: Cli, cli_json: CliJson, full_job: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    monkeypatch.setattr(builtins, "input", lambda *_: pytest.fail("asked without a terminal"))
    result = cli("jobs", "delete", full_job["id"])
    assert result.code == 1
    assert result.err.startswith("error: Delete job 'Big job' with 2 tasks, 3 runs and 3 logs?")
    assert "add --force to confirm" in result.err
    assert len(cli_json("jobs", "list")["jobs"]) == 1
    forced = cli("jobs", "delete", full_job["id"], "--force", "--json")
    assert forced.json() == {"deleted": {"jobs": 1, "tasks": 2, "runs": 3, "logs": 3}}
    assert cli_json("jobs", "list") == {"jobs": []}


# Tasks: create with every schedule option --------------------------------------------

SCHEDULE_OPTIONS = [
    ([], {"type": "manual"}),
    (["--manual"], {"type": "manual"}),
    (["--startup"], {"type": "startup"}),
    (["--cron", "0 9 * * mon-fri"], {"type": "cron", "expression": "0 9 * * mon-fri", "timezone": None}),
    (
        ["--cron", "30 2 * * *", "--timezone", "Europe/Amsterdam"],
        {"type": "cron", "expression": "30 2 * * *", "timezone": "Europe/Amsterdam"},
    ),
    (["--cron", "@hourly"], {"type": "cron", "expression": "@hourly", "timezone": None}),
    (["--every", "15m"], {"type": "interval", "every_seconds": 900, "anchor": None}),
    (["--every", "1h30m"], {"type": "interval", "every_seconds": 5400, "anchor": None}),
    (["--every", "2d"], {"type": "interval", "every_seconds": 172800, "anchor": None}),
    (["--every", "120"], {"type": "interval", "every_seconds": 120, "anchor": None}),
    # A time without an offset is local time: the home fixture's UTC, whatever zone the
    # suite was started in (this list is made then, before any fixture).
    (["--at", "2030-01-02T09:00"], {"type": "once", "at": "2030-01-02T09:00:00.000+00:00"}),
    (["--at", "2030-01-02T09:00+02:00"], {"type": "once", "at": "2030-01-02T07:00:00.000+00:00"}),
    (["--daily", "07:05"], {"type": "cron", "expression": "5 7 * * *", "timezone": None}),
    (
        ["--daily", "7:05", "--timezone", "Asia/Tokyo"],
        {"type": "cron", "expression": "5 7 * * *", "timezone": "Asia/Tokyo"},
    ),
    (["--weekly", "mon,fri@09:00"], {"type": "cron", "expression": "0 9 * * mon,fri", "timezone": None}),
    (["--weekly", "MON-FRI@18:30"], {"type": "cron", "expression": "30 18 * * mon-fri", "timezone": None}),
    (["--monthly", "1@09:00"], {"type": "cron", "expression": "0 9 1 * *", "timezone": None}),
    (["--monthly", "L@18:00"], {"type": "cron", "expression": "0 18 L * *", "timezone": None}),
    (
        ["--watch", "/srv/docs"],
        {"type": "file_watch", "path": "/srv/docs", "recursive": True, "debounce_seconds": 5.0},
    ),
    (
        ["--watch", "/srv/docs", "--debounce", "2.5"],
        {"type": "file_watch", "path": "/srv/docs", "recursive": True, "debounce_seconds": 2.5},
    ),
]


@pytest.mark.parametrize(
    ("options", "schedule"), SCHEDULE_OPTIONS, ids=[" ".join(o) or "none" for o, _ in SCHEDULE_OPTIONS]
)
def test_tasks_create_with_every_schedule_option(
    cli: Cli, cli_json: CliJson, options: list[str], schedule: dict[str, Any]
) -> None:
    before = now()
    created = make_task(cli_json, "t", *options)
    assert created["schedule"] == schedule
    assert cli_json("tasks", "get", created["id"])["schedule"] == schedule
    timed = schedule["type"] in ("cron", "interval", "once")
    if timed:
        assert datetime.fromisoformat(created["next_run_at"]) > before
    else:
        assert created["next_run_at"] is None
    human = cli("tasks", "create", "--name", "again", "--prompt", "p", *options).out.splitlines()
    assert human[0].startswith("Created task ") and human[0].endswith(": again")
    assert human[1].startswith(created["schedule_text"] + "; next run: ")
    assert human[1].endswith(" UTC" if timed else "next run: -")  # local time, named (TZ=UTC here)


def test_schedule_texts_read_like_the_schedule(cli_json: CliJson) -> None:
    texts = {
        tuple(options): make_task(cli_json, "t", *options)["schedule_text"]
        for options in (
            ["--weekly", "mon,fri@09:00"],
            ["--every", "15m"],
            ["--manual"],
            ["--startup"],
            ["--watch", "/srv"],
            ["--daily", "07:05", "--timezone", "Asia/Tokyo"],
        )
    }
    assert list(texts.values()) == [
        "At 09:00 on Monday and Friday",
        "Every 15 minutes",
        "Manual only",
        "When the scheduler starts",
        "When files change in /srv",
        "At 07:05 (Asia/Tokyo)",
    ]


def test_tasks_create_with_every_other_option(cli_json: CliJson) -> None:
    task = make_task(
        cli_json,
        "full",
        "--model",
        "opus",
        "--permission-mode",
        "plan",
        "--working-dir",
        "/srv/app",
        "--timeout",
        "1h",
        "--retries",
        "2",
        "--retry-delay",
        "30",
        "--max-turns",
        "5",
        "--allowed-tools",
        "Read,Grep",
        "--allowed-tools",
        "Bash",
        "--disallowed-tools",
        "Write",
        "--append-system-prompt",
        "Be brief.",
        "--session-mode",
        "resume",
        "--overlap",
        "queue",
        "--catch-up",
        "skip",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
        "--disabled",
    )
    stored = {
        key: task[key]
        for key in (
            "model",
            "permission_mode",
            "working_directory",
            "timeout_seconds",
            "retry",
            "max_turns",
            "allowed_tools",
            "disallowed_tools",
            "append_system_prompt",
            "session_mode",
            "overlap",
            "catch_up",
            "env",
            "enabled",
            "next_run_at",
            "job_id",
        )
    }
    assert stored == {
        "model": "opus",
        "permission_mode": "plan",
        "working_directory": "/srv/app",
        "timeout_seconds": 3600,
        "retry": {"max_attempts": 2, "delay_seconds": 30, "backoff": 2.0},
        "max_turns": 5,
        "allowed_tools": ["Read", "Grep", "Bash"],
        "disallowed_tools": ["Write"],
        "append_system_prompt": "Be brief.",
        "session_mode": "resume",
        "overlap": "queue",
        "catch_up": "skip",
        "env": {"A": "1", "B": "x=y"},
        "enabled": False,
        "next_run_at": None,
        "job_id": None,
    }


def test_input_that_is_not_utf8_is_refused_with_a_clear_error(
    cli: Cli, cli_json: CliJson, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "prompt.bin"
    binary.write_bytes(b"\xff\xfe\x00binary")
    result = cli("tasks", "create", "--name", "t", "--prompt-file", str(binary))
    assert (result.code, result.err) == (1, f"error: --prompt-file: {binary} is not UTF-8 text\n")
    not_utf8 = b"bad \xff name".decode("utf-8", "surrogateescape")  # as argv and stdin hand it over
    result = cli("tasks", "create", "--name", not_utf8, "--prompt", "p")
    assert (result.code, result.err) == (
        1,
        "error: --name: must be text: it holds bytes that are not UTF-8\n",
    )
    assert cli("jobs", "create", "--name", "j", "--working-dir", f"/tmp/{not_utf8}").code == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO(not_utf8))  # as read under the C locale
    result = cli("tasks", "create", "--name", "t", "--prompt", "-")
    assert (result.code, "prompt: must be text" in result.err) == (1, True)
    strict = io.TextIOWrapper(io.BytesIO(b"a \xff b"), encoding="utf-8", errors="strict")  # a UTF-8 locale
    monkeypatch.setattr(sys, "stdin", strict)
    result = cli("tasks", "create", "--name", "t", "--prompt", "-")
    assert (result.code, result.err) == (1, "error: --prompt: standard input is not UTF-8 text\n")
    assert cli_json("tasks", "list") == {"tasks": []}
    assert cli_json("jobs", "list") == {"jobs": []}


def test_tables_line_up_wide_characters(cli: Cli, cli_json: CliJson) -> None:
    for name in ("夜間レビュー", "Nightly", "Café crème"):
        make_job(cli_json, name)
    lines = cli("jobs", "list").out.splitlines()

    def columns(text: str) -> int:  # as a terminal shows it
        return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)

    starts = {columns(line[: line.index("pending")]) for line in lines[1:]}
    assert len(starts) == 1 and columns(lines[0][: lines[0].index("STATUS")]) in starts


def test_tasks_create_in_a_job_by_prefix(cli_json: CliJson) -> None:
    job = make_job(cli_json)
    task = make_task(cli_json, "t", "--job", job["id"][:4])
    assert task["job_id"] == job["id"]
    assert [t["id"] for t in cli_json("tasks", "list", "--job", job["id"][:8])["tasks"]] == [task["id"]]


def test_prompt_from_a_file(cli_json: CliJson, tmp_path: Path) -> None:
    prompt = "Review the diff.\n\n- be kind\n- émojis too: ✅\n"
    (tmp_path / "prompt.md").write_text(prompt, encoding="utf-8")
    task = cli_json("tasks", "create", "--name", "f", "--prompt-file", str(tmp_path / "prompt.md"))
    assert task["prompt"] == prompt


def test_prompt_from_standard_input(cli_json: CliJson, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("From stdin,\nwith two lines.\n"))
    task = cli_json("tasks", "create", "--name", "s", "--prompt", "-")
    assert task["prompt"] == "From stdin,\nwith two lines.\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("Updated from stdin"))
    assert cli_json("tasks", "update", task["id"], "--prompt", "-")["prompt"] == "Updated from stdin"


def test_prompt_problems_are_reported(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing.md"
    result = cli("tasks", "create", "--name", "f", "--prompt-file", str(missing))
    assert (result.code, result.err) == (
        1,
        f"error: --prompt-file: cannot read {missing}: No such file or directory\n",
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    result = cli("tasks", "create", "--name", "f", "--prompt", "-")
    assert (result.code, result.err) == (1, "error: --prompt: is required and must not be empty\n")
    assert cli("tasks", "list", "--json").json() == {"tasks": []}


# Tasks: list, get, update, enable/disable, next, delete -------------------------------


def test_tasks_list_all_by_job_and_unassigned(cli: Cli, cli_json: CliJson) -> None:
    assert cli("init").code == 0
    assert cli("tasks", "list").out == "No tasks.\n"
    job = make_job(cli_json)
    in_job = make_task(cli_json, "in job", "--job", job["id"])
    loose = make_task(cli_json, "loose", "--every", "1h")
    assert [t["id"] for t in cli_json("tasks", "list")["tasks"]] == [in_job["id"], loose["id"]]
    assert [t["id"] for t in cli_json("tasks", "list", "--job", job["id"])["tasks"]] == [in_job["id"]]
    assert [t["id"] for t in cli_json("tasks", "list", "--unassigned")["tasks"]] == [loose["id"]]
    assert all("job_id" in t for t in cli_json("tasks", "list")["tasks"])
    lines = cli("tasks", "list").out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "JOB", "SCHEDULE", "NEXT", "RUN", "LAST"]
    assert lines[1].split()[:3] == ["in", "job", in_job["id"][:8]] and lines[1].split()[3] == "Job"
    assert lines[2].split()[:3] == ["loose", loose["id"][:8], "-"] and lines[2].endswith("never")


def test_tasks_get_shows_every_field(cli: Cli, cli_json: CliJson) -> None:
    task = make_task(cli_json, "t", "--cron", "0 9 * * *", "--env", "GREETING=Grüezi")
    got = cli_json("tasks", "get", task["id"])
    assert got == task
    fields_text, totals_text = cli("tasks", "get", task["id"][:6]).out.split("\n\n")
    fields = {line.split()[0]: line.split(None, 1)[1] for line in fields_text.splitlines()}
    assert totals_text.splitlines()[0].split() == ["USAGE", "COST", "TOKENS", "IN", "OUT", "RUNS"]
    assert fields["id"] == task["id"]
    assert fields["name"] == "t" and fields["prompt"] == "prompt of t"
    assert fields["schedule"] == json.dumps(task["schedule"])
    assert fields["schedule_text"] == "At 09:00"
    assert fields["job_id"] == "-"
    assert fields["env"] == '{"GREETING": "Grüezi"}', "text as it is, not \\u escapes"


def test_tasks_update_changes_only_what_is_given(cli: Cli, cli_json: CliJson) -> None:
    task = make_task(
        cli_json, "t", "--every", "1h", "--retries", "1", "--retry-delay", "10", "--model", "opus"
    )
    updated = cli_json(
        "tasks",
        "update",
        task["id"][:8],
        "--name",
        "renamed",
        "--cron",
        "0 6 * * *",
        "--timezone",
        "Asia/Tokyo",
        "--retries",
        "4",
    )
    assert updated["name"] == "renamed"
    assert updated["schedule"] == {"type": "cron", "expression": "0 6 * * *", "timezone": "Asia/Tokyo"}
    assert updated["retry"] == {"max_attempts": 4, "delay_seconds": 10, "backoff": 2.0}
    assert (updated["model"], updated["prompt"]) == ("opus", task["prompt"])
    assert datetime.fromisoformat(updated["next_run_at"]).astimezone(cs.get_zone("Asia/Tokyo")).hour == 6
    assert updated["created_at"] == task["created_at"]
    result = cli("tasks", "update", task["id"], "--manual")
    assert result.out.splitlines()[0] == f"Updated task {task['id'][:8]}: renamed"
    assert cli_json("tasks", "get", task["id"])["next_run_at"] is None
    unchanged = cli("tasks", "update", task["id"])
    assert (unchanged.code, unchanged.err) == (
        2,
        "error: nothing to change: give at least one option (see --help)\n",
    )


def test_tasks_update_sets_and_drops_single_environment_variables(cli_json: CliJson) -> None:
    task = make_task(cli_json, "t", "--env", "A=1", "--env", "B=2")
    changed = cli_json("tasks", "update", task["id"], "--env", "B=20", "--env", "C=3")
    assert changed["env"] == {"A": "1", "B": "20", "C": "3"}
    dropped = cli_json("tasks", "update", task["id"], "--unset-env", "A", "--unset-env", "NOT_SET")
    assert dropped["env"] == {"B": "20", "C": "3"}
    assert cli_json("tasks", "update", task["id"], "--unset-env", "B", "--unset-env", "C")["env"] == {}


def test_a_folder_that_does_not_exist_is_kept_with_a_warning(cli: Cli, tmp_path: Path) -> None:
    missing, present = tmp_path / "not-yet", tmp_path / "here"
    present.mkdir()
    created = cli("tasks", "create", "--name", "t", "--prompt", "p", "--working-dir", str(missing))
    assert created.code == 0
    assert created.err == f"warning: the working folder {missing} does not exist; runs fail until it does\n"
    task_id = created.out.split()[2].rstrip(":")
    assert cli("tasks", "update", task_id, "--working-dir", str(present)).err == ""
    assert cli("tasks", "update", task_id, "--name", "renamed").err == ""  # only what is given is checked
    watched = cli("tasks", "update", task_id, "--watch", str(missing))
    assert watched.err == f"warning: the watched path {missing} does not exist; nothing fires until it does\n"
    job = cli("jobs", "create", "--name", "j", "--working-dir", str(missing / "deeper"))
    assert (job.code, job.err.startswith("warning: the working folder")) == (0, True)
    listed = cli("tasks", "get", task_id, "--json").json()
    assert (listed["working_directory"], listed["schedule"]["path"]) == (str(present), str(missing))


def test_a_task_whose_job_was_removed_by_hand_says_how_to_fix_it(
    cli: Cli, cli_json: CliJson, home: Path
) -> None:
    job = make_job(cli_json)
    task = make_task(cli_json, "t", "--job", job["id"])
    document = json.loads((home / "jobs.json").read_text())
    (home / "jobs.json").write_text(json.dumps({**document, "jobs": []}))
    result = cli("tasks", "update", task["id"], "--name", "renamed")
    assert (result.code, result.err) == (
        1,
        f"error: --job: the task's job {job['id']} is gone: give it another or none\n",
    )
    moved = cli_json("tasks", "update", task["id"], "--name", "renamed", "--job", "none")
    assert (moved["name"], moved["job_id"]) == ("renamed", None)


def test_tasks_update_moves_a_task_between_jobs_and_out(cli_json: CliJson) -> None:
    first, second = make_job(cli_json, "first"), make_job(cli_json, "second")
    task = make_task(cli_json, "t", "--job", first["id"])
    assert cli_json("tasks", "update", task["id"], "--job", second["id"][:8])["job_id"] == second["id"]
    assert cli_json("jobs", "tasks", first["id"]) == {"tasks": []}
    assert cli_json("tasks", "update", task["id"], "--job", "none")["job_id"] is None
    assert cli_json("jobs", "get", second["id"])["tasks"] == []
    assert [t["id"] for t in cli_json("tasks", "list", "--unassigned")["tasks"]] == [task["id"]]


def test_tasks_enable_and_disable(cli: Cli, cli_json: CliJson) -> None:
    task = make_task(cli_json, "t", "--every", "1h")
    disabled = cli_json("tasks", "disable", task["id"][:8])
    assert (disabled["enabled"], disabled["next_run_at"]) == (False, None)
    assert cli("tasks", "list").out.splitlines()[1].split()[-2] == "disabled"
    assert cli("tasks", "disable", task["id"]).out.startswith(f"Disabled task {task['id'][:8]}: t")
    enabled = cli_json("tasks", "enable", task["id"])
    assert enabled["enabled"] is True
    assert datetime.fromisoformat(enabled["next_run_at"]) > now()


def test_tasks_next_lists_the_coming_fire_times(cli: Cli, cli_json: CliJson) -> None:
    task = make_task(cli_json, "t", "--daily", "09:00")
    before = now()
    result = cli_json("tasks", "next", task["id"], "-n", "3")
    after = now()  # the CLI read its clock in between: 09:00 may have passed meanwhile
    times = [datetime.fromisoformat(moment) for moment in result["times"]]
    assert (result["task_id"], result["description"], result["enabled"]) == (task["id"], "At 09:00", True)
    assert len(times) == 3 and before < times[0] <= after + timedelta(days=1)
    zone = cs.get_zone(None)
    assert all((t.astimezone(zone).hour, t.minute, t.second) == (9, 0, 0) for t in times)
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(days=1)] * 2
    assert len(cli_json("tasks", "next", task["id"])["times"]) == 5
    lines = cli("tasks", "next", task["id"], "-n", "2").out.splitlines()
    assert lines == ["At 09:00", *(f"  {shown(moment)}" for moment in result["times"][:2])]


def test_tasks_next_for_a_disabled_or_untimed_task(cli: Cli, cli_json: CliJson) -> None:
    task = make_task(cli_json, "t", "--every", "1h", "--disabled")
    out = cli("tasks", "next", task["id"], "-n", "1").out
    assert "the task is disabled" in out
    startup = make_task(cli_json, "s", "--startup")
    assert cli_json("tasks", "next", startup["id"])["times"] == []
    assert "(no upcoming fire times)" in cli("tasks", "next", startup["id"]).out


def test_tasks_delete(cli: Cli, cli_json: CliJson, home: Path, answer: Callable[[str], list[str]]) -> None:
    task = make_task(cli_json, "t")
    run = add_run(home, task["id"], "success", now())
    refused = cli("tasks", "delete", task["id"])
    assert refused.code == 1 and "add --force to confirm" in refused.err
    assert len(cli_json("tasks", "list")["tasks"]) == 1
    asked = answer("y")
    result = cli("tasks", "delete", task["id"][:8])
    assert asked == ["Delete task 't' with 1 run and 1 log? [y/N] "]
    assert (result.code, result.out) == (0, "Deleted 1 task, 1 run, 1 log.\n")
    assert cli_json("tasks", "list") == {"tasks": []}
    assert not (home / "logs" / f"{run}.log").exists()
    second = make_task(cli_json, "t2")
    assert cli_json("tasks", "delete", second["id"], "--force") == {
        "deleted": {"jobs": 0, "tasks": 1, "runs": 0, "logs": 0}
    }


# Runs --------------------------------------------------------------------------------


@pytest.fixture
def history(cli_json: CliJson, home: Path) -> dict[str, Any]:
    job = make_job(cli_json)
    in_job = make_task(cli_json, "in job", "--job", job["id"])["id"]
    loose = make_task(cli_json, "loose")["id"]
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    runs = [
        add_run(home, in_job, "success", start),
        add_run(home, loose, "failed", start + timedelta(minutes=1)),
        add_run(home, in_job, "failed", start + timedelta(minutes=2)),
        add_run(home, loose, "success", start + timedelta(minutes=3)),
    ]
    return {"job": job["id"], "in_job": in_job, "loose": loose, "runs": runs}


def test_runs_list_newest_first_with_filters(cli: Cli, cli_json: CliJson, history: dict[str, Any]) -> None:
    runs = history["runs"]

    def listed(*options: str) -> list[str]:
        return [run["id"] for run in cli_json("runs", "list", *options)["runs"]]

    assert listed() == runs[::-1]
    assert listed("--task", history["loose"][:8]) == [runs[3], runs[1]]
    assert listed("--job", history["job"][:8]) == [runs[2], runs[0]]
    assert listed("--status", "failed") == [runs[2], runs[1]]
    assert listed("--job", history["job"], "--status", "success") == [runs[0]]
    assert listed("-n", "2") == [runs[3], runs[2]]
    lines = cli("runs", "list").out.splitlines()
    headers = ["TASK", "ID", "STATUS", "TRIGGER", "STARTED", "WALL", "TIME", "COST", "TOKENS", "ERROR"]
    assert lines[0].split() == headers
    assert lines[1].split() == [
        "loose",
        runs[3][:8],
        "success",
        "manual",
        *shown("2026-03-01T12:03:00+00:00").split(),
        "42.0s",
        "$0.2500",
        "-",
    ]
    assert cli("runs", "list", "--status", "timeout").out == "No runs.\n"


def test_runs_get_and_delete(cli: Cli, cli_json: CliJson, history: dict[str, Any], home: Path) -> None:
    run_id = history["runs"][1]
    got = cli_json("runs", "get", run_id[:8])
    assert (got["id"], got["task_id"], got["status"], got["duration_seconds"]) == (
        run_id,
        history["loose"],
        "failed",
        42.0,
    )
    fields = dict(line.split(None, 1) for line in cli("runs", "get", run_id).out.splitlines())
    assert (fields["status"], fields["cost_usd"], fields["error"]) == ("failed", "0.25", "-")
    assert cli("runs", "delete", run_id[:8], "--yes").out == "Deleted 1 run, 1 log.\n"
    assert cli("runs", "get", run_id).code == 1
    assert not (home / "logs" / f"{run_id}.log").exists()
    assert len(cli_json("runs", "list")["runs"]) == 3


def test_an_active_run_cannot_be_deleted(cli: Cli, cli_json: CliJson, home: Path) -> None:
    task = make_task(cli_json, "t")
    queued = cli_json("tasks", "run", task["id"], "--detach")
    assert queued["status"] == "queued" and queued["trigger"] == "cli"
    result = cli("runs", "delete", queued["id"])
    assert (result.code, result.err) == (1, "error: the run is still active; stop it first\n")
    assert cli_json("runs", "get", queued["id"])["status"] == "queued"


# Schedule preview --------------------------------------------------------------------


def test_schedule_preview_cron_in_a_time_zone(cli: Cli, cli_json: CliJson) -> None:
    argv = [
        "schedule",
        "preview",
        "--cron",
        "0 9 * * mon,fri",
        "--timezone",
        "Europe/Amsterdam",
        "--after",
        "2026-03-25T00:00Z",
        "-n",
        "3",
    ]
    result = cli_json(*argv)
    assert result == {
        "schedule": {"type": "cron", "expression": "0 9 * * mon,fri", "timezone": "Europe/Amsterdam"},
        "description": "At 09:00 on Monday and Friday (Europe/Amsterdam)",
        "times": [
            "2026-03-27T08:00:00.000+00:00",
            "2026-03-30T07:00:00.000+00:00",
            "2026-04-03T07:00:00.000+00:00",
        ],
    }
    assert cli(*argv).out.splitlines() == [  # shown in the schedule's own zone
        "At 09:00 on Monday and Friday (Europe/Amsterdam)",
        "  2026-03-27 09:00 CET",
        "  2026-03-30 09:00 CEST",
        "  2026-04-03 09:00 CEST",
    ]


@pytest.mark.parametrize(
    ("options", "times"),
    [
        (["--every", "90m"], ["2026-03-01T01:30:00.000+00:00", "2026-03-01T03:00:00.000+00:00"]),
        (["--daily", "06:15"], ["2026-03-01T06:15:00.000+00:00", "2026-03-02T06:15:00.000+00:00"]),
        (["--weekly", "sun@12:00"], ["2026-03-01T12:00:00.000+00:00", "2026-03-08T12:00:00.000+00:00"]),
        (["--monthly", "L@23:00"], ["2026-03-31T23:00:00.000+00:00", "2026-04-30T23:00:00.000+00:00"]),
        (["--at", "2026-03-05T10:00Z"], ["2026-03-05T10:00:00.000+00:00"]),
    ],
)
def test_schedule_preview_other_schedules(cli_json: CliJson, options: list[str], times: list[str]) -> None:
    result = cli_json("schedule", "preview", *options, "--after", "2026-03-01T00:00Z", "-n", "2")
    assert result["times"] == times


def test_schedule_preview_errors(cli: Cli) -> None:
    result = cli("schedule", "preview", "--cron", "0 9 * *")
    assert (result.code, result.err) == (
        1,
        "error: --cron: expected 5 fields (minute hour day-of-month month day-of-week), got 4\n",
    )
    result = cli("schedule", "preview", "--every", "15m", "-n", "0")
    assert (result.code, result.err) == (1, "error: count: must be between 1 and 100 (got 0)\n")
    result = cli("schedule", "preview")
    assert (result.code, result.err) == (
        2,
        "error: give a timed schedule: --cron EXPR, --every 15m, --daily, --weekly, --monthly or --at\n",
    )
    assert cli("schedule", "preview", "--every", "15m").code == 0


# Paths typed on the command line ----------------------------------------------------


PATH_OPTIONS = [
    (["tasks", "create", "--name", "t", "--prompt", "p", "--working-dir"], "working_directory"),
    (["tasks", "create", "--name", "t", "--prompt", "p", "--watch"], "schedule.path"),
    (["jobs", "create", "--name", "j", "--working-dir"], "working_directory"),
]


def stored_path(record: dict[str, Any], field: str) -> str:
    return str(record["schedule"]["path"] if field == "schedule.path" else record[field])


@pytest.mark.parametrize(("argv", "field"), PATH_OPTIONS)
def test_relative_paths_are_made_absolute(
    cli_json: CliJson, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], field: str
) -> None:
    """The engine runs elsewhere: a path relative to the shell's folder must not stay relative."""
    monkeypatch.chdir(tmp_path)
    assert stored_path(cli_json(*argv, "sub/dir"), field) == str(tmp_path / "sub" / "dir")
    assert stored_path(cli_json(*argv, "."), field) == str(tmp_path)


@pytest.mark.parametrize(("argv", "field"), PATH_OPTIONS)
def test_home_and_variables_in_paths_are_kept_for_the_run(
    cli_json: CliJson, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], field: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for path in ("~/src/app", "$HOME/src/app", "/abs/src"):
        assert stored_path(cli_json(*argv, path), field) == path


def test_settings_can_be_shown_and_changed_with_their_rules(cli: Callable[..., Any], home: Path) -> None:
    assert cli("init").code == 0
    shown = cli("settings", "show", "--json")
    assert shown.code == 0
    assert shown.json() == {
        "claude_path": None,
        "max_concurrent_runs": 2,
        "retention_runs": 100,
        "start_by_minutes": 10,
    }

    changed = cli("settings", "set", "max_concurrent_runs", "4", "--json")
    assert changed.code == 0 and changed.json()["max_concurrent_runs"] == 4
    assert json.loads((home / "settings.json").read_text())["max_concurrent_runs"] == 4

    refused = cli("settings", "set", "retention_runs", "0")
    assert refused.code == 1
    assert refused.err == "error: retention_runs: must be between 1 and 100000 (got 0)\n"

    missing = cli("settings", "set", "claude_path", "/opt/claude", "--json")
    assert missing.json()["claude_path"] == "/opt/claude"  # kept: it may be installed later
    assert missing.err.startswith("warning: the claude_path setting is set to '/opt/claude'")
    assert cli("settings", "set", "claude_path", cs.__file__).err == ""  # an executable file
    assert cli("settings", "set", "claude_path", "none", "--json").json()["claude_path"] is None
    assert cli("settings", "set", "colour", "blue").code == 2


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        (
            ["--timezone", "Europe/Paris"],
            2,
            "error: --timezone goes with --cron, --daily, --weekly or --monthly",
        ),
        (["--debounce", "3"], 2, "error: --debounce goes with --watch"),
        (
            ["--at", "2020-01-01T00:00Z"],
            1,
            "error: --at: 2020-01-01 00:00 has passed; pick a time ahead",
        ),
    ],
)
def test_options_that_would_be_ignored_or_never_fire_are_refused(
    cli: Callable[..., Any], home: Path, options: list[str], code: int, message: str
) -> None:
    result = cli("tasks", "create", "--name", "n", "--prompt", "p", *options)
    assert (result.code, result.err.strip()) == (code, message)
    assert not (home / "tasks.json").exists()


def test_updating_a_cron_time_keeps_its_zone_and_the_zone_or_debounce_change_alone(
    cli_json: Callable[..., Any],
) -> None:
    task = cli_json(
        "tasks", "create", "--name", "n", "--prompt", "p", "--cron", "0 9 * * *", "--timezone", "Asia/Tokyo"
    )
    moved = cli_json("tasks", "update", task["id"], "--daily", "04:00")
    assert moved["schedule"] == {"type": "cron", "expression": "0 4 * * *", "timezone": "Asia/Tokyo"}
    zoned = cli_json("tasks", "update", task["id"], "--timezone", "Europe/Paris")
    assert zoned["schedule"] == {"type": "cron", "expression": "0 4 * * *", "timezone": "Europe/Paris"}

    watch = cli_json("tasks", "create", "--name", "w", "--prompt", "p", "--watch", "/tmp")
    calmer = cli_json("tasks", "update", watch["id"], "--debounce", "30")
    assert calmer["schedule"]["debounce_seconds"] == 30 and calmer["schedule"]["path"] == "/tmp"


def test_tasks_list_job_none_lists_the_unassigned_tasks(cli_json: Callable[..., Any]) -> None:
    job = cli_json("jobs", "create", "--name", "J")
    cli_json("tasks", "create", "--name", "in", "--prompt", "p", "--job", job["id"])
    loose = cli_json("tasks", "create", "--name", "loose", "--prompt", "p")
    assert [t["id"] for t in cli_json("tasks", "list", "--job", "none")["tasks"]] == [loose["id"]]
