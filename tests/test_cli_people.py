"""The command line for people (issue 14): errors in the user's words, a data home that is
never made by a read, help for every option."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Result

import claude_scheduler as cs

Cli = Callable[..., Result]
CliJson = Callable[..., Any]


def main_err(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cs.main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["job", "list"],
            [
                "claude-code-scheduler cli: error: argument GROUP: invalid choice: 'job' (choose from "
                "'jobs', 'tasks', 'runs', 'engine', 'settings', 'schedule', 'export', 'import', "
                "'desktop', 'service', 'notify', 'completion', 'init', 'doctor')",
                "Did you mean 'jobs'?",
                "Try 'claude-code-scheduler cli --help' for more.",
            ],
        ),
        (
            ["tasks", "lsit"],
            [
                "claude-code-scheduler cli tasks: error: argument VERB: invalid choice: 'lsit' (choose "
                "from 'list', 'get', 'create', 'update', 'delete', 'enable', 'disable', 'next', 'run', "
                "'duplicate')",
                "Did you mean 'list'?",
                "Try 'claude-code-scheduler cli tasks --help' for more.",
            ],
        ),
        (
            ["jobs", "list", "--jsno"],
            [
                "claude-code-scheduler cli jobs list: error: unrecognized arguments: --jsno",
                "Did you mean '--json'?",
                "Try 'claude-code-scheduler cli jobs list --help' for more.",
            ],
        ),
        (
            ["tasks", "create", "--name", "t", "--prompt", "p", "--every", "2", "hours"],
            [
                "claude-code-scheduler cli tasks create: error: unrecognized arguments: hours",
                "A value is one word: write --every 2h",
                "Try 'claude-code-scheduler cli tasks create --help' for more.",
            ],
        ),
        (
            ["tasks", "create", "--name", "Nightly", "review", "--prompt", "p"],
            [
                "claude-code-scheduler cli tasks create: error: unrecognized arguments: review",
                "A value is one word: quote it, as in --name 'Nightly review'",
                "Try 'claude-code-scheduler cli tasks create --help' for more.",
            ],
        ),
        (
            ["runs"],
            [
                "claude-code-scheduler cli runs: error: the following arguments are required: VERB",
                "Choose one of: list, get, delete, log, stop",
                "Try 'claude-code-scheduler cli runs --help' for more.",
            ],
        ),
    ],
)
def test_a_usage_error_is_one_line_with_a_hint_and_where_help_is(
    cli: Cli, argv: list[str], expected: list[str]
) -> None:
    result = cli(*argv)
    assert (result.code, result.out, result.err.splitlines()) == (2, "", expected)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--every", "10s"], "--every: must be between 1m and 366d (got 10s)"),
        (["--every", "1h", "--retries", "-1"], "--retries: must be between 0 and 100 (got -1)"),
        (["--every", "1h", "--retry-delay", "-5"], "--retry-delay: must be between 0 and 86400 (got -5)"),
        (["--timeout", "0s"], "--timeout: must be between 1s and 7d (got 0s)"),
        (["--env", "1X=2"], "--env: '1X' is not a valid environment variable name"),
        (["--cron", "61 * * * *", "--timezone", "Mars/Base"], None),
    ],
)
def test_validation_errors_name_the_option_typed(
    home: Path, cli: Cli, options: list[str], message: str | None
) -> None:
    result = cli("tasks", "create", "--name", "t", "--prompt", "p", *options)
    assert result.code == 1
    if message is None:  # one of the two, each named by its option
        assert result.err.startswith(("error: --cron: ", "error: --timezone: ")), result.err
    else:
        assert result.err == f"error: {message}\n"


def test_the_window_options_work_without_gui(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = main_err(capsys, "--port", "zero")
    assert code == 2
    assert (
        err.splitlines()[0] == "claude-code-scheduler gui: error: argument --port: invalid int value: 'zero'"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "list"],
        ["tasks", "list"],
        ["runs", "list"],
        ["jobs", "usage"],
        ["engine", "status"],
        ["settings", "show"],
        ["notify", "show"],
        ["export"],
    ],
)
def test_a_read_command_on_a_missing_home_says_so_and_creates_nothing(
    home: Path, cli: Cli, argv: list[str]
) -> None:
    typo = home.parent / "dtaa"
    result = cli(*argv, "--home", str(typo))
    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f"error: no data home at {typo}: check --home or ${cs.HOME_ENV}, or create it with `cli init` "
        "(any command that saves, such as `cli jobs create`, creates it too)\n"
    )
    assert not typo.exists() and not home.exists()


def test_init_creates_the_home_and_then_reads_work(home: Path, cli: Cli, cli_json: CliJson) -> None:
    assert (home.exists(), cli("jobs", "list").code) == (False, 1)
    result = cli("init")
    assert (result.code, result.out) == (0, f"Created the data home {home}\n")
    assert (home / cs.HOME_MARKER).is_file()
    assert cli_json("init") == {"home": str(home), "created": False}
    assert (cli("jobs", "list").code, cli("jobs", "list").out) == (0, "No jobs yet.\n")


def test_a_write_command_still_creates_the_home(home: Path, cli_json: CliJson) -> None:
    job = cli_json("jobs", "create", "--name", "First")
    assert [listed["id"] for listed in cli_json("jobs", "list")["jobs"]] == [job["id"]]


def every_parser(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_parser(sub, f"{path} {name}".strip())


def test_every_option_of_every_verb_has_help_text() -> None:
    missing = [
        (path, action.option_strings or action.dest)
        for path, parser in every_parser(cs.build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_update_shows_no_defaults_and_create_does(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = main_err(capsys, "cli", "tasks", "update", "--help")
    update = capsys.readouterr().out
    assert code == 0 and "default" not in update.replace("--permission-mode MODE", "").replace(
        "default: reads only", ""
    )
    cs.main(["cli", "tasks", "create", "--help"])
    create = " ".join(capsys.readouterr().out.split())
    for shown in ("(default sonnet)", "(default 30m)", "(default 0)", "(default new)", "(default skip)"):
        assert shown in create
    assert "resume: each run continues the session of the task's last run" in create


@pytest.mark.parametrize("mode", ["gui", "serve"])
def test_gui_and_serve_describe_themselves_and_their_port(
    capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    with pytest.raises(SystemExit):
        cs.build_parser().parse_args([mode, "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"127.0.0.1:{cs.DEFAULT_PORT}" in shown and f"(default {cs.DEFAULT_PORT};" in shown


def test_tasks_run_help_is_about_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    cs.main(["cli", "tasks", "run", "--help"])
    assert "(jobs)" not in capsys.readouterr().out


def test_global_options_come_after_the_mode_too(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = cs.build_parser().parse_args(["serve", "-vv", "--home", str(home)])
    assert (args.verbose_below, args.home) == (2, str(home))
    other = home.parent / "other"
    assert cs.main(["cli", "jobs", "create", "--name", "J", "--home", str(other), "-v"]) == 0
    assert cs.main(["cli", "--home", str(other), "jobs", "list", "--json"]) == 0
    assert '"name": "J"' in capsys.readouterr().out


def test_tables_put_names_first_and_elide_them_to_the_terminal(
    cli: Cli, cli_json: CliJson, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = cli_json("jobs", "create", "--name", "Nightly maintenance of the whole monorepo")
    long = "Review every pull request opened since yesterday and summarise the risky ones"
    task = cli_json("tasks", "create", "--name", long, "--prompt", "p", "--job", job["id"])
    wide = cli("tasks", "list").out.splitlines()
    assert wide[1].startswith(f"{long[:47]}…  {task['id'][:8]}  Nightly maintenance of the whole monorepo  ")
    monkeypatch.setenv("COLUMNS", "100")
    narrow = cli("tasks", "list").out.splitlines()
    assert max(len(line) for line in narrow) <= 100
    name, ident, job_name = narrow[1].split("  ")[:3]
    assert name.endswith("…") and long.startswith(name[:-1]) and ident == task["id"][:8]
    assert job_name.endswith("…") or job_name == job["name"]
    assert cli_json("tasks", "list")["tasks"][0]["id"] == task["id"]  # full ids in --json


def test_ids_are_shown_by_their_shortest_unique_prefix_of_at_least_eight() -> None:
    twins = ["abcd1234ef-1", "abcd1234eg-2", "99999999-3"]
    assert cs.short_ids(twins) == {
        "abcd1234ef-1": "abcd1234ef",
        "abcd1234eg-2": "abcd1234eg",
        "99999999-3": "99999999",
    }


@pytest.mark.parametrize("group", ["jobs", "tasks", "runs"])
def test_every_delete_asks_the_same_way_and_dry_run_deletes_nothing(
    home: Path, cli: Cli, cli_json: CliJson, group: str
) -> None:
    job = cli_json("jobs", "create", "--name", "J")
    task = cli_json("tasks", "create", "--name", "T", "--prompt", "p", "--job", job["id"])
    store = cs.Store(home)
    run = cs.Run(cs.new_id(), task["id"], status=cs.RunStatus.SUCCESS, created_at=cs.utcnow())
    run.finished_at = run.created_at
    store.enqueue(run)
    target = {"jobs": job, "tasks": task, "runs": {"id": run.id}}[group]
    what = {
        "jobs": "job 'J' with 1 task, 1 run and 0 logs",
        "tasks": "task 'T' with 1 run and 0 logs",
        "runs": f"run {run.id[:8]} of task 'T' (success) and its log",
    }[group]
    dry = cli(group, "delete", target["id"], "--dry-run")
    assert (dry.code, dry.out) == (0, f"Would delete {what}.\n")
    assert cli_json(group, "delete", target["id"], "--dry-run")["dry_run"] is True
    asked = cli(group, "delete", target["id"])
    assert (asked.code, asked.err) == (
        1,
        f"error: Delete {what}? Not asking without a terminal: add --force to confirm\n",
    )
    assert cli_json("runs", "get", run.id)["id"] == run.id  # nothing was deleted
    done = cli(group, "delete", target["id"], "-y")
    assert done.code == 0 and done.out.startswith("Deleted ")
    assert cli("runs", "get", run.id).code == 1


def test_the_readmes_cli_reference_is_the_parsers() -> None:
    readme = (Path(cs.__file__).parent / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(cs.REFERENCE_START), readme.index(cs.REFERENCE_END)
    assert readme[start : end + len(cs.REFERENCE_END)] == cs.cli_reference()


def queued_with_no_engine(cli: Cli, cli_json: CliJson, *options: str) -> tuple[dict[str, Any], Result]:
    """A task, and `tasks run --detach` of it while no engine runs: (the run, that result)."""
    task = cli_json("tasks", "create", "--name", "Nightly", "--prompt", "Say hello.")
    result = cli("tasks", "run", task["id"], "--detach", *options)
    assert result.code == 0, result.err
    (run,) = cli_json("runs", "list", "--task", task["id"])["runs"]
    return run, result


def engine_at(home: Path, moment: datetime, *, paused: bool = False) -> cs.Engine:
    """An engine (ticked by the test) whose clock says `moment`."""
    store = cs.Store(home, clock=lambda: moment)
    if paused:
        store.set_engine_state(paused=True)
    engine = cs.Engine(store)
    assert engine.start(thread=False)
    return engine


def expiry_notes(noun: str, start_by: datetime, asked: datetime) -> set[str]:
    """The note of a run asked for at `asked` while no engine runs, as the CLI words it
    when it read its clock (between `asked` and now; TZ=UTC): the time alone on that day,
    with the date when the run expires after midnight (asked for from 23:50 on)."""
    days = {asked.date(), datetime.now(UTC).date()}
    whens = {f"{start_by:%H:%M}" if start_by.date() == day else f"{start_by:%Y-%m-%d %H:%M}" for day in days}
    return {
        f"No scheduler engine is running: the {noun} expires at {when} (UTC) unless one "
        "starts (run `serve` or open the window)."
        for when in whens
    }


def tick_once_at(home: Path, moment: datetime, *, paused: bool = False) -> None:
    """One pass of an engine whose clock says `moment`, then the engine stopped."""
    engine = engine_at(home, moment, paused=paused)
    try:
        engine.tick()
    finally:
        engine.stop()


def test_a_run_queued_with_no_engine_expires_at_its_start_by_time_and_says_why(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    run, result = queued_with_no_engine(cli, cli_json)
    asked = datetime.fromisoformat(run["created_at"])
    start_by = datetime.fromisoformat(run["start_by"])
    assert start_by == asked + timedelta(minutes=10)  # the default start_by_minutes
    assert result.out.splitlines()[1] in expiry_notes("run", start_by, asked)

    tick_once_at(home, start_by + timedelta(seconds=1))

    expired = cli_json("runs", "get", run["id"])
    assert (expired["status"], expired["failure_kind"], expired["started_at"]) == (
        "cancelled",
        "expired",
        None,
    )
    assert expired["error"].startswith("expired: asked for at ")
    assert "start_by_minutes" in expired["error"]
    assert cs.Store(home).queue() == []
    shown = cli("runs", "list").out
    assert "cancelled (expired)" in shown
    assert "expired: asked for at" in cli("runs", "get", run["id"]).out


def test_an_engine_that_starts_in_time_keeps_the_run_and_lifts_its_limit(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    run, _ = queued_with_no_engine(cli, cli_json)
    start_by = datetime.fromisoformat(run["start_by"])

    engine = engine_at(home, start_by - timedelta(minutes=1), paused=True)  # paused: no session starts
    try:
        engine.tick()
        kept = cli_json("runs", "get", run["id"])
        assert (kept["status"], kept["start_by"]) == ("queued", None)
        assert [entry["run_id"] for entry in cs.Store(home).queue()] == [run["id"]]
        assert "start_by" not in cs.Store(home).queue()[0]
    finally:
        engine.stop()

    later = engine_at(home, start_by + timedelta(hours=3), paused=True)
    try:
        later.tick()  # an engine ran in time: the run waits for it, however long
    finally:
        later.stop()
    assert cli_json("runs", "get", run["id"])["status"] == "queued"


def test_wait_for_engine_and_the_setting_choose_what_a_queued_run_does(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    run, result = queued_with_no_engine(cli, cli_json, "--wait-for-engine")
    assert run["start_by"] is None
    assert result.out.splitlines()[1] == (
        "No scheduler engine is running: the run waits for one (run `serve` or open the window)."
    )
    tick_once_at(home, datetime.fromisoformat(run["created_at"]) + timedelta(days=2), paused=True)
    assert cli_json("runs", "get", run["id"])["status"] == "queued"

    assert cli_json("settings", "set", "start_by_minutes", "45")["start_by_minutes"] == 45
    assert "start_by_minutes" in cli("settings", "show").out
    second, _ = queued_with_no_engine(cli, cli_json)
    waited = datetime.fromisoformat(second["start_by"]) - datetime.fromisoformat(second["created_at"])
    assert waited == timedelta(minutes=45)
    refused = cli("settings", "set", "start_by_minutes", "0")
    assert refused.code != 0 and "start_by_minutes" in refused.err


def queued_job_with_no_engine(
    cli: Cli, cli_json: CliJson, *options: str
) -> tuple[str, dict[str, Any], Result]:
    """A job of two tasks, and `jobs run --detach` of it while no engine runs: (the job's
    id, its first step's run, that result)."""
    job = cli_json("jobs", "create", "--name", "Nightly")
    for name in ("one", "two"):
        cli_json("tasks", "create", "--name", name, "--prompt", "Say hello.", "--job", job["id"])
    result = cli("jobs", "run", job["id"], "--detach", *options)
    assert result.code == 0, result.err
    (run,) = cli_json("runs", "list", "--job", job["id"])["runs"]
    return job["id"], run, result


def test_a_job_run_queued_with_no_engine_expires_as_a_whole_and_says_why(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    job_id, run, result = queued_job_with_no_engine(cli, cli_json)
    start_by, asked = datetime.fromisoformat(run["start_by"]), datetime.fromisoformat(run["created_at"])
    assert start_by == asked + timedelta(minutes=10)
    assert result.out.splitlines()[1] in expiry_notes("job run", start_by, asked)

    tick_once_at(home, start_by + timedelta(seconds=1))

    (job_run,) = cli_json("jobs", "runs", job_id)["job_runs"]
    assert job_run["status"] == "expired"
    assert job_run["note"].startswith("expired: asked for at ")
    assert "`jobs run --detach --wait-for-engine` waits" in job_run["note"]
    assert [step["status"] for step in job_run["steps"]] == ["not_run", "not_run"]
    assert cli_json("runs", "get", run["id"])["failure_kind"] == "expired"
    assert cs.Store(home).queue() == []
    assert "expired: asked for at" in cli("jobs", "runs", job_id).out


def test_a_job_run_that_waits_for_an_engine_has_no_start_by_limit(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    job_id, run, result = queued_job_with_no_engine(cli, cli_json, "--wait-for-engine")
    assert run["start_by"] is None
    assert result.out.splitlines()[1] == (
        "No scheduler engine is running: the job run waits for one (run `serve` or open the window)."
    )
    tick_once_at(home, datetime.fromisoformat(run["created_at"]) + timedelta(days=2), paused=True)
    (job_run,) = cli_json("jobs", "runs", job_id)["job_runs"]
    assert (job_run["status"], cli_json("runs", "get", run["id"])["status"]) == ("running", "queued")


def test_a_run_asked_for_while_an_engine_runs_has_no_start_by_limit(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    cli_json("init")
    engine = cs.Engine(cs.Store(home))
    assert engine.start(thread=False)
    try:
        cli_json("engine", "pause")
        run, result = queued_with_no_engine(cli, cli_json)
    finally:
        engine.stop()
    assert run["start_by"] is None
    assert "expires" not in result.out


def test_tasks_list_shows_a_next_run_that_falls_in_a_usage_limit_hold_as_held(
    home: Path, cli: Cli, cli_json: CliJson
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    later = (now + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M")
    cli_json("tasks", "create", "--name", "Hourly", "--prompt", "p", "--every", "1h")
    cli_json("tasks", "create", "--name", "Later", "--prompt", "p", "--at", later)
    cli_json(
        "tasks",
        "create",
        "--name",
        "Own",
        "--prompt",
        "p",
        "--every",
        "1h",
        "--env",
        "ANTHROPIC_API_KEY=sk-own",
    )
    until = now + timedelta(hours=2)
    cs.Store(home).set_engine_state(hold={"until": cs.fmt_time(until), "kind": "usage_limit"})

    rows = {line.split()[0]: line for line in cli("tasks", "list").out.splitlines()[1:]}

    assert f"held until {until:%Y-%m-%d %H:%M}" in rows["Hourly"]
    assert "held" not in rows["Later"] and later.replace("T", " ") in rows["Later"]
    assert "held" not in rows["Own"]
    cs.Store(home).set_engine_state(hold=None)
    assert "held" not in cli("tasks", "list").out
