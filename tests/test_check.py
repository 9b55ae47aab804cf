"""`mst check`: what is still demo or missing before a court goes live, and `mst serve`
saying the same when it starts (first-day issue, item 16); `mst qr` warning about a
PUBLIC_BASE_URL no phone can open (item 7)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

from bot.dialog.dispatch import Deps
from tests.conftest import AES_KEY, CASE_NUMBER, COURT
from tests.world import MST, mst_in_process

LIVE = {
    "WECHAT_APP_ID": "wx1234567890abcdef",
    "WECHAT_APP_SECRET": "0123456789abcdef0123456789abcdef",
    "WECHAT_TOKEN": "courtToken2026",
    "WECHAT_AES_KEY": AES_KEY,
    "WECHAT_TEMPLATE_ID": "tpl-reply-waiting-real",
    "WECHAT_ACCOUNT_NAME": "桃城法院",
}


async def test_a_fresh_setup_names_what_is_still_demo(
    deps: Deps,
    sample_case: dict[str, Any],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    run = await mst_in_process(cli_env, tmp_path, "check")
    assert run.code == 1, run.err
    assert "✘ 公众号凭据：演示值" in run.out and "✘ 消息加解密：明文模式" in run.out
    assert "✘ 模板消息：演示模板" in run.out and "✘ 公众号名称：未设置" in run.out
    assert f"✘ {COURT}诉讼服务中心：未填写电话、地址、办公时间" in run.out
    assert "✔ 对外地址：https://mst.court.example/hs" in run.out  # the test's, not 127.0.0.1
    assert "✔ 时区：Asia/Shanghai" in run.out
    assert "WECHAT_APP_ID" in run.out and f"mst court set '{COURT}'" in run.out  # the fixes
    listed = json.loads((await mst_in_process(cli_env, tmp_path, "check", "--json")).out)
    assert {f["fix"].split("（")[0] for f in listed if not f["ok"] and f["needed"]} >= {
        "WECHAT_APP_ID、WECHAT_APP_SECRET、WECHAT_TOKEN",
        "WECHAT_AES_KEY",
        "WECHAT_TEMPLATE_ID",
    }


async def test_a_court_ready_to_go_live_passes(
    deps: Deps,
    sample_case: dict[str, Any],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    env = cli_env | LIVE
    desk = await mst_in_process(
        env, tmp_path, "court", "set", COURT, "--phone", "0318-2123456", "--address",
        "人民路1号", "--hours", "工作日 8:30-17:30",
    )  # fmt: skip
    assert desk.code == 0, desk.err
    run = await mst_in_process(env, tmp_path, "check")
    assert run.code == 0, run.out
    assert run.out.strip().endswith("可以正式使用。")
    assert "✘" not in run.out and "· 公众号二维码图片：未设置" in run.out  # advice only


async def test_qr_warns_when_codes_would_point_at_this_machine(
    deps: Deps,
    sample_case: dict[str, Any],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    local = cli_env | {"PUBLIC_BASE_URL": "http://127.0.0.1:8080"}
    run = await mst_in_process(local, tmp_path, "qr", CASE_NUMBER, "--json")
    assert run.code == 0 and "PUBLIC_BASE_URL 还是 http://127.0.0.1:8080" in run.err
    assert json.loads(run.out)["url"].startswith("http://127.0.0.1:8080/q/")
    public = await mst_in_process(cli_env, tmp_path, "qr", CASE_NUMBER, "--json")
    assert "PUBLIC_BASE_URL" not in public.err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_says_what_is_missing_when_it_starts(
    deps: Deps,
    sample_case: dict[str, Any],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(MST), "serve", "--host", "127.0.0.1", "--port", str(_free_port()),
        env=cli_env | {"MST_JOBS_IN_PROCESS": "0"}, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen: list[str] = []
    try:

        async def until_summary() -> None:
            while True:
                line = (await proc.stderr.readline()).decode()  # type: ignore[union-attr]
                assert line, "serve exited before saying what is missing:\n" + "".join(seen)
                seen.append(line)
                if "项要设置才能正式使用" in line:
                    return

        await asyncio.wait_for(until_summary(), timeout=60)
    finally:
        proc.terminate()
        await proc.wait()
    said = "".join(seen)
    assert "✘ 公众号凭据：演示值" in said and f"{COURT}诉讼服务中心" in said


async def test_qr_scene_asks_wechat_for_a_code_that_opens_the_chat(
    aiohttp_server: Any,
    deps: Deps,
    sample_case: dict[str, Any],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """First-day issue, item 7: `mst qr --scene` gets the account's own QR for the case
    (/cgi-bin/qrcode/create, the case's token as scene), with a stable token that leaves
    the running server's token valid."""
    import io

    import zxingcpp
    from PIL import Image

    from bot.fakes.wechat.api import FakeWeChat
    from bot.fakes.wechat.api import create_app as fake_app

    fake = FakeWeChat(app_id="wx1234567890abcdef", app_secret="real-secret")
    server = await aiohttp_server(fake_app(fake))
    env = cli_env | {
        "WECHAT_APP_ID": fake.app_id,
        "WECHAT_APP_SECRET": fake.app_secret,
        "WECHAT_API_BASE": str(server.make_url("")).rstrip("/"),
    }
    png = tmp_path / "scene.png"
    run = await mst_in_process(
        env, tmp_path, "qr", CASE_NUMBER, "--scene", "--json", "--png", str(png)
    )
    assert run.code == 0, run.err
    info = json.loads(run.out)
    assert fake.scenes == [sample_case["token"]]
    assert "/cgi-bin/stable_token" in fake.calls and "/cgi-bin/token" not in fake.calls
    assert info["scene_url"].startswith("http://weixin.qq.com/q/")
    assert info["scene_image"].startswith("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=")
    assert info["url"].endswith("/q/" + sample_case["token"])  # the printed page's code too
    decoded = [b.text for b in zxingcpp.read_barcodes(Image.open(io.BytesIO(png.read_bytes())))]
    assert decoded == [info["scene_url"]]
    # WeChat refusing (a wrong secret): one line, exit 1.
    refused = await mst_in_process(
        env | {"WECHAT_APP_SECRET": "wrong"}, tmp_path, "qr", CASE_NUMBER, "--scene"
    )
    assert refused.code == 1 and "微信没有生成带参数二维码" in refused.err
    assert "Traceback" not in refused.err
