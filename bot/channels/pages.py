"""What the server-rendered channels (the H5 pages, the staff console) share: a style
sheet served from memory under a content-hashed address, and the headers that lock every
response of theirs down. Each channel keeps its own templates, words and policy values."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

WEEK_S = 604800

# The policy both channels use: nothing from elsewhere, no inline style or script.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class StyleSheet:
    """A CSS file read once; `url` changes with its content, so it may be cached a week."""

    path: str  # where it is served, e.g. /h5/static/h5.css
    body: bytes

    @classmethod
    def load(cls, file: Path, path: str) -> StyleSheet:
        return cls(path, file.read_bytes())

    @property
    def url(self) -> str:
        return f"{self.path}?v={hashlib.sha256(self.body).hexdigest()[:12]}"

    async def serve(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.body,
            content_type="text/css",
            charset="utf-8",
            headers={"Cache-Control": f"public, max-age={WEEK_S}"},
        )


def locked_down(
    owns: Callable[[str], bool],
    *,
    referrer: str,
    no_store: Callable[[str], bool] = lambda path: False,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An on_response_prepare hook: every response of the paths `owns` says (refusals and
    redirects too) gets the CSP, nosniff and a referrer policy; `no_store` ones no caching."""

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        if not owns(request.path):
            return
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Referrer-Policy", referrer)
        if no_store(request.path):
            response.headers["Cache-Control"] = "no-store"

    return hook
