"""The mini-program's API (/api/mp/v1) end to end over HTTP, against the fake WeChat: sign
in, verify for a case, ask, the judge answers in the Official Account chat, the app sees
it and one subscribe message goes out. Then who may see what (404 for what is not theirs,
401 without a live session), the lockout shared with the chat, and WeChat's refusals."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from bot.channels.miniprogram import api as mp
from bot.core.addresses import mp_user
from bot.rules import attempts, people
from bot.rules.importer import phone_hash
from handlers import texts
from storage.models import AppSession, AuditEvent, Binding, Court, Party
from tests.conftest import CASE_NUMBER
from tests.world import JUDGE_WX, LITIGANT, World, bind_judge, verify_litigant

P = mp.PREFIX
APP_USER = "oMP_litigant_000000000000001"  # the mini-program's own openid for them
OTHER = "oMP_stranger_000000000000002"
PHONE = "13800001234"  # the sample case's plaintiff's registered phone


async def call(
    w: World,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    status: int = 200,
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await w.client.request(method, P + path, json=body, headers=headers)
    text = await resp.text()
    assert resp.status == status, (method, path, resp.status, text)
    return await resp.json() if text else None


async def login(w: World, openid: str = APP_USER, unionid: str | None = None) -> str:
    said = await call(w, "POST", "/login", body={"code": w.fake.login_code(openid, unionid)})
    return str(said["token"])


async def register_phone(w: World) -> None:
    """The sample case's parties, with their phones' keyed hashes as the import makes them."""
    async with w.deps.db.transaction() as s:
        await s.execute(
            update(Party)
            .where(Party.phone_tail == "1234")  # type: ignore[arg-type]
            .values(phone_hash=phone_hash(w.deps.settings.secret_key, PHONE))
        )


async def verified(w: World, token: str) -> dict[str, Any]:
    await register_phone(w)
    body = {"scan": w.case["token"], "phone_code": w.fake.phone_code(PHONE)}
    said: dict[str, Any] = await call(w, "POST", "/verify", token, body)
    return said


async def test_sign_in_verify_ask_and_see_the_judges_answer(world: World) -> None:
    w = world
    await bind_judge(w)
    token = await login(w)
    assert (await call(w, "GET", "/cases", token))["cases"] == []

    said = await verified(w, token)
    assert said["verified"] is True and "验证成功" in said["message"]
    case = said["case"]
    assert (case["case_number"], case["role"], case["verified_by"]) == (
        CASE_NUMBER,
        "原告",
        "phone_number",
    )
    assert case["judge"] == {"name": "张伟", "title": "法官"}
    async with w.deps.db.sessions() as s:
        binding = (await s.execute(select(Binding))).scalar_one()
        assert (binding.openid, binding.method) == (mp_user(APP_USER), "phone_number")
        bound = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "bind.verified"))
        ).scalar_one()
        assert '"method":"phone_number"' in bound.payload.replace(" ", "")

    # The app grants one subscribe message, then asks.
    template = w.deps.settings.miniprogram.subscribe_template_id
    granted = await call(w, "POST", "/subscriptions", token, {"template_ids": [template, "x"]}, 201)
    assert granted == {"granted": 1}
    w.fake.grant(APP_USER, template)
    asked = await call(
        w,
        "POST",
        "/items",
        token,
        {"case_id": case["id"], "kind": "question", "text": "请问什么时候开庭？"},
        201,
    )
    number = asked["ticket_id"]
    assert f"#{number}" in asked["message"] and asked["receipt_url"].startswith(
        w.deps.settings.public_base_url + "/v/"
    )
    mine = (await call(w, "GET", "/items", token))["items"]
    assert [(i["id"], i["status"], i["kind_name"]) for i in mine] == [(number, "open", "咨询")]
    assert "张伟" in mine[0]["holder"] and mine[0]["due_at"]
    # The question is recorded as the chat's are: a message in, from the mini-program.
    async with w.deps.db.sessions() as s:
        recorded = (
            (
                await s.execute(
                    select(AuditEvent)
                    .where(AuditEvent.action == "message.in")
                    .order_by(AuditEvent.id)
                )
            )
            .scalars()
            .all()
        )
    assert any('"channel":"miniprogram"' in e.payload.replace(" ", "") for e in recorded)

    cursor = (await call(w, "GET", "/events?since=0", token))["cursor"]
    # The judge answers in the Official Account chat.
    await w.say(JUDGE_WX, f"#{number} 12月10日上午九点开庭。")
    seen = await call(w, "GET", f"/events?since={cursor}&wait=0", token)
    assert [e["text"] for e in seen["events"]] and "12月10日上午九点开庭" in seen["events"][-1][
        "text"
    ]
    assert seen["events"][-1]["ticket_id"] == number
    assert (await call(w, "GET", f"/events?since={seen['cursor']}", token))["events"] == []

    thread = await call(w, "GET", f"/items/{number}", token)
    said = [(x["mine"], x["text"]) for x in thread["thread"]]
    assert said[0] == (True, "请问什么时候开庭？")
    assert said[1][0] is False and said[1][1].endswith("12月10日上午九点开庭。")
    assert "张伟" in thread["thread"][1]["who"] and len(said) == 2
    assert thread["item"]["status"] == "answered"

    # One subscribe message for the one grant; the next notice stays in the app.
    await w.deliver()
    pushed = [m for m in w.fake.sent_to(APP_USER) if m.kind == "subscribe"]
    assert len(pushed) == 1 and "12月10日" in str(pushed[0].payload)
    added = await call(w, "POST", f"/items/{number}/messages", token, {"text": "好的，谢谢。"})
    assert added["ticket_id"] == number
    await w.say(JUDGE_WX, f"#{number} 不客气。")
    await w.deliver()
    assert len([m for m in w.fake.sent_to(APP_USER) if m.kind == "subscribe"]) == 1
    assert w.inbox(JUDGE_WX)  # the judge was told in the chat, as always

    rated = await call(w, "POST", "/ratings", token, {"case_id": case["id"], "score": 1})
    assert rated["message"] == texts.APP_RATED


async def test_no_one_sees_what_is_not_theirs(world: World, frozen_clock: Any) -> None:
    w = world
    token = await login(w)
    case_id = (await verified(w, token))["case"]["id"]
    asked = await call(
        w, "POST", "/items", token, {"case_id": case_id, "kind": "question", "text": "问题"}, 201
    )
    number, receipt = asked["ticket_id"], asked["receipt_url"].rsplit("/", 1)[1]
    assert (await call(w, "GET", f"/receipts/{receipt}", token))["case_number"] == CASE_NUMBER

    stranger = await login(w, OTHER)
    for path in (f"/cases/{case_id}", f"/items/{number}", f"/receipts/{receipt}", "/items/999"):
        said = await call(w, "GET", path, stranger, status=404)
        assert said == {"error": "not_found", "message": "没有找到。"}
    for method, path, body in (
        ("POST", f"/items/{number}/messages", {"text": "冒充"}),
        ("POST", "/items", {"case_id": case_id, "kind": "question", "text": "冒充"}),
        ("POST", "/ratings", {"case_id": case_id, "ticket_id": number, "score": 3}),
    ):
        await call(w, method, path, stranger, body, status=404)
    assert (await call(w, "GET", "/items", stranger))["items"] == []
    assert (await call(w, "GET", "/cases", stranger))["cases"] == []

    # No session, a made-up one, a revoked one, an expired one: 401.
    for bad in (None, "made-up-token"):
        assert (await call(w, "GET", "/cases", bad, status=401))["error"] == "unauthorized"
    await call(w, "POST", "/logout", stranger, status=204)
    await call(w, "GET", "/cases", stranger, status=401)
    frozen_clock[0] += timedelta(days=w.deps.settings.miniprogram.session_days, seconds=1)
    await call(w, "GET", "/cases", token, status=401)
    async with w.deps.db.sessions() as s:
        kept = (await s.execute(select(AppSession))).scalars().all()
    assert all(len(k.token_sha256) == 64 and k.token_sha256 != token for k in kept)


async def test_the_lockout_is_shared_with_the_chat(world: World) -> None:
    """Someone known in the Official Account (their unionid seen there) signs in to the
    mini-program: the same person, so wrong digits in the chat count in the app too."""
    w = world
    async with w.deps.db.transaction() as s:
        await people.person_for(s, "wechat", LITIGANT, unionid="UNION-1")
    token = await login(w, APP_USER, unionid="UNION-1")
    async with w.deps.db.sessions() as s:
        court = (await s.execute(select(Court))).scalar_one()
    await w.say(LITIGANT, w.case["short_code"])
    for _ in range(attempts.VERIFY_PER_PERSON_AND_CASE):
        await w.say(LITIGANT, "0000")
    said = await call(w, "POST", "/verify", token, {"scan": w.case["token"], "digits": "1234"})
    assert said["verified"] is False and said["case"] is None
    assert said["message"] == texts.LOCKED.format(desk=texts.desk(court)).strip()
    async with w.deps.db.sessions() as s:
        assert (await s.execute(select(Binding))).first() is None


async def test_the_same_person_in_both_channels_is_one(world: World) -> None:
    w = world
    async with w.deps.db.transaction() as s:
        await people.person_for(s, "wechat", LITIGANT, unionid="UNION-1")
    await verify_litigant(w)  # in the chat
    token = await login(w, APP_USER, unionid="UNION-1")
    [case] = (await call(w, "GET", "/cases", token))["cases"]
    assert case["case_number"] == CASE_NUMBER and case["verified_by"] == "phone_tail"


async def test_bad_requests_get_clear_json_errors(world: World) -> None:
    w = world
    fake = w.fake
    assert (await call(w, "POST", "/login", body={"code": "never-issued"}, status=401))[
        "error"
    ] == "bad_code"
    used = fake.login_code(APP_USER)
    await call(w, "POST", "/login", body={"code": used})
    await call(w, "POST", "/login", body={"code": used}, status=401)
    fake.fail("/sns/jscode2session", 45011)
    said = await call(w, "POST", "/login", body={"code": fake.login_code(APP_USER)}, status=429)
    assert said["error"] == "too_fast"
    fake.fail("/sns/jscode2session", 40226)
    said = await call(w, "POST", "/login", body={"code": fake.login_code(APP_USER)}, status=403)
    assert said["error"] == "account_restricted" and "诉讼服务中心" in said["message"]
    resp = await w.client.post(P + "/login", data=b"{not json")
    assert resp.status == 422 and (await resp.json())["error"] == "invalid"
    await call(w, "POST", "/login", body={"code": ""}, status=422)
    await call(w, "POST", "/login", body={"code": "x", "extra": 1}, status=422)

    token = await login(w)
    await call(w, "POST", "/verify", token, {"scan": w.case["token"]}, status=422)
    await call(w, "POST", "/verify", token, {"scan": w.case["token"], "digits": "12a4"}, 422)
    said = await call(w, "POST", "/verify", token, {"scan": "NOSUCHCODE", "digits": "1234"}, 404)
    assert said["message"] == texts.CODE_UNKNOWN
    await call(w, "GET", "/items/abc", token, status=404)
    await call(w, "GET", "/items?case_id=x", token, status=422)
    await call(w, "GET", "/events?since=x", token, status=422)
    await call(w, "POST", "/items", token, {"case_id": 1, "kind": "gossip", "text": "x"}, 422)
    # The rate: past it, 429 with Retry-After.
    for _ in range(mp.RATE_PER_MINUTE):
        await w.client.get(P + "/cases", headers={"Authorization": f"Bearer {token}"})
    resp = await w.client.get(P + "/cases", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 429 and resp.headers["Retry-After"] == "60"


async def test_the_openapi_document_describes_every_route(world: World) -> None:
    doc = await call(world, "GET", "/openapi.json")
    assert doc["openapi"] == "3.1.0"
    for route in mp.ROUTES:
        op = doc["paths"][P + route.path][route.method.lower()]
        assert str(route.status) in op["responses"]
        if route.body is not None:
            schema = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert schema.rsplit("/", 1)[1] in doc["components"]["schemas"]
    login_body = doc["components"]["schemas"]["LoginIn"]
    assert login_body["required"] == ["code"]


async def test_book_move_and_cancel_a_mediation_in_the_app(world: World, frozen_clock: Any) -> None:
    from tests.test_flows import mediators

    w = world
    ids = await mediators(w)
    token = await login(w)
    case_id = (await verified(w, token))["case"]["id"]
    listed = (await call(w, "GET", f"/cases/{case_id}/mediators", token))["mediators"]
    assert [m["name"] for m in listed][:2] == ["王芳", "李明"]
    free = (await call(w, "GET", f"/cases/{case_id}/mediators/{ids['wangfang']}/slots", token))[
        "slots"
    ]
    assert len(free) == 2
    booked = await call(w, "POST", f"/cases/{case_id}/booking", token, {"slot_id": free[0]["id"]})
    assert "王芳" in booked["message"]
    detail = await call(w, "GET", f"/cases/{case_id}", token)
    assert detail["booking"]["mediator"] == "王芳" and detail["booking"]["room_url"]
    assert detail["booking"]["start_at"] == free[0]["start_at"]
    # Move it to the other time, then cancel.
    await call(w, "POST", f"/cases/{case_id}/booking", token, {"slot_id": free[1]["id"]})
    moved = await call(w, "GET", f"/cases/{case_id}", token)
    assert moved["booking"]["start_at"] == free[1]["start_at"]
    cancelled = await call(w, "DELETE", f"/cases/{case_id}/booking", token)
    assert cancelled["message"].startswith(texts.BOOK_CANCELLED.strip()[:6])
    assert (await call(w, "GET", f"/cases/{case_id}", token))["booking"] is None

    # Someone else: not their case, not their court's slot.
    stranger = await login(w, OTHER)
    await call(w, "GET", f"/cases/{case_id}/mediators", stranger, status=404)
    await call(w, "POST", f"/cases/{case_id}/booking", stranger, {"slot_id": free[0]["id"]}, 404)
    await call(w, "GET", f"/cases/{case_id}/mediators/999/slots", token, status=404)
    await call(w, "POST", f"/cases/{case_id}/booking", token, {"slot_id": 99999}, 404)
