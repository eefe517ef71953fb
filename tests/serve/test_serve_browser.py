"""Real browser: headless Chromium judges items by keyboard and by clicks; the export has them."""

from __future__ import annotations

import json

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from serve_helpers import make_setup


def test_judging_in_the_browser(browser, live_server, sqlite_url):
    server = live_server(sqlite_url)
    long_text = "word " * 3000
    items = [
        {"prompt": f"q{i}", "responses": [f"good {i} {long_text}", f"bad {i}"]} for i in range(6)
    ]
    with httpx.Client(base_url=server.base) as http:
        s = make_setup(http, server.token, n_annotators=1, items=items)
        wait = WebDriverWait(browser, 20)
        browser.get(server.base + "/")
        external = [
            e.get_attribute("src") or e.get_attribute("href")
            for e in browser.find_elements(By.CSS_SELECTOR, "script[src], link[href]")
        ]
        assert external and all(u.startswith(server.base) for u in external)
        browser.find_element(By.ID, "token").send_keys(s.annotators[0]["token"], Keys.ENTER)
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#projects button"))).click()

        def shown() -> tuple[str, str]:
            wait.until(lambda d: d.find_element(By.ID, "prompt").text.startswith("q"))
            left = browser.find_element(By.CSS_SELECTOR, "#resp-0 .text").text
            return browser.find_element(By.ID, "prompt").text, left

        body = browser.find_element(By.TAG_NAME, "body")
        for n in range(6):
            prompt, left = shown()
            good_left = left.startswith("good")
            if n < 3:  # keyboard: arrow keys
                body.send_keys(Keys.ARROW_LEFT if good_left else Keys.ARROW_RIGHT)
            elif n < 5:  # mouse
                browser.find_element(By.ID, "btn-left" if good_left else "btn-right").click()
            else:
                body.send_keys("t")  # a tie by keyboard
            wait.until(
                lambda d, p=prompt: (
                    d.find_element(By.ID, "prompt").text != p
                    or "All done" in d.find_element(By.ID, "status").text
                )
            )
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "All done"))
        assert "6 done" in browser.find_element(By.ID, "progress").text

        export = http.get(s.url("/export"), headers=s.admin())
        rows = [json.loads(line) for line in export.text.splitlines()]
    assert len(rows) == 6
    decided = [r for r in rows if r["strength"] == 1.0]
    assert len(decided) == 5 and all(r["chosen"].startswith("good") for r in decided)
    assert [r["raw_label"]["choice"] for r in rows].count("tie") == 1


def test_ranking_rating_and_critique_pages(browser, live_server, sqlite_url):
    server = live_server(sqlite_url)
    items = [{"prompt": "q", "responses": ["best", "middle", "worst"]}]
    with httpx.Client(base_url=server.base) as http:
        ranking = make_setup(http, server.token, n_annotators=1, items=items, task="ranking")
        rating = make_setup(
            http, server.token, n_annotators=0, items=items, task="rating", aspects=["help"]
        )
        critique = make_setup(http, server.token, n_annotators=0, items=items, task="critique")
        member = {"annotator_id": ranking.annotators[0]["id"]}
        for s in (rating, critique):
            http.post(s.url("/members"), json=member, headers=s.admin()).raise_for_status()
        wait = WebDriverWait(browser, 20)
        browser.get(server.base + "/")
        browser.find_element(By.ID, "token").send_keys(ranking.annotators[0]["token"], Keys.ENTER)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#projects button")) == 3)

        def open_project(project_id: int) -> list[str]:
            browser.get(server.base + "/")  # the token is remembered for the session
            button = (By.CSS_SELECTOR, f'#projects button[data-project="{project_id}"]')
            wait.until(ec.element_to_be_clickable(button)).click()
            wait.until(lambda d: d.find_element(By.ID, "prompt").text == "q")
            return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#responses .text")]

        def finished() -> None:
            wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "All done"))

        texts = open_project(ranking.project["id"])
        body = browser.find_element(By.TAG_NAME, "body")
        for word in ("best", "middle", "worst"):  # number keys, best first, then Enter
            body.send_keys(str(texts.index(word) + 1))
        body.send_keys(Keys.ENTER)
        finished()

        texts = open_project(rating.project["id"])
        for position, word in enumerate(texts):
            select = browser.find_element(By.CSS_SELECTOR, f'select[data-position="{position}"]')
            select.find_element(
                By.CSS_SELECTOR, f'option[value="{5 if word == "best" else 2}"]'
            ).click()
        browser.find_element(By.ID, "btn-submit").click()
        finished()

        texts = open_project(critique.project["id"])
        target = browser.find_element(By.ID, "critique-target")
        target.find_element(By.CSS_SELECTOR, f'option[value="{texts.index("worst")}"]').click()
        browser.find_element(By.ID, "critique-revision").send_keys("better")
        browser.find_element(By.ID, "btn-submit").click()  # a revision alone is refused
        error = browser.find_element(By.ID, "critique-error")
        wait.until(ec.visibility_of(error))
        assert error.text == "Write the critique too: a corrected response alone is not enough."
        text_field = browser.find_element(By.ID, "critique-text")
        assert text_field.get_attribute("aria-invalid") == "true"
        assert browser.execute_script("return arguments[0].previousElementSibling", error) == (
            text_field
        )
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Draft saved."))
        texts = open_project(critique.project["id"])  # still the same item, the draft kept
        assert browser.find_element(By.ID, "critique-revision").get_attribute("value") == "better"
        assert not browser.find_element(By.ID, "critique-error").is_displayed()
        browser.find_element(By.ID, "critique-text").send_keys("too vague")
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Draft saved."))
        texts = open_project(critique.project["id"])  # reload: the draft comes back
        assert browser.find_element(By.ID, "critique-text").get_attribute("value") == "too vague"
        assert browser.find_element(By.ID, "critique-revision").get_attribute("value") == "better"
        browser.find_element(By.ID, "btn-submit").click()
        finished()

        def exported(s) -> dict:
            (row,) = [
                json.loads(x)
                for x in http.get(s.url("/export"), headers=s.admin()).text.splitlines()
            ]
            return row

        assert exported(ranking)["scores"] == [3.0, 2.0, 1.0]
        assert exported(rating)["aspect_scores"] == {"help": [5.0, 2.0, 2.0]}
        row = exported(critique)
        assert (row["response"], row["text"], row["revision"]) == ("worst", "too vague", "better")
