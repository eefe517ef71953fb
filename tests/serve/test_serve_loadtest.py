"""The load test counts every transport error, accounts for every judgment, and exits 1 if not."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import httpx
from serve_helpers import free_port
from sqlalchemy import func, select

from prefloop.serve.db import Judgment, make_engine, make_sessionmaker
from prefloop.serve.loadtest import (
    LoadResult,
    Retry,
    create_load_project,
    main,
    reconcile,
    run_load,
)

ANNOTATORS = 4


def judgments_stored(sqlite_url: str) -> int:
    engine = make_engine(sqlite_url)
    try:
        with make_sessionmaker(engine)() as session:
            return session.scalar(select(func.count()).select_from(Judgment))
    finally:
        engine.dispose()


def test_a_clean_run_exits_0_with_everything_accounted_for(live_server, sqlite_url, capsys):
    server = live_server(sqlite_url)
    assert main([server.base, server.token, "--annotators", "2", "--judgments", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("10 judgments by 2 annotators")
    assert "transport errors: 0\nunexpected responses: 0\nsent but never acknowledged: 0\n" in out
    assert out.rstrip().endswith(
        "database: 10 judgments; acknowledged but lost: 0; unacknowledged that landed: 0, "
        "that did not: 0; duplicated: 0; items over R: 0"
    )


def test_a_server_that_dies_mid_run_is_counted_and_exits_1(live_server, sqlite_url):
    server = live_server(sqlite_url)
    args = [server.base, server.token, "--annotators", str(ANNOTATORS), "--judgments", "100"]
    load = subprocess.Popen(
        [sys.executable, "-m", "prefloop.serve.loadtest", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while judgments_stored(sqlite_url) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()
    out, _ = load.communicate(timeout=120)
    assert load.returncode == 1, out
    # Each annotator's thread tries its failing request Retry().attempts times, each counted.
    errors = int(re.search(r"^transport errors: (\d+)", out, re.M).group(1))
    assert errors == ANNOTATORS * Retry().attempts, out
    kinds = re.search(r"^transport errors: \d+ \((.*)\)$", out, re.M).group(1)
    assert sum(int(n) for n in re.findall(r": (\d+)", kinds)) == errors
    assert "not checked against the database: the server could not be reached" in out


def test_after_a_crash_every_sent_judgment_is_accounted_for(live_server, sqlite_url):
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.base, timeout=60) as http:
        project = create_load_project(http, server.token, ANNOTATORS, 400, 2)
    result = LoadResult()
    retry = Retry(attempts=3, backoff_s=0.01)
    load = threading.Thread(target=run_load, args=(server.base, project, 100, result, retry))
    load.start()
    deadline = time.monotonic() + 120
    while len(result.acknowledged) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    load.join()
    assert result.transport_errors == ANNOTATORS * retry.attempts
    assert sum(result.transport_error_kinds.values()) == result.transport_errors
    assert result.unexpected == []
    server.start()
    with httpx.Client(base_url=server.base, timeout=60) as http:
        check = reconcile(http, project, result, redundancy=2)
    assert check.lost == [] and check.duplicated == 0 and check.over_redundancy == 0
    assert check.in_doubt_stored + check.in_doubt_missing == len(result.in_doubt) <= ANNOTATORS
    assert check.stored == len(result.acknowledged) + check.in_doubt_stored


def test_an_unreachable_server_is_a_message_and_exit_1(capsys):
    assert main([f"http://127.0.0.1:{free_port()}", "pfs_x"]) == 1
    assert capsys.readouterr().err.startswith("cannot set up the load project at http://127.0.0.1:")
