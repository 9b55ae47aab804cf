"""Bulk import through the real CLI: `mst import-staff`, `mst import-cases --quiet` (twice:
the second run must change nothing) and `mst audit verify`, each a subprocess against a
fresh database.

    python -m bench.import_cases [--cases 10000] [--backend sqlite|pg|both]

The generated data look like a basic-level court's: 衡水市桃城区人民法院, case numbers
(2026)冀1102民初{n}号 (and some 执 cases), two parties each with a valid mainland mobile,
a judge from a generated staff file of ~50 judges. Same --seed, same files.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench import common

COURT = "衡水市桃城区人民法院"
COURT_CODE = "冀1102"
SURNAMES = {
    "王": "wang", "李": "li", "张": "zhang", "刘": "liu", "陈": "chen", "杨": "yang",
    "赵": "zhao", "黄": "huang", "周": "zhou", "吴": "wu", "徐": "xu", "孙": "sun",
    "胡": "hu", "朱": "zhu", "高": "gao", "林": "lin", "何": "he", "郭": "guo",
    "马": "ma", "罗": "luo", "梁": "liang", "宋": "song", "郑": "zheng", "谢": "xie",
}  # fmt: skip
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红玉兰海波鹏宇浩然文博"
TEAMS = ["民一庭", "民二庭", "民三庭", "商事审判庭", "立案庭", "执行局"]
CIVIL_CAUSES = [
    "民间借贷纠纷",
    "买卖合同纠纷",
    "离婚纠纷",
    "机动车交通事故责任纠纷",
    "物业服务合同纠纷",
    "劳动争议",
    "房屋租赁合同纠纷",
    "金融借款合同纠纷",
    "继承纠纷",
    "信用卡纠纷",
    "建设工程施工合同纠纷",
    "追索劳动报酬纠纷",
]
COMPANIES = ["衡水", "桃城", "冀州", "滨湖", "安平"]
COMPANY_KINDS = ["商贸有限公司", "建筑工程有限公司", "物业服务有限公司", "农村商业银行股份有限公司"]
SUMMARY = re.compile(r"新增 (\d+)，更新 (\d+)，未变 (\d+)，跳过 (\d+)")
VERIFY = re.compile(r"(\d+) events in (\d+) chains")


def person(rng: random.Random) -> tuple[str, str]:
    surname = rng.choice(list(SURNAMES))
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    return surname, surname + given


def mobile(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


def staff_rows(n: int, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(1, n + 1):
        surname, name = person(rng)
        team = TEAMS[i % len(TEAMS)]
        roles = ["judge", "enforcement"] if team == "执行局" else ["judge"]
        rows.append(
            {
                "username": f"{SURNAMES[surname]}{i:02d}",
                "name": name,
                "court": COURT,
                "roles": roles,
                "team": team,
            }
        )
    return rows


def case_rows(n: int, judges: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    civil = [j for j in judges if "enforcement" not in j["roles"]]
    enforcement = [j for j in judges if "enforcement" in j["roles"]] or civil
    rows = []
    numbers = {"民初": 0, "执": 0}
    start = date(2026, 1, 4)
    for i in range(n):
        kind = "执" if rng.random() < 0.15 else "民初"
        numbers[kind] += 1
        cause = rng.choice(CIVIL_CAUSES)
        judge = rng.choice(enforcement if kind == "执" else civil)
        plaintiff = person(rng)[1]
        if rng.random() < 0.2:
            plaintiff = rng.choice(COMPANIES) + rng.choice(COMPANY_KINDS)
        parties = [
            {
                "role": "申请执行人" if kind == "执" else "原告",
                "name": plaintiff,
                "phone": mobile(rng),
            },
            {
                "role": "被执行人" if kind == "执" else "被告",
                "name": person(rng)[1],
                "phone": mobile(rng),
            },
        ]
        # A few numbers as people type them: spaces, dashes, +86.
        if rng.random() < 0.05:
            p = parties[1]["phone"]
            parties[1]["phone"] = f"+86 {p[:3]}-{p[3:7]}-{p[7:]}"
        rows.append(
            {
                "court": COURT,
                "case_number": f"(2026){COURT_CODE}{kind}{numbers[kind]}号",
                "case_type": "执行" if kind == "执" else "民事",
                "cause": cause,
                "judge": judge["username"],
                "filed_on": (start + timedelta(days=i * 330 // max(n, 1))).isoformat(),
                "parties": parties,
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def summary(output: str) -> dict[str, int]:
    m = SUMMARY.search(output)
    if not m:
        raise RuntimeError(f"no import summary in the output:\n{output[-2000:]}")
    return dict(
        zip(("added", "updated", "unchanged", "skipped"), map(int, m.groups()), strict=True)
    )


def run_backend(backend: str, args: argparse.Namespace, mst: str, tmp: Path) -> dict[str, Any]:
    work = tmp / backend
    work.mkdir()
    rng = random.Random(args.seed)
    judges = staff_rows(args.judges, rng)
    cases = case_rows(args.cases, judges, rng)
    staff_file, cases_file = work / "staff.jsonl", work / "cases.jsonl"
    write_jsonl(staff_file, judges)
    write_jsonl(cases_file, cases)

    if backend == "sqlite":
        db_url = f"sqlite+aiosqlite:///{work}/import.db"
    else:
        common.reset_pg(common.PG_URL)
        db_url = common.PG_URL
    env = common.child_env(DATABASE_URL=db_url, MST_DATA_DIR=str(work), MST_JOBS_IN_PROCESS="0")
    timeout = args.timeout

    def mst_run(*cmd: str) -> tuple[float, str]:
        return common.run([mst, *cmd], env=env, cwd=work, timeout=timeout)

    out: dict[str, Any] = {
        "backend": backend,
        "cases": len(cases),
        "judges": len(judges),
        "file_mb": cases_file.stat().st_size / 1e6,
    }
    out["migrate_s"], _ = mst_run("migrate")
    # What any `mst` command costs before it does anything: interpreter, imports, connect.
    out["overhead_s"], _ = mst_run("migrate")
    out["staff_s"], text = mst_run("import-staff", str(staff_file), "--quiet")
    out["staff"] = summary(text)
    ran = common.run_measured(
        [mst, "import-cases", str(cases_file), "--quiet"], env=env, cwd=work, timeout=timeout
    )
    out["import_s"], text = ran.wall_s, ran.output
    out["import_cpu_s"] = ran.cpu_s
    out["import_box_cores"] = None if ran.box_busy_s is None else ran.box_busy_s / ran.wall_s
    out["first"] = summary(text)
    out["reimport_s"], text = mst_run("import-cases", str(cases_file), "--quiet")
    out["second"] = summary(text)
    out["verify_s"], text = mst_run("audit", "verify")
    m = VERIFY.search(text)
    out["verify"] = text.strip().splitlines()[-1] if text.strip() else ""
    out["events"] = int(m.group(1)) if m else None
    out["ok"] = (
        out["first"]["added"] == len(cases)
        and out["second"]["unchanged"] == len(cases)
        and out["first"]["skipped"] == out["second"]["skipped"] == 0
        and "intact" in out["verify"]
    )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.import_cases", description=__doc__.split("\n")[0]
    )
    p.add_argument("--cases", type=int, default=10000)
    p.add_argument("--backend", choices=("sqlite", "pg", "both"), default="both")
    p.add_argument("--judges", type=int, default=50)
    p.add_argument("--seed", type=int, default=20261102)
    p.add_argument("--timeout", type=float, default=900, help="cap on any one command, seconds")
    p.add_argument("--mst", help="path to the mst command (default: the venv's)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (files, SQLite)")
    args = p.parse_args(argv)
    if args.cases < 1 or args.judges < 1:
        p.error("--cases and --judges must be positive")
    mst = common.mst_path(args.mst)
    backends = ["sqlite", "pg"] if args.backend == "both" else [args.backend]
    print(
        f"bench.import_cases: {args.cases} cases, {args.judges} judges, backends: "
        f"{', '.join(backends)}; code {common.code_version()}"
    )

    tmp = Path(tempfile.mkdtemp(prefix="mst-import-"))
    results: list[dict[str, Any]] = []
    try:
        for backend in backends:
            print(f"  {backend} ...", end=" ", flush=True)
            t0 = time.perf_counter()
            try:
                results.append(run_backend(backend, args, mst, tmp))
            except Exception as exc:
                print(f"FAILED: {exc}", flush=True)
                results.append({"backend": backend, "failed": str(exc)})
                continue
            print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    ok = [r for r in results if "failed" not in r]
    print()
    print(
        common.table(
            [
                "backend",
                "check",
                "cases",
                "import s",
                "cases/s",
                "mst CPU s",
                "box busy cores",
                "re-import s",
                "re-import cases/s",
                "staff s",
                "verify s",
                "events",
                "verify events/s (net)",
                "mst start s",
            ],
            [
                [
                    r["backend"],
                    "ok" if r["ok"] else "WRONG",
                    r["cases"],
                    r["import_s"],
                    r["cases"] / r["import_s"],
                    r["import_cpu_s"],
                    r["import_box_cores"],
                    r["reimport_s"],
                    r["cases"] / r["reimport_s"],
                    r["staff_s"],
                    r["verify_s"],
                    r["events"],
                    (r["events"] or 0) / max(r["verify_s"] - r["overhead_s"], 1e-3),
                    r["overhead_s"],
                ]
                for r in ok
            ],
        )
    )
    print()
    for r in results:
        if "failed" in r:
            print(f"  {r['backend']}: FAILED: {r['failed'][:500]}")
            continue
        print(
            f"  {r['backend']}: cases file {r['file_mb']:.1f} MB; staff {r['staff']}; "
            f"first import {r['first']}; second import {r['second']}; {r['verify']}"
        )
    print(
        "\n  Every figure is the wall time of a whole `mst` subprocess, so each includes the "
        "start-up in the last column (interpreter, imports, database connect: `mst migrate` "
        "on an up-to-date schema). cases/s = cases / import s. mst CPU s is the import "
        "process's own CPU; box busy cores is every process's CPU on the machine during the "
        "import / its wall time (the database's share, and anyone else's, is in there). "
        "verify events/s (net) = events / (verify s - mst start s)."
    )
    path = common.save_results(
        "import", {"code": common.code_version(), "args": vars(args), "results": results}
    )
    print(f"\nraw results: {path.relative_to(common.REPO)}")
    if len(ok) != len(results) or not all(r["ok"] for r in ok):
        sys.exit(1)


if __name__ == "__main__":
    main()
