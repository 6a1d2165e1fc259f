"""The command line through a running server (`cli --api URL`): the same answers as on
the data home directly, the same errors and exit codes, and exit 3 when the server
cannot be reached."""

from __future__ import annotations

import http.server
import inspect
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Result, child_env

import claude_scheduler as cs

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(home: Path) -> cs.Store:
    return cs.Store(home)


@pytest.fixture
def url(store: cs.Store) -> Iterator[str]:
    """A server on the test's data home (no engine)."""
    server = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    server.start()
    yield server.address
    server.stop()


Cli = Callable[..., Result]


def add_run(store: cs.Store, task_id: str, status: cs.RunStatus, minutes: int, log: bytes = b"") -> str:
    start = T0 + timedelta(minutes=minutes)
    run = cs.Run(
        cs.new_id(),
        task_id,
        status=status,
        created_at=start,
        started_at=start,
        finished_at=start + timedelta(seconds=3),
    )
    run.cost_usd = 0.25
    store.save_run(run)
    store.log_path(run.id).write_bytes(log)
    return run.id


@pytest.fixture
def data(cli_json: Callable[..., Any], store: cs.Store) -> dict[str, str]:
    """A job with two tasks (one with runs), and an unassigned task; made directly."""
    job = cli_json("jobs", "create", "--name", "Release", "--description", "ship 2.0")
    nightly = cli_json(
        "tasks",
        "create",
        "--name",
        "Nightly",
        "--prompt",
        "Review.",
        "--job",
        job["id"][:8],
        "--cron",
        "0 3 * * *",
    )
    cli_json(
        "tasks", "create", "--name", "Docs", "--prompt", "Write docs.", "--job", job["id"], "--every", "2h"
    )
    loose = cli_json("tasks", "create", "--name", "Loose", "--prompt", "Tidy.", "--manual")
    log = b'{"type":"assistant","message":{"content":[{"type":"text","text":"Hello there"}]}}\nplain line\n'
    run = add_run(store, nightly["id"], cs.RunStatus.FAILED, 0, log)
    add_run(store, nightly["id"], cs.RunStatus.SUCCESS, 5, log)
    return {"job": job["id"], "task": nightly["id"], "loose": loose["id"], "run": run}


def both(cli: Cli, url: str, *words: str) -> tuple[Result, Result]:
    """The same command directly and through the server."""
    return cli(*words), cli("--api", url, *words)


READS = [
    ("jobs", "list"),
    ("jobs", "get", "{job}"),
    ("jobs", "tasks", "{job}"),
    ("jobs", "usage"),
    ("tasks", "list"),
    ("tasks", "list", "--unassigned"),
    ("tasks", "list", "--job", "{job}"),
    ("tasks", "get", "{task}"),
    ("tasks", "get", "{loose}"),
    ("tasks", "next", "{task}", "-n", "3"),
    ("runs", "list"),
    ("runs", "list", "--task", "{task}", "--status", "success"),
    ("runs", "list", "--job", "{job}", "-n", "1"),
    ("runs", "get", "{run}"),
    ("runs", "log", "{run}"),
    ("runs", "log", "{run}", "--raw"),
    (
        "schedule",
        "preview",
        "--cron",
        "0 9 * * mon",
        "--timezone",
        "UTC",
        "--after",
        "2026-01-01T00:00Z",
        "-n",
        "3",
    ),
    ("schedule", "preview", "--every", "90m", "--after", "2026-01-01T00:00Z"),
    ("schedule", "preview", "--at", "2030-01-01T09:00Z", "--after", "2026-01-01T00:00Z"),
    ("schedule", "preview", "--weekly", "mon,fri@09:30", "--after", "2026-01-01T00:00Z"),
    ("engine", "status"),
]


def test_reads_answer_the_same_through_the_server(cli: Cli, url: str, data: dict[str, str]) -> None:
    short = {name: value[:8] for name, value in data.items()}
    differences = []
    for words in READS:
        for output in ((), ("--json",)):
            command = [word.format(**short) for word in words] + list(output)
            direct, remote = both(cli, url, *command)
            assert direct.code == 0 and direct.out.strip(), (command, direct.err)
            if (remote.code, remote.out, remote.err) != (0, direct.out, direct.err):
                differences.append((" ".join(command), direct, remote))
    assert differences == []


def test_full_ids_and_any_unique_prefix_resolve(cli: Cli, url: str, data: dict[str, str]) -> None:
    for text in (data["task"], data["task"][:3], data["task"].upper()):
        direct, remote = both(cli, url, "tasks", "get", text, "--json")
        assert remote.json()["id"] == direct.json()["id"] == data["task"]


ERRORS = [
    (("jobs", "get", "0000"), "no job with id '0000'"),
    (("jobs", "get", "00000000-0000-4000-8000-000000000000"), "no job with id"),
    (("runs", "get", "zz"), "no run with id 'zz'"),
    (("tasks", "next", "{task}", "-n", "0"), "count: must be between 1 and 100"),
    (("tasks", "create", "--name", "x", "--prompt", "p", "--cron", "61 * * * *"), "--cron: minute field 61"),
    (("tasks", "create", "--name", "x", "--prompt", "p", "--every", "10s"), "--every: must be between 1m"),
    (("tasks", "update", "{task}", "--timezone", "Mars/Base", "--cron", "0 9 * * *"), "unknown time zone"),
    (("jobs", "update", "{job}"), "nothing to change"),
    (("jobs", "delete", "{job}"), "add --force"),
    (("runs", "delete", "{active}"), "still active"),
    (("schedule", "preview", "--cron", "0 9 * * *", "--after", "someday"), "after:"),
    (("runs", "list", "-n", "0"), "limit: must be between"),
]


@pytest.mark.parametrize(("words", "message"), ERRORS, ids=[" ".join(w) for w, _ in ERRORS])
def test_errors_are_the_same_through_the_server(
    cli: Cli, url: str, data: dict[str, str], store: cs.Store, words: tuple[str, ...], message: str
) -> None:
    active = cs.Run(cs.new_id(), data["task"], status=cs.RunStatus.QUEUED, created_at=T0)
    store.save_run(active)
    command = [word.format(**data, active=active.id) for word in words]
    direct, remote = both(cli, url, *command)
    assert direct.code in (1, 2)  # failed, or a usage error
    assert (remote.code, remote.out, remote.err) == (direct.code, direct.out, direct.err)
    assert direct.err.startswith("error: ") and message in direct.err


def test_an_ambiguous_prefix_lists_the_candidates_both_ways(
    cli: Cli, cli_json: Callable[..., Any], url: str
) -> None:
    ids = [cli_json("jobs", "create", "--name", f"J{n}")["id"] for n in range(17)]  # 17 ids, 16 first digits
    shared = next(first for first in "0123456789abcdef" if sum(i.startswith(first) for i in ids) > 1)
    direct, remote = both(cli, url, "jobs", "get", shared)
    assert direct.code == 1 and "ambiguous" in direct.err
    assert (remote.code, remote.err) == (1, direct.err)


def test_writes_through_the_server_land_in_the_data_home(
    cli: Cli, cli_json: Callable[..., Any], url: str, store: cs.Store
) -> None:
    api = ("--api", url)
    job = cli_json(*api, "jobs", "create", "--name", "Remote", "--working-dir", "/tmp")
    assert store.job(job["id"]).working_directory == "/tmp"
    task = cli_json(
        *api, "tasks", "create", "--name", "T", "--prompt", "p", "--job", job["id"][:6], "--daily", "07:15"
    )
    assert store.task(task["id"]).job_id == job["id"]
    assert task["schedule"]["expression"] == "15 7 * * *"
    updated = cli_json(
        *api, "tasks", "update", task["id"][:8], "--retries", "2", "--model", "opus", "--job", "none"
    )
    assert (updated["retry"]["max_attempts"], updated["model"], updated["job_id"]) == (2, "opus", None)
    cli_json(*api, "tasks", "update", task["id"][:8], "--env", "A=1", "--env", "B=2")
    env = cli_json(*api, "tasks", "update", task["id"][:8], "--env", "C=3", "--unset-env", "A")["env"]
    assert env == store.task(task["id"]).env == {"B": "2", "C": "3"}
    assert cli_json(*api, "tasks", "disable", task["id"][:8])["enabled"] is False
    assert store.task(task["id"]).enabled is False
    assert cli_json(*api, "tasks", "enable", task["id"][:8])["enabled"] is True
    assert cli_json(*api, "jobs", "update", job["id"][:8], "--status", "completed")["status"] == "completed"
    assert cli_json(*api, "engine", "pause")["paused"] is True
    assert cli_json("engine", "status")["paused"] is True
    assert cli_json(*api, "engine", "resume")["paused"] is False
    assert cli_json(*api, "tasks", "delete", task["id"][:8], "--force")["deleted"]["tasks"] == 1
    assert cli_json(*api, "jobs", "delete", job["id"][:8], "--force")["deleted"] == {
        "jobs": 1,
        "tasks": 0,
        "runs": 0,
        "logs": 0,
    }
    assert cli_json("jobs", "list") == {"jobs": []}


def test_deleting_a_job_counts_the_same_both_ways(
    cli: Cli, cli_json: Callable[..., Any], url: str, data: dict[str, str]
) -> None:
    remote = cli("--api", url, "jobs", "delete", data["job"][:8], "--force")
    assert remote.code == 0
    assert remote.out.strip() == "Deleted 1 job, 2 tasks, 2 runs, 2 logs."
    assert [t["id"] for t in cli_json("tasks", "list")["tasks"]] == [data["loose"]]


def test_runs_handed_to_the_server_and_stopped(
    cli: Cli, cli_json: Callable[..., Any], url: str, data: dict[str, str]
) -> None:
    queued = cli_json("--api", url, "tasks", "run", data["loose"][:8], "--detach")
    assert (queued["status"], queued["trigger"]) == ("queued", "cli")
    detached = cli("--api", url, "tasks", "run", data["loose"][:8], "--detach")
    assert "No scheduler engine is running" in detached.out
    stopped = cli_json("--api", url, "runs", "stop", queued["id"][:8])
    assert stopped["status"] == "cancelled"
    started = cli_json("--api", url, "jobs", "run", data["job"][:8])
    assert started["run"]["status"] == "queued" and len(started["task_ids"]) == 2
    assert [r["status"] for r in cli_json("--api", url, "jobs", "stop", data["job"][:8])["stopped_runs"]] == [
        "cancelled"
    ]


def test_run_in_the_foreground_through_the_servers_engine(
    cli: Cli, cli_json: Callable[..., Any], store: cs.Store
) -> None:
    engine = cs.Engine(store)
    server = cs.ApiServer(cs.Service(store, wake=engine.wake), "127.0.0.1", 0)
    assert engine.start()
    server.start()
    try:
        task = cli_json("tasks", "create", "--name", "Hello", "--prompt", "Say hi [result=Hi from fake]")
        result = cli("--api", server.address, "tasks", "run", task["id"][:8])
        assert result.code == 0, result.err
        assert "success" in result.out.splitlines()[-1]
        runs = cli_json("runs", "list", "--task", task["id"])["runs"]
        assert [(r["status"], r["trigger"], r["result"]) for r in runs] == [
            ("success", "cli", "Hi from fake")
        ]
    finally:
        server.stop()
        engine.stop()


def test_the_environment_variable_picks_the_server(
    cli_json: Callable[..., Any], url: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_json("jobs", "create", "--name", "On the server's home")
    other = tmp_path / "other-home"
    other.mkdir()
    shutil.copy(home / cs.TOKEN_FILE, other / cs.TOKEN_FILE)
    monkeypatch.setenv(cs.API_ENV, url)
    names = [job["name"] for job in cli_json("--home", str(other), "jobs", "list")["jobs"]]
    assert names == ["On the server's home"]
    assert not (other / cs.JOBS_FILE).exists()  # nothing was opened in the CLI's own home
    monkeypatch.setenv(cs.API_ENV, "")
    assert cli_json("--home", str(other), "jobs", "list") == {"jobs": []}


def test_a_stopped_server_is_exit_3(cli: Cli, store: cs.Store) -> None:
    server = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    address = server.address
    server.stop()
    for words in (("jobs", "list"), ("tasks", "create", "--name", "x", "--prompt", "p"), ("engine", "pause")):
        result = cli("--api", address, *words)
        assert result.code == 3
        assert result.err.startswith(f"error: cannot reach the API server at {address}")
    assert cs.Service(store).list_tasks() == []


@pytest.mark.parametrize("address", ["ftp://127.0.0.1:1", "http://", "http://127.0.0.1:notaport", "::::"])
def test_a_bad_address_is_exit_3(cli: Cli, store: cs.Store, address: str) -> None:
    cs.api_token(store.home)
    result = cli("--api", address, "jobs", "list")
    assert result.code == 3
    assert "is not an API address like http://127.0.0.1:5679" in result.err


def test_without_a_token_file_it_is_exit_3_and_says_why(cli: Cli, home: Path) -> None:
    result = cli("--api", "http://127.0.0.1:9", "jobs", "list")
    assert result.code == 3
    assert "no API token" in result.err and "serve" in result.err


def test_a_wrong_token_is_a_clear_error(cli: Cli, url: str, home: Path) -> None:
    (home / cs.TOKEN_FILE).write_text("not-the-token\n")
    result = cli("--api", url, "jobs", "list")
    assert result.code == 1
    assert result.err.startswith("error: missing or wrong API token")


def test_a_server_that_is_not_ours_is_exit_3(cli: Cli, home: Path, tmp_path: Path) -> None:
    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=other.serve_forever, args=(0.05,), daemon=True).start()
    try:
        cs.api_token(cs.Store(home).home)
        result = cli("--api", f"http://127.0.0.1:{other.server_port}", "jobs", "list")
        assert result.code == 3
        assert "did not answer in JSON" in result.err
    finally:
        other.shutdown()
        other.server_close()


def test_client_methods_mirror_the_service() -> None:
    """Every Service method the CLI calls exists on ApiClient with the same parameters."""
    names = [
        "list_jobs",
        "get_job",
        "job_tasks",
        "create_job",
        "update_job",
        "delete_preview",
        "delete_job",
        "list_tasks",
        "get_task",
        "create_task",
        "update_task",
        "set_enabled",
        "delete_task",
        "next_times",
        "preview",
        "list_runs",
        "get_run",
        "delete_run",
        "request_run",
        "run_job",
        "stop_job",
        "stop_run",
        "read_log",
        "engine_status",
        "set_paused",
        "resolve",
    ]
    for name in names:
        service, client = (
            inspect.signature(getattr(cs.Service, name)),
            inspect.signature(getattr(cs.ApiClient, name)),
        )
        assert list(service.parameters) == list(client.parameters), name
        for param in service.parameters.values():
            assert client.parameters[param.name].default == param.default, (name, param.name)
            assert client.parameters[param.name].kind == param.kind, (name, param.name)
    assert cs.ApiClient.remote is True and cs.Service.remote is False


def test_serve_answers_and_stops_cleanly_on_sigterm(home: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "claude_scheduler.py"), "serve", "--port", "0"],
        env=child_env(home),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        address = None
        for line in proc.stderr:
            if found := re.search(r"API on (http://\S+)", line):
                address = found[1]
                break
        assert address, "serve never said where the API is"
        with urllib.request.urlopen(f"{address}/api/health", timeout=30) as answer:
            health = json.load(answer)
        assert health["status"] == "ok" and health["engine"]["running"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_run_through_a_server_without_engine_says_so_and_ctrl_c_cancels_it(
    cli: Cli, cli_json: Callable[..., Any], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = cli_json("tasks", "create", "--name", "Waits", "--prompt", "p")
    real_sleep = cs.time.sleep
    pressed: list[float] = []

    def ctrl_c_once(seconds: float) -> None:
        """The CLI's first wait is cut by a Ctrl-C, which only the main thread hears (the
        patched `sleep` is every thread's: the server's must sleep on)."""
        if not pressed and threading.current_thread() is threading.main_thread():
            pressed.append(seconds)
            raise KeyboardInterrupt
        real_sleep(seconds)

    monkeypatch.setattr(cs.time, "sleep", ctrl_c_once)
    result = cli("--api", url, "tasks", "run", task["id"][:8])
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0].startswith("No scheduler engine is running")
    assert "Stopping…" in result.err and "cancelled" in lines[-1]
    assert [run["status"] for run in cli_json("runs", "list")["runs"]] == ["cancelled"]


def test_a_jobs_export_and_a_notify_change_through_the_server(
    cli_json: Callable[..., Any], url: str, data: dict[str, str]
) -> None:
    api = ("--api", url)
    bundle = cli_json(*api, "export", "--job", data["job"][:8])
    assert sorted(task["name"] for task in bundle["tasks"]) == ["Docs", "Nightly"], "Loose is in no job"
    assert cli_json(*api, "notify", "desktop", "off")["desktop"]["enabled"] is False
    assert cli_json("notify", "show")["desktop"]["enabled"] is False
