"""Hardening: the store touches only what is its own, every value is checked where it
enters, bad derived state is repaired, one damaged file is isolated, a request happens
whole or not at all, and human-readable output is safe for a terminal."""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api import Api

import claude_scheduler as cs

ESC_TITLE = "\x1b]0;owned\x07"  # sets the terminal's window title
CLIPBOARD = "\x1b]52;c;aGk=\x07"  # OSC 52: writes the clipboard


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def service(home: Path) -> cs.Service:
    return cs.Service(cs.Store(home))


@pytest.fixture
def api(service: cs.Service) -> Iterator[Api]:
    server = cs.ApiServer(service, "127.0.0.1", 0)
    server.start()
    client = Api(server, cs.api_token(service.store.home, create=False))
    yield client
    client.close()
    server.stop()


def make_task(service: cs.Service, name: str = "T", **fields: Any) -> str:
    return str(service.create_task({"name": name, "prompt": "p", **fields})["id"])


def add_run(store: cs.Store, task_id: str, status: str = "success", **fields: Any) -> str:
    run = cs.Run(cs.new_id(), task_id, status=cs.RunStatus(status), created_at=cs.utcnow(), **fields)
    store.save_run(run)
    return run.id


def state_of(home: Path) -> Any:
    path = home / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"version": 1}


def write_state(home: Path, **parts: Any) -> None:
    document = state_of(home)
    document.update(parts)
    (home / "state.json").write_text(json.dumps(document))


# 1. Sweeps remove only the store's own files ------------------------------------------


def test_a_cli_command_leaves_hidden_temp_files_that_are_not_the_stores(
    cli: Callable[..., Any], home: Path
) -> None:
    assert cli("init").code == 0
    gone = dead_pid()
    foreign = [
        home / ".notes.tmp",
        home / f".draft.txt.{gone}.1.tmp",  # our shape, but not a name the store writes
        home / "runs" / f".backup.json.{gone}.2.tmp",
        home / "runs" / ".editor.tmp",
    ]
    for path in foreign:
        path.write_text("someone else's")
    ours = home / f".jobs.json.{gone}.7.tmp"
    ours.write_text('{"version": 1, "jo')
    assert cli("jobs", "list").code == 0
    assert [path.read_text() for path in foreign] == ["someone else's"] * 4
    assert not ours.exists()


def test_the_log_sweep_removes_only_stray_run_logs(service: cs.Service, home: Path) -> None:
    task = make_task(service)
    kept = add_run(service.store, task)
    service.store.log_path(kept).write_text("kept\n")
    stray = home / "logs" / f"{cs.new_id()}.log"
    stray.write_text("stray\n")
    foreign = home / "logs" / "build.log"
    foreign.write_text("the user's\n")
    assert service.store.sweep(logs=True) == cs.DeleteCounts(logs=1)
    assert not stray.exists()
    assert foreign.read_text() == "the user's\n"
    assert service.store.log_path(kept).read_text() == "kept\n"


def test_the_log_sweep_does_not_follow_a_symlinked_logs_folder(tmp_path: Path, home: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    files = [shared / f"{cs.new_id()}.log", shared / "team.log"]
    for path in files:
        path.write_text("shared\n")
    cs.Store(home)
    (home / "logs").rmdir()
    (home / "logs").symlink_to(shared)
    assert cs.Store(home).sweep(logs=True) == cs.DeleteCounts()
    assert [path.read_text() for path in files] == ["shared\n", "shared\n"]


# A folder that is clearly something else is refused -------------------------------------


@pytest.mark.parametrize("generic", [[], ["logs"], ["runs", "settings.json"]])
def test_a_folder_of_other_files_is_refused_as_a_data_home(
    cli: Callable[..., Any], home: Path, generic: list[str]
) -> None:
    home.mkdir()
    (home / "notes.txt").write_text("mine\n")
    for name in generic:  # names a project may have too
        if name.endswith(".json"):
            (home / name).write_text("{}")
        else:
            (home / name).mkdir()
    result = cli("jobs", "list")
    assert result.code == 1
    assert result.err.startswith(f"error: {home} is not a claude-scheduler data home")
    assert "such as 'notes.txt'" in result.err and cs.HOME_MARKER in result.err
    assert sorted(os.listdir(home)) == sorted(["notes.txt", *generic]), "nothing may be created in it"
    (home / cs.HOME_MARKER).touch()  # the way out the message gives
    assert cli("jobs", "list").code == 0
    assert (home / "notes.txt").read_text() == "mine\n"


def test_a_home_with_only_the_stores_folders_is_used(cli: Callable[..., Any], home: Path) -> None:
    (home / "runs").mkdir(parents=True)
    (home / "logs").mkdir()
    assert cli("jobs", "list").code == 0
    assert (home / cs.HOME_MARKER).is_file()


def test_an_empty_folder_and_a_home_from_before_the_marker_are_used(
    cli: Callable[..., Any], home: Path
) -> None:
    home.mkdir()
    assert cli("jobs", "create", "--name", "J").code == 0
    assert (home / cs.HOME_MARKER).is_file()
    (home / cs.HOME_MARKER).unlink()  # a home made before the marker: it holds our files
    assert cli("jobs", "list").out.count("J") >= 1
    assert (home / cs.HOME_MARKER).is_file()


# 2. Pending deletes hold ids, never paths ----------------------------------------------


@pytest.mark.parametrize("pending", [["../jobs"], ["../../outside/config"], "../jobs", 7])
def test_a_pending_delete_entry_is_never_a_path(
    cli: Callable[..., Any], service: cs.Service, home: Path, tmp_path: Path, pending: Any
) -> None:
    job = service.create_job({"name": "J"})["id"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text('{"version": 1}')
    write_state(home, deleting={"tasks": pending, "jobs": pending})
    result = cli("jobs", "list", "--json")
    assert result.code == 0, result.err
    assert [item["id"] for item in result.json()["jobs"]] == [job]
    assert (home / "jobs.json").exists()
    assert (outside / "config.json").read_text() == '{"version": 1}'


# 3. Symlinked store files are written through; every file is private -------------------


def test_a_symlinked_store_file_is_written_through(
    cli: Callable[..., Any], home: Path, tmp_path: Path
) -> None:
    assert cli("jobs", "create", "--name", "First").code == 0
    synced = tmp_path / "synced" / "jobs.json"
    synced.parent.mkdir()
    (home / "jobs.json").rename(synced)
    (home / "jobs.json").symlink_to(synced)
    assert cli("jobs", "create", "--name", "Second").code == 0
    assert (home / "jobs.json").is_symlink()
    assert [job["name"] for job in json.loads(synced.read_text())["jobs"]] == ["First", "Second"]
    assert stat.S_IMODE(synced.stat().st_mode) == 0o600


def test_run_logs_are_private(service: cs.Service, home: Path) -> None:
    task = make_task(service)
    run = add_run(service.store, task, "running", started_at=cs.utcnow(), owner="elsewhere:1:")
    old_umask = os.umask(0o022)
    try:
        cs.interrupt_run(service.store, service.store.run(run), grace=0)
    finally:
        os.umask(old_umask)
    log = service.store.log_path(run)
    assert log.read_text().startswith("[scheduler] ")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


# 4. A NUL is refused where it enters ----------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"env": {"A": "x\x00y"}}, "env.A"),
        ({"model": "son\x00net"}, "model"),
        ({"append_system_prompt": "be\x00brief"}, "append_system_prompt"),
        ({"allowed_tools": ["Read\x00"]}, "allowed_tools[0]"),
        ({"working_directory": "/tmp\x00x"}, "working_directory"),
    ],
)
def test_a_nul_in_a_value_a_process_start_takes_is_refused(
    api: Api, fields: dict[str, Any], field: str
) -> None:
    error = api.fails("POST", "/api/tasks", {"name": "T", "prompt": "p", **fields}, status=422)
    assert (error["field"], error["message"]) == (field, "must not contain a NUL character")
    assert api.ok("GET", "/api/tasks")["tasks"] == []


def test_an_env_variable_name_has_a_length_limit(api: Api) -> None:
    name = "V" * (cs.ENV_NAME_MAX + 1)
    error = api.fails("POST", "/api/tasks", {"name": "T", "prompt": "p", "env": {name: "1"}}, status=422)
    assert error["field"] == "env"
    assert f"longer than {cs.ENV_NAME_MAX} characters" in error["message"]
    ok = {"name": "T", "prompt": "p", "env": {"V" * cs.ENV_NAME_MAX: "1"}}
    assert api.ok("POST", "/api/tasks", ok, 201)["env"] == {"V" * cs.ENV_NAME_MAX: "1"}


# 5. A request happens whole or not at all -----------------------------------------------


def test_a_run_request_refused_while_jobs_json_is_unreadable_leaves_no_run(
    cli: Callable[..., Any], service: cs.Service, home: Path
) -> None:
    job = service.create_job({"name": "J"})["id"]
    task = make_task(service, job_id=job)
    original = (home / "jobs.json").read_bytes()
    (home / "jobs.json").write_text('{"version": 1, "jobs": [')  # a hand edit in progress
    result = cli("tasks", "run", task, "--detach")
    assert result.code == 1
    assert "jobs.json cannot be read" in result.err
    (home / "jobs.json").write_bytes(original)
    assert cli("runs", "list", "--task", task, "--json").json()["runs"] == []
    assert state_of(home).get("queue", []) == []


@pytest.mark.parametrize("name", ["jobs.json", "state.json"])
def test_a_run_is_recorded_while_a_derived_file_is_being_edited(
    service: cs.Service, home: Path, name: str
) -> None:
    job = service.create_job({"name": "J"})["id"]
    task = make_task(service, job_id=job)
    run = add_run(service.store, task, "queued")
    original = (home / name).read_bytes()
    (home / name).write_text("{")
    claimed = cs.Executor(service.store).claim(service.store.run(run))
    assert claimed.status is cs.RunStatus.RUNNING
    finished = dataclasses.replace(claimed, status=cs.RunStatus.SUCCESS, finished_at=cs.utcnow())
    service.store.save_run(finished)
    (home / name).write_bytes(original)
    assert cs.Store(home).run(run).status is cs.RunStatus.SUCCESS
    assert (home / name).read_bytes() == original


# 6. state.json holds derived data: a bad part is repaired, logged -----------------------


def test_a_bad_queue_entry_is_dropped_and_the_rest_dispatched(
    service: cs.Service, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    task = make_task(service)
    good = service.request_run(task)["id"]
    queue = state_of(home)["queue"]
    write_state(
        home,
        queue=[{"task_id": task}, {**queue[0], "run_id": "x"}, {**queue[0], "not_before": "soon"}, *queue],
    )
    with caplog.at_level(logging.WARNING, logger="claude_scheduler"):
        store = cs.Store(home)
        assert [entry["run_id"] for entry in store.queue()] == [good]
    assert [entry["run_id"] for entry in state_of(home)["queue"]] == [good]
    assert "state.json: queue[0].run_id is required; it was dropped" in caplog.text
    assert "queue[2].not_before" in caplog.text


@pytest.mark.parametrize("queue", ["x", {"run_id": 1}, 3])
def test_a_queue_that_is_not_a_list_is_repaired(service: cs.Service, home: Path, queue: Any) -> None:
    make_task(service)
    write_state(home, queue=queue)
    engine = cs.Engine(cs.Store(home))
    try:
        assert engine.start(thread=False)
    finally:
        engine.stop()
    assert state_of(home)["queue"] == []


def test_paused_must_be_true_or_false(cli: Callable[..., Any], home: Path) -> None:
    assert cli("engine", "pause").code == 0
    write_state(home, engine={"paused": "false"})
    status = cli("engine", "status", "--json").json()
    assert status["paused"] is False
    assert "paused" not in state_of(home)["engine"], "the repair is written back"


def test_deeply_nested_json_names_the_file(cli: Callable[..., Any], home: Path) -> None:
    assert cli("init").code == 0
    (home / "state.json").write_text("[" * 100_000 + "]" * 100_000)
    result = cli("tasks", "list")
    assert result.code == 1
    assert result.err.startswith(f"error: {home / 'state.json'} cannot be read (")


# 7. One damaged run file is isolated ---------------------------------------------------


def test_one_damaged_run_file_hides_no_other_tasks_runs(
    cli: Callable[..., Any], service: cs.Service, home: Path, api: Api
) -> None:
    broken, fine = make_task(service, "broken"), make_task(service, "fine")
    add_run(service.store, broken)
    run = add_run(service.store, fine)
    (home / "runs" / f"{broken}.json").write_text("{")
    got = cli("runs", "get", run[:8], "--json")
    assert (got.code, got.json()["id"]) == (0, run), got.err
    listed = cli("runs", "list", "--json")
    assert [item["id"] for item in listed.json()["runs"]] == [run]
    assert listed.err.startswith(
        f"warning: its runs are not listed: {home / 'runs' / broken}.json cannot be read ("
    )
    assert listed.err.count("\n") == 1
    assert [item["id"] for item in api.ok("GET", "/api/runs")["runs"]] == [run]
    health = api.request("GET", "/api/health", token=None).json
    assert health["unreadable_files"] == [f"runs/{broken}.json"]
    (home / "runs" / f"{broken}.json").unlink()
    assert [item["id"] for item in api.ok("GET", "/api/runs")["runs"]] == [run]
    assert api.request("GET", "/api/health", token=None).json["unreadable_files"] == []
    (home / "runs" / f"{broken}.json").write_text("{")
    engine = cs.Engine(cs.Store(home))
    try:
        assert engine.start(thread=False)
    finally:
        engine.stop()
    unknown = cli("runs", "get", cs.new_id())
    assert unknown.code == 1
    assert f"runs/{broken}.json cannot be read" in unknown.err, "the run may be in the damaged file"


# 8. A home this user cannot write ------------------------------------------------------


def make_read_only(home: Path, read_only: bool) -> None:
    """As the user cannot write it: by mode bits, or for root (whom they do not stop) by
    the immutable attribute."""
    paths = [home, *home.rglob("*")]
    if os.geteuid() != 0:
        for path in paths:
            path.chmod((0o555 if path.is_dir() else 0o444) if read_only else 0o700)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root, and no chattr to make a folder read-only")
    subprocess.run(["chattr", "+i" if read_only else "-i", *map(str, paths)], check=True)


def test_a_home_that_cannot_be_written_is_read_or_refused_cleanly(
    cli: Callable[..., Any], home: Path
) -> None:
    assert cli("jobs", "create", "--name", "Readable").code == 0
    make_read_only(home, True)
    try:
        listed = cli("jobs", "list")
        assert (listed.code, listed.err) == (0, "")
        assert "Readable" in listed.out
        refused = cli("jobs", "create", "--name", "X")
        assert refused.code == 1
        assert refused.err.startswith(f"error: cannot write {home / 'jobs.json'}: ")
    finally:
        make_read_only(home, False)
    (home / ".lock").unlink()
    make_read_only(home, True)
    try:
        no_lock = cli("jobs", "list")
        assert no_lock.code == 1
        assert no_lock.err.startswith(f"error: cannot open the lock file {home / '.lock'}: ")
        assert "the data home must be a folder you can write to" in no_lock.err
    finally:
        make_read_only(home, False)


# 9. Times out of range ------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00"]
)
def test_a_time_near_year_1_or_9999_is_refused(cli: Callable[..., Any], api: Api, moment: str) -> None:
    result = cli("tasks", "create", "--name", "T", "--prompt", "p", "--at", moment)
    assert result.code == 1
    assert result.err == f"error: --at: {moment!r} is out of range (years 1970 to 8999)\n"
    body = {"name": "T", "prompt": "p", "schedule": {"type": "once", "at": moment}}
    error = api.fails("POST", "/api/tasks", body, status=422)
    assert error["field"] == "schedule.at"
    query = urllib.parse.urlencode({"at": "2030-01-01T00:00:00Z", "after": moment})
    assert api.fails("GET", f"/api/schedule/preview?{query}", status=422)["field"] == "after"


# 18. Output is safe ---------------------------------------------------------------------


def test_names_with_terminal_escapes_are_shown_escaped(cli: Callable[..., Any]) -> None:
    name = f"J{ESC_TITLE}{CLIPBOARD}"
    created = cli("jobs", "create", "--name", name, "--json").json()
    listed = cli("jobs", "list")
    assert "\x1b" not in listed.out and "\x07" not in listed.out
    assert "J\\x1b]0;owned\\x07" in listed.out
    got = cli("jobs", "get", created["id"])
    assert "\x1b" not in got.out and "\\x1b]52;c;aGk=\\x07" in got.out
    assert cli("jobs", "get", created["id"], "--json").json()["name"] == name
    missing = cli("jobs", "get", f"x{ESC_TITLE}")
    assert missing.code == 1 and "\x1b" not in missing.err


def test_session_output_with_escapes_is_escaped_and_raw_is_exact(
    cli: Callable[..., Any], service: cs.Service
) -> None:
    task = make_task(service)
    run = add_run(service.store, task, error=f"bad{ESC_TITLE}")
    text = json.dumps(
        {"type": "assistant", "message": {"content": [{"type": "text", "text": f"hi{CLIPBOARD}"}]}}
    )
    log = f"{text}\n[stderr] \x1b[2J\x1b[Hcleared\rover\x0cfed\u2028\n"
    service.store.log_path(run).write_text(log)
    shown = cli("runs", "log", run)
    assert shown.code == 0
    assert "\x1b" not in shown.out and "\x07" not in shown.out
    assert "\\x1b]52;c;aGk=\\x07" in shown.out and "\\x1b[2J" in shown.out
    raw = cli("runs", "log", run, "--raw")
    assert raw.out == log
    got = cli("runs", "get", run)
    assert "\x1b" not in got.out and "bad\\x1b]0;owned\\x07" in got.out
    assert cli("runs", "get", run, "--json").json()["error"] == f"bad{ESC_TITLE}"


def test_escape_controls_keeps_newlines_tabs_and_text() -> None:
    assert cs.escape_controls("a\tb\nc é 中 \\x") == "a\tb\nc é 中 \\x"
    assert cs.escape_controls("\x00\r\x7f\x9b\u202e") == "\\x00\\x0d\\x7f\\x9b\\u202e"


# Smaller ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["serve", "gui"])
def test_home_and_verbose_are_taken_after_the_mode(mode: str) -> None:
    args = cs.build_parser().parse_args([mode, "--home", "elsewhere", "-v"])
    assert (args.mode, args.home, args.verbose_below) == (mode, "elsewhere", 1)


@pytest.mark.parametrize("option", ["--watch", "--cron", "--every", "--at", "--daily"])
def test_an_empty_schedule_option_is_refused(cli: Callable[..., Any], option: str) -> None:
    result = cli("tasks", "create", "--name", "T", "--prompt", "p", option, "")
    assert (result.code, result.err) == (1, f"error: {option}: must not be empty\n")
    assert cli("tasks", "list", "--json").json()["tasks"] == []


def test_unknown_top_level_keys_of_store_files_survive_a_rewrite(
    cli: Callable[..., Any], service: cs.Service, home: Path
) -> None:
    task = make_task(service)
    add_run(service.store, task)
    for path in (home / "jobs.json", home / "tasks.json", home / "runs" / f"{task}.json"):
        if not path.exists():
            path.write_text('{"version": 1, "jobs": []}')
        document = json.loads(path.read_text())
        path.write_text(json.dumps({**document, "note": {"kept": True}}))
    assert cli("jobs", "create", "--name", "J").code == 0
    assert cli("tasks", "update", task, "--name", "T2").code == 0
    add_run(cs.Store(home), task)
    for path in (home / "jobs.json", home / "tasks.json", home / "runs" / f"{task}.json"):
        assert json.loads(path.read_text())["note"] == {"kept": True}, path.name


def test_a_second_origin_header_is_checked_too(api: Api) -> None:
    own = f"http://127.0.0.1:{api.port}"
    assert api.request("GET", "/api/jobs", headers={"Origin": own}).status == 200
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    connection.putrequest("GET", "/api/jobs", skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", f"127.0.0.1:{api.port}")
    connection.putheader("Authorization", f"Bearer {api.token}")
    connection.putheader("Origin", own)
    connection.putheader("Origin", "http://attacker.example")
    connection.endheaders()
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())["error"]["code"]) == (403, "forbidden")
    connection.close()


def test_a_file_watch_past_its_limit_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cs, "WATCH_ENTRIES_MAX", 3)
    for n in range(5):
        (tmp_path / f"f{n}.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="claude_scheduler"):
        assert len(cs.scan_tree(tmp_path, recursive=True)) == 5  # one folder is read whole
        cs.scan_tree(tmp_path, recursive=True)
    assert caplog.text.count(f"file watch on {tmp_path}: more than 3 files") == 1


def test_a_job_run_refused_part_way_can_be_started_again(
    cli: Callable[..., Any], service: cs.Service, home: Path
) -> None:
    job = service.create_job({"name": "J"})["id"]
    first = make_task(service, job_id=job)
    add_run(service.store, first)
    run_file = home / "runs" / f"{first}.json"
    original = run_file.read_bytes()
    run_file.write_text("{")
    refused = cli("jobs", "run", job, "--detach")
    assert refused.code == 1
    assert f"{run_file} cannot be read" in refused.err
    run_file.write_bytes(original)
    started = cli("jobs", "run", job, "--detach", "--json")
    assert started.code == 0, started.err
    assert [entry["status"] for entry in state_of(home)["job_runs"].values()] == ["running"]


@pytest.mark.parametrize("query", ["status=x%00", "cron=0%00+9+*+*+*", "timezone=UTC%00&cron=0+9+*+*+*"])
def test_a_nul_in_a_query_text_is_refused(api: Api, query: str) -> None:
    path = "/api/runs" if query.startswith("status") else "/api/schedule/preview"
    error = api.fails("GET", f"{path}?{query}", status=400)
    assert error["message"] == "must not contain a NUL character"


def test_an_engine_owner_of_the_wrong_shape_is_repaired(cli: Callable[..., Any], home: Path) -> None:
    assert cli("engine", "pause").code == 0
    write_state(home, engine={"paused": True, "owner": {"id": 5, "pid": "x"}})
    status = cli("engine", "status", "--json")
    assert status.code == 0, status.err
    assert (status.json()["paused"], status.json()["running"]) == (True, False)


def test_a_run_with_a_pid_past_any_real_one_is_recovered(service: cs.Service, home: Path) -> None:
    task = make_task(service)
    run = add_run(
        service.store,
        task,
        "running",
        started_at=cs.utcnow(),
        pid=10**30,
        owner=f"{cs.host_name()}:{dead_pid()}:",
    )
    engine = cs.Engine(cs.Store(home))
    try:
        assert engine.start(thread=False)
    finally:
        engine.stop()
    recovered = cs.Store(home).run(run)
    assert recovered.status is cs.RunStatus.INTERRUPTED


# Pinned by the mutation run (tests/mutate.py) -------------------------------------------


@pytest.mark.parametrize(("field", "bad"), [("task_ids", ["ok", None]), ("position", 3)])
def test_a_job_runs_steps_of_the_wrong_shape_are_repaired(
    cli: Callable[..., Any],
    service: cs.Service,
    home: Path,
    caplog: pytest.LogCaptureFixture,
    field: str,
    bad: Any,
) -> None:
    job = service.create_job({"name": "J"})["id"]
    make_task(service, job_id=job)
    assert cli("jobs", "run", job, "--detach").code == 0
    ((job_run, entry),) = state_of(home)["job_runs"].items()
    assert entry["current_run_id"]
    if field == "task_ids":
        bad = [entry["task_ids"][0], None]
    write_state(home, job_runs={job_run: {**entry, field: bad}})
    with caplog.at_level(logging.WARNING, logger="claude_scheduler"):
        assert cs.Store(home).job_runs() == {}
    assert f"state.json: job_runs.{job_run}.{field}" in caplog.text


def test_a_run_that_ends_after_its_task_was_deleted_leaves_nothing(service: cs.Service, home: Path) -> None:
    task = make_task(service)
    now = cs.utcnow()
    run = cs.Run(cs.new_id(), task, status=cs.RunStatus.RUNNING, created_at=now, started_at=now)
    service.store.save_run(run)
    service.store.delete_task(task)
    log = service.store.log_path(run.id)
    log.write_text("the session kept writing\n")  # the engine still held the run
    finished = dataclasses.replace(run, status=cs.RunStatus.SUCCESS, finished_at=cs.utcnow())
    service.store.save_run(finished)
    assert not (home / "runs" / f"{task}.json").exists()
    assert not log.exists()
    assert service.list_runs() == []


def test_a_read_leaves_the_state_file_as_it_is(cli: Callable[..., Any], home: Path) -> None:
    assert cli("jobs", "create", "--name", "J").code == 0
    state = home / "state.json"
    os.utime(state, (1_000_000_000, 1_000_000_000))
    assert cli("jobs", "list").code == 0
    assert state.stat().st_mtime == 1_000_000_000, "nothing was repaired, so nothing is written"
    state.unlink()  # it holds only derived data
    assert cli("jobs", "list").code == 0
    assert not state.exists(), "a read writes nothing"
