"""The real `mst` console script, run as an operator runs it, against the test database.
A test that looks only at what a command prints and does runs the same `bot.cli.main` in
this process (tests.world.mst_in_process): a process start is most of a run's time."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from defusedxml import ElementTree
from PIL import Image
from sqlalchemy import select, text, update

from bot.dialog.dispatch import Deps
from bot.rules import staff as staff_codes
from bot.rules.importer import import_staff
from qr import codes, tokens
from storage.models import AuditEvent, Case, CaseCode, Staff
from tests.conftest import CASE_NUMBER, COURT
from tests.world import PUBLIC, mst, mst_in_process


def write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows
        ),
        encoding="utf-8",
    )
    return path


STAFF = [
    {"username": "zhangwei", "name": "张伟", "court": COURT, "roles": ["judge"], "team": "民一庭"},
    {"username": "lina", "name": "李娜", "court": COURT, "roles": ["clerk"]},
]


def case_row(number: str, phone: str = "13800001234") -> dict[str, Any]:
    return {
        "court": COURT,
        "case_number": number,
        "case_type": "民事",
        "cause": "民间借贷纠纷",
        "judge": "zhangwei",
        "filed_on": "2026-11-02",
        "parties": [{"role": "原告", "name": "王某某", "phone": phone}],
    }


def decode_png(data: bytes) -> list[str]:
    return [b.text for b in zxingcpp.read_barcodes(Image.open(io.BytesIO(data)))]


async def live_code(deps: Deps, case_id: int) -> CaseCode | None:
    async with deps.db.sessions() as s:
        return await codes.active_code(s, case_id)


# -- import ------------------------------------------------------------------------------


async def test_import_staff_clean_file_exits_0(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "staff.jsonl", STAFF)
    run = await mst(cli_env, tmp_path, "import-staff", str(path))
    assert run.code == 0, run.err
    assert run.out.strip() == "人员：新增 2，更新 0，未变 0，跳过 0"
    assert "未导入" not in run.err
    async with deps.db.sessions() as s:
        assert set((await s.execute(select(Staff.username))).scalars()) == {"zhangwei", "lina"}


async def test_import_cases_reports_bad_rows_by_line_and_exits_1(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await import_staff(deps.db, write_lines(tmp_path / "staff.jsonl", STAFF), progress=False)
    good = [case_row("(2026)冀1102民初1号"), case_row("(2026)冀1102民初2号", "13900005678")]
    rows: list[Any] = [
        good[0],
        {**case_row("(2026)冀1102民初3号"), "judge": "nobody"},
        good[1],
        '{"court": ',
        {**case_row("(2026)冀1102民初4号", "+852 9123 4567")},
    ]
    path = write_lines(tmp_path / "cases.jsonl", rows)
    run = await mst_in_process(cli_env, tmp_path, "import-cases", str(path), "--quiet")
    assert run.code == 1
    assert run.out.strip() == "案件：新增 2，更新 0，未变 0，跳过 3"
    skipped = [line for line in run.err.splitlines() if "未导入" in line]
    assert [line.split("：")[0] for line in skipped] == [
        "第 2 行未导入",
        "第 4 行未导入",
        "第 5 行未导入",
    ]
    assert "nobody" in skipped[0] and "not valid JSON" in skipped[1]
    assert "not a mainland mobile" in skipped[2]
    for phone in ("13800001234", "13900005678", "91234567"):
        assert phone not in run.out + run.err
    async with deps.db.sessions() as s:
        numbers = set((await s.execute(select(Case.case_number))).scalars())
    assert numbers == {"(2026)冀1102民初1号", "(2026)冀1102民初2号"}


async def test_import_of_a_missing_file_is_one_line(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    run = await mst_in_process(cli_env, tmp_path, "import-cases", "no-such-file.jsonl")
    assert run.code == 1
    assert run.out == ""
    assert run.err.strip().splitlines() == ["mst: cannot read no-such-file.jsonl: no such file"]


# -- qr ----------------------------------------------------------------------------------


async def test_qr_prints_json_and_writes_images(
    deps: Deps, sample_case: dict[str, Any], cli_env: dict[str, str], tmp_path: Path
) -> None:
    png, svg = tmp_path / "code.png", tmp_path / "code.svg"
    run = await mst_in_process(
        cli_env, tmp_path, "qr", CASE_NUMBER, "--json", "--png", str(png), "--svg", str(svg)
    )
    assert run.code == 0, run.err
    [line] = run.out.splitlines()
    info = json.loads(line)
    assert set(info) == {"case_number", "token", "short_code", "url"}
    # The case's live code is shown, not replaced.
    assert info["case_number"] == CASE_NUMBER
    assert info["token"] == sample_case["token"]
    assert info["short_code"] == sample_case["short_code"]
    assert info["url"] == f"{PUBLIC}/q/{sample_case['token']}"
    assert decode_png(png.read_bytes()) == [info["url"]]
    root = ElementTree.fromstring(svg.read_bytes())
    assert root.tag.endswith("svg")
    # Without --json: what an operator reads off the screen.
    plain = await mst_in_process(cli_env, tmp_path, "qr", CASE_NUMBER)
    assert plain.code == 0, plain.err
    assert CASE_NUMBER in plain.out
    assert tokens.pretty(sample_case["short_code"]) in plain.out
    assert info["url"] in plain.out
    async with deps.db.sessions() as s:
        assert len((await s.execute(select(CaseCode))).all()) == 1


async def test_qr_revoke_then_reissue(
    deps: Deps, sample_case: dict[str, Any], cli_env: dict[str, str], tmp_path: Path
) -> None:
    case_id = sample_case["case_id"]
    old = sample_case["token"]

    run = await mst_in_process(
        cli_env, tmp_path, "qr", CASE_NUMBER, "--revoke", "--reason", "文书遗失"
    )
    assert (run.code, run.out.strip()) == (0, "二维码已停用。")
    assert await live_code(deps, case_id) is None
    async with deps.db.sessions() as s:
        revoked = (await s.execute(select(CaseCode).where(CaseCode.token == old))).scalar_one()
        assert (await codes.by_token(s, old)).status == "revoked"
    assert revoked.revoke_reason == "文书遗失"

    run = await mst_in_process(cli_env, tmp_path, "qr", CASE_NUMBER, "--revoke", "--json")
    assert (run.code, json.loads(run.out)) == (0, {"case_number": CASE_NUMBER, "revoked": False})

    # Asking for the code of a case without one issues a fresh one.
    run = await mst_in_process(cli_env, tmp_path, "qr", CASE_NUMBER, "--json")
    assert run.code == 0, run.err
    first = json.loads(run.out)
    assert first["token"] != old and first["short_code"] != sample_case["short_code"]
    assert first["url"] == f"{PUBLIC}/q/{first['token']}"
    live = await live_code(deps, case_id)
    assert live is not None and live.token == first["token"]

    # --reissue replaces a live code.
    run = await mst_in_process(cli_env, tmp_path, "qr", CASE_NUMBER, "--json", "--reissue")
    assert run.code == 0, run.err
    second = json.loads(run.out)
    assert second["token"] not in (old, first["token"])
    async with deps.db.sessions() as s:
        assert (await codes.by_token(s, first["token"])).status == "revoked"
        assert (await codes.by_token(s, second["token"])).status == "ok"
        rows = (await s.execute(select(CaseCode).where(CaseCode.case_id == case_id))).scalars()
        assert sum(c.revoked_at is None for c in rows) == 1
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
        ("code.revoked", "admin"),
        ("code.issued", "admin"),
    ]


async def test_qr_for_an_unknown_case_exits_1(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    run = await mst(cli_env, tmp_path, "qr", "(2026)冀1102民初404号", "--json")
    assert run.code == 1
    assert run.out == ""
    assert "no case (2026)冀1102民初404号" in run.err
    assert len(run.err.strip().splitlines()) == 1


# -- staff-code --------------------------------------------------------------------------


async def test_staff_code_keeps_only_a_hash_and_a_new_code_replaces_the_old(
    deps: Deps, sample_case: dict[str, Any], cli_env: dict[str, str], tmp_path: Path
) -> None:
    first = await mst(cli_env, tmp_path, "staff-code", "zhangwei", "--json")
    second = await mst(cli_env, tmp_path, "staff-code", "zhangwei", "--json")
    assert first.code == second.code == 0, first.err + second.err
    one, two = json.loads(first.out), json.loads(second.out)
    assert set(one) == {"username", "bind_code"} and one["username"] == "zhangwei"
    assert one["bind_code"] != two["bind_code"]
    for code in (one["bind_code"], two["bind_code"]):
        assert len(code) == staff_codes.BIND_CODE_LEN and set(code) <= set(tokens.ALPHABET)
    async with deps.db.sessions() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
        payloads = (
            await s.execute(
                select(AuditEvent.payload).where(AuditEvent.action == "staff.bind_code_issued")
            )
        ).all()
    assert judge.bind_code_hash == staff_codes.code_hash(two["bind_code"])
    assert judge.bind_code_hash != staff_codes.code_hash(one["bind_code"])
    assert two["bind_code"] not in (judge.bind_code_hash or "")
    assert len(payloads) == 2
    assert all(c not in str(payloads) for c in (one["bind_code"], two["bind_code"]))

    missing = await mst(cli_env, tmp_path, "staff-code", "nobody", "--json")
    assert missing.code == 1 and missing.out == ""
    assert "no staff member nobody" in missing.err


# -- audit -------------------------------------------------------------------------------


async def _tamper(deps: Deps, event_id: int) -> None:
    """What only someone with database rights can do: switch the guard off and edit a row."""
    async with deps.db.transaction() as s:
        if deps.db.dialect == "postgresql":
            await s.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
        else:
            await s.execute(text("DROP TRIGGER audit_event_no_update"))
        await s.execute(
            text("UPDATE audit_event SET payload = :p WHERE id = :id"),
            {"p": '{"short_code":"0000000000"}', "id": event_id},
        )


async def test_audit_verify_and_export(
    deps: Deps, sample_case: dict[str, Any], cli_env: dict[str, str], tmp_path: Path
) -> None:
    async with deps.db.transaction() as s:
        case = await s.get(Case, sample_case["case_id"])
        assert case is not None
        await codes.issue(s, case, actor="admin")  # revoked + issued: 3 events in the chain

    intact = await mst_in_process(cli_env, tmp_path, "audit", "verify")
    assert intact.code == 0, intact.err
    assert "intact" in intact.out and "3 events" in intact.out

    export = await mst_in_process(cli_env, tmp_path, "audit", "export", "--case", CASE_NUMBER)
    assert export.code == 0, export.err
    lines = [json.loads(line) for line in export.out.splitlines()]
    assert [(e["seq"], e["action"]) for e in lines] == [
        (1, "code.issued"),
        (2, "code.revoked"),
        (3, "code.issued"),
    ]
    assert lines[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(lines, lines[1:], strict=False))
    assert lines[1]["payload"]["reason"] == "reissued"

    async with deps.db.sessions() as s:
        ids = (
            (
                await s.execute(
                    select(AuditEvent.id)
                    .where(AuditEvent.case_id == sample_case["case_id"])
                    .order_by(AuditEvent.seq)
                )
            )
            .scalars()
            .all()
        )
    await _tamper(deps, ids[1])
    # An old event edited: the incremental check (the default) reads new events only.
    broken = await mst_in_process(cli_env, tmp_path, "audit", "verify", "--full")
    assert broken.code != 0
    first = broken.err.strip().splitlines()[0]
    assert f"event id={ids[1]} " in first and "edited" in first
    assert f"event id={ids[0]} " not in broken.err and f"event id={ids[2]} " not in broken.err


# -- configuration errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("WECHAT_AES_KEY", "short"), ("DATABASE_URL", "mysql://x"), ("PUBLIC_BASE_URL", "ftp://x")],
)
async def test_a_configuration_error_exits_2_with_one_line(
    cli_env: dict[str, str], tmp_path: Path, name: str, value: str
) -> None:
    run = await mst({**cli_env, name: value}, tmp_path, "audit", "verify")
    assert run.code == 2
    assert run.out == ""
    [line] = run.err.strip().splitlines()
    assert line.startswith("mst: configuration error:") and name in line


async def test_outbox_lists_failed_notices_and_retries_them(
    deps: Deps, cli_env: dict[str, str], tmp_path: Path
) -> None:
    from bot.outbox import queue
    from storage.models import Outbox

    async with deps.db.transaction() as s:
        await queue.tell(s, "oFailed00000000000000001", "您的咨询 #3 已有答复，电话13800001234")
        await queue.tell(s, "oWaiting0000000000000001", "还在等")
    async with deps.db.transaction() as s:
        await s.execute(
            update(Outbox)
            .where(Outbox.recipient == "oFailed00000000000000001")
            .values(status="failed", last_error="43004 对方没有关注或已取消关注公众号")
        )
    run = await mst(cli_env, tmp_path, "outbox", "--json")
    assert run.code == 0, run.err
    listed = json.loads(run.out)
    assert listed["counts"] == {"failed": 1, "pending": 1}
    assert [f["error"] for f in listed["failed"]] == ["43004 对方没有关注或已取消关注公众号"]
    human = await mst(cli_env, tmp_path, "outbox")
    assert "失败 1 条" in human.out and "mst outbox retry" in human.out
    assert "13800001234" not in human.out  # phone numbers masked
    retried = await mst(cli_env, tmp_path, "outbox", "retry", "--json")
    assert json.loads(retried.out) == {"requeued": 1}
    after = json.loads((await mst(cli_env, tmp_path, "outbox", "--json")).out)
    assert after["counts"] == {"pending": 2} and after["failed"] == []
