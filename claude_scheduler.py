#!/usr/bin/env python3
"""claude-code-scheduler: run unattended Claude Code sessions on a schedule, keep every run.

Work is organised as Job -> Task -> Run, kept as JSON files in one data home that the
window, the command line and the local REST API share.

    claude_scheduler.py                      open the window (same as `gui`)
    claude_scheduler.py serve [--port N]     headless: scheduler engine + REST API
    claude_scheduler.py cli jobs list        command line (`cli --help` lists the verbs)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import functools
import itertools
import json
import math
import os
import re
import shutil
import sys
import threading
import time
import typing
import urllib.parse
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from http import HTTPStatus
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

if TYPE_CHECKING:
    # Imported where they are used, so a CLI call that lists jobs does not pay for the
    # HTTP stack, subprocesses, signals or logging (a fresh process's start-up is budgeted).
    import http.client
    import http.server
    import logging
    import queue
    import subprocess

    # The window imports tkinter when it opens: some Pythons ship without it.
    import tkinter as tk
    from tkinter import font as tkfont
    from tkinter import ttk
    from types import FrameType, TracebackType
    from zoneinfo import ZoneInfo

    from _typeshed import SupportsWrite

__version__ = "0.1.0"
__all__ = ["__version__", "main"]

JSON = Any  # the one alias for values that cross the JSON boundary
JSONDict = dict[str, JSON]
Clock = Callable[[], datetime]


LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
# Into the systemd journal: a syslog priority first, no time (the journal adds its own).
JOURNAL_LOG_FORMAT = "<%(priority)d>%(message)s"
JOURNAL_ENV = "JOURNAL_STREAM"  # set by systemd to the device:inode of the journal's stream
SYSLOG_PRIORITIES = {50: 2, 40: 3, 30: 4, 20: 6, 10: 7}  # logging's levels -> crit, err, warning, info, debug
LOG_LEVELS = (30, 20, 10)  # logging's WARNING, INFO and DEBUG, for -v counts 0, 1 and 2
_log_level: int | None = None  # set by `main`; None when the module is used as a library
_log_file: str | None = None  # set by `main` from `serve --log-file`


@functools.cache
def logger() -> logging.Logger:
    """The module's logger. logging is imported on first use, as most CLI calls never log;
    under `main`, logging is then set up to print to stderr at the level main chose, in
    the journal's format when stderr is the systemd journal (a `serve` run as a service)."""
    import logging

    if _log_level is not None and _log_file is None and _stderr_is_journal():
        handler = logging.StreamHandler()
        handler.addFilter(_with_syslog_priority)
        handler.setFormatter(logging.Formatter(JOURNAL_LOG_FORMAT))
        logging.basicConfig(level=_log_level, handlers=[handler])
    elif _log_level is not None:
        # A no-op if already set up; `serve --log-file` (the Windows login task) logs to a file.
        logging.basicConfig(level=_log_level, format=LOG_FORMAT, filename=_log_file)
    return logging.getLogger("claude_scheduler")


def _stderr_is_journal() -> bool:
    """Whether stderr is the stream systemd names in $JOURNAL_STREAM (not merely inherited
    by a process whose stderr went elsewhere)."""
    try:
        status = os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no stderr, or one without a descriptor
        return False
    return os.environ.get(JOURNAL_ENV) == f"{status.st_dev}:{status.st_ino}"


def _with_syslog_priority(record: logging.LogRecord) -> bool:
    record.priority = SYSLOG_PRIORITIES.get(record.levelno, SYSLOG_PRIORITIES[20])
    return True


####
# Constants ####
####

HOME_ENV = "CLAUDE_SCHEDULER_HOME"
API_ENV = "CLAUDE_SCHEDULER_API"
CLAUDE_ENV = "CLAUDE_SCHEDULER_CLAUDE"
RUN_ID_ENV = "CLAUDE_SCHEDULER_RUN_ID"  # set on each session: finds its processes (Linux)
DEFAULT_HOME = "~/.claude-scheduler"
APP_ID = "claude-code-scheduler"
APP_NAME = "Claude Code Scheduler"
APP_COMMENT = "Run unattended Claude Code sessions on a schedule"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5679
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

STORE_VERSION = 1
JOBS_FILE = "jobs.json"
TASKS_FILE = "tasks.json"
STATE_FILE = "state.json"
TASK_INDEX = "task_index"  # state.json's copy of each task's job, see Store.statuses_by_job
SETTINGS_FILE = "settings.json"
NOTIFY_FILE = "notifications.json"  # mode 0600: webhook secrets
NOTIFY_HISTORY_FILE = "notify-history.json"
NOTIFY_LOCK_FILE = ".notify.lock"  # the history's own lock: a delivery never waits on the store's
DESKTOP_MANIFEST = "desktop-install.json"  # what `desktop install` wrote
SERVICE_MANIFEST = "service-install.json"  # what `service install` wrote
TOKEN_FILE = "api-token"
LOCK_FILE = ".lock"
ENGINE_LOCK_FILE = "engine.lock"
RUNS_DIR = "runs"
LOGS_DIR = "logs"
HOME_MARKER = ".claude-scheduler-home"  # marks a folder as a data home (see Store.__init__)
HOME_NAMES = frozenset(
    {
        JOBS_FILE,
        TASKS_FILE,
        STATE_FILE,
        SETTINGS_FILE,
        NOTIFY_FILE,
        NOTIFY_HISTORY_FILE,
        NOTIFY_LOCK_FILE,
        DESKTOP_MANIFEST,
        SERVICE_MANIFEST,
        TOKEN_FILE,
        LOCK_FILE,
        ENGINE_LOCK_FILE,
        RUNS_DIR,
        LOGS_DIR,
    }
)
# Names specific enough to show that a folder not yet marked is a data home made before
# the marker was: not the generic `runs`, `logs` or `settings.json`.
HOME_EVIDENCE = frozenset({JOBS_FILE, TASKS_FILE, STATE_FILE, TOKEN_FILE, LOCK_FILE, ENGINE_LOCK_FILE})
HOME_IGNORED = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # made by file browsers
# A temp file of atomic_write: ".<name>.<pid>.<thread>.tmp", name being a store file's.
TEMP_NAME_RE = r"\.(?P<name>[^/]+)\.(?P<pid>\d+)\.\d+\.tmp"

NAME_MAX = 200
TEXT_MAX = 100_000
PROMPT_MAX = 1_000_000
PATH_MAX = 4096
LIST_MAX = 200
ID_PREFIX_LEN = 8
MIN_INTERVAL_SECONDS = 60
MAX_INTERVAL_SECONDS = 366 * 86400
TIMEOUT_MAX = 7 * 86400
MAX_TURNS_MAX = 10_000
MAX_BUDGET_USD = 100_000.0
RETRY_MAX = 100
RETRY_DELAY_MAX = 86400
DEBOUNCE_MAX = 3600
PREVIEW_MAX = 100
DEFAULT_PREVIEW = 5
DEFAULT_DEBOUNCE = 5.0
DEFAULT_TIMEOUT = 1800
DEFAULT_MODEL = "sonnet"
GRACE_MAX_SECONDS = 12 * 3600
ENV_NAME_MAX = 200
# Times outside these bounds are refused where they enter: near year 1 or 9999 the date
# arithmetic of schedules and local-time display overflows.
TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(9000, 1, 1, tzinfo=UTC)

DEFAULT_SETTINGS: JSONDict = {
    "claude_path": None,
    "max_concurrent_runs": 2,
    "retention_runs": 100,
    "start_by_minutes": 10,
}
SETTING_RULES: dict[str, tuple[type, int, int]] = {
    "max_concurrent_runs": (int, 1, 64),
    "retention_runs": (int, 1, 100_000),
    "start_by_minutes": (int, 1, 7 * 24 * 60),
}

####
# Errors ####
####


class SchedulerError(Exception):
    """Base of every error a person should see; each front end translates it once."""

    http_status = 500
    exit_code = 1
    code = "error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


class NotFound(SchedulerError):
    http_status = 404
    code = "not_found"


class Invalid(SchedulerError):
    http_status = 422
    code = "invalid"


class BadRequest(SchedulerError):
    """A request that cannot be understood: HTTP 400, and a usage error (exit 2) on the CLI."""

    http_status = 400
    exit_code = 2
    code = "bad_request"


class Conflict(SchedulerError):
    http_status = 409
    code = "conflict"


class StorageError(SchedulerError):
    """A store file cannot be read or written; the file is left exactly as it is."""

    http_status = 503
    code = "storage_error"


class ApiUnreachable(SchedulerError):
    exit_code = 3
    code = "api_unreachable"


####
# Model ####
####


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class JobRunStatus(enum.StrEnum):
    """How one run of a whole job stands; once it ends, steps that did not run are `not_run`."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"  # the process that drove it died (see recover_job_runs)
    SKIPPED = "skipped"  # a fire that did not start one (its `note` says why)
    MISSED = "missed"  # fires while no engine ran
    DEFERRED = "deferred"  # fires held back by a usage-limit hold (see Engine._defer_job)
    EXPIRED = "expired"  # asked for while no engine ran, and none started it in time (Run.start_by)


class PermissionMode(enum.StrEnum):
    DEFAULT = "default"
    ACCEPT_EDITS = "acceptEdits"
    AUTO = "auto"
    BYPASS = "bypassPermissions"
    DONT_ASK = "dontAsk"
    PLAN = "plan"


# What each mode lets a session do, in a few words (CLI help, the window, the API doc).
PERMISSION_MODE_HELP: dict[PermissionMode, str] = {
    PermissionMode.DEFAULT: "reads only: any other tool not pre-approved is denied, as nobody can be asked",
    PermissionMode.ACCEPT_EDITS: "also edits files and runs simple file commands (mkdir, mv, cp...)",
    PermissionMode.AUTO: "a classifier approves or blocks each action",
    PermissionMode.BYPASS: "everything, unchecked (refused when running as root)",
    PermissionMode.DONT_ASK: "denies whatever is not pre-approved: the one for unattended runs",
    PermissionMode.PLAN: "reads and plans, changes nothing",
}


class SessionMode(enum.StrEnum):
    NEW = "new"
    RESUME = "resume"
    PREVIOUS = "previous"  # a job step continues the session of the step before it


class Overlap(enum.StrEnum):
    SKIP = "skip"
    QUEUE = "queue"
    PARALLEL = "parallel"


class CatchUp(enum.StrEnum):
    SKIP = "skip"
    ONCE = "once"


class AfterWhen(enum.StrEnum):
    """Which ends of the task named in run_after start this one."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failed, timed out or interrupted
    ANY = "any"


class StepFailure(enum.StrEnum):
    """What a job run does after this task's step fails (its retries, if any, come first)."""

    STOP = "stop"
    CONTINUE = "continue"
    RETRY = "retry"  # retry per the retry policy (at least once), then stop


class ScheduleType(enum.StrEnum):
    MANUAL = "manual"
    ONCE = "once"
    INTERVAL = "interval"
    CRON = "cron"
    STARTUP = "startup"
    FILE_WATCH = "file_watch"


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    MISSED = "missed"
    DEFERRED = "deferred"  # fires held back by a usage-limit hold (see Engine._defer)
    INTERRUPTED = "interrupted"


class FailureKind(enum.StrEnum):
    """Why a run failed, told apart so people (and retries, and the engine's hold) can act."""

    USAGE_LIMIT = "usage_limit"  # the account's plan limit (session, weekly...): wait for the reset
    RATE_LIMIT = "rate_limit"  # the API answered 429 after claude's own retries
    AUTH = "auth"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    CONNECTION = "connection"
    BILLING = "billing"
    INVALID_REQUEST = "invalid_request"
    BUDGET = "budget"
    MAX_TURNS = "max_turns"
    MISSING_SESSION = "missing_session"
    PERMISSION_DENIED = "permission_denied"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    NOT_STARTED = "not_started"
    EXPIRED = "expired"  # queued while no engine ran, and none started it in time (Run.start_by)
    ERROR = "error"


class Trigger(enum.StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    CATCH_UP = "catch_up"
    STARTUP = "startup"
    FILE_WATCH = "file_watch"
    JOB = "job"
    RETRY = "retry"
    API = "api"
    CLI = "cli"
    TASK = "task"  # another task finished (run_after)


# Runs a person asked for: queued while no engine runs, they expire (see Run.start_by).
ASKED_TRIGGERS = frozenset({Trigger.MANUAL, Trigger.CLI, Trigger.API})
ACTIVE_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
# Runs that never started say nothing about how the task is doing (nor does a run
# cancelled while queued: see Run.tells_how_the_task_does).
NON_EXECUTIONS = frozenset({RunStatus.SKIPPED, RunStatus.MISSED, RunStatus.DEFERRED})
FINISHED_STATUSES = frozenset(RunStatus) - ACTIVE_STATUSES


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    import uuid

    return str(uuid.uuid4())


def fmt_time(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds, the one stored form of every timestamp."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _to_ms(moment: datetime) -> datetime:
    """`moment` cut to the milliseconds `fmt_time` keeps."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_time(text: str, field: str, tz: ZoneInfo | None = None) -> datetime:
    """Parse ISO 8601; a time without an offset is read in `tz` (default: local time).
    Raises Invalid for a time before TIME_MIN or from TIME_MAX on."""
    moment: datetime | None
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz) if tz else moment.astimezone()
        if moment.tzinfo is not UTC:  # the stored form already is: thousands per store
            moment = moment.astimezone(UTC)
    except ValueError:
        raise Invalid(f"{text!r} is not an ISO 8601 date and time", field) from None
    except (OverflowError, OSError):  # an offset or local time past year 1 or 9999
        moment = None
    if moment is None or not TIME_MIN <= moment < TIME_MAX:
        raise Invalid(f"{text!r} is out of range (years {TIME_MIN.year} to {TIME_MAX.year - 1})", field)
    return moment


UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(text: str) -> bool:
    """Whether `text` is a UUID in its canonical 8-4-4-4-12 form."""
    return UUID_RE.fullmatch(text) is not None


def local_zone_name() -> str:
    """The machine's IANA zone name: $TZ, /etc/localtime's target, /etc/timezone, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        target = os.readlink("/etc/localtime")
        candidates.append(target.split("zoneinfo/", 1)[-1])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    for name in candidates:
        if name and _zone_or_none(name):
            return name
    return "UTC"


def _zone_or_none(name: str) -> ZoneInfo | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def get_zone(name: str | None, field: str = "schedule.timezone") -> ZoneInfo:
    zone = _zone_or_none(name or local_zone_name())
    if zone is None:
        raise Invalid(f"unknown time zone {name!r} (use an IANA name like Europe/Amsterdam)", field)
    return zone


# Field readers: each takes the raw JSON value and the dotted field name, and either
# returns a clean value or raises Invalid naming the field and the rule.


def read_str(value: JSON, field: str, *, max_len: int = TEXT_MAX, required: bool = False) -> str:
    if value is None:
        if required:
            raise Invalid("is required", field)
        return ""
    if not isinstance(value, str):
        raise Invalid("must be a string", field)
    if not value.isascii() and not _is_unicode(value):
        raise Invalid("must be text: it holds bytes that are not UTF-8", field)
    if "\0" in value:  # a process start refuses it in argv and env, and no text needs it
        raise Invalid("must not contain a NUL character", field)
    text: str = value.strip() if max_len <= NAME_MAX else value
    if required and not text.strip():
        raise Invalid("is required and must not be empty", field)
    if len(text) > max_len:
        raise Invalid(f"must be at most {max_len} characters (got {len(text)})", field)
    return text


def _is_unicode(text: str) -> bool:
    """False for text with lone surrogates: bytes that were not UTF-8, smuggled through
    argv, stdin or a JSON escape. They cannot be written to a file."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_opt_str(value: JSON, field: str, max_len: int = TEXT_MAX) -> str | None:
    return read_str(value, field, max_len=max_len) or None


def read_int(value: JSON, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid("must be a whole number", field)
    if isinstance(value, float) and not value.is_integer():
        raise Invalid("must be a whole number", field)
    if not lo <= value <= hi:
        raise Invalid(f"must be between {lo} and {hi} (got {value:g})", field)
    return int(value)


def read_opt_int(value: JSON, field: str, lo: int, hi: int) -> int | None:
    return None if value is None else read_int(value, field, lo, hi)


def read_float(value: JSON, field: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise Invalid("must be a number", field)
    if not lo <= value <= hi:
        raise Invalid(f"must be between {lo:g} and {hi:g} (got {value:g})", field)
    return float(value)


def read_bool(value: JSON, field: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be true or false", field)
    return value


E = TypeVar("E", bound=enum.StrEnum)


def read_enum(value: JSON, field: str, kind: type[E]) -> E:
    member: E | None = enum_members(kind).get(value) if isinstance(value, str) else None
    if member is None:
        choices = ", ".join(member.value for member in kind)
        raise Invalid(f"must be one of {choices} (got {value!r})", field)
    return member


@functools.cache
def enum_members(kind: type[E]) -> dict[str, E]:
    """Each member by its value: looked up several times faster than `kind(value)`, and a
    store holds thousands (each task's last status in state.json, each run's)."""
    return {member.value: member for member in kind}


def read_str_list(value: JSON, field: str, *, max_len: int = NAME_MAX) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Invalid("must be a list of strings", field)
    if len(value) > LIST_MAX:
        raise Invalid(f"must have at most {LIST_MAX} items", field)
    return [read_str(item, f"{field}[{n}]", max_len=max_len, required=True) for n, item in enumerate(value)]


def read_budget(value: JSON, field: str) -> float | None:
    """A spending cap in US dollars: None, or a number above 0."""
    if value is None:
        return None
    amount = read_float(value, field, -math.inf, math.inf)
    if not 0 < amount <= MAX_BUDGET_USD:
        raise Invalid(f"must be more than 0 and at most {MAX_BUDGET_USD:g} (got {value:g})", field)
    return amount


def read_argv_text(value: JSON, field: str, max_len: int = TEXT_MAX, *, plain: bool = False) -> str | None:
    """Optional text that goes into claude's argv, where a NUL byte cannot go; `plain`
    also refuses a leading '-' (a name or path that claude would read as an option)."""
    text = read_opt_str(value, field, max_len)
    if text:
        _check_argv_value(text, field, plain=plain)
    return text


def read_tool_rules(value: JSON, field: str) -> list[str]:
    """A list of tool rules, each item split at its top-level commas like the CLI's and the
    window's text (`Bash(git log, git diff),Read` is two rules in every door)."""
    items = read_str_list(value, field)
    return [rule for n, item in enumerate(items) for rule in split_tool_rules(item, f"{field}[{n}]")]


def read_argv_list(value: JSON, field: str, max_len: int = NAME_MAX, *, plain: bool = False) -> list[str]:
    items = read_str_list(value, field, max_len=max_len)
    for n, item in enumerate(items):
        _check_argv_value(item, f"{field}[{n}]", plain=plain)
    return items


def _check_argv_value(text: str, field: str, *, plain: bool) -> None:
    if plain and text.startswith("-"):
        raise Invalid(f"must not start with '-' (got {text!r}): claude would read it as an option", field)


def split_tool_rules(text: str, field: str) -> list[str]:
    """Comma-separated tool rules as people type them, in every door that takes text;
    commas inside parentheses stay (`Bash(git log, git diff)` is one rule). Raises
    Invalid naming `field` for unbalanced parentheses."""
    rules, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise Invalid(f"{text!r} has a ')' without its '('", field)
        if char == "," and depth == 0:
            rules.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise Invalid(f"{text!r} has a '(' that is not closed", field)
    return [rule.strip() for rule in [*rules, current] if rule.strip()]


def split_words(text: str, field: str) -> list[str]:
    """Arguments typed as in a shell (quotes group, backslashes escape), in every door
    that takes them as text. Raises Invalid naming `field` for an unclosed quote."""
    import shlex

    try:
        return shlex.split(text)
    except ValueError as error:
        raise Invalid(f"{text!r} cannot be split into arguments: {error}", field) from None


# The claude options that `extra_args` may not hold: the scheduler's own (output,
# sessions), and those with a task field of their own, named with the CLI's option.
_FIELD_OF_OPTION: dict[str, tuple[str, str]] = {
    "--model": ("model", "--model"),
    "--permission-mode": ("permission_mode", "--permission-mode"),
    "--dangerously-skip-permissions": ("permission_mode bypassPermissions", "--permission-mode"),
    "--allowedTools": ("allowed_tools", "--allowed-tools"),
    "--allowed-tools": ("allowed_tools", "--allowed-tools"),
    "--disallowedTools": ("disallowed_tools", "--disallowed-tools"),
    "--disallowed-tools": ("disallowed_tools", "--disallowed-tools"),
    "--max-turns": ("max_turns", "--max-turns"),
    "--max-budget-usd": ("max_budget_usd", "--max-budget-usd"),
    "--fallback-model": ("fallback_model", "--fallback-model"),
    "--add-dir": ("add_dirs", "--add-dir"),
    "--mcp-config": ("mcp_config", "--mcp-config"),
    "--strict-mcp-config": ("strict_mcp_config", "--strict-mcp-config"),
    "--system-prompt": ("system_prompt", "--system-prompt"),
    "--append-system-prompt": ("append_system_prompt", "--append-system-prompt"),
}
_SET_EACH_RUN = "is set by the scheduler for every run"
_SESSIONS = "is set by the scheduler: sessions follow session_mode (--session-mode)"
OWNED_CLAUDE_OPTIONS: dict[str, str] = {
    **dict.fromkeys(("-p", "--print", "--output-format", "--input-format", "--verbose"), _SET_EACH_RUN),
    **dict.fromkeys(("-r", "--resume", "-c", "--continue", "--session-id", "--fork-session"), _SESSIONS),
    **{
        name: f"has its own setting: use {key} ({option})" for name, (key, option) in _FIELD_OF_OPTION.items()
    },
    "--": "would end claude's options (the prompt goes on standard input)",
}


# The claude options (of those extra_args may hold) that take a value.
CLAUDE_VALUE_OPTIONS = frozenset(
    {"--effort", "--settings", "--setting-sources", "--tools", "--agents", "--json-schema"}
)


def read_extra_args(value: JSON, field: str) -> list[str]:
    """More claude arguments, passed as given; refuses the options in OWNED_CLAUDE_OPTIONS
    (short ones also when joined to a value or to other flags, as `-rID` or `-pc`)."""
    args = read_argv_list(value, field, max_len=TEXT_MAX)
    if args and not args[0].startswith("-"):
        # claude would take a leading bare word as the prompt, in place of the task's own
        raise Invalid(f"must start with an option such as --effort (got {args[0]!r})", f"{field}[0]")
    for n, arg in enumerate(args):
        name = arg.partition("=")[0] if arg.startswith("--") else arg[:2]
        if name in OWNED_CLAUDE_OPTIONS:
            raise Invalid(f"{name} {OWNED_CLAUDE_OPTIONS[name]}", f"{field}[{n}]")
    return args


def check_option_values(args: list[str], field: str) -> None:
    """Refuse an option of CLAUDE_VALUE_OPTIONS given without its value: claude would
    fail at every run. Checked on input only, so a task stored before still loads."""
    for n, arg in enumerate(args):
        if arg in CLAUDE_VALUE_OPTIONS and (n + 1 == len(args) or args[n + 1].startswith("-")):
            raise Invalid(f"{arg} needs a value after it, as in '{arg} VALUE'", f"{field}[{n}]")


def read_env(value: JSON, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("must be an object of NAME: value strings", field)
    if len(value) > LIST_MAX:
        raise Invalid(f"must have at most {LIST_MAX} variables", field)
    env: dict[str, str] = {}
    for name, text in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise Invalid(f"{name!r} is not a valid environment variable name", field)
        if len(name) > ENV_NAME_MAX:
            raise Invalid(f"{name[:20]!r}... is longer than {ENV_NAME_MAX} characters", field)
        env[name] = read_str(text, f"{field}.{name}", max_len=PATH_MAX * 8)
    return env


def read_time(value: JSON, field: str, *, required: bool = False) -> datetime | None:
    if value is None or value == "":
        if required:
            raise Invalid("is required", field)
        return None
    if not isinstance(value, str):
        raise Invalid("must be an ISO 8601 date and time string", field)
    return parse_time(value, field)


def read_id(value: JSON, field: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise Invalid("is required", field)
        return None
    if not isinstance(value, str) or not is_uuid(value):
        raise Invalid(f"must be a UUID (got {value!r})", field)
    return value


def require_object(value: JSON, field: str | None = None) -> JSONDict:
    if not isinstance(value, dict):
        raise Invalid("must be a JSON object", field)
    return value


def split_known(
    data: JSONDict,
    known: Iterable[str],
    *,
    strict: bool,
    ignored: Iterable[str] = (),
    prefix: str = "",
) -> JSONDict:
    """Return the fields a record does not know (kept, so a rewrite preserves them); on
    user input (strict) they are an error naming the field with its parent `prefix`."""
    names = set(known) | set(ignored)
    extra = {key: value for key, value in data.items() if key not in names}
    if strict and extra:
        name = f"{prefix}.{sorted(extra)[0]}" if prefix else sorted(extra)[0]
        raise Invalid(f"unknown field (known fields: {', '.join(sorted(known))})", name)
    return {} if strict else extra


@dataclass
class Schedule:
    """When a task fires. Only the fields of its `type` are meaningful and stored."""

    type: ScheduleType = ScheduleType.MANUAL
    at: datetime | None = None
    every_seconds: int | None = None
    anchor: datetime | None = None
    expression: str | None = None
    timezone: str | None = None
    path: str | None = None
    recursive: bool = True
    debounce_seconds: float = DEFAULT_DEBOUNCE
    extra: JSONDict = field(default_factory=dict)

    FIELDS: ClassVar[dict[ScheduleType, tuple[str, ...]]] = {
        ScheduleType.MANUAL: (),
        ScheduleType.ONCE: ("at",),
        ScheduleType.INTERVAL: ("every_seconds", "anchor"),
        ScheduleType.CRON: ("expression", "timezone"),
        ScheduleType.STARTUP: (),
        ScheduleType.FILE_WATCH: ("path", "recursive", "debounce_seconds"),
    }

    @classmethod
    def from_dict(cls, data: JSON, *, strict: bool = False, field: str = "schedule") -> Schedule:
        data = require_object({"type": "manual"} if data is None else data, field)
        kind = read_enum(data.get("type"), f"{field}.type", ScheduleType)
        # Fields of the other kinds are dropped; fields no kind knows are kept (from files).
        other_kinds = () if strict else (name for names in cls.FIELDS.values() for name in names)
        extra = split_known(
            data, ("type", *cls.FIELDS[kind]), strict=strict, ignored=other_kinds, prefix=field
        )
        schedule = _SCHEDULE_READERS[kind](data, field)
        schedule.extra = extra
        return schedule

    def to_dict(self) -> JSONDict:
        out: JSONDict = {**self.extra, "type": self.type.value}
        for name in self.FIELDS[self.type]:
            value = getattr(self, name)
            out[name] = fmt_time(value) if isinstance(value, datetime) else value
        return out

    @property
    def is_timed(self) -> bool:
        return self.type in (ScheduleType.ONCE, ScheduleType.INTERVAL, ScheduleType.CRON)


def _read_once(data: JSONDict, field: str) -> Schedule:
    return Schedule(ScheduleType.ONCE, at=read_time(data.get("at"), f"{field}.at", required=True))


def _read_interval(data: JSONDict, field: str) -> Schedule:
    every = read_int(
        data.get("every_seconds"), f"{field}.every_seconds", MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS
    )
    anchor = read_time(data.get("anchor"), f"{field}.anchor")
    return Schedule(ScheduleType.INTERVAL, every_seconds=every, anchor=anchor)


def _read_cron(data: JSONDict, field: str) -> Schedule:
    expression = read_str(data.get("expression"), f"{field}.expression", max_len=NAME_MAX, required=True)
    cron_spec(expression.strip(), f"{field}.expression")
    zone = read_opt_str(data.get("timezone"), f"{field}.timezone", NAME_MAX)
    if zone:
        get_zone(zone, f"{field}.timezone")
    return Schedule(ScheduleType.CRON, expression=expression.strip(), timezone=zone)


def _read_watch(data: JSONDict, field: str) -> Schedule:
    path = read_str(data.get("path"), f"{field}.path", max_len=PATH_MAX, required=True)
    recursive = read_bool(data.get("recursive", True), f"{field}.recursive")
    debounce = read_float(
        data.get("debounce_seconds", DEFAULT_DEBOUNCE), f"{field}.debounce_seconds", 0, DEBOUNCE_MAX
    )
    return Schedule(ScheduleType.FILE_WATCH, path=path, recursive=recursive, debounce_seconds=debounce)


_SCHEDULE_READERS: dict[ScheduleType, Callable[[JSONDict, str], Schedule]] = {
    ScheduleType.MANUAL: lambda data, field: Schedule(ScheduleType.MANUAL),
    ScheduleType.ONCE: _read_once,
    ScheduleType.INTERVAL: _read_interval,
    ScheduleType.CRON: _read_cron,
    ScheduleType.STARTUP: lambda data, field: Schedule(ScheduleType.STARTUP),
    ScheduleType.FILE_WATCH: _read_watch,
}


@dataclass
class RetryPolicy:
    """How the engine retries a failed or timed-out run: up to `max_attempts` more times,
    the first after `delay_seconds`, each next wait `backoff` times longer."""

    max_attempts: int = 0
    delay_seconds: int = 60
    backoff: float = 2.0
    extra: JSONDict = field(default_factory=dict)

    KNOWN: ClassVar[tuple[str, ...]] = ("max_attempts", "delay_seconds", "backoff")

    @classmethod
    def from_dict(cls, data: JSON, *, strict: bool = False, field: str = "retry") -> RetryPolicy:
        data = require_object({} if data is None else data, field)
        return cls(
            read_int(data.get("max_attempts", 0), f"{field}.max_attempts", 0, RETRY_MAX),
            read_int(data.get("delay_seconds", 60), f"{field}.delay_seconds", 0, RETRY_DELAY_MAX),
            read_float(data.get("backoff", 2.0), f"{field}.backoff", 1.0, 10.0),
            split_known(data, cls.KNOWN, strict=strict, prefix=field),
        )

    def to_dict(self) -> JSONDict:
        return {
            **self.extra,
            "max_attempts": self.max_attempts,
            "delay_seconds": self.delay_seconds,
            "backoff": self.backoff,
        }

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (the first retry is attempt 2)."""
        return float(self.delay_seconds * self.backoff ** max(attempt - 2, 0))


def _stamp(data: JSONDict, name: str) -> datetime:
    return read_time(data.get(name), name, required=True) or utcnow()


@dataclass
class Job:
    """A group of tasks with an order, a default working folder and a stored status."""

    id: str
    name: str
    description: str = ""
    status: JobStatus = JobStatus.PENDING
    working_directory: str | None = None
    task_order: list[str] = field(default_factory=list)
    # When the whole job runs as one job run (its tasks keep their own schedules too).
    schedule: Schedule = field(default_factory=Schedule)
    overlap: Overlap = Overlap.SKIP  # skip or queue: a job has one job run at a time
    catch_up: CatchUp = CatchUp.ONCE
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    extra: JSONDict = field(default_factory=dict)

    EDITABLE: ClassVar[tuple[str, ...]] = (
        "name",
        "description",
        "status",
        "working_directory",
        "task_order",
        "schedule",
        "overlap",
        "catch_up",
    )
    READ_ONLY: ClassVar[tuple[str, ...]] = (
        "id",
        "created_at",
        "updated_at",
        "progress",
        "tasks",
        "totals",
        "next_run_at",
        "schedule_text",
    )

    @classmethod
    def from_dict(cls, data: JSON) -> Job:
        data = require_object(data)
        order = read_str_list(data.get("task_order"), "task_order")
        for n, task_id in enumerate(order):
            read_id(task_id, f"task_order[{n}]")
        return cls(
            id=read_id(data.get("id"), "id", required=True) or "",
            name=read_str(data.get("name"), "name", max_len=NAME_MAX, required=True),
            description=read_str(data.get("description"), "description"),
            status=read_enum(data.get("status", "pending"), "status", JobStatus),
            working_directory=read_opt_str(data.get("working_directory"), "working_directory", PATH_MAX),
            task_order=order,
            schedule=Schedule.from_dict(data.get("schedule")),
            overlap=_job_overlap(data.get("overlap", "skip")),
            catch_up=read_enum(data.get("catch_up", "once"), "catch_up", CatchUp),
            created_at=_stamp(data, "created_at"),
            updated_at=_stamp(data, "updated_at"),
            extra=split_known(data, cls.EDITABLE + cls.READ_ONLY, strict=False),
        )

    def to_dict(self) -> JSONDict:
        return {
            **self.extra,
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "status": self.status.value,
            "working_directory": self.working_directory,
            "task_order": list(self.task_order),
            "schedule": self.schedule.to_dict(),
            "overlap": self.overlap.value,
            "catch_up": self.catch_up.value,
            "created_at": fmt_time(self.created_at),
            "updated_at": fmt_time(self.updated_at),
        }


def _job_overlap(value: JSON) -> Overlap:
    overlap = read_enum(value, "overlap", Overlap)
    if overlap is Overlap.PARALLEL:
        raise Invalid("a job runs one job run at a time: skip or queue", "overlap")
    return overlap


@dataclass
class Task:
    """A prompt with its Claude settings and a schedule; `job_id` None: in no job."""

    id: str
    name: str
    prompt: str
    job_id: str | None = None
    model: str = DEFAULT_MODEL
    permission_mode: PermissionMode = PermissionMode.DEFAULT
    working_directory: str | None = None
    allowed_tools: list[str] = field(default_factory=list)
    disallowed_tools: list[str] = field(default_factory=list)
    max_turns: int | None = None
    append_system_prompt: str | None = None
    system_prompt: str | None = None  # replaces Claude's own; append_system_prompt still adds
    max_budget_usd: float | None = None
    fallback_model: str | None = None
    add_dirs: list[str] = field(default_factory=list)
    mcp_config: str | None = None
    strict_mcp_config: bool = False
    extra_args: list[str] = field(default_factory=list)
    session_mode: SessionMode = SessionMode.NEW
    timeout_seconds: int = DEFAULT_TIMEOUT
    schedule: Schedule = field(default_factory=Schedule)
    enabled: bool = True
    overlap: Overlap = Overlap.SKIP
    catch_up: CatchUp = CatchUp.ONCE
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    env: dict[str, str] = field(default_factory=dict)
    fail_on_permission_denials: bool = False  # a run whose tool calls were refused counts as failed
    on_failure: StepFailure = StepFailure.STOP  # as a step of a job run
    skip_in_job: bool = False  # kept in its job, not run in job runs
    run_after: JSONDict | None = None  # {"task_id", "when"}: run when that task finishes
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    extra: JSONDict = field(default_factory=dict)
    # Derived by the engine and kept in state.json, never in tasks.json.
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_run_status: RunStatus | None = None
    last_session_id: str | None = None
    next_run_for: str | None = field(default=None, compare=False, repr=False)  # see `fire_state`

    EDITABLE: ClassVar[tuple[str, ...]] = (
        "job_id",
        "name",
        "prompt",
        "model",
        "permission_mode",
        "working_directory",
        "allowed_tools",
        "disallowed_tools",
        "max_turns",
        "append_system_prompt",
        "system_prompt",
        "max_budget_usd",
        "fallback_model",
        "add_dirs",
        "mcp_config",
        "strict_mcp_config",
        "extra_args",
        "session_mode",
        "timeout_seconds",
        "schedule",
        "enabled",
        "overlap",
        "catch_up",
        "retry",
        "env",
        "fail_on_permission_denials",
        "on_failure",
        "skip_in_job",
        "run_after",
    )
    DERIVED: ClassVar[tuple[str, ...]] = (
        "next_run_at",
        "last_run_at",
        "last_run_status",
        "last_session_id",
    )
    READ_ONLY: ClassVar[tuple[str, ...]] = (
        "id",
        "created_at",
        "updated_at",
        "schedule_text",
        "totals",
        *DERIVED,
    )

    @classmethod
    def from_dict(cls, data: JSON, *, strict: bool = False) -> Task:
        """Build and validate a task; `strict` (user input) also rejects unknown fields."""
        data = require_object(data)
        get = data.get
        return cls(
            id=read_id(get("id"), "id", required=True) or "",
            job_id=read_id(get("job_id"), "job_id"),
            name=read_str(get("name"), "name", max_len=NAME_MAX, required=True),
            prompt=read_str(get("prompt"), "prompt", max_len=PROMPT_MAX, required=True),
            model=read_str(get("model") or DEFAULT_MODEL, "model", max_len=NAME_MAX, required=True),
            permission_mode=read_enum(get("permission_mode", "default"), "permission_mode", PermissionMode),
            working_directory=read_opt_str(get("working_directory"), "working_directory", PATH_MAX),
            allowed_tools=read_tool_rules(get("allowed_tools"), "allowed_tools"),
            disallowed_tools=read_tool_rules(get("disallowed_tools"), "disallowed_tools"),
            max_turns=read_opt_int(get("max_turns"), "max_turns", 1, MAX_TURNS_MAX),
            append_system_prompt=read_opt_str(get("append_system_prompt"), "append_system_prompt"),
            system_prompt=read_argv_text(get("system_prompt"), "system_prompt"),
            max_budget_usd=read_budget(get("max_budget_usd"), "max_budget_usd"),
            fallback_model=read_argv_text(get("fallback_model"), "fallback_model", NAME_MAX, plain=True),
            add_dirs=read_argv_list(get("add_dirs"), "add_dirs", PATH_MAX, plain=True),
            mcp_config=read_argv_text(get("mcp_config"), "mcp_config", PATH_MAX, plain=True),
            strict_mcp_config=read_bool(get("strict_mcp_config", False), "strict_mcp_config"),
            extra_args=read_extra_args(get("extra_args"), "extra_args"),
            session_mode=read_enum(get("session_mode", "new"), "session_mode", SessionMode),
            timeout_seconds=read_int(
                get("timeout_seconds", DEFAULT_TIMEOUT), "timeout_seconds", 1, TIMEOUT_MAX
            ),
            schedule=Schedule.from_dict(get("schedule"), strict=strict),
            enabled=read_bool(get("enabled", True), "enabled"),
            overlap=read_enum(get("overlap", "skip"), "overlap", Overlap),
            catch_up=read_enum(get("catch_up", "once"), "catch_up", CatchUp),
            retry=RetryPolicy.from_dict(get("retry"), strict=strict),
            env=read_env(get("env"), "env"),
            fail_on_permission_denials=read_bool(
                get("fail_on_permission_denials", False), "fail_on_permission_denials"
            ),
            on_failure=read_enum(get("on_failure", "stop"), "on_failure", StepFailure),
            skip_in_job=read_bool(get("skip_in_job", False), "skip_in_job"),
            run_after=read_run_after(get("run_after")),
            created_at=_stamp(data, "created_at"),
            updated_at=_stamp(data, "updated_at"),
            extra=split_known(data, cls.EDITABLE + cls.READ_ONLY, strict=False),
        )

    def to_dict(self, *, derived: bool = True) -> JSONDict:
        out: JSONDict = {
            **self.extra,
            "id": self.id,
            "job_id": self.job_id,
            "name": self.name,
            "prompt": self.prompt,
            "model": self.model,
            "permission_mode": self.permission_mode.value,
            "working_directory": self.working_directory,
            "allowed_tools": list(self.allowed_tools),
            "disallowed_tools": list(self.disallowed_tools),
            "max_turns": self.max_turns,
            "append_system_prompt": self.append_system_prompt,
            "system_prompt": self.system_prompt,
            "max_budget_usd": self.max_budget_usd,
            "fallback_model": self.fallback_model,
            "add_dirs": list(self.add_dirs),
            "mcp_config": self.mcp_config,
            "strict_mcp_config": self.strict_mcp_config,
            "extra_args": list(self.extra_args),
            "session_mode": self.session_mode.value,
            "timeout_seconds": self.timeout_seconds,
            "schedule": self.schedule.to_dict(),
            "enabled": self.enabled,
            "overlap": self.overlap.value,
            "catch_up": self.catch_up.value,
            "retry": self.retry.to_dict(),
            "env": dict(self.env),
            "fail_on_permission_denials": self.fail_on_permission_denials,
            "on_failure": self.on_failure.value,
            "skip_in_job": self.skip_in_job,
            "run_after": dict(self.run_after) if self.run_after else None,
            "created_at": fmt_time(self.created_at),
            "updated_at": fmt_time(self.updated_at),
        }
        if derived:
            out.update(self.derived_dict())
            out["schedule_text"] = describe_schedule(self.schedule)
        return out

    def derived_dict(self) -> JSONDict:
        return {
            "next_run_at": fmt_time(self.next_run_at),
            "last_run_at": fmt_time(self.last_run_at),
            "last_run_status": self.last_run_status.value if self.last_run_status else None,
            "last_session_id": self.last_session_id,
        }

    def apply_derived(self, state: JSONDict) -> None:
        """Copy the engine's derived fields from a state.json entry (already validated)."""
        self.next_run_at = read_time(state.get("next_run_at"), "next_run_at")
        self.last_run_at = read_time(state.get("last_run_at"), "last_run_at")
        status = state.get("last_run_status")
        self.last_run_status = RunStatus(status) if status else None
        self.last_session_id = state.get("last_session_id")
        self.next_run_for = state.get("next_run_for")

    @functools.cached_property
    def schedule_key(self) -> str:
        """A short fingerprint of the schedule (records are replaced, never changed in place)."""
        import zlib

        text = json.dumps(self.schedule.to_dict(), sort_keys=True)
        return f"{zlib.crc32(text.encode()):08x}"

    @property
    def fire_time(self) -> datetime | None:
        """`next_run_at` when it was computed for this schedule (or by a version that did
        not say); None when another schedule's time was left by a save that failed
        half-way, which the engine then derives again."""
        if self.next_run_for is not None and self.next_run_for != self.schedule_key:
            return None
        return self.next_run_at


def fire_state(task: Task, upcoming: datetime | None) -> JSONDict:
    """A task's next fire time as state.json keeps it: with the schedule it was computed
    for, as the task's save and this one's are two writes (see `Task.fire_time`)."""
    return {"next_run_at": fmt_time(upcoming), "next_run_for": task.schedule_key}


def read_run_after(value: JSON) -> JSONDict | None:
    """A task trigger: {"task_id": ID, "when": succeeded | failed | any}, or None."""
    if value is None:
        return None
    data = require_object(value, "run_after")
    split_known(data, ("task_id", "when"), strict=True, prefix="run_after")
    task_id = read_id(data.get("task_id"), "run_after.task_id", required=True)
    when = read_enum(data.get("when", AfterWhen.SUCCEEDED.value), "run_after.when", AfterWhen)
    return {"task_id": task_id, "when": when.value}


# The run statuses each `run_after.when` starts on (a stopped run starts nothing).
AFTER_STATUSES = {
    AfterWhen.SUCCEEDED: frozenset({RunStatus.SUCCESS}),
    AfterWhen.FAILED: frozenset({RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.INTERRUPTED}),
    AfterWhen.ANY: frozenset({RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.INTERRUPTED}),
}


def after_chain(task_id: str, run_after: Mapping[str, str | None]) -> list[str]:
    """The tasks `task_id` waits on, nearest first, following run_after (each task's
    upstream in `run_after`); it stops at the first task seen twice."""
    chain: list[str] = []
    current = run_after.get(task_id)
    while current and current not in chain:
        chain.append(current)
        current = run_after.get(current)
    return chain


_WHOLE = ((int,), "a whole number")
_TEXT = ((str,), "a string")
RUN_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "exit_code": _WHOLE,
    "attempt": _WHOLE,
    "session_id": _TEXT,
    "model": _TEXT,
    "cost_usd": ((int, float), "a number"),
    "input_tokens": _WHOLE,
    "output_tokens": _WHOLE,
    "num_turns": _WHOLE,
    "result": _TEXT,
    "error": _TEXT,
    "pid": _WHOLE,
    "owner": _TEXT,
    "stop_requested": ((bool,), "true or false"),
    "missed_count": _WHOLE,
    "job_run_id": _TEXT,
    "failure_kind": _TEXT,
    "cache_read_tokens": _WHOLE,
    "cache_creation_tokens": _WHOLE,
    "model_usage": ((dict,), "an object"),
    "permission_denials": ((list,), "a list"),
    "session_duration_ms": _WHOLE,
}


@dataclass
class Run:
    """One `claude -p` session of a task: its status, timing, cost and outcome."""

    id: str
    task_id: str
    status: RunStatus = RunStatus.QUEUED
    trigger: Trigger = Trigger.MANUAL
    created_at: datetime = field(default_factory=utcnow)
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    attempt: int = 1
    session_id: str | None = None
    model: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    num_turns: int | None = None
    result: str | None = None
    error: str | None = None
    pid: int | None = None
    owner: str | None = None
    stop_requested: bool = False
    missed_count: int | None = None
    job_run_id: str | None = None
    # How claude's session went, beyond the status: see StreamParser.
    failure_kind: str | None = None
    limit_resets_at: datetime | None = None
    cache_read_tokens: int | None = None  # part of input_tokens, which counts all input
    cache_creation_tokens: int | None = None  # part of input_tokens too
    model_usage: JSONDict | None = None
    permission_denials: list[JSONDict] | None = None
    session_duration_ms: int | None = None  # claude's own count; the wall time is duration_seconds
    # Asked for while no engine ran: recorded as expired if none has started it by then.
    start_by: datetime | None = None
    extra: JSONDict = field(default_factory=dict)

    TIMES: ClassVar[tuple[str, ...]] = (
        "created_at",
        "scheduled_for",
        "started_at",
        "finished_at",
        "limit_resets_at",
        "start_by",
    )
    PLAIN: ClassVar[tuple[str, ...]] = (
        "exit_code",
        "attempt",
        "session_id",
        "model",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "num_turns",
        "result",
        "error",
        "pid",
        "owner",
        "stop_requested",
        "missed_count",
        "job_run_id",
        "failure_kind",
        "cache_read_tokens",
        "cache_creation_tokens",
        "model_usage",
        "permission_denials",
        "session_duration_ms",
    )

    @classmethod
    def from_dict(cls, data: JSON) -> Run:
        """Read a stored run; values are checked for type, not re-validated for range."""
        data = require_object(data)
        run = cls(
            id=read_id(data.get("id"), "id", required=True) or "",
            task_id=read_id(data.get("task_id"), "task_id", required=True) or "",
            status=read_enum(data.get("status"), "status", RunStatus),
            trigger=read_enum(data.get("trigger", "manual"), "trigger", Trigger),
        )
        for name in cls.TIMES:
            setattr(run, name, read_time(data.get(name), name))
        run.created_at = run.created_at or run.started_at or utcnow()
        for name in cls.PLAIN:
            value = data.get(name)
            if value is not None:
                kinds, what = RUN_FIELD_TYPES[name]
                if isinstance(value, bool) is not (bool in kinds) or not isinstance(value, kinds):
                    raise Invalid(f"must be {what}", name)
                setattr(run, name, value)
        known = ("id", "task_id", "status", "trigger", *cls.TIMES, *cls.PLAIN, "duration_seconds")
        run.extra = split_known(data, known, strict=False)
        return run

    def to_dict(self) -> JSONDict:
        out: JSONDict = {**self.extra, "id": self.id, "task_id": self.task_id}
        out["status"] = self.status.value
        out["trigger"] = self.trigger.value
        for name in self.TIMES:
            out[name] = fmt_time(getattr(self, name))
        for name in self.PLAIN:
            out[name] = getattr(self, name)
        out["duration_seconds"] = self.duration_seconds
        return out

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def tells_how_the_task_does(self) -> bool:
        """False for runs that never started: skipped, missed, deferred, or cancelled while queued."""
        never_started = self.status is RunStatus.CANCELLED and self.started_at is None
        return self.status not in NON_EXECUTIONS and not never_started

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or utcnow()
        # Read to the stored milliseconds, so that a run held in memory and the same
        # run read back from the store say the same wall time.
        return round((_to_ms(end) - _to_ms(self.started_at)).total_seconds(), 3)


# Schedule computations: pure functions of the schedule and `now`.

# Cron: parsing, next fire times and plain-language reading. Pure functions, no I/O.

CRON_FIELD_COUNT = 5
CRON_FIELD_NAMES = "minute hour day-of-month month day-of-week"
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CRON_REBOOT_ALIAS = "@reboot"
MONTH_ABBREVIATIONS = (
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
)  # fmt: skip
WEEKDAY_ABBREVIATIONS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth")
DAYS_PER_WEEK = 7
MINUTES_PER_HOUR = 60
HOURS_PER_DAY = 24
MAX_DAYS_IN_MONTH = 31
FEBRUARY = 2
MAX_MONTH_LENGTHS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
FEBRUARY_LENGTHS = (28, 29)
# Saturday and Sunday step back to Friday for `LW` (cron weekdays: 0 = Sunday).
WEEKEND_STEP_BACK = {6: 1, 0: 2}
# The Gregorian calendar repeats every 400 years, so a spec that fires at all fires within it.
CRON_SEARCH_MONTHS = 12 * 401
# Longer digit strings are out of range anyway and int() refuses very long ones.
CRON_MAX_DIGITS = 9
MAX_LISTED_TIMES = 6
# Two values are enough for a minute step to read as a frequency (`*/30`: every 30 minutes).
MIN_STEPPED_MINUTES = 2
# Hours and days need three (`*/12` hours reads better as 00:00 and 12:00).
MIN_STEPPED_VALUES = 3
MIN_RUN_TO_COMPRESS = 3
ORDINAL_SUFFIXES = {1: "st", 2: "nd", 3: "rd"}
TEEN_ORDINALS = (11, 12, 13)

CRON_ITEM = r"(?:\*|\w+(?:-\w+)?)(?:/\w+)?"
CRON_NTH_WEEKDAY = r"(\w+)#(\w+)"
CRON_LAST_WEEKDAY = r"(?i)(\w+)L"
CRON_LAST_DAY = "L"
CRON_LAST_WORKDAY = "LW"


class CronField(typing.NamedTuple):
    """Bounds and names of one cron field; `implicit_high` ends `*` and `a/s` ranges."""

    name: str
    low: int
    high: int
    implicit_high: int
    names: tuple[str, ...] = ()
    first_name_value: int = 0
    wraps_to_zero: int | None = None


MINUTE_FIELD = CronField("minute", 0, 59, 59)
HOUR_FIELD = CronField("hour", 0, 23, 23)
DAY_OF_MONTH_FIELD = CronField("day-of-month", 1, 31, 31)
MONTH_FIELD = CronField("month", 1, 12, 12, MONTH_ABBREVIATIONS, 1)
DAY_OF_WEEK_FIELD = CronField("day-of-week", 0, 7, 6, WEEKDAY_ABBREVIATIONS, 0, DAYS_PER_WEEK)


class CronSpec(typing.NamedTuple):
    """A parsed cron expression; build it with `parse_cron`.

    Weekdays count from 0 = Sunday. `last_weekdays_in_month` holds the weekdays of `5L`
    items, `nth_weekdays_in_month` the (weekday, n) pairs of `MON#2` items. A field that
    starts with `*` is unrestricted; when day-of-month and day-of-week are both
    restricted a day matches if either does (Vixie rule), otherwise both must.
    `is_wildcard` marks Debian cron's wildcard jobs (minute or hour field starts with `*`):
    across DST changes they follow elapsed time, fixed-time jobs follow the wall clock.
    """

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    last_day_of_month: bool
    last_workday_of_month: bool
    last_weekdays_in_month: frozenset[int]
    nth_weekdays_in_month: frozenset[tuple[int, int]]
    dom_restricted: bool
    dow_restricted: bool
    is_wildcard: bool


def parse_cron(expression: str, field: str = "schedule.expression") -> CronSpec:
    """Parse a five-field cron expression or an `@alias`.

    Raises Invalid(message, field=field) whose message names the cron field and the
    rule broken, including for an expression that can never fire (`0 0 30 2 *`).
    """
    try:
        return _parse_cron_text(expression.strip())
    except Invalid as error:
        raise Invalid(error.message, field=field) from None


def _parse_cron_text(text: str) -> CronSpec:
    fields = _expand_cron_alias(text).split()
    if len(fields) != CRON_FIELD_COUNT:
        raise Invalid(f"expected 5 fields ({CRON_FIELD_NAMES}), got {len(fields)}")
    minute, hour, day_of_month, month, day_of_week = fields
    days, last_day, last_workday = _parse_days_of_month(day_of_month)
    weekdays, last_weekdays, nth_weekdays = _parse_days_of_week(day_of_week)
    spec = CronSpec(
        expression=text,
        minutes=_parse_cron_field(minute, MINUTE_FIELD),
        hours=_parse_cron_field(hour, HOUR_FIELD),
        days_of_month=days,
        months=_parse_cron_field(month, MONTH_FIELD),
        days_of_week=weekdays,
        last_day_of_month=last_day,
        last_workday_of_month=last_workday,
        last_weekdays_in_month=last_weekdays,
        nth_weekdays_in_month=nth_weekdays,
        dom_restricted=not day_of_month.startswith("*"),
        dow_restricted=not day_of_week.startswith("*"),
        is_wildcard=minute.startswith("*") or hour.startswith("*"),
    )
    _check_cron_fires(spec)
    return spec


def _expand_cron_alias(text: str) -> str:
    """The five fields `text` stands for: itself, or the expansion of its `@alias`."""
    if not text:
        raise Invalid("empty expression")
    if not text.startswith("@"):
        return text
    alias, *rest = text.split()
    key = alias.lower()
    if key == CRON_REBOOT_ALIAS:
        raise Invalid("@reboot is not supported; use the startup schedule type")
    if key not in CRON_ALIASES:
        raise Invalid(f"unknown alias {alias!r}; expected one of {', '.join(CRON_ALIASES)}")
    if rest:
        raise Invalid(f"alias {alias} cannot be followed by other fields")
    return CRON_ALIASES[key]


def _split_cron_items(text: str, field: CronField) -> list[str]:
    items = text.split(",")
    if "" in items:
        raise Invalid(f"{field.name} field {text!r} has an empty list item")
    return items


def _parse_cron_field(text: str, field: CronField) -> frozenset[int]:
    return _parse_cron_items(_split_cron_items(text, field), field)


def _parse_cron_items(items: list[str], field: CronField) -> frozenset[int]:
    values = {value for item in items for value in _parse_cron_item(item, field)}
    if field.wraps_to_zero is not None:
        return frozenset(value % field.wraps_to_zero for value in values)
    return frozenset(values)


def _parse_cron_item(item: str, field: CronField) -> range:
    """One list item: `*`, `a`, `a-b`, each optionally `/step`; `a/s` means a-max/s."""
    if not re.fullmatch(CRON_ITEM, item):
        raise Invalid(f"{field.name} field item {item!r} is malformed")
    base, slash, step_text = item.partition("/")
    step = _parse_cron_step(step_text, field) if slash else 1
    if base == "*":
        return range(field.low, field.implicit_high + 1, step)
    first_text, dash, last_text = base.partition("-")
    first = _parse_cron_value(first_text, field)
    last = _parse_cron_value(last_text, field) if dash else first
    if first > last:
        raise Invalid(f"{field.name} field range {base} is reversed")
    if slash and not dash:
        last = max(first, field.implicit_high)
    return range(first, last + 1, step)


def _parse_cron_step(text: str, field: CronField) -> int:
    if not _is_ascii_number(text):
        raise Invalid(f"{field.name} field step {text!r} is not a number")
    step = _cron_int(text)
    if step < 1:
        raise Invalid(f"{field.name} field step must be >= 1, got {step}")
    return step


def _parse_cron_value(text: str, field: CronField) -> int:
    if _is_ascii_number(text):
        value = _cron_int(text)
    elif field.names:
        value = _cron_name_value(text, field)
    else:
        raise Invalid(f"{field.name} field value {text!r} is not a number")
    if not field.low <= value <= field.high:
        raise Invalid(f"{field.name} field {text} is out of range {field.low}-{field.high}")
    return value


def _cron_name_value(text: str, field: CronField) -> int:
    key = text.lower()
    if key not in field.names:
        raise Invalid(f"unknown {field.name} name {text!r}")
    return field.names.index(key) + field.first_name_value


def _is_ascii_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _cron_int(digits: str) -> int:
    """The value of an ASCII digit string, capped above every field's range."""
    return int(digits) if len(digits) <= CRON_MAX_DIGITS else 10**CRON_MAX_DIGITS


def _parse_days_of_month(text: str) -> tuple[frozenset[int], bool, bool]:
    """Day numbers, whether `L` (last day) and whether `LW` (last Mon-Fri) are listed."""
    items = _split_cron_items(text, DAY_OF_MONTH_FIELD)
    extras = {item.upper() for item in items} & {CRON_LAST_DAY, CRON_LAST_WORKDAY}
    plain = [item for item in items if item.upper() not in extras]
    days = _parse_cron_items(plain, DAY_OF_MONTH_FIELD)
    return days, CRON_LAST_DAY in extras, CRON_LAST_WORKDAY in extras


def _parse_days_of_week(
    text: str,
) -> tuple[frozenset[int], frozenset[int], frozenset[tuple[int, int]]]:
    """Plain weekdays, weekdays of `<dow>L` items and (weekday, n) of `<dow>#n` items."""
    plain: list[str] = []
    last_weekdays: set[int] = set()
    nth_weekdays: set[tuple[int, int]] = set()
    for item in _split_cron_items(text, DAY_OF_WEEK_FIELD):
        if nth := re.fullmatch(CRON_NTH_WEEKDAY, item):
            nth_weekdays.add((_cron_weekday(nth[1]), _parse_occurrence(nth[2], item)))
        elif last := re.fullmatch(CRON_LAST_WEEKDAY, item):
            last_weekdays.add(_cron_weekday(last[1]))
        else:
            plain.append(item)
    weekdays = _parse_cron_items(plain, DAY_OF_WEEK_FIELD)
    return weekdays, frozenset(last_weekdays), frozenset(nth_weekdays)


def _cron_weekday(text: str) -> int:
    return _parse_cron_value(text, DAY_OF_WEEK_FIELD) % DAYS_PER_WEEK


def _parse_occurrence(text: str, item: str) -> int:
    if not _is_ascii_number(text) or not 1 <= _cron_int(text) <= len(ORDINAL_WORDS):
        raise Invalid(f"day-of-week field {item!r}: occurrence must be 1-{len(ORDINAL_WORDS)}")
    return int(text)


def _day_matches(spec: CronSpec, day: int, month_length: int, weekday: int) -> bool:
    """Whether day `day` (cron weekday `weekday`) of a month this long matches the spec."""
    in_dom = _dom_matches(spec, day, month_length, weekday)
    in_dow = _dow_matches(spec, day, month_length, weekday)
    if spec.dom_restricted and spec.dow_restricted:
        return in_dom or in_dow
    return in_dom and in_dow


def _dom_matches(spec: CronSpec, day: int, month_length: int, weekday: int) -> bool:
    return (
        day in spec.days_of_month
        or (spec.last_day_of_month and day == month_length)
        or (spec.last_workday_of_month and day == _last_workday(day, month_length, weekday))
    )


def _last_workday(day: int, month_length: int, weekday: int) -> int:
    """The last Monday-Friday of a month this long whose day `day` falls on `weekday`."""
    last_weekday = (weekday + month_length - day) % DAYS_PER_WEEK
    return month_length - WEEKEND_STEP_BACK.get(last_weekday, 0)


def _dow_matches(spec: CronSpec, day: int, month_length: int, weekday: int) -> bool:
    occurrence = (day - 1) // DAYS_PER_WEEK + 1
    return (
        weekday in spec.days_of_week
        or (weekday in spec.last_weekdays_in_month and day + DAYS_PER_WEEK > month_length)
        or (weekday, occurrence) in spec.nth_weekdays_in_month
    )


def _check_cron_fires(spec: CronSpec) -> None:
    """Raise Invalid unless some real calendar day matches the spec.

    Over the 400-year Gregorian cycle every (month, length, day, weekday) combination
    occurs, so trying them all decides whether the spec ever fires.
    """
    combinations = (
        (day, length, weekday)
        for month in sorted(spec.months)
        for length in _possible_month_lengths(month)
        for day in range(1, length + 1)
        for weekday in range(DAYS_PER_WEEK)
    )
    if not any(_day_matches(spec, *combination) for combination in combinations):
        raise Invalid(_never_fires_message(spec))


def _is_leap_year(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _possible_month_lengths(month: int) -> tuple[int, ...]:
    return FEBRUARY_LENGTHS if month == FEBRUARY else (MAX_MONTH_LENGTHS[month - 1],)


def _never_fires_message(spec: CronSpec) -> str:
    months = sorted(spec.months)
    if any(day <= MAX_MONTH_LENGTHS[month - 1] for day in spec.days_of_month for month in months):
        return "never fires: no day matches both the day-of-month and day-of-week fields"
    days = _join_words([str(day) for day in sorted(spec.days_of_month)], "or")
    names = _join_words([MONTH_NAMES[month - 1] for month in months], "or")
    return f"never fires: day {days} does not occur in {names}"


def cron_next(spec: CronSpec, after: datetime, tz: ZoneInfo) -> datetime:
    """The first fire time strictly after the aware datetime `after`, as aware UTC.

    Wall-clock times are read in `tz` with Debian cron's DST rules: a fixed-time job
    whose times fall in a spring-forward gap fires once, at the end of the gap, and in a
    repeated hour fires in the first pass only; a wildcard job skips gap times and fires
    in both passes of a repeated hour. Raises ValueError if `after` is naive or nothing
    fires before the end of the datetime range.
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("cron_next needs a timezone-aware datetime")
    fire = _earliest_fire(spec, after.astimezone(UTC), tz)
    if fire is None:
        raise ValueError(f"cron expression {spec.expression!r} does not fire after {after}")
    return fire


def cron_next_times(spec: CronSpec, after: datetime, tz: ZoneInfo, count: int) -> list[datetime]:
    """The next `count` fire times after `after`, in order, as aware UTC datetimes."""
    fires: list[datetime] = []
    for _ in range(count):
        after = cron_next(spec, after, tz)
        fires.append(after)
    return fires


def _earliest_fire(spec: CronSpec, after: datetime, tz: ZoneInfo) -> datetime | None:
    """Scan matching days from the day before `after`'s local date; `after` is UTC.

    Around DST changes a later day can hold an earlier instant, so the scan stops only
    at a day that starts no earlier than the best fire found so far.
    """
    best: datetime | None = None
    start = after.astimezone(tz).date() - timedelta(days=1)
    for day in _matching_days(spec, start):
        if best is not None and _day_start(day, tz) >= best:
            break
        fire = _first_fire_on_day(spec, day, after, tz)
        if fire is not None and (best is None or fire < best):
            best = fire
    return best


def _matching_days(spec: CronSpec, start: date) -> Iterator[date]:
    """The dates from `start` on whose day fields match, for 400 years or up to year 9999."""
    first_index = start.year * 12 + start.month - 1
    for index in range(first_index, first_index + CRON_SEARCH_MONTHS):
        year, month = divmod(index, 12)
        month += 1
        if year > date.max.year:
            return
        if month in spec.months:
            days = _month_matching_days(spec, year, month)
            yield from (day for day in days if day >= start)


def _month_matching_days(spec: CronSpec, year: int, month: int) -> list[date]:
    length = MAX_MONTH_LENGTHS[month - 1] - (month == FEBRUARY and not _is_leap_year(year))
    first_weekday = date(year, month, 1).isoweekday() % DAYS_PER_WEEK
    return [
        date(year, month, day)
        for day in range(1, length + 1)
        if _day_matches(spec, day, length, (first_weekday + day - 1) % DAYS_PER_WEEK)
    ]


def _day_start(day: date, tz: ZoneInfo) -> datetime:
    """A lower bound for the instants of local `day`: the earlier reading of its midnight."""
    midnight = datetime(day.year, day.month, day.day)
    return min(_wall_to_utc(midnight, _utc_offset(midnight, tz, fold)) for fold in (0, 1))


def _first_fire_on_day(spec: CronSpec, day: date, after: datetime, tz: ZoneInfo) -> datetime | None:
    """The earliest instant after `after` (UTC) produced by the spec's times on local `day`.

    A wall time read with the day's largest and smallest UTC offsets bounds its instants,
    so only the times between those bounds are mapped one by one.
    """
    smallest, largest = _offset_range(day, tz)
    best: datetime | None = None
    for wall in _walls_after(spec, day, (after + smallest).replace(tzinfo=None)):
        if best is not None and _wall_to_utc(wall, largest) >= best:
            break
        candidates = [fire for fire in _wall_instants(wall, tz, spec) if fire > after]
        best = min(candidates if best is None else [*candidates, best], default=None)
    return best


def _offset_range(day: date, tz: ZoneInfo) -> tuple[timedelta, timedelta]:
    """The smallest and largest UTC offset in force during local `day`."""
    first = datetime(day.year, day.month, day.day)
    last = first.replace(hour=HOURS_PER_DAY - 1, minute=MINUTES_PER_HOUR - 1)
    offsets = [_utc_offset(wall, tz, fold) for wall in (first, last) for fold in (0, 1)]
    return min(offsets), max(offsets)


def _walls_after(spec: CronSpec, day: date, threshold: datetime) -> Iterator[datetime]:
    """The spec's naive wall times on `day` strictly after naive `threshold`, in order."""
    if threshold.date() > day:
        return
    floor = (threshold.hour, threshold.minute) if threshold.date() == day else None
    while (hour_minute := _next_time_of_day(spec, floor)) is not None:
        yield datetime(day.year, day.month, day.day, *hour_minute)
        floor = hour_minute


def _next_time_of_day(spec: CronSpec, floor: tuple[int, int] | None) -> tuple[int, int] | None:
    """The first (hour, minute) of the spec after `floor`, or the first of the day if None."""
    hours, minutes = sorted(spec.hours), sorted(spec.minutes)
    if floor is None:
        return hours[0], minutes[0]
    floor_hour, floor_minute = floor
    for hour in hours[bisect_left(hours, floor_hour) :]:
        if hour > floor_hour:
            return hour, minutes[0]
        index = bisect_right(minutes, floor_minute)
        if index < len(minutes):
            return hour, minutes[index]
    return None


def _wall_instants(wall: datetime, tz: ZoneInfo, spec: CronSpec) -> list[datetime]:
    """The UTC instants at which the naive local `wall` fires, by Debian cron's DST rules."""
    offset_before, offset_after = _utc_offset(wall, tz, 0), _utc_offset(wall, tz, 1)
    if offset_before == offset_after:
        return [_wall_to_utc(wall, offset_before)]
    if offset_before > offset_after:
        both_passes = [_wall_to_utc(wall, offset_before), _wall_to_utc(wall, offset_after)]
        return both_passes if spec.is_wildcard else both_passes[:1]
    return [] if spec.is_wildcard else [_gap_end(wall, tz, offset_before, offset_after)]


def _gap_end(wall: datetime, tz: ZoneInfo, offset_before: timedelta, offset_after: timedelta) -> datetime:
    """The transition instant that skips the local time `wall`, found by bisection.

    `wall` read with the new offset lies before the transition and read with the old
    offset lies after it; transitions fall on whole seconds.
    """
    start = _wall_to_utc(wall, offset_after)
    low, high = 0, int((offset_after - offset_before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if _instant_offset(start + timedelta(seconds=middle), tz) == offset_before:
            low = middle
        else:
            high = middle
    return start + timedelta(seconds=high)


def _wall_to_utc(wall: datetime, offset: timedelta) -> datetime:
    return (wall - offset).replace(tzinfo=UTC)


def _utc_offset(wall: datetime, tz: ZoneInfo, fold: int) -> timedelta:
    return _known_offset(wall.replace(tzinfo=tz, fold=fold).utcoffset(), tz)


def _instant_offset(instant: datetime, tz: ZoneInfo) -> timedelta:
    return _known_offset(instant.astimezone(tz).utcoffset(), tz)


def _known_offset(offset: timedelta | None, tz: ZoneInfo) -> timedelta:
    if offset is None:
        raise ValueError(f"time zone {tz} gives no UTC offset")
    return offset


def cron_describe(spec: CronSpec) -> str:
    """A plain-language reading such as 'At 09:00 on Monday and Friday'."""
    return _describe_times(spec) + _describe_days(spec) + _describe_months(spec)


def _describe_times(spec: CronSpec) -> str:
    hours, minutes = sorted(spec.hours), sorted(spec.minutes)
    if len(hours) < HOURS_PER_DAY and len(hours) * len(minutes) <= MAX_LISTED_TIMES:
        return "At " + _join_words([f"{h:02d}:{m:02d}" for h in hours for m in minutes])
    minute_text, is_frequency = _describe_minutes(spec.minutes)
    return minute_text + _describe_hours(spec, is_frequency)


def _describe_minutes(minutes: frozenset[int]) -> tuple[str, bool]:
    """The minute phrase and whether it is a frequency ('Every ...') rather than a list."""
    step = _arithmetic_step(minutes, MINUTE_FIELD.low, MINUTE_FIELD.high, MIN_STEPPED_MINUTES)
    if len(minutes) == MINUTES_PER_HOUR:
        return "Every minute", True
    if step is not None:
        if MINUTES_PER_HOUR % step == 0:
            return f"Every {step} minutes", True
        return f"At every {_ordinal(step)} minute", True
    label = "minute" if len(minutes) == 1 else "minutes"
    return f"At {label} {_join_words(_compress_runs(minutes, str))}", False


def _describe_hours(spec: CronSpec, is_frequency: bool) -> str:
    hours = sorted(spec.hours)
    if len(hours) == HOURS_PER_DAY:
        return "" if is_frequency else " past every hour"
    step = _arithmetic_step(spec.hours, HOUR_FIELD.low, HOUR_FIELD.high, MIN_STEPPED_VALUES)
    lead = " during" if is_frequency else " past"
    if step is not None:
        return f"{lead} every {_ordinal(step)} hour"
    if hours == list(range(hours[0], hours[-1] + 1)) and (is_frequency or len(hours) > 1):
        span = f" from {hours[0]:02d}:{min(spec.minutes):02d}"
        span += f" through {hours[-1]:02d}:{max(spec.minutes):02d}"
        return span if is_frequency else " past every hour" + span
    label = "hour" if len(hours) == 1 else "hours"
    return f"{lead} {label} {_join_words(_compress_runs(spec.hours, str))}"


def _describe_days(spec: CronSpec) -> str:
    dom = _describe_days_of_month(spec)
    dow = _weekday_phrases(spec)
    if spec.dom_restricted and spec.dow_restricted:
        either = dom is not None and dow is not None
        return f" on {dom} or on {_join_words(dow or [], 'or')}" if either else ""
    if dom is not None and dow is not None:
        return f" on {dom} if it is {_join_words(dow, 'or')}"
    if dom is not None:
        return f" on {dom}"
    if dow is None:
        return ""
    is_range = len(dow) == 1 and len(spec.days_of_week) >= MIN_RUN_TO_COMPRESS
    return (", " if is_range else " on ") + _join_words(dow)


def _describe_days_of_month(spec: CronSpec) -> str | None:
    """'day 1 of the month', 'the last day of the month'...; None for every day."""
    days = spec.days_of_month
    if len(days) == MAX_DAYS_IN_MONTH:
        return None
    step = _arithmetic_step(days, DAY_OF_MONTH_FIELD.low, MAX_DAYS_IN_MONTH, MIN_STEPPED_VALUES)
    parts = []
    if step is not None:
        parts.append(f"every {_ordinal(step)} day")
    elif days:
        label = "day" if len(days) == 1 else "days"
        parts.append(f"{label} {_join_words(_compress_runs(days, str))}")
    extras = (
        (spec.last_day_of_month, "the last day"),
        (spec.last_workday_of_month, "the last weekday"),
    )
    parts.extend(text for is_set, text in extras if is_set)
    return _join_words(parts) + " of the month"


def _weekday_phrases(spec: CronSpec) -> list[str] | None:
    """Phrases for the day-of-week field, Monday first; None for every day."""
    if len(spec.days_of_week) == DAYS_PER_WEEK:
        return None
    positions = frozenset(_monday_first(weekday) for weekday in spec.days_of_week)
    phrases = _compress_runs(positions, lambda position: WEEKDAY_NAMES[(position + 1) % DAYS_PER_WEEK])
    lasts = sorted(spec.last_weekdays_in_month, key=_monday_first)
    nths = sorted(spec.nth_weekdays_in_month, key=lambda pair: (pair[1], _monday_first(pair[0])))
    extras = [f"the last {WEEKDAY_NAMES[weekday]}" for weekday in lasts]
    extras += [f"the {ORDINAL_WORDS[n - 1]} {WEEKDAY_NAMES[weekday]}" for weekday, n in nths]
    return phrases + ([_join_words(extras) + " of the month"] if extras else [])


def _describe_months(spec: CronSpec) -> str:
    if len(spec.months) == len(MONTH_NAMES):
        return ""
    return " in " + _join_words(_compress_runs(spec.months, lambda month: MONTH_NAMES[month - 1]))


def _monday_first(weekday: int) -> int:
    return (weekday - 1) % DAYS_PER_WEEK


def _arithmetic_step(values: frozenset[int], low: int, high: int, min_count: int) -> int | None:
    """The step s >= 2 if `values` is exactly low, low+s, ... up to `high`; else None."""
    ordered = sorted(values)
    if len(ordered) < min_count or ordered[0] != low:
        return None
    step = ordered[1] - ordered[0]
    return step if step >= 2 and values == frozenset(range(low, high + 1, step)) else None


def _compress_runs(values: frozenset[int], label: Callable[[int], str]) -> list[str]:
    """Labels of sorted `values`, with runs of three or more as 'first through last'."""
    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return [text for run in runs for text in _run_labels(run, label)]


def _run_labels(run: list[int], label: Callable[[int], str]) -> list[str]:
    if len(run) >= MIN_RUN_TO_COMPRESS:
        return [f"{label(run[0])} through {label(run[-1])}"]
    return [label(value) for value in run]


def _join_words(words: list[str], conjunction: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _ordinal(number: int) -> str:
    if number % 100 in TEEN_ORDINALS:
        return f"{number}th"
    return f"{number}{ORDINAL_SUFFIXES.get(number % 10, 'th')}"


@functools.lru_cache(maxsize=1024)
def _cron_cached(expression: str) -> CronSpec:
    return parse_cron(expression)


def cron_spec(expression: str, field: str = "schedule.expression") -> CronSpec:
    """Parse (with a cache) a cron expression; errors name `field`."""
    try:
        return _cron_cached(expression)
    except Invalid as error:
        raise Invalid(error.message, field) from None


def next_fire_after(schedule: Schedule, after: datetime, created_at: datetime) -> datetime | None:
    """The first fire time strictly after `after`, or None for event-driven schedules."""
    if schedule.type is ScheduleType.ONCE:
        return schedule.at if schedule.at and schedule.at > after else None
    if schedule.type is ScheduleType.INTERVAL and schedule.every_seconds:
        anchor = schedule.anchor or created_at
        steps = max(int((after - anchor).total_seconds() // schedule.every_seconds) + 1, 0)
        return anchor + timedelta(seconds=steps * schedule.every_seconds)
    if schedule.type is ScheduleType.CRON and schedule.expression:
        return cron_next(cron_spec(schedule.expression), after, get_zone(schedule.timezone))
    return None


def next_fire_times(
    schedule: Schedule, after: datetime, count: int, created_at: datetime | None = None
) -> list[datetime]:
    times: list[datetime] = []
    moment: datetime | None = after
    while moment is not None and len(times) < count:
        moment = next_fire_after(schedule, moment, created_at or after)
        if moment is not None:
            times.append(moment)
    return times


DURATION_UNITS = (("d", 86400, "day"), ("h", 3600, "hour"), ("m", 60, "minute"), ("s", 1, "second"))


def parse_duration(text: str, field: str = "every") -> int:
    """'15m', '2h', '1h30m', '1d', '90s' or plain seconds -> seconds."""
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned.isdigit():
        return int(cleaned)
    parts = re.findall(r"(\d+)([dhms])", cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise Invalid(f"{text!r} is not a duration like 90s, 15m, 2h, 1h30m or 1d", field)
    seconds = {unit: size for unit, size, _ in DURATION_UNITS}
    return sum(int(number) * seconds[unit] for number, unit in parts)


def human_duration(seconds: float) -> str:
    remaining = int(seconds)
    words = []
    for _, size, name in DURATION_UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            words.append(f"{count} {name}{'s' if count != 1 else ''}")
    return " ".join(words) or "0 seconds"


def fmt_local(moment: datetime | None, *, seconds: bool = False, zone: bool = False) -> str:
    """A timestamp in the machine's local time, for people; with `zone`, its abbreviation."""
    if moment is None:
        return "-"
    shown = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return moment.astimezone().strftime(shown + (" %Z" if zone else ""))


def fmt_local_until(moment: datetime, now: datetime) -> str:
    """A coming moment for people, in the machine's zone named: `10:38 (Europe/Amsterdam)`,
    with the date when it is not today."""
    zone_name = local_zone_name()
    zone = get_zone(zone_name)
    local = moment.astimezone(zone)
    shown = "%H:%M" if local.date() == now.astimezone(zone).date() else "%Y-%m-%d %H:%M"
    return f"{local.strftime(shown)} ({zone_name})"


def describe_schedule(schedule: Schedule) -> str:
    """A plain-language reading of any schedule."""
    kind = schedule.type
    if kind is ScheduleType.ONCE:
        return f"Once at {fmt_local(schedule.at)}"
    if kind is ScheduleType.INTERVAL:
        return f"Every {human_duration(schedule.every_seconds or 0)}"
    if kind is ScheduleType.CRON:
        text = cron_describe(cron_spec(schedule.expression or ""))
        return f"{text} ({schedule.timezone})" if schedule.timezone else text
    if kind is ScheduleType.FILE_WATCH:
        return f"When files change in {schedule.path}"
    return {ScheduleType.MANUAL: "Manual only", ScheduleType.STARTUP: "When the scheduler starts"}[kind]


# Job progress and status: computed here and nowhere else.

PROGRESS_KEYS = ("never_run", "running", "success", "failed")


def progress_bucket(status: RunStatus | None) -> str:
    if status is None or status in NON_EXECUTIONS:
        return "never_run"
    if status in ACTIVE_STATUSES:
        return "running"
    return "success" if status is RunStatus.SUCCESS else "failed"


def job_progress(statuses: Iterable[RunStatus | None]) -> JSONDict:
    """Counts of a job's tasks by the status of their latest runs, and the share that
    succeeded."""
    counts = dict.fromkeys(PROGRESS_KEYS, 0)
    for status in statuses:
        counts[progress_bucket(status)] += 1
    total = sum(counts.values())
    done = counts["success"]
    percent = round(100 * done / total) if total else 0
    return {"total": total, **counts, "done": done, "percent": percent, "text": f"{done}/{total}"}


def job_run_view(
    job_run_id: str, entry: JSONDict, steps: list[tuple[str, str, RunStatus | None]]
) -> JSONDict:
    """One run of a whole job for people: `steps` are its tasks in order as (id, name, the
    status of the task's run in this job run, None: not started). Counts done, failed and
    skipped (not run because the job run ended first), the step running now, the task that
    failed, and the names of those not run."""
    status = str(entry.get("status") or "running")
    finished = status != "running"
    shown = []
    for task_id, name, step in steps:
        state = step.value if step else ("not run" if finished else "waiting")
        shown.append({"task_id": task_id, "name": name, "status": state})
    failed = [step for step in shown if step["status"] in ("failed", "timeout", "interrupted", "cancelled")]
    return {
        "job_run_id": job_run_id,
        "job_id": entry.get("job_id"),
        "status": status,
        "started_at": entry.get("started_at"),
        "steps": shown,
        "done": sum(step["status"] == "success" for step in shown),
        "failed": len(failed),
        "skipped": sum(step["status"] == "not run" for step in shown),
        "current": next((step["name"] for step in shown if step["status"] in ("queued", "running")), None),
        "position": min(int(entry.get("position") or 0) + 1, len(shown)),
        "failed_task": failed[0]["name"] if failed else None,
        "not_run": [step["name"] for step in shown if step["status"] == "not run"],
    }


def derive_job_status(statuses: Iterable[RunStatus | None]) -> JobStatus:
    buckets = {progress_bucket(status) for status in statuses}
    if "running" in buckets:
        return JobStatus.IN_PROGRESS
    if "failed" in buckets:
        return JobStatus.FAILED
    if buckets == {"success"}:
        return JobStatus.COMPLETED
    return JobStatus.PENDING


# Prompt placeholders: what a job step may read of the step before it and of its job run.
# `{{previous.result}}` is replaced when the run starts; `\{{` writes a literal `{{`.
# Only `{{` + dotted name + `}}` is a placeholder: other braces (code, JSON) are text.

PLACEHOLDERS: dict[str, str] = {
    "previous.result": "the previous step's result text",
    "previous.session_id": "the previous step's Claude session id",
    "previous.status": "the previous step's status (success, failed...)",
    "job_run.id": "the job run's id",
    "job_run.started_at": "when the job run started (ISO time, UTC)",
}
PLACEHOLDER_PATTERN = r"(\\)?\{\{\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\}\}"


def check_placeholders(text: str, field: str = "prompt") -> None:
    """Invalid naming the first placeholder of `text` that is not one of PLACEHOLDERS."""
    for match in re.finditer(PLACEHOLDER_PATTERN, text):
        if not match.group(1) and match.group(2) not in PLACEHOLDERS:
            known = ", ".join(f"{{{{{name}}}}}" for name in PLACEHOLDERS)
            raise Invalid(
                f"unknown placeholder {match.group(0)!r} (known: {known}; write \\{{{{ for a literal {{{{)",
                field,
            )


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """`text` with each placeholder replaced by its value ('' when it has none) and each
    escaped `\\{{` made a literal `{{`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(0)[1:]
        return values.get(match.group(2), "")

    return re.sub(PLACEHOLDER_PATTERN, replace, text)


# Usage totals: what runs cost and used, summed over calendar windows in the user's zone.

# Window name -> how many days before today it starts: today, then today and the 6 or 29 days before.
USAGE_WINDOWS = {"today": 0, "7d": 6, "30d": 29}
USAGE_TOKENS = ("input_tokens", "cache_read_tokens", "cache_creation_tokens", "output_tokens")
COST_DIGITS = 9  # sums of float costs, rounded so that 0.1 + 0.2 reads 0.3


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of `day` in `zone` (UTC): its midnight, or the end of a DST gap
    that swallows midnight, or the first of two midnights."""
    instants = [
        datetime(day.year, day.month, day.day, fold=fold, tzinfo=zone).astimezone(UTC) for fold in (0, 1)
    ]
    return min(moment for moment in instants if moment.astimezone(zone).date() == day)


def usage_totals(runs: Iterable[Run], now: datetime, zone: ZoneInfo) -> JSONDict:
    """Runs, cost and tokens of each window of USAGE_WINDOWS, from `since` (its first
    instant) on. A run counts by when it finished, else when it started; a run that never
    started (queued, skipped, missed) counts nowhere, and one without figures counts as a
    run and adds nothing. `input_tokens` is all input; the cache counts are parts of it."""
    today = now.astimezone(zone).date()
    widest_first = sorted(USAGE_WINDOWS, key=USAGE_WINDOWS.__getitem__, reverse=True)
    starts = [local_midnight(today - timedelta(days=USAGE_WINDOWS[name]), zone) for name in widest_first]
    # The windows nest, so each run is added once, to the band between its window's start
    # and the next narrower window's; a window sums its band and the narrower ones. A band
    # holds runs, cost, then the tokens in USAGE_TOKENS' order.
    bands = [[0.0] * (2 + len(USAGE_TOKENS)) for _ in starts]
    for run in runs:
        if run.started_at is None:
            continue
        index = bisect_right(starts, run.finished_at or run.started_at) - 1
        if index >= 0:  # in the loop, not a function: the window sums up 20,000 runs
            band = bands[index]
            band[0] += 1
            band[1] += run.cost_usd or 0.0
            band[2] += run.input_tokens or 0
            band[3] += run.cache_read_tokens or 0
            band[4] += run.cache_creation_tokens or 0
            band[5] += run.output_tokens or 0
    totals: JSONDict = {}
    for index, name in enumerate(widest_first):
        sums = [math.fsum(column) for column in zip(*bands[index:], strict=True)]
        totals[name] = {
            "since": fmt_time(starts[index]),
            "runs": int(sums[0]),
            "cost_usd": round(sums[1], COST_DIGITS),
            **{token: int(count) for token, count in zip(USAGE_TOKENS, sums[2:], strict=True)},
        }
    return {name: totals[name] for name in USAGE_WINDOWS}


def sum_usage_totals(parts: Iterable[JSONDict]) -> JSONDict:
    """The sum of several usage_totals made at one time in one zone (at least one)."""
    parts = list(parts)
    summed: JSONDict = {}
    for name in USAGE_WINDOWS:
        windows = [part[name] for part in parts]
        summed[name] = {
            "since": windows[0]["since"],
            "runs": sum(window["runs"] for window in windows),
            "cost_usd": round(math.fsum(window["cost_usd"] for window in windows), COST_DIGITS),
            **{token: sum(window[token] for window in windows) for token in USAGE_TOKENS},
        }
    return summed


####
# Store ####
####


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that a crash at any instant leaves the old or the new
    file, never a torn one: temp file in the same folder, fsync, rename, fsync the folder.
    A symlink is written through (its target is replaced), so a store file kept elsewhere
    (a synced folder) stays where the user put it."""
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {path}: {error.strerror or error}") from error
    _sync_written(path)


def _sync_written(path: Path) -> None:
    """Make a rename into `path`'s folder durable. Past the rename every reader sees the
    new file, so a failure here is no failed write (which would tell the caller to act
    as if nothing had changed, and leave a change half made): it is logged, as a change
    that a power cut may still undo."""
    try:
        _fsync_dir(path.parent)
    except OSError as error:
        logger().warning(
            "%s was written, but its folder could not be synced (%s): a power cut may undo the change",
            path,
            error.strerror or error,
        )


def open_private_append(path: Path) -> IO[str]:
    """Open a text file for appending, created readable by its owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8", errors="replace")


def create_once(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Create `path` holding `data` unless it exists; False when it does (another process
    was first: the two never both win). Whole or absent, as `atomic_write`: the data is
    written to a temp file, then hard-linked into place. Raises StorageError."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        atomic_write(tmp, data, mode)
        try:
            os.link(tmp, path)
        except FileExistsError:
            if path.stat().st_size:
                return False
            os.replace(tmp, path)  # an empty one is nobody's token: this one wins
    except OSError as error:
        raise StorageError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    _sync_written(path)
    return True


def _fsync_dir(folder: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def process_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: a pid from a file, past any real one
        return False
    except (PermissionError, OSError):
        return True
    return True


PROC_STAT_START = 19  # the start time's index in /proc/PID/stat after the ")" of the name


def process_started(pid: int) -> str | None:
    """A process's start time as the kernel counts it ("" where that cannot be read);
    None when the process is gone or a zombie. With the pid it names one process for good."""
    if not process_alive(pid):
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return None if fields[0] in ("Z", "X") else fields[PROC_STAT_START]


def host_name() -> str:
    import socket

    return socket.gethostname()


def process_owner(pid: int | None = None) -> str:
    """The owner id this process writes on the runs it takes: "host:pid:start"."""
    pid = pid or os.getpid()
    return f"{host_name()}:{pid}:{process_started(pid) or ''}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by an owner id still runs. A reused pid does not count
    (the start time differs); an owner on another machine is assumed alive."""
    host, pid, started = [*(owner or "").split(":"), "", "", ""][:3]
    if host != host_name():
        return bool(host)
    if not pid.isdigit():
        return False
    now = process_started(int(pid))
    return now is not None and (not started or not now or now == started)


class InterProcessLock:
    """An exclusive lock on a file, held across processes (flock / msvcrt) and threads.

    Re-entrant within one thread. Acquiring blocks; `try_acquire` does not.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> InterProcessLock:
        self._thread_lock.acquire()
        if self._depth == 0:
            try:
                self._fd = self._lock_file(blocking=True)
            except BaseException:
                self._thread_lock.release()
                raise
        self._depth += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            _unlock_fd(self._fd)
            os.close(self._fd)
            self._fd = None
        self._thread_lock.release()

    def try_acquire(self) -> bool:
        """Take the lock for good (until `release`) if no other process holds it."""
        with self._thread_lock:
            if self._fd is not None:
                return True
            with contextlib.suppress(OSError, StorageError):
                self._fd = self._lock_file(blocking=False)
            return self._fd is not None

    def release(self) -> None:
        with self._thread_lock:
            if self._fd is not None:
                _unlock_fd(self._fd)
                os.close(self._fd)
                self._fd = None

    def _lock_file(self, *, blocking: bool) -> int:
        fd = self._open()
        try:
            _lock_fd(fd, blocking=blocking)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open(self) -> int:
        """The lock file's descriptor. In a home this user may only read (read-only media,
        another user's folder) an existing lock file is opened read-only, which flock
        accepts, so reading still works; else StorageError says what is wrong."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            with contextlib.suppress(OSError):
                return os.open(self.path, os.O_RDONLY)
            raise StorageError(
                f"cannot open the lock file {self.path}: {error.strerror or error}; "
                "the data home must be a folder you can write to (see --home)"
            ) from error


if sys.platform == "win32":

    def _lock_fd(fd: int, *, blocking: bool) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return
            except OSError:
                if not blocking:
                    raise BlockingIOError from None
                time.sleep(0.01)

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:

    def _lock_fd(fd: int, *, blocking: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


HEAD_BYTES = 64  # the head of our files holds "rev", which changes on every write
FileSignature = tuple[int, int, int, int, bytes]  # mtime, ctime, size, inode, the first bytes


class CachedFile:
    """One JSON file, parsed once and re-read only when it changed on disk.

    A change is noticed by (mtime, ctime, size, inode, first bytes); every save writes a
    fresh "rev" into the first bytes, so rapid rewrites by other processes are never
    missed. A file that fails to parse is never overwritten: `check` raises StorageError
    until the file is fixed by hand. A save that fails drops the cache, so changes that
    never reached the file are not kept (the next read reloads it). Callers serialise
    writes with the store's lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sig: FileSignature | None = None
        self._loaded = False
        self._error: StorageError | None = None

    def refresh(self) -> bool:
        """Re-read the file if it changed; return whether it did."""
        sig = self._signature()
        if self._loaded and sig == self._sig:
            return False
        self._sig, self._loaded, self._error = sig, True, None
        if sig is None:
            self.load(None)
            return True
        try:
            raw = self.path.read_bytes()
            self.load(json.loads(raw))
            self.keep_text(raw)
        except (ValueError, SchedulerError, UnicodeDecodeError, OSError, RecursionError) as error:
            self.load(None)
            reason = getattr(error, "args", [error])[0] if not isinstance(error, SchedulerError) else error
            self._error = StorageError(
                f"{self.path} cannot be read ({reason}); it was left untouched and changes to it "
                "are refused until it is fixed or moved away"
            )
        return True

    def check(self) -> None:
        self.refresh()
        if self._error:
            raise self._error

    @property
    def error(self) -> StorageError | None:
        return self._error

    def loaded_stamp(self) -> JSON:
        """The signature of the loaded content as JSON; None when nothing readable is loaded."""
        return None if not self._loaded or self._error else _file_stamp(self._sig)

    def disk_stamp(self) -> JSON:
        """The signature of the file on disk now, as `loaded_stamp` gives it."""
        return _file_stamp(self._signature())

    def save(self) -> None:
        try:
            self.check()
            body = self.encode()
            rev = os.urandom(8).hex()
            head = f'{{"version": {STORE_VERSION}, "rev": "{rev}"'
            atomic_write(self.path, (head + (f", {body}" if body else "") + "}\n").encode())
        except BaseException:
            self.forget()
            raise
        self._sig = self._signature()

    def forget(self) -> None:
        """Drop what is cached (with any change not saved): the next read reloads the file."""
        self._sig, self._loaded, self._error = None, False, None

    def _signature(self) -> FileSignature | None:
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                head = handle.read(HEAD_BYTES)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StorageError(f"cannot read {self.path}: {error.strerror}") from error
        return (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino, head)

    def load(self, document: JSON) -> None:
        """Take in a parsed document (None: the file is missing); raise on a bad shape."""
        raise NotImplementedError

    def keep_text(self, raw: bytes) -> None:
        """After `load`: a chance to keep the file's text for cheaper saves."""

    def encode(self) -> str:
        """The body of the document after the version and rev keys."""
        raise NotImplementedError


def _file_stamp(sig: FileSignature | None) -> JSON:
    return [] if sig is None else [*sig[:4], sig[4].hex()]


def _check_version(document: JSON) -> None:
    version = document.get("version", STORE_VERSION) if isinstance(document, dict) else STORE_VERSION
    if version != STORE_VERSION:
        raise Invalid(f"format version {version!r} is not supported by {__version__}")


R = TypeVar("R", Job, Task, Run)


class RecordFile(CachedFile, Generic[R]):
    """A file of records under one key (`{"version": 1, "jobs": [...]}`), keyed by id.

    A bare list is read too. Records keep their order; each record's JSON text is cached
    so a save re-encodes only what changed.
    """

    def __init__(
        self, path: Path, key: str, parse: Callable[[JSON], R], header: JSONDict | None = None
    ) -> None:
        super().__init__(path)
        self.key = key
        self._parse: Callable[[JSON], R] = parse
        self._header = header or {}
        self._kept: JSONDict = {}  # top-level keys this version does not know, kept on rewrite
        self.records: dict[str, R] = {}
        self._encoded: dict[str, str] = {}

    def load(self, document: JSON) -> None:
        self.records, self._encoded, self._kept = {}, {}, {}
        if document is None:
            return
        _check_version(document)
        items = document if isinstance(document, list) else require_object(document).get(self.key, [])
        if isinstance(document, dict):
            skip = {"version", "rev", self.key, *self._header}
            self._kept = {name: value for name, value in document.items() if name not in skip}
        if not isinstance(items, list):
            raise Invalid(f'"{self.key}" must be a list')
        for n, item in enumerate(items):
            try:
                record = self._parse(item)
            except Invalid as error:
                raise Invalid(f"{self.key}[{n}].{error}") from None
            self.records[record.id] = record

    def keep_text(self, raw: bytes) -> None:
        """A file in the layout `encode` writes (one record a line) lends each record's
        line to the cache, so the first save after another process wrote the file
        re-encodes only what changed. Any other layout is simply not cached."""
        lines = raw.decode("utf-8").split("\n")[1:-2]
        if len(lines) != len(self.records):
            return
        texts = {}
        for line, record_id in zip(lines, self.records, strict=True):
            text = line.removesuffix(",")
            if f'"id": "{record_id}"' not in text:
                return
            texts[record_id] = text
        self._encoded = texts

    def encode(self) -> str:
        header = {**self._header, **self._kept}
        parts = [f"{json.dumps(key)}: {json.dumps(value)}, " for key, value in header.items()]
        texts = []
        for record_id, record in self.records.items():
            text = self._encoded.get(record_id)
            if text is None:
                text = self._encoded[record_id] = json.dumps(_stored(record), ensure_ascii=False)
            texts.append(text)
        return "".join(parts) + f'"{self.key}": [\n' + ",\n".join(texts) + "\n]"

    def put(self, record: R) -> None:
        self.records[record.id] = record
        self._encoded.pop(record.id, None)

    def remove(self, record_id: str) -> None:
        self.records.pop(record_id, None)
        self._encoded.pop(record_id, None)


def _stored(record: Job | Task | Run) -> JSONDict:
    return record.to_dict(derived=False) if isinstance(record, Task) else record.to_dict()


class DocFile(CachedFile):
    """A whole-document file (state.json, settings.json). The entries of the `keyed`
    object (state.json's per-task map), and the values of the `whole` keys, are encoded
    once each and reused while the same object stays in place: writers replace such an
    entry or value, never change it in place."""

    def __init__(
        self,
        path: Path,
        validate: Callable[[JSONDict], JSONDict],
        keyed: str | None = None,
        whole: tuple[str, ...] = (),
    ) -> None:
        super().__init__(path)
        self._validate = validate
        self._keyed = keyed
        self._whole = whole
        self._encoded: dict[str, tuple[JSONDict, str]] = {}
        self._encoded_whole: dict[str, tuple[JSON, str]] = {}
        self.data: JSONDict = {}
        self.repaired = False  # `validate` dropped a bad part: the file is due a rewrite

    def load(self, document: JSON) -> None:
        self.data, self._encoded, self.repaired = {}, {}, False
        if document is not None:
            _check_version(document)
            body = {k: v for k, v in require_object(document).items() if k not in ("version", "rev")}
            self.data = self._validate(body)
            self.repaired = self.data != body

    def encode(self) -> str:
        parts = []
        for key, value in self.data.items():
            if key == self._keyed and isinstance(value, dict):
                entries = ", ".join(self._entry(name, entry) for name, entry in value.items())
                parts.append(f"{json.dumps(key)}: {{{entries}}}")
            elif key in self._whole:
                cached = self._encoded_whole.get(key)
                if cached is None or cached[0] is not value:
                    cached = self._encoded_whole[key] = (value, f"{json.dumps(key)}: {json.dumps(value)}")
                parts.append(cached[1])
            else:
                parts.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
        return ", ".join(parts)

    def _entry(self, name: str, entry: JSONDict) -> str:
        cached = self._encoded.get(name)
        if cached is None or cached[0] is not entry:
            cached = self._encoded[name] = (entry, f"{json.dumps(name)}: {json.dumps(entry)}")
        return cached[1]


JOB_RUN_STATUSES = tuple(status.value for status in JobRunStatus)


def validate_state(data: JSONDict) -> JSONDict:
    """state.json holds only what is derived from the records, so a bad part is not
    refused but dropped, with a warning naming it: what it held is derived again (a task's
    latest run from its run file, a queued run back into the queue by the engine's
    recovery, the next fire time from the schedule). Unknown keys are kept."""
    repaired = dict(data)
    for key, (default, check) in STATE_PARTS.items():
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, type(default)):
            _state_repaired(key, f"must be {STATE_SHAPES[type(default)]}")
            value = type(default)()
        repaired[key] = check(value, key)
    return repaired


def _state_repaired(field: str, problem: str) -> None:
    logger().warning("state.json: %s %s; it was dropped and will be derived again", field, problem)


def _valid_entries(entries: list[tuple[str, JSON]], check: Callable[[JSON, str], None]) -> list[int]:
    """The positions of the (field name, entry) pairs whose entry passes `check`; each
    other one is logged."""
    good = []
    for n, (name, entry) in enumerate(entries):
        try:
            check(entry, name)
        except Invalid as error:
            _state_repaired(error.field or name, error.message)
            continue
        good.append(n)
    return good


def _check_task_state(entry: JSON, field: str) -> None:
    entry = require_object(entry, field)
    for name in ("next_run_at", "last_run_at"):
        read_time(entry.get(name), f"{field}.{name}")
    if entry.get("last_run_status") is not None:
        read_enum(entry["last_run_status"], f"{field}.last_run_status", RunStatus)
    if entry.get("last_session_id") is not None:
        read_str(entry["last_session_id"], f"{field}.last_session_id", max_len=NAME_MAX)
    if entry.get("next_run_for") is not None:
        read_str(entry["next_run_for"], f"{field}.next_run_for", max_len=NAME_MAX)


def _check_queue_entry(entry: JSON, field: str) -> None:
    entry = require_object(entry, field)
    read_id(entry.get("run_id"), f"{field}.run_id", required=True)
    read_id(entry.get("task_id"), f"{field}.task_id", required=True)
    read_time(entry.get("not_before"), f"{field}.not_before")
    read_time(entry.get("start_by"), f"{field}.start_by")


def _check_job_run(entry: JSON, field: str) -> None:
    """A job run's progress; the step fields are needed once it has a current run."""
    entry = require_object(entry, field)
    read_id(entry.get("job_id"), f"{field}.job_id")
    if entry.get("status") not in JOB_RUN_STATUSES:
        raise Invalid(f"must be one of {', '.join(JOB_RUN_STATUSES)}", f"{field}.status")
    read_bool(entry.get("continue_on_failure", False), f"{field}.continue_on_failure")
    if read_id(entry.get("current_run_id"), f"{field}.current_run_id") is None:
        return
    task_ids = entry.get("task_ids")
    if not isinstance(task_ids, list):
        raise Invalid("must be a list of task ids", f"{field}.task_ids")
    for n, task_id in enumerate(task_ids):
        read_id(task_id, f"{field}.task_ids[{n}]", required=True)
    read_int(entry.get("position"), f"{field}.position", 0, len(task_ids))


def _state_tasks(tasks: JSONDict, field: str) -> JSONDict:
    return _valid_map(tasks, field, _check_task_state)


def _state_queue(queue: list[JSON], field: str) -> list[JSON]:
    good = _valid_entries([(f"{field}[{n}]", entry) for n, entry in enumerate(queue)], _check_queue_entry)
    return [queue[n] for n in good]


def _state_job_runs(job_runs: JSONDict, field: str) -> JSONDict:
    return _valid_map(job_runs, field, _check_job_run)


def _valid_map(entries: JSONDict, field: str, check: Callable[[JSON, str], None]) -> JSONDict:
    items = list(entries.items())
    good = _valid_entries([(f"{field}.{name}", entry) for name, entry in items], check)
    return dict(items[n] for n in good)


def _state_engine(engine: JSONDict, field: str) -> JSONDict:
    kept = dict(engine)
    if not isinstance(kept.get("paused", False), bool):
        _state_repaired(f"{field}.paused", "must be true or false")
        kept.pop("paused")
    owner = kept.get("owner") or {}
    if not isinstance(owner, dict) or not all(
        isinstance(owner.get(name), kind | None) for name, kind in ENGINE_OWNER_FIELDS.items()
    ):
        _state_repaired(f"{field}.owner", "must be an object of id, host, pid and api")
        kept.pop("owner")
    return kept


ENGINE_OWNER_FIELDS: dict[str, type] = {"id": str, "host": str, "pid": int, "api": str, "started_at": str}


def _state_deleting(pending: JSONDict, field: str) -> JSONDict:
    """A delete cut short: only ids are kept, as the sweep turns them into file names."""
    kept: JSONDict = {}
    for kind in ("tasks", "jobs"):
        ids = pending.get(kind, [])
        ids = ids if isinstance(ids, list) else [ids]
        kept[kind] = [item for item in ids if isinstance(item, str) and is_uuid(item)]
        if len(kept[kind]) != len(ids):
            _state_repaired(f"{field}.{kind}", "must be a list of ids")
    return kept


STATE_SHAPES: dict[type, str] = {dict: "an object", list: "a list"}
# state.json's parts: the empty value of the right type, and the check of each part.
STATE_PARTS: dict[str, tuple[JSON, Callable[[Any, str], JSON]]] = {
    "tasks": ({}, _state_tasks),
    "queue": ([], _state_queue),
    "job_runs": ({}, _state_job_runs),
    "engine": ({}, _state_engine),
    "deleting": ({}, _state_deleting),
}


def validate_settings(data: JSONDict) -> JSONDict:
    for name, (_, lo, hi) in SETTING_RULES.items():
        if name in data:
            read_int(data[name], name, lo, hi)
    if data.get("claude_path") is not None:
        read_str(data["claude_path"], "claude_path", max_len=PATH_MAX)
    return data


def _check_home(home: Path) -> None:
    """Refuse a folder that is clearly not a data home: it exists, is not marked as one,
    holds entries the scheduler does not make, and none of the files that only it makes
    (a user's project, their home folder). Raises StorageError saying how to proceed; a
    new or empty folder is fine, and so is a home made before the marker existed."""
    try:
        if (home / HOME_MARKER).exists() or not home.is_dir():
            return
        names = set(os.listdir(home)) - HOME_IGNORED
    except OSError:
        return  # the mkdir that follows reports what is wrong
    foreign = sorted(names - HOME_NAMES)
    if foreign and not names & HOME_EVIDENCE:
        raise StorageError(
            f"{home} is not a claude-scheduler data home: it holds other files (such as "
            f"{foreign[0]!r}) and none of the scheduler's. Choose a new or empty folder (--home or "
            f"{HOME_ENV}), or to use this folder anyway create an empty file {HOME_MARKER} in it"
        )


def _mark_home(home: Path) -> None:
    """Mark the folder as a data home, once; a home this user cannot write stays unmarked."""
    marker = home / HOME_MARKER
    if not marker.exists():
        with contextlib.suppress(OSError):
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, b"This folder is a claude-scheduler data home.\n")
            os.close(fd)


def _is_own_temp(path: Path, names: Callable[[str], bool]) -> bool:
    """Whether `path` is a temp file atomic_write made for a file named as `names` accepts,
    and its writer is gone. Anything else is not ours to delete."""
    match = re.fullmatch(TEMP_NAME_RE, path.name)
    if match is None or not names(match["name"]) or path.is_symlink():
        return False
    return not process_alive(int(match["pid"]))


def _is_store_name(name: str) -> bool:
    return name in HOME_NAMES


def _is_run_file_name(name: str) -> bool:
    return name.endswith(".json") and is_uuid(name.removesuffix(".json"))


def match_id(kind: str, text: str, ids: Iterable[str]) -> str:
    """The one id that equals or starts with `text`; NotFound, or Invalid listing the
    candidates when several match."""
    wanted = text.strip().lower()
    known = set(ids)
    if wanted in known:
        return wanted
    matches = sorted(i for i in known if wanted and i.startswith(wanted))
    if not matches:
        raise NotFound(f"no {kind} with id {text!r}")
    if len(matches) > 1:
        listed = ", ".join(m[: ID_PREFIX_LEN + 4] for m in matches[:10])
        raise Invalid(f"{kind} id {text!r} is ambiguous; it matches {listed}")
    return matches[0]


@dataclass
class DeleteCounts:
    """What a delete removed (or, in a preview, would remove)."""

    jobs: int = 0
    tasks: int = 0
    runs: int = 0
    logs: int = 0

    def to_dict(self) -> JSONDict:
        return dataclasses.asdict(self)


class Store:
    """The data home: jobs, tasks, runs, logs, derived state and settings.

    Every method takes the inter-process lock, so each call sees the latest files and no
    update is lost; `locked()` groups several calls into one atomic step. Records handed
    out belong to the cache: copy them (`dataclasses.replace`) before changing them.
    Thread-safe.
    """

    def __init__(self, home: Path, *, clock: Clock = utcnow) -> None:
        self.home = home
        self.clock = clock
        _check_home(home)
        try:
            for folder in (home, home / RUNS_DIR, home / LOGS_DIR):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create the data home {home}: {error.strerror}") from error
        _mark_home(home)
        self._lock = InterProcessLock(home / LOCK_FILE)
        self.jobs: RecordFile[Job] = RecordFile(home / JOBS_FILE, "jobs", Job.from_dict)
        self.tasks: RecordFile[Task] = RecordFile(home / TASKS_FILE, "tasks", Task.from_dict)
        self.state = DocFile(home / STATE_FILE, validate_state, keyed="tasks", whole=(TASK_INDEX,))
        self.settings_file = DocFile(home / SETTINGS_FILE, validate_settings)
        self._runs: dict[str, RecordFile[Run]] = {}
        self._run_index: dict[str, str] = {}
        self._merged_sig: tuple[object, object] | None = None
        self._warned: set[str] = set()
        self._damaged_runs: frozenset[str] = frozenset()  # tasks whose run file cannot be read
        self.sweep()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield

    # Reading -----------------------------------------------------------------

    def job_list(self) -> list[Job]:
        with self._lock:
            self.jobs.check()
            return list(self.jobs.records.values())

    def task_list(self) -> list[Task]:
        with self._lock:
            self._merge_state()
            return list(self.tasks.records.values())

    def job(self, job_id: str) -> Job:
        with self._lock:
            self.jobs.check()
            if job_id not in self.jobs.records:
                raise NotFound(f"no job with id {job_id}")
            return self.jobs.records[job_id]

    def task(self, task_id: str) -> Task:
        with self._lock:
            self._merge_state()
            if task_id not in self.tasks.records:
                raise NotFound(f"no task with id {task_id}")
            return self.tasks.records[task_id]

    def statuses_by_job(self) -> dict[str | None, list[RunStatus | None]]:
        """The status of each task's latest run, grouped by the task's job (None: tasks in
        no job)."""
        with self._lock:
            grouped: dict[str | None, list[RunStatus | None]] = {}
            task_jobs = self._indexed_task_jobs()
            if task_jobs is None:
                for task in self.task_list():
                    grouped.setdefault(task.job_id, []).append(task.last_run_status)
                return grouped
            entries = self.state.data.get("tasks", {})
            for task_id, job_id in task_jobs.items():
                status = entries.get(task_id, {}).get("last_run_status")
                grouped.setdefault(job_id, []).append(enum_members(RunStatus)[status] if status else None)
            return grouped

    def _indexed_task_jobs(self) -> dict[str, str | None] | None:
        """Each task's job from the index in state.json, in a process that has not read
        tasks.json yet, if the index was made from the tasks.json on disk now; else None.
        Listing jobs in a fresh process then does not read and check every task."""
        self.state.check()
        index = self.state.data.get(TASK_INDEX)
        if self.tasks.loaded_stamp() is not None or not isinstance(index, dict):
            return None
        jobs = index.get("jobs")
        if not isinstance(jobs, dict) or index.get("of") != self.tasks.disk_stamp():
            return None
        return jobs if all(job_id is None or isinstance(job_id, str) for job_id in jobs.values()) else None

    def tasks_of(self, job_id: str | None) -> list[Task]:
        """Tasks of a job in its `task_order`, then the rest by creation; None: unassigned."""
        tasks = [task for task in self.task_list() if task.job_id == job_id]
        order = {task_id: n for n, task_id in enumerate(self.job(job_id).task_order)} if job_id else {}
        return sorted(tasks, key=lambda task: (order.get(task.id, len(order)), task.created_at))

    def runs_of(self, task_id: str) -> list[Run]:
        with self._lock:
            return list(self._runs_file(task_id).records.values())

    def run(self, run_id: str) -> Run:
        with self._lock:
            task_id = self._run_index.get(run_id)
            if task_id is None or run_id not in self._runs_file(task_id).records:
                self._run_index.pop(run_id, None)  # gone from where it was, if deleted elsewhere
                self.all_runs()
                task_id = self._run_index.get(run_id)
            if task_id is None or run_id not in self._runs_file(task_id).records:
                damaged = [runs.error for runs in self._runs.values() if runs.error]
                if damaged:  # the run may be in it
                    raise damaged[0]
                raise NotFound(f"no run with id {run_id}")
            return self._runs_file(task_id).records[run_id]

    def all_runs(self) -> list[Run]:
        """The runs of every task. A run file that cannot be read is skipped (logged once,
        and listed by `unreadable_files`): one damaged file hides no other task's runs."""
        with self._lock:
            runs: list[Run] = []
            for task in self.task_list():
                try:
                    runs.extend(self._runs_file(task.id).records.values())
                except StorageError as error:
                    self._warn_once(error)
            return runs

    def unreadable_files(self, *, read: bool = True) -> dict[str, str]:
        """The store files that cannot be read: each one's path within the home, and why
        it is refused (naming the file); empty when all are fine. Reads every file, every
        task's run file included; with `read` False, cheap enough for each health check,
        says how the files were when this store last read them (and takes no lock)."""
        if read:
            with self._lock:
                for document in (self.jobs, self.tasks, self.state, self.settings_file):
                    with contextlib.suppress(StorageError):
                        document.refresh()
                with contextlib.suppress(StorageError):
                    self.all_runs()
        files: list[CachedFile] = [self.jobs, self.tasks, self.state, self.settings_file]
        files += [self._runs[task_id] for task_id in self._damaged_runs if task_id in self._runs]
        return {
            document.path.relative_to(self.home).as_posix(): str(document.error)
            for document in files
            if document.error
        }

    def _warn_once(self, error: StorageError) -> None:
        if str(error) not in self._warned:
            self._warned.add(str(error))
            logger().warning("%s", error)

    def log_path(self, run_id: str) -> Path:
        return self.home / LOGS_DIR / f"{run_id}.log"

    def settings(self) -> JSONDict:
        with self._lock:
            self.settings_file.check()
            return {**DEFAULT_SETTINGS, **self.settings_file.data}

    def setting(self, name: str) -> JSON:
        """One setting; its default (with a warning) while settings.json is unreadable,
        so a broken settings file cannot stop runs from being recorded."""
        try:
            return self.settings()[name]
        except StorageError as error:
            logger().warning("%s; using the default %s", error, name)
            return DEFAULT_SETTINGS[name]

    def engine_state(self) -> JSONDict:
        with self._lock:
            self.state.check()
            return dict(self.state.data.get("engine", {}))

    def resolve(self, kind: str, text: str) -> str:
        """A full id from a unique prefix; NotFound or Invalid (ambiguous, with candidates).
        A run not found while a run file cannot be read: that file's StorageError."""
        try:
            return match_id(kind, text, self._ids(kind))
        except NotFound:
            damaged = [runs.error for runs in self._runs.values() if runs.error] if kind == "run" else []
            if damaged:  # the run may be in it
                raise damaged[0] from None
            raise

    def _ids(self, kind: str) -> Iterable[str]:
        if kind == "job":
            return [job.id for job in self.job_list()]
        if kind == "task":
            return [task.id for task in self.task_list()]
        return [run.id for run in self.all_runs()]

    def _runs_file(self, task_id: str) -> RecordFile[Run]:
        runs = self._runs.get(task_id)
        if runs is None:
            path = self.home / RUNS_DIR / f"{task_id}.json"
            runs = self._runs[task_id] = RecordFile(path, "runs", Run.from_dict, {"task_id": task_id})
        if runs.refresh():
            self._run_index.update(dict.fromkeys(runs.records, task_id))
            # Replaced, never changed in place: `unreadable_files` reads it without the lock.
            damaged = task_id in self._damaged_runs
            if damaged != bool(runs.error):
                self._damaged_runs = self._damaged_runs ^ {task_id}
        runs.check()
        return runs

    def _merge_state(self) -> None:
        """Copy derived fields from state.json into the cached tasks when either changed."""
        self.tasks.check()
        self.state.check()
        sig = (self.tasks._sig, self.state._sig)
        if sig == self._merged_sig:
            return
        entries = self.state.data.get("tasks", {})
        for task in self.tasks.records.values():
            task.apply_derived(entries.get(task.id, {}))
        self._merged_sig = sig

    # Writing -----------------------------------------------------------------

    def save_job(self, job: Job) -> None:
        with self._lock:
            self.jobs.check()
            self.jobs.put(job)
            self.jobs.save()

    def save_task(self, task: Task, derived: JSONDict | None = None) -> None:
        """Store a task, and (when given) its derived fields in state.json."""
        with self._lock:
            self.tasks.check()
            if task.job_id and task.job_id not in {job.id for job in self.job_list()}:
                stored = self.tasks.records.get(task.id)
                if stored is not None and stored.job_id == task.job_id:  # lost by a hand edit
                    raise Invalid(f"the task's job {task.job_id} is gone: give it another or none", "job_id")
                raise Invalid(f"no job with id {task.job_id}", "job_id")
            self.state.check()  # before the change: a refused save must leave the cache as the file is
            self.tasks.put(task)
            self._save_merged(self.tasks, task.id)
            if derived is None:
                self._save_merged(self.state)  # which brings the index of the tasks' jobs up to date
            else:
                self.update_task_state(task.id, derived)

    def update_task_state(self, task_id: str, changes: JSONDict) -> None:
        with self._lock:
            self.state.check()
            tasks = self.state.data.setdefault("tasks", {})
            tasks[task_id] = {**tasks.get(task_id, {}), **changes}
            self._save_merged(self.state, task_id)

    def _save_merged(self, document: CachedFile, task_id: str | None = None) -> None:
        """Save tasks.json or state.json; when the cached tasks already carried the derived
        fields, bring just `task_id` up to date instead of merging all of them again."""
        self.tasks.refresh()  # an unreadable tasks.json must not stop runs being recorded
        self.state.check()
        merged = not self.tasks.error and (self.tasks._sig, self.state._sig) == self._merged_sig
        if document is self.state:
            self._index_tasks()
        document.save()
        if not merged:
            return
        task = self.tasks.records.get(task_id or "")
        if task is not None:
            task.apply_derived(self.state.data.get("tasks", {}).get(task.id, {}))
        self._merged_sig = (self.tasks._sig, self.state._sig)

    def _index_tasks(self) -> None:
        """Bring state.json's index of each task's job up to date, stamped with the
        tasks.json it was made from (see `statuses_by_job`)."""
        stamp = self.tasks.loaded_stamp()
        index = self.state.data.get(TASK_INDEX)
        if stamp is None:
            self.state.data.pop(TASK_INDEX, None)
        elif not isinstance(index, dict) or index.get("of") != stamp:
            jobs = {task_id: task.job_id for task_id, task in self.tasks.records.items()}
            self.state.data[TASK_INDEX] = {"of": stamp, "jobs": jobs}

    def set_engine_state(self, **changes: JSON) -> None:
        with self._lock:
            self.state.check()
            self.state.data["engine"] = {**self.state.data.get("engine", {}), **changes}
            self._save_merged(self.state)

    def update_settings(self, changes: JSONDict) -> JSONDict:
        with self._lock:
            self.settings_file.check()
            merged = validate_settings({**self.settings_file.data, **changes})
            self.settings_file.data = merged
            self.settings_file.save()
            return self.settings()

    def save_run(self, run: Run) -> None:
        """Record a run (any transition); keeps the task's latest status, its job's status
        and the retention limit up to date in the same locked step."""
        with self._lock:
            self.tasks.refresh()
            if not self.tasks.error and run.task_id not in self.tasks.records:
                # The task was deleted while this run went on: its history went with it.
                self._unlink(self.log_path(run.id))
                return
            runs = self._runs_file(run.task_id)
            runs.put(run)
            self._run_index[run.id] = run.task_id
            trimmed = self._trim(runs) if run.status in FINISHED_STATUSES else []
            runs.save()
            self._follow_saved_run(run.task_id, runs, trimmed)

    def _follow_saved_run(self, task_id: str, runs: RecordFile[Run], trimmed: list[Run]) -> None:
        """The run file, saved, is the record: what follows from it (the trimmed runs' logs,
        the task's derived fields, its job's status) is brought up to date where it can be.
        A failure (state.json or jobs.json mid-way through a hand edit, a full disk) is
        logged, and left for the task's next run to bring up to date; it never makes the
        run's save fail, which would leave a claimed run `running` with nothing running it."""
        try:
            for old in trimmed:
                self._unlink(self.log_path(old.id))
            self._note_latest(task_id, runs)
        except StorageError as error:
            logger().warning("run of task %s recorded, but: %s", task_id[:ID_PREFIX_LEN], error)

    def _trim(self, runs: RecordFile[Run]) -> list[Run]:
        """Drop finished runs past the newest `retention_runs`: executed runs and the
        skipped/missed records are counted apart, so a flood of skips keeps real history."""
        keep = int(self.setting("retention_runs"))
        finished = [run for run in runs.records.values() if run.status in FINISHED_STATUSES]
        finished.sort(key=lambda run: run.created_at, reverse=True)
        executed = [run for run in finished if run.status not in NON_EXECUTIONS]
        notes = [run for run in finished if run.status in NON_EXECUTIONS]
        doomed = executed[keep:] + notes[keep:]
        for old in doomed:
            runs.remove(old.id)
            self._run_index.pop(old.id, None)
        return doomed

    def _note_latest(self, task_id: str, runs: RecordFile[Run]) -> None:
        executed = [run for run in runs.records.values() if run.tells_how_the_task_does]
        latest = max(executed, key=lambda run: run.created_at, default=None)
        state = self.state.data.get("tasks", {}).get(task_id, {})
        derived: JSONDict = {
            "last_run_status": latest.status.value if latest else None,
            "last_run_at": fmt_time(latest.started_at or latest.created_at) if latest else None,
        }
        if latest and latest.failure_kind == FailureKind.MISSING_SESSION:
            derived["last_session_id"] = None  # claude has lost it: the next run starts a new one
        elif latest and latest.session_id:
            derived["last_session_id"] = latest.session_id
        if all(state.get(key) == value for key, value in derived.items()):
            return
        self.update_task_state(task_id, derived)
        task = None if self.tasks.error else self.tasks.records.get(task_id)
        if task is not None:
            self.refresh_job_status(task.job_id)

    def refresh_job_status(self, job_id: str | None) -> None:
        """Recompute a job's stored status from its tasks' latest runs."""
        with self._lock:
            if not job_id or job_id not in {job.id for job in self.job_list()}:
                return
            job = self.job(job_id)
            status = derive_job_status(task.last_run_status for task in self.tasks_of(job_id))
            if status is not job.status:
                self.save_job(dataclasses.replace(job, status=status, updated_at=self.clock()))

    # The run queue and job runs (kept in state.json) ---------------------------

    def enqueue(self, run: Run, not_before: datetime | None = None) -> None:
        """Record a queued run and put it at the back of the engine's queue. Raises
        StorageError, having undone what it could.

        The queue entry is written before the run: a failure between the two leaves an
        entry naming no queued run, which dispatch passes over and recovery drops; never
        a queued run outside the queue, which the next engine's recovery would start
        after the request had failed (and a full disk would not let it be taken back)."""
        with self._lock:
            self.state.check()
            self.jobs.check()
            is_new = run.id not in self._runs_file(run.task_id).records
            entry = {"run_id": run.id, "task_id": run.task_id, "not_before": fmt_time(not_before)}
            if run.start_by is not None:  # the engine looks at the queue, not at each run
                entry["start_by"] = fmt_time(run.start_by)
            self.state.data.setdefault("queue", []).append(entry)
            self._save_merged(self.state)
            try:
                self.save_run(run)
            except SchedulerError:
                if is_new:
                    self._unqueue_failed(run)
                raise

    def _unqueue_failed(self, run: Run) -> None:
        """Take back the queue entry of a run whose record failed (best effort: logged)."""
        try:
            self.dequeue([run.id])
        except SchedulerError as error:
            logger().warning(
                "the queue entry of run %s (not recorded) stays until the engine drops it: %s",
                run.id[:ID_PREFIX_LEN],
                error,
            )

    def queue(self) -> list[JSONDict]:
        with self._lock:
            self.state.check()
            return list(self.state.data.get("queue", []))

    def dequeue(self, run_ids: Iterable[str]) -> None:
        with self._lock:
            self.state.check()
            gone = set(run_ids)
            entries = self.state.data.get("queue", [])
            kept = [entry for entry in entries if entry.get("run_id") not in gone]
            if len(kept) != len(entries):
                self.state.data["queue"] = kept
                self._save_merged(self.state)

    def lift_start_by(self, run_ids: Iterable[str]) -> None:
        """Drop the start-by limit of these queued runs' entries (an engine now runs)."""
        with self._lock:
            self.state.check()
            lifted = set(run_ids)
            entries = self.state.data.get("queue", [])
            kept = [
                {key: value for key, value in entry.items() if key != "start_by"}
                if entry.get("run_id") in lifted
                else entry
                for entry in entries
            ]
            if kept != entries:
                self.state.data["queue"] = kept
                self._save_merged(self.state)

    def job_runs(self) -> dict[str, JSONDict]:
        with self._lock:
            self.state.check()
            return dict(self.state.data.get("job_runs", {}))

    def job_schedules(self) -> dict[str, JSONDict]:
        """Each scheduled job's engine state: `next_run_at`, and `queued_for` (a fire
        waiting for the job's current run to end, overlap: queue)."""
        with self._lock:
            self.state.check()
            return dict(self.state.data.get("job_schedules", {}))

    def update_job_schedule(self, job_id: str, changes: JSONDict) -> None:
        with self._lock:
            self.state.check()
            schedules = self.state.data.setdefault("job_schedules", {})
            schedules[job_id] = {**schedules.get(job_id, {}), **changes}
            self._save_merged(self.state)

    def forget_job_runs(self, job_id: str) -> None:
        """Drop a deleted job's job runs and schedule state from state.json."""
        with self._lock:
            self.state.check()
            runs = self.state.data.get("job_runs", {})
            self.state.data["job_runs"] = {
                key: entry for key, entry in runs.items() if entry.get("job_id") != job_id
            }
            self.state.data.get("job_schedules", {}).pop(job_id, None)
            self._save_merged(self.state)

    def save_job_run(self, job_run_id: str, entry: JSONDict | None) -> None:
        """Store (or, with None, forget) the progress of one run of a whole job."""
        with self._lock:
            self.state.check()
            runs = self.state.data.setdefault("job_runs", {})
            if entry is None:
                runs.pop(job_run_id, None)
            else:
                runs[job_run_id] = entry
            self._save_merged(self.state)

    def delete_run(self, run_id: str) -> DeleteCounts:
        with self._lock:
            run = self.run(run_id)
            runs = self._runs_file(run.task_id)
            runs.remove(run_id)
            runs.save()
            self._run_index.pop(run_id, None)
            counts = DeleteCounts(runs=1, logs=self._unlink(self.log_path(run_id)))
            self._note_latest(run.task_id, runs)
            return counts

    def delete_task(self, task_id: str) -> DeleteCounts:
        with self._lock:
            task = self.task(task_id)
            counts = self._delete([task_id], [])
            if task.job_id:
                self._drop_from_order(task.job_id, {task_id})
                self.refresh_job_status(task.job_id)
            return counts

    def delete_job(self, job_id: str) -> DeleteCounts:
        """Cascade-delete a job with its tasks, runs and logs (see `_delete`)."""
        with self._lock:
            self.job(job_id)
            doomed = [task.id for task in self.task_list() if task.job_id == job_id]
            return self._delete(doomed, [job_id])

    def _delete(self, task_ids: list[str], job_ids: list[str]) -> DeleteCounts:
        """Delete in crash-safe order: first the intent is recorded in state.json, then
        the tasks go, then the jobs (so no task ever points at a missing job), then the
        logs and run files; an interrupted delete is finished by the next `sweep`."""
        self.state.check()
        self.state.data["deleting"] = {"tasks": task_ids, "jobs": job_ids}
        self._save_merged(self.state)
        return self._finish_delete(task_ids, job_ids)

    def _finish_delete(self, task_ids: list[str], job_ids: list[str]) -> DeleteCounts:
        self.tasks.check()
        self.jobs.check()
        present = [task_id for task_id in task_ids if task_id in self.tasks.records]
        for task_id in present:
            self.tasks.remove(task_id)
        if present:
            self.tasks.save()
        jobs = [job_id for job_id in job_ids if job_id in self.jobs.records]
        for job_id in jobs:
            self.jobs.remove(job_id)
        if jobs:
            self.jobs.save()
        counts = DeleteCounts(jobs=len(jobs), tasks=len(present))
        self._drop_history(task_ids, counts)
        return counts

    def _drop_from_order(self, job_id: str, task_ids: set[str]) -> None:
        self.jobs.check()
        job = self.jobs.records.get(job_id)
        if job and task_ids & set(job.task_order):
            order = [task_id for task_id in job.task_order if task_id not in task_ids]
            self.save_job(dataclasses.replace(job, task_order=order, updated_at=self.clock()))

    def _drop_history(self, task_ids: list[str], counts: DeleteCounts) -> None:
        """Delete the logs, then the run files (which list the logs), then the state."""
        for task_id in task_ids:
            runs = self._runs_file(task_id)
            for run_id in runs.records:
                counts.runs += 1
                counts.logs += self._unlink(self.log_path(run_id))
                self._run_index.pop(run_id, None)
            self._unlink(runs.path)
            self._runs.pop(task_id, None)
        entries = self.state.data.get("tasks", {})
        for task_id in task_ids:
            entries.pop(task_id, None)
        self.state.data.pop("deleting", None)
        self._save_merged(self.state)

    @staticmethod
    def _unlink(path: Path) -> int:
        try:
            path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as error:
            raise StorageError(f"cannot delete {path}: {error.strerror}") from error
        return 1

    def sweep(self, *, logs: bool = False) -> DeleteCounts:
        """Finish a delete that a crash interrupted, remove left-over temp files, and with
        `logs` every log that no run file on disk refers to. Run files of unknown tasks
        with no recorded delete are kept: a lost or moved tasks.json must not cost the
        history. Unreadable files are left alone (and no log is swept then)."""
        counts = DeleteCounts()
        with self._lock:
            for folder, names in ((self.home, _is_store_name), (self.home / RUNS_DIR, _is_run_file_name)):
                for tmp in self._own_entries(folder, ".*.tmp"):
                    if _is_own_temp(tmp, names):
                        self._unlink(tmp)
            self.state.refresh()
            if self.state.repaired and not self.state.error:
                with contextlib.suppress(StorageError):  # a home that cannot be written: next time
                    self._save_merged(self.state)
                    self.state.repaired = False
            pending = self.state.data.get("deleting") if not self.state.error else None
            if isinstance(pending, dict):
                with contextlib.suppress(StorageError):
                    counts = self._finish_delete(pending["tasks"], pending["jobs"])
            if logs:
                counts.logs += self._sweep_logs()
        return counts

    def _own_entries(self, folder: Path, pattern: str) -> list[Path]:
        """The entries of one of the home's folders; none when the folder is a symlink (it
        leads out of the home, perhaps into a shared folder) or cannot be listed."""
        if folder != self.home and folder.is_symlink():
            return []
        try:
            return list(folder.glob(pattern))
        except OSError:
            return []

    def _sweep_logs(self) -> int:
        """Delete logs named by a run id that no run file on disk lists; only regular files
        named "<uuid>.log", the names the store gives logs."""
        referenced: set[str] = set()
        for path in self._own_entries(self.home / RUNS_DIR, "*.json"):
            if not _is_run_file_name(path.name):
                continue
            try:
                referenced.update(self._runs_file(path.stem).records)
            except StorageError:
                return 0
        stray = [
            path
            for path in self._own_entries(self.home / LOGS_DIR, "*.log")
            if is_uuid(path.stem) and path.stem not in referenced and not path.is_symlink()
        ]
        return sum(self._unlink(path) for path in stray)


####
# Engine ####
####

# Executor constants.

STATUS_SUCCESS = "success"
STATUS_FAILED = "failed"
STATUS_TIMEOUT = "timeout"
STATUS_CANCELLED = "cancelled"

CLAUDE_EXECUTABLE = "claude"
# Under the user's home: the native installer's place (often missing from the PATH of
# services and desktop launchers), and the older local install.
CLAUDE_NATIVE_INSTALL = (".local", "bin", "claude.exe" if sys.platform == "win32" else "claude")
CLAUDE_LOCAL_INSTALL = (".claude", "local", "claude")
# Where resolve_claude found claude -> how people are told.
CLAUDE_SOURCES = {
    "setting": "set by the claude_path setting",
    "env": f"set by ${CLAUDE_ENV}",
    "path": "found on PATH",
    "native": "found in ~/.local/bin, the native installer's place",
    "local": "found in ~/.claude/local, the old local install",
}
CLAUDE_TESTED_VERSION = "2.1.197"  # the CLI whose output the contract tests recorded
CLAUDE_VERSION_TIMEOUT_SECONDS = 5.0
CLAUDE_VERSION_PATTERN = r"(\d+)\.(\d+)\.(\d+)"
CLAUDE_PATH_SHOWN = 300  # how much of $PATH the not-found message repeats
CLAUDE_BASE_ARGS = ("-p", "--output-format", "stream-json", "--verbose")

LOG_STDERR_PREFIX = "[stderr] "
LOG_SCHEDULER_PREFIX = "[scheduler] "
SESSION_LOST_NOTE = "claude no longer has this session: the task's next run starts a new one"
SESSION_RESTART_NOTE = "starting a new session: claude no longer had the last one ({})"
LOG_FAILURE_PREFIX = "[scheduler] run failed: "  # why, in the log: its last words may read like success
RESULT_MAX_CHARS = 2000
ERROR_MAX_CHARS = 300
RENDER_MAX_CHARS = 200
RENDER_SESSION_CHARS = 8
TOOL_RESULT_LINES = 2
TOOL_RESULT_JOINER = " ⏎ "
ELLIPSIS = "…"
GROUP_POLL_SECONDS = 0.05
ZOMBIE_STATES = (b"Z", b"X")  # /proc/<pid>/stat states of processes that are gone
PROMPT_WRITER_JOIN_SECONDS = 1.0
# A session's output is read (and logged) in pieces this big: a longer line may have a
# stderr line logged inside it, a price for never holding all of it in memory.
OUTPUT_PIECE_BYTES = 1 << 20
OUTPUT_LINE_MEMORY_MAX = 1 << 22  # of a longer line only this much is kept in memory

# Where each tool keeps the argument worth showing in a one-line summary of the call:
# the tools of claude 2.1.x's init line (Glob, Grep and LS are gone; mcp__ tools show
# their input as JSON).
TOOL_SUMMARY_KEYS = {
    "Bash": "command",
    "Read": "file_path",
    "Write": "file_path",
    "Edit": "file_path",
    "NotebookEdit": "notebook_path",
    "WebFetch": "url",
    "WebSearch": "query",
    "Task": "description",
    "TaskCreate": "subject",
    "TaskGet": "taskId",
    "TaskUpdate": "taskId",
    "TaskOutput": "task_id",
    "TaskStop": "task_id",
    "CronCreate": "cron",
    "CronDelete": "id",
    "Skill": "skill",
    "SendMessage": "to",
    "ScheduleWakeup": "reason",
    "EnterWorktree": "name",
    "Workflow": "name",
    "ReportFindings": "summary",
}

# Claude's usage-limit notice (claude-cli.md): "You've hit your session limit · resets
# 10:38am (UTC)"; the `· resets` part may be missing. The epoch in the stream's
# rate_limit_event is the reliable reset time; the sentence is for people.
USAGE_LIMIT_MAX_CHARS = 300  # the notice is one short sentence
USAGE_LIMIT_SENTENCE = r"^You(?:'|’)ve hit your (?P<what>[^·\n]+?)(?:\s*·\s*resets (?P<when>[^\n]+))?$"
# The reset in the sentence, as claude words it: "10:38am (UTC)", "Dec 5, 6:58pm (UTC)",
# the zone an IANA name or UTC. Read only when no rate_limit_event gave the epoch.
USAGE_LIMIT_RESET = (
    r"(?i)^(?:(?P<month>[A-Za-z]{3})[a-z]*\.? (?P<day>\d{1,2}),? )?"
    r"(?P<hour>1[0-2]|0?[1-9])(?::(?P<minute>[0-5]\d))?"
    r"\s*(?P<half>am|pm) \((?P<zone>[^()]+)\)$"
)
HALF_DAY_HOURS = 12
MONTH_ABBREVIATIONS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
HTTP_SERVER_ERROR = 500  # API statuses from here up are the server's fault
SYNTHETIC_MODEL = "<synthetic>"  # the model of the assistant line claude makes up for an API error
MISSING_SESSION_TEXT = "No conversation found with session ID"
# The `error` of a synthetic assistant line, and the API status of a result, to a kind.
API_ERROR_KINDS = {
    "authentication_failed": FailureKind.AUTH,
    "rate_limit": FailureKind.RATE_LIMIT,
    "overloaded": FailureKind.OVERLOADED,
    "server_error": FailureKind.SERVER_ERROR,
    "billing_error": FailureKind.BILLING,
    "invalid_request": FailureKind.INVALID_REQUEST,
}
API_STATUS_KINDS = {
    401: FailureKind.AUTH,
    403: FailureKind.AUTH,
    429: FailureKind.RATE_LIMIT,
    529: FailureKind.OVERLOADED,
}
RESULT_SUBTYPE_KINDS = {
    "error_max_turns": FailureKind.MAX_TURNS,
    "error_max_budget_usd": FailureKind.BUDGET,
}
# Failures a retry cannot mend soon: the engine's hold waits out limits instead.
NOT_RETRIED_KINDS = frozenset(
    {
        FailureKind.USAGE_LIMIT,
        FailureKind.RATE_LIMIT,
        FailureKind.AUTH,
        FailureKind.BILLING,
        FailureKind.INVALID_REQUEST,
        FailureKind.PERMISSION_DENIED,  # the same prompt under the same permissions is refused again
        FailureKind.BUDGET,  # a retry would spend the budget again
        FailureKind.MAX_TURNS,  # the same task with the same limit runs out the same way
    }
)
MODEL_USAGE_KEYS = (  # modelUsage's key, ours
    ("inputTokens", "input_tokens"),
    ("cacheReadInputTokens", "cache_read_tokens"),
    ("cacheCreationInputTokens", "cache_creation_tokens"),
    ("outputTokens", "output_tokens"),
)
USAGE_KEYS = (  # the result's `usage` key, modelUsage's: for a stream without modelUsage
    ("input_tokens", "inputTokens"),
    ("cache_read_input_tokens", "cacheReadInputTokens"),
    ("cache_creation_input_tokens", "cacheCreationInputTokens"),
    ("output_tokens", "outputTokens"),
)


# Executor errors.


class FixableError(SchedulerError):
    """An error whose message says what is wrong, then how to fix it; `problem` and `fix`
    keep the two apart for the setup check."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


class ClaudeNotFound(FixableError):
    """No usable `claude` executable; the message says how to provide one."""

    code = "claude_not_found"


class WorkdirMissing(FixableError):
    """A run's working directory does not exist or is not a directory."""

    code = "workdir_missing"


class OptionPathMissing(SchedulerError):
    """A folder (`add_dirs`) or file (`mcp_config`) a task gives claude is not there."""

    code = "option_path_missing"


# Resolving the command.


def _expand_path(raw: str, home: Path, environ: Mapping[str, str]) -> str:
    """`~` becomes `home`, `$VAR`/`${VAR}` come from `environ` (unknown ones stay as written)."""

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return environ.get(name, match.group(0))

    if raw == "~" or raw.startswith(("~/", "~" + os.sep)):
        raw = str(home) + raw[1:]
    return re.sub(r"\$(?:\{([^}]*)\}|(\w+))", variable, raw)


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _explicit_claude(source: str, raw: str, home: Path, environ: Mapping[str, str]) -> str:
    """An explicitly configured claude, which must work: a wrong setting is never skipped."""
    expanded = _expand_path(raw.strip(), home, environ)
    if os.sep not in expanded and "/" not in expanded:
        expanded = shutil.which(expanded, path=environ.get("PATH", os.defpath)) or expanded
    if _is_executable_file(expanded):
        return expanded
    raise ClaudeNotFound(
        f"{source} is set to {raw!r}, which is not an executable file",
        "fix it or clear it to let the scheduler search for claude",
    )


class ClaudeLocation(typing.NamedTuple):
    """The claude that runs, and where it was found (a key of CLAUDE_SOURCES)."""

    path: str
    source: str

    @property
    def source_text(self) -> str:
        return CLAUDE_SOURCES[self.source]


def locate_claude(configured: str | None, environ: Mapping[str, str], home: Path) -> ClaudeLocation:
    """The `claude` executable to run, and where it was found.

    Order: the `claude_path` setting (`configured`), `$CLAUDE_SCHEDULER_CLAUDE`, `claude`
    on `environ["PATH"]`, `home/.local/bin/claude` (the native installer's place; Windows:
    `claude.exe`), `home/.claude/local/claude`. A setting or variable that is set but does
    not name an executable file raises rather than falling through, so a typo never
    silently runs another claude. Raises ClaudeNotFound naming every place searched and
    how to fix it.
    """
    explicit = (
        ("setting", "the claude_path setting", configured),
        ("env", f"${CLAUDE_ENV}", environ.get(CLAUDE_ENV)),
    )
    for source, label, raw in explicit:
        if raw and raw.strip():
            return ClaudeLocation(_explicit_claude(label, raw, home, environ), source)
    search_path = environ.get("PATH", os.defpath)
    found = shutil.which(CLAUDE_EXECUTABLE, path=search_path)
    if found:
        return ClaudeLocation(found, "path")
    for source, parts in (("native", CLAUDE_NATIVE_INSTALL), ("local", CLAUDE_LOCAL_INSTALL)):
        candidate = str(home.joinpath(*parts))
        if _is_executable_file(candidate):
            return ClaudeLocation(candidate, source)
    native, local = (home.joinpath(*parts) for parts in (CLAUDE_NATIVE_INSTALL, CLAUDE_LOCAL_INSTALL))
    folders = ", ".join(folder for folder in search_path.split(os.pathsep) if folder)
    raise ClaudeNotFound(
        f"Claude Code CLI not found: the claude_path setting and ${CLAUDE_ENV} are not set, and "
        f"there is no claude on PATH ({_clip(folders, CLAUDE_PATH_SHOWN) or 'empty'}), "
        f"at {native} or at {local}",
        f"install Claude Code (its native installer puts it in ~/.local/bin; or npm install -g "
        f"@anthropic-ai/claude-code), or set claude_path in settings (`cli settings set claude_path "
        f"/full/path/to/claude`, or File → Settings in the window) or ${CLAUDE_ENV} to the full "
        f"path of the claude executable",
    )


def resolve_claude(configured: str | None, environ: Mapping[str, str], home: Path) -> str:
    """Path of the `claude` executable to run: see locate_claude."""
    return locate_claude(configured, environ, home).path


class ClaudeVersion(typing.NamedTuple):
    """What `claude --version` said: its first line, and the version number in it. When no
    number could be read, `number` is None and `error` says why."""

    text: str
    number: tuple[int, int, int] | None
    error: str | None = None


def claude_version(path: str) -> ClaudeVersion:
    """Run `path --version` (in this process's environment) and read its answer.

    Blocks for up to CLAUDE_VERSION_TIMEOUT_SECONDS: never call it on the Tk thread. The
    answer is cached per path, modification time and size, so asking again is cheap
    until claude is updated; a call that timed out is not cached. Never raises.
    """
    try:
        stat = os.stat(path)
    except OSError as error:
        return ClaudeVersion("", None, f"cannot read {path}: {error.strerror or error}")
    try:
        return _claude_version_of(path, stat.st_mtime_ns, stat.st_size)
    except TimeoutError as error:
        return ClaudeVersion("", None, str(error))


@functools.lru_cache(maxsize=16)
def _claude_version_of(path: str, mtime_ns: int, size: int) -> ClaudeVersion:
    """claude_version's answer for one version of the file; raises TimeoutError (not cached)."""
    import subprocess

    try:
        proc = subprocess.Popen(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=sys.platform != "win32",
        )
    except OSError as error:
        return ClaudeVersion("", None, f"could not start {path}: {error.strerror or error}")
    try:
        out, err = proc.communicate(timeout=CLAUDE_VERSION_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(proc, _kill_signal())
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=CLAUDE_VERSION_TIMEOUT_SECONDS)
        seconds = _format_seconds(CLAUDE_VERSION_TIMEOUT_SECONDS)
        raise TimeoutError(f"`{path} --version` gave no answer within {seconds}") from None
    return _read_claude_version(path, proc.returncode, out, err)


def _read_claude_version(path: str, exit_code: int, out: bytes, err: bytes) -> ClaudeVersion:
    text = _first_line(out.decode("utf-8", errors="replace"))
    if exit_code != 0:
        said = _first_line(err.decode("utf-8", errors="replace")) or text
        reason = f"`{path} --version` failed ({_describe_exit(exit_code)})"
        return ClaudeVersion(text, None, f"{reason}: {said}" if said else reason)
    match = re.search(CLAUDE_VERSION_PATTERN, text)
    if match is None:
        return ClaudeVersion(
            text, None, f"`{path} --version` printed no version number: {text or 'nothing'!r}"
        )
    major, minor, patch = (int(part) for part in match.groups())
    return ClaudeVersion(text, (major, minor, patch))


def describe_claude(configured: str | None, environ: Mapping[str, str], home: Path) -> JSONDict:
    """Which claude runs, where it was found and its version, as shown in the settings:
    `path`, `source` (a CLAUDE_SOURCES key), `version` (None when unknown) and `error`
    (why claude was not found or its version not read; else None). Runs `claude --version`:
    see claude_version."""
    try:
        location = locate_claude(configured, environ, home)
    except ClaudeNotFound as error:
        return {"path": None, "source": None, "version": None, "error": error.message}
    version = claude_version(location.path)
    number = ".".join(map(str, version.number)) if version.number else None
    return {"path": location.path, "source": location.source, "version": number, "error": version.error}


def claude_text(info: JSONDict) -> str:
    """describe_claude's answer in a line for people."""
    if info["path"] is None:
        return f"not found: {info['error']}"
    where = f"{info['path']} ({CLAUDE_SOURCES[info['source']]})"
    return f"{where}, version {info['version']}" if info["version"] else f"{where}; {info['error']}"


def _option_value(value: str, field: str) -> str:
    """A value for one argv slot; one that looks like an option would be misparsed."""
    if not value or value.startswith("-"):
        raise Invalid(f"{value!r} is not a usable value (empty or starts with '-')", field)
    if "\0" in value:
        raise Invalid("must not contain a NUL character", field)
    return value


def build_command(
    claude: str,
    *,
    model: str,
    permission_mode: str,
    allowed_tools: list[str],
    disallowed_tools: list[str],
    max_turns: int | None,
    append_system_prompt: str | None,
    resume_session: str | None,
    system_prompt: str | None = None,
    max_budget_usd: float | None = None,
    fallback_model: str | None = None,
    add_dirs: Sequence[str] = (),
    mcp_config: str | None = None,
    strict_mcp_config: bool = False,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv for one headless session. The prompt is not in it: it goes on stdin.

    Raises Invalid (naming the field) for a model, permission mode, tool name, folder,
    file or session id that is empty or starts with '-', since claude would read it as
    an option. `extra_args` (validated by the task) come last, so that none of them can
    take one of the scheduler's options as its value.
    """
    argv = [claude, *CLAUDE_BASE_ARGS]
    argv += ["--model", _option_value(model, "model")]
    argv += ["--permission-mode", _option_value(permission_mode, "permission_mode")]
    for option, values, name in (
        ("--allowedTools", allowed_tools, "allowed_tools"),
        ("--disallowedTools", disallowed_tools, "disallowed_tools"),
        ("--add-dir", add_dirs, "add_dirs"),
    ):
        if values:
            argv += [option, *(_option_value(value, name) for value in values)]
    if max_turns is not None:
        argv += ["--max-turns", str(max_turns)]
    if max_budget_usd is not None:
        argv += ["--max-budget-usd", f"{max_budget_usd:.10g}"]
    if fallback_model:
        argv += ["--fallback-model", _option_value(fallback_model, "fallback_model")]
    if mcp_config:
        argv += ["--mcp-config", _option_value(mcp_config, "mcp_config")]
    if strict_mcp_config:
        argv.append("--strict-mcp-config")
    if system_prompt:
        argv += ["--system-prompt", system_prompt]
    if append_system_prompt:
        argv += ["--append-system-prompt", append_system_prompt]
    if resume_session:
        argv += ["--resume", _option_value(resume_session, "session_id")]
    return argv + list(extra_args)


def resolve_workdir(
    task_dir: str | None, job_dir: str | None, home: Path, environ: Mapping[str, str]
) -> Path:
    """The run's working directory: the task's, else the job's, else `home`.

    `~` and `$VAR` are expanded. Raises WorkdirMissing naming the path and where it
    was set when it is relative, missing or not a directory; never falls back.
    """
    for source, raw in (("the task", task_dir), ("the job", job_dir)):
        if raw and raw.strip():
            return _existing_dir(Path(_expand_path(raw.strip(), home, environ)), source)
    return _existing_dir(home, "the home directory")


def _existing_dir(path: Path, source: str) -> Path:
    if not path.is_absolute():
        problem = "is not an absolute path"
    elif not path.exists():
        problem = "does not exist"
    elif not path.is_dir():
        problem = "is not a directory"
    else:
        return path
    raise WorkdirMissing(
        f"working directory {path} (set by {source}) {problem}", "create it or change the working directory"
    )


def resolve_option_path(raw: str, field: str, cwd: Path, home: Path, environ: Mapping[str, str]) -> str:
    """A folder of `add_dirs` or the `mcp_config` file, expanded like the working directory
    (relative: from the run's folder). Raises OptionPathMissing naming the field when it is
    not there, or not a folder (add_dirs) or a file (mcp_config): claude would not say."""
    path = cwd / _expand_path(raw.strip(), home, environ)
    wanted_dir = field == "add_dirs"
    if not path.exists():
        problem = "does not exist"
    elif path.is_dir() != wanted_dir:
        problem = "is not a folder" if wanted_dir else "is a folder, not a file"
    else:
        return str(path)
    raise OptionPathMissing(f"{path} ({field}) {problem}; create it or change the task's {field}")


# Reading stream-json.


def _parse_object(line: str) -> dict[str, JSON] | None:
    """The JSON object on `line`, or None for anything else (never raises)."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _get_str(obj: JSON, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def _get_int(obj: JSON, key: str) -> int | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _get_float(obj: JSON, key: str) -> float | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _get_dict(obj: JSON, key: str) -> dict[str, JSON]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def _blocks(content: JSON) -> list[dict[str, JSON]]:
    """Content blocks; legacy string content reads as one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def _texts(content: JSON) -> list[str]:
    return [
        text
        for block in _blocks(content)
        if block.get("type") == "text" and (text := _get_str(block, "text")) is not None
    ]


def _cost(result: dict[str, JSON]) -> float | None:
    cost = _get_float(result, "total_cost_usd")
    return cost if cost is not None else _get_float(result, "cost_usd")


def _result_failed(result: dict[str, JSON]) -> bool:
    """Whether a `result` line reports a failure: `is_error`, or an `error_*` subtype."""
    subtype = _get_str(result, "subtype") or ""
    return result.get("is_error") is True or subtype.startswith("error")


def _is_usage_limit_sentence(text: str) -> bool:
    """Whether `text` is claude's usage-limit notice ("You've hit your session limit · …")."""
    return len(text) <= USAGE_LIMIT_MAX_CHARS and re.match(USAGE_LIMIT_SENTENCE, text.strip()) is not None


def usage_limit_reset(text: str, ended_at: datetime) -> datetime | None:
    """When the limit named in claude's sentence ("You've hit your session limit · resets
    10:38am (UTC)") lifts: the next such time after `ended_at`, in UTC. None when the
    sentence names no reset or one this cannot read. Pure."""
    sentence = re.match(USAGE_LIMIT_SENTENCE, text.strip()) if len(text) <= USAGE_LIMIT_MAX_CHARS else None
    when = sentence.group("when") if sentence else None
    found = re.match(USAGE_LIMIT_RESET, when.strip()) if when else None
    zone_name = found.group("zone").strip() if found else ""
    zone = UTC if zone_name.upper() == "UTC" else _zone_or_none(zone_name)
    if found is None or zone is None:
        return None
    hour, minute = int(found.group("hour")), int(found.group("minute") or 0)
    hour = hour % HALF_DAY_HOURS + (HALF_DAY_HOURS if found.group("half").lower() == "pm" else 0)
    try:
        return _next_wall_time(found.group("month"), found.group("day"), hour, minute, zone, ended_at)
    except ValueError:  # "Feb 30"
        return None


def _next_wall_time(
    month: str | None, day: str | None, hour: int, minute: int, zone: tzinfo, after: datetime
) -> datetime | None:
    """The first wall time hour:minute (on month/day when given) in `zone` after `after`."""
    local = after.astimezone(zone)
    if month is None or day is None:
        candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if candidate <= local:
            candidate = datetime.combine(candidate.date() + timedelta(days=1), candidate.timetz())
        return candidate.astimezone(UTC)
    if month.lower() not in MONTH_ABBREVIATIONS:
        return None
    number = MONTH_ABBREVIATIONS.index(month.lower()) + 1
    candidate = datetime(local.year, number, int(day), hour, minute, tzinfo=zone)
    if candidate <= local:
        candidate = candidate.replace(year=local.year + 1)
    return candidate.astimezone(UTC)


def _epoch_time(value: JSON) -> datetime | None:
    """A UTC time from epoch seconds; None for anything else or out of range."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _token_counts(usage: dict[str, JSON]) -> dict[str, int]:
    """One modelUsage entry as our token counts (missing counts read as 0)."""
    return {ours: _get_int(usage, theirs) or 0 for theirs, ours in MODEL_USAGE_KEYS}


class StreamParser:
    """Collects what a session's stream-json stdout says, fed one line at a time.

    `feed` never raises: unparseable lines, non-object JSON and unknown line types are
    ignored (the log keeps them). Not thread-safe: feed from one thread, and read the
    attributes once that thread is done.
    """

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.model: str | None = None
        self.last_text: str | None = None
        self.has_result = False
        self.is_error = False
        self.subtype: str | None = None
        self.cost_usd: float | None = None
        self.input_tokens: int | None = None  # all input: uncached, cache read and cache creation
        self.cache_read_tokens: int | None = None
        self.cache_creation_tokens: int | None = None
        self.output_tokens: int | None = None
        self.model_usage: JSONDict | None = None
        self.num_turns: int | None = None
        self.duration_ms: int | None = None
        self.result: str | None = None
        self.errors: list[str] = []
        self.api_error_status: int | None = None
        self.api_error: str | None = None  # the `error` of claude's synthetic assistant line
        self.api_error_text: str | None = None  # and its text, claude's sentence for people
        self.permission_denials: list[JSONDict] = []
        self.usage_limited = False
        self.limit_resets_at: datetime | None = None

    def feed(self, line: str) -> None:
        obj = _parse_object(line)
        if obj is not None:
            self.feed_object(obj)

    def feed_object(self, obj: dict[str, JSON]) -> None:
        """Take one parsed line of the stream."""
        self.session_id = _get_str(obj, "session_id") or self.session_id
        handler = self._HANDLERS.get(_get_str(obj, "type") or "")
        if handler is not None:
            handler(self, obj)

    def _on_system(self, obj: dict[str, JSON]) -> None:
        if obj.get("subtype") == "init":
            self.model = _get_str(obj, "model") or self.model

    def _on_rate_limit(self, obj: dict[str, JSON]) -> None:
        info = _get_dict(obj, "rate_limit_info")
        if info.get("status") == "rejected":
            self.usage_limited = True
            self.limit_resets_at = _epoch_time(info.get("resetsAt")) or self.limit_resets_at

    def _on_assistant(self, obj: dict[str, JSON]) -> None:
        message = _get_dict(obj, "message")
        texts = _texts(message.get("content"))
        if _get_str(message, "model") == SYNTHETIC_MODEL:
            self.api_error = _get_str(obj, "error") or self.api_error
            self.api_error_text = next((text for text in texts if text.strip()), self.api_error_text)
            self.usage_limited |= any(_is_usage_limit_sentence(text) for text in texts)
            return
        self.model = self.model or _get_str(message, "model")
        if texts:
            self.last_text = texts[-1]

    def _on_result(self, obj: dict[str, JSON]) -> None:
        self.has_result = True
        self.subtype = _get_str(obj, "subtype")
        self.is_error = _result_failed(obj)
        self.cost_usd = _cost(obj)
        self._read_tokens(obj)
        self.num_turns = _get_int(obj, "num_turns")
        self.duration_ms = _get_int(obj, "duration_ms")
        self.api_error_status = _get_int(obj, "api_error_status")
        errors = obj.get("errors")
        if isinstance(errors, list):
            self.errors = [_clip(error, ERROR_MAX_CHARS) for error in errors if isinstance(error, str)]
        denials = obj.get("permission_denials")
        if isinstance(denials, list):
            self.permission_denials = [denial for denial in denials if isinstance(denial, dict)]
        text = _get_str(obj, "result")
        self.result = text[:RESULT_MAX_CHARS] if text is not None else None
        if self.is_error and text is not None and _is_usage_limit_sentence(text):
            self.usage_limited = True

    def _read_tokens(self, obj: dict[str, JSON]) -> None:
        """Tokens from `modelUsage` (every model, subagents too), else from `usage`."""
        models = {
            name: usage for name, usage in _get_dict(obj, "modelUsage").items() if isinstance(usage, dict)
        }
        counts = [_token_counts(usage) for usage in models.values()]
        if models:
            self.model_usage = {
                name: {**count, "cost_usd": _get_float(usage, "costUSD")}
                for (name, usage), count in zip(models.items(), counts, strict=True)
            }
        else:
            usage = _get_dict(obj, "usage")
            if _get_int(usage, "input_tokens") is None:
                return
            counts = [_token_counts({theirs: usage.get(key) for key, theirs in USAGE_KEYS})]
        total = {key: sum(count[key] for count in counts) for _, key in MODEL_USAGE_KEYS}
        self.cache_read_tokens = total["cache_read_tokens"]
        self.cache_creation_tokens = total["cache_creation_tokens"]
        self.input_tokens = total["input_tokens"] + self.cache_read_tokens + self.cache_creation_tokens
        self.output_tokens = total["output_tokens"]

    def failure_kind(self) -> FailureKind:
        """What kind of failure the stream tells of (for a run that failed by itself)."""
        if self.usage_limited:
            return FailureKind.USAGE_LIMIT
        if any(error.startswith(MISSING_SESSION_TEXT) for error in self.errors):
            return FailureKind.MISSING_SESSION
        kind = RESULT_SUBTYPE_KINDS.get(self.subtype or "")
        kind = kind or API_STATUS_KINDS.get(self.api_error_status or 0)
        kind = kind or API_ERROR_KINDS.get(self.api_error or "")
        if kind is None and self.api_error_status and self.api_error_status >= HTTP_SERVER_ERROR:
            kind = FailureKind.SERVER_ERROR
        if kind is None and self.api_error and self.api_error_status is None:
            kind = FailureKind.CONNECTION
        return kind or FailureKind.ERROR

    def failure_reason(self) -> str | None:
        """Claude's own one-line reason, once: `errors[]`, else its API error sentence."""
        if self.errors:
            return _clip("; ".join(self.errors), ERROR_MAX_CHARS)
        for text in (self.api_error_text, self.result if self.is_error else None):
            if text and text.strip():
                return _first_line(text)
        return None

    _HANDLERS: ClassVar[dict[str, Callable[[StreamParser, dict[str, JSON]], None]]] = {
        "system": _on_system,
        "rate_limit_event": _on_rate_limit,
        "assistant": _on_assistant,
        "result": _on_result,
    }


# Running a session.


@dataclass
class RunOutcome:
    """What one execution came to; `error` is one line a person can act on."""

    status: str
    exit_code: int | None = None
    session_id: str | None = None
    model: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    num_turns: int | None = None
    result: str | None = None
    error: str | None = None
    failure_kind: str | None = None
    limit_resets_at: datetime | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    model_usage: JSONDict | None = None
    permission_denials: list[JSONDict] | None = None
    session_duration_ms: int | None = None
    # The error is claude's own words, already in the log's result line (not a Run field).
    error_in_log: bool = False


class _RunLog:
    """Appends whole lines to a run's log, flushed each; safe to call from any thread.

    The constructor raises OSError. A later write failure is remembered in `error` and
    further lines are dropped instead of raised, so the pipe readers keep draining.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open_private_append(path)
        self._lock = threading.Lock()
        self.error: str | None = None

    def write(self, line: str) -> None:
        self.write_piece(line, ended=True)

    def write_piece(self, text: str, *, ended: bool) -> None:
        """Append part of a line (`ended`: its last part). Once closed, drops it: a
        detached process may write after the run has ended."""
        with self._lock:
            if self.error is not None or self._file.closed:
                return
            try:
                self._file.write(text + "\n" if ended else text)
                self._file.flush()
            except OSError as exc:
                self.error = f"the run log could not be written: {exc}"

    def scheduler(self, message: str) -> None:
        self.write(LOG_SCHEDULER_PREFIX + message)

    def close(self) -> None:
        with self._lock:
            try:
                self._file.close()
            except OSError as exc:
                self.error = self.error or f"the run log could not be written: {exc}"


class _Capture:
    """Where the pipe readers put what they read.

    The stdout reader alone touches `parser`, the stderr reader alone `last_stderr`;
    read them after both threads end.
    """

    def __init__(self, log: _RunLog) -> None:
        self.log = log
        self.parser = StreamParser()
        self.last_stderr: str | None = None

    def on_stdout(self, line: str) -> None:
        self.parser.feed(line)

    def on_stderr(self, line: str) -> None:
        if line.strip():
            self.last_stderr = line.strip()


class _LineReader:
    """Reads one pipe to its end: every byte goes to the run log as it comes (the log
    keeps whole lines however long), each line to `on_line` clipped to
    OUTPUT_LINE_MEMORY_MAX characters (in memory). `prefix` starts each logged line."""

    def __init__(self, log: _RunLog, on_line: Callable[[str], None], prefix: str = "") -> None:
        import codecs

        self.log = log
        self.on_line = on_line
        self.prefix = prefix
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._head: list[str] = []
        self._kept = 0
        self._at_start = True

    def read(self, pipe: IO[bytes]) -> None:
        """Never raises for the pipe: a closed or broken one ends the reading."""
        with contextlib.suppress(OSError, ValueError), pipe:
            while piece := pipe.readline(OUTPUT_PIECE_BYTES):
                self._take(piece)
            if not self._at_start:
                self._take(b"\n")  # a last line without a newline

    def _take(self, piece: bytes) -> None:
        ended = piece.endswith(b"\n")
        text = self._decoder.decode(piece, final=ended)
        if ended:
            text = text.rstrip("\r\n")
        self.log.write_piece((self.prefix if self._at_start else "") + text, ended=ended)
        self._at_start = ended
        if self._kept < OUTPUT_LINE_MEMORY_MAX:
            self._head.append(text[: OUTPUT_LINE_MEMORY_MAX - self._kept])
            self._kept += len(self._head[-1])
        if ended:
            line, self._head, self._kept = "".join(self._head), [], 0
            self.on_line(line)


def _write_prompt(pipe: IO[bytes], data: bytes) -> None:
    try:
        with pipe:
            pipe.write(data)
    except OSError:
        # The child closed stdin or died before reading it all; its exit says why.
        return


def _start_thread(target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _launch(argv: list[str], cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start claude as the leader of a new process group (POSIX) so all of it can be killed."""
    import subprocess

    flags = 0
    if sys.platform == "win32":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=sys.platform != "win32",
        creationflags=flags,
    )


def _launch_error(argv: list[str], cwd: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.filename is not None and str(exc.filename) == str(cwd):
        return f"could not enter working directory {cwd}: {reason}"
    return f"could not start {argv[0] if argv else 'claude'}: {reason}"


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to claude's whole process group (Windows: to claude alone)."""
    if sys.platform == "win32":
        proc.terminate()
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        # The group is gone (macOS answers EPERM for a group of zombies).
        return


def _group_exists(pgid: int) -> bool:
    """Whether any process, zombies included, is in group `pgid` (POSIX)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _group_has_live_member(pgid: int) -> bool:
    """Whether a process that is not a zombie is in group `pgid`, read from /proc (Linux).

    Zombies count as gone: they hold nothing, and they wait for a reaper we do not
    control (init in a container may reap late). Without /proc, any member counts.
    """
    if not _group_exists(pgid):
        return False
    try:
        entries = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return True
    wanted = str(pgid).encode()
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue  # it ended while we looked
        # After "pid (comm) " come state, ppid, pgrp; comm may itself hold ") ".
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and fields[2] == wanted and fields[0] not in ZOMBIE_STATES:
            return True
    return False


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is None:
        return True
    return _group_lives(proc.pid)


def _group_lives(pgid: int | None) -> bool:
    """Whether group `pgid` has a member that is not a zombie (where that can be told)."""
    if pgid is None or sys.platform == "win32":
        return False
    if sys.platform == "linux":
        return _group_has_live_member(pgid)
    return _group_exists(pgid)


def _is_live_pid(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2 :].split()
    return bool(fields) and fields[0] not in ZOMBIE_STATES


def marked_pids(run_id: str | None) -> list[int]:
    """Live processes whose environment says they belong to run `run_id` (RUN_ID_ENV):
    a session's processes, also those its tools moved out of its process group (a
    daemon that double-forks). Linux only (/proc); elsewhere, none."""
    if not run_id or sys.platform != "linux":
        return []
    wanted = f"{RUN_ID_ENV}={run_id}".encode()
    found = []
    with contextlib.suppress(OSError), os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as environ_file:
                    environ = environ_file.read()
            except OSError:
                continue  # gone meanwhile, or someone else's
            if wanted in environ.split(b"\0") and _is_live_pid(int(entry.name)):
                found.append(int(entry.name))
    return found


def _signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _kill_signal() -> int:
    import signal

    return signal.SIGTERM if sys.platform == "win32" else signal.SIGKILL


class _Limits(typing.NamedTuple):
    """How long a run may take and how it is ended; `monotonic` times all of it.
    `marker` is the session's RUN_ID_ENV value, which finds its processes outside
    its process group."""

    timeout: float
    grace: float
    poll_seconds: float
    should_stop: Callable[[], bool]
    monotonic: Callable[[], float]
    marker: str | None = None


def _session_alive(proc: subprocess.Popen[bytes], marker: str | None) -> bool:
    return _group_alive(proc) or bool(marked_pids(marker))


def _signal_session(proc: subprocess.Popen[bytes], marker: str | None, sig: int) -> None:
    _signal_group(proc, sig)
    _signal_pids(marked_pids(marker), sig)


def _terminate_group(proc: subprocess.Popen[bytes], limits: _Limits) -> bool:
    """SIGTERM the group and the session's marked processes, SIGKILL what is left after
    the grace period; reaps claude.

    Returns True when SIGKILL was needed.
    """
    import signal

    _signal_session(proc, limits.marker, signal.SIGTERM)
    deadline = limits.monotonic() + limits.grace
    while _session_alive(proc, limits.marker):
        if limits.monotonic() >= deadline:
            _signal_session(proc, limits.marker, _kill_signal())
            proc.wait()
            return True
        time.sleep(GROUP_POLL_SECONDS)
    return False


def _exited_within(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    import subprocess

    try:
        proc.wait(timeout=max(seconds, 0.0))
    except subprocess.TimeoutExpired:
        return False
    return True


def _supervise(proc: subprocess.Popen[bytes], deadline: float, limits: _Limits) -> str | None:
    """Wait for claude; the status that ended it early (timeout, cancelled) or None."""
    while True:
        remaining = deadline - limits.monotonic()
        if remaining <= 0:
            return STATUS_TIMEOUT
        if _exited_within(proc, min(limits.poll_seconds, remaining)):
            return None
        if limits.should_stop():
            return STATUS_CANCELLED


def _join_all(threads: list[threading.Thread], seconds: float) -> bool:
    """Join `threads` within `seconds` in all (real time); True when all have ended."""
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    return not any(thread.is_alive() for thread in threads)


def _drain(
    proc: subprocess.Popen[bytes], readers: list[threading.Thread], log: _RunLog, limits: _Limits
) -> None:
    """Let the readers reach end of file, ending any leftover holder of the pipes."""
    if _join_all(readers, limits.grace):
        return
    log.scheduler("processes started by claude still hold its output; terminating them")
    _terminate_group(proc, limits)
    if not _join_all(readers, limits.grace):
        log.scheduler("a detached process still holds claude's output; stopped reading it")


def _end_leftovers(proc: subprocess.Popen[bytes], log: _RunLog, limits: _Limits) -> None:
    """After claude ended by itself: end what it started and left running (its process
    group, and processes carrying the session's marker), so nothing outlives the run."""
    if _session_alive(proc, limits.marker):
        log.scheduler("processes started by claude were still running; terminating them")
        _terminate_group(proc, limits)


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def _stop_error(status: str, limits: _Limits) -> str:
    return {
        STATUS_TIMEOUT: f"timed out after {_format_seconds(limits.timeout)}",
        STATUS_CANCELLED: "stopped by request",
    }[status]


def _describe_exit(code: int | None) -> str:
    import signal

    if code is None or code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = str(-code)
    return f"was killed by signal {name}"


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return _clip(line, ERROR_MAX_CHARS)


def _failure_line(exit_code: int | None, capture: _Capture) -> str:
    """The one-line reason a run that ended by itself failed, in claude's words where it gave some."""
    parser = capture.parser
    stderr = f": {capture.last_stderr}" if capture.last_stderr else ""
    if not parser.has_result:
        return _clip(f"claude {_describe_exit(exit_code)} and printed no result{stderr}", ERROR_MAX_CHARS)
    reason = parser.failure_reason()
    if reason:
        return reason
    if parser.is_error:
        return f"claude reported {parser.subtype or 'an error'} ({_describe_exit(exit_code)})"
    return _clip(f"claude {_describe_exit(exit_code)}{stderr}", ERROR_MAX_CHARS)


def _argv_value(argv: list[str], option: str) -> str | None:
    index = argv.index(option) if option in argv else -1
    return argv[index + 1] if 0 <= index < len(argv) - 1 else None


STOP_KINDS = {STATUS_TIMEOUT: FailureKind.TIMEOUT, STATUS_CANCELLED: FailureKind.CANCELLED}


def _outcome(
    argv: list[str], stopped: str | None, exit_code: int | None, capture: _Capture, limits: _Limits
) -> RunOutcome:
    parser = capture.parser
    succeeded = exit_code == 0 and parser.has_result and not parser.is_error
    status = stopped or (STATUS_SUCCESS if succeeded else STATUS_FAILED)
    kind: FailureKind | None = None
    said = False
    if status == STATUS_FAILED:
        error: str | None = _failure_line(exit_code, capture)
        kind = parser.failure_kind()
        said = parser.has_result and parser.is_error and error == parser.failure_reason()
    else:
        error = _stop_error(status, limits) if stopped else None
        kind = STOP_KINDS.get(status)
    final_text = parser.result if parser.has_result else parser.last_text
    return RunOutcome(
        status=status,
        exit_code=exit_code,
        session_id=parser.session_id,
        model=parser.model or _argv_value(argv, "--model"),
        cost_usd=parser.cost_usd,
        input_tokens=parser.input_tokens,
        output_tokens=parser.output_tokens,
        num_turns=parser.num_turns,
        result=final_text[:RESULT_MAX_CHARS] if final_text is not None else None,
        error=error or capture.log.error,
        failure_kind=kind.value if kind else None,
        limit_resets_at=parser.limit_resets_at if kind is FailureKind.USAGE_LIMIT else None,
        cache_read_tokens=parser.cache_read_tokens,
        cache_creation_tokens=parser.cache_creation_tokens,
        model_usage=parser.model_usage,
        permission_denials=parser.permission_denials or None,
        session_duration_ms=parser.duration_ms,
        error_in_log=said,
    )


def _ignore_pid(pid: int) -> None:
    """Default `on_started`: nobody needs the pid."""


def execute(
    argv: list[str],
    *,
    prompt: str,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout_seconds: float,
    should_stop: Callable[[], bool],
    on_started: Callable[[int], None] = _ignore_pid,
    kill_grace_seconds: float = 5.0,
    poll_seconds: float = 0.2,
    monotonic: Callable[[], float] = time.monotonic,
) -> RunOutcome:
    """Run one claude session to its end and say how it went. Blocks until then.

    Claude starts in its own process group with `env` as its whole environment; the
    prompt goes on stdin, which is then closed. Every stdout line is appended to
    `log_path` as it arrives, every stderr line too with LOG_STDERR_PREFIX, both pipes
    drained by their own threads. `should_stop` is polled at least every `poll_seconds`
    (True → cancelled); past `timeout_seconds` (math.inf for none) → timeout. Either
    way the whole group gets SIGTERM, then SIGKILL after `kill_grace_seconds`, and a
    final LOG_SCHEDULER_PREFIX line says so. `on_started` gets claude's pid, which is
    also its process group id. `monotonic` times the timeout and the grace period.

    A launch or log-file failure is a `failed` outcome, not an exception. An exception
    from `should_stop` or `on_started` propagates once the process group is ended.
    """
    limits = _Limits(
        timeout_seconds, kill_grace_seconds, poll_seconds, should_stop, monotonic, env.get(RUN_ID_ENV)
    )
    try:
        log = _RunLog(log_path)
    except OSError as exc:
        message = f"could not open the run log {log_path}: {exc.strerror or exc}"
        return RunOutcome(status=STATUS_FAILED, error=message, failure_kind=FailureKind.NOT_STARTED.value)
    try:
        return _run(argv, prompt, cwd, env, log, limits, on_started)
    finally:
        log.close()


def _run(
    argv: list[str],
    prompt: str,
    cwd: Path,
    env: Mapping[str, str],
    log: _RunLog,
    limits: _Limits,
    on_started: Callable[[int], None],
) -> RunOutcome:
    deadline = limits.monotonic() + limits.timeout
    try:
        proc = _launch(argv, cwd, env)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in argv or env, refused by the OS
        message = (
            _launch_error(argv, cwd, exc) if isinstance(exc, OSError) else f"could not start claude: {exc}"
        )
        log.scheduler(message)
        return RunOutcome(
            status=STATUS_FAILED,
            error=message,
            model=_argv_value(argv, "--model"),
            failure_kind=FailureKind.NOT_STARTED.value,
        )
    capture = _Capture(log)
    assert proc.stdin and proc.stdout and proc.stderr  # all three are PIPE
    writer = _start_thread(_write_prompt, proc.stdin, prompt.encode("utf-8", errors="replace"))
    readers = [
        _start_thread(_LineReader(log, capture.on_stdout).read, proc.stdout),
        _start_thread(_LineReader(log, capture.on_stderr, LOG_STDERR_PREFIX).read, proc.stderr),
    ]
    try:
        on_started(proc.pid)
        stopped = _supervise(proc, deadline, limits)
    except BaseException:
        _terminate_group(proc, limits)
        raise
    killed = _terminate_group(proc, limits) if stopped else False
    _drain(proc, readers, log, limits)
    _end_leftovers(proc, log, limits)
    writer.join(PROMPT_WRITER_JOIN_SECONDS)
    if stopped:
        how = f"killed after a {_format_seconds(limits.grace)} grace" if killed else "terminated"
        log.scheduler(f"{_stop_error(stopped, limits)}; process group {how}")
    return _outcome(argv, stopped, proc.returncode, capture, limits)


# Rendering log lines.

Segment = tuple[str, str]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _one_line(text: str, limit: int = RENDER_MAX_CHARS) -> str:
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    return _clip(first + (f" {ELLIPSIS}" if len(lines) > 1 else ""), limit)


def _compact_json(value: JSON) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return str(value)


def _tool_call(block: dict[str, JSON]) -> str:
    name = _get_str(block, "name") or "tool"
    tool_input = block.get("input")
    key = TOOL_SUMMARY_KEYS.get(name)
    argument = _get_str(tool_input, key) if key else None
    if argument is None and tool_input not in (None, {}):
        argument = _compact_json(tool_input)
    return _one_line(f"→ {name}: {argument}" if argument else f"→ {name}")


def _tool_result(block: dict[str, JSON]) -> Segment:
    content = block.get("content")
    parts = _texts(content)
    if any(item.get("type") == "image" for item in _blocks(content)):
        parts.append("[image]")
    lines = [line for part in parts for line in part.splitlines() if line.strip()]
    shown = TOOL_RESULT_JOINER.join(lines[:TOOL_RESULT_LINES]) or "(no output)"
    more = f" {ELLIPSIS}" if len(lines) > TOOL_RESULT_LINES else ""
    tag = "error" if block.get("is_error") is True else "tool_result"
    return tag, _clip(shown + more, RENDER_MAX_CHARS)


def _assistant_block(block: dict[str, JSON]) -> list[Segment]:
    kind = block.get("type")
    text = _get_str(block, "text")
    thinking = _get_str(block, "thinking")
    if kind == "text" and text:
        return [("assistant", text)]
    if kind == "thinking" and thinking:
        return [("thinking", thinking)]
    if kind == "tool_use":
        return [("tool", _tool_call(block))]
    return []


def _render_assistant(obj: dict[str, JSON]) -> list[Segment]:
    message = _get_dict(obj, "message")
    content = message.get("content")
    if _get_str(message, "model") == SYNTHETIC_MODEL:
        return []  # claude's made-up message for an API error: the result line says it once
    return [segment for block in _blocks(content) for segment in _assistant_block(block)]


def _render_user(obj: dict[str, JSON]) -> list[Segment]:
    content = _get_dict(obj, "message").get("content")
    return [_tool_result(block) for block in _blocks(content) if block.get("type") == "tool_result"]


# The `error` of an api_retry line, as people say it; others read "API error".
API_RETRY_WORDS = {
    "overloaded": "API overloaded",
    "rate_limit": "API rate limited",
    "authentication_failed": "API key refused",
    "server_error": "API server error",
    "billing_error": "API billing error",
    "invalid_request": "API refused the request",
}
MS_PER_SECOND = 1000


def _render_api_retry(obj: dict[str, JSON]) -> list[Segment]:
    """claude retrying a failed API call: `API overloaded (529), retry 3 of 10 in 4 s`."""
    words = API_RETRY_WORDS.get(_get_str(obj, "error") or "", "API error")
    status = _get_int(obj, "error_status")
    attempt, most = _get_int(obj, "attempt"), _get_int(obj, "max_retries")
    delay = _get_float(obj, "retry_delay_ms")
    text = words + (f" ({status})" if status else "")
    if attempt is not None:
        text += f", retry {attempt}" + (f" of {most}" if most else "")
    if delay is not None:
        seconds = delay / MS_PER_SECOND
        text += f" in {seconds:.1f} s" if seconds < 1 else f" in {round(seconds)} s"
    return [("retry", text)]


def _render_system(obj: dict[str, JSON]) -> list[Segment]:
    if obj.get("subtype") == "api_retry":
        return _render_api_retry(obj)
    if obj.get("subtype") != "init":
        return []  # other system lines (compact_boundary, notification...) stay in the log only
    session = (_get_str(obj, "session_id") or "")[:RENDER_SESSION_CHARS]
    parts = [
        f"Session {session}" if session else "Session",
        _get_str(obj, "model"),
        _get_str(obj, "cwd"),
    ]
    return [("system", " · ".join(part for part in parts if part))]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_count(count: int) -> str:
    return f"{count:,}"


def format_tokens(input_tokens: JSON, cached: JSON, output_tokens: JSON) -> str | None:
    """`45,004 in (45,000 cached) / 56 out`: all input, its cached part, output; None
    when the counts are not known or none were used (an API error)."""
    if not isinstance(input_tokens, int) or not isinstance(output_tokens, int):
        return None
    if not input_tokens and not output_tokens:
        return None
    part = f" ({format_count(cached)} cached)" if isinstance(cached, int) and cached else ""
    return f"{format_count(input_tokens)} in{part} / {format_count(output_tokens)} out"


def run_tokens(run: Mapping[str, JSON]) -> str | None:
    """A run's (or a result's parsed) tokens for people; the cached part is cache reads
    and cache writes."""
    cached = [run.get(key) for key in ("cache_read_tokens", "cache_creation_tokens")]
    counts = [count for count in cached if isinstance(count, int)]
    return format_tokens(run.get("input_tokens"), sum(counts) if counts else None, run.get("output_tokens"))


# The two durations a run has, labelled wherever they appear.
DURATION_LABEL_CLAUDE = "claude"  # claude's own duration_ms
DURATION_LABEL_WALL = "wall time"  # the scheduler's, start to finish


def format_durations(run: Mapping[str, JSON]) -> str | None:
    """`wall time 4.5s · claude 4.2s`: both a run's durations, each named."""
    wall, claude = run.get("duration_seconds"), run.get("session_duration_ms")
    parts = [
        f"{DURATION_LABEL_WALL} {wall:.1f}s" if isinstance(wall, int | float) else None,
        f"{DURATION_LABEL_CLAUDE} {claude / MS_PER_SECOND:.1f}s" if isinstance(claude, int) else None,
    ]
    shown = [part for part in parts if part]
    return " · ".join(shown) if shown else None


def describe_denials(denials: JSON) -> str | None:
    """`1 permission denial (Bash)`: how many tool calls were refused, and which tools."""
    if not isinstance(denials, list) or not denials:
        return None
    tools = [_get_str(denial, "tool_name") or "a tool" for denial in denials if isinstance(denial, dict)]
    names = ", ".join(dict.fromkeys(tools))
    return f"{_plural(len(denials), 'permission denial')} ({names})"


def describe_denial(denial: JSON) -> str:
    """One refused tool call: `Bash: touch made-by-claude.txt` (the argument worth showing)."""
    name = _get_str(denial, "tool_name") or "a tool"
    tool_input = denial.get("tool_input") if isinstance(denial, dict) else None
    key = TOOL_SUMMARY_KEYS.get(name)
    argument = _get_str(tool_input, key) if key else None
    if argument is None and tool_input not in (None, {}):
        argument = _compact_json(tool_input)
    return _one_line(f"{name}: {argument}" if argument else name)


def describe_kind(kind: JSON) -> str | None:
    """A failure kind in words (`usage limit`); None for none or the catch-all `error`."""
    if not isinstance(kind, str) or kind in ("", FailureKind.ERROR):
        return None
    return kind.replace("_", " ")


def _result_parsed(obj: dict[str, JSON]) -> StreamParser:
    parser = StreamParser()
    parser.feed_object(obj)
    return parser


def _result_facts(obj: dict[str, JSON], parser: StreamParser) -> list[str]:
    cost = _cost(obj)
    tokens = run_tokens(vars(parser))
    duration = _get_float(obj, "duration_ms")
    facts = [
        f"${cost:.4f}" if cost is not None else None,
        f"{tokens} tokens" if tokens else None,
        f"{DURATION_LABEL_CLAUDE} {_format_seconds(round(duration / MS_PER_SECOND, 1))}"
        if duration is not None
        else None,
    ]
    return [fact for fact in facts if fact]


def _result_head(obj: dict[str, JSON], parser: StreamParser) -> str:
    turns = _get_int(obj, "num_turns")
    if parser.is_error:
        kind = describe_kind(parser.failure_kind())
        subtype = parser.subtype if parser.subtype and parser.subtype != "success" else None
        label = kind or subtype
        head = "✗ Failed" + (f" ({label})" if label else "")
    else:
        denials = describe_denials(parser.permission_denials)
        head = f"⚠ Done with {denials}" if denials else "✓ Done"
    if turns is not None:
        head += f" {'after' if parser.is_error else 'in'} {_plural(turns, 'turn')}"
    return head


def _render_result(obj: dict[str, JSON]) -> list[Segment]:
    parser = _result_parsed(obj)
    segments: list[Segment] = [
        ("summary", " · ".join([_result_head(obj, parser), *_result_facts(obj, parser)]))
    ]
    errors = [error for error in obj.get("errors") or [] if isinstance(error, str)]
    text = "; ".join(errors) or _get_str(obj, "result")
    if parser.is_error and text and text.strip():
        segments.append(("error", _one_line(text)))
    return segments


# Line type → renderer. Types not listed (stream_event partials, new kinds) are hidden.
LOG_RENDERERS: dict[str, Callable[[dict[str, JSON]], list[Segment]]] = {
    "system": _render_system,
    "assistant": _render_assistant,
    "user": _render_user,
    "result": _render_result,
}
# Lines the scheduler itself writes, recognised by their prefix.
LOG_PREFIX_TAGS = (  # prefix, tag, what a person reads in its place
    (LOG_STDERR_PREFIX, "error", ""),
    (LOG_FAILURE_PREFIX, "error", "✗ Run failed: "),
    (LOG_SCHEDULER_PREFIX, "scheduler", ""),
)


# What claude prints on stderr and again in its result's `errors` (resume-missing.log).
STDERR_SAID_IN_RESULT = (LOG_STDERR_PREFIX + MISSING_SESSION_TEXT,)


def render_log_line(line: str) -> list[Segment]:
    """One raw log line as (tag, text) segments for people; [] for lines to hide.

    Tags: assistant, thinking, tool, tool_result, error, summary, system, retry (claude
    retrying the API), scheduler, raw (a line that is not a JSON object, shown as it
    is). Pure; never raises.
    """
    text = line.rstrip("\r\n")
    if not text.strip():
        return []
    if text.startswith(STDERR_SAID_IN_RESULT):
        return []  # the result line right after says it: once is enough
    for prefix, tag, label in LOG_PREFIX_TAGS:
        if text.startswith(prefix):
            return [(tag, label + text[len(prefix) :])]
    obj = _parse_object(text)
    if obj is None:
        return [("raw", text)]
    renderer = LOG_RENDERERS.get(_get_str(obj, "type") or "")
    return renderer(obj) if renderer is not None else []


ENGINE_WAKE_MAX = 30.0  # never sleep longer: notices clock jumps and sleep
ENGINE_ERROR_PAUSE_SECONDS = 5.0  # after a pass that failed, before the next try
CHANGE_POLL_SECONDS = 1.0  # how often other processes' changes are looked for
MISSED_AFTER_SECONDS = 90.0  # a fire later than this counts as missed (engine down, sleep)
MISSED_SCAN_MAX = 10_000
KILL_GRACE_SECONDS = 5.0
KILL_WAIT_SECONDS = 2.0  # how long the end of a SIGKILLed session is waited for
RECORD_ATTEMPTS = 60
RECORD_RETRY_SECONDS = 5.0
STOP_POLL_SECONDS = 0.2
WATCH_POLL_SECONDS = 2.0
HOLD_MARGIN_SECONDS = 60.0  # after claude's reset time: its clock and ours may differ a little
# How long to hold when claude gave no reset time, by the kind of limit.
HOLD_DEFAULT_SECONDS: dict[str, float] = {FailureKind.USAGE_LIMIT: 3600.0, FailureKind.RATE_LIMIT: 300.0}
HOLD_KIND_LABELS: dict[str, str] = {
    FailureKind.USAGE_LIMIT: "usage limit",
    FailureKind.RATE_LIMIT: "rate limit",
}
# A task whose env sets one of these signs in with its own account: the hold is not for it.
OWN_ACCOUNT_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
# Fires the hold records as deferred; runs asked for (manual, job steps, retries) wait queued.
JOB_RUNS_KEPT = 50  # ended runs of a job kept (in state.json) for `jobs runs`
# A job run's step that has no run: still to come, left out by skip_in_job, or never reached.
JOB_STEP_PENDING, JOB_STEP_SKIPPED, JOB_STEP_NOT_RUN = "pending", "skipped", "not_run"
HELD_TRIGGERS = frozenset({Trigger.SCHEDULE, Trigger.CATCH_UP, Trigger.STARTUP, Trigger.FILE_WATCH})
WATCH_ENTRIES_MAX = 50_000
WATCH_IGNORED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".mypy_cache"})
WATCH_IGNORED_FILE = r"(^\.#|^#.*#$|~$|\.sw[a-p]$|\.tmp$|\.part$|^\.DS_Store$)"
EngineEvent = Callable[[JSONDict], None]


class StraySession(typing.NamedTuple):
    """What is left of a session whose owner died: its process group (None when its
    claude is gone or is no longer ours) and the run id its processes carry."""

    pgid: int | None
    run_id: str


def stray_session(run: Run) -> StraySession | None:
    """The processes of `run`'s session that still run, if any. Only a pid that still
    looks like our `claude -p` session counts (its pid could have been reused)."""
    if sys.platform == "win32":
        return None
    pgid = run.pid if run.pid and _is_claude_session(run.pid) else None
    if pgid is None and not marked_pids(run.id):
        return None
    return StraySession(pgid, run.id)


def _is_claude_session(pid: int) -> bool:
    if not process_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _is_live_pid(pid) and b"stream-json" in cmdline and b"-p" in cmdline


def _stray_alive(session: StraySession) -> bool:
    return _group_lives(session.pgid) or bool(marked_pids(session.run_id))


def _signal_stray(session: StraySession, sig: int) -> None:
    if session.pgid is not None:
        with contextlib.suppress(OSError):
            os.killpg(session.pgid, sig)
    _signal_pids(marked_pids(session.run_id), sig)


def end_stray_sessions(sessions: Iterable[StraySession], grace: float = KILL_GRACE_SECONDS) -> None:
    """End sessions left behind by dead owners, all at once: SIGTERM, then SIGKILL what
    is left after `grace`. Zombies count as ended. Call it without the store lock:
    it waits up to `grace`."""
    import signal

    left = list(sessions)
    for session in left:
        _signal_stray(session, signal.SIGTERM)
    left = _wait_strays(left, grace)
    for session in left:
        _signal_stray(session, signal.SIGKILL)
    _wait_strays(left, KILL_WAIT_SECONDS)  # SIGKILL takes a moment too


def _wait_strays(sessions: list[StraySession], seconds: float) -> list[StraySession]:
    """Wait up to `seconds` for the sessions to end; those still alive."""
    deadline = time.monotonic() + seconds
    while sessions and time.monotonic() < deadline:
        time.sleep(GROUP_POLL_SECONDS)
        sessions = [session for session in sessions if _stray_alive(session)]
    return sessions


@dataclass
class WatchState:
    """What a file watch (a task's or a job's) last saw, and since when its folder has been changing."""

    snapshot: dict[str, tuple[int, int]]
    looked_at: float
    dirty_since: float | None = None
    was_busy: bool = False


def scan_tree(root: Path, recursive: bool, ignore: Path | None = None) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file under root, skipping VCS folders, editor temp files
    and `ignore` (the data home, whose logs change while the task runs)."""
    found: dict[str, tuple[int, int]] = {}
    pending = [root]
    while pending and len(found) < WATCH_ENTRIES_MAX:
        folder = pending.pop()
        if ignore and folder == ignore:
            continue
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    _scan_entry(entry, recursive, pending, found)
    if len(found) >= WATCH_ENTRIES_MAX:
        _warn_watch_limit(str(root))
    return found


@functools.cache
def _warn_watch_limit(root: str) -> None:
    """Say once per watched path that it is watched only in part."""
    logger().warning(
        "file watch on %s: more than %d files; only the first %d are watched, changes to the "
        "others do not fire the task (watch a narrower folder)",
        root,
        WATCH_ENTRIES_MAX,
        WATCH_ENTRIES_MAX,
    )


def _scan_entry(
    entry: os.DirEntry[str], recursive: bool, pending: list[Path], found: dict[str, tuple[int, int]]
) -> None:
    if entry.is_dir(follow_symlinks=False):
        if recursive and entry.name not in WATCH_IGNORED_DIRS:
            pending.append(Path(entry.path))
    elif not re.search(WATCH_IGNORED_FILE, entry.name):
        stat = entry.stat(follow_symlinks=False)
        found[entry.path] = (stat.st_mtime_ns, stat.st_size)


# The usage-limit hold: state.json's engine.hold, set by whoever records a run that hit
# the account's limit, lifted by the engine when its time comes (or by `engine resume`).


def has_own_account(task: Task) -> bool:
    """Whether the task signs in with its own key or token (in its env), so the limits
    of the scheduler's account do not concern it."""
    return env_has_own_account(task.env)


def env_has_own_account(env: Mapping[str, JSON]) -> bool:
    return any(env.get(name) for name in OWN_ACCOUNT_ENV)


def hold_kind_label(hold: JSONDict) -> str:
    """ "usage limit" or "rate limit", what people call the hold's cause."""
    return HOLD_KIND_LABELS.get(str(hold.get("kind")), "limit")


def _object_or_empty(value: JSON) -> JSONDict:
    return dict(value) if isinstance(value, dict) else {}


def _stored_time(value: JSON) -> datetime | None:
    """A timestamp of state.json, or None when missing or unreadable (a hand edit)."""
    if not isinstance(value, str):
        return None
    with contextlib.suppress(Invalid):
        return parse_time(value, "time")
    return None


def hold_until(hold: JSON) -> datetime | None:
    """When a stored hold ends; None for no hold, or one whose time cannot be read."""
    return _stored_time(hold.get("until")) if isinstance(hold, dict) else None


def active_hold(engine_state: JSONDict, now: datetime) -> JSONDict | None:
    """The hold in force at `now`, if any. One whose time has come, or that `engine
    resume` lifted, is no longer in force even before the engine has cleared it."""
    hold = engine_state.get("hold")
    until = hold_until(hold)
    if not isinstance(hold, dict) or until is None or hold.get("lifted_by"):
        return None
    return hold if until > now else None


def deferred_text(count: int, first: datetime, last: datetime, hold: JSONDict) -> str:
    """How a deferred record tells the fires it stands for."""
    span = fmt_local(first) + (f" to {fmt_local(last)}" if count > 1 else "")
    fires = "1 fire" if count == 1 else f"{count} fires"
    return f"{fires} ({span}) held back by the {hold_kind_label(hold).replace(' ', '-')} hold"


def limit_hold(run: Run, now: datetime) -> JSONDict | None:
    """The hold a run asks for: until its limit's reset (plus a margin) when it hit a
    usage or rate limit, else None."""
    if run.failure_kind not in HOLD_DEFAULT_SECONDS:
        return None
    if run.limit_resets_at is not None:
        until = max(run.limit_resets_at, now) + timedelta(seconds=HOLD_MARGIN_SECONDS)
    else:
        until = now + timedelta(seconds=HOLD_DEFAULT_SECONDS[run.failure_kind])
    return {
        "until": fmt_time(until),
        "kind": run.failure_kind,
        "reason": run.error,
        "run_id": run.id,
        "task_id": run.task_id,
        "since": fmt_time(now),
    }


def merge_hold(current: JSON, new: JSONDict) -> JSONDict:
    """A new limit extends a hold, never shortens it; the deferred fires are kept."""
    if not isinstance(current, dict):
        return new
    current_until, new_until = hold_until(current), hold_until(new)
    if current_until is not None and new_until is not None and current_until >= new_until:
        return current
    kept = {name: current[name] for name in ("since", "deferred", "deferred_jobs") if name in current}
    return {**new, **kept}


def note_limit_hold(store: Store, run: Run) -> None:
    """Hold new runs when `run` hit the account's usage or rate limit, unless its task
    has an account of its own. Call with the store locked."""
    hold = limit_hold(run, store.clock())
    with contextlib.suppress(NotFound):
        if hold is None or has_own_account(store.task(run.task_id)):
            return
        current = store.engine_state().get("hold")
        merged = merge_hold(current, hold)
        if merged is not current:
            store.set_engine_state(hold=merged)
            logger().info(  # the engine says it at warning level; a foreground run, in words
                "holding new runs until %s: %s (run %s)",
                fmt_local(hold_until(merged), zone=True),
                merged.get("reason") or hold_kind_label(merged),
                run.id[:ID_PREFIX_LEN],
            )


class Executor:
    """Runs one queued run to its end: resolves claude and the folder, executes, and
    records the outcome. Shared by the engine and the CLI's foreground runs."""

    def __init__(
        self,
        store: Store,
        *,
        environ: Mapping[str, str] | None = None,
        user_home: Path | None = None,
        kill_grace: float = KILL_GRACE_SECONDS,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.environ = dict(os.environ if environ is None else environ)
        self.user_home = user_home or Path.home()
        self.kill_grace = kill_grace
        self.owner = owner or process_owner()

    def claim(self, run: Run) -> Run:
        """Mark a queued run as running in this process."""
        run = dataclasses.replace(
            run, status=RunStatus.RUNNING, started_at=self.store.clock(), owner=self.owner
        )
        self.store.save_run(run)
        return run

    def perform(self, run: Run, stop: threading.Event) -> Run:
        """Execute a claimed run; returns it as recorded at the end. Never raises for a
        problem of the run itself (missing claude, folder...): that is a failed run."""
        log_path = self.store.log_path(run.id)
        try:
            task = self.store.task(run.task_id)
            previous = previous_step_run(self.store, run)
            argv, cwd, env = self._prepare(task, run.id, previous)
        except SchedulerError as error:
            outcome = RunOutcome(
                status=STATUS_FAILED, error=str(error), failure_kind=FailureKind.NOT_STARTED.value
            )
        else:
            self._note_new_session(task, run, log_path)
            outcome = execute(
                argv,
                prompt=fill_placeholders(task.prompt, placeholder_values(self.store, run, previous)),
                cwd=cwd,
                env=env,
                log_path=log_path,
                timeout_seconds=task.timeout_seconds,
                should_stop=lambda: stop.is_set() or self._stop_requested(run.id),
                on_started=lambda pid: self._note_pid(run.id, pid),
                kill_grace_seconds=self.kill_grace,
                poll_seconds=STOP_POLL_SECONDS,
            )
            if task.fail_on_permission_denials:
                outcome = _failed_on_denials(outcome)
        if outcome.status == STATUS_FAILED and outcome.error and not outcome.error_in_log:
            _append_log(log_path, f"{LOG_FAILURE_PREFIX}{outcome.error}")
        if outcome.failure_kind == FailureKind.MISSING_SESSION:
            _append_log(log_path, LOG_SCHEDULER_PREFIX + SESSION_LOST_NOTE)
        return self._record(run.id, outcome)

    def _note_new_session(self, task: Task, run: Run, log_path: Path) -> None:
        """Say why a resuming task starts a new session: its last one was lost."""
        if task.session_mode is not SessionMode.RESUME or task.last_session_id:
            return
        try:
            runs = self.store.runs_of(task.id)
        except SchedulerError:
            return  # only a note: never a reason to fail the run
        earlier = [old for old in runs if old.id != run.id and old.tells_how_the_task_does]
        latest = max(earlier, key=lambda old: old.created_at, default=None)
        if latest is not None and latest.failure_kind == FailureKind.MISSING_SESSION:
            lost = (latest.session_id or "")[:ID_PREFIX_LEN]
            with contextlib.suppress(OSError):
                log_path.parent.mkdir(parents=True, exist_ok=True)
            _append_log(log_path, LOG_SCHEDULER_PREFIX + SESSION_RESTART_NOTE.format(lost))

    def _prepare(
        self, task: Task, run_id: str, previous: Run | None = None
    ) -> tuple[list[str], Path, dict[str, str]]:
        job = self.store.job(task.job_id) if task.job_id else None
        claude = resolve_claude(self.store.settings().get("claude_path"), self.environ, self.user_home)
        cwd = resolve_workdir(
            task.working_directory, job.working_directory if job else None, self.user_home, self.environ
        )
        resume = task.last_session_id if task.session_mode is SessionMode.RESUME else None
        if task.session_mode is SessionMode.PREVIOUS:
            resume = previous.session_id if previous else None
            if not resume:
                raise Invalid(
                    "there is no previous step's session to continue (a first step, or one "
                    "that started no session)",
                    "session_mode",
                )
        located = functools.partial(resolve_option_path, cwd=cwd, home=self.user_home, environ=self.environ)
        argv = build_command(
            claude,
            model=task.model,
            permission_mode=task.permission_mode.value,
            allowed_tools=task.allowed_tools,
            disallowed_tools=task.disallowed_tools,
            max_turns=task.max_turns,
            append_system_prompt=task.append_system_prompt,
            resume_session=resume,
            system_prompt=task.system_prompt,
            max_budget_usd=task.max_budget_usd,
            fallback_model=task.fallback_model,
            add_dirs=[located(raw, "add_dirs") for raw in task.add_dirs],
            mcp_config=located(task.mcp_config, "mcp_config") if task.mcp_config else None,
            strict_mcp_config=task.strict_mcp_config,
            extra_args=task.extra_args,
        )
        return argv, cwd, {**self.environ, **task.env, RUN_ID_ENV: run_id}

    def _stop_requested(self, run_id: str) -> bool:
        try:
            return self.store.run(run_id).stop_requested
        except NotFound:
            return True  # the run (or its task) was deleted: nobody wants it any more

    def _note_pid(self, run_id: str, pid: int) -> None:
        """Record claude's pid (for stopping an orphan). A failure is logged, never the
        end of a session that has started: the run's outcome is recorded all the same."""
        try:
            with self.store.locked():
                self.store.save_run(dataclasses.replace(self.store.run(run_id), pid=pid))
        except NotFound:
            return
        except StorageError as error:
            logger().warning("run %s: its process id was not recorded: %s", run_id[:ID_PREFIX_LEN], error)

    def _record(self, run_id: str, outcome: RunOutcome) -> Run:
        """Record how a run ended. While a store file cannot be read (someone is fixing
        it by hand), keep trying for a while rather than lose the outcome."""
        for _ in range(RECORD_ATTEMPTS - 1):
            try:
                return self._record_once(run_id, outcome)
            except StorageError as error:
                logger().warning("cannot record run %s yet (%s); trying again", run_id[:ID_PREFIX_LEN], error)
                time.sleep(RECORD_RETRY_SECONDS)
        return self._record_once(run_id, outcome)

    def _record_once(self, run_id: str, outcome: RunOutcome) -> Run:
        with self.store.locked():
            try:
                run = self.store.run(run_id)
            except NotFound:
                return Run(run_id, run_id, status=RunStatus(outcome.status))
            fields = dataclasses.asdict(outcome)
            del fields["error_in_log"]
            fields["status"] = RunStatus(outcome.status)
            fields["session_id"] = outcome.session_id or run.session_id
            fields["model"] = outcome.model or run.model
            fields["error"] = outcome.error or None
            finished_at = self.store.clock()
            if outcome.failure_kind == FailureKind.USAGE_LIMIT and outcome.limit_resets_at is None:
                fields["limit_resets_at"] = usage_limit_reset(outcome.error or "", finished_at)
            run = dataclasses.replace(run, **fields, finished_at=finished_at)
            self.store.save_run(run)
            note_limit_hold(self.store, run)
            return run


def _failed_on_denials(outcome: RunOutcome) -> RunOutcome:
    """A session that went well but was refused tool calls, as a failure naming them
    (for tasks with fail_on_permission_denials)."""
    denials = outcome.permission_denials or []
    if outcome.status != STATUS_SUCCESS or not denials:
        return outcome
    calls = "; ".join(describe_denial(denial) for denial in denials)
    error = f"claude was refused {_plural(len(denials), 'tool call')}: {calls}"
    return dataclasses.replace(
        outcome,
        status=STATUS_FAILED,
        failure_kind=FailureKind.PERMISSION_DENIED.value,
        error=_clip(error, ERROR_MAX_CHARS),
    )


def _append_log(path: Path, line: str) -> None:
    with contextlib.suppress(OSError), open_private_append(path) as handle:
        handle.write(line.rstrip("\n") + "\n")


class Engine:
    """The scheduler: fires tasks on time, queues and runs them, records everything.

    One engine per data home: `start` takes engine.lock and returns False when another
    process holds it (this process is then only a viewer). The loop runs in its own
    thread; `tick` is one pass of it and can be driven directly with an injected clock.
    `on_event` receives plain dicts ({"event": "run", "run": {...}}) from any thread.
    """

    def __init__(
        self,
        store: Store,
        *,
        environ: Mapping[str, str] | None = None,
        user_home: Path | None = None,
        kill_grace: float = KILL_GRACE_SECONDS,
        on_event: EngineEvent | None = None,
    ) -> None:
        self.store = store
        self.clock = store.clock
        self.executor = Executor(store, environ=environ, user_home=user_home, kill_grace=kill_grace)
        self.on_event = on_event or (lambda event: None)
        self._lock_file = InterProcessLock(store.home / ENGINE_LOCK_FILE)
        self._wakeup = threading.Condition()
        self._workers: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._watches: dict[str, WatchState] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._last_reap = 0.0
        self._last_watch = 0.0
        self._last_tick: datetime | None = None
        self.owns = False

    # Life cycle ----------------------------------------------------------------

    def start(self, *, thread: bool = True, about: JSONDict | None = None) -> bool:
        """Become the data home's engine; False if another process already is. `about`
        joins the owner record in the same write (the API address, the process kind)."""
        if not self._lock_file.try_acquire():
            return False
        self.owns = True
        owner = {
            "pid": os.getpid(),
            "host": host_name(),
            "id": process_owner(),
            "started_at": fmt_time(self.clock()),
            **(about or {}),
        }
        self.store.set_engine_state(owner=owner)
        self.store.sweep(logs=True)
        self.recover()
        self._fire_startup_tasks()
        if thread:
            self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
            self._thread.start()
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop scheduling, cancel this process's runs (recorded), release the lock."""
        if not self.owns:
            return
        self._stopping.set()
        self.wake()
        if self._thread:
            self._thread.join(timeout)
        for _, stop in list(self._workers.values()):
            stop.set()
        deadline = time.monotonic() + timeout
        for worker, _ in list(self._workers.values()):
            worker.join(max(deadline - time.monotonic(), 0.1))
        with contextlib.suppress(SchedulerError):
            self.store.set_engine_state(owner=None)
        self._lock_file.release()
        self.owns = False

    def wake(self) -> None:
        with self._wakeup:
            self._wakeup.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no run of this engine is active or queued-and-due (for tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._workers and not self._due_queue(self.clock()):
                return True
            time.sleep(0.05)
        return False

    @property
    def active_run_ids(self) -> list[str]:
        return list(self._workers)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                delay = self.tick()
            except SchedulerError as error:
                logger().error("engine: %s", error)
                delay = ENGINE_ERROR_PAUSE_SECONDS
            except Exception:  # the engine must outlive any one bad pass; the log has it
                logger().exception("engine: unexpected error")
                delay = ENGINE_ERROR_PAUSE_SECONDS
            with self._wakeup:
                if not self._stopping.is_set():
                    self._wakeup.wait(max(0.01, min(delay, CHANGE_POLL_SECONDS)))

    # One pass ------------------------------------------------------------------

    def tick(self) -> float:
        """Fire what is due, dispatch what may start; return seconds until the next due time."""
        now = self.clock()
        self._lift_hold_when_due(now)
        paused = bool(self.store.engine_state().get("paused"))
        tasks = [task for task in self.store.task_list() if task.enabled]
        # After the wall clock stepped back (or at start, when it may have while no engine
        # ran), fire times computed from the later clock are moved to the next one from now.
        went_back = self._last_tick is None or now < self._last_tick
        self._last_tick = now
        for task in tasks:
            if task.schedule.is_timed:
                self._check_due(task, now, paused, went_back)
        self._poll_watches(tasks, now, paused)
        self._check_jobs(now, paused)
        self._expire_stale(now)
        if not paused:
            self._dispatch(now)
        if time.monotonic() - self._last_reap > ENGINE_WAKE_MAX:
            self._reap_orphans()
        upcoming = [task.next_run_at for task in self.store.task_list() if task.enabled and task.next_run_at]
        upcoming += self._job_due_times()
        held_until = hold_until(active_hold(self.store.engine_state(), self.clock()))
        if held_until is not None:
            upcoming.append(held_until)  # lifted on time, not up to ENGINE_WAKE_MAX late
        soonest = min(upcoming, default=None)
        delay = (soonest - self.clock()).total_seconds() if soonest else ENGINE_WAKE_MAX
        return max(0.0, min(delay, ENGINE_WAKE_MAX))

    def _check_due(self, task: Task, now: datetime, paused: bool, went_back: bool = False) -> None:
        due = task.fire_time
        if due is None:
            upcoming = next_fire_after(task.schedule, now, task.created_at)
            if upcoming and not self._has_fired(task, upcoming):
                self.store.update_task_state(task.id, fire_state(task, upcoming))
            return
        if due > now:
            if went_back:
                self._follow_clock_back(task, due, now)
            return
        with self.store.locked():
            current = next((t for t in self.store.task_list() if t.id == task.id), None)
            if current is None or current.next_run_at != due or not current.enabled:
                return  # deleted, disabled or moved by an edit meanwhile
            times, capped = self._times_between(task.schedule, due, now, task.created_at)
            upcoming = next_fire_after(task.schedule, now, task.created_at)
            self.store.update_task_state(task.id, fire_state(task, upcoming))
            self._fire_times(current, times, capped, now, upcoming, paused)

    def _has_fired(self, task: Task, moment: datetime) -> bool:
        """Whether a `once` task has already fired (or missed) its time: after the clock
        went back before it, it must not come round again."""
        if task.schedule.type is not ScheduleType.ONCE:
            return False
        return any(run.scheduled_for == moment for run in self.store.runs_of(task.id))

    def _follow_clock_back(self, task: Task, due: datetime, now: datetime) -> None:
        """A fire time later than the schedule's next one from `now` was computed by a
        clock that has since been set back: without this, the task would wait for the
        clock to catch up (an hour for an hour)."""
        upcoming = next_fire_after(task.schedule, now, task.created_at)
        if upcoming is None or upcoming >= due:
            return
        with self.store.locked():
            current = next((t for t in self.store.task_list() if t.id == task.id), None)
            if current is not None and current.next_run_at == due:
                logger().warning(
                    "the clock went back: task %s next fires at %s, not %s",
                    task.id[:ID_PREFIX_LEN],
                    fmt_local(upcoming),
                    fmt_local(due),
                )
                self.store.update_task_state(task.id, fire_state(task, upcoming))

    @staticmethod
    def _times_between(
        schedule: Schedule, due: datetime, now: datetime, created_at: datetime
    ) -> tuple[list[datetime], bool]:
        times = [due]
        while len(times) < MISSED_SCAN_MAX:
            moment = next_fire_after(schedule, times[-1], created_at)
            if moment is None or moment > now:
                return times, False
            times.append(moment)
        return times, True

    def _fire_times(
        self,
        task: Task,
        times: list[datetime],
        capped: bool,
        now: datetime,
        upcoming: datetime | None,
        paused: bool,
    ) -> None:
        latest = times[-1]
        if len(times) == 1 and (now - latest).total_seconds() <= MISSED_AFTER_SECONDS:
            self.fire(task, Trigger.SCHEDULE, latest, paused=paused)
            return
        period = (upcoming - latest).total_seconds() if upcoming else 2 * GRACE_MAX_SECONDS
        grace = min(period / 2, GRACE_MAX_SECONDS)
        missed = times
        if task.catch_up is CatchUp.ONCE and (now - latest).total_seconds() <= grace:
            missed = times[:-1]
            self.fire(task, Trigger.CATCH_UP, latest, paused=paused)
        if missed:
            self._record_missed(task, missed, capped, now)

    def _record_missed(self, task: Task, missed: list[datetime], capped: bool, now: datetime) -> None:
        count = len(missed)
        span = fmt_local(missed[0]) + (f" to {fmt_local(missed[-1])}" if count > 1 else "")
        counted = f"{count}{'+' if capped else ''} scheduled {'time was' if count == 1 else 'times were'}"
        run = Run(
            new_id(),
            task.id,
            status=RunStatus.MISSED,
            trigger=Trigger.SCHEDULE,
            created_at=now,
            scheduled_for=missed[0],
            finished_at=now,
            missed_count=count,
            error=f"{counted} missed while the scheduler was not running ({span})",
        )
        self.store.save_run(run)
        self._emit(run)

    def fire(
        self, task: Task, trigger: Trigger, scheduled_for: datetime | None, *, paused: bool = False
    ) -> Run:
        """Start (queue) a run of `task` as its overlap policy allows; otherwise record why
        not (a fire held back by a usage-limit hold is recorded as deferred)."""
        with self.store.locked():
            hold = active_hold(self.store.engine_state(), self.clock())
            if hold and not paused and trigger in HELD_TRIGGERS and not has_own_account(task):
                return self._defer(task, trigger, scheduled_for, hold)
            active = [run for run in self.store.runs_of(task.id) if run.is_active]
            reason = None
            if paused:
                reason = "the scheduler was paused"
            elif active and task.overlap is Overlap.SKIP:
                reason = "the previous run was still going (overlap: skip)"
            elif task.overlap is Overlap.QUEUE and any(run.status is RunStatus.QUEUED for run in active):
                reason = "a run was already waiting (overlap: queue keeps one)"
            now = self.clock()
            run = Run(
                new_id(),
                task.id,
                trigger=trigger,
                created_at=now,
                scheduled_for=scheduled_for,
                model=task.model,
            )
            if reason:
                run = dataclasses.replace(run, status=RunStatus.SKIPPED, finished_at=now, error=reason)
                self.store.save_run(run)
            else:
                self.store.enqueue(run)
        self._emit(run)
        self.wake()
        return run

    # The usage-limit hold -----------------------------------------------------------

    def _defer(self, task: Task, trigger: Trigger, scheduled_for: datetime | None, hold: JSONDict) -> Run:
        """Record a fire held back by `hold`: one deferred run per task and hold, whose
        count and span grow with each fire. Call with the store locked."""
        now = self.clock()
        moment = scheduled_for or now
        deferred = _object_or_empty(hold.get("deferred"))
        entry = _object_or_empty(deferred.get(task.id))
        record = self._deferred_record(task.id, entry.get("run_id"))
        if record is None:
            record = Run(
                new_id(),
                task.id,
                status=RunStatus.DEFERRED,
                trigger=trigger,
                created_at=now,
                scheduled_for=moment,
                missed_count=0,
            )
        count = (record.missed_count or 0) + 1
        text = deferred_text(count, record.scheduled_for or moment, moment, hold)
        after = {
            CatchUp.ONCE: "one run follows when it lifts (catch_up: once)",
            CatchUp.SKIP: "not run after it (catch_up: skip)",
        }[task.catch_up]
        until = fmt_local(hold_until(hold))
        record = dataclasses.replace(
            record, missed_count=count, finished_at=now, error=f"{text} until {until}; {after}"
        )
        self.store.save_run(record)
        deferred[task.id] = {"run_id": record.id, "last": fmt_time(moment)}
        self.store.set_engine_state(hold={**hold, "deferred": deferred})
        self._emit(record)
        return record

    def _deferred_record(self, task_id: str, run_id: JSON) -> Run | None:
        if not isinstance(run_id, str):
            return None
        with contextlib.suppress(NotFound):
            run = self.store.run(run_id)
            if run.task_id == task_id and run.status is RunStatus.DEFERRED:
                return run
        return None

    def _lift_hold_when_due(self, now: datetime) -> None:
        """Once a hold's time has come (or `engine resume` brought it forward): clear it,
        and give each task whose fires it held back its catch-up policy's one run."""
        with self.store.locked():
            hold = self.store.engine_state().get("hold")
            if not isinstance(hold, dict) or active_hold({"hold": hold}, now) is hold:
                return
            logger().warning(
                "the %s hold is lifted (%s); runs start again",
                hold_kind_label(hold),
                f"by {hold['lifted_by']}" if hold.get("lifted_by") else "its time has come",
            )
            for task_id, entry in _object_or_empty(hold.get("deferred")).items():
                self._catch_up_deferred(task_id, _object_or_empty(entry), hold)
            for job_id, entry in _object_or_empty(hold.get("deferred_jobs")).items():
                self._catch_up_deferred_job(job_id, _object_or_empty(entry), hold)
            self.store.set_engine_state(hold=None)
        self.on_event({"event": "limit_hold", "began": False, "resets_at": None})

    def _catch_up_deferred(self, task_id: str, entry: JSONDict, hold: JSONDict) -> None:
        try:
            task = self.store.task(task_id)
        except NotFound:
            return
        record = self._deferred_record(task_id, entry.get("run_id"))
        last = _stored_time(entry.get("last"))
        run = None
        if task.enabled and task.catch_up is CatchUp.ONCE:
            run = self.fire(task, Trigger.CATCH_UP, last)
        if record is None:
            return
        first = record.scheduled_for or last or self.clock()
        text = deferred_text(record.missed_count or 1, first, last or first, hold)
        if run is None:
            why = "the task is disabled" if not task.enabled else "catch_up: skip"
            after = f"not run after it ({why})"
        elif run.status is RunStatus.SKIPPED:  # overlap: its previous run still goes on
            after = f"not run after it ({run.error})"
        else:
            after = f"caught up by run {run.id[:ID_PREFIX_LEN]} when it lifted"
        record = dataclasses.replace(record, error=f"{text}; {after}")
        self.store.save_run(record)
        self._emit(record)

    def _fire_startup_tasks(self) -> None:
        for task in self.store.task_list():
            if task.enabled and task.schedule.type is ScheduleType.STARTUP:
                self.fire(task, Trigger.STARTUP, self.clock())
        for job in self.store.job_list():
            if job.schedule.type is ScheduleType.STARTUP:
                self.fire_job(job, Trigger.STARTUP, self.clock())

    # Job schedules -----------------------------------------------------------------
    # A job's schedule fires the whole job as one job run, with the rules a task's has:
    # catch-up after downtime, overlap (skip or queue), the pause; its steps go through
    # the queue, so the concurrency cap and a usage-limit hold apply to each of them.

    def _job_due_times(self) -> list[datetime]:
        times = [_stored_time(state.get("next_run_at")) for state in self.store.job_schedules().values()]
        return [moment for moment in times if moment is not None]

    def _check_jobs(self, now: datetime, paused: bool) -> None:
        schedules = self.store.job_schedules()
        for job in self.store.job_list():
            state = schedules.get(job.id) or {}
            if job.schedule.is_timed and "next_run_at" not in state:  # state.json lost it: start again
                upcoming = next_fire_after(job.schedule, now, job.created_at)
                self.store.update_job_schedule(job.id, {"next_run_at": fmt_time(upcoming)})
                continue
            if job.schedule.is_timed:
                self._check_job_due(job, _stored_time(state.get("next_run_at")), now, paused)
            if state.get("queued_for") and not paused:
                self._start_queued_job(job)

    def _check_job_due(self, job: Job, due: datetime | None, now: datetime, paused: bool) -> None:
        if due is None or due > now:
            return
        with self.store.locked():
            state = self.store.job_schedules().get(job.id) or {}
            if _stored_time(state.get("next_run_at")) != due:
                return  # moved by an edit meanwhile
            times, capped = self._times_between(job.schedule, due, now, job.created_at)
            upcoming = next_fire_after(job.schedule, now, job.created_at)
            self.store.update_job_schedule(job.id, {"next_run_at": fmt_time(upcoming)})
        latest = times[-1]
        if len(times) == 1 and (now - latest).total_seconds() <= MISSED_AFTER_SECONDS:
            self.fire_job(job, Trigger.SCHEDULE, latest, paused=paused)
            return
        period = (upcoming - latest).total_seconds() if upcoming else 2 * GRACE_MAX_SECONDS
        missed = times
        if job.catch_up is CatchUp.ONCE and (now - latest).total_seconds() <= min(
            period / 2, GRACE_MAX_SECONDS
        ):
            missed = times[:-1]
            self.fire_job(job, Trigger.CATCH_UP, latest, paused=paused)
        if missed:
            count = f"{len(missed)}{'+' if capped else ''}"
            span = fmt_local(missed[0]) + (f" to {fmt_local(missed[-1])}" if len(missed) > 1 else "")
            note = f"{count} scheduled time(s) missed while the scheduler was not running ({span})"
            note_job_fire(self.store, job, Trigger.SCHEDULE, JobRunStatus.MISSED, note, missed[0])

    def fire_job(
        self, job: Job, trigger: Trigger, scheduled_for: datetime | None, *, paused: bool = False
    ) -> str:
        """Start a job run of `job` as its overlap policy allows, else record why not
        (or, overlap: queue, keep the fire until the current job run ends). Returns the
        id of the job run started or recorded ("" for a fire kept waiting). A fire held
        back by a usage-limit hold is recorded as a deferred job run."""
        with self.store.locked():
            hold = active_hold(self.store.engine_state(), self.clock())
            if hold and not paused and trigger in HELD_TRIGGERS and self._job_is_held(job):
                return self._defer_job(job, trigger, scheduled_for, hold)
            running = any(
                entry.get("job_id") == job.id and entry.get("status") == JobRunStatus.RUNNING
                for entry in self.store.job_runs().values()
            )
            waiting = (self.store.job_schedules().get(job.id) or {}).get("queued_for")
            note = None
            if paused:
                note = "the scheduler was paused"
            elif running and job.overlap is Overlap.SKIP:
                note = "the job's last run was still going (overlap: skip)"
            elif running and waiting:
                note = "a fire was already waiting (overlap: queue keeps one)"
            elif running:
                self.store.update_job_schedule(
                    job.id, {"queued_for": fmt_time(scheduled_for or self.clock())}
                )
                return ""
            if note is None:
                try:
                    job_run_id, entry = open_job_run(
                        self.store,
                        job.id,
                        continue_on_failure=False,
                        trigger=trigger,
                        scheduled_for=scheduled_for,
                        save=False,
                    )
                except Conflict as error:  # no enabled task to run
                    note = error.message
                else:
                    start_job_step(self.store, job_run_id, entry)
        if note is not None:
            return note_job_fire(self.store, job, trigger, JobRunStatus.SKIPPED, note, scheduled_for)
        self.wake()
        return job_run_id

    def _job_is_held(self, job: Job) -> bool:
        """Whether a hold concerns the job: one of its steps would wait for it."""
        return any(task.enabled and not has_own_account(task) for task in self.store.tasks_of(job.id))

    def _defer_job(self, job: Job, trigger: Trigger, scheduled_for: datetime | None, hold: JSONDict) -> str:
        """Record a fire of the job held back by `hold`, as a task's: one deferred job run
        per job and hold, whose count and span grow with each fire. Call with the store
        locked. Returns the deferred job run's id."""
        moment = scheduled_for or self.clock()
        deferred = _object_or_empty(hold.get("deferred_jobs"))
        job_run_id = str(_object_or_empty(deferred.get(job.id)).get("job_run_id") or "")
        entry = self.store.job_runs().get(job_run_id)
        if entry is None or entry.get("status") != JobRunStatus.DEFERRED:
            job_run_id = note_job_fire(self.store, job, trigger, JobRunStatus.DEFERRED, "", moment)
            entry = self.store.job_runs()[job_run_id]
        count = int(entry.get("fires") or 0) + 1
        first = _stored_time(entry.get("scheduled_for")) or moment
        after = {
            CatchUp.ONCE: "one job run follows when it lifts (catch_up: once)",
            CatchUp.SKIP: "not run after it (catch_up: skip)",
        }[job.catch_up]
        note = f"{deferred_text(count, first, moment, hold)} until {fmt_local(hold_until(hold))}; {after}"
        finished = fmt_time(self.clock())
        self.store.save_job_run(job_run_id, {**entry, "fires": count, "note": note, "finished_at": finished})
        deferred[job.id] = {"job_run_id": job_run_id, "last": fmt_time(moment)}
        self.store.set_engine_state(hold={**hold, "deferred_jobs": deferred})
        return job_run_id

    def _catch_up_deferred_job(self, job_id: str, deferred: JSONDict, hold: JSONDict) -> None:
        """When the hold lifts: the job's one catch-up job run (catch_up: once), and its
        deferred record says what followed. Call with the store locked."""
        try:
            job = self.store.job(job_id)
        except NotFound:
            return
        last = _stored_time(deferred.get("last"))
        after = "not run after it (catch_up: skip)"
        if job.catch_up is CatchUp.ONCE:
            started = self.fire_job(job, Trigger.CATCH_UP, last)
            fired = self.store.job_runs().get(started) or {}
            if fired.get("status") == JobRunStatus.SKIPPED:
                after = f"not run after it ({fired.get('note')})"
            elif started:
                after = f"caught up by job run {started[:ID_PREFIX_LEN]} when it lifted"
            else:  # kept until the job's last run ends (overlap: queue)
                after = "caught up when the job's last run ends (overlap: queue)"
        job_run_id = str(deferred.get("job_run_id") or "")
        entry = self.store.job_runs().get(job_run_id)
        if entry is None or entry.get("status") != JobRunStatus.DEFERRED:
            return
        first = _stored_time(entry.get("scheduled_for")) or last or self.clock()
        text = deferred_text(int(entry.get("fires") or 1), first, last or first, hold)
        self.store.save_job_run(job_run_id, {**entry, "note": f"{text}; {after}"})

    def _start_queued_job(self, job: Job) -> None:
        """A fire kept by overlap: queue starts once the job's current run has ended."""
        with self.store.locked():
            if any(
                entry.get("job_id") == job.id and entry.get("status") == JobRunStatus.RUNNING
                for entry in self.store.job_runs().values()
            ):
                return
            waited = _stored_time((self.store.job_schedules().get(job.id) or {}).get("queued_for"))
            self.store.update_job_schedule(job.id, {"queued_for": None})
        self.fire_job(job, Trigger.SCHEDULE, waited)

    # File watching ---------------------------------------------------------------

    def _poll_watches(self, tasks: list[Task], now: datetime, paused: bool) -> None:
        """Look at every watched folder (of tasks and of jobs) at most every
        WATCH_POLL_SECONDS; fire what has changed and then been quiet for its debounce."""
        tick = now.timestamp()
        if abs(tick - self._last_watch) < WATCH_POLL_SECONDS:
            return
        self._last_watch = tick
        watched = {task.id: task for task in tasks if task.schedule.type is ScheduleType.FILE_WATCH}
        jobs = {job.id: job for job in self.store.job_list() if job.schedule.type is ScheduleType.FILE_WATCH}
        for key in set(self._watches) - set(watched) - set(jobs):
            del self._watches[key]
        for task in watched.values():
            if self._poll_watch(task.id, task.schedule, tick, self._task_busy_since(task.id)):
                self.fire(task, Trigger.FILE_WATCH, self.clock(), paused=paused)
        for job in jobs.values():
            if self._poll_watch(job.id, job.schedule, tick, self._job_busy_since(job.id)):
                self.fire_job(job, Trigger.FILE_WATCH, self.clock(), paused=paused)

    def _task_busy_since(self, task_id: str) -> Callable[[float], bool]:
        def busy(since: float) -> bool:
            return any(
                run.is_active or (run.finished_at is not None and run.finished_at.timestamp() >= since)
                for run in self.store.runs_of(task_id)
            )

        return busy

    def _job_busy_since(self, job_id: str) -> Callable[[float], bool]:
        def busy(since: float) -> bool:
            for entry in self.store.job_runs().values():
                if entry.get("job_id") != job_id:
                    continue
                ended = _stored_time(entry.get("finished_at"))
                if entry.get("status") == JobRunStatus.RUNNING or (ended and ended.timestamp() >= since):
                    return True
            return False

        return busy

    def _poll_watch(
        self, key: str, schedule: Schedule, tick: float, busy_since: Callable[[float], bool]
    ) -> bool:
        """One look at the folder `key` (a task or a job) watches; whether it fires now."""
        root = Path(_expand_path(schedule.path or "", self.executor.user_home, self.executor.environ))
        snapshot = scan_tree(root, schedule.recursive, self.store.home)
        state = self._watches.get(key)
        busy = busy_since(state.looked_at if state else tick)
        if state is None or busy or state.was_busy:
            # The first look is the baseline; what its own run wrote (up to the first look
            # after it ended, even if it ran between two looks) is not news.
            self._watches[key] = WatchState(snapshot, tick, was_busy=busy)
            return False
        state.looked_at = tick
        if snapshot != state.snapshot:
            state.snapshot, state.dirty_since = snapshot, tick
        elif state.dirty_since is not None and tick - state.dirty_since >= schedule.debounce_seconds:
            state.dirty_since = None
            return True
        return False

    # Dispatch --------------------------------------------------------------------

    def _due_queue(self, now: datetime) -> list[JSONDict]:
        """The queue's entries that may start now: due, and not held back by a hold."""
        held: set[str] = set()
        if active_hold(self.store.engine_state(), now):
            held = {task.id for task in self.store.task_list() if not has_own_account(task)}
        due = []
        for entry in self.store.queue():
            if entry.get("task_id") in held:
                continue  # waits, in its place, for the hold to lift
            not_before = entry.get("not_before")
            if not not_before or parse_time(not_before, "not_before") <= now:
                due.append(entry)
        return due

    def _dispatch(self, now: datetime) -> None:
        due = self._due_queue(now)
        if not due:
            return
        cap = int(self.store.setting("max_concurrent_runs"))
        if len(self._workers) >= cap:
            return
        # Foreground runs (`cli tasks run`) count against the cap too.
        elsewhere = len([run for run in running_runs(self.store) if run.id not in self._workers])
        tasks = {task.id: task for task in self.store.task_list()}
        for entry in due:
            if len(self._workers) + elsewhere >= cap:
                return
            task = tasks.get(entry.get("task_id", ""))
            if task and task.overlap is not Overlap.PARALLEL and self._is_running(task.id):
                continue  # waits for the task's current run to end
            self._claim_and_start(entry["run_id"])

    def _is_running(self, task_id: str) -> bool:
        return any(run.status is RunStatus.RUNNING for run in self.store.runs_of(task_id))

    def _expire_stale(self, now: datetime) -> None:
        """Runs asked for while no engine ran (see Run.start_by): those that no engine
        started in time are recorded as expired, not run late; the others keep their
        place in the queue, their limit lifted now that an engine runs."""
        if not any(entry.get("start_by") for entry in self.store.queue()):
            return
        with self.store.locked():
            limited = [entry for entry in self.store.queue() if entry.get("start_by")]
            ended = [run for run in (self._expire_if_due(entry, now) for entry in limited) if run]
            self.store.dequeue(run.id for run in ended)
            self.store.lift_start_by(entry["run_id"] for entry in limited)
        for run in ended:
            self._emit(run)

    def _expire_if_due(self, entry: JSONDict, now: datetime) -> Run | None:
        """The run of a queue entry with a start-by limit, recorded as expired if that
        has passed (else its limit is dropped); None if it did not expire."""
        try:
            run = self.store.run(entry["run_id"])
        except NotFound:
            return None
        if run.status is not RunStatus.QUEUED or run.start_by is None:
            return None
        if run.start_by > now:
            self.store.save_run(dataclasses.replace(run, start_by=None))
            return None
        expired = dataclasses.replace(
            run,
            status=RunStatus.CANCELLED,
            finished_at=now,
            failure_kind=FailureKind.EXPIRED.value,
            error=f"expired: asked for at {fmt_local(run.created_at)} while no engine ran, and none "
            f"started it by {fmt_local(run.start_by)} (the start_by_minutes setting; "
            f"`{'jobs' if run.job_run_id else 'tasks'} run --detach --wait-for-engine` waits)",
        )
        self.store.save_run(expired)
        if expired.job_run_id:
            expire_job_run(self.store, expired)
        return expired

    def _claim_and_start(self, run_id: str) -> None:
        """Claim a queued run, then take it off the queue: a failure in between leaves a
        running run's entry, passed over and dropped later, never a queued run that no
        queue names (which would wait for the next engine start)."""
        with self.store.locked():
            try:
                run = self.store.run(run_id)
            except NotFound:
                self.store.dequeue([run_id])
                return
            if run.status is not RunStatus.QUEUED:
                self.store.dequeue([run_id])
                return
            run = self.executor.claim(run)
            try:
                self.store.dequeue([run_id])
            except StorageError as error:
                logger().warning("run %s started, but: %s", run_id[:ID_PREFIX_LEN], error)
        stop = threading.Event()
        worker = threading.Thread(target=self._work, args=(run, stop), name=f"run-{run.id[:8]}", daemon=True)
        self._workers[run.id] = (worker, stop)
        self._emit(run)
        worker.start()

    def _work(self, run: Run, stop: threading.Event) -> None:
        try:
            finished = self.executor.perform(run, stop)
            self._emit(finished)
            self._emit_hold_began(finished)
            self._after_run(finished)
        except SchedulerError as error:  # a store file unreadable or unwritable (logged)
            logger().error("engine: after run %s: %s", run.id[:ID_PREFIX_LEN], error)
        except Exception:  # a worker must always let go of its slot; the log has the cause
            logger().exception("engine: run %s failed unexpectedly", run.id)
        finally:
            self._workers.pop(run.id, None)
            self.wake()

    def _emit_hold_began(self, run: Run) -> None:
        """Tell listeners (notifications) when `run` put new runs on hold."""
        if run.failure_kind not in (FailureKind.USAGE_LIMIT, FailureKind.RATE_LIMIT):
            return
        hold = hold_begun_by(self.store, run.id)
        if hold is not None:
            logger().warning(
                "holding new runs until %s: %s (run %s)",
                fmt_local(hold_until(hold), zone=True),
                hold.get("reason") or hold_kind_label(hold),
                run.id[:ID_PREFIX_LEN],
            )
            self.on_event(hold_began_event(hold))

    def _after_run(self, run: Run) -> None:
        """Retries with backoff, then the next step of a job run."""
        try:
            task = self.store.task(run.task_id)
        except NotFound:
            return
        retryable = (
            run.status in (RunStatus.FAILED, RunStatus.TIMEOUT) and run.failure_kind not in NOT_RETRIED_KINDS
        )
        if retryable and run.attempt <= step_retries(task, run) and not self._stopping.is_set():
            delay = task.retry.delay_before(run.attempt + 1)
            retry = Run(
                new_id(),
                task.id,
                trigger=Trigger.RETRY,
                created_at=self.clock(),
                attempt=run.attempt + 1,
                model=task.model,
                job_run_id=run.job_run_id,
            )
            with self.store.locked():
                self.store.enqueue(retry, self.clock() + timedelta(seconds=delay))
                entry = self.store.job_runs().get(run.job_run_id or "")
                if entry and entry.get("current_run_id") == run.id:
                    self.store.save_job_run(run.job_run_id or "", {**entry, "current_run_id": retry.id})
            self._emit(retry)
            return
        if run.job_run_id:
            advance_job_run(self.store, run)
        else:
            for follower in follower_tasks(self.store, run):
                self.fire(follower, Trigger.TASK, None)

    def _emit(self, run: Run) -> None:
        self.on_event({"event": "run", "run": run.to_dict()})

    # Recovery ----------------------------------------------------------------------

    def recover(self) -> int:
        """Mark runs whose owner process is gone as interrupted, ending their Claude
        processes that are still alive; put unowned queued runs back in the queue."""
        orphans = []
        queued = self._drop_stale_queue_entries()
        for run in self.store.all_runs():
            if not run.is_active:
                continue
            if run.owner and not owner_alive(run.owner):
                orphans.append(run)
            elif run.status is RunStatus.QUEUED and not run.owner and run.id not in queued:
                self.store.enqueue(run)
        count = self._interrupt(orphans)
        recover_job_runs(self.store)
        return count

    def _drop_stale_queue_entries(self) -> set[str]:
        """Drop (logged) the queue entries that name no queued run, as a failed request or
        claim may leave; the ids of the runs the queue still names. An entry whose run
        file cannot be read stays."""
        entries = self.store.queue()
        stale = []
        for entry in entries:
            try:
                runs = {run.id: run for run in self.store.runs_of(entry["task_id"])}
            except StorageError:
                continue
            run = runs.get(entry["run_id"])
            if run is None or run.status is not RunStatus.QUEUED:
                stale.append(entry["run_id"])
        if stale:
            logger().warning("the queue named %s that no longer wait; dropped", _plural(len(stale), "run"))
            self.store.dequeue(stale)
        return {entry["run_id"] for entry in entries} - set(stale)

    def _reap_orphans(self) -> None:
        """Catch runs whose process died after the engine started (a foreground CLI run
        that was killed): run files re-read only when they changed."""
        self._last_reap = time.monotonic()
        self._interrupt(
            [
                run
                for run in self.store.all_runs()
                if run.status is RunStatus.RUNNING and run.owner and not owner_alive(run.owner)
            ]
        )

    def _interrupt(self, orphans: list[Run]) -> int:
        """End the orphans' sessions together (not one grace period after another), then
        record each as interrupted; the number recorded."""
        ended = [run for run in interrupt_runs(self.store, orphans, self.executor.kill_grace) if run]
        for run in ended:
            self._emit(run)
        return len(ended)


def hold_begun_by(store: Store, run_id: str) -> JSONDict | None:
    """The usage-limit hold in force if the run `run_id` put it on, else None."""
    hold = active_hold(store.engine_state(), store.clock())
    return hold if hold is not None and hold.get("run_id") == run_id else None


def hold_began_event(hold: JSONDict) -> JSONDict:
    """The listeners' event (notifications) for a hold that has just begun."""
    return {"event": "limit_hold", "began": True, "resets_at": fmt_local(hold_until(hold), zone=True)}


def running_runs(store: Store) -> list[Run]:
    """The runs that run now, in any process: those whose owner is alive. The store's
    lock is taken once for the whole walk, not once per task: between a thousand takings
    each other writer (a run's transition, an fsync'd write) would get in the way."""
    with store.locked():
        runs = [run for task in store.task_list() for run in store.runs_of(task.id)]
    running = [run for run in runs if run.status is RunStatus.RUNNING]
    return [run for run in running if not run.owner or owner_alive(run.owner)]


def interrupt_run(store: Store, run: Run, grace: float = KILL_GRACE_SECONDS) -> Run | None:
    """Record as interrupted a run whose owning process died, ending its Claude process
    if that still runs; None if the run had already ended. Any process may call it;
    not with the store lock held (it waits up to `grace` for the session to end)."""
    return interrupt_runs(store, [run], grace)[0]


def interrupt_runs(store: Store, runs: list[Run], grace: float = KILL_GRACE_SECONDS) -> list[Run | None]:
    """`interrupt_run` for many runs, their sessions ended together (not one grace period
    after another), then each recorded."""
    sessions = {run.id: stray_session(run) for run in runs}
    end_stray_sessions([session for session in sessions.values() if session], grace)
    return [record_interrupted(store, run, was_running=sessions[run.id] is not None) for run in runs]


def record_interrupted(store: Store, run: Run, *, was_running: bool) -> Run | None:
    """The recording half of `interrupt_run`: None if the run had already ended."""
    note = "; its Claude process was still running and has been ended" if was_running else ""
    with store.locked():
        current = store.run(run.id)
        if not current.is_active:
            return None
        current = dataclasses.replace(
            current,
            status=RunStatus.INTERRUPTED,
            finished_at=store.clock(),
            error=f"the process that ran it ({run.owner}) ended unexpectedly{note}",
        )
        store.save_run(current)
    store.dequeue([run.id])
    _append_log(store.log_path(run.id), f"{LOG_SCHEDULER_PREFIX}{current.error}")
    if current.job_run_id:
        advance_job_run(store, current)
    return current


def advance_job_run(store: Store, run: Run) -> None:
    """After a run that belongs to a job run: queue the job's next step, or finish."""
    with store.locked():
        entry = store.job_runs().get(run.job_run_id or "")
        if not entry or entry.get("status") != JobRunStatus.RUNNING or entry.get("current_run_id") != run.id:
            return
        ending = job_step_verdict(store, entry, run)
        if ending is not None:
            finish_job_run(store, run.job_run_id or "", entry, ending)
            return
        failed = int(entry.get("failed_steps") or 0) + (run.status is not RunStatus.SUCCESS)
        start_job_step(
            store, run.job_run_id or "", {**entry, "position": entry["position"] + 1, "failed_steps": failed}
        )


# How a job run ends after a step that did not succeed (and was not retried).
STEP_ENDINGS = {RunStatus.INTERRUPTED: JobRunStatus.INTERRUPTED, RunStatus.CANCELLED: JobRunStatus.STOPPED}


def expire_job_run(store: Store, run: Run) -> None:
    """End the job run whose first step `run` expired (see Engine._expire_if_due) as
    expired, with the step's reason: a job run asked for while no engine ran expires
    as a whole, none of its steps run."""
    with store.locked():
        entry = store.job_runs().get(run.job_run_id or "")
        if entry and entry.get("status") == JobRunStatus.RUNNING and entry.get("current_run_id") == run.id:
            finish_job_run(store, run.job_run_id or "", {**entry, "note": run.error}, JobRunStatus.EXPIRED)


def job_step_verdict(store: Store, entry: JSONDict, run: Run) -> JobRunStatus | None:
    """None: the job run goes on after `run`; else how it ends. A stopped or lost step
    ends it whatever the policy; a failed one as its task's `on_failure` (or the job
    run's `continue_on_failure`) says."""
    if run.status is RunStatus.SUCCESS:
        return None
    if run.status in STEP_ENDINGS:
        return STEP_ENDINGS[run.status]
    task = next((task for task in store.task_list() if task.id == run.task_id), None)
    if entry.get("continue_on_failure") or (task and task.on_failure is StepFailure.CONTINUE):
        return None
    return JobRunStatus.FAILED


def step_retries(task: Task, run: Run) -> int:
    """How many retries a failed run gets: its task's retry policy; a job step whose
    task says on_failure: retry gets at least one."""
    if run.job_run_id and task.on_failure is StepFailure.RETRY:
        return max(task.retry.max_attempts, 1)
    return task.retry.max_attempts


def finish_job_run(store: Store, job_run_id: str, entry: JSONDict, status: JobRunStatus) -> None:
    """Record the end of a job run, and forget the oldest ended runs of its job past
    JOB_RUNS_KEPT."""
    with store.locked():
        store.save_job_run(
            job_run_id, {**entry, "status": status.value, "finished_at": fmt_time(store.clock())}
        )
        ended = [
            (str(other.get("started_at") or ""), other_id)
            for other_id, other in store.job_runs().items()
            if other.get("job_id") == entry.get("job_id") and other.get("status") != JobRunStatus.RUNNING
        ]
        for _, other_id in sorted(ended, reverse=True)[JOB_RUNS_KEPT:]:
            store.save_job_run(other_id, None)


def next_job_position(store: Store, entry: JSONDict, position: int) -> int:
    """The first step from `position` that runs: not skipped, its task not deleted."""
    task_ids = entry["task_ids"]
    known = {task.id for task in store.task_list()}
    skipped = set(entry.get("skipped") or [])
    while position < len(task_ids) and (task_ids[position] not in known or task_ids[position] in skipped):
        position += 1
    return position


def start_job_step(
    store: Store, job_run_id: str, entry: JSONDict, start_by_limit: timedelta | None = None
) -> Run | None:
    """Queue the task at `entry["position"]` (passing over skipped and deleted ones);
    `start_by_limit`: its run's (see Run.start_by), which then stands for the whole job run."""
    position = next_job_position(store, entry, entry["position"])
    if position >= len(entry["task_ids"]):
        # Steps that failed but let it go on (on_failure: continue) make it failed all the same.
        status = JobRunStatus.FAILED if entry.get("failed_steps") else JobRunStatus.COMPLETED
        finish_job_run(store, job_run_id, {**entry, "position": position}, status)
        return None
    run = job_step_run(store, job_run_id, entry["task_ids"][position])
    if start_by_limit is not None:
        run.start_by = run.created_at + start_by_limit
    moved = {"position": position, "current_run_id": run.id, "previous_run_id": entry.get("current_run_id")}
    # The run first: enqueue checks every file it needs and leaves nothing when it fails,
    # so a job run never points at a step that was not queued (and stays "running").
    store.enqueue(run)
    store.save_job_run(job_run_id, {**entry, **moved})
    return run


def open_job_run(
    store: Store,
    job_id: str,
    *,
    continue_on_failure: bool,
    trigger: Trigger,
    owner: str | None = None,
    scheduled_for: datetime | None = None,
    save: bool = True,
) -> tuple[str, JSONDict]:
    """Record a new running job run of the job (Conflict if one still runs); `owner`:
    the process that drives it itself (a foreground `jobs run`), else the engine.
    `save` False: the caller saves it (start_job_step, under the same lock), one write less."""
    with store.locked():
        task_ids = job_run_plan(store, job_id)
        for other_id, other in store.job_runs().items():
            if other.get("job_id") != job_id or other.get("status") != JobRunStatus.RUNNING:
                continue
            if other.get("owner") and not owner_alive(other["owner"]):  # its `jobs run` died
                finish_job_run(store, other_id, other, JobRunStatus.INTERRUPTED)
            else:
                raise Conflict("the job is already running; stop it first")
        skipped = [task.id for task in store.tasks_of(job_id) if task.skip_in_job and task.id in task_ids]
        entry: JSONDict = {
            "job_id": job_id,
            "task_ids": task_ids,
            "skipped": skipped,
            "position": 0,
            "continue_on_failure": continue_on_failure,
            "status": JobRunStatus.RUNNING.value,
            "trigger": trigger.value,
            "started_at": fmt_time(store.clock()),
            "scheduled_for": fmt_time(scheduled_for),
            "owner": owner,
        }
        job_run_id = new_id()
        if save:
            store.save_job_run(job_run_id, entry)
    return job_run_id, entry


def job_run_plan(store: Store, job_id: str) -> list[str]:
    """The steps of a run of the job: its enabled tasks in task order (those with
    skip_in_job among them, recorded as skipped). Conflict when nothing would run."""
    tasks = [task for task in store.tasks_of(store.job(job_id).id) if task.enabled]
    if not tasks:
        raise Conflict("the job has no enabled tasks to run")
    if all(task.skip_in_job for task in tasks):
        raise Conflict("every enabled task of the job is skipped (skip_in_job): nothing to run")
    return [task.id for task in tasks]


def note_job_fire(
    store: Store, job: Job, trigger: Trigger, status: JobRunStatus, note: str, scheduled_for: datetime | None
) -> str:
    """Record a fire of a job's schedule that started no job run (skipped, missed)."""
    now = fmt_time(store.clock())
    entry: JSONDict = {
        "job_id": job.id,
        "task_ids": [],
        "status": status.value,
        "trigger": trigger.value,
        "started_at": now,
        "finished_at": now,
        "scheduled_for": fmt_time(scheduled_for),
        "note": note,
    }
    job_run_id = new_id()
    store.save_job_run(job_run_id, entry)
    finish_job_run(store, job_run_id, entry, status)
    return job_run_id


def latest_job_runs(job_runs: dict[str, JSONDict]) -> dict[str, tuple[str, JSONDict]]:
    """Each job's latest job run that has steps (not a fire that started none)."""
    latest: dict[str, tuple[str, JSONDict]] = {}
    for job_run_id, entry in sorted(job_runs.items(), key=lambda item: str(item[1].get("started_at") or "")):
        if entry.get("task_ids") and isinstance(entry.get("job_id"), str):
            latest[entry["job_id"]] = (job_run_id, entry)
    return latest


def job_run_statuses(store: Store, job_run_id: str, entry: JSONDict) -> list[RunStatus | None]:
    """The status of each step of a job run that is not skipped (None: not run yet, or never)."""
    steps = job_run_record(store, job_run_id, entry)["steps"]
    statuses = [step["status"] for step in steps if step["status"] != JOB_STEP_SKIPPED]
    return [RunStatus(status) if status in RunStatus.__members__.values() else None for status in statuses]


def job_schedule_fields(job: Job, schedules: dict[str, JSONDict]) -> JSONDict:
    state = schedules.get(job.id) or {}
    return {"next_run_at": state.get("next_run_at"), "schedule_text": describe_schedule(job.schedule)}


def follower_tasks(store: Store, run: Run) -> list[Task]:
    """The enabled tasks whose run_after names `run`'s task and is met by how it ended."""
    return [
        task
        for task in store.task_list()
        if task.enabled
        and task.run_after
        and task.run_after["task_id"] == run.task_id
        and run.status in AFTER_STATUSES[AfterWhen(task.run_after["when"])]
    ]


def previous_step_run(store: Store, run: Run) -> Run | None:
    """The run of the step before `run`'s in its job run (None outside a job run, or for
    the first step)."""
    entry = store.job_runs().get(run.job_run_id or "")
    previous_id = entry.get("previous_run_id") if entry else None
    if not isinstance(previous_id, str):
        return None
    try:
        return store.run(previous_id)
    except NotFound:
        return None


def placeholder_values(store: Store, run: Run, previous: Run | None) -> dict[str, str]:
    """What each of PLACEHOLDERS stands for in `run`'s prompt ('' for what is unknown)."""
    entry = store.job_runs().get(run.job_run_id or "") or {}
    values = {
        "job_run.id": run.job_run_id or "",
        "job_run.started_at": str(entry.get("started_at") or ""),
    }
    if previous is not None:
        values["previous.result"] = previous.result or ""
        values["previous.session_id"] = previous.session_id or ""
        values["previous.status"] = previous.status.value
    return values


def job_step_run(store: Store, job_run_id: str, task_id: str) -> Run:
    task = store.task(task_id)
    return Run(
        new_id(),
        task.id,
        trigger=Trigger.JOB,
        created_at=store.clock(),
        model=task.model,
        job_run_id=job_run_id,
    )


def recover_job_runs(store: Store) -> int:
    """Job runs left running by a process that died: one driven by a foreground `jobs run`
    (it has an owner) is interrupted; one the engine drove goes on from its current
    step's outcome (interrupted if that step was), or is interrupted if the step is gone.
    Call after the runs themselves are recovered. Returns how many were touched."""
    count = 0
    for job_run_id, entry in store.job_runs().items():
        if entry.get("status") != JobRunStatus.RUNNING:
            continue
        owner = entry.get("owner")
        if owner and owner_alive(owner):
            continue
        try:
            current = store.run(str(entry.get("current_run_id")))
        except NotFound:
            current = None
        if current is not None and current.is_active and not owner:
            continue  # a queued step: the engine runs it and goes on
        count += 1
        if current is None or owner:
            finish_job_run(store, job_run_id, entry, JobRunStatus.INTERRUPTED)
        else:
            advance_job_run(store, current)
    return count


def job_run_record(store: Store, job_run_id: str, entry: JSONDict) -> JSONDict:
    """A job run as the doors show it: its fields and each step with its run (the
    latest attempt), `pending` while to come, `skipped`, or `not_run` once it ended."""
    tasks = {task.id: task for task in store.task_list()}
    steps = [
        _job_step(store, job_run_id, entry, task_id, tasks.get(task_id))
        for task_id in entry.get("task_ids") or []
    ]
    return {**job_run_fields(job_run_id, entry), "steps": steps}


def job_run_fields(job_run_id: str, entry: JSONDict) -> JSONDict:
    """A job run as the doors show it, but for its steps (see job_run_record)."""
    return {
        "id": job_run_id,
        "job_id": entry.get("job_id"),
        "trigger": entry.get("trigger") or Trigger.MANUAL.value,
        "status": entry.get("status"),
        "started_at": entry.get("started_at"),
        "finished_at": entry.get("finished_at"),
        "continue_on_failure": bool(entry.get("continue_on_failure")),
        "current_run_id": entry.get("current_run_id"),
        "scheduled_for": entry.get("scheduled_for"),
        "note": entry.get("note"),
    }


def _job_step(store: Store, job_run_id: str, entry: JSONDict, task_id: str, task: Task | None) -> JSONDict:
    runs = [run for run in store.runs_of(task_id) if run.job_run_id == job_run_id] if task else []
    last = max(runs, key=lambda run: (run.attempt, run.created_at), default=None)
    if last is not None and entry.get("status") != JobRunStatus.EXPIRED:
        status = last.status.value
    elif task_id in (entry.get("skipped") or []):
        status = JOB_STEP_SKIPPED
    else:
        status = JOB_STEP_PENDING if entry.get("status") == JobRunStatus.RUNNING else JOB_STEP_NOT_RUN
    return {
        "task_id": task_id,
        "task_name": task.name if task else None,
        "status": status,
        "run_id": last.id if last else None,
        "attempts": len(runs),
        "result": last.result if last else None,
    }


####
# Notifications ####
####

# What to be told about, through which channels. The engine's process owns a Notifier:
# the engine hands it each run event (only a queue put: delivery never blocks or slows
# the engine), and a thread of its own works out which events the run means, then
# delivers each on a thread of its own, with retries and backoff, keeping a history.

NOTIFY_HISTORY_MAX = 200
NOTIFY_EVENTS: dict[str, tuple[bool, str]] = {  # name -> (on by default, what it means)
    "failed": (True, "a run failed (after its last retry)"),
    "timed_out": (True, "a run hit its timeout (after its last retry)"),
    "recovered": (True, "a task succeeded after failing"),
    "changed": (False, "a run's result differs from the task's last successful result"),
    "limit_hold_began": (True, "the usage limit put runs on hold"),
    "limit_hold_ended": (False, "the usage-limit hold ended"),
}
WEBHOOK_PRESETS = ("json", "slack", "discord", "ntfy")
WEBHOOK_TIMEOUT_DEFAULT, WEBHOOK_TIMEOUT_MAX = 10.0, 120.0
WEBHOOK_RETRIES_DEFAULT, WEBHOOK_RETRIES_MAX = 3, 10
WEBHOOK_BACKOFF_DEFAULT, WEBHOOK_BACKOFF_MAX = 2.0, 600.0
WEBHOOK_SCHEMES = ("http", "https")
SIGNATURE_HEADER = "X-Scheduler-Signature"
NOTIFY_PARALLEL = 8  # deliveries under way at once; more wait their turn on their own thread
NOTIFY_TEXT_MAX = 1000  # of a run's result or error in a message
# A foreground run (`cli tasks run`) is told from the CLI process, which waits this long at
# most at exit for deliveries under way (a slow or dead hook then goes unrecorded).
FOREGROUND_NOTIFY_WAIT_SECONDS = 5.0
HTTP_RETRYABLE = (408, 425, 429)
JSON_CONTENT = "application/json"
DEFAULT_NOTIFY: JSONDict = {
    "events": {name: on for name, (on, _) in NOTIFY_EVENTS.items()},
    "desktop": {"enabled": False, "command": None},
    "webhooks": [],
    "tasks": {},
}
# The desktop notifier per platform: argv with {title} and {body}, tried in order.
WINDOWS_TOAST = (
    "$m = [Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, "
    "ContentType=WindowsRuntime]; "
    "$x = $m::GetTemplateContent([Windows.UI.Notifications.ToastTemplateType]::ToastText02); "
    "$t = $x.GetElementsByTagName('text'); "
    "$t.Item(0).InnerText = {title_ps}; $t.Item(1).InnerText = {body_ps}; "
    "$m::CreateToastNotifier({app_ps}).Show([Windows.UI.Notifications.ToastNotification]::new($x))"
)
DESKTOP_EXPIRE_MS = "10000"  # gdbus would read -1 (the server's default) as an option
FREEDESKTOP_NOTIFY = (
    "org.freedesktop.Notifications",
    "/org/freedesktop/Notifications",
    "org.freedesktop.Notifications.Notify",
)
DESKTOP_NOTIFIERS: dict[str, tuple[tuple[str, ...], ...]] = {
    "linux": (
        ("notify-send", "--app-name", APP_NAME, "{title}", "{body}"),
        ("gdbus", "call", "--session", "--dest", FREEDESKTOP_NOTIFY[0],
         "--object-path", FREEDESKTOP_NOTIFY[1], "--method", FREEDESKTOP_NOTIFY[2],
         json.dumps(APP_NAME), "0", '""', "{title_gv}", "{body_gv}", "[]", "{}", DESKTOP_EXPIRE_MS),
    ),
    "darwin": (("osascript", "-e", "display notification {body_as} with title {title_as}"),),
    "win32": (("powershell", "-NoProfile", "-NonInteractive", "-Command", WINDOWS_TOAST),),
}  # fmt: skip


def _read_events(value: JSON, field: str) -> dict[str, bool]:
    data = require_object(value, field)
    split_known(data, NOTIFY_EVENTS, strict=True, prefix=field)
    return {name: read_bool(on, f"{field}.{name}") for name, on in data.items()}


def _read_webhook(value: JSON, field: str) -> JSONDict:
    known = (
        "name",
        "url",
        "preset",
        "secret",
        "timeout_seconds",
        "retries",
        "backoff_seconds",
        "events",
        "enabled",
    )
    data = require_object(value, field)
    split_known(data, known, strict=True, prefix=field)
    url = read_str(data.get("url"), f"{field}.url", max_len=PATH_MAX, required=True)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in WEBHOOK_SCHEMES or not parts.hostname:
        raise Invalid("must be an http:// or https:// address", f"{field}.url")
    preset = read_str(data.get("preset") or "json", f"{field}.preset")
    if preset not in WEBHOOK_PRESETS:
        raise Invalid(f"must be one of {', '.join(WEBHOOK_PRESETS)}", f"{field}.preset")
    events = data.get("events")
    if events is not None:
        for n, name in enumerate(read_str_list(events, f"{field}.events")):
            if name not in NOTIFY_EVENTS:
                raise Invalid(f"unknown event (events: {', '.join(NOTIFY_EVENTS)})", f"{field}.events[{n}]")
    return {
        "name": read_str(data.get("name"), f"{field}.name", max_len=NAME_MAX, required=True),
        "url": url,
        "preset": preset,
        "secret": read_opt_str(data.get("secret"), f"{field}.secret", NAME_MAX),
        "timeout_seconds": read_float(
            data.get("timeout_seconds", WEBHOOK_TIMEOUT_DEFAULT),
            f"{field}.timeout_seconds",
            0.1,
            WEBHOOK_TIMEOUT_MAX,
        ),
        "retries": read_int(
            data.get("retries", WEBHOOK_RETRIES_DEFAULT), f"{field}.retries", 0, WEBHOOK_RETRIES_MAX
        ),
        "backoff_seconds": read_float(
            data.get("backoff_seconds", WEBHOOK_BACKOFF_DEFAULT),
            f"{field}.backoff_seconds",
            0,
            WEBHOOK_BACKOFF_MAX,
        ),
        "events": events,
        "enabled": read_bool(data.get("enabled", True), f"{field}.enabled"),
    }


def read_notify_config(value: JSON) -> JSONDict:
    """Validate notification settings (Invalid naming the field); fill in the defaults."""
    data = require_object(value, "notifications")
    split_known(data, DEFAULT_NOTIFY, strict=True)
    desktop = require_object(data.get("desktop") or {}, "desktop")
    split_known(desktop, ("enabled", "command"), strict=True, prefix="desktop")
    command = desktop.get("command")
    hooks = data.get("webhooks") or []
    if not isinstance(hooks, list):
        raise Invalid("must be a list", "webhooks")
    webhooks = [_read_webhook(hook, f"webhooks[{n}]") for n, hook in enumerate(hooks)]
    names = [hook["name"] for hook in webhooks]
    for n, name in enumerate(names):
        if name in names[:n]:
            raise Invalid(f"{name!r} names another webhook too", f"webhooks[{n}].name")
    tasks = require_object(data.get("tasks") or {}, "tasks")
    return {
        "events": {**DEFAULT_NOTIFY["events"], **_read_events(data.get("events") or {}, "events")},
        "desktop": {
            "enabled": read_bool(desktop.get("enabled", False), "desktop.enabled"),
            "command": read_str_list(command, "desktop.command") or None if command is not None else None,
        },
        "webhooks": webhooks,
        "tasks": {
            read_id(task_id, f"tasks.{task_id}", required=True) or "": {
                "events": _read_events(
                    require_object(entry, f"tasks.{task_id}").get("events") or {}, f"tasks.{task_id}.events"
                )
            }
            for task_id, entry in tasks.items()
        },
    }


def public_notify_config(config: JSONDict) -> JSONDict:
    """The settings as shown: each webhook's secret only as whether it has one."""
    hooks = [
        {**{k: v for k, v in hook.items() if k != "secret"}, "has_secret": bool(hook["secret"])}
        for hook in config["webhooks"]
    ]
    return {**config, "webhooks": hooks}


def sign_body(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    import hashlib
    import hmac

    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Notice:
    """One thing to tell: an event, in words, with the task and run it is about."""

    event: str
    title: str
    body: str
    task: JSONDict | None = None
    run: JSONDict | None = None
    at: datetime = field(default_factory=utcnow)

    def payload(self) -> JSONDict:
        return {
            "event": self.event,
            "title": self.title,
            "message": self.body,
            "task": self.task,
            "run": self.run,
            "sent_at": fmt_time(self.at),
            "app": APP_ID,
        }


def _preset_json(notice: Notice) -> tuple[bytes, dict[str, str]]:
    return json.dumps(notice.payload(), ensure_ascii=False).encode(), {"Content-Type": JSON_CONTENT}


def _preset_slack(notice: Notice) -> tuple[bytes, dict[str, str]]:
    return json.dumps({"text": f"*{notice.title}*\n{notice.body}"}).encode(), {"Content-Type": JSON_CONTENT}


def _preset_discord(notice: Notice) -> tuple[bytes, dict[str, str]]:
    return json.dumps({"content": f"**{notice.title}**\n{notice.body}"[:2000]}).encode(), {
        "Content-Type": JSON_CONTENT
    }


def _preset_ntfy(notice: Notice) -> tuple[bytes, dict[str, str]]:
    # ntfy publishes a plain-text body to the topic URL, with its title and priority as headers.
    urgent = notice.event in ("failed", "timed_out", "limit_hold_began")
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Title": notice.title.encode("ascii", "replace").decode(),
        "Priority": "high" if urgent else "default",
        "Tags": "warning" if urgent else "white_check_mark",
    }
    return notice.body.encode(), headers


WEBHOOK_FORMATS: dict[str, Callable[[Notice], tuple[bytes, dict[str, str]]]] = {
    "json": _preset_json,
    "slack": _preset_slack,
    "discord": _preset_discord,
    "ntfy": _preset_ntfy,
}


def post_webhook(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST and return the HTTP status; OSError (and http.client's errors) when it fails."""
    import http.client

    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=dict(headers))
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _run_text(run: JSONDict) -> str:
    text = run.get("error") if run.get("status") != RunStatus.SUCCESS else run.get("result")
    return _clip(str(text or "").strip(), NOTIFY_TEXT_MAX)


NOTIFY_TEST_BODY = "A sample from Claude Code Scheduler: this channel works."
NOTICE_TITLES = {
    "failed": "{name} failed",
    "timed_out": "{name} timed out",
    "recovered": "{name} succeeded again",
    "changed": "{name}: the result changed",
    "limit_hold_began": "Usage limit: runs on hold",
    "limit_hold_ended": "Usage limit: runs go on",
    "test": "Test notification",
}


def platform_key(name: str = sys.platform) -> str:
    """linux, darwin or win32 (other Unixes are treated as Linux: freedesktop and systemd)."""
    return name if name in ("darwin", "win32") else "linux"


def load_notify_config(home: Path) -> JSONDict:
    """The notification settings of a data home (defaults when it has none)."""
    path = home / NOTIFY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return read_notify_config({})
    except (OSError, ValueError) as error:
        raise StorageError(f"cannot read {path}: {error}") from None
    try:
        return read_notify_config(data)
    except Invalid as error:
        raise StorageError(f"{path} is not valid: {error}; fix or delete it") from None


def _applescript_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fill_command(template: Sequence[str], notice: Notice) -> list[str]:
    values = {
        "title": notice.title,
        "body": notice.body,
        # GVariant text for gdbus: quoted, so a text that starts with "-" is no option.
        "title_gv": json.dumps(notice.title, ensure_ascii=False),
        "body_gv": json.dumps(notice.body, ensure_ascii=False),
        "title_as": _applescript_text(notice.title),
        "body_as": _applescript_text(notice.body),
        "title_ps": "'" + notice.title.replace("'", "''") + "'",
        "body_ps": "'" + notice.body.replace("'", "''") + "'",
        "app_ps": "'" + APP_NAME + "'",
    }
    return [re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], m[0]), part) for part in template]


class Notifier:
    """Delivers the notices of one data home. `on_event` is the Engine's callback: it only
    queues (thread-safe, never blocks). A thread of its own turns events into notices
    (reading the store), and each delivery runs on a thread of its own (at most
    NOTIFY_PARALLEL at once), so a slow or unreachable hook delays nothing else.
    `sleep` and `post` are injected for tests."""

    def __init__(
        self,
        store: Store,
        *,
        sleep: Callable[[float], None] = time.sleep,
        post: Callable[[str, bytes, Mapping[str, str], float], int] = post_webhook,
        platform: str | None = None,
    ) -> None:
        import queue

        self.store = store
        self.sleep = sleep
        self.post = post
        self.platform = platform or platform_key()
        self.inbox: queue.SimpleQueue[JSONDict | None] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(NOTIFY_PARALLEL)
        self._history_lock = InterProcessLock(store.home / NOTIFY_LOCK_FILE)
        self._busy = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = _start_thread(self._loop)

    def stop(self) -> None:
        self.inbox.put(None)

    def on_event(self, event: JSONDict) -> None:
        self._begin()
        self.inbox.put(event)

    def wait_idle(self, timeout: float) -> bool:
        """Whether every event and delivery so far is done within `timeout` (tests)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _begin(self) -> None:
        with self._idle:
            self._busy += 1

    def _end(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _loop(self) -> None:
        while (event := self.inbox.get()) is not None:
            try:
                for notice in self.notices_for(event):
                    self.send(notice)
            except Exception:  # one bad event must not end notifications; the log has it
                logger().exception("notifications: event %s not handled", event.get("event"))
            finally:
                self._end()

    # What an event means -------------------------------------------------------

    def notices_for(self, event: JSONDict) -> list[Notice]:
        if event.get("event") == "limit_hold":
            kind = "limit_hold_began" if event.get("began") else "limit_hold_ended"
            until = event.get("resets_at")
            body = (
                f"Runs wait until {until}."
                if event.get("began") and until
                else "Runs wait or go on as usual."
            )
            return [Notice(kind, NOTICE_TITLES[kind], body, at=self.store.clock())]
        run = event.get("run")
        if event.get("event") != "run" or not isinstance(run, dict):
            return []
        return self._run_notices(Run.from_dict(run), may_retry=event.get("retried", True) is not False)

    def _run_notices(self, run: Run, *, may_retry: bool = True) -> list[Notice]:
        if run.status not in (RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.INTERRUPTED):
            return []
        try:
            task = self.store.task(run.task_id)
        except NotFound:
            return []
        kinds = self._kinds(task, run, may_retry)
        facts = {"id": task.id, "name": task.name, "job_id": task.job_id}
        shown = {key: run.to_dict().get(key) for key in NOTICE_RUN_FIELDS}
        body = f"{_run_text(shown) or run.status.value} (run {run.id[:ID_PREFIX_LEN]})"
        return [
            Notice(kind, NOTICE_TITLES[kind].format(name=task.name), body, facts, shown, self.store.clock())
            for kind in kinds
        ]

    def _kinds(self, task: Task, run: Run, may_retry: bool = True) -> list[str]:
        """`may_retry` False: no retry follows whatever the task says (a foreground run)."""
        failing = (RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.INTERRUPTED)
        if run.status in failing:
            retried = may_retry and run.status is not RunStatus.INTERRUPTED
            retried = retried and run.failure_kind not in NOT_RETRIED_KINDS
            if retried and run.attempt <= task.retry.max_attempts:
                return []  # the retry tells; the last attempt's failure is the one said
            return ["timed_out" if run.status is RunStatus.TIMEOUT else "failed"]
        earlier = sorted(
            (other for other in self.store.runs_of(task.id)
             if other.id != run.id and other.created_at <= run.created_at
             and other.tells_how_the_task_does and not other.is_active),
            key=lambda other: other.created_at,
        )  # fmt: skip
        kinds = []
        if earlier and earlier[-1].status in failing and run.attempt == 1:
            kinds.append("recovered")
        last_success = next((other for other in reversed(earlier) if other.status is RunStatus.SUCCESS), None)
        if last_success is not None and (last_success.result or "") != (run.result or ""):
            kinds.append("changed")
        return kinds

    # Delivery ------------------------------------------------------------------

    def send(self, notice: Notice, *, wait: bool = False) -> list[JSONDict]:
        """Deliver a notice through each channel that wants it, each on its own thread;
        with `wait`, return the delivery records once all are done (`notify test`)."""
        config = load_notify_config(self.store.home)
        records: list[JSONDict] = []
        threads = []
        for deliver in self._channels(config, notice):
            self._begin()
            threads.append(_start_thread(self._deliver, deliver, notice, records))
        if wait:
            for thread in threads:
                thread.join()
        return records

    def _channels(self, config: JSONDict, notice: Notice) -> list[Callable[[Notice], JSONDict]]:
        wanted = dict(config["events"])
        if notice.task:
            wanted |= (config["tasks"].get(notice.task["id"]) or {}).get("events", {})
        if notice.event != "test" and not wanted.get(notice.event):
            return []
        channels: list[Callable[[Notice], JSONDict]] = []
        if config["desktop"]["enabled"]:
            channels.append(functools.partial(self._to_desktop, config["desktop"]["command"]))
        for hook in config["webhooks"]:
            if hook["enabled"] and (
                notice.event == "test" or hook["events"] is None or notice.event in hook["events"]
            ):
                channels.append(functools.partial(self._to_webhook, hook))
        return channels

    def _deliver(
        self, deliver: Callable[[Notice], JSONDict], notice: Notice, records: list[JSONDict]
    ) -> None:
        try:
            with self._slots:
                record = deliver(notice)
            records.append(record)
            self._record(record)
        except Exception:  # a delivery thread must end cleanly; the log has the cause
            logger().exception("notifications: delivery failed unexpectedly")
        finally:
            self._end()

    def _record_of(self, notice: Notice, channel: str) -> JSONDict:
        return {
            "id": new_id(),
            "at": fmt_time(self.store.clock()),
            "event": notice.event,
            "channel": channel,
            "task_id": (notice.task or {}).get("id"),
            "run_id": (notice.run or {}).get("id"),
            "status": "failed",
            "attempts": 0,
            "http_status": None,
            "error": None,
        }

    def _to_webhook(self, hook: JSONDict, notice: Notice) -> JSONDict:
        import http.client

        record = self._record_of(notice, f"webhook:{hook['name']}")
        body, headers = WEBHOOK_FORMATS[hook["preset"]](notice)
        headers |= {
            "User-Agent": f"{APP_ID}/{__version__}",
            "X-Scheduler-Event": notice.event,
            "X-Scheduler-Delivery": record["id"],
        }
        if hook["secret"]:
            headers[SIGNATURE_HEADER] = sign_body(hook["secret"], body)
        for attempt in range(1, hook["retries"] + 2):
            record["attempts"] = attempt
            try:
                status = self.post(hook["url"], body, headers, hook["timeout_seconds"])
            except (OSError, ValueError, http.client.HTTPException) as error:
                record["error"] = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            else:
                record["http_status"] = status
                if HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES:
                    return {**record, "status": "delivered", "error": None}
                record["error"] = f"HTTP {status}"
                if status < HTTPStatus.INTERNAL_SERVER_ERROR and status not in HTTP_RETRYABLE:
                    return record  # the hook refuses it: asking again would not help
            if attempt <= hook["retries"]:
                self.sleep(hook["backoff_seconds"] * 2 ** (attempt - 1))
        return record

    def _to_desktop(self, command: list[str] | None, notice: Notice) -> JSONDict:
        import subprocess

        record = self._record_of(notice, "desktop")
        templates = [command] if command else [list(argv) for argv in DESKTOP_NOTIFIERS[self.platform]]
        available = [argv for argv in templates if shutil.which(argv[0])]
        if not available:
            tools = ", ".join(argv[0] for argv in templates)
            return {**record, "error": f"no desktop notifier here ({tools} not found)"}
        record["attempts"] = 1
        try:
            done = subprocess.run(
                _fill_command(available[0], notice),
                capture_output=True,
                text=True,
                timeout=TOOL_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return {**record, "error": f"{available[0][0]}: {error}"}
        if done.returncode != 0:
            return {
                **record,
                "error": f"{available[0][0]} exited {done.returncode}: {_one_line(done.stderr)}",
            }
        return {**record, "status": "delivered"}

    # History -------------------------------------------------------------------

    def _record(self, record: JSONDict) -> None:
        # Not under the store's lock: the engine takes that one many times a pass, and a
        # burst of deliveries ending (each an fsync'd write) would hold its fires back.
        with self._history_lock:
            history = notify_history(self.store.home)
            history.insert(0, record)
            atomic_write(
                self.store.home / NOTIFY_HISTORY_FILE, json.dumps(history[:NOTIFY_HISTORY_MAX]).encode()
            )


NOTICE_RUN_FIELDS = ("id", "status", "trigger", "attempt", "started_at", "finished_at", "duration_seconds",
                     "cost_usd", "result", "error", "failure_kind")  # fmt: skip


def notify_history(home: Path) -> list[JSONDict]:
    """The deliveries, newest first (the last NOTIFY_HISTORY_MAX)."""
    try:
        history = json.loads((home / NOTIFY_HISTORY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [item for item in history if isinstance(item, dict)] if isinstance(history, list) else []


####
# Service operations (shared by the CLI, the API and the window) ####
####

LOG_CHUNK_MAX = 1 << 20
RUN_LIST_MAX = 10_000
BUNDLE_FORMAT = "claude-code-scheduler-bundle"
BUNDLE_VERSION = 1
BUNDLE_KEYS = ("format", "version", "exported_at", "app_version", "jobs", "tasks", "runs", "logs")


class Service:
    """Every operation the front ends offer, with its rules, written once.

    Takes and returns plain JSON-shaped dicts (the API's shapes); raises SchedulerError.
    `wake` is called after each change, so an engine in this process reacts at once.
    Thread-safe (the store serialises).
    """

    remote = False  # the CLI's API client says True: no store, nothing runs in-process

    def __init__(self, store: Store, *, wake: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.clock = store.clock
        self.wake = wake

    # Jobs --------------------------------------------------------------------

    def list_jobs(self) -> list[JSONDict]:
        with self.store.locked():
            statuses = self.store.statuses_by_job()
            schedules = self.store.job_schedules()
            latest = latest_job_runs(self.store.job_runs())
            return [
                {
                    **job.to_dict(),
                    **job_schedule_fields(job, schedules),
                    "progress": self._progress(job.id, latest, statuses.get(job.id, [])),
                }
                for job in self.store.job_list()
            ]

    def _progress(
        self, job_id: str, latest: dict[str, tuple[str, JSONDict]], statuses: Iterable[RunStatus | None]
    ) -> JSONDict:
        """The steps of the job's latest job run, when it has one; else its tasks' latest runs."""
        if job_id in latest:
            return job_progress(job_run_statuses(self.store, *latest[job_id]))
        return job_progress(statuses)

    def get_job(self, job_id: str) -> JSONDict:
        with self.store.locked():
            record = self.store.job(job_id)
            tasks = self.store.tasks_of(record.id)
            job = self._job_dict(record, tasks)
            job["tasks"] = [task.to_dict() for task in tasks]
            job["totals"] = self._totals(run for task in tasks for run in self.store.runs_of(task.id))
            return job

    def job_tasks(self, job_id: str) -> list[JSONDict]:
        with self.store.locked():
            self.store.job(job_id)
            return [task.to_dict() for task in self.store.tasks_of(job_id)]

    def create_job(self, data: JSON) -> JSONDict:
        data = self._input(data, Job)
        now = self.clock()
        job = Job.from_dict(
            {**data, "id": new_id(), "created_at": fmt_time(now), "updated_at": fmt_time(now)}
        )
        self._check_order(job)
        self._check_job_future(data, job)
        self.store.save_job(job)
        self._save_job_schedule(job, None)
        self.wake()
        return self._job_dict(job, [])

    def update_job(self, job_id: str, data: JSON) -> JSONDict:
        data = self._input(data, Job)
        with self.store.locked():
            current = self.store.job(job_id)
            # An order left naming deleted tasks (a crash, an old file) must not block edits.
            mine = {task.id for task in self.store.task_list() if task.job_id == job_id}
            order = [task_id for task_id in current.task_order if task_id in mine]
            merged = {
                **current.to_dict(),
                "task_order": order,
                **data,
                "updated_at": fmt_time(self.clock()),
            }
            job = Job.from_dict(merged)
            self._check_order(job)
            self._check_job_future(data, job)
            self.store.save_job(job)
            self._save_job_schedule(job, current)
        self.wake()
        return self.get_job(job_id)

    def _check_job_future(self, data: JSONDict, job: Job) -> None:
        at = job.schedule.at if job.schedule.type is ScheduleType.ONCE else None
        if "schedule" in data and at and at <= self.clock():
            raise Invalid(f"{fmt_local(at)} has passed; pick a time ahead", "schedule.at")

    def _check_order(self, job: Job) -> None:
        if not job.task_order:
            return
        if len(set(job.task_order)) != len(job.task_order):
            raise Invalid("lists a task more than once", "task_order")
        known = {task.id: task.job_id for task in self.store.task_list()}
        for task_id in job.task_order:
            if known.get(task_id) != job.id:
                raise Invalid(f"task {task_id} is not a task of this job", "task_order")

    def delete_preview(self, job_id: str) -> JSONDict:
        """What deleting a job would remove, for confirmations."""
        with self.store.locked():
            job = self.store.job(job_id)
            preview = self._history_preview(self.store.tasks_of(job_id), jobs=1)
            return {"job": job.to_dict(), **preview}

    def delete_task_preview(self, task_id: str) -> JSONDict:
        """What deleting a task would remove, for confirmations."""
        with self.store.locked():
            task = self.store.task(task_id)
            return {"task": task.to_dict(), **self._history_preview([task], jobs=0)}

    def _history_preview(self, tasks: list[Task], *, jobs: int) -> JSONDict:
        runs = [run for task in tasks for run in self.store.runs_of(task.id)]
        logs = sum(self.store.log_path(run.id).exists() for run in runs)
        counts = DeleteCounts(jobs=jobs, tasks=len(tasks), runs=len(runs), logs=logs)
        return {"counts": counts.to_dict(), "active_runs": sum(run.is_active for run in runs)}

    def delete_job(self, job_id: str, *, force: bool = False) -> JSONDict:
        """Cascade-delete a job; with active runs, Conflict unless `force` (then stop them)."""
        with self.store.locked():
            tasks = self.store.tasks_of(self.store.job(job_id).id)
            orphans = self._stop_or_refuse([task.id for task in tasks], force, "job")
            counts = self.store.delete_job(job_id)
            self.store.forget_job_runs(job_id)
        end_stray_sessions(session for session in map(stray_session, orphans) if session)
        self.wake()
        return {"deleted": counts.to_dict()}

    def _stop_or_refuse(self, task_ids: list[str], force: bool, what: str) -> list[Run]:
        """Ask the active runs of the tasks to stop (Conflict without `force`); the runs
        whose owner died, whose sessions the caller ends once it lets go of the lock."""
        active = [run for task_id in task_ids for run in self.store.runs_of(task_id) if run.is_active]
        if active and not force:
            raise Conflict(
                f"the {what} has {_plural(len(active), 'active run')}; stop them first or use force"
            )
        stopped = [self._stop_locked(run.id) for run in active]
        return [orphan for _, orphan in stopped if orphan]

    def _job_dict(self, job: Job, tasks: list[Task]) -> JSONDict:
        latest = latest_job_runs(self.store.job_runs())
        return {
            **job.to_dict(),
            **job_schedule_fields(job, self.store.job_schedules()),
            "progress": self._progress(job.id, latest, [task.last_run_status for task in tasks]),
        }

    def _save_job_schedule(self, job: Job, current: Job | None) -> None:
        """After a save: a new or changed job schedule gets its next fire time."""
        if current is None or current.schedule != job.schedule:
            upcoming = next_fire_after(job.schedule, self.clock(), job.created_at)
            self.store.update_job_schedule(job.id, {"next_run_at": fmt_time(upcoming)})

    # Tasks -------------------------------------------------------------------

    def list_tasks(self, job_id: str | None = None, *, unassigned: bool = False) -> list[JSONDict]:
        with self.store.locked():
            if job_id or unassigned:
                tasks = self.store.tasks_of(job_id)
            else:
                tasks = sorted(self.store.task_list(), key=lambda task: task.created_at)
            return [task.to_dict() for task in tasks]

    def get_task(self, task_id: str) -> JSONDict:
        """The task with the totals of its runs."""
        with self.store.locked():
            task = self.store.task(task_id)
            return {**task.to_dict(), "totals": self._totals(self.store.runs_of(task.id))}

    def create_task(self, data: JSON) -> JSONDict:
        data = self._input(data, Task)
        now = self.clock()
        stamps = {"id": new_id(), "created_at": fmt_time(now), "updated_at": fmt_time(now)}
        task = Task.from_dict({**data, **stamps}, strict=True)
        self._check_future(data, task, now)
        self._check_run_after(task)
        self.store.save_task(task, self._schedule_state(task, now))
        self.wake()
        return self.get_task(task.id)

    def update_task(self, task_id: str, data: JSON, *, env_patch: bool = False) -> JSONDict:
        """Change the fields given. A partial `retry` keeps the retry fields not given.
        `env` replaces the whole map; with `env_patch`, it names only the variables to
        set, and null removes one (so concurrent changes of single variables all land)."""
        data = self._input(data, Task)
        now = self.clock()
        with self.store.locked():
            current = self.store.task(task_id)
            merged = {**current.to_dict(derived=False), **data, "updated_at": fmt_time(now)}
            if isinstance(data.get("retry"), dict):
                merged["retry"] = {**current.retry.to_dict(), **data["retry"]}
            if env_patch and isinstance(data.get("env"), dict):
                env = {**current.env, **data["env"]}
                merged["env"] = {name: value for name, value in env.items() if value is not None}
            task = Task.from_dict(merged)
            self._check_future(data, task, now)
            if "run_after" in data:
                self._check_run_after(task)
            timing_changed = (task.schedule, task.enabled) != (current.schedule, current.enabled)
            self.store.save_task(task, self._schedule_state(task, now) if timing_changed else None)
            if current.job_id != task.job_id:
                # Moving a task changes both jobs' progress; other edits leave a status
                # set by hand alone until the next run event.
                if current.job_id:
                    self.store._drop_from_order(current.job_id, {task_id})
                for job_id in (current.job_id, task.job_id):
                    self.store.refresh_job_status(job_id)
        self.wake()
        return self.get_task(task_id)

    def set_enabled(self, task_id: str, enabled: bool) -> JSONDict:
        return self.update_task(task_id, {"enabled": enabled})

    def delete_task(self, task_id: str, *, force: bool = False) -> JSONDict:
        with self.store.locked():
            orphans = self._stop_or_refuse([self.store.task(task_id).id], force, "task")
            counts = self.store.delete_task(task_id)
        end_stray_sessions(session for session in map(stray_session, orphans) if session)
        self.wake()
        return {"deleted": counts.to_dict()}

    def next_times(self, task_id: str, count: int = DEFAULT_PREVIEW) -> JSONDict:
        task = self.store.task(task_id)
        count = read_int(count, "count", 1, PREVIEW_MAX)
        times = next_fire_times(task.schedule, self.clock(), count, task.created_at)
        return {
            "task_id": task.id,
            "schedule": task.schedule.to_dict(),
            "description": describe_schedule(task.schedule),
            "enabled": task.enabled,
            "times": [fmt_time(moment) for moment in times],
        }

    def preview(self, schedule: JSON, *, after: str | None = None, count: int = DEFAULT_PREVIEW) -> JSONDict:
        """Fire times and a description of a schedule that need not be saved."""
        parsed = Schedule.from_dict(schedule, strict=True)
        start = parse_time(after, "after") if after else self.clock()
        count = read_int(count, "count", 1, PREVIEW_MAX)
        times = next_fire_times(parsed, start, count, start)
        return {
            "schedule": parsed.to_dict(),
            "description": describe_schedule(parsed),
            "times": [fmt_time(moment) for moment in times],
        }

    def _check_run_after(self, task: Task) -> None:
        """The task run_after names must exist, and following run_after must not come
        back to this task (it would run for ever)."""
        if not task.run_after:
            return
        upstream = str(task.run_after["task_id"])
        tasks = {other.id: other for other in self.store.task_list()}
        if upstream == task.id:
            raise Invalid("a task cannot run after itself", "run_after.task_id")
        if upstream not in tasks:
            raise Invalid(f"no task with id {upstream!r}", "run_after.task_id")
        links = {other.id: (other.run_after or {}).get("task_id") for other in tasks.values()}
        links[task.id] = upstream
        chain = after_chain(task.id, links)
        if task.id in chain:
            names = [task.name, *(tasks[link].name if link in tasks else link for link in chain)]
            raise Invalid(f"that makes a cycle: {' → '.join(names)}", "run_after.task_id")

    @staticmethod
    def _check_future(data: JSONDict, task: Task, now: datetime) -> None:
        """A once schedule given now must lie ahead: one in the past would never fire."""
        at = task.schedule.at if task.schedule.type is ScheduleType.ONCE else None
        if "schedule" in data and at and at <= now:
            raise Invalid(f"{fmt_local(at)} has passed; pick a time ahead", "schedule.at")

    @staticmethod
    def _schedule_state(task: Task, now: datetime) -> JSONDict:
        upcoming = next_fire_after(task.schedule, now, task.created_at) if task.enabled else None
        return fire_state(task, upcoming)

    @staticmethod
    def _input(data: JSON, kind: type[Job] | type[Task]) -> JSONDict:
        """User input: unknown fields (nested ones too) are errors, read-only ones ignored."""
        data = require_object(data)
        split_known(data, kind.EDITABLE, strict=True, ignored=kind.READ_ONLY)
        if kind is Task and isinstance(data.get("prompt"), str):
            check_placeholders(data["prompt"])
        if kind is Job and data.get("schedule") is not None:
            Schedule.from_dict(data["schedule"], strict=True)
        if kind is Task:
            if data.get("extra_args") is not None:
                check_option_values(read_extra_args(data["extra_args"], "extra_args"), "extra_args")
            if data.get("schedule") is not None:
                Schedule.from_dict(data["schedule"], strict=True)
            if data.get("retry") is not None:
                RetryPolicy.from_dict(data["retry"], strict=True)
        return {key: value for key, value in data.items() if key in kind.EDITABLE}

    # Runs --------------------------------------------------------------------

    def list_runs(
        self,
        *,
        task_id: str | None = None,
        job_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[JSONDict]:
        """Runs, newest first, filtered by task, job and status."""
        wanted = read_enum(status, "status", RunStatus) if status else None
        limit = read_int(limit, "limit", 1, RUN_LIST_MAX) if limit is not None else None
        with self.store.locked():
            if task_id:
                runs = self.store.runs_of(self.store.task(task_id).id)
            elif job_id:
                tasks = self.store.tasks_of(self.store.job(job_id).id)
                runs = [run for task in tasks for run in self.store.runs_of(task.id)]
            else:
                runs = self.store.all_runs()
        runs = [run for run in runs if wanted is None or run.status is wanted]
        runs.sort(key=lambda run: run.created_at, reverse=True)
        return [run.to_dict() for run in runs[:limit]]

    def get_run(self, run_id: str) -> JSONDict:
        return self.store.run(run_id).to_dict()

    def delete_run(self, run_id: str) -> JSONDict:
        with self.store.locked():
            if self.store.run(run_id).is_active:
                raise Conflict("the run is still active; stop it first")
            counts = self.store.delete_run(run_id)
        return {"deleted": counts.to_dict()}

    def request_run(
        self, task_id: str, trigger: Trigger = Trigger.MANUAL, *, wait_for_engine: bool = False
    ) -> JSONDict:
        """Queue a run of a task for the engine (in whichever process owns it). A run a
        person asks for while no engine runs gets a start-by time (the start_by_minutes
        setting), past which it expires rather than start late; unless `wait_for_engine`."""
        with self.store.locked():
            task = self.store.task(task_id)
            now = self.clock()
            run = Run(new_id(), task.id, trigger=trigger, created_at=now, model=task.model)
            limit = self._start_by_limit(trigger, wait_for_engine=wait_for_engine)
            run.start_by = now + limit if limit is not None else None
            self.store.enqueue(run)
        self.wake()
        return run.to_dict()

    def _start_by_limit(self, trigger: Trigger, *, wait_for_engine: bool) -> timedelta | None:
        """How soon a run (or job run) asked for now must start, else expire: only what a
        person asks for while no engine runs has a limit, unless they asked to wait."""
        if trigger not in ASKED_TRIGGERS or wait_for_engine or self.engine_status()["running"]:
            return None
        return timedelta(minutes=int(self.store.setting("start_by_minutes")))

    def run_job(
        self,
        job_id: str,
        *,
        continue_on_failure: bool = False,
        trigger: Trigger = Trigger.MANUAL,
        wait_for_engine: bool = False,
    ) -> JSONDict:
        """Queue a job's enabled tasks to run one after another in its task order. Asked
        for while no engine runs, the job run expires as a whole (see `_start_by_limit`)."""
        with self.store.locked():
            # Saved by start_job_step once its first step is queued: a refused start (an
            # unreadable file) leaves no job run "running" behind.
            job_run_id, entry = open_job_run(
                self.store, job_id, continue_on_failure=continue_on_failure, trigger=trigger, save=False
            )
            limit = self._start_by_limit(trigger, wait_for_engine=wait_for_engine)
            first = start_job_step(self.store, job_run_id, entry, limit)
            entry = self.store.job_runs().get(job_run_id, entry)
        self.wake()
        return {"job_run_id": job_run_id, **entry, "run": first.to_dict() if first else None}

    def open_job_run(
        self, job_id: str, *, continue_on_failure: bool, trigger: Trigger, owner: str | None = None
    ) -> tuple[str, JSONDict]:
        """Record a new running job run of the job (see `open_job_run`)."""
        return open_job_run(
            self.store, job_id, continue_on_failure=continue_on_failure, trigger=trigger, owner=owner
        )

    def list_job_runs(self, job_id: str) -> list[JSONDict]:
        """The job's runs (as far as JOB_RUNS_KEPT), newest first, each with its steps."""
        with self.store.locked():
            job_id = self.store.job(job_id).id
            for key, entry in self.store.job_runs().items():
                if entry.get("job_id") == job_id:
                    self._recover_foreground(key, entry)
            entries = [
                (key, entry) for key, entry in self.store.job_runs().items() if entry.get("job_id") == job_id
            ]
            entries.sort(key=lambda item: str(item[1].get("started_at") or ""), reverse=True)
            return [job_run_record(self.store, key, entry) for key, entry in entries]

    def job_fires(self, job_id: str | None = None, limit: int | None = None) -> list[JSONDict]:
        """The job runs that started no step (skipped, missed and deferred fires) of one
        job or of all, newest first (`limit` of them): no run stands for them in the runs'
        lists."""
        entries = [
            (key, entry)
            for key, entry in self.store.job_runs().items()
            if not entry.get("task_ids") and job_id in (None, entry.get("job_id"))
        ]
        entries.sort(key=lambda item: str(item[1].get("started_at") or ""), reverse=True)
        return [{**job_run_fields(key, entry), "steps": []} for key, entry in entries[:limit]]

    def _recover_foreground(self, job_run_id: str, entry: JSONDict) -> None:
        """A running job run whose `jobs run` process is gone: its step (if one was going)
        and it are interrupted now, as the engine would on its next start."""
        owner = entry.get("owner")
        if entry.get("status") != JobRunStatus.RUNNING or not owner or owner_alive(owner):
            return
        try:
            step = self.store.run(str(entry.get("current_run_id")))
        except NotFound:
            step = None
        if step is not None and step.is_active and step.owner and not owner_alive(step.owner):
            interrupt_run(self.store, step)  # which ends the job run as interrupted
        elif step is None or not step.is_active:
            finish_job_run(self.store, job_run_id, entry, JobRunStatus.INTERRUPTED)

    def note_job_step(self, job_run_id: str, position: int, run_id: str) -> None:
        """Record the step a foreground job run has come to."""
        with self.store.locked():
            entry = self.store.job_runs()[job_run_id]
            moved = {
                "position": position,
                "current_run_id": run_id,
                "previous_run_id": entry.get("current_run_id"),
            }
            self.store.save_job_run(job_run_id, {**entry, **moved})

    def end_job_run(self, job_run_id: str, status: JobRunStatus) -> None:
        with self.store.locked():
            entry = self.store.job_runs().get(job_run_id)
            if entry and entry.get("status") == JobRunStatus.RUNNING:
                finish_job_run(self.store, job_run_id, entry, status)

    def job_run_views(self) -> dict[str, JSONDict]:
        """Each job's latest run as a whole (see job_run_view), by job id."""
        with self.store.locked():
            latest: dict[str, tuple[str, JSONDict]] = {}
            for job_run_id, entry in self.store.job_runs().items():
                job_id = str(entry.get("job_id"))
                if job_id not in latest or str(entry.get("started_at")) >= str(
                    latest[job_id][1].get("started_at")
                ):
                    latest[job_id] = (job_run_id, entry)
            names = {task.id: task.name for task in self.store.task_list()}
            return {job_id: self._job_run_view(*latest[job_id], names) for job_id in latest}

    def _job_run_view(self, job_run_id: str, entry: JSONDict, names: dict[str, str]) -> JSONDict:
        steps: list[tuple[str, str, RunStatus | None]] = []
        for task_id in entry.get("task_ids") or []:
            runs = self.store.runs_of(task_id) if task_id in names else []
            mine = [run for run in runs if run.job_run_id == job_run_id]
            newest = max(mine, key=lambda run: run.created_at, default=None)  # its last retry
            steps.append((task_id, names.get(task_id, "(deleted task)"), newest.status if newest else None))
        return job_run_view(job_run_id, entry, steps)

    def stop_job(self, job_id: str) -> JSONDict:
        """Stop a job's running job runs (the steps not reached are not run) and their
        current runs (and any active run of its tasks)."""
        with self.store.locked():
            task_ids = [task.id for task in self.store.tasks_of(self.store.job(job_id).id)]
            for job_run_id, entry in self.store.job_runs().items():
                if entry.get("job_id") == job_id and entry.get("status") == JobRunStatus.RUNNING:
                    finish_job_run(self.store, job_run_id, entry, JobRunStatus.STOPPED)
            active = [run.id for task_id in task_ids for run in self.store.runs_of(task_id) if run.is_active]
            stopped = [self._stop_locked(run_id) for run_id in active]
        orphans = self._end_orphans([orphan for _, orphan in stopped if orphan])
        self.wake()
        return {"job_id": job_id, "stopped_runs": [orphans.get(run.id, run).to_dict() for run, _ in stopped]}

    def stop_run(self, run_id: str) -> JSONDict:
        """Ask for a run to stop. A queued run is cancelled at once; a running one is
        stopped by its owning process within a second, or here when that process died.
        Finished runs are left as they are."""
        with self.store.locked():
            run, orphan = self._stop_locked(run_id)
        run = self._end_orphans([orphan] if orphan else []).get(run.id, run)
        self.wake()
        return run.to_dict()

    def _end_orphans(self, orphans: list[Run]) -> dict[str, Run]:
        """Interrupt runs whose owner died (without the lock: their sessions get a grace
        period); each as recorded, by id."""
        ended = interrupt_runs(self.store, orphans)
        return {run.id: run for run in ended if run}

    def _stop_locked(self, run_id: str) -> tuple[Run, Run | None]:
        """`stop_run`'s part under the store lock; the run, and itself again when its
        owner died (to be interrupted once the lock is let go)."""
        run = self.store.run(run_id)
        orphan = None
        if run.status is RunStatus.QUEUED:
            run = dataclasses.replace(
                run,
                status=RunStatus.CANCELLED,
                finished_at=self.clock(),
                error="stopped before it started",
            )
            self.store.save_run(run)
        elif run.status is RunStatus.RUNNING and run.owner and not owner_alive(run.owner):
            orphan = run  # nobody is left to act on a request
        elif run.status is RunStatus.RUNNING and not run.stop_requested:
            run = dataclasses.replace(run, stop_requested=True)
            self.store.save_run(run)
        return run, orphan

    def read_log(self, run_id: str, offset: int = 0, limit: int = LOG_CHUNK_MAX) -> JSONDict:
        """Log bytes from `offset`, whole lines only while the run is active, and the
        offset to ask for next (for live tailing)."""
        run = self.store.run(run_id)
        offset = read_int(offset, "offset", 0, 1 << 62)
        limit = read_int(limit, "limit", 1, LOG_CHUNK_MAX)
        try:
            with open(self.store.log_path(run.id), "rb") as handle:
                handle.seek(offset)
                chunk = handle.read(limit)
        except FileNotFoundError:
            chunk = b""
        cut = chunk.rfind(b"\n") + 1
        # A line longer than `limit` comes in pieces; otherwise only whole lines.
        if (run.is_active or len(chunk) == limit) and (cut or len(chunk) < limit):
            chunk = chunk[:cut]
        return {
            "run_id": run.id,
            "offset": offset,
            "next_offset": offset + len(chunk),
            "data": chunk.decode("utf-8", errors="replace"),
            "active": run.is_active,
        }

    def resolve(self, kind: str, text: str) -> str:
        return self.store.resolve(kind, text)

    # Usage -------------------------------------------------------------------

    def _totals(self, runs: Iterable[Run]) -> JSONDict:
        return usage_totals(runs, self.clock(), get_zone(None))

    def task_totals(self, task_id: str) -> JSONDict:
        """What a task's runs cost and used today, in 7 and in 30 days (see usage_totals)."""
        with self.store.locked():
            return self._totals(self.store.runs_of(self.store.task(task_id).id))

    def job_totals(self, job_id: str | None) -> JSONDict:
        """The same for all runs of a job's tasks (None: of the tasks in no job)."""
        with self.store.locked():
            tasks = self.store.tasks_of(self.store.job(job_id).id if job_id else None)
            return self._totals(run for task in tasks for run in self.store.runs_of(task.id))

    def recent_statuses(self, count: int) -> dict[str, list[str]]:
        """Each task's newest `count` finished or active runs' statuses, oldest first."""
        with self.store.locked():
            recent = {}
            for task in self.store.task_list():
                runs = sorted(self.store.runs_of(task.id), key=lambda run: run.created_at)[-count:]
                recent[task.id] = [run.status.value for run in runs]
            return recent

    def usage(self) -> JSONDict:
        """Every job's totals (by name), the unassigned tasks' and the sum of all, with the
        zone whose midnights start the windows."""
        with self.store.locked():
            runs_by_job: dict[str | None, list[Run]] = {}
            for task in self.store.task_list():
                runs_by_job.setdefault(task.job_id, []).extend(self.store.runs_of(task.id))
            jobs = sorted(self.store.job_list(), key=lambda job: (job.name.casefold(), job.created_at))
        now, zone_name = self.clock(), local_zone_name()  # one `now` for all, so the windows agree
        zone = get_zone(zone_name)
        totals = {job_id: usage_totals(runs, now, zone) for job_id, runs in runs_by_job.items()}

        def of(job_id: str | None) -> JSONDict:
            return totals.get(job_id) or usage_totals([], now, zone)

        return {
            "zone": zone_name,
            "jobs": [{"id": job.id, "name": job.name, "totals": of(job.id)} for job in jobs],
            "unassigned": of(None),
            "total": sum_usage_totals([usage_totals([], now, zone), *totals.values()]),
        }

    # Import, export and copies ---------------------------------------------------

    def export_bundle(
        self, job_ids: Sequence[str] = (), *, runs: bool = False, logs: bool = False
    ) -> JSONDict:
        """A versioned bundle (see BUNDLE_FORMAT) of the jobs named, or of every job and the
        tasks in no job, with their tasks; `runs` adds their finished runs, `logs` those
        runs' logs too. Records are exported whole (`to_dict`), so every field travels."""
        with self.store.locked():
            jobs = [self.store.job(job_id) for job_id in dict.fromkeys(job_ids)] or self.store.job_list()
            tasks = [task for job in jobs for task in self.store.tasks_of(job.id)]
            if not job_ids:
                tasks += self.store.tasks_of(None)
            bundle: JSONDict = {
                "format": BUNDLE_FORMAT,
                "version": BUNDLE_VERSION,
                "exported_at": fmt_time(self.clock()),
                "app_version": __version__,
                "jobs": [job.to_dict() for job in jobs],
                "tasks": [task.to_dict(derived=False) for task in tasks],
            }
            if runs or logs:
                finished = [run for task in tasks for run in self.store.runs_of(task.id) if not run.is_active]
                bundle["runs"] = [run.to_dict() for run in finished]
                if logs:
                    bundle["logs"] = self._log_texts(finished)
        return bundle

    def _log_texts(self, runs: list[Run]) -> dict[str, str]:
        texts = {}
        for run in runs:
            with contextlib.suppress(FileNotFoundError):
                texts[run.id] = self.store.log_path(run.id).read_bytes().decode("utf-8", errors="replace")
        return texts

    def import_bundle(self, bundle: JSON, *, dry_run: bool = False, into_job: str | None = None) -> JSONDict:
        """Bring a bundle in with new ids: every record is checked first and one bad record
        refuses the whole bundle (Invalid naming it), so nothing changes. Names that clash
        with existing ones get a number, reported under `renamed`. With `into_job`, the
        bundle's tasks join that job and its jobs are not created."""
        return self._import(bundle, dry_run=dry_run, into_job=into_job)

    def duplicate_job(self, job_id: str) -> JSONDict:
        """A copy of a job with copies of its tasks (disabled, so nothing fires twice)."""
        report = self._import(self.export_bundle([job_id]), copies=True)
        return self.get_job(report["jobs"][0]["id"])

    def duplicate_task(self, task_id: str) -> JSONDict:
        """A copy of a task in the same job (disabled, so nothing fires twice)."""
        task = self.store.task(task_id)
        bundle = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "jobs": [],
            "tasks": [task.to_dict(derived=False)],
        }
        report = self._import(bundle, into_job=task.job_id, copies=True)
        return self.get_task(report["tasks"][0]["id"])

    def _import(
        self, bundle: JSON, *, dry_run: bool = False, into_job: str | None = None, copies: bool = False
    ) -> JSONDict:
        with self.store.locked():
            plan = ImportPlan.read(self.store, bundle, into_job=into_job, now=self.clock(), copies=copies)
            if not dry_run:
                plan.apply(self.store)
        if not dry_run:
            self.wake()
        return plan.report(dry_run=dry_run)

    # Notifications -------------------------------------------------------------

    def notify_settings(self) -> JSONDict:
        """What to be told about and through which channels (webhook secrets left out)."""
        return public_notify_config(load_notify_config(self.store.home))

    def update_notify_settings(self, data: JSON) -> JSONDict:
        """Change the settings given: `events` and `desktop` field by field, `tasks` task by
        task (null drops a task's overrides), `webhooks` as a whole list in which a hook
        given without `secret` keeps the secret of the hook of that name."""
        data = require_object(data)
        split_known(data, DEFAULT_NOTIFY, strict=True)
        with self.store.locked():
            current = load_notify_config(self.store.home)
            merged = {
                **current,
                "events": {**current["events"], **require_object(data.get("events") or {}, "events")},
                "desktop": {**current["desktop"], **require_object(data.get("desktop") or {}, "desktop")},
                "tasks": self._task_overrides(current["tasks"], data.get("tasks") or {}),
            }
            if "webhooks" in data:
                merged["webhooks"] = self._keep_secrets(current["webhooks"], data["webhooks"])
            config = read_notify_config(merged)
            atomic_write(self.store.home / NOTIFY_FILE, json.dumps(config, indent=2).encode())
        return public_notify_config(config)

    def _task_overrides(self, current: JSONDict, changes: JSON) -> JSONDict:
        tasks = dict(current)
        for task_id, entry in require_object(changes, "tasks").items():
            if entry is None:
                tasks.pop(task_id, None)
            else:
                tasks[self.store.task(task_id).id] = entry
        return tasks

    @staticmethod
    def _keep_secrets(current: list[JSONDict], hooks: JSON) -> JSON:
        if not isinstance(hooks, list):
            return hooks  # read_notify_config names the mistake
        secrets = {hook["name"]: hook["secret"] for hook in current}
        return [
            {**hook, "secret": secrets.get(hook.get("name"))}
            if isinstance(hook, dict) and "secret" not in hook
            else hook
            for hook in hooks
        ]

    def notify_history(self, limit: int | None = None) -> list[JSONDict]:
        """The latest deliveries, newest first: channel, event, status, attempts, error."""
        limit = read_int(limit, "limit", 1, NOTIFY_HISTORY_MAX) if limit is not None else None
        return notify_history(self.store.home)[:limit]

    def notify_test(self) -> list[JSONDict]:
        """Send a sample through each enabled channel and wait for the outcomes."""
        notice = Notice("test", NOTICE_TITLES["test"], NOTIFY_TEST_BODY, at=self.clock())
        return Notifier(self.store).send(notice, wait=True)

    # Engine ------------------------------------------------------------------

    def engine_status(self) -> JSONDict:
        info = self.store.engine_state()
        owner = info.get("owner") or {}
        alive = bool(owner) and owner_alive(owner.get("id") or f"{owner.get('host')}:{owner.get('pid')}")
        alive = alive and owner.get("host") == host_name()
        return {
            "running": alive,
            "paused": bool(info.get("paused")),
            "hold": self._hold_view(info),
            "owner": owner if alive else None,
            "here": alive and owner.get("pid") == os.getpid(),
        }

    def _hold_view(self, info: JSONDict) -> JSONDict | None:
        """The hold in force, as the API shows it (its end also in the machine's zone)."""
        hold = active_hold(info, self.store.clock())
        until = hold_until(hold)
        if hold is None or until is None:
            return None
        zone = local_zone_name()
        deferred = _object_or_empty(hold.get("deferred")).values()
        return {
            "until": fmt_time(until),
            "until_local": until.astimezone(get_zone(zone)).isoformat(timespec="seconds"),
            "timezone": zone,
            "kind": hold.get("kind"),
            "reason": hold.get("reason"),
            "run_id": hold.get("run_id"),
            "task_id": hold.get("task_id"),
            "since": hold.get("since"),
            "deferred_run_ids": [entry.get("run_id") for entry in deferred if isinstance(entry, dict)],
            "deferred_job_run_ids": [
                entry.get("job_run_id")
                for entry in _object_or_empty(hold.get("deferred_jobs")).values()
                if isinstance(entry, dict)
            ],
        }

    def set_paused(self, paused: bool) -> JSONDict:
        """Pause, or resume: which lifts the pause and a usage-limit hold alike, and says
        in `lifted` which of them it lifted."""
        with self.store.locked():
            info = self.store.engine_state()
            lifted = [] if paused or not info.get("paused") else ["pause"]
            changes: JSONDict = {"paused": paused}
            hold = None if paused else active_hold(info, self.store.clock())
            if hold is not None:
                lifted.append("hold")
                changes["hold"] = {**hold, "lifted_by": "engine resume"}  # the engine clears it
            self.store.set_engine_state(**changes)
        self.wake()
        return {**self.engine_status(), "lifted": lifted}

    # Settings ----------------------------------------------------------------

    def get_settings(self) -> JSONDict:
        """The user settings (not the window's layout)."""
        settings = self.store.settings()
        return {name: settings[name] for name in DEFAULT_SETTINGS}

    def update_settings(self, data: JSON) -> JSONDict:
        data = require_object(data)
        split_known(data, DEFAULT_SETTINGS, strict=True)
        self.store.update_settings(data)
        self.wake()
        return self.get_settings()

    def check_setup(self) -> list[JSONDict]:
        """The setup check of this data home (see check_setup): slow, never on the Tk thread."""
        return [check.to_dict() for check in check_setup(self.store.home, self.store)]


# Checking the setup: `cli doctor`, Help → Check setup and GET /api/doctor share these.

CHECK_OK = "ok"
CHECK_WARNING = "warning"
CHECK_PROBLEM = "problem"
CREDENTIAL_VARIABLES = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
CLAUDE_CONFIG_ENV = "CLAUDE_CONFIG_DIR"  # moves Claude Code's ~/.claude (and its .claude.json)
CLAUDE_CONFIG_DIR = ".claude"
CLAUDE_CREDENTIALS_FILE = ".credentials.json"
CLAUDE_GLOBAL_CONFIG = ".claude.json"
HEALTH_TIMEOUT_SECONDS = 2.0
STORE_FILE_FIX = "Repair or restore that file: the scheduler leaves a file it cannot read exactly as it is."
# The `process` an engine owner records -> how the setup check names it.
ENGINE_PROCESSES = {"serve": "`serve`", "window": "a window"}


class Check(typing.NamedTuple):
    """One line of the setup check: what was checked, its level (CHECK_OK, CHECK_WARNING,
    CHECK_PROBLEM), what was found, and for a warning or a problem the fix in a sentence."""

    check: str
    level: str
    message: str
    fix: str | None = None

    def to_dict(self) -> JSONDict:
        return self._asdict()


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def check_setup(
    home: Path,
    store: Store | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    user_home: Path | None = None,
    is_root: bool | None = None,
    platform: str = sys.platform,
) -> list[Check]:
    """Every check of the setup, in the order people read them.

    Without `store`, a Store is opened on `home` only if the home is there and usable, so
    checking never creates a data home. Never raises for what it finds. Blocks for the
    `claude --version` call and the API probe (seconds at worst): not on the Tk thread.
    """
    environ = os.environ if environ is None else environ
    user_home = user_home or Path.home()
    is_root = _is_root() if is_root is None else is_root
    home_check = _check_data_home(home)
    store_checks: list[Check] = []
    if store is None and home_check.level == CHECK_OK:
        try:
            store = Store(home)
        except StorageError as error:
            store_checks.append(Check("data home", CHECK_PROBLEM, error.message, STORE_FILE_FIX))
    configured = store.setting("claude_path") if store else None
    checks = [
        *_check_claude(configured, environ, user_home),
        _check_credentials(environ, user_home, platform),
    ]
    checks += [home_check, *store_checks]
    if store is not None:
        checks += _check_engine_and_api(store)
        checks += _check_tasks(store, environ, user_home, is_root)
    return checks


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _check_data_home(home: Path) -> Check:
    name = "data home"
    elsewhere = "or choose another data home with --home or $" + HOME_ENV
    if not home.exists():
        fix = (
            "It is made when the window, `serve` or another command first uses it; if your "
            f"jobs are elsewhere, pass --home or set ${HOME_ENV}."
        )
        return Check(name, CHECK_WARNING, f"{home} does not exist yet", fix)
    if not home.is_dir():
        return Check(name, CHECK_PROBLEM, f"{home} is not a folder", f"Move that file away, {elsewhere}.")
    denied = [
        word
        for word, mode in (("readable", os.R_OK | os.X_OK), ("writable", os.W_OK))
        if not os.access(home, mode)
    ]
    if denied:
        fix = (
            "Give the user who runs the scheduler read and write access to it (is its file "
            f"system read-only?), {elsewhere}."
        )
        return Check(name, CHECK_PROBLEM, f"{home} is not {' or '.join(denied)}", fix)
    return Check(name, CHECK_OK, f"{home} is readable and writable")


def _check_claude(configured: str | None, environ: Mapping[str, str], user_home: Path) -> list[Check]:
    """Where claude is, and its version; the version only if claude was found."""
    try:
        location = locate_claude(configured, environ, user_home)
    except ClaudeNotFound as error:
        return [Check("claude", CHECK_PROBLEM, error.problem, _sentence(error.fix))]
    found = Check("claude", CHECK_OK, f"{location.path} ({location.source_text})")
    return [found, _check_claude_version(claude_version(location.path))]


def _check_claude_version(version: ClaudeVersion) -> Check:
    name = "claude version"
    if version.number is None:
        fix = "Check that this is Claude Code's CLI and that it runs for this user; else reinstall it."
        return Check(name, CHECK_PROBLEM, version.error or "unknown", fix)
    shown = ".".join(map(str, version.number))
    tested = tuple(int(part) for part in CLAUDE_TESTED_VERSION.split("."))
    if version.number < tested:
        message = f"{shown}, older than {CLAUDE_TESTED_VERSION}, the version the scheduler is tested with"
        fix = "Update Claude Code: `claude update`, or npm install -g @anthropic-ai/claude-code@latest."
        return Check(name, CHECK_WARNING, message, fix)
    newer = f", newer than {CLAUDE_TESTED_VERSION}," if version.number > tested else ","
    return Check(name, CHECK_OK, f"{shown}{newer} the version the scheduler is tested with")


def _check_credentials(environ: Mapping[str, str], user_home: Path, platform: str) -> Check:
    """Whether claude has something to log in with. Only names where it looked: a secret
    is never read beyond knowing that it is there."""
    name = "credentials"
    named = [variable for variable in CREDENTIAL_VARIABLES if environ.get(variable, "").strip()]
    if named:
        return Check(name, CHECK_OK, f"{' and '.join(named)} set in the environment")
    moved = environ.get(CLAUDE_CONFIG_ENV, "").strip()
    config_dir = Path(moved) if moved else user_home / CLAUDE_CONFIG_DIR
    credentials = config_dir / CLAUDE_CREDENTIALS_FILE
    global_config = (config_dir if moved else user_home) / CLAUDE_GLOBAL_CONFIG
    if _non_empty_file(credentials):
        return Check(name, CHECK_OK, f"Claude Code's login file {credentials} is there")
    if _names_an_account(global_config):
        return Check(name, CHECK_OK, f"Claude Code is logged in ({global_config} names an account)")
    fix = (
        "If runs fail to log in, run `claude` once as the scheduler's user and log in, or set "
        f"{' or '.join(CREDENTIAL_VARIABLES)} in the scheduler's environment (or in the task's env)."
    )
    if platform == "darwin":
        message = "can't tell: on macOS Claude Code keeps its login in the keychain, which is not readable"
        return Check(name, CHECK_WARNING, message, fix)
    missing = " nor ".join(CREDENTIAL_VARIABLES)
    message = (
        f"none found: neither {missing} is set, and there is no login in {credentials} or "
        f"{global_config} (claude may still be logged in some other way)"
    )
    return Check(name, CHECK_WARNING, message, fix)


def _non_empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def _names_an_account(path: Path) -> bool:
    """Whether Claude Code's global config holds an `oauthAccount` (a claude.ai login)."""
    try:
        config = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("oauthAccount"))


def _check_engine_and_api(store: Store) -> list[Check]:
    try:
        status = Service(store).engine_status()
    except StorageError as error:
        return [Check("engine", CHECK_PROBLEM, error.message, STORE_FILE_FIX)]
    return [_check_engine(status), _check_api(status)]


def _check_engine(status: JSONDict) -> Check:
    name = "engine"
    resume = "Resume it: `cli engine resume`, or untick Run → Pause all runs in the window."
    if not status["running"]:
        fix = "Open the window, or run `claude-code-scheduler serve` (as a service, to keep it running)."
        paused = ", and paused" if status["paused"] else ""
        return Check(name, CHECK_WARNING, f"not running{paused}: scheduled tasks do not fire", fix)
    owner = status["owner"]
    process = ENGINE_PROCESSES.get(owner.get("process"), "a process")
    where = f"running in {process} (pid {owner.get('pid')} on {owner.get('host')})"
    if status["paused"]:
        return Check(name, CHECK_WARNING, f"{where}, paused: no new runs start", resume)
    hold = status.get("hold")
    if hold:
        until = hold["until_local"][:16].replace("T", " ")
        held = f"{where}, holding new runs until {until} {hold['timezone']}"
        fix = "Wait for the reset, or lift the hold now: `cli engine resume` (runs may hit the limit again)."
        return Check(name, CHECK_WARNING, f"{held} ({hold_kind_label(hold)})", fix)
    return Check(name, CHECK_OK, where)


def _check_api(status: JSONDict) -> Check:
    """GET /api/health at the address the engine's process recorded, else the default one."""
    name = "api"
    recorded = (status.get("owner") or {}).get("api")
    address = recorded or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    reason = _probe_health(address)
    if reason is None:
        return Check(name, CHECK_OK, f"answers at {address}")
    if recorded:
        fix = (
            "Restart the engine's process (the window or `serve`); its log may say why it stopped answering."
        )
        return Check(name, CHECK_PROBLEM, f"the engine's API at {address} does not answer: {reason}", fix)
    if status["running"]:
        fix = "Start the window without --no-api, or use `serve`, to use the API and `cli --api`."
        return Check(name, CHECK_WARNING, "the engine's process serves no API", fix)
    fix = (
        "Open the window or run `claude-code-scheduler serve`: both serve the API (port "
        f"{DEFAULT_PORT} unless --port says otherwise)."
    )
    return Check(name, CHECK_WARNING, f"nothing answers at {address}: {reason}", fix)


def _probe_health(address: str, timeout: float = HEALTH_TIMEOUT_SECONDS) -> str | None:
    """None when the scheduler's API answers GET /api/health at `address`; else why not."""
    import http.client

    try:
        parts = urllib.parse.urlsplit(address)
        connection = http.client.HTTPConnection(
            parts.hostname or DEFAULT_HOST, parts.port or DEFAULT_PORT, timeout=timeout
        )
    except ValueError as error:
        return f"not an address ({error})"
    try:
        connection.request("GET", "/api/health", headers={"Accept": "application/json"})
        response = connection.getresponse()
        status, raw = response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        return getattr(error, "strerror", None) or str(error) or type(error).__name__
    finally:
        connection.close()
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if status != HTTPStatus.OK or not isinstance(answer, dict) or answer.get("status") != "ok":
        return f"it answered HTTP {status}, not as claude-code-scheduler's API"
    return None


def _check_tasks(store: Store, environ: Mapping[str, str], user_home: Path, is_root: bool) -> list[Check]:
    """A line for each task that claude (or the scheduler) will refuse to run; one line
    when there is none."""
    try:
        jobs = {job.id: job for job in store.job_list()}
        tasks = store.task_list()
    except StorageError as error:
        return [Check("tasks", CHECK_PROBLEM, error.message, STORE_FILE_FIX)]
    checks = [
        check
        for task in tasks
        for check in _task_checks(task, jobs.get(task.job_id or ""), environ, user_home, is_root)
    ]
    if checks:
        return checks
    message = f"{_plural(len(tasks), 'task')}, none that will be refused" if tasks else "no tasks yet"
    return [Check("tasks", CHECK_OK, message)]


def _task_checks(
    task: Task, job: Job | None, environ: Mapping[str, str], user_home: Path, is_root: bool
) -> list[Check]:
    """What stops a task from running: a problem, or a warning while it is disabled."""
    name = f"task “{task.name}”"
    level = CHECK_PROBLEM if task.enabled else CHECK_WARNING
    found: list[Check] = []
    try:
        resolve_workdir(task.working_directory, job.working_directory if job else None, user_home, environ)
    except WorkdirMissing as error:
        fix = "Create that folder, or change the working folder of the task (or of its job)."
        found.append(Check(name, level, error.problem, fix))
    try:
        _option_value(task.model, "model")
    except Invalid:
        fix = "Set its model to an alias (sonnet, opus, haiku) or a full model id."
        found.append(Check(name, level, f"model {task.model!r} cannot be passed to claude", fix))
    if is_root and task.permission_mode is PermissionMode.BYPASS:
        message = f"permission mode {PermissionMode.BYPASS.value}, which claude refuses to run as root"
        fix = (
            "Choose another permission mode (acceptEdits, or default with allowed tools), or "
            "run the scheduler as a user other than root."
        )
        found.append(Check(name, level, message, fix))
    return found


# Bundles: import and export. A bundle is one JSON object: `format`, `version`,
# `exported_at`, `app_version`, `jobs` and `tasks` as stored (ids refer to each other
# inside the bundle), and optionally `runs` (finished ones) and `logs` (run id -> text).


@contextlib.contextmanager
def _bundle_record(key: str, index: int, data: JSON) -> Iterator[None]:
    """Name the record (and its name, when it has one) in an Invalid raised for it."""
    try:
        yield
    except Invalid as error:
        name = data.get("name") if isinstance(data, dict) else None
        label = f" ({key.rstrip('s')} {name!r})" if isinstance(name, str) else ""
        field = f"{key}[{index}].{error.field}" if error.field else f"{key}[{index}]"
        raise Invalid(f"{error.message}{label}; nothing was imported", field) from None


def _bundle_list(bundle: JSONDict, key: str) -> list[JSON]:
    items = bundle.get(key, [])
    if not isinstance(items, list):
        raise Invalid("must be a list; nothing was imported", key)
    return items


def _bundle_ids(items: list[JSON], key: str) -> list[str]:
    """Each record's id in the bundle; a missing, malformed or repeated one is Invalid."""
    ids: list[str] = []
    for index, data in enumerate(items):
        with _bundle_record(key, index, data):
            record_id = read_id(require_object(data).get("id"), "id", required=True) or ""
            if record_id in ids:
                raise Invalid(f"repeats the id of {key}[{ids.index(record_id)}]", "id")
            ids.append(record_id)
    return ids


def _bundle_fields(data: JSONDict, kind: type[Job] | type[Task]) -> JSONDict:
    """A record's own fields, without the ones the store sets (ids, stamps, derived ones).
    Fields this version does not know are kept, as the store keeps them: a bundle from a
    newer version loses nothing."""
    return {key: value for key, value in data.items() if key not in kind.READ_ONLY}


def _free_name(name: str, taken: set[str]) -> str:
    """`name`, or `name (2)`, `name (3)`... whichever is not taken (kept within NAME_MAX)."""
    number = 2
    candidate = name
    while candidate in taken:
        suffix = f" ({number})"
        candidate = name[: NAME_MAX - len(suffix)] + suffix
        number += 1
    return candidate


@dataclass
class ImportPlan:
    """What importing a bundle would store, every record already validated and given new
    ids and free names. `read` raises Invalid naming the first bad record; `apply` writes."""

    jobs: list[Job] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)  # new run id -> log text
    sources: dict[str, str] = field(default_factory=dict)  # new id -> id in the bundle
    renamed: list[JSONDict] = field(default_factory=list)
    into_job: Job | None = None
    now: datetime = field(default_factory=utcnow)

    @classmethod
    def read(
        cls, store: Store, bundle: JSON, *, into_job: str | None, now: datetime, copies: bool = False
    ) -> ImportPlan:
        bundle = require_object(bundle, "bundle")
        cls._check_header(bundle)
        plan = cls(into_job=store.job(into_job) if into_job else None, now=now)
        job_map = plan._read_jobs(store, _bundle_list(bundle, "jobs"))
        task_map = plan._read_tasks(store, _bundle_list(bundle, "tasks"), job_map, disable=copies)
        plan._order_jobs(store, _bundle_list(bundle, "jobs"), task_map)
        run_map = plan._read_runs(_bundle_list(bundle, "runs"), task_map)
        plan._read_logs(bundle.get("logs", {}), run_map)
        return plan

    @staticmethod
    def _check_header(bundle: JSONDict) -> None:
        split_known(bundle, BUNDLE_KEYS, strict=True)
        if bundle.get("format") != BUNDLE_FORMAT:
            raise Invalid(f'is not a claude-code-scheduler bundle (expected "{BUNDLE_FORMAT}")', "format")
        version = bundle.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise Invalid("must be a whole number from 1", "version")
        if version > BUNDLE_VERSION:
            raise Invalid(
                f"{version} is newer than this program reads ({BUNDLE_VERSION}): update it", "version"
            )

    def _stamps(self) -> JSONDict:
        return {"id": new_id(), "created_at": fmt_time(self.now), "updated_at": fmt_time(self.now)}

    def _rename(self, kind: str, name: str, taken: set[str], clashing: set[str]) -> str:
        if name not in clashing:
            return name
        free = _free_name(name, taken)
        taken.add(free)
        self.renamed.append({"kind": kind, "from": name, "to": free})
        return free

    def _read_jobs(self, store: Store, items: list[JSON]) -> dict[str, str]:
        """Old id -> new id of each job (none are made when importing into a job)."""
        old_ids = _bundle_ids(items, "jobs")
        existing = {job.name for job in store.job_list()}
        taken = existing | {str(item.get("name")) for item in items}
        job_map: dict[str, str] = {}
        for index, (old_id, data) in enumerate(zip(old_ids, items, strict=True)):
            with _bundle_record("jobs", index, data):
                job = Job.from_dict({**_bundle_fields(data, Job), **self._stamps(), "task_order": []})
            if self.into_job is None:
                job.name = self._rename("job", job.name, taken, existing)
                self.jobs.append(job)
                self.sources[job.id] = old_id
                job_map[old_id] = job.id
        return job_map

    def _read_tasks(
        self, store: Store, items: list[JSON], job_map: dict[str, str], *, disable: bool
    ) -> dict[str, str]:
        old_ids = _bundle_ids(items, "tasks")
        names_by_job: dict[str | None, set[str]] = {}
        for task in store.task_list():
            names_by_job.setdefault(task.job_id, set()).add(task.name)
        in_bundle = {str(item.get("name")) for item in items}
        taken_by_job: dict[str | None, set[str]] = {}
        task_map: dict[str, str] = {}
        for index, (old_id, data) in enumerate(zip(old_ids, items, strict=True)):
            with _bundle_record("tasks", index, data):
                fields = _bundle_fields(data, Task)
                fields["job_id"] = self._task_job(fields.get("job_id"), job_map)
                task = Task.from_dict({**fields, **self._stamps()}, strict=True)
            if disable:
                task.enabled = False
            existing = names_by_job.get(task.job_id, set())
            taken = taken_by_job.setdefault(task.job_id, existing | in_bundle)
            task.name = self._rename("task", task.name, taken, existing)
            self.tasks.append(task)
            self.sources[task.id] = old_id
            task_map[old_id] = task.id
        return task_map

    def _task_job(self, old_job_id: JSON, job_map: dict[str, str]) -> str | None:
        if self.into_job is not None:
            return self.into_job.id
        if old_job_id is None:
            return None
        if old_job_id not in job_map:
            raise Invalid(f"names job {old_job_id}, which is not in the bundle", "job_id")
        return job_map[str(old_job_id)]

    def _order_jobs(self, store: Store, items: list[JSON], task_map: dict[str, str]) -> None:
        """Each new job's task order, in new ids; importing into a job puts the new tasks
        after the ones it has, in the order it shows them."""
        if self.into_job is not None:
            order = [task.id for task in store.tasks_of(self.into_job.id)] + [task.id for task in self.tasks]
            self.into_job = dataclasses.replace(self.into_job, task_order=order, updated_at=self.now)
            return
        for index, (job, data) in enumerate(zip(self.jobs, items, strict=True)):
            mine = {task.id for task in self.tasks if task.job_id == job.id}
            for position, old_id in enumerate(data.get("task_order") or []):
                if task_map.get(old_id) not in mine:
                    with _bundle_record("jobs", index, data):
                        raise Invalid(
                            f"lists task {old_id}, which is not one of its tasks in the bundle",
                            f"task_order[{position}]",
                        )
                job.task_order.append(task_map[old_id])

    def _read_runs(self, items: list[JSON], task_map: dict[str, str]) -> dict[str, str]:
        run_map: dict[str, str] = {}
        for index, data in enumerate(items):
            with _bundle_record("runs", index, data):
                run = Run.from_dict(data)
                if run.id in run_map:
                    raise Invalid("repeats the id of an earlier run", "id")
                if run.task_id not in task_map:
                    raise Invalid(f"names task {run.task_id}, which is not in the bundle", "task_id")
                if run.is_active:
                    raise Invalid(f"is {run.status.value}: only finished runs can be imported", "status")
            new = dataclasses.replace(
                run, id=new_id(), task_id=task_map[run.task_id], job_run_id=None, pid=None, owner=None
            )
            run_map[run.id] = new.id
            self.sources[new.id] = run.id
            self.runs.append(new)
        return run_map

    def _read_logs(self, logs: JSON, run_map: dict[str, str]) -> None:
        logs = require_object(logs, "logs")
        for old_id, text in logs.items():
            if old_id not in run_map:
                raise Invalid(
                    "is the log of a run that is not in the bundle; nothing was imported", f"logs.{old_id}"
                )
            if not isinstance(text, str):
                raise Invalid("must be a string; nothing was imported", f"logs.{old_id}")
            self.logs[run_map[old_id]] = text

    def apply(self, store: Store) -> None:
        """Store the plan's records (the caller holds the store's lock)."""
        for job in self.jobs:
            store.save_job(job)
        for task in self.tasks:
            store.save_task(task, Service._schedule_state(task, self.now))
        if self.into_job is not None:
            store.save_job(self.into_job)
        for run in sorted(self.runs, key=lambda run: run.created_at):
            if run.id in self.logs:
                atomic_write(store.log_path(run.id), self.logs[run.id].encode())
            store.save_run(run)

    def report(self, *, dry_run: bool) -> JSONDict:
        def entry(record: Job | Task) -> JSONDict:
            out = {"id": record.id, "source_id": self.sources[record.id], "name": record.name}
            return {**out, "job_id": record.job_id} if isinstance(record, Task) else out

        return {
            "dry_run": dry_run,
            "into_job": self.into_job.id if self.into_job else None,
            "jobs": [entry(job) for job in self.jobs],
            "tasks": [entry(task) for task in self.tasks],
            "runs": len(self.runs),
            "logs": len(self.logs),
            "renamed": self.renamed,
        }


####
# Desktop integration: the launcher, the icon, the engine at login ####
####

LINUX_ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)
MAC_ICON_TYPES = ((b"ic07", 128), (b"ic08", 256), (b"ic09", 512), (b"ic11", 32), (b"ic12", 64))
WINDOWS_ICON_SIZES = (16, 24, 32, 48, 64, 256)
WINDOW_ICON_SIZES = (16, 32, 64)
# The icon, in units of its side: a rounded square in Claude's terracotta with a white
# clock face whose hands show three o'clock.
ICON_BACKGROUND = (0xD9, 0x77, 0x57)
ICON_FOREGROUND = (0xFF, 0xFF, 0xFF)
ICON_MARGIN, ICON_CORNER = 0.06, 0.2
ICON_RING_RADIUS, ICON_STROKE = 0.29, 0.06
ICON_HANDS = (((0.5, 0.5), (0.5, 0.29)), ((0.5, 0.5), (0.66, 0.5)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DESKTOP_EXEC_SPECIAL = set(" \t\n\"'\\><~|&;$*?#()`")


def _box_distance(x: float, y: float) -> float:
    half = 0.5 - ICON_MARGIN - ICON_CORNER
    qx, qy = abs(x - 0.5) - half, abs(y - 0.5) - half
    return math.hypot(max(qx, 0.0), max(qy, 0.0)) + min(max(qx, qy), 0.0) - ICON_CORNER


def _segment_distance(x: float, y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = max(0.0, min(1.0, ((x - a[0]) * dx + (y - a[1]) * dy) / (dx * dx + dy * dy)))
    return math.hypot(x - a[0] - t * dx, y - a[1] - t * dy) - ICON_STROKE / 2


def _face_distance(x: float, y: float) -> float:
    ring = abs(math.hypot(x - 0.5, y - 0.5) - ICON_RING_RADIUS) - ICON_STROKE / 2
    return min(ring, *(_segment_distance(x, y, a, b) for a, b in ICON_HANDS))


def _coverage(distance: float, size: int) -> float:
    """How much of a pixel a shape covers, from its signed distance (anti-aliasing)."""
    return max(0.0, min(1.0, 0.5 - distance * size))


def icon_pixels(size: int) -> bytes:
    """The icon as RGBA rows, `size` pixels square, drawn from signed distances."""
    out = bytearray()
    for row in range(size):
        y = (row + 0.5) / size
        for column in range(size):
            x = (column + 0.5) / size
            alpha = _coverage(_box_distance(x, y), size)
            white = _coverage(_face_distance(x, y), size) if alpha else 0.0
            colour = (
                round(b + (f - b) * white) for b, f in zip(ICON_BACKGROUND, ICON_FOREGROUND, strict=True)
            )
            out += bytes((*colour, round(alpha * 255)))
    return bytes(out)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import zlib

    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


@functools.cache
def icon_png(size: int) -> bytes:
    """The icon as a PNG file of `size` x `size` pixels (standard library only)."""
    import zlib

    pixels, stride = icon_pixels(size), size * 4
    rows = b"".join(b"\x00" + pixels[n * stride : (n + 1) * stride] for n in range(size))
    header = size.to_bytes(4, "big") * 2 + bytes((8, 6, 0, 0, 0))  # 8-bit RGBA
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows, 9))
        + _png_chunk(b"IEND", b"")
    )


def icon_ico(sizes: Iterable[int] = WINDOWS_ICON_SIZES) -> bytes:
    """A Windows .ico holding the icon as PNG images (Windows Vista and later read them)."""
    images = [(size, icon_png(size)) for size in sizes]
    offset = 6 + 16 * len(images)
    head = (0).to_bytes(2, "little") + (1).to_bytes(2, "little") + len(images).to_bytes(2, "little")
    entries = b""
    for size, png in images:
        side = bytes((size % 256, size % 256, 0, 0))  # 0 means 256
        entries += side + (1).to_bytes(2, "little") + (32).to_bytes(2, "little")
        entries += len(png).to_bytes(4, "little") + offset.to_bytes(4, "little")
        offset += len(png)
    return head + entries + b"".join(png for _, png in images)


def icon_icns() -> bytes:
    """A macOS .icns holding the icon as PNG images."""
    body = b"".join(
        kind + (len(png) + 8).to_bytes(4, "big") + png
        for kind, png in ((k, icon_png(s)) for k, s in MAC_ICON_TYPES)
    )
    return b"icns" + (len(body) + 8).to_bytes(4, "big") + body


# Launchers and login services: each platform's files as data (tested as text on any
# platform), written and undone by one Installer that records what it wrote.

SERVICE_ENV = "CLAUDE_SCHEDULER_SERVICE"  # set by the login service: `serve` says so to the window
SERVICE_LABEL = f"io.github.{APP_ID}"
SERVICE_UNIT = f"{APP_ID}.service"
SERVICE_RESTART_SECONDS = 10
TOOL_TIMEOUT_SECONDS = 60
SYSTEMD_SPECIAL = {"\\": "\\\\", '"': '\\"', "%": "%%", "$": "$$"}


class InstallFile(typing.NamedTuple):
    path: Path
    data: bytes
    mode: int = 0o644


@dataclass
class InstallPlan:
    """What installing one thing writes on one platform, and the tool calls around it."""

    platform: str
    files: list[InstallFile]
    command: list[str]  # what the launcher or service runs
    after_install: list[list[str]] = field(default_factory=list)
    before_uninstall: list[list[str]] = field(default_factory=list)
    after_uninstall: list[list[str]] = field(default_factory=list)
    made_by_tools: list[Path] = field(default_factory=list)  # files the after_install calls make
    notes: list[str] = field(default_factory=list)


def app_command(mode: str, home: Path | None, *, platform: str, python: str | None = None) -> list[str]:
    """The command that runs this module with this Python in `mode` (gui or serve); on
    Windows pythonw, which opens no console window."""
    python = python or sys.executable
    if platform == "win32":
        windowless = Path(python).with_name("pythonw.exe")
        python = str(windowless) if windowless.name != Path(python).name else python
    argv = [python, str(Path(__file__).resolve())]
    return argv + (["--home", str(home)] if home else []) + [mode]


def desktop_exec(argv: Sequence[str]) -> str:
    """argv as a freedesktop Exec value: arguments quoted where needed, `%` doubled."""

    def quote(arg: str) -> str:
        if arg and not set(arg) & DESKTOP_EXEC_SPECIAL:
            return arg.replace("%", "%%")
        escaped = "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg)
        return '"' + escaped.replace("%", "%%") + '"'

    return " ".join(quote(arg) for arg in argv)


def systemd_exec(argv: Sequence[str]) -> str:
    """argv as a systemd ExecStart value: each argument double-quoted, specifiers escaped."""
    return " ".join('"' + "".join(SYSTEMD_SPECIAL.get(ch, ch) for ch in arg) + '"' for arg in argv)


def _xdg(env: Mapping[str, str], name: str, user_home: Path, default: str) -> Path:
    value = env.get(name, "")
    return Path(value) if value and Path(value).is_absolute() else user_home / default


def desktop_entry(argv: Sequence[str]) -> str:
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        f"Name={APP_NAME}",
        "GenericName=Task Scheduler",
        f"Comment={APP_COMMENT}",
        f"Exec={desktop_exec(argv)}",
        f"TryExec={argv[0]}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=Development;",
        "Keywords=claude;schedule;cron;automation;",
        "StartupNotify=true",
        f"StartupWMClass={GUI_CLASS_NAME}",
    ]
    return "\n".join(lines) + "\n"


def linux_launcher(env: Mapping[str, str], user_home: Path, argv: list[str]) -> InstallPlan:
    data = _xdg(env, "XDG_DATA_HOME", user_home, ".local/share")
    entry = InstallFile(data / "applications" / f"{APP_ID}.desktop", desktop_entry(argv).encode())
    icons = [
        InstallFile(data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png", icon_png(size))
        for size in LINUX_ICON_SIZES
    ]
    return InstallPlan("linux", [entry, *icons], argv)


def mac_launcher(env: Mapping[str, str], user_home: Path, argv: list[str]) -> InstallPlan:
    import plistlib
    import shlex

    contents = user_home / "Applications" / f"{APP_NAME}.app" / "Contents"
    info = {
        "CFBundleName": APP_NAME,
        "CFBundleDisplayName": APP_NAME,
        "CFBundleIdentifier": SERVICE_LABEL,
        "CFBundleExecutable": APP_ID,
        "CFBundleIconFile": f"{APP_ID}.icns",
        "CFBundlePackageType": "APPL",
        "CFBundleShortVersionString": __version__,
        "NSHighResolutionCapable": True,
    }
    script = f'#!/bin/sh\nexec {shlex.join(argv)} "$@"\n'
    files = [
        InstallFile(contents / "Info.plist", plistlib.dumps(info)),
        InstallFile(contents / "MacOS" / APP_ID, script.encode(), 0o755),
        InstallFile(contents / "Resources" / f"{APP_ID}.icns", icon_icns()),
    ]
    return InstallPlan("darwin", files, argv)


def _powershell_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def windows_launcher(env: Mapping[str, str], user_home: Path, argv: list[str]) -> InstallPlan:
    import subprocess

    local = _xdg(env, "LOCALAPPDATA", user_home, "AppData/Local") / APP_ID
    roaming = _xdg(env, "APPDATA", user_home, "AppData/Roaming")
    shortcut = roaming / "Microsoft" / "Windows" / "Start Menu" / "Programs" / f"{APP_NAME}.lnk"
    icon = InstallFile(local / f"{APP_ID}.ico", icon_ico())
    script = "; ".join(
        [
            f"$s = (New-Object -ComObject WScript.Shell).CreateShortcut({_powershell_text(str(shortcut))})",
            f"$s.TargetPath = {_powershell_text(argv[0])}",
            f"$s.Arguments = {_powershell_text(subprocess.list2cmdline(argv[1:]))}",
            f"$s.IconLocation = {_powershell_text(str(icon.path))}",
            f"$s.Description = {_powershell_text(APP_COMMENT)}",
            "$s.Save()",
        ]
    )
    make = ["powershell", "-NoProfile", "-NonInteractive", "-Command", script]
    return InstallPlan("win32", [icon], argv, after_install=[make], made_by_tools=[shortcut])


LAUNCHERS: dict[str, Callable[[Mapping[str, str], Path, list[str]], InstallPlan]] = {
    "linux": linux_launcher,
    "darwin": mac_launcher,
    "win32": windows_launcher,
}


def systemd_unit(argv: Sequence[str], log_hint: str) -> str:
    return "\n".join(
        [
            "[Unit]",
            f"Description={APP_NAME}: the engine and REST API ({log_hint})",
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={systemd_exec(argv)}",
            f"Environment={SERVICE_ENV}=systemd",
            "Environment=PYTHONUNBUFFERED=1",
            "Restart=on-failure",
            f"RestartSec={SERVICE_RESTART_SECONDS}",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
    )


def linux_service(env: Mapping[str, str], user_home: Path, argv: list[str]) -> InstallPlan:
    unit = _xdg(env, "XDG_CONFIG_HOME", user_home, ".config") / "systemd" / "user" / SERVICE_UNIT
    text = systemd_unit(argv, f"logs: journalctl --user -u {APP_ID}")
    ctl = ["systemctl", "--user"]
    return InstallPlan(
        "linux",
        [InstallFile(unit, text.encode())],
        argv,
        after_install=[[*ctl, "daemon-reload"], [*ctl, "enable", "--now", SERVICE_UNIT]],
        before_uninstall=[[*ctl, "disable", "--now", SERVICE_UNIT]],
        after_uninstall=[[*ctl, "daemon-reload"]],
        notes=[f"logs: journalctl --user -u {APP_ID}"],
    )


def mac_service(env: Mapping[str, str], user_home: Path, argv: list[str]) -> InstallPlan:
    import plistlib

    logs = user_home / "Library" / "Logs" / APP_ID
    agent = user_home / "Library" / "LaunchAgents" / f"{SERVICE_LABEL}.plist"
    definition = {
        "Label": SERVICE_LABEL,
        "ProgramArguments": list(argv),
        "EnvironmentVariables": {SERVICE_ENV: "launchd", "PYTHONUNBUFFERED": "1"},
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart after a failure, not after a stop
        "ThrottleInterval": SERVICE_RESTART_SECONDS,
        "ProcessType": "Background",
        "StandardOutPath": str(logs / "serve.log"),
        "StandardErrorPath": str(logs / "serve.log"),
    }
    domain = f"gui/{os.getuid() if hasattr(os, 'getuid') else 0}"
    return InstallPlan(
        "darwin",
        [InstallFile(agent, plistlib.dumps(definition))],
        argv,
        after_install=[["launchctl", "bootstrap", domain, str(agent)]],
        before_uninstall=[["launchctl", "bootout", f"{domain}/{SERVICE_LABEL}"]],
        notes=[f"logs: {logs / 'serve.log'}"],
    )


def windows_task_xml(argv: Sequence[str], log_file: Path) -> str:
    """A Task Scheduler task that runs `serve` at logon, restarting it after a failure."""
    import subprocess
    from xml.sax.saxutils import escape

    arguments = subprocess.list2cmdline([*argv[1:], "--log-file", str(log_file)])
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-16"?>',
            '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">',
            "  <RegistrationInfo>",
            f"    <Description>{escape(APP_NAME)}: the engine and REST API</Description>",
            "  </RegistrationInfo>",
            "  <Triggers><LogonTrigger><Enabled>true</Enabled></LogonTrigger></Triggers>",
            "  <Principals><Principal><LogonType>InteractiveToken</LogonType>"
            "<RunLevel>LeastPrivilege</RunLevel></Principal></Principals>",
            "  <Settings>",
            "    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>",
            "    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>",
            "    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>",
            "    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>",
            "    <Hidden>true</Hidden>",
            "    <RestartOnFailure><Interval>PT1M</Interval><Count>999</Count></RestartOnFailure>",
            "  </Settings>",
            '  <Actions Context="Author">',
            f"    <Exec><Command>{escape(argv[0])}</Command>",
            f"      <Arguments>{escape(arguments)}</Arguments></Exec>",
            "  </Actions>",
            "</Task>",
            "",
        ]
    )


def windows_service(env: Mapping[str, str], user_home: Path, argv: list[str]) -> InstallPlan:
    local = _xdg(env, "LOCALAPPDATA", user_home, "AppData/Local") / APP_ID
    log_file = local / "logs" / "serve.log"
    definition = local / f"{APP_ID}-task.xml"
    # Task Scheduler reads its XML as UTF-16, as its declaration says.
    xml = InstallFile(definition, windows_task_xml(argv, log_file).encode("utf-16"))
    task = ["schtasks", "/Create", "/F", "/TN", APP_NAME, "/XML", str(definition)]
    return InstallPlan(
        "win32",
        [xml],
        argv,
        after_install=[task, ["schtasks", "/Run", "/TN", APP_NAME]],
        before_uninstall=[
            ["schtasks", "/End", "/TN", APP_NAME],
            ["schtasks", "/Delete", "/F", "/TN", APP_NAME],
        ],
        notes=[f"logs: {log_file}"],
    )


SERVICES: dict[str, Callable[[Mapping[str, str], Path, list[str]], InstallPlan]] = {
    "linux": linux_service,
    "darwin": mac_service,
    "win32": windows_service,
}


class ToolResult(typing.NamedTuple):
    code: int | None  # None: the tool is not there or did not finish
    output: str


def run_tool(argv: list[str]) -> ToolResult:
    """Run a platform tool (systemctl, launchctl, schtasks...) and capture what it says;
    a missing tool or one that hangs is an answer too, never an exception."""
    import subprocess

    if shutil.which(argv[0]) is None:
        return ToolResult(None, f"{argv[0]} is not available here")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return ToolResult(None, f"{argv[0]} did not finish: {error}")
    return ToolResult(done.returncode, (done.stdout + done.stderr).strip())


def _make_parents(folder: Path) -> list[str]:
    """Create `folder` and its missing parents; the ones made, outermost first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    try:
        for path in reversed(missing):
            path.mkdir(mode=0o755, exist_ok=True)
    except OSError as error:
        raise StorageError(f"cannot create {error.filename}: {error.strerror}") from error
    return [str(path) for path in reversed(missing)]


class Installer:
    """Writes an InstallPlan's files, runs its tools, and records in the data home what it
    wrote (`manifest`), so that uninstall removes exactly that: the files, and the folders
    it had to make (when they are left empty). A failing tool is reported, not raised."""

    def __init__(self, manifest: Path, tool: Callable[[list[str]], ToolResult] = run_tool) -> None:
        self.manifest = manifest
        self.tool = tool

    def recorded(self) -> JSONDict | None:
        try:
            record = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def install(self, plan: InstallPlan) -> JSONDict:
        before = self.recorded() or {}
        dirs: list[str] = list(before.get("dirs") or [])
        for item in plan.files:
            dirs += _make_parents(item.path.parent)
            atomic_write(item.path, item.data, item.mode)
            os.chmod(item.path, item.mode)  # atomic_write's mode is for new files only
        written = [str(item.path) for item in plan.files] + [str(path) for path in plan.made_by_tools]
        record = {"platform": plan.platform, "files": written, "dirs": dirs, "command": plan.command}
        # Recorded before the tools run, so that whatever they manage, uninstall can undo it.
        atomic_write(self.manifest, json.dumps(record, indent=2).encode())
        problems = self._run(plan.after_install)
        return {**record, "notes": plan.notes, "problems": problems}

    def uninstall(self, plan: InstallPlan) -> JSONDict:
        record = self.recorded()
        if record is None:  # installed by hand, or the record was lost: the known paths
            known = [str(item.path) for item in plan.files] + [str(path) for path in plan.made_by_tools]
            record = {"files": [path for path in known if Path(path).exists()], "dirs": []}
        problems = self._run(plan.before_uninstall) if record["files"] else []
        removed = [path for path in record["files"] if Store._unlink(Path(path))]
        for folder in sorted(record.get("dirs") or [], key=len, reverse=True):
            with contextlib.suppress(OSError):  # not empty: something else lives there now
                Path(folder).rmdir()
        if record["files"]:
            problems += self._run(plan.after_uninstall)
        with contextlib.suppress(FileNotFoundError):
            self.manifest.unlink()
        return {"platform": plan.platform, "removed": removed, "problems": problems}

    def _run(self, calls: list[list[str]]) -> list[str]:
        problems = []
        for argv in calls:
            result = self.tool(argv)
            if result.code != 0:
                problems.append(f"{' '.join(argv[:4])}: {result.output or f'exit code {result.code}'}")
        return problems


def _service_state_systemd(tool: Callable[[list[str]], ToolResult]) -> JSONDict:
    keys = ("ActiveState", "SubState", "Result", "ExecMainStatus", "ExecMainExitTimestamp", "MainPID")
    result = tool(["systemctl", "--user", "show", SERVICE_UNIT, *(f"--property={key}" for key in keys)])
    if result.code != 0:
        return {"running": None, "state": f"unknown ({result.output})", "last_exit": None}
    values = dict(line.partition("=")[::2] for line in result.output.splitlines())
    exited = values.get("ExecMainExitTimestamp")
    last_exit = f"status {values.get('ExecMainStatus')} at {exited}" if exited else None
    return {
        "running": values.get("ActiveState") == "active",
        "state": f"{values.get('ActiveState')} ({values.get('SubState')}, result {values.get('Result')})",
        "last_exit": last_exit,
    }


def _service_state_launchd(tool: Callable[[list[str]], ToolResult]) -> JSONDict:
    domain = f"gui/{os.getuid() if hasattr(os, 'getuid') else 0}"
    result = tool(["launchctl", "print", f"{domain}/{SERVICE_LABEL}"])
    if result.code != 0:
        return {"running": None, "state": f"unknown ({result.output})", "last_exit": None}
    values = {
        key.strip(): value.strip()
        for key, _, value in (line.partition("=") for line in result.output.splitlines())
    }
    return {
        "running": values.get("state") == "running",
        "state": values.get("state", "unknown"),
        "last_exit": values.get("last exit code"),
    }


def _service_state_schtasks(tool: Callable[[list[str]], ToolResult]) -> JSONDict:
    result = tool(["schtasks", "/Query", "/TN", APP_NAME, "/V", "/FO", "LIST"])
    if result.code != 0:
        return {"running": None, "state": f"unknown ({result.output})", "last_exit": None}
    values = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in result.output.splitlines())
    }
    return {
        "running": values.get("Status") == "Running",
        "state": values.get("Status", "unknown"),
        "last_exit": f"{values.get('Last Result')} at {values.get('Last Run Time')}",
    }


SERVICE_STATES: dict[str, Callable[[Callable[[list[str]], ToolResult]], JSONDict]] = {
    "linux": _service_state_systemd,
    "darwin": _service_state_launchd,
    "win32": _service_state_schtasks,
}


def install_target(
    kind: str, home: Path, home_given: bool, platform: str | None = None
) -> tuple[InstallPlan, Installer]:
    """The plan for `desktop` (the launcher) or `service` (the engine at login) on this
    platform, for this Python, module and data home, and the Installer that keeps its record."""
    platform = platform or platform_key()
    mode, plans, manifest = {
        "desktop": ("gui", LAUNCHERS, DESKTOP_MANIFEST),
        "service": ("serve", SERVICES, SERVICE_MANIFEST),
    }[kind]
    argv = app_command(mode, home if home_given or kind == "service" else None, platform=platform)
    plan = plans[platform](os.environ, Path.home(), argv)
    return plan, Installer(home / manifest)


def service_status(plan: InstallPlan, installer: Installer, engine: JSONDict) -> JSONDict:
    installed = installer.recorded() is not None or all(item.path.exists() for item in plan.files)
    state: JSONDict = {"running": False, "state": "not installed", "last_exit": None}
    if installed:
        state = SERVICE_STATES[plan.platform](installer.tool)
    return {
        "platform": plan.platform,
        "installed": installed,
        "definition": str(plan.files[0].path),
        **state,
        "engine": engine,
        "notes": plan.notes,
    }


####
# HTTP API ####
####

API_THREAD_NAME = "api"
JSON_TYPE = "application/json"
BODY_MAX = 1 << 20  # 1 MiB
# An oversized body is read and dropped up to this size, so the client gets its 413
# instead of a reset connection; past it the connection is simply closed.
BODY_DRAIN_MAX = 16 << 20
DRAIN_CHUNK = 64 << 10
REQUEST_TIMEOUT_SECONDS = 30.0
CLIENT_TIMEOUT_SECONDS = 30.0
LISTEN_BACKLOG = 64
QUERY_FIELDS_MAX = 20
QUERY_DIGITS_MAX = 30
ECHO_MAX = 60  # how much of a bad value an error message repeats
HTTP_DEFAULT_PORT = 80
QUERY_TRUE = ("true", "1", "yes")
QUERY_FALSE = ("false", "0", "no")
UNASSIGNED_QUERY = "none"
# What a client may name as the trigger of a run it asks for; the engine's own triggers
# (schedule, retry, catch_up...) are not a client's to claim.
CLIENT_TRIGGERS = (Trigger.API, Trigger.CLI, Trigger.MANUAL)
OPENAPI_VERSION = "3.1.0"
# Compiled on first use (by re's cache), not at import: the CLI starts faster.
HOST_PATTERN = r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.\-]+))(?::(?P<port>[0-9]{1,5}))?"


def api_token(home: Path, *, create: bool = True) -> str:
    """The API's bearer token, made on first use (secrets module) and kept mode 0600.

    Raises StorageError when it cannot be read, or (with `create=False`) does not exist."""
    path = home / TOKEN_FILE
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        token = ""
    except (OSError, UnicodeDecodeError) as error:
        raise StorageError(f"cannot read the API token {path}: {error}") from None
    if token:
        return token
    if not create:
        raise StorageError(f"no API token at {path}: start the window or `serve` once to create it")
    import secrets

    token = secrets.token_urlsafe(32)
    if not create_once(path, token.encode("ascii") + b"\n"):
        return api_token(home, create=False)  # another process made it first: theirs holds
    return token


# Errors only the HTTP front end raises. Each is an answer: status, code and headers.


class HttpError(SchedulerError):
    """An error about the request itself rather than the data; `headers` go out with it."""

    def __init__(self, message: str, field: str | None = None, *, headers: Mapping[str, str] | None = None):
        super().__init__(message, field)
        self.headers = dict(headers or {})


class Unauthorized(HttpError):
    http_status = HTTPStatus.UNAUTHORIZED
    code = "unauthorized"


class Forbidden(HttpError):
    http_status = HTTPStatus.FORBIDDEN
    code = "forbidden"


class MethodNotAllowed(HttpError):
    http_status = HTTPStatus.METHOD_NOT_ALLOWED
    code = "method_not_allowed"


class PayloadTooLarge(HttpError):
    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"


class UnsupportedMediaType(HttpError):
    http_status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class MisdirectedRequest(HttpError):
    http_status = HTTPStatus.MISDIRECTED_REQUEST
    code = "misdirected_request"


class InternalError(SchedulerError):
    """A bug: the answer says only that; the server's log has the traceback."""

    code = "internal_error"


ERROR_TYPES: dict[str, type[SchedulerError]] = {
    kind.code: kind
    for kind in (
        NotFound,
        Invalid,
        BadRequest,
        Conflict,
        StorageError,
        Unauthorized,
        Forbidden,
        MethodNotAllowed,
        PayloadTooLarge,
        UnsupportedMediaType,
        MisdirectedRequest,
    )
}


# Routing: a table of routes filled by the @api_route decorator. A route function gets
# the service and an ApiCall (checked ids, typed query, parsed body) and returns
# (status, payload); everything about HTTP happens in ApiHandler.


class ApiCall(typing.NamedTuple):
    """One request as a route function sees it."""

    ids: dict[str, str]
    query: dict[str, JSON]
    body: JSON


ApiReply = tuple[HTTPStatus, JSON]
ApiRouteFunc = Callable[[Service, ApiCall], ApiReply]


class QueryKind(typing.NamedTuple):
    parse: Callable[[str, str], JSON]
    schema: JSONDict


class QueryParam(typing.NamedTuple):
    name: str
    kind: QueryKind
    description: str


class ApiRoute(typing.NamedTuple):
    method: str
    template: str
    func: ApiRouteFunc
    summary: str
    status: HTTPStatus
    schema: str
    body: str | None
    body_required: bool
    query: tuple[QueryParam, ...]
    public: bool

    @property
    def id_names(self) -> list[str]:
        return [part[1:-1] for part in self.template.split("/") if part.startswith("{")]

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """The raw ids if a path's segments fit the template (`{name}` takes any one)."""
        parts = self.template.split("/")
        if len(parts) != len(segments):
            return None
        ids: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{") and segment:
                ids[part[1:-1]] = segment
            elif part != segment:
                return None
        return ids


API_ROUTES: list[ApiRoute] = []


def api_route(
    method: str | tuple[str, ...],
    template: str,
    summary: str,
    *,
    schema: str,
    status: HTTPStatus = HTTPStatus.OK,
    body: str | None = None,
    body_required: bool = False,
    query: tuple[QueryParam, ...] = (),
    public: bool = False,
) -> Callable[[ApiRouteFunc], ApiRouteFunc]:
    """Register a route function for one method or several: `template` names its ids
    like `{job_id}`; `schema`, `body` and `summary` describe it in the OpenAPI document."""

    def register(func: ApiRouteFunc) -> ApiRouteFunc:
        for name in (method,) if isinstance(method, str) else method:
            route = ApiRoute(
                name, template, func, summary, status, schema, body, body_required, query, public
            )
            API_ROUTES.append(route)
        return func

    return register


def find_route(method: str, path: str) -> tuple[ApiRoute, dict[str, str]]:
    """The route for a method and path, with its raw ids; NotFound, or MethodNotAllowed
    naming the methods the path takes."""
    allowed: list[str] = []
    segments = path.split("/")
    for route in API_ROUTES:
        ids = route.match(segments)
        if ids is None:
            continue
        if route.method == method:
            return route, ids
        allowed.append(route.method)
    if allowed:
        raise MethodNotAllowed(
            f"{_clip(method, ECHO_MAX)} is not allowed here; use {', '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )
    raise NotFound(f"no such route: {_clip(path, ECHO_MAX)} (GET /api/openapi.json lists them)")


def _parse_int(text: str, name: str) -> int:
    if not re.fullmatch(rf"[+-]?[0-9]{{1,{QUERY_DIGITS_MAX}}}", text):
        raise BadRequest(f"must be a whole number (got {_clip(text, ECHO_MAX)!r})", name)
    return int(text)


def _parse_bool(text: str, name: str) -> bool:
    word = text.lower()
    if word not in QUERY_TRUE + QUERY_FALSE:
        raise BadRequest(f"must be true or false (got {_clip(text, ECHO_MAX)!r})", name)
    return word in QUERY_TRUE


def _parse_uuid(text: str, name: str) -> str:
    if not is_uuid(text):
        raise BadRequest(f"must be a UUID (got {_clip(text, ECHO_MAX)!r})", name)
    return text.lower()


def _parse_job_filter(text: str, name: str) -> str:
    return UNASSIGNED_QUERY if text.lower() == UNASSIGNED_QUERY else _parse_uuid(text, name)


def _parse_text(text: str, name: str) -> str:
    if "\0" in text:  # as in a body's strings (read_str)
        raise BadRequest("must not contain a NUL character", name)
    return text


UUID_SCHEMA: JSONDict = {"type": "string", "format": "uuid"}
TIME_SCHEMA: JSONDict = {"type": "string", "format": "date-time"}
QUERY_INT = QueryKind(_parse_int, {"type": "integer"})
QUERY_BOOL = QueryKind(_parse_bool, {"type": "boolean"})
QUERY_TEXT = QueryKind(_parse_text, {"type": "string"})
QUERY_UUID = QueryKind(_parse_uuid, UUID_SCHEMA)
QUERY_JOB = QueryKind(_parse_job_filter, {"anyOf": [UUID_SCHEMA, {"const": UNASSIGNED_QUERY}]})

FORCE_PARAM = QueryParam("force", QUERY_BOOL, "also when runs are active: they are stopped first")
COUNT_PARAM = QueryParam(
    "count", QUERY_INT, f"how many fire times (1-{PREVIEW_MAX}, default {DEFAULT_PREVIEW})"
)


def parse_query(route: ApiRoute, text: str) -> dict[str, JSON]:
    """The query string as typed values; BadRequest for an unknown, repeated or malformed one."""
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=QUERY_FIELDS_MAX)
    except ValueError as error:
        raise BadRequest(f"bad query string: {error}") from None
    known = {param.name: param for param in route.query}
    values: dict[str, JSON] = {}
    for name, value in pairs:
        param = known.get(name)
        if param is None:
            names = ", ".join(known) or "none"
            raise BadRequest(f"unknown query parameter (this route takes: {names})", _clip(name, ECHO_MAX))
        if name in values:
            raise BadRequest("is given more than once", name)
        values[name] = param.kind.parse(value, name)
    return values


def _body_options(body: JSON, known: tuple[str, ...]) -> JSONDict:
    """An optional options object; unknown fields are refused like everywhere else."""
    options = require_object({} if body is None else body)
    split_known(options, known, strict=True)
    return options


# The routes, in the order of SPEC section 7.

API_JOB_PATH = "/api/jobs/{job_id}"
API_TASK_PATH = "/api/tasks/{task_id}"
API_RUN_PATH = "/api/runs/{run_id}"


@api_route(
    "GET", "/api/health", "Liveness, version and engine state (no token needed)", schema="Health", public=True
)
def _api_health(service: Service, call: ApiCall) -> ApiReply:
    unreadable = sorted(service.store.unreadable_files(read=False))
    body = {"status": "ok", "version": __version__, "engine": service.engine_status()}
    return HTTPStatus.OK, {**body, "unreadable_files": unreadable}


@api_route("GET", "/api/openapi.json", "This OpenAPI document", schema="OpenApiDocument")
def _api_openapi(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, openapi_document()


@api_route("GET", "/api/jobs", "Every job with its progress", schema="JobList")
def _api_list_jobs(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, {"jobs": service.list_jobs()}


@api_route(
    "POST",
    "/api/jobs",
    "Create a job",
    schema="Job",
    status=HTTPStatus.CREATED,
    body="JobCreate",
    body_required=True,
)
def _api_create_job(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.CREATED, service.create_job(call.body)


@api_route("GET", API_JOB_PATH, "A job with its tasks and progress", schema="JobDetail")
def _api_get_job(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.get_job(call.ids["job_id"])


@api_route(
    ("PUT", "PATCH"),
    API_JOB_PATH,
    "Change a job (only the fields given)",
    schema="JobDetail",
    body="JobInput",
    body_required=True,
)
def _api_update_job(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.update_job(call.ids["job_id"], call.body)


@api_route(
    "DELETE",
    API_JOB_PATH,
    "Delete a job with its tasks, runs and logs",
    schema="DeleteResult",
    query=(FORCE_PARAM,),
)
def _api_delete_job(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.delete_job(call.ids["job_id"], force=call.query.get("force", False))


@api_route(
    "GET", API_JOB_PATH + "/delete-preview", "What deleting the job would remove", schema="DeletePreview"
)
def _api_delete_preview(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.delete_preview(call.ids["job_id"])


@api_route(
    "GET",
    API_TASK_PATH + "/delete-preview",
    "What deleting the task would remove",
    schema="TaskDeletePreview",
)
def _api_delete_task_preview(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.delete_task_preview(call.ids["task_id"])


@api_route("GET", API_JOB_PATH + "/tasks", "The job's tasks in its task order", schema="TaskList")
def _api_job_tasks(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, {"tasks": service.job_tasks(call.ids["job_id"])}


@api_route(
    "POST",
    API_JOB_PATH + "/run",
    "Run the job's enabled tasks one after another",
    schema="JobRun",
    status=HTTPStatus.ACCEPTED,
    body="JobRunOptions",
)
def _api_run_job(service: Service, call: ApiCall) -> ApiReply:
    options = _body_options(call.body, ("continue_on_failure", "trigger", "wait_for_engine"))
    keep_going = read_bool(options.get("continue_on_failure", False), "continue_on_failure")
    trigger = read_enum(options.get("trigger", Trigger.API), "trigger", Trigger)
    if trigger not in CLIENT_TRIGGERS:
        raise Invalid(f"must be one of {', '.join(CLIENT_TRIGGERS)} (got {trigger.value!r})", "trigger")
    waits = read_bool(options.get("wait_for_engine", False), "wait_for_engine")
    return HTTPStatus.ACCEPTED, service.run_job(
        call.ids["job_id"], continue_on_failure=keep_going, trigger=trigger, wait_for_engine=waits
    )


@api_route(
    "GET", API_JOB_PATH + "/runs", "The job's runs, newest first, each with its steps", schema="JobRunList"
)
def _api_job_runs(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, {"job_runs": service.list_job_runs(call.ids["job_id"])}


@api_route("POST", API_JOB_PATH + "/stop", "Stop the job's runs", schema="JobStop")
def _api_stop_job(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.stop_job(call.ids["job_id"])


@api_route(
    "GET",
    "/api/tasks",
    "Tasks, oldest first",
    schema="TaskList",
    query=(
        QueryParam(
            "job_id", QUERY_JOB, f"only this job's tasks, or `{UNASSIGNED_QUERY}` for unassigned ones"
        ),
    ),
)
def _api_list_tasks(service: Service, call: ApiCall) -> ApiReply:
    job_id = call.query.get("job_id")
    if job_id == UNASSIGNED_QUERY:
        return HTTPStatus.OK, {"tasks": service.list_tasks(unassigned=True)}
    return HTTPStatus.OK, {"tasks": service.list_tasks(job_id)}


@api_route(
    "POST",
    "/api/tasks",
    "Create a task (its job_id, if any, must exist)",
    schema="Task",
    status=HTTPStatus.CREATED,
    body="TaskCreate",
    body_required=True,
)
def _api_create_task(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.CREATED, service.create_task(call.body)


@api_route("GET", API_TASK_PATH, "A task", schema="Task")
def _api_get_task(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.get_task(call.ids["task_id"])


@api_route(
    "PUT",
    API_TASK_PATH,
    "Change a task: the fields given (a partial retry keeps the retry fields not given; env is replaced)",
    schema="Task",
    body="TaskInput",
    body_required=True,
)
def _api_update_task(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.update_task(call.ids["task_id"], call.body)


@api_route(
    "PATCH",
    API_TASK_PATH,
    "Change a task: as PUT, but env names only the variables to set, and null removes one",
    schema="Task",
    body="TaskPatch",
    body_required=True,
)
def _api_patch_task(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.update_task(call.ids["task_id"], call.body, env_patch=True)


@api_route(
    "DELETE",
    API_TASK_PATH,
    "Delete a task with its runs and logs",
    schema="DeleteResult",
    query=(FORCE_PARAM,),
)
def _api_delete_task(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.delete_task(call.ids["task_id"], force=call.query.get("force", False))


@api_route(
    "POST",
    API_TASK_PATH + "/run",
    "Queue a run of the task for the engine",
    schema="Run",
    status=HTTPStatus.ACCEPTED,
    body="RunOptions",
)
def _api_run_task(service: Service, call: ApiCall) -> ApiReply:
    options = _body_options(call.body, ("trigger", "wait_for_engine"))
    trigger = read_enum(options.get("trigger", Trigger.API), "trigger", Trigger)
    if trigger not in CLIENT_TRIGGERS:
        raise Invalid(f"must be one of {', '.join(CLIENT_TRIGGERS)} (got {trigger.value!r})", "trigger")
    waits = read_bool(options.get("wait_for_engine", False), "wait_for_engine")
    return HTTPStatus.ACCEPTED, service.request_run(call.ids["task_id"], trigger, wait_for_engine=waits)


@api_route("POST", API_TASK_PATH + "/enable", "Let the task fire on its schedule", schema="Task")
def _api_enable_task(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.set_enabled(call.ids["task_id"], True)


@api_route("POST", API_TASK_PATH + "/disable", "Keep the task from firing", schema="Task")
def _api_disable_task(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.set_enabled(call.ids["task_id"], False)


@api_route(
    "GET", API_TASK_PATH + "/next", "The task's next fire times", schema="NextTimes", query=(COUNT_PARAM,)
)
def _api_next_times(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.next_times(call.ids["task_id"], call.query.get("count", DEFAULT_PREVIEW))


PREVIEW_QUERY = (
    QueryParam("cron", QUERY_TEXT, "a cron expression (give exactly one of cron, every_seconds, at)"),
    QueryParam("timezone", QUERY_TEXT, "IANA zone of the cron expression (default: the server's)"),
    QueryParam("every_seconds", QUERY_INT, f"an interval in seconds (at least {MIN_INTERVAL_SECONDS})"),
    QueryParam("at", QUERY_TEXT, "one ISO 8601 time"),
    QueryParam("after", QUERY_TEXT, "start from this ISO 8601 time instead of now"),
    COUNT_PARAM,
)


@api_route(
    "GET",
    "/api/schedule/preview",
    "Fire times and a description of a schedule that need not be saved",
    schema="Preview",
    query=PREVIEW_QUERY,
)
def _api_preview(service: Service, call: ApiCall) -> ApiReply:
    query = call.query
    schedule = _preview_schedule(query)
    return HTTPStatus.OK, service.preview(
        schedule, after=query.get("after"), count=query.get("count", DEFAULT_PREVIEW)
    )


def _preview_schedule(query: dict[str, JSON]) -> JSONDict:
    given = [name for name in ("cron", "every_seconds", "at") if name in query]
    if len(given) != 1:
        raise BadRequest("give exactly one of the query parameters cron, every_seconds or at")
    if "timezone" in query and given != ["cron"]:
        raise BadRequest("goes with cron only", "timezone")
    if given == ["cron"]:
        return {"type": ScheduleType.CRON, "expression": query["cron"], "timezone": query.get("timezone")}
    if given == ["every_seconds"]:
        return {"type": ScheduleType.INTERVAL, "every_seconds": query["every_seconds"]}
    return {"type": ScheduleType.ONCE, "at": query["at"]}


@api_route(
    "GET",
    "/api/runs",
    "Runs, newest first",
    schema="RunList",
    query=(
        QueryParam("task_id", QUERY_UUID, "only this task's runs"),
        QueryParam("job_id", QUERY_UUID, "only runs of this job's tasks"),
        QueryParam("status", QUERY_TEXT, "only runs with this status"),
        QueryParam("limit", QUERY_INT, f"at most this many (1-{RUN_LIST_MAX})"),
    ),
)
def _api_list_runs(service: Service, call: ApiCall) -> ApiReply:
    query = call.query
    runs = service.list_runs(
        task_id=query.get("task_id"),
        job_id=query.get("job_id"),
        status=query.get("status"),
        limit=query.get("limit"),
    )
    return HTTPStatus.OK, {"runs": runs}


@api_route("GET", API_RUN_PATH, "A run", schema="Run")
def _api_get_run(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.get_run(call.ids["run_id"])


@api_route("DELETE", API_RUN_PATH, "Delete a finished run and its log", schema="DeleteResult")
def _api_delete_run(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.delete_run(call.ids["run_id"])


@api_route(
    "GET",
    API_RUN_PATH + "/log",
    "Log bytes from an offset, and the offset to ask for next (for live tailing)",
    schema="LogChunk",
    query=(
        QueryParam("offset", QUERY_INT, "byte offset to read from (default 0)"),
        QueryParam("limit", QUERY_INT, f"at most this many bytes (1-{LOG_CHUNK_MAX})"),
    ),
)
def _api_read_log(service: Service, call: ApiCall) -> ApiReply:
    offset, limit = call.query.get("offset", 0), call.query.get("limit", LOG_CHUNK_MAX)
    return HTTPStatus.OK, service.read_log(call.ids["run_id"], offset, limit)


@api_route("POST", API_RUN_PATH + "/stop", "Stop a run (a queued one is cancelled at once)", schema="Run")
def _api_stop_run(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.stop_run(call.ids["run_id"])


@api_route(
    "GET", "/api/engine", "Who runs the engine, whether it is paused or holds runs", schema="EngineStatus"
)
def _api_engine_status(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.engine_status()


@api_route("POST", "/api/engine/pause", "Start no new runs (running ones go on)", schema="EngineChange")
def _api_pause(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.set_paused(True)


@api_route(
    "POST",
    "/api/engine/resume",
    "Start runs again: lifts the pause and a usage-limit hold",
    schema="EngineChange",
)
def _api_resume(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.set_paused(False)


@api_route("GET", "/api/settings", "The user settings", schema="Settings")
def _api_settings(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.get_settings()


@api_route(
    ("PUT", "PATCH"),
    "/api/settings",
    "Change settings (only the fields given)",
    schema="Settings",
    body="SettingsInput",
    body_required=True,
)
def _api_update_settings(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.update_settings(call.body)


@api_route(
    "GET",
    "/api/doctor",
    "Check the setup: claude, credentials, data home, engine, API and tasks",
    schema="SetupCheckList",
)
def _api_doctor(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, {"checks": service.check_setup()}


@api_route("GET", "/api/usage", "What each job's runs cost and used: today, 7 and 30 days", schema="Usage")
def _api_usage(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.usage()


def _parse_uuid_list(text: str, name: str) -> list[str]:
    return [_parse_uuid(part.strip(), name) for part in text.split(",") if part.strip()]


QUERY_UUIDS = QueryKind(
    _parse_uuid_list, {"type": "string", "description": "comma-separated UUIDs", "example": "UUID,UUID"}
)


@api_route(
    "GET",
    "/api/export",
    "A bundle of jobs and their tasks (optionally runs and logs)",
    schema="Bundle",
    query=(
        QueryParam("job_ids", QUERY_UUIDS, "the jobs to export (default: every job and the tasks in none)"),
        QueryParam("runs", QUERY_BOOL, "also the tasks' finished runs"),
        QueryParam("logs", QUERY_BOOL, "also the runs and their logs"),
    ),
)
def _api_export(service: Service, call: ApiCall) -> ApiReply:
    logs = call.query.get("logs", False)
    bundle = service.export_bundle(
        call.query.get("job_ids", []), runs=call.query.get("runs", False) or logs, logs=logs
    )
    return HTTPStatus.OK, bundle


@api_route(
    "POST",
    "/api/import",
    "Import a bundle with new ids; one bad record refuses it whole",
    schema="ImportReport",
    body="Bundle",
    body_required=True,
    query=(
        QueryParam("dry_run", QUERY_BOOL, "check and report, change nothing"),
        QueryParam("into_job", QUERY_UUID, "put the tasks into this job; create no jobs"),
    ),
)
def _api_import(service: Service, call: ApiCall) -> ApiReply:
    report = service.import_bundle(
        call.body, dry_run=call.query.get("dry_run", False), into_job=call.query.get("into_job")
    )
    return HTTPStatus.OK, report


@api_route(
    "POST",
    API_JOB_PATH + "/duplicate",
    "Copy a job with its tasks (copies start disabled)",
    schema="JobDetail",
    status=HTTPStatus.CREATED,
)
def _api_duplicate_job(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.CREATED, service.duplicate_job(call.ids["job_id"])


@api_route(
    "POST",
    API_TASK_PATH + "/duplicate",
    "Copy a task into the same job (the copy starts disabled)",
    schema="Task",
    status=HTTPStatus.CREATED,
)
def _api_duplicate_task(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.CREATED, service.duplicate_task(call.ids["task_id"])


@api_route(
    "GET", "/api/notifications", "What to be told about, and through which channels", schema="NotifySettings"
)
def _api_notify_settings(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.notify_settings()


@api_route(
    ("PUT", "PATCH"),
    "/api/notifications",
    "Change notification settings (events and desktop field by field, webhooks as a list)",
    schema="NotifySettings",
    body="NotifyInput",
    body_required=True,
)
def _api_update_notify_settings(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, service.update_notify_settings(call.body)


@api_route(
    "GET",
    "/api/notifications/history",
    "The latest deliveries, newest first",
    schema="Deliveries",
    query=(QueryParam("limit", QUERY_INT, f"how many (1-{NOTIFY_HISTORY_MAX})"),),
)
def _api_notify_history(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, {"deliveries": service.notify_history(call.query.get("limit"))}


@api_route("POST", "/api/notifications/test", "Send a sample through each channel", schema="Deliveries")
def _api_notify_test(service: Service, call: ApiCall) -> ApiReply:
    return HTTPStatus.OK, {"deliveries": service.notify_test()}


# The OpenAPI document, built from the route table and the model's enums and limits.


def _schema_ref(name: str) -> JSONDict:
    return {"$ref": f"#/components/schemas/{name}"}


def _schema_nullable(schema: JSONDict) -> JSONDict:
    return {"anyOf": [schema, {"type": "null"}]}


def _schema_array(items: JSONDict) -> JSONDict:
    return {"type": "array", "items": items}


def _schema_object(properties: JSONDict, *, required: Iterable[str] = (), closed: bool = False) -> JSONDict:
    schema: JSONDict = {"type": "object", "properties": properties, "additionalProperties": not closed}
    if required:
        schema["required"] = list(required)
    return schema


def _schema_enum(kind: type[enum.StrEnum]) -> JSONDict:
    return {"type": "string", "enum": [member.value for member in kind]}


def _schema_text(max_len: int = TEXT_MAX) -> JSONDict:
    return {"type": "string", "maxLength": max_len}


def _schema_count(low: int = 0, high: int | None = None) -> JSONDict:
    schema: JSONDict = {"type": "integer", "minimum": low}
    return {**schema, "maximum": high} if high is not None else schema


SCHEDULE_FIELD_SCHEMAS: JSONDict = {
    "at": TIME_SCHEMA,
    "every_seconds": _schema_count(MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS),
    "anchor": _schema_nullable(TIME_SCHEMA),
    "expression": {**_schema_text(NAME_MAX), "description": "5-field cron expression or an @alias"},
    "timezone": _schema_nullable({**_schema_text(NAME_MAX), "description": "IANA zone name"}),
    "path": _schema_text(PATH_MAX),
    "recursive": {"type": "boolean"},
    "debounce_seconds": {"type": "number", "minimum": 0, "maximum": DEBOUNCE_MAX},
}
SCHEDULE_REQUIRED = {"at", "every_seconds", "expression", "path"}


def _schedule_schema() -> JSONDict:
    variants = []
    for kind, names in Schedule.FIELDS.items():
        properties = {"type": {"const": kind.value}} | {name: SCHEDULE_FIELD_SCHEMAS[name] for name in names}
        required = ["type", *(name for name in names if name in SCHEDULE_REQUIRED)]
        variants.append(_schema_object(properties, required=required, closed=True))
    return {"oneOf": variants, "description": "When a task fires; the fields depend on `type`."}


def _task_field_schemas() -> JSONDict:
    """The editable fields of a task."""
    return {
        "job_id": _schema_nullable(UUID_SCHEMA),
        "name": _schema_text(NAME_MAX),
        "prompt": _schema_text(PROMPT_MAX),
        "model": {**_schema_text(NAME_MAX), "description": "sonnet, opus, haiku or a full model id"},
        "permission_mode": {
            **_schema_enum(PermissionMode),
            "description": "; ".join(f"{mode.value}: {text}" for mode, text in PERMISSION_MODE_HELP.items()),
        },
        "working_directory": _schema_nullable(_schema_text(PATH_MAX)),
        "allowed_tools": {
            **_schema_array(_schema_text(NAME_MAX)),
            "description": "tool rules such as Bash(git log:*)",
        },
        "disallowed_tools": _schema_array(_schema_text(NAME_MAX)),
        "max_turns": _schema_nullable(_schema_count(1, MAX_TURNS_MAX)),
        "append_system_prompt": _schema_nullable(
            {**_schema_text(), "description": "added to Claude's system prompt"}
        ),
        "system_prompt": _schema_nullable(
            {**_schema_text(), "description": "replaces Claude's system prompt"}
        ),
        "max_budget_usd": _schema_nullable(
            {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_BUDGET_USD,
                "description": "a run ends once it has cost this much (US dollars)",
            }
        ),
        "fallback_model": _schema_nullable(
            {
                **_schema_text(NAME_MAX),
                "description": "used while the model is overloaded",
            }
        ),
        "add_dirs": {
            **_schema_array(_schema_text(PATH_MAX)),
            "description": "more folders claude may use; ~ and $VAR are expanded, relative ones start at the "
            "working directory; a missing one fails the run",
        },
        "mcp_config": _schema_nullable(
            {**_schema_text(PATH_MAX), "description": "a JSON file of MCP servers, found like add_dirs"}
        ),
        "strict_mcp_config": {"type": "boolean", "description": "only the MCP servers of mcp_config"},
        "extra_args": {
            **_schema_array({"type": "string", "minLength": 1, "maxLength": TEXT_MAX}),
            "description": "more claude arguments, passed last as given; options the scheduler sets "
            "(-p, --output-format, --resume...) or that have a field of their own are refused",
        },
        "session_mode": _schema_enum(SessionMode),
        "timeout_seconds": _schema_count(1, TIMEOUT_MAX),
        "schedule": _schema_ref("Schedule"),
        "enabled": {"type": "boolean"},
        "overlap": _schema_enum(Overlap),
        "catch_up": _schema_enum(CatchUp),
        "retry": _schema_ref("Retry"),
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "fail_on_permission_denials": {
            "type": "boolean",
            "description": "a run in which claude was refused a tool call fails (permission_denied)",
        },
        "on_failure": {
            **_schema_enum(StepFailure),
            "description": "in a job run, after this step fails: stop the job run, continue with "
            "the next step, or retry it (per retry, at least once) and then stop",
        },
        "skip_in_job": {"type": "boolean", "description": "kept in its job but not run in job runs"},
        "run_after": _schema_nullable(
            {
                **_schema_object(
                    {"task_id": UUID_SCHEMA, "when": {**_schema_enum(AfterWhen), "default": "succeeded"}},
                    required=["task_id"],
                    closed=True,
                ),
                "description": "run this task each time that one finishes so (not its runs in job runs); "
                "a cycle is refused",
            }
        ),
    }


ENV_PATCH_SCHEMA: JSONDict = {
    "type": "object",
    "additionalProperties": {"type": ["string", "null"]},
    "description": "the variables to set; null removes one; the others stay",
}


def _task_schemas() -> JSONDict:
    fields = _task_field_schemas()
    derived = {
        "next_run_at": _schema_nullable(TIME_SCHEMA),
        "last_run_at": _schema_nullable(TIME_SCHEMA),
        "last_run_status": _schema_nullable(_schema_enum(RunStatus)),
        "last_session_id": _schema_nullable({"type": "string"}),
        "schedule_text": {"type": "string", "description": "the schedule in words"},
    }
    stamps = {"id": UUID_SCHEMA, "created_at": TIME_SCHEMA, "updated_at": TIME_SCHEMA}
    totals = {
        "allOf": [_schema_ref("Totals")],
        "description": "in the answers about one task (not in lists): what its runs cost and used",
    }
    retry = {
        "max_attempts": _schema_count(0, RETRY_MAX),
        "delay_seconds": _schema_count(0, RETRY_DELAY_MAX),
        "backoff": {"type": "number", "minimum": 1, "maximum": 10},
    }
    return {
        "Schedule": _schedule_schema(),
        "Retry": _schema_object(retry, closed=True),
        "Task": _schema_object(
            {**stamps, **fields, **derived, "totals": totals},
            required=[*stamps, *fields, *derived],
        ),
        "TaskInput": _schema_object(fields, closed=True),
        "TaskPatch": _schema_object({**fields, "env": ENV_PATCH_SCHEMA}, closed=True),
        "TaskCreate": {"allOf": [_schema_ref("TaskInput"), {"required": ["name", "prompt"]}]},
        "TaskList": _schema_object({"tasks": _schema_array(_schema_ref("Task"))}, required=["tasks"]),
        "NextTimes": _schema_object(
            {
                "task_id": UUID_SCHEMA,
                "schedule": _schema_ref("Schedule"),
                "description": {"type": "string"},
                "enabled": {"type": "boolean"},
                "times": _schema_array(TIME_SCHEMA),
            },
            required=["task_id", "schedule", "description", "enabled", "times"],
        ),
        "Preview": _schema_object(
            {
                "schedule": _schema_ref("Schedule"),
                "description": {"type": "string"},
                "times": _schema_array(TIME_SCHEMA),
            },
            required=["schedule", "description", "times"],
        ),
    }


def _job_schemas() -> JSONDict:
    fields = {
        "name": _schema_text(NAME_MAX),
        "description": _schema_text(),
        "status": _schema_enum(JobStatus),
        "working_directory": _schema_nullable(_schema_text(PATH_MAX)),
        "task_order": _schema_array(UUID_SCHEMA),
        "schedule": {**_schema_ref("Schedule"), "description": "when the whole job runs as one job run"},
        "overlap": {
            "enum": [Overlap.SKIP.value, Overlap.QUEUE.value],
            "description": "if its last run still goes",
        },
        "catch_up": _schema_enum(CatchUp),
    }
    stamps = {"id": UUID_SCHEMA, "created_at": TIME_SCHEMA, "updated_at": TIME_SCHEMA}
    derived = {"next_run_at": _schema_nullable(TIME_SCHEMA), "schedule_text": {"type": "string"}}
    progress = {key: _schema_count() for key in ("total", *PROGRESS_KEYS, "done")}
    progress |= {"percent": _schema_count(0, 100), "text": {"type": "string", "description": "done/total"}}
    counts = _schema_object(
        {key: _schema_count() for key in ("jobs", "tasks", "runs", "logs")},
        required=["jobs", "tasks", "runs", "logs"],
    )
    return {
        "Progress": _schema_object(progress, required=list(progress)),
        "Job": _schema_object(
            {**stamps, **fields, **derived, "progress": _schema_ref("Progress")},
            required=[*stamps, *fields, *derived],
        ),
        "JobDetail": {
            "allOf": [
                _schema_ref("Job"),
                _schema_object(
                    {"tasks": _schema_array(_schema_ref("Task")), "totals": _schema_ref("Totals")},
                    required=["tasks", "totals"],
                ),
            ]
        },
        "JobInput": _schema_object(fields, closed=True),
        "JobCreate": {"allOf": [_schema_ref("JobInput"), {"required": ["name"]}]},
        "JobList": _schema_object({"jobs": _schema_array(_schema_ref("Job"))}, required=["jobs"]),
        "DeleteCounts": counts,
        "DeleteResult": _schema_object({"deleted": _schema_ref("DeleteCounts")}, required=["deleted"]),
        "DeletePreview": _schema_object(
            {
                "job": _schema_ref("Job"),
                "counts": _schema_ref("DeleteCounts"),
                "active_runs": _schema_count(),
            },
            required=["job", "counts", "active_runs"],
        ),
        "TaskDeletePreview": _schema_object(
            {
                "task": _schema_ref("Task"),
                "counts": _schema_ref("DeleteCounts"),
                "active_runs": _schema_count(),
            },
            required=["task", "counts", "active_runs"],
        ),
        "JobRunOptions": _schema_object(
            {
                "continue_on_failure": {"type": "boolean", "default": False},
                "trigger": {"enum": list(CLIENT_TRIGGERS), "default": Trigger.API.value},
                "wait_for_engine": {
                    "type": "boolean",
                    "default": False,
                    "description": "when no engine runs, wait for one; by default the job run then "
                    "expires after the start_by_minutes setting",
                },
            },
            closed=True,
        ),
        "JobRun": _schema_object(
            {
                "job_run_id": UUID_SCHEMA,
                "job_id": UUID_SCHEMA,
                "task_ids": _schema_array(UUID_SCHEMA),
                "skipped": {**_schema_array(UUID_SCHEMA), "description": "steps left out (skip_in_job)"},
                "position": _schema_count(),
                "continue_on_failure": {"type": "boolean"},
                "status": _schema_enum(JobRunStatus),
                "trigger": _schema_enum(Trigger),
                "started_at": TIME_SCHEMA,
                "finished_at": _schema_nullable(TIME_SCHEMA),
                "owner": _schema_nullable({"type": "string"}),
                "current_run_id": _schema_nullable(UUID_SCHEMA),
                "scheduled_for": _schema_nullable(TIME_SCHEMA),
                "previous_run_id": _schema_nullable(UUID_SCHEMA),
                "failed_steps": _schema_count(),
                "run": _schema_nullable(_schema_ref("Run")),
            },
            required=["job_run_id", "job_id", "task_ids", "status", "run"],
        ),
        "JobRunStep": _schema_object(
            {
                "task_id": UUID_SCHEMA,
                "task_name": _schema_nullable({"type": "string"}),
                "status": {
                    "enum": [
                        *(status.value for status in RunStatus),
                        JOB_STEP_PENDING,
                        JOB_STEP_SKIPPED,
                        JOB_STEP_NOT_RUN,
                    ]
                },
                "run_id": _schema_nullable(UUID_SCHEMA),
                "attempts": _schema_count(),
                "result": _schema_nullable({"type": "string"}),
            },
            required=["task_id", "task_name", "status", "run_id", "attempts", "result"],
        ),
        "JobRunRecord": _schema_object(
            {
                "id": UUID_SCHEMA,
                "job_id": UUID_SCHEMA,
                "trigger": _schema_enum(Trigger),
                "status": _schema_enum(JobRunStatus),
                "started_at": TIME_SCHEMA,
                "finished_at": _schema_nullable(TIME_SCHEMA),
                "continue_on_failure": {"type": "boolean"},
                "current_run_id": _schema_nullable(UUID_SCHEMA),
                "scheduled_for": _schema_nullable(TIME_SCHEMA),
                "note": _schema_nullable(
                    {"type": "string", "description": "why a fire started no job run, or why it expired"}
                ),
                "steps": _schema_array(_schema_ref("JobRunStep")),
            },
            required=["id", "job_id", "trigger", "status", "started_at", "finished_at", "steps"],
        ),
        "JobRunList": _schema_object(
            {"job_runs": _schema_array(_schema_ref("JobRunRecord"))}, required=["job_runs"]
        ),
        "JobStop": _schema_object(
            {"job_id": UUID_SCHEMA, "stopped_runs": _schema_array(_schema_ref("Run"))},
            required=["job_id", "stopped_runs"],
        ),
    }


def _run_schemas() -> JSONDict:
    nullable_int, nullable_text = _schema_nullable({"type": "integer"}), _schema_nullable({"type": "string"})
    run = {
        "id": UUID_SCHEMA,
        "task_id": UUID_SCHEMA,
        "status": _schema_enum(RunStatus),
        "trigger": _schema_enum(Trigger),
        "created_at": TIME_SCHEMA,
        **{name: _schema_nullable(TIME_SCHEMA) for name in Run.TIMES if name != "created_at"},
        **dict.fromkeys(("exit_code", "output_tokens", "num_turns", "pid"), nullable_int),
        "input_tokens": _schema_nullable(
            {"type": "integer", "description": "all input: uncached, cache read and cache creation"}
        ),
        **dict.fromkeys(("cache_read_tokens", "cache_creation_tokens"), nullable_int),
        "session_duration_ms": _schema_nullable(
            {"type": "integer", "description": "claude's own count of the session's duration"}
        ),
        **dict.fromkeys(("session_id", "model", "result", "error", "owner"), nullable_text),
        "failure_kind": _schema_nullable(
            {**_schema_enum(FailureKind), "description": "why the run failed; null when it did not"}
        ),
        "model_usage": _schema_nullable(
            {"type": "object", "description": "tokens and cost per model (input_tokens there: uncached)"}
        ),
        "permission_denials": _schema_nullable(
            {
                "type": "array",
                "items": {"type": "object"},
                "description": "tool calls the permission mode refused",
            }
        ),
        "attempt": _schema_count(1),
        "cost_usd": _schema_nullable({"type": "number"}),
        "stop_requested": {"type": "boolean"},
        "missed_count": {
            **nullable_int,
            "description": "how many fire times a missed or deferred run (held back by a hold) stands for",
        },
        "job_run_id": _schema_nullable(UUID_SCHEMA),
        "duration_seconds": _schema_nullable(
            {"type": "number", "description": "wall time: from started_at to finished_at"}
        ),
    }
    log_chunk = {
        "run_id": UUID_SCHEMA,
        "offset": _schema_count(),
        "next_offset": _schema_count(),
        "data": {"type": "string", "description": "whole lines only while the run is active"},
        "active": {"type": "boolean"},
    }
    return {
        "Run": _schema_object(run, required=list(run)),
        "RunList": _schema_object({"runs": _schema_array(_schema_ref("Run"))}, required=["runs"]),
        "RunOptions": _schema_object(
            {
                "trigger": {"enum": list(CLIENT_TRIGGERS), "default": Trigger.API.value},
                "wait_for_engine": {
                    "type": "boolean",
                    "default": False,
                    "description": "when no engine runs, wait for one; by default the run then "
                    "expires after the start_by_minutes setting",
                },
            },
            closed=True,
        ),
        "LogChunk": _schema_object(log_chunk, required=list(log_chunk)),
    }


def _usage_schemas() -> JSONDict:
    window = {
        "since": {**TIME_SCHEMA, "description": "the window's first instant: a midnight in the user's zone"},
        "runs": {**_schema_count(), "description": "runs that started (with or without figures)"},
        "cost_usd": {"type": "number", "description": "the sum of the runs' total_cost_usd"},
        "input_tokens": {**_schema_count(), "description": "all input: uncached, cache read and creation"},
        "cache_read_tokens": {**_schema_count(), "description": "part of input_tokens"},
        "cache_creation_tokens": {**_schema_count(), "description": "part of input_tokens"},
        "output_tokens": _schema_count(),
    }
    windows = {name: _schema_ref("UsageWindow") for name in USAGE_WINDOWS}
    job = {"id": UUID_SCHEMA, "name": {"type": "string"}, "totals": _schema_ref("Totals")}
    usage = {
        "zone": {"type": "string", "description": "the IANA zone whose midnights start the windows"},
        "jobs": _schema_array(_schema_object(job, required=list(job))),
        "unassigned": _schema_ref("Totals"),
        "total": _schema_ref("Totals"),
    }
    return {
        "UsageWindow": _schema_object(window, required=list(window)),
        "Totals": {
            **_schema_object(windows, required=list(windows)),
            "description": "runs by when they finished (else started): today since local midnight, "
            "7d and 30d also the 6 and 29 days before",
        },
        "Usage": _schema_object(usage, required=list(usage)),
    }


def _server_schemas() -> JSONDict:
    time = {"type": "string", "format": "date-time"}
    hold = {
        "until": {**time, "description": "when new runs start again (UTC): the limit's reset plus a margin"},
        "until_local": {**time, "description": "the same moment in the engine machine's zone"},
        "timezone": {"type": "string", "description": "that zone's IANA name"},
        "kind": {"enum": list(HOLD_KIND_LABELS)},
        "reason": _schema_nullable({"type": "string", "description": "claude's own sentence"}),
        "run_id": _schema_nullable(UUID_SCHEMA),
        "task_id": _schema_nullable(UUID_SCHEMA),
        "since": _schema_nullable(time),
        "deferred_run_ids": _schema_array(
            {"type": "string", "description": "each task's record of the fires held back (status deferred)"}
        ),
        "deferred_job_run_ids": _schema_array(
            {"type": "string", "description": "each job's record of the fires held back (status deferred)"}
        ),
    }
    engine = {
        "running": {"type": "boolean"},
        "paused": {"type": "boolean"},
        "hold": _schema_nullable(
            {
                **_schema_object(hold, required=list(hold)),
                "description": "a usage- or rate-limit hold: runs of tasks without their own account "
                "(ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN in env) wait until `until`",
            }
        ),
        "owner": _schema_nullable(
            {"type": "object", "description": "pid, host, start time, API and process (serve or window)"}
        ),
        "here": {"type": "boolean", "description": "whether this server's process runs the engine"},
    }
    lifted = {"type": "array", "items": {"enum": ["pause", "hold"]}, "description": "what resume lifted"}
    engine_change = {**engine, "lifted": lifted}
    error = {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "field": _schema_nullable({"type": "string"}),
    }
    check = {
        "check": {"type": "string", "description": "what was checked, e.g. claude, engine, a task's name"},
        "level": {"enum": [CHECK_OK, CHECK_WARNING, CHECK_PROBLEM]},
        "message": {"type": "string"},
        "fix": _schema_nullable({"type": "string", "description": "for a warning or a problem: the fix"}),
    }
    settings = {
        "claude_path": _schema_nullable({"type": "string", "maxLength": PATH_MAX}),
        **{
            name: {"type": "integer", "minimum": lo, "maximum": hi}
            for name, (_, lo, hi) in SETTING_RULES.items()
        },
    }
    return {
        "Settings": _schema_object(settings, required=list(settings)),
        "SettingsInput": _schema_object(settings, closed=True),
        "EngineStatus": _schema_object(engine, required=list(engine)),
        "EngineChange": _schema_object(engine_change, required=list(engine_change)),
        "Health": _schema_object(
            {
                "status": {"const": "ok"},
                "version": {"type": "string"},
                "engine": _schema_ref("EngineStatus"),
                "unreadable_files": {
                    **_schema_array({"type": "string"}),
                    "description": "store files that cannot be read (paths within the data home; "
                    "run files as last read); they are left untouched and the rest of the store "
                    "works on",
                },
            },
            required=["status", "version", "engine", "unreadable_files"],
        ),
        "Error": _schema_object({"error": _schema_object(error, required=list(error))}, required=["error"]),
        "SetupCheck": _schema_object(check, required=list(check)),
        "SetupCheckList": _schema_object(
            {"checks": _schema_array(_schema_ref("SetupCheck"))}, required=["checks"]
        ),
        "OpenApiDocument": {"type": "object", "description": "an OpenAPI 3.1 document"},
    }


def _bundle_schemas() -> JSONDict:
    entry = {"id": UUID_SCHEMA, "source_id": UUID_SCHEMA, "name": {"type": "string"}}
    renamed = {"kind": {"enum": ["job", "task"]}, "from": {"type": "string"}, "to": {"type": "string"}}
    task_entry = {**entry, "job_id": _schema_nullable(UUID_SCHEMA)}
    report = {
        "dry_run": {"type": "boolean"},
        "into_job": _schema_nullable(UUID_SCHEMA),
        "jobs": _schema_array(_schema_object(entry, required=list(entry))),
        "tasks": _schema_array(_schema_object(task_entry, required=list(task_entry))),
        "runs": _schema_count(),
        "logs": _schema_count(),
        "renamed": _schema_array(_schema_object(renamed, required=list(renamed))),
    }
    bundle = {
        "format": {"const": BUNDLE_FORMAT},
        "version": _schema_count(1, BUNDLE_VERSION),
        "exported_at": TIME_SCHEMA,
        "app_version": {"type": "string"},
        "jobs": _schema_array(_schema_ref("Job")),
        "tasks": _schema_array(
            _schema_object(
                {
                    "id": UUID_SCHEMA,
                    "created_at": TIME_SCHEMA,
                    "updated_at": TIME_SCHEMA,
                    **_task_field_schemas(),
                },
                required=["id", "name", "prompt"],
            )
        ),
        "runs": _schema_array(_schema_ref("Run")),
        "logs": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "run id -> log",
        },
    }
    return {
        "Bundle": {
            **_schema_object(bundle, required=["format", "version", "jobs", "tasks"], closed=True),
            "description": "Records as stored; ids refer to each other inside the bundle and are "
            "replaced on import. Derived task fields are left out.",
        },
        "ImportReport": _schema_object(report, required=list(report)),
    }


def _notify_schemas() -> JSONDict:
    events = {name: {"type": "boolean", "description": what} for name, (_, what) in NOTIFY_EVENTS.items()}
    hook = {
        "name": _schema_text(NAME_MAX),
        "url": {"type": "string", "format": "uri"},
        "preset": {"enum": list(WEBHOOK_PRESETS), "default": "json"},
        "timeout_seconds": {"type": "number", "minimum": 0.1, "maximum": WEBHOOK_TIMEOUT_MAX},
        "retries": _schema_count(0, WEBHOOK_RETRIES_MAX),
        "backoff_seconds": {"type": "number", "minimum": 0, "maximum": WEBHOOK_BACKOFF_MAX},
        "events": _schema_nullable(_schema_array({"enum": list(NOTIFY_EVENTS)})),
        "enabled": {"type": "boolean"},
    }
    desktop = {"enabled": {"type": "boolean"}, "command": _schema_nullable(_schema_array({"type": "string"}))}
    tasks = {
        "type": "object",
        "additionalProperties": _schema_object({"events": _schema_object(events, closed=True)}),
    }
    delivery = {
        "id": UUID_SCHEMA,
        "at": TIME_SCHEMA,
        "event": {"type": "string"},
        "channel": {"type": "string", "description": "desktop, or webhook:NAME"},
        "task_id": _schema_nullable(UUID_SCHEMA),
        "run_id": _schema_nullable(UUID_SCHEMA),
        "status": {"enum": ["delivered", "failed"]},
        "attempts": _schema_count(),
        "http_status": _schema_nullable({"type": "integer"}),
        "error": _schema_nullable({"type": "string"}),
    }
    shown_hook = {**hook, "has_secret": {"type": "boolean"}}
    settings = {
        "events": _schema_object(events, required=list(events), closed=True),
        "desktop": _schema_object(desktop, required=list(desktop), closed=True),
        "webhooks": _schema_array(_schema_object(shown_hook, required=list(shown_hook))),
        "tasks": tasks,
    }
    given_hook = {
        **hook,
        "secret": _schema_nullable({**_schema_text(NAME_MAX), "description": "HMAC-SHA256 key"}),
    }
    return {
        "NotifySettings": _schema_object(settings, required=list(settings)),
        "NotifyInput": _schema_object(
            {
                "events": _schema_object(events, closed=True),
                "desktop": _schema_object(desktop, closed=True),
                "webhooks": _schema_array(_schema_object(given_hook, required=["name", "url"], closed=True)),
                "tasks": {"type": "object", "additionalProperties": _schema_nullable({"type": "object"})},
            },
            closed=True,
        ),
        "Deliveries": _schema_object(
            {"deliveries": _schema_array(_schema_object(delivery, required=list(delivery)))},
            required=["deliveries"],
        ),
    }


def _operation(route: ApiRoute, operation_id: str) -> JSONDict:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": UUID_SCHEMA} for name in route.id_names
    ] + [
        {
            "name": param.name,
            "in": "query",
            "required": False,
            "description": param.description,
            "schema": param.kind.schema,
        }
        for param in route.query
    ]
    content = {JSON_TYPE: {"schema": _schema_ref(route.schema)}}
    responses: JSONDict = {str(route.status.value): {"description": route.status.phrase, "content": content}}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    operation: JSONDict = {
        "operationId": operation_id,
        "summary": route.summary,
        "tags": [route.template.split("/")[2].removesuffix(".json")],
        "parameters": parameters,
        "responses": responses,
    }
    if route.body:
        body_content = {JSON_TYPE: {"schema": _schema_ref(route.body)}}
        operation["requestBody"] = {"required": route.body_required, "content": body_content}
    if route.public:
        operation["security"] = []
    return operation


@functools.cache
def openapi_document() -> JSONDict:
    """OpenAPI 3.1 for every route in API_ROUTES. Built once; callers must not change it."""
    uses: dict[ApiRouteFunc, int] = {}
    for route in API_ROUTES:
        uses[route.func] = uses.get(route.func, 0) + 1
    paths: JSONDict = {}
    for route in API_ROUTES:
        name = route.func.__name__.removeprefix("_api_")
        operation_id = name if uses[route.func] == 1 else f"{name}_{route.method.lower()}"
        paths.setdefault(route.template, {})[route.method.lower()] = _operation(route, operation_id)
    error_response = {"description": "an error", "content": {JSON_TYPE: {"schema": _schema_ref("Error")}}}
    schemas = (
        _job_schemas()
        | _task_schemas()
        | _run_schemas()
        | _usage_schemas()
        | _server_schemas()
        | _bundle_schemas()
        | _notify_schemas()
    )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "claude-code-scheduler",
            "version": __version__,
            "description": "Jobs, tasks and runs of unattended Claude Code sessions. Every route but "
            "/api/health needs `Authorization: Bearer <token>` (the `api-token` file in the data home).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {"Error": error_response},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }


# The server: every request goes through ApiHandler._dispatch.
#
# ApiHandler and ApiServer are written as http.server classes, and type-checked as such,
# but they meet their http.server base only when a server is made (`_on_http_base`): a
# process that never serves, such as a CLI call, does not import the HTTP stack.

if TYPE_CHECKING:
    _HandlerBase = http.server.BaseHTTPRequestHandler
    _ServerBase = http.server.ThreadingHTTPServer
else:
    _HandlerBase = _ServerBase = object


@functools.cache
def _on_http_base(cls: type) -> type:
    """ApiHandler or ApiServer (or a subclass) with its http.server base class under it."""
    import http.server

    base: type = http.server.ThreadingHTTPServer
    if issubclass(cls, ApiHandler):
        base = http.server.BaseHTTPRequestHandler
    if issubclass(cls, base):
        return cls
    return type(cls.__name__, (cls, base), {"__module__": cls.__module__})


class ApiHandler(_HandlerBase):
    """One request: its transport checked (size, Host, Origin, token, content type), its
    route called, and every outcome answered as JSON. Errors are translated here only."""

    server: ApiServer
    server_version = f"claude-code-scheduler/{__version__}"
    protocol_version = "HTTP/1.1"
    # Answers to requests too broken to name a version still get a status line and headers.
    default_request_version = "HTTP/1.0"
    timeout = REQUEST_TIMEOUT_SECONDS
    disable_nagle_algorithm = True

    def __getattr__(self, name: str) -> Callable[[], None]:
        # http.server looks up do_<METHOD>: every method, known or not, goes to the one
        # handler, so an odd method gets a JSON 405 with Allow rather than an HTML 501.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _handle(self) -> None:
        headers: Mapping[str, str] = {}
        try:
            status, payload = self._dispatch()
        except SchedulerError as error:
            status, payload = HTTPStatus(error.http_status), _error_body(error)
            headers = error.headers if isinstance(error, HttpError) else {}
        except Exception:
            logger().exception("api: %s %s failed", self.command, self.path.partition("?")[0])
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            payload = _error_body(InternalError("internal error: the server's log has the details"))
        self._send(status, payload, headers)

    def _dispatch(self) -> ApiReply:
        body = self._receive()
        self._check_peer()
        target = _request_target(self.path)
        route, raw_ids = find_route(self.command, target.path.rstrip("/") or "/")
        if not route.public:
            self._check_token()
        ids = {name: _parse_uuid(value, name) for name, value in raw_ids.items()}
        call = ApiCall(ids, parse_query(route, target.query), self._json_body(route, body))
        return route.func(self.server.service, call)

    def _receive(self) -> bytes:
        """The request body, framed by Content-Length. A request whose framing cannot be
        trusted closes the connection after the answer."""
        lengths = set(self.headers.get_all("Content-Length") or [])
        if self.headers.get("Transfer-Encoding") or len(lengths) > 1:
            self.close_connection = True
            raise BadRequest("send the body with one Content-Length (chunked bodies are not supported)")
        text = lengths.pop().strip() if lengths else "0"
        if not (text.isascii() and text.isdigit()):
            self.close_connection = True
            raise BadRequest(f"Content-Length must be a number of bytes (got {_clip(text, ECHO_MAX)!r})")
        length = int(text)
        if length > BODY_MAX:
            self._drop_body(length)
            raise PayloadTooLarge(f"the body is {length} bytes; the limit is {BODY_MAX}")
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes:
        try:
            data = self.rfile.read(length) if length else b""
        except OSError:  # includes timeouts: the client stopped sending
            data = b""
        if len(data) < length:
            self.close_connection = True
            raise BadRequest(f"the body ended after {len(data)} of its {length} bytes")
        return data

    def _drop_body(self, length: int) -> None:
        self.close_connection = True
        if length > BODY_DRAIN_MAX:
            return
        with contextlib.suppress(OSError):
            while length > 0 and (chunk := self.rfile.read(min(length, DRAIN_CHUNK))):
                length -= len(chunk)

    def _check_peer(self) -> None:
        """Refuse DNS-rebinding (a foreign Host) and cross-site requests (a foreign Origin)."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or not self.server.allows_host(hosts[0]):
            raise MisdirectedRequest(
                "the Host header must name this server (a loopback address or its --host)"
            )
        origins = self.headers.get_all("Origin") or []  # each one: a browser may send a second
        if not all(self.server.is_own_origin(origin) for origin in origins):
            raise Forbidden("requests from other web origins are refused")

    def _check_token(self) -> None:
        scheme, _, given = (self.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not self.server.token_matches(given.strip()):
            raise Unauthorized(
                "missing or wrong API token: send `Authorization: Bearer <token>` with the token "
                "from the api-token file in the data home",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def _json_body(self, route: ApiRoute, body: bytes) -> JSON:
        if not body:
            if route.body_required:
                raise BadRequest("this request needs a JSON body")
            return None
        charset = self.headers.get_content_charset("utf-8")
        if self.headers.get_content_type() != JSON_TYPE or charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"send the body as {JSON_TYPE} (UTF-8)")
        if route.body is None:
            raise BadRequest("this request takes no body")
        return parse_json_body(body)

    def _send(self, status: HTTPStatus, payload: JSON, headers: Mapping[str, str]) -> None:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        body = text.encode("utf-8", "backslashreplace")  # a lone surrogate echoed back: its JSON escape
        try:
            self.send_response(status)
            self.send_header("Content-Type", JSON_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:  # the client is gone: nobody is left to answer
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server answers broken request lines and oversized headers itself: in JSON too."""
        status = HTTPStatus(code)
        self.close_connection = True
        error = {
            "code": status.phrase.lower().replace(" ", "_"),
            "message": message or status.phrase,
            "field": None,
        }
        self._send(status, {"error": error}, {})

    def log_message(self, format: str, *args: object) -> None:
        logger().debug("api: " + format, *args)


def _error_body(error: SchedulerError) -> JSONDict:
    return {"error": {"code": error.code, "message": error.message, "field": error.field}}


def _request_target(target: str) -> urllib.parse.SplitResult:
    """The path and query of an origin-form request target (`/api/...`)."""
    if not target.startswith("/") or target.startswith("//"):
        raise BadRequest("the request target must be a path such as /api/jobs")
    try:
        return urllib.parse.urlsplit(target)
    except ValueError as error:
        raise BadRequest(f"bad request target: {error}") from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json_body(body: bytes) -> JSON:
    """Parse a request body; BadRequest for anything that is not strict UTF-8 JSON."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"the body is not valid JSON: {_clip(str(error), ECHO_MAX * 2)}") from None


def _host_name(value: str) -> str | None:
    """The host of a Host header value (`name`, `name:port`, `[v6]:port`); None if malformed."""
    match = re.fullmatch(HOST_PATTERN, value.strip().lower())
    if match is None:
        return None
    return str(match["ipv6"] or match["name"]).rstrip(".")


def _is_loopback(name: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost"


class ApiServer(_ServerBase):
    """The REST API over a Service; `start` serves it from a daemon thread, `stop` ends it.

    Holds the token (read once) and the names the Host header may use: loopback names and
    addresses, and the host it was asked to bind."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG
    timeout = 0.0  # handle_request runs only once select has seen a connection waiting

    def __new__(cls, *args: Any, **kwargs: Any) -> ApiServer:
        made: type[ApiServer] = _on_http_base(cast("type", cls))  # (mypy wrongly finds a class unhashable)
        return object.__new__(made)

    def __init__(self, service: Service, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        import socket

        self.service = service
        self._token = api_token(service.store.home).encode()
        self._host_names = frozenset({host.strip("[]").lower().rstrip(".")})
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host.strip("[]"), port), _on_http_base(ApiHandler))
        except (OSError, OverflowError) as error:
            reason = getattr(error, "strerror", None) or error
            raise SchedulerError(
                f"cannot serve the API on {host}:{port}: {reason}; pick another --port"
            ) from None

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall on DNS.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def address(self) -> str:
        host = f"[{self.server_name}]" if ":" in self.server_name else self.server_name
        return f"http://{host}:{self.server_port}"

    def allows_host(self, value: str) -> bool:
        name = _host_name(value)
        return name is not None and (name in self._host_names or _is_loopback(name))

    def is_own_origin(self, origin: str) -> bool:
        try:
            parts = urllib.parse.urlsplit(origin.strip())
            port = parts.port or HTTP_DEFAULT_PORT
        except ValueError:
            return False
        name = (parts.hostname or "").rstrip(".")
        own_name = name in self._host_names or _is_loopback(name)
        return parts.scheme == "http" and own_name and port == self.server_port and parts.path in ("", "/")

    def token_matches(self, given: str) -> bool:
        import hmac

        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._token)

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self._serve, name=API_THREAD_NAME, daemon=True)
        self._thread.start()
        return self._thread

    def _serve(self) -> None:
        # Unlike serve_forever, which polls every half second, this sleeps in select until
        # a connection comes or `stop` writes to the wake-up socket: idle costs nothing
        # and stopping is immediate.
        import selectors

        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if any(key.fileobj is self.socket for key, _ in selector.select()):
                    self.handle_request()

    def stop(self) -> None:
        """Stop accepting, wait for the serving thread to end, close the socket. Idempotent."""
        self._stopping.set()
        if self._thread is not None:
            with contextlib.suppress(OSError):
                self._wake_writer.send(b"\0")
            self._thread.join()
            self._thread = None
        self.server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def handle_error(self, request: object, client_address: object) -> None:
        logger().debug("api: connection from %s failed", client_address, exc_info=True)


# The client: the CLI's --api mode.


class ApiClient:
    """The Service operations the CLI uses, over HTTP: the same names, arguments and return
    shapes. An error answer is raised as the SchedulerError it came from (same message,
    same exit code); a server that cannot be reached raises ApiUnreachable (exit 3)."""

    remote = True

    def __init__(self, url: str, token: str, *, timeout: float = CLIENT_TIMEOUT_SECONDS) -> None:
        self.url, self._host, self._port = _parse_api_url(url)
        self._token = token
        self.timeout = timeout

    @classmethod
    def for_home(cls, url: str, home: Path) -> ApiClient:
        """A client that uses the token of the data home `home`."""
        try:
            token = api_token(home, create=False)
        except StorageError as error:
            raise ApiUnreachable(f"cannot use the API at {url}: {error.message}") from None
        return cls(url, token)

    # Jobs --------------------------------------------------------------------

    def list_jobs(self) -> list[JSONDict]:
        return self._items("/api/jobs", "jobs")

    def get_job(self, job_id: str) -> JSONDict:
        return self._object("GET", _api_path("jobs", job_id))

    def job_tasks(self, job_id: str) -> list[JSONDict]:
        return self._items(_api_path("jobs", job_id, "tasks"), "tasks")

    def create_job(self, data: JSON) -> JSONDict:
        return self._object("POST", "/api/jobs", body=data)

    def update_job(self, job_id: str, data: JSON) -> JSONDict:
        return self._object("PATCH", _api_path("jobs", job_id), body=data)

    def delete_preview(self, job_id: str) -> JSONDict:
        return self._object("GET", _api_path("jobs", job_id, "delete-preview"))

    def delete_task_preview(self, task_id: str) -> JSONDict:
        return self._object("GET", _api_path("tasks", task_id, "delete-preview"))

    def delete_job(self, job_id: str, *, force: bool = False) -> JSONDict:
        return self._object("DELETE", _api_path("jobs", job_id), {"force": force})

    # Tasks -------------------------------------------------------------------

    def list_tasks(self, job_id: str | None = None, *, unassigned: bool = False) -> list[JSONDict]:
        return self._items(
            "/api/tasks", "tasks", {"job_id": job_id or (UNASSIGNED_QUERY if unassigned else None)}
        )

    def get_task(self, task_id: str) -> JSONDict:
        return self._object("GET", _api_path("tasks", task_id))

    def create_task(self, data: JSON) -> JSONDict:
        return self._object("POST", "/api/tasks", body=data)

    def update_task(self, task_id: str, data: JSON, *, env_patch: bool = False) -> JSONDict:
        return self._object("PATCH" if env_patch else "PUT", _api_path("tasks", task_id), body=data)

    def set_enabled(self, task_id: str, enabled: bool) -> JSONDict:
        return self._object("POST", _api_path("tasks", task_id, "enable" if enabled else "disable"))

    def delete_task(self, task_id: str, *, force: bool = False) -> JSONDict:
        return self._object("DELETE", _api_path("tasks", task_id), {"force": force})

    def next_times(self, task_id: str, count: int = DEFAULT_PREVIEW) -> JSONDict:
        return self._object("GET", _api_path("tasks", task_id, "next"), {"count": count})

    def preview(self, schedule: JSON, *, after: str | None = None, count: int = DEFAULT_PREVIEW) -> JSONDict:
        query = {**_preview_query(schedule), "after": after, "count": count}
        return self._object("GET", "/api/schedule/preview", query)

    # Runs --------------------------------------------------------------------

    def list_runs(
        self,
        *,
        task_id: str | None = None,
        job_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[JSONDict]:
        query = {"task_id": task_id, "job_id": job_id, "status": status, "limit": limit}
        return self._items("/api/runs", "runs", query)

    def get_run(self, run_id: str) -> JSONDict:
        return self._object("GET", _api_path("runs", run_id))

    def delete_run(self, run_id: str) -> JSONDict:
        return self._object("DELETE", _api_path("runs", run_id))

    def request_run(
        self, task_id: str, trigger: Trigger = Trigger.MANUAL, *, wait_for_engine: bool = False
    ) -> JSONDict:
        body = {"trigger": trigger, "wait_for_engine": wait_for_engine}
        return self._object("POST", _api_path("tasks", task_id, "run"), body=body)

    def run_job(
        self,
        job_id: str,
        *,
        continue_on_failure: bool = False,
        trigger: Trigger = Trigger.MANUAL,
        wait_for_engine: bool = False,
    ) -> JSONDict:
        body = {
            "continue_on_failure": continue_on_failure,
            "trigger": trigger,
            "wait_for_engine": wait_for_engine,
        }
        return self._object("POST", _api_path("jobs", job_id, "run"), body=body)

    def list_job_runs(self, job_id: str) -> list[JSONDict]:
        return self._items(_api_path("jobs", job_id, "runs"), "job_runs")

    def stop_job(self, job_id: str) -> JSONDict:
        return self._object("POST", _api_path("jobs", job_id, "stop"))

    def stop_run(self, run_id: str) -> JSONDict:
        return self._object("POST", _api_path("runs", run_id, "stop"))

    def read_log(self, run_id: str, offset: int = 0, limit: int = LOG_CHUNK_MAX) -> JSONDict:
        return self._object("GET", _api_path("runs", run_id, "log"), {"offset": offset, "limit": limit})

    def resolve(self, kind: str, text: str) -> str:
        """A full id from a unique prefix, by the same rule (`match_id`) as direct mode."""
        collection = f"{kind}s"
        wanted = text.strip().lower()
        if is_uuid(wanted):  # a whole id needs no list, only a look at that one record
            return match_id(kind, text, [wanted] if self._exists(_api_path(collection, wanted)) else [])
        query = {"limit": RUN_LIST_MAX} if kind == "run" else {}
        items = self._items(f"/api/{collection}", collection, query)
        return match_id(kind, text, (str(item.get("id")) for item in items))

    def usage(self) -> JSONDict:
        return self._object("GET", "/api/usage")

    # Engine ------------------------------------------------------------------

    def engine_status(self) -> JSONDict:
        return self._object("GET", "/api/engine")

    def set_paused(self, paused: bool) -> JSONDict:
        return self._object("POST", "/api/engine/pause" if paused else "/api/engine/resume")

    def get_settings(self) -> JSONDict:
        return self._object("GET", "/api/settings")

    def update_settings(self, data: JSON) -> JSONDict:
        return self._object("PATCH", "/api/settings", body=data)

    def check_setup(self) -> list[JSONDict]:
        return self._items("/api/doctor", "checks")

    # Import, export and copies ---------------------------------------------------

    def export_bundle(
        self, job_ids: Sequence[str] = (), *, runs: bool = False, logs: bool = False
    ) -> JSONDict:
        query = {"job_ids": ",".join(job_ids) or None, "runs": runs, "logs": logs}
        return self._object("GET", "/api/export", query)

    def import_bundle(self, bundle: JSON, *, dry_run: bool = False, into_job: str | None = None) -> JSONDict:
        return self._object("POST", "/api/import", {"dry_run": dry_run, "into_job": into_job}, body=bundle)

    def duplicate_job(self, job_id: str) -> JSONDict:
        return self._object("POST", _api_path("jobs", job_id, "duplicate"))

    def duplicate_task(self, task_id: str) -> JSONDict:
        return self._object("POST", _api_path("tasks", task_id, "duplicate"))

    # Notifications -------------------------------------------------------------

    def notify_settings(self) -> JSONDict:
        return self._object("GET", "/api/notifications")

    def update_notify_settings(self, data: JSON) -> JSONDict:
        return self._object("PATCH", "/api/notifications", body=data)

    def notify_history(self, limit: int | None = None) -> list[JSONDict]:
        return self._items("/api/notifications/history", "deliveries", {"limit": limit})

    def notify_test(self) -> list[JSONDict]:
        deliveries = self._object("POST", "/api/notifications/test").get("deliveries")
        return deliveries if isinstance(deliveries, list) else []

    # HTTP --------------------------------------------------------------------

    def _exists(self, path: str) -> bool:
        try:
            self._object("GET", path)
        except NotFound:
            return False
        return True

    def _items(self, path: str, key: str, query: Mapping[str, JSON] | None = None) -> list[JSONDict]:
        items = self._object("GET", path, query).get(key)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ApiUnreachable(f"{self.url} answered {path} without a list of {key}")
        return items

    def _object(
        self, method: str, path: str, query: Mapping[str, JSON] | None = None, *, body: JSON = None
    ) -> JSONDict:
        payload = self._call(method, path + _query_string(query or {}), body)
        if not isinstance(payload, dict):
            raise ApiUnreachable(
                f"{self.url} answered {method} {path} with something other than a JSON object"
            )
        return payload

    def _call(self, method: str, target: str, body: JSON) -> JSON:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": JSON_TYPE}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = JSON_TYPE
        import http.client

        connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            raise ApiUnreachable(f"cannot reach the API server at {self.url}: {reason}") from None
        finally:
            connection.close()
        return _answer_payload(self.url, status, raw)


def _parse_api_url(url: str) -> tuple[str, str, int]:
    """(base URL, host, port) of an `http://host:port` address (the scheme may be left out)."""
    try:
        parts = urllib.parse.urlsplit(url.strip() if "://" in url else f"http://{url.strip()}")
        port = parts.port or HTTP_DEFAULT_PORT
    except ValueError:
        parts, port = None, 0
    if parts is None or parts.scheme != "http" or not parts.hostname:
        raise ApiUnreachable(f"{url!r} is not an API address like http://127.0.0.1:{DEFAULT_PORT}")
    return f"http://{parts.netloc}", parts.hostname, port


def _api_path(collection: str, record_id: str, action: str | None = None) -> str:
    path = f"/api/{collection}/{urllib.parse.quote(record_id, safe='')}"
    return f"{path}/{action}" if action else path


def _query_string(query: Mapping[str, JSON]) -> str:
    pairs = {
        name: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for name, value in query.items()
        if value is not None
    }
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""


def _preview_query(schedule: JSON) -> JSONDict:
    """A schedule as the preview route's query parameters (cron, interval and once)."""
    data = require_object(schedule, "schedule")
    kind = data.get("type")
    if kind == ScheduleType.CRON:
        return {"cron": data.get("expression"), "timezone": data.get("timezone")}
    if kind == ScheduleType.INTERVAL:
        return {"every_seconds": data.get("every_seconds")}
    if kind == ScheduleType.ONCE:
        return {"at": data.get("at")}
    raise BadRequest(
        "only cron, interval and once schedules can be previewed through the API", "schedule.type"
    )


def _answer_payload(url: str, status: int, raw: bytes) -> JSON:
    """The JSON of an answer; an error answer is raised as the error it names."""
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        raise ApiUnreachable(
            f"{url} did not answer in JSON (HTTP {status}): is it claude-code-scheduler?"
        ) from None
    if status < HTTPStatus.BAD_REQUEST:
        return payload
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        raise SchedulerError(f"the API server answered HTTP {status}")
    kind = ERROR_TYPES.get(str(error.get("code")), SchedulerError)
    field = error.get("field")
    raise kind(str(error.get("message")), field if isinstance(field, str) else None)


####
# CLI ####
####

Row = Callable[[JSONDict], str]


def _short(value: JSON) -> str:
    return str(value)[:ID_PREFIX_LEN] if value else "-"


def _when(value: JSON) -> str:
    return fmt_local(parse_time(value, "time")) if value else "-"


def _money(value: JSON) -> str:
    return f"${value:.4f}" if isinstance(value, int | float) else "-"


def _seconds(value: JSON) -> str:
    return f"{value:.1f}s" if isinstance(value, int | float) else "-"


def short_ids(ids: Iterable[str]) -> dict[str, str]:
    """Each id's shortest prefix of at least ID_PREFIX_LEN characters that no other of
    `ids` starts with: one length for an id everywhere it is shown to people."""
    ordered = sorted(set(ids))
    shown = {}
    for at, ident in enumerate(ordered):
        shared = max((_shared_len(ident, other) for other in ordered[max(at - 1, 0) : at + 2]), default=0)
        shown[ident] = ident[: max(ID_PREFIX_LEN, shared + 1)]
    return shown


def _shared_len(one: str, other: str) -> int:
    if one == other:
        return 0
    return next(
        (n for n, (a, b) in enumerate(zip(one, other, strict=False)) if a != b), min(len(one), len(other))
    )


def for_table(
    rows: list[JSONDict], ref: str | None = None, names: Mapping[str, str] | None = None
) -> list[JSONDict]:
    """Rows with what a table shows besides their fields: `short_id`, and `ref_name`, the
    name of the record `ref` (job_id, task_id) points to, from `names`."""
    shorts = short_ids(row["id"] for row in rows)
    names = names or {}
    return [
        {**row, "short_id": shorts[row["id"]], "ref_name": names.get(row[ref]) if ref and row[ref] else None}
        for row in rows
    ]


JOB_COLUMNS: tuple[tuple[str, Row], ...] = (
    ("NAME", lambda job: job["name"]),
    ("ID", lambda job: job["short_id"]),
    ("STATUS", lambda job: job["status"]),
    ("PROGRESS", lambda job: f"{job['progress']['text']} ({job['progress']['percent']}%)"),
    ("RUNNING", lambda job: str(job["progress"]["running"])),
    ("FAILED", lambda job: str(job["progress"]["failed"])),
    ("UPDATED", lambda job: _when(job["updated_at"])),
)
TASK_COLUMNS: tuple[tuple[str, Row], ...] = (
    ("NAME", lambda task: task["name"]),
    ("ID", lambda task: task["short_id"]),
    ("JOB", lambda task: task["ref_name"] or _short(task["job_id"])),
    ("SCHEDULE", lambda task: task["schedule_text"]),
    ("NEXT RUN", lambda task: _next_run_text(task)),
    ("LAST", lambda task: task["last_run_status"] or "never"),
)


def _next_run_text(task: JSONDict) -> str:
    """When the task fires next; `held until …` when that falls in a usage-limit hold
    that concerns it (`held_until`, set by the caller, which knows the engine's hold)."""
    if not task["enabled"]:
        return "disabled"
    held_until = task.get("held_until")
    next_run = task["next_run_at"]
    if held_until and next_run and parse_time(next_run, "next_run_at") < parse_time(held_until, "until"):
        return f"held until {_when(held_until)}"
    return _when(task["next_run_at"])


DENIALS_MARK = "⚠"  # beside a run's status: tool calls were refused


def run_status_text(run: Mapping[str, JSON]) -> str:
    """`failed (auth)`, `success ⚠1`: the status, the kind of failure, a mark for denials."""
    kind = describe_kind(run.get("failure_kind"))
    denials = run.get("permission_denials")
    marked = f" {DENIALS_MARK}{len(denials)}" if isinstance(denials, list) and denials else ""
    return f"{run['status']}" + (f" ({kind})" if kind else "") + marked


JOB_STEP_COLUMNS: tuple[tuple[str, Row], ...] = (
    ("STEP", lambda step: step["task_name"] or f"(deleted task {_short(step['task_id'])})"),
    ("STATUS", lambda step: step["status"]),
    ("RUN", lambda step: _short(step["run_id"])),
    ("ATTEMPTS", lambda step: str(step["attempts"])),
)
RUN_COLUMNS: tuple[tuple[str, Row], ...] = (
    ("TASK", lambda run: run["ref_name"] or _short(run["task_id"])),
    ("ID", lambda run: run["short_id"]),
    ("STATUS", run_status_text),
    ("TRIGGER", lambda run: run["trigger"]),
    ("STARTED", lambda run: _when(run["started_at"] or run["created_at"])),
    ("WALL TIME", lambda run: _seconds(run["duration_seconds"])),
    ("COST", lambda run: _money(run["cost_usd"])),
    ("TOKENS", lambda run: run_tokens(run) or "-"),
    ("ERROR", lambda run: (run["error"] or "")[:60]),
)
# A job's or task's totals: one row per window of USAGE_WINDOWS.
USAGE_LABELS = {"today": "today", "7d": "7 days", "30d": "30 days"}
TOTALS_COLUMNS: tuple[tuple[str, Row], ...] = (
    ("USAGE", lambda row: USAGE_LABELS[row["window"]]),
    ("COST", lambda row: _money(row["cost_usd"])),
    ("TOKENS IN", lambda row: _tokens_in(row)),
    ("OUT", lambda row: f"{row['output_tokens']:,}"),
    ("RUNS", lambda row: str(row["runs"])),
)
# `jobs usage`: one row per job, then the unassigned tasks and the sum.
USAGE_COLUMNS: tuple[tuple[str, Row], ...] = (
    ("JOB", lambda row: row["name"]),
    ("ID", lambda row: _short(row["id"])),
    *(
        (USAGE_LABELS[name].upper(), lambda row, name=name: _money(row["totals"][name]["cost_usd"]))
        for name in USAGE_WINDOWS
    ),
    ("RUNS (30 DAYS)", lambda row: str(row["totals"]["30d"]["runs"])),
    ("TOKENS IN (30 DAYS)", lambda row: _tokens_in(row["totals"]["30d"])),
    ("OUT (30 DAYS)", lambda row: f"{row['totals']['30d']['output_tokens']:,}"),
)
CELL_MAX = 48
DOCTOR_WIDTH = 100  # the table's width when the terminal's is unknown
DOCTOR_LEVEL_WIDTH = len(CHECK_WARNING)
DOCTOR_CHECK_MAX = 26  # a longer check (a task's name) is clipped
DOCTOR_TEXT_MIN = 30  # the message column, however narrow the terminal


def _tokens_in(window: JSONDict) -> str:
    """All input tokens, with the part that went through the prompt cache (read or written)."""
    cached = window["cache_read_tokens"] + window["cache_creation_tokens"]
    return f"{window['input_tokens']:,} ({cached:,} cached)"


def _totals_text(totals: JSONDict) -> str:
    return format_table([{"window": name, **totals[name]} for name in USAGE_WINDOWS], TOTALS_COLUMNS)


# Characters a terminal acts on rather than shows: C0 controls but tab and newline, DEL,
# C1 controls, and the bidirectional overrides that reorder what is shown.
CONTROL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """`text` with each control character shown as an escape (ESC as \\x1b): what a session
    printed, or a name someone chose, cannot retitle, clear or write to the clipboard of
    the terminal it is shown on. For every human-readable output; --json and --raw stay
    exact."""
    return CONTROL_CHARS.sub(_control_escape, text)


def _control_escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


ELASTIC_COLUMNS = ("NAME", "JOB", "TASK")  # names: elided with … to fit the terminal
ELASTIC_MIN = 10


def format_table(rows: list[JSONDict], columns: tuple[tuple[str, Row], ...]) -> str:
    cells = [[_cell(render(row)) for _, render in columns] for row in rows]
    headers = [title for title, _ in columns]
    widths = [max(map(_text_width, column)) for column in zip(headers, *cells, strict=False)]
    _fit(widths, headers, shutil.get_terminal_size((0, 0)).columns)
    cells = [[_clip(text, width) for text, width in zip(line, widths, strict=True)] for line in cells]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(t + " " * (w - _text_width(t)) for t, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _fit(widths: list[int], headers: list[str], room: int) -> None:
    """Narrow the name columns, widest first, until the table fits `room` columns of the
    terminal (0: unknown, as when piped: nothing is elided)."""
    elastic = [at for at, title in enumerate(headers) if title in ELASTIC_COLUMNS]
    while room and sum(widths) + 2 * (len(widths) - 1) > room:
        at = max(elastic, key=lambda n: widths[n], default=None)
        if at is None or widths[at] <= max(ELASTIC_MIN, len(headers[at])):
            return
        widths[at] -= 1


def _cell(text: str) -> str:
    return _clip(" ".join(escape_controls(text).split()), CELL_MAX)


def _text_width(text: str) -> int:
    """The columns a terminal gives `text`: wide East Asian characters take two, combining
    marks none."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


def format_fields(record: JSONDict, skip: tuple[str, ...] = ()) -> str:
    width = max(len(key) for key in record)
    lines = []
    for key, value in record.items():
        if key in skip:
            continue
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        if key.endswith("_at") or key == "scheduled_for":
            shown = fmt_local(parse_time(value, key), seconds=True, zone=True) if value else None
        shown = "-" if shown is None or shown == "" else shown
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)


@dataclass
class CliContext:
    """What a command needs: the operations (direct or over the API) and how to talk."""

    backend: Service | ApiClient
    args: argparse.Namespace
    out: Any = None

    def emit(self, text: str, *, exact: bool = False) -> None:
        """Print a line, its control characters escaped unless `exact` (JSON, --raw).
        When the reader went away (`| head`), the rest goes nowhere and the command
        carries on: a foreground run is still supervised and recorded."""
        try:
            print(text if exact else escape_controls(text), file=self.out or sys.stdout, flush=True)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    def err(self, text: str) -> None:
        print(escape_controls(text), file=sys.stderr, flush=True)

    def show(self, payload: JSON, human: Callable[[], str]) -> int:
        if self.args.json:
            self.emit(json.dumps(payload, indent=2, ensure_ascii=False), exact=True)
        else:
            self.emit(human())
        return 0

    def resolve(self, kind: str, text: str) -> str:
        return self.backend.resolve(kind, text)

    def one_step(self) -> contextlib.AbstractContextManager[None]:
        """Make a read and the write built on it one step, so that concurrent commands
        lose no change: under the store's lock in direct mode. (Over --api each request is
        applied whole; only a schedule option that changes part of the current schedule,
        such as --debounce alone, reads it a moment before.)"""
        return self.backend.store.locked() if isinstance(self.backend, Service) else contextlib.nullcontext()

    def warn_about_paths(self, fields: JSONDict) -> None:
        """Say so on stderr when a folder or watched path just given does not exist here
        (it is kept: it may appear later). Not over --api: the server may be elsewhere."""
        if self.backend.remote:
            return
        schedule = fields.get("schedule") or {}
        given = (
            ("working folder", fields.get("working_directory"), "runs fail until it does"),
            ("watched path", schedule.get("path"), "nothing fires until it does"),
            *(("extra folder", raw, "runs fail until it does") for raw in fields.get("add_dirs") or []),
            ("MCP config file", fields.get("mcp_config"), "runs fail until it does"),
        )
        for label, raw, outcome in given:
            if raw and not Path(_expand_path(raw.strip(), Path.home(), os.environ)).exists():
                self.err(f"warning: the {label} {raw} does not exist; {outcome}")

    def confirm(self, question: str) -> bool:
        """Ask on a terminal; refuse (Conflict) when there is none to ask on."""
        if self.args.force:
            return True
        if not sys.stdin.isatty():
            raise Conflict(f"{question} Not asking without a terminal: add --force to confirm")
        try:
            answer = input(escape_controls(f"{question} [y/N] ")).strip().lower()
        except EOFError:  # Ctrl-D: no answer is a no
            print(file=sys.stderr)
            return False
        return answer in ("y", "yes")


def _cmd_jobs_list(ctx: CliContext) -> int:
    jobs = ctx.backend.list_jobs()
    return ctx.show(
        {"jobs": jobs}, lambda: format_table(for_table(jobs), JOB_COLUMNS) if jobs else "No jobs yet."
    )


def _cmd_jobs_get(ctx: CliContext) -> int:
    job = ctx.backend.get_job(ctx.resolve("job", ctx.args.id))
    return ctx.show(job, lambda: _job_text(job))


def _job_text(job: JSONDict) -> str:
    progress = job["progress"]
    counts = ", ".join(f"{progress[key]} {key.replace('_', ' ')}" for key in PROGRESS_KEYS)
    head = format_fields(job, skip=("tasks", "progress", "task_order", "totals"))
    shown = for_table(job["tasks"], "job_id", {job["id"]: job["name"]})
    tasks = format_table(shown, TASK_COLUMNS) if shown else "No tasks yet."
    totals = _totals_text(job["totals"])
    return (
        f"{head}\nprogress           {progress['text']} done ({progress['percent']}%): {counts}\n\n"
        f"{totals}\n\n{tasks}"
    )


def _cmd_jobs_usage(ctx: CliContext) -> int:
    usage = ctx.backend.usage()
    return ctx.show(usage, lambda: _usage_text(usage))


def _usage_text(usage: JSONDict) -> str:
    rows = [
        *usage["jobs"],
        {"name": "(Unassigned)", "id": None, "totals": usage["unassigned"]},
        {"name": "All", "id": None, "totals": usage["total"]},
    ]
    note = (
        f"Runs by when they finished; days start at midnight ({usage['zone']}), "
        "and 7 and 30 days include today."
    )
    return f"{format_table(rows, USAGE_COLUMNS)}\n\n{note}"


def _cmd_jobs_create(ctx: CliContext) -> int:
    fields = _job_fields(ctx.args)
    schedule = _schedule_from_args(ctx.args)
    if schedule is not None:
        fields["schedule"] = schedule
    job = ctx.backend.create_job(fields)
    ctx.warn_about_paths(fields)
    return ctx.show(job, lambda: f"Created job {_short(job['id'])}: {job['name']}")


def _cmd_jobs_update(ctx: CliContext) -> int:
    fields = _job_fields(ctx.args)
    job_id = ctx.resolve("job", ctx.args.id)
    with ctx.one_step():
        schedule = _schedule_from_args(ctx.args, ctx.backend.get_job(job_id)["schedule"])
        if schedule is not None:
            fields["schedule"] = schedule
        if not fields:
            raise BadRequest("nothing to change: give at least one option (see --help)")
        job = ctx.backend.update_job(job_id, fields)
    ctx.warn_about_paths(fields)
    return ctx.show(job, lambda: f"Updated job {_short(job['id'])}: {job['name']}")


def _cli_path(text: str | None) -> str | None:
    """A path typed on the command line, made absolute against the current folder so it
    still means the same when the engine uses it later; `~` and `$VAR` stay for then."""
    if not text or text.startswith(("~", "$")) or os.path.isabs(text):
        return text
    return os.path.abspath(text)


def _job_fields(args: argparse.Namespace) -> JSONDict:
    options = {
        "name": "name",
        "description": "description",
        "status": "status",
        "working_dir": "working_directory",
        "overlap": "overlap",
        "catch_up": "catch_up",
    }
    fields = {key: getattr(args, opt) for opt, key in options.items() if getattr(args, opt, None) is not None}
    if fields.get("working_directory"):
        fields["working_directory"] = _cli_path(fields["working_directory"])
    return fields


def _cmd_jobs_delete(ctx: CliContext) -> int:
    job_id = ctx.resolve("job", ctx.args.id)
    preview = ctx.backend.delete_preview(job_id)
    counts = preview["counts"]
    what = (
        f"job {preview['job']['name']!r} with {_plural(counts['tasks'], 'task')}, "
        f"{_plural(counts['runs'], 'run')} and {_plural(counts['logs'], 'log')}"
    )
    if not _ask_to_delete(ctx, what, preview):
        return int(not ctx.args.dry_run)
    result = ctx.backend.delete_job(job_id, force=True)
    return ctx.show(result, lambda: _deleted_text(result["deleted"]))


def _deleted_text(counts: JSONDict) -> str:
    parts = [
        _plural(counts[key], key.rstrip("s")) for key in ("jobs", "tasks", "runs", "logs") if counts[key]
    ]
    return "Deleted " + ", ".join(parts) + "."


def _cmd_jobs_tasks(ctx: CliContext) -> int:
    tasks = ctx.backend.job_tasks(ctx.resolve("job", ctx.args.id))
    return ctx.show({"tasks": tasks}, lambda: _tasks_text(ctx, tasks))


def _cmd_tasks_list(ctx: CliContext) -> int:
    unassigned = ctx.args.unassigned or (ctx.args.job or "").lower() == "none"
    job_id = ctx.resolve("job", ctx.args.job) if ctx.args.job and not unassigned else None
    tasks = ctx.backend.list_tasks(job_id, unassigned=unassigned)
    return ctx.show({"tasks": tasks}, lambda: _tasks_text(ctx, tasks))


def _tasks_text(ctx: CliContext, tasks: list[JSONDict]) -> str:
    if not tasks:
        return "No tasks."
    names = (
        {job["id"]: job["name"] for job in ctx.backend.list_jobs()} if any(t["job_id"] for t in tasks) else {}
    )
    hold = ctx.backend.engine_status().get("hold")
    if hold:
        tasks = [
            task if env_has_own_account(task["env"]) else {**task, "held_until": hold["until"]}
            for task in tasks
        ]
    return format_table(for_table(tasks, "job_id", names), TASK_COLUMNS)


def _cmd_tasks_get(ctx: CliContext) -> int:
    task = ctx.backend.get_task(ctx.resolve("task", ctx.args.id))
    return ctx.show(
        task, lambda: f"{format_fields(task, skip=('totals',))}\n\n{_totals_text(task['totals'])}"
    )


def _cmd_tasks_create(ctx: CliContext) -> int:
    fields = _task_fields(ctx, creating=True, prompt=_read_prompt(ctx.args))
    task = ctx.backend.create_task(fields)
    ctx.warn_about_paths(fields)
    return ctx.show(task, lambda: _task_saved_text("Created", task))


def _cmd_tasks_update(ctx: CliContext) -> int:
    task_id = ctx.resolve("task", ctx.args.id)
    prompt = _read_prompt(ctx.args)  # before the lock: standard input may take its time
    with ctx.one_step():  # the schedule options may be merged into the task's current schedule
        fields = _task_fields(ctx, creating=False, prompt=prompt)
        if not fields:
            raise BadRequest("nothing to change: give at least one option (see --help)")
        task = ctx.backend.update_task(task_id, fields, env_patch=True)
    ctx.warn_about_paths(fields)
    return ctx.show(task, lambda: _task_saved_text("Updated", task))


def _task_saved_text(verb: str, task: JSONDict) -> str:
    upcoming = "disabled"
    if task["enabled"]:
        upcoming = fmt_local(read_time(task["next_run_at"], "next_run_at"), zone=True)
    return f"{verb} task {_short(task['id'])}: {task['name']}\n{task['schedule_text']}; next run: {upcoming}"


def _cmd_tasks_delete(ctx: CliContext) -> int:
    task_id = ctx.resolve("task", ctx.args.id)
    preview = ctx.backend.delete_task_preview(task_id)
    counts = preview["counts"]
    what = (
        f"task {preview['task']['name']!r} with {_plural(counts['runs'], 'run')} "
        f"and {_plural(counts['logs'], 'log')}"
    )
    if not _ask_to_delete(ctx, what, preview):
        return int(not ctx.args.dry_run)
    result = ctx.backend.delete_task(task_id, force=True)
    return ctx.show(result, lambda: _deleted_text(result["deleted"]))


def _cmd_tasks_enable(ctx: CliContext) -> int:
    task = ctx.backend.set_enabled(ctx.resolve("task", ctx.args.id), ctx.args.enabled)
    return ctx.show(task, lambda: _task_saved_text("Enabled" if task["enabled"] else "Disabled", task))


def _cmd_tasks_next(ctx: CliContext) -> int:
    result = ctx.backend.next_times(ctx.resolve("task", ctx.args.id), ctx.args.count)
    return ctx.show(result, lambda: _times_text(result))


def _times_text(result: JSONDict) -> str:
    """Fire times in the schedule's own zone when it names one, else in local time."""
    zone_name = result.get("schedule", {}).get("timezone")
    zone = _zone_or_none(zone_name) if zone_name else None
    lines = [result["description"]]
    if result.get("enabled") is False:
        lines.append("(the task is disabled: these times will not fire until it is enabled)")
    for text in result["times"]:
        moment = parse_time(text, "time")
        shown = moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if zone else fmt_local(moment)
        lines.append(f"  {shown}")
    return "\n".join(lines if result["times"] else [*lines, "  (no upcoming fire times)"])


def _cmd_runs_list(ctx: CliContext) -> int:
    args = ctx.args
    task_id = ctx.resolve("task", args.task) if args.task else None
    job_id = ctx.resolve("job", args.job) if args.job else None
    runs = ctx.backend.list_runs(task_id=task_id, job_id=job_id, status=args.status, limit=args.count)
    _warn_unreadable_runs(ctx)
    return ctx.show({"runs": runs}, lambda: _runs_text(ctx, runs))


def _runs_text(ctx: CliContext, runs: list[JSONDict]) -> str:
    if not runs:
        return "No runs."
    names = {task["id"]: task["name"] for task in ctx.backend.list_tasks()}
    return format_table(for_table(runs, "task_id", names), RUN_COLUMNS)


def _warn_unreadable_runs(ctx: CliContext) -> None:
    """Name on stderr each run file whose runs a listing had to leave out (direct mode;
    over --api, GET /api/health lists them)."""
    if isinstance(ctx.backend, Service):
        for path, reason in ctx.backend.store.unreadable_files().items():
            if path.startswith(f"{RUNS_DIR}/"):
                ctx.err(f"warning: its runs are not listed: {reason}")


def _cmd_runs_get(ctx: CliContext) -> int:
    run = ctx.backend.get_run(ctx.resolve("run", ctx.args.id))
    return ctx.show(run, lambda: format_fields({**_without_echo(run), **_run_readable(run)}))


def _without_echo(run: JSONDict) -> JSONDict:
    """The run for people: a failed session's `result` that only repeats its error (claude's
    API error sentence is both) is left out, so the reason is read once (`--json` keeps it)."""
    result, error = run.get("result"), run.get("error")
    if result and error and result.strip().startswith(error.rstrip(ELLIPSIS).strip()):
        return {**run, "result": None}
    return run


def _run_readable(run: JSONDict) -> JSONDict:
    """A run's facts in words, below its fields: status and kind, tokens, both
    durations (named), and each refused tool call."""
    denials = run.get("permission_denials") or []
    readable: JSONDict = {
        "outcome": run_status_text(run),
        "tokens": run_tokens(run),
        "durations": format_durations(run),
        "denied": describe_denials(denials),
    }
    readable.update({f"denied {n}": describe_denial(denial) for n, denial in enumerate(denials, 1)})
    return {key: value for key, value in readable.items() if value}


def _cmd_runs_delete(ctx: CliContext) -> int:
    run = ctx.backend.get_run(ctx.resolve("run", ctx.args.id))
    if run["status"] in ACTIVE_STATUSES:
        raise Conflict("the run is still active; stop it first")
    task = ctx.backend.get_task(run["task_id"])
    what = f"run {_short(run['id'])} of task {task['name']!r} ({run['status']}) and its log"
    if not _ask_to_delete(ctx, what, {"run": run, "active_runs": 0}):
        return int(not ctx.args.dry_run)
    result = ctx.backend.delete_run(run["id"])
    return ctx.show(result, lambda: _deleted_text(result["deleted"]))


def _ask_to_delete(ctx: CliContext, what: str, preview: JSONDict) -> bool:
    """Whether to go on with a delete: every delete asks the same way (--yes or --force
    to skip), and --dry-run only says what it would remove."""
    active = preview["active_runs"]
    stopped = f" Its {_plural(active, 'active run')} {{}} be stopped." if active else ""
    if ctx.args.dry_run:
        ctx.show({"dry_run": True, **preview}, lambda: f"Would delete {what}.{stopped.format('would')}")
        return False
    if not ctx.confirm(f"Delete {what}?{stopped.format('will')}"):
        ctx.emit("Nothing deleted.")
        return False
    return True


def _cmd_schedule_preview(ctx: CliContext) -> int:
    schedule = _schedule_from_args(ctx.args)
    if schedule is None or schedule["type"] not in ("cron", "interval", "once"):
        raise BadRequest(
            "give a timed schedule: --cron EXPR, --every 15m, --daily, --weekly, --monthly or --at"
        )
    result = ctx.backend.preview(schedule, after=ctx.args.after, count=ctx.args.count)
    return ctx.show(result, lambda: _times_text(result))


def _cmd_export(ctx: CliContext) -> int:
    job_ids = [ctx.resolve("job", text) for text in ctx.args.job or []]
    logs = ctx.args.logs
    bundle = ctx.backend.export_bundle(job_ids, runs=ctx.args.runs or logs, logs=logs)
    text = json.dumps(bundle, indent=2, ensure_ascii=False)
    if ctx.args.output in (None, "-"):
        ctx.emit(text)
        return 0
    path = Path(ctx.args.output).expanduser()
    counts = _write_bundle_file(path, bundle)
    summary = {"output": str(path), **counts}
    return ctx.show(summary, lambda: f"Exported {_bundle_counts(counts)} to {path}")


def _write_bundle_file(path: Path, bundle: JSONDict) -> JSONDict:
    """Write a bundle (mode 0600: tasks' env may hold secrets); how many of each it holds."""
    atomic_write(path, (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode())
    return {key: len(bundle.get(key) or ()) for key in ("jobs", "tasks", "runs", "logs")}


def _bundle_counts(counts: Mapping[str, JSON]) -> str:
    words = [_plural(int(counts[key]), key.rstrip("s")) for key in ("jobs", "tasks") if key in counts]
    words += [_plural(int(counts[key]), key.rstrip("s")) for key in ("runs", "logs") if counts.get(key)]
    return _join_words(words)


def _read_bundle_file(name: str) -> JSON:
    """The JSON in a file (`-`: standard input); Invalid naming the file when it is not."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise Invalid(f"cannot read {name}: {reason}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise Invalid(f"{name} is not a JSON bundle: {error}") from None


def _cmd_import(ctx: CliContext) -> int:
    bundle = _read_bundle_file(ctx.args.file)
    into_job = ctx.resolve("job", ctx.args.into_job) if ctx.args.into_job else None
    report = ctx.backend.import_bundle(bundle, dry_run=ctx.args.dry_run, into_job=into_job)
    return ctx.show(report, lambda: _import_text(report))


def _import_text(report: JSONDict) -> str:
    counts = {**report, "jobs": len(report["jobs"]), "tasks": len(report["tasks"])}
    verb = "Would import" if report["dry_run"] else "Imported"
    into = f" into job {_short(report['into_job'])}" if report["into_job"] else ""
    lines = [f"{verb} {_bundle_counts(counts)}{into}"]
    lines += [f"  job  {_short(job['id'])}  {job['name']}" for job in report["jobs"]]
    lines += [f"  task {_short(task['id'])}  {task['name']}" for task in report["tasks"]]
    lines += [
        f"  renamed {item['kind']} {item['from']!r} to {item['to']!r}: the name was taken"
        for item in report["renamed"]
    ]
    if report["dry_run"]:
        lines.append("Nothing was changed (--dry-run).")
    return "\n".join(lines)


def _cmd_jobs_duplicate(ctx: CliContext) -> int:
    job = ctx.backend.duplicate_job(ctx.resolve("job", ctx.args.id))
    tasks = _plural(len(job["tasks"]), "task")
    return ctx.show(job, lambda: f"Copied as job {_short(job['id'])}: {job['name']} ({tasks}, disabled)")


def _cmd_tasks_duplicate(ctx: CliContext) -> int:
    task = ctx.backend.duplicate_task(ctx.resolve("task", ctx.args.id))
    return ctx.show(task, lambda: _task_saved_text("Copied as", task))


def _notify_text(config: JSONDict) -> str:
    lines = [
        "events     " + ", ".join(f"{name} {'on' if on else 'off'}" for name, on in config["events"].items())
    ]
    desktop = config["desktop"]
    command = _shell_words(desktop["command"]) if desktop["command"] else "the platform's notifier"
    lines.append(f"desktop    {'on' if desktop['enabled'] else 'off'} ({command})")
    for hook in config["webhooks"]:
        events = ",".join(hook["events"]) if hook["events"] is not None else "all events on"
        signed = "signed" if hook["has_secret"] else "unsigned"
        state = "" if hook["enabled"] else ", disabled"
        lines.append(
            f"webhook    {hook['name']}: {hook['preset']} to {hook['url']} ({events}, {signed}, "
            f"timeout {hook['timeout_seconds']:g}s, {hook['retries']} retries{state})"
        )
    if not config["webhooks"]:
        lines.append("webhooks   none (add one: cli notify hook-add NAME URL)")
    for task_id, entry in config["tasks"].items():
        changes = ", ".join(f"{name} {'on' if on else 'off'}" for name, on in entry["events"].items())
        lines.append(f"task       {_short(task_id)}: {changes}")
    return "\n".join(lines)


def _shell_words(argv: Sequence[str]) -> str:
    import shlex

    return shlex.join(argv)


def _cmd_notify_show(ctx: CliContext) -> int:
    config = ctx.backend.notify_settings()
    return ctx.show(config, lambda: _notify_text(config))


def _event_switches(items: list[str], *, overrides: bool) -> JSONDict:
    """`failed=on changed=off` as {"failed": True, "changed": False}; with `overrides`,
    `name=default` drops a task's own choice (None)."""
    words = {"on": True, "off": False, **({"default": None} if overrides else {})}
    switches: JSONDict = {}
    for item in items:
        name, _, word = item.partition("=")
        if name not in NOTIFY_EVENTS:
            raise BadRequest(f"unknown event {name!r} (events: {', '.join(NOTIFY_EVENTS)})")
        if word not in words:
            raise BadRequest(f"{item!r}: say {name}={'|'.join(words)}")
        switches[name] = words[word]
    return switches


def _cmd_notify_events(ctx: CliContext) -> int:
    switches = _event_switches(ctx.args.switches, overrides=bool(ctx.args.task))
    with ctx.one_step():
        if ctx.args.task:
            task_id = ctx.resolve("task", ctx.args.task)
            current = ctx.backend.notify_settings()["tasks"].get(task_id, {}).get("events", {})
            events = {name: on for name, on in {**current, **switches}.items() if on is not None}
            config = ctx.backend.update_notify_settings(
                {"tasks": {task_id: {"events": events} if events else None}}
            )
        else:
            config = ctx.backend.update_notify_settings({"events": switches})
    return ctx.show(config, lambda: _notify_text(config))


def _cmd_notify_desktop(ctx: CliContext) -> int:
    import shlex

    desktop: JSONDict = {"enabled": ctx.args.state == "on"}
    if ctx.args.command is not None:
        desktop["command"] = shlex.split(ctx.args.command) or None
    config = ctx.backend.update_notify_settings({"desktop": desktop})
    return ctx.show(config, lambda: _notify_text(config))


def _cmd_notify_hook_add(ctx: CliContext) -> int:
    args = ctx.args
    hook: JSONDict = {"name": args.name, "url": args.url, "preset": args.preset, "enabled": not args.disabled}
    optional = {"timeout_seconds": args.timeout, "retries": args.retries, "backoff_seconds": args.backoff}
    hook |= {key: value for key, value in optional.items() if value is not None}
    if args.events is not None:
        hook["events"] = [name.strip() for name in args.events.split(",") if name.strip()]
    secret = os.environ.get(args.secret_env) if args.secret_env else args.secret
    if args.secret_env and secret is None:
        raise BadRequest(f"${args.secret_env} is not set", "--secret-env")
    if secret is not None:
        hook["secret"] = secret or None
    with ctx.one_step():
        hooks = [
            dict(item) for item in ctx.backend.notify_settings()["webhooks"] if item["name"] != args.name
        ]
        for item in hooks:
            item.pop("has_secret", None)  # without `secret`, each keeps its own
        config = ctx.backend.update_notify_settings({"webhooks": [*hooks, hook]})
    return ctx.show(config, lambda: _notify_text(config))


def _cmd_notify_hook_remove(ctx: CliContext) -> int:
    with ctx.one_step():
        hooks = ctx.backend.notify_settings()["webhooks"]
        if not any(hook["name"] == ctx.args.name for hook in hooks):
            raise NotFound(f"no webhook named {ctx.args.name!r}")
        kept = [
            {k: v for k, v in hook.items() if k != "has_secret"}
            for hook in hooks
            if hook["name"] != ctx.args.name
        ]
        config = ctx.backend.update_notify_settings({"webhooks": kept})
    return ctx.show(config, lambda: _notify_text(config))


DELIVERY_COLUMNS: tuple[tuple[str, Row], ...] = (
    ("WHEN", lambda item: _when(item["at"])),
    ("EVENT", lambda item: str(item["event"])),
    ("CHANNEL", lambda item: str(item["channel"])),
    ("STATUS", lambda item: str(item["status"])),
    ("TRIES", lambda item: str(item["attempts"])),
    ("ERROR", lambda item: _one_line(str(item["error"] or ""), ECHO_MAX)),
)


def _cmd_notify_history(ctx: CliContext) -> int:
    deliveries = ctx.backend.notify_history(ctx.args.limit)
    return ctx.show(
        {"deliveries": deliveries},
        lambda: format_table(deliveries, DELIVERY_COLUMNS) if deliveries else "Nothing sent yet.",
    )


def _cmd_notify_test(ctx: CliContext) -> int:
    deliveries = ctx.backend.notify_test()
    if not deliveries:
        raise Conflict("no channel is on: cli notify desktop on, or cli notify hook-add NAME URL")
    ctx.show({"deliveries": deliveries}, lambda: format_table(deliveries, DELIVERY_COLUMNS))
    return 0 if all(item["status"] == "delivered" for item in deliveries) else 1


def _local_install(ctx: CliContext, kind: str) -> tuple[InstallPlan, Installer]:
    """The plan and installer for this computer; not over --api (the files are local)."""
    if ctx.backend.remote:
        raise BadRequest(f"{kind} install and uninstall work on this computer: leave out --api")
    given = bool(getattr(ctx.args, "home", None) or os.environ.get(HOME_ENV))
    return install_target(kind, data_home(ctx.args).resolve(), given)


def _installed_text(what: str, report: JSONDict) -> str:
    import shlex

    lines = [f"Installed {what} ({report['platform']}):", *(f"  {path}" for path in report["files"])]
    lines.append(f"It runs: {shlex.join(report['command'])}")
    return "\n".join(lines + report["notes"])


def _finish_install(
    ctx: CliContext, report: JSONDict, human: Callable[[], str], *, fatal: bool = True
) -> int:
    """Show the report; a platform tool that failed is a warning, and after an install
    (where it means the thing does not run) exit code 1."""
    ctx.show(report, human)
    for problem in report["problems"]:
        ctx.err(f"warning: {problem}")
    return 1 if report["problems"] and fatal else 0


def _cmd_desktop_install(ctx: CliContext) -> int:
    plan, installer = _local_install(ctx, "desktop")
    report = installer.install(plan)
    return _finish_install(ctx, report, lambda: _installed_text("the launcher", report))


def _uninstalled_text(report: JSONDict) -> str:
    if not report["removed"]:
        return "Nothing to remove: it is not installed."
    return "\n".join(["Removed:", *(f"  {path}" for path in report["removed"])])


def _cmd_desktop_uninstall(ctx: CliContext) -> int:
    plan, installer = _local_install(ctx, "desktop")
    report = installer.uninstall(plan)
    return _finish_install(ctx, report, lambda: _uninstalled_text(report), fatal=False)


def _cmd_service_install(ctx: CliContext) -> int:
    plan, installer = _local_install(ctx, "service")
    if ctx.args.no_start:
        plan.after_install = []
        plan.notes.append("Not started (--no-start): it starts at the next login.")
    report = installer.install(plan)
    return _finish_install(ctx, report, lambda: _installed_text("the engine's login service", report))


def _cmd_service_uninstall(ctx: CliContext) -> int:
    plan, installer = _local_install(ctx, "service")
    report = installer.uninstall(plan)
    return _finish_install(ctx, report, lambda: _uninstalled_text(report), fatal=False)


def _cmd_service_status(ctx: CliContext) -> int:
    plan, installer = _local_install(ctx, "service")
    status = service_status(plan, installer, ctx.backend.engine_status())
    return ctx.show(status, lambda: _service_status_text(status))


def _service_status_text(status: JSONDict) -> str:
    engine = status["engine"]
    owner = engine.get("owner") or {}
    by = " (the login service)" if owner.get("service") else " (not the login service)"
    lines = [
        f"service    {'installed: ' + status['definition'] if status['installed'] else 'not installed'}",
        f"state      {status['state']}",
        f"last exit  {status['last_exit'] or '-'}",
        f"engine     {'running, pid ' + str(owner.get('pid')) + by if engine['running'] else 'not running'}",
    ]
    return "\n".join(lines + status["notes"])


FOLLOW_POLL_SECONDS = 0.2
WATCHDOG_PATIENCE_SECONDS = 30.0  # how long a watchdog waits to see its CLI process gone
RENDER_PREFIX = {"tool": "  ", "tool_result": "    ", "thinking": "  (thinking) "}


def render_for_terminal(line: str) -> str | None:
    segments = render_log_line(line)
    if not segments:
        return None
    return " — ".join(RENDER_PREFIX.get(tag, "") + text for tag, text in segments)


@dataclass
class LogCursor:
    """How far a reader of one run's log has got; survives an interruption."""

    run_id: str
    offset: int = 0


def follow_log(
    ctx: CliContext,
    cursor: LogCursor,
    *,
    follow: bool,
    stop: threading.Event | None = None,
    quiet: bool = False,
) -> None:
    """Print a run's log from the cursor (rendered; raw lines with --raw; the API's log
    chunks with --json; nothing when `quiet`) and, with `follow`, go on until the run
    ends or `stop` is set."""
    while True:
        chunk = ctx.backend.read_log(cursor.run_id, cursor.offset)
        cursor.offset = chunk["next_offset"]
        if not quiet:
            _show_chunk(ctx, chunk)
        if chunk["data"]:
            continue
        if not follow or not chunk["active"] or (stop is not None and stop.is_set()):
            return
        time.sleep(FOLLOW_POLL_SECONDS)


def _show_chunk(ctx: CliContext, chunk: JSONDict) -> None:
    if ctx.args.json:
        if chunk["data"]:
            ctx.emit(json.dumps(chunk, ensure_ascii=False), exact=True)
        return
    data = chunk["data"]
    if ctx.args.raw:  # as written, a carriage return or form feed in a line included
        if data:
            ctx.emit(data.removesuffix("\n"), exact=True)
        return
    for line in data.removesuffix("\n").split("\n") if data else []:  # not splitlines: U+2028 is JSON text
        shown = render_for_terminal(line)
        if shown is not None:
            ctx.emit(shown)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While a session runs in the foreground, SIGTERM and SIGHUP (a closed terminal)
    stop it the way Ctrl-C does, so it is recorded and its Claude process ends."""
    import signal

    names = ("SIGTERM", "SIGHUP")
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    sigs = [getattr(signal, name) for name in names if hasattr(signal, name)]
    previous = {sig: signal.signal(sig, interrupt) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_summary(run: JSONDict, *, error: bool = True) -> str:
    """`Run 1a2b3c4d failed (auth) · wall time 4.5s · claude 4.2s · $0.0123 · …`; the
    error too unless the person just read it in the log (`error=False`)."""
    tokens = run_tokens(run)
    facts = [
        format_durations(run),
        f"cost {_money(run['cost_usd'])}" if run["cost_usd"] is not None else None,
        f"{tokens} tokens" if tokens else None,
        describe_denials(run.get("permission_denials")),
    ]
    text = " · ".join([f"Run {_short(run['id'])} {run_status_text(run)}", *filter(None, facts)])
    return text + (f" - {run['error']}" if error and run["error"] else "")


def _engine_note(
    ctx: CliContext, task_ids: Iterable[str] = (), run: JSONDict | None = None, noun: str = "run"
) -> str:
    """What happens next to runs just queued (of these tasks; `run`, one of them, whose
    start-by limit is the `noun`'s: the run's, or the job run's it starts)."""
    status = ctx.backend.engine_status()
    if not status["running"]:
        return _no_engine_note(run, noun)
    if status["paused"]:
        return "Paused: it will start when the engine is resumed."
    if _is_held(ctx, status, task_ids):
        return f"{_hold_line(status['hold'])}\nIt waits for that (or for `engine resume`)."
    return ""


def _no_engine_note(run: JSONDict | None, noun: str = "run") -> str:
    start = "run `serve` or open the window"
    if run is None:
        return f"No scheduler engine is running: it will start when one does ({start})."
    if not run.get("start_by"):
        return f"No scheduler engine is running: the {noun} waits for one ({start})."
    until = fmt_local_until(parse_time(run["start_by"], "start_by"), utcnow())
    return f"No scheduler engine is running: the {noun} expires at {until} unless one starts ({start})."


def _is_held(ctx: CliContext, status: JSONDict, task_ids: Iterable[str]) -> bool:
    """Whether the engine's hold concerns any of the tasks (those without their own account)."""
    if not status.get("hold"):
        return False
    return any(not env_has_own_account(ctx.backend.get_task(task_id)["env"]) for task_id in task_ids)


def _hold_line(hold: JSONDict) -> str:
    until = fmt_local_until(parse_time(hold["until"], "hold.until"), utcnow())
    reason = f": {hold['reason']}" if hold.get("reason") else ""
    return f"Holding new runs until {until} — {hold_kind_label(hold)}{reason}"


def _warn_if_held(ctx: CliContext, task_ids: list[str]) -> None:
    """Before running here what the engine would hold: say so, then run (it was asked for)."""
    status = ctx.backend.engine_status()
    if _is_held(ctx, status, task_ids):
        hold = status["hold"]
        until = fmt_local_until(parse_time(hold["until"], "hold.until"), utcnow())
        ctx.err(
            f"Note: a {hold_kind_label(hold).replace(' ', '-')} hold is on until {until}"
            f"{' (' + hold['reason'] + ')' if hold.get('reason') else ''}; this run may hit the same limit."
        )


def _cmd_tasks_run(ctx: CliContext) -> int:
    task_id = ctx.resolve("task", ctx.args.id)
    if ctx.args.detach or ctx.backend.remote:
        run = ctx.backend.request_run(task_id, Trigger.CLI, wait_for_engine=ctx.args.wait_for_engine)
        note = _engine_note(ctx, [task_id], run)
        if ctx.args.detach:
            return ctx.show(run, lambda: f"Queued run {_short(run['id'])}" + (f"\n{note}" if note else ""))
        if note and not ctx.args.json:  # otherwise the wait below would be silent
            ctx.emit(note)
        return _follow_to_end(ctx, run["id"])
    _warn_if_held(ctx, [task_id])
    return _run_in_foreground(ctx, [task_id], stop_on_failure=True, trigger=Trigger.CLI)


def _follow_to_end(ctx: CliContext, run_id: str) -> int:
    """Follow a run handed to the engine; Ctrl-C asks the engine to stop it."""
    cursor = LogCursor(run_id)
    with _signals_interrupt():
        try:
            try:
                follow_log(ctx, cursor, follow=True, quiet=ctx.args.json)
            except KeyboardInterrupt:
                ctx.err("Stopping…")
                ctx.backend.stop_run(run_id)
                follow_log(ctx, cursor, follow=True, quiet=ctx.args.json)
            run = ctx.backend.get_run(run_id)
        except NotFound:  # deleted with its task or job; the engine ends the session
            raise SchedulerError(RUN_DELETED) from None
    ctx.show(run, lambda: _run_summary(run, error=False))  # the log above said why
    return 0 if run["status"] == RunStatus.SUCCESS else 1


RUN_DELETED = "the run was deleted while it ran (with its task or job); its session was stopped"


def _run_in_foreground(
    ctx: CliContext,
    task_ids: list[str],
    *,
    stop_on_failure: bool,
    trigger: Trigger,
    job_run: tuple[str, JSONDict] | None = None,
) -> int:
    """Run tasks one after another in this process, streaming each session; Ctrl-C
    (or SIGTERM/SIGHUP) stops the current run (recorded as cancelled) and the rest.
    `job_run` (id, entry): the steps of that job run, recorded in it as they go.
    With --json only the finished runs are printed, as {"runs": [...]}."""
    assert isinstance(ctx.backend, Service), "only direct mode runs sessions in this process"
    service = ctx.backend
    executor = Executor(service.store)
    finished: list[JSONDict] = []
    ending: JobRunStatus | None = None
    with _signals_interrupt(), _foreground_notices(ctx, service.store) as tell:
        for n, task_id in enumerate(task_ids):
            run = _foreground_step(ctx, executor, task_id, (n, trigger), job_run)
            if run is None:
                continue
            with _watchdog(service.store.home, run.id):
                finished.append(_perform_streaming(ctx, executor, run))
            tell(finished[-1])
            if job_run is None:
                _queue_followers(ctx, finished[-1])
            ending = _foreground_verdict(ctx, finished[-1], stop_on_failure, job_run)
            if ending is not None:
                skipped = job_run[1]["skipped"] if job_run else []
                _say_not_run(ctx, [task_id for task_id in task_ids[n + 1 :] if task_id not in skipped])
                break
    if job_run is not None:
        failed = any(run["status"] != RunStatus.SUCCESS for run in finished)
        service.end_job_run(job_run[0], ending or (JobRunStatus.FAILED if failed else JobRunStatus.COMPLETED))
    if ctx.args.json:
        ctx.emit(json.dumps(finished[0] if len(task_ids) == 1 else {"runs": finished}, indent=2), exact=True)
    return 0 if all(run["status"] == RunStatus.SUCCESS for run in finished) else 1


@contextlib.contextmanager
def _foreground_notices(ctx: CliContext, store: Store) -> Iterator[Callable[[JSONDict], None]]:
    """Foreground runs are told through the notification channels as the engine's are
    (a failure at once: no retry follows it here). Delivery goes on while the next task
    runs; at the end this process waits for what is under way, at most
    FOREGROUND_NOTIFY_WAIT_SECONDS, and says so when it gives up."""
    notifier = Notifier(store)
    notifier.start()

    def tell(run: JSONDict) -> None:
        notifier.on_event({"event": "run", "run": run, "retried": False})
        hold = hold_begun_by(store, str(run["id"]))
        if hold is not None:
            notifier.on_event(hold_began_event(hold))

    try:
        yield tell
    finally:
        notifier.stop()
        if not notifier.wait_idle(FOREGROUND_NOTIFY_WAIT_SECONDS):
            ctx.err(
                f"Notifications not delivered within {FOREGROUND_NOTIFY_WAIT_SECONDS:g} s were given up "
                "(a slow or unreachable webhook); `cli notify history` lists those delivered."
            )


def _claim_when_free(ctx: CliContext, executor: Executor, run: Run) -> Run:
    """Claim a foreground run once fewer than max_concurrent_runs sessions run (the
    engine's and other foreground ones alike), saying once that it waits; --now skips
    the wait. Ctrl-C while waiting leaves nothing behind."""
    store = executor.store
    said = False
    while True:
        with store.locked():
            busy = len(running_runs(store))
            cap = int(store.setting("max_concurrent_runs"))
            if ctx.args.now or busy < cap:
                return executor.claim(run)
        if not said:
            ctx.err(
                f"Waiting: {_plural(busy, 'session')} already running (max_concurrent_runs is {cap}); "
                "--now starts it at once."
            )
            said = True
        time.sleep(FOLLOW_POLL_SECONDS)


WATCHDOG_CODE = """\
import importlib.util, sys
sys.stdin.buffer.read()  # until the CLI process ends or lets go, however it ends
spec = importlib.util.spec_from_file_location("claude_scheduler_watchdog", sys.argv[1])
module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.end_if_orphaned(sys.argv[2], sys.argv[3])
"""


@contextlib.contextmanager
def _watchdog(home: Path, run_id: str) -> Iterator[None]:
    """While a foreground run goes on, a small process waits for this one to end: if it
    dies (even by SIGKILL) with the run still going, the watchdog ends the session and
    records it interrupted, so nothing runs past its timeout unwatched (POSIX)."""
    import subprocess

    watcher = None
    if sys.platform != "win32":
        with contextlib.suppress(OSError):
            watcher = subprocess.Popen(
                [sys.executable, "-c", WATCHDOG_CODE, str(Path(__file__).resolve()), str(home), run_id],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C of the terminal is not for it
            )
    try:
        yield
    finally:
        if watcher is not None and watcher.stdin is not None:
            with contextlib.suppress(OSError):
                watcher.stdin.close()  # the run is recorded: it finds nothing to do
            threading.Thread(target=watcher.wait, daemon=True).start()  # reaped, not waited for here


def end_if_orphaned(home: str, run_id: str) -> None:
    """The watchdog's work once its CLI process let go: if the run is still going and
    that process is gone (it may take a moment to be seen gone), interrupt the run."""
    store = Store(Path(home))
    deadline = time.monotonic() + WATCHDOG_PATIENCE_SECONDS
    while time.monotonic() < deadline:
        try:
            run = store.run(run_id)
        except SchedulerError:
            return
        if not run.is_active:
            return
        if run.owner and not owner_alive(run.owner):
            interrupt_run(store, run)
            return
        time.sleep(GROUP_POLL_SECONDS)


def _not_retried_hint(run: JSONDict) -> str:
    """Why a foreground run that failed is not tried again, for a task that has retries."""
    kind = run.get("failure_kind")
    if kind in (FailureKind.USAGE_LIMIT, FailureKind.RATE_LIMIT):
        return "Not retried: a limit is waited out, not retried (see `cli engine status`)."
    if kind in NOT_RETRIED_KINDS:
        return f"Not retried: a {describe_kind(kind)} failure would fail the same way again."
    return "Not retried: retries are made by the engine (run it with --detach)."


def _foreground_step(
    ctx: CliContext,
    executor: Executor,
    task_id: str,
    place: tuple[int, Trigger],
    job_run: tuple[str, JSONDict] | None,
) -> Run | None:
    """Claim the run of one step; None for a step the job run skips (or whose task is gone)."""
    store = executor.store
    position, trigger = place
    if job_run is not None:
        job_run_id, entry = job_run
        if next_job_position(store, entry, position) != position:
            return None
        run = job_step_run(store, job_run_id, task_id)
        assert isinstance(ctx.backend, Service)
        ctx.backend.note_job_step(job_run_id, position, run.id)
    else:
        task = store.task(task_id)
        run = Run(new_id(), task.id, trigger=trigger, created_at=store.clock(), model=task.model)
    if not ctx.args.json:
        ctx.emit(f"Running task {_short(task_id)}: {store.task(task_id).name}")
    return _claim_when_free(ctx, executor, run)


def _queue_followers(ctx: CliContext, run: JSONDict) -> None:
    """Tasks that run after this one: queued for the engine, said on stderr."""
    assert isinstance(ctx.backend, Service)
    with contextlib.suppress(NotFound):
        for task in follower_tasks(ctx.backend.store, ctx.backend.store.run(run["id"])):
            queued = ctx.backend.request_run(task.id, Trigger.TASK)
            ctx.err(f"Queued run {_short(queued['id'])} of {task.name} (it runs after this task)")


def _foreground_verdict(
    ctx: CliContext, run: JSONDict, stop_on_failure: bool, job_run: tuple[str, JSONDict] | None
) -> JobRunStatus | None:
    """None: go on to the next task; else how the tasks (job run) end after `run`."""
    status = run["status"]
    if status in (RunStatus.FAILED, RunStatus.TIMEOUT):
        task = ctx.backend.get_task(run["task_id"])
        if task["retry"]["max_attempts"] or task["on_failure"] == StepFailure.RETRY:
            ctx.err(_not_retried_hint(run))
    if job_run is not None:
        assert isinstance(ctx.backend, Service)
        return job_step_verdict(ctx.backend.store, job_run[1], Run.from_dict(run))
    if status == RunStatus.CANCELLED:
        return JobRunStatus.STOPPED
    return JobRunStatus.FAILED if status != RunStatus.SUCCESS and stop_on_failure else None


def _say_not_run(ctx: CliContext, task_ids: list[str]) -> None:
    if not ctx.args.json:
        names = {task["id"]: task["name"] for task in ctx.backend.list_tasks()}
        left = [names[task_id] for task_id in task_ids if task_id in names]  # not those deleted meanwhile
        if left:
            ctx.err(f"Stopped there; not run: {', '.join(left)}.")


def _perform_streaming(ctx: CliContext, executor: Executor, run: Run) -> JSONDict:
    stop = threading.Event()
    result: list[Run] = []
    worker = threading.Thread(target=lambda: result.append(executor.perform(run, stop)), daemon=True)
    worker.start()
    cursor = LogCursor(run.id)
    try:
        while worker.is_alive():
            try:
                follow_log(ctx, cursor, follow=True, stop=stop, quiet=ctx.args.json)
                worker.join(FOLLOW_POLL_SECONDS)
            except KeyboardInterrupt:
                ctx.err("Stopping…")
                stop.set()
        follow_log(ctx, cursor, follow=False, quiet=ctx.args.json)
    except NotFound:  # another process deleted its task or job: the worker ends the session
        stop.set()
        worker.join()
        ctx.err(f"error: {RUN_DELETED}")
        now = executor.store.clock()
        gone = dataclasses.replace(run, status=RunStatus.CANCELLED, finished_at=now, error=RUN_DELETED)
        return gone.to_dict()  # like a cancelled run: a job run stops there
    finished = result[0].to_dict() if result else ctx.backend.get_run(run.id)
    if not ctx.args.json:
        ctx.emit(_run_summary(finished, error=False))  # the log above said why
        _say_hold_began(ctx, executor.store, finished)
    return finished


def _say_hold_began(ctx: CliContext, store: Store, run: JSONDict) -> None:
    """After a foreground run that put new runs on hold: until when, and how to lift it."""
    now = store.clock()
    hold = hold_begun_by(store, str(run["id"]))
    until = hold_until(hold)
    if hold is None or until is None:
        return
    ctx.err(
        f"New runs are on hold until {fmt_local_until(until, now)} ({hold_kind_label(hold)}); "
        "`cli engine resume` lifts the hold now."
    )


def _cmd_jobs_run(ctx: CliContext) -> int:
    job_id = ctx.resolve("job", ctx.args.id)
    status = ctx.backend.engine_status()
    if ctx.args.detach or status["running"] or not isinstance(ctx.backend, Service):
        result = ctx.backend.run_job(
            job_id,
            continue_on_failure=ctx.args.continue_on_failure,
            trigger=Trigger.CLI,
            wait_for_engine=ctx.args.wait_for_engine,
        )
        note = _engine_note(ctx, result["task_ids"], result["run"], "job run")
        note = note or f"Follow it with: runs list --job {_short(job_id)}"
        text = (
            f"Handed to the engine: job run {_short(result['job_run_id'])}, "
            f"{_plural(len(result['task_ids']) - len(result['skipped']), 'task')} one after another."
        )
        return ctx.show(result, lambda: f"{text}\n{note}")
    job_run_id, entry = ctx.backend.open_job_run(
        job_id, continue_on_failure=ctx.args.continue_on_failure, trigger=Trigger.CLI, owner=process_owner()
    )
    _warn_if_held(ctx, [task_id for task_id in entry["task_ids"] if task_id not in entry["skipped"]])
    return _run_in_foreground(
        ctx,
        entry["task_ids"],
        stop_on_failure=not ctx.args.continue_on_failure,
        trigger=Trigger.JOB,
        job_run=(job_run_id, entry),
    )


def _cmd_jobs_runs(ctx: CliContext) -> int:
    job_id = ctx.resolve("job", ctx.args.id)
    runs = ctx.backend.list_job_runs(job_id)[: ctx.args.count]
    return ctx.show(
        {"job_runs": runs}, lambda: "\n\n".join(map(_job_run_text, runs)) if runs else "No job runs yet."
    )


def _job_run_text(job_run: JSONDict) -> str:
    ended = f", ended {_when(job_run['finished_at'])}" if job_run["finished_at"] else ""
    head = (
        f"Job run {_short(job_run['id'])}: {job_run['status']} ({job_run['trigger']}), "
        f"started {_when(job_run['started_at'])}{ended}"
    )
    note = f"\n{job_run['note']}" if job_run.get("note") else ""
    return f"{head}{note}\n{format_table(job_run['steps'], JOB_STEP_COLUMNS)}"


def _task_of_job(text: str, task_ids: list[str], job_name: str) -> str:
    try:
        return match_id("task", text, task_ids)
    except NotFound:
        raise NotFound(f"no task of the job {job_name!r} has the id {text!r}") from None


def _cmd_jobs_order(ctx: CliContext) -> int:
    """Set a job's task order: the tasks named come first, in that order; the others follow as they were."""
    with ctx.one_step():
        job = ctx.backend.get_job(ctx.resolve("job", ctx.args.id))
        mine = [task["id"] for task in job["tasks"]]
        named = [_task_of_job(text, mine, job["name"]) for text in ctx.args.tasks]
        order = named + [task_id for task_id in mine if task_id not in named]
        job = ctx.backend.update_job(job["id"], {"task_order": order})
    names = [task["name"] for task in job["tasks"]]
    return ctx.show(job, lambda: "Order: " + ", ".join(f"{n}. {name}" for n, name in enumerate(names, 1)))


def _cmd_jobs_stop(ctx: CliContext) -> int:
    result = ctx.backend.stop_job(ctx.resolve("job", ctx.args.id))
    count = len(result["stopped_runs"])
    return ctx.show(
        result, lambda: f"Asked {_plural(count, 'run')} to stop." if count else "Nothing was running."
    )


def _cmd_runs_log(ctx: CliContext) -> int:
    cursor = LogCursor(ctx.resolve("run", ctx.args.id))
    try:
        follow_log(ctx, cursor, follow=ctx.args.follow)
    except KeyboardInterrupt:
        return 130
    if not cursor.offset and not ctx.args.json:  # say why there is nothing, rather than nothing
        run = ctx.backend.get_run(cursor.run_id)
        text = f"No log: the run was {run['status']}"
        if run["status"] in ACTIVE_STATUSES:
            text = f"No log yet: the run is {run['status']}"
        ctx.err(text + (f" ({run['error']})" if run["error"] else "") + ".")
    return 0


def _cmd_runs_stop(ctx: CliContext) -> int:
    run = ctx.backend.stop_run(ctx.resolve("run", ctx.args.id))
    asked = run["status"] == RunStatus.RUNNING
    return ctx.show(run, lambda: f"Asked run {_short(run['id'])} to stop." if asked else _run_summary(run))


def _cmd_engine_status(ctx: CliContext) -> int:
    status = ctx.backend.engine_status()
    return ctx.show(status, lambda: _engine_text(status))


def _engine_text(status: JSONDict) -> str:
    if not status["running"]:
        text = "Engine: not running (start the window or `claude-code-scheduler serve`)"
    else:
        owner = status["owner"]
        text = f"Engine: running in process {owner['pid']} since {_when(owner['started_at'])}"
        if owner.get("api"):
            text += f"\nAPI: {owner['api']}"
    if status.get("hold"):
        text += (
            f"\n{_hold_line(status['hold'])}\nTasks with their own ANTHROPIC_API_KEY or "
            "CLAUDE_CODE_OAUTH_TOKEN in env still run; `engine resume` lifts the hold now."
        )
    return text + ("\nPaused: no new runs start until `engine resume`." if status["paused"] else "")


def _cmd_engine_pause(ctx: CliContext) -> int:
    status = ctx.backend.set_paused(ctx.args.paused)
    return ctx.show(status, lambda: _lifted_text(status) + _engine_text(status))


LIFTED_TEXTS = {
    ("pause",): "Lifted the pause.",
    (
        "hold",
    ): "Lifted the usage-limit hold: runs start again (the tasks it held back as their catch_up says).",
    ("pause", "hold"): "Lifted the pause and the usage-limit hold.",
    (): "Nothing to lift: the engine was neither paused nor holding runs.",
}


def _lifted_text(status: JSONDict) -> str:
    """What `engine resume` lifted (nothing for `engine pause`), as the first line."""
    if "lifted" not in status or status["paused"]:
        return ""
    return LIFTED_TEXTS[tuple(status["lifted"])] + "\n"


def home_exists(home: Path) -> bool:
    """Whether `home` is there to read: a folder with something in it."""
    try:
        return home.is_dir() and any(entry.name not in HOME_IGNORED for entry in home.iterdir())
    except OSError:
        return True  # let the store say what is wrong


def _cmd_init(args: argparse.Namespace) -> int:
    """Create the data home (or say it is there already). Always the local one."""
    home = data_home(args)
    existed = home_exists(home)
    Store(home)
    if args.json:
        print(json.dumps({"home": str(home), "created": not existed}, indent=2), flush=True)
    else:
        print(escape_controls(f"{'Data home already at' if existed else 'Created the data home'} {home}"))
    return 0


PROG = "claude-code-scheduler"
# bash and zsh share the tables and the function that reads the words typed so far
# (zsh runs it with 0-based arrays); each then offers the candidates its own way.
SH_COMPLETION = """declare -gA _ccs_words=(
{words}
)
# The verbs whose first argument is an id, and the options that take one: which kind.
declare -gA _ccs_ids=(
{ids}
)
declare -gA _ccs_id_options=(
{id_options}
)
_ccs_find() {{  # COMP_WORDS, COMP_CWORD -> the caller's _ccs_key, _ccs_kind, _ccs_home
    local i word at=0 cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    _ccs_key="top" _ccs_kind="" _ccs_home=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        if [[ -n "${{_ccs_words[$_ccs_key $word]+x}}" ]]; then _ccs_key="$_ccs_key $word" at=$i; fi
        if [[ $word == --home ]]; then _ccs_home=(--home "${{COMP_WORDS[i+1]}}"); fi
        if [[ $word == --home=* ]]; then _ccs_home=("$word"); fi
    done
    if [[ -n $prev && -n "${{_ccs_id_options[$prev]+x}}" ]]; then
        _ccs_kind=${{_ccs_id_options[$prev]}}
    elif [[ $at -eq $((COMP_CWORD - 1)) && $cur != -* && -n "${{_ccs_ids[$_ccs_key]+x}}" ]]; then
        _ccs_kind=${{_ccs_ids[$_ccs_key]}}
    fi
}}
"""
BASH_COMPLETION = """# {prog} completion for bash: eval "$({prog} cli completion bash)" in ~/.bashrc
{common}_ccs_complete() {{
    local _ccs_key _ccs_kind _ccs_home cur=${{COMP_WORDS[COMP_CWORD]}}
    _ccs_find
    if [[ -n $_ccs_kind ]]; then  # ids (or names, completed to ids) from the data home
        COMPREPLY=($("${{COMP_WORDS[0]}}" cli {complete} "$_ccs_kind" "${{_ccs_home[@]}}" -- "$cur" \\
            2>/dev/null))
        return
    fi
    COMPREPLY=($(compgen -W "${{_ccs_words[$_ccs_key]}}" -- "$cur"))
}}
complete -F _ccs_complete {prog}
"""
ZSH_COMPLETION = """# {prog} completion for zsh: eval "$({prog} cli completion zsh)" in ~/.zshrc
(( $+functions[compdef] )) || {{ autoload -U compinit && compinit }}
{common}_ccs_zsh() {{
    setopt localoptions ksharrays  # _ccs_find counts as bash does
    local COMP_CWORD=$((CURRENT - 1)) _ccs_key _ccs_kind
    local -a COMP_WORDS _ccs_home found shown
    COMP_WORDS=("${{words[@]}}")
    _ccs_find
    if [[ -n $_ccs_kind ]]; then  # ids (or names, completed to ids: -U) from the data home
        found=(${{(f)"$("${{COMP_WORDS[0]}}" cli {complete} "$_ccs_kind" "${{_ccs_home[@]}}" --describe \\
            -- "${{COMP_WORDS[COMP_CWORD]}}" 2>/dev/null)"}})  # one a line, none when none
        shown=("${{found[@]/$'\\t'/  -- }}")
        compadd -U -l -d shown -- "${{found[@]%%$'\\t'*}}"
        (( ${{#found[@]}} < 2 )) || compstate[insert]=menu  # the first in place of the word typed
        return
    fi
    compadd -- ${{=_ccs_words[$_ccs_key]}}
}}
compdef _ccs_zsh {prog}
"""
FISH_COMPLETION = """# {prog} completion for fish: {prog} cli completion fish | source
# (or save it as ~/.config/fish/completions/{prog}.fish)
function __ccs_words --description 'what may follow a mode, group or verb'
    switch $argv[1]
{words}
        case '*'
            return 1
    end
end
function __ccs_ids --description 'the kind of id that the first argument of a verb is'
    switch $argv[1]
{ids}
    end
end
function __ccs_complete
    set -l words (commandline -opc)
    set -l cur (commandline -ct | string unescape)
    set -l key top
    set -l at 1
    set -l home
    set -l kind
    for i in (seq 2 (count $words))
        if __ccs_words "$key $words[$i]" >/dev/null
            set key "$key $words[$i]"
            set at $i
        end
        switch $words[$i]
            case --home
                set home --home $words[(math $i + 1)]
            case '--home=*'
                set home $words[$i]
        end
    end
    switch $words[-1]
{id_options}
    end
    if test -z "$kind" -a $at -eq (count $words); and not string match -q -- '-*' "$cur"
        set kind (__ccs_ids $key)
    end
    if test -n "$kind"  # ids from the data home, each with its name, which fish completes from too
        $words[1] cli {complete} $kind $home --describe -- "$cur" 2>/dev/null
    else
        __ccs_words $key
    end
end
complete -c {prog} -f -a '(__ccs_complete)'
"""


ID_KINDS = ("jobs", "tasks", "runs")
ID_OPTIONS = {"--job": "jobs", "--into-job": "jobs", "--task": "tasks", "--after": "tasks"}
COMPLETE_IDS = "complete-ids"  # hidden: what the completion scripts run for ids
COMPLETE_RUNS_MAX = 200  # the newest runs offered


def completion_ids() -> dict[str, str]:
    """Each verb (by path) whose first argument is an id -> the kind of that id."""
    kinds: dict[str, str] = {}
    for path, parser in _commands_below(build_parser(), ""):
        first = next((action for action in parser._actions if not action.option_strings), None)
        group = path.split(" ")[1] if path.count(" ") == 2 else ""
        if first is not None and first.metavar == "ID" and group in ID_KINDS:
            kinds[path] = group
        elif first is not None and first.metavar == "TASK":
            kinds[path] = "tasks"
    return kinds


def completion_words() -> dict[str, list[str]]:
    """Each mode, group and verb (by its path, '' for the top) -> what may follow it:
    the names below it, then its options."""
    table: dict[str, list[str]] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        below: list[str] = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                below += list(action.choices)
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}".strip())
        table[path] = below + [name for action in parser._actions for name in action.option_strings]

    walk(build_parser(), "")
    return table


def completion_script(shell: str) -> str:
    """The completion script for bash, zsh or fish, each made from the same tables."""
    table, ids = completion_words(), completion_ids()
    if shell == "fish":
        return _fish_completion(table, ids)
    common = SH_COMPLETION.format(
        words="\n".join(
            f'    ["{f"top {path}".strip()}"]="{" ".join(found)}"' for path, found in table.items()
        ),
        ids="\n".join(f'    ["top {path}"]="{kind}"' for path, kind in ids.items()),
        id_options="\n".join(f'    ["{option}"]="{kind}"' for option, kind in ID_OPTIONS.items()),
    )
    script = ZSH_COMPLETION if shell == "zsh" else BASH_COMPLETION
    return script.format(prog=PROG, common=common, complete=COMPLETE_IDS)


def _fish_completion(table: dict[str, list[str]], ids: dict[str, str]) -> str:
    def case(pattern: str, then: str) -> str:
        return f"        case {pattern}\n            {then}"

    words = "\n".join(
        case(f"'{f'top {path}'.strip()}'", f"printf '%s\\n' {' '.join(found)}")
        for path, found in table.items()
    )
    kinds = "\n".join(
        case(" ".join(f"'top {path}'" for path, of in ids.items() if of == kind), f"echo {kind}")
        for kind in dict.fromkeys(ids.values())
    )
    options = "\n".join(
        case(" ".join(option for option, of in ID_OPTIONS.items() if of == kind), f"set kind {kind}")
        for kind in dict.fromkeys(ID_OPTIONS.values())
    )
    return FISH_COMPLETION.format(
        prog=PROG, words=words, ids=kinds, id_options=options, complete=COMPLETE_IDS
    )


def complete_ids(argv: list[str]) -> int:
    """`cli complete-ids jobs|tasks|runs [--home DIR] [--describe] [-- WORD]`, run by the
    completion scripts: the short ids of the records whose id (or, for jobs and tasks,
    name) starts with WORD, one a line (--describe: a tab and the name after each, as
    fish shows them). Quick, reads only, never creates a home, and says nothing of errors."""
    import io

    parser = argparse.ArgumentParser(prog=f"{PROG} cli {COMPLETE_IDS}", add_help=False)
    parser.add_argument("kind", choices=ID_KINDS)
    parser.add_argument("--home")
    parser.add_argument("--describe", action="store_true")
    # The word after `--` is split off by hand: an optional positional of argparse is
    # taken (empty) with the kind, so a word after options would be refused.
    cut = argv.index("--") if "--" in argv else len(argv)
    words = argv[cut + 1 :]
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # nothing said into the shell
            args = parser.parse_args(argv[:cut])
            if len(words) > 1:
                parser.error("one word to complete")
        home = data_home(args)
        if not home_exists(home):
            return 0
        named = _id_candidates(Store(home), args.kind)
    except (SchedulerError, SystemExit):
        return 1
    shorts = short_ids(ident for ident, _ in named)
    word = _unquoted(words[0] if words else "").lower()
    for ident, name in named:
        if ident.startswith(word) or (args.kind != "runs" and name.lower().startswith(word)):
            print(f"{shorts[ident]}\t{escape_controls(name)}" if args.describe else shorts[ident])
    return 0


def _unquoted(word: str) -> str:
    """The word as typed, its shell quoting taken off: `Release\\ n`, `'Release n` -> Release n
    (bash and zsh pass the word as typed; fish has taken the quotes off already)."""
    return re.sub(r"\\(.)", r"\1", word.strip("'\""))


def _id_candidates(store: Store, kind: str) -> list[tuple[str, str]]:
    """(id, what people know it by) of each job or task; of the newest runs."""
    if kind == "jobs":
        return [(job.id, job.name) for job in store.job_list()]
    tasks = {task.id: task.name for task in store.task_list()}
    if kind == "tasks":
        return list(tasks.items())
    runs = sorted(store.all_runs(), key=lambda run: run.created_at, reverse=True)[:COMPLETE_RUNS_MAX]
    return [
        (run.id, f"{tasks.get(run.task_id, '?')} {run.status.value} {fmt_local(run.created_at)}")
        for run in runs
    ]


REFERENCE_START = "<!-- cli-reference: made by claude_scheduler.cli_reference(); do not edit -->"
REFERENCE_END = "<!-- /cli-reference -->"


def cli_reference() -> str:
    """The README's CLI reference, made from the parser: each command of `cli` with its
    arguments and options (the global ones left out), so it cannot drift."""
    lines = [REFERENCE_START, ""]
    parser = build_parser()
    common = {name for action in _common_parent()._actions for name in action.option_strings}
    for path, sub in _commands_below(parser, ""):
        if not path.startswith("cli ") or any(
            isinstance(a, argparse._SubParsersAction) for a in sub._actions
        ):
            continue
        lines.append(f"- `{path}`: {sub.description or ''}".rstrip(": "))
        for action in sub._actions:
            if set(action.option_strings) & (common | {"-h", "--help"}):
                continue
            names = ", ".join(action.option_strings) or action.metavar or action.dest
            lines.append(f"  - `{names}`: {action.help}")
    return "\n".join([*lines, "", REFERENCE_END])


def _commands_below(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands_below(sub, f"{path} {name}".strip())


def _cmd_completion(args: argparse.Namespace) -> int:
    """Print the completion script for a shell (no data home needed)."""
    print(completion_script(args.shell), end="", flush=True)
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    """Check the setup, print a line per check; exit 1 when any found a problem. Over --api,
    the server's checks. Runs without a CliContext: opening a store would create the home."""
    home = data_home(args)
    url = getattr(args, "api", None) or os.environ.get(API_ENV)
    checks = _remote_checks(url, home) if url else [check.to_dict() for check in check_setup(home)]
    width = shutil.get_terminal_size((DOCTOR_WIDTH, 24)).columns
    print(
        json.dumps({"checks": checks}, indent=2, ensure_ascii=False)  # GET /api/doctor's shape
        if args.json
        else doctor_text(checks, width),
        flush=True,
    )
    return 1 if any(check["level"] == CHECK_PROBLEM for check in checks) else 0


def _remote_checks(url: str, home: Path) -> list[JSONDict]:
    try:
        return ApiClient.for_home(url, home).check_setup()
    except ApiUnreachable as error:
        fix = f"Start the server, or correct --api or ${API_ENV}."
        return [Check("api", CHECK_PROBLEM, error.message, fix).to_dict()]


def doctor_text(checks: list[JSONDict], width: int = DOCTOR_WIDTH) -> str:
    """The checks as a table for a terminal `width` columns wide: level, check, message,
    and under a warning or a problem its fix; long texts wrap within their column."""
    import textwrap

    names = [_clip(check["check"], DOCTOR_CHECK_MAX) for check in checks]
    name_width = max(map(_text_width, [*names, "CHECK"]))
    indent = " " * (DOCTOR_LEVEL_WIDTH + name_width + 4)
    text_width = max(width - 1 - len(indent), DOCTOR_TEXT_MIN)
    wrap = functools.partial(textwrap.wrap, width=text_width, break_long_words=False, break_on_hyphens=False)
    lines = [f"{'LEVEL'.ljust(DOCTOR_LEVEL_WIDTH)}  {'CHECK'.ljust(name_width)}  RESULT"]
    for check, name in zip(checks, names, strict=True):
        body = wrap(check["message"]) or [""]
        if check["fix"]:
            body += wrap(f"fix: {check['fix']}")
        pad = " " * (name_width - _text_width(name))
        lines.append(f"{check['level'].ljust(DOCTOR_LEVEL_WIDTH)}  {name}{pad}  {body[0]}")
        lines += [indent + line for line in body[1:]]
    return "\n".join([*lines, "", _doctor_summary(checks)])


def _doctor_summary(checks: list[JSONDict]) -> str:
    levels = [check["level"] for check in checks]
    problems, warnings = levels.count(CHECK_PROBLEM), levels.count(CHECK_WARNING)
    if not problems and not warnings:
        return "Everything checks out."
    return f"{_plural(problems, 'problem')}, {_plural(warnings, 'warning')}."


def _cmd_settings_show(ctx: CliContext) -> int:
    settings = ctx.backend.get_settings()
    return ctx.show(settings, lambda: _settings_text(ctx, settings))


def _settings_text(ctx: CliContext, settings: JSONDict) -> str:
    """The settings, and (unless over --api: the server finds its own) the claude in use."""
    if ctx.backend.remote:
        return format_fields(settings)
    info = describe_claude(settings["claude_path"], os.environ, Path.home())
    return format_fields({**settings, "claude in use": claude_text(info)})


def _cmd_settings_set(ctx: CliContext) -> int:
    name, text = ctx.args.name, ctx.args.value
    if name not in DEFAULT_SETTINGS:
        raise BadRequest(f"unknown setting {name!r} (settings: {', '.join(DEFAULT_SETTINGS)})")
    value: JSON = text
    if name in SETTING_RULES:
        value = int(text) if text.strip().lstrip("-").isdigit() else text
    elif text.strip().lower() in ("", "none", "default"):
        value = None
    settings = ctx.backend.update_settings({name: value})
    if name == "claude_path" and value and not ctx.backend.remote:
        try:
            _explicit_claude("the claude_path setting", str(value), Path.home(), os.environ)
        except ClaudeNotFound as error:
            ctx.err(f"warning: {error}")
    return ctx.show(settings, lambda: _settings_text(ctx, settings))


WEEKLY_RE = r"(?i)^([a-z0-9,\-]+)@(\d{1,2}):(\d{2})$"
MONTHLY_RE = r"(?i)^(L|\d{1,2})@(\d{1,2}):(\d{2})$"


def _hhmm(text: str, option: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise Invalid(f"{text!r} is not a time of day like 09:30", option)
    return int(match[1]), int(match[2])


def _preset_cron(args: argparse.Namespace) -> str | None:
    """--daily / --weekly / --monthly written as the cron expressions they stand for."""
    if args.daily:
        hour, minute = _hhmm(args.daily, "--daily")
        return f"{minute} {hour} * * *"
    for option, pattern, example, day_field in (
        ("weekly", WEEKLY_RE, "mon,fri@09:00", "dow"),
        ("monthly", MONTHLY_RE, "1@09:00 or L@09:00", "dom"),
    ):
        text = getattr(args, option)
        if text:
            match = re.match(pattern, text.strip())
            if not match:
                raise Invalid(f"{text!r} is not like {example}", f"--{option}")
            hour, minute = _hhmm(f"{match[2]}:{match[3]}", f"--{option}")
            days = match[1].lower() if day_field == "dow" else match[1].upper()
            return f"{minute} {hour} * * {days}" if day_field == "dow" else f"{minute} {hour} {days} * *"
    return None


SCHEDULE_TEXT_OPTIONS = ("cron", "daily", "weekly", "monthly", "every", "at", "watch")


def _schedule_from_args(args: argparse.Namespace, current: JSONDict | None = None) -> JSONDict | None:
    """The schedule the options describe. On an update (`current` is the task's schedule)
    a new cron time keeps the zone, and --timezone or --debounce alone change just that;
    options that would be ignored are usage errors."""
    current = current or {}
    for option in SCHEDULE_TEXT_OPTIONS:  # empty is not "not given": it would pick another schedule
        if getattr(args, option, None) == "":
            raise Invalid("must not be empty", f"--{option}")
    cron = args.cron or _preset_cron(args)
    debounce = getattr(args, "debounce", None)
    if args.timezone and not cron:
        if current.get("type") != ScheduleType.CRON:
            raise BadRequest("--timezone goes with --cron, --daily, --weekly or --monthly")
        return {**current, "timezone": args.timezone}
    if debounce is not None and not args.watch:
        if current.get("type") != ScheduleType.FILE_WATCH:
            raise BadRequest("--debounce goes with --watch")
        return {**current, "debounce_seconds": debounce}
    if cron:
        kept = current.get("timezone") if current.get("type") == ScheduleType.CRON else None
        return {"type": "cron", "expression": cron, "timezone": args.timezone or kept}
    if args.every:
        return {"type": "interval", "every_seconds": parse_duration(args.every, "--every")}
    if args.at:
        return {"type": "once", "at": fmt_time(parse_time(args.at, "--at"))}
    if getattr(args, "startup", False):
        return {"type": "startup"}
    if getattr(args, "watch", None):
        debounce = DEFAULT_DEBOUNCE if args.debounce is None else args.debounce
        return {"type": "file_watch", "path": _cli_path(args.watch), "debounce_seconds": debounce}
    if getattr(args, "manual", False):
        return {"type": "manual"}
    return None


def _read_prompt(args: argparse.Namespace) -> str | None:
    if args.prompt_file:
        try:
            return Path(args.prompt_file).read_text(encoding="utf-8")
        except OSError as error:
            raise Invalid(f"cannot read {args.prompt_file}: {error.strerror}", "--prompt-file") from None
        except UnicodeDecodeError:
            raise Invalid(f"{args.prompt_file} is not UTF-8 text", "--prompt-file") from None
    if args.prompt == "-":
        try:
            return sys.stdin.read()
        except UnicodeDecodeError:
            raise Invalid("standard input is not UTF-8 text", "--prompt") from None
    return str(args.prompt) if args.prompt is not None else None


def _run_after_from_args(ctx: CliContext, current: JSONDict | None) -> JSONDict | None:
    args = ctx.args
    if args.after is not None and args.after.strip().lower() == "none":
        if args.after_when is not None:
            raise BadRequest("--after-when goes with --after TASK, not --after none")
        return None
    previous = (current or {}).get("run_after") or {}
    if args.after is None and not previous:
        raise BadRequest("--after-when goes with --after TASK")
    task_id = ctx.resolve("task", args.after) if args.after is not None else previous["task_id"]
    return {"task_id": task_id, "when": args.after_when or previous.get("when") or AfterWhen.SUCCEEDED.value}


TASK_OPTIONS: tuple[tuple[str, str], ...] = (
    ("name", "name"),
    ("model", "model"),
    ("permission_mode", "permission_mode"),
    ("working_dir", "working_directory"),
    ("max_turns", "max_turns"),
    ("append_system_prompt", "append_system_prompt"),
    ("system_prompt", "system_prompt"),
    ("strict_mcp_config", "strict_mcp_config"),
    ("session_mode", "session_mode"),
    ("overlap", "overlap"),
    ("catch_up", "catch_up"),
    ("enabled", "enabled"),
    ("fail_on_denials", "fail_on_permission_denials"),
    ("on_failure", "on_failure"),
    ("skip_in_job", "skip_in_job"),
)


# A stored field -> the option that sets it, so that errors name what the user typed.
FIELD_OPTIONS = {
    "name": "--name",
    "description": "--description",
    "status": "--status",
    "prompt": "--prompt",
    "job_id": "--job",
    "model": "--model",
    "permission_mode": "--permission-mode",
    "working_directory": "--working-dir",
    "timeout_seconds": "--timeout",
    "max_turns": "--max-turns",
    "allowed_tools": "--allowed-tools",
    "disallowed_tools": "--disallowed-tools",
    "append_system_prompt": "--append-system-prompt",
    "system_prompt": "--system-prompt",
    "max_budget_usd": "--max-budget-usd",
    "fallback_model": "--fallback-model",
    "add_dirs": "--add-dir",
    "mcp_config": "--mcp-config",
    "extra_args": "--extra-args",
    "strict_mcp_config": "--strict-mcp-config",
    "fail_on_permission_denials": "--fail-on-denials",
    "on_failure": "--on-failure",
    "skip_in_job": "--skip-in-job",
    "run_after": "--after",
    "run_after.task_id": "--after",
    "run_after.when": "--after-when",
    "session_mode": "--session-mode",
    "overlap": "--overlap",
    "catch_up": "--catch-up",
    "env": "--env",
    "retry.max_attempts": "--retries",
    "retry.delay_seconds": "--retry-delay",
    "schedule.every_seconds": "--every",
    "schedule.at": "--at",
    "schedule.expression": "--cron",
    "schedule.timezone": "--timezone",
    "schedule.path": "--watch",
    "schedule.debounce_seconds": "--debounce",
}
DURATION_OPTIONS = ("--every", "--timeout")  # their limits are shown as durations
BETWEEN = r"must be between (\d+) and (\d+) \(got (\d+)\)"


def cli_error_text(error: SchedulerError) -> str:
    """An error as the command line says it: the option the user typed, not the field."""
    if not error.field:
        return str(error)
    key = re.sub(r"\[\d+\]$", "", error.field)  # add_dirs[2] -> add_dirs; env.NAME -> env
    option = FIELD_OPTIONS.get(key) or FIELD_OPTIONS.get(key.partition(".")[0])
    message = error.message
    if option in DURATION_OPTIONS:
        message = re.sub(
            BETWEEN,
            lambda m: (
                f"must be between {_duration_word(int(m[1]))} and "
                f"{_duration_word(int(m[2]))} (got {_duration_word(int(m[3]))})"
            ),
            message,
        )
    return f"{option or error.field}: {message}"


def _duration_word(seconds: int) -> str:
    """90 -> 1m30s: a duration as --every and --timeout take it."""
    parts = []
    for unit, size, _ in DURATION_UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _task_fields(ctx: CliContext, *, creating: bool, prompt: str | None) -> JSONDict:
    """The task fields the options give. On update, `env` holds only the variables to set
    or (None) drop, and schedule options that change part of the current schedule are
    merged into it."""
    args = ctx.args
    fields: JSONDict = {
        key: getattr(args, opt) for opt, key in TASK_OPTIONS if getattr(args, opt) is not None
    }
    if prompt is not None:
        fields["prompt"] = prompt
    if fields.get("working_directory"):
        fields["working_directory"] = _cli_path(fields["working_directory"])
    if args.job is not None:
        fields["job_id"] = None if args.job.lower() == "none" else ctx.resolve("job", args.job)
    current = None if creating else ctx.backend.get_task(ctx.resolve("task", args.id))
    schedule = _schedule_from_args(args, current["schedule"] if current else None)
    if schedule is not None:
        fields["schedule"] = schedule
    if args.after is not None or args.after_when is not None:
        fields["run_after"] = _run_after_from_args(ctx, current)
    if args.timeout is not None:
        fields["timeout_seconds"] = parse_duration(args.timeout, "--timeout")
    for option, key in (("--allowed-tools", "allowed_tools"), ("--disallowed-tools", "disallowed_tools")):
        if getattr(args, key) is not None:
            fields[key] = [rule for item in getattr(args, key) for rule in split_tool_rules(item, option)]
    fields.update(_claude_option_fields(args))
    env: dict[str, str | None] = dict(_env_pair(item) for item in args.env or [])
    env.update(dict.fromkeys(getattr(args, "unset_env", None) or []))  # None: drop it (update_task)
    if env:
        fields["env"] = env
    retry = {
        k: v
        for k, v in (("max_attempts", args.retries), ("delay_seconds", args.retry_delay))
        if v is not None
    }
    if retry:
        fields["retry"] = retry  # the service keeps the fields not given
    return fields


def _claude_option_fields(args: argparse.Namespace) -> JSONDict:
    """The fields of the claude options given; 'none' or '' clears a single value and
    `--add-dir ''` or `--extra-args ''` the list."""
    fields: JSONDict = {}
    if args.max_budget_usd is not None:
        fields["max_budget_usd"] = None if _is_none(args.max_budget_usd) else _cli_budget(args.max_budget_usd)
    if args.fallback_model is not None:
        fields["fallback_model"] = None if _is_none(args.fallback_model) else args.fallback_model
    if args.mcp_config is not None:
        fields["mcp_config"] = None if _is_none(args.mcp_config) else _cli_path(args.mcp_config.strip())
    if args.add_dirs is not None:
        fields["add_dirs"] = [_cli_path(item.strip()) for item in args.add_dirs if item.strip()]
    if args.extra_args is not None:
        fields["extra_args"] = split_words(args.extra_args, "--extra-args")
    return fields


def _is_none(text: str) -> bool:
    return text.strip().lower() in ("", "none")


def _cli_budget(text: str) -> float:
    try:
        return float(text.strip().removeprefix("$"))
    except ValueError:
        raise Invalid(f"{text!r} is not an amount of US dollars like 2.50", "--max-budget-usd") from None


def _env_pair(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep:
        raise Invalid(f"{item!r} is not NAME=VALUE", "--env")
    return name, value


# Words people write for a duration's unit -> the letter --every and --timeout take.
UNIT_WORDS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "m"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("d", "day", "days"), "d"),
}
INVALID_CHOICE = r"invalid choice: '(.*)' \(choose from (.*)\)$"
EXPECTED_VALUE = r"argument (\S+): expected one argument$"
SUGGEST_CUTOFF = 0.6  # how alike a typo and a name must be for "did you mean"


class _NeedsWholeParser(Exception):
    """Raised by a parser built for part of the command line where only the whole will do."""


class CliParser(argparse.ArgumentParser):
    """argparse with errors for people: the one line that matters, a hint where one
    helps (did you mean, one word for a value), and where the help is; not the usage."""

    argv: Sequence[str] = ()  # what it parses, for hints about unrecognized words
    is_part = False  # built for one argv (see build_parser): help and errors need the whole
    is_top = False  # the parser main calls, which then starts again with the whole one

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.argv = sys.argv[1:] if args is None else list(args)
        try:
            return super().parse_known_args(args, namespace)
        except _NeedsWholeParser:
            if not self.is_top:
                raise
            return build_parser().parse_known_args(args, namespace)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        try:
            return super().parse_args(args, namespace)
        except _NeedsWholeParser:
            if not self.is_top:
                raise
            return build_parser().parse_args(args, namespace)

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        if self.is_part:  # help lists every mode, group or verb
            raise _NeedsWholeParser
        super().print_help(file)

    def error(self, message: str) -> typing.NoReturn:
        if self.is_part:
            raise _NeedsWholeParser
        reached = _reached_parser(self, self.argv) if "unrecognized arguments" in message else self
        hints = _usage_hints(reached, message, self.argv)
        lines = [f"{reached.prog}: error: {message}", *hints, f"Try '{reached.prog} --help' for more."]
        self.exit(2, escape_controls("\n".join(lines)) + "\n")


def _reached_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The deepest mode, group or verb parser that argv names."""
    for word in argv:
        subparsers = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if subparsers is not None and word in subparsers.choices:
            parser = subparsers.choices[word]
    return parser


def _usage_hints(parser: argparse.ArgumentParser, message: str, argv: Sequence[str]) -> list[str]:
    choice = re.search(INVALID_CHOICE, message)
    if choice:
        return _did_you_mean(choice[1], re.findall(r"'([^']*)'", choice[2]))
    expected = re.search(EXPECTED_VALUE, message)
    if expected:
        return _dash_value_hint(expected[1].split("/"), list(argv))
    subparsers = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if message.startswith("the following arguments are required") and subparsers is not None:
        return [f"Choose one of: {', '.join(subparsers.choices)}"]
    if not message.startswith("unrecognized arguments: "):
        return []
    hints: list[str] = []
    options = [name for action in parser._actions for name in action.option_strings]
    for word in message.removeprefix("unrecognized arguments: ").split():
        if word.startswith("-"):
            hints += _did_you_mean(word.partition("=")[0], options)
        else:
            hints += _one_word_hint(word, list(argv))
    return hints


def _did_you_mean(word: str, names: Sequence[str]) -> list[str]:
    import difflib

    close = difflib.get_close_matches(word, names, n=1, cutoff=SUGGEST_CUTOFF)
    return [f"Did you mean '{close[0]}'?"] if close else []


def _dash_value_hint(names: list[str], argv: list[str]) -> list[str]:
    """`--extra-args "--effort high"`: a value that starts with '-' reads as an option."""
    for at, word in enumerate(argv[:-1]):
        if word in names and argv[at + 1].startswith("-"):
            return [f"A value that starts with '-' goes after '=': {word}={_shell_words([argv[at + 1]])}"]
    return []


def _one_word_hint(word: str, argv: list[str]) -> list[str]:
    """`--every 2 hours`: the value was given in two words."""
    at = argv.index(word) if word in argv else -1
    if at < 2 or not argv[at - 2].startswith("--"):
        return []
    option, first = argv[at - 2], argv[at - 1]
    unit = UNIT_WORDS.get(word.lower())
    if unit and first.isdigit():
        return [f"A value is one word: write {option} {first}{unit}"]
    return [f"A value is one word: quote it, as in {option} '{first} {word}'"]


HOME_HELP = f"data home (default ${HOME_ENV} or {DEFAULT_HOME})"


def _common_parent() -> argparse.ArgumentParser:
    """Options every verb takes; SUPPRESS keeps a verb from hiding one given earlier."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON, with full ids"
    )
    parent.add_argument(
        "--api", metavar="URL", default=argparse.SUPPRESS, help=f"use a running server (or ${API_ENV})"
    )
    parent.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS, help=HOME_HELP)
    # argparse counts each subcommand's -v afresh, so they get their own dest and main adds it
    parent.add_argument(
        "-v",
        "--verbose",
        dest="verbose_below",
        action="count",
        default=argparse.SUPPRESS,
        help="more log output (repeatable)",
    )
    return parent


def _mode_parent() -> argparse.ArgumentParser:
    """--home and -v after `gui` or `serve` too, as after a `cli` verb."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS, help=HOME_HELP)
    parent.add_argument(
        "-v",
        "--verbose",
        dest="verbose_below",
        action="count",
        default=argparse.SUPPRESS,
        help="more log output (repeatable)",
    )
    return parent


def _schedule_options(parser: argparse.ArgumentParser, *, events: bool) -> None:
    group = parser.add_argument_group("schedule (pick one)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--cron", metavar="EXPR", help="5-field cron expression, e.g. '0 9 * * mon-fri'")
    choice.add_argument("--every", metavar="DURATION", help="interval such as 15m, 2h, 1d (at least 1m)")
    choice.add_argument("--at", metavar="TIME", help="once, at an ISO time such as 2026-12-01T09:00")
    choice.add_argument("--daily", metavar="HH:MM", help="every day at this time")
    choice.add_argument("--weekly", metavar="DAYS@HH:MM", help="e.g. mon,fri@09:00")
    choice.add_argument("--monthly", metavar="DAY@HH:MM", help="e.g. 1@09:00, or L@18:00 for the last day")
    if events:
        choice.add_argument("--startup", action="store_true", help="each time the scheduler starts")
        choice.add_argument("--watch", metavar="PATH", help="when files under PATH change")
        choice.add_argument("--manual", action="store_true", help="only when run by hand")
        group.add_argument(
            "--debounce",
            type=float,
            metavar="SECONDS",
            help=f"--watch: quiet time first (default {DEFAULT_DEBOUNCE:g})",
        )
    group.add_argument("--timezone", metavar="TZ", help="IANA zone for cron times (default: this machine's)")


def _default(creating: bool, text: str) -> str:
    """` (default X)` on create; update changes only what is given, so it shows none."""
    return f" (default {text})" if creating else ""


def _task_options(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    parser.add_argument("--name", required=creating, help="the task's name, shown in lists")
    prompt = parser.add_mutually_exclusive_group(required=creating)
    prompt.add_argument("--prompt", help="the prompt; '-' reads it from standard input")
    prompt.add_argument("--prompt-file", metavar="FILE", help="read the prompt from FILE")
    parser.add_argument(
        "--job", metavar="ID", help="job id (prefix)" + ("; 'none' to unassign" if not creating else "")
    )
    parser.add_argument(
        "--model",
        help="sonnet, opus, haiku or a full model id" + _default(creating, DEFAULT_MODEL),
    )
    parser.add_argument(
        "--permission-mode",
        choices=[mode.value for mode in PermissionMode],
        metavar="MODE",
        help="; ".join(f"{mode.value}: {text}" for mode, text in PERMISSION_MODE_HELP.items())
        + _default(creating, PermissionMode.DEFAULT.value),
    )
    parser.add_argument(
        "--working-dir",
        metavar="DIR",
        help="folder the session runs in" + _default(creating, "the job's, else the engine's"),
    )
    parser.add_argument(
        "--timeout",
        metavar="DURATION",
        help="stop the run after this long" + _default(creating, _duration_word(DEFAULT_TIMEOUT)),
    )
    parser.add_argument(
        "--retries", type=int, metavar="N", help="retry a failed run up to N times" + _default(creating, "0")
    )
    parser.add_argument(
        "--retry-delay",
        type=int,
        metavar="SECONDS",
        help="first retry delay, doubling each time" + _default(creating, "60"),
    )
    parser.add_argument(
        "--max-turns",
        type=int,
        metavar="N",
        help="end the session after N agentic turns" + _default(creating, "no limit"),
    )
    tools = "comma-separated rules, e.g. 'Bash(git log, git diff),Read'" + (
        "; repeatable" if creating else "; repeatable, replaces the list ('' clears it)"
    )
    parser.add_argument("--allowed-tools", action="append", metavar="TOOLS", help=tools)
    parser.add_argument("--disallowed-tools", action="append", metavar="TOOLS", help=tools)
    parser.add_argument("--append-system-prompt", metavar="TEXT", help="added to Claude's system prompt")
    _claude_options(parser, creating=creating)
    parser.add_argument(
        "--session-mode",
        choices=[mode.value for mode in SessionMode],
        help="new: each run starts a fresh session; resume: each run continues the session of the "
        "task's last run (claude --resume)" + _default(creating, SessionMode.NEW.value),
    )
    parser.add_argument(
        "--fail-on-denials",
        action=argparse.BooleanOptionalAction,
        help="count a run in which claude was refused a tool call as failed (default: no)",
    )
    parser.add_argument(
        "--overlap",
        choices=[mode.value for mode in Overlap],
        help="when a run is due while the last still runs: skip it, queue it, or run in parallel"
        + _default(creating, Overlap.SKIP.value),
    )
    parser.add_argument(
        "--catch-up",
        choices=[mode.value for mode in CatchUp],
        help="after downtime: skip the missed times, or run once for the latest"
        + _default(creating, CatchUp.ONCE.value),
    )
    parser.add_argument(
        "--on-failure",
        choices=[mode.value for mode in StepFailure],
        help="in a job run, after this step fails: stop (default), continue, or retry it first",
    )
    parser.add_argument(
        "--skip-in-job",
        action=argparse.BooleanOptionalAction,
        help="keep it in its job but leave it out of job runs",
    )
    parser.add_argument(
        "--after", metavar="TASK", help="run each time TASK finishes (see --after-when); 'none' stops that"
    )
    parser.add_argument(
        "--after-when",
        choices=[when.value for when in AfterWhen],
        help="with --after: which ends (default succeeded)",
    )
    env_help = "extra environment" if creating else "set one variable (the others stay)"
    parser.add_argument("--env", action="append", metavar="NAME=VALUE", help=f"{env_help}; repeatable")
    if not creating:
        parser.add_argument("--unset-env", action="append", metavar="NAME", help="drop one; repeatable")
    state = parser.add_mutually_exclusive_group()
    state.add_argument(
        "--disabled", dest="enabled", action="store_false", default=None, help="do not fire on the schedule"
    )
    state.add_argument(
        "--enabled",
        dest="enabled",
        action="store_true",
        default=None,
        help="fire on the schedule" + (" (the default)" if creating else ""),
    )
    _schedule_options(parser, events=True)


def _claude_options(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    clear, emptied = ("", "") if creating else ("; 'none' clears it", "; '' clears it")
    more = "; repeatable" if creating else "; repeatable, replaces the list ('' clears it)"
    add = parser.add_argument
    add("--system-prompt", metavar="TEXT", help=f"replaces Claude's system prompt{emptied}")
    add("--max-budget-usd", metavar="USD", help=f"end a run once it has cost this much{clear}")
    add("--fallback-model", metavar="MODEL", help=f"used while the model is overloaded{clear}")
    add("--add-dir", dest="add_dirs", action="append", metavar="DIR", help=f"one more folder to use{more}")
    add("--mcp-config", metavar="FILE", help=f"a JSON file of MCP servers to load{clear}")
    add("--strict-mcp-config", action=argparse.BooleanOptionalAction, help="only the servers of --mcp-config")
    add(
        "--extra-args",
        metavar="ARGS",
        help=f"more claude options, quoted as in a shell: --extra-args='--effort high'{emptied}",
    )


CliSpec = tuple[str, str, Callable[[CliContext], int], Callable[[argparse.ArgumentParser], None]]


def _with_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="id or unique prefix")


def _with_force(parser: argparse.ArgumentParser) -> None:
    _with_id(parser)
    parser.add_argument(
        "-y",
        "--yes",
        "--force",
        dest="force",
        action="store_true",
        help="do not ask (needed without a terminal)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")


def _no_options(parser: argparse.ArgumentParser) -> None:
    return None


def _jobs_create_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="the job's name, shown in lists")
    parser.add_argument("--description", help="what the job is for (default: none)")
    parser.add_argument(
        "--working-dir", metavar="DIR", help="default folder for the job's tasks (default: none)"
    )
    _job_schedule_options(parser)


def _job_schedule_options(parser: argparse.ArgumentParser) -> None:
    """A job's own schedule: it runs all its tasks, in order, as one job run."""
    _schedule_options(parser, events=True)
    parser.add_argument(
        "--overlap", choices=[Overlap.SKIP.value, Overlap.QUEUE.value], help="if its last job run still goes"
    )
    parser.add_argument("--catch-up", choices=[mode.value for mode in CatchUp], help="after downtime")


def _jobs_update_options(parser: argparse.ArgumentParser) -> None:
    _with_id(parser)
    parser.add_argument("--name", help="the job's name")
    parser.add_argument("--description", help="what the job is for ('' clears it)")
    parser.add_argument(
        "--status", choices=[status.value for status in JobStatus], help="where the work stands"
    )
    parser.add_argument(
        "--working-dir", metavar="DIR", help="default folder for the job's tasks ('' clears it)"
    )
    _job_schedule_options(parser)


def _tasks_list_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--job", metavar="ID", help="only this job's tasks")
    which.add_argument("--unassigned", action="store_true", help="only tasks without a job")


def _tasks_update_options(parser: argparse.ArgumentParser) -> None:
    _with_id(parser)
    _task_options(parser, creating=False)


def _enable_options(enabled: bool) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        _with_id(parser)
        parser.set_defaults(enabled=enabled)

    return add


def _count_option(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument("-n", "--count", type=int, default=default, help=f"how many (default {default})")


def _tasks_next_options(parser: argparse.ArgumentParser) -> None:
    _with_id(parser)
    _count_option(parser, DEFAULT_PREVIEW)


def _runs_list_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--task", metavar="ID", help="only this task's runs (default: all)")
    which.add_argument("--job", metavar="ID", help="only the runs of this job's tasks")
    parser.add_argument(
        "--status", choices=[status.value for status in RunStatus], help="only runs with this status"
    )
    _count_option(parser, 20)


def _preview_options(parser: argparse.ArgumentParser) -> None:
    _schedule_options(parser, events=False)
    parser.add_argument("--after", metavar="TIME", help="start from this time instead of now")
    _count_option(parser, DEFAULT_PREVIEW)


def _runs_log_options(parser: argparse.ArgumentParser) -> None:
    _with_id(parser)
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing while the run goes on")
    parser.add_argument("--raw", action="store_true", help="the raw stream-json lines")


def _tasks_run_options(parser: argparse.ArgumentParser) -> None:
    _with_id(parser)
    parser.add_argument("--detach", action="store_true", help="hand the run to the engine and return")
    _wait_for_engine_option(parser, "run")
    parser.add_argument("--raw", action="store_true", help="print the raw stream-json lines")
    _with_now(parser)


def _wait_for_engine_option(parser: argparse.ArgumentParser, noun: str) -> None:
    parser.add_argument(
        "--wait-for-engine",
        action="store_true",
        help=f"with --detach while no engine runs: wait for one, however long (by default the {noun} "
        "expires after the start_by_minutes setting)",
    )


def _with_now(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--now", action="store_true", help="start at once even with max_concurrent_runs sessions running"
    )


def _jobs_run_options(parser: argparse.ArgumentParser) -> None:
    _with_id(parser)
    parser.add_argument("--continue-on-failure", action="store_true", help="run the rest after a failure")
    parser.add_argument("--detach", action="store_true", help="hand the job to the engine and return")
    _wait_for_engine_option(parser, "job run")
    parser.add_argument("--raw", action="store_true", help="print the raw stream-json lines")
    _with_now(parser)


def _jobs_runs_options(parser: argparse.ArgumentParser) -> None:
    _with_id(parser)
    _count_option(parser, 10)


def _jobs_order_options(parser: argparse.ArgumentParser) -> None:
    _with_id(parser)
    parser.add_argument("tasks", nargs="+", metavar="TASK", help="task ids (prefixes) to put first, in order")


def _settings_set_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=list(DEFAULT_SETTINGS), help="the setting")
    parser.add_argument("value", help="its new value ('none' clears claude_path)")


def _export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--job", action="append", metavar="ID", help="export this job (repeatable; default: all)"
    )
    parser.add_argument("--runs", action="store_true", help="also the tasks' finished runs")
    parser.add_argument("--logs", action="store_true", help="also the runs and their logs")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")


def _notify_events_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "switches", nargs="+", metavar="EVENT=on|off", help=f"events: {', '.join(NOTIFY_EVENTS)}"
    )
    parser.add_argument(
        "--task", metavar="ID", help="for this task only (EVENT=default drops its own choice)"
    )


def _notify_desktop_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("state", choices=("on", "off"), help="on or off")
    parser.add_argument("--command", help="notifier command, with {title} and {body} ('' for the platform's)")


def _notify_hook_add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="its name (an existing hook of that name is replaced)")
    parser.add_argument("url", help="http:// or https:// address to POST to")
    parser.add_argument(
        "--preset", choices=WEBHOOK_PRESETS, default="json", help="body format (default json)"
    )
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--secret", help="sign each body with HMAC-SHA256 of this key ('' for none)")
    secret.add_argument("--secret-env", metavar="VAR", help="the key from this environment variable")
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help=f"default {WEBHOOK_TIMEOUT_DEFAULT:g}"
    )
    parser.add_argument("--retries", type=int, metavar="N", help=f"default {WEBHOOK_RETRIES_DEFAULT}")
    parser.add_argument(
        "--backoff", type=float, metavar="SECONDS", help="first retry delay, doubling (default 2)"
    )
    parser.add_argument("--events", metavar="A,B", help="only these events (default: all that are on)")
    parser.add_argument("--disabled", action="store_true", help="keep it, send nothing")


def _notify_name_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the webhook's name")


def _notify_history_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")


def _service_install_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-start", action="store_true", help="write the definition; start it at next login"
    )


def _import_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="a bundle made by export ('-': standard input)")
    parser.add_argument("--dry-run", action="store_true", help="check and report, change nothing")
    parser.add_argument("--into-job", metavar="ID", help="put the tasks into this job; create no jobs")


def _pause_options(paused: bool) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.set_defaults(paused=paused)

    return add


CLI_COMMANDS: list[CliSpec] = [
    ("jobs", "list", _cmd_jobs_list, _no_options),
    ("jobs", "get", _cmd_jobs_get, _with_id),
    ("jobs", "create", _cmd_jobs_create, _jobs_create_options),
    ("jobs", "update", _cmd_jobs_update, _jobs_update_options),
    ("jobs", "delete", _cmd_jobs_delete, _with_force),
    ("jobs", "tasks", _cmd_jobs_tasks, _with_id),
    ("jobs", "usage", _cmd_jobs_usage, _no_options),
    ("tasks", "list", _cmd_tasks_list, _tasks_list_options),
    ("tasks", "get", _cmd_tasks_get, _with_id),
    ("tasks", "create", _cmd_tasks_create, lambda parser: _task_options(parser, creating=True)),
    ("tasks", "update", _cmd_tasks_update, _tasks_update_options),
    ("tasks", "delete", _cmd_tasks_delete, _with_force),
    ("tasks", "enable", _cmd_tasks_enable, _enable_options(True)),
    ("tasks", "disable", _cmd_tasks_enable, _enable_options(False)),
    ("tasks", "next", _cmd_tasks_next, _tasks_next_options),
    ("runs", "list", _cmd_runs_list, _runs_list_options),
    ("runs", "get", _cmd_runs_get, _with_id),
    ("runs", "delete", _cmd_runs_delete, _with_force),
    ("runs", "log", _cmd_runs_log, _runs_log_options),
    ("runs", "stop", _cmd_runs_stop, _with_id),
    ("tasks", "run", _cmd_tasks_run, _tasks_run_options),
    ("jobs", "run", _cmd_jobs_run, _jobs_run_options),
    ("jobs", "stop", _cmd_jobs_stop, _with_id),
    ("jobs", "runs", _cmd_jobs_runs, _jobs_runs_options),
    ("jobs", "order", _cmd_jobs_order, _jobs_order_options),
    ("engine", "status", _cmd_engine_status, _no_options),
    ("engine", "pause", _cmd_engine_pause, _pause_options(True)),
    ("engine", "resume", _cmd_engine_pause, _pause_options(False)),
    ("settings", "show", _cmd_settings_show, _no_options),
    ("settings", "set", _cmd_settings_set, _settings_set_options),
    ("schedule", "preview", _cmd_schedule_preview, _preview_options),
    ("jobs", "duplicate", _cmd_jobs_duplicate, _with_id),
    ("tasks", "duplicate", _cmd_tasks_duplicate, _with_id),
    ("export", "", _cmd_export, _export_options),
    ("import", "", _cmd_import, _import_options),
    ("desktop", "install", _cmd_desktop_install, _no_options),
    ("desktop", "uninstall", _cmd_desktop_uninstall, _no_options),
    ("service", "install", _cmd_service_install, _service_install_options),
    ("service", "uninstall", _cmd_service_uninstall, _no_options),
    ("service", "status", _cmd_service_status, _no_options),
    ("notify", "show", _cmd_notify_show, _no_options),
    ("notify", "events", _cmd_notify_events, _notify_events_options),
    ("notify", "desktop", _cmd_notify_desktop, _notify_desktop_options),
    ("notify", "hook-add", _cmd_notify_hook_add, _notify_hook_add_options),
    ("notify", "hook-remove", _cmd_notify_hook_remove, _notify_name_options),
    ("notify", "history", _cmd_notify_history, _notify_history_options),
    ("notify", "test", _cmd_notify_test, _no_options),
]
# The commands that only read: on a missing data home they say so rather than create it.
CLI_READS = frozenset(
    {
        "jobs list",
        "jobs get",
        "jobs tasks",
        "jobs usage",
        "jobs runs",
        "tasks list",
        "tasks get",
        "tasks next",
        "runs list",
        "runs get",
        "runs log",
        "engine status",
        "settings show",
        "export",
        "notify show",
        "notify history",
    }
)
CLI_GROUPS = {
    "init": "create the data home (any command that saves creates it too)",
    "completion": "print a shell completion script: groups, verbs, options, and the ids of jobs, "
    "tasks and runs (also from a name) complete on Tab",
    "jobs": "groups of related tasks",
    "tasks": "prompts with their settings and schedules",
    "runs": "the history of executions",
    "schedule": "try out schedules",
    "engine": "the scheduler engine",
    "settings": "claude path, concurrent runs, history kept",
    "doctor": "check the setup: claude, credentials, data home, engine, API, tasks",
    "export": "write jobs and tasks (optionally runs and logs) to a JSON bundle",
    "import": "bring in a bundle made by export, with new ids",
    "desktop": "the launcher in the desktop's application menu",
    "service": "the engine (serve) started at login, in the background",
    "notify": "notifications: events, desktop, webhooks, history",
}
CLI_HELP = {
    "show": "show the settings",
    "set": "change one setting",
    "list": "list them",
    "get": "show one",
    "create": "create one",
    "update": "change one",
    "delete": "delete one (and what belongs to it)",
    "tasks": "list a job's tasks",
    "usage": "what each job's runs cost and used: today, in 7 and in 30 days",
    "enable": "let a task fire on its schedule",
    "disable": "stop a task from firing",
    "next": "show a task's next fire times",
    "preview": "show a schedule's next fire times",
    "tasks run": "run now, showing the session here; with --detach, hand it to the engine. During "
    "a usage-limit hold a run here warns and goes ahead (you asked for it); one handed to the "
    "engine waits for the hold to lift",
    "jobs run": "run the job's tasks in order, showing each session here; with --detach, or when "
    "an engine runs, hand them to the engine. During a usage-limit hold a run here warns and goes "
    "ahead (you asked for it); one handed to the engine waits for the hold to lift",
    "stop": "stop what is running",
    "runs": "a job's runs, newest first, with each step's status",
    "order": "set the order a job runs its tasks in",
    "log": "show a run's log (--follow to keep watching)",
    "status": "who runs the engine, whether it is paused or holds runs for a usage limit",
    "pause": "stop starting new runs (running ones go on)",
    "resume": "start runs again: lifts a pause and a usage-limit hold",
    "duplicate": "copy one (the copy starts disabled)",
    "install": "install it for this user",
    "uninstall": "remove exactly what install wrote",
    "service status": "installed? running? its last exit, and which process runs the engine",
    "notify show": "what you are told about, and how",
    "notify events": "turn events on or off (for all tasks, or --task ID)",
    "notify desktop": "desktop notifications on or off",
    "hook-add": "add (or replace) a webhook",
    "hook-remove": "remove a webhook",
    "history": "the latest deliveries and how they went",
    "test": "send a sample through each channel",
}


def _add_cli(
    modes: argparse._SubParsersAction[argparse.ArgumentParser], named: set[str] | None = None
) -> None:
    parent = _common_parent()
    cli = modes.add_parser(
        "cli",
        help="command line",
        parents=[parent],
        description="Jobs, tasks and runs from the command line, straight on the data home "
        "(or through a running server with --api). Ids may be shortened to any unique prefix.",
        epilog="Examples: cli jobs create --name Nightly; "
        "cli tasks create --name Review --prompt-file review.md --daily 03:00; "
        "cli tasks run ID; cli runs log ID --follow",
    )
    groups = cli.add_subparsers(dest="group", metavar="GROUP", required=True)
    verbs_of: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for group, verb, func, add_options in CLI_COMMANDS:
        if named is not None and group not in named:
            continue
        if not verb:  # a verb of its own, such as `cli export`
            _add_cli_verb(groups, group, func, add_options, parent)
            continue
        if group not in verbs_of:
            group_parser = groups.add_parser(group, help=CLI_GROUPS[group], parents=[parent])
            verbs_of[group] = group_parser.add_subparsers(dest="verb", metavar="VERB", required=True)
        if named is not None and verb not in named:
            continue
        helptext = CLI_HELP.get(f"{group} {verb}", CLI_HELP.get(verb, verb))
        verb_parser = verbs_of[group].add_parser(verb, help=helptext, description=helptext, parents=[parent])
        add_options(verb_parser)
        verb_parser.set_defaults(func=func)
    for name, add in CLI_OWN_GROUPS:
        if named is None or name in named:
            add(groups, parent)


def _add_completion(
    groups: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    completion = groups.add_parser(
        "completion",
        help=CLI_GROUPS["completion"],
        description=f"{_sentence(CLI_GROUPS['completion'])} For bash: "
        f'eval "$({PROG} cli completion bash)" in ~/.bashrc; for zsh: '
        f'eval "$({PROG} cli completion zsh)" in ~/.zshrc; for fish: '
        f"{PROG} cli completion fish > ~/.config/fish/completions/{PROG}.fish",
        parents=[parent],
    )
    completion.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete in")
    completion.set_defaults(run_alone=_cmd_completion)


def _add_init(
    groups: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    init = groups.add_parser(
        "init", help=CLI_GROUPS["init"], description=CLI_GROUPS["init"], parents=[parent]
    )
    init.set_defaults(run_alone=_cmd_init)


def _add_doctor(
    groups: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    doctor = groups.add_parser("doctor", help=CLI_GROUPS["doctor"], parents=[parent])
    doctor.description = (
        f"{_sentence(CLI_GROUPS['doctor'])} With --api, the server's checks. Exit code 1 when a "
        "check finds a problem."
    )
    doctor.set_defaults(run_alone=_cmd_doctor)


CLI_OWN_GROUPS = (("completion", _add_completion), ("init", _add_init), ("doctor", _add_doctor))


def _add_cli_verb(
    groups: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Callable[[CliContext], int],
    add_options: Callable[[argparse.ArgumentParser], None],
    parent: argparse.ArgumentParser,
) -> None:
    helptext = CLI_GROUPS[name]
    verb_parser = groups.add_parser(name, help=helptext, description=helptext, parents=[parent])
    add_options(verb_parser)
    verb_parser.set_defaults(func=func)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; or, given the argv it is for, the parts of it that argv can
    reach. argparse picks a subcommand only by its exact name, so the modes, groups and
    verbs that argv does not name are left out: a CLI call need not build some forty
    parsers to use one. Such a part hands help and errors, which list them all, to the
    whole parser."""
    named = None if argv is None else set(argv)
    parser: argparse.ArgumentParser = CliParser(
        prog=PROG,
        description="Schedule unattended Claude Code sessions and keep every run's history.",
        epilog="With no mode the window opens. Try: serve, cli jobs list, cli tasks create --help.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--home", metavar="DIR", help=HOME_HELP)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    modes = parser.add_subparsers(dest="mode", metavar="MODE")
    for name, add in (("gui", _add_gui), ("serve", _add_serve), ("cli", _add_cli)):
        if named is None or name in named:
            add(modes, named)
    if named is not None:
        _mark_part(parser)
    return parser


def _add_gui(modes: argparse._SubParsersAction[argparse.ArgumentParser], named: set[str] | None) -> None:
    gui = modes.add_parser(
        "gui",
        help="open the window (the default)",
        description="Open the window on the data home. It runs the scheduler engine while open "
        f"(unless another process does) and serves the REST API on 127.0.0.1:{DEFAULT_PORT}. "
        "Its options work without `gui` too.",
        parents=[_mode_parent()],
    )
    gui.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"API port (default {DEFAULT_PORT}; 0: any free port)"
    )
    gui.add_argument("--no-api", action="store_true", help="do not serve the REST API")


def _add_serve(modes: argparse._SubParsersAction[argparse.ArgumentParser], named: set[str] | None) -> None:
    serve = modes.add_parser(
        "serve",
        help="run the engine and the REST API without a window",
        description="Run the scheduler engine and the REST API without a window, until Ctrl-C or "
        f"SIGTERM. By default on {DEFAULT_HOST}:{DEFAULT_PORT}, logging to standard error.",
        parents=[_mode_parent()],
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)"
    )
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)"
    )
    serve.add_argument(
        "--log-file", metavar="FILE", help="log there instead of to standard error (default: standard error)"
    )


def _mark_part(top: argparse.ArgumentParser) -> None:
    for _, sub in _commands_below(top, ""):
        if isinstance(sub, CliParser):
            sub.is_part = True
    if isinstance(top, CliParser):
        top.is_top = True


####
# GUI ####
####

# The window: five panes over one Service. Tk is imported inside the functions that build
# widgets, because some Pythons ship without it and the CLI must start fast. Only the Tk
# thread touches widgets: the worker thread and the engine post plain answers and events
# to the app's inbox, which an `after` loop drains.

GUI_SETTINGS_KEY = "gui"
GUI_TITLE = "Claude Code Scheduler"
GUI_CLASS_NAME = "ClaudeScheduler"
GUI_DELIVERY_COLUMNS = ("when", "event", "channel", "status", "tries", "error")
GUI_DELIVERY_WIDTHS = (90, 120, 160, 80, 50, 360)
GUI_DELIVERY_ROWS = 12
GUI_HOOK_COLUMNS = ("name", "preset", "url", "events", "secret")  # File → Notifications' webhooks
GUI_HOOK_WIDTHS = (110, 70, 300, 160, 60)
GUI_HOOK_ROWS = 4
GUI_HOOK_NUMBERS = (  # the webhook dialog's number fields: key, label, hint
    ("timeout_seconds", "Timeout", "seconds a try may take"),
    ("retries", "Retries", "after a network error, a 5xx, 408, 425 or 429"),
    ("backoff_seconds", "Backoff", "seconds before the first retry; doubles each time"),
)
GUI_BUNDLE_TYPES = (("Scheduler bundles", "*.json"), ("All files", "*"))
GUI_DEFAULT_SIZE = (1800, 1000)
GUI_SCREEN_MARGIN = 40  # a new window fits the screen with this much to spare
GUI_MIN_SIZE = (1100, 620)  # or the screen, if it is smaller
# Jobs | Tasks over Runs | Task editor over Log: where the sashes are at first start, as
# fractions of the width (two column sashes) and of each stacked column's height.
GUI_SASH_SHARES: dict[str, tuple[float, ...]] = {"columns": (0.19, 0.54), "middle": (0.45,), "right": (0.6,)}
# The least room a pane keeps, in the body font's digits across and lines down: its
# toolbar, tab labels and a few rows stay readable at every size and Tk scaling.
GUI_PANE_MIN_CHARS = {"jobs": 16, "tasks": 32, "runs": 32, "editor": 40, "log": 40}
GUI_PANE_MIN_LINES = {"jobs": 10, "tasks": 9, "runs": 9, "editor": 12, "log": 8}
GUI_SASH_WIDTH = 6
GUI_TOOL_GAP = 4
GUI_GROUP_GAP = 8  # more between groups of toolbar buttons
GUI_ENTRY_CHARS = 20  # ttk.Entry's own default width
GUI_DATE_CHARS = 11  # a YYYY-MM-DD field
GUI_DIALOG_CHARS = 46  # the width of a dialog's text fields
GUI_WRAP_MIN = 120  # where a label starts wrapping, before its place is known
GUI_WRAP_FLOOR = 40  # never wrap narrower: one word a line helps nobody
GUI_WRAP_MARGIN = 6  # a label's own padding
GUI_SUBTITLE_SEP = " · "  # between the parts of a pane's subtitle
GUI_ELLIPSIS = "…"
GUI_GEOMETRY = r"\d+x\d+([+-]-?\d+[+-]-?\d+)?"
GUI_POLL_MS = 40  # the inbox is drained this often
GUI_DRAIN_BUDGET_SECONDS = 0.05  # then keyboard and mouse get their turn again
GUI_REFRESH_MS = 1000  # changes made by other processes show within two seconds
GUI_FULL_READ_SECONDS = 10.0  # re-read even when no folder changed (coarse mtimes, an engine that died)
GUI_SETTLED_NS = 2_000_000_000  # a folder written this recently may change again within its mtime tick
GUI_SOON_MS = 80  # refresh this soon after an engine event
GUI_LOG_POLL_MS = 300  # an active run's log is tailed this often
GUI_PREVIEW_DELAY_MS = 250  # the schedule preview waits for typing to pause
GUI_WORKER_JOIN_SECONDS = 5.0
GUI_RUNS_SHOWN = 500  # newest runs listed for "All tasks" and "(Unassigned)"
GUI_NAMES_LISTED = 8  # task names a delete confirmation lists before "and N more"
GUI_OPEN_JOBS_MAX = 12  # with more jobs than this, job nodes start closed
GUI_PREVIEW_COUNT = 5
GUI_FONT_SIZE = 10
GUI_FONT_FAMILIES = ("Segoe UI", "Helvetica Neue", "Cantarell", "Ubuntu", "Noto Sans", "DejaVu Sans")
GUI_MONO_FAMILIES = (
    "Cascadia Mono",
    "Consolas",
    "Menlo",
    "Ubuntu Mono",
    "DejaVu Sans Mono",
    "Noto Sans Mono",
)
GUI_DOT_SIZE = 12
GUI_DOT_GAP = 5  # between a row's dot and its text
# A checkbox's box under X11 (see Looks._checkbox_indicator), in design pixels like the dot.
GUI_TICK_SIZE = 14
GUI_TICK_GAP = 5  # between the box and its label
GUI_TICK_MARK = ((3.5, 7.5), (6.0, 10.0), (10.5, 4.0))  # the tick's strokes, a polyline in the box
GUI_TICK_ELEMENT = "Tick.indicator"
GUI_TICK_STATES = {  # image -> palette roles of its (edge, fill, tick mark); None: no mark
    "off": ("muted", "field", None),
    "on": ("accent", "accent", "on_accent"),
    "off_disabled": ("border", "window", None),
    "on_disabled": ("border", "border", "muted"),
}
GUI_STRIP_RUNS = 8  # recent runs in a task's strip (the Tasks list)
GUI_STRIP_CELL = 6  # pixels across one run's cell
GUI_STRIP_GAP = 2
# The body font's line height (px) the pixel sizes above are drawn for; a bigger one
# (Tk scaling 2.0 on a 4K screen) scales the dots, the strip and the chart with the text.
GUI_DESIGN_LINESPACE = 17
GUI_MODELS = ("sonnet", "opus", "haiku")
GUI_NO_WINDOW = (
    "cannot open the window: {reason}.\n"
    "Without a display, use `claude-code-scheduler serve` for the scheduler engine and the REST "
    "API, or `claude-code-scheduler cli ...` for the command line."
)

# Status -> colour of its dot (and of failure text): dark enough to read on a light background.
GUI_STATUS_COLOURS = {
    "queued": "#9a6700",
    "running": "#0969da",
    "success": "#1a7f37",
    "failed": "#cf222e",
    "timeout": "#cf222e",
    "interrupted": "#cf222e",
    "cancelled": "#8c6e63",
    "skipped": "#8c959f",
    "missed": "#bc4c00",
    "deferred": "#bc4c00",
    "pending": "#8c959f",
    "in_progress": "#0969da",
    "completed": "#1a7f37",
    "never": "#d0d7de",
    "disabled": "#d0d7de",
    "scope": "#57606a",
}
GUI_FAILED_KEYS = ("failed", "timeout", "interrupted")
GUI_LEVEL_STYLES = {"error": "Error.TLabel", "warning": "Warning.TLabel"}  # a note's level -> style
GUI_MENU_COLOURS = {  # X11 menu option -> palette role
    "background": "window",
    "foreground": "text",
    "activeBackground": "select",
    "activeForeground": "text",
    "selectColor": "accent",  # the tick of a check item
}
# Colour roles of each theme (Settings → Theme; "system" follows the platform's choice).
GUI_THEMES: dict[str, dict[str, str]] = {
    "light": {
        "window": "#f6f8fa",
        "field": "#ffffff",
        "text": "#1f2328",
        "muted": "#59636e",
        "border": "#d0d7de",
        "heading": "#eaeef2",
        "select": "#cfe3ff",
        "accent": "#0969da",
        "on_accent": "#ffffff",  # a mark drawn on the accent: a ticked checkbox's tick
        "link": "#0550ae",  # tool calls in the log
        "success": "#1a7f37",
        "purple": "#8250df",  # the scheduler's own lines in the log
        "error": "#cf222e",
        "error_bg": "#ffebe9",
        "warning": "#8a5c00",
        "hit": "#fff1a8",  # a search hit in the log
        "hit_current": "#f5c04a",
    },
    "dark": {
        "window": "#1f2428",
        "field": "#0d1117",
        "text": "#e6edf3",
        "muted": "#9da7b3",
        "border": "#3d444d",
        "heading": "#2d333b",
        "select": "#1f4a7a",
        "accent": "#4493f8",
        "on_accent": "#0d1117",
        "link": "#79c0ff",
        "success": "#56d364",
        "purple": "#bc8cff",
        "error": "#ff7b72",
        "error_bg": "#3c1618",
        "warning": "#e3b341",
        "hit": "#5a4a00",
        "hit_current": "#6e4b00",
    },
}
# The light theme's roles. Widgets take their colours from `Looks.palette` (the window's
# theme); this name stays for code written before themes.
GUI_PALETTE = GUI_THEMES["light"]
# Text on its background in each theme: each pair must pass WCAG AA (4.5:1) for text.
GUI_TEXT_PAIRS = (
    *((fg, bg) for fg in ("text", "muted", "error", "warning") for bg in ("window", "field", "heading")),
    *((fg, "field") for fg in ("accent", "link", "success", "purple")),
    ("text", "select"),
    ("on_accent", "accent"),  # a tick mark: only 3:1 is asked of graphics, it passes text's bar
    ("error", "error_bg"),
    ("text", "hit"),
    ("text", "hit_current"),
)
# Log tags (render_log_line's, plus summary_failed) -> Text tag options; "font" names a font
# role; a colour is a role of the theme's palette.
GUI_LOG_STYLES: dict[str, dict[str, str | int]] = {
    "assistant": {"spacing1": 6},
    "thinking": {"foreground": "muted", "font": "italic", "spacing1": 4},
    "tool": {"foreground": "link", "font": "mono", "spacing1": 6},
    "tool_result": {"foreground": "muted", "font": "mono_small", "lmargin1": 18, "lmargin2": 18},
    "error": {"foreground": "error", "background": "error_bg", "spacing1": 4},
    "summary": {"foreground": "success", "font": "bold", "spacing1": 12},
    "summary_failed": {"foreground": "error", "font": "bold", "spacing1": 12},
    "summary_warning": {"foreground": "warning", "font": "bold", "spacing1": 12},
    "retry": {"foreground": "warning", "font": "small"},
    "system": {"foreground": "muted", "font": "small"},
    "scheduler": {"foreground": "purple", "font": "small", "spacing1": 4},
    "raw": {"font": "mono_small"},
}
GUI_COLOUR_OPTIONS = ("foreground", "background")  # tag options whose values are palette roles
GUI_THEME_CHOICES = {"system": "As the system", "light": "Light", "dark": "Dark"}  # Settings → Theme
GUI_WINDOWS_THEME_KEY = r"Software\Microsoft\Windows\CurrentVersion\Themes\Personalize"
GUI_FAILED_MARK = "✗"
GUI_WARNING_MARK = "⚠"  # done, but with permission denials

SCOPE_ALL = "all"
SCOPE_UNASSIGNED = "unassigned"
SCOPE_JOB = "job"
SCOPE_TASK = "task"

# The schedule chooser: kind -> label. Daily, weekly and monthly are cron presets.
SCHEDULE_KINDS = {
    "manual": "Manually",
    "once": "Once",
    "interval": "Interval",
    "daily": "Daily",
    "weekly": "Weekly",
    "monthly": "Monthly",
    "cron": "Cron expression",
    "startup": "At start-up",
    "file_watch": "When files change",
}
CRON_PRESET_KINDS = ("daily", "weekly", "monthly")
# The editor rows each kind shows (besides the chooser itself).
SCHEDULE_KIND_ROWS = {
    "manual": (),
    "startup": (),
    "once": ("schedule.at",),
    "interval": ("schedule.every_seconds", "schedule.anchor"),
    "daily": ("schedule.time", "schedule.expression", "schedule.timezone"),
    "weekly": ("schedule.days", "schedule.time", "schedule.expression", "schedule.timezone"),
    "monthly": ("schedule.day", "schedule.time", "schedule.expression", "schedule.timezone"),
    "cron": ("schedule.expression", "schedule.timezone"),
    "file_watch": ("schedule.path", "schedule.recursive", "schedule.debounce_seconds"),
}
GUI_WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # the order people read a week in
GUI_MONTH_DAYS = (*(str(day) for day in range(1, MAX_DAYS_IN_MONTH + 1)), CRON_LAST_DAY)
PRESET_DEFAULTS = {"schedule.time": "09:00", "schedule.days": "mon", "schedule.day": "1"}
TIME_OF_DAY = r"(\d{1,2}):(\d{2})"
SECONDS_PER_MINUTE = 60
SECONDS_PER_HOUR = 3600

FormValues = dict[str, str | bool]
T = TypeVar("T")
N = TypeVar("N", int, float)


class Scope(typing.NamedTuple):
    """What a pane lists: all tasks, the unassigned ones, one job's, or (Runs) one task's."""

    kind: str
    ident: str | None = None


ALL_TASKS = Scope(SCOPE_ALL)
UNASSIGNED = Scope(SCOPE_UNASSIGNED)


# Cells: stored values as people read them in a list.


def _gui_time(value: JSON, now: datetime | None = None, zone: str | None = None) -> str:
    """A stored timestamp, short, in local time: "14:05" today, "Tue 09:00" within a week,
    "12 Mar 09:00" this year, else "2024-03-12". In `zone` (a task's) instead when that
    zone's clock differs from the machine's then, named by its abbreviation: "Thu 02:00 CET"."""
    if not value:
        return "—"
    moment, named = _in_zone(parse_time(str(value), "time"), zone)
    today = (now or utcnow()).astimezone(moment.tzinfo)
    offset = abs((moment.date() - today.date()).days)
    if offset == 0:
        text = f"{moment:%H:%M}"
    elif offset < DAYS_PER_WEEK:
        text = f"{moment:%a %H:%M}"
    else:
        text = f"{moment:%d %b %H:%M}" if moment.year == today.year else f"{moment:%Y-%m-%d}"
    return f"{text} {moment:%Z}" if named else text


def _in_zone(moment: datetime, zone: str | None) -> tuple[datetime, bool]:
    """`moment` on the clock of `zone` (None, unknown: the machine's), and whether that
    clock shows another time than the machine's (then the zone must be named)."""
    local = moment.astimezone()
    there = _zone_or_none(zone) if zone else None
    if there is None:
        return local, False
    moment = moment.astimezone(there)
    return moment, moment.utcoffset() != local.utcoffset()


def task_zone(task: JSONDict) -> str | None:
    """The zone a task's schedule counts in (None: the machine's)."""
    schedule = task.get("schedule")
    zone = schedule.get("timezone") if isinstance(schedule, dict) else None
    return zone if isinstance(zone, str) and zone else None


def _gui_duration(seconds: JSON) -> str:
    if not isinstance(seconds, int | float):
        return "—"
    if seconds < SECONDS_PER_MINUTE:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), SECONDS_PER_MINUTE)
    if seconds < SECONDS_PER_HOUR:
        return f"{minutes}m {rest:02d}s"
    return f"{minutes // MINUTES_PER_HOUR}h {minutes % MINUTES_PER_HOUR:02d}m"


def _summary_tag(text: str) -> str:
    """The log's summary tag by how the session ended: failed, done with denials, done."""
    marks = {GUI_FAILED_MARK: "summary_failed", GUI_WARNING_MARK: "summary_warning"}
    return next((tag for mark, tag in marks.items() if text.startswith(mark)), "summary")


def _run_duration(run: JSONDict) -> str:
    """A finished run's stored duration; an active run's time so far."""
    if run.get("finished_at") or not run.get("started_at"):
        return _gui_duration(run.get("duration_seconds"))
    started = parse_time(run["started_at"], "started_at")
    return _gui_duration((utcnow() - started).total_seconds())


def _task_status(task: JSONDict) -> str:
    """The key of a task's dot: disabled, never (run), or its latest run's status."""
    if not task.get("enabled", True):
        return "disabled"
    return str(task.get("last_run_status") or "never")


def _next_run_cell(task: JSONDict) -> str:
    if not task.get("enabled", True):
        return "disabled"
    return _gui_time(task.get("next_run_at"), zone=task_zone(task)) if task.get("next_run_at") else "—"


def _compact_duration(seconds: int) -> str:
    """90 -> "1m30s": the shortest text parse_duration reads back as the same seconds."""
    parts = []
    for unit, size, _ in DURATION_UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


COUNT_UNITS = ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k"))


def _compact_count(count: int) -> str:
    """A count in a few figures: 950, 40k, 41.2k, 1.2M."""
    if count >= COUNT_UNITS[-1][0]:
        for size, suffix in COUNT_UNITS:
            scaled = round(count / size, 1)
            if scaled >= 1:
                return f"{scaled:g}{suffix}"
    return str(count)


# The Runs list's filters: label -> what it keeps.
RUN_STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "Any status": (),
    "Succeeded": ("success",),
    "Failed": GUI_FAILED_KEYS,
    "Active": ("queued", "running"),
    "Not run": ("cancelled", "skipped", "missed", "deferred", "expired"),
}
RUN_TRIGGER_FILTERS: dict[str, str] = {
    "Any trigger": "",
    **{trigger.value.replace("_", " "): trigger.value for trigger in Trigger},
}
RUN_AGE_FILTERS: dict[str, int | None] = {
    "Any time": None,
    "Today": 0,
    "7 days": 6,
    "30 days": 29,
}  # days before today
RUN_DATES_LABEL = "Dates…"  # the age choice that shows the From and To fields
RUN_DATES_DEFAULT_DAYS = 6  # From starts this many days before To (today)
DaySpan = tuple[date | None, date | None]  # first and last day kept, in the user's zone; None: open


def age_span(age: str, now: datetime) -> DaySpan:
    """The days an age choice (a label of RUN_AGE_FILTERS) keeps, in the user's zone."""
    days = RUN_AGE_FILTERS.get(age)
    return (None, None) if days is None else (now.astimezone().date() - timedelta(days=days), None)


def parse_day_span(first: str, last: str) -> DaySpan:
    """The days typed in the Runs list's From and To fields (YYYY-MM-DD, in the user's
    zone; either may be left blank for no bound). Raises Invalid naming the field."""
    span: list[date | None] = []
    for text, name in ((first, "from"), (last, "to")):
        try:
            span.append(date.fromisoformat(text.strip()) if text.strip() else None)
        except ValueError:
            raise Invalid(f"{text.strip()!r} is not a date like 2026-01-31", name) from None
    start, end = span
    if start and end and end < start:
        raise Invalid("is before the From date", "to")
    return start, end


def run_matches(run: JSONDict, status: str, trigger: str, span: DaySpan) -> bool:
    """Whether a run passes the Runs list's filters: labels of RUN_STATUS_FILTERS and
    RUN_TRIGGER_FILTERS, and the days kept (the day it started, in the user's zone)."""
    statuses, wanted_trigger = RUN_STATUS_FILTERS.get(status, ()), RUN_TRIGGER_FILTERS.get(trigger, "")
    if (statuses and run["status"] not in statuses) or (wanted_trigger and run["trigger"] != wanted_trigger):
        return False
    first, last = span
    if first is None and last is None:
        return True
    day = parse_time(run.get("started_at") or run["created_at"], "started_at").astimezone().date()
    return (first is None or day >= first) and (last is None or day <= last)


def _totals_line(totals: JSONDict) -> str:
    """Cost today, in 7 and in 30 days, and the 30 days' runs and tokens, on one line."""
    costs = " · ".join(
        f"{USAGE_LABELS[name].capitalize()} {_money(totals[name]['cost_usd'])}" for name in USAGE_WINDOWS
    )
    month = totals["30d"]
    cached = month["cache_read_tokens"] + month["cache_creation_tokens"]
    tokens = (
        f"{_compact_count(month['input_tokens'])} in ({_compact_count(cached)} cached)"
        f" / {_compact_count(month['output_tokens'])} out"
    )
    return f"{costs}, {_plural(month['runs'], 'run')}, {tokens}"


def _named_label(record: JSONDict, duplicated: set[str]) -> str:
    """A job or task as a chooser shows it: its name, with its short id when the name is
    used twice."""
    name = str(record["name"])
    return f"{name} ({record['id'][:ID_PREFIX_LEN]})" if name in duplicated else name


def _order_tasks(tasks: list[JSONDict], order: list[str]) -> list[JSONDict]:
    """A job's tasks in its task_order, then the rest by creation (as the store orders them)."""
    position = {task_id: n for n, task_id in enumerate(order)}
    return sorted(tasks, key=lambda task: (position.get(task["id"], len(position)), task["created_at"]))


# The task editor's values <-> task fields. Pure: the editor pane shows and collects the
# values, these functions know what they mean. Form keys are the task's field names (so
# an Invalid's field finds its row), plus the schedule chooser's own rows.


# The events a task can override (a usage-limit hold is no one task's), with the editor's
# label; and its choices: "" follows the settings for all tasks.
TASK_NOTIFY_EVENTS = {
    "failed": "When it fails",
    "timed_out": "When it times out",
    "recovered": "When it succeeds again",
    "changed": "When its result changes",
}
NOTIFY_OVERRIDE_LABELS = {"": "As for all tasks", "on": "Tell me", "off": "Do not tell me"}


def task_notify_form(events: JSON) -> FormValues:
    """The editor's notification choices for a task's overrides ({event: bool})."""
    chosen = events if isinstance(events, dict) else {}
    return {
        f"notify.{name}": "" if name not in chosen else "on" if chosen[name] else "off"
        for name in TASK_NOTIFY_EVENTS
    }


def form_notify_events(form: Mapping[str, str | bool]) -> dict[str, bool]:
    """A task's notification overrides ({event: bool}) from the editor's choices."""
    choices = {name: form.get(f"notify.{name}") for name in TASK_NOTIFY_EVENTS}
    return {name: choice == "on" for name, choice in choices.items() if choice in ("on", "off")}


def task_to_form(task: JSONDict) -> FormValues:
    """The editor's values for a stored task, or for a new one from a partial dict."""
    retry = task.get("retry") or {}
    form: FormValues = {
        "name": task.get("name") or "",
        "job_id": task.get("job_id") or "",
        "prompt": task.get("prompt") or "",
        "model": task.get("model") or DEFAULT_MODEL,
        "permission_mode": task.get("permission_mode") or PermissionMode.DEFAULT.value,
        "working_directory": task.get("working_directory") or "",
        "enabled": bool(task.get("enabled", True)),
        "overlap": task.get("overlap") or Overlap.SKIP.value,
        "catch_up": task.get("catch_up") or CatchUp.ONCE.value,
        "timeout_seconds": str(task.get("timeout_seconds") or DEFAULT_TIMEOUT),
        "max_turns": str(task.get("max_turns") or ""),
        "session_mode": task.get("session_mode") or SessionMode.NEW.value,
        "on_failure": task.get("on_failure") or StepFailure.STOP.value,
        "skip_in_job": bool(task.get("skip_in_job")),
        "allowed_tools": ", ".join(task.get("allowed_tools") or []),
        "disallowed_tools": ", ".join(task.get("disallowed_tools") or []),
        "append_system_prompt": task.get("append_system_prompt") or "",
        "system_prompt": task.get("system_prompt") or "",
        "max_budget_usd": _form_budget(task.get("max_budget_usd")),
        "fallback_model": task.get("fallback_model") or "",
        "add_dirs": "\n".join(task.get("add_dirs") or []),
        "mcp_config": task.get("mcp_config") or "",
        "strict_mcp_config": bool(task.get("strict_mcp_config")),
        "extra_args": _shell_words(task.get("extra_args") or []),
        "fail_on_permission_denials": bool(task.get("fail_on_permission_denials", False)),
        "retry.max_attempts": str(retry.get("max_attempts", 0)),
        "retry.delay_seconds": str(retry.get("delay_seconds", 60)),
        "retry.backoff": f"{retry.get('backoff', 2.0):g}",
        "env": "\n".join(f"{name}={value}" for name, value in (task.get("env") or {}).items()),
        "run_after.task_id": str((task.get("run_after") or {}).get("task_id") or ""),
        "run_after.when": str((task.get("run_after") or {}).get("when") or AfterWhen.SUCCEEDED.value),
    }
    schedule = _schedule_to_form(task.get("schedule") or {"type": "manual"})
    return {**form, **schedule, **task_notify_form(task.get("notify_events"))}


def _schedule_to_form(schedule: JSONDict) -> FormValues:
    kind = str(schedule.get("type") or "manual")
    form: FormValues = {
        "schedule.kind": kind,
        "schedule.at": "",
        "schedule.every_seconds": "1h",
        "schedule.anchor": "",
        "schedule.expression": "",
        "schedule.timezone": schedule.get("timezone") or "",
        "schedule.path": schedule.get("path") or "",
        "schedule.recursive": bool(schedule.get("recursive", True)),
        "schedule.debounce_seconds": f"{schedule.get('debounce_seconds', DEFAULT_DEBOUNCE):g}",
        **PRESET_DEFAULTS,
    }
    if kind == "once":
        form["schedule.at"] = _local_minute(schedule.get("at"))
    if kind == "interval" and schedule.get("every_seconds"):
        form["schedule.every_seconds"] = _compact_duration(int(schedule["every_seconds"]))
        form["schedule.anchor"] = _local_minute(schedule.get("anchor"))
    if kind == "cron":
        form["schedule.expression"] = str(schedule.get("expression") or "")
        form.update(detect_cron_preset(str(form["schedule.expression"])))
    return form


def detect_cron_preset(expression: str) -> FormValues:
    """The daily/weekly/monthly preset values that write exactly `expression`, else {}."""
    fields = expression.split()
    if len(fields) != CRON_FIELD_COUNT or not all(part.isdigit() for part in fields[:2]):
        return {}
    minute, hour, dom, _, dow = fields
    candidates: list[FormValues] = [
        {"schedule.kind": "daily"},
        {"schedule.kind": "weekly", "schedule.days": dow},
        {"schedule.kind": "monthly", "schedule.day": dom},
    ]
    for values in candidates:
        values["schedule.time"] = f"{int(hour):02d}:{int(minute):02d}"
        form = {**PRESET_DEFAULTS, **values}
        with contextlib.suppress(Invalid):
            if cron_from_preset(str(values["schedule.kind"]), form) == expression:
                return form
    return {}


def cron_from_preset(kind: str, form: Mapping[str, str | bool]) -> str:
    """The cron expression a daily/weekly/monthly preset stands for (as the CLI writes them)."""
    match = re.fullmatch(TIME_OF_DAY, str(form["schedule.time"]).strip())
    if not match or int(match[1]) >= HOURS_PER_DAY or int(match[2]) >= MINUTES_PER_HOUR:
        raise Invalid(f"{form['schedule.time']!r} is not a time of day like 09:30", "schedule.time")
    at = f"{int(match[2])} {int(match[1])}"
    if kind == "daily":
        return f"{at} * * *"
    if kind == "weekly":
        days = [day for day in GUI_WEEK if day in str(form["schedule.days"]).split(",")]
        if not days:
            raise Invalid("choose at least one day", "schedule.days")
        return f"{at} * * {','.join(days)}"
    day = str(form["schedule.day"]).strip().upper()
    if day not in GUI_MONTH_DAYS:
        raise Invalid(f"{form['schedule.day']!r} is not a day of the month (1-31 or L)", "schedule.day")
    return f"{at} {day} * *"


def form_to_task(form: Mapping[str, str | bool], original: JSONDict | None = None) -> JSONDict:
    """The task fields the editor's values stand for; Invalid names the field at fault.
    The model validates the rest (ranges, required fields) when the task is saved."""
    text = {key: value.strip() if isinstance(value, str) else "" for key, value in form.items()}
    return {**_form_fields(form, text, original), **_form_run_after(text, original)}


def _form_run_after(text: Mapping[str, str], original: JSONDict | None) -> JSONDict:
    """The trigger on another task, only when the form changed it: an unchanged one is
    not checked again (the task it names may have gone since)."""
    after = (
        {"task_id": text["run_after.task_id"], "when": text["run_after.when"]}
        if text["run_after.task_id"]
        else None
    )
    stored = (original or {}).get("run_after") or None
    return {} if original is not None and after == stored else {"run_after": after}


def _form_fields(
    form: Mapping[str, str | bool], text: Mapping[str, str], original: JSONDict | None
) -> JSONDict:
    return {
        "name": text["name"],
        "job_id": text["job_id"] or None,
        "prompt": str(form["prompt"]),
        "model": text["model"] or DEFAULT_MODEL,
        "permission_mode": text["permission_mode"],
        "working_directory": text["working_directory"] or None,
        "enabled": bool(form["enabled"]),
        "schedule": form_schedule(form, (original or {}).get("schedule")),
        "overlap": text["overlap"],
        "catch_up": text["catch_up"],
        "timeout_seconds": _form_number(text["timeout_seconds"], "timeout_seconds", int),
        "max_turns": _form_number(text["max_turns"], "max_turns", int),
        "session_mode": text["session_mode"],
        "on_failure": text["on_failure"],
        "skip_in_job": bool(form["skip_in_job"]),
        "allowed_tools": split_tool_rules(text["allowed_tools"], "allowed_tools"),
        "disallowed_tools": split_tool_rules(text["disallowed_tools"], "disallowed_tools"),
        "append_system_prompt": str(form["append_system_prompt"]).strip() or None,
        "system_prompt": str(form["system_prompt"]).strip() or None,
        "max_budget_usd": _form_number(text["max_budget_usd"].removeprefix("$"), "max_budget_usd", float),
        "fallback_model": text["fallback_model"] or None,
        "add_dirs": [line.strip() for line in str(form["add_dirs"]).splitlines() if line.strip()],
        "mcp_config": text["mcp_config"] or None,
        "strict_mcp_config": bool(form["strict_mcp_config"]),
        "extra_args": split_words(text["extra_args"], "extra_args"),
        "fail_on_permission_denials": bool(form["fail_on_permission_denials"]),
        "retry": {
            "max_attempts": _form_number(text["retry.max_attempts"], "retry.max_attempts", int, 0),
            "delay_seconds": _form_number(text["retry.delay_seconds"], "retry.delay_seconds", int, 0),
            "backoff": _form_number(text["retry.backoff"], "retry.backoff", float, 1.0),
        },
        "env": _form_env(str(form["env"])),
    }


def form_schedule(form: Mapping[str, str | bool], original: JSONDict | None = None) -> JSONDict:
    """The schedule the chooser's values stand for. An interval keeps its anchor."""
    kind = str(form["schedule.kind"])
    value = {key: str(item).strip() for key, item in form.items()}
    if kind in (*CRON_PRESET_KINDS, "cron"):
        expression = value["schedule.expression"] if kind == "cron" else cron_from_preset(kind, form)
        return {"type": "cron", "expression": expression, "timezone": value["schedule.timezone"] or None}
    kept = original if original and original.get("type") == kind else {}
    if kind == "once":
        if not value["schedule.at"]:
            raise Invalid("is required (YYYY-MM-DD HH:MM, local time)", "schedule.at")
        return {"type": "once", "at": _form_time(value["schedule.at"], kept.get("at"), "schedule.at")}
    if kind == "interval":
        every = parse_duration(value["schedule.every_seconds"] or "0", "schedule.every_seconds")
        anchor = _form_time(value["schedule.anchor"], kept.get("anchor"), "schedule.anchor")
        return {"type": "interval", "every_seconds": every, "anchor": anchor}
    if kind == "file_watch":
        return {
            "type": "file_watch",
            "path": value["schedule.path"],
            "recursive": bool(form["schedule.recursive"]),
            "debounce_seconds": _form_number(
                value["schedule.debounce_seconds"], "schedule.debounce_seconds", float, DEFAULT_DEBOUNCE
            ),
        }
    return {"type": kind}


def _local_minute(value: JSON) -> str:
    """A stored time as the editor shows it: local, to the minute ("" for none)."""
    return fmt_local(parse_time(value, "time")) if value else ""


def _form_time(text: str, stored: JSON, field: str) -> str | None:
    """The time the editor's text stands for; the stored value itself while the text still
    shows it (so that saving does not drop its seconds)."""
    if not text:
        return None
    if stored and _local_minute(stored) == text:
        return str(stored)
    return fmt_time(parse_time(text, field))


def _form_number(text: str, field: str, kind: type[N], default: N | None = None) -> N | None:
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise Invalid("must be a whole number" if kind is int else "must be a number", field) from None


def _form_budget(value: JSON) -> str:
    return f"{value:.10g}" if isinstance(value, int | float) else ""


def _form_env(text: str) -> dict[str, str]:
    """NAME=value lines; blank lines and # comments are skipped."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sign, value = line.partition("=")
        if not sign:
            raise Invalid(f"line {number} is not NAME=value", "env")
        env[name.strip()] = value
    return env


# Treeviews: every list in the window is a TreeTable built from column specs.


class GuiColumn(typing.NamedTuple):
    """One Treeview column; the first spec is the tree column "#0", which has the status dot.
    Its width is what `sample` (a typical widest cell) and its title need in the window's font."""

    key: str
    title: str
    sample: str
    cell: Callable[[JSONDict], str]
    anchor: Literal["w", "e", "center"] = "w"
    stretch: int = 0  # its share of the room the other columns leave (0: none)
    keep: int = 0  # in a list too narrow for all its columns, the lowest `keep` goes first


@dataclass
class TreeRow:
    """One item as data: `record` goes through the column specs, `status` picks the dot.
    `children` None means a leaf whose children are never looked at (flat lists)."""

    iid: str
    record: JSONDict
    status: str
    children: list[TreeRow] | None = None
    tags: tuple[str, ...] = ()
    is_open: bool = False
    strip: tuple[str, ...] = ()  # statuses of recent runs, oldest first: drawn instead of the dot


# A time column's sample is _gui_time's widest form, so that no date is ever cut short.
JOB_TREE_COLUMNS = (
    GuiColumn("#0", "Name", "A job", lambda row: str(row["name"]), stretch=1),
    GuiColumn("done", "Done", "10/10", lambda row: str(row["done"]), anchor="e", keep=9),
)
TASK_LIST_COLUMNS = (
    GuiColumn("#0", "Name", "A task name", lambda task: str(task["name"]), stretch=2),
    GuiColumn(
        "schedule",
        "Schedule",
        "Every day",
        lambda task: str(task.get("schedule_text") or ""),
        stretch=1,
        keep=6,
    ),
    GuiColumn("next", "Next run", "30 Sep 09:00 CEST", _next_run_cell, keep=5),
    GuiColumn("last", "Last", "cancelled", lambda task: str(task.get("last_run_status") or "never"), keep=4),
    GuiColumn(
        "enabled", "On", "On", lambda task: "✓" if task.get("enabled", True) else "–", "center", keep=3
    ),
)
RUN_LIST_COLUMNS = (
    GuiColumn("#0", "Status", "failed (auth) ⚠1", run_status_text),
    GuiColumn(
        "task",
        "Task",
        "A task",
        lambda run: str(run.get("task_name") or _short(run["task_id"])),
        stretch=1,
        keep=7,
    ),
    GuiColumn("trigger", "Trigger", "schedule", lambda run: str(run["trigger"]).replace("_", " "), keep=3),
    GuiColumn(
        "started",
        "Started",
        "30 Sep 09:00 CEST",
        lambda run: _gui_time(run.get("started_at") or run["created_at"], zone=run.get("task_zone")),
        keep=6,
    ),
    GuiColumn("duration", "Wall time", "5m 05s", _run_duration, anchor="e", keep=4),
    GuiColumn("cost", "Cost", "$0.0123", lambda run: _money(run.get("cost_usd")), anchor="e", keep=5),
    GuiColumn(
        "tokens", "Tokens", "45,004 in (45,000 cached) / 56 out", lambda run: run_tokens(run) or "—", keep=2
    ),
)
GUI_COLUMN_MIN = 30
GUI_TREE_BORDER = 2  # of a Treeview's width, what its border takes
GUI_CELL_PADDING = 10  # around a cell's text
# Around a column title: the heading style's padding (2 × 4), its border (2 × 1), and the
# pixels bold glyphs overhang their measured width (without them "On" is clipped).
GUI_HEADING_PADDING = 14
GUI_TREE_INDENT = 14  # per level of the Jobs tree (the open/close indicator takes about as much)
GUI_TIP_DELAY_MS = 500  # the pointer rests this long on a clipped cell before its text shows
GUI_TIP_OFFSET = (12, 18)  # from the pointer to the tip's corner
GUI_TIP_WRAP = 420


class TreeTable:
    """A Treeview and its scrollbar, built from column specs and refreshed in place: `show`
    touches only the items that changed, so selection, open nodes and scrolling survive."""

    def __init__(
        self,
        parent: tk.Misc,
        columns: Sequence[GuiColumn],
        looks: Looks,
        *,
        flat: bool = True,
        height: int = 12,
        image_width: int | None = None,
    ) -> None:
        from tkinter import ttk

        self.columns = columns
        self.looks = looks
        # of the dot or run strip before a row's name
        self.image_width = looks.dot_width if image_width is None else image_width
        self.frame = ttk.Frame(parent)
        self.tree = ttk.Treeview(
            self.frame,
            columns=[column.key for column in columns[1:]],
            selectmode="browse",
            height=height,
            style="Flat.Treeview" if flat else "Treeview",
        )
        self.widths = {column.key: self._width(column, flat) for column in columns}
        for column in columns:
            self.tree.heading(column.key, text=column.title, anchor=column.anchor)
            self.tree.column(
                column.key,
                width=self.widths[column.key],
                minwidth=GUI_COLUMN_MIN,
                stretch=bool(column.stretch),
                anchor=column.anchor,
            )
        scroll = ttk.Scrollbar(self.frame, orient="vertical", command=self.tree.yview)
        self.tree.configure(yscrollcommand=scroll.set)
        self.tree.grid(row=0, column=0, sticky="nsew")
        scroll.grid(row=0, column=1, sticky="ns")
        self.frame.rowconfigure(0, weight=1)
        self.frame.columnconfigure(0, weight=1)
        self.tree.tag_configure("failed", foreground=looks.palette["error"])
        self.tree.tag_configure("muted", foreground=looks.palette["muted"])
        self.tree.tag_configure("scope", font=looks.fonts["bold"])
        self.tree.bind("<Configure>", lambda event: self.fit_columns(event.width))
        self._shown: dict[str, tuple[object, ...]] = {}
        # iid -> its whole cells, status, tags and run strip
        self._cells: dict[str, tuple[tuple[str, ...], str, tuple[str, ...], tuple[str, ...]]] = {}
        self._room: dict[str, int] = {}  # column -> pixels its text has
        self._widths: dict[tuple[str, bool], int] = {}  # (text, bold) -> pixels: measuring is slow
        self.hidden: set[str] = set()  # columns the pane does not want now
        self.flat = flat
        self.tip = CellTip(self)

    def _width(self, column: GuiColumn, flat: bool) -> int:
        """What a column needs: its sample or its title (in bold), plus padding; the tree
        column also holds the dot and, in a tree, the indent of a child row."""
        fonts = self.looks.fonts
        width = int(fonts["body"].measure(column.sample))
        if column.key == "#0":
            width += self.image_width + (0 if flat else 2 * GUI_TREE_INDENT)
        return max(
            width + GUI_CELL_PADDING, int(fonts["heading"].measure(column.title)) + GUI_HEADING_PADDING
        )

    def fit_columns(self, width: int | None = None) -> None:
        """Show the columns that fit (dropping the lowest `keep` first, and any `hidden`),
        each at its width, and share the room left among the stretching ones (among all
        of them when none of those is shown)."""
        width = (self.tree.winfo_width() if width is None else width) - GUI_TREE_BORDER
        shown = [column for column in self.columns[1:] if column.key not in self.hidden]
        while shown and sum(self.widths[column.key] for column in (self.columns[0], *shown)) > width:
            shown.remove(min(reversed(shown), key=lambda column: column.keep))
        keys = [column.key for column in shown]
        if tuple(self.tree.cget("displaycolumns")) != tuple(keys):
            self.tree.configure(displaycolumns=keys)
        columns = [self.columns[0], *shown]
        shares = [column.stretch for column in columns]
        shares = shares if any(shares) else [1] * len(columns)
        spare = max(width - sum(self.widths[column.key] for column in columns), 0)
        extras = [spare * share // sum(shares) for share in shares]
        extras[shares.index(max(shares))] += spare - sum(extras)  # what rounding left over
        room = dict(self._room)
        for column, extra in zip(columns, extras, strict=True):
            self.tree.column(column.key, width=self.widths[column.key] + extra)
            room[column.key] = self.widths[column.key] + extra - GUI_CELL_PADDING
        if room != self._room:
            self._room = room
            for iid in self._cells:
                self._draw(iid)

    def show(self, rows: Sequence[TreeRow], parent: str = "") -> None:
        """Make `parent`'s children exactly `rows`, in order."""
        wanted = tuple(row.iid for row in rows)
        keep = set(wanted)
        stale = [iid for iid in self.tree.get_children(parent) if iid not in keep]
        if stale:
            self._forget(stale)
            self.tree.delete(*stale)
        for row in rows:
            self._put(parent, row)
            if row.children is not None:
                self.show(row.children, row.iid)
        if self.tree.get_children(parent) != wanted:
            self.tree.set_children(parent, *wanted)

    def _put(self, parent: str, row: TreeRow) -> None:
        cells = tuple(column.cell(row.record) for column in self.columns)
        self._cells[row.iid] = (cells, row.status, row.tags, row.strip)
        if not self.tree.exists(row.iid):
            self.tree.insert(parent, "end", iid=row.iid, tags=row.tags, open=row.is_open)
        self._draw(row.iid)

    def _draw(self, iid: str) -> None:
        """Show an item's cells, each cut to its column's width with "…" when too long."""
        cells, status, tags, strip = self._cells[iid]
        shown = self._fitted(iid, cells, "scope" in tags)
        look = (shown, status, tags, strip)
        if self._shown.get(iid) != look:
            image = self.looks.strip(strip) if strip else self.looks.dot(status)
            self.tree.item(iid, text=shown[0], values=shown[1:], image=image, tags=tags)
            self._shown[iid] = look

    def _forget(self, iids: Iterable[str]) -> None:
        """Drop what is kept about deleted items (and their children)."""
        for iid in iids:
            self._forget(self.tree.get_children(iid))
            self._cells.pop(iid, None)
            self._shown.pop(iid, None)

    def _fitted(self, iid: str, cells: tuple[str, ...], bold: bool) -> tuple[str, ...]:
        out = []
        for column, text in zip(self.columns, cells, strict=True):
            room = self._room.get(column.key, 0)
            if column.key == "#0":
                indent = 0 if self.flat else (self._depth(iid) + 1) * GUI_TREE_INDENT
                room -= self.image_width + indent
            out.append(self._cut(text, room, bold) if room > 0 else text)
        return tuple(out)

    def _cut(self, text: str, room: int, bold: bool) -> str:
        """`text`, or its longest start that fits `room` pixels followed by "…"."""
        if self._measure(text, bold) <= room:
            return text
        low, high = 0, len(text)
        while low < high:
            middle = (low + high + 1) // 2
            if self._measure(text[:middle].rstrip() + GUI_ELLIPSIS, bold) <= room:
                low = middle
            else:
                high = middle - 1
        return text[:low].rstrip() + GUI_ELLIPSIS

    def _measure(self, text: str, bold: bool) -> int:
        key = (text, bold)
        if key not in self._widths:
            self._widths[key] = int(self.looks.fonts["bold" if bold else "body"].measure(text))
        return self._widths[key]

    def whole_text(self, iid: str, key: str) -> str:
        """A cell's whole text (what the tip shows when the column cut it)."""
        cells = self._cells[iid][0] if iid in self._cells else ()
        index = next((n for n, column in enumerate(self.columns) if column.key == key), len(cells))
        return cells[index] if index < len(cells) else ""

    def selected(self) -> str | None:
        chosen = self.tree.selection()
        return str(chosen[0]) if chosen else None

    def select(self, iid: str | None) -> None:
        """Select and reveal an item (None: clear); when nothing changes, nothing moves."""
        current = self.tree.selection()
        if iid is None or not self.tree.exists(iid):
            if current:
                self.tree.selection_remove(*current)
            return
        if tuple(current) != (iid,):
            self.tree.selection_set(iid)
            self.tree.focus(iid)
            self.tree.see(iid)

    def on_select(self, handler: Callable[[str | None], None]) -> None:
        self.tree.bind("<<TreeviewSelect>>", lambda event: handler(self.selected()))

    def clipped_text(self, iid: str, column_id: str) -> str:
        """A cell's text when its column is too narrow for it, else "". `column_id` is what
        identify_column answers ("#0" the tree column, "#1" the first one shown...)."""
        shown = [str(key) for key in self.tree.cget("displaycolumns")]
        shown = list(self.tree.cget("columns")) if shown == ["#all"] else shown
        index = int(column_id.lstrip("#") or -1)
        if not iid or not 0 <= index <= len(shown):  # (beside the last column: "#<one more>")
            return ""
        key = shown[index - 1] if index else "#0"
        text = self.whole_text(iid, key)
        drawn = str(self.tree.item(iid, "text")) if key == "#0" else str(self.tree.set(iid, key))
        return text if drawn != text else ""

    def _depth(self, iid: str) -> int:
        depth, parent = 0, self.tree.parent(iid)
        while parent:
            depth, parent = depth + 1, self.tree.parent(parent)
        return depth


class CellTip:
    """The whole text of a list cell too narrow for it, in a small window by the pointer
    once the pointer rests on the cell for a moment."""

    def __init__(self, table: TreeTable) -> None:
        self.table = table
        self.cell: tuple[str, str] | None = None  # (row, column) under the pointer
        self.window: tk.Toplevel | None = None
        self._timer: str | None = None
        table.tree.bind("<Motion>", self._on_motion, add=True)
        for sequence in ("<Leave>", "<ButtonPress>", "<KeyPress>", "<Destroy>"):
            table.tree.bind(sequence, lambda event: self.hide(), add=True)

    def _on_motion(self, event: tk.Event[ttk.Treeview]) -> None:
        tree = self.table.tree
        cell = (str(tree.identify_row(event.y)), str(tree.identify_column(event.x)))
        if cell == self.cell:
            return
        self.hide()
        self.cell = cell
        text = self.table.clipped_text(*cell)
        if text:
            x, y = event.x_root + GUI_TIP_OFFSET[0], event.y_root + GUI_TIP_OFFSET[1]
            self._timer = tree.after(GUI_TIP_DELAY_MS, lambda: self._show(text, x, y))

    def _show(self, text: str, x: int, y: int) -> None:
        import tkinter as tk

        self._timer = None
        self.window = tk.Toplevel(self.table.tree)
        self.window.wm_overrideredirect(True)
        tk.Label(
            self.window,
            text=text,
            justify="left",
            wraplength=GUI_TIP_WRAP,
            font=self.table.looks.fonts["body"],
            background=self.table.looks.palette["field"],
            foreground=self.table.looks.palette["text"],
            highlightthickness=1,
            highlightbackground=self.table.looks.palette["border"],
            padx=6,
            pady=3,
        ).pack()
        self.window.update_idletasks()
        x = min(x, self.window.winfo_screenwidth() - self.window.winfo_reqwidth())
        self.window.geometry(f"+{x}+{y}")

    def hide(self) -> None:
        self.cell = None
        if self._timer:
            self.table.tree.after_cancel(self._timer)
            self._timer = None
        if self.window:
            self.window.destroy()
            self.window = None


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2's contrast ratio of two "#rrggbb" colours: 1 (none) to 21 (black on white);
    text needs 4.5 for level AA."""

    def luminance(colour: str) -> float:
        channels = (int(colour[index : index + 2], 16) / 255 for index in (1, 3, 5))
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def system_theme(platform: str = sys.platform, environ: Mapping[str, str] = os.environ) -> str:
    """Dark when the platform says its windows are dark, else light: the Windows registry,
    macOS's AppleInterfaceStyle, $GTK_THEME ending in ":dark" elsewhere."""
    import subprocess

    try:
        if platform == "win32":
            import winreg

            key = winreg.OpenKey(winreg.HKEY_CURRENT_USER, GUI_WINDOWS_THEME_KEY)  # type: ignore[attr-defined,unused-ignore]  # Windows only
            light = winreg.QueryValueEx(key, "AppsUseLightTheme")[0]  # type: ignore[attr-defined,unused-ignore]  # Windows only
            return "light" if light else "dark"
        if platform == "darwin":
            answer = subprocess.run(
                ["defaults", "read", "-g", "AppleInterfaceStyle"], capture_output=True, text=True, timeout=2
            )
            return "dark" if answer.stdout.strip().lower() == "dark" else "light"
    except (OSError, subprocess.SubprocessError) as error:
        logger().debug("the system's theme is unknown: %s", error)
        return "light"
    return "dark" if environ.get("GTK_THEME", "").lower().endswith(":dark") else "light"


def chosen_theme(choice: JSON) -> str:
    """The theme a Settings choice ("system", "light", "dark"; else "system") stands for."""
    return str(choice) if choice in GUI_THEMES else system_theme()


class Looks:
    """Theme, fonts and status dots of one window, shared by its panes."""

    def __init__(self, root: tk.Tk, theme: str = "light") -> None:
        from tkinter import ttk

        self.root = root
        self.theme = theme if theme in GUI_THEMES else "light"
        self.palette = GUI_THEMES[self.theme]
        self.is_x11 = root.tk.call("tk", "windowingsystem") == "x11"
        self.fonts = self._make_fonts()
        self.scale = max(1.0, int(self.fonts["body"].metrics("linespace")) / GUI_DESIGN_LINESPACE)
        self._dots: dict[str, tk.PhotoImage] = {}
        self.checkboxes: dict[str, tk.PhotoImage] = {}  # GUI_TICK_STATES' images (X11 only)
        self._style(ttk.Style(root))

    def _make_fonts(self) -> dict[str, tkfont.Font]:
        from tkinter import font as tkfont

        body = tkfont.nametofont("TkDefaultFont", root=self.root)
        mono = tkfont.nametofont("TkFixedFont", root=self.root)
        if self.is_x11:  # Tk's X11 defaults are small and dated; Windows and macOS look native already
            families = set(tkfont.families(self.root))
            family = next((name for name in GUI_FONT_FAMILIES if name in families), None)
            mono_family = next((name for name in GUI_MONO_FAMILIES if name in families), None)
            for name in ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont", "TkCaptionFont"):
                font = tkfont.nametofont(name, root=self.root)
                font.configure(size=GUI_FONT_SIZE)
                if family:
                    font.configure(family=family)
            mono.configure(size=GUI_FONT_SIZE)
            if mono_family:
                mono.configure(family=mono_family)
        size = int(body.cget("size"))
        step = 1 if size > 0 else -1  # negative sizes are pixels
        return {
            "body": body,
            "bold": self._variant(body, bold=True),
            "italic": self._variant(body, italic=True),
            "small": self._variant(body, size=size - step),
            "title": self._variant(body, size=size + 2 * step, bold=True),
            "mono": mono,
            "mono_small": self._variant(mono, size=int(mono.cget("size")) - step),
            "heading": tkfont.nametofont("TkHeadingFont", root=self.root),
        }

    @staticmethod
    def _variant(
        base: tkfont.Font, *, size: int = 0, bold: bool = False, italic: bool = False
    ) -> tkfont.Font:
        font = base.copy()
        if size:
            font.configure(size=size)
        if bold:
            font.configure(weight="bold")
        if italic:
            font.configure(slant="italic")
        return font

    def _style(self, style: ttk.Style) -> None:
        colour = self.palette
        if self.is_x11 and "clam" in style.theme_names():
            self._x11_theme(style)
        linespace = int(self.fonts["body"].metrics("linespace"))
        style.configure("Treeview", rowheight=linespace + 8, indent=GUI_TREE_INDENT)
        style.map(
            "Treeview",
            background=[("selected", colour["select"])],
            foreground=[("selected", colour["text"])],
        )
        # Flat lists (Tasks, Runs) need no room for the tree's open/close indicator.
        style.layout(
            "Flat.Treeview.Item",
            [
                (
                    "Treeitem.padding",
                    {
                        "sticky": "nswe",
                        "children": [
                            ("Treeitem.image", {"side": "left", "sticky": ""}),
                            ("Treeitem.text", {"sticky": "nswe"}),
                        ],
                    },
                )
            ],
        )
        style.configure("Title.TLabel", font=self.fonts["title"])
        style.configure("Muted.TLabel", foreground=colour["muted"])
        style.configure("Note.TLabel", foreground=colour["muted"], font=self.fonts["small"])
        style.configure("Error.TLabel", foreground=colour["error"], font=self.fonts["small"])
        style.configure("Warning.TLabel", foreground=colour["warning"], font=self.fonts["small"])
        style.configure("Status.TFrame", background=colour["heading"])
        style.configure("Status.TLabel", background=colour["heading"], foreground=colour["text"])
        style.configure("StatusError.TLabel", background=colour["heading"], foreground=colour["error"])
        style.configure("StatusWarning.TLabel", background=colour["heading"], foreground=colour["warning"])
        style.configure("Placeholder.TLabel", foreground=colour["muted"], justify="center")
        style.configure("Banner.TFrame", background=colour["error_bg"])
        style.configure("Banner.TLabel", background=colour["error_bg"], foreground=colour["error"])

    def _x11_theme(self, style: ttk.Style) -> None:
        """clam, recoloured: Tk's X11 default theme looks dated (Windows and macOS stay native)."""
        colour = self.palette
        style.theme_use("clam")
        style.configure(
            ".",
            background=colour["window"],
            foreground=colour["text"],
            bordercolor=colour["border"],
            selectbackground=colour["select"],  # selected text, light like a selected row
            selectforeground=colour["text"],
        )
        style.configure("TEntry", fieldbackground=colour["field"], padding=3)
        style.configure("TCombobox", fieldbackground=colour["field"], padding=2)
        # clam paints a focused read-only chooser dark blue with white text, and an idle one beige.
        style.map(
            "TCombobox",
            fieldbackground=[("readonly", "focus", colour["select"]), ("readonly", colour["heading"])],
            foreground=[("readonly", "focus", colour["text"])],
        )
        style.configure("TSpinbox", fieldbackground=colour["field"], padding=2)
        style.configure("TButton", padding=(9, 3))
        style.map(
            "TButton",
            background=[
                ("disabled", colour["window"]),
                ("pressed", colour["select"]),
                ("active", colour["heading"]),
            ],
            foreground=[("disabled", colour["muted"])],
        )
        style.configure("Tool.TButton", padding=(7, 2), width=0)
        self._checkbox_indicator(style)
        # clam greys a disabled (or hovered) checkbox's whole row beige, in either theme.
        style.map("TCheckbutton", background=[("disabled", colour["window"]), ("active", colour["window"])])
        style.configure("TNotebook", tabmargins=(0, 2, 0, 0))
        style.configure("TNotebook.Tab", background=colour["heading"], padding=(12, 4))
        style.map("TNotebook.Tab", background=[("selected", colour["window"])])
        style.configure("Treeview", fieldbackground=colour["field"], background=colour["field"])
        style.configure("Treeview.Heading", background=colour["heading"], relief="flat", padding=(4, 3))
        style.configure("Sash", sashthickness=6, gripcount=0)
        self.root.option_add("*TCombobox*Listbox.background", colour["field"])
        self.root.option_add("*TCombobox*Listbox.selectBackground", colour["select"])
        self.root.option_add("*TCombobox*Listbox.selectForeground", colour["text"])
        for option, role in GUI_MENU_COLOURS.items():  # menus are classic Tk widgets: no ttk style
            self.root.option_add(f"*Menu.{option}", colour[role])
        self.root.configure(background=colour["window"])

    def _checkbox_indicator(self, style: ttk.Style) -> None:
        """clam marks a ticked box with an X, which people read as "off": checkboxes get
        images of their own instead, a tick mark on the accent (drawn again, in place, when
        the theme changes; the images and the element are made once)."""
        if not self.checkboxes:
            import tkinter as tk

            size = self.px(GUI_TICK_SIZE)
            for key in GUI_TICK_STATES:
                self.checkboxes[key] = tk.PhotoImage(
                    master=self.root, width=size + self.px(GUI_TICK_GAP), height=size
                )
            self._tick_element(style)
        for key, image in self.checkboxes.items():
            self._draw_checkbox(image, *GUI_TICK_STATES[key])

    def _tick_element(self, style: ttk.Style) -> None:
        """The checkbox images as a ttk element, in clam's Checkbutton layout."""
        images = self.checkboxes
        style.element_create(
            GUI_TICK_ELEMENT,
            "image",
            images["off"],
            ("disabled", "selected", images["on_disabled"]),
            ("selected", images["on"]),
            ("disabled", images["off_disabled"]),
            sticky="",
        )
        style.layout(  # clam's, its indicator swapped (written out whole: typeshed types it)
            "TCheckbutton",
            [
                (
                    "Checkbutton.padding",
                    {
                        "sticky": "nswe",
                        "children": [
                            (GUI_TICK_ELEMENT, {"side": "left", "sticky": ""}),
                            (
                                "Checkbutton.focus",
                                {
                                    "side": "left",
                                    "sticky": "w",
                                    "children": [("Checkbutton.label", {"sticky": "nswe"})],
                                },
                            ),
                        ],
                    },
                )
            ],
        )

    def _draw_checkbox(self, image: tk.PhotoImage, edge: str, fill: str, mark: str | None) -> None:
        """A box with a border (palette roles), and a tick mark when `mark` is given; the
        image's right part stays clear, a gap before the label."""
        size, line = self.px(GUI_TICK_SIZE), self.px(1)
        image.blank()
        image.put(self.palette[edge], to=(0, 0, size, size))
        image.put(self.palette[fill], to=(line, line, size - line, size - line))
        if mark is not None:
            self._draw_tick(image, self.palette[mark], size)

    def _draw_tick(self, image: tk.PhotoImage, colour: str, size: int) -> None:
        """GUI_TICK_MARK's strokes, a square pen moved along each in small steps."""
        pen, scale = max(2, self.px(2)), size / GUI_TICK_SIZE
        for (x0, y0), (x1, y1) in itertools.pairwise(GUI_TICK_MARK):
            steps = max(1, round(max(abs(x1 - x0), abs(y1 - y0)) * scale * 2))
            for step in range(steps + 1):
                x = round((x0 + (x1 - x0) * step / steps) * scale - pen / 2)
                y = round((y0 + (y1 - y0) * step / steps) * scale - pen / 2)
                image.put(colour, to=(x, y, x + pen, y + pen))

    def px(self, pixels: float) -> int:
        """A size in pixels drawn for GUI_DESIGN_LINESPACE, at this window's text size."""
        return max(1, round(pixels * self.scale))

    @property
    def dot_width(self) -> int:
        """Of a row's status dot and the gap after it."""
        return self.px(GUI_DOT_SIZE) + self.px(GUI_DOT_GAP)

    @property
    def strip_width(self) -> int:
        """Of a task's run strip and the gap after it."""
        return GUI_STRIP_RUNS * (self.px(GUI_STRIP_CELL) + self.px(GUI_STRIP_GAP)) + self.px(GUI_DOT_GAP)

    def set_theme(self, theme: str) -> None:
        """Switch the window to `theme` at once: the ttk styles, and every classic widget,
        Text tag, Canvas item and Treeview tag that has a colour of the old theme."""
        from tkinter import ttk

        old, self.theme = self.palette, theme if theme in GUI_THEMES else "light"
        self.palette = GUI_THEMES[self.theme]
        self._style(ttk.Style(self.root))
        recolour(self.root, {old[role].lower(): colour for role, colour in self.palette.items()})

    def dot(self, status: str) -> tk.PhotoImage:
        """A round dot in the status's colour, with the gap before the text on its right
        (made once per status)."""
        if status not in self._dots:
            self._dots[status] = self._draw_dot(GUI_STATUS_COLOURS.get(status, GUI_STATUS_COLOURS["scope"]))
        return self._dots[status]

    def strip(self, statuses: tuple[str, ...]) -> tk.PhotoImage:
        """Recent runs as a row of coloured cells, oldest left, newest at the right end (like
        a CI dashboard), as wide as GUI_STRIP_RUNS cells whatever their number."""
        key = "strip:" + ",".join(statuses)
        if key not in self._dots:
            self._dots[key] = self._draw_strip(statuses[-GUI_STRIP_RUNS:])
        return self._dots[key]

    def _draw_strip(self, statuses: tuple[str, ...]) -> tk.PhotoImage:
        import tkinter as tk

        cell, height, margin = self.px(GUI_STRIP_CELL), self.px(GUI_DOT_SIZE), self.px(1)
        step = cell + self.px(GUI_STRIP_GAP)
        image = tk.PhotoImage(master=self.root, width=self.strip_width, height=height)
        first = GUI_STRIP_RUNS - len(statuses)
        for index, status in enumerate(statuses, start=first):
            colour = GUI_STATUS_COLOURS.get(status, GUI_STATUS_COLOURS["scope"])
            image.put(colour, to=(index * step, margin, index * step + cell, height - margin))
        return image

    def _draw_dot(self, colour: str) -> tk.PhotoImage:
        import tkinter as tk

        size = self.px(GUI_DOT_SIZE)
        image = tk.PhotoImage(master=self.root, width=self.dot_width, height=size)
        centre, radius = (size - 1) / 2, size / 2 - 1.5
        for y in range(size):
            dy = y - centre
            if abs(dy) <= radius:
                half = math.sqrt(radius * radius - dy * dy)
                image.put(colour, to=(round(centre - half), y, round(centre + half) + 1, y + 1))
        return image


def recolour(root: tk.Misc, swap: Mapping[str, str]) -> None:
    """Give each widget under `root` (dialogs and menus too) the colour `swap` maps its
    colour to ("#rrggbb" in lower case -> the new one), in its options, its Text tags, its
    Canvas items and its Treeview tags. Walked in Tcl: Tk's own widgets (a combobox's
    list) are not known to tkinter."""
    call, split = root.tk.call, root.tk.splitlist
    pending = [str(root)]
    while pending:
        path = pending.pop()
        _swap_options(root, (path, "configure"), swap)
        kind = str(call("winfo", "class", path))
        for command in RECOLOUR_PARTS.get(kind, ()):
            for part in split(call(path, *command[0])):
                _swap_options(root, (path, *command[1], part), swap)
        pending.extend(str(child) for child in split(call("winfo", "children", path)))


# Widget class -> (command listing its parts, command configuring one) for recolour.
RECOLOUR_PARTS: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = {
    "Text": ((("tag", "names"), ("tag", "configure")),),
    "Canvas": ((("find", "all"), ("itemconfigure",)),),
    "Treeview": ((("tag", "names"), ("tag", "configure")),),
}


def _swap_options(root: tk.Misc, command: tuple[str, ...], swap: Mapping[str, str]) -> None:
    """Reconfigure the colour options of one widget or part that `swap` names. Tk answers
    `configure` with 5-item entries, a Treeview's tags with option-value pairs."""
    entries = root.tk.splitlist(root.tk.call(*command))
    if entries and len(root.tk.splitlist(entries[0])) != 5:
        pairs = [(entries[index], entries[index + 1]) for index in range(0, len(entries) - 1, 2)]
    else:
        pairs = [(parts[0], parts[-1]) for parts in map(root.tk.splitlist, entries) if len(parts) == 5]
    changes: list[str] = []
    for option, value in pairs:
        if str(value).lower() in swap:
            changes += [str(option), swap[str(value).lower()]]
    if changes:
        root.tk.call(*command, *changes)


# Background work: store reads and writes run on one worker thread, in order.


ENGINE_TICKET = 0  # a Posted with this ticket carries an engine event


class Posted(typing.NamedTuple):
    """What other threads hand the Tk thread: the answer to a submitted call (its ticket,
    its result or its exception), or an engine event (ENGINE_TICKET). Plain data only."""

    ticket: int
    result: object = None
    error: Exception | None = None


class Worker:
    """One thread that runs calls in the order they were submitted, off the Tk thread.

    Each answer goes to `outbox` as a Posted. The worker keeps no reference to anything of
    the Tk thread's (its callbacks stay there, under the ticket), so nothing Tk is ever
    freed on this thread, and it never touches a widget.
    """

    def __init__(self, outbox: queue.SimpleQueue[Posted]) -> None:
        import queue

        self._outbox = outbox
        self._calls: queue.SimpleQueue[tuple[int, Callable[[], object]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="gui-worker", daemon=True)
        self._thread.start()

    def submit(self, ticket: int, call: Callable[[], object]) -> None:
        self._calls.put((ticket, call))

    def stop(self, timeout: float = GUI_WORKER_JOIN_SECONDS) -> None:
        self._calls.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            self._outbox.put(self._answer(*item))
            del item  # now, not at the next call: what the call held dies with it

    @staticmethod
    def _answer(ticket: int, call: Callable[[], object]) -> Posted:
        try:
            return Posted(ticket, call())
        except Exception as error:  # handed to the Tk thread, whose error handler shows and logs it
            return Posted(ticket, error=error)


@dataclass
class Snapshot:
    """What one refresh read (on the worker thread); None: unchanged since the last read."""

    engine: JSONDict
    jobs: list[JSONDict] | None = None
    tasks: list[JSONDict] | None = None
    job_runs: dict[str, JSONDict] | None = None  # each job's latest run as a whole (job_run_view)
    error: str | None = None


def _home_signature(home: Path) -> tuple[int, int] | None:
    """A cheap change stamp of the data home: every store write renames a temp file into
    its folder (atomic_write), which moves that folder's mtime."""
    try:
        return (os.stat(home).st_mtime_ns, os.stat(home / RUNS_DIR).st_mtime_ns)
    except OSError:
        return None


class StoreReader:
    """Reads what the window shows, and skips the big reads while nothing on disk changed.
    Used on the worker thread only."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._signature: tuple[int, int] | None = None
        self._read_at = -math.inf

    def snapshot(self, *, force: bool = False) -> Snapshot:
        """The engine's state, and (when something changed, or with `force`) jobs and tasks."""
        try:
            snap = Snapshot(engine=self.service.engine_status())
            if force or self._changed():
                snap.jobs = self.service.list_jobs()
                recent = self.service.recent_statuses(GUI_STRIP_RUNS)
                told = self.service.notify_settings()["tasks"]
                snap.tasks = [
                    {
                        **task,
                        "recent_runs": recent.get(task["id"], []),
                        "notify_events": (told.get(task["id"]) or {}).get("events", {}),
                    }
                    for task in self.service.list_tasks()
                ]
                snap.job_runs = self.service.job_run_views()
        except SchedulerError as error:
            self._signature = None  # read everything again next time
            return Snapshot(engine={}, error=str(error))
        return snap

    def runs(self, scope: Scope) -> list[JSONDict]:
        """Newest first: one task's runs, one job's, the unassigned tasks', or the newest of all."""
        try:
            if scope.kind == SCOPE_TASK:
                return self.service.list_runs(task_id=scope.ident)
            if scope.kind == SCOPE_JOB:
                return self.service.list_runs(job_id=scope.ident)
        except NotFound:  # deleted meanwhile; the next snapshot shows what is left
            return []
        if scope.kind == SCOPE_UNASSIGNED:
            tasks = self.service.list_tasks(unassigned=True)
            runs = [run for task in tasks for run in self.service.list_runs(task_id=task["id"])]
            runs.sort(key=lambda run: str(run["created_at"]), reverse=True)
            return runs[:GUI_RUNS_SHOWN]
        return self.service.list_runs(limit=GUI_RUNS_SHOWN)

    def job_fires(self, scope: Scope) -> list[JSONDict]:
        """The fires of the scope's jobs that started no job run (see Service.job_fires)."""
        if scope.kind == SCOPE_JOB:
            return self.service.job_fires(str(scope.ident))
        return self.service.job_fires(limit=GUI_RUNS_SHOWN) if scope.kind == SCOPE_ALL else []

    def totals(self, scope: Scope) -> JSONDict | None:
        """What the runs of a task, a job, the unassigned tasks or all cost and used; None
        when the task or job is gone."""
        try:
            if scope.kind == SCOPE_TASK:
                return self.service.task_totals(str(scope.ident))
            if scope.kind in (SCOPE_JOB, SCOPE_UNASSIGNED):
                return self.service.job_totals(scope.ident)
        except NotFound:
            return None
        total: JSONDict = self.service.usage()["total"]
        return total

    def _changed(self) -> bool:
        signature = _home_signature(self.service.store.home)
        now = time.monotonic()
        unsettled = signature is None or time.time_ns() - max(signature) < GUI_SETTLED_NS
        changed = unsettled or signature != self._signature or now - self._read_at > GUI_FULL_READ_SECONDS
        self._signature = signature
        if changed:
            self._read_at = now
        return changed


# Panes. Each owns its widgets, shows what the app hands it, and reports user actions to
# the app; none calls the store or another pane.

TASK_IID_PREFIX = "t:"  # task rows in the Jobs tree (a task id alone is a job row's iid)
Action = tuple[str, str, Callable[[], None]]  # (key, label, handler) of a toolbar button


def _pane_frame(parent: tk.Misc, title: str, looks: Looks) -> tuple[ttk.Frame, Subtitle]:
    """A pane's frame with its title row; returns the frame and the subtitle.
    Row 1 is for the toolbar, row 2 for the content (which grows)."""
    from tkinter import ttk

    frame = ttk.Frame(parent, padding=(6, 8, 6, 6))
    frame.columnconfigure(0, weight=1)
    frame.rowconfigure(2, weight=1)
    header = ttk.Frame(frame)
    header.grid(row=0, column=0, sticky="ew", pady=(0, 6))
    ttk.Label(header, text=title, style="Title.TLabel").pack(anchor="w")
    subtitle = Subtitle(header, looks.fonts["body"])
    subtitle.label.pack(anchor="w", fill="x")
    return frame, subtitle


class Subtitle:
    """A pane's subtitle, always one line, so that every pane's toolbar starts at the same
    height: when the text is too long, its first " · " part (a name) gives way to "…", and
    what follows (counts, a run's id and status, "unsaved") stays whole."""

    def __init__(self, parent: tk.Misc, font: tkfont.Font) -> None:
        from tkinter import ttk

        # width=1: the label asks for no room of its own; its place decides how much it has.
        self.label = ttk.Label(parent, style="Muted.TLabel", width=1)
        self.font = font
        self.text = ""
        self.label.bind("<Configure>", lambda event: self._fit(event.width))

    def set(self, text: str) -> None:
        self.text = text
        self._fit(self.label.winfo_width())

    def _fit(self, width: int) -> None:
        shown = _elide(self.text, self.font, width - GUI_WRAP_MARGIN) if width > 1 else self.text
        if shown != self.label.cget("text"):
            self.label.configure(text=shown)


def _elide(text: str, font: tkfont.Font, width: int) -> str:
    """`text` cut to fit `width` pixels: its first " · " part shortened to the longest
    start that fits, ending in "…"; the parts after it are kept whole."""
    if font.measure(text) <= width:
        return text
    head, sep, tail = text.partition(GUI_SUBTITLE_SEP)
    tail = sep + tail
    low, high = 0, len(head)
    while low < high:  # the longest start of `head` that fits
        middle = (low + high + 1) // 2
        if font.measure(head[:middle].rstrip() + GUI_ELLIPSIS + tail) <= width:
            low = middle
        else:
            high = middle - 1
    return head[:low].rstrip() + GUI_ELLIPSIS + tail


def _toolbar(
    frame: ttk.Frame,
    actions: Sequence[Action | None],
    extra: Callable[[ttk.Frame], object] | None = None,
) -> dict[str, ttk.Button]:
    """A pane's row of buttons (and `extra` widgets, a group of their own), wrapping when
    the pane is narrow; None separates groups of buttons that wrap together."""
    import tkinter as tk
    from tkinter import ttk

    bar = ttk.Frame(frame)
    bar.grid(row=1, column=0, sticky="ew", pady=(0, 4))
    buttons: dict[str, ttk.Button] = {}
    groups: list[list[tk.Widget]] = [[]]
    for action in actions:
        if action is None:
            groups.append([])
            continue
        key, label, handler = action
        buttons[key] = ttk.Button(bar, text=label, command=handler, style="Tool.TButton")
        groups[-1].append(buttons[key])
    if extra:
        extra(bar)
        added = [widget for widget in bar.winfo_children() if widget not in buttons.values()]
        groups.append([widget for widget in added if isinstance(widget, tk.Widget)])
    bar.bind("<Configure>", lambda event: _flow(bar, event.width, groups))
    _flow(bar, 0, groups)
    return buttons


def _flow(bar: ttk.Frame, width: int, groups: Sequence[Sequence[tk.Widget]] | None = None) -> None:
    """Lay a toolbar's widgets out in rows that fit its width (0: one row), so that narrow
    panes wrap their buttons instead of hiding them. A group that would not fit the rest
    of a row starts the next one (when it fits a row at all), and groups are set apart."""
    import tkinter as tk

    x = y = 0
    widgets = [widget for widget in bar.winfo_children() if not isinstance(widget, tk.Toplevel)]
    height = max((widget.winfo_reqheight() for widget in widgets), default=0)
    for group in groups or [[widget] for widget in widgets]:
        span = sum(widget.winfo_reqwidth() + GUI_TOOL_GAP for widget in group) - GUI_TOOL_GAP
        if width and x and x + span > width >= span:
            x, y = 0, y + height + GUI_TOOL_GAP
        for widget in group:
            if width and x and x + widget.winfo_reqwidth() > width:
                x, y = 0, y + height + GUI_TOOL_GAP
            widget.place(x=x, y=y + (height - widget.winfo_reqheight()) // 2)  # a checkbox centred too
            x += widget.winfo_reqwidth() + GUI_TOOL_GAP
        x += GUI_GROUP_GAP if groups else 0
    bar.configure(height=y + height)


def _path_field(
    parent: tk.Misc, var: tk.StringVar, *, is_file: bool = False, width: int = GUI_ENTRY_CHARS
) -> ttk.Frame:
    """An entry for a folder (or a file), with a … button that browses for one."""
    from tkinter import filedialog, ttk

    def browse() -> None:
        current = var.get().strip()
        if is_file:
            start = Path(current).expanduser().parent if current else Path.home()
            chosen = filedialog.askopenfilename(parent=holder, initialdir=str(start))
        else:
            chosen = filedialog.askdirectory(parent=holder, initialdir=current or str(Path.home()))
        if chosen:
            var.set(chosen)

    holder = ttk.Frame(parent)
    holder.columnconfigure(0, weight=1)
    ttk.Entry(holder, textvariable=var, width=width).grid(row=0, column=0, sticky="nsew")
    browse_button = ttk.Button(holder, text="…", width=2, style="Tool.TButton", command=browse)
    browse_button.grid(row=0, column=1, sticky="ns", padx=(4, 0))
    return holder


def _text_box(
    parent: tk.Misc, looks: Looks, *, width: int, height: int = 0, padding: tuple[int, int] = (6, 4)
) -> tk.Text:
    """A Text in the window's look: white, a thin border that turns blue with the focus."""
    import tkinter as tk

    box = tk.Text(
        parent,
        width=width,
        wrap="word",
        undo=True,
        font=looks.fonts["body"],
        background=looks.palette["field"],
        foreground=looks.palette["text"],
        insertbackground=looks.palette["text"],
        relief="flat",
        highlightthickness=1,
        highlightbackground=looks.palette["border"],
        highlightcolor=looks.palette["accent"],
        padx=padding[0],
        pady=padding[1],
    )
    if height:
        box.configure(height=height)
    return box


def _autowrap(label: ttk.Label) -> ttk.Label:
    """Wrap a label's text at whatever width its place gives it (starting narrow, so that
    the label never asks for more room than its place has)."""
    label.configure(wraplength=GUI_WRAP_MIN)
    label.bind(
        "<Configure>",
        lambda event: label.configure(wraplength=max(event.width - GUI_WRAP_MARGIN, GUI_WRAP_FLOOR)),
    )
    return label


class ScrollArea:
    """A frame (`inner`) that scrolls up and down when its place is too short for it. The
    wheel scrolls it over any of its widgets but text boxes (which scroll themselves), and
    a widget that takes the focus (Tab, or an error shown by it) is scrolled into view.
    Call `adopt` once its widgets are built."""

    def __init__(self, parent: ttk.Frame, padding: tuple[int, int, int, int], background: str) -> None:
        import tkinter as tk
        from tkinter import ttk

        parent.rowconfigure(0, weight=1)
        parent.columnconfigure(0, weight=1)
        self.canvas = tk.Canvas(parent, highlightthickness=0, borderwidth=0, background=background)
        self.bar = ttk.Scrollbar(parent, orient="vertical", command=self._on_bar)
        self._wanted: tk.Misc | None = None  # kept in view while the layout settles
        self._box: tk.Text | None = None  # grows into the room to spare (see `grow`)
        self._box_lines = 0
        self.canvas.configure(yscrollcommand=self.bar.set)
        self.canvas.grid(row=0, column=0, sticky="nsew")
        self.bar.grid(row=0, column=1, sticky="ns")
        self.inner = ttk.Frame(self.canvas, padding=padding)
        self._window = self.canvas.create_window(0, 0, window=self.inner, anchor="nw")
        self.inner.grid_anchor("nw")  # room to spare goes below the rows, not around them
        self.inner.bind("<Configure>", lambda event: self._fit())
        self.canvas.bind("<Configure>", lambda event: self._fit())
        self.canvas.bind("<Map>", lambda event: self._fit())  # a hidden tab missed the resizes
        self._wheel_tag, self._focus_tag = f"ScrollWheel{id(self)}", f"ScrollFocus{id(self)}"
        parent.bind_class(self._wheel_tag, "<Button-4>", lambda event: self._scroll(-1))
        parent.bind_class(self._wheel_tag, "<Button-5>", lambda event: self._scroll(1))
        parent.bind_class(self._wheel_tag, "<MouseWheel>", lambda event: self._scroll(-event.delta))
        parent.bind_class(self._focus_tag, "<FocusIn>", lambda event: self.show(event.widget), add=True)

    def adopt(self, widget: tk.Misc | None = None) -> None:
        import tkinter as tk

        for child in (widget or self.inner).winfo_children():
            tags = (self._focus_tag,) if isinstance(child, tk.Text) else (self._wheel_tag, self._focus_tag)
            child.bindtags((*tags, *child.bindtags()))
            self.adopt(child)

    def _fit(self) -> None:
        width = self.canvas.winfo_width()
        self._grow_box()
        self.canvas.itemconfigure(self._window, width=width)
        self.canvas.configure(scrollregion=(0, 0, width, self.inner.winfo_reqheight()))
        if self._wanted is not None:
            self._reveal(self._wanted)

    def grow(self, box: tk.Text) -> None:
        """Let `box` take the room the view has to spare (in lines; never fewer than it has)."""
        self._box, self._box_lines = box, int(box.cget("height"))

    def _grow_box(self) -> None:
        if self._box is None:
            return
        line = max(int(self._box.winfo_reqheight() / max(int(self._box.cget("height")), 1)), 1)
        rest = self.inner.winfo_reqheight() - self._box.winfo_reqheight()
        lines = max(self._box_lines, (self.canvas.winfo_height() - rest) // line)
        if lines != int(self._box.cget("height")):
            self._box.configure(height=lines)

    def let_go(self) -> None:
        """Stop keeping the widget last shown in view."""
        self._wanted = None

    def _on_bar(self, *args: str) -> None:
        self._wanted = None
        self.canvas.yview(*args)

    def _scroll(self, direction: int) -> str:
        self._wanted = None
        if self.inner.winfo_reqheight() > self.canvas.winfo_height():
            self.canvas.yview_scroll(1 if direction > 0 else -1, "units")
        return "break"  # a chooser under the pointer keeps its value

    def show(self, widget: tk.Misc) -> None:
        """Scroll so that all of `widget` is in view (its top, if it is taller than the view),
        and keep it there while the layout changes, until the person scrolls."""
        self._wanted = widget
        self._reveal(widget)

    def _reveal(self, widget: tk.Misc) -> None:
        height = max(self.inner.winfo_reqheight(), 1)
        top = widget.winfo_rooty() - self.inner.winfo_rooty()
        bottom = top + widget.winfo_height()
        first, last = (fraction * height for fraction in self.canvas.yview())
        if top < first or bottom - top > last - first:
            self.canvas.yview_moveto(top / height)
        elif bottom > last:
            self.canvas.yview_moveto((bottom - (last - first)) / height)


def _enable(buttons: Mapping[str, ttk.Button], **states: bool) -> None:
    for key, is_enabled in states.items():
        buttons[key].state(["!disabled"] if is_enabled else ["disabled"])


class JobsPane:
    """The Jobs tree: "All tasks", each job (progress, status dot) with its tasks as
    children, and "(Unassigned)" with the tasks that have no job. Job actions, and what
    the chosen job's latest run as a whole did."""

    def __init__(self, app: App, parent: tk.Misc, looks: Looks) -> None:
        from tkinter import ttk

        self.app = app
        self.frame, self.subtitle = _pane_frame(parent, "Jobs", looks)
        self.buttons = _toolbar(
            self.frame,
            (
                ("new", "New", app.new_job),
                ("edit", "Edit", app.edit_job),
                ("delete", "Delete", app.delete_from_jobs),
                None,
                ("run", "▶ Run", app.run_job),
                ("stop", "■ Stop", app.stop_job),
            ),
        )
        self.table = TreeTable(self.frame, JOB_TREE_COLUMNS, looks, flat=False)
        self.table.frame.grid(row=2, column=0, sticky="nsew")
        self.table.on_select(self._on_select)
        self.table.tree.bind("<Double-1>", lambda event: self._on_double_click())
        self.table.tree.bind("<Delete>", lambda event: app.delete_from_jobs())
        # What the chosen job's latest run as a whole did (empty: never run as a whole).
        self.job_run = _autowrap(ttk.Label(self.frame, style="Muted.TLabel", justify="left"))
        self.job_run.grid(row=3, column=0, sticky="ew", pady=(4, 0))

    def show_job_run(self, text: str, level: str) -> None:
        self.job_run.configure(text=text, style=GUI_LEVEL_STYLES.get(level, "Muted.TLabel"))

    def show(self, jobs: list[JSONDict], tasks: list[JSONDict]) -> None:
        by_job: dict[str | None, list[JSONDict]] = {}
        for task in tasks:
            by_job.setdefault(task.get("job_id"), []).append(task)
        is_open = len(jobs) <= GUI_OPEN_JOBS_MAX
        rows = [TreeRow(SCOPE_ALL, {"name": "All tasks", "done": len(tasks)}, "scope", tags=("scope",))]
        for job in jobs:
            children = [
                self._task_row(task) for task in _order_tasks(by_job.get(job["id"], []), job["task_order"])
            ]
            record = {"name": job["name"], "done": job["progress"]["text"]}
            rows.append(TreeRow(job["id"], record, str(job["status"]), children, is_open=is_open))
        unassigned = [self._task_row(task) for task in by_job.get(None, [])]
        record = {"name": "(Unassigned)", "done": len(unassigned)}
        rows.append(TreeRow(SCOPE_UNASSIGNED, record, "scope", unassigned, ("scope",), is_open=is_open))
        self.table.show(rows)
        self.subtitle.set(_plural(len(jobs), "job"))

    @staticmethod
    def _task_row(task: JSONDict) -> TreeRow:
        tags = ("muted",) if not task.get("enabled", True) else ()
        return TreeRow(
            TASK_IID_PREFIX + task["id"], {"name": task["name"], "done": ""}, _task_status(task), tags=tags
        )

    def select(self, scope: Scope) -> None:
        self.table.select(self._iid(scope))

    def set_actions(self, *, job: bool, deletable: bool) -> None:
        _enable(self.buttons, edit=job, delete=deletable, run=job, stop=job)

    def _on_select(self, iid: str | None) -> None:
        if iid is not None:
            self.app.choose_in_jobs(self._scope(iid))

    def _on_double_click(self) -> None:
        iid = self.table.selected()
        if iid and self._scope(iid).kind == SCOPE_JOB:
            self.app.edit_job()

    @staticmethod
    def _scope(iid: str) -> Scope:
        if iid in (SCOPE_ALL, SCOPE_UNASSIGNED):
            return Scope(iid)
        if iid.startswith(TASK_IID_PREFIX):
            return Scope(SCOPE_TASK, iid.removeprefix(TASK_IID_PREFIX))
        return Scope(SCOPE_JOB, iid)

    @staticmethod
    def _iid(scope: Scope) -> str:
        if scope.kind == SCOPE_TASK:
            return TASK_IID_PREFIX + str(scope.ident)
        return str(scope.ident) if scope.kind == SCOPE_JOB else scope.kind


class TasksPane:
    """The tasks of the chosen job (or Unassigned, or all), with a filter; task actions."""

    def __init__(self, app: App, parent: tk.Misc, looks: Looks) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.app = app
        self.frame, self.subtitle = _pane_frame(parent, "Tasks", looks)
        self.buttons = _toolbar(
            self.frame,
            (
                ("new", "New", app.new_task),
                None,
                ("run", "▶ Run now", app.run_task),
                ("toggle", "Disable", app.toggle_task),
                ("delete", "Delete", app.delete_task),
                None,
                ("up", "▲ Up", lambda: app.move_task(-1)),
                ("down", "▼ Down", lambda: app.move_task(1)),
            ),
        )
        body = ttk.Frame(self.frame)
        body.grid(row=2, column=0, sticky="nsew")
        body.columnconfigure(1, weight=1)
        body.rowconfigure(1, weight=1)
        self.filter = tk.StringVar(master=self.frame)
        ttk.Label(body, text="Filter", style="Muted.TLabel").grid(row=0, column=0, sticky="w", padx=(0, 6))
        self.filter_entry = ttk.Entry(body, textvariable=self.filter)
        self.filter_entry.grid(row=0, column=1, sticky="ew", pady=(0, 6))
        self.filter_entry.bind("<Escape>", lambda event: self.filter.set(""))
        self.filter.trace_add("write", lambda *_: self._render())
        self.table = TreeTable(body, TASK_LIST_COLUMNS, looks, image_width=looks.strip_width)
        self.table.frame.grid(row=1, column=0, columnspan=2, sticky="nsew")
        self.table.on_select(self._on_select)
        self.table.tree.bind("<Delete>", lambda event: app.delete_task())
        self._tasks: list[JSONDict] = []
        self._title = ""
        self._selected: str | None = None

    def show(self, tasks: list[JSONDict], title: str, selected: str | None) -> None:
        self._tasks, self._title, self._selected = tasks, title, selected
        self._render()

    def _render(self) -> None:
        needle = self.filter.get().strip().lower()
        shown = [task for task in self._tasks if not needle or needle in _task_haystack(task)]
        rows = [
            TreeRow(
                task["id"],
                task,
                _task_status(task),
                tags=() if task.get("enabled", True) else ("muted",),
                strip=tuple(task.get("recent_runs") or ()) if task.get("enabled", True) else (),
            )
            for task in shown
        ]
        self.table.show(rows)
        self.table.select(self._selected)
        count = f"{len(shown)} of {len(self._tasks)}" if needle else _plural(len(self._tasks), "task")
        self.subtitle.set(f"{self._title} · {count}")

    def focus_filter(self) -> None:
        self.filter_entry.focus_set()
        self.filter_entry.select_range(0, "end")

    def set_actions(self, task: JSONDict | None) -> None:
        in_job = task is not None and bool(task.get("job_id"))  # a job's order: the order it runs in
        _enable(
            self.buttons,
            run=task is not None,
            toggle=task is not None,
            delete=task is not None,
            up=in_job,
            down=in_job,
        )
        enabled = task is None or bool(task.get("enabled", True))
        self.buttons["toggle"].configure(text="Disable" if enabled else "Enable")

    def _on_select(self, iid: str | None) -> None:
        if iid is not None:
            self.app.select_task(iid)


def _task_haystack(task: JSONDict) -> str:
    return f"{task['name']} {task.get('schedule_text') or ''} {task['id']}".lower()


GUI_CHART_DAYS = 30
GUI_CHART_LINES = 6  # the chart's height, in lines of the small font
GUI_CHART_PAD = 4  # pixels, as the other chart sizes, at GUI_DESIGN_LINESPACE (see Looks.px)
GUI_CHART_BAR_GAP = 1  # on each side of a day's bar
GUI_CHART_LINE = 2  # the run-time line's width


def daily_usage(
    runs: Iterable[JSONDict], now: datetime, days: int = GUI_CHART_DAYS
) -> list[tuple[float, float]]:
    """(cost in USD, run time in seconds) of each of the last `days` local days, oldest
    first, today last: what the chart under the Runs list draws."""
    today = now.astimezone().date()
    slots = [[0.0, 0.0] for _ in range(days)]
    for run in runs:
        when = run.get("started_at") or run.get("created_at")
        if not when:
            continue
        age = (today - parse_time(str(when), "started_at").astimezone().date()).days
        if 0 <= age < days:
            slot = slots[days - 1 - age]
            slot[0] += float(run.get("cost_usd") or 0)
            slot[1] += float(run.get("duration_seconds") or 0)
    return [(cost, seconds) for cost, seconds in slots]


class UsageChart:
    """The listed runs' cost (bars) and run time (a line) per day over the last 30 days,
    drawn on a Canvas under the Runs list; redrawn when its size changes."""

    def __init__(self, parent: tk.Misc, looks: Looks) -> None:
        import tkinter as tk

        self.looks = looks
        font = looks.fonts["small"]
        height = GUI_CHART_LINES * int(font.metrics("linespace"))
        self.canvas = tk.Canvas(parent, height=height, highlightthickness=0, borderwidth=0)
        self.days: list[tuple[float, float]] = []
        self.canvas.bind("<Configure>", lambda event: self.draw())
        self.colour()

    def colour(self) -> None:
        self.canvas.configure(background=self.looks.palette["field"])
        self.draw()

    def show(self, days: list[tuple[float, float]]) -> None:
        self.days = days
        self.draw()

    def draw(self) -> None:
        canvas, font, px = self.canvas, self.looks.fonts["small"], self.looks.px
        pad, gap = px(GUI_CHART_PAD), px(GUI_CHART_BAR_GAP)
        canvas.delete("all")
        width, height = canvas.winfo_width(), int(canvas.cget("height"))
        line = int(font.metrics("linespace"))
        if not self.days or width <= 1:
            return
        top, bottom = line + pad, height - line - pad
        most_cost = max(cost for cost, _ in self.days)
        most_time = max(seconds for _, seconds in self.days)
        costs, times = _money(most_cost), _gui_duration(most_time)
        title = f"Per day: cost (bars, up to {costs}) · run time (line, up to {times})"
        canvas.create_text(
            pad,
            2,
            text=title,
            anchor="nw",
            font=font,
            fill=self.looks.palette["muted"],
            tags="title",
        )
        step = (width - 2 * pad) / len(self.days)
        points: list[float] = []
        for index, (cost, seconds) in enumerate(self.days):
            left = pad + index * step
            if cost > 0:
                bar_top = bottom - (bottom - top) * cost / most_cost
                canvas.create_rectangle(
                    left + gap,
                    bar_top,
                    left + step - gap,
                    bottom,
                    fill=self.looks.palette["accent"],
                    width=0,
                    tags="cost",
                )
            fraction = seconds / most_time if most_time else 0
            points += [left + step / 2, bottom - (bottom - top) * fraction]
        palette = self.looks.palette
        canvas.create_line(*points, fill=palette["warning"], width=px(GUI_CHART_LINE), tags="duration")
        canvas.create_line(pad, bottom, width - pad, bottom, fill=palette["border"], width=px(1))
        muted = palette["muted"]
        canvas.create_text(pad, height, text=f"{len(self.days)} days ago", anchor="sw", font=font, fill=muted)
        canvas.create_text(width - pad, height, text="today", anchor="se", font=font, fill=muted)


class RunsPane:
    """The runs of the selected task (or job, or all), newest first; run actions."""

    def __init__(self, app: App, parent: tk.Misc, looks: Looks) -> None:
        from tkinter import ttk

        self.app = app
        self.frame, self.subtitle = _pane_frame(parent, "Runs", looks)
        self.filters: dict[str, ttk.Combobox] = {}
        self.buttons = _toolbar(
            self.frame,
            (
                ("stop", "■ Stop", app.stop_run),
                ("rerun", "↻ Re-run", app.rerun),
                ("delete", "Delete", app.delete_run),
            ),
            self._build_filters,
        )
        self.span: DaySpan = (None, None)  # the days the From and To fields keep, once valid
        self._build_dates()
        self.frame.rowconfigure(2, weight=0)
        self.frame.rowconfigure(3, weight=1)
        self.table = TreeTable(self.frame, RUN_LIST_COLUMNS, looks)
        self.table.frame.grid(row=3, column=0, sticky="nsew")
        self.table.on_select(self._on_select)
        self.table.tree.bind("<Delete>", lambda event: app.delete_run())
        self.table.tree.bind("<Double-1>", self._on_double_click)
        self.table.tree.bind("<Return>", lambda event: app.open_run_details())
        self.chart = UsageChart(self.frame, looks)
        self.chart.canvas.grid(row=4, column=0, sticky="ew", pady=(6, 0))
        self.totals = _autowrap(ttk.Label(self.frame, style="Muted.TLabel", justify="left"))
        self.totals.grid(row=5, column=0, sticky="ew", pady=(6, 0))

    def _build_filters(self, bar: ttk.Frame) -> None:
        from tkinter import ttk

        for key, names in (
            ("status", list(RUN_STATUS_FILTERS)),
            ("trigger", list(RUN_TRIGGER_FILTERS)),
            ("age", [*RUN_AGE_FILTERS, RUN_DATES_LABEL]),
        ):
            width = max(len(name) for name in names) + 1
            combo = self.filters[key] = ttk.Combobox(bar, values=names, state="readonly", width=width)
            combo.set(names[0])
            combo.bind("<<ComboboxSelected>>", lambda event: self._on_filter())

    def _build_dates(self) -> None:
        """The From and To fields of a date range, shown when the age choice is "Dates…"."""
        from tkinter import ttk

        self.dates = ttk.Frame(self.frame)
        self.dates.columnconfigure(4, weight=1)
        self.day_fields: dict[str, ttk.Entry] = {}
        for column, (key, text) in enumerate((("from", "From"), ("to", "to"))):
            ttk.Label(self.dates, text=text).grid(row=0, column=2 * column, padx=(0 if column == 0 else 6, 4))
            entry = self.day_fields[key] = ttk.Entry(self.dates, width=GUI_DATE_CHARS)
            entry.grid(row=0, column=2 * column + 1)
            entry.bind("<Return>", lambda event: self._apply_dates())
            entry.bind("<FocusOut>", lambda event: self._apply_dates())
        hint = f"YYYY-MM-DD, {local_zone_name()}; blank: no bound"
        zone = _autowrap(ttk.Label(self.dates, text=hint, style="Note.TLabel", justify="left"))
        zone.grid(row=1, column=0, columnspan=6, sticky="ew")
        self.dates_error = _autowrap(ttk.Label(self.dates, style="Error.TLabel", justify="left"))
        self.dates_error.grid(row=2, column=0, columnspan=6, sticky="ew")

    def _on_filter(self) -> None:
        if self.filters["age"].get() != RUN_DATES_LABEL:
            self.dates.grid_remove()
        elif not self.dates.winfo_ismapped():
            self.dates.grid(row=2, column=0, sticky="ew", pady=(0, 4))
            if not any(entry.get() for entry in self.day_fields.values()):
                today = self.app.service.clock().astimezone().date()
                self._set_days(today - timedelta(days=RUN_DATES_DEFAULT_DAYS), today)
            self._apply_dates(refilter=False)
        self.app.refilter_runs()

    def _set_days(self, first: date, last: date) -> None:
        for key, day in (("from", first), ("to", last)):
            self.day_fields[key].delete(0, "end")
            self.day_fields[key].insert(0, day.isoformat())

    def _apply_dates(self, *, refilter: bool = True) -> None:
        """Read From and To; a date that cannot be read is named, and the list keeps the
        last range that could."""
        try:
            span = parse_day_span(self.day_fields["from"].get(), self.day_fields["to"].get())
        except Invalid as error:
            self.dates_error.configure(text=f"{(error.field or '').capitalize()}: {error.message}")
            return
        self.dates_error.configure(text="")
        if span != self.span:
            self.span = span
            if refilter:
                self.app.refilter_runs()

    def filter_values(self, now: datetime) -> tuple[str, str, DaySpan]:
        age = self.filters["age"].get()
        span = self.span if age == RUN_DATES_LABEL else age_span(age, now)
        return self.filters["status"].get(), self.filters["trigger"].get(), span

    def show_totals(self, totals: JSONDict | None) -> None:
        """What the listed runs cost and used (see usage_totals); None: nothing to say."""
        self.totals.configure(text=_totals_line(totals) if totals else "")

    def show(
        self,
        runs: list[JSONDict],
        title: str,
        selected: str | None,
        *,
        with_task: bool,
        fires: Sequence[JSONDict] = (),
    ) -> None:
        """List runs, and `fires` (job runs that started no step, see Service.job_fires)
        among them by time; `with_task` adds the Task column (when they are not all one
        task's)."""
        hidden = set() if with_task else {"task"}
        if hidden != self.table.hidden:
            self.table.hidden = hidden
            self.table.fit_columns()
        now = self.app.service.clock()  # the moment the totals beside the list are of
        listed = merge_newest_first(runs, [job_fire_run(fire) for fire in fires])
        kept = [run for run in listed if run_matches(run, *self.filter_values(now))]
        self.table.show(run_rows(kept) if with_task else [_run_row(run) for run in kept])
        self.table.select(selected)
        self.chart.show(daily_usage(runs, now))
        shown = "" if len(kept) == len(listed) else f" ({len(kept)} shown)"
        self.subtitle.set(f"{title} · {_plural(len(listed), 'run')}{shown}")

    def set_actions(self, run: JSONDict | None) -> None:
        active = run is not None and run["status"] in ACTIVE_STATUSES
        _enable(self.buttons, stop=active, rerun=run is not None, delete=run is not None and not active)

    def _on_select(self, iid: str | None) -> None:
        if iid is not None and not iid.startswith(JOB_RUN_IID_PREFIX):  # a job run's row has no log
            self.app.select_run(iid)

    def _on_double_click(self, event: tk.Event[tk.Misc]) -> None:
        if self.table.tree.identify_row(event.y):  # not a heading, nor the space below the rows
            self.app.open_run_details()


JOB_RUN_IID_PREFIX = "jr:"  # a job run's row in the Runs pane, its steps' runs beneath


def _run_row(run: JSONDict) -> TreeRow:
    return TreeRow(
        run["id"], run, str(run["status"]), tags=("failed",) if run["status"] in GUI_FAILED_KEYS else ()
    )


def job_fire_run(fire: JSONDict) -> JSONDict:
    """A job run that started no step (see Service.job_fires) as the Runs pane lists a
    run: a row of its own, its note where a run names its task."""
    note = f" · {fire['note']}" if fire.get("note") else ""
    return {
        "id": JOB_RUN_IID_PREFIX + str(fire["id"]),
        "is_job_fire": True,
        "task_id": "",
        "task_name": f"Job run {_short(fire['id'])}{note}",
        "status": fire["status"],
        "trigger": fire["trigger"],
        "created_at": fire["scheduled_for"] or fire["started_at"],
        "started_at": None,
        "finished_at": fire["finished_at"],
    }


def merge_newest_first(runs: list[JSONDict], more: Sequence[JSONDict]) -> list[JSONDict]:
    """Runs listed newest first with `more` (the same shape) put in their place by time."""
    if not more:
        return runs
    return sorted([*runs, *more], key=lambda run: parse_time(run["created_at"], "created_at"), reverse=True)


def run_rows(runs: list[JSONDict]) -> list[TreeRow]:
    """The Runs pane's rows for runs listed newest first: the runs of one job run go
    beneath a row of their own (at the place of its newest step), oldest step first;
    a job run that started no step (job_fire_run) has a row alone."""
    rows: list[TreeRow] = []
    groups: dict[str, TreeRow] = {}
    steps: dict[str, list[TreeRow]] = {}
    for run in runs:
        job_run_id = run.get("job_run_id")
        if not job_run_id or run.get("is_job_fire"):
            rows.append(_run_row(run))
            continue
        if job_run_id not in groups:
            steps[job_run_id] = []
            groups[job_run_id] = TreeRow(
                JOB_RUN_IID_PREFIX + job_run_id, {}, "", steps[job_run_id], is_open=True
            )
            rows.append(groups[job_run_id])
        steps[job_run_id].insert(0, _run_row(run))
    for job_run_id, group in groups.items():
        group.record = _job_run_row_record(job_run_id, [row.record for row in steps[job_run_id]])
        group.status = str(group.record["status"])
        group.tags = ("failed",) if group.status in GUI_FAILED_KEYS else ()
    return rows


def _job_run_row_record(job_run_id: str, steps: list[JSONDict]) -> JSONDict:
    """A job run as a row of the Runs pane, from its steps' runs (oldest first)."""
    active = [step for step in steps if step["status"] in ACTIVE_STATUSES]
    last = steps[-1]
    costs = [step["cost_usd"] for step in steps if step.get("cost_usd") is not None]
    durations = [step["duration_seconds"] for step in steps if step.get("duration_seconds") is not None]
    return {
        "id": job_run_id,
        "status": active[0]["status"] if active else last["status"],
        "task_id": "",
        "task_name": f"Job run {_short(job_run_id)} · {_plural(len(steps), 'step')}",
        "trigger": "job",
        "created_at": steps[0]["created_at"],
        "started_at": steps[0].get("started_at"),
        "finished_at": None if active else last.get("finished_at"),
        "duration_seconds": None if active else sum(durations) if durations else None,
        "cost_usd": sum(costs) if costs else None,
    }


class LogsPane:
    """One run's log rendered for people (or as raw lines), growing while the run is active."""

    def __init__(self, app: App, parent: tk.Misc, looks: Looks) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.app = app
        self.looks = looks
        self.frame, self.subtitle = _pane_frame(parent, "Log", looks)
        self.raw = tk.BooleanVar(master=self.frame, value=False)
        self.buttons = _toolbar(
            self.frame,
            (("copy", "Copy", app.copy_log), ("open", "Open file", app.open_log)),
            lambda bar: ttk.Checkbutton(bar, text="Raw lines", variable=self.raw, command=self._rerender),
        )
        body = ttk.Frame(self.frame)
        body.grid(row=2, column=0, sticky="nsew")
        body.rowconfigure(0, weight=1)
        body.columnconfigure(0, weight=1)
        self.text = _text_box(body, looks, width=40, padding=(10, 8))
        self.text.configure(state="disabled", highlightcolor=looks.palette["border"])
        scroll = ttk.Scrollbar(body, orient="vertical", command=self.text.yview)
        self.text.configure(yscrollcommand=scroll.set)
        self.text.grid(row=0, column=0, sticky="nsew")
        scroll.grid(row=0, column=1, sticky="ns")
        for tag, options in GUI_LOG_STYLES.items():
            font_role = options.get("font")
            rest = {
                key: looks.palette[str(value)] if key in GUI_COLOUR_OPTIONS else value
                for key, value in options.items()
                if key != "font"
            }
            self.text.tag_configure(
                tag, {**rest, **({"font": looks.fonts[str(font_role)]} if font_role else {})}
            )
        self.text.tag_configure("placeholder", foreground=looks.palette["muted"], font=looks.fonts["italic"])
        self.search = LogSearch(self.frame, self.text, looks)
        self._lines: list[str] = []
        self._tail = ""
        self._placeholder = True
        self.show_message("Select a run to see its log.")

    def start(self, title: str, message: str) -> None:
        """Show a new run: empty, with a placeholder until its first line arrives."""
        self._lines, self._tail = [], ""
        self.subtitle.set(title)
        self.show_message(message)

    def set_title(self, title: str) -> None:
        self.subtitle.set(title)

    def show_message(self, message: str) -> None:
        self._placeholder = True

        def replace() -> None:
            self.text.delete("1.0", "end")
            self.text.insert("end", message, "placeholder")

        self._edit(replace)
        self.search.find(keep_place=True)

    def append(self, data: str, *, final: bool = False) -> None:
        """Add log text (whole lines; with `final` a last line without its newline too)."""
        lines = (self._tail + data).split("\n")
        self._tail = "" if final else lines.pop()
        lines = [line for line in lines if line] if final else lines
        if not lines:
            return
        self._lines.extend(lines)
        self._insert(lines)

    def text_to_copy(self) -> str:
        ranges = self.text.tag_ranges("sel")
        if ranges:
            return str(self.text.get(ranges[0], ranges[1]))
        return "" if self._placeholder else str(self.text.get("1.0", "end-1c"))

    def _rerender(self) -> None:
        if self._lines:
            self._placeholder = True
            self._insert(self._lines)

    def _insert(self, lines: list[str]) -> None:
        at_end = self.text.yview()[1] >= 1.0
        clear = self._placeholder
        self._placeholder = False

        def insert() -> None:
            if clear:
                self.text.delete("1.0", "end")
            for line in lines:
                for tag, text in self._render(line):
                    self.text.insert("end", text + "\n", tag)

        self._edit(insert)
        if at_end or clear:
            self.text.see("end")
        self.search.find(keep_place=True)

    def _render(self, line: str) -> list[Segment]:
        if self.raw.get():
            return [("raw", line)]
        segments = render_log_line(line)
        return [(_summary_tag(text) if tag == "summary" else tag, text) for tag, text in segments]

    def _edit(self, change: Callable[[], object]) -> None:
        self.text.configure(state="normal")
        try:
            change()
        finally:
            self.text.configure(state="disabled")


class LogSearch:
    """Find in the log (Ctrl+F in it): a bar under the log with the words to find; every
    hit highlighted, the current one stronger and in view; Enter or ▼ goes to the next,
    Shift+Enter or ▲ to the previous, Escape closes the bar. Case does not matter."""

    def __init__(self, frame: ttk.Frame, text: tk.Text, looks: Looks) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.text = text
        self.bar = ttk.Frame(frame)
        self.bar.columnconfigure(1, weight=1)
        self.words = tk.StringVar(master=frame)
        ttk.Label(self.bar, text="Find").grid(row=0, column=0, padx=(0, 6))
        self.entry = ttk.Entry(self.bar, textvariable=self.words)
        self.entry.grid(row=0, column=1, sticky="ew")
        self.count = ttk.Label(self.bar, style="Muted.TLabel")
        self.count.grid(row=0, column=2, padx=6)
        for column, (label, step) in enumerate((("▲", -1), ("▼", 1)), start=3):
            ttk.Button(
                self.bar, text=label, style="Tool.TButton", command=functools.partial(self.go, step)
            ).grid(row=0, column=column, padx=(0, GUI_TOOL_GAP))
        ttk.Button(self.bar, text="✕", style="Tool.TButton", command=self.close).grid(row=0, column=5)
        self.hits: list[str] = []  # start index of each hit, in order
        self.current = -1
        self.words.trace_add("write", lambda *_: self.find())
        text.tag_configure("search_hit", background=looks.palette["hit"])
        text.tag_configure("search_current", background=looks.palette["hit_current"])
        text.tag_raise("search_current", "search_hit")
        text.bind("<Control-f>", lambda event: self.open())
        self.entry.bind("<Control-f>", lambda event: "break")  # not the Tasks filter
        self.entry.bind("<Return>", lambda event: self.go(1))
        self.entry.bind("<Shift-Return>", lambda event: self.go(-1))
        self.entry.bind("<KP_Enter>", lambda event: self.go(1))
        self.entry.bind("<Escape>", lambda event: self.close())

    @property
    def is_open(self) -> bool:
        return bool(self.bar.winfo_manager())

    def open(self) -> str:
        self.bar.grid(row=3, column=0, sticky="ew", pady=(6, 0))
        self.entry.focus_set()
        self.entry.select_range(0, "end")
        self.find()
        return "break"

    def close(self) -> str:
        self.bar.grid_remove()
        self._clear()
        self.count.configure(text="")
        self.text.focus_set()
        return "break"

    def _clear(self) -> None:
        self.text.tag_remove("search_hit", "1.0", "end")
        self.text.tag_remove("search_current", "1.0", "end")
        self.hits, self.current = [], -1

    def find(self, *, keep_place: bool = False) -> None:
        """Highlight every hit (again: the log changed, or the words did)."""
        if not self.is_open:
            return
        place = self.hits[self.current] if keep_place and self.hits else None
        self._clear()
        words = self.words.get()
        if not words:
            self.count.configure(text="")
            return
        length, start = len(words), "1.0"
        while found := self.text.search(words, start, stopindex="end", nocase=True):
            end = f"{found}+{length}c"
            self.text.tag_add("search_hit", found, end)
            self.hits.append(found)
            start = end
        self.current = self.hits.index(place) if place in self.hits else (0 if self.hits else -1)
        self._show_current()

    def go(self, step: int) -> str:
        if self.hits:
            self.current = (self.current + step) % len(self.hits)
            self._show_current()
        return "break"

    def _show_current(self) -> None:
        self.text.tag_remove("search_current", "1.0", "end")
        if not self.hits:
            self.count.configure(text="no hits")
            return
        found = self.hits[self.current]
        self.text.tag_add("search_current", found, f"{found}+{len(self.words.get())}c")
        self.text.see(found)
        self.count.configure(text=f"{self.current + 1} of {len(self.hits)}")


class StatusBar:
    """Engine state, API address, the next due run and counts, along the window's bottom."""

    def __init__(
        self, parent: tk.Misc, pause_or_resume: Callable[[], None], stop_job: Callable[[], None]
    ) -> None:
        from tkinter import ttk

        self.frame = ttk.Frame(parent, style="Status.TFrame", padding=(10, 4))
        self.labels = {
            key: ttk.Label(self.frame, style="Status.TLabel") for key in ("engine", "api", "next", "job")
        }
        for key, label in self.labels.items():
            label.pack(side="left", padx=(0, 6 if key == "engine" else 18))
            if key == "engine":  # pause or resume the engine right by what it says
                self.engine_button = ttk.Button(self.frame, style="Tool.TButton", command=pause_or_resume)
                self.engine_button.pack(side="left", padx=(0, 18))
        # Stops the job run the status bar tells of, shown only while one runs.
        self.job_button = ttk.Button(self.frame, text="■ Stop", style="Tool.TButton", command=stop_job)
        self.labels["counts"] = ttk.Label(self.frame, style="Status.TLabel")
        self.labels["counts"].pack(side="right", padx=(18, 0))
        self.labels["error"] = ttk.Label(self.frame, style="StatusError.TLabel")
        self.labels["error"].pack(side="left", fill="x", expand=True)

    def show(self, key: str, text: str, level: str = "") -> None:
        style = {"error": "StatusError.TLabel", "warning": "StatusWarning.TLabel"}.get(level, "Status.TLabel")
        self.labels[key].configure(text=text, style=style)

    def show_engine_action(self, is_held: bool) -> None:
        self.engine_button.configure(text=GUI_ENGINE_ACTIONS[is_held])

    def show_job_stop(self, visible: bool) -> None:
        if visible and not self.job_button.winfo_manager():
            self.job_button.pack(side="left", after=self.labels["job"], padx=(0, 18))
        elif not visible:
            self.job_button.pack_forget()


# Field -> editor row, where a field has no row of its own.
EDITOR_FIELD_ROWS = {
    "run_after": "run_after.task_id",
    "schedule": "schedule.kind",
    "schedule.type": "schedule.kind",
    "retry": "retry.max_attempts",
}
OVERLAP_LABELS = {"skip": "Skip the new run", "queue": "Queue one more", "parallel": "Run in parallel"}
CATCH_UP_LABELS = {"once": "Catch up once", "skip": "Skip (recorded)"}
STEP_FAILURE_LABELS = {
    "stop": "Stop after a failure",
    "continue": "Go on after a failure",
    "retry": "Retry, then stop",
}
SESSION_LABELS = {
    "new": "New each run",
    "resume": "Resume the last",
    "previous": "Continue the previous step",
}
NO_JOB_LABEL = "(No job)"
NO_TASK_LABEL = "(No other task)"
AFTER_WHEN_LABELS = {
    "succeeded": "When it succeeds",
    "failed": "When it fails or times out",
    "any": "When it ends, either way",
}
EDITOR_PATH_HINTS = {  # the editor says under these which of their paths are not there
    "add_dirs": "one per line; Claude may use them too",
    "mcp_config": "a JSON file of MCP servers",
}
TIMED_KINDS = ("once", "interval", *CRON_PRESET_KINDS, "cron")


def _exists_here(raw: str) -> bool:
    """Whether a path typed in the editor is there; a relative one (found from the run's
    folder) is not checked."""
    path = _expand_path(raw.strip(), Path.home(), os.environ)
    return not os.path.isabs(path) or os.path.exists(path)


def _permission_hint(mode: str) -> str:
    return next((text for known, text in PERMISSION_MODE_HELP.items() if known.value == mode), "")


class FormFields:
    """Labelled fields in rows of a grid (entries, choosers, folders, checks, week days),
    each with a note under it for its hint or its validation message, read and set by key.
    The task editor is one; the job dialog's schedule is another. `_on_change(key)` is
    called after each edit (not while values are being loaded)."""

    def __init__(self, master: tk.Misc, on_change: Callable[[str], None] | None = None) -> None:
        self._master = master  # what the Tk variables belong to
        self._changed = on_change
        self._loading = False
        self._strings: dict[str, tk.StringVar] = {}
        self._flags: dict[str, tk.BooleanVar] = {}
        self._tabs: list[ttk.Frame] = []
        self._texts: dict[str, tk.Text] = {}
        self._labels: dict[str, dict[str, str]] = {}  # chooser row -> value -> label
        self._combos: dict[str, ttk.Combobox] = {}
        self._entries: dict[str, ttk.Entry] = {}
        self._rows: dict[str, list[tk.Widget]] = {}
        self._notes: dict[str, tuple[ttk.Label, str]] = {}  # row -> (note label, its hint)
        self._tab_of: dict[str, int] = {}
        self._days: dict[str, tk.BooleanVar] = {}
        self._live_error: str | None = None

    def _on_change(self, key: str) -> None:
        """A field was edited."""
        if self._changed is not None and not self._loading:
            self._changed(key)

    def set_values(self, form: FormValues) -> None:
        """Show these values (no change is reported for them)."""
        was_loading, self._loading = self._loading, True
        try:
            for key, value in form.items():
                self._set(key, value)
        finally:
            self._loading = was_loading

    def show_field_error(self, error: SchedulerError, *, live: bool = False) -> str | None:
        """Show `error` in red under its field; the field's key (None: no field of ours).
        A live one (found while typing) goes again at the next look."""
        key = self._row_of(error.field)
        if key:
            note, _ = self._notes[key]
            note.configure(text=error.message, style="Error.TLabel")
            note.grid()
            self._live_error = key if live else self._live_error
        return key

    def clear_live_error(self) -> None:
        if self._live_error:
            self._reset_note(self._live_error)
            self._live_error = None

    def _label(self, tab: ttk.Frame, row: int, key: str, text: str) -> ttk.Label:
        from tkinter import ttk

        label = ttk.Label(tab, text=text)
        label.grid(row=row, column=0, sticky="nw", padx=(0, 10), pady=(4, 0))
        self._tab_of[key] = len(self._tabs) - 1
        return label

    def _place(self, tab: ttk.Frame, row: int, key: str, text: str, widget: tk.Widget) -> int:
        """Put a field on its row (label, widget, note below) and return the next free row."""
        label = self._label(tab, row, key, text)
        widget.grid(row=row, column=1, sticky="ew", pady=(2, 0))
        self._rows[key] = [label, widget]
        self._note(tab, row + 1, key, "")
        return row + 2

    def _note(self, tab: ttk.Frame, row: int, key: str, hint: str) -> None:
        """The line under a field: its hint in grey, or its validation message in red."""
        from tkinter import ttk

        if key in self._notes:
            self._notes[key][0].destroy()
            self._rows[key].pop()
        note = _autowrap(ttk.Label(tab, text=hint, style="Note.TLabel", justify="left"))
        note.grid(row=row, column=1, sticky="ew")
        if not hint:
            note.grid_remove()
        self._notes[key] = (note, hint)
        self._rows[key].append(note)

    def _entry(self, tab: ttk.Frame, row: int, key: str, text: str, *, hint: str = "") -> int:
        from tkinter import ttk

        var = self._string_var(key)
        entry = self._entries[key] = ttk.Entry(tab, textvariable=var)
        row = self._place(tab, row, key, text, entry)
        if hint:
            self._note(tab, row - 1, key, hint)
        return row

    def _choice(
        self, tab: ttk.Frame, row: int, key: str, text: str, labels: dict[str, str], *, editable: bool = False
    ) -> int:
        """A chooser; `labels` maps each stored value to what people see (empty: the value)."""
        from tkinter import ttk

        var = self._string_var(key)
        combo = self._combos[key] = ttk.Combobox(
            tab, textvariable=var, state="normal" if editable else "readonly"
        )
        self._labels[key] = {}
        row = self._place(tab, row, key, text, combo)
        self.set_choices(key, labels)
        return row

    def _path(self, tab: ttk.Frame, row: int, key: str, text: str, *, is_file: bool = False) -> int:
        return self._place(tab, row, key, text, _path_field(tab, self._string_var(key), is_file=is_file))

    def _check(self, tab: ttk.Frame, row: int, key: str, text: str) -> int:
        from tkinter import ttk

        var = self._flag_var(key)
        check = ttk.Checkbutton(tab, text=text, variable=var)
        self._tab_of[key] = len(self._tabs) - 1
        check.grid(row=row, column=1, sticky="w", pady=(4, 0))
        self._rows[key] = [check]
        self._note(tab, row + 1, key, "")
        return row + 2

    def _weekdays(self, tab: ttk.Frame, row: int) -> int:
        import tkinter as tk
        from tkinter import ttk

        holder = ttk.Frame(tab)
        for day in GUI_WEEK:
            var = self._days[day] = tk.BooleanVar(master=holder)
            var.trace_add("write", lambda *_: self._on_change("schedule.days"))
            ttk.Checkbutton(holder, text=day.capitalize(), variable=var)
        holder.bind("<Configure>", lambda event: _flow(holder, event.width))
        _flow(holder, 0)
        return self._place(tab, row, "schedule.days", "On", holder)

    def _string_var(self, key: str) -> tk.StringVar:
        import tkinter as tk

        var = self._strings[key] = tk.StringVar(master=self._master)
        var.trace_add("write", lambda *_: self._on_change(key))
        return var

    def _flag_var(self, key: str) -> tk.BooleanVar:
        import tkinter as tk

        var = self._flags[key] = tk.BooleanVar(master=self._master)
        var.trace_add("write", lambda *_: self._on_change(key))
        return var

    def set_choices(self, key: str, labels: dict[str, str]) -> None:
        """Replace a chooser's values (the Job chooser follows the jobs), keeping its value."""
        current = self._value(key) if self._labels.get(key) else None
        self._labels[key] = {value: label or value for value, label in labels.items()}
        self._combos[key].configure(values=list(self._labels[key].values()))
        if current is not None:
            self._set(key, current)

    def _set(self, key: str, value: str | bool) -> None:
        if key == "schedule.days":
            chosen = str(value).split(",")
            for day, var in self._days.items():
                var.set(day in chosen)
        elif key in self._texts:
            box = self._texts[key]
            box.delete("1.0", "end")
            box.insert("1.0", str(value))
            box.edit_reset()
            box.edit_modified(False)
        elif key in self._flags:
            self._flags[key].set(bool(value))
        else:
            self._strings[key].set(self._labels.get(key, {}).get(str(value), str(value)))

    def _value(self, key: str) -> str:
        """A field's value; a chooser's label read back as the value it stands for."""
        raw = self._strings[key].get()
        return next((value for value, label in self._labels.get(key, {}).items() if label == raw), raw)

    def _form(self) -> FormValues:
        form: FormValues = {key: self._value(key) for key in self._strings}
        form.update({key: var.get() for key, var in self._flags.items()})
        form.update({key: box.get("1.0", "end-1c") for key, box in self._texts.items()})
        form["schedule.days"] = ",".join(day for day, var in self._days.items() if var.get())
        return form

    def _hint(self, key: str, hint: str) -> None:
        """Change the grey line under a field (an error shown there stays until it is fixed)."""
        note, _ = self._notes[key]
        self._notes[key] = (note, hint)
        if str(note.cget("style")) != "Error.TLabel":
            self._reset_note(key)
            if hint:
                note.grid()

    def _reset_note(self, key: str) -> None:
        note, hint = self._notes[key]
        note.configure(text=hint, style="Note.TLabel")
        if not hint:
            note.grid_remove()

    def _row_of(self, field: str | None) -> str | None:
        if not field:
            return None
        field = EDITOR_FIELD_ROWS.get(field, field)
        keys = [key for key in self._notes if field == key or field.startswith((f"{key}.", f"{key}["))]
        return max(keys, key=len, default=None)

    def _show_row(self, key: str, visible: bool) -> None:
        note, hint = self._notes[key]
        for widget in self._rows[key]:
            if widget is note and not (hint or str(note.cget("text"))):
                continue
            if visible:
                widget.grid()
            else:
                widget.grid_remove()

    def _set_quietly(self, key: str, value: str) -> None:
        was_loading, self._loading = self._loading, True
        try:
            self._set(key, value)
        finally:
            self._loading = was_loading

    @staticmethod
    def _load_zones(combo: ttk.Combobox) -> None:
        from zoneinfo import available_timezones

        if not combo.cget("values"):
            combo.configure(values=sorted(available_timezones()))


class ScheduleChooser:
    """The schedule rows of the task editor and of the job dialog: the kind chooser and
    each kind's rows (the chosen kind's shown), what to do when it fires while still
    running and with missed times, and the next fire times, computed as people type."""

    def __init__(
        self,
        fields: FormFields,
        looks: Looks,
        preview: Callable[[JSONDict], JSONDict],
        labels: tuple[dict[str, str], dict[str, str]] = (OVERLAP_LABELS, CATCH_UP_LABELS),
    ) -> None:
        self.fields = fields
        self.looks = looks
        self.preview = preview  # the app's preview_schedule
        self.overlap_labels, self.catch_up_labels = labels

    def build(self, tab: ttk.Frame, row: int) -> int:
        """Put the rows on `tab` from `row`; the next free row."""
        fields = self.fields
        row = fields._choice(tab, row, "schedule.kind", "Runs", SCHEDULE_KINDS)
        row = fields._entry(tab, row, "schedule.at", "Date, time", hint="YYYY-MM-DD HH:MM, local time")
        row = fields._entry(
            tab, row, "schedule.every_seconds", "Every", hint="15m, 2h, 1h30m or 1d (at least 1m)"
        )
        row = fields._entry(
            tab, row, "schedule.anchor", "Counting from", hint="YYYY-MM-DD HH:MM; empty: its creation"
        )
        row = fields._weekdays(tab, row)
        row = fields._choice(
            tab, row, "schedule.day", "Day", {day: day for day in GUI_MONTH_DAYS}, editable=True
        )
        fields._note(tab, row - 1, "schedule.day", "1-31, or L for the last day of the month")
        row = fields._entry(tab, row, "schedule.time", "At", hint="HH:MM")
        row = fields._entry(tab, row, "schedule.expression", "Cron", hint="minute hour day month weekday")
        row = fields._choice(tab, row, "schedule.timezone", "Time zone", {}, editable=True)
        fields._note(tab, row - 1, "schedule.timezone", f"Empty: this computer's zone ({local_zone_name()})")
        zones = fields._combos["schedule.timezone"]
        zones.configure(postcommand=lambda: fields._load_zones(zones))
        row = fields._path(tab, row, "schedule.path", "Folder")
        row = fields._check(tab, row, "schedule.recursive", "Include subfolders")
        row = fields._entry(
            tab, row, "schedule.debounce_seconds", "Quiet for", hint="seconds without changes, then it fires"
        )
        row = fields._choice(tab, row, "overlap", "If still running", self.overlap_labels)
        row = fields._choice(tab, row, "catch_up", "Missed runs", self.catch_up_labels)
        return self._build_preview(tab, row)

    def _build_preview(self, tab: ttk.Frame, row: int) -> int:
        from tkinter import ttk

        box = ttk.LabelFrame(tab, text="Next runs", padding=(10, 6))
        box.grid(row=row, column=0, columnspan=2, sticky="ew", pady=(10, 0))
        self.preview_text = _autowrap(ttk.Label(box, style="Muted.TLabel", justify="left"))
        self.preview_text.pack(anchor="w", fill="x")
        self.preview_times = ttk.Label(box, justify="left", font=self.looks.fonts["mono"])
        self.preview_times.pack(anchor="w", pady=(4, 0))
        self.fields._strings["schedule.kind"].trace_add("write", lambda *_: self.show_kind_rows())
        return row + 1

    def show_kind_rows(self) -> None:
        fields = self.fields
        kind = str(fields._value("schedule.kind"))
        shown = set(SCHEDULE_KIND_ROWS.get(kind, ()))
        if kind in TIMED_KINDS:
            shown.add("catch_up")
        for rows in SCHEDULE_KIND_ROWS.values():
            for key in rows:
                fields._show_row(key, key in shown)
        fields._show_row("catch_up", "catch_up" in shown)
        state = "readonly" if kind in CRON_PRESET_KINDS else "normal"
        fields._entries["schedule.expression"].configure(state=state)

    def schedule(self, original: JSONDict | None) -> JSONDict:
        """The schedule the rows stand for (`original`: the stored one, whose interval
        anchor and seconds are kept while the rows still show them); Invalid names the row."""
        return form_schedule(self.fields._form(), original)

    def update_preview(self, original: JSONDict | None, created_at: JSON) -> None:
        """Recompute the schedule (presets write their cron) and show its next fire times;
        an interval without a start counts from `created_at` (its owner's), as the engine does."""
        form = self.fields._form()
        self.fields.clear_live_error()
        try:
            schedule = form_schedule(form, original)
            if (
                form["schedule.kind"] in CRON_PRESET_KINDS
                and form["schedule.expression"] != schedule["expression"]
            ):
                self.fields._set_quietly("schedule.expression", schedule["expression"])
            if schedule["type"] == "interval" and not schedule.get("anchor") and created_at:
                schedule = {**schedule, "anchor": created_at}
            preview = self.preview(schedule)
        except Invalid as error:
            self.fields.show_field_error(error, live=True)
            self.preview_text.configure(text="Fix the schedule to see its next runs.")
            self.preview_times.configure(text="")
            return
        self._show_times(preview, schedule.get("timezone") or None)

    def _show_times(self, preview: JSONDict, zone: str | None) -> None:
        times = [_in_zone(parse_time(moment, "time"), zone) for moment in preview["times"]]
        named = any(differs for _, differs in times)
        where = f". Times in {zone}, not this computer's {local_zone_name()}." if named else ""
        self.preview_text.configure(text=str(preview["description"]).rstrip(".") + where)
        shown = "%a %Y-%m-%d %H:%M %Z" if named else "%a %Y-%m-%d %H:%M"
        listed = "\n".join(moment.strftime(shown) for moment, _ in times)
        self.preview_times.configure(text=listed or "No timed runs.")


class EditorPane(FormFields):
    """The task editor: every field of one task (or of a new one), the schedule chooser
    with a live preview of the next fire times, inline validation messages, Save and
    Revert. It shows and collects values; the app decides what saving means."""

    def __init__(self, app: App, parent: tk.Misc, looks: Looks) -> None:
        from tkinter import ttk

        self.frame, self.subtitle = _pane_frame(parent, "Task editor", looks)
        super().__init__(self.frame)
        self.app = app
        self.looks = looks
        self.task: JSONDict | None = None  # the stored task in the form; None: a new one
        self.is_open = False  # a task or a new draft is in the form
        self._clean: FormValues = {}
        self.chooser = ScheduleChooser(self, looks, app.preview_schedule)
        self.placeholder = ttk.Label(
            self.frame,
            text="No task selected.\n\nSelect a task to edit it,\nor create one with New task (Ctrl+N).",
            style="Placeholder.TLabel",
            anchor="center",
        )
        self.notebook = ttk.Notebook(self.frame)
        self.areas: list[ScrollArea] = []  # each tab's rows scroll when the pane is too short
        builders = (
            ("Task", self._build_general),
            ("Schedule", self._build_schedule),
            ("Advanced", self._build_advanced),
        )
        for title, build in builders:
            area = self._scrolled_tab(title)
            self.areas.append(area)
            build(area.inner)
            area.adopt()
        self.advanced = self.areas[-1]
        self._build_footer()
        self.clear()

    # Building ------------------------------------------------------------------

    def _tab(self, title: str) -> ttk.Frame:
        from tkinter import ttk

        tab = ttk.Frame(self.notebook, padding=(10, 10, 10, 4))
        tab.columnconfigure(1, weight=1)
        self.notebook.add(tab, text=title)
        self._tabs.append(tab)
        return tab

    def _scrolled_tab(self, title: str) -> ScrollArea:
        """A tab whose rows scroll when the pane is too short for them all."""
        tab = self._tab(title)
        tab.configure(padding=0)
        tab.columnconfigure(1, weight=0)
        area = ScrollArea(tab, padding=(10, 10, 10, 4), background=self.looks.palette["window"])
        area.inner.columnconfigure(1, weight=1)
        return area

    def _build_general(self, tab: ttk.Frame) -> None:
        row = self._entry(tab, 0, "name", "Name")
        row = self._choice(tab, row, "job_id", "Job", {"": NO_JOB_LABEL})
        row = self._text(tab, row, "prompt", "Prompt", height=9, grow=True)
        row = self._choice(tab, row, "model", "Model", dict.fromkeys(GUI_MODELS, ""), editable=True)
        self._note(tab, row - 1, "model", "sonnet, opus, haiku or a full model id")
        row = self._choice(
            tab, row, "permission_mode", "Permissions", {mode.value: mode.value for mode in PermissionMode}
        )
        mode = self._strings["permission_mode"]
        mode.trace_add("write", lambda *_: self._hint("permission_mode", _permission_hint(mode.get())))
        row = self._path(tab, row, "working_directory", "Folder")
        self._note(tab, row - 1, "working_directory", "Empty: the job's folder, else your home folder.")
        self._check(tab, row, "enabled", "Enabled")

    def _build_schedule(self, tab: ttk.Frame) -> None:
        row = self.chooser.build(tab, 0)
        self._build_run_after(tab, row)

    def _build_run_after(self, tab: ttk.Frame, row: int) -> int:
        """ "Run B when A finishes": the task it follows (outside job runs) and on which ends."""
        from tkinter import ttk

        ttk.Separator(tab).grid(row=row, column=0, columnspan=2, sticky="ew", pady=(12, 4))
        row = self._choice(tab, row + 1, "run_after.task_id", "Also after", {"": NO_TASK_LABEL})
        self._note(tab, row - 1, "run_after.task_id", "runs once each time that task ends as below")
        return self._choice(tab, row, "run_after.when", "When that", AFTER_WHEN_LABELS)

    @property
    def preview_text(self) -> ttk.Label:
        return self.chooser.preview_text

    @property
    def preview_times(self) -> ttk.Label:
        return self.chooser.preview_times

    def _build_advanced(self, tab: ttk.Frame) -> None:
        row = self._entry(tab, 0, "timeout_seconds", "Timeout", hint="seconds")
        row = self._entry(tab, row, "max_turns", "Max turns", hint="empty: no limit")
        row = self._entry(tab, row, "max_budget_usd", "Max cost", hint="US dollars; empty: no limit")
        row = self._choice(tab, row, "session_mode", "Session", SESSION_LABELS)
        rules = "comma-separated: Read, Bash(git log, git diff)"
        row = self._entry(tab, row, "allowed_tools", "Allowed tools", hint=rules)
        row = self._entry(tab, row, "disallowed_tools", "Denied tools")
        row = self._build_claude_options(tab, row)
        row = self._check(tab, row, "fail_on_permission_denials", "Fail when a tool call is refused")
        row = self._entry(tab, row, "retry.max_attempts", "Retries", hint="after a failure or timeout")
        row = self._entry(tab, row, "retry.delay_seconds", "Retry after", hint="seconds")
        row = self._entry(tab, row, "retry.backoff", "Backoff", hint="the delay grows by this factor")
        row = self._text(tab, row, "env", "Environment", height=3)
        self._note(tab, row - 1, "env", "NAME=value, one per line")
        row = self._choice(tab, row, "on_failure", "In a job run", STEP_FAILURE_LABELS)
        self._note(tab, row - 1, "on_failure", "what the job run does after this step fails")
        row = self._check(tab, row, "skip_in_job", "Leave it out of job runs")
        for name, text in TASK_NOTIFY_EVENTS.items():
            row = self._choice(tab, row, f"notify.{name}", text, NOTIFY_OVERRIDE_LABELS)
        self._note(tab, row - 1, f"notify.{name}", "notifications of this task (File → Notifications…)")

    def _build_claude_options(self, tab: ttk.Frame, row: int) -> int:
        models = dict.fromkeys(("", *GUI_MODELS), "")
        row = self._choice(tab, row, "fallback_model", "Fallback", models, editable=True)
        self._note(tab, row - 1, "fallback_model", "used while the model is overloaded")
        row = self._text(tab, row, "append_system_prompt", "System prompt", height=3)
        self._note(tab, row - 1, "append_system_prompt", "appended to Claude's system prompt")
        row = self._text(tab, row, "system_prompt", "Base prompt", height=2)
        self._note(tab, row - 1, "system_prompt", "replaces Claude's own system prompt")
        row = self._text(tab, row, "add_dirs", "More folders", height=2)
        self._note(tab, row - 1, "add_dirs", EDITOR_PATH_HINTS["add_dirs"])
        row = self._path(tab, row, "mcp_config", "MCP servers", is_file=True)
        self._note(tab, row - 1, "mcp_config", EDITOR_PATH_HINTS["mcp_config"])
        row = self._check(tab, row, "strict_mcp_config", "Only these servers")
        return self._entry(tab, row, "extra_args", "More options", hint="claude options: --effort high")

    def _build_footer(self) -> None:
        from tkinter import ttk

        self.footer = ttk.Frame(self.frame)
        self.footer.columnconfigure(0, weight=1)
        self.message = _autowrap(ttk.Label(self.footer, style="Error.TLabel", justify="left"))
        self.message.grid(row=0, column=0, columnspan=3, sticky="ew", pady=(6, 0))
        self.revert_button = ttk.Button(self.footer, text="Revert", command=self.app.revert_task)
        self.revert_button.grid(row=1, column=1, padx=(0, 4), pady=(6, 0))
        self.save_button = ttk.Button(self.footer, text="Save", command=self.app.save_task, default="active")
        self.save_button.grid(row=1, column=2, pady=(6, 0))

    def _text(self, tab: ttk.Frame, row: int, key: str, text: str, *, height: int, grow: bool = False) -> int:

        box = _text_box(tab, self.looks, height=height, width=30)
        box.bind("<<Modified>>", lambda event: self._on_text_modified(key, box))
        self._texts[key] = box
        row = self._place(tab, row, key, text, box)
        box.grid_configure(sticky="nsew")
        if grow:
            self.areas[-1].grow(box)
        return row

    def set_jobs(self, jobs: list[JSONDict]) -> None:
        self._set_named_choices("job_id", NO_JOB_LABEL, jobs)

    def set_tasks(self, tasks: list[JSONDict]) -> None:
        """The tasks "Also after" offers (a task itself among them: saving says why not)."""
        self._set_named_choices("run_after.task_id", NO_TASK_LABEL, tasks)

    def _set_named_choices(self, key: str, none_label: str, records: list[JSONDict]) -> None:
        """A chooser of jobs or tasks by name (a name used twice shows its short id)."""
        names = [str(record["name"]) for record in records]
        duplicated = {name for name in names if names.count(name) > 1}
        labels = {"": none_label, **{record["id"]: _named_label(record, duplicated) for record in records}}
        was_loading, self._loading = self._loading, True
        try:
            self.set_choices(key, labels)
        finally:
            self._loading = was_loading

    # Showing a task ------------------------------------------------------------

    def load(self, task: JSONDict) -> None:
        """Show a stored task; its values become the clean state."""
        self.task = task
        self._open(task_to_form(task))

    def new(self, job_id: str | None) -> None:
        """Start a new task (assigned to `job_id`)."""
        self.task = None
        self._open(task_to_form({"job_id": job_id}))
        self.notebook.select(0)  # type: ignore[no-untyped-call]  # typeshed: untyped
        self._rows["name"][1].focus_set()

    def clear(self) -> None:
        self.task, self.is_open, self._clean = None, False, {}
        self.notebook.grid_remove()
        self.footer.grid_remove()
        self.placeholder.grid(row=2, column=0, sticky="nsew")
        self.subtitle.set("")

    def _open(self, form: FormValues) -> None:
        self.set_values(form)
        self.is_open = True
        self._clean = self._form()
        self.placeholder.grid_remove()
        self.notebook.grid(row=2, column=0, sticky="nsew")
        self.footer.grid(row=3, column=0, sticky="ew")
        self.clear_errors()
        for key in EDITOR_PATH_HINTS:
            self._hint_missing_paths(key)
        self._show_kind_rows()
        self._update_preview()
        self._show_state()

    def collect(self) -> JSONDict:
        """The task fields in the form; Invalid (naming the field) when a value cannot be read."""
        self.clear_errors()
        return form_to_task(self._form(), self.task)

    def collect_notify(self) -> dict[str, bool]:
        """The task's notification overrides chosen ({} : as for all tasks)."""
        return form_notify_events(self._form())

    def is_dirty(self) -> bool:
        return self.is_open and self._form() != self._clean

    @property
    def title(self) -> str:
        name = self._strings["name"].get().strip()
        return f"“{name}”" if name else "the new task"

    # Feedback ------------------------------------------------------------------

    def show_invalid(self, error: SchedulerError, *, live: bool = False) -> None:
        """Show a validation message under its field (and, unless live, above Save)."""
        key = self.show_field_error(error, live=live)
        if not live:
            self.message.configure(text=f"Not saved: {error}")
            if key:
                self.notebook.select(self._tab_of[key])  # type: ignore[no-untyped-call]  # typeshed: untyped
                self._rows[key][-1].update_idletasks()
                self.areas[self._tab_of[key]].show(self._rows[key][-2])

    def clear_errors(self) -> None:
        for area in self.areas:
            area.let_go()
        self.message.configure(text="")
        for key in self._notes:
            self._reset_note(key)
        self._live_error = None

    def _hint_missing_paths(self, key: str) -> None:
        """Warn under the extra folders or the MCP file when one is not there (yet): it is
        kept, as it may appear later, but a run fails while it is missing."""
        raw = self._texts[key].get("1.0", "end-1c") if key in self._texts else self._strings[key].get()
        missing = [path for path in raw.splitlines() if path.strip() and not _exists_here(path)]
        warning = f"{', '.join(missing)}: not there; runs fail until it is" if missing else ""
        self._hint(key, warning or EDITOR_PATH_HINTS[key])

    def set_busy(self, busy: bool) -> None:
        self.save_button.configure(text="Saving…" if busy else "Save")
        self.save_button.state(["disabled"] if busy else ["!disabled"])

    def note_changed_elsewhere(self, task: JSONDict) -> None:
        """The stored task changed while the form has edits: keep them, and say so."""
        self.task = task
        self.message.configure(
            text="This task was changed elsewhere. Save overwrites those changes; Revert loads them."
        )

    def note_deleted_elsewhere(self) -> None:
        """The stored task is gone while the form has edits: Save creates it again."""
        self.task = None
        self.message.configure(
            text="This task was deleted elsewhere. Save creates it again; Revert discards."
        )
        self._show_state()

    def _show_state(self) -> None:
        if not self.is_open:
            return
        name = self._strings["name"].get().strip() or "Untitled"
        what = name if self.task else f"New: {name}"
        self.subtitle.set(f"{what} · unsaved" if self.is_dirty() else what)

    # Reacting to edits ---------------------------------------------------------

    def _on_change(self, key: str) -> None:
        if self._loading or not self.is_open:
            return
        if key in EDITOR_PATH_HINTS:
            self._hint_missing_paths(key)
        if key in self._notes and str(self._notes[key][0].cget("style")) == "Error.TLabel":
            self._reset_note(key)  # the person is fixing it
        self._show_state()
        self.app.later(GUI_PREVIEW_DELAY_MS, self._update_preview, "preview")

    def _on_text_modified(self, key: str, box: tk.Text) -> None:
        if box.edit_modified():
            box.edit_modified(False)
            self._on_change(key)

    def _show_kind_rows(self) -> None:
        self.chooser.show_kind_rows()

    def _update_preview(self) -> None:
        if self.is_open:
            task = self.task or {}
            self.chooser.update_preview(task.get("schedule"), task.get("created_at"))


def _place_dialog(top: tk.Toplevel, root: tk.Tk) -> None:
    """Put a dialog over the middle of the window, a little above centre."""
    top.update_idletasks()
    x = root.winfo_rootx() + max((root.winfo_width() - top.winfo_reqwidth()) // 2, 0)
    y = root.winfo_rooty() + max((root.winfo_height() - top.winfo_reqheight()) // 3, 0)
    top.geometry(f"+{x}+{y}")


RUN_DETAIL_REASON_CHARS = 120  # the reason beside the status; the whole error is a click away


def _detail_time(value: JSON) -> str:
    """A stored time in this computer's zone, the zone named."""
    return fmt_local(parse_time(value, "time"), seconds=True, zone=True) if value else "—"


def _model_tokens(usage: JSON) -> str:
    counts = usage if isinstance(usage, dict) else {}
    cached = sum(_get_int(counts, key) or 0 for key in ("cache_read_tokens", "cache_creation_tokens"))
    total = (_get_int(counts, "input_tokens") or 0) + cached
    tokens = format_tokens(total, cached, _get_int(counts, "output_tokens") or 0) or "no tokens"
    cost = _get_float(counts, "cost_usd")
    return tokens + (f" · {_money(cost)}" if cost is not None else "")


def run_detail_rows(run: JSONDict) -> list[tuple[str, str]]:
    """What the run details window shows, as (label, text) rows: when, how long (both
    durations named), tokens (per model when several), cost, how it ended, denials."""
    status = run_status_text(run)
    if run.get("error") and not _has_expired(run):  # its own row says why, whole
        status += ": " + _clip(_first_line(str(run["error"])), RUN_DETAIL_REASON_CHARS)
    rows: list[tuple[str, str]] = [
        ("Task", str(run.get("task_name") or _short(run.get("task_id")))),
        ("Status", status),
        *_expiry_rows(run),
        ("Trigger", str(run.get("trigger", "")).replace("_", " ")),
        ("Attempt", str(run.get("attempt") or 1)),
        ("Scheduled", _detail_time(run.get("scheduled_for"))),
        ("Started", _detail_time(run.get("started_at"))),
        ("Finished", _detail_time(run.get("finished_at"))),
        ("Durations", format_durations(run) or "—"),
        ("Tokens", run_tokens(run) or "—"),
    ]
    models = run.get("model_usage") or {}
    if isinstance(models, dict) and len(models) > 1:
        rows += [(f"  {name}", _model_tokens(usage)) for name, usage in models.items()]
    rows += [("Cost", _money(run.get("cost_usd"))), ("Model", str(run.get("model") or "—"))]
    rows += _optional_detail_rows(run)
    return rows


def _has_expired(run: JSONDict) -> bool:
    return run.get("failure_kind") == FailureKind.EXPIRED


RUN_DETAIL_EXPIRED = "Expired"  # the row of why a queued run expired, drawn as an error


def _expiry_rows(run: JSONDict) -> list[tuple[str, str]]:
    """A queued run's start-by time (see Run.start_by), and once it expired, why."""
    expired = _has_expired(run)
    rows = [(RUN_DETAIL_EXPIRED, str(run.get("error") or ""))] if expired else []
    if run.get("start_by"):
        unless = "" if expired else " · expires then unless an engine has started it"
        rows.append(("Start by", _detail_time(run["start_by"]) + unless))
    return rows


def _optional_detail_rows(run: JSONDict) -> list[tuple[str, str]]:
    """The rows only some runs have: denials, a limit's reset, missed fires, a session."""
    rows: list[tuple[str, str]] = []
    denials = run.get("permission_denials") or []
    if denials:
        rows.append(("Denied", str(describe_denials(denials))))
        rows += [("", describe_denial(denial)) for denial in denials]
    if run.get("limit_resets_at"):
        rows.append(("Limit resets", _detail_time(run["limit_resets_at"])))
    if run.get("missed_count"):
        rows.append(("Missed", _plural(int(run["missed_count"]), "fire")))
    if run.get("session_id"):
        rows.append(("Session", str(run["session_id"])))
    return rows


class RunDetailsDialog:
    """One run's details in a window of its own (double-click or Enter on a run): the
    rows of run_detail_rows, and the whole error behind a button."""

    def __init__(self, app: App, run: JSONDict) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.app = app
        self.run_id = str(run["id"])
        self.top = tk.Toplevel(app.root)
        self.top.title(f"Run {_short(run['id'])}")
        self.top.transient(app.root)
        self.top.protocol("WM_DELETE_WINDOW", self.close)
        self.top.bind("<Escape>", lambda event: self.close())
        self.body = ttk.Frame(self.top, padding=16)
        self.body.pack(fill="both", expand=True)
        self.body.columnconfigure(1, weight=1)
        self.shown: JSONDict = {}
        self.values: dict[str, str] = {}
        self.show(run)
        _place_dialog(self.top, app.root)
        self.close_button.focus_set()

    def show(self, run: JSONDict) -> None:
        """(Re)draw the rows for the run as it now is: a running run's window follows it."""
        from tkinter import ttk

        if run == self.shown:
            return
        self.shown = run
        for child in self.body.winfo_children():
            child.destroy()
        self.values = {}
        row = 0
        for row, (label, text) in enumerate(run_detail_rows(run)):
            muted = ttk.Label(self.body, text=label, style="Muted.TLabel")
            muted.grid(row=row, column=0, sticky="nw", padx=(0, 12))
            style = "Error.TLabel" if label == RUN_DETAIL_EXPIRED else "TLabel"
            value = ttk.Label(self.body, text=text, wraplength=GUI_TIP_WRAP, justify="left", style=style)
            value.grid(row=row, column=1, sticky="w")
            self.values[label or f"{row}"] = text
        self._build_error(self.body, row + 1, str(run.get("error") or ""))
        self.close_button = ttk.Button(self.body, text="Close", command=self.close, default="active")
        self.close_button.grid(row=row + 3, column=1, sticky="e", pady=(12, 0))

    def _build_error(self, body: ttk.Frame, row: int, error: str) -> None:
        """A button that shows the whole error in a read-only box (for failed runs)."""
        from tkinter import ttk

        self.error_box = _text_box(body, self.app.looks, height=4, width=GUI_DIALOG_CHARS)
        self.error_box.insert("1.0", error)
        self.error_box.configure(state="disabled")
        self._error_row = row + 1
        self.error_button = ttk.Button(body, text="Show the whole error", command=self.show_error)
        if error:
            self.error_button.grid(row=row, column=1, sticky="w", pady=(8, 0))

    def show_error(self) -> None:
        self.error_box.grid(row=self._error_row, column=0, columnspan=2, sticky="nsew", pady=(6, 0))
        self.error_button.grid_remove()

    def close(self) -> None:
        self.top.destroy()
        self.app.run_details_closed(self)


JOB_OVERLAP_LABELS = {"skip": "Skip the fire", "queue": "Run it after"}
JOB_CATCH_UP_LABELS = {"once": "Run once", "skip": "Skip"}


class JobDialog:
    """New job / Edit job, in a small window of its own, with the job's schedule in the
    task editor's chooser. Save hands the fields to the app, which closes the dialog once
    the store took them, or shows here why it did not."""

    def __init__(self, app: App, job: JSONDict | None) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.app = app
        self.job_id: str | None = job["id"] if job else None
        job = job or {}
        self.job = job
        self.top = tk.Toplevel(app.root)
        self.top.title("Edit job" if self.job_id else "New job")
        self.top.transient(app.root)
        self.top.protocol("WM_DELETE_WINDOW", self.close)
        self.top.bind("<Escape>", lambda event: self.close())
        self.name = tk.StringVar(master=self.top, value=job.get("name", ""))
        self.folder = tk.StringVar(master=self.top, value=job.get("working_directory") or "")
        self.status = tk.StringVar(master=self.top, value=job.get("status", JobStatus.PENDING.value))
        self.original_schedule: JSONDict = job.get("schedule") or {"type": "manual"}
        body = ttk.Frame(self.top, padding=16)
        body.pack(fill="both", expand=True)
        body.columnconfigure(1, weight=1)
        body.rowconfigure(1, weight=1)
        self._build_fields(body, str(job.get("description") or ""))
        self._build_schedule(body)
        self._build_buttons(body)
        _place_dialog(self.top, app.root)
        self.name_entry.focus_set()

    def _build_fields(self, body: ttk.Frame, description: str) -> None:
        from tkinter import ttk

        def label(row: int, text: str) -> None:
            ttk.Label(body, text=text).grid(row=row, column=0, sticky="nw", padx=(0, 10), pady=(6, 0))

        label(0, "Name")
        self.name_entry = ttk.Entry(body, textvariable=self.name, width=GUI_DIALOG_CHARS)
        self.name_entry.grid(row=0, column=1, sticky="ew", pady=(4, 0))
        self.name_entry.bind("<Return>", lambda event: self.save())
        label(1, "Description")
        self.description = _text_box(body, self.app.looks, height=5, width=GUI_DIALOG_CHARS)
        self.description.insert("1.0", description)
        self.description.grid(row=1, column=1, sticky="nsew", pady=(4, 0))
        label(2, "Folder")
        _path_field(body, self.folder).grid(row=2, column=1, sticky="ew", pady=(4, 0))
        hint = "Where its tasks run unless they name their own folder."
        ttk.Label(body, text=hint, style="Note.TLabel").grid(row=3, column=1, sticky="w")
        if self.job_id:
            label(4, "Status")
            values = [status.value for status in JobStatus]
            status = ttk.Combobox(body, textvariable=self.status, values=values, state="readonly")
            status.grid(row=4, column=1, sticky="w", pady=(8, 0))

    def _build_schedule(self, body: ttk.Frame) -> None:
        """The job's own schedule, in the task editor's chooser: when it fires, all its
        tasks run, in order, as one job run."""
        from tkinter import ttk

        box = ttk.LabelFrame(body, text="Schedule: it runs its tasks in order", padding=(10, 6))
        box.grid(row=5, column=0, columnspan=2, sticky="ew", pady=(10, 0))
        rows = ttk.Frame(box)
        rows.pack(fill="x")
        rows.columnconfigure(1, weight=1)
        self.fields = FormFields(self.top, on_change=lambda key: self._show_preview())
        labels = (JOB_OVERLAP_LABELS, JOB_CATCH_UP_LABELS)
        self.chooser = ScheduleChooser(self.fields, self.app.looks, self.app.preview_schedule, labels)
        self.chooser.build(rows, 0)
        self.fields.set_values(
            {
                **_schedule_to_form(self.original_schedule),
                "overlap": self.job.get("overlap") or Overlap.SKIP.value,
                "catch_up": self.job.get("catch_up") or CatchUp.ONCE.value,
            }
        )
        self.chooser.show_kind_rows()
        self._show_preview()

    def _show_preview(self) -> None:
        self.chooser.update_preview(self.original_schedule, self.job.get("created_at"))

    def _build_buttons(self, body: ttk.Frame) -> None:
        from tkinter import ttk

        self.error = _autowrap(ttk.Label(body, style="Error.TLabel", justify="left"))
        self.error.grid(row=9, column=0, columnspan=2, sticky="ew", pady=(8, 0))
        buttons = ttk.Frame(body)
        buttons.grid(row=10, column=0, columnspan=2, sticky="e", pady=(10, 0))
        ttk.Button(buttons, text="Cancel", command=self.close).pack(side="left", padx=(0, 6))
        self.save_button = ttk.Button(buttons, text="Save", command=self.save, default="active")
        self.save_button.pack(side="left")

    def collect(self) -> JSONDict:
        """The job's fields; Invalid (shown in the dialog) when the schedule is not one."""
        data: JSONDict = {
            "name": self.name.get(),
            "description": self.description.get("1.0", "end-1c"),
            "working_directory": self.folder.get().strip() or None,
            "schedule": self.chooser.schedule(self.original_schedule),
            "overlap": self.fields._value("overlap"),
            "catch_up": self.fields._value("catch_up"),
        }
        if self.job_id:
            data["status"] = self.status.get()
        return data

    def save(self) -> None:
        self.error.configure(text="")
        self.app.save_job(self)

    def set_busy(self, busy: bool) -> None:
        self.save_button.state(["disabled"] if busy else ["!disabled"])

    def show_invalid(self, error: SchedulerError) -> None:
        """Why it was not saved: under the schedule's row at fault, and above the buttons."""
        self.fields.show_field_error(error)
        self.error.configure(text=str(error))

    def close(self) -> None:
        self.top.destroy()
        self.app.job_dialog_closed(self)


# The Settings dialog's rows: setting -> (label, hint). The numbers' hints get their range
# from SETTING_RULES, which their spin boxes keep to as well.
SETTINGS_ROWS = {
    "claude_path": ("Claude CLI", f"Empty: search ${CLAUDE_ENV}, PATH, ~/.local/bin, then ~/.claude/local."),
    "max_concurrent_runs": ("Runs at once", "How many runs may go at the same time ({lo}–{hi:,})."),
    "retention_runs": ("Runs kept", "Finished runs kept per task, with their logs ({lo}–{hi:,})."),
    "start_by_minutes": (
        "Start queued runs within",
        "Minutes a run asked for while no engine runs waits for one before it expires ({lo}–{hi:,}).",
    ),
}
GUI_SPIN_WIDTH = 8


class SettingsDialog:
    """File → Settings…: the user settings in a small modal window. Save hands the values
    to the app, which closes the dialog once the store took them, or shows under the
    field at fault why it did not."""

    def __init__(self, app: App, settings: JSONDict) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.app = app
        self.is_busy = False
        self.top = tk.Toplevel(app.root)
        self.top.title("Settings")
        self.top.transient(app.root)
        self.top.resizable(True, False)
        self.top.protocol("WM_DELETE_WINDOW", self.close)
        self.top.bind("<Escape>", lambda event: self.close())
        self.top.bind("<Return>", lambda event: self.save())
        self.top.bind("<Map>", self._grab)
        shown = {name: "" if settings.get(name) is None else str(settings[name]) for name in SETTINGS_ROWS}
        self.values = {name: tk.StringVar(master=self.top, value=text) for name, text in shown.items()}
        self.fields: dict[str, tk.Misc] = {}
        self.notes: dict[str, tuple[ttk.Label, str]] = {}  # setting -> (note label, its hint)
        body = ttk.Frame(self.top, padding=16)
        body.pack(fill="both", expand=True)
        body.columnconfigure(1, weight=1)
        for row, name in enumerate(SETTINGS_ROWS):
            self._build_row(body, 2 * row, name)
        self._build_theme_row(body, 2 * len(SETTINGS_ROWS))
        self._build_buttons(body, 2 * len(SETTINGS_ROWS) + 2)
        _place_dialog(self.top, app.root)
        self.fields["claude_path"].focus_set()

    def _build_row(self, body: ttk.Frame, row: int, name: str) -> None:
        """A setting's label and field, and the note under it (its hint, or what is wrong)."""
        from tkinter import ttk

        text, hint = SETTINGS_ROWS[name]
        ttk.Label(body, text=text).grid(row=row, column=0, sticky="w", padx=(0, 10), pady=(6, 0))
        field: tk.Misc
        if name in SETTING_RULES:
            _, lo, hi = SETTING_RULES[name]
            hint = hint.format(lo=lo, hi=hi)
            field = ttk.Spinbox(body, from_=lo, to=hi, textvariable=self.values[name], width=GUI_SPIN_WIDTH)
            field.grid(row=row, column=1, sticky="w", pady=(6, 0))
        else:
            holder = _path_field(body, self.values[name], is_file=True, width=GUI_DIALOG_CHARS)
            holder.grid(row=row, column=1, sticky="ew", pady=(6, 0))
            field = holder.winfo_children()[0]  # the entry (then the … button)
        self.fields[name] = field
        note = ttk.Label(body, text=hint, style="Note.TLabel", justify="left")
        note.grid(row=row + 1, column=1, sticky="w")
        self.notes[name] = (note, hint)
        self.values[name].trace_add("write", lambda *_: self._reset_note(name))

    def _build_theme_row(self, body: ttk.Frame, row: int) -> None:
        """The window's theme: a setting of this window, kept with its layout."""
        from tkinter import ttk

        ttk.Label(body, text="Theme").grid(row=row, column=0, sticky="w", padx=(0, 10), pady=(6, 0))
        labels = list(GUI_THEME_CHOICES.values())
        self.theme = ttk.Combobox(body, values=labels, state="readonly", width=max(map(len, labels)) + 2)
        self.theme.set(GUI_THEME_CHOICES.get(str(self.app.theme_choice), labels[0]))
        self.theme.grid(row=row, column=1, sticky="w", pady=(6, 0))
        hint = "Light, dark, or as the system sets it; it applies at once."
        ttk.Label(body, text=hint, style="Note.TLabel").grid(row=row + 1, column=1, sticky="w")

    def theme_choice(self) -> str:
        return next(key for key, label in GUI_THEME_CHOICES.items() if label == self.theme.get())

    def _build_buttons(self, body: ttk.Frame, row: int) -> None:
        from tkinter import ttk

        self.error = _autowrap(ttk.Label(body, style="Error.TLabel", justify="left"))
        self.error.grid(row=row, column=0, columnspan=2, sticky="ew", pady=(8, 0))
        buttons = ttk.Frame(body)
        buttons.grid(row=row + 1, column=0, columnspan=2, sticky="e", pady=(10, 0))
        ttk.Button(buttons, text="Cancel", command=self.close).pack(side="left", padx=(0, 6))
        self.save_button = ttk.Button(buttons, text="Save", command=self.save, default="active")
        self.save_button.pack(side="left")

    def _grab(self, event: tk.Event[tk.Misc]) -> None:
        """Modal once shown (a grab needs a window that is on screen)."""
        import tkinter as tk

        if event.widget is self.top:
            try:
                self.top.grab_set()
            except tk.TclError as error:  # another application holds the grab: still usable, not modal
                logger().debug("settings dialog not modal: %s", error)

    def collect(self) -> JSONDict:
        """The settings in the form; Invalid (naming the field) when a number is not one."""
        data: JSONDict = {}
        for name, var in self.values.items():
            text = var.get().strip()
            data[name] = _form_number(text, name, int) if name in SETTING_RULES else text or None
        return data

    def save(self) -> None:
        if not self.is_busy:
            self.clear_errors()
            self.app.save_settings(self)

    def set_busy(self, busy: bool) -> None:
        self.is_busy = busy
        self.save_button.state(["disabled"] if busy else ["!disabled"])

    def show_invalid(self, error: SchedulerError) -> None:
        """The message under its field, or (a field this dialog has not) above the buttons."""
        if error.field in self.notes:
            self.notes[error.field][0].configure(text=error.message, style="Error.TLabel")
            self.fields[error.field].focus_set()
        else:
            self.error.configure(text=str(error))

    def clear_errors(self) -> None:
        self.error.configure(text="")
        for name in self.notes:
            self._reset_note(name)

    def _reset_note(self, name: str) -> None:
        note, hint = self.notes[name]
        note.configure(text=hint, style="Note.TLabel")

    def show_claude(self, info: JSONDict | None) -> None:
        """Under the claude field: which claude runs now (None: still asking it its version)."""
        note, hint = self.notes["claude_path"]
        hint = hint.split("\n")[0] + "\nIn use: " + (claude_text(info) if info else "looking…")
        self.notes["claude_path"] = note, hint
        if str(note.cget("style")) != "Error.TLabel":
            note.configure(text=hint)

    def close(self) -> None:
        self.top.grab_release()
        self.top.destroy()
        self.app.settings_dialog_closed(self)


# Help → Check setup: level -> (symbol, colour), so a level never shows by colour alone.
GUI_CHECK_LOOKS = {  # the colour is a palette role
    CHECK_OK: ("✓", "success"),
    CHECK_WARNING: ("!", "warning"),
    CHECK_PROBLEM: ("✗", "error"),
}
GUI_SETUP_SIZE = (84, 22)  # characters, lines
GUI_SETUP_INDENT = 22  # pixels: a check's message and fix under its first line


class SetupDialog:
    """Help → Check setup…: every setup check with its level as a symbol, a word and a
    colour, and its fix. The app runs the checks off the Tk thread and hands them to
    `show`; Copy puts them on the clipboard as the table `cli doctor` prints."""

    def __init__(self, app: App) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.app = app
        self.checks: list[JSONDict] = []
        self.is_busy = False
        self.top = tk.Toplevel(app.root)
        self.top.title("Check setup")
        self.top.transient(app.root)
        self.top.protocol("WM_DELETE_WINDOW", self.close)
        self.top.bind("<Escape>", lambda event: self.close())
        body = ttk.Frame(self.top, padding=16)
        body.pack(fill="both", expand=True)
        body.columnconfigure(0, weight=1)
        body.rowconfigure(0, weight=1)
        self.text = _text_box(body, app.looks, width=GUI_SETUP_SIZE[0], height=GUI_SETUP_SIZE[1])
        self.text.grid(row=0, column=0, sticky="nsew")
        self._style_text()
        self.summary = _autowrap(ttk.Label(body, justify="left"))
        self.summary.grid(row=1, column=0, sticky="ew", pady=(8, 0))
        self._build_buttons(body)
        self.show_checking()
        _place_dialog(self.top, app.root)

    def _style_text(self) -> None:
        fonts = self.app.looks.fonts
        palette = self.app.looks.palette
        for level, (_, role) in GUI_CHECK_LOOKS.items():
            self.text.tag_configure(level, foreground=palette[role], font=fonts["bold"])
        self.text.tag_configure("check", font=fonts["bold"])
        self.text.tag_configure("message", lmargin2=GUI_SETUP_INDENT, spacing1=6)
        self.text.tag_configure(
            "fix", foreground=palette["muted"], lmargin1=GUI_SETUP_INDENT, lmargin2=GUI_SETUP_INDENT
        )

    def _build_buttons(self, body: ttk.Frame) -> None:
        from tkinter import ttk

        buttons = ttk.Frame(body)
        buttons.grid(row=2, column=0, sticky="e", pady=(10, 0))
        self.again_button = ttk.Button(buttons, text="Check again", command=self.app.check_setup)
        self.again_button.pack(side="left", padx=(0, 6))
        self.copy_button = ttk.Button(buttons, text="Copy", command=self.copy)
        self.copy_button.pack(side="left", padx=(0, 6))
        self.close_button = ttk.Button(buttons, text="Close", command=self.close, default="active")
        self.close_button.pack(side="left")

    def show_checking(self) -> None:
        self.is_busy = True
        self.summary.configure(text="Checking… (claude is asked its version, the API its health)")
        for button in (self.again_button, self.copy_button):
            button.state(["disabled"])

    def show(self, checks: list[JSONDict]) -> None:
        self.checks = checks
        self.text.configure(state="normal")
        self.text.delete("1.0", "end")
        for check in checks:
            symbol, _ = GUI_CHECK_LOOKS[check["level"]]
            self.text.insert("end", f"{symbol} {check['level']}  ", (check["level"], "message"))
            self.text.insert("end", check["check"], ("check", "message"))
            self.text.insert("end", f": {check['message']}\n", "message")
            if check["fix"]:
                self.text.insert("end", f"Fix: {check['fix']}\n", "fix")
        self.text.configure(state="disabled")
        self._done(_doctor_summary(checks))

    def show_error(self, message: str) -> None:
        self._done(f"The check failed: {message}")

    def _done(self, summary: str) -> None:
        self.is_busy = False
        self.summary.configure(text=summary)
        self.again_button.state(["!disabled"])
        self.copy_button.state(["!disabled" if self.checks else "disabled"])

    def text_to_copy(self) -> str:
        return doctor_text(self.checks)

    def copy(self) -> None:
        self.app.root.clipboard_clear()
        self.app.root.clipboard_append(self.text_to_copy())

    def close(self) -> None:
        self.top.destroy()
        self.app.setup_dialog_closed(self)


class NotificationsDialog:
    """File → Notifications…: which events to be told about, desktop notifications on or
    off, the webhooks (added with `cli notify hook-add`), a test, and the latest
    deliveries with how they went. Talks to the store only through the app."""

    def __init__(self, app: App, config: JSONDict, history: list[JSONDict]) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.app = app
        self.top = tk.Toplevel(app.root)
        self.top.title("Notifications")
        self.top.transient(app.root)
        self.top.protocol("WM_DELETE_WINDOW", self.close)
        self.top.bind("<Escape>", lambda event: self.close())
        body = ttk.Frame(self.top, padding=16)
        body.pack(fill="both", expand=True)
        body.columnconfigure(0, weight=1)
        body.rowconfigure(4, weight=1)
        events = ttk.LabelFrame(body, text="Tell me when", padding=8)
        events.grid(row=0, column=0, sticky="ew")
        self.events = {
            name: tk.BooleanVar(master=self.top, value=config["events"][name]) for name in NOTIFY_EVENTS
        }
        for row, (name, (_, meaning)) in enumerate(NOTIFY_EVENTS.items()):
            ttk.Checkbutton(events, text=meaning, variable=self.events[name]).grid(
                row=row, column=0, sticky="w"
            )
        self.desktop = tk.BooleanVar(master=self.top, value=config["desktop"]["enabled"])
        ttk.Checkbutton(body, text="Desktop notifications", variable=self.desktop).grid(
            row=1, column=0, sticky="w", pady=(8, 0)
        )
        self.webhooks: list[JSONDict] = [dict(hook) for hook in config["webhooks"]]
        self.hook_dialog: WebhookDialog | None = None
        self._build_hooks(body)
        ttk.Label(body, text="Latest deliveries").grid(row=3, column=0, sticky="w")
        self.history = ttk.Treeview(
            body, columns=GUI_DELIVERY_COLUMNS, show="headings", height=GUI_DELIVERY_ROWS
        )
        for name, width in zip(GUI_DELIVERY_COLUMNS, GUI_DELIVERY_WIDTHS, strict=True):
            self.history.heading(name, text=name.capitalize(), anchor="w")
            self.history.column(name, width=width, stretch=name == "error", anchor="w")
        self.history.grid(row=4, column=0, sticky="nsew")
        self.show_history(history)
        buttons = ttk.Frame(body)
        buttons.grid(row=5, column=0, sticky="e", pady=(10, 0))
        self.test_button = ttk.Button(buttons, text="Send test", command=lambda: app.test_notifications(self))
        self.test_button.pack(side="left", padx=(0, 6))
        ttk.Button(buttons, text="Close", command=self.close).pack(side="left", padx=(0, 6))
        self.save_button = ttk.Button(buttons, text="Save", command=lambda: app.save_notifications(self))
        self.save_button.pack(side="left")
        _place_dialog(self.top, app.root)

    def _build_hooks(self, body: ttk.Frame) -> None:
        """The webhooks: a list, and Add / Edit / Remove (saved with the dialog's Save)."""
        from tkinter import ttk

        frame = ttk.LabelFrame(body, text="Webhooks", padding=8)
        frame.grid(row=2, column=0, sticky="ew", pady=(8, 8))
        frame.columnconfigure(0, weight=1)
        self.hook_list = ttk.Treeview(frame, columns=GUI_HOOK_COLUMNS, show="headings", height=GUI_HOOK_ROWS)
        for name, width in zip(GUI_HOOK_COLUMNS, GUI_HOOK_WIDTHS, strict=True):
            self.hook_list.heading(name, text=name.capitalize(), anchor="w")
            self.hook_list.column(name, width=width, stretch=name == "url", anchor="w")
        self.hook_list.grid(row=0, column=0, sticky="ew")
        self.hook_list.bind("<Double-1>", lambda event: self.edit_hook())
        self.hook_list.bind("<Delete>", lambda event: self.remove_hook())
        buttons = ttk.Frame(frame)
        buttons.grid(row=0, column=1, sticky="n", padx=(8, 0))
        self.hook_buttons = {
            key: ttk.Button(buttons, text=text, command=command)
            for key, text, command in (
                ("add", "Add…", self.add_hook),
                ("edit", "Edit…", self.edit_hook),
                ("remove", "Remove", self.remove_hook),
            )
        }
        for button in self.hook_buttons.values():
            button.pack(fill="x", pady=(0, 4))
        self.show_hooks()

    def show_hooks(self) -> None:
        self.hook_list.delete(*self.hook_list.get_children())
        for hook in self.webhooks:
            events = ", ".join(hook["events"]) if hook.get("events") is not None else "all turned on"
            secret = "yes" if hook.get("has_secret") else "no"
            name = hook["name"] if hook.get("enabled", True) else f"{hook['name']} (off)"
            self.hook_list.insert(
                "", "end", iid=hook["name"], values=(name, hook["preset"], hook["url"], events, secret)
            )

    def _chosen_hook(self) -> int | None:
        chosen = self.hook_list.selection()
        names = [hook["name"] for hook in self.webhooks]
        return names.index(chosen[0]) if chosen and chosen[0] in names else None

    def add_hook(self) -> None:
        self._open_hook(None)

    def edit_hook(self) -> None:
        index = self._chosen_hook()
        if index is not None:
            self._open_hook(index)

    def _open_hook(self, index: int | None) -> None:
        if self.hook_dialog is not None:
            self.hook_dialog.close()
        others = [hook["name"] for n, hook in enumerate(self.webhooks) if n != index]
        hook = self.webhooks[index] if index is not None else None
        self.hook_dialog = WebhookDialog(self, hook, others, lambda edited: self._hook_edited(index, edited))

    def _hook_edited(self, index: int | None, hook: JSONDict) -> None:
        if index is None:
            self.webhooks.append(hook)
        else:
            self.webhooks[index] = hook
        self.show_hooks()
        self.hook_list.selection_set(hook["name"])

    def remove_hook(self) -> None:
        index = self._chosen_hook()
        if index is not None:
            del self.webhooks[index]
            self.show_hooks()

    def show_history(self, history: list[JSONDict]) -> None:
        self.history.delete(*self.history.get_children())
        for item in history:
            values = (_gui_time(item["at"]), item["event"], item["channel"], item["status"], item["attempts"])
            self.history.insert("", "end", iid=item["id"], values=(*values, item["error"] or ""))

    def collect(self) -> JSONDict:
        """The settings shown; a webhook keeps its stored secret unless one was typed or
        taken away (see Service.update_notify_settings)."""
        events = {name: var.get() for name, var in self.events.items()}
        hooks = [{key: value for key, value in hook.items() if key != "has_secret"} for hook in self.webhooks]
        return {"events": events, "desktop": {"enabled": self.desktop.get()}, "webhooks": hooks}

    def close(self) -> None:
        if self.hook_dialog is not None:
            self.hook_dialog.close()
        self.top.destroy()
        self.app.notifications_dialog_closed(self)


class WebhookDialog:
    """One webhook, added or changed in File → Notifications: its name (fixed once made:
    its stored secret is kept by name), URL, format, secret, events, timeout, retries and
    backoff. OK checks it with the model's rules and hands it back; nothing is stored
    until the Notifications dialog is saved."""

    def __init__(
        self,
        parent: NotificationsDialog,
        hook: JSONDict | None,
        others: list[str],
        done: Callable[[JSONDict], None],
    ) -> None:
        import tkinter as tk
        from tkinter import ttk

        self.parent, self.hook, self.others, self.done = parent, hook or {}, others, done
        self.top = tk.Toplevel(parent.top)
        self.top.title("Webhook")
        self.top.transient(parent.top)
        self.top.protocol("WM_DELETE_WINDOW", self.close)
        self.top.bind("<Escape>", lambda event: self.close())
        self.top.bind("<Return>", lambda event: self.ok())
        body = ttk.Frame(self.top, padding=16)
        body.pack(fill="both", expand=True)
        body.columnconfigure(1, weight=1)
        self.fields: dict[str, tk.StringVar] = {}
        self.entries: dict[str, ttk.Entry] = {}
        self._build_fields(body)
        self._build_events(body)
        self.error = _autowrap(ttk.Label(body, style="Error.TLabel", justify="left"))
        self.error.grid(row=20, column=0, columnspan=2, sticky="ew", pady=(8, 0))
        buttons = ttk.Frame(body)
        buttons.grid(row=21, column=0, columnspan=2, sticky="e", pady=(10, 0))
        ttk.Button(buttons, text="Cancel", command=self.close).pack(side="left", padx=(0, 6))
        self.ok_button = ttk.Button(buttons, text="OK", command=self.ok)
        self.ok_button.pack(side="left")
        _place_dialog(self.top, parent.top)  # type: ignore[arg-type]  # a Toplevel places like the root

    def _row(self, body: ttk.Frame, row: int, key: str, text: str, value: str, hint: str = "") -> None:
        import tkinter as tk
        from tkinter import ttk

        ttk.Label(body, text=text).grid(row=row, column=0, sticky="w", padx=(0, 10), pady=(6, 0))
        var = self.fields[key] = tk.StringVar(master=self.top, value=value)
        entry = self.entries[key] = ttk.Entry(body, textvariable=var, width=GUI_DIALOG_CHARS)
        entry.grid(row=row, column=1, sticky="ew", pady=(6, 0))
        if hint:
            ttk.Label(body, text=hint, style="Note.TLabel").grid(row=row, column=2, sticky="w", padx=(6, 0))

    def _build_fields(self, body: ttk.Frame) -> None:
        import tkinter as tk
        from tkinter import ttk

        hook = self.hook
        self._row(body, 0, "name", "Name", str(hook.get("name") or ""))
        if hook:
            self.entries["name"].configure(state="readonly")
        self._row(body, 1, "url", "URL", str(hook.get("url") or ""))
        ttk.Label(body, text="Format").grid(row=2, column=0, sticky="w", pady=(6, 0))
        self.fields["preset"] = tk.StringVar(
            master=self.top, value=str(hook.get("preset") or WEBHOOK_PRESETS[0])
        )
        self.preset = ttk.Combobox(
            body, textvariable=self.fields["preset"], values=WEBHOOK_PRESETS, state="readonly", width=10
        )
        self.preset.grid(row=2, column=1, sticky="w", pady=(6, 0))
        had = bool(hook.get("has_secret"))
        self._row(
            body, 3, "secret", "Secret", "", "blank: keep the one it has" if had else "signs each request"
        )
        self.entries["secret"].configure(show="•")
        self.no_secret = tk.BooleanVar(master=self.top, value=False)
        if had:
            ttk.Checkbutton(body, text="No secret (unsigned requests)", variable=self.no_secret).grid(
                row=4, column=1, sticky="w"
            )
        for row, (key, text, hint) in enumerate(GUI_HOOK_NUMBERS, start=5):
            default = {"timeout_seconds": WEBHOOK_TIMEOUT_DEFAULT, "retries": WEBHOOK_RETRIES_DEFAULT}
            value = hook.get(key, default.get(key, WEBHOOK_BACKOFF_DEFAULT))
            self._row(body, row, key, text, f"{value:g}", hint)
        self.enabled = tk.BooleanVar(master=self.top, value=bool(hook.get("enabled", True)))
        ttk.Checkbutton(body, text="On", variable=self.enabled).grid(row=8, column=1, sticky="w", pady=(6, 0))

    def _build_events(self, body: ttk.Frame) -> None:
        import tkinter as tk
        from tkinter import ttk

        frame = ttk.LabelFrame(body, text="Events it is told (all ticked: every event turned on)", padding=6)
        frame.grid(row=9, column=0, columnspan=3, sticky="ew", pady=(8, 0))
        chosen = self.hook.get("events")
        self.events = {
            name: tk.BooleanVar(master=self.top, value=chosen is None or name in chosen)
            for name in NOTIFY_EVENTS
        }
        for row, name in enumerate(NOTIFY_EVENTS):
            ttk.Checkbutton(frame, text=name.replace("_", " "), variable=self.events[name]).grid(
                row=row // 2, column=row % 2, sticky="w", padx=(0, 12)
            )

    def collect(self) -> JSONDict:
        """The webhook as typed, checked by the model's rules; Invalid names the field."""
        name = self.fields["name"].get().strip()
        if name in self.others:
            raise Invalid(f"{name!r} names another webhook too", "name")
        events = [name for name, var in self.events.items() if var.get()]
        hook: JSONDict = {
            "name": name,
            "url": self.fields["url"].get().strip(),
            "preset": self.fields["preset"].get(),
            "events": None if len(events) == len(NOTIFY_EVENTS) else events,
            "enabled": self.enabled.get(),
        }
        for key, _, _ in GUI_HOOK_NUMBERS:
            hook[key] = _form_number(self.fields[key].get().strip(), key, int if key == "retries" else float)
        # Without a "secret" the hook keeps the one stored under its name.
        typed, has_secret = self.fields["secret"].get(), bool(self.hook.get("has_secret"))
        if self.no_secret.get() or typed:
            hook["secret"], has_secret = typed if typed and not self.no_secret.get() else None, bool(typed)
        elif "secret" in self.hook:  # typed earlier, not saved yet
            hook["secret"] = self.hook["secret"]
        checked = _read_webhook({**hook, "secret": hook.get("secret")}, "webhook")
        kept = {key: value for key, value in checked.items() if key != "secret" or "secret" in hook}
        return {**kept, "has_secret": has_secret and not self.no_secret.get()}

    def ok(self) -> None:
        try:
            hook = self.collect()
        except Invalid as error:
            self.error.configure(text=str(error).removeprefix("webhook."))
            return
        self.close()
        self.done(hook)

    def close(self) -> None:
        self.top.destroy()
        if self.parent.hook_dialog is self:
            self.parent.hook_dialog = None


# Texts of the status bar and the confirmations (pure).


def _engine_status_text(engine: JSONDict) -> tuple[str, str]:
    """The engine part of the status bar, and its level ("" or "warning")."""
    if not engine:
        return "Engine: …", ""
    if engine.get("here"):
        text, level = "Engine: running in this window", ""
    elif engine.get("running") and (engine.get("owner") or {}).get("service"):
        text, level = (
            f"Engine: in the login service (pid {engine['owner'].get('pid')}); this window views",
            "",
        )
    elif engine.get("running"):
        text, level = f"Engine: in another process (pid {(engine.get('owner') or {}).get('pid')})", ""
    else:
        text, level = "Engine: not running (nothing fires)", "warning"
    if engine.get("paused"):
        return f"{text} · paused: no new runs start", "warning"
    hold = engine.get("hold")
    if hold:
        return f"{text} · Holding until {_gui_time(hold['until'])} — {hold_kind_label(hold)}", "warning"
    return text, level


def _next_due_text(tasks: Iterable[JSONDict]) -> str:
    due = [task for task in tasks if task.get("enabled", True) and task.get("next_run_at")]
    if not due:
        return "Next: nothing scheduled"
    task = min(due, key=lambda item: parse_time(item["next_run_at"], "next_run_at"))
    return f"Next: {task['name']} · {_gui_time(task['next_run_at'], zone=task_zone(task))}"


def _counts_text(jobs: int, tasks: Iterable[JSONDict]) -> str:
    statuses = [task.get("last_run_status") for task in tasks]
    parts = [_plural(jobs, "job"), _plural(len(statuses), "task")]
    parts += [f"{statuses.count(status)} {status}" for status in ("running", "queued") if status in statuses]
    return " · ".join(parts)


def _delete_job_message(preview: JSONDict, task_names: list[str]) -> str:
    counts = preview["counts"]
    lines = [f"Delete the job “{preview['job']['name']}”?", ""]
    if counts["tasks"]:
        lines.append(
            f"This also deletes {_plural(counts['tasks'], 'task')}, {_plural(counts['runs'], 'run')} "
            f"and {_plural(counts['logs'], 'log file')}:"
        )
        lines += [f"  • {name}" for name in task_names[:GUI_NAMES_LISTED]]
        if len(task_names) > GUI_NAMES_LISTED:
            lines.append(f"  … and {len(task_names) - GUI_NAMES_LISTED} more")
    else:
        lines.append("It has no tasks.")
    if preview.get("active_runs"):
        lines += ["", f"Its {_plural(preview['active_runs'], 'active run')} will be stopped first."]
    return "\n".join([*lines, "", "This cannot be undone."])


def _open_in_desktop(path: Path) -> None:
    """Open a file or folder with the desktop's default application."""
    if sys.platform == "win32":
        os.startfile(path)
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if not shutil.which(opener):
        raise SchedulerError(f"cannot open {path}: `{opener}` is not installed")
    import subprocess

    proc = subprocess.Popen(
        [opener, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    threading.Thread(target=proc.wait, name="opener", daemon=True).start()  # reap it


def _bind_select_all(root: tk.Tk) -> None:
    """Ctrl+A selects all the text of any entry, chooser or text box (Tk's default moves to
    the start of the line, as in Emacs)."""

    def in_entry(event: tk.Event[tk.Misc]) -> str:
        event.widget.tk.call(event.widget, "selection", "range", 0, "end")
        event.widget.tk.call(event.widget, "icursor", "end")
        return "break"

    def in_text(event: tk.Event[tk.Misc]) -> str:
        event.widget.tk.call(event.widget, "tag", "add", "sel", "1.0", "end-1c")
        event.widget.tk.call(event.widget, "mark", "set", "insert", "end-1c")
        return "break"

    for widget_class in ("TEntry", "TCombobox", "TSpinbox", "Entry"):
        root.bind_class(widget_class, "<Control-a>", in_entry)
    root.bind_class("Text", "<Control-a>", in_text)


def _no_wake() -> None:
    """The Service's wake-up when this window runs no engine."""


def clamp_geometry(geometry: str, screen: tuple[int, int], minimum: tuple[int, int]) -> str:
    """A "WxH+X+Y" geometry (or "WxH") moved and shrunk as little as needed to lie on a
    screen of `screen` pixels, and no smaller than `minimum` (itself no bigger than the
    screen): a layout saved on a bigger screen opens whole on a smaller one."""
    width, height, *place = (int(part) for part in re.findall(r"-?\d+", geometry))
    fit = [
        max(min(size, limit), low) for size, limit, low in zip((width, height), screen, minimum, strict=True)
    ]
    if not place:
        return f"{fit[0]}x{fit[1]}"
    corner = [
        max(min(offset, limit - size), 0) for offset, limit, size in zip(place, screen, fit, strict=True)
    ]
    return f"{fit[0]}x{fit[1]}+{corner[0]}+{corner[1]}"


def _valid_shares(value: JSON, count: int) -> bool:
    if not (isinstance(value, list) and len(value) == count):
        return False
    return all(isinstance(x, float | int) and 0 < x < 1 for x in value) and value == sorted(value)


class PaneLayout:
    """Where the window and its five panes sit: the window's size and place (kept on the
    screen), and Jobs | Tasks over Runs | Task editor over Log, three
    columns and two stacks split by sashes people can drag. Classic Tk panes, because they
    keep each pane's minimum size (in the body font's units, so it holds at any Tk scaling)
    while a sash is dragged or the window shrinks. Sashes are remembered as fractions, so a
    layout saved on one screen suits another."""

    def __init__(self, parent: tk.Misc, looks: Looks) -> None:
        import tkinter as tk

        self.looks = looks
        self.columns = tk.PanedWindow(parent, orient="horizontal")
        self.middle = tk.PanedWindow(self.columns, orient="vertical")
        self.right = tk.PanedWindow(self.columns, orient="vertical")
        self.panes = {"columns": self.columns, "middle": self.middle, "right": self.right}
        self._shares: dict[str, tuple[float, ...]] = dict(GUI_SASH_SHARES)
        self.colour()

    def colour(self) -> None:
        for pane in self.panes.values():
            pane.configure(
                background=self.looks.palette["border"],
                sashwidth=GUI_SASH_WIDTH,
                borderwidth=0,
                opaqueresize=True,
                sashrelief="flat",
            )

    def minimum(self, name: str) -> tuple[int, int]:
        """The least width and height of the pane `name` (a GUI_PANE_MIN_CHARS key), in pixels."""
        font = self.looks.fonts["body"]
        digit, line = font.measure("0"), int(font.metrics("linespace"))
        return GUI_PANE_MIN_CHARS[name] * digit, GUI_PANE_MIN_LINES[name] * line

    def fill(self, frames: Mapping[str, tk.Widget]) -> None:
        """Put the panes' frames (by GUI_PANE_MIN_CHARS key) in their places."""
        sizes = {name: self.minimum(name) for name in frames}
        self.columns.add(frames["jobs"], minsize=sizes["jobs"][0], stretch="never")
        for stack, top, bottom in ((self.middle, "tasks", "runs"), (self.right, "editor", "log")):
            width = max(sizes[top][0], sizes[bottom][0])
            self.columns.add(stack, minsize=width, stretch="always")
            stack.add(frames[top], minsize=sizes[top][1], stretch="always")
            stack.add(frames[bottom], minsize=sizes[bottom][1], stretch="always")
        for name, pane in self.panes.items():
            pane.bind("<Configure>", functools.partial(self._on_resized, name), add=True)

    def _on_resized(self, name: str, event: tk.Event[tk.PanedWindow]) -> None:
        self._place(name)

    def least_size(self) -> tuple[int, int]:
        """The window's content at its smallest: every column and stack at its minimum."""
        width = sum(max(self.minimum(name)[0] for name in names) for names in GUI_COLUMN_PANES)
        height = max(sum(self.minimum(name)[1] for name in names) for names in GUI_COLUMN_PANES)
        return width + GUI_SASH_WIDTH * (len(GUI_COLUMN_PANES) - 1), height + GUI_SASH_WIDTH

    def place_window(self, root: tk.Tk, geometry: JSON) -> None:
        """Give the window its saved size and place, or the default size, either clamped to
        the screen, and a minimum size that leaves every pane its own (or the screen)."""
        screen = self.usable_screen(root)
        least = self.least_size()
        low = [min(max(low, need), size) for low, need, size in zip(GUI_MIN_SIZE, least, screen, strict=True)]
        root.minsize(*low)
        if not (isinstance(geometry, str) and re.fullmatch(GUI_GEOMETRY, geometry)):
            size = (
                min(want, have - GUI_SCREEN_MARGIN)
                for want, have in zip(GUI_DEFAULT_SIZE, screen, strict=True)
            )
            geometry = "x".join(str(part) for part in size)
        root.geometry(clamp_geometry(geometry, screen, (low[0], low[1])))

    def usable_screen(self, root: tk.Tk) -> tuple[int, int]:
        """The screen's size less what the window needs around its geometry: on X11 the
        menu bar sits above the geometry's height, not in it."""
        return root.winfo_screenwidth(), root.winfo_screenheight() - self._menu_bar_height(root)

    def _menu_bar_height(self, root: tk.Tk) -> int:
        """On X11 the menu bar is a clone of the menu (".#…"), sized once idle tasks ran."""
        if not self.looks.is_x11:
            return 0
        root.update_idletasks()
        call = root.tk.call
        names = root.tk.splitlist(call("winfo", "children", "."))
        return max(
            (int(call("winfo", "reqheight", name)) for name in names if name.startswith(".#")), default=0
        )

    def restore(self, saved: JSON) -> None:
        """Sashes from a saved layout (fractions); what is missing or damaged: the defaults."""
        saved = saved if isinstance(saved, dict) else {}
        for name, default in GUI_SASH_SHARES.items():
            value = saved.get(name)
            self._shares[name] = tuple(value) if _valid_shares(value, len(default)) else default
        for name, pane in self.panes.items():
            pane.bind("<ButtonRelease-1>", functools.partial(self._on_dragged, name), add=True)

    def _length(self, name: str) -> int:
        pane = self.panes[name]
        return pane.winfo_width() if name == "columns" else pane.winfo_height()

    def _place(self, name: str) -> None:
        """Put a paned window's sashes at their fractions of its length (on every resize:
        the panes keep their proportions; Tk keeps their minimum sizes)."""
        length = self._length(name)
        if length <= 1:
            return
        for _ in range(2):  # a sash cannot pass its neighbour: a second pass settles them
            for index, share in enumerate(self._shares[name]):
                position = round(share * length)
                point = (position, 0) if name == "columns" else (0, position)
                self.panes[name].sash_place(index, *point)

    def _on_dragged(self, name: str, event: tk.Event[tk.PanedWindow]) -> None:
        self._shares[name] = self._current(name)

    def _current(self, name: str) -> tuple[float, ...]:
        length, axis = max(self._length(name), 1), 0 if name == "columns" else 1
        count = len(GUI_SASH_SHARES[name])
        return tuple(round(self.panes[name].sash_coord(index)[axis] / length, 4) for index in range(count))

    def save(self) -> JSONDict:
        """Where the sashes are, as fractions (for `restore`)."""
        return {name: list(self._current(name)) for name in self.panes}


GUI_BANNER_PROBLEMS = 3  # problems the banner lists before "and N more"


class SetupBanner:
    """A band above the panes while the setup check finds problems (claude missing, a file
    it cannot read...): each with its fix, and buttons to check again or see every check.
    The app runs the check off the Tk thread and hands the results to `show`."""

    def __init__(
        self, parent: tk.Misc, looks: Looks, check_again: Callable[[], None], details: Callable[[], None]
    ) -> None:
        from tkinter import ttk

        self.frame = ttk.Frame(parent, style="Banner.TFrame", padding=(10, 6))
        self.frame.columnconfigure(0, weight=1)
        self.text = _autowrap(ttk.Label(self.frame, style="Banner.TLabel", justify="left"))
        self.text.grid(row=0, column=0, rowspan=2, sticky="ew")
        buttons = ttk.Frame(self.frame, style="Banner.TFrame")
        buttons.grid(row=0, column=1, sticky="ne", padx=(10, 0))
        for label, command in (("Check again", check_again), ("Details…", details), ("✕", self.hide)):
            ttk.Button(buttons, text=label, style="Tool.TButton", command=command).pack(
                side="left", padx=(GUI_TOOL_GAP, 0)
            )
        self.problems: list[JSONDict] = []

    @property
    def is_shown(self) -> bool:
        return bool(self.frame.winfo_manager())

    def show(self, checks: list[JSONDict], before: tk.Misc) -> None:
        """Show the problems among `checks` (hidden when there are none)."""
        self.problems = [check for check in checks if check["level"] == CHECK_PROBLEM]
        if not self.problems:
            self.hide()
            return
        lines = [
            f"✗ {check['check']}: {check['message']}. {check.get('fix') or ''}".rstrip()
            for check in self.problems
        ]
        more = len(lines) - GUI_BANNER_PROBLEMS
        shown = lines[:GUI_BANNER_PROBLEMS] + ([f"and {more} more (Details…)"] if more > 0 else [])
        self.text.configure(text="\n".join(shown))
        if not self.is_shown:
            self.frame.pack(fill="x", padx=4, pady=(4, 0), before=before)

    def hide(self) -> None:
        self.frame.pack_forget()


# Menus and keys: (label, accelerator, App method); None separates groups.
GUI_MENUS: dict[str, tuple[tuple[str, str, str] | None, ...]] = {
    "File": (
        ("New task", "Ctrl+N", "new_task"),
        ("New job", "Ctrl+Shift+N", "new_job"),
        ("Save task", "Ctrl+S", "save_task"),
        None,
        ("Export all…", "", "export_all"),
        ("Export job…", "", "export_job"),
        ("Import…", "", "import_bundle"),
        None,
        ("Open data folder", "", "open_data_folder"),
        ("Settings…", "", "open_settings"),
        ("Notifications…", "", "open_notifications"),
        None,
        ("Quit", "Ctrl+Q", "request_close"),
    ),
    "Edit": (
        ("Edit job…", "", "edit_job"),
        ("Duplicate task", "", "duplicate_task"),
        ("Duplicate job", "", "duplicate_job"),
        ("Delete", "Del", "delete_focused"),
        None,
        ("Find tasks", "Ctrl+F", "focus_filter"),
        ("Refresh", "Ctrl+R", "refresh_now"),
    ),
    "Run": (
        ("Run now", "F5", "run_selected"),
        ("Stop run", "", "stop_run"),
        None,
        ("Run job", "", "run_job"),
        ("Stop job", "", "stop_job"),
    ),
    "Help": (
        ("Check setup…", "", "check_setup"),
        ("Keyboard shortcuts", "", "show_shortcuts"),
        ("About", "", "show_about"),
    ),
}
GUI_RESUME_LABEL = "Resume runs now (lift the pause or usage-limit hold)"
GUI_ENGINE_ACTIONS = {False: "Pause", True: "Resume"}  # the status bar's button, by whether runs are held
GUI_KEYS = (
    ("<Control-n>", "new_task"),
    ("<Control-N>", "new_job"),  # Ctrl+Shift+N
    ("<Control-s>", "save_task"),
    ("<F5>", "run_selected"),
    ("<Control-f>", "focus_filter"),
    ("<Control-r>", "refresh_now"),
    ("<Control-q>", "request_close"),
)
GUI_SHORTCUTS = (
    ("Ctrl+N", "new task (in the selected job)"),
    ("Ctrl+Shift+N", "new job"),
    ("Ctrl+S", "save the task in the editor"),
    ("F5", "run the selected task (in the Jobs tree: the job)"),
    ("Delete", "delete what is selected in the focused list"),
    ("Ctrl+F", "filter the tasks (in the log: find in the log)"),
    ("Ctrl+R", "read everything again"),
    ("Ctrl+Q", "quit"),
    ("Ctrl+A", "select all the text of a field or the log"),
)
GUI_COLUMN_PANES = (("jobs",), ("tasks", "runs"), ("editor", "log"))  # each column's panes, top down
GUI_SETTLE_POLL_SECONDS = 0.005


def job_run_text(job_name: str, view: JSONDict) -> tuple[str, str]:
    """A job run (job_run_view) in one line, and its level ("", "warning" or "error")."""
    done, failed, total = view["done"], view["failed"], len(view["steps"])
    not_run = f"; not run: {', '.join(view['not_run'])}" if view["not_run"] else ""
    status = view["status"]
    if status == "running":
        step = f"{view['current']} ({view['position']} of {total})" if view["current"] else "starting"
        return f"Running “{job_name}”: {step} · {done} done · {failed} failed", ""
    if status == "failed":
        return f"“{job_name}” stopped: “{view['failed_task']}” failed{not_run}", "error"
    if status == "stopped":
        return f"“{job_name}” stopped by request after {done} of {total} done{not_run}", "warning"
    return f"“{job_name}” ran: {done} of {total} done · {failed} failed", "warning" if failed else ""


class JobRunFeedback:
    """Says what runs of whole jobs do: the chosen job's latest one under the Jobs tree;
    in the status bar, those running and one that stopped at a failure while this window
    watched it run."""

    def __init__(self, jobs_pane: JobsPane, status_bar: StatusBar) -> None:
        self.jobs_pane, self.status_bar = jobs_pane, status_bar
        self.views: dict[str, JSONDict] = {}  # job id -> its latest job run
        self._watched: set[str] = set()  # job runs seen running here
        self.running_job_id: str | None = None  # the job whose running job run the status bar shows

    def update(self, views: dict[str, JSONDict], jobs: Mapping[str, JSONDict], scope: Scope) -> None:
        self.views = views
        self._watched |= {view["job_run_id"] for view in views.values() if view["status"] == "running"}
        self.show(jobs, scope)

    def show(self, jobs: Mapping[str, JSONDict], scope: Scope) -> None:
        view = self.views.get(str(scope.ident)) if scope.kind == SCOPE_JOB else None
        name = str(jobs.get(str(scope.ident), {}).get("name", ""))
        self.jobs_pane.show_job_run(*(job_run_text(name, view) if view else ("", "")))
        watched = [
            (job_id, view)
            for job_id, view in self.views.items()
            if job_id in jobs and view["job_run_id"] in self._watched
        ]
        running = [item for item in watched if item[1]["status"] == "running"]
        shown = running or [item for item in watched if item[1]["status"] == "failed"]
        self.running_job_id = running[0][0] if running else None
        self.status_bar.show_job_stop(bool(running))
        if not shown:
            self.status_bar.show("job", "")
            return
        job_id, view = shown[0]
        text, level = job_run_text(str(jobs[job_id]["name"]), view)
        more = f" (+{len(running) - 1} more)" if len(running) > 1 else ""
        self.status_bar.show("job", text + more, level)


@dataclass
class LogTail:
    """How far the Logs pane has read the shown run's log."""

    generation: int = 0  # bumped when another run is shown: answers to older reads are dropped
    offset: int = 0
    busy: bool = False  # one read at a time, or text would arrive twice
    again: bool = False  # a read was asked for while one was busy


class App:
    """The window. Owns the Tk root, the five panes, the menu and status bars, the inbox
    that other threads post to (drained by an `after` loop), the worker thread, the engine
    and the API thread, and the one error handler.

    Panes report user actions here; the app calls the Service on the worker thread and
    hands the results to the panes on the Tk thread. `run()` is the main loop; without it
    (tests, benchmarks) `App(store, api_port=None, start_engine=False)` then `settle()`
    returns once jobs, tasks and runs are shown, and `choose_in_jobs(Scope(SCOPE_JOB, id))`
    is what clicking a job does. `close()` ends everything it started.
    """

    def __init__(
        self,
        store: Store,
        *,
        root: tk.Tk | None = None,
        api_port: int | None = None,
        api_host: str = DEFAULT_HOST,
        start_engine: bool = True,
    ) -> None:
        import queue
        import tkinter as tk

        self.store = store
        self.root = root or tk.Tk(className=GUI_CLASS_NAME)
        self.root.report_callback_exception = self._on_tk_error
        self.inbox: queue.SimpleQueue[Posted] = queue.SimpleQueue()
        self.notifier = Notifier(store)
        self.engine = Engine(store, on_event=self._post_engine_event) if start_engine else None
        if self.engine:
            self.notifier.start()
        self.service = Service(store, wake=self.engine.wake if self.engine else _no_wake)
        self.reader = StoreReader(self.service)
        self.jobs: dict[str, JSONDict] = {}
        self.tasks: dict[str, JSONDict] = {}
        self.runs: list[JSONDict] = []
        # The fires of the Runs list's scope's jobs that started no step (Service.job_fires).
        self.job_fires: tuple[Scope, list[JSONDict]] = (ALL_TASKS, [])
        self.engine_info: JSONDict = {}
        self.scope = ALL_TASKS  # what the Tasks pane lists
        self.choice = ALL_TASKS  # the Jobs tree's selection (a task row too)
        self.task_id: str | None = None  # selected in the Tasks pane, shown in the editor
        self.run_id: str | None = None  # its log is in the Logs pane
        self.follow_newest = True  # a newer run at the top of the list takes the Logs pane
        self.job_dialog: JobDialog | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.setup_dialog: SetupDialog | None = None
        self.run_details: RunDetailsDialog | None = None
        self.notifications_dialog: NotificationsDialog | None = None
        self.shortcuts: tk.Toplevel | None = None  # Help → Keyboard shortcuts, once opened
        self.storage_error: str | None = None
        self.loaded = False
        self._closed = False
        self._quit_asked = False
        self._waiting: dict[int, tuple[Callable[[object], None], Callable[[Exception], None]]] = {}
        self._last_ticket = ENGINE_TICKET
        self._timers: dict[str, str] = {}
        self._refreshing = False
        self._refresh_again: bool | None = None  # a refresh asked for meanwhile (True: forced)
        self._choose_after_refresh: Scope | None = None
        self._log = LogTail()
        self.api: ApiServer | None = None
        self.api_error: str | None = None
        self.theme_choice = self._saved_layout().get("theme", "system")
        self.looks = Looks(self.root, chosen_theme(self.theme_choice))
        self.paused = tk.BooleanVar(master=self.root, value=False)
        self.run_menu: tk.Menu | None = None
        self._build()
        self._restore_layout()
        self.worker = Worker(self.inbox)
        # Drawing the icon takes a while in Python: off the Tk thread, after the window shows.
        self.submit_apart(lambda: [icon_png(size) for size in WINDOW_ICON_SIZES], self._set_icon)
        self.api, self.api_error = self._start_api(api_host, api_port)
        self._api_wanted = (api_host, api_port)  # tried again when this window takes the engine over
        self.api_note = ""  # why the API runs here now, when that is news
        self._show_status()
        self.root.protocol("WM_DELETE_WINDOW", self.request_close)
        self.later(GUI_POLL_MS, self._drain, "drain")
        self.later(GUI_REFRESH_MS, self._tick, "tick")
        self.refresh(force=True)
        self._engine_starting = False
        self._take_engine()
        self.check_setup_quietly()

    # Building --------------------------------------------------------------------

    def _build(self) -> None:
        from tkinter import ttk

        self.root.title(GUI_TITLE)
        self.icons: list[tk.PhotoImage] = []
        outer = ttk.Frame(self.root)
        outer.pack(fill="both", expand=True)
        # Packed first, at the bottom: when the window is short, the panes give way, not it.
        self.status_bar = StatusBar(outer, self.pause_or_resume, self.stop_running_job)
        self.status_bar.frame.pack(side="bottom", fill="x")
        ttk.Separator(outer).pack(side="bottom", fill="x")
        self.banner = SetupBanner(outer, self.looks, self.check_setup_quietly, self.check_setup)
        self.layout = PaneLayout(outer, self.looks)
        self.layout.columns.pack(fill="both", expand=True, padx=4, pady=(4, 0))
        self.jobs_pane = JobsPane(self, self.layout.columns, self.looks)
        self.tasks_pane = TasksPane(self, self.layout.middle, self.looks)
        self.runs_pane = RunsPane(self, self.layout.middle, self.looks)
        self.editor = EditorPane(self, self.layout.right, self.looks)
        self.logs_pane = LogsPane(self, self.layout.right, self.looks)
        self.job_run_feedback = JobRunFeedback(self.jobs_pane, self.status_bar)
        panes = (self.jobs_pane, self.tasks_pane, self.runs_pane, self.editor, self.logs_pane)
        self.layout.fill(dict(zip(GUI_PANE_MIN_CHARS, (pane.frame for pane in panes), strict=True)))
        self._build_menu()
        for sequence, name in GUI_KEYS:
            self.root.bind(sequence, self._key_handler(getattr(self, name)))
        _bind_select_all(self.root)
        self._update_actions()
        self._show_status()

    def _set_icon(self, pngs: list[bytes]) -> None:
        """The window's own icon (icon_png at WINDOW_ICON_SIZES) in the title bar and the
        task switcher."""
        import base64
        import tkinter as tk

        try:
            self.icons = [
                tk.PhotoImage(master=self.root, data=base64.b64encode(png).decode()) for png in pngs
            ]
            self.root.iconphoto(True, *self.icons)
        except tk.TclError as error:  # a Tk older than 8.6 reads no PNG: the window works without
            logger().info("the window's icon is not set: %s", error)

    def _build_menu(self) -> None:
        import tkinter as tk

        bar = tk.Menu(self.root, tearoff=False)
        for title, items in GUI_MENUS.items():
            menu = tk.Menu(bar, tearoff=False)
            for item in items:
                if item is None:
                    menu.add_separator()
                    continue
                label, accelerator, name = item
                menu.add_command(label=label, accelerator=accelerator, command=getattr(self, name))
            if title == "Run":
                menu.add_separator()
                menu.add_checkbutton(label="Pause all runs", variable=self.paused, command=self.toggle_pause)
                menu.add_command(label=GUI_RESUME_LABEL, command=self.resume_runs, state="disabled")
                self.run_menu = menu
            bar.add_cascade(label=title, menu=menu)
        self.root.configure(menu=bar)

    @staticmethod
    def _key_handler(action: Callable[[], None]) -> Callable[[tk.Event[tk.Misc]], str]:
        def handler(event: tk.Event[tk.Misc]) -> str:
            action()
            return "break"

        return handler

    def _start_api(self, host: str, port: int | None) -> tuple[ApiServer | None, str | None]:
        if port is None:
            return None, None
        try:
            api = ApiServer(self.service, host, port)
        except SchedulerError as error:  # the window works without it; the status bar says why
            logger().warning("%s", error)
            return None, error.message
        api.start()
        return api, None

    def _start_engine(self, engine: Engine) -> bool:
        """Become the data home's engine (worker thread: recovery reads every run)."""
        api = {"api": self.api.address} if self.api else {}
        return engine.start(about={**api, "process": "window"})

    # Layout (remembered in the settings) ---------------------------------------------

    def _restore_layout(self) -> None:
        """The saved size and place (clamped to this screen) and sashes, or the defaults."""
        saved = self._saved_layout()
        self.layout.place_window(self.root, saved.get("geometry"))
        self.layout.restore(saved.get("panes"))

    def _saved_layout(self) -> JSONDict:
        try:
            saved = self.store.settings().get(GUI_SETTINGS_KEY)
        except SchedulerError as error:
            logger().warning("window layout not restored: %s", error)
            return {}
        return saved if isinstance(saved, dict) else {}

    def _save_layout(self) -> None:
        layout = {"geometry": self.root.geometry(), "panes": self.layout.save(), "theme": self.theme_choice}
        self.store.update_settings({GUI_SETTINGS_KEY: layout})

    # Threads, timers and errors --------------------------------------------------------

    def later(self, delay_ms: int, callback: Callable[[], None], key: str) -> None:
        """Run `callback` on the Tk thread after `delay_ms`; one timer per key (a new one
        replaces the old). Timers die with the window."""
        if self._closed:
            return
        previous = self._timers.pop(key, None)
        if previous:
            self.root.after_cancel(previous)

        def fire() -> None:
            self._timers.pop(key, None)
            callback()

        self._timers[key] = self.root.after(delay_ms, fire)

    def submit(
        self,
        call: Callable[[], T],
        done: Callable[[T], None] | None = None,
        *,
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        """Run `call` on the worker thread; `done` (or `failed`, else the error handler)
        then runs on the Tk thread."""
        if not self._closed:
            self.worker.submit(self._expect(done, failed), call)

    def submit_apart(
        self,
        call: Callable[[], T],
        done: Callable[[T], None] | None = None,
        *,
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        """Like `submit`, on a thread of its own: for a slow call (a subprocess, the network)
        that must not hold up the worker's reads. Its answer comes through the inbox too."""
        if self._closed:
            return
        ticket = self._expect(done, failed)
        answer = functools.partial(Worker._answer, ticket, call)
        threading.Thread(target=lambda: self.inbox.put(answer()), name="gui-slow-call", daemon=True).start()

    def _expect(self, done: Callable[[T], None] | None, failed: Callable[[Exception], None] | None) -> int:
        """A new ticket, whose answer goes to `done` (or `failed`, else the error handler)."""

        def finish(result: object) -> None:
            if done is not None:
                done(cast(T, result))  # the answer to the call, which returns a T

        self._last_ticket += 1
        self._waiting[self._last_ticket] = (finish, failed or self.report)
        return self._last_ticket

    def act(self, call: Callable[[], T], done: Callable[[T], None] | None = None) -> None:
        """A change to the store: run it on the worker, then read everything again."""

        def finish(result: T) -> None:
            if done is not None:
                done(result)
            self.refresh(force=True)

        self.submit(call, finish)

    def settle(self, timeout: float = 10.0) -> bool:
        """Process events until every request made so far is answered (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.root.update()
            if not self._waiting and self.inbox.empty():
                return True
            time.sleep(GUI_SETTLE_POLL_SECONDS)
        return False

    def _drain(self) -> None:
        import queue

        if self._quit_asked:
            self.close()
            return
        self.later(GUI_POLL_MS, self._drain, "drain")
        deadline = time.monotonic() + GUI_DRAIN_BUDGET_SECONDS
        while time.monotonic() < deadline:
            try:
                posted = self.inbox.get_nowait()
            except queue.Empty:
                return
            try:
                self._deliver(posted)
            except Exception as error:  # one bad answer must not stop the others; report logs it
                self.report(error)

    def _deliver(self, posted: Posted) -> None:
        if posted.ticket == ENGINE_TICKET:
            self._on_engine_event(cast(JSONDict, posted.result))
            return
        done, failed = self._waiting.pop(posted.ticket)
        if posted.error is not None:
            failed(posted.error)
        else:
            done(posted.result)

    def _tick(self) -> None:
        self.later(GUI_REFRESH_MS, self._tick, "tick")
        self.refresh()
        if any(run["status"] == RunStatus.RUNNING for run in self.runs):
            self._show_runs()  # the time column of running runs moves on

    def _post_engine_event(self, event: JSONDict) -> None:
        """Called on engine threads: only queues the event for the Tk thread (and the notifier)."""
        self.inbox.put(Posted(ENGINE_TICKET, event))
        self.notifier.on_event(event)

    def _on_engine_event(self, event: JSONDict) -> None:
        self.later(GUI_SOON_MS, self.refresh_now, "soon")
        if (event.get("run") or {}).get("id") == self.run_id:
            self.later(0, self._poll_log, "log")

    def report(self, error: BaseException) -> None:
        """The one error handler: the error goes to the log and to a message box."""
        if isinstance(error, SchedulerError):
            logger().warning("%s", error)
            self.alert("Claude Code Scheduler", str(error))
        else:
            logger().error("unexpected error in the window", exc_info=error)
            self.alert("Unexpected error", f"{type(error).__name__}: {error}\n\nThe details are in the log.")

    def _on_tk_error(
        self, kind: type[BaseException], error: BaseException, trace: TracebackType | None
    ) -> None:
        self.report(error)

    def preview_schedule(self, schedule: JSONDict) -> JSONDict:
        """Fire times and a description of an unsaved schedule: pure computation without
        the store, so it runs on the Tk thread while someone types."""
        return self.service.preview(schedule, count=GUI_PREVIEW_COUNT)

    # Asking people (replaced in tests) ---------------------------------------------------

    def alert(self, title: str, message: str) -> None:
        from tkinter import messagebox

        if not self._closed:
            messagebox.showerror(title, message, parent=self.root)

    def inform(self, title: str, message: str) -> None:
        from tkinter import messagebox

        messagebox.showinfo(title, message, parent=self.root)

    def confirm(self, title: str, message: str) -> bool:
        from tkinter import messagebox

        return bool(messagebox.askyesno(title, message, parent=self.root, icon="warning", default="no"))

    def ask_unsaved(self, name: str) -> bool | None:
        """Save (True), discard (False) or stay (None)?"""
        from tkinter import messagebox

        return messagebox.askyesnocancel("Unsaved changes", f"Save your changes to {name}?", parent=self.root)

    # Reading the store -------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> None:
        """Read the store again (on the worker); unless forced, only if a file changed."""
        if self._refreshing:
            self._refresh_again = bool(self._refresh_again) or force
            return
        self._refreshing = True
        self.submit(
            lambda: self.reader.snapshot(force=force), self._apply_snapshot, failed=self._refresh_failed
        )

    def refresh_now(self) -> None:
        self.refresh(force=True)

    def _refresh_finished(self) -> None:
        self._refreshing = False
        again, self._refresh_again = self._refresh_again, None
        if again is not None:
            self.refresh(force=again)

    def _refresh_failed(self, error: Exception) -> None:
        self._refresh_finished()
        self.report(error)

    def _apply_snapshot(self, snap: Snapshot) -> None:
        self._refresh_finished()
        self.engine_info = snap.engine or self.engine_info
        self._note_storage_error(snap.error)
        if snap.jobs is not None and snap.tasks is not None:
            self.jobs = {job["id"]: job for job in snap.jobs}
            self.tasks = {task["id"]: task for task in snap.tasks}
            self.loaded = True
            self._drop_vanished()
            self.jobs_pane.show(snap.jobs, snap.tasks)
            self.jobs_pane.select(self.choice)
            self.job_run_feedback.update(snap.job_runs or {}, self.jobs, self.scope)
            self.editor.set_jobs(snap.jobs)
            self.editor.set_tasks(snap.tasks)
            self._sync_editor()
            self._show_tasks()
            self._load_runs()
            if self._choose_after_refresh:
                choice, self._choose_after_refresh = self._choose_after_refresh, None
                self.choose_in_jobs(choice)
        self._show_status()
        self._update_actions()
        if self.engine_info and not self.engine_info.get("running"):
            self._take_engine()  # the process that had it has quit

    def _take_engine(self) -> None:
        """Become the engine (on the worker: recovery reads every run), unless this window
        already is or is trying; without success it stays a viewer and editor."""
        engine = self.engine
        if engine is None or engine.owns or self._engine_starting:
            return
        self._engine_starting = True
        self.submit(lambda: self._start_engine(engine), self._engine_started)

    def _engine_started(self, owns: bool) -> None:
        self._engine_starting = False
        if owns and self.api is None and self._api_wanted[1] is not None:
            self._start_api_after_takeover()
        self.refresh(force=True)

    def _start_api_after_takeover(self) -> None:
        """The API follows the engine: the process that had both has quit, so its port is
        likely free now; serve the API here and name this address in the engine's record."""
        self.api, self.api_error = self._start_api(*self._api_wanted)
        if self.api is not None:
            self.api_note = " (started here on taking over the engine)"
            address = self.api.address
            self.submit(functools.partial(self._note_api_address, address))

    def _note_api_address(self, address: str) -> None:
        owner = self.service.engine_status()["owner"] or {}
        self.store.set_engine_state(owner={**owner, "api": address})

    def _note_storage_error(self, error: str | None) -> None:
        if error != self.storage_error:
            self.storage_error = error
            if error:
                self.report(StorageError(error))

    def _drop_vanished(self) -> None:
        """Forget selections whose job or task was deleted (by anyone)."""
        if self.scope.kind == SCOPE_JOB and self.scope.ident not in self.jobs:
            self.scope = ALL_TASKS
        gone_task = self.choice.kind == SCOPE_TASK and self.choice.ident not in self.tasks
        if gone_task or (self.choice.kind == SCOPE_JOB and self.choice.ident not in self.jobs):
            self.choice = self.scope
        if self.task_id and self.task_id not in self.tasks:
            self.task_id = None

    def _sync_editor(self) -> None:
        """Keep the editor's task in step with the store without losing unsaved edits."""
        shown = self.editor.task
        if not self.editor.is_open or shown is None:
            return
        current = self.tasks.get(shown["id"])
        if current is not None and all(
            current.get(key) == shown.get(key) for key in ("updated_at", "notify_events")
        ):
            return
        if not self.editor.is_dirty():
            self.editor.load(current) if current else self.editor.clear()
        elif current is None:
            self.editor.note_deleted_elsewhere()
        else:
            self.editor.note_changed_elsewhere(current)

    def _scope_tasks(self, scope: Scope) -> list[JSONDict]:
        tasks = list(self.tasks.values())
        if scope.kind == SCOPE_UNASSIGNED:
            return [task for task in tasks if not task.get("job_id")]
        if scope.kind == SCOPE_JOB:
            job = self.jobs.get(str(scope.ident)) or {"task_order": []}
            return _order_tasks(
                [task for task in tasks if task.get("job_id") == scope.ident], job["task_order"]
            )
        return tasks

    def _scope_title(self, scope: Scope) -> str:
        if scope.kind == SCOPE_JOB:
            return str((self.jobs.get(str(scope.ident)) or {}).get("name", "Job"))
        if scope.kind == SCOPE_TASK:
            return str((self.tasks.get(str(scope.ident)) or {}).get("name", "Task"))
        return "(Unassigned)" if scope.kind == SCOPE_UNASSIGNED else "All tasks"

    def _show_tasks(self) -> None:
        self.tasks_pane.show(self._scope_tasks(self.scope), self._scope_title(self.scope), self.task_id)

    @property
    def runs_scope(self) -> Scope:
        return Scope(SCOPE_TASK, self.task_id) if self.task_id else self.scope

    def _load_runs(self) -> None:
        scope = self.runs_scope
        self.submit(lambda: self.reader.runs(scope), lambda runs: self._apply_runs(scope, runs))
        self.submit(lambda: self.reader.job_fires(scope), lambda fires: self._apply_job_fires(scope, fires))
        self.submit(lambda: self.reader.totals(scope), lambda totals: self._apply_totals(scope, totals))

    def _apply_totals(self, scope: Scope, totals: JSONDict | None) -> None:
        if scope == self.runs_scope:  # else the person chose something else meanwhile
            self.runs_pane.show_totals(totals)

    def _apply_runs(self, scope: Scope, runs: list[JSONDict]) -> None:
        if scope != self.runs_scope:
            return  # the person chose something else meanwhile
        tasks = self.tasks
        self.runs = [
            {
                **run,
                "task_name": tasks.get(run["task_id"], {}).get("name", ""),
                "task_zone": task_zone(tasks.get(run["task_id"], {})),
            }
            for run in runs
        ]
        newest = self.runs[0]["id"] if self.runs else None
        known = any(run["id"] == self.run_id for run in self.runs)
        if not known or (self.follow_newest and newest != self.run_id):
            self._open_run(newest, follow=True)
        self._show_runs()
        self._update_actions()

    def _apply_job_fires(self, scope: Scope, fires: list[JSONDict]) -> None:
        if scope != self.runs_scope:
            return  # the person chose something else meanwhile
        shown = self.job_fires[1] if self.job_fires[0] == scope else []
        self.job_fires = (scope, fires)
        if fires != shown:  # most jobs have none: no second drawing of the list
            self._show_runs()

    def _show_runs(self) -> None:
        scope = self.runs_scope
        self.runs_pane.show(
            self.runs,
            self._scope_title(scope),
            self.run_id,
            with_task=scope.kind != SCOPE_TASK,
            fires=self.job_fires[1] if self.job_fires[0] == scope else [],
        )
        run = self._run(self.run_id)
        if run:
            self.logs_pane.set_title(self._run_title(run))
        details = self._run(self.run_details.run_id) if self.run_details else None
        if self.run_details and details:
            self.run_details.show(details)

    def refilter_runs(self) -> None:
        """The Runs list's filters changed: list again what they keep."""
        self._show_runs()

    def _run(self, run_id: str | None) -> JSONDict | None:
        return next((run for run in self.runs if run["id"] == run_id), None)

    @staticmethod
    def _run_title(run: JSONDict) -> str:
        return f"{run.get('task_name') or 'Run'} · {_short(run['id'])} · {run['status']}"

    # Following a run's log -----------------------------------------------------------------

    def _open_run(self, run_id: str | None, *, follow: bool) -> None:
        self.follow_newest = follow
        self.run_id = run_id
        self._log.generation += 1
        self._log.offset = 0
        self.runs_pane.table.select(run_id)
        run = self._run(run_id)
        if run is None:
            self.logs_pane.start("", "No runs here yet." if not self.runs else "Select a run to see its log.")
            return
        self.logs_pane.start(self._run_title(run), "Waiting for output…")
        self._poll_log()

    def _poll_log(self) -> None:
        """Read the shown run's log from where the last read ended (one read at a time)."""
        if self._log.busy:
            self._log.again = True
            return
        run_id, offset, generation = self.run_id, self._log.offset, self._log.generation
        if run_id is None:
            return
        self._log.busy = True
        self.submit(
            lambda: self.service.read_log(run_id, offset),
            lambda chunk: self._apply_log(generation, chunk),
            failed=lambda error: self._log_failed(generation, error),
        )

    def _log_read_done(self) -> bool:
        """Mark the read finished; True when another read was asked for meanwhile."""
        again = self._log.again
        self._log.busy = self._log.again = False
        return again

    def _apply_log(self, generation: int, chunk: JSONDict) -> None:
        again = self._log_read_done()
        if generation != self._log.generation:
            if again:
                self._poll_log()
            return
        data, active = str(chunk["data"]), bool(chunk["active"])
        self._log.offset = int(chunk["next_offset"])
        if data:
            self.logs_pane.append(data, final=not active)
        elif not active and chunk["offset"] == 0:
            self.logs_pane.show_message("This run recorded no output.")
        if data or again:
            self.later(0, self._poll_log, "log")
        elif active:
            self.later(GUI_LOG_POLL_MS, self._poll_log, "log")

    def _log_failed(self, generation: int, error: Exception) -> None:
        again = self._log_read_done()
        if generation != self._log.generation:
            if again:
                self._poll_log()
        elif isinstance(error, NotFound):
            self.logs_pane.show_message("This run was deleted.")
        else:
            self.report(error)

    # Selections (from the panes) -------------------------------------------------------------

    def choose_in_jobs(self, choice: Scope) -> None:
        """The Jobs tree's selection: "All tasks", "(Unassigned)", a job, or a task."""
        if choice == self.choice:
            return
        if choice.kind != SCOPE_TASK:
            self._leave_editor(lambda: self._choose(choice, choice, None))
            return
        task = self.tasks.get(str(choice.ident))
        if task is None:
            return
        scope = Scope(SCOPE_JOB, task["job_id"]) if task.get("job_id") else UNASSIGNED
        self._leave_editor(lambda: self._choose(choice, scope, task["id"]), task["id"])

    def _choose(self, choice: Scope, scope: Scope, task_id: str | None) -> None:
        self.choice, self.scope = choice, scope
        self._open_task(task_id)
        self.jobs_pane.select(choice)
        self.job_run_feedback.show(self.jobs, scope)
        self._show_tasks()
        self._load_runs()
        self._update_actions()

    def select_task(self, task_id: str) -> None:
        """A task chosen in the Tasks pane: into the editor, its runs into the Runs pane."""
        if task_id == self.task_id or task_id not in self.tasks:
            return
        self._leave_editor(lambda: self._select_task(task_id), task_id)

    def _select_task(self, task_id: str) -> None:
        self._open_task(task_id)
        self.tasks_pane.table.select(task_id)
        self._load_runs()
        self._update_actions()

    def _open_task(self, task_id: str | None) -> None:
        self.task_id = task_id
        if task_id:
            self.editor.load(self.tasks[task_id])
        else:
            self.editor.clear()

    def select_run(self, run_id: str) -> None:
        if run_id != self.run_id:
            self._open_run(run_id, follow=bool(self.runs) and self.runs[0]["id"] == run_id)
            self._update_actions()

    def _leave_editor(self, then: Callable[[], None], target: str | None = None) -> None:
        """Do `then` once the editor's unsaved changes are saved or dropped, as the person
        says; if they cancel, put the panes' selections back."""
        stays = target is not None and self.editor.task is not None and self.editor.task["id"] == target
        if stays or not self.editor.is_dirty():
            then()
            return
        answer = self.ask_unsaved(self.editor.title)
        if answer is None:
            self._reselect()
        elif answer:
            self.save_task(then=then, otherwise=self._reselect)
        else:
            then()

    def _reselect(self) -> None:
        self.jobs_pane.select(self.choice)
        self.tasks_pane.table.select(self.task_id)

    def _update_actions(self) -> None:
        self.jobs_pane.set_actions(
            job=self.scope.kind == SCOPE_JOB, deletable=self.choice.kind in (SCOPE_JOB, SCOPE_TASK)
        )
        self.tasks_pane.set_actions(self.tasks.get(self.task_id or ""))
        self.runs_pane.set_actions(self._run(self.run_id))

    def _show_status(self) -> None:
        text, level = _engine_status_text(self.engine_info)
        self.status_bar.show("engine", text, level)
        self.status_bar.show("api", *self._api_text())
        self.status_bar.show("next", _next_due_text(self.tasks.values()))
        self.status_bar.show("counts", _counts_text(len(self.jobs), self.tasks.values()))
        self.status_bar.show("error", self.storage_error or "", "error")
        self.paused.set(bool(self.engine_info.get("paused")))
        self.status_bar.show_engine_action(self._is_held())
        if self.run_menu is not None:
            held = self._is_held()
            self.run_menu.entryconfigure(GUI_RESUME_LABEL, state="normal" if held else "disabled")

    def _api_text(self) -> tuple[str, str]:
        if self.api:
            return f"API: {self.api.address}{self.api_note}", ""
        other = (self.engine_info.get("owner") or {}).get("api")
        if other and not self.engine_info.get("here"):
            return f"API: {other} (the engine's process)", ""
        return (f"API: off ({self.api_error})", "warning") if self.api_error else ("API: off", "")

    # Task actions ------------------------------------------------------------------------

    def new_task(self) -> None:
        """A new task in the editor, assigned to the job whose tasks are listed."""
        job_id = self.scope.ident if self.scope.kind == SCOPE_JOB else None
        self._leave_editor(lambda: self._new_task(job_id))

    def _new_task(self, job_id: str | None) -> None:
        self.task_id = None
        self.tasks_pane.table.select(None)
        self.editor.new(job_id)
        self._load_runs()
        self._update_actions()

    def save_task(
        self, then: Callable[[], None] | None = None, otherwise: Callable[[], None] | None = None
    ) -> None:
        """Save the editor's task (create it if new); `then` runs once it is stored."""
        if not self.editor.is_open:
            return
        try:
            data = self.editor.collect()
        except Invalid as error:
            self.editor.show_invalid(error)
            if otherwise:
                otherwise()
            return
        task = self.editor.task
        call = functools.partial(self._store_task, task, data, self.editor.collect_notify())
        self.editor.set_busy(True)
        self.submit(
            call,
            lambda saved: self._task_saved(saved, then),
            failed=lambda error: self._task_not_saved(error, otherwise),
        )

    def _store_task(self, task: JSONDict | None, data: JSONDict, events: dict[str, bool]) -> JSONDict:
        """On the worker: create or update the task, then its notification overrides if
        they changed (none: it follows the settings for all tasks)."""
        saved = (
            self.service.create_task(data)
            if task is None
            else self.service.update_task(str(task["id"]), data)
        )
        if events != (task or {}).get("notify_events", {}):
            self.service.update_notify_settings(
                {"tasks": {saved["id"]: {"events": events} if events else None}}
            )
        return {**saved, "notify_events": events}

    def _task_saved(self, saved: JSONDict, then: Callable[[], None] | None) -> None:
        self.editor.set_busy(False)
        self.tasks[saved["id"]] = saved
        if then:
            then()
        else:
            self.task_id = saved["id"]
            self.editor.load(saved)
            self._show_tasks()
            self._load_runs()
        self.refresh(force=True)

    def _task_not_saved(self, error: Exception, otherwise: Callable[[], None] | None) -> None:
        self.editor.set_busy(False)
        if isinstance(error, Invalid):
            self.editor.show_invalid(error)
        else:
            self.report(error)
        if otherwise:
            otherwise()

    def revert_task(self) -> None:
        """Back to the stored task (or a blank new one), dropping the edits."""
        if self.editor.task:
            self.editor.load(self.tasks.get(self.editor.task["id"], self.editor.task))
        elif self.editor.is_open:
            self.editor.new(self.scope.ident if self.scope.kind == SCOPE_JOB else None)

    def run_task(self) -> None:
        if self.task_id:
            self.act(functools.partial(self.service.request_run, self.task_id), self._follow)

    def run_selected(self) -> None:
        """F5: the job when its row has the focus in the Jobs tree, else the selected task."""
        in_jobs_tree = self.root.focus_get() is self.jobs_pane.table.tree
        if in_jobs_tree and self.choice.kind == SCOPE_JOB:
            self.run_job()
        elif self.task_id:
            self.run_task()
        elif self.scope.kind == SCOPE_JOB:
            self.run_job()

    def move_task(self, step: int) -> None:
        """Move the selected task `step` places in its job's order (the order its job runs in)."""
        task = self.tasks.get(self.task_id or "")
        job = self.jobs.get(str((task or {}).get("job_id")))
        if task is None or job is None:
            return
        mine = [other for other in self.tasks.values() if other.get("job_id") == job["id"]]
        order = [other["id"] for other in _order_tasks(mine, job["task_order"])]
        here = order.index(task["id"])
        there = here + step
        if 0 <= there < len(order):
            order[here], order[there] = order[there], order[here]
            self.act(functools.partial(self.service.update_job, job["id"], {"task_order": order}))

    def toggle_task(self) -> None:
        task = self.tasks.get(self.task_id or "")
        if task:
            self.act(functools.partial(self.service.set_enabled, task["id"], not task.get("enabled", True)))

    def delete_task(self, task_id: str | None = None) -> None:
        """Delete a task (the selected one) after confirming, with its runs and logs."""
        task = self.tasks.get(task_id or self.task_id or "")
        if task is None:
            return
        self.submit(
            functools.partial(self.service.delete_task_preview, task["id"]),
            lambda preview: self._confirm_delete_task(task, preview),
        )

    def _confirm_delete_task(self, task: JSONDict, preview: JSONDict) -> None:
        counts, active = preview["counts"], preview["active_runs"]
        lines = [
            f"Delete the task “{task['name']}”?",
            "",
            f"Its {_plural(counts['runs'], 'run')} and {_plural(counts['logs'], 'log file')} "
            "are deleted too.",
        ]
        if active:
            lines.append(f"Its {_plural(active, 'active run')} will be stopped first.")
        if not self.confirm("Delete task", "\n".join([*lines, "", "This cannot be undone."])):
            return
        self.act(
            functools.partial(self.service.delete_task, task["id"], force=True),
            lambda result: self._task_deleted(task["id"]),
        )

    def _task_deleted(self, task_id: str) -> None:
        if self.task_id == task_id:
            self.task_id = None
            self.editor.clear()
        if self.choice == Scope(SCOPE_TASK, task_id):
            self.choice = self.scope

    def delete_from_jobs(self) -> None:
        """Delete in the Jobs tree: the selected job, or the selected task."""
        if self.choice.kind == SCOPE_TASK:
            self.delete_task(self.choice.ident)
        elif self.choice.kind == SCOPE_JOB:
            self.delete_job()

    def delete_focused(self) -> None:
        """Delete (menu): in whichever list has the keyboard focus."""
        focus = self.root.focus_get()
        if focus is self.jobs_pane.table.tree:
            self.delete_from_jobs()
        elif focus is self.runs_pane.table.tree:
            self.delete_run()
        else:
            self.delete_task()

    def focus_filter(self) -> None:
        self.tasks_pane.focus_filter()

    # Job actions -----------------------------------------------------------------------------

    def new_job(self) -> None:
        self._open_job_dialog(None)

    def edit_job(self) -> None:
        job = self.jobs.get(str(self.scope.ident)) if self.scope.kind == SCOPE_JOB else None
        if job:
            self._open_job_dialog(job)

    def _open_job_dialog(self, job: JSONDict | None) -> None:
        if self.job_dialog:
            self.job_dialog.close()
        self.job_dialog = JobDialog(self, job)

    def job_dialog_closed(self, dialog: JobDialog) -> None:
        if self.job_dialog is dialog:
            self.job_dialog = None

    def save_job(self, dialog: JobDialog) -> None:
        try:
            data, job_id = dialog.collect(), dialog.job_id
        except Invalid as error:
            dialog.show_invalid(error)
            return
        if job_id:
            call = functools.partial(self.service.update_job, job_id, data)
        else:
            call = functools.partial(self.service.create_job, data)
        dialog.set_busy(True)
        self.submit(
            call,
            lambda job: self._job_saved(dialog, job),
            failed=lambda error: self._job_not_saved(dialog, error),
        )

    def _job_saved(self, dialog: JobDialog, job: JSONDict) -> None:
        dialog.close()
        if dialog.job_id is None:
            self._choose_after_refresh = Scope(SCOPE_JOB, job["id"])
        self.refresh(force=True)

    def _job_not_saved(self, dialog: JobDialog, error: Exception) -> None:
        dialog.set_busy(False)
        if isinstance(error, Invalid):
            dialog.show_invalid(error)
        else:
            self.report(error)

    def delete_job(self) -> None:
        """Delete the selected job after a confirmation naming what the cascade removes."""
        if self.choice.kind == SCOPE_JOB and self.choice.ident:
            self.submit(
                functools.partial(self.service.delete_preview, self.choice.ident), self._confirm_delete_job
            )

    def _confirm_delete_job(self, preview: JSONDict) -> None:
        job = preview["job"]
        tasks = self._scope_tasks(Scope(SCOPE_JOB, job["id"]))
        if not self.confirm(
            "Delete job", _delete_job_message(preview, [str(task["name"]) for task in tasks])
        ):
            return
        self.act(
            functools.partial(self.service.delete_job, job["id"], force=True),
            lambda result: self._job_deleted(job["id"]),
        )

    def _job_deleted(self, job_id: str) -> None:
        shown = self.editor.task
        if shown is not None and shown.get("job_id") == job_id:
            self.task_id = None
            self.editor.clear()
        if self.scope == Scope(SCOPE_JOB, job_id):
            self._choose(ALL_TASKS, ALL_TASKS, None)

    def run_job(self) -> None:
        if self.scope.kind == SCOPE_JOB and self.scope.ident:
            self.act(functools.partial(self.service.run_job, self.scope.ident), self._follow)

    def stop_job(self) -> None:
        if self.scope.kind == SCOPE_JOB and self.scope.ident:
            self.act(functools.partial(self.service.stop_job, self.scope.ident))

    def stop_running_job(self) -> None:
        """The status bar's Stop: the job run it tells of, whatever job is chosen."""
        job_id = self.job_run_feedback.running_job_id
        if job_id:
            self.act(functools.partial(self.service.stop_job, job_id))

    # Import, export and copies --------------------------------------------------------------

    def ask_save_path(self, title: str, initial: str) -> str:
        """A file to write, or "" when cancelled."""
        from tkinter import filedialog

        path = filedialog.asksaveasfilename(
            parent=self.root,
            title=title,
            initialfile=initial,
            defaultextension=".json",
            filetypes=GUI_BUNDLE_TYPES,
        )
        return str(path or "")

    def ask_open_path(self, title: str) -> str:
        """A file to read, or "" when cancelled."""
        from tkinter import filedialog

        return str(
            filedialog.askopenfilename(parent=self.root, title=title, filetypes=GUI_BUNDLE_TYPES) or ""
        )

    def export_all(self) -> None:
        """File → Export all…: every job and task to a bundle file."""
        self._export([], "claude-scheduler-export.json")

    def export_job(self) -> None:
        """File → Export job…: the selected job and its tasks."""
        job = self.jobs.get(str(self.scope.ident)) if self.scope.kind == SCOPE_JOB else None
        if job is None:
            self.report(Conflict("choose a job in the Jobs list first"))
            return
        self._export([job["id"]], f"{re.sub(r'[^A-Za-z0-9._-]+', '-', job['name']).strip('-') or 'job'}.json")

    def _export(self, job_ids: list[str], initial: str) -> None:
        path = self.ask_save_path("Export", initial)
        if not path:
            return

        def write() -> JSONDict:  # on the worker: reading the store and writing the file take time
            return _write_bundle_file(Path(path), self.service.export_bundle(job_ids))

        self.submit(
            write, lambda counts: self.inform("Export", f"Exported {_bundle_counts(counts)} to {path}")
        )

    def import_bundle(self) -> None:
        """File → Import…: check the chosen bundle, say what it brings, import on a yes."""
        path = self.ask_open_path("Import")
        if not path:
            return

        def check() -> tuple[JSON, JSONDict]:
            bundle = _read_bundle_file(path)
            return bundle, self.service.import_bundle(bundle, dry_run=True)

        self.submit(check, lambda checked: self._confirm_import(path, *checked))

    def _confirm_import(self, path: str, bundle: JSON, preview: JSONDict) -> None:
        question = _import_text(preview).replace("Nothing was changed (--dry-run).", "Import?")
        if self.confirm("Import", f"{path}\n\n{question}"):
            self.act(functools.partial(self.service.import_bundle, bundle), self._imported)

    def _imported(self, report: JSONDict) -> None:
        if len(report["jobs"]) == 1:
            self._choose_after_refresh = Scope(SCOPE_JOB, report["jobs"][0]["id"])

    def duplicate_task(self) -> None:
        """Edit → Duplicate task: a disabled copy beside it, opened in the editor."""
        if not self.task_id:
            self.report(Conflict("choose a task in the Tasks list first"))
            return
        self.act(functools.partial(self.service.duplicate_task, self.task_id), self._task_copied)

    def _task_copied(self, task: JSONDict) -> None:
        self.tasks[task["id"]] = task
        self._show_tasks()
        self.select_task(task["id"])

    def duplicate_job(self) -> None:
        """Edit → Duplicate job: a copy of the selected job with disabled copies of its tasks."""
        if self.scope.kind != SCOPE_JOB or not self.scope.ident:
            self.report(Conflict("choose a job in the Jobs list first"))
            return
        self.act(functools.partial(self.service.duplicate_job, self.scope.ident), self._job_copied)

    def _job_copied(self, job: JSONDict) -> None:
        self._choose_after_refresh = Scope(SCOPE_JOB, job["id"])

    # Settings ----------------------------------------------------------------------------------

    def open_settings(self) -> None:
        """File → Settings…: read the settings (worker), then show them in the dialog."""
        if self.settings_dialog:
            self.settings_dialog.top.lift()
        else:
            self.submit(self.service.get_settings, self._show_settings)

    def _show_settings(self, settings: JSONDict) -> None:
        if self.settings_dialog is None:  # asked twice before the first answer came
            self.settings_dialog = dialog = SettingsDialog(self, settings)
            dialog.show_claude(None)
            ask = functools.partial(describe_claude, settings["claude_path"], os.environ, Path.home())
            self.submit_apart(ask, lambda info: self._show_claude(dialog, info))

    def _show_claude(self, dialog: SettingsDialog, info: JSONDict) -> None:
        if self.settings_dialog is dialog:
            dialog.show_claude(info)

    def settings_dialog_closed(self, dialog: SettingsDialog) -> None:
        if self.settings_dialog is dialog:
            self.settings_dialog = None

    def save_settings(self, dialog: SettingsDialog) -> None:
        try:
            data = dialog.collect()
        except Invalid as error:
            dialog.show_invalid(error)
            return
        dialog.set_busy(True)
        self.submit(
            functools.partial(self.service.update_settings, data),
            lambda settings: self._settings_saved(dialog),
            failed=lambda error: self._settings_not_saved(dialog, error),
        )

    def _settings_saved(self, dialog: SettingsDialog) -> None:
        if dialog.theme_choice() != self.theme_choice:
            self.theme_choice = dialog.theme_choice()
            self.looks.set_theme(chosen_theme(self.theme_choice))
            self._save_layout()  # the theme is kept with the layout
        dialog.close()
        self.check_setup_quietly()  # a new claude path may fix (or make) a problem

    def _settings_not_saved(self, dialog: SettingsDialog, error: Exception) -> None:
        dialog.set_busy(False)
        if isinstance(error, Invalid):
            dialog.show_invalid(error)
        else:
            self.report(error)

    # Notifications -------------------------------------------------------------------------------

    def open_notifications(self) -> None:
        """File → Notifications…: read the settings and history (worker), then show them."""
        if self.notifications_dialog:
            self.notifications_dialog.top.lift()
            return

        def read() -> tuple[JSONDict, list[JSONDict]]:
            return self.service.notify_settings(), self.service.notify_history(GUI_DELIVERY_ROWS)

        self.submit(read, lambda answer: self._show_notifications(*answer))

    def _show_notifications(self, config: JSONDict, history: list[JSONDict]) -> None:
        if self.notifications_dialog is None:
            self.notifications_dialog = NotificationsDialog(self, config, history)

    def notifications_dialog_closed(self, dialog: NotificationsDialog) -> None:
        if self.notifications_dialog is dialog:
            self.notifications_dialog = None

    def save_notifications(self, dialog: NotificationsDialog) -> None:
        self.submit(
            functools.partial(self.service.update_notify_settings, dialog.collect()),
            lambda config: dialog.close(),
        )

    def test_notifications(self, dialog: NotificationsDialog) -> None:
        """Send test: through each channel, then the history shows how it went."""

        shown = dialog.collect()  # on the Tk thread: the worker must not touch Tk variables

        def send() -> list[JSONDict]:
            self.service.update_notify_settings(shown)  # test what is shown
            self.service.notify_test()
            return self.service.notify_history(GUI_DELIVERY_ROWS)

        dialog.test_button.state(["disabled"])

        def done(history: list[JSONDict]) -> None:
            if self.notifications_dialog is dialog:
                dialog.test_button.state(["!disabled"])
                dialog.show_history(history)

        self.submit(send, done)

    # Run and log actions -----------------------------------------------------------------------

    def _follow(self, result: JSONDict) -> None:
        """A run was just asked for: show the newest run's log as the list updates."""
        self.follow_newest = True

    def stop_run(self) -> None:
        if self.run_id:
            self.act(functools.partial(self.service.stop_run, self.run_id))

    def open_run_details(self) -> None:
        """Double-click or Enter on a run: its details in a window (one at a time)."""
        run = self._run(self.run_id)
        if run is None:
            return
        if self.run_details is not None:
            self.run_details.close()
        self.run_details = RunDetailsDialog(self, run)

    def run_details_closed(self, dialog: RunDetailsDialog) -> None:
        if self.run_details is dialog:
            self.run_details = None

    def rerun(self) -> None:
        run = self._run(self.run_id)
        if run:
            self.act(functools.partial(self.service.request_run, run["task_id"]), self._follow)

    def delete_run(self) -> None:
        run = self._run(self.run_id)
        if run is None:
            return
        question = (
            f"Delete this run of “{run['task_name'] or 'a task'}” and its log?\n\nThis cannot be undone."
        )
        if self.confirm("Delete run", question):
            self.act(functools.partial(self.service.delete_run, run["id"]), self._follow)

    def copy_log(self) -> None:
        text = self.logs_pane.text_to_copy()
        if text:
            self.root.clipboard_clear()
            self.root.clipboard_append(text)

    def open_log(self) -> None:
        if self.run_id:
            path = self.store.log_path(self.run_id)
            if not path.exists():
                raise NotFound(f"this run has no log file (yet): {path}")
            _open_in_desktop(path)

    def open_data_folder(self) -> None:
        _open_in_desktop(self.store.home)

    def _is_held(self) -> bool:
        return bool(self.engine_info.get("paused") or self.engine_info.get("hold"))

    def pause_or_resume(self) -> None:
        """The status bar's button: resume a paused or held engine, else pause it."""
        if self._is_held():
            self.resume_runs()
        else:
            self.paused.set(True)
            self.toggle_pause()

    def toggle_pause(self) -> None:
        self.act(functools.partial(self.service.set_paused, self.paused.get()))

    def resume_runs(self) -> None:
        """Lift the pause and the usage-limit hold, like `engine resume`."""
        self.act(functools.partial(self.service.set_paused, False))

    def show_shortcuts(self) -> None:
        """Help → Keyboard shortcuts: keys and what they do in two aligned columns."""
        import tkinter as tk
        from tkinter import ttk

        top = self.shortcuts = tk.Toplevel(self.root)
        top.title("Keyboard shortcuts")
        top.transient(self.root)
        body = ttk.Frame(top, padding=16)
        body.pack(fill="both", expand=True)
        for row, (keys, what) in enumerate(GUI_SHORTCUTS):
            ttk.Label(body, text=keys, font=self.looks.fonts["bold"]).grid(
                row=row, column=0, sticky="w", padx=(0, 16)
            )
            ttk.Label(body, text=what).grid(row=row, column=1, sticky="w", pady=1)
        close = ttk.Button(body, text="Close", command=top.destroy, default="active")
        close.grid(row=len(GUI_SHORTCUTS), column=1, sticky="e", pady=(12, 0))
        for sequence in ("<Escape>", "<Return>"):
            top.bind(sequence, lambda event: top.destroy())
        _place_dialog(top, self.root)
        close.focus_set()

    def check_setup(self) -> None:
        """Help → Check setup…: the checks run on a thread of their own (claude's version and
        the API's health take a moment); the dialog shows them when they come."""
        dialog = self.setup_dialog
        if dialog is None:
            dialog = self.setup_dialog = SetupDialog(self)
        elif dialog.is_busy:
            dialog.top.lift()
            return
        dialog.show_checking()
        self.submit_apart(
            self.service.check_setup,
            lambda checks: self._show_checks(dialog, checks),
            failed=lambda error: self._checks_failed(dialog, error),
        )

    def _show_checks(self, dialog: SetupDialog, checks: list[JSONDict]) -> None:
        if self.setup_dialog is dialog:
            dialog.show(checks)
        self.banner.show(checks, self.layout.columns)

    def check_setup_quietly(self) -> None:
        """The setup check in the background (at start, after Settings are saved, on the
        banner's Check again): its problems show in the banner, or the banner goes."""
        self.submit_apart(
            self.service.check_setup,
            lambda checks: self.banner.show(checks, self.layout.columns),
            failed=lambda error: logger().warning("setup check: %s", error),
        )

    def _checks_failed(self, dialog: SetupDialog, error: Exception) -> None:
        if self.setup_dialog is dialog:
            dialog.show_error(str(error))
        self.report(error)

    def setup_dialog_closed(self, dialog: SetupDialog) -> None:
        if self.setup_dialog is dialog:
            self.setup_dialog = None

    def show_about(self) -> None:
        api = self.api.address if self.api else "off"
        self.inform(
            "About",
            f"Claude Code Scheduler {__version__}\n\nData home: {self.store.home}\nREST API: {api}",
        )

    # Closing -------------------------------------------------------------------------------------

    def run(self) -> None:
        """The Tk main loop, until the window is closed or SIGINT/SIGTERM asks it to quit
        (which stops this window's runs, recorded as cancelled, as closing it does)."""
        import signal

        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.root.mainloop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._quit_asked = True  # the next drain acts on it: a signal handler must not call into Tk

    def request_close(self) -> None:
        """Quit, after asking about unsaved edits and about runs that quitting stops."""
        self._leave_editor(self._confirm_quit)

    def _confirm_quit(self) -> None:
        active = self.engine.active_run_ids if self.engine else []
        question = (
            f"{_plural(len(active), 'run')} started by this window will be stopped "
            "and recorded as cancelled. Quit anyway?"
        )
        if not active or self.confirm("Quit", question):
            self.close()

    def close(self) -> None:
        """Stop what this window started (its runs are cancelled) and destroy it; idempotent."""
        if self._closed:
            return
        try:
            self._save_layout()
        except SchedulerError as error:
            logger().warning("window layout not saved: %s", error)
        self._closed = True
        for timer in self._timers.values():
            self.root.after_cancel(timer)
        self._timers.clear()
        self.root.withdraw()
        self.worker.stop()
        if self.api:
            self.api.stop()
        if self.engine:
            self.engine.stop()
        self.notifier.stop()
        self.root.destroy()


def run_gui(home: Path, *, api_port: int | None = DEFAULT_PORT) -> int:
    """Open the window on a data home until it is closed. Exit code 2, with a message that
    names `serve` and `cli`, when this Python has no Tk or there is no display."""
    try:
        import tkinter as tk
    except ImportError as error:
        return _no_window(f"this Python has no Tk ({error})")
    try:
        root = tk.Tk(className=GUI_CLASS_NAME)
    except tk.TclError as error:
        return _no_window(str(error))
    try:
        store = Store(home)
    except SchedulerError as error:
        from tkinter import messagebox

        print(f"error: {error}", file=sys.stderr)
        root.withdraw()
        messagebox.showerror(GUI_TITLE, str(error), parent=root)
        root.destroy()
        return error.exit_code
    App(store, root=root, api_port=api_port).run()
    return 0


def _no_window(reason: str) -> int:
    print("error: " + GUI_NO_WINDOW.format(reason=reason.rstrip(".")), file=sys.stderr)
    return 2


####
# Entry point ####
####


def data_home(args: argparse.Namespace) -> Path:
    chosen = getattr(args, "home", None) or os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(os.path.expandvars(chosen)).expanduser()


def _run_cli(args: argparse.Namespace) -> int:
    args.json = getattr(args, "json", False)
    args.force = getattr(args, "force", False)
    try:
        if getattr(args, "run_alone", None):  # a command that opens what it needs itself
            return int(args.run_alone(args))
        return int(args.func(CliContext(_cli_backend(args), args)))
    except SchedulerError as error:
        print(f"error: {escape_controls(cli_error_text(error))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _cli_backend(args: argparse.Namespace) -> Service | ApiClient:
    """A running server's operations (--api URL or $CLAUDE_SCHEDULER_API), else the data
    home's. A command that only reads does not create a missing home: it says so."""
    url = getattr(args, "api", None) or os.environ.get(API_ENV)
    if url:
        return ApiClient.for_home(url, data_home(args))
    home = data_home(args)
    command = " ".join(filter(None, (args.group, getattr(args, "verb", None))))
    if command in CLI_READS and not home_exists(home):
        raise NotFound(
            f"no data home at {home}: check --home or ${HOME_ENV}, or create it with "
            "`cli init` (any command that saves, such as `cli jobs create`, creates it too)"
        )
    return Service(Store(home))


def _run_serve(args: argparse.Namespace) -> int:
    """Headless: the engine and the REST API until SIGINT or SIGTERM."""
    if args.host not in LOOPBACK_HOSTS:
        logger().warning("serving on %s: anyone who can reach it and has the token can run Claude", args.host)
    api: ApiServer | None = None
    engine: Engine | None = None
    notifier: Notifier | None = None
    try:
        store = Store(data_home(args))
        notifier = Notifier(store)
        notifier.start()
        engine = Engine(store, on_event=_logging_events(store, notifier.on_event))
        service = Service(store, wake=engine.wake)
        api = ApiServer(service, args.host, args.port)
        api.start()
        _start_engine(engine, service, api.address)
        address = api.address
        _wait_for_stop_signal(lambda: _take_engine_when_free(engine, address))
    except SchedulerError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    finally:
        logger().info("stopping: cancelling this process's runs")
        if api:
            api.stop()
        if engine:
            engine.stop()
        if notifier:
            notifier.stop()
    return 0


def _logging_events(store: Store, then: Callable[[JSONDict], None]) -> Callable[[JSONDict], None]:
    """`serve`'s listener: each run's start and end logged (task, trigger, status, cost;
    queued runs with -v), then the event handed on."""

    def on_event(event: JSONDict) -> None:
        if event.get("event") == "run":
            _log_run(store, event["run"])
        then(event)

    return on_event


def _log_run(store: Store, run: JSONDict) -> None:
    try:
        name = store.task(run["task_id"]).name
    except SchedulerError:
        name = _short(run["task_id"])
    said = f"run {_short(run['id'])} of {escape_controls(name)!r} ({run['trigger']})"
    if run["status"] == RunStatus.RUNNING:
        logger().info("%s started", said)
    elif run["status"] in FINISHED_STATUSES:
        cost = f" · {_money(run['cost_usd'])}" if run.get("cost_usd") is not None else ""
        error = f" · {_one_line(run['error'], 200)}" if run.get("error") else ""
        logger().info(
            "%s %s · %s%s%s", said, run_status_text(run), _seconds(run["duration_seconds"]), cost, error
        )
    else:
        logger().debug("%s %s", said, run["status"])


def _start_engine(engine: Engine, service: Service, api_address: str) -> None:
    if engine.start(about=_serve_about(api_address)):
        logger().info("engine started for %s; API on %s", service.store.home, api_address)
    else:
        owner = service.engine_status().get("owner") or {}
        logger().warning(
            "another process (pid %s) runs the engine; serving the API on %s as a viewer",
            owner.get("pid", "?"),
            api_address,
        )


def _serve_about(api_address: str) -> JSONDict:
    """What the engine's owner record says of a `serve` process."""
    return {"api": api_address, "process": "serve", "service": os.environ.get(SERVICE_ENV) or None}


def _take_engine_when_free(engine: Engine, api_address: str) -> None:
    """A viewer `serve` takes over the engine once the process that held it has gone,
    so queued and scheduled runs never wait for a restart."""
    if engine.owns:
        return
    try:
        if engine.start(about=_serve_about(api_address)):
            logger().warning("the engine's holder has gone; this process now runs the engine")
    except SchedulerError as error:  # tried again at the next poll
        logger().error("cannot take over the engine: %s", error)


def _wait_for_stop_signal(on_poll: Callable[[], None] = lambda: None) -> None:
    import signal

    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(CHANGE_POLL_SECONDS):
            on_poll()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_gui(args: argparse.Namespace) -> int:
    """The window, with the engine and (unless --no-api) the REST API in it."""
    port = None if getattr(args, "no_api", False) else getattr(args, "port", DEFAULT_PORT)
    return run_gui(data_home(args), api_port=port)


WINDOW_OPTIONS = ("--port", "--no-api")
MODES = ("gui", "serve", "cli")


def _window_by_default(argv: list[str]) -> list[str]:
    """With no mode the window opens, so its options work without `gui` too."""
    if any(word in MODES for word in argv):
        return argv
    if any(word.partition("=")[0] in WINDOW_OPTIONS for word in argv):
        return ["gui", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    """Parse argv (default: the process's), pick the mode, run it; return the exit code.
    Without argv it is the process's entry point (the installed command, `python -m`),
    which ends right after it: the objects made so far are then left out of the garbage
    collector's last pass at exit, which would walk them all (some 10 ms of a CLI call)."""
    code = _main(sys.argv[1:] if argv is None else argv)
    if argv is None:
        import gc

        gc.freeze()
    return code


def _main(argv: list[str]) -> int:
    argv = _window_by_default(argv)
    if argv[:2] == ["cli", COMPLETE_IDS]:  # hidden, and quick: at each Tab
        return complete_ids(argv[2:])
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 2
    global _log_level, _log_file
    _log_file = getattr(args, "log_file", None)
    if _log_file:
        Path(_log_file).expanduser().parent.mkdir(parents=True, exist_ok=True)
    verbose = args.verbose + getattr(args, "verbose_below", 0)
    chattiness = verbose + (args.mode == "serve")  # serve logs its work by default
    _log_level = LOG_LEVELS[min(chattiness, len(LOG_LEVELS) - 1)]  # applied by logger() on first use
    modes: dict[str | None, Callable[[argparse.Namespace], int]] = {
        "cli": _run_cli,
        "serve": _run_serve,
        "gui": _run_gui,
        None: _run_gui,
    }
    return modes[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
