"""Cost and token totals of jobs and tasks over today, 7 and 30 days: the pure sum, and
the same figures through `cli` (`jobs get`, `tasks get`, `jobs usage`) and the API."""

from __future__ import annotations

import functools
import http.client
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from run_helpers import WAIT_SECONDS, FakeClock

import claude_scheduler as cs

AMSTERDAM = "Europe/Amsterdam"
NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday; 10:00 in Amsterdam (UTC+1)
TODAY = datetime(2030, 1, 6, 23, 0, tzinfo=UTC)  # 7 January, 00:00 in Amsterdam
WEEK = datetime(2029, 12, 31, 23, 0, tzinfo=UTC)  # 1 January, 00:00: today and the 6 days before
MONTH = datetime(2029, 12, 8, 23, 0, tzinfo=UTC)  # 9 December, 00:00: today and the 29 days before
MS = timedelta(milliseconds=1)
EMPTY = {
    "runs": 0,
    "cost_usd": 0.0,
    "input_tokens": 0,
    "cache_read_tokens": 0,
    "cache_creation_tokens": 0,
    "output_tokens": 0,
}


def run_at(
    finished: datetime | None,
    *,
    task_id: str | None = None,
    started: datetime | None = None,
    status: cs.RunStatus = cs.RunStatus.SUCCESS,
    cost: float | None = None,
    tokens: tuple[int, int, int, int] | None = None,
) -> cs.Run:
    """A run that finished (or, without `finished`, started) at a time; tokens are
    (all input, cache read, cache creation, output)."""
    start = started or (finished - timedelta(minutes=5) if finished else None)
    run = cs.Run(cs.new_id(), task_id or cs.new_id(), status=status, started_at=start, finished_at=finished)
    run.created_at = start or NOW
    run.cost_usd = cost
    if tokens:
        run.input_tokens, run.cache_read_tokens, run.cache_creation_tokens, run.output_tokens = tokens
    return run


def figures(window: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in window.items() if key != "since"}


def window(runs: int, cost: float, tokens: tuple[int, ...] = (0, 0, 0, 0)) -> dict[str, Any]:
    names = ("input_tokens", "cache_read_tokens", "cache_creation_tokens", "output_tokens")
    return {"runs": runs, "cost_usd": cost, **dict(zip(names, tokens, strict=True))}


# The sum (pure) ----------------------------------------------------------------------------


def test_each_window_starts_at_a_local_midnight_and_takes_its_edge() -> None:
    runs = [
        run_at(TODAY, cost=1.0),  # the first instant of today
        run_at(TODAY - MS, cost=2.0),  # yesterday's last
        run_at(WEEK, cost=4.0),
        run_at(WEEK - MS, cost=8.0),
        run_at(MONTH, cost=16.0),
        run_at(MONTH - MS, cost=32.0),  # 30 days and a moment ago: counted nowhere
    ]
    totals = cs.usage_totals(runs, NOW, cs.get_zone(AMSTERDAM))
    assert list(totals) == ["today", "7d", "30d"]
    assert [totals[name]["since"] for name in totals] == [cs.fmt_time(t) for t in (TODAY, WEEK, MONTH)]
    assert [totals[name]["runs"] for name in totals] == [1, 3, 5]
    assert [totals[name]["cost_usd"] for name in totals] == [1.0, 7.0, 31.0]


def test_tokens_are_summed_with_their_cached_parts_and_runs_without_figures_add_nothing() -> None:
    runs = [
        run_at(NOW - timedelta(hours=1), cost=0.1, tokens=(45_004, 40_000, 5_000, 56)),
        run_at(NOW - timedelta(hours=2), cost=0.2, tokens=(1_000, 0, 0, 10)),
        run_at(NOW - timedelta(hours=3), status=cs.RunStatus.FAILED),  # no result: no figures
        run_at(None, started=NOW - timedelta(minutes=1), status=cs.RunStatus.RUNNING),
    ]
    totals = cs.usage_totals(runs, NOW, cs.get_zone(AMSTERDAM))
    for name in ("today", "7d", "30d"):
        assert figures(totals[name]) == window(4, 0.3, (46_004, 40_000, 5_000, 66)), name


def test_runs_that_never_started_count_nowhere() -> None:
    moment = NOW - timedelta(hours=1)
    runs = [
        run_at(None, status=cs.RunStatus.QUEUED),
        run_at(moment, status=cs.RunStatus.SKIPPED),
        run_at(moment, status=cs.RunStatus.MISSED),
        run_at(moment, status=cs.RunStatus.CANCELLED),  # cancelled while queued
    ]
    for run in runs:
        run.started_at = None
    totals = cs.usage_totals(runs, NOW, cs.get_zone(AMSTERDAM))
    assert [figures(totals[name]) for name in totals] == [EMPTY] * 3


def test_a_run_across_midnight_counts_on_the_day_it_finished() -> None:
    late = run_at(TODAY + timedelta(minutes=10), started=TODAY - timedelta(minutes=20), cost=0.5)
    totals = cs.usage_totals([late], NOW, cs.get_zone(AMSTERDAM))
    assert figures(totals["today"]) == window(1, 0.5)


def test_today_is_the_users_day_not_utcs() -> None:
    evening = run_at(datetime(2030, 1, 6, 16, 0, tzinfo=UTC), cost=1.0)  # 7 January, 01:00 in Tokyo
    in_tokyo = cs.usage_totals([evening], NOW, cs.get_zone("Asia/Tokyo"))
    in_utc = cs.usage_totals([evening], NOW, cs.get_zone("UTC"))
    assert (in_tokyo["today"]["runs"], in_utc["today"]["runs"]) == (1, 0)
    assert in_tokyo["today"]["since"] == "2030-01-06T15:00:00.000+00:00"
    assert in_utc["today"]["since"] == "2030-01-07T00:00:00.000+00:00"


def test_windows_follow_local_midnights_across_a_dst_change() -> None:
    now = datetime(2030, 3, 31, 10, 0, tzinfo=UTC)  # Amsterdam went to summer time at 02:00 today
    totals = cs.usage_totals([], now, cs.get_zone(AMSTERDAM))
    assert totals["today"]["since"] == "2030-03-30T23:00:00.000+00:00"  # midnight was still winter time
    assert totals["7d"]["since"] == "2030-03-24T23:00:00.000+00:00"
    later = cs.usage_totals([], now + timedelta(days=1), cs.get_zone(AMSTERDAM))
    assert later["today"]["since"] == "2030-03-31T22:00:00.000+00:00"


@pytest.mark.parametrize(
    ("zone", "day", "first_instant"),
    [
        ("America/Havana", date(2030, 3, 10), datetime(2030, 3, 10, 5, 0, tzinfo=UTC)),  # 00:00 skipped
        ("America/Havana", date(2030, 11, 3), datetime(2030, 11, 3, 4, 0, tzinfo=UTC)),  # 00:00 twice
        ("America/Santiago", date(2030, 9, 8), datetime(2030, 9, 8, 4, 0, tzinfo=UTC)),  # 00:00 skipped
    ],
)
def test_a_day_whose_midnight_is_skipped_or_repeated_starts_at_its_first_instant(
    zone: str, day: date, first_instant: datetime
) -> None:
    tz = cs.get_zone(zone)
    assert cs.local_midnight(day, tz) == first_instant
    assert (first_instant - MS).astimezone(tz).date() < day == first_instant.astimezone(tz).date()


def test_cost_sums_read_as_people_expect() -> None:
    runs = [run_at(NOW - timedelta(hours=1), cost=0.1), run_at(NOW - timedelta(hours=2), cost=0.2)]
    assert cs.usage_totals(runs, NOW, cs.get_zone("UTC"))["today"]["cost_usd"] == 0.3


# Through the command line ------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """`now` for every store the command line opens, and the user's zone."""
    fake = FakeClock(NOW)
    monkeypatch.setattr(cs, "Store", functools.partial(cs.Store, clock=fake))
    monkeypatch.setenv("TZ", AMSTERDAM)
    time.tzset()  # the C library too (conftest tzsets again at the end)
    return fake


@pytest.fixture
def history(home: Path, clock: FakeClock) -> dict[str, str]:
    """Two jobs and an unassigned task, with runs today, this week, this month and before."""
    service = cs.Service(cs.Store(home))
    review = service.create_job({"name": "Nightly review"})
    docs = service.create_job({"name": "Docs"})
    first = service.create_task({"name": "Lint", "prompt": "p", "job_id": review["id"]})
    second = service.create_task({"name": "Test", "prompt": "p", "job_id": review["id"]})
    writer = service.create_task({"name": "Write", "prompt": "p", "job_id": docs["id"]})
    loose = service.create_task({"name": "Loose", "prompt": "p"})
    runs = [
        run_at(
            TODAY + timedelta(hours=1),
            task_id=first["id"],
            cost=0.12,
            tokens=(1_200_000, 1_000_000, 100_000, 40_000),
        ),
        run_at(TODAY - MS, task_id=first["id"], cost=1.28, tokens=(1_000, 0, 0, 100)),
        run_at(WEEK - MS, task_id=second["id"], cost=3.7),
        run_at(MONTH - MS, task_id=second["id"], cost=9.0),
        run_at(TODAY + timedelta(hours=2), task_id=second["id"], status=cs.RunStatus.FAILED),
        run_at(WEEK, task_id=writer["id"], cost=0.5, tokens=(10, 0, 0, 5)),
        run_at(TODAY, task_id=loose["id"], cost=0.25),
    ]
    for run in runs:
        service.store.save_run(run)
    return {"review": review["id"], "docs": docs["id"], "lint": first["id"], "loose": loose["id"]}


REVIEW_TOTALS = {
    "today": window(2, 0.12, (1_200_000, 1_000_000, 100_000, 40_000)),
    "7d": window(3, 1.4, (1_201_000, 1_000_000, 100_000, 40_100)),
    "30d": window(4, 5.1, (1_201_000, 1_000_000, 100_000, 40_100)),
}


def test_jobs_get_shows_the_jobs_totals(
    cli: Callable[..., Any], cli_json: Callable[..., Any], history: dict[str, str]
) -> None:
    job = cli_json("jobs", "get", history["review"])
    assert {name: figures(value) for name, value in job["totals"].items()} == REVIEW_TOTALS
    assert [value["since"] for value in job["totals"].values()] == [
        cs.fmt_time(t) for t in (TODAY, WEEK, MONTH)
    ]
    text = cli("jobs", "get", history["review"][:8]).out
    table = text.split("\n\n")[1].splitlines()
    assert table == [
        "USAGE    COST     TOKENS IN                     OUT     RUNS",
        "today    $0.1200  1,200,000 (1,100,000 cached)  40,000  2",
        "7 days   $1.4000  1,201,000 (1,100,000 cached)  40,100  3",
        "30 days  $5.1000  1,201,000 (1,100,000 cached)  40,100  4",
    ]


def test_tasks_get_shows_the_tasks_totals(
    cli: Callable[..., Any], cli_json: Callable[..., Any], history: dict[str, str]
) -> None:
    task = cli_json("tasks", "get", history["lint"])
    assert figures(task["totals"]["today"]) == window(1, 0.12, (1_200_000, 1_000_000, 100_000, 40_000))
    assert figures(task["totals"]["7d"]) == window(2, 1.4, (1_201_000, 1_000_000, 100_000, 40_100))
    assert cli("tasks", "get", history["lint"][:8]).out.split("\n\n")[1].splitlines()[1:] == [
        "today    $0.1200  1,200,000 (1,100,000 cached)  40,000  1",
        "7 days   $1.4000  1,201,000 (1,100,000 cached)  40,100  2",
        "30 days  $1.4000  1,201,000 (1,100,000 cached)  40,100  2",
    ]


def test_the_day_turns_at_the_users_midnight(
    cli_json: Callable[..., Any], history: dict[str, str], clock: FakeClock
) -> None:
    clock.set(TODAY + timedelta(days=1) - MS)  # 23:59:59.999 in Amsterdam
    assert cli_json("tasks", "get", history["loose"])["totals"]["today"]["runs"] == 1
    clock.set(TODAY + timedelta(days=1))
    totals = cli_json("tasks", "get", history["loose"])["totals"]
    assert (totals["today"]["runs"], totals["7d"]["runs"]) == (0, 1)


def test_jobs_usage_lists_every_job_by_name_and_the_sum(
    cli: Callable[..., Any], cli_json: Callable[..., Any], history: dict[str, str]
) -> None:
    usage = cli_json("jobs", "usage")
    assert usage["zone"] == AMSTERDAM
    assert [(job["name"], job["id"]) for job in usage["jobs"]] == [
        ("Docs", history["docs"]),
        ("Nightly review", history["review"]),
    ]
    review = usage["jobs"][1]["totals"]
    assert {name: figures(value) for name, value in review.items()} == REVIEW_TOTALS
    assert figures(usage["jobs"][0]["totals"]["7d"]) == window(1, 0.5, (10, 0, 0, 5))
    assert figures(usage["unassigned"]["today"]) == window(1, 0.25)
    assert {name: figures(value) for name, value in usage["total"].items()} == {
        "today": window(3, 0.37, (1_200_000, 1_000_000, 100_000, 40_000)),
        "7d": window(5, 2.15, (1_201_010, 1_000_000, 100_000, 40_105)),
        "30d": window(6, 5.85, (1_201_010, 1_000_000, 100_000, 40_105)),
    }
    lines = cli("jobs", "usage").out.splitlines()
    assert lines[0].split() == [
        "JOB",
        "ID",
        "TODAY",
        "7",
        "DAYS",
        "30",
        "DAYS",
        "RUNS",
        "(30",
        "DAYS)",
        "TOKENS",
        "IN",
        "(30",
        "DAYS)",
        "OUT",
        "(30",
        "DAYS)",
    ]
    assert lines[1].split()[:5] == ["Docs", history["docs"][:8], "$0.0000", "$0.5000", "$0.5000"]
    assert lines[2].split()[:6] == [
        "Nightly",
        "review",
        history["review"][:8],
        "$0.1200",
        "$1.4000",
        "$5.1000",
    ]
    assert lines[3].split()[:5] == ["(Unassigned)", "-", "$0.2500", "$0.2500", "$0.2500"]
    assert lines[4].split() == [
        "All",
        "-",
        "$0.3700",
        "$2.1500",
        "$5.8500",
        "6",
        "1,201,010",
        "(1,100,000",
        "cached)",
        "40,105",
    ]
    assert lines[-1] == (
        f"Runs by when they finished; days start at midnight ({AMSTERDAM}), and 7 and 30 days include today."
    )


def test_jobs_usage_with_nothing_yet(cli_json: Callable[..., Any], clock: FakeClock) -> None:
    cli_json("init")
    usage = cli_json("jobs", "usage")
    assert usage["jobs"] == []
    assert [figures(usage["total"][name]) for name in ("today", "7d", "30d")] == [EMPTY] * 3


def test_a_run_of_the_fake_claude_adds_its_recorded_figures(
    cli: Callable[..., Any], cli_json: Callable[..., Any], clock: FakeClock, record: Any
) -> None:
    task = cli_json("tasks", "create", "--name", "Hello", "--prompt", "Say hello.")
    assert cli("tasks", "run", task["id"][:8]).code == 0
    (run,) = cli_json("runs", "list", "--task", task["id"])["runs"]
    assert run["cost_usd"] and run["input_tokens"] and run["output_tokens"]
    recorded = window(
        1,
        run["cost_usd"],
        tuple(
            run[name] or 0
            for name in ("input_tokens", "cache_read_tokens", "cache_creation_tokens", "output_tokens")
        ),
    )
    totals = cli_json("tasks", "get", task["id"])["totals"]
    assert [figures(totals[name]) for name in ("today", "7d", "30d")] == [recorded] * 3
    clock.advance(30 * 86400)
    assert figures(cli_json("tasks", "get", task["id"])["totals"]["30d"]) == EMPTY


# Through the API -----------------------------------------------------------------------------


@pytest.fixture
def api(home: Path, clock: FakeClock) -> Iterator[Callable[[str], Any]]:
    """GET a path of a server on the data home (with the injected clock); the JSON answer."""
    store = cs.Store(home)
    server = cs.ApiServer(cs.Service(store), "127.0.0.1", 0)
    server.start()
    token = cs.api_token(home, create=False)

    def get(path: str) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=WAIT_SECONDS)
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        assert answer.status == 200, (answer.status, body[:300])
        return json.loads(body)

    yield get
    server.stop()


def test_the_api_answers_the_same_totals(
    api: Callable[[str], Any], history: dict[str, str], cli_json: Callable[..., Any]
) -> None:
    job = api(f"/api/jobs/{history['review']}")
    assert {name: figures(value) for name, value in job["totals"].items()} == REVIEW_TOTALS
    assert (
        api(f"/api/tasks/{history['lint']}")["totals"] == cli_json("tasks", "get", history["lint"])["totals"]
    )
    assert api("/api/usage") == cli_json("jobs", "usage")
    assert "totals" not in api("/api/tasks")["tasks"][0]  # lists stay lean


def test_the_openapi_document_describes_the_totals(
    api: Callable[[str], Any], history: dict[str, str]
) -> None:
    doc = api("/api/openapi.json")
    schemas = doc["components"]["schemas"]
    assert doc["paths"]["/api/usage"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Usage"
    }
    usage = api("/api/usage")
    assert set(usage) == set(schemas["Usage"]["properties"]) == set(schemas["Usage"]["required"])
    assert set(usage["total"]) == set(schemas["Totals"]["properties"])
    assert set(usage["total"]["7d"]) == set(schemas["UsageWindow"]["properties"])
    assert set(api(f"/api/tasks/{history['lint']}")) == set(schemas["Task"]["properties"])
    detail = schemas["JobDetail"]["allOf"][1]
    assert "totals" in detail["required"]


def test_a_task_read_with_its_totals_can_be_sent_back(home: Path, history: dict[str, str]) -> None:
    service = cs.Service(cs.Store(home))
    task = service.get_task(history["lint"])
    assert service.update_task(history["lint"], {**task, "name": "Lint again"})["name"] == "Lint again"
    job = service.get_job(history["review"])
    body = {key: job[key] for key in ("name", "description", "totals")}
    assert service.update_job(history["review"], body)["totals"] == job["totals"]
