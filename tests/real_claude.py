#!/usr/bin/env python3
"""Run the REAL Claude Code CLI with no network but a stand-in API: the `claude` the
contract tests give the scheduler.

Called with the scheduler's argv, it re-executes itself under `unshare --net` (a new
network namespace; needs root), brings up `lo` there, checks that `lo` is the only
interface, listens on 127.0.0.1:<free port> and relays each connection to the stand-in
API's Unix socket (`$CCS_STANDIN_SOCKET`; a socket file is reachable from inside the
namespace). Then it runs the CLI (`$CCS_REAL_CLAUDE`) with the same argv, stdin, stdout
and stderr, in an environment built from scratch: a throwaway `HOME`
(`$CCS_CLAUDE_HOME`, kept by the test across runs so `--resume` finds its
conversations), `ANTHROPIC_BASE_URL` at the relay, a dummy API key (or, with
`CCS_CLAUDE_AUTH=oauth`, a dummy subscription token) and the variables that turn off
the CLI's other traffic. SIGTERM/SIGINT are passed on to the CLI; the exit code is the
CLI's. With `$CCS_CLAUDE_ARGV_LOG` set, each call appends its argv there as a JSON line.

It fails closed: when the namespace, `lo` or the relay cannot be set up it prints why
on stderr and exits with SANDBOX_FAILED without ever starting the CLI.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

SANDBOX_FAILED = 97
OUTER_NS_ENV = "CCS_SANDBOX_OUTER_NET_NS"  # set when re-executed: the namespace we left
SOCKET_ENV = "CCS_STANDIN_SOCKET"
CLAUDE_ENV = "CCS_REAL_CLAUDE"
HOME_ENV = "CCS_CLAUDE_HOME"
AUTH_ENV = "CCS_CLAUDE_AUTH"
ARGV_LOG_ENV = "CCS_CLAUDE_ARGV_LOG"
DUMMY_SECRET = "sk-ant-standin-not-a-real-key"
QUIET = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
}
PASSED_ON = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")  # harmless and needed by tools the CLI runs


PINNED_VERSION = "2.1.197"  # the CLI the contract tests run; .ci/run installs it
PINNED_PACKAGE = f"@anthropic-ai/claude-code@{PINNED_VERSION}"


class SandboxError(Exception):
    pass


def install_dir() -> Path:
    """Where .ci/run installs the pinned CLI with npm (outside the clone, reused)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "claude-code-scheduler" / f"claude-code-{PINNED_VERSION}"


def installed_claude() -> Path:
    """The real CLI to run: `$CCS_REAL_CLAUDE` (exported by .ci/run), else the cache."""
    given = os.environ.get(CLAUDE_ENV)
    return Path(given) if given else install_dir() / "node_modules" / ".bin" / "claude"


def sandbox_problem(claude: Path) -> str | None:
    """Why the real CLI cannot be run safely here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "the real-CLI sandbox needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the real-CLI sandbox needs root for `unshare --net`"
    if not os.access(claude, os.X_OK):
        return f"the real Claude Code CLI is not at {claude} (.ci/run installs it; or set ${CLAUDE_ENV})"
    try:
        probe = subprocess.run(
            ["unshare", "--net", "--", "ip", "link", "set", "lo", "up"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`unshare --net` cannot run here: {exc}"
    if probe.returncode != 0:
        return f"`unshare --net` does not work here: {probe.stderr.strip()}"
    return None


def fail(message: str) -> None:
    sys.stderr.write(f"real_claude.py: {message}; the CLI was not started\n")
    sys.stderr.flush()
    os._exit(SANDBOX_FAILED)


def net_namespace() -> str:
    return os.readlink("/proc/self/ns/net")


def reexec_unshared() -> None:
    """Replace this process by itself in a new network namespace (same pid: the
    scheduler's process group and signals still reach it)."""
    os.environ[OUTER_NS_ENV] = net_namespace()
    try:
        os.execvp(
            "unshare", ["unshare", "--net", "--", sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
        )
    except OSError as exc:
        fail(f"cannot run unshare: {exc}")


def check_isolated() -> None:
    """Only `lo`, up, in a namespace that is not the one we came from."""
    outer = {os.environ.get(OUTER_NS_ENV)}
    with contextlib.suppress(OSError):
        outer.add(os.readlink("/proc/1/ns/net"))
    if net_namespace() in outer:
        raise SandboxError("still in the original network namespace")
    done = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SandboxError(f"`ip link set lo up` failed: {done.stderr.strip()}")
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    interfaces = sorted(line.split(":", 1)[0].strip() for line in lines)
    if interfaces != ["lo"]:
        raise SandboxError(f"the namespace has interfaces {interfaces}, not only lo")


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _relay_one(client: socket.socket, socket_path: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(socket_path)
    except OSError:
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def start_relay(socket_path: str) -> int:
    """Listen on 127.0.0.1 and relay each connection to `socket_path`; return the port."""
    if not os.path.exists(socket_path):
        raise SandboxError(f"the stand-in API socket {socket_path} does not exist")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=_relay_one, args=(client, socket_path), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


def claude_environment(port: int) -> dict[str, str]:
    home = os.environ.get(HOME_ENV)
    if not home:
        raise SandboxError(f"${HOME_ENV} (the CLI's throwaway home) is not set")
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    env.update(QUIET, HOME=home, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}")
    if os.environ.get(AUTH_ENV) == "oauth":
        env.update(CLAUDE_CODE_OAUTH_TOKEN=DUMMY_SECRET, CLAUDE_CODE_SUBSCRIPTION_TYPE="max")
    else:
        env["ANTHROPIC_API_KEY"] = DUMMY_SECRET
    return env


PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None  # before any fork


def _die_with_parent() -> None:
    """In the CLI's process, before it starts: get SIGKILL when this wrapper dies."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_claude(argv: list[str], env: dict[str, str]) -> int:
    child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)  # stdin/out/err are ours

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = child.wait()
    if code < 0:  # die of the same signal, so the scheduler sees what ended claude
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code if code >= 0 else 128 - code


def log_argv(argv: list[str]) -> None:
    path = os.environ.get(ARGV_LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(argv) + "\n")


def main() -> int:
    if OUTER_NS_ENV not in os.environ:
        log_argv(sys.argv[1:])
        reexec_unshared()
    claude = os.environ.get(CLAUDE_ENV, "")
    socket_path = os.environ.get(SOCKET_ENV, "")
    try:
        if not claude or not os.access(claude, os.X_OK):
            raise SandboxError(f"${CLAUDE_ENV} ({claude!r}) is not an executable file")
        if not socket_path:
            raise SandboxError(f"${SOCKET_ENV} is not set")
        check_isolated()
        env = claude_environment(start_relay(socket_path))
    except (SandboxError, OSError) as exc:
        fail(str(exc))
    return run_claude([claude, *sys.argv[1:]], env)


if __name__ == "__main__":
    sys.exit(main())
