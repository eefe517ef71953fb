"""Agreement statistics against published worked examples, and per project through the API."""

from __future__ import annotations

import pytest
from serve_helpers import make_setup, pair_items

from prefloop.serve.agreement import (
    cohen_kappa,
    fleiss_kappa,
    group_units,
    krippendorff_alpha,
    summary,
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 coders, 12 units.
_ = None
RELIABILITY_DATA = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    "C": [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
}


@pytest.mark.parametrize(
    "metric, expected", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_krippendorff_alpha_textbook(metric, expected):
    rows = [(u, c, v) for c, vs in RELIABILITY_DATA.items() for u, v in enumerate(vs) if v is not _]
    assert krippendorff_alpha(group_units(rows), metric) == pytest.approx(expected, abs=5e-4)


def test_fleiss_kappa_textbook():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa = 0.210.
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    units = {}
    for i, row in enumerate(table):
        cats = [c for c, n in enumerate(row) for _ in range(n)]
        units[i] = dict(enumerate(cats))
    assert fleiss_kappa(units) == pytest.approx(0.2099, abs=1e-4)


def test_cohen_kappa_textbook():
    # 50 proposals: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4.
    cells = [("y", "y", 20), ("y", "n", 5), ("n", "y", 10), ("n", "n", 15)]
    pairs = [(a, b) for a, b, n in cells for _ in range(n)]
    units = {i: {"A": a, "B": b} for i, (a, b) in enumerate(pairs)}
    assert cohen_kappa(units, "A", "B") == (pytest.approx(0.4), 50)


def test_undefined_statistics_are_none():
    assert krippendorff_alpha({1: {"a": 1}}) is None
    assert krippendorff_alpha({1: {"a": 1, "b": 1}, 2: {"a": 1, "b": 1}}) is None
    assert fleiss_kappa({}) is None
    assert cohen_kappa({1: {"a": 1}}, "a", "b") == (None, 0)
    perfect = summary({1: {"a": "x", "b": "x"}, 2: {"a": "y", "b": "y"}})
    assert perfect["krippendorff_alpha"] == pytest.approx(1.0)
    assert perfect["cohen_kappa_mean"] == pytest.approx(1.0)


def test_project_agreement_through_the_api(client, server_token):
    s = make_setup(client, server_token, n_annotators=2, items=pair_items(4), redundancy=2)
    answers = {0: ["left", "left", "left", "left"], 1: ["left", "left", "left", "tie"]}
    for k in (0, 1):
        for n in range(4):
            view = client.post(s.url("/next"), headers=s.ann(k)).json()
            texts = [r["text"] for r in view["responses"]]
            # judge in stored terms: answer 0 is "x.0", so always pick the first stored response
            choice = answers[k][n]
            if choice == "left" and texts[0].endswith(".1"):
                choice = "right"
            client.post(
                f"/api/v1/assignments/{view['assignment_id']}/submit",
                json={"choice": choice},
                headers=s.ann(k),
            )
    stats = client.get(s.url("/agreement"), headers=s.admin()).json()
    assert (stats["units"], stats["coders"]) == (4, 2)
    # coder 1 agrees on the 3 items it answered "a" for; ordering of items differs per coder,
    # so compute the expected kappa from the stored judgments themselves
    judgments = client.get(s.url("/judgments"), headers=s.admin()).json()
    by_item = {}
    for j in judgments:
        by_item.setdefault(j["item_id"], {})[j["judge_id"]] = j["label"]["choice"]
    kappa, n = cohen_kappa(by_item, *sorted({j["judge_id"] for j in judgments}))
    assert stats["cohen_kappa"][0]["kappa"] == kappa and n == 4
    assert stats["krippendorff_alpha"] == krippendorff_alpha(by_item)


def test_rating_agreement_is_per_aspect_interval(client, server_token):
    s = make_setup(
        client,
        server_token,
        n_annotators=2,
        items=pair_items(1),
        redundancy=2,
        task="rating",
        aspects=["help"],
    )
    for k, scores in ((0, [4, 2]), (1, [5, 1])):
        view = client.post(s.url("/next"), headers=s.ann(k)).json()
        shown = [int(r["text"][-1]) for r in view["responses"]]
        label = {"help": [scores[i] for i in shown]}
        r = client.post(
            f"/api/v1/assignments/{view['assignment_id']}/submit",
            json={"ratings": label},
            headers=s.ann(k),
        )
        assert r.status_code == 200
    stats = client.get(s.url("/agreement"), headers=s.admin()).json()["aspects"]["help"]
    units = {(1, 0): {1: 4, 2: 5}, (1, 1): {1: 2, 2: 1}}
    assert stats["metric"] == "interval"
    assert stats["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(units, "interval"))
