"""Shell completion (issue 14), run in the shells themselves, each set up as the README says:
groups, verbs and options complete; so do the ids of jobs, tasks and runs from the data home
(the one `--home` names on the line too), and a task's or job's name completes to its id.
bash is driven through its completion function; zsh interactively on a terminal, through
its completion system; fish with `complete -C`, and on a terminal for a name. Without zsh
or fish their tests skip and say why; in CI (`CI=true`) they fail instead."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import claude_scheduler as cs

CliJson = Callable[..., Any]
PROG = cs.PROG
SHELL_WAIT_SECONDS = 30.0  # a deadline only: a wait ends as soon as the shell has answered


def shell(name: str) -> str:
    """The shell's path; skip without it, or fail in CI: a CI run that skipped it proved nothing."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (apt-get install {name})"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):  # as test_gui.py
            pytest.fail(f"the {name} completion tests must run in CI: {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture
def installed(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The installed command on PATH, as the completion scripts run it (at each Tab)."""
    command = tmp_path / "bin" / PROG
    command.parent.mkdir()
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{cs.__file__}" "$@"\n')
    command.chmod(0o755)
    monkeypatch.setenv("PATH", f"{command.parent}{os.pathsep}{os.environ['PATH']}")
    return command


@pytest.fixture
def records(installed: Path, tmp_path: Path, cli_json: CliJson) -> dict[str, str]:
    """Short ids by name: a job, three tasks, and a task in another data home ("elsewhere")."""
    job = cli_json("jobs", "create", "--name", "Nightly")
    ids = {"Nightly": job["id"], "elsewhere": str(tmp_path / "elsewhere")}
    ids["Review"] = cli_json("tasks", "create", "--name", "Review", "--prompt", "p", "--job", job["id"])["id"]
    for name in ("Release notes", "Other"):
        ids[name] = cli_json("tasks", "create", "--name", name, "--prompt", "p")["id"]
    ids["Elsewhere"] = cli_json(
        "tasks", "create", "--name", "Elsewhere", "--prompt", "p", "--home", ids["elsewhere"]
    )["id"]
    return {name: ident if name == "elsewhere" else ident[:8] for name, ident in ids.items()}


# bash


def completions(script: Path, *words: str) -> list[str]:
    shown = ", ".join(f'"{word}"' for word in words).replace(",", "")
    program = (
        f"source {script}; COMP_WORDS=({PROG} {shown}); "
        f"COMP_CWORD={len(words)}; _ccs_complete; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    assert done.stderr == ""
    return done.stdout.split()


def test_bash_completes_groups_verbs_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cs.main(["cli", "completion", "bash"]) == 0
    script = tmp_path / "ccs.bash"
    script.write_text(capsys.readouterr().out)
    assert completions(script, "cli", "jo") == ["jobs"]
    assert completions(script, "cli", "jobs", "d") == ["delete", "duplicate"]
    assert completions(script, "cli", "tasks", "create", "--ret") == ["--retries", "--retry-delay"]
    assert completions(script, "se") == ["serve"]


def test_complete_ids_offers_ids_by_id_or_name_and_never_makes_a_home(
    home: Path, cli_json: CliJson, capsys: pytest.CaptureFixture[str]
) -> None:
    def offered(*words: str) -> list[str]:
        capsys.readouterr()
        assert cs.main(["cli", "complete-ids", *words]) == 0
        return capsys.readouterr().out.splitlines()

    assert offered("tasks") == []
    assert not home.exists()
    job = cli_json("jobs", "create", "--name", "Nightly")
    review = cli_json("tasks", "create", "--name", "Review", "--prompt", "p", "--job", job["id"])
    release = cli_json("tasks", "create", "--name", "Release notes", "--prompt", "p")
    cli_json("tasks", "create", "--name", "Other", "--prompt", "p")
    run = cli_json("tasks", "run", review["id"], "--detach")

    assert sorted(offered("tasks", "--", "re")) == sorted([review["id"][:8], release["id"][:8]])
    assert offered("tasks", "--", review["id"][:3]) == [review["id"][:8]]
    assert offered("jobs", "--describe") == [f"{job['id'][:8]}\tNightly"]
    # as the scripts ask: options (the user's --home; --describe) before `-- WORD`
    assert offered("tasks", "--home", str(home), "--", "Rev") == [review["id"][:8]]
    assert offered("jobs", "--home", str(home), "--describe", "--", "ni") == [f"{job['id'][:8]}\tNightly"]
    assert offered("jobs", "--describe", "--", "x") == []
    # bash and zsh pass the word as typed, quoting and all
    for typed in ("Release\\ n", "'release n", '"Release notes"'):
        assert offered("tasks", "--", typed) == [release["id"][:8]]
    assert offered("runs") == [run["id"][:8]]
    assert offered("runs", "--", "Review") == []  # runs by id only
    capsys.readouterr()
    assert cs.main(["cli", "complete-ids", "things"]) == 1
    assert capsys.readouterr() == ("", "")  # a completion never prints errors into the shell


def test_bash_completes_ids_and_names_from_the_data_home(
    records: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cs.main(["cli", "completion", "bash"]) == 0
    script = tmp_path / "ccs.bash"
    script.write_text(capsys.readouterr().out)

    assert completions(script, "cli", "tasks", "get", "Rev") == [records["Review"]]
    assert completions(script, "cli", "tasks", "get", "Release\\ n") == [records["Release notes"]]
    assert completions(script, "cli", "tasks", "list", "--job", "") == [records["Nightly"]]
    assert completions(script, "cli", "tasks", "create", "--after", records["Review"][:2]) == [
        records["Review"]
    ]
    assert completions(script, "cli", "tasks", "get", "--js") == ["--json"]  # options as before
    elsewhere = ["--home", records["elsewhere"]]
    assert completions(script, "cli", *elsewhere, "tasks", "get", "") == [records["Elsewhere"]]
    assert completions(script, "cli", f"--home={records['elsewhere']}", "tasks", "run", "") == [
        records["Elsewhere"]
    ]
    missing = tmp_path / "missing"
    assert completions(script, "cli", "--home", str(missing), "jobs", "get", "") == []
    assert not missing.exists()


def test_each_shell_gets_its_script_from_the_same_table(capsys: pytest.CaptureFixture[str]) -> None:
    scripts = {}
    for name in ("bash", "zsh", "fish"):
        assert cs.main(["cli", "completion", name]) == 0
        scripts[name] = capsys.readouterr().out
    for path in ("cli runs", "cli tasks create", ""):
        words = " ".join(cs.completion_words()[path])
        assert f'["{f"top {path}".strip()}"]="{words}"' in scripts["bash"]
        assert f'["{f"top {path}".strip()}"]="{words}"' in scripts["zsh"]
        assert f"printf '%s\\n' {words}\n" in scripts["fish"]


# zsh and fish on a terminal


def tab_on_a_terminal(argv: list[str], setup: str, lines: list[str], answers: Path) -> list[str]:
    """Start an interactive shell on a terminal and run SETUP, which creates ANSWERS and binds
    ctrl-X to add the command line to it and clear it; then type each line, Tab and ctrl-X:
    each command line as the Tab left it."""
    main, child = os.openpty()
    process = subprocess.Popen(  # setsid -c: the terminal becomes the shell's own, as fish needs
        ["setsid", "-c", *argv], stdin=child, stdout=child, stderr=child, env={**os.environ, "TERM": "xterm"}
    )
    os.close(child)
    said = bytearray()

    def answered() -> list[str]:
        return answers.read_text().splitlines() if answers.exists() else []

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + SHELL_WAIT_SECONDS
        while len(answered()) < count and time.monotonic() < deadline and process.poll() is None:
            if select.select([main], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):  # the shell ended
                    said.extend(os.read(main, 65536))
        assert len(answered()) >= count, said.decode(errors="replace")[-2000:]

    try:
        os.write(main, setup.encode() + b"\n")
        wait_for(1)  # the setup's first line, "ready"
        for count, line in enumerate(lines, 2):
            os.write(main, line.encode() + b"\t\x18")
            wait_for(count)
        return answered()[1:]
    finally:
        process.kill()
        process.wait()
        os.close(main)


def zsh_tab(tmp_path: Path, *lines: str) -> list[tuple[str, list[str]]]:
    """Each line typed with a Tab in zsh set up as the README says (no rc files): the
    command line after the Tab, and what the completion offered."""
    answers, offered = tmp_path / "zsh-lines", tmp_path / "zsh-offered"
    setup = (
        f'eval "$({PROG} cli completion zsh)"; '
        # what the completion offers, written down as it is offered
        'compadd() { local -a __hits; builtin compadd -O __hits "$@"; '
        f'print -rl -- "${{__hits[@]}}" >> {offered} && builtin compadd "$@" }}; '
        f'ccs_line() {{ print -r -- "$BUFFER" >> {answers}; print -- --- >> {offered}; BUFFER=; }}; '
        f"zle -N ccs_line; bindkey '^X' ccs_line; echo ready > {answers}"
    )
    found = tab_on_a_terminal([shell("zsh"), "-f", "-i"], setup, list(lines), answers)
    shown = offered.read_text().split("---\n")
    return [(line, sorted(shown[at].split())) for at, line in enumerate(found)]


def test_zsh_completes_words_ids_and_names(records: dict[str, str], tmp_path: Path) -> None:
    review, release, elsewhere = records["Review"], records["Release notes"], records["elsewhere"]
    expected = {  # typed after the command -> (offered, the line after the Tab)
        "cli jo": (["jobs"], "cli jobs "),
        "cli jobs d": (["delete", "duplicate"], "cli jobs d"),
        "cli tasks create --ret": (["--retries", "--retry-delay"], "cli tasks create --retr"),
        "se": (["serve"], "serve "),
        "cli tasks get Rev": ([review], f"cli tasks get {review} "),
        "cli tasks get Release\\ n": ([release], f"cli tasks get {release} "),
        "cli tasks list --job ": ([records["Nightly"]], f"cli tasks list --job {records['Nightly']} "),
        f"cli tasks create --after {review[:3]}": ([review], f"cli tasks create --after {review} "),
        "cli tasks get --js": (["--json"], "cli tasks get --json "),
        f"cli --home {elsewhere} tasks run ": (
            [records["Elsewhere"]],
            f"cli --home {elsewhere} tasks run {records['Elsewhere']} ",
        ),
        f"cli --home={elsewhere} tasks run E": (
            [records["Elsewhere"]],
            f"cli --home={elsewhere} tasks run {records['Elsewhere']} ",
        ),
        "cli tasks run Els": ([], "cli tasks run Els"),  # not in this data home
    }
    found = zsh_tab(tmp_path, *(f"{PROG} {typed}" for typed in [*expected, "cli tasks get re"]))
    assert dict(zip(expected, found[:-1], strict=True)) == {
        typed: (f"{PROG} {line}", sorted(offered)) for typed, (offered, line) in expected.items()
    }
    line, offered = found[-1]  # two names: listed with them, the first id in place of the word
    assert offered == sorted([review, release])
    assert line in (f"{PROG} cli tasks get {review}", f"{PROG} cli tasks get {release}")  # Tab: the next


# fish


def fish_quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_offers(*lines: str) -> list[list[str]]:
    """What fish offers on Tab after each line, set up as the README says: each candidate with
    its description after a tab."""
    asked = "; ".join(f"complete -C {fish_quoted(line)}; echo ---" for line in lines)
    program = f"{PROG} cli completion fish | source; {asked}"
    done = subprocess.run(
        [shell("fish"), "--no-config", "-c", program], capture_output=True, text=True, check=True
    )
    assert done.stderr == ""  # the script says nothing into the shell
    return [sorted(found.splitlines()) for found in done.stdout.split("---\n")[:-1]]


def test_fish_completes_words_and_ids_with_their_names(records: dict[str, str]) -> None:
    review, release = f"{records['Review']}\tReview", f"{records['Release notes']}\tRelease notes"
    elsewhere = f"{records['Elsewhere']}\tElsewhere"
    expected = {  # typed after the command -> what is offered
        "cli jo": ["jobs"],
        "cli jobs d": ["delete", "duplicate"],
        "cli tasks create --ret": ["--retries", "--retry-delay"],
        "se": ["serve"],
        "cli tasks get Rev": [review],  # fish matches the name shown, and puts the id in its place
        "cli tasks get re": sorted([release, review]),
        "cli tasks get 'Release n": [release],
        "cli tasks list --job ": [f"{records['Nightly']}\tNightly"],  # and no files
        f"cli tasks create --after {records['Review'][:3]}": [review],
        "cli tasks get --js": ["--json"],
        f"cli --home {records['elsewhere']} tasks run ": [elsewhere],
        f"cli --home={records['elsewhere']} tasks run E": [elsewhere],
        "cli tasks run Els": [],  # not in this data home
    }
    found = fish_offers(*(f"{PROG} {typed}" for typed in expected))
    assert dict(zip(expected, found, strict=True)) == expected
    assert "cli" in fish_offers(f"{PROG} ")[0]


def test_fish_completes_a_name_to_its_id_on_a_terminal(records: dict[str, str], tmp_path: Path) -> None:
    answers = tmp_path / "fish-lines"
    setup = (
        f"{PROG} cli completion fish | source; "
        f"bind \\cx 'commandline >> {answers}; commandline \"\"'; echo ready > {answers}"
    )
    typed = [f"{PROG} cli tasks get Rev", f"{PROG} cli jobs run nig", f"{PROG} cli tasks run Release\\ n"]
    found = tab_on_a_terminal([shell("fish"), "--no-config", "-i"], setup, typed, answers)
    assert found == [
        f"{PROG} cli tasks get {records['Review']} ",
        f"{PROG} cli jobs run {records['Nightly']} ",
        f"{PROG} cli tasks run {records['Release notes']} ",
    ]
