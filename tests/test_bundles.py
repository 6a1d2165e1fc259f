"""Import, export and copies through the CLI, the API and (over --api) the client: bundles
round-trip, a bad record refuses the whole bundle, clashing names are renamed and said."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Result

import claude_scheduler as cs

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
Cli = Callable[..., Result]
CliJson = Callable[..., Any]


@pytest.fixture
def store(home: Path) -> cs.Store:
    return cs.Store(home)


@pytest.fixture
def url(store: cs.Store) -> Iterator[str]:
    server = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    server.start()
    yield server.address
    server.stop()


def add_run(store: cs.Store, task_id: str, status: cs.RunStatus, minutes: int, log: bytes) -> str:
    start = T0 + timedelta(minutes=minutes)
    run = cs.Run(
        cs.new_id(),
        task_id,
        status=status,
        created_at=start,
        started_at=start,
        finished_at=start + timedelta(seconds=3),
    )
    run.cost_usd = 0.5
    run.result = f"result {minutes}"
    store.save_run(run)
    store.log_path(run.id).write_bytes(log)
    return run.id


@pytest.fixture
def data(cli_json: CliJson, store: cs.Store) -> dict[str, str]:
    """A job with two ordered tasks (one with runs and logs), and a task in no job."""
    job = cli_json("jobs", "create", "--name", "Release", "--description", "ship 2.0")
    first = cli_json(
        "tasks", "create", "--name", "Nightly", "--prompt", "Review.", "--job", job["id"],
        "--cron", "0 3 * * *", "--timezone", "Europe/Paris", "--env", "TOKEN=abc", "--retries", "2",
    )  # fmt: skip
    second = cli_json(
        "tasks", "create", "--name", "Docs", "--prompt", "Docs.", "--job", job["id"], "--every", "2h"
    )
    cli_json("tasks", "create", "--name", "Loose", "--prompt", "Tidy.", "--manual")
    with store.locked():
        task = store.task(second["id"])
        store.save_task(
            cs.dataclasses.replace(task, extra={"future_field": {"kept": True}}),
        )
    cs.Service(store).update_job(job["id"], {"task_order": [second["id"], first["id"]]})
    add_run(store, first["id"], cs.RunStatus.FAILED, 0, b"first log\n")
    add_run(store, first["id"], cs.RunStatus.SUCCESS, 5, b"second log\n")
    return {"job": job["id"], "first": first["id"], "second": second["id"]}


def meaning(bundle: dict[str, Any]) -> dict[str, Any]:
    """A bundle with ids replaced by their position and times left out: what must survive."""
    ids: dict[str, str] = {}
    for key in ("jobs", "tasks", "runs"):
        for n, record in enumerate(bundle.get(key, [])):
            ids[record["id"]] = f"{key}[{n}]"
    stamps = ("id", "created_at", "updated_at", "exported_at")

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {ids.get(k, k): plain(v) for k, v in value.items() if k not in stamps}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return ids.get(value, value) if isinstance(value, str) else value

    return dict(plain(bundle))


def test_export_import_export_round_trips_in_meaning(
    cli: Cli, cli_json: CliJson, data: dict[str, str], tmp_path: Path
) -> None:
    first = tmp_path / "first.json"
    result = cli("export", "--logs", "-o", str(first))
    assert result.code == 0, result.err
    assert result.out.strip() == f"Exported 1 job, 3 tasks, 2 runs and 2 logs to {first}"
    assert oct(first.stat().st_mode & 0o777) == "0o600"  # tasks' env may hold secrets
    bundle = json.loads(first.read_text())
    assert bundle["format"] == cs.BUNDLE_FORMAT and bundle["version"] == cs.BUNDLE_VERSION
    assert [task["name"] for task in bundle["tasks"]] == ["Docs", "Nightly", "Loose"]
    assert bundle["tasks"][1]["env"] == {"TOKEN": "abc"} and bundle["tasks"][1]["retry"]["max_attempts"] == 2
    assert bundle["tasks"][0]["future_field"] == {"kept": True}
    assert "next_run_at" not in bundle["tasks"][0]
    assert sorted(bundle["logs"].values()) == ["first log\n", "second log\n"]

    other = tmp_path / "other-home"
    report = cli_json("--home", str(other), "import", str(first))
    assert report["renamed"] == [] and report["runs"] == 2 and report["logs"] == 2
    assert [task["source_id"] for task in report["tasks"]] == [task["id"] for task in bundle["tasks"]]
    assert not {task["id"] for task in report["tasks"]} & {task["id"] for task in bundle["tasks"]}
    again = cli_json("--home", str(other), "export", "--logs")
    assert meaning(again) == meaning(bundle)
    imported = cli_json("--home", str(other), "jobs", "get", report["jobs"][0]["id"])
    assert imported["task_order"] == [report["tasks"][0]["id"], report["tasks"][1]["id"]]  # Docs, Nightly
    assert [run["result"] for run in cli_json("--home", str(other), "runs", "list")["runs"]] == [
        "result 5",
        "result 0",
    ]


def test_a_bundle_with_one_bad_record_is_refused_whole(
    cli: Cli, cli_json: CliJson, data: dict[str, str], home: Path, tmp_path: Path
) -> None:
    bundle = cli_json("export")
    bundle["tasks"][1]["schedule"] = {"type": "cron", "expression": "61 * * * *"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bundle))
    before = {file.name: file.read_bytes() for file in home.iterdir() if file.is_file()}
    result = cli("import", str(path))
    assert result.code == 1
    assert result.err.startswith("error: tasks[1].schedule.expression: ")
    assert "(task 'Nightly'); nothing was imported" in result.err
    after = {file.name: file.read_bytes() for file in home.iterdir() if file.is_file()}
    assert after == before


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda b: b.update(format="something-else"), "format", "is not a claude-code-scheduler bundle"),
        (lambda b: b.update(version=2), "version", "2 is newer than this program reads (1)"),
        (lambda b: b.update(extra=1), "extra", "unknown field"),
        (lambda b: b["tasks"][2].update(job_id=cs.new_id()), "tasks[2].job_id", "which is not in the bundle"),
        (lambda b: b["tasks"][1].update(id=b["tasks"][0]["id"]), "tasks[1].id", "repeats the id of tasks[0]"),
        (
            lambda b: b["jobs"][0].update(task_order=[b["tasks"][2]["id"]]),
            "jobs[0].task_order[0]",
            "not one of",
        ),
        (lambda b: b["runs"][0].update(status="running"), "runs[0].status", "only finished runs"),
        (lambda b: b["runs"][1].update(task_id=cs.new_id()), "runs[1].task_id", "not in the bundle"),
        (lambda b: b["logs"].update({cs.new_id(): "x"}), "logs.", "a run that is not in the bundle"),
        (lambda b: b["jobs"][0].pop("name"), "jobs[0].name", "required"),
    ],
)
def test_each_kind_of_bad_record_is_named(
    cli: Cli, cli_json: CliJson, data: dict[str, str], tmp_path: Path, change: Any, field: str, words: str
) -> None:
    bundle = cli_json("export", "--logs")
    change(bundle)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bundle))
    result = cli("import", str(path))
    assert result.code == 1, result.out
    assert result.err.startswith(f"error: {field}"), result.err
    assert words in result.err
    assert len(cli_json("jobs", "list")["jobs"]) == 1
    assert len(cli_json("tasks", "list")["tasks"]) == 3


def test_clashing_names_are_renamed_and_reported_and_dry_run_changes_nothing(
    cli: Cli, cli_json: CliJson, data: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "b.json"
    assert cli("export", "-o", str(path)).code == 0
    dry = cli("import", str(path), "--dry-run")
    assert dry.code == 0
    lines = dry.out.splitlines()
    assert lines[0] == "Would import 1 job and 3 tasks"
    assert "  renamed job 'Release' to 'Release (2)': the name was taken" in lines
    assert "  renamed task 'Loose' to 'Loose (2)': the name was taken" in lines
    assert lines[-1] == "Nothing was changed (--dry-run)."
    assert len(cli_json("tasks", "list")["tasks"]) == 3
    report = cli_json("import", str(path))
    assert report["renamed"] == [
        {"kind": "job", "from": "Release", "to": "Release (2)"},
        {"kind": "task", "from": "Loose", "to": "Loose (2)"},
    ]
    # The new job's tasks clash with nothing: they are its own.
    assert [task["name"] for task in report["tasks"]] == ["Docs", "Nightly", "Loose (2)"]
    third = cli_json("import", str(path))
    assert [job["name"] for job in third["jobs"]] == ["Release (3)"]


def test_import_into_a_job_adds_its_tasks_to_that_job(
    cli_json: CliJson, data: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps(cli_json("export")))
    target = cli_json("jobs", "create", "--name", "Target")
    mine = cli_json("tasks", "create", "--name", "Docs", "--prompt", "x", "--job", target["id"], "--manual")
    report = cli_json("import", str(path), "--into-job", target["id"][:8])
    assert report["jobs"] == [] and report["into_job"] == target["id"]
    assert {task["job_id"] for task in report["tasks"]} == {target["id"]}
    assert report["renamed"] == [{"kind": "task", "from": "Docs", "to": "Docs (2)"}]
    job = cli_json("jobs", "get", target["id"])
    assert job["task_order"] == [mine["id"], *(task["id"] for task in report["tasks"])]
    assert len(cli_json("jobs", "list")["jobs"]) == 2


def test_export_of_chosen_jobs_only(cli_json: CliJson, data: dict[str, str]) -> None:
    other = cli_json("jobs", "create", "--name", "Other")
    bundle = cli_json("export", "--job", other["id"][:8])
    assert [job["name"] for job in bundle["jobs"]] == ["Other"] and bundle["tasks"] == []
    assert "runs" not in bundle and "logs" not in bundle
    both = cli_json("export", "--job", data["job"], "--job", other["id"], "--runs")
    assert [job["name"] for job in both["jobs"]] == ["Release", "Other"]
    assert [task["name"] for task in both["tasks"]] == ["Docs", "Nightly"]
    assert len(both["runs"]) == 2 and "logs" not in both


def test_import_names_a_missing_or_broken_file(cli: Cli, tmp_path: Path) -> None:
    missing = cli("import", str(tmp_path / "nope.json"))
    assert missing.code == 1 and "cannot read" in missing.err and "nope.json" in missing.err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = cli("import", str(broken))
    assert result.code == 1 and f"{broken} is not a JSON bundle" in result.err


def test_duplicates_are_disabled_copies_with_free_names(
    cli: Cli, cli_json: CliJson, data: dict[str, str]
) -> None:
    copy = cli_json("jobs", "duplicate", data["job"][:8])
    assert copy["name"] == "Release (2)" and copy["id"] != data["job"]
    assert [(task["name"], task["enabled"]) for task in copy["tasks"]] == [
        ("Docs", False),
        ("Nightly", False),
    ]
    assert copy["tasks"][1]["env"] == {"TOKEN": "abc"}
    assert copy["task_order"] == [task["id"] for task in copy["tasks"]]
    task = cli("tasks", "duplicate", data["first"][:8])
    assert task.code == 0 and task.out.startswith("Copied as task ") and ": Nightly (2)\n" in task.out
    job = cli_json("jobs", "get", data["job"])
    assert [item["name"] for item in job["tasks"]] == ["Docs", "Nightly", "Nightly (2)"]
    assert job["tasks"][2]["enabled"] is False


def test_the_api_exports_imports_and_copies(
    cli: Cli, cli_json: CliJson, data: dict[str, str], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = cli_json("export", "--job", data["job"], "--logs")
    remote = cli_json("--api", url, "export", "--job", data["job"][:8], "--logs")
    assert meaning(remote) == meaning(direct)
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(direct)))
    dry = cli_json("--api", url, "import", "-", "--dry-run")
    assert dry["dry_run"] is True and dry["renamed"] == [
        {"kind": "job", "from": "Release", "to": "Release (2)"}
    ]
    assert len(cli_json("jobs", "list")["jobs"]) == 1
    copy = cli_json("--api", url, "jobs", "duplicate", data["job"][:8])
    assert copy["name"] == "Release (2)"
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({**direct, "version": 0})))
    bad = cli("--api", url, "import", "-")
    assert bad.code == 1 and bad.err.startswith("error: version: must be a whole number from 1")
    document = cs.openapi_document()
    for path in (
        "/api/export",
        "/api/import",
        "/api/jobs/{job_id}/duplicate",
        "/api/tasks/{task_id}/duplicate",
    ):
        assert path in document["paths"], path
    assert {"Bundle", "ImportReport"} <= set(document["components"]["schemas"])


def test_client_bundle_methods_mirror_the_service() -> None:
    import inspect

    names = ("export_bundle", "import_bundle", "duplicate_job", "duplicate_task")
    notify = ("notify_settings", "update_notify_settings", "notify_history", "notify_test")
    for name in names + notify:
        service = inspect.signature(getattr(cs.Service, name))
        client = inspect.signature(getattr(cs.ApiClient, name))
        assert list(service.parameters) == list(client.parameters), name
