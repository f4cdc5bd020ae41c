"""Drill: hostile input. Schemathesis (4.x) fuzzes every operation of /openapi.json against
the app served by uvicorn on loopback, with a tenant's and an operator's token, with its own
strategies and with hostile ones (lone surrogates and non-finite numbers in bodies, form
fields, file names, query strings and paths: schemathesis_hooks.py): no 5xx and no response
that breaks the schema. Then explicit cases not covered in tests/api: odd ids on every image
and marketplace route, odd token subjects, oversized JSON bodies, image URLs aimed at
loopback, private or metadata addresses, or out of the storage base, and lone surrogates and
non-finite numbers in every JSON body field, query parameter and upload form field that the
app's OpenAPI schema lists."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine

from app.core.security import now_utc
from app.core.settings import Settings
from app.main import create_app
from tests.conftest import TEST_SECRET, bearer
from tests.drills.support import live_server
from tests.images_db import insert_legacy_product, jsonb_elements, table_elements

BASE = "http://testserver/media"
LEGACY = [{"url": f"{BASE}/p/{k}.jpg", "order": k} for k in range(2)]
SCHEMATHESIS_SEED = 7


def schemathesis_cli() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("schemathesis is not installed (pip install 'schemathesis>=4.32,<5')")
    return found


HOSTILE_HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
# What the hostile run must have put on the wire (read back from the bytes sent, see the hooks).
HOSTILE_ON_THE_WIRE = {
    "json surrogate",
    "json NaN",
    "json Infinity",
    "json -Infinity",
    "json 1e999",
    "query non-finite",
    "query surrogate bytes",
    "path non-finite",
    "form charset utf-7",
    "form charset unicode_escape",
    "form surrogate in field",
    "form surrogate in head",
    "form surrogate bytes in field",
    "form non-finite",
    "form real picture",
}


@pytest.mark.drill
@pytest.mark.parametrize("who", ["tenant", "admin"])
@pytest.mark.parametrize("strategies", ["default", "hostile"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    settings: Settings, engine: Engine, tenant: int, tmp_path: Path, who: str, strategies: str
) -> None:
    """`default`: Schemathesis' own generation (valid UTF-8, finite numbers). `hostile`: the
    same cases with lone surrogates and non-finite numbers put in bodies, form fields, file
    names, query strings and paths by tests/drills/schemathesis_hooks.py."""
    cli = schemathesis_cli()
    insert_legacy_product(engine, tenant, LEGACY)
    token = bearer(tenant if who == "tenant" else None, admin=who == "admin")
    wire_log = tmp_path / "wire.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "SCHEMATHESIS_HOOKS"}
    if strategies == "hostile":
        env |= {"SCHEMATHESIS_HOOKS": str(HOSTILE_HOOKS), "HOSTILE_INPUT_LOG": str(wire_log)}
    with live_server(create_app(settings, engine)) as url:
        result = subprocess.run(
            [
                cli,
                "run",
                f"{url}/openapi.json",
                "--header",
                f"Authorization: {token['Authorization']}",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--max-examples",
                "40",
                "--seed",
                str(SCHEMATHESIS_SEED),
                # No example database: the run is the seed's alone, and a hostile example
                # saved by one run is never replayed by a default one (which cannot send it).
                "--generation-database",
                "none",
                "--request-timeout",
                "15",  # a request that hangs is a failure, not a stuck test
                "--continue-on-failure",
                "--warnings",
                "off",
                "--report-dir",
                str(tmp_path / "schemathesis"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env=env,
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    totals = [line.strip() for line in result.stdout.splitlines() if " generated, " in line]
    print(f"schemathesis {strategies}/{who}:", *totals)
    assert totals and "error" not in totals[-1], totals  # a case it could not run is no pass
    if strategies == "hostile":
        # Proof from the bytes sent that the hooks ran and reached every kind of input.
        sent = [json.loads(line) for line in wire_log.read_text().splitlines()]
        kinds = Counter(kind for line in sent for kind in line["kinds"])
        hostile = sum(1 for line in sent if set(line["kinds"]) & HOSTILE_ON_THE_WIRE)
        print(f"schemathesis {strategies}/{who}: {len(sent)} requests, {hostile} hostile", kinds)
        assert not HOSTILE_ON_THE_WIRE - set(kinds), (HOSTILE_ON_THE_WIRE - set(kinds), kinds)
        assert hostile >= len(sent) // 4, (hostile, len(sent), kinds)
        assert all(line["status"] < 500 for line in sent)


@pytest.fixture
def product(engine: Engine, tenant: int) -> int:
    return insert_legacy_product(engine, tenant, LEGACY)


ODD_IDS = ["0", "-1", "abc", str(2**63), str(2**64), "9" * 40, "1.5", "1e3", "%20", "0x10"]
NIL = "00000000-0000-4000-8000-000000000000"
IMAGE_ROUTES: list[tuple[str, str, dict[str, object] | None]] = [
    ("GET", "/api/products/{id}/images", None),
    ("GET", "/api/products/{id}/images/photos", None),
    ("GET", "/api/products/{id}/images/label", None),
    ("POST", "/api/products/{id}/images", {"url": f"{BASE}/x.jpg"}),
    ("PUT", "/api/products/{id}/images/order", {"image_ids": []}),
    ("PATCH", f"/api/products/{{id}}/images/{NIL}", {"alt_text": "x"}),
    ("DELETE", f"/api/products/{{id}}/images/{NIL}", None),
    ("GET", "/api/products/{id}/marketplaces/vinted", None),
    ("PATCH", "/api/products/{id}", {"title": "x"}),
    ("DELETE", "/api/products/{id}", None),
]


@pytest.mark.parametrize("product_id", ODD_IDS)
def test_odd_product_ids_on_every_route_are_4xx_never_5xx(
    client: TestClient, auth: dict[str, str], product_id: str
) -> None:
    for method, template, body in IMAGE_ROUTES:
        path = template.replace("{id}", product_id)
        response = client.request(method, path, headers=auth, json=body)
        assert response.status_code in (404, 422), (method, path, response.status_code)


@pytest.mark.parametrize("image_id", ["not-a-uuid", "0" * 100, "-1", str(2**64)])
def test_odd_image_ids_are_422(
    client: TestClient, auth: dict[str, str], product: int, image_id: str
) -> None:
    path = f"/api/products/{product}/images/{image_id}"
    assert client.delete(path, headers=auth).status_code == 422
    assert client.patch(path, json={"alt_text": "x"}, headers=auth).status_code == 422


def token_with(sub: object, secret: str = TEST_SECRET) -> dict[str, str]:
    exp = int((now_utc() + timedelta(minutes=5)).timestamp())
    return {"Authorization": f"Bearer {jwt.encode({'sub': sub, 'exp': exp}, secret, 'HS256')}"}


@pytest.mark.parametrize(
    "sub",
    [
        "-1",
        "\uff10",  # fullwidth zero
        "99999999999999999999",
        str(10**18),
        " 1",
        "1 ",
        "1.0",
        "+1",
        "1_000",
        "1; DROP SCHEMA public CASCADE",
        "",
        12,
        None,
        ["1"],
        {"id": 1},
        True,
    ],
)
def test_odd_token_subjects_are_401_or_404_and_never_reach_sql(
    client: TestClient, sub: object
) -> None:
    response = client.get("/api/products", headers=token_with(sub))
    assert response.status_code in (401, 404), (sub, response.status_code, response.text)


def test_tokens_signed_with_another_secret_or_alg_none_are_401(
    client: TestClient, tenant: int
) -> None:
    exp = int((now_utc() + timedelta(minutes=5)).timestamp())
    for token in (
        jwt.encode({"sub": str(tenant), "exp": exp}, None, "none"),
        jwt.encode({"sub": str(tenant), "exp": exp}, "x" * 40, "HS256"),
        jwt.encode({"sub": str(tenant), "exp": exp}, TEST_SECRET, "HS512"),
        jwt.encode({"sub": str(tenant), "exp": exp, "role": "admin"}, "x" * 40, "HS256"),
    ):
        response = client.get("/api/admin/tenants", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token


def test_a_tenants_token_on_another_tenants_product_is_404_on_every_route(
    client: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    owner, intruder = make_tenant(), make_tenant()
    product = insert_legacy_product(engine, owner, LEGACY)
    before = jsonb_elements(engine, owner, product)
    for method, template, body in IMAGE_ROUTES:
        path = template.replace("{id}", str(product))
        response = client.request(method, path, headers=bearer(intruder), json=body)
        assert response.status_code == 404, (method, path, response.status_code)
    assert jsonb_elements(engine, owner, product) == before
    assert table_elements(engine, owner, product) == []


def test_oversized_json_bodies_are_refused_and_change_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, product: int
) -> None:
    path = f"/api/products/{product}/images"
    huge_alt = client.post(
        path, json={"url": f"{BASE}/x.jpg", "alt_text": "a" * 5_000_000}, headers=auth
    )
    assert huge_alt.status_code in (413, 422)
    many_ids = client.put(
        f"{path}/order",
        json={"image_ids": ["00000000-0000-4000-8000-000000000000"] * 20_000},
        headers=auth,
    )
    assert many_ids.status_code in (413, 422)
    many_tags = client.post(
        path, json={"url": f"{BASE}/x.jpg", "tags": ["a"] * 100_000}, headers=auth
    )
    assert many_tags.status_code in (413, 422)
    deep = client.post(
        path,
        content=b'{"url": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        headers={**auth, "Content-Type": "application/json"},
    )
    assert deep.status_code in (400, 413, 422), deep.status_code
    title = client.post("/api/products", json={"title": "t" * 1_000_000, "price": 1}, headers=auth)
    assert title.status_code in (413, 422)
    assert table_elements(engine, tenant, product) == []
    assert jsonb_elements(engine, tenant, product) == LEGACY


def test_an_upload_with_no_file_or_two_files_is_refused(
    client: TestClient, auth: dict[str, str], product: int
) -> None:
    path = f"/api/products/{product}/images/upload"
    assert client.post(path, data={"alt_text": "x"}, headers=auth).status_code == 422
    two = client.post(
        path,
        files=[
            ("file", ("a.txt", b"not an image", "text/plain")),
            ("file", ("b.txt", b"x", "text/plain")),
        ],
        headers=auth,
    )
    assert two.status_code == 422


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/media/a.jpg",
        "http://127.0.0.1:8000/media/a.jpg",
        "http://localhost/media/a.jpg",
        "http://[::1]/media/a.jpg",
        "http://10.0.0.5/media/a.jpg",
        "http://192.168.1.1/media/a.jpg",
        "http://169.254.169.254/latest/meta-data/iam",
        "http://0.0.0.0/media/a.jpg",
        "http://2130706433/media/a.jpg",  # 127.0.0.1 as one integer
        "http://testserver@127.0.0.1/media/a.jpg",
        "http://testserver/media@127.0.0.1/a.jpg",
        "http://testserver.127.0.0.1.nip.io/media/a.jpg",
        "http://testserver:8080/media/a.jpg",
        "https://testserver/media/a.jpg",
        "http://testserver/media",
        "http://testserver/media/",
        "http://testserver/mediaX/a.jpg",
        "http://testserver/media\\..\\secret.jpg",
        "file:///etc/passwd",
        "gopher://testserver/media/a.jpg",
    ],
)
def test_image_urls_off_the_storage_base_are_422(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, product: int, url: str
) -> None:
    response = client.post(f"/api/products/{product}/images", json={"url": url}, headers=auth)
    assert response.status_code == 422, (url, response.status_code)
    assert jsonb_elements(engine, tenant, product) == LEGACY


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE}/%2e%2e/secret.jpg",
        f"{BASE}/%2E%2E/%2E%2E/etc/passwd",
        f"{BASE}/.%2e/secret.jpg",
        f"{BASE}/%2e/x.jpg",
        f"{BASE}/..%2fsecret.jpg",
        f"{BASE}/a%5c..%5csecret.jpg",
    ],
)
def test_percent_encoded_dot_segments_cannot_escape_the_storage_base(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, product: int, url: str
) -> None:
    response = client.post(f"/api/products/{product}/images", json={"url": url}, headers=auth)
    assert response.status_code == 422, (url, response.status_code)
    assert jsonb_elements(engine, tenant, product) == LEGACY


def test_the_media_route_never_serves_outside_its_folder(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    secret = settings.resolved_media_root.parent / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("secret")
    with TestClient(create_app(settings, engine)) as client:
        for path in (
            "/media/../secret.txt",
            "/media/%2e%2e/secret.txt",
            "/media/..%2fsecret.txt",
            "/media/%2e%2e%2fsecret.txt",
            "/media/.blobs",
        ):
            response = client.get(path)
            assert response.status_code in (400, 404), (path, response.status_code)
            assert "secret" not in response.text


# Lone surrogates and non-finite numbers everywhere (issue 19). Every JSON body field of every
# operation in the app's own OpenAPI schema (a new route or field is covered without a new
# case), every query parameter, and every form field, file name and field name of a multipart
# upload: always a 4xx, never a 5xx, and the response is strict JSON in UTF-8 (no NaN or
# Infinity, no lone surrogate). tests/api/test_validation_errors.py checks, field by field,
# that nothing changes; these check every field the schema lists.

# As sent on the wire: valid JSON text for a lone surrogate (the 6-character escape, since the
# surrogate itself cannot be UTF-8 encoded), and the non-finite numbers Python's json accepts.
HOSTILE_JSON = {
    "high surrogate": b'"\\ud800"',
    "low surrogate in text": b'"ab\\udfffcd"',
    "reversed pair": b'"\\udc00\\ud800"',
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "1e999": b"1e999",
    "-1e999": b"-1e999",
}
HOLE = "\x00hostile\x00"  # stands for the hostile value until the body is serialised
BODY_SAMPLES: dict[str, object] = {"url": f"{BASE}/x.jpg", "title": "t", "price": 1}


def _refuse_constant(name: str) -> object:
    raise AssertionError(f"{name} in a response: not strict JSON")


def _finite(text: str) -> float:
    value = float(text)
    assert math.isfinite(value), f"{text} in a response: not a finite number"
    return value


def _lone_surrogates(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if any(0xD800 <= ord(c) <= 0xDFFF for c in value) else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _lone_surrogates(k) + _lone_surrogates(v)]
    if isinstance(value, list):
        return [s for item in value for s in _lone_surrogates(item)]
    return []


def strict_json(response: Any, case: object) -> Any:
    """The response body is UTF-8, strict JSON, and holds no lone surrogate once decoded."""
    text = response.content.decode("utf-8")
    payload = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    assert not _lone_surrogates(payload), (case, text[:500])
    return payload


def strict_json_4xx(response: Any, case: object) -> Any:
    """A 4xx (never a 5xx), in strict JSON."""
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:500])
    return strict_json(response, case)


def names_field(payload: Any, loc: list[object]) -> bool:
    """Some validation error's `loc` starts with `loc`."""
    detail = payload.get("detail") if isinstance(payload, dict) else None
    return isinstance(detail, list) and any(
        isinstance(error, dict) and error.get("loc", [])[: len(loc)] == loc for error in detail
    )


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    """The app's own OpenAPI schema."""
    return dict(client.get("/openapi.json").json())


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "patch", "delete")
    ]


def resolved(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    node: Any = schema
    while "$ref" in node:
        ref, node = node["$ref"], spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
    return dict(node)


def send(
    client: TestClient, problems: list[object], case: object, method: str, url: str, **kw: Any
) -> Any:
    """The response, or None once the app's exception (a 5xx) is noted as a problem."""
    try:
        return client.request(method, url, **kw)
    except Exception as exc:  # the test client re-raises what the app failed on
        problems.append((case, f"500: {exc!r}"))
        return None


def branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]


def is_array(schema: dict[str, Any]) -> bool:
    return any(branch.get("type") == "array" for branch in branches(schema))


def scalar_types(schema: dict[str, Any]) -> set[str]:
    return {str(branch["type"]) for branch in branches(schema) if "type" in branch}


def item_types(schema: dict[str, Any]) -> set[str]:
    """The field's types, an array's items' types included (a form repeats the field)."""
    items = [branch["items"] for branch in branches(schema) if "items" in branch]
    return scalar_types(schema).union(*(scalar_types(item) for item in items))


def is_file(schema: dict[str, Any]) -> bool:
    return (
        schema.get("contentMediaType") == "application/octet-stream"
        or schema.get("format") == "binary"
    )


def sample(name: str, schema: dict[str, Any]) -> object:
    """A plausible value, so that the hostile value is the request's one problem."""
    if name in BODY_SAMPLES:
        return BODY_SAMPLES[name]
    if name == "email":
        return f"h-{uuid.uuid4().hex}@example.com"
    types = scalar_types(schema) - {"null"}
    for kind, value in (("array", []), ("boolean", False), ("integer", 1), ("number", 1)):
        if kind in types:
            return value
    return "x"


@pytest.fixture
def fill_path(
    client: TestClient, auth: dict[str, str], product: int
) -> Callable[[str, dict[str, Any]], str]:
    images = client.get(f"/api/products/{product}/images", headers=auth).json()["images"]

    def fill(path: str, operation: dict[str, Any]) -> str:
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "path":
                continue
            schema = parameter.get("schema", {})
            if schema.get("format") == "uuid":
                value = images[0]["id"]
            elif "integer" in scalar_types(schema):
                value = str(product)
            else:
                value = str(schema.get("enum", ["vinted"])[0])
            path = path.replace("{" + parameter["name"] + "}", value)
        return path

    return fill


def headers_for(path: str, tenant: int) -> dict[str, str]:
    return bearer(tenant, admin=path.startswith("/api/admin"))


def test_lone_surrogates_and_non_finite_numbers_in_every_json_body_field_are_4xx(
    client: TestClient,
    spec: dict[str, Any],
    tenant: int,
    fill_path: Callable[[str, dict[str, Any]], str],
) -> None:
    problems: list[object] = []
    sent = 0
    for method, template, operation in operations(spec):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        schema = resolved(spec, content["application/json"]["schema"])
        properties = {
            name: resolved(spec, prop) for name, prop in schema.get("properties", {}).items()
        }
        baseline = {
            name: sample(name, prop)
            for name, prop in properties.items()
            if name in schema.get("required", [])
        }
        # (where the hostile value goes, the body around it, the `loc` the 422 must name)
        targets: list[tuple[str, object, list[object] | None]] = [
            ("the whole body", HOLE, None),
            ("a key", {**baseline, HOLE: 1}, None),
        ]
        for name, prop in properties.items():
            targets.append((name, {**baseline, name: HOLE}, ["body", name]))
            if is_array(prop):
                targets.append((f"{name}[0]", {**baseline, name: [HOLE]}, ["body", name, 0]))
        url = fill_path(template, operation)
        headers = {**headers_for(template, tenant), "Content-Type": "application/json"}
        for where, body, loc in targets:
            wire = json.dumps(body).encode()
            for label, hostile in HOSTILE_JSON.items():
                if where == "a key" and not hostile.startswith(b'"'):
                    continue  # a key is a string
                content_bytes = wire.replace(json.dumps(HOLE).encode(), hostile)
                case = (method, template, where, label)
                response = send(
                    client, problems, case, method, url, content=content_bytes, headers=headers
                )
                sent += 1
                if response is None:
                    continue
                try:
                    payload = strict_json_4xx(response, case)
                    if loc is not None:
                        assert response.status_code == 422 and names_field(payload, loc), (
                            case,
                            response.status_code,
                            response.text[:500],
                        )
                except AssertionError as exc:
                    problems.append(exc.args[0] if exc.args else case)
    assert sent > 300, sent  # the schema was read: every JSON operation, every field
    assert not problems, "\n".join(map(str, problems))


HOSTILE_QUERY = [
    "%ED%A0%80",  # a lone surrogate as UTF-8-style bytes (invalid UTF-8)
    "%ED%BF%BF",
    "%5Cud800",  # the JSON escape, as text
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "inf",
    "1e999",
    "-1e999",
]


def test_lone_surrogates_and_non_finite_numbers_in_every_query_parameter_are_4xx(
    client: TestClient,
    spec: dict[str, Any],
    tenant: int,
    fill_path: Callable[[str, dict[str, Any]], str],
) -> None:
    problems: list[object] = []
    sent = 0
    for method, template, operation in operations(spec):
        url = fill_path(template, operation)
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            numeric = scalar_types(parameter.get("schema", {})) & {"integer", "number"}
            for hostile in HOSTILE_QUERY:
                case = (method, template, parameter["name"], hostile)
                response = send(
                    client,
                    problems,
                    case,
                    method,
                    f"{url}?{parameter['name']}={hostile}",
                    headers=headers_for(template, tenant),
                )
                sent += 1
                if response is None:
                    continue
                try:
                    if not numeric:  # a text parameter may take these; never a 5xx though
                        assert response.status_code < 500, (case, response.status_code)
                        strict_json(response, case)
                        continue
                    payload = strict_json_4xx(response, case)
                    assert names_field(payload, ["query", parameter["name"]]), (case, payload)
                except AssertionError as exc:
                    problems.append(exc.args[0] if exc.args else case)
    assert sent >= 2 * len(HOSTILE_QUERY), sent
    assert not problems, "\n".join(map(str, problems))


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), "red").save(buffer, "PNG")
    return buffer.getvalue()


# A multipart form's text is decoded with the charset its Content-Type names (Starlette), so a
# client can deliver a lone surrogate in a field, a field name or a file name with UTF-7 or
# unicode_escape; raw surrogate bytes in UTF-8 fall back to Latin-1.
SURROGATE_IN = {"utf-7": b"+2AA-", "unicode_escape": b"\\ud800", "utf-8": b"\xed\xa0\x80"}
NON_FINITE_TEXT = [b"NaN", b"Infinity", b"-Infinity", b"1e999"]


Parts = list[tuple[bytes, bytes | None, bytes]]


def multipart(parts: Parts, charset: str) -> tuple[bytes, str]:
    """(name, file name or None, content) parts as multipart/form-data with a charset."""
    body = b""
    for name, filename, content in parts:
        disposition = b'form-data; name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"\r\nContent-Type: image/png'
        body += (
            b"--HOSTILE\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + content + b"\r\n"
        )
    return body + b"--HOSTILE--\r\n", f"multipart/form-data; boundary=HOSTILE; charset={charset}"


def test_lone_surrogates_and_non_finite_numbers_in_every_upload_form_field_are_4xx(
    client: TestClient,
    spec: dict[str, Any],
    tenant: int,
    fill_path: Callable[[str, dict[str, Any]], str],
) -> None:
    problems: list[object] = []
    sent = 0
    png = tiny_png()
    for method, template, operation in operations(spec):
        content = operation.get("requestBody", {}).get("content", {})
        if "multipart/form-data" not in content:
            continue
        properties = resolved(spec, content["multipart/form-data"]["schema"])["properties"]
        files = [name.encode() for name, prop in properties.items() if is_file(prop)]
        fields = [name for name, prop in properties.items() if not is_file(prop)]
        url = fill_path(template, operation)
        # (parts, charset, what is expected: a 422 naming this `loc`, any 4xx ([]), or any
        # status but a 5xx (None): a real picture whose name is odd is still a picture)
        cases: list[tuple[Parts, str, list[object] | None]] = []
        not_an_image: Parts = [(name, b"a.png", b"not an image") for name in files]
        for name in fields:
            for charset, surrogate in SURROGATE_IN.items():
                # Under UTF-8, surrogate bytes are not UTF-8: Latin-1 text, maybe a valid value.
                loc: list[object] = [] if charset == "utf-8" else ["body", name]
                for value in (surrogate, b"a" + surrogate + b"b"):
                    cases.append(([*not_an_image, (name.encode(), None, value)], charset, loc))
            # Non-finite numbers are text too, and may be a valid alt text or tag ("1e999").
            loc = [] if "string" in item_types(properties[name]) else ["body", name]
            for value in NON_FINITE_TEXT:
                cases.append(([*not_an_image, (name.encode(), None, value)], "utf-8", loc))
        for charset, surrogate in SURROGATE_IN.items():
            for name in files:
                for filename in (b"a." + surrogate, surrogate + b".png", b"a.png" + surrogate):
                    cases.append(([(name, filename, png)], charset, None))
            pictures: Parts = [(name, b"a.png", png) for name in files]
            cases.append(([(surrogate, b"a.png", png)], charset, []))  # the field's name
            for name in fields:
                cases.append(([*pictures, (name.encode(), None, surrogate)], charset, None))
        for parts, charset, expected in cases:
            body, content_type = multipart(parts, charset)
            case = (method, template, charset, parts[-1][0], parts[-1][1] or parts[-1][2])
            response = send(
                client,
                problems,
                case,
                method,
                url,
                content=body,
                headers={**headers_for(template, tenant), "Content-Type": content_type},
            )
            sent += 1
            if response is None:
                continue
            try:
                if expected is None:
                    assert response.status_code < 500, (case, response.status_code)
                    strict_json(response, case)
                    continue
                payload = strict_json_4xx(response, case)
                if expected:
                    assert names_field(payload, expected), (case, payload)
            except AssertionError as exc:
                problems.append(exc.args[0] if exc.args else case)
    assert sent > 50, sent
    assert not problems, "\n".join(map(str, problems))
