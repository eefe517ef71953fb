"""Fixtures for the feedback service: in-process apps, live servers, PostgreSQL, Chromium.

PostgreSQL comes from ``PREFLOOP_TEST_POSTGRES_URL`` (``.ci/services.sh`` writes it) and Chromium
from Debian's ``/usr/bin/chromium`` + ``/usr/bin/chromedriver``. When ``CI=true`` a missing
service fails the test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis.configuration import set_hypothesis_home_dir
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from serve_helpers import CHROMIUM_FLAGS, LiveServer, missing
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from prefloop.serve.app import create_app
from prefloop.serve.cli import init_admin, open_db
from prefloop.serve.db import normalize_url

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(autouse=True, scope="session")
def _hypothesis_home(tmp_path_factory) -> None:
    """Keep Hypothesis's caches out of the working tree."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'feedback.db'}"


@pytest.fixture
def engine(sqlite_url: str):
    engine = open_db(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def server_token(engine) -> str:
    return init_admin(engine)


@pytest.fixture
def client(engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine)) as c:
        yield c


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    base = os.environ.get("PREFLOOP_TEST_POSTGRES_URL")
    if not base:
        missing("PREFLOOP_TEST_POSTGRES_URL is not set (run .ci/services.sh)")
    name = f"prefloop_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as err:  # noqa: BLE001 - any connection failure means "no PostgreSQL"
        missing(f"PostgreSQL at PREFLOOP_TEST_POSTGRES_URL unusable: {err}")
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def live_server(tmp_path: Path):
    """Factory: ``live_server(db_url, init=True, **options)``, options as :class:`LiveServer`
    takes them (``workers``, ``allow_private_webhooks``); every server is stopped at the end."""
    servers: list[LiveServer] = []

    def start(db_url: str, init: bool = True, **options: Any) -> LiveServer:
        server = LiveServer(db_url, tmp_path / "server.log", **options).start(init)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def chromium_paths() -> tuple[str, str]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            missing(f"{path} not installed (run .ci/services.sh)")
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture
def browser(chromium_paths, tmp_path):
    """Headless Chromium driven by selenium, with a fresh profile."""
    chromium, chromedriver = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def artifacts(request, tmp_path) -> Path:
    """Where a test saves screenshots: ``$PREFLOOP_TEST_ARTIFACTS/<test>`` or its tmp dir."""
    root = os.environ.get("PREFLOOP_TEST_ARTIFACTS")
    folder = Path(root) / request.node.name if root else tmp_path / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
