"""Imports from a court's spreadsheets: `mst import-staff|import-cases|import-events` on CSV
(UTF-8 with a BOM, or GBK as Excel saves it on a Chinese Windows) and XLSX, with Chinese
headers; the same per-row report as for JSON, numbered by spreadsheet row; `--json`."""

from __future__ import annotations

import json
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from bot.dialog.dispatch import Deps
from bot.rules import importer
from storage.models import AuditEvent, Case, EnforcementEvent, Party, Staff
from tests.conftest import CASE_NUMBER, COURT
from tests.world import mst_in_process

JSON_KEYS = {
    "file",
    "format",
    "header_row",
    "added",
    "changed",
    "unchanged",
    "skipped",
    "errors",
    "ignored_columns",
}
STAFF_HEADER = ["用户名", "姓名", "法院", "角色", "部门", "辅助法官"]
STAFF = [
    ["zhangwei", "张伟", COURT, "judge", "民一庭", ""],
    ["lina", "李娜", COURT, "clerk、reception", "民一庭", "zhangwei"],
]
CASE_1 = "(2026)冀1102民初1号"
CASE_2 = "(2026)冀1102民初2号"
CASE_3 = "(2026)冀1102民初3号"


def write_csv(path: Path, rows: list[list[Any]], encoding: str) -> Path:
    """As Excel writes CSV: CRLF, quotes only where a cell needs them."""
    import csv
    import io

    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, rows: list[list[Any]], floats: dict[str, str] | None = None) -> Path:
    """An XLSX as openpyxl writes it; `floats` then stores numbers as other writers do
    (openpyxl writes 13800001234.0 as 13800001234; Excel and others may keep 1.3800001234E10)."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    book.save(path)
    if floats:
        with zipfile.ZipFile(path) as z:
            parts = {name: z.read(name) for name in z.namelist()}
        xml = parts["xl/worksheets/sheet1.xml"].decode()
        for written, stored in floats.items():
            assert xml.count(f"<v>{written}</v>") == 1, written
            xml = xml.replace(f"<v>{written}</v>", f"<v>{stored}</v>")
        parts["xl/worksheets/sheet1.xml"] = xml.encode()
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in parts.items():
                z.writestr(name, data)
    return path


async def staff_imported(env: dict[str, str], tmp_path: Path) -> None:
    path = write_csv(tmp_path / "staff.csv", [STAFF_HEADER, *STAFF], "utf-8-sig")
    run = await mst_in_process(env, tmp_path, "import-staff", str(path), "--quiet")
    assert run.code == 0, run.err


async def audit_count(deps: Deps) -> int:
    async with deps.db.sessions() as s:
        return len((await s.execute(select(AuditEvent.id))).all())


async def parties(deps: Deps, number: str) -> list[tuple[str, str, str]]:
    async with deps.db.sessions() as s:
        case = (await s.execute(select(Case).where(Case.case_number == number))).scalar_one()
        found = (
            await s.execute(select(Party).where(Party.case_id == case.id).order_by(Party.id))
        ).scalars()
        return [(p.role, p.name, p.phone_masked) for p in found]


async def case_numbers(deps: Deps) -> set[str]:
    async with deps.db.sessions() as s:
        return set((await s.execute(select(Case.case_number))).scalars())


# -- staff: CSV in UTF-8 with a BOM ------------------------------------------------------


async def test_staff_from_a_utf8_bom_csv_with_chinese_headers(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "staff.csv", [STAFF_HEADER, *STAFF, ["", "", "", "", "", ""]], "utf-8-sig"
    )
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    run = await mst_in_process(cli_env, tmp_path, "import-staff", str(path))
    assert run.code == 0, run.err
    assert run.out.strip() == "人员：新增 2，更新 0，未变 0，跳过 0"
    async with deps.db.sessions() as s:
        people = {p.username: p for p in (await s.execute(select(Staff))).scalars()}
    assert set(people) == {"zhangwei", "lina"}
    assert people["zhangwei"].name == "张伟" and people["zhangwei"].team == "民一庭"
    assert people["lina"].roles == "clerk,reception"  # a list cell: items separated by 、
    assert people["lina"].supported() == ["zhangwei"]
    assert people["zhangwei"].supports is None  # an empty cell is no value

    before = await audit_count(deps)
    again = await mst_in_process(cli_env, tmp_path, "import-staff", str(path), "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out) == {
        "file": str(path),
        "format": "csv",
        "header_row": 1,
        "added": 0,
        "changed": 0,
        "unchanged": 2,
        "skipped": 0,
        "errors": [],
        "ignored_columns": [],
    }
    assert await audit_count(deps) == before


# -- cases: CSV in GBK, all parties in one cell ------------------------------------------


async def test_cases_from_a_gbk_csv_with_chinese_headers_and_a_parties_cell(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await staff_imported(cli_env, tmp_path)
    rows = [
        ["案号", "法院", "案件类型", "案由", "承办法官", "立案日期", "当事人列表", "备注"],
        [
            CASE_1,
            COURT,
            "民事",
            "民间借贷纠纷",
            "张伟",  # the judge's name, as a court's export gives it
            "2026/11/2",
            "原告:王某某:13800001234；被告：李某：139 0000 5678",
            "加急",
        ],
        [CASE_2, COURT, "民事", "买卖合同纠纷", "zhangwei", "2026年10月20日", "原告:赵某", ""],
        [
            CASE_3,
            COURT,
            "执行",
            "借款合同纠纷",
            "",
            "2026-10-21",
            "申请执行人:钱某:15012348765",
            "",
        ],
    ]
    path = write_csv(tmp_path / "cases.csv", rows, "gbk")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")  # really not UTF-8
    run = await mst_in_process(cli_env, tmp_path, "import-cases", str(path), "--quiet")
    assert run.code == 1
    assert run.out.strip() == "案件：新增 2，更新 0，未变 0，跳过 1"
    err = run.err.splitlines()
    assert err[0].startswith("第 3 行未导入：parties: item 1 is not written as 角色:姓名:手机号")
    assert "表头是第 1 行" in run.err and "第一行是第 2 行" in run.err
    assert "未识别的列，已忽略：备注" in run.err
    for phone in ("13800001234", "13900005678", "15012348765"):
        assert phone not in run.out + run.err

    assert await case_numbers(deps) == {CASE_1, CASE_3}
    assert await parties(deps, CASE_1) == [
        ("原告", "王某某", "138****1234"),
        ("被告", "李某", "139****5678"),
    ]
    async with deps.db.sessions() as s:
        case = (await s.execute(select(Case).where(Case.case_number == CASE_1))).scalar_one()
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
        third = (await s.execute(select(Case).where(Case.case_number == CASE_3))).scalar_one()
    assert case.filed_on == date(2026, 11, 2) and case.judge_id == judge.id
    assert third.judge_id is None and third.filed_on == date(2026, 10, 21)

    before = await audit_count(deps)
    again = await mst_in_process(cli_env, tmp_path, "import-cases", str(path), "--json")
    assert again.code == 1
    summary = json.loads(again.out)
    assert (summary["added"], summary["changed"], summary["unchanged"]) == (0, 0, 2)
    assert summary["skipped"] == 1 and [e["row"] for e in summary["errors"]] == [3]
    assert summary["ignored_columns"] == ["备注"]
    assert await audit_count(deps) == before


# -- cases: XLSX, one party per row -------------------------------------------------------

XLSX_HEADER = [
    "案号",
    "法院",
    "案件类型",
    "案由",
    "承办法官",
    "立案日期",
    "诉讼地位",
    "当事人",
    "手机号",
]


def xlsx_cases() -> list[list[Any]]:
    return [
        XLSX_HEADER,
        # row 2: phone stored as a number (a float, as Excel keeps numbers), a date cell
        [
            CASE_1,
            COURT,
            "民事",
            "民间借贷纠纷",
            "zhangwei",
            datetime(2026, 11, 2),
            "原告",
            "王某某",
            13800001234.0,
        ],
        # row 3: the same case's second party; the case's own cells left empty
        [CASE_1, None, None, None, None, None, "被告", "李某", 13900005678],
        [],  # row 4: empty, skipped
        # rows 5, 6: a case whose second party has no mobile number: skipped whole
        [
            CASE_2,
            COURT,
            "民事",
            "买卖合同纠纷",
            "zhangwei",
            datetime(2026, 10, 20),
            "原告",
            "赵某",
            15012348765,
        ],
        [CASE_2, None, None, None, None, None, "被告", "孙某", 1062345678],
        # row 7: a good case with a date typed as text
        [CASE_3, COURT, "民事", "离婚纠纷", None, "2026-10-21", "原告", "周某", "18600001111"],
    ]


async def test_cases_from_xlsx_one_party_per_row(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await staff_imported(cli_env, tmp_path)
    path = write_xlsx(
        tmp_path / "cases.xlsx",
        xlsx_cases(),
        floats={"13800001234": "1.3800001234E10", "13900005678": "13900005678.0"},
    )
    book = openpyxl.load_workbook(path, read_only=True)
    stored = [r[8] for r in book.worksheets[0].iter_rows(min_row=2, max_row=3, values_only=True)]
    book.close()
    assert stored == [13800001234.0, 13900005678.0]
    assert all(isinstance(v, float) for v in stored)  # what the importer is handed
    run = await mst_in_process(cli_env, tmp_path, "import-cases", str(path), "--json")
    assert run.code == 1, run.err
    summary = json.loads(run.out)
    assert set(summary) == JSON_KEYS
    assert (summary["format"], summary["header_row"]) == ("xlsx", 1)
    assert (summary["added"], summary["changed"], summary["unchanged"]) == (2, 0, 0)
    assert summary["skipped"] == 1
    [error] = summary["errors"]
    assert error["row"] == 6  # the spreadsheet's own row: header 1, first data row 2
    assert "party: phone" in error["reason"] and "not a mainland mobile" in error["reason"]
    assert "rows 5, 6" in error["reason"] and CASE_2 in error["reason"]
    assert "1062345678" not in run.out

    assert await case_numbers(deps) == {CASE_1, CASE_3}
    assert await parties(deps, CASE_1) == [
        ("原告", "王某某", "138****1234"),  # not 13800001234.0, not 1.38E+10
        ("被告", "李某", "139****5678"),
    ]
    async with deps.db.sessions() as s:
        first = (await s.execute(select(Case).where(Case.case_number == CASE_1))).scalar_one()
        assert first.filed_on == date(2026, 11, 2)
        assert (first.case_type, first.cause) == ("民事", "民间借贷纠纷")
    before = await audit_count(deps)

    human = await mst_in_process(cli_env, tmp_path, "import-cases", str(path), "--quiet")
    assert human.code == 1
    assert human.out.strip() == "案件：新增 0，更新 0，未变 2，跳过 1"
    assert human.err.splitlines()[0].startswith("第 6 行未导入：party: phone")
    assert "表头是第 1 行" in human.err
    assert await audit_count(deps) == before  # a re-import changes nothing


async def test_rows_of_one_case_must_agree(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await staff_imported(cli_env, tmp_path)
    rows = xlsx_cases()[:3]
    rows[2][2] = "执行"  # the second row names another case type
    path = write_xlsx(tmp_path / "cases.xlsx", rows)
    run = await mst_in_process(cli_env, tmp_path, "import-cases", str(path), "--json")
    summary = json.loads(run.out)
    assert summary["added"] == 0 and [e["row"] for e in summary["errors"]] == [3]
    assert "case_type 执行 differs from 民事 in row 2" in summary["errors"][0]["reason"]
    assert await case_numbers(deps) == set()


async def test_title_rows_above_the_header_are_passed_over(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await staff_imported(cli_env, tmp_path)
    rows = [["衡水市桃城区人民法院 2026年11月 新收案件"], [], *xlsx_cases()[:3]]
    path = write_xlsx(tmp_path / "cases.xlsx", rows)
    run = await mst_in_process(cli_env, tmp_path, "import-cases", str(path), "--json")
    assert run.code == 0, run.err
    summary = json.loads(run.out)
    assert (summary["header_row"], summary["added"], summary["errors"]) == (3, 1, [])


async def test_a_file_without_a_needed_column_is_refused_whole(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    rows = [["用户名", "姓名", "法院"], ["zhangwei", "张伟", COURT]]
    path = write_csv(tmp_path / "staff.csv", rows, "utf-8")
    run = await mst_in_process(cli_env, tmp_path, "import-staff", str(path), "--json")
    assert (run.code, run.out) == (1, "")
    [line] = run.err.strip().splitlines()
    assert line == f"mst: cannot read {path}: the header has no column for roles (角色)"
    broken = tmp_path / "staff.xlsx"
    broken.write_bytes(b"not a workbook")
    run = await mst_in_process(cli_env, tmp_path, "import-staff", str(broken))
    assert (
        run.code == 1
        and run.err.strip() == f"mst: cannot read {broken}: not an Excel workbook (.xlsx)"
    )
    async with deps.db.sessions() as s:
        assert (await s.execute(select(Staff.id))).first() is None


async def test_a_phone_excel_turned_into_1_38e10_is_named(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await staff_imported(cli_env, tmp_path)
    rows = [
        XLSX_HEADER[:3] + XLSX_HEADER[6:],
        [CASE_1, COURT, "民事", "原告", "王某某", "1.38E+10"],
    ]
    path = write_csv(tmp_path / "cases.csv", rows, "gbk")
    run = await mst_in_process(cli_env, tmp_path, "import-cases", str(path), "--json")
    [error] = json.loads(run.out)["errors"]
    assert error["row"] == 2 and "1.38E+10 by the spreadsheet" in error["reason"]


# -- enforcement events -------------------------------------------------------------------


async def test_events_from_xlsx_with_numbers_dates_and_chinese_headers(
    deps: Deps, sample_case: dict[str, Any], cli_env: dict[str, str], tmp_path: Path
) -> None:
    number = CASE_NUMBER
    rows = [
        ["事件编号", "事件类型", "案号", "发生时间", "金额(元)", "是否公开", "备注"],
        [900001, "received", number, datetime(2026, 11, 20, 10, 30), 12000.5, "是", "首笔"],
        [900002, "notice", number, "2026/11/21 9:05", None, "否", None],
        [900003, "notice", number, "2026-11-21", None, "也许", None],
    ]
    path = write_xlsx(tmp_path / "events.xlsx", rows, floats={"900001": "900001.0"})
    run = await mst_in_process(cli_env, tmp_path, "import-events", str(path))
    assert run.code == 1
    assert run.out.strip() == "执行事件：新增 2，已有 0，跳过 1"
    assert run.err.splitlines()[0] == "第 4 行未导入：public must be 是 or 否 (empty: 是)"
    async with deps.db.sessions() as s:
        found = {e.external_id: e for e in (await s.execute(select(EnforcementEvent))).scalars()}
    assert set(found) == {"900001", "900002"}  # ids never come out as 900001.0
    assert found["900001"].amount_cents == 1200050 and found["900001"].public
    assert found["900001"].note == "首笔"
    assert not found["900002"].public
    assert found["900002"].happened_at.replace(tzinfo=None) == datetime(2026, 11, 21, 1, 5)

    again = await mst_in_process(cli_env, tmp_path, "import-events", str(path), "--json")
    summary = json.loads(again.out)
    assert set(summary) == JSON_KEYS
    assert (summary["added"], summary["changed"], summary["unchanged"]) == (0, 0, 2)
    assert summary["errors"] == [{"row": 4, "reason": "public must be 是 or 否 (empty: 是)"}]


async def test_json_files_report_lines_and_take_json_too(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "staff.jsonl"
    good = {"username": "zhangwei", "name": "张伟", "court": COURT, "roles": ["judge"]}
    path.write_text(json.dumps(good) + '\n{"username": \n', encoding="utf-8")
    run = await mst_in_process(cli_env, tmp_path, "import-staff", str(path), "--json")
    assert run.code == 1
    summary = json.loads(run.out)
    assert (summary["format"], summary["header_row"], summary["added"]) == ("json", None, 1)
    assert summary["errors"][0]["row"] == 2 and "not valid JSON" in summary["errors"][0]["reason"]
    human = await mst_in_process(cli_env, tmp_path, "import-staff", str(path))
    assert human.out.strip() == "人员：新增 0，更新 0，未变 1，跳过 1"
    assert human.err.splitlines() == ["第 2 行未导入：not valid JSON (Expecting value)"]


# -- cells and headers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field", "expected"),
    [
        (13800001234.0, "party_phone", "13800001234"),
        (13800001234, "party_phone", "13800001234"),
        (1.38e10, "party_phone", "13800000000"),
        (1e16, "event_id", "10000000000000000"),
        (12000.5, "amount", "12000.5"),
        (datetime(2026, 11, 2), "filed_on", "2026-11-02"),
        (datetime(2026, 11, 2, 9, 30), "filed_on", "2026-11-02"),
        (datetime(2026, 11, 20, 10, 30), "at", "2026-11-20T10:30:00"),
        (date(2026, 11, 2), "filed_on", "2026-11-02"),
        ("2026/11/2", "filed_on", "2026-11-02"),
        ("2026年11月2日", "filed_on", "2026-11-02"),
        ("2026.11.20 9:05", "at", "2026-11-20T09:05:00"),
        ("  张伟 ", "name", "张伟"),
        ("   ", "name", None),
        (True, "public", True),
    ],
)
def test_cells_become_what_the_json_importer_takes(value: Any, field: str, expected: Any) -> None:
    assert importer._cell(value, field) == expected


def test_each_header_names_one_field() -> None:
    for kind, columns in importer.COLUMNS.items():
        headers = [importer._header_key(h) for name, hs in columns.items() for h in (name, *hs)]
        assert len(headers) == len(set(headers)), kind
        assert set(importer.REQUIRED[kind]) <= set(columns), kind
    assert importer.COLUMN_OF["events"][importer._header_key(" *金额（元） ")] == "amount"
    assert importer.COLUMN_OF["staff"][importer._header_key("Username")] == "username"
