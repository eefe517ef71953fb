"""Failed-authentication throttling, security headers, no-store on token-bearing responses."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from serve_helpers import CHROMIUM_FLAGS, bearer, make_setup

from prefloop.serve.app import create_app
from prefloop.serve.middleware import CONTENT_SECURITY_POLICY
from prefloop.serve.throttle import FAILURES_PER_WINDOW, FailedAuthThrottle

API = "/api/v1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttled(engine, clock):
    """An app allowing 3 failures a minute per address, on a clock the test moves."""
    return create_app(engine, auth_throttle=FailedAuthThrottle(3, 60.0, clock))


def test_300_wrong_tokens_get_20_answers_then_429(engine, server_token):
    app = create_app(engine, auth_throttle=FailedAuthThrottle(clock=lambda: 0.0))
    with TestClient(app) as client:
        codes = [
            client.get(f"{API}/me", headers=bearer(f"pfu_{n}")).status_code for n in range(300)
        ]
        assert codes == [401] * FAILURES_PER_WINDOW + [429] * (300 - FAILURES_PER_WINDOW)
        r = client.get(f"{API}/me", headers=bearer(server_token))  # locked out, even so
        assert (r.status_code, r.headers["retry-after"]) == (429, "60")


def test_failures_lock_out_one_address_until_they_leave_the_window(throttled, clock, server_token):
    with TestClient(throttled) as client, TestClient(throttled, client=("10.9.8.7", 4000)) as other:
        for _ in range(10):  # a missing token is not a failed authentication
            assert client.get(f"{API}/me").status_code == 401
        for step in range(3):
            clock.now = 1000.0 + 10 * step
            assert client.get(f"{API}/me", headers=bearer("pfs_wrong")).status_code == 401
        clock.now = 1030.0
        r = client.get(f"{API}/me", headers=bearer(server_token))
        assert (r.status_code, r.headers["retry-after"]) == (429, "30")
        assert r.json()["detail"] == (
            "too many failed authentications from this address; retry in 30 s"
        )
        assert other.get(f"{API}/me", headers=bearer(server_token)).status_code == 200
        clock.now = 1059.5
        assert client.get(f"{API}/me", headers=bearer(server_token)).status_code == 429
        clock.now = 1060.0  # the first failure has left the window: two remain
        assert client.get(f"{API}/me", headers=bearer(server_token)).status_code == 200
        assert client.get(f"{API}/me", headers=bearer("pfs_wrong")).status_code == 401
        r = client.get(f"{API}/me", headers=bearer(server_token))
        assert (r.status_code, r.headers["retry-after"]) == (429, "10")


HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def test_every_response_has_the_security_headers(client, server_token):
    s = make_setup(
        client, server_token, n_annotators=1, items=[{"prompt": "q", "responses": ["a", "b"]}]
    )
    responses = {
        "page": client.get("/"),
        "script": client.get("/static/app.js"),
        "health": client.get("/healthz"),
        "unknown": client.get("/nothing-here"),
        "401": client.get(f"{API}/me"),
        "422": client.post(s.url("/items"), json={}, headers=s.admin()),
        "413": client.post(
            s.url("/items"), content=b" " * (16 * 1024 * 1024 + 1), headers=s.admin()
        ),
        "export": client.get(s.url("/export"), headers=s.admin()),
        "openapi": client.get("/openapi.json"),
    }
    assert {name: r.status_code for name, r in responses.items()} == {
        "page": 200, "script": 200, "health": 200, "unknown": 404, "401": 401, "422": 422,
        "413": 413, "export": 200, "openapi": 200,
    }  # fmt: skip
    for name, r in responses.items():
        assert {k: r.headers.get(k) for k in HEADERS} == HEADERS, name
    assert "cache-control" not in responses["script"].headers


def test_responses_carrying_tokens_are_not_stored(client, server_token):
    auth = bearer(server_token)
    project = client.post(f"{API}/projects", json={"name": "p", "task": "pairwise"}, headers=auth)
    annotator = client.post(f"{API}/annotators", json={"name": "ana"}, headers=auth)
    rotated = client.post(f"{API}/annotators/{annotator.json()['id']}/token", headers=auth)
    for r in (project, annotator, rotated):
        assert r.status_code in (200, 201) and r.headers["cache-control"] == "no-store"
    assert {"admin_token", "webhook_secret"} <= set(project.json())
    assert client.get(f"{API}/me", headers=auth).headers["cache-control"] == "no-store"


def test_the_annotation_page_works_under_its_csp(live_server, sqlite_url, chromium_paths, tmp_path):
    """Chromium enforces the policy (an injected inline script is refused) and the page itself
    breaks none of it while an annotator signs in and judges."""
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.base) as http:
        items = [{"prompt": f"q{i}", "responses": ["a", "b"]} for i in range(2)]
        s = make_setup(http, server.token, n_annotators=1, items=items)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_paths[0]
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(chromium_paths[1]), options=options)
    try:
        wait = WebDriverWait(browser, 20)
        browser.get(server.base + "/")
        browser.find_element(By.ID, "token").send_keys(s.annotators[0]["token"], Keys.ENTER)
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#projects button"))).click()
        wait.until(lambda d: d.find_element(By.ID, "prompt").text.startswith("q"))
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
        wait.until(ec.text_to_be_present_in_element((By.ID, "progress"), "1 done"))
        page_log = [e["message"] for e in browser.get_log("browser")]
        browser.execute_script(
            "const s = document.createElement('script');"
            "s.textContent = 'window.injected = true'; document.body.appendChild(s);"
        )
        assert browser.execute_script("return window.injected === undefined")
        injected_log = [e["message"] for e in browser.get_log("browser")]
    finally:
        browser.quit()
    assert [m for m in page_log if "Content Security Policy" in m] == []
    assert any("Content Security Policy" in m for m in injected_log)
