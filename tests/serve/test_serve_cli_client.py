"""``prefloop feedback-import`` / ``feedback-export`` through a running server (``--url``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from serve_helpers import make_setup
from test_serve_export import judge_all, prefer_good
from typer.testing import CliRunner

from prefloop.cli import app
from prefloop.serve import Client
from prefloop.serve.cli import export_command, import_command

runner = CliRunner()
ITEMS = [
    {"prompt": "q1", "responses": ["good", "bad"]},
    {"prompt": [{"role": "user", "content": "hi"}], "responses": ["bad", "good"]},
]


@pytest.fixture
def served(live_server, sqlite_url):
    """A live server on ``sqlite_url`` with a pairwise project and one annotator."""
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.base) as http:
        s = make_setup(http, server.token, n_annotators=1)
        s.base = server.base
        yield s


def cli(s, *args: str, token: str | None = None):
    """Run a ``feedback-*`` command on the project of ``s`` against its server."""
    args = [*args, "--project", str(s.project["id"]), "--url", s.base]
    args += ["--token", token or s.project["admin_token"]]
    return runner.invoke(app, args)


def test_import_through_the_server_adds_items_once(served, sqlite_url, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    first = cli(served, "feedback-import", str(items))
    assert first.exit_code == 0, first.output
    assert first.output == "2 new items\n"
    assert cli(served, "feedback-import", str(items)).output == "0 new items\n"
    # the database path derives the same external ids, so it skips the same rows
    assert import_command(str(items), served.project["id"], db=sqlite_url) == 0
    with Client(served.base, served.project["admin_token"]) as admin:
        stored = [admin.item(served.project["id"], i) for i in (1, 2)]
    assert [(i.external_id, i.prompt) for i in stored] == [
        ("items.jsonl:0", "q1"),
        ("items.jsonl:1", [{"role": "user", "content": "hi"}]),
    ]
    assert [r["text"] for r in stored[1].responses] == ["bad", "good"]


@pytest.mark.parametrize("options", [[], ["--form", "trl-explicit"], ["--form", "trl-kto"]])
def test_export_through_the_server_writes_the_database_export(
    served, sqlite_url, tmp_path, options
):
    served.client.post(served.url("/items"), json={"items": ITEMS}, headers=served.admin())
    judge_all(served, prefer_good)
    out = tmp_path / "server.jsonl"
    result = cli(served, "feedback-export", "--out", str(out), *options)
    assert result.exit_code == 0, result.output
    form = options[1] if options else "prefloop"
    from_db = tmp_path / "db.jsonl"
    count = export_command(served.project["id"], str(from_db), db=sqlite_url, form=form)
    assert count == (4 if form == "trl-kto" else 2)
    assert result.output.split() == f"{count} rows written to {out}".split()  # rich wraps
    assert out.read_bytes() == from_db.read_bytes()


def test_export_through_the_server_takes_pairs_and_judges(served, sqlite_url, tmp_path):
    served.client.post(served.url("/items"), json={"items": ITEMS}, headers=served.admin())
    judge_all(served, prefer_good)
    project, token = served.project["id"], served.project["admin_token"]
    for judges, expected in (("human", 2), ("ai", 0)):  # no AI judgments: the filter applies
        kw = {"form": "trl-implicit", "pairs": True, "judges": judges}
        server = export_command(project, str(tmp_path / "s"), url=served.base, token=token, **kw)
        local = export_command(project, str(tmp_path / "d"), db=sqlite_url, **kw)
        assert server == local == expected
        assert (tmp_path / "s").read_bytes() == (tmp_path / "d").read_bytes()


def test_a_wrong_token_is_one_line_and_a_failure(served, tmp_path):
    """Through the real entry point, token from the environment, as a user runs it."""
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps(ITEMS[0]) + "\n")
    project = served.project["id"]
    calls = {
        f"POST /projects/{project}/items": ["feedback-import", str(items)],
        f"GET /projects/{project}/export": ["feedback-export"],
    }
    for request, command in calls.items():
        result = subprocess.run(
            [sys.executable, "-m", "prefloop.cli", *command, "--project", str(project),
             "--url", served.base],
            capture_output=True, text=True, cwd=tmp_path,
            env={**os.environ, "PREFLOOP_TOKEN": "pfa_wrong"},
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert result.stderr == f"server: {request}: 401 invalid or revoked token\n"
    assert not (tmp_path / "feedback.jsonl").exists()


def test_url_and_db_together_are_refused(served, sqlite_url, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps(ITEMS[0]) + "\n")
    for command in (["feedback-import", str(items)], ["feedback-export", "--out", "x.jsonl"]):
        result = cli(served, *command, "--db", sqlite_url)
        assert result.exit_code == 1
        assert result.output == "give --url (a running server) or --db (the database), not both\n"


def test_url_without_a_token_is_refused(served, monkeypatch):
    monkeypatch.delenv("PREFLOOP_TOKEN", raising=False)
    args = ["feedback-export", "--project", "1", "--url", served.base]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.output == "--url needs a project admin token: --token or PREFLOOP_TOKEN\n"
