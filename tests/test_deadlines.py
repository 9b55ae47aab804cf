"""Deadline arithmetic against cases worked out by hand.

Facts used (looked up once with chinese_calendar.get_holidays / get_workdays for 2026 and
hard-coded here; weekday names from the calendar):
  New Year        2026-01-01 Thu – 01-03 Sat off; Sun 2026-01-04 is a make-up working day
  Spring Festival 2026-02-15 Sun – 02-23 Mon off; make-up Saturdays 02-14 and 02-28
  Mid-Autumn      2026-09-25 Fri – 09-27 Sun off; Sun 2026-09-20 is a make-up working day
  National Day    2026-10-01 Thu – 10-07 Wed off; Sat 2026-10-10 is a make-up working day
  November 2026 has no holidays: Fri 11-20, Sat 11-21, Mon 11-23, Tue 11-24, Wed 11-25.
  2027 is past chinese-calendar 1.11's data: 2027-01-01 is a Friday, 02-05 Fri, 02-07 Sun.
Working hours: 8:30–12:00 (210 min) and 13:30–17:30 (240 min): 450 min a working day.
No database is needed here.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app.config import ConfigError, load_settings
from bot.core.clock import CHINA_TZ
from bot.rules import deadlines, rulebook
from bot.rules.deadlines import Allowance, Rules
from tests.world import mst_in_process

MST = Path(sys.executable).parent / "mst"


def cn(text: str) -> datetime:
    """'2026-09-30 16:00' China time, aware."""
    return datetime.fromisoformat(text).replace(tzinfo=CHINA_TZ)


@pytest.fixture
def work() -> deadlines.Deadlines:
    """The working time a process builds at start-up with no holiday file and no rules file."""
    return deadlines.load()


def write(path: Path, content: Any) -> Path:
    path.write_text(
        content if isinstance(content, str) else json.dumps(content, ensure_ascii=False),
        encoding="utf-8",
    )
    return path


# -- working-day allowances, default table -------------------------------------------------

DAY_CASES = [
    # (kind, which, came in (China time), due (China time))
    # National Day: Oct 1–7 off; Thu Oct 8 is working day 1, Fri Oct 9 is 2.
    ("question", "reply", "2026-09-30 16:00", "2026-10-09 17:30"),
    # 10 working days: Oct 8 (1), 9 (2), Sat 10 make-up (3), Mon 12 (4), 13 (5), 14 (6),
    # 15 (7), Fri 16 (8), Mon 19 (9), Tue 20 (10).
    ("question", "close", "2026-09-30 16:00", "2026-10-20 17:30"),
    # 5 working days: Oct 8, 9, Sat 10 (make-up), Mon 12, Tue 13.
    ("complaint", "reply", "2026-09-30 16:00", "2026-10-13 17:30"),
    # The make-up Saturday Oct 10 is the next working day after Fri Oct 9.
    ("asset_lead", "reply", "2026-10-09 11:00", "2026-10-10 17:30"),
    # Spring Festival: Sat Feb 14 make-up (1), Feb 15–23 off, Tue Feb 24 (2).
    ("question", "reply", "2026-02-13 10:00", "2026-02-24 17:30"),
    # Feb 14 (1), 24 (2), 25 (3), 26 (4), Fri 27 (5).
    ("complaint", "reply", "2026-02-13 10:00", "2026-02-27 17:30"),
    # Feb 14 (1), 24–27 (2–5), Sat Feb 28 make-up (6), Mar 2–6 (7–11), Mar 9–12 (12–15).
    ("complaint", "close", "2026-02-13 10:00", "2026-03-12 17:30"),
    # Make-up Sunday Sep 20 is the next working day after Saturday Sep 19.
    ("asset_lead", "reply", "2026-09-19 14:00", "2026-09-20 17:30"),
    # Mid-Autumn: Fri Sep 25 – Sun 27 off; Mon 28 (1), Tue 29 (2).
    ("question", "reply", "2026-09-24 09:00", "2026-09-29 17:30"),
    # New Year: Jan 1–3 off; make-up Sunday Jan 4 (1), Mon Jan 5 (2). Crosses 2025→2026.
    ("question", "reply", "2025-12-31 15:00", "2026-01-05 17:30"),
    # Friday-afternoon question: Sat/Sun off; Mon 23 (1), Tue 24 (2).
    ("question", "reply", "2026-11-20 15:00", "2026-11-24 17:30"),
    # Came in on a Saturday: counting starts the day after, Mon 23 (1), Tue 24 (2).
    ("question", "reply", "2026-11-21 10:00", "2026-11-24 17:30"),
    # Came in on a Tuesday evening: the start day never counts; Wed 25 (1), Thu 26 (2).
    ("question", "reply", "2026-11-24 20:00", "2026-11-26 17:30"),
    # Mediation closes in 5: Mon 23, 24, 25, 26, Fri 27.
    ("mediation", "close", "2026-11-20 15:00", "2026-11-27 17:30"),
    # Mediation first reply 1: Fri 11-20 afternoon → Mon 23.
    ("mediation", "reply", "2026-11-20 16:45", "2026-11-23 17:30"),
]


@pytest.mark.parametrize(("kind", "which", "start", "expected"), DAY_CASES)
def test_working_day_allowances(
    kind: str, which: str, start: str, expected: str, work: deadlines.Deadlines
) -> None:
    got = work.due(kind, cn(start), which=which)  # type: ignore[arg-type]
    assert got == cn(expected)
    assert got.tzinfo == UTC


# -- working-hour allowances (a court that counts in hours) --------------------------------

HOUR_CASES = [
    # (allowance, came in, due)
    # Across lunch: 11:00–12:00 is 60 min, the other 60 from 13:30.
    ("2h", "2026-11-24 11:00", "2026-11-24 14:30"),
    # Across a weekend: Fri 16:00–17:30 is 90 min; 150 left from Mon 8:30 → 11:00.
    ("4h", "2026-11-20 16:00", "2026-11-23 11:00"),
    # Across National Day: Wed 16:00–17:30 is 90; Oct 1–7 off; Oct 8 8:30 + 150 → 11:00.
    ("4h", "2026-09-30 16:00", "2026-10-08 11:00"),
    # Used up exactly at the end of the day: due 17:30 that day, not 8:30 the next.
    ("4h", "2026-11-24 13:30", "2026-11-24 17:30"),
    # A working day is 7.5 h: 8 h from Tue 8:30 leaves 30 min for Wed → 9:00.
    ("8h", "2026-11-24 08:30", "2026-11-25 09:00"),
    # Evening start: counting begins Wed 8:30; 210 min to 12:00, 30 more → 14:00.
    ("4h", "2026-11-24 20:00", "2026-11-25 14:00"),
    # Weekend start: counting begins Mon 8:30; the same 210 + 30 → 14:00.
    ("4h", "2026-11-21 10:00", "2026-11-23 14:00"),
    # During lunch: counting begins 13:30 → 14:30.
    ("1h", "2026-11-24 12:30", "2026-11-24 14:30"),
    # Before the day starts: counting begins 8:30 → 9:30.
    ("1h", "2026-11-24 07:00", "2026-11-24 09:30"),
    # The make-up Saturday counts: Fri Oct 9 16:00 → 90 min, Sat Oct 10 8:30 + 150 → 11:00.
    ("4h", "2026-10-09 16:00", "2026-10-10 11:00"),
    # Make-up Saturday Feb 14: Fri 17:00–17:30 is 30 min; Sat 8:30 + 90 → 10:00.
    ("2h", "2026-02-13 17:00", "2026-02-14 10:00"),
    # Across Spring Festival: Sat Feb 14 16:00 → 90 min; Feb 15–23 off; Feb 24 8:30 + 150.
    ("4h", "2026-02-14 16:00", "2026-02-24 11:00"),
]

HOURS_COURT = "按小时计算的法院"


@pytest.mark.parametrize(("allowance", "start", "expected"), HOUR_CASES)
def test_working_hour_allowances(
    allowance: str, start: str, expected: str, work: deadlines.Deadlines
) -> None:
    rules = Rules(courts={HOURS_COURT: {"question": {"reply": Allowance.parse(allowance)}}})
    got = work.due("question", cn(start), court=HOURS_COURT, rules=rules)
    assert got == cn(expected)
    assert got.tzinfo == UTC


# -- past the calendar's data: 2027 ----------------------------------------------------------

HOLIDAYS_2027 = {
    "off": ["2027-01-01", "2027-02-08", "2027-02-09", "2027-02-10", "2027-02-11", "2027-02-12"],
    "work": ["2027-02-07"],
}

WITH_FILE = [
    # Thu 2026-12-31 (official data) → Fri 2027-01-01 off by the file, weekend,
    # Mon Jan 4 (1), Tue Jan 5 (2).
    ("2d", "2026-12-31 10:00", "2027-01-05 17:30"),
    # Fri 2027-02-05 → Sat 6 off (plain weekend), Sun 7 extra working day (1),
    # Feb 8–12 off by the file, weekend 13/14, Mon 15 (2).
    ("2d", "2027-02-05 10:00", "2027-02-15 17:30"),
    # Hours: Fri Feb 5 16:00–17:30 is 90 min; Sun Feb 7 (extra working day) 8:30 + 150.
    ("4h", "2027-02-05 16:00", "2027-02-07 11:00"),
]

WITHOUT_FILE = [
    # Monday–Friday guess: Fri 2027-01-01 counts (1), weekend, Mon Jan 4 (2).
    ("2d", "2026-12-31 10:00", "2027-01-04 17:30"),
    # Mon Feb 8 (1), Tue Feb 9 (2): no holidays known.
    ("2d", "2027-02-05 10:00", "2027-02-09 17:30"),
    # Fri 90 min, Sat/Sun off (Sun Feb 7 is not known to be a working day), Mon 8:30 + 150.
    ("4h", "2027-02-05 16:00", "2027-02-08 11:00"),
]


def _due(work: deadlines.Deadlines, allowance: str, start: str) -> datetime:
    rules = Rules(courts={"法院": {"question": {"reply": Allowance.parse(allowance)}}})
    return work.due("question", cn(start), court="法院", rules=rules)


@pytest.mark.parametrize(("allowance", "start", "expected"), WITH_FILE)
def test_2027_with_a_holiday_file(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    allowance: str,
    start: str,
    expected: str,
    work: deadlines.Deadlines,
) -> None:
    work = deadlines.load(holidays_file=write(tmp_path / "holidays.json", HOLIDAYS_2027))
    with caplog.at_level(logging.WARNING, logger="bot.rules.deadlines"):
        assert _due(work, allowance, start) == cn(expected)
    assert work.calendar_warnings() == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("allowance", "start", "expected"), WITHOUT_FILE)
def test_2027_without_a_holiday_file(
    allowance: str, start: str, expected: str, work: deadlines.Deadlines
) -> None:
    assert _due(work, allowance, start) == cn(expected)
    assert work.calendar_warnings() == [
        "2027年没有官方节假日数据，暂按周一至周五计算工作日（可在 MST_HOLIDAYS_FILE 中补充本院节假日）"
    ]


def test_the_fallback_is_said_once_per_year(
    caplog: pytest.LogCaptureFixture, work: deadlines.Deadlines
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.rules.deadlines"):
        for _ in range(3):
            work.due("question", cn("2027-02-05 10:00"), which="close")
            work.is_workday(date(2027, 7, 1))
        work.is_workday(date(2028, 1, 3))
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([m for m in said if "2027" in m]) == 1
    assert len([m for m in said if "2028" in m]) == 1
    assert len(said) == 2
    assert [w[:4] for w in work.calendar_warnings()] == ["2027", "2028"]
    # Official years never warn.
    work.due("question", cn("2026-09-30 16:00"))
    assert len(work.calendar_warnings()) == 2


def test_a_holiday_file_covers_only_its_years(tmp_path: Path, work: deadlines.Deadlines) -> None:
    work = deadlines.load(holidays_file=write(tmp_path / "h.json", HOLIDAYS_2027))
    assert work.is_workday(date(2027, 2, 7))  # Sunday, declared a working day
    assert not work.is_workday(date(2027, 1, 1))  # Friday, declared off
    assert work.is_workday(date(2027, 3, 1))  # covered year, plain Monday: no warning
    assert work.calendar_warnings() == []
    assert work.is_workday(date(2028, 1, 3))  # not covered: the Monday–Friday guess
    assert work.calendar_warnings()[0].startswith("2028年没有官方节假日数据")


def test_the_official_calendar(work: deadlines.Deadlines) -> None:
    # Spot checks of the facts at the top of this file.
    workdays = ["2026-01-04", "2026-02-14", "2026-02-28", "2026-09-20", "2026-10-08", "2026-10-10"]
    off = ["2026-01-01", "2026-02-17", "2026-02-23", "2026-09-25", "2026-10-01", "2026-10-07"]
    assert all(work.is_workday(date.fromisoformat(d)) for d in workdays)
    assert not any(work.is_workday(date.fromisoformat(d)) for d in off)
    assert work.calendar_warnings() == []


BAD_HOLIDAY_FILES = [
    "{not json",
    '["2027-01-01"]',
    '{"off": "2027-01-01"}',
    '{"off": ["2027-02-30"]}',
    '{"off": ["27-1-1"]}',
    '{"off": [20270101]}',
    '{"off": ["2027-01-01"], "work": ["2027-01-01"]}',
    '{"holidays": ["2027-01-01"]}',
]


@pytest.mark.parametrize("content", BAD_HOLIDAY_FILES)
def test_a_bad_holiday_file_stops_start_up(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "holidays.json", content)
    with pytest.raises(ConfigError, match="MST_HOLIDAYS_FILE"):
        deadlines.load_holidays(path)
    with pytest.raises(ConfigError, match="MST_HOLIDAYS_FILE"):
        load_settings(
            {"MST_DATA_DIR": str(tmp_path), "MST_HOLIDAYS_FILE": str(path)}, env_file=None
        )


def test_a_missing_holiday_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MST_HOLIDAYS_FILE: cannot read"):
        load_settings(
            {"MST_DATA_DIR": str(tmp_path), "MST_HOLIDAYS_FILE": str(tmp_path / "nope.json")},
            env_file=None,
        )


def test_start_up_puts_the_files_in_force(tmp_path: Path) -> None:
    holidays = write(tmp_path / "h.json", HOLIDAYS_2027)
    rules = write(
        tmp_path / "r.json", {"courts": {"甲法院": {"deadlines": {"question": {"reply": "1d"}}}}}
    )
    s = load_settings(
        {
            "MST_DATA_DIR": str(tmp_path),
            "MST_HOLIDAYS_FILE": str(holidays),
            "MST_RULES_FILE": str(rules),
        },
        env_file=None,
    )
    assert (s.holidays_file, s.rules_file) == (holidays, rules)
    work = rulebook.of(s).deadlines  # what the process built from these settings holds
    assert work.due("question", cn("2026-12-31 10:00")) == cn("2027-01-05 17:30")
    assert work.due("question", cn("2026-12-31 10:00"), court="甲法院") == cn("2027-01-04 17:30")
    # Settings without the files: none in force.
    plain = rulebook.of(load_settings({"MST_DATA_DIR": str(tmp_path)}, env_file=None)).deadlines
    assert plain.rules is deadlines.DEFAULT_RULES
    assert plain.is_workday(date(2027, 1, 1))


# -- per-court rules (MST_RULES_FILE) ------------------------------------------------------

RULES = {
    "warn_share": 0.75,  # someone else's setting in the same file: left alone
    "deadlines": {"complaint": {"reply": "3d"}},
    "courts": {
        "桃城法院": {
            "deadlines": {
                "question": {"reply": "1d", "close": "5d", "note": "ignored"},
                "asset_lead": {"reply": "4h"},
                "complaint": {"reply": "2d"},
            },
            "escalation": {"question": ["reception", "admin"]},
        },
        "景县法院": {"escalation": {"question": ["admin"]}},
    },
}

COURT_CASES = [
    # (court, kind, which, due for an item that came in Wed 2026-09-30 16:00)
    # 1 working day: Thu Oct 8.
    ("桃城法院", "question", "reply", "2026-10-08 17:30"),
    # 5 working days: Oct 8, 9, Sat 10 (make-up), 12, 13.
    ("桃城法院", "question", "close", "2026-10-13 17:30"),
    # 4 working hours: 90 min on Sep 30, 150 from Oct 8 8:30 → 11:00.
    ("桃城法院", "asset_lead", "reply", "2026-10-08 11:00"),
    # Not overridden: the table's 10 working days (as the question's close above) → Oct 20.
    ("桃城法院", "asset_lead", "close", "2026-10-20 17:30"),
    # The court's 2d wins over the file's all-courts 3d: Oct 8, 9.
    ("桃城法院", "complaint", "reply", "2026-10-09 17:30"),
    # A court without deadlines of its own: the file's all-courts complaint 3d: Oct 8, 9, 10.
    ("景县法院", "complaint", "reply", "2026-10-10 17:30"),
    # ... and the table's 2d for questions: Oct 8, 9.
    ("景县法院", "question", "reply", "2026-10-09 17:30"),
    # No court given: the file's defaults.
    (None, "question", "reply", "2026-10-09 17:30"),
    (None, "complaint", "reply", "2026-10-10 17:30"),
]


@pytest.mark.parametrize(("court", "kind", "which", "expected"), COURT_CASES)
def test_per_court_overrides(
    tmp_path: Path,
    court: str | None,
    kind: str,
    which: str,
    expected: str,
    work: deadlines.Deadlines,
) -> None:
    rules = deadlines.load_rules(write(tmp_path / "rules.json", RULES))
    start = cn("2026-09-30 16:00")
    assert work.due(kind, start, which=which, court=court, rules=rules) == cn(expected)  # type: ignore[arg-type]
    # The same once in force, without passing the rules.
    work = deadlines.load(rules_file=rules.source)
    assert work.due(kind, start, which=which, court=court) == cn(expected)  # type: ignore[arg-type]


def test_rules_keep_the_rest_of_the_file(tmp_path: Path) -> None:
    rules = deadlines.load_rules(write(tmp_path / "rules.json", RULES))
    assert rules.raw["courts"]["景县法院"]["escalation"] == {"question": ["admin"]}
    assert str(rules.allowance("asset_lead", "reply", "桃城法院")) == "4h"
    assert rules.allowance("asset_lead", "reply", "桃城法院").say() == "4个工作小时"
    assert "景县法院" not in rules.courts  # no deadlines of its own


BAD_RULES_FILES = [
    "{not json",
    "[]",
    '{"courts": []}',
    '{"courts": {"A": "2d"}}',
    '{"courts": {"A": {"deadlines": []}}}',
    '{"courts": {"A": {"deadlines": {"question": "2d"}}}}',
    '{"courts": {"A": {"deadlines": {"question": {"reply": "2x"}}}}}',
    '{"courts": {"A": {"deadlines": {"question": {"reply": "0d"}}}}}',
    '{"courts": {"A": {"deadlines": {"question": {"reply": "400d"}}}}}',
    '{"courts": {"A": {"deadlines": {"question": {"close": 2}}}}}',
    '{"courts": {"A": {"deadlines": {"questoin": {"reply": "2d"}}}}}',
    '{"deadlines": {"complaint": {"reply": "-1d"}}}',
]


@pytest.mark.parametrize("content", BAD_RULES_FILES)
def test_a_bad_rules_file_stops_start_up(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "rules.json", content)
    with pytest.raises(ConfigError, match="MST_RULES_FILE"):
        deadlines.load_rules(path)
    with pytest.raises(ConfigError, match="MST_RULES_FILE"):
        load_settings({"MST_DATA_DIR": str(tmp_path), "MST_RULES_FILE": str(path)}, env_file=None)


def test_a_missing_rules_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MST_RULES_FILE: cannot read"):
        deadlines.load_rules(tmp_path / "nope.json")


def test_unknown_kind_is_an_error(work: deadlines.Deadlines) -> None:
    with pytest.raises(ValueError, match="unknown ticket kind"):
        work.due("petition", cn("2026-11-24 10:00"))


# -- the working time in between, and the early warning ------------------------------------

BETWEEN_CASES = [
    # Sep 30 16:00–17:30 (90) + Oct 8 (450) + Oct 9 (450) = 990; Oct 1–7 count nothing.
    ("2026-09-30 16:00", "2026-10-09 17:30", 990),
    # Fri 90 + Mon 8:30–11:00 (150) = 240.
    ("2026-11-20 16:00", "2026-11-23 11:00", 240),
    # Backwards: the negative.
    ("2026-11-23 11:00", "2026-11-20 16:00", -240),
    # Lunch only.
    ("2026-11-24 12:00", "2026-11-24 13:30", 0),
    # A plain Saturday.
    ("2026-11-21 00:00", "2026-11-22 00:00", 0),
    # The make-up Saturday Oct 10 is a whole working day.
    ("2026-10-10 00:00", "2026-10-11 00:00", 450),
]


@pytest.mark.parametrize(("a", "b", "minutes"), BETWEEN_CASES)
def test_working_minutes_between(a: str, b: str, minutes: int, work: deadlines.Deadlines) -> None:
    assert work.working_minutes_between(cn(a), cn(b)) == minutes


WARNING_CASES = [
    # (came in, due, share, warn at)
    # Tue 16:00 → Thu 17:30: 90 + 450 + 450 = 990 min; 75% = 742.5: Tue 90 leaves 652.5,
    # Wed 450 leaves 202.5, Thu 8:30 + 202.5 min = 11:52:30 (before 12:00).
    ("2026-11-24 16:00", "2026-11-26 17:30", 0.75, "2026-11-26 11:52:30"),
    # National Day: 990 again (Oct 1–7 count nothing) → Oct 9 11:52:30.
    ("2026-09-30 16:00", "2026-10-09 17:30", 0.75, "2026-10-09 11:52:30"),
    # Across lunch: 11:00 → 16:30 is 60 + 180 = 240; 75% = 180 = 60 + 13:30 + 120 → 15:30.
    ("2026-11-24 11:00", "2026-11-24 16:30", 0.75, "2026-11-24 15:30"),
    # Half of Fri 16:00 → Mon 11:00 (240): 120 = Fri 90 + Mon 8:30 + 30 → 9:00.
    ("2026-11-20 16:00", "2026-11-23 11:00", 0.5, "2026-11-23 09:00"),
    # All of it: the due time itself.
    ("2026-11-24 16:00", "2026-11-26 17:30", 1.0, "2026-11-26 17:30"),
    # No working time in between (due already passed): the due time.
    ("2026-11-24 16:00", "2026-11-24 15:00", 0.75, "2026-11-24 15:00"),
]


@pytest.mark.parametrize(("start", "due", "share", "expected"), WARNING_CASES)
def test_warning_point(
    start: str, due: str, share: float, expected: str, work: deadlines.Deadlines
) -> None:
    got = work.warning_point(cn(start), cn(due), share)
    assert got == cn(expected)
    assert got.tzinfo == UTC


def test_warning_point_defaults_to_three_quarters(work: deadlines.Deadlines) -> None:
    start = cn("2026-09-30 16:00")
    due = work.due("question", start)
    assert work.warning_point(start, due) == cn("2026-10-09 11:52:30")
    with pytest.raises(ValueError):
        work.warning_point(start, due, 1.5)


# -- what the first version offered still works --------------------------------------------


def test_the_old_names(work: deadlines.Deadlines) -> None:
    start = cn("2026-09-30 16:00")
    assert work.due("question", start) == cn("2026-10-09 17:30")
    assert work.add_working_days(start, 2) == cn("2026-10-09 17:30")
    assert deadlines.REPLY_DAYS == {"question": 2, "complaint": 5, "asset_lead": 1, "mediation": 1}
    # A naive time is China time; an aware one is converted.
    assert work.due("question", datetime(2026, 9, 30, 16)) == cn("2026-10-09 17:30")
    assert work.due("question", datetime(2026, 9, 30, 8, tzinfo=UTC)) == cn("2026-10-09 17:30")


# -- mst deadline ----------------------------------------------------------------------------


def mst_env(tmp_path: Path, **env: str) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL", "WECHAT_", "MST_"))
    }
    clean.update(MST_DATA_DIR=str(tmp_path), **env)
    return clean


def run_mst(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, in a process of its own."""
    return subprocess.run(
        [str(MST), *args],
        env=mst_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def run_mst_in_process(
    tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """The same command, what it prints and exits with, run in this process."""
    run = await mst_in_process(mst_env(tmp_path, **env), tmp_path, *args)
    return subprocess.CompletedProcess([str(MST), *args], run.code, run.out, run.err)


async def test_mst_deadline_prints_the_national_day_example(tmp_path: Path) -> None:
    run = await run_mst_in_process(
        tmp_path, "deadline", "--kind", "question", "--from", "2026-09-30T16:00"
    )
    assert (run.returncode, run.stdout) == (0, "2026-10-09T17:30:00+08:00  10月9日 周五 下午5:30\n")
    # The same moment given in UTC; and the closing deadline.
    run = await run_mst_in_process(
        tmp_path, "deadline", "--kind", "question", "--from", "2026-09-30T08:00:00+00:00", "--close"
    )
    assert (run.returncode, run.stdout) == (
        0,
        "2026-10-20T17:30:00+08:00  10月20日 周二 下午5:30\n",
    )
    run = await run_mst_in_process(
        tmp_path, "deadline", "--kind", "question", "--from", "2026-09-30T16:00", "--json"
    )
    assert json.loads(run.stdout) == {
        "kind": "question",
        "which": "reply",
        "due": "2026-10-09T17:30:00+08:00",
    }


def test_mst_deadline_with_a_court_and_files(tmp_path: Path) -> None:
    rules = write(tmp_path / "rules.json", RULES)
    holidays = write(tmp_path / "holidays.json", HOLIDAYS_2027)
    run = run_mst(
        tmp_path,
        "deadline",
        "--kind",
        "asset_lead",
        "--from",
        "2027-02-05T16:00",
        "--court",
        "桃城法院",
        MST_RULES_FILE=str(rules),
        MST_HOLIDAYS_FILE=str(holidays),
    )
    # 4 working hours: Fri 90 min, Sun Feb 7 (the file's extra working day) 8:30 + 150.
    assert (run.returncode, run.stdout) == (0, "2027-02-07T11:00:00+08:00  2月7日 周日 上午11:00\n")


async def test_mst_deadline_past_the_calendar_says_so(tmp_path: Path) -> None:
    run = await run_mst_in_process(
        tmp_path, "deadline", "--kind", "question", "--from", "2027-02-05T10:00"
    )
    assert run.returncode == 0
    assert run.stdout == "2027-02-09T17:30:00+08:00  2月9日 周二 下午5:30\n"
    assert run.stderr.count("no official holiday data for 2027") == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--kind", "petition", "--from", "2026-09-30T16:00"), "--kind must be one of"),
        (("--kind", "question", "--from", "tomorrow"), "--from must be a time"),
    ],
)
async def test_mst_deadline_bad_input(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    run = await run_mst_in_process(tmp_path, "deadline", *args)
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and says in run.stderr


def test_mst_deadline_bad_holiday_file(tmp_path: Path) -> None:
    bad = write(tmp_path / "h.json", '{"off": ["2027-13-01"]}')
    run = run_mst(
        tmp_path,
        "deadline",
        "--kind",
        "question",
        "--from",
        "2026-09-30T16:00",
        MST_HOLIDAYS_FILE=str(bad),
    )
    assert run.returncode == 2
    assert "MST_HOLIDAYS_FILE" in run.stderr and run.stderr.count("\n") == 1


def test_a_court_may_have_a_holiday_file_of_its_own(tmp_path: Path) -> None:
    """2026-11-23 is a Monday. Court A's own file closes it (a local holiday) and opens
    Saturday 11-28 (a make-up day); court B keeps the installation's calendar. A court's
    file is read relative to the rules file, and a missing one stops start-up."""
    write(tmp_path / "a.json", {"off": ["2026-11-23"], "work": ["2026-11-28"]})
    rules = write(
        tmp_path / "rules.json",
        {"courts": {"甲法院": {"holidays": "a.json"}}},
    )
    work = deadlines.load(rules_file=rules)
    friday = cn("2026-11-20 10:00")
    # question: reply within 2 working days (17:30 of the 2nd working day after the day).
    assert work.due("question", friday, court="乙法院") == cn("2026-11-24 17:30")
    assert work.due("question", friday, court="甲法院") == cn("2026-11-25 17:30")
    assert work.due("question", friday) == cn("2026-11-24 17:30")
    # The court's make-up Saturday counts for it alone.
    thursday = cn("2026-11-26 10:00")
    assert work.due("question", thursday, court="甲法院") == cn("2026-11-28 17:30")
    assert work.due("question", thursday, court="乙法院") == cn("2026-11-30 17:30")
    assert work.for_court("甲法院") is work.for_court("甲法院")  # built once
    assert work.for_court("乙法院") is work

    write(tmp_path / "bad.json", {"courts": {"甲法院": {"holidays": "nowhere.json"}}})
    with pytest.raises(ConfigError, match=r"courts\.甲法院\.holidays"):
        deadlines.load(rules_file=tmp_path / "bad.json")
