"""Shared fixtures: a temp data home per test, and `cli` to drive main() like a user."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from run_helpers import Recorder  # noqa: E402

import claude_scheduler as cs  # noqa: E402

FAKE_CLAUDE = Path(__file__).with_name("fake_claude.py")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _local_time_follows_tz() -> Iterator[None]:
    """The C library reads $TZ only on tzset(): without it, a TZ set by a test (the home
    fixture's UTC) would leave `astimezone()` in the zone the suite was started in while
    the code's zone names follow $TZ. This one runs last, after monkeypatch restored $TZ."""
    time.tzset()
    yield
    time.tzset()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data home; HOME points into tmp so nothing touches the real one."""
    data = tmp_path / "data"
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv(cs.HOME_ENV, str(data))
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.delenv(cs.API_ENV, raising=False)
    monkeypatch.setenv(cs.CLAUDE_ENV, str(FAKE_CLAUDE))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    for variable in ("COLUMNS", "LINES"):  # a terminal's width would narrow the CLI's tables
        monkeypatch.delenv(variable, raising=False)
    return data


@pytest.fixture
def record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """The fake claude records each session here; its leftover processes end with the test."""
    recorder = Recorder(tmp_path / "record.jsonl")
    monkeypatch.setenv("FAKE_CLAUDE_RECORD", str(recorder.path))
    yield recorder
    recorder.kill_leftovers()


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `main(["cli", *words])` and return its exit code and output."""

    def run(*words: str) -> Result:
        capsys.readouterr()
        code = cs.main(["cli", *words])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def cli_json(cli: Callable[..., Result]) -> Callable[..., Any]:
    """Like `cli` with --json; asserts success and returns the parsed output."""

    def run(*words: str) -> Any:
        result = cli(*words, "--json")
        assert result.code == 0, result.err
        return result.json()

    return run


def child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[cs.HOME_ENV] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    return env
