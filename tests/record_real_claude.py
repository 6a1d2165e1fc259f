#!/usr/bin/env python3
"""Record what a real Claude Code CLI prints in each case the scheduler relies on.

    python3 tests/record_real_claude.py OUT_DIR [--claude PATH] [--only NAME ...] [--compare DIR]

Each case runs the CLI (`--claude`, else `$CCS_REAL_CLAUDE`, else the copy .ci/run
installs) through `real_claude.py`, so in a loopback-only network namespace against the
stand-in API of `standin_api.py`, exactly as the contract tests do, and writes its stdout
(one JSON object a line) to OUT_DIR/<name>; `.log` cases also keep stderr, as
`[stderr] ` lines first. Paths, the port and the temporary folders are rewritten to
/home/user/... like the transcripts in shared/real-claude/. With `--compare DIR` (the
transcripts of the version the scheduler was built against) it then names, per
transcript, the line kinds and keys that came, went or changed type. Cases run in
parallel; the ones that let the CLI retry
(401, 529) take about three minutes, as the CLI retries that long. Not run by CI.
Needs root (for `unshare --net`), Linux and the standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_claude
import standin_api as api

WRAPPER = Path(real_claude.__file__).resolve()
PROMPT = "Say hello."
BASE_ARGS = ["-p", "--output-format", "stream-json", "--verbose", "--model", "sonnet"]
FAKE_HOME = "/home/user"
FAKE_PROJECT = f"{FAKE_HOME}/project"
CASE_SECONDS = 300.0  # longest a case may take (the CLI's own retries last ~3 minutes)
DENIED_COMMAND = "touch made-by-claude.txt && echo touched"


@dataclass
class Case:
    """One recording: what the stand-in answers, the CLI's extra options, how it ends."""

    replies: Callable[[], list[api.Reply]]
    then: Callable[[], api.Reply] = api.text
    args: Callable[[], list[str]] = list
    oauth: bool = False
    stderr: bool = False  # keep stderr too (a `.log` transcript)
    seconds: float = CASE_SECONDS  # then SIGTERM: the CLI would wait forever
    notes: list[str] = field(default_factory=list)


def _in(seconds: int) -> int:
    return int(time.time()) + seconds


CASES: dict[str, Case] = {
    "ok.jsonl": Case(lambda: [api.text()]),
    "tool-allowed.jsonl": Case(lambda: [api.tool_use(), api.text()]),
    "tool-maxturns1.jsonl": Case(lambda: [api.tool_use(), api.text()], args=lambda: ["--max-turns", "1"]),
    "toolwrite-denied.jsonl": Case(lambda: [api.tool_use(DENIED_COMMAND), api.text()]),
    "toolwrite-dontask.jsonl": Case(
        lambda: [api.tool_use(DENIED_COMMAND), api.text()], args=lambda: ["--permission-mode", "dontAsk"]
    ),
    "max-budget.jsonl": Case(
        lambda: [api.tool_use(), api.text()], args=lambda: ["--max-budget-usd", "0.001"]
    ),
    "401.jsonl": Case(list, then=lambda: api.error(401, "authentication_error", "invalid x-api-key")),
    "401-no-retry.jsonl": Case(list, then=api.unauthorized),
    "429unified.jsonl": Case(list, then=api.rate_limited),
    "500-no-retry.jsonl": Case(list, then=lambda: api.server_error(retry=False)),
    "529.jsonl": Case(list, then=api.overloaded),
    "529-twice-then-ok.jsonl": Case(lambda: [api.overloaded(), api.overloaded()]),
    "oauth-usage-limit.jsonl": Case(list, then=lambda: api.usage_limit(_in(3 * 3600)), oauth=True),
    "oauth-usage-limit-weekly.jsonl": Case(
        list, then=lambda: api.usage_limit(_in(3 * 86400), "seven_day"), oauth=True
    ),
    "hang.jsonl": Case(list, then=api.hang, seconds=30.0),
    "resume-missing.log": Case(list, args=lambda: ["--resume", str(uuid.uuid4())], stderr=True),
}


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "-", path)


def _anonymise(text: str, project: Path, claude_home: Path) -> str:
    for real, fake in (
        (str(project), FAKE_PROJECT),
        (_slug(str(project)), _slug(FAKE_PROJECT)),  # the CLI's folder name for a project
        (str(claude_home), FAKE_HOME),
    ):
        text = text.replace(real, fake)
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)


def record(name: str, case: Case, claude: Path, out_dir: Path) -> str:
    """Run one case and write its transcript; return a line for the summary."""
    scratch = Path(tempfile.mkdtemp(prefix="ccs-rec-"))
    standin = api.StandIn(scratch / "api.sock")
    standin.play(*case.replies(), then=case.then())
    project, claude_home = scratch / "project", scratch / "home"
    project.mkdir()
    claude_home.mkdir()
    env = {
        **os.environ,
        real_claude.CLAUDE_ENV: str(claude),
        real_claude.SOCKET_ENV: str(standin.socket_path),
        real_claude.HOME_ENV: str(claude_home),
        real_claude.AUTH_ENV: "oauth" if case.oauth else "key",
    }
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [str(WRAPPER), *BASE_ARGS, *case.args()],
            cwd=project,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(PROMPT.encode(), timeout=case.seconds)
            ended = f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
            ended = f"no end after {case.seconds:g}s, terminated"
    finally:
        standin.close()
    text = "".join(f"[stderr] {line}\n" for line in err.decode().splitlines()) if case.stderr else ""
    text += out.decode()
    (out_dir / name).write_text(_anonymise(text, project, claude_home), encoding="utf-8")
    shutil.rmtree(scratch, ignore_errors=True)
    requests = len(standin.messages_requests())
    return f"{name}: {ended} in {time.monotonic() - started:.1f}s, {requests} API requests"


def _shape(value: object, path: str = "") -> dict[str, str]:
    """Each key path of a JSON value with its type (list items merged), e.g.
    {"message.content[].type": "str"}."""
    if isinstance(value, dict):
        found: dict[str, str] = {}
        for key, item in value.items():
            found.update(_shape(item, f"{path}.{key}" if path else key))
        return found
    if isinstance(value, list):
        found = {}
        for item in value:
            found.update(_shape(item, f"{path}[]"))
        return found
    return {path: type(value).__name__}


def _kinds(path: Path) -> dict[str, dict[str, str]]:
    """The shape of each kind of line (type/subtype) of a transcript; stderr as text."""
    kinds: dict[str, dict[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("[stderr] ") or not line.startswith("{"):
            kinds.setdefault("stderr", {})
            continue
        obj = json.loads(line)
        kind = "/".join(str(obj.get(key)) for key in ("type", "subtype") if key in obj)
        kinds.setdefault(kind, {}).update(_shape(obj))
    return kinds


def compare(new: Path, old: Path) -> list[str]:
    """What changed from the transcript `old` to `new`, in lines for people."""
    was, now = _kinds(old), _kinds(new)
    changes = [f"  line kind {kind} is new" for kind in now if kind not in was]
    changes += [f"  line kind {kind} is gone" for kind in was if kind not in now]
    for kind in [kind for kind in now if kind in was]:
        before, after = was[kind], now[kind]
        changes += [f"  {kind}: new key {key}" for key in sorted(after.keys() - before.keys())]
        changes += [f"  {kind}: key {key} is gone" for key in sorted(before.keys() - after.keys())]
        changes += [
            f"  {kind}: {key} was {before[key]}, is {after[key]}"
            for key in sorted(after.keys() & before.keys())
            if before[key] != after[key] and "NoneType" not in (before[key], after[key])
        ]
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder the transcripts are written to")
    parser.add_argument("--claude", type=Path, help="the CLI to record (default: the one .ci/run installs)")
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), metavar="NAME", help="only these cases")
    parser.add_argument("--compare", type=Path, metavar="DIR", help="transcripts to compare with")
    options = parser.parse_args(argv)
    claude = (options.claude or real_claude.installed_claude()).resolve()
    problem = real_claude.sandbox_problem(claude)
    if problem:
        parser.error(problem)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    names = options.only or sorted(CASES)
    summary: dict[str, str] = {}

    def run(name: str) -> None:
        try:
            summary[name] = record(name, CASES[name], claude, options.out_dir)
        except Exception as exc:  # one broken case must not lose the others
            summary[name] = f"{name}: FAILED: {exc!r}"

    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in names:
        print(summary[name])
        reference = options.compare / name if options.compare else None
        if reference and reference.exists() and (options.out_dir / name).exists():
            print("\n".join(compare(options.out_dir / name, reference) or ["  same line kinds and keys"]))
    return 1 if any("FAILED" in line for line in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
