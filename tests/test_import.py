"""`bot.rules.importer`: staff and cases from JSON Lines or a JSON array, idempotent, bad rows
reported by line and skipped, phone numbers never kept or logged in full."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from bot.core.masking import MaskingFilter, mask_text
from bot.dialog.dispatch import Deps
from bot.rules import importer
from bot.rules.importer import Report, import_cases, import_staff
from qr import tokens
from storage.models import AuditEvent, Case, CaseCode, Court, Party, Staff
from tests.conftest import COURT, count

CASE_A = "(2026)冀1102民初1234号"
CASE_B = "(2026)冀1102执567号"
PHONE_A1 = "13800001234"
PHONE_A2 = "13900005678"
PHONE_B1 = "15012348765"


def staff_rows() -> list[dict[str, Any]]:
    return [
        {
            "username": "zhangwei",
            "name": "张伟",
            "court": COURT,
            "roles": ["judge"],
            "team": "民一庭",
        },
        {"username": "lina", "name": "李娜", "court": COURT, "roles": ["clerk", "reception"]},
    ]


def case_rows() -> list[dict[str, Any]]:
    return [
        {
            "court": COURT,
            "case_number": CASE_A,
            "case_type": "民事",
            "cause": "民间借贷纠纷",
            "judge": "zhangwei",
            "filed_on": "2026-11-02",
            "parties": [
                {"role": "原告", "name": "王某某", "phone": PHONE_A1},
                {"role": "被告", "name": "李某", "phone": PHONE_A2},
            ],
        },
        {
            "court": COURT,
            "case_number": CASE_B,
            "case_type": "执行",
            "cause": "借款合同纠纷",
            "judge": "zhangwei",
            "filed_on": "2026-10-20",
            "parties": [{"role": "申请执行人", "name": "赵某", "phone": PHONE_B1}],
        },
    ]


def write_lines(path: Path, rows: list[Any]) -> Path:
    """JSON Lines; a `str` row is written as it is (for broken lines)."""
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows
        ),
        encoding="utf-8",
    )
    return path


def write_array(path: Path, rows: list[Any]) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def counts(report: Report) -> tuple[int, int, int, int]:
    return report.added, report.updated, report.unchanged, len(report.skipped)


async def run_staff(deps: Deps, path: Path) -> Report:
    return await import_staff(deps.db, path, progress=False)


async def run_cases(deps: Deps, path: Path) -> Report:
    return await import_cases(deps.db, path, secret=deps.settings.secret_key, progress=False)


async def events(deps: Deps) -> list[AuditEvent]:
    async with deps.db.sessions() as s:
        return list((await s.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars())


async def case_by_number(deps: Deps, number: str) -> Case:
    async with deps.db.sessions() as s:
        return (await s.execute(select(Case).where(Case.case_number == number))).scalar_one()


async def parties_of(deps: Deps, number: str) -> list[Party]:
    case = await case_by_number(deps, number)
    async with deps.db.sessions() as s:
        return list(
            (
                await s.execute(select(Party).where(Party.case_id == case.id).order_by(Party.id))
            ).scalars()
        )


async def codes_of(deps: Deps, number: str) -> list[CaseCode]:
    case = await case_by_number(deps, number)
    async with deps.db.sessions() as s:
        return list(
            (await s.execute(select(CaseCode).where(CaseCode.case_id == case.id))).scalars()
        )


@pytest.fixture
async def staffed(deps: Deps, tmp_path: Path) -> Deps:
    """The judge the cases name is already imported."""
    report = await run_staff(deps, write_lines(tmp_path / "staff.jsonl", staff_rows()))
    assert counts(report) == (2, 0, 0, 0)
    return deps


# -- staff -------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", [write_lines, write_array], ids=["jsonl", "array"])
async def test_staff_are_imported(deps: Deps, tmp_path: Path, writer: Any) -> None:
    report = await run_staff(deps, writer(tmp_path / "staff.json", staff_rows()))
    assert counts(report) == (2, 0, 0, 0)
    assert report.summary("人员") == "人员：新增 2，更新 0，未变 0，跳过 0"
    async with deps.db.sessions() as s:
        court = (await s.execute(select(Court))).scalar_one()
        people = {p.username: p for p in (await s.execute(select(Staff))).scalars()}
    assert court.name == COURT
    assert set(people) == {"zhangwei", "lina"}
    assert people["zhangwei"].name == "张伟"
    assert people["zhangwei"].court_id == court.id
    assert people["zhangwei"].has_role("judge") and people["zhangwei"].team == "民一庭"
    assert people["lina"].roles == "clerk,reception" and people["lina"].team is None
    assert people["lina"].has_role("reception") and not people["lina"].has_role("judge")
    assert [e.action for e in await events(deps)] == ["court.created", "staff.added", "staff.added"]


async def test_reimporting_staff_changes_nothing(deps: Deps, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "staff.jsonl", staff_rows())
    await run_staff(deps, path)
    before = len(await events(deps))
    report = await run_staff(deps, path)
    assert counts(report) == (0, 0, 2, 0)
    assert len(await events(deps)) == before
    assert await count(deps, Staff) == 2
    assert await count(deps, Court) == 1


async def test_changed_staff_row_is_updated_with_one_event(deps: Deps, tmp_path: Path) -> None:
    rows = staff_rows()
    await run_staff(deps, write_lines(tmp_path / "staff.jsonl", rows))
    before = len(await events(deps))
    rows[0]["team"] = "民二庭"
    rows[0]["roles"] = ["judge", "mediator"]
    report = await run_staff(deps, write_lines(tmp_path / "staff2.jsonl", rows))
    assert counts(report) == (0, 1, 1, 0)
    new = (await events(deps))[before:]
    assert [(e.action, e.subject) for e in new] == [("staff.updated", "staff:zhangwei")]
    assert "张伟" not in new[0].payload  # names are not copied into the audit log
    async with deps.db.sessions() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
    assert judge.team == "民二庭" and judge.roles == "judge,mediator"


BAD_STAFF: list[tuple[str, Any, str]] = [
    (
        "supports-not-list",
        {
            "username": "zl",
            "name": "某",
            "court": COURT,
            "roles": ["clerk"],
            "supports": "zhangwei",
        },
        "supports must be",
    ),
    (
        "supports-self",
        {"username": "zl", "name": "某", "court": COURT, "roles": ["clerk"], "supports": ["zl"]},
        "cannot support themselves",
    ),
    (
        "unknown-role",
        {"username": "boss", "name": "老板", "court": COURT, "roles": ["judge", "king"]},
        "king",
    ),
    ("missing-name", {"username": "noname", "court": COURT, "roles": ["clerk"]}, "missing name"),
    ("missing-court", {"username": "nocourt", "name": "某", "roles": ["clerk"]}, "missing court"),
    (
        "empty-roles",
        {"username": "noroles", "name": "某", "court": COURT, "roles": []},
        "roles must be",
    ),
    (
        "roles-not-list",
        {"username": "strroles", "name": "某", "court": COURT, "roles": "judge"},
        "roles must be",
    ),
    (
        "bad-username",
        {"username": "张 伟", "name": "某", "court": COURT, "roles": ["clerk"]},
        "username may use",
    ),
    ("missing-username", {"name": "某", "court": COURT, "roles": ["clerk"]}, "missing username"),
    (
        "name-not-text",
        {"username": "n", "name": 7, "court": COURT, "roles": ["clerk"]},
        "name must be text",
    ),
    ("bad-json", '{"username": "broken", "name": ', "not valid JSON"),
    ("array-row", '["zhangwei"]', "must be a JSON object"),
    ("number-row", "42", "must be a JSON object"),
]


async def test_bad_staff_rows_are_skipped_by_line_and_good_rows_kept(
    deps: Deps, tmp_path: Path
) -> None:
    good = staff_rows()
    rows = [good[0], *(bad for _, bad, _ in BAD_STAFF), good[1]]
    report = await run_staff(deps, write_lines(tmp_path / "staff.jsonl", rows))
    assert counts(report) == (2, 0, 0, len(BAD_STAFF))
    assert [line for line, _ in report.skipped] == list(range(2, 2 + len(BAD_STAFF)))
    for (label, _, reason), (_, why) in zip(BAD_STAFF, report.skipped, strict=True):
        assert reason in why, label
    async with deps.db.sessions() as s:
        names = set((await s.execute(select(Staff.username))).scalars())
    assert names == {"zhangwei", "lina"}


async def test_assistants_clerks_and_leaders_are_imported(deps: Deps, tmp_path: Path) -> None:
    rows = [
        *staff_rows(),
        {
            "username": "wangzl",
            "name": "王助理",
            "court": COURT,
            "roles": ["assistant"],
            "team": "民一庭",
            "supports": ["zhangwei", "lina"],
        },
        {
            "username": "liuting",
            "name": "刘庭长",
            "court": COURT,
            "roles": ["judge", "leader"],
            "team": "民一庭",
        },
    ]
    assert counts(await run_staff(deps, write_lines(tmp_path / "s.jsonl", rows))) == (4, 0, 0, 0)
    assert counts(await run_staff(deps, write_lines(tmp_path / "s.jsonl", rows))) == (0, 0, 4, 0)
    async with deps.db.sessions() as s:
        helper = (await s.execute(select(Staff).where(Staff.username == "wangzl"))).scalar_one()
        leader = (await s.execute(select(Staff).where(Staff.username == "liuting"))).scalar_one()
    assert helper.supported() == ["zhangwei", "lina"] and leader.has_role("leader")


async def test_unknown_role_reason_lists_the_allowed_roles(deps: Deps, tmp_path: Path) -> None:
    row = {**staff_rows()[0], "roles": ["judge", "king"]}
    report = await run_staff(deps, write_lines(tmp_path / "s.jsonl", [row]))
    [(_, why)] = report.skipped
    assert "unknown role" in why and "king" in why
    assert all(role in why for role in importer.ROLES)


async def test_line_numbers_count_blank_lines(deps: Deps, tmp_path: Path) -> None:
    good = staff_rows()
    path = tmp_path / "staff.jsonl"
    path.write_text(
        json.dumps(good[0]) + "\n\n   \n" + "{oops}\n" + json.dumps(good[1]) + "\n",
        encoding="utf-8",
    )
    report = await run_staff(deps, path)
    assert counts(report) == (2, 0, 0, 1)
    assert report.skipped[0][0] == 4


async def test_array_rows_are_reported_by_the_line_they_start_on(
    deps: Deps, tmp_path: Path
) -> None:
    good = staff_rows()
    bad = {"username": "x", "name": "某", "court": COURT, "roles": ["nope"]}
    path = write_array(tmp_path / "staff.json", [good[0], good[1], bad])
    report = await run_staff(deps, path)
    assert counts(report) == (2, 0, 0, 1)
    lines = path.read_text(encoding="utf-8").splitlines()
    bad_starts = next(i for i, line in enumerate(lines, start=1) if '"x"' in line) - 1
    assert lines[bad_starts - 1].strip() == "{"
    assert report.skipped[0][0] == bad_starts


async def test_a_broken_json_array_keeps_the_rows_before_the_break(
    deps: Deps, tmp_path: Path
) -> None:
    path = tmp_path / "staff.json"
    path.write_text(json.dumps(staff_rows(), indent=2)[:-3], encoding="utf-8")  # last row cut
    report = await run_staff(deps, path)
    assert counts(report) == (1, 0, 0, 1)
    assert "not valid JSON" in report.skipped[0][1]
    assert report.skipped[0][0] > 1  # where the parser gave up
    assert await count(deps, Staff) == 1


async def test_a_file_that_is_not_utf8_is_reported(deps: Deps, tmp_path: Path) -> None:
    path = tmp_path / "staff-gbk.jsonl"
    good = json.dumps(staff_rows()[1], ensure_ascii=True)
    path.write_bytes(
        (good + "\n" + json.dumps(staff_rows()[0], ensure_ascii=False) + "\n").encode("gbk")
    )
    report = await run_staff(deps, path)
    assert counts(report) == (0, 0, 0, 1)
    line, why = report.skipped[0]
    assert line == 2 and "UTF-8" in why
    assert await count(deps, Staff) == 0


async def test_a_bom_is_accepted(deps: Deps, tmp_path: Path) -> None:
    path = tmp_path / "staff.jsonl"
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in staff_rows()), encoding="utf-8-sig"
    )
    assert counts(await run_staff(deps, path)) == (2, 0, 0, 0)


async def test_good_rows_in_every_batch_are_kept(
    deps: Deps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH", 2)
    rows: list[Any] = [
        {"username": f"user{i}", "name": f"员工{i}", "court": COURT, "roles": ["clerk"]}
        for i in range(5)
    ]
    rows.insert(3, {"username": "bad", "name": "某", "court": COURT, "roles": ["x"]})
    report = await run_staff(deps, write_lines(tmp_path / "staff.jsonl", rows))
    assert counts(report) == (5, 0, 0, 1)
    assert report.skipped[0][0] == 4
    assert await count(deps, Staff) == 5


# -- cases -------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", [write_lines, write_array], ids=["jsonl", "array"])
async def test_cases_are_imported(staffed: Deps, tmp_path: Path, writer: Any) -> None:
    deps = staffed
    report = await run_cases(deps, writer(tmp_path / "cases.json", case_rows()))
    assert counts(report) == (2, 0, 0, 0)
    assert report.summary("案件") == "案件：新增 2，更新 0，未变 0，跳过 0"
    async with deps.db.sessions() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
        court = (await s.execute(select(Court))).scalar_one()
    case = await case_by_number(deps, CASE_A)
    assert (case.case_type, case.cause, case.filed_on) == (
        "民事",
        "民间借贷纠纷",
        date(2026, 11, 2),
    )
    assert case.judge_id == judge.id and case.court_id == court.id
    parties = await parties_of(deps, CASE_A)
    assert [(p.role, p.name, p.phone_tail, p.phone_masked) for p in parties] == [
        ("原告", "王某某", "1234", "138****1234"),
        ("被告", "李某", "5678", "139****5678"),
    ]
    assert await count(deps, Court) == 1  # the staff import's court is reused
    case_events = [e for e in await events(deps) if e.case_id == case.id]
    assert [e.action for e in case_events] == ["case.imported", "code.issued"]
    assert all(e.chain == f"case:{case.id}" for e in case_events)


async def test_each_new_case_gets_exactly_one_live_code(staffed: Deps, tmp_path: Path) -> None:
    deps = staffed
    await run_cases(deps, write_lines(tmp_path / "cases.jsonl", case_rows()))
    seen: set[str] = set()
    for number in (CASE_A, CASE_B):
        [code] = await codes_of(deps, number)
        assert code.revoked_at is None
        assert tokens.looks_like_token(code.token)
        assert tokens.short_code_status(code.short_code) == "ok"
        seen |= {code.token, code.short_code}
    assert len(seen) == 4


async def test_case_without_judge_or_date_is_fine(deps: Deps, tmp_path: Path) -> None:
    row = case_rows()[0]
    del row["judge"], row["filed_on"], row["cause"]
    report = await run_cases(deps, write_lines(tmp_path / "cases.jsonl", [row]))
    assert counts(report) == (1, 0, 0, 0)
    case = await case_by_number(deps, CASE_A)
    assert (case.judge_id, case.filed_on, case.cause) == (None, None, "")


async def test_reimporting_cases_changes_nothing(staffed: Deps, tmp_path: Path) -> None:
    deps = staffed
    path = write_array(tmp_path / "cases.json", case_rows())
    await run_cases(deps, path)
    before_events = len(await events(deps))
    before_codes = {c.token for n in (CASE_A, CASE_B) for c in await codes_of(deps, n)}
    before_parties = [(p.id, p.phone_hash) for p in await parties_of(deps, CASE_A)]
    report = await run_cases(deps, path)
    assert counts(report) == (0, 0, 2, 0)
    assert len(await events(deps)) == before_events
    assert await count(deps, CaseCode) == 2
    assert {c.token for n in (CASE_A, CASE_B) for c in await codes_of(deps, n)} == before_codes
    assert [(p.id, p.phone_hash) for p in await parties_of(deps, CASE_A)] == before_parties
    assert await count(deps, Party) == 3


async def test_party_order_and_phone_format_do_not_count_as_changes(
    staffed: Deps, tmp_path: Path
) -> None:
    deps = staffed
    await run_cases(deps, write_lines(tmp_path / "a.jsonl", case_rows()))
    rows = case_rows()
    first, second = rows[0]["parties"]
    first["phone"] = "+86 138-0000-1234"
    second["phone"] = int(PHONE_A2)
    rows[0]["parties"] = [second, first]
    report = await run_cases(deps, write_lines(tmp_path / "b.jsonl", rows))
    assert counts(report) == (0, 0, 2, 0)


async def test_changed_field_is_updated_with_one_audit_event(staffed: Deps, tmp_path: Path) -> None:
    deps = staffed
    await run_cases(deps, write_lines(tmp_path / "a.jsonl", case_rows()))
    before = len(await events(deps))
    [old_code] = await codes_of(deps, CASE_A)
    rows = case_rows()
    rows[0]["cause"] = "买卖合同纠纷"
    report = await run_cases(deps, write_lines(tmp_path / "b.jsonl", rows))
    assert counts(report) == (0, 1, 1, 0)
    new = (await events(deps))[before:]
    assert [(e.action, e.subject) for e in new] == [("case.updated", f"case:{CASE_A}")]
    assert json.loads(new[0].payload) == {"fields": ["cause"], "parties_changed": False}
    assert (await case_by_number(deps, CASE_A)).cause == "买卖合同纠纷"
    # The printed code stays valid: an update is not a re-issue.
    assert [c.token for c in await codes_of(deps, CASE_A)] == [old_code.token]


async def test_changed_judge_and_date_are_updated(staffed: Deps, tmp_path: Path) -> None:
    deps = staffed
    await run_cases(deps, write_lines(tmp_path / "a.jsonl", case_rows()))
    rows = case_rows()
    rows[1]["judge"] = "lina"
    rows[1]["filed_on"] = "2026-10-21"
    report = await run_cases(deps, write_lines(tmp_path / "b.jsonl", rows))
    assert counts(report) == (0, 1, 1, 0)
    last = (await events(deps))[-1]
    assert last.action == "case.updated"
    assert json.loads(last.payload)["fields"] == ["filed_on", "judge_id"]
    async with deps.db.sessions() as s:
        lina = (await s.execute(select(Staff).where(Staff.username == "lina"))).scalar_one()
    case = await case_by_number(deps, CASE_B)
    assert case.judge_id == lina.id and case.filed_on == date(2026, 10, 21)


async def test_changed_phone_updates_the_party_in_place(staffed: Deps, tmp_path: Path) -> None:
    deps = staffed
    await run_cases(deps, write_lines(tmp_path / "a.jsonl", case_rows()))
    before = len(await events(deps))
    old = await parties_of(deps, CASE_A)
    rows = case_rows()
    rows[0]["parties"][1]["phone"] = "13711112222"
    path = write_lines(tmp_path / "b.jsonl", rows)
    report = await run_cases(deps, path)
    assert counts(report) == (0, 1, 1, 0)
    new = (await events(deps))[before:]
    assert [e.action for e in new] == ["case.updated"]
    assert json.loads(new[0].payload) == {"fields": [], "parties_changed": True}
    parties = await parties_of(deps, CASE_A)
    # Same rows (bindings point at them), new number.
    assert [p.id for p in parties] == [p.id for p in old]
    assert (parties[1].phone_tail, parties[1].phone_masked) == ("2222", "137****2222")
    assert parties[1].phone_hash != old[1].phone_hash
    assert parties[0].phone_hash == old[0].phone_hash
    # And that is now the state: importing the file again changes nothing.
    assert counts(await run_cases(deps, path)) == (0, 0, 2, 0)


async def test_removed_party_can_no_longer_verify(staffed: Deps, tmp_path: Path) -> None:
    deps = staffed
    await run_cases(deps, write_lines(tmp_path / "a.jsonl", case_rows()))
    rows = case_rows()
    removed = rows[0]["parties"].pop(1)
    path = write_lines(tmp_path / "b.jsonl", rows)
    report = await run_cases(deps, path)
    assert counts(report) == (0, 1, 1, 0)
    parties = await parties_of(deps, CASE_A)
    # The row stays (bindings and tickets refer to it) but its tail is blank.
    assert [(p.name, p.phone_tail) for p in parties] == [("王某某", "1234"), ("李某", "")]
    assert counts(await run_cases(deps, path)) == (0, 0, 2, 0)
    # Back on the case: a fresh row that can verify again; the blanked one stays blank.
    rows[0]["parties"].append(removed)
    report = await run_cases(deps, write_lines(tmp_path / "c.jsonl", rows))
    assert counts(report) == (0, 1, 1, 0)
    parties = await parties_of(deps, CASE_A)
    assert [(p.name, p.phone_tail) for p in parties] == [
        ("王某某", "1234"),
        ("李某", ""),
        ("李某", "5678"),
    ]


async def test_the_same_case_twice_in_one_file_ends_as_the_last_row(
    staffed: Deps, tmp_path: Path
) -> None:
    deps = staffed
    first = case_rows()[0]
    second = {**first, "cause": "买卖合同纠纷"}
    report = await run_cases(deps, write_lines(tmp_path / "a.jsonl", [first, second]))
    assert counts(report) == (1, 1, 0, 0)
    assert (await case_by_number(deps, CASE_A)).cause == "买卖合同纠纷"
    assert len(await codes_of(deps, CASE_A)) == 1


def _with(changes: dict[str, Any]) -> dict[str, Any]:
    row = {**case_rows()[1], "case_number": "(2026)冀1102民初9999号", "court": "不存在的法院"}
    row.update(changes)
    return row


def _party(**changes: Any) -> dict[str, Any]:
    return {"role": "原告", "name": "孙某", "phone": "18600001111", **changes}


BAD_CASES: list[tuple[str, Any, str]] = [
    ("empty-case-number", _with({"case_number": ""}), "missing case_number"),
    ("null-case-type", _with({"case_type": None}), "missing case_type"),
    ("unknown-judge", _with({"judge": "nobody"}), "'nobody' is not a known staff username"),
    ("impossible-date", _with({"filed_on": "2026-13-45"}), "filed_on '2026-13-45' is not a date"),
    ("foreign-date", _with({"filed_on": "02/11/2026"}), "not a date"),
    ("date-as-number", _with({"filed_on": 20261102}), "not a date"),
    ("no-parties", _with({"parties": []}), "parties must be a non-empty list"),
    ("parties-not-list", _with({"parties": {"role": "原告"}}), "parties must be a non-empty list"),
    (
        "party-not-object",
        _with({"parties": [_party(), "孙某 18600001111"]}),
        "party 2 must be an object",
    ),
    ("party-missing-name", _with({"parties": [_party(name="")]}), "party 1: missing name"),
    ("party-missing-role", _with({"parties": [_party(role=None)]}), "party 1: missing role"),
    ("party-missing-phone", _with({"parties": [_party(phone=None)]}), "party 1: phone"),
    (
        "hong-kong-phone",
        _with({"parties": [_party(phone="+852 9123 4567")]}),
        "not a mainland mobile",
    ),
    ("landline", _with({"parties": [_party(phone="010-62345678")]}), "not a mainland mobile"),
    ("short-phone", _with({"parties": [_party(phone="1860000111")]}), "not a mainland mobile"),
    ("phone-12x", _with({"parties": [_party(phone="12600001111")]}), "not a mainland mobile"),
    ("bad-json", '{"court": "x", "case_number": ', "not valid JSON"),
    ("string-row", '"(2026)冀1102民初9999号"', "must be a JSON object"),
    ("array-row", "[1, 2]", "must be a JSON object"),
]


async def test_bad_case_rows_are_skipped_by_line_and_good_rows_kept(
    staffed: Deps, tmp_path: Path
) -> None:
    deps = staffed
    good = case_rows()
    before = len(await events(deps))
    rows = [good[0], *(bad for _, bad, _ in BAD_CASES), good[1]]
    report = await run_cases(deps, write_lines(tmp_path / "cases.jsonl", rows))
    assert counts(report) == (2, 0, 0, len(BAD_CASES))
    assert [line for line, _ in report.skipped] == list(range(2, 2 + len(BAD_CASES)))
    for (label, _, reason), (_, why) in zip(BAD_CASES, report.skipped, strict=True):
        assert reason in why, label
    async with deps.db.sessions() as s:
        numbers = set((await s.execute(select(Case.case_number))).scalars())
    assert numbers == {CASE_A, CASE_B}
    # The bad rows left nothing behind: no court, no code, no events of their own.
    assert await count(deps, Court) == 1
    assert await count(deps, CaseCode) == 2
    assert len(await events(deps)) == before + 4  # imported + code issued, for each good case


async def test_skip_reasons_never_show_a_full_number(deps: Deps, tmp_path: Path) -> None:
    phones = ["+852 9123 4567", "13800001234567", "010-62345678", "1380000123"]
    rows = [_with({"judge": None, "parties": [_party(phone=phone)]}) for phone in phones]
    report = await run_cases(deps, write_lines(tmp_path / "c.jsonl", rows))
    assert len(report.skipped) == len(phones)
    for phone, (_, why) in zip(phones, report.skipped, strict=True):
        digits = "".join(ch for ch in phone if ch.isdigit())
        assert digits[-8:] not in "".join(ch for ch in why if ch.isdigit() or ch == "*")
        assert "****" in why


# -- phone numbers are never kept or logged in full -----------------------------------


async def _every_stored_value(deps: Deps) -> str:
    """Every value in every table the database has, as text."""
    async with deps.db.engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
        dump = [
            str(value)
            for name in names
            for row in (await conn.execute(text(f'SELECT * FROM "{name}"'))).all()
            for value in row
        ]
    assert "party" in names and "audit_event" in names
    return "\n".join(dump)


async def test_phone_numbers_are_never_stored_or_logged_in_full(
    staffed: Deps, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deps = staffed
    caplog.set_level(logging.DEBUG)  # everything, SQL driver chatter included
    rows = case_rows()
    rows[0]["parties"][0]["phone"] = "+86 138 0000 1234"
    await run_cases(deps, write_lines(tmp_path / "cases.jsonl", rows))
    rows[0]["parties"][1]["phone"] = "13711112222"  # an update path too
    await run_cases(deps, write_lines(tmp_path / "cases2.jsonl", rows))

    stored = await _every_stored_value(deps)
    for phone in (PHONE_A1, PHONE_A2, PHONE_B1, "13711112222"):
        assert phone not in stored
        assert phone not in caplog.text
    assert "138****1234" in stored  # the masked form is there, so the dump is real

    for p in await parties_of(deps, CASE_A):
        assert len(p.phone_tail) == 4 and p.phone_tail.isdigit()
        assert p.phone_masked.count("*") == 4 and len(p.phone_masked) == 11
        assert len(p.phone_hash) == 64
    first = (await parties_of(deps, CASE_A))[0]
    # The hash is keyed: a bare SHA-256 of the number does not find it.
    assert first.phone_hash == importer.phone_hash(deps.settings.secret_key, PHONE_A1)
    assert first.phone_hash != hashlib.sha256(PHONE_A1.encode()).hexdigest()
    assert first.phone_hash != importer.phone_hash("another-court-secret-key-0123456789", PHONE_A1)


@pytest.fixture
def masked_caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog behind the same filter `mst` puts on its log handler."""
    caplog.handler.addFilter(MaskingFilter())
    caplog.set_level(logging.INFO)
    return caplog


def test_masking_filter_masks_a_logged_phone_and_id(
    masked_caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("mst.test.masking")
    log.info("party %s called from %s, ID %s", "王某某", "13800001234", "11010119900307123X")
    log.warning("retry for +86 139-0000-5678")
    text = masked_caplog.text
    assert "13800001234" not in text and "138****1234" in text
    assert "13900005678" not in text and "139-0000-5678" not in text and "5678" in text
    assert "11010119900307123X" not in text and "19900307" not in text
    assert masked_caplog.records[0].getMessage().startswith("party 王某某 called from 138****1234")


def test_masking_filter_masks_tracebacks(masked_caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("mst.test.masking")
    try:
        raise ValueError("no party with phone 13800001234")
    except ValueError:
        log.exception("import failed")
    assert "Traceback" in masked_caplog.text
    assert "13800001234" not in masked_caplog.text
    assert "138****1234" in masked_caplog.text


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("13800001234", "138****1234"),
        ("电话13800001234。", "电话138****1234。"),
        ("+8613800001234", "+86138****1234"),
        ("138 0000 1234", "138****1234"),
        ("138-0000-1234", "138****1234"),
        ("身份证110101199003071234", "身份证110101***********4"),
        ("ID 11010119900307123x ok", "ID 110101***********x ok"),
        ("(2026)冀1102民初1234号", "(2026)冀1102民初1234号"),
        ("ticket #12 at 2026-11-02 10:30", "ticket #12 at 2026-11-02 10:30"),
        ("order 138000012345", "order 138000012345"),  # 12 digits: not a phone
        ("12345678901", "12345678901"),  # 11 digits but no mobile prefix
        ("1101011990030712345", "1101011990030712345"),  # 19 digits: not an ID
    ],
)
def test_mask_text(raw: str, masked: str) -> None:
    assert mask_text(raw) == masked
    assert mask_text(masked) == masked  # masking twice changes nothing


async def test_a_case_twice_in_one_file_is_added_then_updated(
    staffed: Deps, tmp_path: Path
) -> None:
    first, _ = case_rows()
    changed = {**first, "cause": "合同纠纷"}
    report = await run_cases(staffed, write_lines(tmp_path / "c.jsonl", [first, first, changed]))
    assert counts(report) == (1, 1, 1, 0)
    async with staffed.db.sessions() as s:
        case = (await s.execute(select(Case).where(Case.case_number == CASE_A))).scalar_one()
        live = (
            (await s.execute(select(CaseCode).where(CaseCode.case_id == case.id))).scalars().all()
        )
    assert case.cause == "合同纠纷" and len(live) == 1


async def test_a_large_file_is_imported_in_batches_with_one_chain_per_case(
    staffed: Deps, tmp_path: Path
) -> None:
    from bot.rules.importer import BATCH
    from storage import audit

    base = case_rows()[0]
    rows = [{**base, "case_number": f"(2026)冀1102民初{9000 + i}号"} for i in range(BATCH + 7)]
    report = await run_cases(staffed, write_lines(tmp_path / "many.jsonl", rows))
    assert counts(report) == (BATCH + 7, 0, 0, 0)
    async with staffed.db.sessions() as s:
        verdict = await audit.verify(s)
        codes_n = len((await s.execute(select(CaseCode.short_code))).all())
        distinct = len(set((await s.execute(select(CaseCode.short_code))).scalars()))
    assert verdict.ok, verdict.problems
    assert verdict.chains == BATCH + 7 + 1  # one per case, plus global (staff import)
    assert codes_n == distinct == BATCH + 7
