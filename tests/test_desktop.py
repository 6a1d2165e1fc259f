"""At home on the desktop: the launcher with its icon, and the engine as a login service.

Everything is written under a temp HOME and temp XDG folders. No real unit is started or
enabled: the tests that install a service put a fake `systemctl` first on PATH, which
only records what it was asked. desktop-file-validate and systemd-analyze check the
Linux files where they are installed; the macOS and Windows files are checked as text."""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Result

import claude_scheduler as cs

Cli = Callable[..., Result]
MODULE = str(Path(cs.__file__).resolve())
TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Temp XDG folders (nothing there yet) and a fake systemctl that records its calls."""
    folders = {name: tmp_path / "xdg" / name for name in ("data", "config")}
    folders["runtime"] = tmp_path / "runtime"  # for systemd-analyze, which leaves files there
    monkeypatch.setenv("XDG_DATA_HOME", str(folders["data"]))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folders["config"]))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "systemctl-calls.jsonl"
    fake = bin_dir / "systemctl"
    fake.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, os, sys
            with open({str(calls)!r}, "a") as out:
                out.write(json.dumps(sys.argv[1:]) + "\\n")
            if "show" in sys.argv:
                print(os.environ.get("FAKE_SYSTEMCTL_SHOW", ""))
            sys.exit(int(os.environ.get("FAKE_SYSTEMCTL_EXIT", "0")))
            """
        )
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return {**folders, "calls": calls, "root": tmp_path / "xdg"}


def systemctl_calls(xdg: dict[str, Path]) -> list[list[str]]:
    if not xdg["calls"].exists():
        return []
    return [json.loads(line) for line in xdg["calls"].read_text().splitlines()]


def tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")) if root.exists() else []


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(cs.PNG_SIGNATURE) and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# The launcher (Linux) ----------------------------------------------------------------------


def test_desktop_install_writes_a_valid_entry_and_icons_and_uninstall_removes_exactly_them(
    cli: Cli, home: Path, xdg: dict[str, Path]
) -> None:
    applications = xdg["data"] / "applications"
    applications.mkdir(parents=True)
    (applications / "other.desktop").write_text("[Desktop Entry]\n")  # someone else's
    before = tree(xdg["root"])
    result = cli("desktop", "install")
    assert result.code == 0, result.err
    entry = applications / "claude-code-scheduler.desktop"
    assert result.out.splitlines()[:2] == ["Installed the launcher (linux):", f"  {entry}"]
    text = entry.read_text()
    fields = dict(line.split("=", 1) for line in text.splitlines()[1:])
    assert text.startswith("[Desktop Entry]\n")
    assert fields["Type"] == "Application" and fields["Terminal"] == "false"
    assert fields["Icon"] == "claude-code-scheduler" and fields["StartupWMClass"] == cs.GUI_CLASS_NAME
    assert shlex.split(fields["Exec"]) == [sys.executable, MODULE, "--home", str(home.resolve()), "gui"]
    for size in cs.LINUX_ICON_SIZES:
        icon = xdg["data"] / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "claude-code-scheduler.png"
        assert png_size(icon.read_bytes()) == (size, size)
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
        assert check.returncode == 0 and check.stdout == "", check.stdout + check.stderr
    assert cli("desktop", "install").code == 0  # again: the same files, still one record

    removed = cli("desktop", "uninstall")
    assert removed.code == 0, removed.err
    assert removed.out.splitlines()[:2] == ["Removed:", f"  {entry}"]
    assert len(removed.out.splitlines()) == 2 + len(cs.LINUX_ICON_SIZES)
    assert tree(xdg["root"]) == before
    assert not (home / cs.DESKTOP_MANIFEST).exists()
    assert cli("desktop", "uninstall").out.strip() == "Nothing to remove: it is not installed."


def test_desktop_exec_quotes_what_needs_it() -> None:
    argv = ["/opt/py thon/python3", "/src/it's $HOME/cs.py", "--home", "/data/100%", "gui"]
    text = cs.desktop_exec(argv)
    assert text == '"/opt/py thon/python3" "/src/it\'s \\$HOME/cs.py" --home /data/100%% gui'


def test_the_launcher_without_home_follows_the_environment(
    cli: Cli, xdg: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(cs.HOME_ENV)
    assert cli("desktop", "install").code == 0
    entry = (xdg["data"] / "applications" / "claude-code-scheduler.desktop").read_text()
    assert f"\nExec={sys.executable} {MODULE} gui\n" in entry
    assert cli("desktop", "uninstall").code == 0


def test_install_is_refused_over_the_api(cli: Cli, home: Path, xdg: dict[str, Path]) -> None:
    cs.api_token(cs.Store(home).home)
    result = cli("--api", "http://127.0.0.1:9", "desktop", "install")
    assert result.code == 2
    assert result.err.strip() == "error: desktop install and uninstall work on this computer: leave out --api"
    assert tree(xdg["root"]) == []


# The icon ----------------------------------------------------------------------------------


def test_the_icon_is_drawn_at_every_size_with_a_clear_corner_and_a_white_clock() -> None:
    size = 64
    pixels = cs.icon_pixels(size)

    def at(x: int, y: int) -> tuple[int, ...]:
        start = (y * size + x) * 4
        return tuple(pixels[start : start + 4])

    assert at(0, 0)[3] == 0  # outside the rounded square
    assert at(32, 32) == (255, 255, 255, 255)  # the hands meet in the middle
    assert at(8, 32) == (*cs.ICON_BACKGROUND, 255)
    assert png_size(cs.icon_png(size)) == (size, size)


def test_windows_and_mac_icon_files_hold_pngs_of_their_sizes() -> None:
    ico = cs.icon_ico()
    count = int.from_bytes(ico[4:6], "little")
    assert ico[:4] == b"\x00\x00\x01\x00" and count == len(cs.WINDOWS_ICON_SIZES)
    for n, size in enumerate(cs.WINDOWS_ICON_SIZES):
        entry = ico[6 + 16 * n : 22 + 16 * n]
        length, offset = int.from_bytes(entry[8:12], "little"), int.from_bytes(entry[12:16], "little")
        assert entry[0] == size % 256
        assert png_size(ico[offset : offset + length]) == (size, size)
    icns = cs.icon_icns()
    assert icns[:4] == b"icns" and int.from_bytes(icns[4:8], "big") == len(icns)
    position, found = 8, {}
    while position < len(icns):
        kind, length = icns[position : position + 4], int.from_bytes(icns[position + 4 : position + 8], "big")
        found[kind] = png_size(icns[position + 8 : position + length])
        position += length
    assert found == {kind: (size, size) for kind, size in cs.MAC_ICON_TYPES}


# macOS and Windows launchers, as text ----------------------------------------------------------


def test_the_mac_launcher_is_an_app_bundle_that_runs_this_python(tmp_path: Path) -> None:
    argv = cs.app_command("gui", None, platform="darwin", python="/usr/local/bin/python3")
    plan = cs.LAUNCHERS["darwin"]({}, tmp_path, argv)
    files = {item.path.relative_to(tmp_path).as_posix(): item for item in plan.files}
    contents = "Applications/Claude Code Scheduler.app/Contents"
    assert set(files) == {
        f"{contents}/Info.plist",
        f"{contents}/MacOS/claude-code-scheduler",
        f"{contents}/Resources/claude-code-scheduler.icns",
    }
    info = plistlib.loads(files[f"{contents}/Info.plist"].data)
    assert info["CFBundleExecutable"] == "claude-code-scheduler" and info["CFBundlePackageType"] == "APPL"
    assert info["CFBundleIconFile"] == "claude-code-scheduler.icns"
    script = files[f"{contents}/MacOS/claude-code-scheduler"]
    assert script.mode == 0o755
    assert script.data.decode() == f'#!/bin/sh\nexec /usr/local/bin/python3 {shlex.quote(MODULE)} gui "$@"\n'
    assert files[f"{contents}/Resources/claude-code-scheduler.icns"].data == cs.icon_icns()


def test_the_windows_launcher_makes_a_start_menu_shortcut_to_pythonw(tmp_path: Path) -> None:
    env = {"APPDATA": str(tmp_path / "Roaming"), "LOCALAPPDATA": str(tmp_path / "Local")}
    argv = cs.app_command(
        "gui", tmp_path / "it's data", platform="win32", python=str(tmp_path / "python.exe")
    )
    assert argv[0] == str(tmp_path / "pythonw.exe")
    plan = cs.LAUNCHERS["win32"](env, tmp_path, argv)
    (icon,) = plan.files
    assert icon.path == tmp_path / "Local" / "claude-code-scheduler" / "claude-code-scheduler.ico"
    shortcut = (
        tmp_path
        / "Roaming"
        / "Microsoft"
        / "Windows"
        / "Start Menu"
        / "Programs"
        / "Claude Code Scheduler.lnk"
    )
    assert plan.made_by_tools == [shortcut]
    (call,) = plan.after_install
    assert call[:4] == ["powershell", "-NoProfile", "-NonInteractive", "-Command"]
    script = call[4]
    assert f"CreateShortcut('{shortcut}')" in script
    assert f"$s.TargetPath = '{argv[0]}'" in script
    assert f"$s.IconLocation = '{icon.path}'" in script
    quoted_home = str(tmp_path / "it''s data")  # PowerShell doubles a quote inside '...'
    assert f"$s.Arguments = '{MODULE} --home \"{quoted_home}\" gui'" in script


# The engine at login ---------------------------------------------------------------------------


def unit_path(xdg: dict[str, Path]) -> Path:
    return xdg["config"] / "systemd" / "user" / "claude-code-scheduler.service"


def test_service_install_writes_a_unit_that_systemd_accepts_and_enables_it(
    cli: Cli, home: Path, xdg: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spaced = tmp_path / "my data %h $"
    result = cli("--home", str(spaced), "service", "install")
    assert result.code == 0, result.err
    unit = unit_path(xdg).read_text()
    assert f'ExecStart="{sys.executable}" "{MODULE}" "--home" "{tmp_path}/my data %%h $$" "serve"\n' in unit
    for line in ("Restart=on-failure", "WantedBy=default.target", f"Environment={cs.SERVICE_ENV}=systemd"):
        assert f"\n{line}\n" in unit
    assert systemctl_calls(xdg) == [
        ["--user", "daemon-reload"],
        ["--user", "enable", "--now", "claude-code-scheduler.service"],
    ]
    if shutil.which("systemd-analyze"):
        xdg["runtime"].mkdir(mode=0o700)
        check = subprocess.run(
            ["systemd-analyze", "--user", "verify", str(unit_path(xdg))],
            capture_output=True,
            text=True,
            env={**os.environ, "XDG_RUNTIME_DIR": str(xdg["runtime"])},
        )
        assert check.returncode == 0, check.stdout + check.stderr
    removed = cli("--home", str(spaced), "service", "uninstall")
    assert removed.code == 0 and removed.out.splitlines() == ["Removed:", f"  {unit_path(xdg)}"]
    assert systemctl_calls(xdg)[2:] == [
        ["--user", "disable", "--now", "claude-code-scheduler.service"],
        ["--user", "daemon-reload"],
    ]
    assert tree(xdg["root"]) == []


def test_service_install_no_start_calls_nothing_and_a_failing_systemctl_is_said(
    cli: Cli, xdg: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet = cli("service", "install", "--no-start")
    assert quiet.code == 0 and "Not started (--no-start): it starts at the next login." in quiet.out
    assert systemctl_calls(xdg) == []
    monkeypatch.setenv("FAKE_SYSTEMCTL_EXIT", "1")
    failed = cli("service", "install")
    assert failed.code == 1
    assert "warning: systemctl --user daemon-reload: exit code 1" in failed.err
    assert unit_path(xdg).exists()  # written, so that uninstall (or a fixed systemd) can use it
    removed = cli("service", "uninstall")
    assert removed.code == 0 and not unit_path(xdg).exists()
    assert "warning: systemctl --user disable --now: exit code 1" in removed.err


def test_service_status_says_installed_running_last_exit_and_who_runs_the_engine(
    cli: Cli, cli_json: Callable[..., Any], xdg: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli_json("service", "status") | {"engine": None, "notes": None} == {
        "platform": "linux",
        "installed": False,
        "definition": str(unit_path(xdg)),
        "running": False,
        "state": "not installed",
        "last_exit": None,
        "engine": None,
        "notes": None,
    }
    assert cli("service", "install", "--no-start").code == 0
    show = "ActiveState=active\nSubState=running\nResult=success\nExecMainStatus=1\n"
    show += "ExecMainExitTimestamp=Wed 2026-12-02 03:00:01 UTC\nMainPID=4242"
    monkeypatch.setenv("FAKE_SYSTEMCTL_SHOW", show)
    status = cli("service", "status")
    assert status.code == 0
    assert status.out.splitlines()[:4] == [
        f"service    installed: {unit_path(xdg)}",
        "state      active (running, result success)",
        "last exit  status 1 at Wed 2026-12-02 03:00:01 UTC",
        "engine     not running",
    ]
    assert systemctl_calls(xdg)[-1][:3] == ["--user", "show", "claude-code-scheduler.service"]


def test_the_mac_agent_restarts_after_failure_and_logs_in_the_library(tmp_path: Path) -> None:
    argv = cs.app_command("serve", tmp_path / "data", platform="darwin", python="/usr/bin/python3")
    plan = cs.SERVICES["darwin"]({}, tmp_path, argv)
    (agent,) = plan.files
    assert agent.path == tmp_path / "Library" / "LaunchAgents" / "io.github.claude-code-scheduler.plist"
    definition = plistlib.loads(agent.data)
    log = str(tmp_path / "Library" / "Logs" / "claude-code-scheduler" / "serve.log")
    assert definition["ProgramArguments"] == [
        "/usr/bin/python3",
        MODULE,
        "--home",
        str(tmp_path / "data"),
        "serve",
    ]
    assert definition["RunAtLoad"] is True and definition["KeepAlive"] == {"SuccessfulExit": False}
    assert definition["StandardOutPath"] == definition["StandardErrorPath"] == log
    assert plan.after_install[0][:3] == ["launchctl", "bootstrap", f"gui/{os.getuid()}"]
    assert plan.before_uninstall[0] == ["launchctl", "bootout", f"gui/{os.getuid()}/{cs.SERVICE_LABEL}"]
    said = "state = running\n\tpid = 7\n\tlast exit code = 0\n"
    state = cs.SERVICE_STATES["darwin"](lambda argv: cs.ToolResult(0, said))
    assert state == {"running": True, "state": "running", "last_exit": "0"}


def test_the_windows_logon_task_restarts_after_failure_and_logs_to_a_file(tmp_path: Path) -> None:
    env = {"LOCALAPPDATA": str(tmp_path / "Local")}
    argv = cs.app_command("serve", tmp_path / "data", platform="win32", python=str(tmp_path / "python.exe"))
    plan = cs.SERVICES["win32"](env, tmp_path, argv)
    (definition,) = plan.files
    root = ET.fromstring(definition.data.decode("utf-16").split("?>", 1)[1])
    assert root.find("t:Triggers/t:LogonTrigger/t:Enabled", TASK_NS).text == "true"  # type: ignore[union-attr]  # found or the test fails
    restart = root.find("t:Settings/t:RestartOnFailure", TASK_NS)
    assert restart is not None and restart.findtext("t:Count", namespaces=TASK_NS) == "999"
    assert root.findtext("t:Settings/t:ExecutionTimeLimit", namespaces=TASK_NS) == "PT0S"
    assert root.findtext("t:Actions/t:Exec/t:Command", namespaces=TASK_NS) == str(tmp_path / "pythonw.exe")
    log = tmp_path / "Local" / "claude-code-scheduler" / "logs" / "serve.log"
    assert root.findtext("t:Actions/t:Exec/t:Arguments", namespaces=TASK_NS) == (
        f"{MODULE} --home {tmp_path / 'data'} serve --log-file {log}"
    )
    assert plan.after_install[0] == [
        "schtasks",
        "/Create",
        "/F",
        "/TN",
        cs.APP_NAME,
        "/XML",
        str(definition.path),
    ]
    said = "Folder: \\\nTaskName: \\Claude Code Scheduler\nStatus: Running\n"
    said += "Last Run Time: 12/2/2026 3:00:00 AM\nLast Result: 0"
    state = cs.SERVICE_STATES["win32"](lambda argv: cs.ToolResult(0, said))
    assert state == {"running": True, "state": "Running", "last_exit": "0 at 12/2/2026 3:00:00 AM"}


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def catches_sigterm(pid: int) -> bool:
    """Whether a process has its SIGTERM handler in place (Linux: /proc's SigCgt mask)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def test_serve_logs_to_its_log_file_and_says_it_is_the_service(tmp_path: Path, home: Path) -> None:
    log = tmp_path / "logs" / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, MODULE, "serve", "--port", "0", "--log-file", str(log)],
        env={**os.environ, cs.HOME_ENV: str(home), cs.SERVICE_ENV: "test"},
        stderr=subprocess.PIPE,
    )
    try:
        service = cs.Service(cs.Store(home))
        wait_for(lambda: service.engine_status()["running"] or proc.poll() is not None, "the engine")
        wait_for(lambda: catches_sigterm(proc.pid) or proc.poll() is not None, "serve to handle SIGTERM")
        owner = service.engine_status()["owner"]
        assert owner["pid"] == proc.pid and owner["service"] == "test"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and err == b""
    assert "engine started for" in log.read_text()


def test_the_window_says_when_the_login_service_runs_the_engine() -> None:
    by_service = {"running": True, "here": False, "owner": {"pid": 77, "service": "systemd"}}
    text = "Engine: in the login service (pid 77); this window views"
    assert cs._engine_status_text(by_service) == (text, "")
    by_hand = {"running": True, "here": False, "owner": {"pid": 78, "service": None}}
    assert cs._engine_status_text(by_hand) == ("Engine: in another process (pid 78)", "")
