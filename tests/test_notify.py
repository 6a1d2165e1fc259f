"""Notifications: which events a run means, webhooks (presets, HMAC-SHA256 signature,
retries with backoff, timeouts, history) to a receiver on 127.0.0.1, a fake desktop
notifier, and delivery that never waits on a slow or unreachable hook."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from run_helpers import T0, WAIT_SECONDS, wait_for

import claude_scheduler as cs

SECRET = "s3cret-key"
Cli = Callable[..., Result]
CliJson = Callable[..., Any]


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST, answers the statuses queued in
    `answers` (then 200), and holds requests while `gate` is closed."""

    server: http.server.ThreadingHTTPServer
    received: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def events(self) -> list[str]:
        return [item["headers"]["X-Scheduler-Event"] for item in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            mine = box[0]
            body = self.rfile.read(int(self.headers["Content-Length"]))
            mine.gate.wait(30)
            mine.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = mine.answers.pop(0) if mine.answers else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(server))
    box[0].gate.set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box[0]
    box[0].gate.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def store(home: Path) -> cs.Store:
    return cs.Store(home)


@pytest.fixture
def service(store: cs.Store) -> cs.Service:
    return cs.Service(store)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nobody listens on, kept bound (not listening) for the test: connecting is
    refused, and no other process (a suite run alongside) can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def hook(url: str, name: str = "main", **fields: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "secret": SECRET, "backoff_seconds": 0, **fields}


def finished_run(
    store: cs.Store,
    task_id: str,
    status: cs.RunStatus,
    minutes: int,
    *,
    result: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    start = T0 + timedelta(minutes=minutes)
    run = cs.Run(
        cs.new_id(),
        task_id,
        status=status,
        created_at=start,
        started_at=start,
        finished_at=start,
        result=result,
    )
    for name, value in fields.items():
        setattr(run, name, value)
    store.save_run(run)
    return run.to_dict()


def notify(notifier: cs.Notifier, event: dict[str, Any]) -> None:
    notifier.on_event(event)
    assert notifier.wait_idle(30), "the notifier did not finish"


def valid_signature(item: dict[str, Any]) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), item["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(item["headers"][cs.SIGNATURE_HEADER], expected)


# Which events a run means ---------------------------------------------------------------------


def test_each_event_kind_reaches_the_webhook_signed(
    store: cs.Store, service: cs.Service, receiver: Receiver
) -> None:
    service.update_notify_settings({"events": {"changed": True, "limit_hold_ended": True}})
    service.update_notify_settings({"webhooks": [hook(receiver.url)]})
    task = service.create_task({"name": "Nightly", "prompt": "p"})
    notifier = cs.Notifier(store)
    notifier.start()
    runs = [
        (cs.RunStatus.FAILED, None, {"error": "exit code 1"}),
        (cs.RunStatus.TIMEOUT, None, {}),
        (cs.RunStatus.SUCCESS, "first", {}),  # after a failure: recovered
        (cs.RunStatus.SUCCESS, "second", {}),  # differs from the last success: changed
    ]
    for minutes, (status, result, fields) in enumerate(runs):
        notify(
            notifier,
            {
                "event": "run",
                "run": finished_run(store, task["id"], status, minutes, result=result, **fields),
            },
        )
    notify(notifier, {"event": "limit_hold", "began": True, "resets_at": "2030-01-07T14:00:00+00:00"})
    notify(notifier, {"event": "limit_hold", "began": False})
    notifier.stop()

    assert receiver.events() == [
        "failed",
        "timed_out",
        "recovered",
        "changed",
        "limit_hold_began",
        "limit_hold_ended",
    ]
    assert all(valid_signature(item) for item in receiver.received)
    first = json.loads(receiver.received[0]["body"])
    assert first["event"] == "failed" and first["title"] == "Nightly failed"
    assert first["task"] == {"id": task["id"], "name": "Nightly", "job_id": None}
    assert first["message"].startswith("exit code 1 (run ")
    assert json.loads(receiver.received[4]["body"])["message"] == "Runs wait until 2030-01-07T14:00:00+00:00."
    history = service.notify_history()
    assert [item["event"] for item in history] == list(reversed(receiver.events()))
    assert {(item["channel"], item["status"], item["attempts"]) for item in history} == {
        ("webhook:main", "delivered", 1)
    }


def test_notify_on_change_fires_only_when_the_result_differs(
    store: cs.Store, service: cs.Service, receiver: Receiver
) -> None:
    service.update_notify_settings({"events": {"changed": True}, "webhooks": [hook(receiver.url)]})
    task = service.create_task({"name": "Report", "prompt": "p"})
    notifier = cs.Notifier(store)
    notifier.start()
    for minutes, result in enumerate(["same", "same", "new", "new"]):
        notify(
            notifier,
            {
                "event": "run",
                "run": finished_run(store, task["id"], cs.RunStatus.SUCCESS, minutes, result=result),
            },
        )
    notifier.stop()
    assert receiver.events() == ["changed"]
    assert json.loads(receiver.received[0]["body"])["run"]["result"] == "new"


def test_a_failure_that_will_be_retried_says_nothing_and_the_last_attempt_does(
    store: cs.Store, service: cs.Service, receiver: Receiver
) -> None:
    service.update_notify_settings({"webhooks": [hook(receiver.url)]})
    task = service.create_task({"name": "Flaky", "prompt": "p", "retry": {"max_attempts": 1}})
    notifier = cs.Notifier(store)
    notifier.start()
    notify(
        notifier, {"event": "run", "run": finished_run(store, task["id"], cs.RunStatus.FAILED, 0, attempt=1)}
    )
    assert receiver.events() == []
    notify(
        notifier, {"event": "run", "run": finished_run(store, task["id"], cs.RunStatus.FAILED, 1, attempt=2)}
    )
    notify(notifier, {"event": "run", "run": finished_run(store, task["id"], cs.RunStatus.RUNNING, 2)})
    notifier.stop()
    assert receiver.events() == ["failed"]


def test_per_task_overrides_and_per_hook_events(
    store: cs.Store, service: cs.Service, receiver: Receiver
) -> None:
    loud = service.create_task({"name": "Loud", "prompt": "p"})
    quiet = service.create_task({"name": "Quiet", "prompt": "p"})
    service.update_notify_settings(
        {
            "events": {"failed": False},
            "tasks": {loud["id"]: {"events": {"failed": True}}},
            "webhooks": [hook(receiver.url), hook(receiver.url, "timeouts-only", events=["timed_out"])],
        }
    )
    notifier = cs.Notifier(store)
    notifier.start()
    for minutes, task in enumerate((loud, quiet)):
        notify(
            notifier, {"event": "run", "run": finished_run(store, task["id"], cs.RunStatus.FAILED, minutes)}
        )
    notifier.stop()
    assert [json.loads(item["body"])["task"]["name"] for item in receiver.received] == ["Loud"]


# Delivery -------------------------------------------------------------------------------------


def test_retries_back_off_and_a_refusal_is_not_retried(
    store: cs.Store, service: cs.Service, receiver: Receiver
) -> None:
    service.update_notify_settings({"webhooks": [hook(receiver.url, retries=3, backoff_seconds=1.5)]})
    slept: list[float] = []
    notifier = cs.Notifier(store, sleep=slept.append)
    receiver.answers[:] = [500, 503, 200]
    (record,) = notifier.send(cs.Notice("test", "T", "B"), wait=True)
    assert (record["status"], record["attempts"], record["http_status"], record["error"]) == (
        "delivered",
        3,
        200,
        None,
    )
    assert slept == [1.5, 3.0]
    receiver.answers[:] = [404]
    (refused,) = notifier.send(cs.Notice("test", "T", "B"), wait=True)
    assert (refused["status"], refused["attempts"], refused["error"]) == ("failed", 1, "HTTP 404")


def test_an_unreachable_hook_is_recorded_failed_after_its_retries(
    cli: Cli, cli_json: CliJson, service: cs.Service, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}/nobody"
    service.update_notify_settings({"webhooks": [hook(url, retries=2, backoff_seconds=0)]})
    result = cli("notify", "test", "--json")
    assert result.code == 1  # a channel that did not deliver
    (record,) = result.json()["deliveries"]
    assert record["status"] == "failed" and record["attempts"] == 3
    assert record["error"].startswith("ConnectionRefusedError")
    history = cli_json("notify", "history")["deliveries"]
    assert [(item["channel"], item["status"]) for item in history] == [("webhook:main", "failed")]


def test_a_slow_hook_holds_up_neither_the_engine_callback_nor_other_hooks(
    store: cs.Store, service: cs.Service, receiver: Receiver, tmp_path: Path
) -> None:
    other = tmp_path / "other.txt"
    fake = tmp_path / "notifier.py"
    fake.write_text(f"import sys\nopen({str(other)!r}, 'a').write(sys.argv[1] + '\\n')\n")
    service.update_notify_settings(
        {
            "webhooks": [hook(receiver.url, timeout_seconds=30)],
            "desktop": {"enabled": True, "command": [sys.executable, str(fake), "{title}"]},
        }
    )
    task = service.create_task({"name": "Slow", "prompt": "p"})
    receiver.gate.clear()  # the hook takes requests but does not answer
    notifier = cs.Notifier(store)
    notifier.start()
    notifier.on_event({"event": "run", "run": finished_run(store, task["id"], cs.RunStatus.FAILED, 0)})
    notifier.on_event({"event": "run", "run": finished_run(store, task["id"], cs.RunStatus.TIMEOUT, 1)})
    # Both events go through the desktop channel while the hook still holds the first request.
    wait_for(lambda: other.exists() and other.read_text().count("\n") == 2, "the desktop notices")
    assert sorted(other.read_text().splitlines()) == [
        "Slow failed",
        "Slow timed out",
    ]  # each on its own thread
    assert receiver.received == []
    receiver.gate.set()
    assert notifier.wait_idle(30)
    notifier.stop()
    assert sorted(receiver.events()) == ["failed", "timed_out"]


def test_a_delivery_records_its_history_without_the_store_lock(
    store: cs.Store, service: cs.Service, receiver: Receiver, home: Path
) -> None:
    # The engine takes the store's lock many times a pass: a burst of deliveries ending
    # must not queue behind it (nor it behind them), so the history has a lock of its own.
    service.update_notify_settings({"webhooks": [hook(receiver.url)]})
    task = service.create_task({"name": "Locked out", "prompt": "p"})
    notifier = cs.Notifier(store)
    notifier.start()
    other = cs.Store(home)  # another holder of the store's lock, as the engine would be
    with other.locked():
        notifier.send(cs.Notice("failed", "Locked out failed", "body", {"id": task["id"]}))
        assert notifier.wait_idle(30), "the delivery waited for the store's lock"
        (record,) = cs.notify_history(home)
    notifier.stop()
    assert (record["status"], record["event"]) == ("delivered", "failed")


def test_a_timeout_is_a_failed_attempt(store: cs.Store, service: cs.Service, receiver: Receiver) -> None:
    service.update_notify_settings({"webhooks": [hook(receiver.url, timeout_seconds=0.2, retries=0)]})
    receiver.gate.clear()
    (record,) = cs.Notifier(store).send(cs.Notice("test", "T", "B"), wait=True)
    receiver.gate.set()
    assert record["status"] == "failed" and record["error"].startswith(("TimeoutError", "timeout"))


@pytest.mark.parametrize(
    ("preset", "content_type", "check"),
    [
        ("json", "application/json", lambda body: json.loads(body)["title"] == "Nightly failed"),
        (
            "slack",
            "application/json",
            lambda body: json.loads(body) == {"text": "*Nightly failed*\nboom (run x)"},
        ),
        (
            "discord",
            "application/json",
            lambda body: json.loads(body) == {"content": "**Nightly failed**\nboom (run x)"},
        ),
        ("ntfy", "text/plain; charset=utf-8", lambda body: body == b"boom (run x)"),
    ],
)
def test_presets_shape_the_body(
    store: cs.Store, service: cs.Service, receiver: Receiver, preset: str, content_type: str, check: Any
) -> None:
    service.update_notify_settings({"webhooks": [hook(receiver.url, preset=preset)]})
    (record,) = cs.Notifier(store).send(cs.Notice("failed", "Nightly failed", "boom (run x)"), wait=True)
    assert record["status"] == "delivered"
    (item,) = receiver.received
    assert item["headers"]["Content-Type"] == content_type and check(item["body"]) and valid_signature(item)
    if preset == "ntfy":
        assert (item["headers"]["Title"], item["headers"]["Priority"]) == ("Nightly failed", "high")


def test_a_missing_desktop_notifier_is_reported_not_fatal(
    store: cs.Store, service: cs.Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")
    service.update_notify_settings({"desktop": {"enabled": True}})
    (record,) = cs.Notifier(store, platform="linux").send(cs.Notice("test", "T", "B"), wait=True)
    assert record["status"] == "failed"
    assert record["error"] == "no desktop notifier here (notify-send, gdbus not found)"


# The doors: CLI, API ------------------------------------------------------------------------------


def test_cli_sets_up_channels_and_tests_them(
    cli: Cli, cli_json: CliJson, receiver: Receiver, tmp_path: Path
) -> None:
    said = tmp_path / "said.txt"
    fake = tmp_path / "notify.py"
    fake.write_text(f"import sys\nopen({str(said)!r}, 'w').write(' | '.join(sys.argv[1:]))\n")
    assert (
        cli("notify", "desktop", "on", "--command", f"{sys.executable} {fake} {{title}} {{body}}").code == 0
    )
    added = cli(
        "notify", "hook-add", "team", receiver.url, "--preset", "slack", "--secret", SECRET, "--retries", "1"
    )
    assert added.code == 0, added.err
    assert (
        f"webhook    team: slack to {receiver.url} (all events on, signed, timeout 10s, 1 retries)"
        in added.out
    )
    shown = cli_json("notify", "show")
    assert shown["webhooks"][0]["has_secret"] is True and "secret" not in shown["webhooks"][0]
    # Replacing the hook without --secret keeps its secret.
    assert cli("notify", "hook-add", "team", receiver.url, "--preset", "json").code == 0
    result = cli("notify", "test")
    assert result.code == 0, result.err
    assert said.read_text() == f"Test notification | {cs.NOTIFY_TEST_BODY}"
    (item,) = receiver.received
    assert valid_signature(item) and json.loads(item["body"])["event"] == "test"
    history = cli("notify", "history")
    assert history.out.splitlines()[0].split() == ["WHEN", "EVENT", "CHANNEL", "STATUS", "TRIES", "ERROR"]
    assert sorted(line.split()[3] for line in history.out.splitlines()[1:]) == ["desktop", "webhook:team"]
    assert cli("notify", "hook-remove", "team").code == 0
    assert cli_json("notify", "show")["webhooks"] == []
    assert cli("notify", "hook-remove", "team").err.strip() == "error: no webhook named 'team'"


def test_cli_event_switches_for_all_and_for_one_task(cli: Cli, cli_json: CliJson) -> None:
    task = cli_json("tasks", "create", "--name", "T", "--prompt", "p", "--manual")
    events = cli_json("notify", "events", "changed=on", "failed=off")["events"]
    assert events["changed"] is True and events["failed"] is False
    own = cli_json("notify", "events", "failed=on", "--task", task["id"][:8])
    assert own["tasks"] == {task["id"]: {"events": {"failed": True}}}
    back = cli_json("notify", "events", "failed=default", "--task", task["id"][:8])
    assert back["tasks"] == {}
    bad = cli("notify", "events", "exploded=on")
    assert bad.code == 2 and "unknown event 'exploded'" in bad.err
    nothing = cli("notify", "test")
    assert nothing.code == 1 and "no channel is on" in nothing.err


def test_the_api_has_the_same_operations(cli_json: CliJson, store: cs.Store, receiver: Receiver) -> None:
    server = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    server.start()
    try:
        url = server.address
        cli_json("--api", url, "notify", "hook-add", "api", receiver.url, "--secret", SECRET)
        (record,) = cli_json("--api", url, "notify", "test")["deliveries"]
        assert record["status"] == "delivered" and record["channel"] == "webhook:api"
        assert cli_json("--api", url, "notify", "history")["deliveries"] == [record]
        bad = cs.ApiClient.for_home(url, store.home)
        with pytest.raises(cs.Invalid) as caught:
            bad.update_notify_settings({"webhooks": [{"name": "x", "url": "ftp://nope"}]})
        assert str(caught.value) == "webhooks[0].url: must be an http:// or https:// address"
    finally:
        server.stop()
    assert valid_signature(receiver.received[0])
    paths = cs.openapi_document()["paths"]
    assert {"/api/notifications", "/api/notifications/history", "/api/notifications/test"} <= set(paths)


def test_serve_tells_a_failed_run_to_the_webhook(
    cli_json: CliJson, home: Path, service: cs.Service, receiver: Receiver, record: Any
) -> None:
    import subprocess

    from conftest import ROOT, child_env

    service.update_notify_settings({"webhooks": [hook(receiver.url)]})
    task = cli_json("tasks", "create", "--name", "Broken", "--prompt", "[exit=2]", "--manual")
    serve = subprocess.Popen(
        [sys.executable, str(ROOT / "claude_scheduler.py"), "serve", "--port", "0"],
        env=child_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: service.engine_status()["running"], "serve to start the engine")
        cli_json("tasks", "run", task["id"], "--detach")
        wait_for(lambda: receiver.received, "the notice")
    finally:
        serve.kill()
        serve.wait(30)
    (item,) = receiver.received
    payload = json.loads(item["body"])
    assert (payload["event"], payload["task"]["id"], payload["run"]["status"]) == (
        "failed",
        task["id"],
        "failed",
    )
    assert valid_signature(item)


def test_foreground_runs_are_told_as_the_engines_are(
    cli: Cli, cli_json: CliJson, service: cs.Service, receiver: Receiver, record: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(cs, "FOREGROUND_NOTIFY_WAIT_SECONDS", WAIT_SECONDS)  # a loaded machine delivers late
    service.update_notify_settings({"webhooks": [hook(receiver.url)]})
    # Retries are the engine's: a failure in the foreground is the last attempt, told at once.
    task = cli_json(
        "tasks", "create", "--name", "Nightly", "--prompt", "[exit=2]", "--manual", "--retries", "2"
    )
    assert cli("tasks", "run", task["id"]).code == 1
    assert receiver.events() == ["failed"]  # delivered before the command returned
    cli_json("tasks", "update", task["id"], "--prompt", "Say done.")
    assert cli("tasks", "run", task["id"]).code == 0
    assert receiver.events() == ["failed", "recovered"]
    payload = json.loads(receiver.received[1]["body"])
    assert (payload["task"]["id"], payload["run"]["trigger"]) == (task["id"], "cli")
    assert all(valid_signature(item) for item in receiver.received)
    assert [item["status"] for item in cli_json("notify", "history")["deliveries"]] == ["delivered"] * 2


def test_a_foreground_run_waits_a_bounded_time_for_a_slow_hook(
    cli: Cli, cli_json: CliJson, service: cs.Service, receiver: Receiver, record: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(cs, "FOREGROUND_NOTIFY_WAIT_SECONDS", 0.2)
    service.update_notify_settings({"webhooks": [hook(receiver.url, timeout_seconds=30)]})
    task = cli_json("tasks", "create", "--name", "Nightly", "--prompt", "[exit=2]", "--manual")
    receiver.gate.clear()  # the hook takes the request and does not answer
    result = cli("tasks", "run", task["id"])
    assert result.code == 1
    assert "Notifications not delivered within 0.2 s were given up" in result.err
    receiver.gate.set()


def test_without_notify_send_gdbus_is_called_with_quoted_texts(
    store: cs.Store, service: cs.Service, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    said = tmp_path / "gdbus.json"
    fake = bin_dir / "gdbus"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\nopen({str(said)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    service.update_notify_settings({"desktop": {"enabled": True}})
    (record,) = cs.Notifier(store, platform="linux").send(cs.Notice("test", "Title", "-Body"), wait=True)
    assert record["status"] == "delivered", record
    argv = json.loads(said.read_text())
    assert argv[:2] == ["call", "--session"]
    arguments = argv[argv.index("--method") + 2 :]
    assert arguments == [f'"{cs.APP_NAME}"', "0", '""', '"Title"', '"-Body"', "[]", "{}", "10000"]
