"""Printing a batch of case codes: `mst qr-sheet` over 10,000 cases, a subprocess against a
fresh SQLite database in a temp dir.

    python -m bench.qr_sheet [--cases 10000] [--layout 2x4|3x4] [--seed N] [--keep]

The cases are bench.import_cases' (same generator, same --seed), loaded with
`mst import-staff` and `mst import-cases`, which gives every case its code. Then, each
timed: one case (what any sheet costs before its first code), every case by filing date,
and every case by a list of case numbers (`--cases-file`). Each sheet is checked: its page
count, and the QR codes on its first and last page decoded (pdfium + zxing) against the
URLs the command printed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.import_cases import case_rows, staff_rows, write_jsonl


def decode_pages(pdf_path: Path, pages: list[int]) -> dict[int, list[str]]:
    """The QR codes zxing finds on the given pages (0-based), rasterised at 216 dpi."""
    import pypdfium2 as pdfium
    import zxingcpp

    found: dict[int, list[str]] = {}
    pdf = pdfium.PdfDocument(pdf_path)
    try:
        for i in pages:
            page = pdf[i]
            image = page.render(scale=3).to_pil()
            codes = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
            found[i] = sorted(b.text for b in codes)
            page.close()
        found[-1] = [str(len(pdf))]
    finally:
        pdf.close()
    return found


def check(pdf_path: Path, info: dict[str, Any], per_page: int) -> str:
    """'ok', or what is wrong with the sheet."""
    urls = [c["url"] for c in info["codes"]]
    pages = info["pages"]
    if pages != -(-len(urls) // per_page):
        return f"{pages} pages for {len(urls)} codes"
    found = decode_pages(pdf_path, sorted({0, pages - 1}))
    if found[-1] != [str(pages)]:
        return f"the PDF has {found[-1][0]} pages, the command said {pages}"
    for page in {0, pages - 1}:
        want = sorted(urls[page * per_page : (page + 1) * per_page])
        if found[page] != want:
            return f"page {page + 1}: decoded {len(found[page])} codes, not the {len(want)} printed"
    return "ok"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.qr_sheet", description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=10000)
    p.add_argument("--layout", choices=("2x4", "3x4"), default="2x4")
    p.add_argument("--judges", type=int, default=50)
    p.add_argument("--seed", type=int, default=20261102)
    p.add_argument("--timeout", type=float, default=900, help="cap on any one command, seconds")
    p.add_argument("--mst", help="path to the mst command (default: the venv's)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (PDFs, SQLite)")
    args = p.parse_args(argv)
    if args.cases < 1 or args.judges < 1:
        p.error("--cases and --judges must be positive")
    mst = common.mst_path(args.mst)
    per_page = {"2x4": 8, "3x4": 12}[args.layout]
    print(
        f"bench.qr_sheet: {args.cases} cases, layout {args.layout}, sqlite; "
        f"code {common.code_version()}"
    )

    tmp = Path(tempfile.mkdtemp(prefix="mst-qr-sheet-"))
    results: list[dict[str, Any]] = []
    failed = None
    try:
        rng = random.Random(args.seed)
        judges = staff_rows(args.judges, rng)
        cases = case_rows(args.cases, judges, rng)
        staff_file, cases_file, list_file = (
            tmp / "staff.jsonl",
            tmp / "cases.jsonl",
            tmp / "list.txt",
        )
        write_jsonl(staff_file, judges)
        write_jsonl(cases_file, cases)
        list_file.write_text("".join(c["case_number"] + "\n" for c in cases), encoding="utf-8")
        env = common.child_env(
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/sheet.db",
            MST_DATA_DIR=str(tmp),
            MST_JOBS_IN_PROCESS="0",
            PUBLIC_BASE_URL="https://mst.court.example/hs",
        )

        def mst_run(*cmd: str) -> common.Ran:
            return common.run_measured([mst, *cmd], env=env, cwd=tmp, timeout=args.timeout)

        print("  seeding ...", end=" ", flush=True)
        t0 = time.perf_counter()
        mst_run("migrate")
        mst_run("import-staff", str(staff_file), "--quiet")
        mst_run("import-cases", str(cases_file), "--quiet")
        print(f"{args.cases} cases with codes in {time.perf_counter() - t0:.0f} s", flush=True)

        first, last = min(c["filed_on"] for c in cases), max(c["filed_on"] for c in cases)
        runs = [
            ("one case", [cases[0]["case_number"]]),
            ("by filing date", ["--filed-from", first, "--filed-to", last]),
            ("by case list", ["--cases-file", str(list_file)]),
        ]
        for name, selection in runs:
            print(f"  {name} ...", end=" ", flush=True)
            out = tmp / f"{name.replace(' ', '-')}.pdf"
            ran = mst_run(
                "qr-sheet", *selection, "--out", str(out), "--layout", args.layout, "--json"
            )
            info = json.loads(ran.output.strip().splitlines()[-1])
            results.append(
                {
                    "selection": name,
                    "check": check(out, info, per_page),
                    "cases": info["cases"],
                    "pages": info["pages"],
                    "issued": len(info["issued"]),
                    "wall_s": ran.wall_s,
                    "cpu_s": ran.cpu_s,
                    "box_cores": None if ran.box_busy_s is None else ran.box_busy_s / ran.wall_s,
                    "pdf_mb": out.stat().st_size / 1e6,
                }
            )
            print(f"{ran.wall_s:.1f} s", flush=True)
    except Exception as exc:
        failed = str(exc)
        print(f"FAILED: {exc}", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    start = next((r["wall_s"] for r in results if r["selection"] == "one case"), 0.0)
    print()
    print(
        common.table(
            [
                "selection",
                "check",
                "codes",
                "pages",
                "total s",
                "codes/s",
                "codes/s (net)",
                "mst CPU s",
                "box busy cores",
                "PDF MB",
                "KB/page",
            ],
            [
                [
                    r["selection"],
                    r["check"],
                    r["cases"],
                    r["pages"],
                    r["wall_s"],
                    r["cases"] / r["wall_s"],
                    None
                    if r["selection"] == "one case"
                    else r["cases"] / max(r["wall_s"] - start, 1e-3),
                    r["cpu_s"],
                    r["box_cores"],
                    r["pdf_mb"],
                    r["pdf_mb"] * 1000 / max(r["pages"], 1),
                ]
                for r in results
            ],
        )
    )
    print(
        "\n  total s is the wall time of the whole `mst qr-sheet` subprocess: start-up, the "
        "query, encoding every QR symbol, laying out and writing the PDF. codes/s (net) leaves "
        "out what the one-case sheet took. mst CPU s is the command's own CPU; box busy "
        "cores is every process's CPU on the machine / wall time."
    )
    path = common.save_results(
        "qr_sheet", {"code": common.code_version(), "args": vars(args), "results": results}
    )
    print(f"\nraw results: {path.relative_to(common.REPO)}")
    if failed or not results or any(r["check"] != "ok" for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
