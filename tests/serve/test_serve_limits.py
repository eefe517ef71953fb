"""Request bodies: the 16 MiB limit for chunked and streamed bodies (in-process and on a real
server), and JSON only."""

from __future__ import annotations

import json

import httpx
from serve_helpers import bearer, make_setup
from sqlalchemy import func, select

from prefloop.serve.app import MAX_BODY
from prefloop.serve.db import Item, make_sessionmaker

TOO_LARGE = (413, f"body larger than {MAX_BODY} bytes")
JSON = {"content-type": "application/json"}


def streamed_items(count: int, text_size: int = 50_000):
    """An items body in pieces, sent without Content-Length (Transfer-Encoding: chunked)."""
    item = json.dumps({"prompt": "p", "responses": ["a" * text_size, "b" * text_size]})
    yield b'{"items": ['
    for i in range(count):
        yield (("," if i else "") + item).encode()
    yield b"]}"


def stored_items(engine) -> int:
    with make_sessionmaker(engine)() as session:
        return session.scalar(select(func.count()).select_from(Item))


def test_a_chunked_body_over_the_limit_is_413_and_stores_nothing(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=0)
    r = client.post(s.url("/items"), content=streamed_items(200), headers=s.admin() | JSON)  # 20 MB
    assert "content-length" not in r.request.headers
    assert (r.status_code, r.json()["detail"]) == TOO_LARGE
    assert stored_items(engine) == 0
    small = client.post(s.url("/items"), content=streamed_items(3), headers=s.admin() | JSON)
    assert small.status_code == 201, small.text
    assert small.json()["created"] == 3


def test_a_streamed_body_over_the_limit_is_413_on_a_real_server(live_server, sqlite_url):
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.base, timeout=60) as http:
        s = make_setup(http, server.token, n_annotators=0)
        r = http.post(
            s.url("/items"), content=streamed_items(400), headers=s.admin() | JSON
        )  # 40 MB
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert (r.status_code, r.json()["detail"]) == TOO_LARGE
        assert http.get(s.url("/judgments"), headers=s.admin()).json() == []
        assert http.get(s.url("/items/1"), headers=s.admin()).status_code == 404


def test_a_body_without_a_json_content_type_is_a_422_that_says_so(client, server_token):
    auth = bearer(server_token)
    body = b'{"name": "p", "task": "pairwise"}'
    expected = [
        {
            "loc": ["header", "content-type"],
            "msg": "request bodies are JSON: send Content-Type: application/json",
            "type": "content_type",
        }
    ]
    form = {"content-type": "application/x-www-form-urlencoded"}  # what curl -d sends
    for headers in ({}, form, {"content-type": "text/plain"}):
        r = client.post("/api/v1/projects", content=body, headers=auth | headers)
        assert (r.status_code, r.json()["detail"]) == (422, expected), headers
    for media in ("application/json", "application/json; charset=utf-8", "application/x+json"):
        r = client.post("/api/v1/projects", content=body, headers=auth | {"content-type": media})
        assert r.status_code == 201, media
    assert client.post("/api/v1/projects/1/next", headers=auth).status_code == 403  # no body
