"""``feedback-import`` of a bad file: one line naming file, line and field; nothing stored."""

from __future__ import annotations

import json

import pytest
from serve_helpers import make_setup
from sqlalchemy import func, select
from typer.testing import CliRunner

from prefloop.cli import app
from prefloop.data import Critique, save_records
from prefloop.serve.db import Item, make_sessionmaker

GOOD = json.dumps({"prompt": "q", "responses": ["a", "b"]}).encode()


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        (
            json.dumps({"prompt": "", "responses": ["a", "b"]}).encode(),
            ":2: field 'prompt': Value error, a text prompt needs 1..100000 characters",
        ),
        (
            json.dumps({"prompt": "q", "responses": ["a"], "rewards": [[1, "x"]]}).encode(),
            ":2: field 'responses': List should have at least 2 items after validation, not 1"
            " (and 1 more problems)",
        ),
        (GOOD[:20], ":2: invalid JSON at column 17: Unterminated string starting"),
        (b'{"prompt": "caf\xe9"}', ":2: not UTF-8 text (byte 0xe9 at column 16)"),
        (b"[1, 2]", ":2: expected a JSON object, got list"),
    ],
)  # fmt: skip
def test_a_bad_line_is_named_and_nothing_is_stored(
    client, server_token, engine, sqlite_url, tmp_path, second_line, message
):
    s = make_setup(client, server_token, n_annotators=0)
    items = tmp_path / "items.jsonl"
    items.write_bytes(GOOD + b"\n" + second_line + b"\n" + GOOD + b"\n")
    result = CliRunner().invoke(
        app, ["feedback-import", str(items), "--project", str(s.project["id"]), "--db", sqlite_url]
    )
    assert result.exit_code == 1
    assert result.output == f"{items}{message}\n"
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 0


def test_records_that_are_no_items_are_named(client, server_token, sqlite_url, tmp_path):
    s = make_setup(client, server_token, n_annotators=0)
    critiques = save_records([Critique("q", "a", "too short")], tmp_path / "critiques.jsonl")
    result = CliRunner().invoke(
        app,
        ["feedback-import", str(critiques), "--project", str(s.project["id"]), "--db", sqlite_url],
    )
    assert (result.exit_code, result.output) == (
        1,
        f"{critiques}: record 1: cannot make an item to judge from a Critique record\n",
    )
    broken = tmp_path / "pairs.jsonl"
    broken.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": ""}) + "\n")
    result = CliRunner().invoke(
        app, ["feedback-import", str(broken), "--project", str(s.project["id"]), "--db", sqlite_url]
    )
    assert (result.exit_code, result.output) == (
        1,
        f"{broken}:1: field 'rejected': expected a non-empty string or a list of messages, "
        "got an empty string\n",
    )


def test_a_missing_file_is_named(client, server_token, sqlite_url, tmp_path):
    s = make_setup(client, server_token, n_annotators=0)
    gone = tmp_path / "gone.jsonl"
    result = CliRunner().invoke(
        app, ["feedback-import", str(gone), "--project", str(s.project["id"]), "--db", sqlite_url]
    )
    assert (result.exit_code, result.output) == (
        1,
        f"{gone}: expected an existing file or directory, got nothing at this path\n",
    )
