"""Schemathesis (4.x) hooks for the "hostile" run of the fuzzing drill (issue 19), loaded with
`SCHEMATHESIS_HOOKS=<this file>`. Schemathesis generates valid UTF-8 text and finite numbers
only; these hooks take each generated case and put, at places Hypothesis picks, what a client
can still send and Python still parses:

- JSON bodies: lone surrogates as the 6-character JSON escape (`"\\ud800"`, valid JSON text,
  a lone surrogate once decoded), in values and keys, and the non-finite numbers Python's json
  accepts (`NaN`, `Infinity`, `-Infinity`, `1e999`), in any field of the schema, nested ones too.
  A serializer for application/json writes them (the default one escapes surrogates but
  refuses NaN, and has no way to write `1e999`).
- Multipart forms (the upload): the same in fields, field values, file names, sent with a
  charset that carries a lone surrogate to the server (`utf-7`, `unicode_escape`) or as raw
  surrogate bytes under `utf-8`; and, sometimes, a real picture, so that the checks after the
  sniffing (file name, declared type) run too.
- Query strings: non-finite spellings and surrogate bytes (`%ED%A0%80`); path parameters:
  non-finite spellings.

Cases hold only valid Unicode (Schemathesis validates them with jsonschema_rs, which takes no
lone surrogate, no float subclass): a lone surrogate U+D800+i is held as the private-use
character U+F0000+i, a non-finite number as the text NUMBER + its spelling, and the serializers
write what they stand for (a generated private-use character in that range is sent as a
surrogate too: more of the same).

With `HOSTILE_INPUT_LOG=<file>`, every request is classified from the bytes on the wire (one
JSON line: operation, status, kinds of hostile input), so the drill proves they were sent.
Self-contained (stdlib, Hypothesis, Schemathesis, Pillow): Schemathesis runs it from its path.
"""

from __future__ import annotations

import binascii
import io
import json
import math
import os
import re
import zlib
from collections.abc import Iterable
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.transport import SerializationContext, register_serializer
from schemathesis.transport.requests import multipart_serializer as builtin_multipart

LOG = os.environ.get("HOSTILE_INPUT_LOG")


SURROGATE_FOR = {0xF0000 + i: 0xD800 + i for i in range(0x800)}  # marker -> surrogate


def marker(surrogate: str) -> str:
    """The character that stands for a lone surrogate in a case."""
    return chr(0xF0000 + ord(surrogate) - 0xD800)


def real(text: str) -> str:
    """`text` with its markers turned into the lone surrogates they stand for."""
    return text.translate(SURROGATE_FOR)


NUMBER = "\U000f0800"  # NUMBER + "NaN" stands for the JSON number NaN
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]
LONE_SURROGATES = [marker(s) for s in ("\ud800", "\udbff", "\udc00", "\udfff")]
PLAIN = st.text(st.sampled_from("abz09-_. "), max_size=4)


def _with_surrogate(prefix: str, surrogate: str, suffix: str) -> str:
    return prefix + surrogate + suffix


SURROGATE_TEXT = st.builds(
    _with_surrogate, PLAIN, st.sampled_from(LONE_SURROGATES), PLAIN
) | st.just(marker("\udc00") + marker("\ud800"))  # a pair in the wrong order
NON_FINITE_NUMBER = st.sampled_from([NUMBER + spelling for spelling in NON_FINITE])
NON_FINITE_WORDS = [*NON_FINITE, "nan", "inf", "-inf", "1E400"]
NON_FINITE_TEXT = st.sampled_from(NON_FINITE_WORDS)


def _has_marker(value: object) -> bool:
    return isinstance(value, str) and any(ord(c) in SURROGATE_FOR for c in value)


def _is_surrogate_text(value: object) -> bool:
    return isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def _is_hostile(value: object) -> bool:
    if isinstance(value, Upload) or _has_marker(value):
        return True
    if isinstance(value, dict):
        return any(_is_hostile(k) or _is_hostile(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_is_hostile(item) for item in value)
    return isinstance(value, str) and (value in NON_FINITE_WORDS or value.startswith(NUMBER))


def _body_properties(context: Any, media: str) -> dict[str, Any]:
    """The body's properties (name: schema) for the media types containing `media`."""
    properties: dict[str, Any] = {}
    operation = getattr(context, "operation", None)
    for alternative in getattr(operation, "body", None) or ():
        if media in alternative.media_type:
            properties.update((alternative.resolved_schema or {}).get("properties", {}))
    return properties


def _is_file(schema: Any) -> bool:
    return isinstance(schema, dict) and (
        schema.get("contentMediaType") == "application/octet-stream"
        or schema.get("format") in ("binary", "base64")
    )


def _is_multipart(context: Any) -> bool:
    operation = getattr(context, "operation", None)
    return any("multipart" in alt.media_type for alt in getattr(operation, "body", None) or ())


# JSON bodies ------------------------------------------------------------------------------


def _json_leaf(draw: st.DrawFn) -> object:
    return draw(st.one_of(SURROGATE_TEXT, NON_FINITE_NUMBER))


def _mutate_json(draw: st.DrawFn, value: object) -> object:
    if isinstance(value, dict):
        result = {k: _mutate_json(draw, v) for k, v in value.items()}
        if draw(st.integers(0, 7)) == 0:
            result[draw(SURROGATE_TEXT)] = _json_leaf(draw)  # a key
        return result
    if isinstance(value, list):
        items = [_mutate_json(draw, item) for item in value]
        if draw(st.integers(0, 5)) == 0:
            items.insert(draw(st.integers(0, len(items))), _json_leaf(draw))
        return items
    choice = draw(st.sampled_from(["keep", "keep", "surrogate", "non-finite"]))
    if choice == "surrogate":
        return draw(SURROGATE_TEXT)
    if choice == "non-finite":
        return draw(NON_FINITE_NUMBER)
    return value


@st.composite
def _hostile_json(draw: st.DrawFn, body: object, properties: list[str]) -> object:
    """`body` with lone surrogates and non-finite numbers at places Hypothesis picks."""
    result = _mutate_json(draw, body)
    if isinstance(result, dict) and properties and draw(st.booleans()):
        result[draw(st.sampled_from(properties))] = _json_leaf(draw)  # a field maybe not sent
    if not _is_hostile(result):  # at least one hostile value in every request
        if isinstance(result, dict):
            keys = list(result) + properties
            key = draw(st.sampled_from(keys)) if keys else draw(SURROGATE_TEXT)
            result[key] = _json_leaf(draw)
        else:
            result = _json_leaf(draw)
    return result


def _dump(value: object) -> str:
    """JSON text as Python's json reads it: NaN, Infinity, 1e999 as numbers, lone surrogates
    as escapes (ASCII output, so nothing needs to be UTF-8 encodable)."""
    if isinstance(value, str) and value.startswith(NUMBER):
        return value.removeprefix(NUMBER)
    if isinstance(value, str):
        return json.dumps(real(value))
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(real(str(k)))}:{_dump(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dump(item) for item in value) + "]"
    if isinstance(value, bytes):
        return json.dumps(value.decode("latin-1"))
    return json.dumps(value)


@schemathesis.serializer("application/json")
def hostile_json(ctx: SerializationContext, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return _dump(value).encode("ascii")


# Multipart forms --------------------------------------------------------------------------


class Upload(bytes):
    """A file part's content with the file name to send it under."""

    filename: str

    def __new__(cls, content: bytes, filename: str) -> Upload:
        upload = super().__new__(cls, content)
        upload.filename = filename
        return upload

    def __reduce__(self) -> tuple[type[Upload], tuple[bytes, str]]:
        return (Upload, (bytes(self), self.filename))


def _picture(kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), "red").save(buffer, kind)
    return buffer.getvalue()


PICTURES = {"PNG": _picture("PNG"), "JPEG": _picture("JPEG")}
HOSTILE_FILENAME = st.one_of(
    st.builds(lambda stem, ext: stem + ext, SURROGATE_TEXT, st.sampled_from([".png", ".jpg", ""])),
    st.builds(lambda ext: "a." + ext, SURROGATE_TEXT),
    st.sampled_from(["a.png", "a.jpg", "a.gif"]),
)


def _form_leaf(draw: st.DrawFn) -> str:
    return draw(st.one_of(SURROGATE_TEXT, NON_FINITE_TEXT))


@st.composite
def _hostile_form(draw: st.DrawFn, body: object, properties: dict[str, Any]) -> object:
    if not isinstance(body, dict):
        return body
    result: dict[str, Any] = {}
    files = {name for name, schema in properties.items() if _is_file(schema)}
    for name, value in body.items():
        if name in files:
            if draw(st.booleans()):
                picture = PICTURES[draw(st.sampled_from(sorted(PICTURES)))]
                value = Upload(picture, draw(HOSTILE_FILENAME))
        elif isinstance(value, list):
            value = [_form_leaf(draw) if draw(st.booleans()) else item for item in value]
        elif draw(st.booleans()):
            value = _form_leaf(draw)
        result[name] = value
    if draw(st.integers(0, 7)) == 0:
        result[draw(SURROGATE_TEXT)] = _form_leaf(draw)  # a field name
    text_fields = sorted(set(properties) - files)
    if not _is_hostile(result) and text_fields:
        result[draw(st.sampled_from(text_fields))] = _form_leaf(draw)
    return result


CHARSETS = ["utf-7", "unicode_escape", "utf-8"]


def _encode(value: object, charset: str) -> bytes:
    if isinstance(value, bytes):
        return value
    text = real(value) if isinstance(value, str) else json.dumps(value)
    return text.encode(charset, "surrogatepass" if charset == "utf-8" else "strict")


def _header_param(value: str, charset: str) -> bytes:
    # As urllib3 writes a name or file name: quotes and line breaks percent-encoded.
    return _encode(value.translate({10: "%0A", 13: "%0D", 34: "%22"}), charset)


def _parts(result: dict[str, Any]) -> list[tuple[str, str | None, object, str | None]]:
    """(name, file name, content, content type) from the built-in serializer's output."""
    parts: list[tuple[str, str | None, object, str | None]] = []
    for name, spec in result.get("files") or ():
        filename, content, *rest = spec if isinstance(spec, tuple) else (None, spec)
        if isinstance(content, Upload):
            filename = content.filename
        parts.append((name, filename, content, rest[0] if rest else None))
    data = result.get("data") or {}
    items: Iterable[tuple[str, Any]] = data.items() if isinstance(data, dict) else data
    for name, value in items:
        for item in value if isinstance(value, list) else [value]:
            parts.append((name, None, item, None))
    return parts


def hostile_multipart(ctx: SerializationContext, value: Any) -> dict[str, Any]:
    result = builtin_multipart(ctx, value)
    if not isinstance(value, dict) or "files" not in result:
        return result
    parts = _parts(result)
    texts = [t for n, f, c, _ in parts for t in (n, f, c) if isinstance(t, str)]
    if not any(map(_has_marker, texts)) and not any(
        isinstance(content, Upload) for _, _, content, _ in parts
    ):
        return result  # nothing hostile: as Schemathesis sends it
    # Stable for a given case, so that a failure replays with the same charset.
    charset = CHARSETS[zlib.crc32(repr(texts).encode()) % 3]
    boundary = binascii.hexlify(os.urandom(16)).decode()
    body = b""
    for name, filename, content, content_type in parts:
        disposition = b'form-data; name="' + _header_param(name, charset) + b'"'
        if filename is not None:
            disposition += b'; filename="' + _header_param(filename, charset) + b'"'
            content_type = content_type or "application/octet-stream"
        body += f"--{boundary}\r\n".encode() + b"Content-Disposition: " + disposition + b"\r\n"
        if content_type:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + _encode(content, charset) + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    content_type = f"multipart/form-data; boundary={boundary}; charset={charset}"
    return {"data": body, "headers": {"Content-Type": content_type}}


register_serializer(hostile_multipart, "multipart/form-data")


# Where Hypothesis draws the cases ---------------------------------------------------------


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    if _is_multipart(context):
        return _hostile_form(body, _body_properties(context, "multipart"))
    return _hostile_json(body, sorted(_body_properties(context, "json")))


class WireText(str):
    """Query text whose bytes on the wire hold the lone surrogates its markers stand for:
    `requests` encodes a query value with `.encode("utf-8")`, then percent-encodes the bytes
    (`%ED%A0%80`). Schemathesis validates a plain `str` copy."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return real(str(self)).encode(encoding, "surrogatepass")


SURROGATE_QUERY = SURROGATE_TEXT.map(WireText)


@st.composite
def _hostile_query(draw: st.DrawFn, query: Any, names: list[str]) -> Any:
    result = dict(query or {})
    for name in names:
        if name not in result or draw(st.booleans()):
            result[name] = draw(st.one_of(NON_FINITE_TEXT, SURROGATE_QUERY))
    return result


@schemathesis.hook
def flatmap_query(context: Any, query: Any) -> st.SearchStrategy[Any]:
    names = [parameter.name for parameter in getattr(context.operation, "query", None) or ()]
    if not names:
        return st.just(query)
    return _hostile_query(query, names)


@st.composite
def _hostile_path(draw: st.DrawFn, parameters: Any) -> Any:
    return {
        name: draw(NON_FINITE_TEXT) if draw(st.integers(0, 3)) == 0 else value
        for name, value in (parameters or {}).items()
    }


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: Any) -> st.SearchStrategy[Any]:
    if not path_parameters:
        return st.just(path_parameters)
    return _hostile_path(path_parameters)


# What was sent, read back from the wire ---------------------------------------------------

SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
SURROGATE_UTF8 = re.compile(rb"\xed[\xa0-\xbf][\x80-\xbf]")
NON_FINITE_WORD = {word.lower() for word in NON_FINITE_WORDS}


def _json_kinds(body: bytes) -> set[str]:
    kinds: set[str] = set()

    def constant(name: str) -> float:
        kinds.add(f"json {name}")
        return float(name)

    def number(text: str) -> float:
        if not math.isfinite(float(text)):
            kinds.add("json 1e999")
        return float(text)

    try:
        json.loads(body, parse_constant=constant, parse_float=number)
    except ValueError:
        kinds.add("json unparsable")
    if SURROGATE_ESCAPE.search(body):
        kinds.add("json surrogate")
    return kinds


def _form_kinds(body: bytes, content_type: str) -> set[str]:
    header = Message()
    header["Content-Type"] = content_type
    charset = header.get_param("charset") or "utf-8"
    kinds = {f"form charset {charset}"}
    for part in body.split(b"\r\n--"):
        head, _, content = part.partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        for raw in (head, content) if b"filename=" not in head else (head,):
            try:
                text = raw.decode(str(charset))
            except (UnicodeDecodeError, LookupError):
                text = raw.decode("latin-1")
            where = "head" if raw is head else "field"
            if _is_surrogate_text(text):
                kinds.add(f"form surrogate in {where}")
            if SURROGATE_UTF8.search(raw):
                kinds.add(f"form surrogate bytes in {where}")
        if content.strip().lower() in {w.encode() for w in NON_FINITE_WORD}:
            kinds.add("form non-finite")
        if b"filename=" in head and content[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0"):
            kinds.add("form real picture")
    return kinds


def wire_kinds(request: Any) -> set[str]:
    """The kinds of hostile input in a prepared request, read from its bytes."""
    kinds: set[str] = set()
    url = urlsplit(request.url)
    for _, value in parse_qsl(url.query, keep_blank_values=True, errors="surrogateescape"):
        raw = unquote_to_bytes(value.encode("utf-8", "surrogateescape"))
        if SURROGATE_UTF8.search(raw):
            kinds.add("query surrogate bytes")
        if raw.decode("latin-1").lower() in NON_FINITE_WORD:
            kinds.add("query non-finite")
    if any(segment.lower() in NON_FINITE_WORD for segment in url.path.split("/")):
        kinds.add("path non-finite")
    body = request.body if isinstance(request.body, bytes) else b""
    content_type = request.headers.get("Content-Type", "")
    if body and "json" in content_type:
        kinds |= _json_kinds(body)
    elif body and "multipart" in content_type:
        kinds |= _form_kinds(body, content_type)
    return kinds


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    if not LOG:
        return
    line = {
        "operation": f"{case.method.upper()} {case.path}",
        "status": response.status_code,
        "kinds": sorted(wire_kinds(response.request)),
    }

    with open(LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")
