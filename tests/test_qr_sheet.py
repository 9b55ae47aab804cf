"""`mst qr-sheet`: a printable A4 PDF of many cases' codes, run as an operator runs it.

The PDF is opened with pdfium (pypdfium2): pages counted, text read back, and every page
rasterised so that zxing decodes the printed QR codes; what they hold must be the URL
`mst qr --json` gives for the same case.
"""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import select

from bot.dialog.dispatch import Deps
from qr import codes, render, sheet, tokens
from storage.models import AuditEvent, Case, Court
from tests.conftest import COURT
from tests.world import PUBLIC, mst_in_process

OTHER_COURT = "衡水市冀州区人民法院"


def number(n: int, court_code: str = "冀1102") -> str:
    return f"(2026){court_code}民初{n}号"


async def seed(deps: Deps, cases: list[tuple[str, str, date | None]]) -> None:
    """Courts and cases (court, case number, filing date), each with a live code."""
    async with deps.db.transaction() as s:
        courts: dict[str, Court] = {}
        for court_name, case_number, filed_on in cases:
            if court_name not in courts:
                courts[court_name] = Court(name=court_name)
                s.add(courts[court_name])
                await s.flush()
            case = Case(
                court_id=courts[court_name].id,
                case_number=case_number,
                case_type="民事",
                cause="民间借贷纠纷",
                filed_on=filed_on,
            )
            s.add(case)
            await s.flush()
            await codes.issue(s, case, actor="test")


def read_pdf(path: Path) -> list[dict[str, Any]]:
    """Each page's text and the QR codes zxing finds on it, as a phone would (3× = 216 dpi)."""
    pages = []
    pdf = pdfium.PdfDocument(path)
    try:
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            image = page.render(scale=3).to_pil()
            found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
            pages.append({"text": textpage.get_text_range(), "urls": sorted(b.text for b in found)})
            textpage.close()
            page.close()
    finally:
        pdf.close()
    return pages


async def live_codes(deps: Deps, case_numbers: list[str]) -> list[dict[str, Any]]:
    """What `mst qr --json` shows for each case, read from the database."""
    out = []
    async with deps.db.sessions() as s:
        for n in case_numbers:
            case = (await s.execute(select(Case).where(Case.case_number == n))).scalar_one()
            code = await codes.active_code(s, case.id or 0)
            assert code is not None
            url = codes.url_for(PUBLIC, code.token)
            out.append(
                {"case_number": n, "token": code.token, "short_code": code.short_code, "url": url}
            )
    return out


async def qr_json(env: dict[str, str], cwd: Path, case_number: str) -> dict[str, Any]:
    run = await mst_in_process(env, cwd, "qr", case_number, "--json")
    assert run.code == 0, run.err
    return json.loads(run.out)


async def test_a_list_of_cases_prints_scannable_labels_in_order(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    wanted = [number(n) for n in range(1, 10)]  # 9 labels: 8 on page 1, 1 on page 2
    await seed(deps, [(COURT, n, date(2026, 11, 2)) for n in [*wanted, number(99)]])
    out = tmp_path / "codes.pdf"
    run = await mst_in_process(cli_env, tmp_path, "qr-sheet", "--out", str(out), *wanted)
    assert run.code == 0, run.err
    assert run.out.strip() == f"已生成 9 个案件的二维码，共 2 页：{out}"
    assert run.err == ""

    pages = read_pdf(out)
    assert len(pages) == 2
    expected = await live_codes(deps, wanted)
    # What `mst qr` gives for a case: the first and the last label's.
    for i in (0, 8):
        assert await qr_json(cli_env, tmp_path, wanted[i]) == expected[i]
    # Every printed code scans to its case's URL, page by page, in order.
    assert pages[0]["urls"] == sorted(e["url"] for e in expected[:8])
    assert pages[1]["urls"] == [expected[8]["url"]]
    assert all(e["url"].startswith(f"{PUBLIC}/q/") for e in expected)
    # Each label says its court, case number, the short code as printed, and what to do.
    for i, e in enumerate(expected):
        text = pages[i // 8]["text"]
        assert e["case_number"] in text
        assert tokens.pretty(e["short_code"]) in text
    for page in pages:
        assert COURT in page["text"]
        assert sheet.INSTRUCTION in page["text"]
    assert number(99) not in pages[0]["text"] + pages[1]["text"]


async def test_a_filing_date_range_and_a_court(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    rows: list[tuple[str, str, date | None]] = [
        (COURT, number(d), date(2026, 11, d)) for d in range(1, 21)
    ]
    rows += [
        (OTHER_COURT, number(5, "冀1181"), date(2026, 11, 5)),
        (COURT, number(100), None),  # no filing date: never in a date range
    ]
    await seed(deps, rows)
    out = tmp_path / "range.pdf"
    run = await mst_in_process(
        cli_env,
        tmp_path,
        "qr-sheet",
        "--out",
        str(out),
        "--filed-from",
        "2026-11-03",
        "--filed-to",
        "2026-11-12",
        "--court",
        COURT,
        "--json",
    )
    assert run.code == 0, run.err
    info = json.loads(run.out)
    # Both ends included, in filing order, only the court asked for.
    assert [c["case_number"] for c in info["codes"]] == [number(d) for d in range(3, 13)]
    assert (info["cases"], info["pages"]) == (10, 2)
    pages = read_pdf(out)
    assert len(pages) == 2
    assert pages[0]["urls"] == sorted(c["url"] for c in info["codes"][:8])
    assert pages[1]["urls"] == sorted(c["url"] for c in info["codes"][8:])
    assert info["codes"][0]["url"] == (await qr_json(cli_env, tmp_path, number(3)))["url"]

    # Without --court, the other court's case filed that week is on the sheet too.
    run = await mst_in_process(
        cli_env, tmp_path, "qr-sheet", "--out", str(out), "--filed-from", "2026-11-05",
        "--filed-to", "2026-11-05", "--json",
    )  # fmt: skip
    assert run.code == 0, run.err
    info = json.loads(run.out)
    assert [c["case_number"] for c in info["codes"]] == [number(5), number(5, "冀1181")]
    assert [c["court"] for c in info["codes"]] == [COURT, OTHER_COURT]
    assert len(read_pdf(out)) == 1

    # 3x4: twelve to a page.
    run = await mst_in_process(
        cli_env, tmp_path, "qr-sheet", "--out", str(out), "--filed-from", "2026-11-01",
        "--layout", "3x4",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert run.out.strip() == f"已生成 21 个案件的二维码，共 2 页：{out}"
    pages = read_pdf(out)
    assert len(pages) == 2 and len(pages[0]["urls"]) == 12 and len(pages[1]["urls"]) == 9


async def test_unknown_case_numbers_are_listed_and_the_rest_printed(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await seed(deps, [(COURT, number(n), None) for n in (1, 2)])
    await seed(deps, [(OTHER_COURT, number(1, "冀1181"), None)])
    out = tmp_path / "codes.pdf"
    cases_file = tmp_path / "cases.txt"
    # As people keep such lists: a BOM, blank lines, a comment, a repeat, stray spaces.
    cases_file.write_text(
        "\ufeff# 本周立案\n"
        f"{number(1)}\n\n  {number(404)}  \n{number(2)}\n{number(1)}\n"
        f"{number(1, '冀1181')}\n{number(405)}\n",
        encoding="utf-8",
    )
    run = await mst_in_process(
        cli_env, tmp_path, "qr-sheet", "--out", str(out), "--cases-file", str(cases_file),
        "--court", COURT,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert run.out.strip() == f"已生成 2 个案件的二维码，共 1 页：{out}"
    assert run.err.splitlines() == [
        "mst: 以下 2 个案号查无此案，未打印：",
        f"  {number(404)}",
        f"  {number(405)}",
        f"mst: 以下 1 个案件不属于{COURT}，未打印：",
        f"  {number(1, '冀1181')}",
    ]
    [page] = read_pdf(out)
    assert len(page["urls"]) == 2

    # The same for a program.
    run = await mst_in_process(
        cli_env, tmp_path, "qr-sheet", "--out", str(out), number(2), number(404), "--json"
    )
    assert run.code == 0, run.err
    info = json.loads(run.out)
    assert (info["unknown"], info["other_court"]) == ([number(404)], [])
    assert [c["case_number"] for c in info["codes"]] == [number(2)]

    # Nothing to print: no file, a non-zero exit, and still the list.
    out.unlink()
    run = await mst_in_process(
        cli_env, tmp_path, "qr-sheet", "--out", str(out), number(404), "--json"
    )
    assert run.code == 1
    info = json.loads(run.out)
    assert (info["cases"], info["pages"], info["file"]) == (0, 0, None)
    assert info["unknown"] == [number(404)]
    assert not out.exists()
    run = await mst_in_process(cli_env, tmp_path, "qr-sheet", "--out", str(out), number(404))
    assert run.code == 1 and not out.exists()
    assert f"  {number(404)}" in run.err.splitlines()
    run = await mst_in_process(
        cli_env, tmp_path, "qr-sheet", "--out", str(out), "--filed-from", "2030-01-01"
    )
    assert run.code == 1 and not out.exists()


async def test_a_cases_file_saved_by_windows_notepad_in_gbk(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await seed(deps, [(COURT, number(n), None) for n in (1, 2)])
    cases_file = tmp_path / "cases.txt"
    cases_file.write_bytes(f"{number(2)}\r\n{number(1)}\r\n".encode("gbk"))
    run = await mst_in_process(
        cli_env, tmp_path, "qr-sheet", "--out", str(tmp_path / "c.pdf"), "--cases-file",
        str(cases_file), "--json",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert [c["case_number"] for c in json.loads(run.out)["codes"]] == [number(2), number(1)]


async def test_json_shape_and_a_case_without_a_code_gets_one(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await seed(deps, [(COURT, number(n), date(2026, 11, 2)) for n in (1, 2)])
    revoked = await mst_in_process(cli_env, tmp_path, "qr", number(2), "--revoke")
    assert revoked.code == 0, revoked.err
    out = tmp_path / "codes.pdf"
    run = await mst_in_process(
        cli_env, tmp_path, "qr-sheet", "--out", str(out), number(1), number(2), "--json"
    )
    assert run.code == 0, run.err
    [line] = run.out.splitlines()
    info = json.loads(line)
    assert set(info) == {
        "file", "cases", "pages", "layout", "issued", "unknown", "other_court", "codes",
    }  # fmt: skip
    assert info["file"] == str(out)
    assert (info["cases"], info["pages"], info["layout"]) == (2, 1, "2x4")
    assert (info["issued"], info["unknown"], info["other_court"]) == ([number(2)], [], [])
    for entry in info["codes"]:
        assert set(entry) == {"case_number", "court", "token", "short_code", "url", "page"}
        assert entry["page"] == 1 and entry["court"] == COURT
    # The codes on the sheet are the cases' live codes; `mst qr` shows the new one.
    shown = [{k: v for k, v in e.items() if k not in ("court", "page")} for e in info["codes"]]
    assert shown == await live_codes(deps, [number(1), number(2)])
    assert shown[1] == await qr_json(cli_env, tmp_path, number(2))
    async with deps.db.sessions() as s:
        case_id = (
            await s.execute(select(Case.id).where(Case.case_number == number(2)))
        ).scalar_one()
        trail = (
            await s.execute(
                select(AuditEvent.action, AuditEvent.actor)
                .where(AuditEvent.case_id == case_id)
                .order_by(AuditEvent.seq)
            )
        ).all()
    assert [tuple(r) for r in trail] == [
        ("code.issued", "test"),
        ("code.revoked", "admin"),
        ("code.issued", "admin"),
    ]
    [page] = read_pdf(out)
    assert page["urls"] == sorted(e["url"] for e in info["codes"])
    # A second sheet prints the same codes: nothing is issued twice.
    run = await mst_in_process(
        cli_env, tmp_path, "qr-sheet", "--out", str(out), number(2), "--json"
    )
    again = json.loads(run.out)
    assert again["issued"] == [] and again["codes"][0]["token"] == info["codes"][1]["token"]


@pytest.mark.parametrize(
    "args",
    [
        [],  # nothing chosen
        [number(1), "--filed-from", "2026-11-01"],  # two selections at once
        ["--filed-from", "2026-11-05", "--filed-to", "2026-11-01"],
    ],
)
async def test_a_wrong_selection_is_refused_with_exit_2(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / "codes.pdf"
    run = await mst_in_process(cli_env, tmp_path, "qr-sheet", "--out", str(out), *args)
    assert run.code == 2
    assert run.out == "" and run.err.startswith("mst: ")
    assert not out.exists()


def test_the_sheet_module_alone(tmp_path: Path) -> None:
    urls = [f"{PUBLIC}/q/{tokens.new_token()}" for _ in range(20)]
    labels = [
        sheet.Label(COURT, number(i), tokens.new_short_code(), url) for i, url in enumerate(urls)
    ]
    out = tmp_path / "sheet.pdf"
    assert sheet.write(labels, out) == 3
    pages = read_pdf(out)
    assert [p["urls"] for p in pages] == [sorted(urls[i : i + 8]) for i in (0, 8, 16)]
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind
    assert sheet.page_count(1) == 1 and sheet.page_count(8) == 1 and sheet.page_count(9) == 2
    assert sheet.page_count(12, "3x4") == 1 and sheet.page_count(13, "3x4") == 2
    with pytest.raises(ValueError):
        sheet.write([], tmp_path / "empty.pdf")
    assert list(tmp_path.iterdir()) == [out]


def test_the_printed_symbol_corrects_errors_as_mst_qr_png_does(tmp_path: Path) -> None:
    """Two encoders (zxing-cpp here, qrcode for `mst qr --png`), one error-correction level."""
    url = f"{PUBLIC}/q/{tokens.new_token()}"
    [from_png] = zxingcpp.read_barcodes(Image.open(io.BytesIO(render.png(url))))
    out = tmp_path / "one.pdf"
    sheet.write([sheet.Label(COURT, number(1), tokens.new_short_code(), url)], out)
    pdf = pdfium.PdfDocument(out)
    try:
        [from_pdf] = zxingcpp.read_barcodes(pdf[0].render(scale=3).to_pil())
    finally:
        pdf.close()
    assert from_pdf.text == from_png.text == url
    assert from_pdf.ec_level == from_png.ec_level == sheet.EC_LEVEL
