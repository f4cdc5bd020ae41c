"""structlog, configured once: JSON lines in production, readable console in development.

Every event, ours or a library's (uvicorn's "Exception in ASGI application"), goes through
`redact_credentials`, and tracebacks are rendered plain, without local variables: a
traceback with locals printed the request's headers (bearer tokens, cookies) and took
about 13 s and 1.7 MB of log per 500 (rich rendering every frame's locals)."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Mapping
from io import StringIO
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, ExcInfo, WrappedLogger

REDACTED = "[redacted]"
# Header (or field) names whose value is a credential, wherever they appear.
SECRET_NAMES = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "token"}
)
_SECRET_TEXT = (
    # `Bearer <token>`, `Basic <base64>` in any text (a header, a message, a traceback).
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    # A JWT anywhere: three base64url parts, the first a JSON header (`{"` = `eyJ`).
    re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    # A Cookie header's values (`name=value; name2=value2`) after the word cookie.
    re.compile(r"(?i)((?:set-)?cookie['\"]?\s*[:,=]\s*b?['\"]?)[\w.-]+=[^'\"\n]*"),
    # The console's session cookie (app/console/auth.py COOKIE) wherever it appears.
    re.compile(r"\b(pim_console=)[^;\s'\"]+"),
)


def redact_text(text: str) -> str:
    """The text with every bearer/basic credential, JWT and cookie value replaced."""
    text = _SECRET_TEXT[0].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _SECRET_TEXT[1].sub(REDACTED, text)
    for pattern in _SECRET_TEXT[2:]:
        text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text


def _is_secret_name(name: object) -> bool:
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    return isinstance(name, str) and name.lower() in SECRET_NAMES


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret_name(k) else _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        if isinstance(value, tuple) and len(value) == 2 and _is_secret_name(value[0]):
            return (_redact(value[0]), REDACTED)  # a (name, value) header pair
        return [_redact(item) for item in value]
    return redact_text(repr(value))  # bytes, Headers, any object: as it would be rendered


def redact_credentials(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact credentials in every value of the event."""
    # exc_info is rendered (and redacted) later; `_record` and `_from_structlog` belong to
    # ProcessorFormatter.
    return {
        key: value if key == "exc_info" or key.startswith("_") else _redact(value)
        for key, value in event_dict.items()
    }


def plain_redacted_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    """ConsoleRenderer's exception formatter: the plain traceback (no locals), redacted."""
    buffer = StringIO()
    traceback.print_exception(*exc_info, file=buffer)
    sio.write("\n" + redact_text(buffer.getvalue()))


def configure_logging(
    log_format: Literal["json", "console"] = "console", level: str = "INFO"
) -> None:
    """Route structlog and stdlib logging through one renderer."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if log_format == "json":
        # format_exc_info renders the traceback as text, without locals.
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=plain_redacted_traceback)
    shared.append(redact_credentials)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "alembic.runtime.migration", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
