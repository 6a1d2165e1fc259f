"""Tests of the cron engine: parsing, next fire times (DST included) and descriptions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import claude_scheduler as cs

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
TOKYO = ZoneInfo("Asia/Tokyo")
KOLKATA = ZoneInfo("Asia/Kolkata")
ZONE_UTC = ZoneInfo("UTC")
ALL_WEEKDAYS = frozenset(range(7))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def fires(expression: str, after: datetime, tz: ZoneInfo = ZONE_UTC, count: int = 1) -> list[datetime]:
    return cs.cron_next_times(cs.parse_cron(expression), after, tz, count)


def local_fires(expression: str, after: datetime, tz: ZoneInfo, count: int) -> list[str]:
    """Fire times rendered in `tz` with their offset, which shows which pass of an hour fired."""
    return [moment.astimezone(tz).isoformat() for moment in fires(expression, after, tz, count)]


def invalid_message(expression: str) -> str:
    with pytest.raises(cs.Invalid) as caught:
        cs.parse_cron(expression)
    return caught.value.message


# Parsing: every syntax form


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", set(range(60))),
        ("5", {5}),
        ("0", {0}),
        ("59", {59}),
        ("1-5", {1, 2, 3, 4, 5}),
        ("1-10/3", {1, 4, 7, 10}),
        ("*/15", {0, 15, 30, 45}),
        ("*/25", {0, 25, 50}),
        ("10/20", {10, 30, 50}),
        ("1,2,5-7", {1, 2, 5, 6, 7}),
        ("0-59/30,7", {0, 30, 7}),
        ("3,3,3", {3}),
        ("*/90", {0}),
    ],
)
def test_minute_field_forms(text: str, expected: set[int]) -> None:
    assert cs.parse_cron(f"{text} * * * *").minutes == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*/6", {0, 6, 12, 18}),
        ("9-17", set(range(9, 18))),
        ("22-23,0-1", {22, 23, 0, 1}),
        ("1/8", {1, 9, 17}),
    ],
)
def test_hour_field_forms(text: str, expected: set[int]) -> None:
    assert cs.parse_cron(f"0 {text} * * *").hours == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*/10", {1, 11, 21, 31}),
        ("1,15", {1, 15}),
        ("25-31", set(range(25, 32))),
        ("20/5", {20, 25, 30}),
    ],
)
def test_day_of_month_field_forms(text: str, expected: set[int]) -> None:
    assert cs.parse_cron(f"0 0 {text} * *").days_of_month == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jan", {1}),
        ("JAN", {1}),
        ("Dec", {12}),
        ("jan-mar", {1, 2, 3}),
        ("JUN-aug/2", {6, 8}),
        ("1,feb,Mar,12", {1, 2, 3, 12}),
        ("*/3", {1, 4, 7, 10}),
        ("nov/1", {11, 12}),
    ],
)
def test_month_names_in_any_case(text: str, expected: set[int]) -> None:
    assert cs.parse_cron(f"0 0 1 {text} *").months == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", {0}),
        ("7", {0}),
        ("sun", {0}),
        ("SUN", {0}),
        ("Sat", {6}),
        ("mon-fri", {1, 2, 3, 4, 5}),
        ("MON-FRI", {1, 2, 3, 4, 5}),
        ("5-7", {5, 6, 0}),
        ("0-7", ALL_WEEKDAYS),
        ("*/2", {0, 2, 4, 6}),
        ("1/2", {1, 3, 5}),
        ("sat,sun", {6, 0}),
        ("tue-thu/2", {2, 4}),
    ],
)
def test_day_of_week_names_and_sunday_as_0_or_7(text: str, expected: set[int]) -> None:
    assert cs.parse_cron(f"0 0 * * {text}").days_of_week == expected


@pytest.mark.parametrize(
    ("alias", "minutes", "hours", "days", "months", "weekdays"),
    [
        ("@yearly", {0}, {0}, {1}, {1}, ALL_WEEKDAYS),
        ("@annually", {0}, {0}, {1}, {1}, ALL_WEEKDAYS),
        ("@monthly", {0}, {0}, {1}, set(range(1, 13)), ALL_WEEKDAYS),
        ("@weekly", {0}, {0}, set(range(1, 32)), set(range(1, 13)), {0}),
        ("@daily", {0}, {0}, set(range(1, 32)), set(range(1, 13)), ALL_WEEKDAYS),
        ("@midnight", {0}, {0}, set(range(1, 32)), set(range(1, 13)), ALL_WEEKDAYS),
        ("@hourly", {0}, set(range(24)), set(range(1, 32)), set(range(1, 13)), ALL_WEEKDAYS),
        ("@DAILY", {0}, {0}, set(range(1, 32)), set(range(1, 13)), ALL_WEEKDAYS),
        ("  @Weekly  ", {0}, {0}, set(range(1, 32)), set(range(1, 13)), {0}),
    ],
)
def test_aliases(
    alias: str,
    minutes: set[int],
    hours: set[int],
    days: set[int],
    months: set[int],
    weekdays: set[int],
) -> None:
    spec = cs.parse_cron(alias)
    fields = (spec.minutes, spec.hours, spec.days_of_month, spec.months, spec.days_of_week)
    assert tuple(set(values) for values in fields) == (minutes, hours, days, months, weekdays)


def test_alias_fire_times() -> None:
    after = utc(2026, 5, 13, 10, 30)
    assert fires("@yearly", after) == [utc(2027, 1, 1)]
    assert fires("@annually", after) == [utc(2027, 1, 1)]
    assert fires("@monthly", after) == [utc(2026, 6, 1)]
    assert fires("@weekly", after) == [utc(2026, 5, 17)]
    assert fires("@daily", after) == [utc(2026, 5, 14)]
    assert fires("@midnight", after) == [utc(2026, 5, 14)]
    assert fires("@hourly", after) == [utc(2026, 5, 13, 11)]


def test_huge_step_keeps_only_the_start() -> None:
    assert cs.parse_cron("*/" + "9" * 5000 + " * * * *").minutes == {0}


def test_expression_is_kept_stripped() -> None:
    assert cs.parse_cron("  0 9 * * 1  ").expression == "0 9 * * 1"
    assert cs.parse_cron("0\t9 *  * 1-5").hours == {9}


@pytest.mark.parametrize("text", ["L", "l"])
def test_last_day_of_month_flag(text: str) -> None:
    spec = cs.parse_cron(f"0 0 {text} * *")
    assert spec.last_day_of_month
    assert not spec.last_workday_of_month
    assert spec.days_of_month == set()


@pytest.mark.parametrize("text", ["LW", "lw", "Lw"])
def test_last_workday_flag(text: str) -> None:
    spec = cs.parse_cron(f"0 0 {text} * *")
    assert spec.last_workday_of_month
    assert not spec.last_day_of_month


def test_day_of_month_mixes_numbers_and_extras() -> None:
    spec = cs.parse_cron("0 0 1,15,L * *")
    assert spec.days_of_month == {1, 15}
    assert spec.last_day_of_month


@pytest.mark.parametrize(
    ("text", "weekdays", "lasts", "nths"),
    [
        ("5L", set(), {5}, set()),
        ("friL", set(), {5}, set()),
        ("FRIL", set(), {5}, set()),
        ("7L", set(), {0}, set()),
        ("MON#2", set(), set(), {(1, 2)}),
        ("mon#2", set(), set(), {(1, 2)}),
        ("1#5", set(), set(), {(1, 5)}),
        ("0#1,7#3", set(), set(), {(0, 1), (0, 3)}),
        ("1-3,5L,sat#4", {1, 2, 3}, {5}, {(6, 4)}),
    ],
)
def test_day_of_week_extras(
    text: str, weekdays: set[int], lasts: set[int], nths: set[tuple[int, int]]
) -> None:
    spec = cs.parse_cron(f"0 0 * * {text}")
    assert spec.days_of_week == weekdays
    assert spec.last_weekdays_in_month == lasts
    assert spec.nth_weekdays_in_month == nths


@pytest.mark.parametrize(
    ("expression", "is_wildcard"),
    [
        ("* 2 * * *", True),
        ("0 * * * *", True),
        ("*/5 9 * * *", True),
        ("0 */2 * * *", True),
        ("30 2 * * *", False),
        ("0 1-3 * * *", False),
        ("0,30 2 * * *", False),
        ("0-59 2 * * *", False),
        ("@hourly", True),
        ("@daily", False),
    ],
)
def test_wildcard_jobs_are_those_whose_minute_or_hour_starts_with_star(
    expression: str, is_wildcard: bool
) -> None:
    assert cs.parse_cron(expression).is_wildcard is is_wildcard


@pytest.mark.parametrize(
    ("expression", "dom_restricted", "dow_restricted"),
    [
        ("0 0 * * *", False, False),
        ("0 0 1 * *", True, False),
        ("0 0 * * 1", False, True),
        ("0 0 1 * 1", True, True),
        ("0 0 */2 * 1", False, True),
        ("0 0 1 * */2", True, False),
        ("0 0 L * 5L", True, True),
    ],
)
def test_restricted_flags_follow_the_leading_star(
    expression: str, dom_restricted: bool, dow_restricted: bool
) -> None:
    spec = cs.parse_cron(expression)
    assert (spec.dom_restricted, spec.dow_restricted) == (dom_restricted, dow_restricted)


# Parsing: invalid expressions name the cron field and the rule


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("61 * * * *", "minute field 61 is out of range 0-59"),
        ("* 24 * * *", "hour field 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month field 32 is out of range 1-31"),
        ("* * * 0 *", "month field 0 is out of range 1-12"),
        ("* * * 13 *", "month field 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field 8 is out of range 0-7"),
        ("0-60 * * * *", "minute field 60 is out of range 0-59"),
        ("0 0 * * 8L", "day-of-week field 8 is out of range 0-7"),
        ("060 * * * *", "minute field 060 is out of range 0-59"),
        ("1" * 20 + " * * * *", "minute field " + "1" * 20 + " is out of range 0-59"),
        ("* * * * " + "1" * 5000, "day-of-week field " + "1" * 5000 + " is out of range 0-7"),
        (
            "* * * * mon#" + "1" * 5000,
            "day-of-week field 'mon#" + "1" * 5000 + "': occurrence must be 1-5",
        ),
        (
            "* * * * * *",
            "expected 5 fields (minute hour day-of-month month day-of-week), got 6",
        ),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("* * * foo *", "unknown month name 'foo'"),
        ("* * * January *", "unknown month name 'January'"),
        ("* * * * funday", "unknown day-of-week name 'funday'"),
        ("* * * jan-foo *", "unknown month name 'foo'"),
        ("*/0 * * * *", "minute field step must be >= 1, got 0"),
        ("* 1-5/0 * * *", "hour field step must be >= 1, got 0"),
        ("*/x * * * *", "minute field step 'x' is not a number"),
        ("5-2 * * * *", "minute field range 5-2 is reversed"),
        ("* * * * fri-mon", "day-of-week field range fri-mon is reversed"),
        ("* * * dec-jan *", "month field range dec-jan is reversed"),
        ("a * * * *", "minute field value 'a' is not a number"),
        ("* mon * * *", "hour field value 'mon' is not a number"),
        ("* * 15W * *", "day-of-month field value '15W' is not a number"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
        ("1, * * * *", "minute field '1,' has an empty list item"),
        ("-5 * * * *", "minute field item '-5' is malformed"),
        ("1-2-3 * * * *", "minute field item '1-2-3' is malformed"),
        ("*-5 * * * *", "minute field item '*-5' is malformed"),
        ("? * * * *", "minute field item '?' is malformed"),
        ("* * * * MON#6", "day-of-week field 'MON#6': occurrence must be 1-5"),
        ("* * * * 1#0", "day-of-week field '1#0': occurrence must be 1-5"),
        ("* * * * mon#x", "day-of-week field 'mon#x': occurrence must be 1-5"),
        ("* * * * L", "unknown day-of-week name 'L'"),
        ("@reboot", "@reboot is not supported; use the startup schedule type"),
        ("@REBOOT", "@reboot is not supported; use the startup schedule type"),
        ("@weekly 5", "alias @weekly cannot be followed by other fields"),
        (
            "@fortnightly",
            (
                "unknown alias '@fortnightly'; expected one of "
                "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
            ),
        ),
    ],
)
def test_invalid_expressions_name_the_field_and_rule(expression: str, message: str) -> None:
    assert invalid_message(expression) == message


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 30 2 *", "never fires: day 30 does not occur in February"),
        ("0 0 31 4 *", "never fires: day 31 does not occur in April"),
        ("0 0 30,31 feb *", "never fires: day 30 or 31 does not occur in February"),
        ("0 0 31 2,4,6 *", "never fires: day 31 does not occur in February, April or June"),
        ("0 0 31 2 */2", "never fires: day 31 does not occur in February"),
        (
            "0 0 */31 * 1#5",
            "never fires: no day matches both the day-of-month and day-of-week fields",
        ),
        (
            "0 0 */20 * 1#2",
            "never fires: no day matches both the day-of-month and day-of-week fields",
        ),
    ],
)
def test_expressions_that_never_fire_are_rejected(expression: str, message: str) -> None:
    assert invalid_message(expression) == message


@pytest.mark.parametrize(
    "expression",
    ["0 0 29 2 *", "0 0 30 2 1", "0 0 31 4,5 *", "0 0 L 2 *", "0 0 * 2 mon#5", "0 0 31 * 5L"],
)
def test_expressions_that_fire_rarely_are_accepted(expression: str) -> None:
    assert cs.parse_cron(expression).expression == expression


def test_error_carries_the_schedule_field() -> None:
    with pytest.raises(cs.Invalid) as caught:
        cs.parse_cron("61 * * * *")
    assert caught.value.field == "schedule.expression"
    assert str(caught.value) == "schedule.expression: minute field 61 is out of range 0-59"


def test_error_carries_a_caller_chosen_field() -> None:
    with pytest.raises(cs.Invalid) as caught:
        cs.parse_cron("0 0 30 2 *", field="tasks.schedule.expression")
    assert caught.value.field == "tasks.schedule.expression"
    assert caught.value.message == "never fires: day 30 does not occur in February"


# Next fire times in UTC


def test_every_minute_is_strictly_after() -> None:
    assert fires("* * * * *", utc(2026, 5, 13, 12, 0)) == [utc(2026, 5, 13, 12, 1)]
    after = utc(2026, 5, 13, 12, 0, 30)
    assert fires("* * * * *", after, count=2) == [utc(2026, 5, 13, 12, 1), utc(2026, 5, 13, 12, 2)]


def test_a_fire_time_equal_to_after_is_not_returned() -> None:
    assert fires("0 9 * * *", utc(2026, 5, 13, 9)) == [utc(2026, 5, 14, 9)]
    assert fires("0 9 * * *", utc(2026, 5, 13, 8, 59, 59, 999999)) == [utc(2026, 5, 13, 9)]


def test_steps_ranges_and_lists() -> None:
    assert fires("*/15 * * * *", utc(2026, 5, 13, 23, 50), count=3) == [
        utc(2026, 5, 14, 0, 0),
        utc(2026, 5, 14, 0, 15),
        utc(2026, 5, 14, 0, 30),
    ]
    assert fires("10-40/15 8-9 * * *", utc(2026, 5, 13, 8, 30), count=4) == [
        utc(2026, 5, 13, 8, 40),
        utc(2026, 5, 13, 9, 10),
        utc(2026, 5, 13, 9, 25),
        utc(2026, 5, 13, 9, 40),
    ]
    assert fires("0 6,18 * * *", utc(2026, 5, 13, 12), count=3) == [
        utc(2026, 5, 13, 18),
        utc(2026, 5, 14, 6),
        utc(2026, 5, 14, 18),
    ]


def test_year_rolls_over() -> None:
    assert fires("59 23 31 12 *", utc(2026, 12, 31, 23, 59)) == [utc(2027, 12, 31, 23, 59)]
    assert fires("0 0 1 jan *", utc(2026, 12, 31, 23, 59)) == [utc(2027, 1, 1)]


def test_names_and_numbers_give_the_same_times() -> None:
    after = utc(2026, 1, 1)
    assert fires("0 9 * jun-aug mon-fri", after, count=5) == fires("0 9 * 6-8 1-5", after, count=5)
    assert fires("0 9 * JUN * ", after) == [utc(2026, 6, 1, 9)]


def test_sunday_as_0_and_as_7() -> None:
    after = utc(2026, 5, 13)
    expected = [utc(2026, 5, 17, 12), utc(2026, 5, 24, 12)]
    assert fires("0 12 * * 0", after, count=2) == expected
    assert fires("0 12 * * 7", after, count=2) == expected
    assert fires("0 12 * * sun", after, count=2) == expected
    assert fires("0 12 * * 5-7", after, count=3) == [
        utc(2026, 5, 15, 12),
        utc(2026, 5, 16, 12),
        utc(2026, 5, 17, 12),
    ]


def test_month_ends_skip_short_months() -> None:
    assert fires("0 0 31 * *", utc(2026, 1, 31), count=4) == [
        utc(2026, 3, 31),
        utc(2026, 5, 31),
        utc(2026, 7, 31),
        utc(2026, 8, 31),
    ]
    assert fires("0 0 30 * *", utc(2026, 1, 30), count=2) == [utc(2026, 3, 30), utc(2026, 4, 30)]


def test_february_29_fires_on_leap_years_only() -> None:
    assert fires("0 0 29 2 *", utc(2026, 1, 1), count=2) == [utc(2028, 2, 29), utc(2032, 2, 29)]
    assert fires("0 0 29 2 *", utc(2096, 3, 1)) == [utc(2104, 2, 29)]


def test_last_day_of_month() -> None:
    assert fires("0 0 L * *", utc(2026, 1, 15), count=4) == [
        utc(2026, 1, 31),
        utc(2026, 2, 28),
        utc(2026, 3, 31),
        utc(2026, 4, 30),
    ]
    assert fires("0 0 L 2 *", utc(2027, 3, 1)) == [utc(2028, 2, 29)]


def test_last_workday_of_month() -> None:
    assert fires("0 0 LW * *", utc(2026, 1, 1), count=5) == [
        utc(2026, 1, 30),
        utc(2026, 2, 27),
        utc(2026, 3, 31),
        utc(2026, 4, 30),
        utc(2026, 5, 29),
    ]


def test_last_weekday_of_month() -> None:
    expected = [utc(2026, 1, 30, 9), utc(2026, 2, 27, 9), utc(2026, 3, 27, 9)]
    assert fires("0 9 * * 5L", utc(2026, 1, 1), count=3) == expected
    assert fires("0 9 * * friL", utc(2026, 1, 1), count=3) == expected
    assert fires("0 9 * * 0L", utc(2026, 1, 1), count=2) == [
        utc(2026, 1, 25, 9),
        utc(2026, 2, 22, 9),
    ]


def test_nth_weekday_of_month() -> None:
    assert fires("30 9 * * MON#2", utc(2026, 1, 1), count=3) == [
        utc(2026, 1, 12, 9, 30),
        utc(2026, 2, 9, 9, 30),
        utc(2026, 3, 9, 9, 30),
    ]
    assert fires("0 0 * * sun#1", utc(2026, 1, 1), count=2) == [utc(2026, 1, 4), utc(2026, 2, 1)]


def test_fifth_weekday_skips_months_without_one() -> None:
    assert fires("0 9 * * 1#5", utc(2026, 1, 1), count=4) == [
        utc(2026, 3, 30, 9),
        utc(2026, 6, 29, 9),
        utc(2026, 8, 31, 9),
        utc(2026, 11, 30, 9),
    ]


def test_fifth_monday_of_february_waits_decades() -> None:
    assert fires("0 0 * 2 mon#5", utc(2026, 1, 1), count=2) == [utc(2044, 2, 29), utc(2072, 2, 29)]


def test_vixie_rule_either_day_field_matches_when_both_are_restricted() -> None:
    assert fires("0 0 1 * 1", utc(2026, 1, 1), count=6) == [
        utc(2026, 1, 5),
        utc(2026, 1, 12),
        utc(2026, 1, 19),
        utc(2026, 1, 26),
        utc(2026, 2, 1),
        utc(2026, 2, 2),
    ]


def test_vixie_rule_with_a_full_day_of_month_range_fires_every_day() -> None:
    assert fires("0 0 1-31 * 1", utc(2026, 1, 1), count=2) == [utc(2026, 1, 2), utc(2026, 1, 3)]


def test_unrestricted_day_of_month_means_only_the_weekday_counts() -> None:
    assert fires("0 0 * * 1", utc(2026, 1, 1), count=2) == [utc(2026, 1, 5), utc(2026, 1, 12)]
    assert fires("0 0 1 * *", utc(2026, 1, 1), count=2) == [utc(2026, 2, 1), utc(2026, 3, 1)]


def test_star_step_day_of_month_counts_as_unrestricted_so_both_must_match() -> None:
    assert fires("0 0 */2 * 1", utc(2026, 1, 1), count=4) == [
        utc(2026, 1, 5),
        utc(2026, 1, 19),
        utc(2026, 2, 9),
        utc(2026, 2, 23),
    ]


def test_star_step_day_of_week_counts_as_unrestricted_so_both_must_match() -> None:
    assert fires("0 0 1 * */2", utc(2026, 1, 1), count=4) == [
        utc(2026, 2, 1),
        utc(2026, 3, 1),
        utc(2026, 8, 1),
        utc(2026, 9, 1),
    ]


def test_vixie_rule_with_extras() -> None:
    assert fires("0 0 31 * 5L", utc(2026, 1, 1), count=4) == [
        utc(2026, 1, 30),
        utc(2026, 1, 31),
        utc(2026, 2, 27),
        utc(2026, 3, 27),
    ]
    assert fires("0 0 29 2 1", utc(2026, 1, 1), count=2) == [utc(2026, 2, 2), utc(2026, 2, 9)]
    assert fires("0 0 29 2 1", utc(2027, 2, 22)) == [utc(2028, 2, 7)]


# Time zones without DST


def test_fixed_offset_zones() -> None:
    assert fires("0 9 * * *", utc(2026, 2, 28, 23), TOKYO) == [utc(2026, 3, 1, 0)]
    assert fires("0 9 * * *", utc(2026, 3, 1, 0), TOKYO) == [utc(2026, 3, 2, 0)]
    assert fires("0 9 * * *", utc(2026, 3, 29), KOLKATA) == [utc(2026, 3, 29, 3, 30)]
    assert fires("0 0 1 * *", utc(2026, 1, 15), TOKYO) == [utc(2026, 1, 31, 15)]


def test_utc_zone() -> None:
    assert fires("30 2 * * *", utc(2026, 3, 29), ZONE_UTC, count=2) == [
        utc(2026, 3, 29, 2, 30),
        utc(2026, 3, 30, 2, 30),
    ]


def test_local_day_fields_use_the_local_date() -> None:
    assert fires("0 0 * * 1", utc(2026, 5, 13), NEW_YORK) == [utc(2026, 5, 18, 4)]
    assert fires("0 23 L * *", utc(2026, 4, 1), SYDNEY) == [utc(2026, 4, 30, 13)]


# DST: Europe/Amsterdam (2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00)


def test_amsterdam_fixed_job_in_the_gap_fires_once_at_the_end_of_the_gap() -> None:
    assert local_fires("30 2 * * *", datetime(2026, 3, 28, 12, tzinfo=AMSTERDAM), AMSTERDAM, 3) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert fires("30 2 * * *", utc(2026, 3, 28, 12), AMSTERDAM) == [utc(2026, 3, 29, 1)]


def test_amsterdam_two_gap_times_on_one_day_fire_once() -> None:
    assert local_fires("0,30 2 * * *", utc(2026, 3, 28, 12), AMSTERDAM, 3) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_amsterdam_gap_time_and_the_time_after_the_gap_fire_once_together() -> None:
    assert local_fires("0 2,3 * * *", utc(2026, 3, 28, 12), AMSTERDAM, 3) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:00:00+02:00",
        "2026-03-30T03:00:00+02:00",
    ]
    assert local_fires("30 2,3 * * *", utc(2026, 3, 28, 12), AMSTERDAM, 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]


def test_amsterdam_fixed_job_after_the_transition_instant_waits_a_day() -> None:
    assert fires("30 2 * * *", utc(2026, 3, 29, 1)) != fires("30 2 * * *", utc(2026, 3, 29, 1), AMSTERDAM)
    assert fires("30 2 * * *", utc(2026, 3, 29, 1), AMSTERDAM) == [utc(2026, 3, 30, 0, 30)]


def test_amsterdam_hourly_job_skips_the_missing_hour() -> None:
    assert local_fires("0 * * * *", utc(2026, 3, 28, 23, 30), AMSTERDAM, 3) == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]
    assert fires("0 * * * *", utc(2026, 3, 28, 23, 30), AMSTERDAM, 3) == [
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 2),
    ]


def test_amsterdam_wildcard_job_in_the_gap_hour_does_not_fire_that_day() -> None:
    assert local_fires("*/30 2 * * *", utc(2026, 3, 28, 12), AMSTERDAM, 2) == [
        "2026-03-30T02:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_amsterdam_fixed_job_in_the_repeated_hour_fires_once() -> None:
    assert local_fires("30 2 * * *", utc(2026, 10, 24, 12), AMSTERDAM, 2) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    second_pass = utc(2026, 10, 25, 0, 45)
    assert fires("30 2 * * *", second_pass, AMSTERDAM) == [utc(2026, 10, 26, 1, 30)]


def test_amsterdam_hourly_job_fires_twice_in_the_repeated_hour() -> None:
    assert local_fires("0 * * * *", utc(2026, 10, 24, 22, 30), AMSTERDAM, 4) == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]
    assert fires("0 * * * *", utc(2026, 10, 24, 23, 30), AMSTERDAM, 2) == [
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 1),
    ]


def test_amsterdam_wildcard_job_inside_the_repeated_hour_fires_in_both_passes() -> None:
    assert local_fires("*/20 2 * * *", utc(2026, 10, 24, 12), AMSTERDAM, 7) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:20:00+02:00",
        "2026-10-25T02:40:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:20:00+01:00",
        "2026-10-25T02:40:00+01:00",
        "2026-10-26T02:00:00+01:00",
    ]


def test_amsterdam_every_minute_follows_real_elapsed_time_across_both_changes() -> None:
    for start in (utc(2026, 3, 28, 23), utc(2026, 10, 24, 23)):
        times = fires("* * * * *", start, AMSTERDAM, 240)
        assert times == [start + timedelta(minutes=n) for n in range(1, 241)]


def test_amsterdam_daily_fixed_job_fires_once_per_local_day_for_a_year() -> None:
    times = fires("30 2 * * *", utc(2026, 1, 1), AMSTERDAM, 365)
    local_days = [moment.astimezone(AMSTERDAM).date() for moment in times]
    assert len(set(local_days)) == 365
    assert times[-1] == utc(2026, 12, 31, 1, 30)


# DST: America/New_York (2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00)


def test_new_york_fixed_job_in_the_gap() -> None:
    assert local_fires("30 2 * * *", utc(2026, 3, 7, 12), NEW_YORK, 2) == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]
    assert fires("15,45 2 * * *", utc(2026, 3, 7, 12), NEW_YORK, 2) == [
        utc(2026, 3, 8, 7),
        utc(2026, 3, 9, 6, 15),
    ]


def test_new_york_hourly_job_in_the_gap() -> None:
    assert local_fires("0 * * * *", utc(2026, 3, 8, 6, 30), NEW_YORK, 2) == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_new_york_fixed_job_in_the_repeated_hour_fires_once() -> None:
    assert local_fires("30 1 * * *", utc(2026, 10, 31, 12), NEW_YORK, 2) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]
    assert fires("30 1 * * *", utc(2026, 11, 1, 5, 45), NEW_YORK) == [utc(2026, 11, 2, 6, 30)]


def test_new_york_hourly_job_fires_twice_in_the_repeated_hour() -> None:
    assert fires("0 * * * *", utc(2026, 11, 1, 4, 30), NEW_YORK, 3) == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 7),
    ]
    assert local_fires("30 * * * *", utc(2026, 11, 1, 4, 45), NEW_YORK, 3) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]


# DST: Australia/Sydney (2026-04-05 03:00 -> 02:00, 2026-10-04 02:00 -> 03:00)


def test_sydney_fixed_job_in_the_repeated_hour_fires_once() -> None:
    assert local_fires("30 2 * * *", utc(2026, 4, 4, 0), SYDNEY, 2) == [
        "2026-04-05T02:30:00+11:00",
        "2026-04-06T02:30:00+10:00",
    ]
    assert fires("30 2 * * *", utc(2026, 4, 4, 0), SYDNEY) == [utc(2026, 4, 4, 15, 30)]


def test_sydney_hourly_job_fires_twice_in_the_repeated_hour() -> None:
    assert local_fires("0 * * * *", utc(2026, 4, 4, 14, 30), SYDNEY, 3) == [
        "2026-04-05T02:00:00+11:00",
        "2026-04-05T02:00:00+10:00",
        "2026-04-05T03:00:00+10:00",
    ]


def test_sydney_fixed_job_in_the_gap_fires_at_the_end_of_the_gap() -> None:
    assert local_fires("30 2 * * *", utc(2026, 10, 3, 0), SYDNEY, 2) == [
        "2026-10-04T03:00:00+11:00",
        "2026-10-05T02:30:00+11:00",
    ]
    assert fires("0,59 2 * * *", utc(2026, 10, 3, 0), SYDNEY, 2) == [
        utc(2026, 10, 3, 16),
        utc(2026, 10, 4, 15),
    ]


def test_sydney_hourly_job_skips_the_missing_hour() -> None:
    assert local_fires("0 * * * *", utc(2026, 10, 3, 14, 30), SYDNEY, 2) == [
        "2026-10-04T01:00:00+10:00",
        "2026-10-04T03:00:00+11:00",
    ]


# DST: a repeated span that crosses midnight (America/Moncton, 2006-10-29 00:01 -> 23:01)


def test_repeated_span_across_midnight_fires_the_previous_days_times_again() -> None:
    moncton = ZoneInfo("America/Moncton")
    assert local_fires("*/30 * * * *", utc(2006, 10, 29, 3, 0, 30), moncton, 3) == [
        "2006-10-28T23:30:00-04:00",
        "2006-10-29T00:00:00-04:00",
        "2006-10-29T00:30:00-04:00",
    ]
    assert fires("* * * * *", utc(2006, 10, 29, 2, 58), moncton, 3) == [
        utc(2006, 10, 29, 2, 59),
        utc(2006, 10, 29, 3, 0),
        utc(2006, 10, 29, 3, 1),
    ]
    assert local_fires("30 23 * * *", utc(2006, 10, 29, 2), moncton, 2) == [
        "2006-10-28T23:30:00-03:00",
        "2006-10-29T23:30:00-04:00",
    ]


# Results: aware UTC, strictly after, ordered; input validation


@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "*/7 1-3 * * *", "30 2 * * *", "0 0 L * 5L", "0 12 * * MON#2", "@hourly"],
)
@pytest.mark.parametrize("tz", [AMSTERDAM, NEW_YORK, SYDNEY, TOKYO, ZONE_UTC])
def test_results_are_utc_aware_strictly_increasing_and_after_the_start(expression: str, tz: ZoneInfo) -> None:
    after = datetime(2026, 3, 27, 13, 7, 42, tzinfo=tz)
    times = cs.cron_next_times(cs.parse_cron(expression), after, tz, 50)
    assert len(times) == 50
    assert all(moment.tzinfo is UTC for moment in times)
    assert times[0] > after
    assert all(earlier < later for earlier, later in itertools.pairwise(times))


def test_after_may_be_given_in_any_zone() -> None:
    spec = cs.parse_cron("0 9 * * *")
    in_utc = cs.cron_next(spec, utc(2026, 5, 13, 6), NEW_YORK)
    in_tokyo = cs.cron_next(spec, utc(2026, 5, 13, 6).astimezone(TOKYO), NEW_YORK)
    assert in_utc == in_tokyo == utc(2026, 5, 13, 13)


def test_naive_after_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cs.cron_next(cs.parse_cron("* * * * *"), datetime(2026, 1, 1), ZONE_UTC)


def test_zero_count_gives_no_times() -> None:
    assert cs.cron_next_times(cs.parse_cron("* * * * *"), utc(2026, 1, 1), ZONE_UTC, 0) == []


def test_rare_expressions_are_found_quickly() -> None:
    after = utc(2026, 1, 1)
    assert fires("0 0 29 2 1", after, count=200)[-1] == utc(2072, 2, 29)
    assert fires("0 0 31 * 5L", after, count=200)[-1] == utc(2037, 1, 31)
    assert fires("0 0 29 2 *", after, count=19)[-2:] == [utc(2096, 2, 29), utc(2104, 2, 29)]


# Descriptions


@pytest.mark.parametrize(
    ("expression", "description"),
    [
        ("0 9 * * 1,5", "At 09:00 on Monday and Friday"),
        ("*/15 * * * *", "Every 15 minutes"),
        ("5 * * * *", "At minute 5 past every hour"),
        ("0 0 L * *", "At 00:00 on the last day of the month"),
        ("30 9 * * MON#2", "At 09:30 on the second Monday of the month"),
        ("0 8 * * 1-5", "At 08:00, Monday through Friday"),
        ("0 0 1 1 *", "At 00:00 on day 1 of the month in January"),
        ("* * * * *", "Every minute"),
        ("@hourly", "At minute 0 past every hour"),
        ("@daily", "At 00:00"),
        ("@weekly", "At 00:00 on Sunday"),
        ("@monthly", "At 00:00 on day 1 of the month"),
        ("@yearly", "At 00:00 on day 1 of the month in January"),
        ("0 9 * * 5L", "At 09:00 on the last Friday of the month"),
        ("0 18 * * fri#1,fri#3", "At 18:00 on the first Friday and the third Friday of the month"),
        ("0 0 LW * *", "At 00:00 on the last weekday of the month"),
        ("0 0 15,L * *", "At 00:00 on day 15 and the last day of the month"),
        ("0 9,17 * * *", "At 09:00 and 17:00"),
        ("15,45 6 * * *", "At 06:15 and 06:45"),
        ("*/15 9-17 * * 1-5", "Every 15 minutes from 09:00 through 17:45, Monday through Friday"),
        ("0 9-17 * * *", "At minute 0 past every hour from 09:00 through 17:00"),
        ("* 9 * * *", "Every minute from 09:00 through 09:59"),
        ("0-10 9 * * *", "At minutes 0 through 10 past hour 9"),
        ("0 */2 * * *", "At minute 0 past every 2nd hour"),
        ("*/10 */6 * * *", "Every 10 minutes during every 6th hour"),
        ("0,30 * * * *", "Every 30 minutes"),
        ("0,20 * * * *", "At minutes 0 and 20 past every hour"),
        ("*/7 * * * *", "At every 7th minute"),
        ("5 1,3,5,7,9,11,13 * * *", "At minute 5 past hours 1, 3, 5, 7, 9, 11 and 13"),
        ("0 0 1,15 * *", "At 00:00 on days 1 and 15 of the month"),
        ("0 0 1-7 * *", "At 00:00 on days 1 through 7 of the month"),
        ("0 0 */2 * *", "At 00:00 on every 2nd day of the month"),
        ("0 0 13 * 5", "At 00:00 on day 13 of the month or on Friday"),
        ("0 0 1 * 1,3", "At 00:00 on day 1 of the month or on Monday or Wednesday"),
        ("0 0 */2 * 1", "At 00:00 on every 2nd day of the month if it is Monday"),
        ("0 0 1-31 * 1", "At 00:00"),
        ("0 0 * * 6,0", "At 00:00 on Saturday and Sunday"),
        ("0 0 * * 5-7", "At 00:00, Friday through Sunday"),
        ("0 0 * * 1-3,5", "At 00:00 on Monday through Wednesday and Friday"),
        ("0 0 1 jan-mar *", "At 00:00 on day 1 of the month in January through March"),
        ("0 12 1 */3 *", "At 12:00 on day 1 of the month in January, April, July and October"),
        ("0 0 29 2 *", "At 00:00 on day 29 of the month in February"),
        ("0 0 L * 5L", "At 00:00 on the last day of the month or on the last Friday of the month"),
    ],
)
def test_descriptions(expression: str, description: str) -> None:
    assert cs.cron_describe(cs.parse_cron(expression)) == description


@pytest.mark.parametrize("minute", ["*", "0", "*/5", "1,2,3,4,5,6,7", "0-30/3", "59"])
@pytest.mark.parametrize("hour", ["*", "0", "9-17", "*/4", "1,13", "0-23/5"])
@pytest.mark.parametrize("day", ["*", "1", "L", "LW", "*/3", "1-5,L"])
@pytest.mark.parametrize("weekday", ["*", "1", "1-5", "5L", "MON#2", "*/2,1#1"])
def test_every_form_has_a_description(minute: str, hour: str, day: str, weekday: str) -> None:
    text = cs.cron_describe(cs.parse_cron(f"{minute} {hour} {day} */2 {weekday}"))
    assert text.startswith(("At ", "Every "))
    assert text.endswith(" in January, March, May, July, September and November")
