"""The claude options of a task (permission modes, budget, fallback model, extra folders,
MCP config, system prompts, extra arguments) in every door: the CLI, the API with its
OpenAPI document, the window's editor, and the argv a run gives the fake claude.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from run_helpers import Recorder
from test_api import Api
from test_gui import display as xvfb_display  # noqa: F401  # a fixture, named so here
from test_gui import open_gui

import claude_scheduler as cs

Cli = Callable[..., Result]
CliJson = Callable[..., Any]
NEW_FIELDS = (
    "system_prompt",
    "max_budget_usd",
    "fallback_model",
    "add_dirs",
    "mcp_config",
    "strict_mcp_config",
    "extra_args",
)
CLEARED = {
    "system_prompt": None,
    "max_budget_usd": None,
    "fallback_model": None,
    "add_dirs": [],
    "mcp_config": None,
    "strict_mcp_config": False,
    "extra_args": [],
}


def options_of(task: dict[str, Any]) -> dict[str, Any]:
    return {key: task[key] for key in NEW_FIELDS}


def create(cli_json: CliJson, *options: str) -> dict[str, Any]:
    return dict(cli_json("tasks", "create", "--name", "t", "--prompt", "Say hello.", *options))


@pytest.fixture(name="api")
def api_fixture(home: Path) -> Iterator[Api]:
    """A server on port 0 over the data home, and a client with its token."""
    server = cs.ApiServer(cs.Service(cs.Store(home)), "127.0.0.1", 0)
    server.start()
    client = Api(server, cs.api_token(home, create=False))
    yield client
    client.close()
    server.stop()


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """An extra folder and an MCP config file that exist."""
    shared = tmp_path / "user" / "shared"
    shared.mkdir(parents=True)
    mcp = tmp_path / "mcp.json"
    mcp.write_text('{"mcpServers": {}}', encoding="utf-8")
    return {"shared": shared, "mcp": mcp}


# The CLI ##################################################################################


def test_cli_create_sets_every_claude_option(
    cli_json: CliJson, folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folders["mcp"].parent)
    task = create(
        cli_json,
        *("--permission-mode", "dontAsk", "--system-prompt", "- You review code."),
        *("--max-budget-usd", "$2.50", "--fallback-model", "opus"),
        *("--add-dir", "~/shared", "--add-dir", "rel"),
        *("--mcp-config", "mcp.json", "--strict-mcp-config"),
        *("--extra-args", "--effort high --settings 'my settings.json'"),
    )
    assert task["permission_mode"] == "dontAsk"
    assert options_of(task) == {
        "system_prompt": "- You review code.",
        "max_budget_usd": 2.5,
        "fallback_model": "opus",
        "add_dirs": ["~/shared", str(folders["mcp"].parent / "rel")],
        "mcp_config": str(folders["mcp"]),
        "strict_mcp_config": True,
        "extra_args": ["--effort", "high", "--settings", "my settings.json"],
    }


def test_cli_update_changes_and_clears_each_option(cli_json: CliJson, folders: dict[str, Path]) -> None:
    task = create(
        cli_json,
        *("--system-prompt", "S", "--max-budget-usd", "1", "--fallback-model", "opus"),
        *("--add-dir", str(folders["shared"]), "--mcp-config", str(folders["mcp"]), "--strict-mcp-config"),
        *("--extra-args", "--effort low"),
    )
    changed = cli_json(
        *("tasks", "update", task["id"], "--max-budget-usd", "0.25", "--add-dir", "/a", "--add-dir", "/b"),
        *("--extra-args", "--effort high"),
    )
    assert (changed["max_budget_usd"], changed["add_dirs"], changed["extra_args"]) == (
        0.25,
        ["/a", "/b"],
        ["--effort", "high"],
    )
    assert changed["fallback_model"] == "opus"  # an option not given stays
    cleared = cli_json(
        *("tasks", "update", task["id"], "--system-prompt", "", "--max-budget-usd", "none"),
        *("--fallback-model", "None", "--add-dir", "", "--mcp-config", "none", "--no-strict-mcp-config"),
        *("--extra-args", ""),
    )
    assert options_of(cleared) == CLEARED


def test_cli_accepts_all_six_permission_modes_and_says_what_each_does(cli: Cli, cli_json: CliJson) -> None:
    modes = ["acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan"]
    assert [create(cli_json, "--permission-mode", mode)["permission_mode"] for mode in modes] == modes
    help_text = " ".join(cli("tasks", "create", "--help").out.split())
    assert "dontAsk: denies whatever is not pre-approved: the one for unattended runs" in help_text
    assert "plan: reads and plans, changes nothing" in help_text
    assert "auto: a classifier approves or blocks each action" in help_text


def test_tool_rules_keep_their_commas_inside_parentheses(cli: Cli, cli_json: CliJson) -> None:
    task = create(
        cli_json,
        *("--allowed-tools", "Bash(git log, git diff),Read", "--allowed-tools", "Grep"),
        *("--disallowed-tools", "Bash(rm -rf, sudo), WebFetch"),
    )
    assert task["allowed_tools"] == ["Bash(git log, git diff)", "Read", "Grep"]
    assert task["disallowed_tools"] == ["Bash(rm -rf, sudo)", "WebFetch"]
    updated = cli_json("tasks", "update", task["id"], "--allowed-tools", "Bash(npm run test:*, npm ci)")
    assert updated["allowed_tools"] == ["Bash(npm run test:*, npm ci)"]
    result = cli("tasks", "update", task["id"], "--disallowed-tools", "Bash(git push")
    assert (result.code, result.err) == (
        1,
        "error: --disallowed-tools: 'Bash(git push' has a '(' that is not closed\n",
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--max-budget-usd", "lots"], "--max-budget-usd: 'lots' is not an amount of US dollars like 2.50"),
        (["--max-budget-usd", "0"], "--max-budget-usd: must be more than 0 and at most 100000 (got 0)"),
        (["--max-budget-usd", "-3"], "--max-budget-usd: must be more than 0 and at most 100000 (got -3)"),
        (
            ["--extra-args", "--effort 'high"],
            '--extra-args: "--effort \'high" cannot be split into arguments: No closing quotation',
        ),
        (
            ["--extra-args", "--resume abc"],
            "--extra-args: --resume is set by the scheduler: sessions follow session_mode (--session-mode)",
        ),
        (
            ["--extra-args", "--effort high --max-budget-usd=5"],
            "--extra-args: --max-budget-usd has its own setting: use max_budget_usd (--max-budget-usd)",
        ),
        (["--allowed-tools", "Read)"], "--allowed-tools: 'Read)' has a ')' without its '('"),
    ],
)
def test_cli_refuses_bad_option_values_naming_them(
    home: Path, cli: Cli, options: list[str], message: str
) -> None:
    result = cli("tasks", "create", "--name", "t", "--prompt", "p", *options)
    assert (result.code, result.err) == (1, f"error: {message}\n")
    assert not (home / cs.TASKS_FILE).exists()


def test_cli_warns_when_an_extra_folder_or_the_mcp_file_is_missing(
    cli: Cli, tmp_path: Path, folders: dict[str, Path]
) -> None:
    result = cli(
        *("tasks", "create", "--name", "t", "--prompt", "p", "--add-dir", str(folders["shared"])),
        *("--add-dir", str(tmp_path / "gone"), "--mcp-config", str(tmp_path / "none.json")),
    )
    assert result.code == 0
    assert result.err == (
        f"warning: the extra folder {tmp_path / 'gone'} does not exist; runs fail until it does\n"
        f"warning: the MCP config file {tmp_path / 'none.json'} does not exist; runs fail until it does\n"
    )


def test_tasks_get_shows_the_options(cli: Cli, cli_json: CliJson) -> None:
    task = create(cli_json, "--max-budget-usd", "3", "--extra-args", "--effort high", "--strict-mcp-config")
    lines = cli("tasks", "get", task["id"]).out.splitlines()
    fields = dict(line.split(None, 1) for line in lines if len(line.split(None, 1)) == 2)  # key, value
    assert fields["max_budget_usd"] == "3.0"
    assert fields["extra_args"] == '["--effort", "high"]'
    assert fields["strict_mcp_config"] == "True"
    assert fields["fallback_model"] == "-"


# Extra arguments: the scheduler's own options are refused, naming what to use ###########


@pytest.mark.parametrize(
    ("arg", "reason"),
    [
        ("-p", "is set by the scheduler for every run"),
        ("--print", "is set by the scheduler for every run"),
        ("--output-format=json", "is set by the scheduler for every run"),
        ("--input-format", "is set by the scheduler for every run"),
        ("--verbose", "is set by the scheduler for every run"),
        ("-r", "is set by the scheduler: sessions follow session_mode (--session-mode)"),
        ("-rabc", "is set by the scheduler: sessions follow session_mode (--session-mode)"),
        ("--continue", "is set by the scheduler: sessions follow session_mode (--session-mode)"),
        ("-c", "is set by the scheduler: sessions follow session_mode (--session-mode)"),
        ("--session-id", "is set by the scheduler: sessions follow session_mode (--session-mode)"),
        ("--fork-session", "is set by the scheduler: sessions follow session_mode (--session-mode)"),
        ("--model", "has its own setting: use model (--model)"),
        ("--permission-mode", "has its own setting: use permission_mode (--permission-mode)"),
        ("--allowedTools", "has its own setting: use allowed_tools (--allowed-tools)"),
        ("--allowed-tools", "has its own setting: use allowed_tools (--allowed-tools)"),
        ("--disallowedTools", "has its own setting: use disallowed_tools (--disallowed-tools)"),
        ("--max-turns", "has its own setting: use max_turns (--max-turns)"),
        ("--fallback-model", "has its own setting: use fallback_model (--fallback-model)"),
        ("--add-dir", "has its own setting: use add_dirs (--add-dir)"),
        ("--mcp-config", "has its own setting: use mcp_config (--mcp-config)"),
        ("--system-prompt", "has its own setting: use system_prompt (--system-prompt)"),
        ("--append-system-prompt", "has its own setting: use append_system_prompt (--append-system-prompt)"),
        (
            "--dangerously-skip-permissions",
            "has its own setting: use permission_mode bypassPermissions (--permission-mode)",
        ),
        ("--", "would end claude's options (the prompt goes on standard input)"),
    ],
)
def test_extra_args_refuse_the_options_the_scheduler_owns(api: Api, arg: str, reason: str) -> None:
    body = {"name": "T", "prompt": "p", "extra_args": ["--effort", "high", arg, "x"]}
    error = api.fails("POST", "/api/tasks", body, status=422)
    name = arg.partition("=")[0] if arg.startswith("--") else arg[:2]
    assert (error["field"], error["message"]) == ("extra_args[2]", f"{name} {reason}")
    assert api.ok("GET", "/api/tasks")["tasks"] == []


def test_extra_args_refuse_a_leading_bare_word_claude_would_take_as_the_prompt(cli: Cli) -> None:
    result = cli("tasks", "create", "--name", "T", "--prompt", "p", "--extra-args", "hello --effort high")
    assert (result.code, result.err) == (
        1,
        "error: --extra-args: must start with an option such as --effort (got 'hello')\n",
    )
    assert cli("tasks", "list", "--json").json()["tasks"] == []


def test_extra_args_refuse_an_option_without_its_value_naming_it(cli: Cli, api: Api) -> None:
    result = cli("tasks", "create", "--name", "T", "--prompt", "p", "--extra-args=--effort")
    assert (result.code, result.err) == (
        1,
        "error: --extra-args: --effort needs a value after it, as in '--effort VALUE'\n",
    )
    result = cli("tasks", "create", "--name", "T", "--prompt", "p", "--extra-args=--effort --verbose")
    assert "--verbose is set by the scheduler" in result.err  # owned options are named first
    result = cli("tasks", "create", "--name", "T", "--prompt", "p", "--extra-args", "--json-schema")
    assert result.code == 2
    assert "A value that starts with '-' goes after '=': --extra-args=--json-schema" in result.err
    assert cli("tasks", "list", "--json").json()["tasks"] == []
    task = api.ok("POST", "/api/tasks", {"name": "T", "prompt": "p", "extra_args": ["--effort", "high"]}, 201)
    error = api.fails(
        "PATCH", f"/api/tasks/{task['id']}", {"extra_args": ["--tools", "--effort", "x"]}, status=422
    )
    assert (error["field"], error["message"]) == (
        "extra_args[0]",
        "--tools needs a value after it, as in '--tools VALUE'",
    )


# The API ##################################################################################


def test_api_sets_replaces_and_clears_the_options(api: Api) -> None:
    given = {
        "permission_mode": "auto",
        "system_prompt": "You review code.",
        "max_budget_usd": 4,
        "fallback_model": "haiku",
        "add_dirs": ["$HOME/shared", "/srv"],
        "mcp_config": "~/mcp.json",
        "strict_mcp_config": True,
        "extra_args": ["--effort", "high"],
    }
    task = api.ok("POST", "/api/tasks", {"name": "T", "prompt": "p", **given}, 201)
    assert {key: task[key] for key in given} == {**given, "max_budget_usd": 4.0}
    path = f"/api/tasks/{task['id']}"
    patched = api.ok("PATCH", path, {"max_budget_usd": 0.5, "add_dirs": ["/other"]})
    assert (patched["max_budget_usd"], patched["add_dirs"], patched["fallback_model"]) == (
        0.5,
        ["/other"],
        "haiku",
    )
    assert api.ok("GET", path)["extra_args"] == ["--effort", "high"]
    cleared = api.ok("PUT", path, {**CLEARED, "permission_mode": "dontAsk"})
    assert options_of(cleared) == CLEARED
    assert cleared["permission_mode"] == "dontAsk"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"max_budget_usd": 0}, "max_budget_usd", "must be more than 0 and at most 100000 (got 0)"),
        ({"max_budget_usd": "5"}, "max_budget_usd", "must be a number"),
        ({"max_budget_usd": True}, "max_budget_usd", "must be a number"),
        ({"max_budget_usd": 10**9}, "max_budget_usd", "must be more than 0 and at most 100000 (got 1e+09)"),
        ({"add_dirs": "/srv"}, "add_dirs", "must be a list of strings"),
        (
            {"fallback_model": "-x"},
            "fallback_model",
            "must not start with '-' (got '-x'): claude would read it as an option",
        ),
        (
            {"add_dirs": ["/srv", "--help"]},
            "add_dirs[1]",
            "must not start with '-' (got '--help'): claude would read it as an option",
        ),
        ({"add_dirs": ["/srv", ""]}, "add_dirs[1]", "is required and must not be empty"),
        ({"mcp_config": 3}, "mcp_config", "must be a string"),
        ({"strict_mcp_config": "yes"}, "strict_mcp_config", "must be true or false"),
        ({"system_prompt": "a\u0000b"}, "system_prompt", "must not contain a NUL character"),
        ({"extra_args": ["--effort", "hi\u0000gh"]}, "extra_args[1]", "must not contain a NUL character"),
        ({"extra_args": "--effort high"}, "extra_args", "must be a list of strings"),
    ],
)
def test_api_validation_names_the_field(api: Api, fields: dict[str, Any], field: str, message: str) -> None:
    error = api.fails("POST", "/api/tasks", {"name": "T", "prompt": "p", **fields}, status=422)
    assert error["field"] == field
    assert error["message"] == message
    assert api.ok("GET", "/api/tasks")["tasks"] == []


def test_openapi_describes_the_options(api: Api) -> None:
    schemas = api.ok("GET", "/api/openapi.json")["components"]["schemas"]
    fields = schemas["TaskInput"]["properties"]
    assert fields["permission_mode"]["enum"] == [mode.value for mode in cs.PermissionMode]
    assert [mode.value for mode in cs.PermissionMode] == [
        *("default", "acceptEdits", "auto", "bypassPermissions", "dontAsk", "plan")
    ]
    assert "dontAsk: denies whatever is not pre-approved" in fields["permission_mode"]["description"]
    assert fields["max_budget_usd"]["anyOf"][0]["exclusiveMinimum"] == 0
    assert fields["strict_mcp_config"]["type"] == "boolean"
    assert fields["extra_args"]["items"]["type"] == "string"
    assert set(NEW_FIELDS) <= set(schemas["Task"]["required"])


# Runs: what claude is given ###############################################################


def test_a_run_gives_claude_every_option(
    cli: Cli,
    cli_json: CliJson,
    record: Recorder,
    folders: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHARED_DIR", str(folders["shared"]))
    work = tmp_path / "user" / "work"
    (work / "docs").mkdir(parents=True)
    task = create(
        cli_json,
        *("--permission-mode", "dontAsk", "--working-dir", str(work)),
        *("--allowed-tools", "Bash(git log, git diff),Read", "--max-turns", "5"),
        *("--system-prompt", "- You review code.", "--append-system-prompt", "Be brief."),
        *("--max-budget-usd", "0.75", "--fallback-model", "haiku"),
        *("--add-dir", "$SHARED_DIR", "--add-dir", "~/work/docs"),
        *("--mcp-config", str(folders["mcp"]), "--strict-mcp-config"),
        *("--extra-args", "--effort high"),
    )
    cli_json("tasks", "update", task["id"], "--fallback-model", "haiku")
    result = cli("tasks", "run", task["id"])

    assert result.code == 0, result.out + result.err
    (entry,) = record.entries()
    assert entry["argv"] == [
        *("-p", "--output-format", "stream-json", "--verbose"),
        *("--model", "sonnet", "--permission-mode", "dontAsk"),
        *("--allowedTools", "Bash(git log, git diff)", "Read"),
        *("--add-dir", str(folders["shared"]), str(work / "docs")),
        *("--max-turns", "5", "--max-budget-usd", "0.75", "--fallback-model", "haiku"),
        *("--mcp-config", str(folders["mcp"]), "--strict-mcp-config"),
        *("--system-prompt", "- You review code.", "--append-system-prompt", "Be brief."),
        *("--effort", "high"),
    ]
    assert entry["stdin"] == "Say hello."


def test_extra_args_come_last_so_none_takes_a_scheduler_option_as_its_value() -> None:
    argv = cs.build_command(
        "claude",
        model="sonnet",
        permission_mode="plan",
        allowed_tools=[],
        disallowed_tools=[],
        max_turns=None,
        append_system_prompt=None,
        resume_session="5b0c9e4e-1111-4222-8333-444455556666",
        max_budget_usd=1e-05,
        extra_args=["--effort"],
    )
    assert argv[7:] == [
        *("--permission-mode", "plan", "--max-budget-usd", "1e-05"),
        *("--resume", "5b0c9e4e-1111-4222-8333-444455556666", "--effort"),
    ]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            ["--add-dir", "{gone}"],
            "{gone} (add_dirs) does not exist; create it or change the task's add_dirs",
        ),
        (
            ["--add-dir", "{file}"],
            "{file} (add_dirs) is not a folder; create it or change the task's add_dirs",
        ),
        (
            ["--mcp-config", "{gone}"],
            "{gone} (mcp_config) does not exist; create it or change the task's mcp_config",
        ),
        (
            ["--mcp-config", "{folder}"],
            "{folder} (mcp_config) is a folder, not a file; create it or change the task's mcp_config",
        ),
    ],
)
def test_a_missing_extra_folder_or_mcp_file_fails_the_run_before_claude_starts(
    home: Path,
    cli: Cli,
    cli_json: CliJson,
    record: Recorder,
    folders: dict[str, Path],
    tmp_path: Path,
    options: list[str],
    error: str,
) -> None:
    paths = {"gone": str(tmp_path / "gone"), "file": str(folders["mcp"]), "folder": str(folders["shared"])}
    task = create(cli_json, *(option.format(**paths) for option in options))

    result = cli("tasks", "run", task["id"])

    assert result.code == 1
    (run,) = cs.Service(cs.Store(home)).list_runs(task_id=task["id"])
    assert (run["status"], run["error"]) == ("failed", error.format(**paths))
    assert record.entries() == []


# The window ###############################################################################


def test_the_editor_values_round_trip_the_options() -> None:
    task = {
        "name": "T",
        "prompt": "p",
        "permission_mode": "dontAsk",
        "allowed_tools": ["Bash(git log, git diff)", "Read"],
        "system_prompt": "You review code.",
        "max_budget_usd": 2.5,
        "fallback_model": "haiku",
        "add_dirs": ["~/shared", "/srv/my data"],
        "mcp_config": "~/mcp.json",
        "strict_mcp_config": True,
        "extra_args": ["--settings", "my settings.json", "--effort", "high"],
    }
    form = cs.task_to_form(task)
    assert form["extra_args"] == "--settings 'my settings.json' --effort high"
    assert form["add_dirs"] == "~/shared\n/srv/my data"
    fields = cs.form_to_task(form)
    assert {key: fields[key] for key in task} == task


@pytest.mark.usefixtures("xvfb_display")
def test_the_editor_sets_and_clears_the_options_through_its_widgets(home: Path) -> None:
    service = cs.Service(cs.Store(home))
    task = service.create_task(
        {"name": "Options", "prompt": "p", "strict_mcp_config": True, "max_budget_usd": 9}
    )
    with open_gui(home) as gui:
        gui.app.refresh_now()
        gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
        gui.select_task(task["id"])
        editor = gui.app.editor
        note = editor._notes["permission_mode"][0]
        assert str(note.cget("text")) == cs.PERMISSION_MODE_HELP[cs.PermissionMode.DEFAULT]
        editor._combos["permission_mode"].set("dontAsk")
        gui.wait(lambda: "the one for unattended runs" in str(note.cget("text")), "the mode's hint")
        assert editor._flags["strict_mcp_config"].get() is True
        assert editor._entries["max_budget_usd"].get() == "9"
        gui.type_into(editor._entries["max_budget_usd"], "1.5")
        gui.type_into(editor._entries["allowed_tools"], "Bash(git log, git diff), Read")
        editor._combos["fallback_model"].set("haiku")
        gui.type_into(editor._texts["system_prompt"], "You review code.")
        gui.type_into(editor._texts["add_dirs"], "~/shared\n\n/srv/data\n")
        editor._strings["mcp_config"].set("~/mcp.json")
        editor._flags["strict_mcp_config"].set(False)
        gui.type_into(editor._entries["extra_args"], "--effort high")
        editor.save_button.invoke()
        gui.wait(lambda: not editor.is_dirty(), "the save")
        saved = service.get_task(task["id"])
        assert saved["permission_mode"] == "dontAsk"
        assert saved["allowed_tools"] == ["Bash(git log, git diff)", "Read"]
        assert options_of(saved) == {
            "system_prompt": "You review code.",
            "max_budget_usd": 1.5,
            "fallback_model": "haiku",
            "add_dirs": ["~/shared", "/srv/data"],
            "mcp_config": "~/mcp.json",
            "strict_mcp_config": False,
            "extra_args": ["--effort", "high"],
        }

        for key in ("max_budget_usd", "extra_args"):
            gui.type_into(editor._entries[key], "")
        editor._combos["fallback_model"].set("")
        for key in ("system_prompt", "add_dirs"):
            gui.type_into(editor._texts[key], "")
        editor._strings["mcp_config"].set("")
        editor.save_button.invoke()
        gui.wait(lambda: not editor.is_dirty(), "the second save")
        assert options_of(service.get_task(task["id"])) == CLEARED


@pytest.mark.usefixtures("xvfb_display")
def test_an_option_error_shows_by_its_field_scrolled_into_view(home: Path) -> None:
    service = cs.Service(cs.Store(home))
    task = service.create_task({"name": "Options", "prompt": "p"})
    with open_gui(home) as gui:
        gui.app.root.geometry("1100x620")
        gui.app.refresh_now()
        gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
        gui.select_task(task["id"])
        editor = gui.app.editor
        gui.type_into(editor._entries["extra_args"], "--effort high --resume abc")
        editor.notebook.select(0)
        editor.save_button.invoke()
        gui.settle()
        note = editor._notes["extra_args"][0]
        reason = "--resume is set by the scheduler: sessions follow session_mode (--session-mode)"
        assert str(note.cget("text")) == reason
        assert editor.notebook.index("current") == 2
        canvas, entry = editor.advanced.canvas, editor._entries["extra_args"]
        gui.app.root.update()
        top = entry.winfo_rooty() - canvas.winfo_rooty()
        assert top >= 0 and top + entry.winfo_height() <= canvas.winfo_height(), "the field is out of view"
        assert canvas.yview()[0] > 0
        assert service.get_task(task["id"])["extra_args"] == []


@pytest.mark.usefixtures("xvfb_display")
def test_the_editor_says_which_extra_folder_or_mcp_file_is_not_there(
    home: Path, tmp_path: Path, folders: dict[str, Path]
) -> None:
    service = cs.Service(cs.Store(home))
    gone = tmp_path / "gone"
    task = service.create_task(
        {
            "name": "Paths",
            "prompt": "p",
            "add_dirs": [str(folders["shared"]), str(gone)],
            "mcp_config": "~/x.json",
        }
    )
    with open_gui(home) as gui:
        gui.app.refresh_now()
        gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
        gui.select_task(task["id"])
        editor = gui.app.editor
        dirs, mcp = editor._notes["add_dirs"][0], editor._notes["mcp_config"][0]
        assert str(dirs.cget("text")) == f"{gone}: not there; runs fail until it is"
        assert str(mcp.cget("text")) == "~/x.json: not there; runs fail until it is"
        gui.type_into(editor._texts["add_dirs"], f"{folders['shared']}\nrelative/folder")
        gui.wait(lambda: str(dirs.cget("text")) == cs.EDITOR_PATH_HINTS["add_dirs"], "the hint back")
        editor._strings["mcp_config"].set(str(folders["mcp"]))
        gui.app.root.update()
        assert str(mcp.cget("text")) == cs.EDITOR_PATH_HINTS["mcp_config"]


@pytest.mark.usefixtures("xvfb_display")
def test_the_advanced_tab_scrolls_by_wheel_and_to_the_focused_field(home: Path) -> None:
    task = cs.Service(cs.Store(home)).create_task(
        {"name": "Scroll", "prompt": "p", "fallback_model": "haiku"}
    )
    with open_gui(home) as gui:
        gui.app.root.geometry("1100x620")
        gui.app.refresh_now()
        gui.wait(lambda: task["id"] in gui.app.tasks, "the task to show")
        gui.select_task(task["id"])
        editor = gui.app.editor
        editor.notebook.select(2)
        gui.settle()
        canvas = editor.advanced.canvas
        assert canvas.yview()[0] == 0.0
        fallback = editor._combos["fallback_model"]
        fallback.event_generate("<Button-5>")
        gui.wait(lambda: canvas.yview()[0] > 0, "the wheel to scroll the tab")
        assert fallback.get() == "haiku", "the wheel changed a chooser's value"
        canvas.yview_moveto(0)
        gui.settle()
        entry = editor._entries["extra_args"]
        entry.focus_force()
        gui.settle()

        def in_view() -> bool:
            top = entry.winfo_rooty() - canvas.winfo_rooty()
            return top >= 0 and top + entry.winfo_height() <= canvas.winfo_height()

        gui.wait(in_view, "the focused field to scroll into view")
