"""Schema-driven fuzz of every operation in the OpenAPI spec: no input may cause a 5xx.

Bodies and parameters are drawn from the spec's own JSON schemas (so many requests get past
validation and reach the handlers), mutated with arbitrary JSON, and sent with a random one of
the server-admin, project-admin, annotator, wrong or missing tokens.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_helpers import bearer, make_setup, pair_items

from prefloop.serve.app import create_app
from prefloop.serve.cli import init_admin, open_db
from prefloop.serve.throttle import FailedAuthThrottle

JSON_LEAF = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
)
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=12,
)


WHO = ["server", "admin", "admin", "annotator", "annotator", "bad", "none"]


def from_schema(schema: dict, spec: dict, depth: int = 0) -> st.SearchStrategy:
    """A strategy for values of ``schema``; one time in eight an arbitrary JSON value instead."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if depth > 4:
        return ANY_JSON
    return (
        st.one_of(_typed(schema, spec, depth), ANY_JSON)
        if depth
        else _typed(schema, spec, depth) | ANY_JSON
    )


def _typed(schema: dict, spec: dict, depth: int) -> st.SearchStrategy:
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of(
            [from_schema(s, spec, depth + 1) for s in schema.get("anyOf", schema.get("oneOf"))]
        )
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = {k: from_schema(v, spec, depth + 1) for k, v in props.items()}
        return st.fixed_dictionaries(
            {k: s for k, s in fields.items() if k in required},
            optional={k: s for k, s in fields.items() if k not in required},
        )
    if kind == "array":
        items = from_schema(schema.get("items", {}), spec, depth + 1)
        return st.lists(items, max_size=min(schema.get("maxItems", 5), 5))
    if kind == "string":
        return st.text(max_size=40) | st.sampled_from(
            ["left", "right", "tie", "both_bad", "pairwise", "x" * 100_001]
        )
    if kind == "integer":
        return st.integers(-3, 5) | st.integers(-(2**65), 2**65)
    if kind == "number":
        return st.floats(-1, 2) | st.floats()
    if kind == "boolean":
        return st.booleans()
    return ANY_JSON


def operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, op)
        for path, methods in spec["paths"].items()
        for method, op in methods.items()
    ]


@st.composite
def requests(draw, spec: dict, ops: list) -> tuple:
    method, path, op = draw(st.sampled_from(ops))
    params, url = {}, path
    for p in op.get("parameters", []):
        value = draw(from_schema(p.get("schema", {}), spec, 1))
        if p["in"] == "path":
            value = draw(st.integers(-2, 4) | st.just(value))
            url = url.replace("{" + p["name"] + "}", quote(str(value), safe=""))
        elif draw(st.booleans()):
            params[p["name"]] = (
                value if isinstance(value, str | int | float | bool) else json.dumps(value)
            )
    body = None
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is not None:
        body = draw(from_schema(content["schema"], spec))
    return method, url, params, body, draw(st.sampled_from(WHO))


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzz_client(request, sqlite_url):
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = open_db(url)
    token = init_admin(engine)
    # Unthrottled: the "bad" token's failures would otherwise lock every caller out (429).
    app = create_app(engine, auth_throttle=FailedAuthThrottle(limit=2**31))
    with TestClient(app, raise_server_exceptions=False) as client:
        s = make_setup(client, token, n_annotators=1, items=pair_items(3, k=3))
        client.post(s.url("/next"), headers=s.ann())  # leave an open assignment to hit
        yield (
            client,
            {
                "server": bearer(token),
                "admin": s.admin(),
                "annotator": s.ann(),
                "bad": bearer("pfu_x"),
                "none": {},
            },
        )
    engine.dispose()


def test_no_5xx_anywhere(fuzz_client):
    client, tokens = fuzz_client
    spec = client.get("/openapi.json").json()

    @settings(
        max_examples=int(os.environ.get("PREFLOOP_FUZZ_EXAMPLES", 400)),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(spec, operations(spec)))
    def check(request):
        method, url, params, body, who = request
        kwargs = {"params": params, "headers": tokens[who]}
        if body is not None:
            kwargs["content"] = json.dumps(body)
            kwargs["headers"] = {**tokens[who], "content-type": "application/json"}
        r = client.request(method, url, **kwargs)
        assert r.status_code < 500, (method, url, params, body, r.status_code, r.text[:500])
        if r.status_code >= 400:
            assert r.json()["detail"]

    check()
