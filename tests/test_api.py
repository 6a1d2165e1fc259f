"""The REST API over real HTTP on 127.0.0.1: every route, the error shapes, the security
checks, many clients at once, and a sweep of malformed requests."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import claude_scheduler as cs

NO_BODY = object()
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.raw)

    @property
    def error(self) -> dict[str, Any]:
        error = self.json["error"]
        assert set(error) == {"code", "message", "field"}, error
        assert isinstance(error["message"], str) and error["message"]
        return dict(error)


@dataclass
class Api:
    """A client for one test server; `request` sends exactly what it is told."""

    server: cs.ApiServer
    token: str
    _connection: http.client.HTTPConnection | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return self.server.server_port

    def request(
        self,
        method: str,
        path: str,
        body: Any = NO_BODY,
        *,
        token: str | None = "",
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        """Send a request on a kept-alive connection (a new one when the server closed it).
        `token=""` sends the right token, None none; `raw` is a body sent as is."""
        sent = {"Host": f"127.0.0.1:{self.port}"}
        if token is not None:
            sent["Authorization"] = f"Bearer {token or self.token}"
        data = raw
        if body is not NO_BODY:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        connection = self._connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in sent.items():
            connection.putheader(name, value)
        if data is not None and "Content-Length" not in sent:
            connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data)
        response = connection.getresponse()
        answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        self._connection = None if response.will_close else connection
        if response.will_close:
            connection.close()
        return answer

    def ok(self, method: str, path: str, body: Any = NO_BODY, status: int = 200) -> Any:
        answer = self.request(method, path, body)
        assert answer.status == status, (answer.status, answer.raw[:500])
        return answer.json

    def fails(self, method: str, path: str, body: Any = NO_BODY, *, status: int, **kw: Any) -> dict[str, Any]:
        answer = self.request(method, path, body, **kw)
        assert answer.status == status, (answer.status, answer.raw[:500])
        return answer.error

    def close(self) -> None:
        if self._connection:
            self._connection.close()


@pytest.fixture
def store(home: Path) -> cs.Store:
    return cs.Store(home)


@pytest.fixture
def api(store: cs.Store) -> Iterator[Api]:
    server = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    server.start()
    client = Api(server, cs.api_token(store.home, create=False))
    yield client
    client.close()
    server.stop()


def make_job(api: Api, name: str = "Job") -> dict[str, Any]:
    return dict(api.ok("POST", "/api/jobs", {"name": name}, 201))


def make_task(api: Api, job_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"name": "Task", "prompt": "Do it.", **fields}
    if job_id:
        body["job_id"] = job_id
    return dict(api.ok("POST", "/api/tasks", body, 201))


def add_run(
    store: cs.Store,
    task_id: str,
    status: cs.RunStatus = cs.RunStatus.SUCCESS,
    *,
    minutes: int = 0,
    log: bytes | None = b"line one\nline two\n",
) -> str:
    """Record a run that started `minutes` after T0, with a log file."""
    start = T0 + timedelta(minutes=minutes)
    finished = start + timedelta(seconds=5) if status not in cs.ACTIVE_STATUSES else None
    run = cs.Run(
        cs.new_id(), task_id, status=status, created_at=start, started_at=start, finished_at=finished
    )
    store.save_run(run)
    if log is not None:
        store.log_path(run.id).write_bytes(log)
    return run.id


# Health, serving ---------------------------------------------------------------


def test_health_needs_no_token_and_names_version_and_engine(api: Api) -> None:
    answer = api.request("GET", "/api/health", token=None)
    assert answer.status == 200
    assert answer.json == {
        "status": "ok",
        "version": cs.__version__,
        "engine": {"running": False, "paused": False, "hold": None, "owner": None, "here": False},
        "unreadable_files": [],
    }


def test_token_file_is_private_and_kept_across_restarts(store: cs.Store, api: Api) -> None:
    path = store.home / cs.TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(api.token) >= 32
    second = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    second.stop()
    assert cs.api_token(store.home, create=False) == api.token


def test_stop_ends_serving_and_frees_the_port(store: cs.Store) -> None:
    server = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    thread = server.start()
    port = server.server_port
    assert server.address == f"http://127.0.0.1:{port}"
    server.stop()
    assert not thread.is_alive()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    server.stop()  # a second stop is harmless


def test_a_subclass_of_the_server_serves(store: cs.Store) -> None:
    class Quiet(cs.ApiServer):
        daemon_threads = True

    server = Quiet(cs.Service(store), "127.0.0.1", 0)
    server.start()
    client = Api(server, cs.api_token(store.home, create=False))
    try:
        assert isinstance(server, Quiet)
        assert client.request("GET", "/api/health").status == 200
        assert client.request("GET", "/api/jobs").json == {"jobs": []}
    finally:
        client.close()
        server.stop()


def test_a_busy_port_is_a_clear_error(store: cs.Store, api: Api) -> None:
    with pytest.raises(cs.SchedulerError, match=r"cannot serve the API on 127\.0\.0\.1"):
        cs.ApiServer(cs.Service(store), "127.0.0.1", api.port)


def test_stop_of_a_server_never_started_returns(store: cs.Store) -> None:
    server = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    server.stop()


def test_ipv6_loopback_is_served(store: cs.Store) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = cs.ApiServer(cs.Service(store), "::1", 0)
    except cs.SchedulerError:
        pytest.skip("::1 cannot be bound here")
    server.start()
    try:
        assert server.address == f"http://[::1]:{server.server_port}"
        connection = http.client.HTTPConnection("::1", server.server_port, timeout=30)
        connection.request("GET", "/api/health")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        server.stop()


# Jobs --------------------------------------------------------------------------


def test_create_job_answers_201_with_the_job_and_its_progress(api: Api) -> None:
    job = api.ok("POST", "/api/jobs", {"name": "  Ship it  ", "description": "all of it"}, 201)
    assert uuid.UUID(job["id"])
    assert (job["name"], job["description"], job["status"]) == ("Ship it", "all of it", "pending")
    assert job["progress"] == {
        "total": 0,
        "never_run": 0,
        "running": 0,
        "success": 0,
        "failed": 0,
        "done": 0,
        "percent": 0,
        "text": "0/0",
    }
    assert api.ok("GET", f"/api/jobs/{job['id']}")["name"] == "Ship it"


def test_a_job_may_watch_files_like_a_task(api: Api) -> None:
    watch = {"type": "file_watch", "path": "/srv/docs", "recursive": False, "debounce_seconds": 2.5}
    job = api.ok("POST", "/api/jobs", {"name": "On change", "schedule": watch}, 201)
    assert (job["schedule"], job["next_run_at"]) == (watch, None)
    assert job["schedule_text"] == cs.describe_schedule(cs.Schedule.from_dict(watch))
    assert api.ok("GET", f"/api/jobs/{job['id']}")["schedule"] == watch


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 5}, "name"),
        ({"name": "ok", "status": "done"}, "status"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": "ok", "task_order": ["nope"]}, "task_order[0]"),
        ([{"name": "ok"}], None),
    ],
)
def test_create_job_validation_names_the_field(api: Api, body: Any, field: str | None) -> None:
    error = api.fails("POST", "/api/jobs", body, status=422)
    assert (error["code"], error["field"]) == ("invalid", field)
    assert api.ok("GET", "/api/jobs") == {"jobs": []}


def test_list_jobs_counts_progress_by_latest_run(api: Api, store: cs.Store) -> None:
    job = make_job(api)
    done, failed, _fresh = (make_task(api, job["id"], name=f"T{n}") for n in range(3))
    add_run(store, done["id"], cs.RunStatus.FAILED, minutes=0)
    add_run(store, done["id"], cs.RunStatus.SUCCESS, minutes=1)
    add_run(store, failed["id"], cs.RunStatus.FAILED)
    make_task(api)  # unassigned: counts for no job
    jobs = api.ok("GET", "/api/jobs")["jobs"]
    assert [j["id"] for j in jobs] == [job["id"]]
    progress = jobs[0]["progress"]
    assert (progress["total"], progress["success"], progress["failed"], progress["never_run"]) == (3, 1, 1, 1)
    assert (progress["text"], progress["percent"], jobs[0]["status"]) == ("1/3", 33, "failed")


def test_get_job_has_tasks_in_task_order(api: Api) -> None:
    job = make_job(api)
    first, second = make_task(api, job["id"], name="first"), make_task(api, job["id"], name="second")
    api.ok("PATCH", f"/api/jobs/{job['id']}", {"task_order": [second["id"], first["id"]]})
    detail = api.ok("GET", f"/api/jobs/{job['id']}")
    assert [t["name"] for t in detail["tasks"]] == ["second", "first"]
    assert detail["progress"]["total"] == 2
    listed = api.ok("GET", f"/api/jobs/{job['id']}/tasks")["tasks"]
    assert [t["name"] for t in listed] == ["second", "first"]


def test_job_ids_are_checked_before_looking(api: Api) -> None:
    job = make_job(api)
    assert api.ok("GET", f"/api/jobs/{job['id'].upper()}")["id"] == job["id"]
    assert api.fails("GET", "/api/jobs/1234", status=400)["field"] == "job_id"
    assert api.fails("GET", f"/api/jobs/{job['id'].replace('-', '')}", status=400)["field"] == "job_id"
    missing = api.fails("GET", f"/api/jobs/{uuid.uuid4()}", status=404)
    assert missing["code"] == "not_found"
    assert api.fails("GET", f"/api/jobs/{uuid.uuid4()}/tasks", status=404)["code"] == "not_found"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_update_job_changes_only_the_fields_given(api: Api, method: str) -> None:
    job = api.ok("POST", "/api/jobs", {"name": "Old", "description": "keep me"}, 201)
    updated = api.ok(method, f"/api/jobs/{job['id']}", {"name": "New", "status": "completed"})
    assert (updated["name"], updated["description"], updated["status"]) == ("New", "keep me", "completed")
    assert updated["tasks"] == [] and "progress" in updated
    assert updated["updated_at"] >= job["updated_at"]
    sent_back = api.ok(method, f"/api/jobs/{job['id']}", {**updated, "id": str(uuid.uuid4()), "name": "New"})
    assert sent_back["id"] == job["id"]  # read-only fields of a fetched job are ignored
    assert api.fails(method, f"/api/jobs/{job['id']}", {"owner": "me"}, status=422)["field"] == "owner"
    assert api.fails(method, f"/api/jobs/{job['id']}", {"status": 3}, status=422)["field"] == "status"
    assert api.fails(method, f"/api/jobs/{uuid.uuid4()}", {"name": "x"}, status=404)["code"] == "not_found"
    assert api.ok("GET", f"/api/jobs/{job['id']}")["name"] == "New"


def test_delete_job_cascades_and_counts(api: Api, store: cs.Store) -> None:
    job = make_job(api)
    tasks = [make_task(api, job["id"]) for _ in range(2)]
    runs = [add_run(store, tasks[0]["id"], minutes=n) for n in range(3)]
    runs.append(add_run(store, tasks[1]["id"], log=None))
    other = make_task(api)
    preview = api.ok("GET", f"/api/jobs/{job['id']}/delete-preview")
    assert preview["counts"] == {"jobs": 1, "tasks": 2, "runs": 4, "logs": 3}
    assert (preview["job"]["id"], preview["active_runs"]) == (job["id"], 0)
    result = api.ok("DELETE", f"/api/jobs/{job['id']}")
    assert result == {"deleted": {"jobs": 1, "tasks": 2, "runs": 4, "logs": 3}}
    assert api.fails("GET", f"/api/jobs/{job['id']}", status=404)
    assert api.fails("GET", f"/api/tasks/{tasks[0]['id']}", status=404)
    assert api.fails("GET", f"/api/runs/{runs[0]}", status=404)
    assert not any(store.log_path(run_id).exists() for run_id in runs)
    assert [t["id"] for t in api.ok("GET", "/api/tasks")["tasks"]] == [other["id"]]


def test_delete_job_with_active_runs_needs_force(api: Api, store: cs.Store) -> None:
    job = make_job(api)
    task = make_task(api, job["id"])
    run = api.ok("POST", f"/api/tasks/{task['id']}/run", status=202)
    error = api.fails("DELETE", f"/api/jobs/{job['id']}", status=409)
    assert error["code"] == "conflict" and "active run" in error["message"]
    assert api.ok("GET", f"/api/jobs/{job['id']}")["id"] == job["id"]
    assert api.ok("GET", f"/api/jobs/{job['id']}/delete-preview")["active_runs"] == 1
    assert api.fails("DELETE", f"/api/jobs/{job['id']}?force=maybe", status=400)["field"] == "force"
    result = api.ok("DELETE", f"/api/jobs/{job['id']}?force=true")
    assert result["deleted"]["tasks"] == 1 and result["deleted"]["runs"] == 1
    assert api.fails("GET", f"/api/runs/{run['id']}", status=404)


def test_run_job_queues_its_first_enabled_task(api: Api) -> None:
    job = make_job(api)
    api.fails("POST", f"/api/jobs/{job['id']}/run", status=409)  # nothing to run yet
    make_task(api, job["id"], name="off", enabled=False)
    first = make_task(api, job["id"], name="first")
    second = make_task(api, job["id"], name="second")
    answer = api.ok("POST", f"/api/jobs/{job['id']}/run", {"continue_on_failure": True}, 202)
    assert answer["task_ids"] == [first["id"], second["id"]]
    assert answer["continue_on_failure"] is True
    assert (answer["run"]["task_id"], answer["run"]["status"]) == (first["id"], "queued")
    assert api.fails("POST", f"/api/jobs/{job['id']}/run", status=409)["code"] == "conflict"
    stopped = api.ok("POST", f"/api/jobs/{job['id']}/stop")
    assert [r["status"] for r in stopped["stopped_runs"]] == ["cancelled"]
    assert api.ok("POST", f"/api/jobs/{job['id']}/run", status=202)["continue_on_failure"] is False


@pytest.mark.parametrize(
    ("body", "field"), [({"continue_on_failure": "yes"}, "continue_on_failure"), ({"force": True}, "force")]
)
def test_run_job_options_are_checked(api: Api, body: Any, field: str) -> None:
    job = make_job(api)
    make_task(api, job["id"])
    assert api.fails("POST", f"/api/jobs/{job['id']}/run", body, status=422)["field"] == field
    assert api.ok("GET", "/api/runs")["runs"] == []


# Tasks -------------------------------------------------------------------------


def test_create_task_with_and_without_a_job(api: Api) -> None:
    job = make_job(api)
    task = make_task(api, job["id"], schedule={"type": "cron", "expression": "0 9 * * mon-fri"})
    assert task["job_id"] == job["id"]
    assert task["schedule_text"] == cs.describe_schedule(cs.Schedule.from_dict(task["schedule"]))
    assert "09:00" in task["schedule_text"]
    assert task["next_run_at"] is not None
    loose = make_task(api)
    assert loose["job_id"] is None and loose["model"] == "sonnet" and loose["enabled"] is True
    error = api.fails(
        "POST", "/api/tasks", {"name": "x", "prompt": "p", "job_id": str(uuid.uuid4())}, status=422
    )
    assert error["field"] == "job_id"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"schedule": {"type": "cron", "expression": "61 * * * *"}}, "schedule.expression"),
        ({"schedule": {"type": "interval", "every_seconds": 30}}, "schedule.every_seconds"),
        (
            {"schedule": {"type": "cron", "expression": "0 9 * * *", "timezone": "Mars/Base"}},
            "schedule.timezone",
        ),
        ({"permission_mode": "yolo"}, "permission_mode"),
        ({"timeout_seconds": -1}, "timeout_seconds"),
        ({"max_turns": 10**30}, "max_turns"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"job_id": "not-a-uuid"}, "job_id"),
    ],
)
def test_create_task_validation(api: Api, fields: dict[str, Any], field: str | None) -> None:
    error = api.fails("POST", "/api/tasks", {"name": "T", "prompt": "p", **fields}, status=422)
    if field is not None:
        assert error["field"] == field
    assert api.ok("GET", "/api/tasks")["tasks"] == []


def test_list_tasks_filters_by_job_and_unassigned(api: Api) -> None:
    job, other = make_job(api), make_job(api, "Other")
    mine, theirs, loose = make_task(api, job["id"]), make_task(api, other["id"]), make_task(api)
    every = api.ok("GET", "/api/tasks")["tasks"]
    assert [t["id"] for t in every] == [mine["id"], theirs["id"], loose["id"]]
    assert all("job_id" in t for t in every)
    assert [t["id"] for t in api.ok("GET", f"/api/tasks?job_id={job['id']}")["tasks"]] == [mine["id"]]
    assert [t["id"] for t in api.ok("GET", "/api/tasks?job_id=none")["tasks"]] == [loose["id"]]
    assert [t["id"] for t in api.ok("GET", "/api/tasks?job_id=NONE")["tasks"]] == [loose["id"]]
    assert api.fails("GET", "/api/tasks?job_id=12", status=400)["field"] == "job_id"
    assert api.fails("GET", f"/api/tasks?job_id={uuid.uuid4()}", status=404)["code"] == "not_found"
    assert api.fails("GET", "/api/tasks?jobid=none", status=400)["field"] == "jobid"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_update_task_is_partial_and_moves_between_jobs(api: Api, method: str) -> None:
    job = make_job(api)
    task = make_task(api, prompt="keep this", model="opus")
    moved = api.ok(method, f"/api/tasks/{task['id']}", {"job_id": job["id"], "name": "Renamed"})
    assert (moved["job_id"], moved["name"], moved["prompt"], moved["model"]) == (
        job["id"],
        "Renamed",
        "keep this",
        "opus",
    )
    assert api.ok("GET", f"/api/jobs/{job['id']}")["tasks"][0]["id"] == task["id"]
    assert api.ok(method, f"/api/tasks/{task['id']}", {"job_id": None})["job_id"] is None
    missing_job = {"job_id": str(uuid.uuid4())}
    assert api.fails(method, f"/api/tasks/{task['id']}", missing_job, status=422)["field"] == "job_id"
    assert api.fails(method, f"/api/tasks/{uuid.uuid4()}", {"name": "x"}, status=404)
    assert api.fails(method, f"/api/tasks/{task['id']}", status=400)["code"] == "bad_request"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_update_task_keeps_the_retry_fields_not_given(api: Api, method: str) -> None:
    task = make_task(api, retry={"max_attempts": 2, "delay_seconds": 30, "backoff": 3.0})
    changed = api.ok(method, f"/api/tasks/{task['id']}", {"retry": {"max_attempts": 5}})
    assert changed["retry"] == {"max_attempts": 5, "delay_seconds": 30, "backoff": 3.0}
    bad = api.fails(method, f"/api/tasks/{task['id']}", {"retry": {"delay_seconds": -1}}, status=422)
    assert bad["field"] == "retry.delay_seconds"


def test_patch_sets_and_drops_single_environment_variables_and_put_replaces_them(api: Api) -> None:
    task = make_task(api, env={"A": "1", "B": "2"})
    path = f"/api/tasks/{task['id']}"
    assert api.ok("PATCH", path, {"env": {"B": "20", "C": "3"}})["env"] == {"A": "1", "B": "20", "C": "3"}
    assert api.ok("PATCH", path, {"env": {"A": None, "NOT_SET": None}})["env"] == {"B": "20", "C": "3"}
    assert api.fails("PATCH", path, {"env": {"D": 4}}, status=422)["field"] == "env.D"
    assert api.ok("PUT", path, {"env": {"Z": "26"}})["env"] == {"Z": "26"}


def test_delete_task_removes_its_runs_and_logs(api: Api, store: cs.Store) -> None:
    task = make_task(api)
    runs = [add_run(store, task["id"], minutes=n) for n in range(2)]
    assert api.ok("DELETE", f"/api/tasks/{task['id']}") == {
        "deleted": {"jobs": 0, "tasks": 1, "runs": 2, "logs": 2}
    }
    assert api.fails("GET", f"/api/tasks/{task['id']}", status=404)
    assert api.fails("DELETE", f"/api/tasks/{task['id']}", status=404)
    assert not any(store.log_path(run_id).exists() for run_id in runs)


def test_delete_task_with_an_active_run_needs_force(api: Api) -> None:
    task = make_task(api)
    api.ok("POST", f"/api/tasks/{task['id']}/run", status=202)
    assert api.fails("DELETE", f"/api/tasks/{task['id']}", status=409)["code"] == "conflict"
    assert api.ok("DELETE", f"/api/tasks/{task['id']}?force=1")["deleted"]["runs"] == 1


def test_run_task_answers_202_with_the_queued_run(api: Api) -> None:
    task = make_task(api, model="haiku")
    run = api.ok("POST", f"/api/tasks/{task['id']}/run", status=202)
    assert (run["task_id"], run["status"], run["trigger"], run["model"]) == (
        task["id"],
        "queued",
        "api",
        "haiku",
    )
    assert api.ok("GET", f"/api/runs/{run['id']}") == run
    by_cli = api.ok("POST", f"/api/tasks/{task['id']}/run", {"trigger": "cli"}, 202)
    assert by_cli["trigger"] == "cli"
    assert (
        api.fails("POST", f"/api/tasks/{task['id']}/run", {"trigger": "schedule"}, status=422)["field"]
        == "trigger"
    )
    assert api.fails("POST", f"/api/tasks/{uuid.uuid4()}/run", status=404)
    assert len(api.ok("GET", "/api/runs")["runs"]) == 2


def test_a_run_asked_for_with_no_engine_gets_a_start_by_time_unless_it_waits(
    api: Api, store: cs.Store
) -> None:
    task = make_task(api)
    assert api.ok("PATCH", "/api/settings", {"start_by_minutes": 20})["start_by_minutes"] == 20
    run = api.ok("POST", f"/api/tasks/{task['id']}/run", status=202)
    start_by = datetime.fromisoformat(run["start_by"])
    assert start_by - datetime.fromisoformat(run["created_at"]) == timedelta(minutes=20)
    waits = api.ok("POST", f"/api/tasks/{task['id']}/run", {"wait_for_engine": True}, 202)
    assert waits["start_by"] is None
    refused = api.fails("POST", f"/api/tasks/{task['id']}/run", {"wait_for_engine": "yes"}, status=422)
    assert refused["field"] == "wait_for_engine"

    store.set_engine_state(paused=True)  # so the waiting run's session does not start
    tick_once_at(store.home, start_by)  # none started it in time
    expired = api.ok("GET", f"/api/runs/{run['id']}")
    assert (expired["status"], expired["failure_kind"]) == ("cancelled", "expired")
    assert api.ok("GET", f"/api/runs/{waits['id']}")["status"] == "queued"


def tick_once_at(home: Path, moment: datetime) -> None:
    """One pass of an engine whose clock says `moment`, then the engine stopped."""
    engine = cs.Engine(cs.Store(home, clock=lambda: moment))
    assert engine.start(thread=False)
    try:
        engine.tick()
    finally:
        engine.stop()


def test_a_job_run_asked_for_with_no_engine_expires_as_a_whole_unless_it_waits(
    api: Api, store: cs.Store
) -> None:
    job = make_job(api)
    make_task(api, job["id"])
    queued = api.ok("POST", f"/api/jobs/{job['id']}/run", status=202)
    start_by = datetime.fromisoformat(queued["run"]["start_by"])
    assert start_by - datetime.fromisoformat(queued["run"]["created_at"]) == timedelta(minutes=10)
    refused = api.fails("POST", f"/api/jobs/{job['id']}/run", {"wait_for_engine": 1}, status=422)
    assert refused["field"] == "wait_for_engine"

    tick_once_at(store.home, start_by)  # none started it in time
    (expired,) = api.ok("GET", f"/api/jobs/{job['id']}/runs")["job_runs"]
    assert (expired["id"], expired["status"]) == (queued["job_run_id"], "expired")
    assert expired["note"].startswith("expired: asked for at ")
    assert [step["status"] for step in expired["steps"]] == ["not_run"]

    waits = api.ok("POST", f"/api/jobs/{job['id']}/run", {"wait_for_engine": True}, 202)
    assert waits["run"]["start_by"] is None


def test_enable_and_disable(api: Api) -> None:
    task = make_task(api, schedule={"type": "interval", "every_seconds": 3600})
    off = api.ok("POST", f"/api/tasks/{task['id']}/disable")
    assert (off["enabled"], off["next_run_at"]) == (False, None)
    on = api.ok("POST", f"/api/tasks/{task['id']}/enable")
    assert on["enabled"] is True and on["next_run_at"] is not None
    assert api.fails("POST", f"/api/tasks/{uuid.uuid4()}/enable", status=404)


def test_next_fire_times(api: Api) -> None:
    task = make_task(api, schedule={"type": "cron", "expression": "*/15 * * * *", "timezone": "UTC"})
    result = api.ok("GET", f"/api/tasks/{task['id']}/next?count=3")
    times = [datetime.fromisoformat(t) for t in result["times"]]
    assert len(times) == 3 and all(t.minute % 15 == 0 for t in times)
    assert times == sorted(times) and times[1] - times[0] == timedelta(minutes=15)
    assert result["task_id"] == task["id"] and result["enabled"] is True
    assert len(api.ok("GET", f"/api/tasks/{task['id']}/next")["times"]) == cs.DEFAULT_PREVIEW
    assert api.fails("GET", f"/api/tasks/{task['id']}/next?count=abc", status=400)["field"] == "count"
    assert api.fails("GET", f"/api/tasks/{task['id']}/next?count=0", status=422)["field"] == "count"
    assert api.fails("GET", f"/api/tasks/{task['id']}/next?count=101", status=422)["field"] == "count"


# Schedule preview --------------------------------------------------------------


def test_preview_cron_in_a_time_zone_after_a_time(api: Api) -> None:
    query = "cron=0+9+*+*+mon&timezone=Europe/Amsterdam&after=2026-01-01T00:00:00Z&count=2"
    result = api.ok("GET", f"/api/schedule/preview?{query}")
    assert result["times"] == ["2026-01-05T08:00:00.000+00:00", "2026-01-12T08:00:00.000+00:00"]
    assert result["description"].startswith("At 09:00 on Monday")
    assert result["schedule"] == {"type": "cron", "expression": "0 9 * * mon", "timezone": "Europe/Amsterdam"}


def test_preview_interval_and_once(api: Api) -> None:
    result = api.ok("GET", "/api/schedule/preview?every_seconds=3600&after=2026-01-01T00:00:00Z&count=2")
    assert result["times"] == ["2026-01-01T01:00:00.000+00:00", "2026-01-01T02:00:00.000+00:00"]
    once = api.ok("GET", "/api/schedule/preview?at=2030-05-01T10:00:00Z&after=2026-01-01T00:00:00Z")
    assert once["times"] == ["2030-05-01T10:00:00.000+00:00"]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("", 400, None),
        ("cron=*+*+*+*+*&every_seconds=60", 400, None),
        ("every_seconds=3600&timezone=UTC", 400, "timezone"),
        ("every_seconds=15m", 400, "every_seconds"),
        ("every_seconds=30", 422, "schedule.every_seconds"),
        ("cron=0+9+*+*", 422, "schedule.expression"),
        ("cron=0+9+*+*+*&timezone=Nowhere/Land", 422, "schedule.timezone"),
        ("cron=0+9+*+*+*&after=yesterday", 422, "after"),
        ("cron=0+9+*+*+*&count=1000", 422, "count"),
        ("cron=0+9+*+*+*&count=-1", 422, "count"),
        ("cron=0+9+*+*+*&cron=0+10+*+*+*", 400, "cron"),
    ],
)
def test_preview_errors(api: Api, query: str, status: int, field: str | None) -> None:
    assert api.fails("GET", f"/api/schedule/preview?{query}", status=status)["field"] == field


# Runs --------------------------------------------------------------------------


def test_list_runs_newest_first_with_filters(api: Api, store: cs.Store) -> None:
    job = make_job(api)
    mine, loose = make_task(api, job["id"]), make_task(api)
    old = add_run(store, mine["id"], cs.RunStatus.FAILED, minutes=0)
    new = add_run(store, mine["id"], cs.RunStatus.SUCCESS, minutes=2)
    other = add_run(store, loose["id"], cs.RunStatus.SUCCESS, minutes=1)

    def ids(query: str = "") -> list[str]:
        return [run["id"] for run in api.ok("GET", f"/api/runs{query}")["runs"]]

    assert ids() == [new, other, old]
    assert ids(f"?task_id={mine['id']}") == [new, old]
    assert ids(f"?job_id={job['id']}") == [new, old]
    assert ids("?status=success") == [new, other]
    assert ids("?status=success&limit=1") == [new]
    assert api.fails("GET", "/api/runs?status=great", status=422)["field"] == "status"
    assert api.fails("GET", "/api/runs?limit=0", status=422)["field"] == "limit"
    assert api.fails("GET", "/api/runs?limit=ten", status=400)["field"] == "limit"
    assert api.fails("GET", "/api/runs?task_id=abc", status=400)["field"] == "task_id"
    assert api.fails("GET", f"/api/runs?task_id={uuid.uuid4()}", status=404)["code"] == "not_found"


def test_get_and_delete_a_run(api: Api, store: cs.Store) -> None:
    task = make_task(api)
    run_id = add_run(store, task["id"])
    run = api.ok("GET", f"/api/runs/{run_id}")
    assert (run["id"], run["status"], run["duration_seconds"]) == (run_id, "success", 5.0)
    assert api.ok("DELETE", f"/api/runs/{run_id}") == {
        "deleted": {"jobs": 0, "tasks": 0, "runs": 1, "logs": 1}
    }
    assert not store.log_path(run_id).exists()
    assert api.fails("GET", f"/api/runs/{run_id}", status=404)["code"] == "not_found"
    assert api.fails("DELETE", f"/api/runs/{run_id}", status=404)["code"] == "not_found"


def test_an_active_run_is_stopped_not_deleted(api: Api) -> None:
    task = make_task(api)
    run = api.ok("POST", f"/api/tasks/{task['id']}/run", status=202)
    assert api.fails("DELETE", f"/api/runs/{run['id']}", status=409)["code"] == "conflict"
    stopped = api.ok("POST", f"/api/runs/{run['id']}/stop")
    assert (stopped["status"], stopped["error"]) == ("cancelled", "stopped before it started")
    assert api.ok("POST", f"/api/runs/{run['id']}/stop")["status"] == "cancelled"
    assert api.ok("DELETE", f"/api/runs/{run['id']}")["deleted"]["runs"] == 1
    assert api.fails("POST", f"/api/runs/{uuid.uuid4()}/stop", status=404)


def test_a_running_run_is_asked_to_stop(api: Api, store: cs.Store) -> None:
    task = make_task(api)
    run_id = add_run(store, task["id"], cs.RunStatus.RUNNING)
    stopped = api.ok("POST", f"/api/runs/{run_id}/stop")
    assert (stopped["status"], stopped["stop_requested"]) == ("running", True)


def test_log_tail_with_offsets(api: Api, store: cs.Store) -> None:
    task = make_task(api)
    run_id = add_run(store, task["id"], log="first\nsecond ✓\n".encode())
    whole = api.ok("GET", f"/api/runs/{run_id}/log")
    assert whole == {
        "run_id": run_id,
        "offset": 0,
        "next_offset": 17,
        "data": "first\nsecond ✓\n",
        "active": False,
    }
    tail = api.ok("GET", f"/api/runs/{run_id}/log?offset=6")
    assert (tail["data"], tail["next_offset"]) == ("second ✓\n", 17)
    assert api.ok("GET", f"/api/runs/{run_id}/log?offset=17")["data"] == ""
    assert api.ok("GET", f"/api/runs/{run_id}/log?offset=99")["next_offset"] == 99
    piece = api.ok("GET", f"/api/runs/{run_id}/log?limit=8")
    assert (piece["data"], piece["next_offset"]) == ("first\n", 6)
    assert api.fails("GET", f"/api/runs/{run_id}/log?offset=-1", status=422)["field"] == "offset"
    assert api.fails("GET", f"/api/runs/{run_id}/log?offset=x", status=400)["field"] == "offset"
    assert api.fails("GET", f"/api/runs/{run_id}/log?limit=0", status=422)["field"] == "limit"
    assert api.fails("GET", f"/api/runs/{uuid.uuid4()}/log", status=404)


def test_log_of_an_active_run_gives_whole_lines_and_long_lines_in_pieces(api: Api, store: cs.Store) -> None:
    task = make_task(api)
    active = add_run(store, task["id"], cs.RunStatus.RUNNING, log=b"done\nhalf a li")
    chunk = api.ok("GET", f"/api/runs/{active}/log")
    assert (chunk["data"], chunk["next_offset"], chunk["active"]) == ("done\n", 5, True)
    assert api.ok("GET", f"/api/runs/{active}/log?offset=5")["data"] == ""
    long_line = add_run(store, task["id"], log=b"x" * 20 + b"\n")
    pieces, offset = [], 0
    while data := (chunk := api.ok("GET", f"/api/runs/{long_line}/log?offset={offset}&limit=8"))["data"]:
        pieces.append(data)
        offset = chunk["next_offset"]
    assert "".join(pieces) == "x" * 20 + "\n"


def test_log_of_a_run_without_a_file_is_empty(api: Api, store: cs.Store) -> None:
    task = make_task(api)
    run_id = add_run(store, task["id"], log=None)
    assert api.ok("GET", f"/api/runs/{run_id}/log")["data"] == ""


# Engine ------------------------------------------------------------------------


def test_engine_pause_and_resume(api: Api, store: cs.Store) -> None:
    assert api.ok("GET", "/api/engine")["paused"] is False
    assert api.ok("POST", "/api/engine/pause")["paused"] is True
    assert store.engine_state()["paused"] is True
    assert api.ok("GET", "/api/engine")["paused"] is True
    assert api.request("GET", "/api/health", token=None).json["engine"]["paused"] is True
    assert api.ok("POST", "/api/engine/resume")["paused"] is False
    assert api.fails("GET", "/api/engine/pause", status=405)["code"] == "method_not_allowed"


def test_engine_shows_a_usage_limit_hold_and_resume_lifts_it(api: Api) -> None:
    reset = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    task = make_task(api, prompt=f"[usage_limit={int(reset.timestamp())}]")
    assert cs.main(["cli", "tasks", "run", task["id"]]) == 1  # a foreground run that hits the limit
    (run,) = api.ok("GET", f"/api/runs?task_id={task['id']}")["runs"]

    hold = api.ok("GET", "/api/engine")["hold"]

    schema = api.ok("GET", "/api/openapi.json")["components"]["schemas"]["EngineStatus"]
    assert set(hold) == set(schema["properties"]["hold"]["anyOf"][0]["properties"])
    assert (hold["until"], hold["until_local"], hold["timezone"]) == (
        cs.fmt_time(reset + timedelta(seconds=60)),
        (reset + timedelta(seconds=60)).isoformat(),
        "UTC",
    )
    assert (hold["kind"], hold["run_id"], hold["task_id"]) == ("usage_limit", run["id"], task["id"])
    assert hold["reason"] == "You've hit your session limit · resets 12am (UTC)"
    assert api.request("GET", "/api/health", token=None).json["engine"]["hold"] == hold

    resumed = api.ok("POST", "/api/engine/resume")

    assert (resumed["lifted"], resumed["hold"], resumed["paused"]) == (["hold"], None, False)
    assert api.ok("GET", "/api/engine")["hold"] is None
    assert api.ok("POST", "/api/engine/resume")["lifted"] == []


def test_engine_status_names_an_engine_running_in_this_process(api: Api, store: cs.Store) -> None:
    engine = cs.Engine(store)
    assert engine.start(thread=False)
    try:
        status = api.ok("GET", "/api/engine")
        assert status["running"] is True and status["here"] is True
        assert status["owner"]["pid"] == os.getpid()
    finally:
        engine.stop()


# Errors and the protocol -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/jobs", "GET, POST"),
        ("POST", "/api/jobs/{id}", "GET, PUT, PATCH, DELETE"),
        ("GET", "/api/tasks/{id}/run", "POST"),
        ("PUT", "/api/runs", "GET"),
        ("POST", "/api/health", "GET"),
        ("BREW", "/api/engine", "GET"),
        ("OPTIONS", "/api/jobs", "GET, POST"),
    ],
)
def test_wrong_method_is_405_with_allow(api: Api, method: str, path: str, allow: str) -> None:
    answer = api.request(method, path.replace("{id}", str(uuid.uuid4())))
    assert answer.status == 405
    assert answer.headers["allow"] == allow
    assert answer.error["code"] == "method_not_allowed"


def test_head_gets_405_without_a_body(api: Api) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    connection.request("HEAD", "/api/health")
    response = connection.getresponse()
    assert (response.status, response.getheader("Allow"), response.read()) == (405, "GET", b"")
    connection.request("GET", "/api/health")  # the connection is still in step
    assert connection.getresponse().status == 200
    connection.close()


@pytest.mark.parametrize(
    "path", ["/", "/api", "/api/job", "/api/jobs/x/y/z", "/api/../api/jobs", "/favicon.ico"]
)
def test_unknown_routes_are_404_json(api: Api, path: str) -> None:
    assert api.fails("GET", path, status=404)["code"] == "not_found"


def test_a_trailing_slash_is_the_same_route(api: Api) -> None:
    assert api.ok("GET", "/api/jobs/") == {"jobs": []}


def test_body_over_one_mebibyte_is_413_and_the_client_hears_it(api: Api) -> None:
    body = b'{"name": "' + b"x" * (cs.BODY_MAX + 10) + b'"}'
    answer = api.request("POST", "/api/jobs", raw=body, headers={"Content-Type": "application/json"})
    assert (answer.status, answer.error["code"]) == (413, "payload_too_large")
    assert answer.headers.get("connection") == "close"
    assert api.ok("GET", "/api/jobs") == {"jobs": []}


def test_body_at_the_limit_is_read(api: Api) -> None:
    padding = cs.BODY_MAX - len(b'{"name": "x", "description": ""}')
    body = b'{"name": "x", "description": "' + b"d" * padding + b'"}'
    assert len(body) == cs.BODY_MAX
    answer = api.request("POST", "/api/jobs", raw=body, headers={"Content-Type": "application/json"})
    assert answer.status == 422 and answer.error["field"] == "description"  # too long, but read and judged


@pytest.mark.parametrize("length", ["abc", "-1", "1.5", "", "0x10", "1e3", "99999999999999999999999"])
def test_bad_content_length(api: Api, length: str) -> None:
    answer = api.request(
        "POST", "/api/jobs", raw=b"{}", headers={"Content-Length": length, "Content-Type": "application/json"}
    )
    assert answer.status in (400, 413)
    assert answer.error["code"] in ("bad_request", "payload_too_large")
    assert answer.headers.get("connection") == "close"


def raw_exchange(port: int, data: bytes, *, half_close: bool = False) -> Answer:
    """Send raw bytes and read one HTTP answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())


def request_bytes(api: Api, head: str, body: bytes = b"", host: str | None = None) -> bytes:
    host_line = f"Host: {host or f'127.0.0.1:{api.port}'}\r\n" if host != "" else ""
    auth = f"Authorization: Bearer {api.token}\r\n"
    return f"{head}\r\n{host_line}{auth}".encode() + b"Content-Type: application/json\r\n" + body


def test_post_without_content_length_has_no_body(api: Api) -> None:
    answer = raw_exchange(api.port, request_bytes(api, "POST /api/jobs HTTP/1.1") + b"\r\n")
    assert (answer.status, answer.error["message"]) == (400, "this request needs a JSON body")


def test_a_body_shorter_than_its_length_is_400(api: Api) -> None:
    data = request_bytes(api, "POST /api/jobs HTTP/1.1") + b'Content-Length: 100\r\n\r\n{"name": "x"}'
    answer = raw_exchange(api.port, data, half_close=True)
    assert answer.status == 400
    assert "ended after 13 of its 100 bytes" in answer.error["message"]


def test_chunked_bodies_are_refused(api: Api) -> None:
    data = (
        request_bytes(api, "POST /api/jobs HTTP/1.1")
        + b'Transfer-Encoding: chunked\r\n\r\nd\r\n{"name": "x"}\r\n0\r\n\r\n'
    )
    assert raw_exchange(api.port, data).status == 400
    assert api.ok("GET", "/api/jobs") == {"jobs": []}


@pytest.mark.parametrize("framing", ["chunked", "two lengths"])
def test_a_request_hidden_in_a_refused_body_is_never_executed(api: Api, framing: str) -> None:
    """Request smuggling: the body of a request whose framing is refused holds a whole
    second request. The connection closes after the one answer; the second never runs."""
    body = b'{"name": "smuggled"}'
    smuggled = (
        request_bytes(api, "POST /api/jobs HTTP/1.1") + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    head = {
        "chunked": b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        "two lengths": b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(smuggled),
    }[framing]
    data = request_bytes(api, "POST /api/jobs HTTP/1.1") + head + smuggled

    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):  # to the server's close: every answer it gives
            received += chunk

    assert received.startswith(b"HTTP/1.1 400 ")
    assert received.count(b"HTTP/1.1 ") == 1
    assert api.ok("GET", "/api/jobs") == {"jobs": []}


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"GET /api/health HTTP/1.1 extra\r\n\r\n", 400),
        (b"GET /api/health HTTP/x.y\r\n\r\n", 400),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /api/health HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
        (b"GET /api/health HTTP/9.9\r\n\r\n", 505),  # the one 5xx: HTTP's answer to a version it lacks
    ],
    ids=["garbage", "method only", "extra word", "bad version", "long target", "many headers", "HTTP/9.9"],
)
def test_broken_request_lines_get_json_errors(api: Api, line: bytes, status: int) -> None:
    answer = raw_exchange(api.port, line)
    assert answer.status == status
    assert answer.error["code"]


def test_absolute_form_targets_are_refused(api: Api) -> None:
    assert api.fails("GET", "http://evil.example/api/jobs", status=400)["code"] == "bad_request"
    # http.server folds a leading // into one /, so this is only an unknown path.
    assert api.fails("GET", "//evil.example/api/jobs", status=404)["code"] == "not_found"


def test_requests_keep_the_connection_in_step_after_errors(api: Api) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    auth = {"Authorization": f"Bearer {api.token}"}
    for content_type, status in (("text/plain", 415), ("application/json", 201)):
        headers = {**auth, "Content-Type": content_type}
        connection.request("POST", "/api/jobs", body=b'{"name": "A"}', headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == status
    connection.request(
        "POST", "/api/jobs", body=b'{"name": ', headers={**auth, "Content-Type": "application/json"}
    )
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())["error"]["code"]) == (400, "bad_request")
    connection.request("GET", "/api/jobs", headers=auth)
    assert len(json.loads(connection.getresponse().read())["jobs"]) == 1
    connection.close()


def test_an_unexpected_failure_is_500_without_details(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def explode() -> list[Any]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.server.service, "list_jobs", explode)
    with caplog.at_level(logging.ERROR, logger="claude_scheduler"):
        answer = api.request("GET", "/api/jobs")
    assert answer.status == 500
    assert answer.error["code"] == "internal_error"
    assert b"secret" not in answer.raw and b"Traceback" not in answer.raw
    assert "secret internals" in caplog.text  # the log has it
    assert api.ok("GET", "/api/tasks") == {"tasks": []}


def test_an_unreadable_store_file_is_503_and_left_alone(api: Api, store: cs.Store) -> None:
    (store.home / cs.JOBS_FILE).write_text("{broken")
    error = api.fails("GET", "/api/jobs", status=503)
    assert error["code"] == "storage_error" and "jobs.json" in error["message"]
    assert api.fails("POST", "/api/jobs", {"name": "x"}, status=503)["code"] == "storage_error"
    assert (store.home / cs.JOBS_FILE).read_text() == "{broken"


# Security ----------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    job_id: str
    task_id: str
    run_id: str


@pytest.fixture
def existing(api: Api, store: cs.Store) -> Fixture:
    """A job with a task and a finished run: real ids, so a request let through would act."""
    job = make_job(api)
    task = make_task(api, job["id"])
    return Fixture(job["id"], task["id"], add_run(store, task["id"]))


def route_path(route: cs.ApiRoute, ids: Fixture) -> str:
    return route.template.format(job_id=ids.job_id, task_id=ids.task_id, run_id=ids.run_id)


def valid_body(route: cs.ApiRoute) -> Any:
    bodies = {
        "JobCreate": {"name": "x"},
        "JobInput": {"name": "y"},
        "TaskCreate": {"name": "t", "prompt": "p"},
    }
    bodies["TaskInput"] = {"name": "y"}
    return bodies.get(route.body or "", NO_BODY)


def snapshot(store: cs.Store) -> Any:
    service = cs.Service(store)
    return service.list_jobs(), service.list_tasks(), service.list_runs(), service.engine_status()


MUTATING = [route for route in cs.API_ROUTES if route.method != "GET"]
GUARDED = [route for route in cs.API_ROUTES if not route.public]
REFUSALS: dict[str, tuple[int, dict[str, Any]]] = {
    "no token": (401, {"token": None}),
    "wrong token": (401, {"token": "x" * 43}),
    "other scheme": (401, {"token": None, "headers": {"Authorization": "Basic dXNlcjpwYXNz"}}),
    "bad Host": (421, {"headers": {"Host": "attacker.example:5679"}}),
    "foreign Origin": (403, {"headers": {"Origin": "http://attacker.example"}}),
    "text/plain body": (415, {"raw": b'{"name": "x"}', "headers": {"Content-Type": "text/plain"}}),
}


def route_id(route: cs.ApiRoute) -> str:
    return f"{route.method} {route.template}"


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, cs.Store, Fixture]]:
    """One server for the refusal tests: each checks that its request changed nothing."""
    store = cs.Store(tmp_path_factory.mktemp("refusing") / "data")
    server = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    server.start()
    client = Api(server, cs.api_token(store.home, create=False))
    job = make_job(client)
    task = make_task(client, job["id"])
    yield client, store, Fixture(job["id"], task["id"], add_run(store, task["id"]))
    client.close()
    server.stop()


@pytest.mark.parametrize("case", REFUSALS)
@pytest.mark.parametrize("route", MUTATING, ids=route_id)
def test_security_matrix_for_every_mutating_route(
    refusing: tuple[Api, cs.Store, Fixture], route: cs.ApiRoute, case: str
) -> None:
    api, store, existing = refusing
    status, options = REFUSALS[case]
    before = snapshot(store)
    body = NO_BODY if "raw" in options else valid_body(route)
    answer = api.request(route.method, route_path(route, existing), body, **options)
    assert answer.status == status, answer.raw
    assert answer.error["code"]
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
    assert snapshot(store) == before


@pytest.mark.parametrize("route", GUARDED, ids=route_id)
def test_every_route_but_health_needs_the_token(
    refusing: tuple[Api, cs.Store, Fixture], route: cs.ApiRoute
) -> None:
    api, store, existing = refusing
    before = snapshot(store)
    answer = api.request(route.method, route_path(route, existing), valid_body(route), token=None)
    assert (answer.status, answer.error["code"]) == (401, "unauthorized")
    assert api.token.encode() not in answer.raw
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:5679",
        "localhost",
        "LOCALHOST:80",
        "localhost.",
        "[::1]:5679",
        "[::1]",
        "127.0.0.2",
    ],
)
def test_loopback_hosts_are_allowed(api: Api, host: str) -> None:
    assert api.request("GET", "/api/jobs", headers={"Host": host}).status == 200


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "127.0.0.1.attacker.example",
        "localhost:abc",
        "[::2]:80",
        "10.0.0.1",
        "user@localhost",
    ],
)
def test_foreign_hosts_are_421(api: Api, host: str) -> None:
    assert api.fails("GET", "/api/jobs", headers={"Host": host}, status=421)["code"] == "misdirected_request"


def test_a_missing_or_doubled_host_is_421(api: Api) -> None:
    no_host = request_bytes(api, "GET /api/jobs HTTP/1.0", host="") + b"\r\n"
    assert raw_exchange(api.port, no_host).status == 421
    doubled = request_bytes(api, "GET /api/jobs HTTP/1.1") + b"Host: attacker.example\r\n\r\n"
    assert raw_exchange(api.port, doubled).status == 421


def test_the_configured_host_is_allowed(store: cs.Store) -> None:
    server = cs.ApiServer(cs.Service(store), "localhost", 0)
    server.start()
    try:
        client = Api(server, cs.api_token(store.home))
        assert (
            client.request("GET", "/api/health", headers={"Host": f"localhost:{server.server_port}"}).status
            == 200
        )
        assert client.request("GET", "/api/health", headers={"Host": "elsewhere"}).status == 421
        client.close()
    finally:
        server.stop()


def test_own_origin_is_allowed_and_others_refused(api: Api) -> None:
    for origin in (
        f"http://127.0.0.1:{api.port}",
        f"http://localhost:{api.port}",
        f"http://[::1]:{api.port}",
    ):
        assert api.request("GET", "/api/jobs", headers={"Origin": origin}).status == 200, origin
    for origin in (
        "null",
        f"https://127.0.0.1:{api.port}",
        f"http://127.0.0.1:{api.port + 1}",
        "http://127.0.0.1",
        f"http://attacker.example:{api.port}",
        "http://127.0.0.1:bad",
        "",
    ):
        assert api.fails("GET", "/api/jobs", headers={"Origin": origin}, status=403)["code"] == "forbidden", (
            origin
        )


@pytest.mark.parametrize("given", ["bearer {token}", "Bearer  {token} ", "BEARER {token}"])
def test_bearer_scheme_is_case_insensitive(api: Api, given: str) -> None:
    answer = api.request(
        "GET", "/api/jobs", token=None, headers={"Authorization": given.format(token=api.token)}
    )
    assert answer.status == 200


@pytest.mark.parametrize(
    "given", ["Bearer", "Bearer ", "{token}", "Bearer {token}x", "Bearer ünï", "Token {token}"]
)
def test_near_miss_tokens_are_refused(api: Api, given: str) -> None:
    headers = {"Authorization": given.format(token=api.token)}
    answer = api.request("GET", "/api/jobs", token=None, headers=headers)
    assert answer.status == 401


def test_the_token_is_never_logged(api: Api, caplog: Any) -> None:
    with caplog.at_level(logging.DEBUG, logger="claude_scheduler"):
        api.ok("GET", "/api/jobs")
        api.request("GET", "/api/jobs", token="wrong")
        api.request("GET", f"/api/jobs?token={api.token[:4]}")
    assert "GET /api/jobs" in caplog.text
    assert api.token not in caplog.text


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"]
)
def test_json_content_types_with_utf8_are_accepted(api: Api, content_type: str) -> None:
    answer = api.request("POST", "/api/jobs", raw=b'{"name": "x"}', headers={"Content-Type": content_type})
    assert answer.status == 201


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
    ],
)
def test_other_content_types_are_415(api: Api, content_type: str) -> None:
    answer = api.request("POST", "/api/jobs", raw=b'{"name": "x"}', headers={"Content-Type": content_type})
    assert (answer.status, answer.error["code"]) == (415, "unsupported_media_type")


def test_a_body_without_content_type_is_415(api: Api) -> None:
    data = request_bytes(api, "POST /api/jobs HTTP/1.1").replace(b"Content-Type: application/json\r\n", b"")
    response = raw_exchange(api.port, data + b'Content-Length: 13\r\n\r\n{"name": "x"}')
    assert response.status == 415


# Many clients ------------------------------------------------------------------


def test_concurrent_clients_create_tasks_without_loss(api: Api) -> None:
    job = make_job(api)
    threads, per_thread = 8, 10
    created: list[str] = []
    failures: list[Any] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        client = Api(api.server, api.token)
        for k in range(per_thread):
            answer = client.request(
                "POST", "/api/tasks", {"name": f"t{n}-{k}", "prompt": "p", "job_id": job["id"]}
            )
            with lock:
                (created if answer.status == 201 else failures).append(
                    answer.json["id"] if answer.status == 201 else answer.raw
                )
        client.close()

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    assert failures == []
    assert len(set(created)) == threads * per_thread
    listed = {t["id"] for t in api.ok("GET", f"/api/tasks?job_id={job['id']}")["tasks"]}
    assert listed == set(created)
    assert api.ok("GET", "/api/jobs")["jobs"][0]["progress"]["total"] == threads * per_thread


def test_concurrent_readers_and_writers(api: Api) -> None:
    errors: list[Any] = []

    def reader() -> None:
        client = Api(api.server, api.token)
        for _ in range(20):
            for path in ("/api/jobs", "/api/tasks", "/api/health", "/api/runs"):
                answer = client.request("GET", path)
                if answer.status != 200:
                    errors.append(answer.raw)
        client.close()

    def writer() -> None:
        client = Api(api.server, api.token)
        for n in range(10):
            if client.request("POST", "/api/jobs", {"name": f"j{n}"}).status != 201:
                errors.append(n)
        client.close()

    workers = [threading.Thread(target=reader) for _ in range(3)] + [
        threading.Thread(target=writer) for _ in range(2)
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    assert errors == []
    assert len(api.ok("GET", "/api/jobs")["jobs"]) == 20


# The OpenAPI document ----------------------------------------------------------


def test_openapi_document_describes_every_route(api: Api) -> None:
    doc = api.ok("GET", "/api/openapi.json")
    assert doc["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert documented == {(route.method, route.template) for route in cs.API_ROUTES}
    spec_routes = {
        ("GET", "/api/health"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/jobs"),
        ("POST", "/api/jobs"),
        ("GET", "/api/jobs/{job_id}"),
        ("PUT", "/api/jobs/{job_id}"),
        ("PATCH", "/api/jobs/{job_id}"),
        ("DELETE", "/api/jobs/{job_id}"),
        ("GET", "/api/jobs/{job_id}/tasks"),
        ("POST", "/api/jobs/{job_id}/run"),
        ("POST", "/api/jobs/{job_id}/stop"),
        ("GET", "/api/tasks"),
        ("POST", "/api/tasks"),
        ("GET", "/api/tasks/{task_id}"),
        ("PUT", "/api/tasks/{task_id}"),
        ("PATCH", "/api/tasks/{task_id}"),
        ("DELETE", "/api/tasks/{task_id}"),
        ("POST", "/api/tasks/{task_id}/run"),
        ("POST", "/api/tasks/{task_id}/enable"),
        ("POST", "/api/tasks/{task_id}/disable"),
        ("GET", "/api/tasks/{task_id}/next"),
        ("GET", "/api/schedule/preview"),
        ("GET", "/api/runs"),
        ("GET", "/api/runs/{run_id}"),
        ("DELETE", "/api/runs/{run_id}"),
        ("GET", "/api/runs/{run_id}/log"),
        ("POST", "/api/runs/{run_id}/stop"),
        ("GET", "/api/engine"),
        ("POST", "/api/engine/pause"),
        ("POST", "/api/engine/resume"),
    }
    assert spec_routes <= documented
    operation_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))
    jobs, job = doc["paths"]["/api/jobs"], doc["paths"]["/api/jobs/{job_id}"]
    assert (jobs["get"]["operationId"], job["delete"]["operationId"]) == ("list_jobs", "delete_job")
    assert (job["put"]["operationId"], job["patch"]["operationId"]) == ("update_job_put", "update_job_patch")
    assert [
        path for path, item in doc["paths"].items() if any(op.get("security") == [] for op in item.values())
    ] == ["/api/health"]


def all_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_refs(value)


def test_openapi_refs_resolve_and_path_ids_are_declared(api: Api) -> None:
    doc = api.ok("GET", "/api/openapi.json")
    for ref in set(all_refs(doc)):
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
    for path, item in doc["paths"].items():
        for operation in item.values():
            declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert declared == set(cs.re.findall(r"\{(\w+)\}", path)), path
            assert operation["responses"]["default"] == {"$ref": "#/components/responses/Error"}


def test_openapi_schemas_match_real_answers(api: Api, store: cs.Store, existing: Fixture) -> None:
    schemas = api.ok("GET", "/api/openapi.json")["components"]["schemas"]

    def keys(name: str) -> set[str]:
        return set(schemas[name]["properties"])

    assert set(api.ok("GET", f"/api/tasks/{existing.task_id}")) == keys("Task")
    assert set(api.ok("GET", f"/api/runs/{existing.run_id}")) == keys("Run")
    assert set(api.ok("GET", "/api/jobs")["jobs"][0]) == keys("Job")
    assert set(api.ok("GET", f"/api/runs/{existing.run_id}/log")) == keys("LogChunk")
    assert set(api.ok("GET", "/api/engine")) == keys("EngineStatus")
    assert set(api.ok("POST", "/api/engine/resume")) == keys("EngineChange")
    assert set(api.ok("GET", "/api/jobs")["jobs"][0]["progress"]) == keys("Progress")
    assert set(cs.Task.EDITABLE) == keys("TaskInput")
    assert set(cs.Job.EDITABLE) == keys("JobInput")
    assert {v["properties"]["type"]["const"] for v in schemas["Schedule"]["oneOf"]} == {
        t.value for t in cs.ScheduleType
    }


def test_openapi_document_is_valid_openapi() -> None:
    validator = pytest.importorskip(
        "openapi_spec_validator", reason="a dev-only check: pip install openapi-spec-validator"
    )
    validator.validate(json.loads(json.dumps(cs.openapi_document())))


# A sweep of malformed requests over every route -------------------------------

BAD_IDS = [
    "x",
    "1",
    "0" * 36,
    uuid.uuid4().hex,
    str(uuid.uuid4()) + "0",
    "%00",
    "..",
    "%20",
    "a" * 3000,
    "{job_id}",
]
BAD_QUERY_VALUES = ["", "abc", "-1", "1e3", "9" * 40, "0", "true", "none", "%FF", "%00", "%E2%98%83"]
BAD_BODIES: list[bytes] = [
    b"not json",
    b'{"name": "\\ud800", "prompt": "p"}',
    b'{"name": "n", "prompt": "\\udcff"}',
    b'{"name": "n", "prompt": "p", "unknown": ["\\ud800"]}',
    b'{"\\ud800": 1, "name": "n", "prompt": "p"}',
    b'{"name": "n", "prompt": "p", "retry": {"\\udc80": 1}}',
    b"[]",
    b"[1, 2]",
    b"null",
    b"0",
    b'"text"',
    b"{",
    b"{}",
    b"NaN",
    b'{"name": NaN}',
    b'{"name": Infinity}',
    b"\xff\xfe\x00",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"name": 1}',
    b'{"name": null, "prompt": null}',
    b'{"name": "x", "bogus": 1}',
    b'{"name": "' + b"n" * 300 + b'"}',
    b'{"name": "x", "prompt": "p", "timeout_seconds": 1e308}',
    b'{"name": "x", "prompt": "p", "timeout_seconds": 1e999}',
    b'{"name": "x", "prompt": "p", "max_turns": -99999999999999999999999999}',
    b'{"name": "x", "prompt": "p", "max_turns": ' + b"9" * 5000 + b"}",
    b'{"name": "x", "prompt": "p", "schedule": []}',
    b'{"name": "x", "prompt": "p", "schedule": {"type": "interval", "every_seconds": "60"}}',
    b'{"name": "x", "prompt": "p", "schedule": {"type": "cron", "expression": 5}}',
    b'{"name": "x", "prompt": "p", "schedule": {"type": "once", "at": "soon"}}',
    b'{"name": "x", "prompt": "p", "schedule": {"type": "file_watch", "path": ["a"]}}',
    b'{"name": "x", "prompt": "p", "retry": {"max_attempts": -1, "backoff": "x"}}',
    b'{"name": "x", "prompt": "p", "env": {"A": 1}}',
    b'{"name": "x", "prompt": "p", "env": []}',
    b'{"name": "x", "prompt": "p", "enabled": "yes"}',
    b'{"name": "x", "prompt": "p", "allowed_tools": "Bash"}',
    b'{"name": "x", "prompt": "p", "allowed_tools": [1]}',
    b'{"name": "x", "task_order": "abc"}',
    b'{"name": "x", "task_order": [null]}',
    b'{"continue_on_failure": 1}',
    b'{"trigger": ["api"]}',
    b'{"trigger": null}',
]


@dataclass
class Sweep:
    api: Api
    answers: int = 0
    problems: list[str] = field(default_factory=list)

    def send(self, method: str, path: str, **kw: Any) -> None:
        try:
            answer = self.api.request(method, path, **kw)
        except (OSError, http.client.HTTPException) as error:
            self.api._connection = None
            self.problems.append(f"{method} {path[:80]}: connection failed: {error!r}")
            return
        self.answers += 1
        if answer.status >= 500:
            self.problems.append(
                f"{method} {path[:80]} {kw.get('raw', b'')[:60]!r}: {answer.status} {answer.raw[:200]!r}"
            )
        elif answer.status >= 400:
            try:
                answer.error  # noqa: B018  # the property checks the shape
            except (AssertionError, ValueError, KeyError, TypeError) as error:
                self.problems.append(f"{method} {path[:80]}: error not JSON-shaped: {error!r}")


def bad_requests(route: cs.ApiRoute, ids: Fixture) -> Iterator[tuple[str, dict[str, Any]]]:
    good_path = route_path(route, ids)
    for name in route.id_names:
        for bad in BAD_IDS:
            real = {"job_id": ids.job_id, "task_id": ids.task_id, "run_id": ids.run_id}
            yield route.template.format(**{**real, name: bad}), {}
    for param in [*route.query, cs.QueryParam("zzz", cs.QUERY_TEXT, "")]:
        for value in BAD_QUERY_VALUES:
            yield f"{good_path}?{param.name}={value}", {}
        yield f"{good_path}?{param.name}=1&{param.name}=2", {}
    yield good_path + "?" + "&".join(f"p{n}=1" for n in range(100)), {}
    yield good_path + "?%%%=&&==", {}
    json_type = {"Content-Type": "application/json"}
    for body in BAD_BODIES:
        yield good_path, {"raw": body, "headers": json_type}
    yield good_path, {"raw": b"{}", "headers": {"Content-Type": "application/json", "Content-Length": "zz"}}
    yield good_path, {"raw": b"x" * (cs.BODY_MAX + 1), "headers": json_type}


@pytest.mark.parametrize("route", cs.API_ROUTES, ids=route_id)
def test_bad_input_sweep_never_gets_a_5xx(api: Api, store: cs.Store, route: cs.ApiRoute) -> None:
    job = make_job(api)
    task = make_task(api, job["id"])
    ids = Fixture(job["id"], task["id"], add_run(store, task["id"]))
    sweep = Sweep(api)
    requests = list(bad_requests(route, ids))
    for path, options in requests:
        sweep.send(route.method, path, **options)
    assert sweep.problems == []
    assert sweep.answers == len(requests)
    assert api.request("GET", "/api/health").status == 200


# Every route's success answer matches its OpenAPI description -------------------

SUCCESS_INPUT: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", "/api/schedule/preview"): ("?cron=0+9+*+*+*&count=2", NO_BODY),
    ("POST", "/api/jobs"): ("", {"name": "New job"}),
    ("PUT", "/api/jobs/{job_id}"): ("", {"name": "Renamed"}),
    ("PATCH", "/api/jobs/{job_id}"): ("", {"description": "more"}),
    ("POST", "/api/tasks"): ("", {"name": "New task", "prompt": "p"}),
    ("PUT", "/api/tasks/{task_id}"): ("", {"name": "Renamed"}),
    ("PATCH", "/api/tasks/{task_id}"): ("", {"model": "opus"}),
    ("POST", "/api/jobs/{job_id}/run"): ("", {"continue_on_failure": True}),
    ("POST", "/api/tasks/{task_id}/run"): ("", {"trigger": "manual"}),
    ("PUT", "/api/settings"): ("", {"max_concurrent_runs": 3}),
    ("PATCH", "/api/settings"): ("", {"retention_runs": 50}),
    ("PUT", "/api/notifications"): ("", {"events": {"changed": True}}),
    ("PATCH", "/api/notifications"): ("", {"desktop": {"enabled": False}}),
    ("POST", "/api/import"): (
        "?dry_run=true",
        {"format": cs.BUNDLE_FORMAT, "version": 1, "jobs": [], "tasks": []},
    ),
}


def schema_shape(schemas: dict[str, Any], schema: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(properties, required) of an object schema, following $ref and allOf."""
    if "$ref" in schema:
        return schema_shape(schemas, schemas[schema["$ref"].rsplit("/", 1)[-1]])
    properties, required = set(schema.get("properties", {})), set(schema.get("required", []))
    for part in schema.get("allOf", []):
        more, needed = schema_shape(schemas, part)
        properties |= more
        required |= needed
    return properties, required


@pytest.mark.parametrize("route", cs.API_ROUTES, ids=route_id)
def test_every_route_answers_as_documented(api: Api, existing: Fixture, route: cs.ApiRoute) -> None:
    query, body = SUCCESS_INPUT.get((route.method, route.template), ("", NO_BODY))
    answer = api.request(
        route.method, route_path(route, existing) + query, body, token=None if route.public else ""
    )
    doc = cs.openapi_document()
    operation = doc["paths"][route.template][route.method.lower()]
    assert answer.status == route.status, answer.raw[:300]
    assert str(answer.status) in operation["responses"]
    payload = answer.json
    properties, required = schema_shape(
        doc["components"]["schemas"],
        operation["responses"][str(route.status)]["content"]["application/json"]["schema"],
    )
    if route.schema != "OpenApiDocument":
        assert required <= set(payload) <= properties, set(payload) ^ properties


def test_settings_are_read_and_changed_with_their_rules(api: Api) -> None:
    assert api.request("GET", "/api/settings").json == {
        "claude_path": None,
        "max_concurrent_runs": 2,
        "retention_runs": 100,
        "start_by_minutes": 10,
    }
    changed = api.request("PATCH", "/api/settings", {"max_concurrent_runs": 5})
    assert changed.status == 200 and changed.json["max_concurrent_runs"] == 5
    refused = api.request("PATCH", "/api/settings", {"retention_runs": -1})
    assert refused.status == 422 and refused.json["error"]["field"] == "retention_runs"
    unknown = api.request("PUT", "/api/settings", {"theme": "dark"})
    assert unknown.status == 422 and unknown.json["error"]["field"] == "theme"
    assert api.request("GET", "/api/settings").json["max_concurrent_runs"] == 5


TOKEN_RACERS = 6


def test_processes_starting_together_on_a_fresh_home_all_use_one_token(home: Path, tmp_path: Path) -> None:
    """Each reads no token, makes one and writes it: only the first may win, and the
    others must answer with the token in the file, not their own."""
    go = tmp_path / "go"
    code = (
        "import os, sys, time, pathlib, claude_scheduler as cs\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.001)\n"
        "print(cs.api_token(pathlib.Path(sys.argv[2])))\n"
    )
    for attempt in range(3):
        data = home / f"attempt-{attempt}"
        data.mkdir(parents=True)
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(go), str(data)],
                env={**os.environ, "PYTHONPATH": str(Path(cs.__file__).parent)},
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(TOKEN_RACERS)
        ]
        go.touch()
        tokens = {racer.communicate(timeout=60)[0].strip() for racer in racers}
        go.unlink()
        assert tokens == {(data / cs.TOKEN_FILE).read_text().strip()}
        assert sorted(path.name for path in data.iterdir()) == [cs.TOKEN_FILE]


# Pinned by the mutation run (tests/mutate.py) -------------------------------------------


def test_an_import_without_dry_run_brings_the_bundle_in(api: Api) -> None:
    job = make_job(api, "Release")
    bundle = api.ok("GET", f"/api/export?job_ids={job['id']}")
    report = api.ok("POST", "/api/import", bundle)
    assert report["dry_run"] is False
    assert sorted(entry["name"] for entry in api.ok("GET", "/api/jobs")["jobs"]) == ["Release", "Release (2)"]


def test_the_settings_input_is_documented_as_closed_as_the_server_holds_it(api: Api) -> None:
    schemas = api.ok("GET", "/api/openapi.json")["components"]["schemas"]
    assert schemas["SettingsInput"]["additionalProperties"] is False
    error = api.fails("PATCH", "/api/settings", {"max_concurent_runs": 2}, status=422)
    assert (error["code"], error["field"]) == ("invalid", "max_concurent_runs")


def test_a_preview_in_the_window_names_a_schedule_field_it_does_not_know(store: cs.Store) -> None:
    """The window previews through the Service in-process, with the schedule as typed."""
    with pytest.raises(cs.Invalid) as refused:
        cs.Service(store).preview({"type": "cron", "expression": "0 9 * * *", "timezon": "UTC"})
    assert refused.value.field == "schedule.timezon"
