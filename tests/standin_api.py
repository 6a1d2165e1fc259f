"""A stand-in for the Anthropic Messages API, for running the REAL Claude Code CLI offline.

It listens on a Unix socket (the sandbox wrapper `real_claude.py` relays the CLI's
loopback TCP connections to it from inside a network namespace), answers `HEAD /` and
`POST /v1/messages` with what the test's `Script` says, streamed as server-sent events
like the real API, and records every request so a test can assert the prompt, a
tool_result follow-up or the history a `--resume` sent.

A `Script` is a list of `Reply` values, one per `POST /v1/messages`, in order; once
used up, its `then` reply answers every further request. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

ANSWER = "Hello from the stand-in API. The answer is 42."
MARKER_COMMAND = "echo tool-ran-ok && pwd"
# Usage as the recordings' stand-in sent it: most of the input is cached, as in real sessions.
USAGE = {"input_tokens": 1234, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 50}
OUTPUT_TOKENS = 56
HANG_LIMIT_SECONDS = 3600.0  # a "no answer" reply is held at most this long (or until close)


@dataclass(frozen=True)
class Reply:
    """One answer to a `POST /v1/messages`.

    kind: "text" (an end_turn answer), "tool" (a tool_use of `tool` with `tool_input`),
    "error" (`status` with an error body and `headers`), "hang" (never answers).
    """

    kind: str = "text"
    text: str = ANSWER
    tool: str = "Bash"
    tool_input: dict[str, Any] = field(
        default_factory=lambda: {"command": MARKER_COMMAND, "description": "Print a marker"}
    )
    usage: dict[str, int] = field(default_factory=lambda: dict(USAGE))
    output_tokens: int = OUTPUT_TOKENS
    status: int = 200
    error_type: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def text(answer: str = ANSWER, **usage: int) -> Reply:
    return Reply("text", text=answer, usage={**USAGE, **usage})


def tool_use(command: str = MARKER_COMMAND, tool: str = "Bash") -> Reply:
    return Reply("tool", tool=tool, tool_input={"command": command, "description": "Run a marker command"})


def error(status: int, error_type: str, message: str, **headers: str) -> Reply:
    return Reply("error", status=status, error_type=error_type, message=message, headers=headers)


def hang() -> Reply:
    return Reply("hang")


# The failures the CLI meets, as the API sends them.
# With `x-should-retry: false` the CLI gives up at once instead of retrying for ~3 minutes.
NO_RETRY = {"x-should-retry": "false"}


def unauthorized() -> Reply:
    return error(401, "authentication_error", "invalid x-api-key", **NO_RETRY)


def overloaded(retry: bool = True) -> Reply:
    return error(529, "overloaded_error", "Overloaded", **({} if retry else NO_RETRY))


def server_error(retry: bool = True) -> Reply:
    return error(500, "api_error", "Internal server error", **({} if retry else NO_RETRY))


def rate_limited(retry: bool = False) -> Reply:
    return error(429, "rate_limit_error", "Rate limited", **({} if retry else NO_RETRY))


def usage_limit(resets_at: int, claim: str = "five_hour") -> Reply:
    """A claude.ai subscription's usage limit (the CLI must run with an OAuth token)."""
    return error(
        429,
        "rate_limit_error",
        "Rate limited",
        **{
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": str(resets_at),
            "anthropic-ratelimit-unified-representative-claim": claim,
            "x-should-retry": "false",
        },
    )


@dataclass
class Script:
    replies: list[Reply] = field(default_factory=list)
    then: Reply = field(default_factory=text)

    def next(self) -> Reply:
        return self.replies.pop(0) if self.replies else self.then


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    def texts(self) -> list[str]:
        """Every text the conversation so far holds (prompts, answers, tool results)."""
        found: list[str] = []
        for message in self.messages():
            found += _texts(message.get("content"))
        return found

    def tool_results(self) -> list[dict[str, Any]]:
        return [
            block
            for message in self.messages()
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    found: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            found.append(block["text"])
        found += _texts(block.get("content")) if block.get("type") == "tool_result" else []
    return found


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def stream_events(reply: Reply, model: str) -> Iterator[bytes]:
    """The server-sent events of a streamed answer."""
    message = {
        "id": f"msg_standin_{uuid.uuid4().hex[:16]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**reply.usage, "output_tokens": 1},
    }
    yield _sse("message_start", {"type": "message_start", "message": message})
    if reply.kind == "tool":
        block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": reply.tool, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(reply.tool_input)}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": reply.text}
        stop = "end_turn"
    yield _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
    yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    standin: StandIn


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the requests are recorded

    def address_string(self) -> str:
        return "standin"

    def do_HEAD(self) -> None:
        self._record(None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._record(None)
        self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self._record(body)
        if not self.path.startswith("/v1/messages") or self.path.startswith("/v1/messages/count_tokens"):
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}})
            return
        reply = self.server.standin.script.next()
        model = body.get("model", "claude-sonnet-5") if isinstance(body, dict) else "claude-sonnet-5"
        if reply.kind == "hang":
            self.server.standin.closing.wait(HANG_LIMIT_SECONDS)
            self.close_connection = True
        elif reply.kind == "error":
            payload = {"type": "error", "error": {"type": reply.error_type, "message": reply.message}}
            self._json(reply.status, payload, reply.headers)
        else:
            self._stream(reply, model)

    def _record(self, body: Any) -> None:
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.server.standin.record(Request(self.command, self.path, headers, body))

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in {"request-id": _request_id(), **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, reply: Reply, model: str) -> None:
        self.send_response(200)
        self.send_header("request-id", _request_id())
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for chunk in stream_events(reply, model):
            self.wfile.write(chunk)
            self.wfile.flush()


def _request_id() -> str:
    return f"req_standin_{uuid.uuid4().hex[:12]}"


class StandIn:
    """The stand-in API on a Unix socket at `socket_path`, serving from a thread."""

    def __init__(self, socket_path: Path, script: Script | None = None) -> None:
        self.socket_path = socket_path
        self.script = script or Script()
        self.requests: list[Request] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        self._server = _Server(str(socket_path), _Handler)
        self._server.standin = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def play(self, *replies: Reply, then: Reply | None = None) -> None:
        """Answer the next requests with `replies`, then every further one with `then`."""
        self.script = Script(list(replies), then or text())

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def messages_requests(self) -> list[Request]:
        """The `POST /v1/messages` requests of conversations (not the CLI's side calls)."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path.startswith("/v1/messages")]

    def wait_requests(self, count: int, timeout: float = 30.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while len(found := self.messages_requests()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the stand-in API saw {len(found)} requests, not {count}")
            time.sleep(0.02)
        return found

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
