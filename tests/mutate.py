"""A sampled mutation run: how many one-line changes to the module do the tests catch?

Not run by CI (it takes a while). For each section of `claude_scheduler.py` (store, engine,
service, API, CLI, cron) it samples one-line mutants with a fixed seed (a flipped comparison,
`and`/`or`, `True`/`False`, a dropped `not`, `+ 1`/`- 1`, a replaced return value, a statement
replaced by `pass`), keeps only those that still parse, writes each into a fresh temp copy of
the project (the working tree is never changed) and runs the section's test files against it.
A failing test or a timeout catches the mutant. It prints a table per section and the diffs of
the survivors, and writes every result to a JSON file; `--only-survivors FILE` runs again only
the survivors recorded there (after tests were added for them).

    python3 tests/mutate.py --per-section 20 --seed 10 --out /tmp/mutants.json
    python3 tests/mutate.py --only-survivors /tmp/mutants.json --out /tmp/mutants2.json
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = "claude_scheduler.py"

# Section name -> (first line that starts it, first line that ends it) in the module.
SECTION_MARKERS = {
    "store": ("# Store ####", "# Engine ####"),
    "engine": ("# Engine ####", "# Notifications ####"),
    "service": ("# Service operations", "# Desktop integration"),
    "api": ("# HTTP API ####", "# CLI ####"),
    "cli": ("# CLI ####", "# GUI ####"),
    "cron": ("# Schedule computations", "# Job progress and status"),
}

# Section name -> the test files that pin its behaviour (measured: where its mutants fail).
SECTION_TESTS = {
    "store": ["test_store.py", "test_hardening.py", "test_model.py", "test_durability.py"],
    "engine": [
        "test_engine.py",
        "test_exec.py",
        "test_pipelines.py",
        "test_hardening.py",
        "test_cli_runs.py::test_recovery_ends_many_orphans_together_not_one_grace_period_after_another",
        "test_signals.py::test_a_task_that_fails_on_denials_fails_naming_the_refused_calls",
    ],
    "service": [
        "test_cli.py",
        "test_notify.py",
        "test_bundles.py",
        "test_doctor.py",
        "test_gui.py::test_each_task_shows_its_recent_runs_as_a_strip",
        "test_engine.py::test_an_engine_owner_whose_pid_was_reused_reads_as_not_running",
        "test_api.py",
        "test_pipelines.py",
    ],
    "api": ["test_api.py", "test_cli_api.py"],
    "cli": [
        "test_cli.py",
        "test_cli_people.py",
        "test_options.py",
        "test_notify.py",
        "test_bundles.py",
        "test_doctor.py",
        "test_desktop.py",
        "test_cli_api.py",
        "test_cli_runs.py::test_a_foreground_runs_watchdog_ends_with_the_run",
        "test_cli_runs.py::test_a_foreground_run_sets_the_hold_and_one_during_it_warns_then_runs",
        "test_cli_runs.py::test_a_ctrl_c_at_the_terminal_leaves_the_watchdog_to_end_the_run_if_the_cli_then_dies",
    ],
    "cron": [
        "test_cron.py",
        "test_model.py",
        "test_cli.py::test_schedule_texts_read_like_the_schedule",
        "test_cli_people.py::test_a_run_queued_with_no_engine_expires_at_its_start_by_time_and_says_why",
    ],
}

BUNDLE_ZIP = "for index, (old_id, data) in enumerate(zip(old_ids, items, strict=True)):"

# Mutants that change no behaviour, keyed by (section, function, stripped original line, mutation): why.
EQUIVALENT: dict[tuple[str, str, str, str], str] = {
    ("store", "process_alive", "if not pid or pid <= 0:", "or -> and"): (
        "every caller passes a pid parsed from digits (>= 0), where both forms agree"
    ),
    ("store", "encode", "if key == self._keyed and isinstance(value, dict):", "== -> !="): (
        "the keyed map written entry by entry or whole is the same JSON (only non-ASCII escaping differs)"
    ),
    ("engine", "_group_has_live_member", "return True", "True -> False"): (
        "not reachable on Linux, where the tests run: /proc can always be listed (the branch is for"
        " systems without /proc)"
    ),
    (
        "engine",
        "_run",
        "assert proc.stdin and proc.stdout and proc.stderr  # all three are PIPE",
        "and -> or",
    ): ("an assert for the type checker on pipes that are always set"),
    (
        "engine",
        "_argv_value",
        "return argv[index + 1] if 0 <= index < len(argv) - 1 else None",
        "- 1 -> + 1",
    ): ("the scheduler writes --model and its value itself, so --model is never the last word"),
    (
        "cron",
        "_first_fire_on_day",
        "if best is not None and _wall_to_utc(wall, largest) >= best:",
        ">= -> >",
    ): "a pruning bound: on a tie the loop looks at one more wall time, whose instants cannot beat best",
    ("store", "encode", "if key == self._keyed and isinstance(value, dict):", "and -> or"): (
        "another dict written entry by entry is the same JSON as written whole"
    ),
    ("engine", "_run", "killed = _terminate_group(proc, limits) if stopped else False", "False -> True"): (
        "`killed` is read only when the session was stopped"
    ),
    (
        "service",
        "_order_jobs",
        "for index, (job, data) in enumerate(zip(self.jobs, items, strict=True)):",
        "True -> False",
    ): "self.jobs is made one job per item, so the lengths always agree",
    **{
        ("service", function, BUNDLE_ZIP, "True -> False"): (
            "_bundle_ids gives exactly one id per item (or refuses), so the lengths always agree"
        )
        for function in ("_read_jobs", "_read_tasks")
    },
}

COMPARISONS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
KEYWORDS = {"and": "or", "or": "and", "True": "False", "False": "True"}
PER_MUTANT_TIMEOUT = 300.0


@dataclass
class Mutant:
    section: str
    line: int  # 1-based line number in the module
    original: str  # the whole original line
    mutated: str  # the whole mutated line
    operator: str  # e.g. "< -> <=", "delete", "return None"
    function: str = ""  # the innermost function holding the line
    status: str = "pending"  # caught, survived, timeout, equivalent, gone
    seconds: float = 0.0
    failed: str = ""  # the first failing test, when caught

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.section, self.function, self.original.strip(), self.operator)


def section_ranges(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Section name -> (first, last) 1-based line numbers."""
    ranges = {}
    for name, (start, end) in SECTION_MARKERS.items():
        first = next(i for i, text in enumerate(lines, 1) if text.startswith(start))
        last = next(i for i, text in enumerate(lines, 1) if i > first and text.startswith(end))
        ranges[name] = (first, last - 1)
    return ranges


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _is_logging(node: ast.stmt) -> bool:
    """`logger().warning(...)` and the like: a line that only logs."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    func = node.value.func
    if not isinstance(func, ast.Attribute):
        return False
    owner = func.value
    return isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "logger"


def _statements(tree: ast.Module) -> Iterator[ast.stmt]:
    """Every statement inside a function body, innermost included."""
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.stmt) and node is not func:
                    yield node


def mutable_lines(tree: ast.Module) -> tuple[set[int], set[int]]:
    """Lines whose tokens may be mutated, and single-line simple statements that may be deleted."""
    token_lines: set[int] = set()
    deletable: set[int] = set()
    skipped: set[int] = set()
    for node in _statements(tree):
        end = node.end_lineno or node.lineno
        if _is_docstring(node) or _is_logging(node):
            skipped.update(range(node.lineno, end + 1))
            continue
        compound = hasattr(node, "body")
        if compound:
            token_lines.add(node.lineno)  # its header: `if a < b:`, `while not done:`
            continue
        token_lines.update(range(node.lineno, end + 1))
        if end == node.lineno and not isinstance(node, ast.Pass | ast.Global | ast.Nonlocal):
            deletable.add(node.lineno)
    return token_lines - skipped, deletable - skipped


def token_mutations(source: str, lines: set[int]) -> Iterator[tuple[int, int, int, str, str]]:
    """(line, start col, end col, replacement, operator) for each mutable token on those lines."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for index, token in enumerate(tokens):
        row, col = token.start
        if row not in lines or token.end[0] != row:
            continue
        text = token.string
        if token.type == tokenize.OP and text in COMPARISONS:
            yield row, col, token.end[1], COMPARISONS[text], f"{text} -> {COMPARISONS[text]}"
        elif token.type == tokenize.NAME and text in KEYWORDS:
            yield row, col, token.end[1], KEYWORDS[text], f"{text} -> {KEYWORDS[text]}"
        elif token.type == tokenize.NAME and text == "not":
            after = tokens[index + 1]
            if after.start[0] == row:
                yield row, col, after.start[1], "", "drop not"
        elif token.type == tokenize.OP and text in "+-" and index + 1 < len(tokens):
            after = tokens[index + 1]
            before = tokens[index - 1]
            binary = before.type in (tokenize.NAME, tokenize.NUMBER) or before.string in ")]"
            if binary and after.type == tokenize.NUMBER and after.string == "1" and after.start[0] == row:
                swapped = "-" if text == "+" else "+"
                yield row, col, token.end[1], swapped, f"{text} 1 -> {swapped} 1"
        elif token.type == tokenize.NAME and text == "return" and index + 1 < len(tokens):
            after = tokens[index + 1]
            if after.type not in (tokenize.NEWLINE, tokenize.COMMENT) and after.string != "None":
                end = _statement_end(tokens, index)
                if end is not None and end[0] == row:
                    yield row, after.start[1], end[1], "None", "return None"


def _statement_end(tokens: list[tokenize.TokenInfo], index: int) -> tuple[int, int] | None:
    """Where the statement that starts at tokens[index] ends (before its comment)."""
    end = None
    for token in tokens[index + 1 :]:
        if token.type in (tokenize.NEWLINE, tokenize.COMMENT):
            return end
        end = token.end
    return end


def functions(tree: ast.Module) -> Callable[[int], str]:
    """line -> the name of the innermost function holding it."""
    spans = sorted(
        ((node.lineno, node.end_lineno or node.lineno, node.name) for node in ast.walk(tree)
         if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)),
        key=lambda span: span[1] - span[0],
    )  # fmt: skip
    return lambda row: next((name for first, last, name in spans if first <= row <= last), "")


def candidates(source: str) -> dict[str, list[Mutant]]:
    """Every one-line mutant of each section (not yet checked to parse)."""
    lines = source.splitlines()
    tree = ast.parse(source)
    token_lines, deletable = mutable_lines(tree)
    ranges = section_ranges(lines)
    found: dict[str, list[Mutant]] = {name: [] for name in ranges}

    def section_of(row: int) -> str | None:
        return next((name for name, (a, b) in ranges.items() if a <= row <= b), None)

    function_of = functions(tree)

    for row, start, end, new, operator in token_mutations(source, token_lines):
        name = section_of(row)
        if name is not None:
            text = lines[row - 1]
            mutated = text[:start] + new + text[end:]
            found[name].append(Mutant(name, row, text, mutated, operator, function_of(row)))
    for row in sorted(deletable):
        name = section_of(row)
        if name is not None:
            text = lines[row - 1]
            indent = text[: len(text) - len(text.lstrip())]
            found[name].append(Mutant(name, row, text, indent + "pass", "delete", function_of(row)))
    return found


def apply(lines: list[str], mutant: Mutant) -> str:
    changed = list(lines)
    changed[mutant.line - 1] = mutant.mutated
    return "\n".join(changed) + "\n"


def parses(source: str, lines: list[str], mutant: Mutant) -> bool:
    """Whether the top-level definition holding the mutant still parses (the whole file is slow)."""
    first, last = _enclosing_definition(source, mutant.line)
    block = list(lines[first - 1 : last])
    block[mutant.line - first] = mutant.mutated
    try:
        ast.parse("\n".join(block))
    except SyntaxError:
        return False
    return True


_DEFINITIONS: dict[int, list[tuple[int, int]]] = {}


def _enclosing_definition(source: str, row: int) -> tuple[int, int]:
    spans = _DEFINITIONS.get(id(source))
    if spans is None:
        spans = []
        for node in ast.parse(source).body:
            decorators = [d.lineno for d in getattr(node, "decorator_list", [])]
            spans.append((min([node.lineno, *decorators]), node.end_lineno or node.lineno))
        _DEFINITIONS[id(source)] = spans
    return next(span for span in spans if span[0] <= row <= span[1])


def family(operator: str) -> str:
    """Operators are drawn by family, or statement deletions would crowd out the rest."""
    first = operator.split()[0]
    if first in COMPARISONS:
        return "comparison"
    if first in KEYWORDS:
        return "boolean" if first in ("and", "or") else "constant"
    return {"+": "arithmetic", "-": "arithmetic"}.get(first, operator)


FAMILY_WEIGHTS = {"delete": 2}  # a deleted statement is the commonest slip; every other family counts 1


def sample(source: str, per_section: int, seed: int, sections: list[str]) -> list[Mutant]:
    """`per_section` mutants of each section that parse, drawn with `seed`."""
    lines = source.splitlines()
    chosen: list[Mutant] = []
    for name, pool in candidates(source).items():
        if name not in sections:
            continue
        rng = random.Random(f"{seed}:{name}")
        families: dict[str, list[Mutant]] = {}
        for mutant in pool:
            families.setdefault(family(mutant.operator), []).append(mutant)
        for members in families.values():
            rng.shuffle(members)
        taken: list[Mutant] = []
        while len(taken) < per_section and any(families.values()):
            keys = [key for key, value in sorted(families.items()) if value]
            members = families[rng.choices(keys, [FAMILY_WEIGHTS.get(key, 1) for key in keys])[0]]
            mutant = members.pop()
            if parses(source, lines, mutant):
                taken.append(mutant)
        chosen.extend(sorted(taken, key=lambda m: m.line))
    return chosen


def relocate(mutant: Mutant, lines: list[str]) -> bool:
    """Find the mutant's line again in a module that may have moved; False if it is gone."""
    if 0 < mutant.line <= len(lines) and lines[mutant.line - 1] == mutant.original:
        return True
    places = [i for i, text in enumerate(lines, 1) if text == mutant.original]
    if not places:
        return False
    mutant.line = min(places, key=lambda i: abs(i - mutant.line))
    return True


COPY_SKIPS = (".git", "__pycache__", ".*_cache", ".benchmarks", "*.egg-info", "build", "dist")


def copy_project(mutant_text: str) -> Path:
    """A fresh copy of the project holding the mutant (fresh, so no stale bytecode can be
    imported; whole, as tests read the README and run the module as an executable)."""
    where = Path(tempfile.mkdtemp(prefix="ccs-mutant-")) / "project"
    shutil.copytree(ROOT, where, ignore=shutil.ignore_patterns(*COPY_SKIPS))
    (where / MODULE).write_text(mutant_text, encoding="utf-8")
    shutil.copymode(ROOT / MODULE, where / MODULE)
    return where


def run_tests(project: Path, files: list[str], timeout: float) -> tuple[str, str]:
    """('passed' | 'failed' | 'timeout', the first failing test)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(project)  # the mutant, not any installed copy
    env.pop("PYTEST_ADDOPTS", None)
    command = ["nice", "-n", "10", sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["--basetemp", str(project / "pytest-tmp"), *(f"tests/{name}" for name in files)]
    process = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return "timeout", ""
    finally:
        _kill_leftovers(process.pid)
    if process.returncode == 0:
        return "passed", ""
    failed = next((line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR tests"))), "")
    last = output.strip().splitlines()[-1:] or ["no output"]
    return "failed", failed or last[0]


def _kill_leftovers(group: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def run_mutant(mutant: Mutant, lines: list[str], timeout: float) -> Mutant:
    if mutant.key in EQUIVALENT:
        mutant.status, mutant.seconds, mutant.failed = "equivalent", 0.0, ""
        return mutant
    project = copy_project(apply(lines, mutant))
    started = time.monotonic()
    try:
        outcome, failed = run_tests(project, SECTION_TESTS[mutant.section], timeout)
    finally:
        shutil.rmtree(project.parent, ignore_errors=True)
    mutant.seconds = round(time.monotonic() - started, 1)
    mutant.status = {"passed": "survived", "failed": "caught", "timeout": "timeout"}[outcome]
    mutant.failed = failed
    return mutant


def baseline(sections: list[str], timeout: float) -> bool:
    """The unmutated module must pass each section's tests, or every mutant would look caught."""
    source = (ROOT / MODULE).read_text(encoding="utf-8")
    files = sorted({name for section in sections for name in SECTION_TESTS[section]})
    project = copy_project(source)
    try:
        outcome, failed = run_tests(project, files, timeout * 3)
    finally:
        shutil.rmtree(project.parent, ignore_errors=True)
    if outcome != "passed":
        print(f"baseline {outcome}: {failed}", file=sys.stderr)
    return outcome == "passed"


def report(mutants: list[Mutant]) -> str:
    rows = ["section   sampled  equivalent  caught  survived  score"]
    totals = [0, 0, 0, 0]
    for name in SECTION_MARKERS:
        mine = [m for m in mutants if m.section == name]
        if not mine:
            continue
        counts = _counts(mine)
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        rows.append(_row(name, *counts))
    rows.append(_row("overall", *totals))
    for mutant in mutants:
        if mutant.status == "survived":
            rows.append(f"\nsurvived: {mutant.section} line {mutant.line} ({mutant.operator})")
            rows.append(f"-{mutant.original}\n+{mutant.mutated}")
        elif mutant.status == "gone":
            rows.append(f"\ngone (line changed): {mutant.section} {mutant.original.strip()}")
    return "\n".join(rows)


def _counts(mutants: list[Mutant]) -> list[int]:
    caught = sum(m.status in ("caught", "timeout") for m in mutants)
    equivalent = sum(m.status == "equivalent" for m in mutants)
    survived = sum(m.status == "survived" for m in mutants)
    return [len(mutants), equivalent, caught, survived]


def _row(name: str, sampled: int, equivalent: int, caught: int, survived: int) -> str:
    changing = sampled - equivalent
    score = f"{100 * caught / changing:.0f} %" if changing else "-"
    return f"{name:<9} {sampled:>7} {equivalent:>11} {caught:>7} {survived:>9}  {score:>5}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-section", type=int, default=20, help="mutants sampled per section")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--sections", default=",".join(SECTION_MARKERS), help="comma-separated")
    parser.add_argument("--out", default="mutants.json", help="where the results are written")
    parser.add_argument("--only-survivors", metavar="FILE", help="run again the survivors in FILE")
    parser.add_argument("--jobs", type=int, default=2, help="mutants at once (at most 2)")
    parser.add_argument("--timeout", type=float, default=PER_MUTANT_TIMEOUT, help="seconds per mutant")
    parser.add_argument("--list", action="store_true", help="print the sampled mutants and stop")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--lines", help="only the mutants on these module lines (comma-separated)")
    parser.add_argument("--tests", help="run these test files or ids instead of the section's")
    args = parser.parse_args(argv)
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    source = (ROOT / MODULE).read_text(encoding="utf-8")
    lines = source.splitlines()
    mutants = _load_or_sample(args, source, sections, lines)
    if args.list:
        for mutant in mutants:
            print(f"{mutant.section:<8} {mutant.line:>6} {mutant.operator:<12} {mutant.mutated.strip()}")
        return 0
    if not args.no_baseline and not baseline(sorted({m.section for m in mutants}), args.timeout):
        return 2
    if args.lines:
        wanted = {int(n) for n in args.lines.split(",")}
        mutants = [m for m in mutants if m.line in wanted]
    if args.tests:
        for name in SECTION_TESTS:
            SECTION_TESTS[name] = args.tests.split(",")
    todo = [m for m in mutants if m.status != "gone"]
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, min(args.jobs, 2))) as pool:
        for mutant in pool.map(lambda m: run_mutant(m, lines, args.timeout), todo):
            done += 1
            print(f"[{done}/{len(todo)}] {mutant.status:<10} {mutant.seconds:>6}s {mutant.section} "
                  f"{mutant.line} {mutant.operator}", flush=True)  # fmt: skip
            Path(args.out).write_text(json.dumps([asdict(m) for m in mutants], indent=1), encoding="utf-8")
    Path(args.out).write_text(json.dumps([asdict(m) for m in mutants], indent=1), encoding="utf-8")
    print(report(mutants))
    return 0


def _load_or_sample(
    args: argparse.Namespace, source: str, sections: list[str], lines: list[str]
) -> list[Mutant]:
    if not args.only_survivors:
        return sample(source, args.per_section, args.seed, sections)
    recorded = [Mutant(**item) for item in json.loads(Path(args.only_survivors).read_text(encoding="utf-8"))]
    mutants = [m for m in recorded if m.status in ("survived", "gone") and m.section in sections]
    function_of = functions(ast.parse(source))
    for mutant in mutants:
        mutant.status = "pending" if relocate(mutant, lines) else "gone"
        mutant.function = function_of(mutant.line)
    return mutants


if __name__ == "__main__":
    sys.exit(main())
