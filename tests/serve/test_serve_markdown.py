"""Markdown on the annotation page, in headless Chromium: the grammar of ``markdown.js`` as
trees, the rendered page (code, lists, tables, links, conversations, the raw view, side-by-side
scrolling, signing out), and Markdown-specific XSS vectors that must stay inert text."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from serve_helpers import make_setup


def t(text: str) -> dict:
    return {"type": "text", "text": text}


def p(*children: dict) -> dict:
    return {"type": "paragraph", "children": list(children)}


def span(kind: str, *children: dict) -> dict:
    return {"type": kind, "children": list(children)}


def code(text: str) -> dict:
    return {"type": "code", "text": text}


def link(href: str, *children: dict) -> dict:
    return {"type": "link", "href": href, "children": list(children)}


def bullets(*items: list, ordered: bool = False, start: int | None = None) -> dict:
    return {"type": "list", "ordered": ordered, "start": start, "items": list(items)}


UNSAFE_LINKS = (
    "[x](javascript:alert(1)) [y]( JaVaScRiPt:alert(1)) [z](data:text/html,hi) "
    "<javascript:alert(1)>"
)
GRAMMAR = [
    (
        "Hello *world*, **bold**, `x < y`",
        [
            p(
                t("Hello "),
                span("em", t("world")),
                t(", "),
                span("strong", t("bold")),
                t(", "),
                code("x < y"),
            )
        ],
    ),
    (
        "***both*** ~~gone~~ __under__",
        [
            p(
                span("strong", span("em", t("both"))),
                t(" "),
                span("del", t("gone")),
                t(" "),
                span("strong", t("under")),
            )
        ],
    ),
    ("a snake_case_name, 2 * 3 * 4, ** not", [p(t("a snake_case_name, 2 * 3 * 4, ** not"))]),
    ("\\*not em\\* and <b>tag</b>", [p(t("*not em* and <b>tag</b>"))]),
    ("line one\nline two", [p(t("line one"), {"type": "break"}, t("line two"))]),
    (
        "# Title\n\n### Sub ###\n\ntext",
        [
            {"type": "heading", "level": 1, "children": [t("Title")]},
            {"type": "heading", "level": 3, "children": [t("Sub")]},
            p(t("text")),
        ],
    ),
    (
        "```python\nif a < b:\n    print('<b>')\n```\nafter",
        [{"type": "code", "lang": "python", "text": "if a < b:\n    print('<b>')"}, p(t("after"))],
    ),
    (
        "~~~\nunclosed\n\nstill code",
        [{"type": "code", "lang": "", "text": "unclosed\n\nstill code"}],
    ),
    (
        "- a\n- b\n  1. c\n  2. d\n- e",
        [
            bullets(
                [p(t("a"))],
                [p(t("b")), bullets([p(t("c"))], [p(t("d"))], ordered=True, start=1)],
                [p(t("e"))],
            )
        ],
    ),
    (
        "3. x\n\n4. y\nlazy",
        [bullets([p(t("x"))], [p(t("y"), {"type": "break"}, t("lazy"))], ordered=True, start=3)],
    ),
    ("- a\n* b", [bullets([p(t("a"))]), bullets([p(t("b"))])]),
    (
        "| a | b |\n|:--|--:|\n| 1 | `x\\|y` |\n| only |",
        [
            {
                "type": "table",
                "align": ["left", "right"],
                "head": [[t("a")], [t("b")]],
                "rows": [[[t("1")], [code("x|y")]], [[t("only")], []]],
            }
        ],
    ),
    (  # every column parsed alike, however many
        "|" + " *x* |" * 17 + "\n|" + "---|" * 17,
        [
            {
                "type": "table",
                "align": [None] * 17,
                "head": [[span("em", t("x"))]] * 17,
                "rows": [],
            }
        ],
    ),
    ("a | b\n--- no table", [p(t("a | b"), {"type": "break"}, t("--- no table"))]),
    (
        "> quoted\n> **more**",
        [
            {
                "type": "quote",
                "children": [p(t("quoted"), {"type": "break"}, span("strong", t("more")))],
            }
        ],
    ),
    ("a\n\n---\n\nb", [p(t("a")), {"type": "rule"}, p(t("b"))]),
    (
        "[site](https://example.com/a_(b)) <https://x.org> see https://y.org/z.",
        [
            p(
                link("https://example.com/a_(b)", t("site")),
                t(" "),
                link("https://x.org", t("https://x.org")),
                t(" see "),
                link("https://y.org/z", t("https://y.org/z")),
                t("."),
            )
        ],
    ),
    ("![cat](https://c.org/cat.png)", [p(link("https://c.org/cat.png", t("image: cat")))]),
    (UNSAFE_LINKS, [p(t(UNSAFE_LINKS))]),
    (
        "[rel](/api/v1/me) [mail](mailto:a@b.org)",
        [p(t("[rel](/api/v1/me) "), link("mailto:a@b.org", t("mail")))],
    ),
]


def open_page(browser, server) -> WebDriverWait:
    browser.get(server.base + "/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: d.execute_script("return typeof PrefloopMarkdown === 'object'"))
    return wait


def test_markdown_grammar(browser, live_server, sqlite_url):
    server = live_server(sqlite_url)
    open_page(browser, server)
    trees = browser.execute_script(
        "return arguments[0].map((text) => PrefloopMarkdown.parse(text))",
        [src for src, _ in GRAMMAR],
    )
    for (source, expected), tree in zip(GRAMMAR, trees, strict=True):
        assert tree == expected, source


def sign_in(browser, wait, token: str) -> None:
    browser.find_element(By.ID, "token").send_keys(token, Keys.ENTER)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#projects button"))).click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#resp-1 .text > *"))


RICH = (
    "## Plan\n\n1. read the **input**\n2. call `parse()`\n\n"
    "```python\nx = '" + "a" * 400 + "'\n```\n\n"
    "| k | v |\n|---|--:|\n| n | 3 |\n\n"
    "See [docs](https://example.com/docs).\n\n" + "More text. " * 400
)


def test_markdown_page(browser, live_server, sqlite_url, artifacts):
    server = live_server(sqlite_url)
    prompt = [
        {"role": "system", "content": "Be *brief*."},
        {"role": "user", "content": "Explain `map`:\n- lists\n- dicts"},
    ]
    items = [{"prompt": prompt, "responses": [RICH, "short *plain* answer"]}]
    with httpx.Client(base_url=server.base) as http:
        s = make_setup(http, server.token, n_annotators=1, items=items)
    browser.set_window_size(1280, 900)
    wait = open_page(browser, server)
    sign_in(browser, wait, s.annotators[0]["token"])
    assert not browser.find_element(By.ID, "signin-form").is_displayed()
    assert browser.find_element(By.ID, "signout").is_displayed()

    turns = browser.find_elements(By.CSS_SELECTOR, "#prompt .turn")
    assert [tu.find_element(By.CLASS_NAME, "role").text.lower() for tu in turns] == [
        "system",
        "user",
    ]
    assert turns[0].find_element(By.TAG_NAME, "em").text == "brief"
    assert [li.text for li in turns[1].find_elements(By.TAG_NAME, "li")] == ["lists", "dicts"]

    rich = next(
        b
        for b in browser.find_elements(By.CSS_SELECTOR, ".response")
        if b.find_elements(By.TAG_NAME, "pre")
    )
    text = rich.find_element(By.CLASS_NAME, "text")
    assert text.find_element(By.TAG_NAME, "h2").text == "Plan"
    assert [li.text for li in text.find_elements(By.CSS_SELECTOR, "ol > li")] == [
        "read the input",
        "call parse()",
    ]
    assert text.find_element(By.CSS_SELECTOR, "li code").text == "parse()"
    pre = text.find_element(By.TAG_NAME, "pre")
    assert pre.get_attribute("data-lang") == "python"
    assert "monospace" in pre.find_element(By.TAG_NAME, "code").value_of_css_property("font-family")
    assert [c.text for c in text.find_elements(By.CSS_SELECTOR, "table td")] == ["n", "3"]
    assert "align-right" in text.find_elements(By.CSS_SELECTOR, "table td")[1].get_attribute(
        "class"
    )
    docs = text.find_element(By.CSS_SELECTOR, "a")
    assert (docs.text, docs.get_attribute("href")) == ("docs", "https://example.com/docs")
    assert {"noopener", "noreferrer"} <= set(docs.get_attribute("rel").split())

    # side by side: equal columns; the code line scrolls sideways, the long response downwards
    widths = [b.rect["width"] for b in browser.find_elements(By.CSS_SELECTOR, ".response")]
    assert len(widths) == 2 and abs(widths[0] - widths[1]) <= 1
    assert browser.execute_script("return arguments[0].scrollWidth > arguments[0].clientWidth", pre)
    assert browser.execute_script(
        "return arguments[0].scrollHeight > arguments[0].clientHeight", text
    )
    assert pre.rect["width"] <= text.rect["width"]
    # no inline styles: the page works under a Content-Security-Policy of style-src 'self'
    assert browser.execute_script("return document.querySelectorAll('[style]').length") == 0
    browser.save_screenshot(str(artifacts / "markdown.png"))

    browser.find_element(By.TAG_NAME, "body").send_keys("r")  # the raw view, by key
    wait.until(lambda d: "raw" in text.get_attribute("class"))
    assert text.get_property("textContent") == RICH
    assert not text.find_elements(By.XPATH, "./*")
    assert browser.find_element(By.ID, "raw-toggle").get_attribute("aria-pressed") == "true"
    browser.save_screenshot(str(artifacts / "markdown-raw.png"))
    browser.find_element(By.ID, "raw-toggle").click()  # and back, by button
    wait.until(lambda d: text.find_elements(By.TAG_NAME, "pre"))

    browser.find_element(By.ID, "signout").click()
    assert browser.find_element(By.ID, "token").is_displayed()
    assert not browser.find_element(By.ID, "task-view").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('prefloop-token')") is None
    browser.refresh()
    assert browser.find_element(By.ID, "token").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#projects button") == []


VECTORS = [
    "- first\n"
    "- <img src=x onerror=\"window.__pwned='img-in-list'\">\n"
    "- [x](javascript:window.__pwned='link')",
    "```html\n"
    "<img src=x onerror=\"window.__pwned='img-in-code'\">"
    "<script>window.__pwned='script'</script>\n"
    "```",
    "| <svg onload=\"window.__pwned='svg'\"> | b |\n|---|---|\n"
    "| [c](JAVASCRIPT:alert(1)) | ![i](javascript:alert(1)) |\n\n"
    '<a href="javascript:alert(1)">a</a> `<iframe src=javascript:alert(1)>`',
]


@pytest.mark.parametrize("raw", [False, True], ids=["formatted", "raw"])
def test_markdown_xss_vectors_stay_text(browser, live_server, sqlite_url, raw):
    server = live_server(sqlite_url)
    prompt = [{"role": "<b onmouseover=alert(1)>user</b>", "content": VECTORS[0]}]
    items = [{"prompt": prompt, "responses": VECTORS[1:]}]
    with httpx.Client(base_url=server.base) as http:
        s = make_setup(http, server.token, n_annotators=1, items=items)
    wait = open_page(browser, server)
    sign_in(browser, wait, s.annotators[0]["token"])
    if raw:
        browser.find_element(By.ID, "raw-toggle").click()
    view = browser.find_element(By.ID, "task-view")
    for tag in ("img", "script", "svg", "iframe", "b"):
        assert view.find_elements(By.TAG_NAME, tag) == [], tag
    assert view.find_elements(By.TAG_NAME, "a") == []  # no vector is a safe link
    handlers = browser.execute_script(
        "return [...document.querySelectorAll('#task-view *')]"
        ".flatMap((e) => e.getAttributeNames()).filter((n) => n.startsWith('on'))"
    )
    assert handlers == []
    shown = view.get_property("textContent")
    assert "<img src=x onerror=" in shown and "[x](javascript:" in shown and "<svg onload=" in shown
    assert "<b onmouseover=alert(1)>user</b>" in shown
    assert browser.execute_script("return window.__pwned") is None
    assert not ec.alert_is_present()(browser)


def nested_quotes(depth: int, innermost: dict) -> list[dict]:
    tree = [innermost]
    for _ in range(depth):
        tree = [{"type": "quote", "children": tree}]
    return tree


LIMIT = 100_000  # the longest text the server accepts
PATHOLOGICAL = [
    ("[" * LIMIT, [p(t("[" * LIMIT))]),
    ("[a](" * (LIMIT // 4), [p(t("[a](" * (LIMIT // 4)))]),
    (("*a " * (LIMIT // 3)).strip(), [p(t(("*a " * (LIMIT // 3)).strip()))]),
    (("_a " * (LIMIT // 3)).strip(), [p(t(("_a " * (LIMIT // 3)).strip()))]),
    ("*" * LIMIT + "a", [p(t("*" * LIMIT + "a"))]),
    (
        "# a" + " " * LIMIT + "b #",
        [{"type": "heading", "level": 1, "children": [t("a" + " " * LIMIT + "b")]}],
    ),
    (
        "| a |\n|---" + " " * LIMIT + "x",
        [p(t("| a |"), {"type": "break"}, t("|---" + " " * LIMIT + "x"))],
    ),
    ("`` " + "a" * LIMIT + "``", [p(code(" " + "a" * LIMIT))]),
    ("```" + "a" * LIMIT + "`", [p(t("```" + "a" * LIMIT + "`"))]),
    (">" * 3000 + " deep", nested_quotes(16, p(t(">" * (3000 - 16) + " deep")))),
    ("*a " * 40 + "b" + "*" * 40, None),  # 40 nested openers: deeper than 16 levels stays text
]


def test_markdown_of_huge_or_deep_input_stays_text(browser, live_server, sqlite_url):
    """Unmatched delimiters are scanned once, and nesting stops at 16 levels: no quadratic
    scans, no stack overflow, and the text survives."""
    server = live_server(sqlite_url)
    open_page(browser, server)
    results = browser.execute_script(
        "return arguments[0].map((text) => {"
        "  const tree = PrefloopMarkdown.parse(text);"
        "  const box = document.createElement('div');"
        "  box.append(PrefloopMarkdown.render(tree));"
        "  return [tree, box.textContent];"
        "})",
        [src for src, _ in PATHOLOGICAL],
    )
    for (source, expected), (tree, _text) in zip(PATHOLOGICAL, results, strict=True):
        if expected is not None:
            assert tree == expected, source[:40]
    deep_tree, deep_text = results[-1]
    depth, node = 0, deep_tree[0]["children"][-1]
    while node.get("type") in ("em", "strong"):
        depth, node = depth + 1, node["children"][-1]
    assert depth == 16
    assert deep_text == "a " * 16 + "*a " * 24 + "b" + "*" * 24
