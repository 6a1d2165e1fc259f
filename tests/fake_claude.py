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
                                                      else USAGE_LIMIT_EPOCH; none for F `text`),
                                                      the synthetic message and a 429 result
    [cost=USD]         FAKE_CLAUDE_COST               total cost (default 0.0123)
    [result=TEXT]      FAKE_CLAUDE_RESULT             final text (default `Done.`); given, it is
                                                      in the result line even on is_error

`--max-turns N` below the session's 3 turns ends it with `error_max_turns`, exit 1.
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

VERSION = "2.0.0 (Claude Code)"
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
TOOLS = ("Bash", "Read", "Edit", "Write", "Glob", "Grep")
SESSION_TURNS = 3
DEFAULT_COST = 0.0123
DEFAULT_RESULT = "Done."
USAGE_LIMIT_EPOCH = 1767225600
USAGE_LIMIT_TEXT = "You've hit your session limit · resets 12am (UTC)"
STDERR_LINE = "fake claude diagnostic output to fill the stderr pipe ................\n"
FLAG = "1"
FALSE_WORDS = ("", "0", "false", "no", "off")  # switch a knob off, e.g. FAKE_CLAUDE_HANG=0
VALUE_KNOBS = ("exit", "delay", "lines", "stderr", "cost", "result")  # where "0" is a value

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

    @property
    def delay(self) -> float:
        return float(self.knobs.get("delay", "0"))

    def emit_raw(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        if self.delay:
            time.sleep(self.delay)

    def emit(self, obj: dict[str, object]) -> None:
        self.emit_raw(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    def content(self, blocks: list[dict[str, object]]) -> object:
        texts = [block["text"] for block in blocks if block.get("type") == "text"]
        if "legacy" in self.knobs and len(texts) == len(blocks):
            return "".join(str(text) for text in texts)
        return blocks

    def assistant(self, message_id: str, blocks: list[dict[str, object]]) -> None:
        message = {
            "id": message_id,
            "role": "assistant",
            "model": self.model,
            "content": self.content(blocks),
            "usage": {"input_tokens": 12, "output_tokens": 5},
        }
        self.emit(
            {
                "type": "assistant",
                "message": message,
                "parent_tool_use_id": None,
                "session_id": self.session_id,
            }
        )


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
    return Session(
        session_id=session_id,
        model=MODEL_IDS.get(model, model),
        permission_mode=args.value("--permission-mode") or "default",
        max_turns=int(turns) if turns else None,
        knobs=knobs,
    )


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
    session.emit(
        {
            "type": "system",
            "subtype": "init",
            "session_id": session.session_id,
            "cwd": os.getcwd(),
            "model": session.model,
            "tools": [tool for tool in TOOLS if tool not in disallowed],
            "permissionMode": session.permission_mode,
            "mcp_servers": [],
            "uuid": str(uuid.uuid4()),
        }
    )


def emit_work(session: Session) -> None:
    """The assistant and user lines between init and result."""
    session.assistant("msg_1", [{"type": "text", "text": "Looking at the repo."}])
    for line in MALFORMED_LINES if "malformed" in session.knobs else ():
        session.emit_raw(line)
    if session.max_turns is not None and session.max_turns < SESSION_TURNS:
        return
    tool_use: dict[str, object] = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "Bash",
        "input": {"command": "ls"},
    }
    session.assistant("msg_2", [tool_use])
    tool_result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "README.md\nsrc",
        "is_error": False,
    }
    session.emit(
        {
            "type": "user",
            "message": {"role": "user", "content": [tool_result]},
            "session_id": session.session_id,
        }
    )
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
    if value != "text":
        resets_at = int(value) if value.isdigit() and len(value) >= 9 else USAGE_LIMIT_EPOCH
        info = {"status": "rejected", "resetsAt": resets_at, "rateLimitType": "five_hour"}
        session.emit({"type": "rate_limit_event", "rate_limit_info": info, "session_id": session.session_id})
    message = {
        "model": "<synthetic>",
        "role": "assistant",
        "content": [{"type": "text", "text": USAGE_LIMIT_TEXT}],
    }
    session.emit(
        {"type": "assistant", "message": message, "session_id": session.session_id, "error": "rate_limit"}
    )


def final_text(session: Session) -> str:
    if "usage_limit" in session.knobs:
        return USAGE_LIMIT_TEXT
    return session.knobs.get("result", DEFAULT_RESULT)


def result_line(session: Session) -> dict[str, object]:
    knobs = session.knobs
    cost_key = "cost_usd" if "legacy" in knobs else "total_cost_usd"
    max_turns_hit = session.max_turns is not None and session.max_turns < SESSION_TURNS
    subtype = "success"
    if max_turns_hit:
        subtype = "error_max_turns"
    elif "is_error" in knobs:
        subtype = "error_during_execution" if knobs["is_error"] == FLAG else knobs["is_error"]
    line: dict[str, object] = {
        "type": "result",
        "subtype": subtype,
        "is_error": subtype != "success" or "usage_limit" in knobs,
        "duration_ms": 4200,
        "duration_api_ms": 3900,
        "num_turns": session.max_turns if max_turns_hit else SESSION_TURNS,
        "session_id": session.session_id,
        cost_key: float(knobs.get("cost", DEFAULT_COST)),
        "usage": {
            "input_tokens": 62,
            "output_tokens": 17,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
        "permission_denials": [],
    }
    if "usage_limit" in knobs:
        line.update(num_turns=1, api_error_status=429, total_cost_usd=0)
    if subtype == "success" or "result" in knobs:
        line["result"] = final_text(session)
    return line


def exit_code(session: Session, result: dict[str, object] | None) -> int:
    if "exit" in session.knobs:
        return int(session.knobs["exit"])
    return 1 if result is None or result["is_error"] else 0


def hang_forever() -> None:
    while True:
        time.sleep(3600)


def run_session(args: Args, prompt: str) -> int:
    knobs = read_knobs(prompt)
    session = session_for(args, knobs)
    start_side_effects(session)
    output = args.value("--output-format") or "text"
    if output == "stream-json":
        emit_init(session, args)
    if "hang" in knobs:
        hang_forever()
    if output == "stream-json" and "usage_limit" in knobs:
        emit_usage_limit(session)
    elif output == "stream-json":
        emit_work(session)
    result = None if "no_result" in knobs else result_line(session)
    if result is not None and output == "stream-json":
        session.emit(result)
    elif result is not None and output == "json":
        session.emit({**result, "result": final_text(session)})
    elif result is not None:
        session.emit_raw(final_text(session))
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
