"""The fake claude against the real CLI's recordings (../shared/real-claude): per line
type, the fake prints the same keys as claude 2.1.197 did, so the scheduler is tested
against the shapes it will meet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FAKE = Path(__file__).with_name("fake_claude.py")
REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "real-claude"
STREAM = ["-p", "--output-format", "stream-json", "--verbose"]

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real-claude is not beside the project")

# recording, fake prompt (its knobs), extra fake options
CASES = [
    ("tool-allowed.jsonl", "List the files.", []),
    ("toolwrite-denied.jsonl", "Touch a file. [denied=Bash]", []),
    ("tool-maxturns1.jsonl", "List the files.", ["--max-turns", "1"]),
    ("max-budget.jsonl", "List the files.", ["--max-budget-usd", "0.001"]),
    ("401.jsonl", "Hello. [api_error=401][api_retry=2]", []),
    ("529.jsonl", "Hello. [api_error=529][api_retry=2]", []),
    ("429unified.jsonl", "Hello. [api_error=429]", []),
    ("oauth-usage-limit.jsonl", "Hello. [usage_limit=1796207914]", []),
    ("resume-missing.log", "Hello. [sessions]", ["--resume", "9a5b0e80-6800-4066-a805-53456289b67b"]),
]


def line_kind(line: dict[str, Any]) -> str:
    """A line's type, told apart where the shapes differ (synthetic message, subtypes)."""
    kind = str(line.get("type"))
    if kind == "assistant" and line["message"].get("model") == "<synthetic>":
        return "assistant/synthetic"
    if kind == "user" and line["message"]["content"][0].get("is_error"):
        return "user/denied"
    return f"{kind}/{line['subtype']}" if "subtype" in line else kind


def key_sets(line: dict[str, Any]) -> dict[str, set[str]]:
    """The keys of a line and of its nested objects that the scheduler reads."""
    found = {"": set(line)}
    for name in ("message", "usage", "rate_limit_info"):
        if isinstance(line.get(name), dict):
            found[name] = set(line[name])
    if isinstance(line.get("message", {}).get("usage"), dict):
        found["message.usage"] = set(line["message"]["usage"])
    for model, usage in (line.get("modelUsage") or {}).items():
        found["modelUsage[]"] = set(usage)
        assert isinstance(model, str)
    return found


def shapes(lines: list[dict[str, Any]]) -> dict[str, dict[str, set[str]]]:
    """Each kind of line and its key sets (the first line of each kind)."""
    out: dict[str, dict[str, set[str]]] = {}
    for line in lines:
        out.setdefault(line_kind(line), key_sets(line))
    return out


def recorded(name: str) -> list[dict[str, Any]]:
    text = (REAL / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def faked(tmp_path: Path, prompt: str, options: list[str]) -> list[dict[str, Any]]:
    env = {**os.environ, "HOME": str(tmp_path)}
    env = {name: value for name, value in env.items() if not name.startswith("FAKE_CLAUDE")}
    done = subprocess.run(
        [sys.executable, str(FAKE), *STREAM, *options],
        input=prompt,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
        timeout=60,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize(("name", "prompt", "options"), CASES, ids=[case[0] for case in CASES])
def test_the_fake_prints_the_keys_of_the_real_cli_for_each_line_type(
    tmp_path: Path, name: str, prompt: str, options: list[str]
) -> None:
    real = shapes(recorded(name))
    fake = shapes(faked(tmp_path, prompt, options))

    assert set(real) <= set(fake)  # every kind of line the real CLI printed here
    for kind, keys in real.items():
        assert fake[kind] == keys, kind


def test_the_fakes_init_line_lists_the_tools_of_the_real_cli(tmp_path: Path) -> None:
    (real_init,) = [line for line in recorded("ok.jsonl") if line.get("subtype") == "init"]
    fake_init = faked(tmp_path, "Hello.", [])[0]
    assert fake_init["tools"] == real_init["tools"]
    assert fake_init["claude_code_version"] == real_init["claude_code_version"]
