"""A small fixed set of judgments for the dashboard tests, with its hand-computed numbers.

Three annotators (R = 3) judge five pairwise items whose responses are "r0" and "r1"; each
answer names the stored response that wins (0 or 1), "tie", or None for a skip.
"""

from __future__ import annotations

from collections import Counter

import httpx
from fastapi.testclient import TestClient
from serve_helpers import Setup, make_setup

ANSWERS = {  # prompt -> answers of annotators 0, 1, 2
    "p1": [0, 0, 0],
    "p2": [0, 0, 1],
    "p3": [0, 1, "tie"],
    "p4": [1, 1, 1],
    "p5": [0, None, None],
}

# Pairable units p1..p4 (p5 has one value). Coincidences o_aa 4, o_bb 4, o_ab = o_ba 1.5 and
# 0.5 for each ordered pair with "tie": n = 12, n_a 6, n_b 5, n_tie 1, D_o = 5/12,
# D_e = 2 (6*5 + 6*1 + 5*1) / (12*11) = 82/132, alpha = 1 - D_o/D_e = 27/82.
ALPHA = 27 / 82
# Per-unit agreement 1, 1/3, 0, 1 -> P = 7/12; shares 6/12, 5/12, 1/12 -> P_e = 62/144;
# kappa = (P - P_e) / (1 - P_e) = 11/41.
KAPPA = 11 / 41
# Share of disagreeing judge pairs: p3 all 3 pairs, p2 2 of 3; p1, p4 none.
DISPUTED = [("p3", 1.0), ("p2", 2 / 3)]


def judge_fixed_set(
    http: TestClient | httpx.Client, server_token: str, **project: object
) -> tuple[Setup, dict[str, int], Counter]:
    """Create the project and its judgments through the API (plus one AI judgment on p1).

    Returns the setup, the item id of each prompt, and how often each displayed side
    ("left"/"right") was picked.
    """
    items = [{"external_id": f"ext-{p}", "prompt": p, "responses": ["r0", "r1"]} for p in ANSWERS]
    s = make_setup(http, server_token, n_annotators=3, redundancy=3, **project)
    added = http.post(s.url("/items"), json={"items": items}, headers=s.admin()).raise_for_status()
    item_ids = dict(zip(ANSWERS, added.json()["ids"], strict=True))
    sides: Counter = Counter()
    for k in range(3):
        while (r := http.post(s.url("/next"), headers=s.ann(k))).status_code == 200:
            view = r.json()
            answer = ANSWERS[view["prompt"]][k]
            path = f"/api/v1/assignments/{view['assignment_id']}"
            if answer is None:
                http.post(path + "/skip", headers=s.ann(k)).raise_for_status()
                continue
            if answer == "tie":
                choice = "tie"
            else:
                texts = [resp["text"] for resp in view["responses"]]
                choice = ["left", "right"][texts.index(f"r{answer}")]
                sides[choice] += 1
            http.post(
                path + "/submit", json={"choice": choice}, headers=s.ann(k)
            ).raise_for_status()
    judge = {"name": "judge", "model": "m", "prompt_version": "v1"}
    ai = {"item_id": item_ids["p1"], "judge": judge, "label": {"choice": "right"}}
    http.post(s.url("/ai-judgments"), json=ai, headers=s.admin()).raise_for_status()
    return s, item_ids, sides
