"""The baseline: a bare aiohttp handler that reads the body and returns a fixed XML string.

`python -m bench.bare_server --port P`. Whatever the callback benchmark measures above
this is the project's own cost (signature, XML, crypto, Redis, database, handler)."""

from __future__ import annotations

import argparse

from aiohttp import web

REPLY = (
    "<xml><ToUserName><![CDATA[oBench]]></ToUserName>"
    "<FromUserName><![CDATA[gh_mashangtong]]></FromUserName>"
    "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[您好，这里是法院“码上通”。]]></Content></xml>"
)


async def wechat(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text=REPLY, content_type="text/xml")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/wechat", wechat)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
