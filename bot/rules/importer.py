"""`mst import-staff`, `mst import-cases` (and the reading for `mst import-events`): JSON Lines,
a JSON array, CSV or XLSX, idempotent by username / case number. Bad rows are reported by
the number a person finds them under (a JSON file's line, a spreadsheet's row) and skipped;
good rows are kept. `COLUMNS` below says which spreadsheet headers feed which field."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import re
import zipfile
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from tqdm import tqdm

from bot.core.addresses import WECOM_USERID_MAX
from bot.core.clock import now
from bot.core.masking import mask_phone
from qr import tokens
from storage import audit, backup
from storage.db import Database
from storage.models import AuditEvent, Case, CaseCode, Court, Party, Staff

ROLES = (
    "judge",
    "clerk",
    "enforcement",
    "reception",
    "supervision",
    "mediator",
    "assistant",
    "leader",
    "admin",
    "province",  # the high court's: every court's figures, read only (bot.rules.access)
)
BATCH = 500
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?[eE]\+?\d+$")


class RowError(ValueError):
    """Why one row was skipped."""


class FileError(ValueError):
    """The file as a whole cannot be read (no one row's fault): one line for the operator."""


@dataclass
class Report:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    format: str = "json"  # json | csv | xlsx: JSON lines or spreadsheet rows are numbered
    header_row: int | None = None  # a spreadsheet's header row (numbers are its rows)
    ignored: list[str] = field(default_factory=list)  # spreadsheet headers of no known column

    def summary(self, what: str) -> str:
        """What an operator reads, e.g. `案件：新增 2，更新 0，未变 0，跳过 1`."""
        return (
            f"{what}：新增 {self.added}，更新 {self.updated}，"
            f"未变 {self.unchanged}，跳过 {len(self.skipped)}"
        )


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or RowError) for each row of a JSON array or JSON Lines file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        # Spreadsheet tools often save GBK; say so instead of failing with a traceback.
        bad_line = path.read_bytes()[: exc.start].count(b"\n") + 1
        yield bad_line, RowError("the file is not UTF-8 text (save it as UTF-8 and import again)")
        return
    if text.lstrip().startswith("["):
        yield from _array_rows(text)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, RowError(f"not valid JSON ({exc.msg})")


def _array_rows(text: str) -> Iterator[tuple[int, Any]]:
    """Items of a JSON array, each with the line it starts on (arrays are often pretty-printed)."""
    decoder = json.JSONDecoder()
    at, line, counted_to = text.index("[") + 1, 1, 0

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    while True:
        at = skip(at)
        line += text.count("\n", counted_to, at)
        counted_to = at
        if at >= len(text):
            yield line, RowError("the JSON array is not closed with ]")
            return
        if text[at] == "]":
            return
        try:
            item, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            yield exc.lineno, RowError(f"not valid JSON ({exc.msg}); rows after it were not read")
            return
        yield line, item
        at = skip(end)
        if at < len(text) and text[at] == ",":
            at += 1


# -- spreadsheets: CSV and XLSX ------------------------------------------------------------

# The columns of a CSV or XLSX file, one table per import: field ← the headers a court's own
# export may carry. The field's own (JSON) name is always accepted too. Headers are compared
# without spaces, without a "*" (a template's "required" mark) and ignoring letter case;
# full-width brackets count as ASCII ones. Columns named nowhere here are ignored (and listed).
COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "staff": {
        "username": ("用户名", "账号", "登录名"),
        "name": ("姓名",),
        "court": ("法院", "所属法院", "法院名称"),
        "roles": ("角色",),
        "team": ("部门", "庭室", "团队"),
        "speciality": ("专长", "业务专长"),
        "supports": ("辅助法官", "协助法官"),
        "wecom_userid": ("企业微信账号", "企业微信ID", "企业微信UserID"),
    },
    "cases": {
        "court": ("法院", "承办法院", "经办法院", "法院名称"),
        "case_number": ("案号",),
        "case_type": ("案件类型", "案件类别"),
        "cause": ("案由",),
        "judge": ("承办法官", "承办人"),
        "filed_on": ("立案日期", "立案时间"),
        # All of a case's parties in one cell: 原告:王某某:13800001234；被告:李某:13900005678
        "parties": ("当事人列表", "当事人信息"),
        # Or one party per row (a case's further rows repeat its case number).
        "party_role": ("诉讼地位", "当事人类型", "当事人身份"),
        "party_name": ("当事人", "当事人姓名", "姓名", "名称"),
        "party_phone": ("手机号", "手机号码", "手机", "电话", "联系电话"),
    },
    "events": {
        "event_id": ("事件编号", "节点编号", "编号"),
        "kind": ("事件类型", "节点类型", "类型"),
        "case_number": ("案号",),
        "at": ("时间", "发生时间", "节点时间", "日期"),
        "amount": ("金额", "金额(元)"),
        "note": ("备注", "说明"),
        "public": ("是否公开", "公开"),
    },
}
# A file without one of these columns is refused whole, before any row is read.
REQUIRED: dict[str, tuple[str, ...]] = {
    "staff": ("username", "name", "court", "roles"),
    "cases": ("court", "case_number", "case_type"),
    "events": ("event_id", "kind", "case_number", "at"),
}
PARTY_COLUMNS = ("party_role", "party_name", "party_phone")
# Items of a list cell: separated by ; ； 、 , ， or a line break.
LIST_SEPARATOR = re.compile(r"[;；、,，\r\n]+")
PARTY_PARTS = re.compile(r"[:：]")
TABLE_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx"}
HEADER_SEARCH = 5  # title rows above the header that are passed over
_DATE_TEXT = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:(?:\s+|T)(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?)?$"
)


def _header_key(text: Any) -> str:
    key = re.sub(r"\s+", "", str(text if text is not None else "")).strip("*＊").lower()
    return key.replace("（", "(").replace("）", ")")


COLUMN_OF: dict[str, dict[str, str]] = {
    kind: {
        _header_key(header): name
        for name, headers in columns.items()
        for header in (name, *headers)
    }
    for kind, columns in COLUMNS.items()
}


@dataclass
class Loaded:
    """A file's rows as the importers take them (dicts with the JSON fields), each with the
    number a person finds it under: a JSON file's line, a spreadsheet's own row number (the
    header is a row too: under a header in row 1 the first data row is row 2)."""

    rows: list[tuple[int, Any]]
    format: str = "json"
    header_row: int | None = None
    ignored: list[str] = field(default_factory=list)


def load(path: Path, kind: str) -> Loaded:
    """The rows of a staff, cases or events file, by its extension: .csv and .xlsx are
    spreadsheets with a header row; anything else is read as JSON Lines or a JSON array."""
    suffix = path.suffix.lower()
    fmt = TABLE_FORMATS.get(suffix)
    if fmt is None:
        if suffix == ".xls":
            raise FileError("an old Excel .xls file: save it as .xlsx (or CSV) and import that")
        return Loaded(list(read_rows(path)))
    cells = _csv_cells(path) if fmt == "csv" else _xlsx_cells(path)
    try:
        header_row, rows, ignored = _table(cells, kind)
    finally:
        cells.close()  # a refused header leaves the workbook open otherwise
    if kind == "cases":
        shaped = _case_groups(rows)
    else:
        shape = _staff_row if kind == "staff" else _event_row
        shaped = []
        for number, row in rows:
            try:
                shaped.append((number, shape(row)))
            except RowError as exc:
                shaped.append((number, exc))
    return Loaded(shaped, fmt, header_row, ignored)


def _csv_cells(path: Path) -> Generator[tuple[int, list[Any]], None, None]:
    """Records of a CSV file in UTF-8 (with or without BOM) or GBK/GB18030, as Excel saves
    it on a Chinese Windows; a record is one spreadsheet row even where a cell holds a
    line break."""
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise FileError("the CSV file is neither UTF-8 nor GBK text (save it as CSV UTF-8)")
    try:
        yield from enumerate(csv.reader(io.StringIO(text, newline="")), start=1)
    except csv.Error as exc:
        raise FileError(f"not a readable CSV file ({exc})") from exc


def _xlsx_cells(path: Path) -> Generator[tuple[int, list[Any]], None, None]:
    """Rows of the workbook's first sheet with their row numbers (empty rows included)."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise FileError("not an Excel workbook (.xlsx)") from exc
    try:
        if not book.worksheets:
            raise FileError("the workbook has no sheet")
        sheet = book.worksheets[0]
        sheet.reset_dimensions()  # exporters often write a wrong size; read what is there
        yield from enumerate((list(r) for r in sheet.iter_rows(values_only=True)), start=1)
    finally:
        book.close()


def _blank(cells: Iterable[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def _table(
    cells: Iterator[tuple[int, list[Any]]], kind: str
) -> tuple[int, list[tuple[int, dict[str, Any]]], list[str]]:
    """(header row, [(row number, {field: value})], ignored headers). The header is the
    first row naming a known column (title rows above it are passed over); empty rows and
    rows with nothing in a known column are skipped."""
    known = COLUMN_OF[kind]
    header_row, header, looked = 0, [], 0
    for number, row in cells:
        if _blank(row):
            continue
        if any(_header_key(c) in known for c in row):
            header_row, header = number, row
            break
        looked += 1
        if looked >= HEADER_SEARCH:
            break
    if not header_row:
        names = "、".join(f"{n}（{h[0]}）" if h else n for n, h in COLUMNS[kind].items())
        raise FileError(f"no header row: the first row should name the columns: {names}")
    fields: list[str | None] = []
    ignored: list[str] = []
    for cell in header:
        name = known.get(_header_key(cell))
        if name is None and _header_key(cell):
            ignored.append(str(cell).strip())
        if name is not None and name in fields:
            raise FileError(f"two columns give {name} ({cell} and another): keep one")
        fields.append(name)
    missing = [n for n in REQUIRED[kind] if n not in fields]
    if kind == "cases" and "parties" not in fields and not set(PARTY_COLUMNS) <= set(fields):
        missing.append("parties, or party_role + party_name + party_phone")
    if missing:
        raise FileError(
            "the header has no column for "
            + ", ".join(
                f"{n} ({COLUMNS[kind][n][0]})" if n in COLUMNS[kind] else n for n in missing
            )
        )
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, row in cells:
        values: dict[str, Any] = {}
        for name, value in zip(fields, row, strict=False):
            if name is not None and (value := _cell(value, name)) is not None:
                values[name] = value
        if values:
            rows.append((number, values))
    return header_row, rows, ignored


def _cell(value: Any, name: str) -> Any:
    """A cell as the JSON importer expects it: text (numbers written out in full, never as
    13800001111.0 or 1.38E+10; dates as 2026-11-02), a bool as a bool, empty as None."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        if name == "filed_on" or value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat(timespec="seconds")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if not text:
        return None
    if name in ("filed_on", "at") and (m := _DATE_TEXT.match(text)):
        day = f"{m[1]}-{int(m[2]):02d}-{int(m[3]):02d}"
        if name == "at" and m[4]:
            return f"{day}T{int(m[4]):02d}:{m[5]}:{m[6] or '00'}"
        return day
    return text


def _items(value: Any) -> list[str]:
    return [item.strip() for item in LIST_SEPARATOR.split(str(value)) if item.strip()]


def _staff_row(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("roles", "supports"):
        if name in row:
            row[name] = _items(row[name])
    return row


_YES = {"是", "公开", "true", "yes", "y", "1"}
_NO = {"否", "不公开", "false", "no", "n", "0"}


def _event_row(row: dict[str, Any]) -> dict[str, Any]:
    public = row.get("public")
    if isinstance(public, str):
        if public.lower() in _YES:
            row["public"] = True
        elif public.lower() in _NO:
            row["public"] = False
        else:
            raise RowError("public must be 是 or 否 (empty: 是)")
    return row


def _row_parties(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The parties one spreadsheet row gives (taken out of `row`), each checked."""
    parties: list[dict[str, Any]] = []
    for i, item in enumerate(_items(row.pop("parties", "")), start=1):
        bits = [b.strip() for b in PARTY_PARTS.split(item)]
        if len(bits) != 3:
            raise RowError(
                f"parties: item {i} is not written as 角色:姓名:手机号 "
                "(parties are separated by ；)"
            )
        parties.append(dict(zip(("role", "name", "phone"), bits, strict=True)))
    given = {n: row.pop(n) for n in PARTY_COLUMNS if n in row}
    if given:
        parties.append({n.removeprefix("party_"): given.get(n) for n in PARTY_COLUMNS})
    for i, party in enumerate(parties, start=1):
        try:
            party_values(party)
        except RowError as exc:
            where = f"party {i}" if len(parties) > 1 else "party"
            raise RowError(f"{where}: {exc}") from exc
    return parties


@dataclass
class _CaseRows:
    first: int
    rows: list[int] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    source: dict[str, int] = field(default_factory=dict)
    parties: list[dict[str, Any]] = field(default_factory=list)
    error: tuple[int, str] | None = None


def _case_groups(rows: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, Any]]:
    """One item per case: a spreadsheet may give a case's parties on several rows with the
    same case number (anywhere in the file). The case's own columns may be left empty on
    its further rows; filled, they must agree. A case with one bad row is skipped whole
    (a party missing from the list would lose their access), reported at that row."""
    groups: dict[str, _CaseRows] = {}
    out: list[tuple[int, Any]] = []
    for number, row in rows:
        case_number = row.get("case_number")
        if not case_number:
            out.append((number, RowError("missing case_number")))
            continue
        group = groups.setdefault(case_number, _CaseRows(first=number))
        group.rows.append(number)
        if group.error:
            continue
        try:
            parties = _row_parties(row)
            for name, value in row.items():
                if group.fields.setdefault(name, value) != value:
                    raise RowError(
                        f"{name} {value} differs from {group.fields[name]} in row "
                        f"{group.source[name]}: the rows of one case must agree"
                    )
                group.source.setdefault(name, number)
            group.parties += parties
        except RowError as exc:
            group.error = (number, str(exc))
    for case_number, group in groups.items():
        if group.error is None:
            out.append((group.first, {**group.fields, "parties": group.parties}))
            continue
        number, why = group.error
        if len(group.rows) > 1:
            rows_of = ", ".join(map(str, group.rows))
            why += f" (so none of case {case_number}'s rows {rows_of} was imported)"
        out.append((number, RowError(why)))
    out.sort(key=lambda item: item[0])
    return out


# -- fields ----------------------------------------------------------------------------------


def normalize_phone(raw: Any) -> str:
    phone = re.sub(r"[\s\-()]", "", str(raw or ""))
    phone = re.sub(r"^(\+?86)", "", phone)
    if _SCIENTIFIC.match(phone):
        raise RowError(
            "phone was turned into a number like 1.38E+10 by the spreadsheet: its digits are "
            "lost (format the column as text, type the numbers again and export)"
        )
    if not _MOBILE.match(phone):
        raise RowError(f"phone {mask_phone(phone)} is not a mainland mobile number")
    return phone


def phone_hash(secret: str, phone: str) -> str:
    return hmac.new(secret.encode(), phone.encode(), hashlib.sha256).hexdigest()


def _text(row: dict[str, Any], key: str, *, required: bool = True, limit: int = 200) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"missing {key}")
        return ""
    if not isinstance(value, str):
        raise RowError(f"{key} must be text")
    value = value.strip()
    if len(value) > limit:
        raise RowError(f"{key} is longer than {limit} characters")
    return value


def _object(row: Any) -> dict[str, Any]:
    if isinstance(row, RowError):
        raise row
    if not isinstance(row, dict):
        raise RowError("a row must be a JSON object")
    return row


USERNAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# WeCom's rule for a userid: letters, digits and _ - @ . , a letter or digit first; kept to
# what our user columns hold after the `wecom:` prefix (bot.core.addresses).
WECOM_USERID = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_@.-]{{0,{WECOM_USERID_MAX - 1}}}$")


def staff_fields(row: Any) -> dict[str, Any]:
    row = _object(row)
    username = _text(row, "username", limit=64)
    if not USERNAME.match(username):
        raise RowError("username may use letters, digits, _ . - only")
    supports = row.get("supports") or []
    if not isinstance(supports, list) or not all(
        isinstance(u, str) and USERNAME.match(u) for u in supports
    ):
        raise RowError("supports must be a list of usernames (the judges this person works for)")
    if username in supports:
        raise RowError("a staff member cannot support themselves")
    if len(",".join(supports)) > 500:
        raise RowError("supports is too long (at most 500 characters of usernames)")
    roles = row.get("roles")
    if not isinstance(roles, list) or not roles:
        raise RowError("roles must be a non-empty list")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise RowError(
            f"unknown role(s) {', '.join(map(str, unknown))}; allowed: {', '.join(ROLES)}"
        )
    return {
        "username": username,
        "name": _text(row, "name", limit=64),
        "court": _text(row, "court"),
        "roles": ",".join(dict.fromkeys(roles)),
        "team": _text(row, "team", required=False, limit=64) or None,
        "speciality": _text(row, "speciality", required=False, limit=100) or None,
        "supports": ",".join(dict.fromkeys(supports)) or None,
        **_wecom_userid(row),
    }


def _wecom_userid(row: dict[str, Any]) -> dict[str, str]:
    """The member's WeCom userid, lower-cased as WeCom compares them, when the row gives
    one: a row without it leaves a link made by a bind code alone."""
    value = row.get("wecom_userid")
    if value is None or str(value).strip() == "":
        return {}
    userid = str(value).strip()
    if not WECOM_USERID.match(userid):
        raise RowError(
            f"wecom_userid must be WeCom's userid: letters, digits, _ - @ . (a letter or digit "
            f"first), at most {WECOM_USERID_MAX} characters"
        )
    return {"wecom_userid": userid.lower()}


def party_values(party: dict[str, Any]) -> tuple[str, str, str]:
    """A party's role, name and normalized phone, or why not."""
    phone = normalize_phone(party.get("phone"))
    return _text(party, "role", limit=32), _text(party, "name", limit=64), phone


def case_fields(row: Any, secret: str) -> dict[str, Any]:
    row = _object(row)
    filed_raw = row.get("filed_on")
    try:
        filed_on = date.fromisoformat(filed_raw) if filed_raw else None
    except (TypeError, ValueError) as exc:
        raise RowError(f"filed_on {str(filed_raw)[:20]!r} is not a date like 2026-11-02") from exc
    parties = row.get("parties")
    if not isinstance(parties, list) or not parties:
        raise RowError("parties must be a non-empty list")
    clean = []
    for i, p in enumerate(parties, start=1):
        if not isinstance(p, dict):
            raise RowError(f"party {i} must be an object")
        try:
            role, name, phone = party_values(p)
        except RowError as exc:
            raise RowError(f"party {i}: {exc}") from exc
        clean.append(
            {
                "role": role,
                "name": name,
                "phone_tail": phone[-4:],
                "phone_masked": mask_phone(phone),
                "phone_hash": phone_hash(secret, phone),
            }
        )
    return {
        "court": _text(row, "court"),
        "case_number": _text(row, "case_number", limit=64),
        "case_type": _text(row, "case_type", limit=32),
        "cause": _text(row, "cause", required=False),
        "judge": _text(row, "judge", required=False, limit=64) or None,
        "filed_on": filed_on,
        "parties": clean,
    }


async def _court(session: AsyncSession, cache: dict[str, Court], name: str) -> Court:
    if name not in cache:
        found = (
            await session.execute(select(Court).where(col(Court.name) == name))
        ).scalar_one_or_none()
        if found is None:
            found = Court(name=name)
            session.add(found)
            await session.flush()
            await audit.append(
                session,
                actor="import",
                action="court.created",
                subject=f"court:{found.id}",
                payload={"name": name},
            )
        cache[name] = found
    return cache[name]


def _batches(rows: Iterator[tuple[int, Any]], size: int) -> Iterator[list[tuple[int, Any]]]:
    batch: list[tuple[int, Any]] = []
    for item in rows:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _report(loaded: Loaded) -> Report:
    return Report(format=loaded.format, header_row=loaded.header_row, ignored=loaded.ignored)


async def import_staff(db: Database, path: Path, *, progress: bool = True) -> Report:
    """Raises FileError, before anything is written, for a file that cannot be read at all."""
    loaded = load(path, "staff")
    report, rows = _report(loaded), loaded.rows
    courts: dict[str, Court] = {}
    with tqdm(total=len(rows), unit="row", disable=None if progress else True, desc="staff") as bar:
        for batch in _batches(iter(rows), BATCH):
            async with db.transaction() as session:
                for line, raw in batch:
                    bar.update(1)
                    try:
                        data = staff_fields(raw)
                    except RowError as exc:
                        report.skipped.append((line, str(exc)))
                        continue
                    if await _wecom_taken(session, data):
                        report.skipped.append(
                            (line, f"wecom_userid {data['wecom_userid']} is another staff member's")
                        )
                        continue
                    court = await _court(session, courts, data.pop("court"))
                    data["court_id"] = court.id
                    await _upsert_staff(session, data, report)
    await backup.analyze(db, [str(t.__tablename__) for t in (Court, Staff, AuditEvent)])
    return report


async def _wecom_taken(session: AsyncSession, data: dict[str, Any]) -> bool:
    """Whether the row's WeCom userid is linked to someone else already (one each)."""
    if "wecom_userid" not in data:
        return False
    holder = (
        await session.execute(
            select(col(Staff.username)).where(col(Staff.wecom_userid) == data["wecom_userid"])
        )
    ).scalar()
    return holder is not None and holder != data["username"]


async def _upsert_staff(session: AsyncSession, data: dict[str, Any], report: Report) -> None:
    staff = (
        await session.execute(select(Staff).where(col(Staff.username) == data["username"]))
    ).scalar_one_or_none()
    if staff is None:
        staff = Staff(**data)
        session.add(staff)
        await session.flush()
        report.added += 1
        action = "staff.added"
    else:
        changed = {k: v for k, v in data.items() if getattr(staff, k) != v}
        if not changed:
            report.unchanged += 1
            return
        for k, v in changed.items():
            setattr(staff, k, v)
        session.add(staff)
        report.updated += 1
        action = "staff.updated"
    await audit.append(
        session,
        actor="import",
        action=action,
        subject=f"staff:{staff.username}",
        payload={k: v for k, v in data.items() if k != "name"},
    )


@dataclass
class Judges:
    """Who a case's `judge` names: a staff username, or (as a court's export gives it, under
    承办法官) the name of exactly one staff member of the case's court."""

    by_username: dict[str, int]
    by_name: dict[tuple[str, str], list[int]]  # (court, name) → staff ids

    @classmethod
    async def load(cls, session: AsyncSession) -> Judges:
        judges = cls({}, {})
        rows = await session.execute(
            select(col(Staff.username), col(Staff.id), col(Staff.name), col(Court.name)).join(
                Court, col(Court.id) == col(Staff.court_id)
            )
        )
        for username, staff_id, name, court in rows:
            assert staff_id is not None  # a stored row's primary key
            judges.by_username[username] = staff_id
            judges.by_name.setdefault((court, name), []).append(staff_id)
        return judges

    def find(self, judge: str, court: str) -> int:
        if judge in self.by_username:
            return self.by_username[judge]
        same_name = self.by_name.get((court, judge), [])
        if len(same_name) == 1:
            return same_name[0]
        if same_name:
            raise RowError(
                f"judge {judge!r}: {len(same_name)} staff members of this court have that "
                "name; give the username"
            )
        raise RowError(
            f"judge {judge!r} is not a known staff username, nor the name of one of this "
            "court's staff (import staff first)"
        )


async def import_cases(db: Database, path: Path, *, secret: str, progress: bool = True) -> Report:
    """Raises FileError, before anything is written, for a file that cannot be read at all."""
    loaded = load(path, "cases")
    report, rows = _report(loaded), loaded.rows
    courts: dict[str, Court] = {}
    async with db.sessions() as session:
        judges = await Judges.load(session)
    with tqdm(
        total=len(rows), unit="case", disable=None if progress else True, desc="cases"
    ) as bar:
        for batch in _batches(iter(rows), BATCH):
            async with db.transaction() as session:
                await _import_case_batch(session, batch, secret, courts, judges, report)
            bar.update(len(batch))
    # Statistics for the rows loaded: the next query plans for them (storage.backup.analyze).
    loaded_tables = (Court, Case, Party, CaseCode, AuditEvent)
    await backup.analyze(db, [str(t.__tablename__) for t in loaded_tables])
    return report


async def _import_case_batch(
    session: AsyncSession,
    batch: list[tuple[int, Any]],
    secret: str,
    courts: dict[str, Court],
    judges: Judges,
    report: Report,
) -> None:
    """Validate a batch, insert its new cases in bulk, and update the known ones row by row.

    Bulk because a court imports tens of thousands of cases at once; row-at-a-time ORM
    work costs ~7 ms a case, these few statements per batch well under 1 ms."""
    valid: list[dict[str, Any]] = []
    for line, raw in batch:
        try:
            data = case_fields(raw, secret)
            judge = data.pop("judge")
            judge_id = judges.find(judge, data["court"]) if judge is not None else None
        except RowError as exc:
            report.skipped.append((line, str(exc)))
            continue
        court = await _court(session, courts, data.pop("court"))
        data.update(court_id=court.id, judge_id=judge_id)
        valid.append(data)
    numbers = [d["case_number"] for d in valid]
    known = {
        c.case_number: c
        for c in (
            await session.execute(select(Case).where(col(Case.case_number).in_(numbers)))
        ).scalars()
    }
    fresh: list[dict[str, Any]] = []
    later: list[dict[str, Any]] = []  # known cases, and a number seen twice in one file
    seen: set[str] = set()
    for data in valid:
        if data["case_number"] in known or data["case_number"] in seen:
            later.append(data)
        else:
            seen.add(data["case_number"])
            fresh.append(data)
    parties_of: dict[int, list[Party]] = {}
    if known:
        rows = await session.execute(
            select(Party)
            .where(col(Party.case_id).in_([c.id for c in known.values()]))
            .order_by(col(Party.id))
        )
        for party in rows.scalars():
            parties_of.setdefault(party.case_id, []).append(party)
    if fresh:
        await _insert_new_cases(session, fresh)
        report.added += len(fresh)
    for data in later:
        case = known.get(data["case_number"])
        await _update_case(
            session, data, report, case, parties_of.get(case.id or 0, []) if case else None
        )


async def _insert_new_cases(session: AsyncSession, cases: list[dict[str, Any]]) -> None:
    conn = await session.connection()
    stamp = now()
    case_rows = [
        {k: v for k, v in d.items() if k != "parties"} | {"created_at": stamp, "updated_at": stamp}
        for d in cases
    ]
    ids = list(
        (
            await conn.execute(
                insert(Case).returning(col(Case.id), sort_by_parameter_order=True), case_rows
            )
        ).scalars()
    )
    await conn.execute(
        insert(Party),
        [{"case_id": cid, **p} for cid, d in zip(ids, cases, strict=True) for p in d["parties"]],
    )
    shorts = await _unused_short_codes(session, len(ids))
    code_rows = [
        {"case_id": cid, "token": tokens.new_token(), "short_code": short, "issued_at": stamp}
        for cid, short in zip(ids, shorts, strict=True)
    ]
    code_ids = list(
        (
            await conn.execute(
                insert(CaseCode).returning(col(CaseCode.id), sort_by_parameter_order=True),
                code_rows,
            )
        ).scalars()
    )
    events = []
    for cid, d, code_id, code in zip(ids, cases, code_ids, code_rows, strict=True):
        payload = {
            "parties": len(d["parties"]),
            "judge_id": d["judge_id"],
            "case_type": d["case_type"],
        }
        events.append(
            {
                "actor": "import",
                "action": "case.imported",
                "subject": f"case:{d['case_number']}",
                "case_id": cid,
                "payload": payload,
            }
        )
        events.append(
            {
                "actor": "import",
                "action": "code.issued",
                "subject": f"code:{code_id}",
                "case_id": cid,
                "payload": {"short_code": code["short_code"], "replaces": None},
            }
        )
    await audit.append_many(session, events)


async def _unused_short_codes(session: AsyncSession, n: int) -> list[str]:
    """n distinct short codes, none already taken (one query per round; collisions are rare)."""
    chosen: set[str] = set()
    while len(chosen) < n:
        candidates = {tokens.new_short_code() for _ in range(n - len(chosen))} - chosen
        taken = set(
            (
                await session.execute(
                    select(col(CaseCode.short_code)).where(col(CaseCode.short_code).in_(candidates))
                )
            ).scalars()
        )
        chosen |= candidates - taken
    return list(chosen)


async def _update_case(
    session: AsyncSession,
    data: dict[str, Any],
    report: Report,
    case: Case | None = None,
    parties_now: list[Party] | None = None,
) -> None:
    """A case we already have: change what changed, record it, or leave it alone.
    `case` and `parties_now` when the batch preloaded them."""
    parties = _ordered(data.pop("parties"))
    if case is None or parties_now is None:
        case = (
            await session.execute(select(Case).where(col(Case.case_number) == data["case_number"]))
        ).scalar_one()
        parties_now = list(
            (
                await session.execute(
                    select(Party).where(col(Party.case_id) == case.id).order_by(col(Party.id))
                )
            ).scalars()
        )
    # Parties removed by an earlier import no longer count.
    existing = [p for p in parties_now if p.phone_tail]
    old_parties = _ordered([{k: getattr(p, k) for k in parties[0]} for p in existing])
    changed = {k: v for k, v in data.items() if getattr(case, k) != v}
    if not changed and old_parties == parties:
        report.unchanged += 1
        return
    for k, v in changed.items():
        setattr(case, k, v)
    case.updated_at = now()
    session.add(case)
    if old_parties != parties:
        # Bindings point at parties; keep rows whose identity is unchanged, replace the rest.
        await _sync_parties(session, case.id or 0, existing, parties)
    await session.flush()
    await audit.append(
        session,
        actor="import",
        action="case.updated",
        subject=f"case:{case.case_number}",
        case_id=case.id,
        payload={"fields": sorted(changed), "parties_changed": old_parties != parties},
    )
    report.updated += 1


def _ordered(parties: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(parties, key=lambda p: (p["role"], p["name"], p["phone_hash"]))


async def _sync_parties(
    session: AsyncSession, case_id: int, existing: list[Party], parties: list[dict[str, Any]]
) -> None:
    by_identity = {(p.role, p.name): p for p in existing}
    for data in parties:
        party = by_identity.pop((data["role"], data["name"]), None)
        if party is None:
            session.add(Party(case_id=case_id, **data))
        else:
            for k, v in data.items():
                setattr(party, k, v)
            session.add(party)
    # Parties no longer on the case keep their row (bindings and tickets refer to them)
    # but can no longer verify: their phone tail is blanked.
    for gone in by_identity.values():
        gone.phone_tail = ""
        session.add(gone)
