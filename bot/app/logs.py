"""Log lines for machines and for people. LOG_FORMAT=json: one JSON object a line (what
journald, Docker's json-file, Loki, Filebeat and the like read without a parser);
LOG_FORMAT=text: the readable line. Unset: text on a terminal, JSON anywhere else (a
service under systemd or Docker).

Besides what the code logs, one line per HTTP request (`access`, logger mst.http) and one
per background job run (`job_run`, logger mst.jobs). They carry no personal data: the
path without its query string (WeChat puts the openid there), masked as every line is
(bot.core.masking); no bodies, no addresses, no openids. A request's id (X-Request-Id, as
a proxy sent it, or a new one, sent back on the response) is on every line logged while
it is handled."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from bot.core.masking import mask_text, setup_logging

FORMATS = ("json", "text")
REQUEST_ID_HEADER = "X-Request-Id"
# An id a proxy may hand us (nginx's $request_id is 32 hex digits; others use UUIDs);
# anything else is replaced, so a client cannot write into our log lines.
_GOOD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

http_log = logging.getLogger("mst.http")
job_log = logging.getLogger("mst.jobs")
T = TypeVar("T")


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: ts (UTC), level, logger, msg (already masked by the
    handler's MaskingFilter), the record's `fields` (extra={"fields": {...}}), the request
    id in force, and the traceback as `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line.setdefault("request_id", request_id)
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(self.formatException(record.exc_info))
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


def chosen_format(log_format: str | None, stream: Any = None) -> str:
    """LOG_FORMAT, or (unset) text where a person watches stderr, JSON elsewhere."""
    if log_format is not None:
        return log_format
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def setup(level: int, log_format: str | None) -> str:
    """The process's logging (bot.core.masking's, masking included) in the format chosen;
    returns it."""
    setup_logging(level)
    chosen = chosen_format(log_format)
    if chosen == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    return chosen


# -- one line per request ----------------------------------------------------------------------


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _GOOD_ID.fullmatch(given) else uuid.uuid4().hex


@web.middleware
async def access(request: web.Request, handler: Any) -> web.StreamResponse:
    """The request's line when it is answered: id, method, path (no query), route, status,
    latency. The id goes back in X-Request-Id (nginx and the client can quote it)."""
    request_id = _request_id(request)
    token = REQUEST_ID.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away first (nginx's word for it)
        raise
    finally:
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        resource = request.match_info.route.resource
        path = mask_text(request.path)
        http_log.log(
            logging.ERROR if status >= 500 else logging.INFO,
            "%s %s %s %.1f ms",
            request.method,
            path,
            status,
            latency_ms,
            extra={
                "fields": {
                    "event": "http",
                    "request_id": request_id,
                    "method": request.method,
                    "path": path,
                    "route": resource.canonical if resource is not None else None,
                    "status": status,
                    "latency_ms": latency_ms,
                }
            },
        )
        REQUEST_ID.reset(token)


# -- one line per job run ----------------------------------------------------------------------


@asynccontextmanager
async def job_run(name: str) -> AsyncIterator[None]:
    """Around one run of a background job: its line when it ends, with outcome (ok, failed,
    cancelled) and duration. The failure itself is logged where it is caught."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        yield
        outcome = "ok"
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        job_log.log(
            logging.INFO if outcome != "failed" else logging.WARNING,
            "job %s %s in %.1f ms",
            name,
            outcome,
            duration_ms,
            extra={
                "fields": {
                    "event": "job",
                    "job": name,
                    "outcome": outcome,
                    "duration_ms": duration_ms,
                }
            },
        )


async def timed(name: str, run: Callable[[], Awaitable[T]]) -> T:
    """`await run()` with its job line: `await logs.timed(job.__name__, lambda: job(deps))`."""
    async with job_run(name):
        return await run()
