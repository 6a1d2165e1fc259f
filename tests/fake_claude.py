#!/usr/bin/env python3
"""A fake `claude` for offline tests: behaves like `claude -p` without a network.

It parses the options the scheduler uses (`--allowedTools`/`--disallowedTools` are
variadic: they take values up to the next option), reads the prompt from stdin when no
positional prompt is given, and fails like the real CLI when there is none. Each call
appends one JSON object (argv, cwd, stdin, pid, env) as a line to `$FAKE_CLAUDE_RECORD`;
`env` holds the variables whose names start with `FAKE_` plus those named in
`$FAKE_CLAUDE_RECORD_ENV` (comma-separated; null when unset). It then prints the
stream-json session of claude-cli.md, echoing session id, cwd, model and permission mode.

Knobs come from environment variables or from markers in the prompt; a marker wins.
A flag marker has no value (`[hang]`); a valued one reads `[exit=3]`. For the knobs
that are not numbers or text, `0`, `false`, `no`, `off` or empty switch them off.

    marker             environment                    effect
    [exit=N]           FAKE_CLAUDE_EXIT               exit code (default 0; 1 on any failure)
    [is_error=SUB]     FAKE_CLAUDE_IS_ERROR           result is_error, subtype SUB
                                                      (flag: error_during_execution)
    [delay=S]          FAKE_CLAUDE_DELAY              sleep S seconds after each stdout line
    [lines=N]          FAKE_CLAUDE_LINES              N extra assistant lines (large output)
    [stderr=BYTES]     FAKE_CLAUDE_STDERR             write BYTES of stderr before stdout
    [hang]             FAKE_CLAUDE_HANG               after the init line, sleep forever
    [gate=PATH]        FAKE_CLAUDE_GATE               before the result line, wait until PATH
                                                      exists (a test lets the session end)
    [ignore_term]      FAKE_CLAUDE_IGNORE_TERM        ignore SIGTERM (grandchild inherits it)
    [grandchild=PATH]  FAKE_CLAUDE_GRANDCHILD         start a grandchild that sleeps forever
                                                      holding stdout/stderr; its pid goes to PATH
    [daemon=PATH]      FAKE_CLAUDE_DAEMON             start a daemon in a session of its own (out
                                                      of claude's process group, no pipes held)
                                                      that sleeps forever; its pid goes to PATH
    [writer=PATH]      FAKE_CLAUDE_WRITER             start a process that leaves claude's group
                                                      and environment, holds stdout and writes a
                                                      1 KiB line to it forever, counting them in
                                                      PATH.count; its pid goes to PATH
    [long_line=BYTES]  FAKE_CLAUDE_LONG_LINE          an assistant text line of about BYTES bytes
    [malformed]        FAKE_CLAUDE_MALFORMED          add `not json`, `[1,2]`, `"str"`, a torn
                                                      object, a stream_event and an unknown type
    [legacy]           FAKE_CLAUDE_LEGACY             `cost_usd`, and string `message.content`
    [no_result]        FAKE_CLAUDE_NO_RESULT          no result line (a crash)
    [usage_limit=F]    FAKE_CLAUDE_USAGE_LIMIT        the subscription usage limit of 2.1.x: a
                                                      rate_limit_event (resetsAt: F if an epoch,
                                                      else USAGE_LIMIT_EPOCH; none for F `text`
                                                      or `none`), the synthetic message and a 429
                                                      result; `none`'s sentence names no reset
    [cost=USD]         FAKE_CLAUDE_COST               total cost (default 0.0123)
    [result=TEXT]      FAKE_CLAUDE_RESULT             final text (default `Done.`); given, it is
                                                      in the result line even on is_error
    [api_retry=N]      FAKE_CLAUDE_API_RETRY          N `system/api_retry` lines (529 overloaded,
                                                      a short pause each) before the answer
    [api_error=S]      FAKE_CLAUDE_API_ERROR          the API fails with status S (flag: 401):
                                                      the synthetic message and an is_error
                                                      `success` result with api_error_status S
                                                      (401 auth, 429, 500, 529; 0: no connection)
    [denied=TOOL]      FAKE_CLAUDE_DENIED             the tool call is refused by the permission
                                                      mode: an is_error tool_result and the call
                                                      in `permission_denials` (still a success)
    [max_budget]       FAKE_CLAUDE_MAX_BUDGET         `error_max_budget_usd` after the first turn,
                                                      with `errors`; also `--max-budget-usd`
    [cache=N]          FAKE_CLAUDE_CACHE              N cache-read input tokens in modelUsage
    [subagent]         FAKE_CLAUDE_SUBAGENT           a second model (haiku) in modelUsage
    [sessions]         FAKE_CLAUDE_SESSIONS           keep sessions under $HOME/.claude/projects
                                                      like the real CLI; `--resume` of one not
                                                      there fails `No conversation found ...`

`--max-turns N` below the session's 3 turns ends it with `error_max_turns`, exit 1.
The lines carry the keys of the real CLI 2.1.197's (see ../shared/real-claude; a test
compares them). The usage-limit texts of older versions (`...limit reached|<epoch>`)
are gone from 2.1.x, and from here.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CLI_VERSION = "2.1.197"
VERSION = f"{CLI_VERSION} (Claude Code)"
NO_INPUT = "Error: Input must be provided either through stdin or as a prompt argument when using --print"
STREAM_NEEDS_VERBOSE = "Error: When using --print, --output-format=stream-json requires --verbose"
PERMISSION_MODES = ("acceptEdits", "auto", "bypassPermissions", "default", "dontAsk", "plan")
OUTPUT_FORMATS = ("text", "json", "stream-json")
MODEL_IDS = {
    "sonnet": "claude-sonnet-4-5-20250929",
    "opus": "claude-opus-4-1-20250805",
    "haiku": "claude-haiku-4-5-20251001",
}
DEFAULT_MODEL = "sonnet"
TOOLS = (  # what 2.1.197's init line lists
    "Task",
    "Bash",
    "CronCreate",
    "CronDelete",
    "CronList",
    "Edit",
    "EnterWorktree",
    "ExitWorktree",
    "NotebookEdit",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "SendMessage",
    "Skill",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "WebFetch",
    "WebSearch",
    "Workflow",
    "Write",
)
SESSION_TURNS = 3
DEFAULT_COST = 0.0123
DEFAULT_RESULT = "Done."
USAGE_LIMIT_EPOCH = 1767225600
USAGE_LIMIT_TEXT = "You've hit your session limit · resets 12am (UTC)"
USAGE_LIMIT_NO_RESET = "You've hit your session limit"  # the `· resets` part may be missing
STDERR_LINE = "fake claude diagnostic output to fill the stderr pipe ................\n"
FLAG = "1"
FALSE_WORDS = ("", "0", "false", "no", "off")  # switch a knob off, e.g. FAKE_CLAUDE_HANG=0
VALUE_KNOBS = ("exit", "delay", "lines", "stderr", "cost", "result", "api_error", "cache")  # "0" is a value
SUBAGENT_MODEL = "claude-haiku-4-5-20251001"
GATE_POLL_SECONDS = 0.01  # how often a gated session looks for its gate
API_RETRY_PAUSE_SECONDS = 0.05  # the fake's pause per retry (the line says claude's own delay)
API_RETRY_MAX = 10
API_ERRORS = {  # status: the synthetic line's `error` and the sentence claude prints
    401: ("authentication_failed", "Invalid API key · Fix external API key"),
    429: ("rate_limit", "API Error: Request rejected (429) · Rate limited"),
    500: ("server_error", "API Error: 500 Internal server error"),
    529: (
        "server_error",
        "API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment.",
    ),
    0: ("unknown", "API Error: Unable to connect to API (ECONNREFUSED)"),
}
DEFAULT_API_ERROR = 401
MISSING_SESSION = "No conversation found with session ID: {}"
MAX_BUDGET_ERROR = "Reached maximum budget (${})"
DEFAULT_MAX_BUDGET = "0.001"
MAX_TURNS_ERROR = "Reached maximum number of turns ({})"
DENIED_TEXT = "{} was blocked by the permission mode of this session."

# Arity of each option: 0 = flag, 1 = one value, None = variadic (values up to the next option).
OPTIONS: dict[str, int | None] = {
    "-p": 0,
    "--print": 0,
    "--verbose": 0,
    "--fork-session": 0,
    "-v": 0,
    "--version": 0,
    "--output-format": 1,
    "--model": 1,
    "--permission-mode": 1,
    "--max-turns": 1,
    "--append-system-prompt": 1,
    "--system-prompt": 1,
    "--max-budget-usd": 1,
    "--fallback-model": 1,
    "--strict-mcp-config": 0,
    "--effort": 1,
    "-r": 1,
    "--resume": 1,
    "--session-id": 1,
    "--allowedTools": None,
    "--allowed-tools": None,
    "--disallowedTools": None,
    "--disallowed-tools": None,
    "--add-dir": None,
    "--mcp-config": None,
}
ALIASES = {
    "-p": "--print",
    "-v": "--version",
    "-r": "--resume",
    "--allowed-tools": "--allowedTools",
    "--disallowed-tools": "--disallowedTools",
}
KNOB_ENV = {
    "exit": "FAKE_CLAUDE_EXIT",
    "is_error": "FAKE_CLAUDE_IS_ERROR",
    "delay": "FAKE_CLAUDE_DELAY",
    "lines": "FAKE_CLAUDE_LINES",
    "stderr": "FAKE_CLAUDE_STDERR",
    "hang": "FAKE_CLAUDE_HANG",
    "gate": "FAKE_CLAUDE_GATE",
    "ignore_term": "FAKE_CLAUDE_IGNORE_TERM",
    "grandchild": "FAKE_CLAUDE_GRANDCHILD",
    "daemon": "FAKE_CLAUDE_DAEMON",
    "writer": "FAKE_CLAUDE_WRITER",
    "long_line": "FAKE_CLAUDE_LONG_LINE",
    "malformed": "FAKE_CLAUDE_MALFORMED",
    "legacy": "FAKE_CLAUDE_LEGACY",
    "no_result": "FAKE_CLAUDE_NO_RESULT",
    "usage_limit": "FAKE_CLAUDE_USAGE_LIMIT",
    "cost": "FAKE_CLAUDE_COST",
    "result": "FAKE_CLAUDE_RESULT",
    "api_retry": "FAKE_CLAUDE_API_RETRY",
    "api_error": "FAKE_CLAUDE_API_ERROR",
    "denied": "FAKE_CLAUDE_DENIED",
    "max_budget": "FAKE_CLAUDE_MAX_BUDGET",
    "cache": "FAKE_CLAUDE_CACHE",
    "subagent": "FAKE_CLAUDE_SUBAGENT",
    "sessions": "FAKE_CLAUDE_SESSIONS",
}
MARKER = re.compile(r"\[([a-z_]+)(?:=([^\]\n]*))?\]")
MALFORMED_LINES = (
    "not json",
    "[1,2]",
    '"str"',
    '{"type": "assistant", "message": ',
    '{"type":"stream_event","event":{"type":"content_block_delta","delta":{"text":"Lo"}}}',
    '{"type":"mystery","subtype":"new_kind","data":[1,2,3]}',
)
GRANDCHILD_CODE = "import time\nwhile True:\n    time.sleep(3600)\n"
WRITER_CODE = (
    "import os, sys, time  # time.sleep(3600): a fake claude's process\n"
    "count = 0\n"
    "while True:\n"
    "    sys.stdout.write('x' * 1023 + '\\n'); sys.stdout.flush(); count += 1\n"
    "    with open(sys.argv[1] + '.tmp', 'w') as f: f.write(str(count))\n"
    "    os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "    time.sleep(0.001)\n"
)


class UsageError(Exception):
    """A command line the real CLI would refuse; the message is what it prints."""


@dataclass
class Args:
    """The parsed command line."""

    options: dict[str, list[str]] = field(default_factory=dict)
    positionals: list[str] = field(default_factory=list)

    def value(self, name: str) -> str | None:
        values = self.options.get(name)
        return values[-1] if values else None

    def has(self, name: str) -> bool:
        return name in self.options


def parse_args(argv: list[str]) -> Args:
    """Parse like commander.js does for these options; raises UsageError."""
    args = Args()
    index = 0
    while index < len(argv):
        token = argv[index]
        index += 1
        if token == "--":
            args.positionals.extend(argv[index:])
            break
        if not token.startswith("-") or token == "-":
            args.positionals.append(token)
            continue
        index = _take_option(args, argv, index, token)
    return args


def _take_option(args: Args, argv: list[str], index: int, token: str) -> int:
    name, has_inline, inline = token.partition("=")
    if name not in OPTIONS:
        raise UsageError(f"error: unknown option '{name}'")
    arity = OPTIONS[name]
    values = args.options.setdefault(ALIASES.get(name, name), [])
    if has_inline:
        values.append(inline)
    elif arity == 1:
        if index >= len(argv):
            raise UsageError(f"error: option '{name}' argument missing")
        values.append(argv[index])
        index += 1
    elif arity is None:
        while index < len(argv) and not argv[index].startswith("-"):
            values.append(argv[index])
            index += 1
    return index


def check_args(args: Args) -> None:
    """Refuse the combinations the real CLI refuses; raises UsageError."""
    mode = args.value("--permission-mode")
    if mode is not None and mode not in PERMISSION_MODES:
        allowed = ", ".join(PERMISSION_MODES)
        raise UsageError(
            f"error: option '--permission-mode <mode>' argument '{mode}' is invalid. "
            f"Allowed choices are {allowed}."
        )
    output = args.value("--output-format") or "text"
    if output not in OUTPUT_FORMATS:
        raise UsageError(f"error: option '--output-format <format>' argument '{output}' is invalid.")
    if output == "stream-json" and not args.has("--verbose"):
        raise UsageError(STREAM_NEEDS_VERBOSE)
    if args.has("--session-id") and args.has("--resume") and not args.has("--fork-session"):
        raise UsageError(
            "Error: --session-id can only be used with --continue or --resume "
            "if --fork-session is also specified."
        )


def read_prompt(args: Args) -> tuple[str, str | None]:
    """The prompt and what stdin held (None when the prompt came from argv)."""
    if args.positionals:
        return " ".join(args.positionals), None
    data = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    return data, data


def record(args: list[str], stdin: str | None) -> None:
    path = os.environ.get("FAKE_CLAUDE_RECORD")
    if not path:
        return
    extra = [name for name in os.environ.get("FAKE_CLAUDE_RECORD_ENV", "").split(",") if name]
    env: dict[str, str | None] = {k: v for k, v in os.environ.items() if k.startswith("FAKE_")}
    env.update({name: os.environ.get(name) for name in extra})
    entry = {"argv": args, "cwd": os.getcwd(), "stdin": stdin, "pid": os.getpid(), "env": env}
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(entry, ensure_ascii=False) + "\n")


def read_knobs(prompt: str) -> dict[str, str]:
    """Knob values: environment first, prompt markers override."""
    knobs = {name: os.environ[var] for name, var in KNOB_ENV.items() if var in os.environ}
    for match in MARKER.finditer(prompt):
        if match.group(1) in KNOB_ENV:
            knobs[match.group(1)] = FLAG if match.group(2) is None else match.group(2)
    return {
        name: value
        for name, value in knobs.items()
        if name in VALUE_KNOBS or value.lower() not in FALSE_WORDS
    }


@dataclass
class Session:
    """One fake session: the facts echoed in its lines and the knobs that shape it."""

    session_id: str
    model: str
    permission_mode: str
    max_turns: int | None
    knobs: dict[str, str]
    resumed: str | None = None
    max_budget: str | None = None

    @property
    def delay(self) -> float:
        return float(self.knobs.get("delay", "0"))

    @property
    def api_error(self) -> int | None:
        value = self.knobs.get("api_error")
        if value is None:
            return None
        return DEFAULT_API_ERROR if value == FLAG else int(value)

    def emit_raw(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        if self.delay:
            time.sleep(self.delay)

    def emit(self, obj: dict[str, object]) -> None:
        self.emit_raw(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    def tagged(self, obj: dict[str, object]) -> dict[str, object]:
        """A line with the session id and the uuid every real line carries."""
        return {**obj, "session_id": self.session_id, "uuid": str(uuid.uuid4())}

    def content(self, blocks: list[dict[str, object]]) -> object:
        texts = [block["text"] for block in blocks if block.get("type") == "text"]
        if "legacy" in self.knobs and len(texts) == len(blocks):
            return "".join(str(text) for text in texts)
        return blocks

    def assistant(self, message_id: str, blocks: list[dict[str, object]]) -> None:
        message = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content(blocks),
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 12,
                "output_tokens": 5,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
            "context_management": None,
        }
        line = {"type": "assistant", "message": message, "parent_tool_use_id": None}
        self.emit({**self.tagged(line), "request_id": request_id()})

    def synthetic(self, text: str, error: str) -> None:
        """The assistant line claude makes up for an API error (401.jsonl)."""
        message = {
            "id": str(uuid.uuid4()),
            "container": None,
            "model": "<synthetic>",
            "role": "assistant",
            "stop_details": None,
            "stop_reason": "stop_sequence",
            "stop_sequence": "",
            "type": "message",
            "usage": {
                **zero_usage(),
                "service_tier": None,
                "inference_geo": None,
                "iterations": None,
                "speed": None,
            },
            "content": [{"type": "text", "text": text}],
            "context_management": None,
        }
        line = {"type": "assistant", "message": message, "parent_tool_use_id": None}
        self.emit({**self.tagged(line), "error": error, "request_id": request_id()})

    def user(self, tool_result: dict[str, object], tool_use_result: object) -> None:
        message = {"role": "user", "content": [tool_result]}
        line = self.tagged({"type": "user", "message": message, "parent_tool_use_id": None})
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        self.emit({**line, "timestamp": stamp, "tool_use_result": tool_use_result})


def request_id() -> str:
    return f"req_fake_{uuid.uuid4().hex[:12]}"


def zero_usage() -> dict[str, object]:
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "inference_geo": "",
        "iterations": [],
        "speed": "standard",
    }


def session_for(args: Args, knobs: dict[str, str]) -> Session:
    resume = args.value("--resume")
    if args.value("--session-id"):
        session_id = str(args.value("--session-id"))
    elif resume and not args.has("--fork-session"):
        session_id = resume
    else:
        session_id = str(uuid.uuid4())
    model = args.value("--model") or DEFAULT_MODEL
    turns = args.value("--max-turns")
    budget = args.value("--max-budget-usd") or (DEFAULT_MAX_BUDGET if "max_budget" in knobs else None)
    return Session(
        session_id=session_id,
        model=MODEL_IDS.get(model, model),
        permission_mode=args.value("--permission-mode") or "default",
        max_turns=int(turns) if turns else None,
        knobs=knobs,
        resumed=resume,
        max_budget=budget,
    )


def sessions_folder() -> str:
    """Where the real CLI keeps a working folder's sessions: under HOME, per folder."""
    slug = re.sub(r"[^A-Za-z0-9]", "-", os.getcwd())
    return os.path.join(os.path.expanduser("~"), ".claude", "projects", slug)


def session_missing(session: Session) -> bool:
    if "sessions" not in session.knobs or session.resumed is None:
        return False
    return not os.path.exists(os.path.join(sessions_folder(), f"{session.resumed}.jsonl"))


def keep_session(session: Session) -> None:
    if "sessions" in session.knobs:
        folder = sessions_folder()
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{session.session_id}.jsonl"), "w", encoding="utf-8") as file:
            file.write("{}\n")


def write_pid(path: str, pid: int) -> None:
    """Whole or absent: a test waiting for the file reads a complete pid."""
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        file.write(str(pid))
    os.replace(path + ".tmp", path)


def start_side_effects(session: Session) -> None:
    """SIGTERM handling, the grandchild and the stderr flood: all before any stdout."""
    knobs = session.knobs
    if "ignore_term" in knobs:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "grandchild" in knobs:
        child = subprocess.Popen([sys.executable, "-c", GRANDCHILD_CODE], stdin=subprocess.DEVNULL)
        write_pid(knobs["grandchild"], child.pid)
    if "daemon" in knobs:
        daemon = subprocess.Popen(
            [sys.executable, "-c", GRANDCHILD_CODE],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        write_pid(knobs["daemon"], daemon.pid)
    if "writer" in knobs:
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER_CODE, knobs["writer"] + ".count"],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={"PATH": os.environ.get("PATH", "")},
        )
        write_pid(knobs["writer"], writer.pid)
    flood = int(knobs.get("stderr", "0"))
    if flood:
        sys.stderr.write(STDERR_LINE * (flood // len(STDERR_LINE) + 1))
        sys.stderr.flush()


def emit_init(session: Session, args: Args) -> None:
    disallowed = set(args.options.get("--disallowedTools", []))
    line = {
        "type": "system",
        "subtype": "init",
        "cwd": os.getcwd(),
        "session_id": session.session_id,
        "tools": [tool for tool in TOOLS if tool not in disallowed],
        "mcp_servers": [],
        "model": session.model,
        "permissionMode": session.permission_mode,
        "slash_commands": ["compact", "context", "init", "review"],
        "apiKeySource": "ANTHROPIC_API_KEY",
        "claude_code_version": CLI_VERSION,
        "output_style": "default",
        "agents": ["general-purpose", "Explore", "Plan"],
        "skills": [],
        "plugins": [],
        "analytics_disabled": True,
        "product_feedback_disabled": True,
        "uuid": str(uuid.uuid4()),
        "memory_paths": {"auto": os.path.join(sessions_folder(), "memory")},
        "fast_mode_state": "off",
    }
    session.emit(line)


def emit_api_retries(session: Session) -> None:
    """claude's own retries of a failing API call, one line each (529.jsonl)."""
    status = session.api_error if session.api_error is not None else 529
    error = "overloaded" if status == 529 else API_ERRORS.get(status, API_ERRORS[0])[0]
    for attempt in range(1, int(session.knobs.get("api_retry", "0")) + 1):
        line = {
            "type": "system",
            "subtype": "api_retry",
            "attempt": attempt,
            "max_retries": API_RETRY_MAX,
            "retry_delay_ms": 500.0 * 2 ** (attempt - 1),
            "error_status": status or None,
            "error": error,
        }
        session.emit(session.tagged(line))
        time.sleep(API_RETRY_PAUSE_SECONDS)


def tool_call(tool_id: str, name: str, tool_input: dict[str, object]) -> dict[str, object]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def denied_input(tool: str) -> dict[str, object]:
    if tool == "Bash":
        return {"command": "touch made-by-claude.txt && echo touched", "description": "Run a marker command"}
    return {"file_path": "made-by-claude.txt", "content": "made by claude"}


def emit_denied(session: Session) -> None:
    """A call the permission mode refuses: an error tool_result, the session goes on."""
    tool = session.knobs["denied"]
    session.assistant("msg_denied", [tool_call("toolu_denied", tool, denied_input(tool))])
    text = DENIED_TEXT.format(tool)
    result = {"type": "tool_result", "content": text, "is_error": True, "tool_use_id": "toolu_denied"}
    session.user(result, f"Error: {text}")


def emit_work(session: Session) -> None:
    """The assistant and user lines between init and result."""
    session.assistant("msg_1", [{"type": "text", "text": "Looking at the repo."}])
    for line in MALFORMED_LINES if "malformed" in session.knobs else ():
        session.emit_raw(line)
    session.assistant("msg_2", [tool_call("toolu_1", "Bash", {"command": "ls"})])
    tool_result = {
        "tool_use_id": "toolu_1",
        "type": "tool_result",
        "content": "README.md\nsrc",
        "is_error": False,
    }
    output = {"stdout": "README.md\nsrc", "stderr": "", "interrupted": False, "isImage": False}
    session.user(tool_result, {**output, "noOutputExpected": False})
    if session.max_turns is not None and session.max_turns < SESSION_TURNS:
        return  # the tool ran; claude may not ask the model again (tool-maxturns1.jsonl)
    if "denied" in session.knobs:
        emit_denied(session)
    if "long_line" in session.knobs:
        emit_long_line(session, int(session.knobs["long_line"]))
    for number in range(int(session.knobs.get("lines", "0"))):
        text = f"Progress line {number}: " + "x" * 80
        session.assistant(f"msg_extra_{number}", [{"type": "text", "text": text}])
    session.assistant("msg_3", [{"type": "text", "text": final_text(session)}])


def emit_long_line(session: Session, size: int) -> None:
    """One assistant text line of `size` bytes or so, written in pieces: this process
    never holds it whole."""
    head = '{"type":"assistant","message":{"id":"msg_long","type":"message","role":"assistant",'
    head += '"content":[{"type":"text","text":"'
    sys.stdout.write(head)
    piece = "y" * (1 << 16)
    for _ in range(size // len(piece)):
        sys.stdout.write(piece)
    sys.stdout.write('"}]},"session_id":"' + session.session_id + '"}\n')
    sys.stdout.flush()


def emit_usage_limit(session: Session) -> None:
    """What 2.1.x prints when the subscription's limit is hit (oauth-usage-limit.jsonl)."""
    value = session.knobs["usage_limit"]
    if value not in ("text", "none"):
        resets_at = int(value) if value.isdigit() and len(value) >= 9 else USAGE_LIMIT_EPOCH
        info = {
            "status": "rejected",
            "resetsAt": resets_at,
            "rateLimitType": "five_hour",
            "isUsingOverage": False,
        }
        session.emit(session.tagged({"type": "rate_limit_event", "rate_limit_info": info}))
    session.synthetic(usage_limit_text(session), "rate_limit")


def usage_limit_text(session: Session) -> str:
    return USAGE_LIMIT_NO_RESET if session.knobs["usage_limit"] == "none" else USAGE_LIMIT_TEXT


def emit_api_error(session: Session) -> None:
    error, text = API_ERRORS.get(session.api_error or 0, API_ERRORS[0])
    session.synthetic(text, error)


def emit_budget_turn(session: Session) -> None:
    session.assistant("msg_1", [tool_call("toolu_1", "Bash", {"command": "ls", "description": "List"})])


def final_text(session: Session) -> str:
    if "usage_limit" in session.knobs:
        return usage_limit_text(session)
    if session.api_error is not None:
        return API_ERRORS.get(session.api_error, API_ERRORS[0])[1]
    return session.knobs.get("result", DEFAULT_RESULT)


def model_usage(session: Session, cost: float) -> dict[str, object]:
    """Tokens and cost per model, as the result's `modelUsage` gives them."""
    entry = {
        "inputTokens": 62,
        "outputTokens": 17,
        "cacheReadInputTokens": int(session.knobs.get("cache", "0")),
        "cacheCreationInputTokens": 0,
        "webSearchRequests": 0,
        "costUSD": cost,
        "contextWindow": 200000,
        "maxOutputTokens": 64000,
    }
    if "subagent" not in session.knobs:
        return {session.model: entry}
    sub = {**entry, "inputTokens": 20, "outputTokens": 8, "cacheReadInputTokens": 0, "costUSD": 0.001}
    return {session.model: {**entry, "costUSD": round(cost - 0.001, 6)}, SUBAGENT_MODEL: sub}


def budget_spent(session: Session) -> bool:
    """Whether the session's cost goes past --max-budget-usd (the real CLI stops there)."""
    cost = float(session.knobs.get("cost", DEFAULT_COST))
    return session.max_budget is not None and cost > float(session.max_budget)


def result_subtype(session: Session) -> str:
    knobs = session.knobs
    if session_missing(session):
        return "error_during_execution"
    if session.max_turns is not None and session.max_turns < SESSION_TURNS:
        return "error_max_turns"
    if budget_spent(session):
        return "error_max_budget_usd"
    if "is_error" in knobs:
        return "error_during_execution" if knobs["is_error"] == FLAG else knobs["is_error"]
    return "success"


def result_errors(session: Session, subtype: str) -> list[str]:
    if session_missing(session):
        return [MISSING_SESSION.format(session.resumed)]
    if subtype == "error_max_turns" and session.max_turns is not None:
        return [MAX_TURNS_ERROR.format(session.max_turns)]
    if subtype == "error_max_budget_usd":
        return [MAX_BUDGET_ERROR.format(session.max_budget)]
    return []


def result_line(session: Session) -> dict[str, object]:
    knobs = session.knobs
    subtype = result_subtype(session)
    failed_api = "usage_limit" in knobs or session.api_error is not None
    missing = session_missing(session)  # nothing ran at all (resume-missing.log)
    cost = 0.0 if failed_api or missing else float(knobs.get("cost", DEFAULT_COST))
    turns = {"error_max_turns": session.max_turns, "error_max_budget_usd": 1}.get(subtype, SESSION_TURNS)
    line: dict[str, object] = {
        "type": "result",
        "subtype": subtype,
        "is_error": subtype != "success" or failed_api,
        "duration_ms": 0 if missing else 4200,
        "duration_api_ms": 0 if missing else 3900,
        "num_turns": 0 if session_missing(session) else 1 if failed_api else turns,
        "stop_reason": "end_turn" if subtype == "success" else None,
        "session_id": session.session_id,
        "cost_usd" if "legacy" in knobs else "total_cost_usd": cost,
        "usage": zero_usage()
        if failed_api or missing
        else {**zero_usage(), "input_tokens": 62, "output_tokens": 17},
        "modelUsage": {} if failed_api or session_missing(session) else model_usage(session, cost),
        "permission_denials": denials(session),
        "uuid": str(uuid.uuid4()),
    }
    if "legacy" in knobs:
        del line["modelUsage"]
    if subtype == "success":
        line.update(api_error_status=None, result=final_text(session), terminal_reason="completed")
        line.update(fast_mode_state="off")
        if not failed_api:
            line.update(ttft_ms=91, ttft_stream_ms=90, time_to_request_ms=76)
    else:
        line["errors"] = result_errors(session, subtype)
        if not session_missing(session):
            line["fast_mode_state"] = "off"
        if subtype == "error_max_turns":
            line["terminal_reason"] = "max_turns"
    if "usage_limit" in knobs:
        line["api_error_status"] = 429
    elif session.api_error is not None:
        line["api_error_status"] = session.api_error or None
    if "result" in knobs:
        line["result"] = final_text(session)
    return line


def denials(session: Session) -> list[dict[str, object]]:
    tool = session.knobs.get("denied")
    if tool is None:
        return []
    return [{"tool_name": tool, "tool_use_id": "toolu_denied", "tool_input": denied_input(tool)}]


def exit_code(session: Session, result: dict[str, object] | None) -> int:
    if "exit" in session.knobs:
        return int(session.knobs["exit"])
    return 1 if result is None or result["is_error"] else 0


def hang_forever() -> None:
    while True:
        time.sleep(3600)


def wait_for_gate(path: Path) -> None:
    """Hold the session until the test creates `path`."""
    while not path.exists():
        time.sleep(GATE_POLL_SECONDS)


def emit_session(session: Session) -> None:
    """The lines between init and result, shaped by the knobs."""
    emit_api_retries(session)
    if "usage_limit" in session.knobs:
        emit_usage_limit(session)
    elif session.api_error is not None:
        emit_api_error(session)
    elif budget_spent(session):
        emit_budget_turn(session)
    else:
        emit_work(session)


def run_session(args: Args, prompt: str) -> int:
    knobs = read_knobs(prompt)
    session = session_for(args, knobs)
    start_side_effects(session)
    output = args.value("--output-format") or "text"
    missing = session_missing(session)
    if missing:  # the real CLI says so on stderr and prints no init line
        print(MISSING_SESSION.format(session.resumed), file=sys.stderr)
    elif output == "stream-json":
        emit_init(session, args)
    if "hang" in knobs:
        hang_forever()
    if output == "stream-json" and not missing:
        emit_session(session)
    if "gate" in knobs:
        wait_for_gate(Path(knobs["gate"]))
    result = None if "no_result" in knobs else result_line(session)
    if result is not None and output == "stream-json":
        session.emit(result)
    elif result is not None and output == "json":
        session.emit({**result, "result": final_text(session)})
    elif result is not None:
        session.emit_raw(final_text(session))
    if not missing:
        keep_session(session)
    return exit_code(session, result)


def main(argv: list[str]) -> int:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8")  # the real CLI writes UTF-8 whatever the locale
    try:
        args = parse_args(argv)
        if args.has("--version"):
            print(VERSION)
            return 0
        if not args.has("--print"):
            raise UsageError("fake claude supports only --print (-p) mode")
        check_args(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 1
    prompt, stdin = read_prompt(args)
    record(argv, stdin)
    if not prompt.strip():
        print(NO_INPUT, file=sys.stderr)
        return 1
    try:
        return run_session(args, prompt)
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
