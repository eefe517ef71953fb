"""The dashboard: its endpoint's numbers against a hand computation on a fixed set of judgments,
and its page in headless Chromium against the endpoint (screenshots in the test artifacts)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from dashboard_data import ALPHA, DISPUTED, KAPPA, judge_fixed_set
from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait
from serve_helpers import bearer, free_port, make_setup, pair_items
from sqlalchemy import update

from prefloop.serve.app import create_app
from prefloop.serve.cli import init_admin, open_db
from prefloop.serve.db import Assignment, utcnow
from prefloop.serve.deliveries import recorder
from prefloop.serve.webhooks import Delivery


class Accept(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def webhook_receiver():
    """A local endpoint that accepts every delivery."""
    port = free_port()
    receiver = HTTPServer(("127.0.0.1", port), Accept)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/hook"
    receiver.shutdown()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, sqlite_url):
    """An in-process app on either database: (client, server token, engine). It allows private
    webhook targets: the tests' receiver is on this machine."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = open_db(url)
    token = init_admin(engine)
    with TestClient(create_app(engine, allow_private_webhooks=True)) as client:
        yield client, token, engine
    engine.dispose()


def wait_for_deliveries(client, s, n: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        board = client.get(s.url("/dashboard"), headers=s.admin()).json()
        if board["webhook"]["delivered"] + board["webhook"]["failed"] >= n:
            return board
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {n} webhook deliveries recorded")


def test_dashboard_numbers_match_a_hand_computation(backend, webhook_receiver):
    client, server_token, _engine = backend
    s, item_ids, sides = judge_fixed_set(client, server_token, webhook_url=webhook_receiver)
    board = wait_for_deliveries(client, s, 14)  # 13 human judgments and one AI judgment

    assert board["project"] == {
        "id": s.project["id"],
        "name": "p",
        "task": "pairwise",
        "redundancy": 3,
    }
    assert board["progress"] == {
        "items": 5,
        "items_complete": 4,
        "judgments": 13,
        "target": 15,
        "to_go": 2,
        "ai_judgments": 1,
    }
    counts = {
        a["annotator_id"]: (a["judgments"], a["skipped"], a["expired"], a["open"])
        for a in board["annotators"]
    }
    ids = [a["id"] for a in s.annotators]
    assert counts == {ids[0]: (5, 0, 0, 0), ids[1]: (4, 1, 0, 0), ids[2]: (4, 1, 0, 0)}
    assert board["annotators"][0]["annotator_id"] == ids[0]  # most judgments first

    agreement = board["agreement"]
    assert agreement == client.get(s.url("/agreement"), headers=s.admin()).json()
    assert agreement["krippendorff_alpha"] == pytest.approx(ALPHA)
    assert agreement["fleiss_kappa"] == pytest.approx(KAPPA)
    assert agreement["units"] == 4

    labels = {b["label"]: b["value"] for b in board["labels"]}
    assert labels == {"first response": 7, "second response": 5, "tie": 1, "both bad": 0}
    bias = board["position_bias"]
    assert bias["measure"] == "picked" and bias["expected_share"] == 0.5
    assert {b["label"]: b["value"] for b in bias["bars"]} == {
        "left": sides["left"],
        "right": sides["right"],
    }
    assert sides["left"] + sides["right"] == 12  # every decided human answer, the tie left out

    disputed = [(d["item_id"], d["disagreement"]) for d in board["most_disputed"]]
    assert disputed == [(item_ids[p], pytest.approx(v)) for p, v in DISPUTED]
    p3 = board["most_disputed"][0]
    assert (p3["external_id"], p3["prompt"], p3["judgments"]) == ("ext-p3", "p3", 3)
    assert {b["label"]: b["value"] for b in p3["answers"]} == {
        "first response": 1,
        "second response": 1,
        "tie": 1,
    }

    human = [
        j
        for j in client.get(s.url("/judgments"), headers=s.admin()).json()
        if j["judge_kind"] == "human"
    ]
    hours = Counter(
        datetime.fromisoformat(j["created_at"]).replace(minute=0, second=0, microsecond=0)
        for j in human
    )
    shown = {datetime.fromisoformat(h["hour"]): h["judgments"] for h in board["per_hour"]}
    assert {h: n for h, n in shown.items() if n} == hours
    assert sum(shown.values()) == 13

    hook = board["webhook"]
    assert (hook["url"], hook["delivered"], hook["failed"]) == (webhook_receiver, 14, 0)
    assert len(hook["recent"]) == 10 and all(d["ok"] and d["status"] == 204 for d in hook["recent"])


def test_dashboard_reports_failed_webhook_deliveries(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=0)
    recorder(engine, s.project["id"], 7)(Delivery("msg_x", False, 3, None, "connection refused"))
    recorder(engine, s.project["id"], 8)(Delivery("msg_y", True, 2, 200))
    hook = client.get(s.url("/dashboard"), headers=s.admin()).json()["webhook"]
    assert (hook["delivered"], hook["failed"]) == (1, 1)
    latest, first = hook["recent"]
    assert (latest["target"], latest["ok"], latest["attempts"], latest["status"]) == (
        "judgment:8",
        True,
        2,
        200,
    )
    assert (first["message_id"], first["ok"], first["error"]) == (
        "msg_x",
        False,
        "connection refused",
    )


def test_dashboard_counts_open_and_expired_leases(backend):
    client, server_token, engine = backend
    s = make_setup(client, server_token, n_annotators=1, items=pair_items(2))
    client.post(s.url("/next"), headers=s.ann()).raise_for_status()

    def leases() -> tuple[int, int]:
        (row,) = dashboard_of(client, s)["annotators"]
        return row["open"], row["expired"]

    assert leases() == (1, 0)
    with engine.begin() as conn:  # the lease runs out; nobody has reclaimed it yet
        conn.execute(update(Assignment).values(expires_at=utcnow() - timedelta(minutes=1)))
    assert leases() == (0, 1)


def test_dashboard_is_for_the_project_admin_only(client, server_token):
    s = make_setup(client, server_token, n_annotators=1)
    other = make_setup(client, server_token, n_annotators=0)
    assert client.get(s.url("/dashboard"), headers=bearer(server_token)).status_code == 200
    assert client.get(s.url("/dashboard"), headers=other.admin()).status_code == 403
    assert client.get(s.url("/dashboard"), headers=s.ann()).status_code == 403
    assert client.get(s.url("/dashboard")).status_code == 401
    assert (
        client.get("/api/v1/projects/999/dashboard", headers=bearer(server_token)).status_code
        == 404
    )
    empty = client.get(s.url("/dashboard"), headers=s.admin()).json()
    assert empty["progress"]["judgments"] == 0 and empty["per_hour"] == []
    assert empty["agreement"]["krippendorff_alpha"] is None and empty["most_disputed"] == []


def cell_texts(row) -> list[str]:
    return [td.text for td in row.find_elements(By.TAG_NAME, "td")]


def bars(browser, chart: str) -> list[tuple[str, float]]:
    rects = browser.find_elements(By.CSS_SELECTOR, f"#{chart} rect")
    return [(r.get_attribute("data-label"), float(r.get_attribute("data-value"))) for r in rects]


def test_dashboard_page_shows_the_api_numbers(
    browser, live_server, sqlite_url, webhook_receiver, artifacts, tmp_path
):
    server = live_server(sqlite_url, allow_private_webhooks=True)  # the receiver is local
    with httpx.Client(base_url=server.base) as http:
        s, _item_ids, _sides = judge_fixed_set(http, server.token, webhook_url=webhook_receiver)
        api = wait_for_deliveries(http, s, 14)
        downloads = tmp_path / "downloads"
        browser.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        browser.set_window_size(1280, 2200)
        browser.get(server.base + "/dashboard")
        assets = [
            e.get_attribute("src") or e.get_attribute("href")
            for e in browser.find_elements(By.CSS_SELECTOR, "script[src], link[href]")
        ]
        assert assets and all(u.startswith(server.base + "/static/") for u in assets)
        wait = WebDriverWait(browser, 20)
        browser.find_element(By.ID, "token").send_keys(s.project["admin_token"], Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "board").is_displayed())
        assert not browser.find_element(By.ID, "signin-form").is_displayed()

        p = api["progress"]
        assert browser.find_element(By.ID, "progress-text").text == (
            f"{p['judgments']} of {p['target']} judgments done · {p['to_go']} to go"
        )
        assert (p["judgments"], p["target"], p["to_go"]) == (13, 15, 2)
        shown = [
            cell_texts(browser.find_element(By.CSS_SELECTOR, f'tr[data-annotator="{a["id"]}"]'))
            for a in s.annotators
        ]
        expected = {a["annotator_id"]: a for a in api["annotators"]}
        assert shown == [
            [
                a["name"],
                *(str(expected[a["id"]][key]) for key in ("judgments", "skipped")),
                "0",
                "0",
            ]
            for a in s.annotators
        ]
        assert [row[1] for row in shown] == ["5", "4", "4"]

        for stat, hand in (("krippendorff_alpha", ALPHA), ("fleiss_kappa", KAPPA)):
            value = browser.find_element(By.CSS_SELECTOR, f'tr[data-stat="{stat}"] td').text
            assert value == f"{api['agreement'][stat]:.3f}" == f"{hand:.3f}"

        rows = browser.find_elements(By.CSS_SELECTOR, "#disputed tbody tr")
        assert [int(r.get_attribute("data-item")) for r in rows] == [
            d["item_id"] for d in api["most_disputed"]
        ]
        assert [cell_texts(r) for r in rows] == [
            ["ext-p3", "p3", "3", "1.000", "first response 1 · second response 1 · tie 1"],
            ["ext-p2", "p2", "3", "0.667", "first response 2 · second response 1"],
        ]

        assert bars(browser, "labels") == [(b["label"], b["value"]) for b in api["labels"]]
        bias = api["position_bias"]["bars"]
        assert bars(browser, "position-bias") == [(b["label"], b["value"]) for b in bias]
        assert bars(browser, "per-hour") == [(h["hour"], h["judgments"]) for h in api["per_hour"]]
        assert browser.find_elements(By.CSS_SELECTOR, "#position-bias line.expected")
        summary = browser.find_element(By.ID, "webhook-summary").text
        assert summary == f"{webhook_receiver}: 14 delivered, 0 failed"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#webhook-recent tbody tr")) == 10
        assert browser.execute_script("return document.querySelectorAll('[style]').length") == 0
        browser.save_screenshot(str(artifacts / "dashboard.png"))

        Select(browser.find_element(By.ID, "export-form")).select_by_value("trl-explicit")
        browser.find_element(By.ID, "export").click()
        name = f"project-{s.project['id']}-trl-explicit.jsonl"
        wait.until(lambda d: (downloads / name).is_file())
        export = http.get(s.url("/export"), params={"form": "trl-explicit"}, headers=s.admin())
        rows = [json.loads(line) for line in (downloads / name).read_text().splitlines()]
        assert (
            rows == [json.loads(line) for line in export.text.splitlines()] and len(rows) == 13
        )  # 12 decided human answers, 1 AI
        status = browser.find_element(By.ID, "export-status").text
        assert status == f"13 rows saved as {name}."

        browser.find_element(By.ID, "signout").click()
        assert browser.find_element(By.ID, "token").is_displayed()
        assert not browser.find_element(By.ID, "board").is_displayed()


def test_dashboard_page_refuses_an_annotator_token(browser, live_server, sqlite_url):
    server = live_server(sqlite_url)
    with httpx.Client(base_url=server.base) as http:
        s = make_setup(http, server.token, n_annotators=1)
    browser.get(server.base + "/dashboard")
    browser.find_element(By.ID, "token").send_keys(s.annotators[0]["token"], Keys.ENTER)
    WebDriverWait(browser, 20).until(
        ec.text_to_be_present_in_element((By.ID, "status"), "needs a project admin token")
    )
    assert browser.find_element(By.ID, "token").is_displayed()
    assert not browser.find_element(By.ID, "board").is_displayed()


def judge_one_item(client, s, answers: list) -> list[list[int]]:
    """Each annotator k answers the item (responses "x0", "x1", ...) with ``answers[k]``: a
    function of where the stored responses are shown to a label. Returns the display orders."""
    orders = []
    for k, answer in enumerate(answers):
        view = client.post(s.url("/next"), headers=s.ann(k)).json()
        order = [int(r["text"][1:]) for r in view["responses"]]  # position -> stored index
        orders.append(order)
        label = answer({stored: position for position, stored in enumerate(order)})
        path = f"/api/v1/assignments/{view['assignment_id']}/submit"
        client.post(path, json=label, headers=s.ann(k)).raise_for_status()
    return orders


def dashboard_of(client, s) -> dict:
    return client.get(s.url("/dashboard"), headers=s.admin()).json()


def values(bars: list[dict]) -> dict:
    return {b["label"]: b["value"] for b in bars}


def test_dashboard_of_ranking_rating_and_critique_projects(client, server_token):
    three = [{"prompt": "q", "responses": ["x0", "x1", "x2"]}]
    ranking = make_setup(client, server_token, items=three, task="ranking", redundancy=2)
    orders = judge_one_item(
        client,
        ranking,
        [
            lambda at: {"ranking": [at[0], at[1], at[2]]},
            lambda at: {"ranking": [at[1], at[0], at[2]]},
        ],
    )
    board = dashboard_of(client, ranking)
    assert values(board["labels"]) == {
        "response 1 best": 1,
        "response 2 best": 1,
        "response 3 best": 0,
    }
    best_shown = Counter([orders[0].index(0), orders[1].index(1)])
    assert values(board["position_bias"]["bars"]) == {
        f"position {p + 1}": best_shown[p] for p in range(3)
    }
    assert board["position_bias"]["expected_share"] == pytest.approx(1 / 3)
    # pairs (0,1) disagree, (0,2) and (1,2) agree: 1/3
    (item,) = board["most_disputed"]
    assert item["disagreement"] == pytest.approx(1 / 3)

    two = [{"prompt": "q", "responses": ["x0", "x1"]}]
    rating = make_setup(
        client, server_token, items=two, task="rating", aspects=["help"], redundancy=2
    )
    scores = [{0: 5, 1: 1}, {0: 3, 1: 1}]  # per annotator: stored index -> score
    orders = judge_one_item(
        client,
        rating,
        [
            lambda at, sc=sc: {
                "ratings": {"help": [sc[stored] for stored in sorted(at, key=at.get)]}
            }
            for sc in scores
        ],
    )
    board = dashboard_of(client, rating)
    assert values(board["labels"]) == {"1": 2, "2": 0, "3": 1, "4": 0, "5": 1}
    shown = [[scores[k][stored] for stored in orders[k]] for k in range(2)]
    assert values(board["position_bias"]["bars"]) == {
        f"position {p + 1}": (shown[0][p] + shown[1][p]) / 2 for p in range(2)
    }
    # interval units: response 0 scored 5 and 3 -> (5 - 3)^2 = 4; response 1 agrees -> 0
    (item,) = board["most_disputed"]
    assert item["disagreement"] == pytest.approx(2.0)
    assert board["agreement"] == client.get(rating.url("/agreement"), headers=rating.admin()).json()

    critique = make_setup(client, server_token, items=two, task="critique", redundancy=2)
    judge_one_item(
        client,
        critique,
        [lambda at, t=t: {"target": at[t], "critique": "vague"} for t in (1, 0)],
    )
    board = dashboard_of(client, critique)
    assert values(board["labels"]) == {"response 1": 1, "response 2": 1}
    assert sum(b["value"] for b in board["position_bias"]["bars"]) == 2
    assert board["most_disputed"] == [] and "detail" in board["agreement"]


def test_dashboard_page_of_a_rating_project(browser, live_server, sqlite_url, artifacts):
    server = live_server(sqlite_url)
    items = [{"prompt": "q", "responses": ["x0", "x1"]}]
    with httpx.Client(base_url=server.base) as http:
        s = make_setup(
            http, server.token, items=items, task="rating", aspects=["help", "style"], redundancy=2
        )
        judge_one_item(
            http,
            s,
            [lambda at, k=k: {"ratings": {"help": [4 + k, 2], "style": [3, 3]}} for k in range(2)],
        )
        api = dashboard_of(http, s)
    browser.get(server.base + "/dashboard")  # a server admin picks the project from a list
    browser.find_element(By.ID, "token").send_keys(server.token, Keys.ENTER)
    wait = WebDriverWait(browser, 20)
    button = (By.CSS_SELECTOR, f'#projects button[data-project="{s.project["id"]}"]')
    wait.until(ec.element_to_be_clickable(button)).click()
    wait.until(lambda d: d.find_element(By.ID, "board").is_displayed())
    for aspect, stats in api["agreement"]["aspects"].items():
        row = browser.find_element(
            By.CSS_SELECTOR, f'tr[data-stat="fleiss_kappa"][data-aspect="{aspect}"]'
        )
        expected = "n/a" if stats["fleiss_kappa"] is None else f"{stats['fleiss_kappa']:.3f}"
        assert row.text == f"Fleiss' κ ({aspect}) {expected}"
    assert bars(browser, "position-bias") == [
        (b["label"], b["value"]) for b in api["position_bias"]["bars"]
    ]
    assert (
        browser.find_element(By.ID, "bias-note").text
        == "The mean score at each displayed position."
    )
    browser.save_screenshot(str(artifacts / "dashboard-rating.png"))
